"""``check``: an exact gradcheck - torch's own autograd output on a module, judged by kinkcheck's
exact procedures.
"""

from __future__ import annotations

from ..encodings.errors import InputError
from .torch_import import from_torch
from .torch_modules import _t


def _torch_loss(out, targets, loss, reduction):
    torch = _t()
    F = torch.nn.functional
    red = reduction or "mean"
    if loss == "sum":
        return out.sum()
    if loss == "dot":
        return (out * targets).sum()
    if loss == "mse":
        return F.mse_loss(out, targets, reduction=red)
    if loss == "l1":
        return F.l1_loss(out, targets, reduction=red)
    if loss == "cross_entropy":
        return F.cross_entropy(out, targets, reduction=red)
    raise InputError(f"unknown loss {loss!r}")


def check(module, inputs, targets=None, loss: str = "sum", reduction: str | None = None):
    """Exact gradcheck: run torch autograd on ``module``, then judge its output exactly.

    Returns a dict with the kinkcheck report (``report``), torch's gradient (``torch_grad``, as
    floats in kinkcheck's parameter order), and the verdicts about the EXACT AD output:
    ``ad_is_gradient``, ``ad_in_clarke``, ``differentiable``; which units sit on kinks; whether the
    float run diverged from the exact one. torch's floats are compared bit for bit only:
    ``torch_bitwise_equals_exact_ad`` (false whenever the exact AD is not a float - rounding, not an
    error) and ``torch_bitwise_equals_spec_order_ad`` (kinkcheck's float run in its own order). Whether
    torch's floats are right up to rounding is :func:`kinkcheck.gradcheck`'s rigorous bound."""
    from ..api import verify

    torch = _t()
    doc = from_torch(module, inputs, targets, loss, reduction)
    module.zero_grad(set_to_none=True)
    out = module(inputs)
    _torch_loss(out, targets, loss, reduction).backward()
    grads = []
    for m in list(module) if isinstance(module, torch.nn.Sequential) else [module]:
        for p in m.parameters(recurse=False):
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            grads += g.detach().to(torch.float64).reshape(-1).tolist()
    report = verify(doc, values=True)
    from fractions import Fraction

    exact_ad = [Fraction(s) for s in report.ad] if report.ad and not any(s.startswith("[") for s in report.ad) else None
    tg = [Fraction(v) for v in grads]
    return {
        "report": report,
        "torch_grad": grads,
        "torch_bitwise_equals_exact_ad": (tg == exact_ad) if exact_ad is not None else None,
        "torch_bitwise_equals_spec_order_ad": grads == [float.fromhex(h) for h in report.machine_ad],
        "ad_is_gradient": report.ad_correct,
        "differentiable": report.differentiable,
        "ad_in_clarke": report.ad_in_clarke,
        "real_ties": report.real_ties,
        "float_ties": report.float_ties,
        "compensation": report.compensation,
        "branch_mismatch": report.branch_mismatch,
        "doc": doc,
    }
