"""Value-iteration blocks against an independent computation: the exact fixed point by iterating the
Bellman map in fractions.Fraction until the greedy policy stabilises and then solving that policy's
linear system with a separate elimination; exact gradients of a fixed selection by forward mode in
fractions; the machine iteration re-run with numpy in the dtype (the spec's summation order); the
vertex test against determinants computed here; the 5x5 example with its tie derived by hand."""

from __future__ import annotations

import json
import os
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_implicit import _solve  # exact Gauss-Jordan over fractions (the test-side solver)

import kinkcheck
from kinkcheck.encodings import program as P
from kinkcheck.encodings import valueiteration as VI
from kinkcheck.encodings.errors import InputError
from kinkcheck.encodings.exact import ExactArith
from kinkcheck.encodings.machine import MachineArith
from kinkcheck.encodings.network import load

from conftest import EXAMPLES

DT = {"float16": np.float16, "float32": np.float32, "float64": np.float64}


def vin(T, R, gamma, *, dtype="float32", solver=None, loss=None):
    A, k = len(T), len(T[0])
    H, W = len(R[0]), len(R[0][0])
    return {
        "kinkcheck": 1,
        "dtype": dtype,
        "params": {"T": {"shape": [A, k, k], "values": T}},
        "inputs": {"shape": [1, A, H, W], "values": [R]},
        "layers": [{"op": "value_iteration", "kernel": "T", "gamma": gamma, "solver": solver or {"method": "iterate", "max_iter": 400, "tol": 0}}],
        "loss": loss or {"op": "sum"},
    }


# ----------------------------------------------------------------------------------------------
# the independent reference


def _neighbours(H, W, k):
    c = (k - 1) // 2
    return [[(p, q, (i + p - c) * W + (j + q - c)) for p in range(k) for q in range(k) if 0 <= i + p - c < H and 0 <= j + q - c < W] for i in range(H) for j in range(W)]


def ref_q(T, R, gamma, V, nb):
    return [[Fraction(R[a][s]) + gamma * sum((Fraction(T[a][p][q]) * V[t] for p, q, t in nb[s]), Fraction(0)) for a in range(len(T))] for s in range(len(nb))]


def _det(M):
    n, a, d = len(M), [list(r) for r in M], Fraction(1)
    for c in range(n):
        p = next((i for i in range(c, n) if a[i][c] != 0), None)
        if p is None:
            return Fraction(0)
        if p != c:
            a[c], a[p], d = a[p], a[c], -d
        d *= a[c][c]
        for i in range(c + 1, n):
            f = a[i][c] / a[c][c]
            a[i] = [x - f * y for x, y in zip(a[i], a[c])]
    return d


def policy_matrix(T, gamma, nb, pi):
    S = len(nb)
    M = [[Fraction(int(i == j)) for j in range(S)] for i in range(S)]
    for s in range(S):
        for p, q, t in nb[s]:
            M[s][t] -= gamma * Fraction(T[pi[s]][p][q])
    return M


def ref_fixed_point(T, R, gamma, H, W):
    """Iterate V <- max_a Q_a(V) in fractions until the greedy (first maximal) policy is stable for
    5 rounds, solve that policy's system, and check V = max_a Q_a(V) exactly."""
    nb = _neighbours(H, W, len(T[0]))
    S, V, last, stable = H * W, [Fraction(0)] * (H * W), None, 0
    for _ in range(2000):
        Q = ref_q(T, R, gamma, V, nb)
        pi = [max(range(len(T)), key=lambda a, row=row: (row[a], -a)) for row in Q]
        V = [max(row) for row in Q]
        stable = stable + 1 if pi == last else 0
        last = pi
        if stable >= 5:
            sol = _solve(policy_matrix(T, gamma, nb, pi), [Fraction(R[pi[s]][s]) for s in range(S)])
            if all(max(row) == v for row, v in zip(ref_q(T, R, gamma, sol, nb), sol)):
                return sol, pi
    raise AssertionError("no stable policy")  # pragma: no cover


def ref_gradient(T, R, gamma, H, W, V, sel):
    """d(sum V)/dT for the selection sel (one action per state), by forward mode: dV = (I - gamma
    P_sel)^{-1} r with r_s = gamma [sel(s) = a] V(s + (p, q))."""
    k = len(T[0])
    nb = _neighbours(H, W, k)
    M = policy_matrix(T, gamma, nb, sel)
    out = []
    for a in range(len(T)):
        for p in range(k):
            for q in range(k):
                r = [gamma * sum((V[t] for pp, qq, t in nb[s] if (pp, qq) == (p, q)), Fraction(0)) if sel[s] == a else Fraction(0) for s in range(H * W)]
                out.append(sum(_solve(M, r)))
    return out


def machine_reference(T, R, gamma, H, W, dt, max_iter, tol=0.0):
    """The machine iteration in numpy: acc = T[a,0,0] * Vpad[...]; acc = acc + T[a,p,q] * Vpad[...]
    (padding zeros included); Q = R + gamma * acc; V' = first maximum; stop on max |V' - V| <= tol."""
    k = len(T[0])
    c = (k - 1) // 2
    Tn, Rn, g = np.array(T, dtype=dt), np.array(R, dtype=dt).reshape(len(T), -1), dt(gamma)
    V = np.zeros(H * W, dtype=dt)
    for it in range(1, max_iter + 1):
        Vp = np.zeros((H + 2 * c, W + 2 * c), dtype=dt)
        Vp[c : c + H, c : c + W] = V.reshape(H, W)
        Q = np.empty((H * W, len(T)), dtype=dt)
        for s in range(H * W):
            i, j = divmod(s, W)
            for a in range(len(T)):
                acc = dt(Tn[a, 0, 0] * Vp[i, j])
                for pq in range(1, k * k):
                    p, q = divmod(pq, k)
                    acc = dt(acc + dt(Tn[a, p, q] * Vp[i + p, j + q]))
                Q[s, a] = dt(Rn[a, s] + dt(g * acc))
        Vn = Q[:, 0].copy()
        for a in range(1, len(T)):
            Vn = np.where(Q[:, a] > Vn, Q[:, a], Vn)
        res = np.abs(Vn - V).max()
        V = Vn
        if res <= tol:
            return V, it, res
    return V, max_iter, res


def semantics(doc):
    net = load(doc)
    ex = P.forward(net, ExactArith())
    ma = P.forward(net, MachineArith(net.fmt))
    return net, ex, ma


# ----------------------------------------------------------------------------------------------
# the 5x5 example


def test_grid_example_tie_fixed_point_and_verdicts():
    doc = json.loads((EXAMPLES / "vin_grid_tie.json").read_text())
    T = doc["params"]["T"]["values"]
    R = [[Fraction(v) for row in Ra for v in row] for Ra in doc["inputs"]["values"][0]]
    V, pi = ref_fixed_point(T, R, Fraction(1, 2), 5, 5)
    nb = _neighbours(5, 5, 3)
    Q = ref_q(T, R, Fraction(1, 2), V, nb)
    ties = [s for s in range(25) if Q[s][0] == Q[s][1]]
    assert ties == [12]  # state (2, 2) only: the mirror symmetry is broken on the rest of the diagonal
    # by hand: V(4,4) = max(R_0 + V/8, R_1 + V/8) with R_0(4,4) = ((12 + 20) % 7 - 3)/8 = 1/8 -> V = 1/7
    assert V[24] == Fraction(1, 7)
    # the tie: V(2,3) = V(3,2) (mirror images) and R_0(2,2) = R_1(2,2)
    assert V[13] == V[17] and Q[12][0] == Q[12][1]
    r = kinkcheck.verify(str(EXAMPLES / "vin_grid_tie.json"), values=True)
    assert [(t["layer"], t["unit"], t["entries"]) for t in r.real_ties] == [(0, 12, [0, 1])]
    assert [(t["layer"], t["unit"]) for t in r.float_ties] == [(0, 12)]
    e = r.implicit[0]
    assert [Fraction(v) for v in e["z"][0]] == V
    assert e["exact"]["unique"] is True  # gamma * max_a sum |T_a| = 1/2
    s0 = e["samples"][0]
    assert s0["tied_units"] == [12] and s0["vertices"] == 2 and s0["clarke_jacobian_invertible"] is True
    first = ref_gradient(T, R, Fraction(1, 2), 5, 5, V, [0 if s == 12 else pi[s] for s in range(25)])
    last = ref_gradient(T, R, Fraction(1, 2), 5, 5, V, [1 if s == 12 else pi[s] for s in range(25)])
    assert first != last
    assert [Fraction(v) for v in r.ad] == first  # the proxy: the first tied action takes the gradient
    lim = sorted(tuple(Fraction(v) for v in g) for g in r.decision["limiting_gradients"])
    assert lim == sorted([tuple(first), tuple(last)])
    assert (r.differentiable, r.ad_correct, r.ad_in_clarke) == (False, False, True)
    # machine: the float run's loss is the dtype sum of the numpy reference's V
    Vm, it, res = machine_reference(T, [[float(v) for v in Ra] for Ra in R], 0.5, 5, 5, np.float32, 200)
    assert e["machine"]["iterations"] == it and float.fromhex(e["machine"]["residual"]) == res == 0
    acc = np.float32(0)
    for v in Vm:
        acc = np.float32(acc + v)
    assert float.fromhex(r.loss_machine) == acc


def test_grid_example_directional_derivatives_along_rays():
    """f'(w; d) along rational rays: the selection at the tie follows the sign of the tangent gap
    dQ_1 - dQ_0 at state 12, computed here by forward mode; it must equal g . d with g the cell's
    gradient, and AD . d only on the first action's side."""
    doc = json.loads((EXAMPLES / "vin_grid_tie.json").read_text())
    T = doc["params"]["T"]["values"]
    R = [[Fraction(v) for row in Ra for v in row] for Ra in doc["inputs"]["values"][0]]
    g = Fraction(1, 2)
    V, pi = ref_fixed_point(T, R, g, 5, 5)
    nb = _neighbours(5, 5, 3)
    r = kinkcheck.verify(str(EXAMPLES / "vin_grid_tie.json"), values=True)
    ad = [Fraction(v) for v in r.ad]
    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(12):
        d = [Fraction(int(v), 8) for v in rng.integers(-8, 9, size=18)]
        dT = [[[d[a * 9 + p * 3 + q] for q in range(3)] for p in range(3)] for a in range(2)]
        out = None
        for a12 in (0, 1):
            sel = [a12 if s == 12 else pi[s] for s in range(25)]
            rr = [g * sum((dT[sel[s]][p][q] * V[t] for p, q, t in nb[s]), Fraction(0)) for s in range(25)]
            dV = _solve(policy_matrix(T, g, nb, sel), rr)
            dQ = [g * sum((dT[a][p][q] * V[t] + Fraction(T[a][p][q]) * dV[t] for p, q, t in nb[12]), Fraction(0)) for a in (0, 1)]
            if dQ[a12] >= dQ[1 - a12]:
                out = (a12, sum(dV), dQ[1] - dQ[0])
                break
        a12, fd, gap = out
        seen.add(a12)
        cell = ref_gradient(T, R, g, 5, 5, V, [a12 if s == 12 else pi[s] for s in range(25)])
        assert fd == sum(x * y for x, y in zip(cell, d))
        if gap != 0:
            assert (sum(x * y for x, y in zip(ad, d)) == fd) == (a12 == 0 or gap == 0)
    assert seen == {0, 1}


def test_grid_example_certificate_checks():
    from kinkcheck.certify.checker import check_certificate

    r = kinkcheck.verify(str(EXAMPLES / "vin_grid_tie.json"), values=True)
    cert = json.loads(json.dumps(r.certificate()))
    out = check_certificate(cert)
    assert out["valid"] and any("coherent orientation (2" in s for s in out["steps"])
    from kinkcheck.certify.replay import CheckFailed

    bad = json.loads(json.dumps(cert))
    bad["evidence"]["fixed_points"]["0"][0][12] = str(Fraction(bad["evidence"]["fixed_points"]["0"][0][12]) + Fraction(1, 1024))
    with pytest.raises(CheckFailed, match="not a fixed point"):
        check_certificate(bad)


# ----------------------------------------------------------------------------------------------
# random small grids


@st.composite
def grids(draw):
    H, W = draw(st.integers(2, 4)), draw(st.integers(2, 4))
    A = draw(st.integers(2, 4))
    k = draw(st.sampled_from([1, 3]))
    ent = st.sampled_from([0, 0, 0.125, -0.125, 0.25, -0.25, 0.5])
    T = [[[draw(ent) for _ in range(k)] for _ in range(k)] for _ in range(A)]
    rew = st.sampled_from([-1, -0.5, -0.25, 0, 0.25, 0.5, 1])
    R = [[[draw(rew) for _ in range(W)] for _ in range(H)] for _ in range(A)]
    if draw(st.booleans()):  # a duplicated action: ties at every state between the two
        T[-1], R[-1] = T[0], R[0]
    gamma = draw(st.sampled_from([0.25, 0.375]))  # gamma * 9 * 1/2 < 1... enforced below
    scale = max(sum(abs(v) for row in Ta for v in row) for Ta in T)
    if gamma * scale >= 1:
        gamma = 0.0625
    return T, R, gamma, draw(st.sampled_from(list(DT)))


@given(grids())
def test_random_grids_against_reference(case):
    T, R, gamma, dtype = case
    A, H, W = len(R), len(R[0]), len(R[0][0])
    net, ex, ma = semantics(vin(T, R, gamma, dtype=dtype, solver={"method": "iterate", "max_iter": 300, "tol": 0}))
    Rf = [[Fraction(v) for row in Ra for v in row] for Ra in R]
    V, pi = ref_fixed_point(T, Rf, Fraction(gamma), H, W)
    sol = ex.fp[0]
    assert list(sol.z[0]) == V
    assert sol.unique is True  # gamma * max_a sum |T_a| < 1 by construction
    # the exact AD output (proxy: the first maximal action) is the first-maximal selection's gradient
    Q = ref_q(T, Rf, Fraction(gamma), V, _neighbours(H, W, len(T[0])))
    first = [next(a for a in range(A) if Q[s][a] == max(Q[s])) for s in range(H * W)]
    ad = P.backward(net, ex.A, ex, P.resolve_proxies(net))
    assert list(ad) == ref_gradient(T, Rf, Fraction(gamma), H, W, V, first)
    # ties: exactly the states where two actions attain the maximum
    ties = {(t.unit, t.entries) for t in P.ties(net, ex)}
    assert ties == {(s, tuple(a for a in range(A) if Q[s][a] == max(Q[s]))) for s in range(H * W) if sum(q == max(Q[s]) for q in Q[s]) >= 2}
    # machine: the numpy re-run, bit for bit
    dt = DT[dtype]
    Vm, it, res = machine_reference(T, R, gamma, H, W, dt, 300)
    m = ma.fp[0]
    assert m.iterations == it and np.array_equal(np.asarray(m.z[0], dtype=dt), Vm) and m.residual == res
    # vertex test: det(I - gamma P) at every per-state choice, here
    tied = {s: [a for a in range(A) if Q[s][a] == max(Q[s])] for s in range(H * W)}
    tied = {s: v for s, v in tied.items() if len(v) > 1}
    res_v = VI.vertex_test(net.layers[0], ex.params[0][0], Fraction(gamma), first, tied, budget=6)
    if res_v["invertible"] is not None:
        import itertools

        nb = _neighbours(H, W, len(T[0]))
        dets = [_det(policy_matrix(T, Fraction(gamma), nb, [dict(zip(tied, c)).get(s, first[s]) for s in range(H * W)])) for c in itertools.product(*tied.values())]
        assert res_v["invertible"] == (all(x > 0 for x in dets) or all(x < 0 for x in dets))


@given(grids(), st.integers(1, 4))
def test_random_grids_unrolled(case, K):
    """``unroll``: K exact steps in fractions; the exact AD (through the steps, first maximal action)
    equals forward mode through the same steps."""
    T, R, gamma, dtype = case
    A, H, W = len(R), len(R[0]), len(R[0][0])
    k = len(T[0])
    net, ex, ma = semantics(vin(T, R, gamma, dtype=dtype, solver={"method": "unroll", "iterations": K}))
    nb = _neighbours(H, W, k)
    Rf = [[Fraction(v) for row in Ra for v in row] for Ra in R]
    g = Fraction(gamma)
    P_ = A * k * k
    V = [Fraction(0)] * (H * W)
    dV = [[Fraction(0)] * P_ for _ in range(H * W)]
    for _ in range(K):
        Q = ref_q(T, Rf, g, V, nb)
        pick = [next(a for a in range(A) if Q[s][a] == max(Q[s])) for s in range(H * W)]
        new = []
        for s in range(H * W):
            a = pick[s]
            row = []
            for j in range(P_):
                ja, pq = divmod(j, k * k)
                term = g * sum((Fraction(T[a][p][q]) * dV[t][j] for p, q, t in nb[s]), Fraction(0))
                if ja == a:
                    term += g * sum((V[t] for p, q, t in nb[s] if p * k + q == pq), Fraction(0))
                row.append(term)
            new.append(row)
        V, dV = [max(q) for q in Q], new
    assert list(ex.fp[0].z[0]) == V
    ad = P.backward(net, ex.A, ex, P.resolve_proxies(net))
    assert list(ad) == [sum(dV[s][j] for s in range(H * W)) for j in range(P_)]
    Vm, _, _ = machine_reference(T, R, gamma, H, W, DT[dtype], K, tol=-1.0)
    assert np.array_equal(np.asarray(ma.fp[0].z[0], dtype=DT[dtype]), Vm)


# ----------------------------------------------------------------------------------------------
# the vertex test and the machine implicit backward


def test_vertex_test_sign_change_gives_exact_singular_element():
    """A 1x2 grid, k = 3, gamma = 1: both actions look left with weight 1 and stay with weight 1/2;
    action 0 looks right with weight w = 2, action 1 with w = -2. With state 1 on action 0, I - P
    has rows (1/2, -w) and (-1, 1/2): det = 1/4 - w, -7/4 at action 0 and 9/4 at action 1 for state 0."""
    T = [[[0, 0, 0], [1, 0.5, 2], [0, 0, 0]], [[0, 0, 0], [1, 0.5, -2], [0, 0, 0]]]
    net = load(vin(T, [[[0, 0]], [[0, 0]]], 1.0))
    L = net.layers[0]
    Tq = np.array([[[Fraction(v) for v in r] for r in Ta] for Ta in T], dtype=object)
    res = VI.vertex_test(L, Tq, Fraction(1), [0, 0], {0: [0, 1]})
    assert res["invertible"] is False and res["vertices"] == 2
    lam = Fraction(7, 4) / (Fraction(7, 4) + Fraction(9, 4))  # (1 - lam)(-7/4) + lam (9/4) = 0
    assert res["witness"] == {"0": {"0": str(1 - lam), "1": str(lam)}}
    # at the witness, w = 2 (1 - lam) - 2 lam = 1/4: det 1/4 - 1/4 = 0
    assert 2 * (1 - lam) - 2 * lam == Fraction(1, 4)
    ok = VI.vertex_test(L, Tq, Fraction(1, 8), [0, 0], {0: [0, 1]})
    assert ok["invertible"] is True and ok["sign"] == 1


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_machine_implicit_backward_matches_numpy_adjoint(dtype):
    """The machine implicit backward: lambda' = g + (transposed conv of gamma * lambda on pi) from
    lambda = g, re-run here with numpy (each padded position sums its terms in state order)."""
    doc = json.loads((EXAMPLES / "vin_grid_tie.json").read_text())
    doc["dtype"] = dtype
    net = load(doc)
    MA = MachineArith(net.fmt)
    fw = P.forward(net, MA)
    sol = fw.fp[0]
    dt = DT[dtype]
    T = np.array(doc["params"]["T"]["values"], dtype=dt)
    pi = np.argmax(sol.eq[0], axis=-1)
    lam = np.ones(25, dtype=dt)
    g = lam.copy()
    for _ in range(200):
        gp = np.zeros((7, 7), dtype=dt)
        for s in range(25):
            i, j = divmod(s, 5)
            gc = dt(dt(0.5) * lam[s])
            for pq in range(9):
                p, q = divmod(pq, 3)
                gp[i + p, j + q] = dt(gp[i + p, j + q] + dt(T[pi[s], p, q] * gc))
        new = (g + gp[1:6, 1:6].reshape(-1)).astype(dt)
        done = np.abs(new - lam).max() <= 0
        lam = new
        if done:
            break
    gR, _ = VI.backward(MA, net.layers[0], fw.params[0][0], sol, MA.from_floats(np.ones((1, 25))), lambda n, u: None)
    gR = np.asarray(gR, dtype=dt).reshape(2, 25)
    assert np.array_equal(gR[pi, np.arange(25)], lam)
    assert np.all(gR[1 - pi, np.arange(25)] == 0)


# ----------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    "patch, message",
    [
        (lambda d: d["layers"][0].pop("kernel"), "missing kernel"),
        (lambda d: d["layers"][0].update(gamma=-0.5), "gamma must be a finite value >= 0"),
        (lambda d: d["layers"][0].update(solver={"method": "anderson"}), "solver.method must be"),
        (lambda d: d["layers"][0].update(solver={"method": "unroll", "tol": 0}), "unknown key 'tol' for method unroll"),
        (lambda d: d["layers"][0].update(solver={"method": "unroll", "iterations": 0}), "solver.iterations must be an integer"),
        (lambda d: d["params"].update(T={"shape": [2, 2, 2], "values": [[[0, 0], [0, 0]], [[0, 0], [0, 0]]]}), "k odd"),
        (lambda d: d["inputs"].update(shape=[1, 50], values=[[0] * 50]), "expects rewards"),
    ],
)
def test_bad_value_iteration_layers(patch, message):
    doc = json.loads((EXAMPLES / "vin_grid_tie.json").read_text())
    patch(doc)
    with pytest.raises(InputError, match=message) as exc:
        load(doc)
    assert "layers[0] (value_iteration)" in str(exc.value) or "params" in str(exc.value) or "inputs" in str(exc.value)


# ----------------------------------------------------------------------------------------------
# the report: early stop, a block behind a conv2d, undecided cases


def test_early_stop_changes_the_maximal_actions():
    """max_iter = 1: the float run stops at V_1 = max_a R_a; its maximal actions at Q(V_1) are
    compared with the exact fixed point's (both computed here; the float32 values of this one step
    are exact: sums of k/256)."""
    doc = json.loads((EXAMPLES / "vin_grid_tie.json").read_text())
    doc["layers"][0]["solver"] = {"method": "iterate", "max_iter": 1, "tol": 0}
    doc["inputs"]["values"][0][0][4][0] = doc["inputs"]["values"][0][1][4][0] = 4  # a far reward: one step does not see it
    T = doc["params"]["T"]["values"]
    R = [[Fraction(v) for row in Ra for v in row] for Ra in doc["inputs"]["values"][0]]
    nb = _neighbours(5, 5, 3)
    V, _ = ref_fixed_point(T, R, Fraction(1, 2), 5, 5)
    Qx = ref_q(T, R, Fraction(1, 2), V, nb)
    V1 = [max(R[0][s], R[1][s]) for s in range(25)]
    Q1 = ref_q(T, R, Fraction(1, 2), V1, nb)
    arg = lambda Q, s: [a for a in (0, 1) if Q[s][a] == max(Q[s])]  # noqa: E731
    differ = [[0, s] for s in range(25) if arg(Qx, s) != arg(Q1, s)]
    assert differ  # the early stop ends on another pattern
    r = kinkcheck.verify(doc, values=True)
    e = r.implicit[0]
    assert e["machine"]["iterations"] == 1 and e["machine"]["converged"] is False
    assert e["pattern_agrees"] is False and e["pattern_differs"] == differ
    assert {(u["unit"], u["op"]) for u in r.branch_mismatch_units} == {(s, "value_iteration") for _, s in differ}


def test_block_behind_a_conv2d_certificate_recomputes_ad():
    """Rewards from a conv2d (1 input channel -> 2 action maps): the cotangent of R flows into the
    convolution; the independent checker recomputes the AD output with its own model."""
    from kinkcheck.certify.checker import check_certificate

    doc = {
        "kinkcheck": 1,
        "dtype": "float64",
        "params": {"K": {"shape": [2, 1, 1, 1], "values": [[[[0.5]]], [[[-0.25]]]]}, "c": {"shape": [2], "values": [0, 0.125]}, "T": {"shape": [2, 3, 3], "values": [[[0, 0.25, 0], [0, 0, 0], [0, 0, 0]], [[0, 0, 0], [0.125, 0, 0.125], [0, 0, 0]]]}},
        "inputs": {"shape": [2, 1, 3, 3], "values": [[[[1, 0, -1], [0.5, 2, 0], [0, -0.5, 1]]], [[[0, 1, 0], [1, 0, 1], [0, 1, 0]]]]},
        "layers": [{"op": "conv2d", "weight": "K", "bias": "c"}, {"op": "value_iteration", "kernel": "T", "gamma": 0.5, "solver": {"method": "iterate", "max_iter": 100, "tol": 0}}, {"op": "flatten"}],
        "loss": {"op": "sum"},
    }
    r = kinkcheck.verify(doc, values=True)
    assert r.real_ties == [] and r.differentiable is True and r.ad_correct is True
    out = check_certificate(json.loads(json.dumps(r.certificate())))
    assert out["valid"]
    # the reward kernel's gradient, independently: dR_a(s) enters Q_a(s); d sum V / dR_a(s) = lambda_s on pi
    x = doc["inputs"]["values"]
    for n in range(2):
        R = [[Fraction(doc["params"]["K"]["values"][a][0][0][0]) * Fraction(v) + Fraction(doc["params"]["c"]["values"][a]) for row in x[n][0] for v in row] for a in range(2)]
        V, pi = ref_fixed_point(doc["params"]["T"]["values"], R, Fraction(1, 2), 3, 3)
        M = policy_matrix(doc["params"]["T"]["values"], Fraction(1, 2), _neighbours(3, 3, 3), pi)
        lam = _solve([list(col) for col in zip(*M)], [Fraction(1)] * 9)
        if n == 0:
            g0 = [sum(lam[s] * Fraction(v) for s, v in enumerate(v for row in x[n][0] for v in row) if pi[s] == a) for a in range(2)]
        else:
            g0 = [g0[a] + sum(lam[s] * Fraction(v) for s, v in enumerate(v for row in x[n][0] for v in row) if pi[s] == a) for a in range(2)]
    assert [Fraction(v) for v in r.ad[:2]] == g0


def test_undecided_cases_say_why():
    doc = vin([[[0, 0, 0], [1, 0.5, 2], [0, 0, 0]], [[0, 0, 0], [1, 0.5, -2], [0, 0, 0]]], [[[0, 0]], [[0, 0]]], 1.0, solver={"method": "iterate", "max_iter": 5})
    r = kinkcheck.verify(doc)  # V* = 0 with the tie at both states; the box has a singular element
    assert r.differentiable is None and "singular element" in r.reason
    assert r.implicit[0]["samples"][0]["clarke_jacobian_invertible"] is False


# ----------------------------------------------------------------------------------------------
# ties of unrolled blocks: max ties of an ordinary composition, decided by the cells


def unrolled_doc(A, K=2):
    """One state, A actions, k = 1: R_a = u_a (a 1x1 conv2d of the input 1), V_k = max_a (u_a +
    t_a V_{k-1} / 2). At u_a = 1, t_a = 1/2 every action ties at step 1 (Q = 1) and at step 2
    (Q = 1 + 1/4); the parameters are (u_0 .. u_{A-1}, t_0 .. t_{A-1})."""
    return {
        "kinkcheck": 1,
        "dtype": "float64",
        "params": {"u": {"shape": [A, 1, 1, 1], "values": [[[[1]]]] * A}, "T": {"shape": [A, 1, 1], "values": [[[0.5]]] * A}},
        "inputs": {"shape": [1, 1, 1, 1], "values": [[[[1]]]]},
        "layers": [{"op": "conv2d", "weight": "u"}, {"op": "value_iteration", "kernel": "T", "gamma": 0.5, "solver": {"method": "unroll", "iterations": K}}, {"op": "flatten"}],
        "loss": {"op": "sum"},
    }


def _unrolled_tangent(A, d, K=2):
    """f'(w; d) by an exact forward tangent in fractions (written here): at every step the tied
    actions' tangents dQ_a = du_a + (dt_a V + t_a dV) / 2 are compared and the largest is taken."""
    u, t = [Fraction(1)] * A, [Fraction(1, 2)] * A
    du, dt = d[:A], d[A:]
    V, dV = Fraction(0), Fraction(0)
    for _ in range(K):
        Q = [u[a] + t[a] * V / 2 for a in range(A)]
        dQ = [du[a] + (dt[a] * V + t[a] * dV) / 2 for a in range(A)]
        m = max(Q)
        V, dV = m, max(dQ[a] for a in range(A) if Q[a] == m)
    return dV


@pytest.mark.parametrize("A", [2, 3])
def test_unrolled_ties_cells_by_hand(A):
    """By hand: V_1 = max_a u_a, V_2 = max_a (u_a + t_a V_1 / 2), so at w
    f'(w; d) = max_a (du_a + dt_a / 2) + max_a du_a / 4: one cell per (step-1 action c1, step-2
    action c2), gradient e_{u_c1} / 4 + e_{u_c2} + e_{t_c2} / 2, all A^2 of them non-empty; AD (the
    first tied action at both steps) is the cell (0, 0): f is not differentiable, AD is a limiting
    gradient (Clarke)."""
    from kinkcheck.certify.checker import check_certificate
    from kinkcheck.certify.replay import CheckFailed

    r = kinkcheck.verify(unrolled_doc(A), values=True)
    assert [(t["layer"], t["unit"], t["step"], t["entries"]) for t in r.real_ties] == [(1, 0, 1, list(range(A))), (1, 1, 2, list(range(A)))]

    def grad(c1, c2):
        g = [Fraction(0)] * (2 * A)
        g[c1] += Fraction(1, 4)
        g[c2] += 1
        g[A + c2] += Fraction(1, 2)
        return tuple(g)

    want = {grad(c1, c2) for c1 in range(A) for c2 in range(A)}
    assert {tuple(Fraction(v) for v in g) for g in r.decision["limiting_gradients"]} == want
    assert tuple(Fraction(v) for v in r.ad) == grad(0, 0)
    assert (r.differentiable, r.ad_correct, r.ad_in_clarke) == (False, False, True)
    # the directional derivative along rational rays: the hand formula, the forward tangent, and
    # the gradient of some limiting cell
    rng = np.random.default_rng(5)
    for _ in range(10):
        d = [Fraction(int(v), 4) for v in rng.integers(-8, 9, size=2 * A)]
        hand = max(d[a] + d[A + a] / 2 for a in range(A)) + max(d[:A]) / 4
        assert _unrolled_tangent(A, d) == hand
        assert any(sum(x * y for x, y in zip(g, d)) == hand for g in want)
    cert = json.loads(json.dumps(r.certificate()))
    assert check_certificate(cert)["valid"]
    bad = json.loads(json.dumps(cert))
    bad["evidence"]["cells"][0]["gradient"][0] = str(Fraction(bad["evidence"]["cells"][0]["gradient"][0]) + 1)
    with pytest.raises(CheckFailed, match="gradient"):
        check_certificate(bad)


def test_unrolled_tie_identical_actions_is_differentiable():
    """Two actions sharing their reward weight u and kernel entry t (named scalars in inline
    tensors): ties at both steps whose actions have identical functionals (one branch each), so
    f = V_2 = u + t u / 2 is smooth: gradient (1 + t/2, u/2) = (5/4, 1/2) by hand, AD correct."""
    from kinkcheck.certify.checker import check_certificate

    doc = unrolled_doc(2)
    doc["params"] = {"u": {"shape": [], "values": 1}, "t": {"shape": [], "values": 0.5}}
    doc["layers"][0]["weight"] = [[[["u"]]], [[["u"]]]]
    doc["layers"][1]["kernel"] = [[["t"]], [["t"]]]
    r = kinkcheck.verify(doc, values=True)
    assert len(r.real_ties) == 2
    assert (r.differentiable, r.ad_correct, r.ad_in_clarke) == (True, True, True)
    assert [Fraction(v) for v in r.gradient] == [Fraction(5, 4), Fraction(1, 2)]
    assert check_certificate(json.loads(json.dumps(r.certificate())))["valid"]


def test_unrolled_tie_next_to_a_relu():
    """A ReLU after the block at its kink: relu(V_2 - 5/4) with the block above; the cells combine
    the block's max ties with the ReLU's sides: f'(w; d) = max(0, max_a (du_a + dt_a/2) + max_a du_a/4)
    (checked along rays against the forward tangent); the certificate re-validates."""
    from kinkcheck.certify.checker import check_certificate

    doc = unrolled_doc(2)
    doc["params"]["c"] = {"shape": [1], "values": [-1.25]}
    doc["params"]["one"] = {"shape": [1, 1], "values": [[1]]}
    doc["layers"] += [{"op": "linear", "weight": "one", "bias": "c"}, {"op": "relu"}]
    for p in ("c", "one"):
        doc["params"][p]["trainable"] = False
    r = kinkcheck.verify(doc, values=True)
    assert len(r.real_ties) == 3 and r.real_ties[-1]["op"] == "relu"
    lim = {tuple(Fraction(v) for v in g) for g in r.decision["limiting_gradients"]}
    rng = np.random.default_rng(7)
    for _ in range(10):
        d = [Fraction(int(v), 4) for v in rng.integers(-8, 9, size=4)]
        want = max(Fraction(0), _unrolled_tangent(2, d))
        assert any(sum(x * y for x, y in zip(g, d)) == want for g in lim)
    assert (0,) * 4 in lim
    assert r.differentiable is False and r.ad_in_clarke is True
    assert check_certificate(json.loads(json.dumps(r.certificate())))["valid"]


# ----------------------------------------------------------------------------------------------
# three or more tied actions at a fixed point


def test_three_tied_actions_one_state_by_hand():
    """One state, three actions, R_a = u_a (a 1x1 conv2d of the input 1), k = 1, gamma = 1/2, at
    u_a = 1 and t_a = 1/2: V = 1 + V/4, V* = 4/3 with all three actions tied. By hand,
    dV = max_a (du_a + (2/3) dt_a) + dV/4, so f'(w; d) = (4/3) max_a (du_a + (2/3) dt_a): three cells
    (one per action c), gradient (4/3) e_{u_c} + (8/9) e_{t_c}; the three vertex determinants
    1 - 1/4 are positive. AD (the first action) is one of them: not differentiable, Clarke."""
    from kinkcheck.certify.checker import check_certificate
    from kinkcheck.certify.replay import CheckFailed

    doc = unrolled_doc(3)
    doc["layers"][1]["solver"] = {"method": "iterate", "max_iter": 200, "tol": 0}
    r = kinkcheck.verify(doc, values=True)
    assert [(t["layer"], t["unit"], t["entries"]) for t in r.real_ties] == [(1, 0, [0, 1, 2])]
    s0 = r.implicit[0]["samples"][0]
    assert s0["vertices"] == 3 and s0["clarke_jacobian_invertible"] is True and s0["determinant_sign"] == 1
    assert [Fraction(v) for v in r.implicit[0]["z"][0]] == [Fraction(4, 3)]

    def grad(c):
        g = [Fraction(0)] * 6
        g[c], g[3 + c] = Fraction(4, 3), Fraction(8, 9)
        return tuple(g)

    assert {tuple(Fraction(v) for v in g) for g in r.decision["limiting_gradients"]} == {grad(c) for c in range(3)}
    assert tuple(Fraction(v) for v in r.ad) == grad(0)
    assert (r.differentiable, r.ad_correct, r.ad_in_clarke) == (False, False, True)
    cert = json.loads(json.dumps(r.certificate()))
    out = check_certificate(cert)
    assert out["valid"] and any("coherent orientation (3" in s for s in out["steps"])
    bad = json.loads(json.dumps(cert))
    bad["evidence"]["cells"][1]["witness"] = bad["evidence"]["cells"][0]["witness"]
    with pytest.raises(CheckFailed, match="witness"):
        check_certificate(bad)


def test_three_tied_actions_coupled_states_against_reference():
    """A 1x2 grid, k = 3, three actions with one kernel and one reward map (every state ties all
    three at V*), the kernels trainable: along rational rays the exact directional derivative is
    found here by trying every selection (dV = (I - gamma P_sel)^{-1} r_sel, consistent when each
    state's selected dQ is the largest of its tied ones); it must be g . d for a limiting gradient
    g that is this test's own gradient of that selection; AD is the first actions' gradient."""
    from kinkcheck.certify.checker import check_certificate

    Ta = [[0, 0.25, 0], [0.125, 0.25, 0.25], [0, 0, 0.125]]
    T = [Ta, Ta, Ta]
    R = [[[0.5, -0.25]]] * 3
    g = Fraction(1, 2)
    r = kinkcheck.verify(vin(T, R, 0.5, dtype="float64"), values=True)
    Rf = [[Fraction(v) for v in row[0]] for row in R]
    V, _ = ref_fixed_point(T, Rf, g, 1, 2)
    nb = _neighbours(1, 2, 3)
    assert [(t["unit"], t["entries"]) for t in r.real_ties] == [(0, [0, 1, 2]), (1, [0, 1, 2])]
    assert r.implicit[0]["samples"][0]["vertices"] == 9
    lim = {tuple(Fraction(v) for v in gr) for gr in r.decision["limiting_gradients"]}
    assert [Fraction(v) for v in r.ad] == ref_gradient(T, Rf, g, 1, 2, V, [0, 0])
    rng = np.random.default_rng(11)
    hit = set()
    for _ in range(12):
        d = [Fraction(int(v), 8) for v in rng.integers(-8, 9, size=27)]
        dT = [[[d[a * 9 + p * 3 + q] for q in range(3)] for p in range(3)] for a in range(3)]
        for sel in [(a, b) for a in range(3) for b in range(3)]:
            rr = [g * sum((dT[sel[s]][p][q] * V[t] for p, q, t in nb[s]), Fraction(0)) for s in range(2)]
            dV = _solve(policy_matrix(T, g, nb, sel), rr)
            dQ = [[g * sum((dT[a][p][q] * V[t] + Fraction(T[a][p][q]) * dV[t] for p, q, t in nb[s]), Fraction(0)) for a in range(3)] for s in range(2)]
            if all(dQ[s][sel[s]] == max(dQ[s]) for s in range(2)):
                break
        fd = sum(dV)
        cell = tuple(ref_gradient(T, Rf, g, 1, 2, V, list(sel)))
        assert sum(x * y for x, y in zip(cell, d)) == fd and cell in lim
        hit.add(sel)
    assert len(hit) >= 3 and r.differentiable is False and r.ad_in_clarke is True
    assert check_certificate(json.loads(json.dumps(r.certificate())))["valid"]


def test_fixed_point_tie_next_to_a_relu_tie():
    """An iterated block with a tie and a ReLU tie after it, decided jointly: one state, two
    actions, R_a = u_a, t_a = 1, gamma = 1/2 at u_a = 1: V* = 1 + V*/2 = 2 with both actions
    tied, then relu(V* - 2). By hand dV = 2 max_a (du_a + dt_a), f'(w; d) = max(0, dV): limiting
    gradients 0 and 2 e_{u_c} + 2 e_{t_c}; AD = 0 (relu'(0) = 0), a limiting gradient."""
    from kinkcheck.certify.checker import check_certificate

    doc = unrolled_doc(2)
    doc["params"]["T"]["values"] = [[[1]], [[1]]]
    doc["params"]["c"] = {"shape": [1], "values": [-2], "trainable": False}
    doc["params"]["one"] = {"shape": [1, 1], "values": [[1]], "trainable": False}
    doc["layers"][1]["solver"] = {"method": "iterate", "max_iter": 200, "tol": 0}
    doc["layers"] += [{"op": "linear", "weight": "one", "bias": "c"}, {"op": "relu"}]
    r = kinkcheck.verify(doc, values=True)
    assert [(t["layer"], t["op"]) for t in r.real_ties] == [(1, "value_iteration"), (4, "relu")]
    lim = {tuple(Fraction(v) for v in g) for g in r.decision["limiting_gradients"]}
    assert lim == {(0,) * 4, (2, 0, 2, 0), (0, 2, 0, 2)}
    assert [Fraction(v) for v in r.ad] == [0] * 4
    assert (r.differentiable, r.ad_correct, r.ad_in_clarke) == (False, False, True)
    assert check_certificate(json.loads(json.dumps(r.certificate())))["valid"]


def test_unrolled_corridor_example():
    """proofs/examples/vin_unrolled_tie.json by hand: V_1 = R = (1, 0, 1) (ties with zero tangents:
    the rewards are inputs); at step 2 state s's window of V_1 is (0, 1, 0), (1, 0, 1), (0, 1, 0), so
    dQ_a(s) = (1/2) (dT_a . window_s) and both actions tie (Q = 9/8, 1/4, 9/8). States 0 and 2 have
    one functional (dT_0 - dT_1 at the centre): they pick one action c, state 1 picks c1; the
    limiting gradients are (1/2) (2 e_{c, centre} + e_{c1, left} + e_{c1, right}), AD is c = c1 = 0."""
    from kinkcheck.certify.checker import check_certificate

    r = kinkcheck.verify(str(EXAMPLES / "vin_unrolled_tie.json"), values=True)
    assert [(t["unit"], t["step"], t["exact"]) for t in r.real_ties] == [(0, 1, "1"), (1, 1, "0"), (2, 1, "1"), (3, 2, "9/8"), (4, 2, "1/4"), (5, 2, "9/8")]

    def grad(c, c1):
        g = [Fraction(0)] * 18
        g[9 * c + 4] += 1
        g[9 * c1 + 3] += Fraction(1, 2)
        g[9 * c1 + 5] += Fraction(1, 2)
        return tuple(g)

    want = {grad(c, c1) for c in (0, 1) for c1 in (0, 1)}
    assert tuple(Fraction(v) for v in r.ad) == grad(0, 0)
    assert {tuple(Fraction(v) for v in g) for g in r.decision["limiting_gradients"]} <= want
    assert (r.differentiable, r.ad_correct, r.ad_in_clarke) == (False, False, True)
    assert check_certificate(json.loads((EXAMPLES.parent / "certificates" / "vin_unrolled_tie.cert.json").read_text()))["valid"]


def _grid_tangent(T, R, gamma, H, W, K, d):
    """(f, f'(w; d)) of f = sum V_K for an unrolled block, rewards fixed, kernels moved along d: an
    exact forward tangent in fractions, the largest tangent among the tied actions at every step."""
    k = len(T[0])
    nb = _neighbours(H, W, k)
    A, S = len(T), H * W
    dT = [[[d[a * k * k + p * k + q] for q in range(k)] for p in range(k)] for a in range(A)]
    V, dV = [Fraction(0)] * S, [Fraction(0)] * S
    for _ in range(K):
        Q = ref_q(T, R, gamma, V, nb)
        dQ = [[gamma * sum((dT[a][p][q] * V[t] + Fraction(T[a][p][q]) * dV[t] for p, q, t in nb[s]), Fraction(0)) for a in range(A)] for s in range(S)]
        V, dV = [max(Q[s]) for s in range(S)], [max(dQ[s][a] for a in range(A) if Q[s][a] == max(Q[s])) for s in range(S)]
    return sum(V), sum(dV)


@settings(max_examples=200 if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else 6, deadline=None)
@given(grids(), st.sampled_from([1, 2]))
def test_random_unrolled_ties_cells_against_forward_tangent(case, K):
    """Random small grids with a duplicated action (ties at every state of step 1 and often later):
    every cell of the decision (certificate evidence) has f'(w; witness) = gradient . witness by
    this test's own forward tangent, and the certificate re-validates."""
    from kinkcheck.certify.checker import check_certificate

    T, R, gamma, dtype = case
    T[-1], R[-1] = T[0], R[0]
    H, W = len(R[0]), len(R[0][0])
    if H * W > 6:
        R = [[row[:2] for row in Ra[:2]] for Ra in R]
        H, W = 2, 2
    r = kinkcheck.verify(vin(T, R, gamma, dtype=dtype, solver={"method": "unroll", "iterations": K}), values=True)
    Rf = [[Fraction(v) for row in Ra for v in row] for Ra in R]
    cert = r.certificate()
    for c in cert["evidence"].get("cells", []):
        d = [Fraction(v) for v in c["witness"]]
        assert _grid_tangent(T, Rf, Fraction(gamma), H, W, K, d)[1] == sum(Fraction(g) * x for g, x in zip(c["gradient"], d))
    assert r.real_ties and check_certificate(json.loads(json.dumps(cert)))["valid"]
