"""kinkcheck.torch.DEQ: a deep-equilibrium module (iteration forward, implicit backward through a
gradient hook) read by from_torch as a fixed_point layer. The weights are small dyadic numbers and W
is strictly lower triangular, so every operation is exact in float32 (any summation order) and the
iteration reaches the fixed point in n + 1 steps: torch's run, kinkcheck's machine run and the
exact run must agree exactly, and torch's implicit gradient must be the exact AD output."""

from __future__ import annotations

from fractions import Fraction

import pytest

torch = pytest.importorskip("torch")

import kinkcheck  # noqa: E402
from kinkcheck.torch import DEQ, check, from_torch  # noqa: E402


def model(b1=0.5):
    W = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.25, -0.5, 0.0]])
    U = torch.tensor([[1.0, 0.5], [-0.5, 1.0], [0.25, 0.25]])
    b = torch.tensor([0.0, b1, -0.25])
    return DEQ(W, U, b, torch.nn.ReLU(), max_iter=20)


X = torch.tensor([[1.0, 2.0], [-1.0, 0.5], [2.0, -1.0]])


def test_from_torch_reads_a_fixed_point_layer():
    doc = from_torch(model(), X)
    (layer,) = doc["layers"]
    assert layer["op"] == "fixed_point" and layer["cell"]["activation"] == {"op": "relu"}
    assert layer["solver"] == {"method": "iterate", "max_iter": 20, "tol": 0.0}
    assert list(doc["params"]) == ["l0.weight", "l0.input_weight", "l0.bias"]


def test_torch_and_kinkcheck_agree_exactly():
    m = model()
    z = m(X)
    z.sum().backward()
    torch_grad = [float(v) for p in (m.W, m.U, m.b) for v in p.grad.reshape(-1)]
    r = kinkcheck.verify(from_torch(m, X), values=True)
    sol = r._runs.exact_full().fp[0]
    assert [[Fraction(float(v)) for v in row] for row in z.detach()] == [[Fraction(int(v.numerator), int(v.denominator)) for v in row] for row in sol.z]
    assert [Fraction(v) for v in torch_grad] == [Fraction(s) for s in r.ad]
    assert torch_grad == [float.fromhex(h) for h in r.machine_ad]
    assert r.implicit[0]["machine"]["converged"] is True and m.iterations <= 4
    res = check(m, X)
    assert res["torch_bitwise_equals_exact_ad"] is True and res["ad_is_gradient"] is True


def test_a_tie_inside_the_deq():
    """b[1] = -5/2 puts unit 1 of sample 0 on the kink: z0 = relu((U x)0) = relu(1 + 1) = 2 and
    a1 = W[1,0] z0 + (U x)1 + b1 = 1 + 3/2 - 5/2 = 0. On the right piece z1 = a1 feeds f directly and
    through z2 (W[2,1] = -1/2, a2 = 1/2 + 3/4 - 1/4 = 1 > 0 stays active): df/da1 = 1 - 1/2 = 1/2, so
    the two limiting gradients differ by 1/2 * da1/dtheta (da1/db1 = 1, da1/dW[1,0] = z0 = 2);
    ReLU'(0) = 0 takes the left piece: not differentiable, AD in Clarke."""
    m = model(b1=-2.5)
    r = kinkcheck.verify(from_torch(m, X), values=True)
    assert [(t["layer"], t["sample"], t["unit"]) for t in r.real_ties] == [(0, 0, 1)]
    assert (r.differentiable, r.ad_correct, r.ad_in_clarke) == (False, False, True)
    left, right = sorted(r.decision["limiting_gradients"], key=lambda g: Fraction(g[16]))
    assert left == r.ad
    diff = [Fraction(b) - Fraction(a) for a, b in zip(left, right)]
    assert diff[16] == Fraction(1, 2) and diff[3] == 1  # b[1] and W[1,0]


def test_anderson_forward_read_by_from_torch():
    """Every operation of the exact model is exact in float32 (dyadic values, a nilpotent W), so
    torch's Anderson run and kinkcheck's machine Anderson run take the same steps: the same number
    of cell evaluations and the exact fixed point."""
    m = DEQ(model().W.detach(), model().U.detach(), model().b.detach(), torch.nn.ReLU(), max_iter=20, solver="anderson", m=2)
    z = m(X)
    doc = from_torch(m, X)
    assert doc["layers"][0]["solver"] == {"method": "anderson", "max_iter": 20, "tol": 0.0, "m": 2, "beta": 1.0}
    r = kinkcheck.verify(doc, values=True)
    assert r.implicit[0]["machine"]["iterations"] == m.iterations and r.implicit[0]["machine"]["converged"] is True
    sol = r._runs.exact_full().fp[0]
    assert [[Fraction(float(v)) for v in row] for row in z.detach()] == [[Fraction(int(v.numerator), int(v.denominator)) for v in row] for row in sol.z]
    with pytest.raises(ValueError, match="solver"):
        DEQ(model().W.detach(), model().U.detach(), solver="newton")
