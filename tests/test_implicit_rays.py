"""Random small DEQs (2-8 units) built to sit exactly on kinks, against an independent computation:
the exact directional derivative of f = sum z* along random rational rays, by enumerating the
tied units' one-sided patterns in fractions and keeping the consistent one (the tangent equation
da = r + W act'(a; da), no finite differences). kinkcheck's verdicts must agree with it: along every
ray f'(w; d) is one of the limiting gradients times d, and it is the gradient times d when f is
declared differentiable."""

from __future__ import annotations

import itertools
import random
from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from test_implicit import ACT_SPEC, _solve

import kinkcheck

SLOPES = {"relu": (Fraction(0), Fraction(1)), "leaky_relu": (Fraction(1, 8), Fraction(1))}


def _q(draw, lo, hi, den):
    return Fraction(draw(st.integers(lo * den, hi * den)), den)


@st.composite
def tied_deqs(draw):
    """Sample 0's fixed point is chosen first (each unit active, inactive or exactly on the kink)
    and b is solved for; the other samples are generic. ||W||_inf <= 7/8 (a contraction)."""
    n = draw(st.integers(2, 8))
    p = draw(st.integers(1, 2))
    act = draw(st.sampled_from(sorted(SLOPES)))
    W = [[Fraction(draw(st.integers(-7, 7)), 64) for _ in range(n)] for _ in range(n)]
    U = [[_q(draw, -2, 2, 4) for _ in range(p)] for _ in range(n)]
    X = [[_q(draw, -2, 2, 4) for _ in range(p)] for _ in range(draw(st.integers(1, 2)))]
    state = [draw(st.sampled_from("ait")) for _ in range(n)]
    if "t" not in state:
        state[0] = "t"
    a = [_q(draw, 1, 2, 4) if s == "a" else -_q(draw, 1, 2, 4) if s == "i" else Fraction(0) for s in state]
    lo = SLOPES[act][0]
    z = [v if v > 0 else lo * v for v in a]
    b = [a[i] - sum(W[i][j] * z[j] for j in range(n)) - sum(U[i][j] * X[0][j] for j in range(p)) for i in range(n)]
    return W, U, b, X, act, draw(st.sampled_from(["float32", "float64"]))


def _fixed_point(W, c, act):
    """The exact fixed point of z = act(W z + c) for a contraction: iterate in fractions until the
    pattern repeats, then solve the pattern (ties at a = 0 read as either piece: both agree)."""
    lo = SLOPES[act][0]
    n = len(W)
    z = [Fraction(0)] * n
    for _ in range(200):
        a = [sum(W[i][j] * z[j] for j in range(n)) + c[i] for i in range(n)]
        s = [Fraction(1) if v > 0 else lo for v in a]
        zs = _solve([[(1 if i == j else 0) - s[i] * W[i][j] for j in range(n)] for i in range(n)], [s[i] * c[i] for i in range(n)])
        a2 = [sum(W[i][j] * zs[j] for j in range(n)) + c[i] for i in range(n)]
        if all((v >= 0) if si == 1 else (v <= 0) for v, si in zip(a2, s)):
            return zs, a2
        z = [v if v > 0 else lo * v for v in a]
    raise AssertionError("no consistent pattern")


def directional(W, U, b, X, act, dW, dU, db):
    """f'(w; d) for f = sum over samples and units of z*."""
    lo, hi = SLOPES[act]
    n = len(W)
    total = Fraction(0)
    for x in X:
        c = [sum(U[i][j] * x[j] for j in range(len(x))) + b[i] for i in range(n)]
        z, a = _fixed_point(W, c, act)
        r = [sum(dW[i][j] * z[j] for j in range(n)) + sum(dU[i][j] * x[j] for j in range(len(x))) + db[i] for i in range(n)]
        tied = [i for i in range(n) if a[i] == 0]
        found = None
        for sides in itertools.product((lo, hi), repeat=len(tied)):
            D = [Fraction(1) if a[i] > 0 else lo for i in range(n)]
            for i, s in zip(tied, sides):
                D[i] = s
            # da = r + W D da  <=>  (I - W D) da = r
            da = _solve([[(1 if i == j else 0) - W[i][j] * D[j] for j in range(n)] for i in range(n)], r)
            if all((da[i] >= 0) if s == hi else (da[i] <= 0) for i, s in zip(tied, sides)):
                found = [D[i] * da[i] for i in range(n)]
                break
        assert found is not None
        total += sum(found)
    return total


def _doc(W, U, b, X, act, dtype):
    f = float
    return {
        "kinkcheck": 1,
        "dtype": dtype,
        "params": {"W": {"shape": [len(W), len(W)], "values": [[f(v) for v in r] for r in W]}, "U": {"shape": [len(U), len(U[0])], "values": [[f(v) for v in r] for r in U]}, "b": {"shape": [len(b)], "values": [f(v) for v in b]}},
        "inputs": {"shape": [len(X), len(X[0])], "values": [[f(v) for v in r] for r in X]},
        "layers": [{"op": "fixed_point", "cell": {"weight": "W", "input_weight": "U", "bias": "b", "activation": ACT_SPEC[act]}, "solver": {"method": "iterate", "max_iter": 200}}],
        "loss": {"op": "sum"},
    }


@settings(deadline=None)
@given(tied_deqs())
def test_verdicts_against_directional_derivatives_along_rays(case):
    W, U, b, X, act, dtype = case
    assert all(Fraction(float(v)) == v for v in b)  # dyadic with few bits: exact in float32
    with np.errstate(all="ignore"):
        r = kinkcheck.verify(_doc(W, U, b, X, act, dtype), values=True)
    assert any(t["sample"] == 0 for t in r.real_ties)
    n, p = len(W), len(U[0])
    rng = random.Random(n * 7 + p)
    for _ in range(4):
        dW = [[Fraction(rng.randint(-8, 8), 7) for _ in range(n)] for _ in range(n)]
        dU = [[Fraction(rng.randint(-8, 8), 5) for _ in range(p)] for _ in range(n)]
        db = [Fraction(rng.randint(-8, 8), 3) for _ in range(n)]
        d = [v for row in dW for v in row] + [v for row in dU for v in row] + db
        ref = directional(W, U, b, X, act, dW, dU, db)
        dot = lambda g: sum(Fraction(x) * y for x, y in zip(g, d))  # noqa: E731
        if r.differentiable is True:
            assert dot(r.decision["limiting_gradients"][0]) == ref
        if r.decision["limiting_gradients"]:
            assert ref in {dot(g) for g in r.decision["limiting_gradients"]}
    # a contraction with Lip(act) = 1: every I - D W is invertible, so the verdicts are decided
    assert r.differentiable is not None
