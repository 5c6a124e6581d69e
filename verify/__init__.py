"""kinkcheck: exact verification of automatic differentiation at kinks.

>>> import kinkcheck
>>> report = kinkcheck.verify("proofs/examples/relu_minus_relu.json")
>>> report.real_ties, report.ad, report.machine_ad
"""

__version__ = "0.1.0"

from .api import Report, load, verify  # noqa: E402
from .encodings.errors import InputError, Undecided  # noqa: E402

__all__ = ["load", "verify", "Report", "InputError", "Undecided", "__version__"]
