"""Anderson acceleration in fixed-point layers: the documented float algorithm written again with
numpy scalars of the dtype (the whole batch in lockstep, one least-squares solve per sample by
Gaussian elimination on the normal equations) must reproduce kinkcheck's machine run bit for bit;
the exact fixed point is the unrolled-fractions reference whatever the solver; with m = 0 and
beta = 1 Anderson is plain iteration, bit for bit."""

from __future__ import annotations

import copy
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_implicit import ACT_SPEC, _dyadic, deq, reference_fixed_point

import kinkcheck


def with_solver(doc, **solver):
    doc = copy.deepcopy(doc)
    doc["layers"][0]["solver"] = solver
    return doc


def _act(act, dt):
    return {
        "relu": lambda v: v if v > 0 else dt(0),
        "leaky_relu": lambda v: v if v > 0 else dt(v * dt(0.125)),
        "hardtanh": lambda v: dt(-1) if v < -1 else dt(1) if v > 1 else v,
    }[act]


def anderson_reference(W, U, b, X, act, dtype, m, beta, max_iter, tol=0.0):
    """docs/implicit.md's Anderson acceleration with numpy scalars (returns z*, iterations)."""
    dt = np.dtype(dtype).type
    n, N = len(W), len(X)
    f_act = _act(act, dt)

    def dot(u, v):  # spec order: acc = u0 v0; acc = acc + ui vi
        acc = dt(u[0] * v[0])
        for i in range(1, len(u)):
            acc = dt(acc + dt(u[i] * v[i]))
        return acc

    Wd = [[dt(v) for v in row] for row in W]
    ux = [[dot([dt(v) for v in U[i]], [dt(v) for v in x]) for i in range(n)] for x in X]

    def cell(zs, xs):
        return [f_act(dt(dt(dot(Wd[i], zs) + xs[i]) + dt(b[i]))) for i in range(n)]

    bt = dt(beta)
    z = [[dt(0)] * n for _ in range(N)]
    hist = [[] for _ in range(N)]
    it = 0
    while True:
        g = [cell(z[s], ux[s]) for s in range(N)]
        f = [[dt(g[s][i] - z[s][i]) for i in range(n)] for s in range(N)]
        it += 1
        res = max(abs(v) for row in f for v in row)
        if res <= tol or it >= max_iter:
            return g, it
        for s in range(N):
            hist[s] = (hist[s] + [(z[s], g[s], f[s])])[-(m + 1) :]
            h = hist[s]
            k = len(h) - 1
            dZ = [[dt(h[j + 1][0][i] - h[j][0][i]) for i in range(n)] for j in range(k)]
            dG = [[dt(h[j + 1][1][i] - h[j][1][i]) for i in range(n)] for j in range(k)]
            dF = [[dt(h[j + 1][2][i] - h[j][2][i]) for i in range(n)] for j in range(k)]
            H = [[dot(dF[p], dF[q]) for q in range(k)] for p in range(k)]
            r = [dot(dF[p], f[s]) for p in range(k)]
            ok = True
            with np.errstate(all="ignore"):
                for c in range(k):
                    ok = ok and H[c][c] != 0
                    for i in range(c + 1, k):
                        lv = dt(H[i][c] / H[c][c])
                        for j in range(c + 1, k):
                            H[i][j] = dt(H[i][j] - dt(lv * H[c][j]))
                        r[i] = dt(r[i] - dt(lv * r[c]))
                gam = [dt(0)] * k
                for i in reversed(range(k)):
                    acc = r[i]
                    for j in range(i + 1, k):
                        acc = dt(acc - dt(H[i][j] * gam[j]))
                    gam[i] = dt(acc / H[i][i])
                if not ok or not all(np.isfinite(v) for v in gam):
                    gam = [dt(0)] * k
                gbar, zbar = list(g[s]), list(z[s])
                for j in range(k):
                    gbar = [dt(gbar[i] - dt(dG[j][i] * gam[j])) for i in range(n)]
                    zbar = [dt(zbar[i] - dt(dZ[j][i] * gam[j])) for i in range(n)]
                z[s] = gbar if beta == 1 else [dt(dt(gbar[i] * bt) + dt(zbar[i] * dt(dt(1) - bt))) for i in range(n)]


@st.composite
def contractive_deqs(draw):
    n = draw(st.integers(2, 8))
    p = draw(st.integers(1, 3))
    W = [[_dyadic(draw, -1, 1) / 16 for _ in range(n)] for _ in range(n)]  # ||W||_inf <= 8/16
    U = [[_dyadic(draw, -2, 2) for _ in range(p)] for _ in range(n)]
    b = [_dyadic(draw, -1, 1) for _ in range(n)]
    X = [[_dyadic(draw, -2, 2) for _ in range(p)] for _ in range(draw(st.integers(1, 3)))]
    act = draw(st.sampled_from(sorted(ACT_SPEC)))
    return W, U, b, X, act, draw(st.sampled_from(["float16", "float32", "float64"])), draw(st.integers(0, 4)), draw(st.sampled_from([1.0, 0.5, 0.75]))


@settings(deadline=None)
@given(contractive_deqs())
def test_anderson_bit_for_bit_and_the_same_exact_fixed_point(case):
    W, U, b, X, act, dtype, m, beta = case
    doc = with_solver(deq(W, U, b, X, act, dtype), method="anderson", m=m, beta=beta, max_iter=40, tol=0)
    with np.errstate(all="ignore"):
        r = kinkcheck.verify(doc, values=True)
    sol = r._runs.machine.fp[0]
    ref, it = anderson_reference(W, U, b, X, act, dtype, m, beta, 40)
    assert sol.iterations == it
    got = np.asarray(sol.z, dtype=np.float64)
    want = np.asarray([[float(v) for v in row] for row in ref])
    assert np.array_equal(got, want, equal_nan=True)
    # the exact fixed point does not depend on the solver: the unrolled-fractions reference
    ex = r._runs.exact_full().fp[0]
    for s, x in enumerate(X):
        zs, _ = reference_fixed_point(W, U, b, x, act)
        assert [Fraction(int(v.numerator), int(v.denominator)) for v in ex.z[s]] == zs
        if dtype == "float64" and sol.converged:
            # a contraction with ||W|| <= 1/2: |z - z*| <= 2 |g(z) - z|, and g(z) = z up to a few
            # roundings of values below 2^6
            assert max(abs(Fraction(float(v)) - e) for v, e in zip(got[s], zs)) < Fraction(1, 2**30)
    assert ex.unique is True


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_anderson_with_no_history_is_plain_iteration(dtype):
    W = [[0.25, -0.125, 0.0], [0.125, 0.25, -0.25], [0.0, 0.375, 0.125]]
    U = [[1.0, -0.5], [0.5, 0.25], [-0.75, 1.0]]
    b = [0.125, -0.25, 0.5]
    X = [[1.0, 0.5], [-0.5, 2.0]]
    plain = kinkcheck.verify(deq(W, U, b, X, "leaky_relu", dtype, max_iter=30), values=True)
    anderson = kinkcheck.verify(with_solver(deq(W, U, b, X, "leaky_relu", dtype), method="anderson", m=0, max_iter=30), values=True)
    a, p = anderson._runs.machine.fp[0], plain._runs.machine.fp[0]
    assert a.iterations == p.iterations and np.array_equal(a.z, p.z)
    assert anderson.machine_ad == plain.machine_ad and anderson.ad == plain.ad
    assert anderson.implicit[0]["solver"]["m"] == 0 and anderson.implicit[0]["unrolled"]["equals_implicit_bitwise"] is None


def test_anderson_converges_where_iteration_is_slow():
    """z = relu(W z + b) with W = 0.9 I (1 unit, b = 1): the fixed point 10 is reached by iteration only
    after hundreds of steps in float64; Anderson with m = 1 solves the affine map's secant exactly
    after two evaluations (the secant of an affine map is exact), up to rounding."""
    doc = deq([[0.9]], [[0.0]], [1.0], [[0.0]], "relu", "float64", max_iter=50)
    plain = kinkcheck.verify(doc, values=True)
    acc = kinkcheck.verify(with_solver(doc, method="anderson", m=1, max_iter=50, tol=0), values=True)
    assert plain.implicit[0]["machine"]["converged"] is False
    ex = acc._runs.exact_full().fp[0].z[0][0]
    assert Fraction(int(ex.numerator), int(ex.denominator)) == Fraction(1) / (1 - Fraction(0.9))
    z = float(acc._runs.machine.fp[0].z[0][0])
    assert acc.implicit[0]["machine"]["iterations"] <= 6 and abs(z - 10.0) < 1e-12


@pytest.mark.parametrize(
    "solver,msg",
    [
        ({"method": "iterate", "m": 3}, "unknown key 'm' for method iterate"),
        ({"method": "anderson", "m": -1}, "solver.m must be an integer"),
        ({"method": "anderson", "beta": 0}, r"solver.beta must be a value in \(0, 1\]"),
        ({"method": "anderson", "beta": 1.5}, r"solver.beta must be a value in \(0, 1\]"),
        ({"method": "newton"}, 'or "anderson"'),
    ],
)
def test_bad_anderson_settings(solver, msg):
    with pytest.raises(kinkcheck.InputError, match=msg):
        kinkcheck.verify(with_solver(deq([[0.5]], [[1.0]], [0.0], [[1.0]]), **solver))
