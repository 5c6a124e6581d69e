"""kinkcheck: exact verification of automatic differentiation at kinks.

>>> import kinkcheck
>>> report = kinkcheck.verify("proofs/examples/relu_minus_relu.json")
>>> report.differentiable, report.ad, report.gradient, report.machine_ad
(True, ['0'], ['1'], ['0x0p+0'])

The package is laid out by question; data flows one way, each line importing only the ones above it
(``tests/test_layout.py`` enforces it):

- ``kinkcheck.encodings``: the network model and loader, formats, the activation library, the
  network program over exact / machine / SMT arithmetics, running both semantics;
- ``kinkcheck.decide``: the questions at one parameter point (ties, choice sensitivity,
  differentiability, AD correctness, Clarke membership);
- ``kinkcheck.certify``: certificates and their independent checker;
- ``kinkcheck.api``: ``load``, ``verify``, ``Report`` (this package's top-level names);
- ``kinkcheck.search``, ``kinkcheck.interop``, ``kinkcheck.testgen``, ``kinkcheck.survey``: the
  questions across parameter space, other frameworks, counterexamples as pytest files, surveys;
- ``kinkcheck.cli``: the command line.

The names are imported lazily, so that ``import kinkcheck.certify.checker`` (the independent
certificate checker) loads neither Z3 nor the decision code.
"""

__version__ = "0.1.0"

from . import _moved  # noqa: E402

_moved.install()

_LAZY = {
    "load": "api",
    "verify": "api",
    "Report": "api",
    "check_certificate": "certify.checker",
    "CheckFailed": "certify.checker",
    "from_torch": "interop.torch",
    "membership": "search.point",
    "gradcheck": "interop.gradcheck",
    "GradcheckError": "interop.gradcheck",
    "GradcheckWarning": "interop.gradcheck",
    "count": "search.count",
}


def __getattr__(name):
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    if name in ("InputError", "Undecided"):
        from .encodings import errors

        return getattr(errors, name)
    if _moved.target(name) is not None:  # kinkcheck.cells without an import statement
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["load", "verify", "Report", "InputError", "Undecided", "check_certificate", "CheckFailed", "from_torch", "membership", "gradcheck", "GradcheckError", "GradcheckWarning", "count", "__version__"]
