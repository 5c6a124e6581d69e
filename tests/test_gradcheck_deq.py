"""kinkcheck.gradcheck on kinkcheck.torch.DEQ: the a-posteriori bound (torch's final iterates, the
exact implicit AD, the last step's rounding) holds on exact and on rounded runs, catches a torch
gradient that is not what its own final iterates give, and networks beyond a lone DEQ get the
verdict "no bound" with the ulp distances."""

from __future__ import annotations

import warnings
from fractions import Fraction

import pytest

torch = pytest.importorskip("torch")

import kinkcheck  # noqa: E402
from kinkcheck.interop.gradcheck import gradcheck_report  # noqa: E402
from kinkcheck.torch import DEQ  # noqa: E402

W = [[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.25, -0.5, 0.0]]
U = [[1.0, 0.5], [-0.5, 1.0], [0.25, 0.25]]
X = torch.tensor([[1.0, 2.0], [-1.0, 0.5], [2.0, -1.0]])


def exact_model(b1=0.5):
    return DEQ(torch.tensor(W), torch.tensor(U), torch.tensor([0.0, b1, -0.25]), torch.nn.ReLU(), max_iter=20)


def test_exact_run_zero_solver_error():
    """W strictly lower triangular with dyadic entries: both solvers end on the exact fixed point
    and adjoint, every operation is exact, so torch equals the exact AD (0 ulps, solver error 0)."""
    r = gradcheck_report(exact_model(), X)
    assert r.passed and r.rounding == "a-posteriori" and r.torch_within_bound is True
    assert r.solver_error == 0 and r.max_ulps == 0
    assert all(Fraction(e.torch) == Fraction(e.exact_ad) for e in r.entries)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kinkcheck.gradcheck(exact_model(), X) is True


def rounded_model(max_iter, dtype=torch.float32):
    g = torch.Generator().manual_seed(3)
    n = 6
    W = (torch.randn(n, n, generator=g) * 0.15).to(dtype)
    return DEQ(W, torch.randn(n, 3, generator=g).to(dtype), torch.randn(n, generator=g).to(dtype), torch.nn.LeakyReLU(0.125), max_iter=max_iter)


@pytest.mark.parametrize("max_iter", [3, 200])
def test_rounded_and_stopped_solvers_within_the_bound(max_iter):
    """3 iterations stop far from the fixed point: the exact solver part of the bound is large (and
    the ulp distance too); 200 iterations converge: the solver part is tiny. torch is inside the
    bound either way (it is built from torch's own final iterates)."""
    m = rounded_model(max_iter)
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(5))
    r = gradcheck_report(m, x)
    assert r.rounding == "a-posteriori" and r.torch_within_bound is True
    for e in r.entries:
        assert abs(Fraction(e.torch) - Fraction(e.exact_ad)) <= Fraction(e.bound)
    if max_iter == 3:
        assert r.solver_error > 1e-3 and r.max_ulps > 1000
    else:
        assert r.solver_error < 1e-4


class Buggy(DEQ):
    """A DEQ whose gradient is scaled by 1 + 2^-8 after the hook stored its adjoint: torch's value
    is no longer what its final iterates give."""

    def forward(self, x):
        out = super().forward(x)
        if out.requires_grad:
            out.register_hook(lambda g: g * (1 + 2**-8))
        return out


def test_a_wrong_torch_gradient_is_caught():
    m = Buggy(torch.tensor(W), torch.tensor(U), torch.tensor([0.0, 0.5, -0.25]), torch.nn.ReLU(), max_iter=20)
    r = gradcheck_report(m, X)
    assert not r.passed and r.torch_within_bound is False
    assert any("outside the rounding bound" in p for p in r.problems)
    with pytest.raises(kinkcheck.GradcheckError):
        kinkcheck.gradcheck(m, X)


def test_deq_inside_a_larger_network_no_bound():
    lin = torch.nn.Linear(3, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -0.5, 0.25]]))
        lin.bias.fill_(0.5)
    seq = torch.nn.Sequential(exact_model(), lin)
    r = gradcheck_report(seq, X)
    assert r.rounding == "no bound" and r.torch_within_bound is None
    assert all(e.bound is None and e.within_bound is None for e in r.entries)
    assert r.passed and r.max_ulps == 0  # every operation is exact here, so torch equals the exact AD
    with pytest.warns(kinkcheck.GradcheckWarning, match="no rounding bound"):
        assert kinkcheck.gradcheck(seq, X) is True


def test_a_tie_inside_the_deq_passes_with_the_clarke_warning():
    with pytest.warns(kinkcheck.GradcheckWarning, match="not differentiable"):
        assert kinkcheck.gradcheck(exact_model(b1=-2.5), X) is True
    with pytest.raises(kinkcheck.GradcheckError, match="strict"):
        kinkcheck.gradcheck(exact_model(b1=-2.5), X, strict=True)
