"""Export a counterexample (a network file) as a self-contained pytest file: the entry point.

``export_test(cex, framework)`` picks the exporter: :mod:`kinkcheck.testgen.numpy_export` (numpy
scalar arithmetic in the documented order) or :mod:`kinkcheck.testgen.torch_export` (exact, the
spec's machine run, and torch's own run asserted only where no summation order matters). Both fill
a template of ``templates/`` (:mod:`kinkcheck.testgen.render`); the torch file embeds the replay
engine (:mod:`kinkcheck.testgen.engine`).
"""

from __future__ import annotations

from ..encodings.errors import InputError
from .numpy_export import export_numpy
from .torch_export import export_torch

__all__ = ["export_test", "export_numpy", "export_torch"]


def export_test(cex, framework: str = "numpy") -> str:
    """The text of a self-contained pytest file reproducing the counterexample ``cex`` (a network
    file path or document) with ``framework`` (``numpy`` or ``torch``)."""
    from ..api import load

    net = load(cex)
    for L in net.layers:
        if L.op == "fixed_point":
            where = cex if isinstance(cex, str) else "network"
            raise InputError(f"{where}: layer {L.index} (fixed_point): export-test does not write tests for fixed-point layers (use kinkcheck.torch.DEQ and kinkcheck.torch.check)")
    if framework == "torch":
        return export_torch(cex)
    if framework != "numpy":
        raise InputError(f"framework {framework!r}: numpy or torch")
    return export_numpy(cex)
