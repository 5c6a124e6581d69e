"""Value-iteration blocks (value-iteration networks): V = max_a (R_a + gamma * conv_a(V)), in both semantics.

A layer (read by ``network.py``) ``{"op": "value_iteration", "kernel": T, "gamma": g, "solver":
{"method": "iterate", "max_iter": 100, "tol": 0} | {"method": "unroll", "iterations": K}, "init":
"zeros"}`` maps rewards R [A, H, W] (the layer input: one reward map per action) to values V [H, W]
(docs/implicit.md). T [A, k, k] (k odd) holds one transition kernel per action; conv_a is the
cross-correlation of V with T[a], "same" size, zero padding: conv_a(V)[i, j] = sum_{p, q} T[a, p, q]
V[i + p - c, j + q - c] with c = (k - 1) / 2 and V = 0 off the grid. States are numbered row-major
(s = i W + j): conv_a(V)(s) = (C_a V)(s) with a sparse S x S matrix C_a.

Machine semantics (one Bellman step, the dtype's arithmetic): C = the dot product of T[a] (row-major
p, q) with the zero-padded window of V at s, padding zeros included (as ``conv2d`` with padding);
Q_a(s) = R_a(s) + (gamma * C_a(s)); V'(s) = max_a Q_a(s), the first maximal action. ``iterate``:
from V = 0 until max_s |V' - V| <= tol (over the batch) or ``max_iter`` steps, the output the last
iterate; Q* is evaluated once more at it (ties are read there). ``unroll``: exactly K steps; ties
are read at every step.

Exact semantics: ``unroll`` iterates K times in rationals. ``iterate`` computes the exact fixed point
V* = max_a (R_a + gamma C_a V*): on a policy pi (one action per state) it is the linear system
(I - gamma P_pi) V = R_pi with P_pi's row s = C_pi(s)'s row s, solved in rationals (FLINT, the solver
of ``fixedpoint.py``). The first policy is the greedy policy of a binary64 run; a policy is accepted
when every chosen action attains the exact maximum (ties included), otherwise the greedy policy of
the solution is next (policy iteration; at most ``fixedpoint.PATTERN_ROUNDS`` rounds). Uniqueness is
proved when gamma * max_a sum_pq |T[a, p, q]| < 1 (the Bellman operator is then a contraction in
the max norm).

Backward: a cotangent g on V. At a tie the framework's max backward sends the gradient to one action:
the proxy is the first tied action (``"left"``: the first, ``"right"``: the last tied action, an int:
that action). One step's backward: H = g on the chosen action (zero elsewhere); R receives H,
gC = gamma * H, T[a, p, q] receives sum_s gC_a(s) Vpad(s + (p, q)) (one term per state, summed per
sample in state order - unrolled: steps k = K .. 1, then states - and the samples' sums in sample
order), and the previous V receives the transposed convolution of gC (each padded position sums its terms in
state order, as ``conv2d``'s input gradient). Implicit (``iterate``): lambda solves
(I - gamma P_pi)^T lambda = g (exact: a rational solve; machine: lambda' = g + step-backward(lambda)
from lambda = g, with the layer's ``max_iter`` and ``tol``), then one step's backward with
H = lambda on pi. Unrolled: the step backward through every recorded step, k = K .. 1.

This module knows nothing of the network program: ``program.py`` calls it with the arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from gmpy2 import mpq

from .errors import Undecided
from .fixedpoint import GUESS_ITERATIONS, PATTERN_ROUNDS, Solution, _det, _fmpq_mat, _mpq, _solve


@dataclass
class VISolution(Solution):
    """A value-iteration block's result. ``z`` = V [N, S]; ``a`` = the tie gaps [N, S]
    (Q_last tied - Q_first tied: 0 at every state, the coordinate a tie's tangent functional reads);
    ``q`` = Q [N, S, A] at the output; ``eq`` its tie mask; ``steps`` = (V_{k-1}, eq_k, Q_k) per step."""

    q: object = None
    eq: object = None
    steps: list = field(default_factory=list)


def geometry(L):
    """(cols [S, k*k] padded positions of each state's window, interior [S], npad)."""
    vi = L.vi
    H, W = vi.grid
    k = vi.k
    c = (k - 1) // 2
    Wp = W + 2 * c
    i, j = np.divmod(np.arange(H * W), W)
    p, q = np.divmod(np.arange(k * k), k)
    cols = (i[:, None] + p[None, :]) * Wp + (j[:, None] + q[None, :])
    interior = (i + c) * Wp + (j + c)
    return cols, interior, (H + 2 * c) * Wp


def _qvalues(A, L, T, R, gamma, V):
    """Q [N, S, A] = R + gamma * C(V), C by the spec's dot order."""
    cols, interior, npad = geometry(L)
    N = V.shape[0]
    Vp = A.zeros((N, npad))
    Vp[:, interior] = V
    C = A.dot(T.reshape(T.shape[0], -1), Vp[:, cols])  # [N, S, A]
    return A.add(R, A.mul(gamma, C))


def rewards(A, L, x):
    """The layer input [N, A, H, W] as R [N, S, A]."""
    N = x.shape[0]
    return np.ascontiguousarray(np.swapaxes(x.reshape(N, L.vi.actions, -1), 1, 2))


def _gaps(A, q, eq):
    first = np.argmax(eq, axis=-1)
    last = eq.shape[-1] - 1 - np.argmax(eq[..., ::-1], axis=-1)
    qf = np.take_along_axis(q, first[..., None], -1)[..., 0]
    ql = np.take_along_axis(q, last[..., None], -1)[..., 0]
    return A.sub(ql, qf)


def forward(A, L, x, T) -> VISolution:
    """The block's values in arithmetic ``A`` (exact or machine) for the rewards x [N, A, H, W]."""
    if getattr(A, "symbolic", False) or not (A.exact or A.name.startswith("machine")):
        raise ValueError("value_iteration layers are evaluated only in the exact and machine semantics (not encoded for search)")
    vi = L.vi
    gamma = A.const(mpq(vi.gamma))
    R = rewards(A, L, x)
    N, S = R.shape[0], R.shape[1]
    if A.exact and vi.method == "iterate":
        return _exact_fixed_point(A, L, R, T, gamma)
    V = A.zeros((N, S))
    K = vi.iterations if vi.method == "unroll" else vi.max_iter
    tol = A.const(vi.tol)
    res, it, steps = None, 0, []
    while it < K:
        q = _qvalues(A, L, T, R, gamma, V)
        Vn, eq = A.max_first(q)
        steps.append((V, eq, q))
        it += 1
        if not A.exact:
            with np.errstate(all="ignore"):
                d = np.abs(A.sub(Vn, V))
            res = d.max() if d.size else A.const(0)
        V = Vn
        if vi.method == "iterate" and res <= tol:
            break
    q = _qvalues(A, L, T, R, gamma, V)
    _, eq = A.max_first(q)
    conv = None if vi.method == "unroll" else bool(res <= tol)
    return VISolution(z=V, a=_gaps(A, q, eq), q=q, eq=eq, steps=steps, iterations=it, residual=res, converged=conv)


def transition(L, T, policy) -> list:
    """P_pi [S][S] (rationals): row s is C_{policy[s]}'s row s."""
    cols, interior, npad = geometry(L)
    S = len(policy)
    pos = {int(p): s for s, p in enumerate(interior)}
    Tq = np.asarray(T, dtype=object).reshape(T.shape[0], -1)
    P = [[mpq(0)] * S for _ in range(S)]
    for s in range(S):
        for pq, p in enumerate(cols[s]):
            t = pos.get(int(p))
            if t is not None:
                P[s][t] += mpq(Tq[policy[s], pq])
    return P


def contraction(T, gamma) -> bool:
    Tq = np.asarray(T, dtype=object).reshape(T.shape[0], -1)
    return mpq(gamma) * max(sum((abs(mpq(v)) for v in row), mpq(0)) for row in Tq) < 1


def _exact_fixed_point(A, L, R, T, gamma) -> VISolution:
    from .formats import FLOAT64
    from .machine import MachineArith

    N, S, nA = R.shape
    M64 = MachineArith(FLOAT64)
    R64, T64, g64 = np.asarray(R, dtype=float), np.asarray(T, dtype=float), M64.const(mpq(gamma))
    V64 = np.zeros((N, S))
    for _ in range(GUESS_ITERATIONS):
        Vn, _ = M64.max_first(_qvalues(M64, L, T64, R64, g64, V64))
        if np.array_equal(Vn, V64):
            break
        V64 = Vn
    _, eq64 = M64.max_first(_qvalues(M64, L, T64, R64, g64, V64))
    guess = np.argmax(eq64, axis=-1)
    V = np.empty((N, S), dtype=object)
    rounds = 0
    for n in range(N):
        pi = [int(v) for v in guess[n]]
        for _ in range(PATTERN_ROUNDS):
            rounds += 1
            P = transition(L, T, pi)
            M = [[(1 if i == j else 0) - gamma * P[i][j] for j in range(S)] for i in range(S)]
            sol = _solve(M, [R[n, s, pi[s]] for s in range(S)])
            if sol is None:
                raise Undecided(f"layer {L.index} sample {n}: I - gamma P is singular on the policy {pi}")
            q = _qvalues(A, L, T, R[n : n + 1], gamma, np.array([sol], dtype=object))[0]
            best = [max(q[s]) for s in range(S)]
            if all(q[s, pi[s]] == best[s] for s in range(S)):
                break
            pi = [next(a for a in range(nA) if q[s, a] == best[s]) for s in range(S)]
        else:
            raise Undecided(f"layer {L.index} sample {n}: no consistent policy in {PATTERN_ROUNDS} rounds (the exact fixed point may not exist)")
        V[n] = sol
    q = _qvalues(A, L, T, R, gamma, V)
    m, eq = A.max_first(q)
    if not all(a == b for a, b in zip(m.reshape(-1), V.reshape(-1))):  # pragma: no cover - guarded by the policy check
        raise Undecided(f"layer {L.index}: the solved policy does not satisfy V = max_a (R_a + gamma C_a V)")
    return VISolution(z=V, a=_gaps(A, q, eq), q=q, eq=eq, unique=True if contraction(T, gamma) else None, pattern_rounds=rounds)


# ----------------------------------------------------------------------------------------------
# backward


def chosen(L, eq, choice_of, n_offset=0):
    """[N, S] the action that takes the gradient at every state: the only maximal one, or at a tie
    the choice (None: the proxy, the first tied action; "left"/"right": first/last; int: that one)."""
    first = np.argmax(eq, axis=-1)
    out = first.copy()
    cnt = eq.sum(axis=-1)
    for n, s in zip(*np.nonzero(cnt >= 2)):
        c = choice_of(int(n), int(s) + n_offset)
        if c == "right":
            out[n, s] = eq.shape[-1] - 1 - int(np.argmax(eq[n, s, ::-1]))
        elif isinstance(c, (int, np.integer)) and not isinstance(c, bool):
            if not (0 <= c < eq.shape[-1] and eq[n, s, c]):
                raise ValueError(f"layer {L.index} sample {n} state {s}: action {c} is not a maximal action")
            out[n, s] = int(c)
        elif c not in (None, "left"):
            raise ValueError(f"layer {L.index} sample {n} state {s}: invalid choice {c!r}")
    return out


def _onehot(A, lam, pi, nA):
    H = A.zeros(lam.shape + (nA,))
    np.put_along_axis(H, pi[..., None], lam[..., None], -1)
    return H


def step_backward(A, L, T, gamma, H, Vprev):
    """One Bellman step's backward for the Q-cotangent H [N, S, A]: (terms of T [N, A*k*k, S],
    cotangent on the previous V [N, S])."""
    cols, interior, npad = geometry(L)
    N, S, nA = H.shape
    gC = A.mul(gamma, H)
    Vp = A.zeros((N, npad))
    Vp[:, interior] = Vprev
    win = Vp[:, cols]  # [N, S, kk]
    terms = A.mul(np.swapaxes(gC, 1, 2)[:, :, None, :], np.swapaxes(win, 1, 2)[:, None, :, :])  # [N, A, kk, S]
    T2 = T.reshape(nA, -1)
    gcols = A.dot(np.ascontiguousarray(T2.T), gC)  # [N, S, kk]
    gV = A.seq_accumulate(gcols.reshape(N, -1), cols.reshape(-1), npad)[:, interior]
    return terms.reshape(N, -1, S), gV


def implicit_cotangent(A, L, T, gamma, sol, g, pi, h=None):
    """The Q-cotangent H [N, S, A] of the implicit backward: lambda = (I - gamma P_pi)^{-T} g, H =
    lambda on pi. ``h`` (exact only): a cotangent on Q itself (a tie gap's functional): g is then
    its step-backward and H = h + lambda on pi."""
    N, S, nA = sol.q.shape
    if h is not None:
        _, g = step_backward(A, L, T, gamma, h, sol.z)
    if A.exact:
        lam = np.empty((N, S), dtype=object)
        for n in range(N):
            P = transition(L, T, [int(a) for a in pi[n]])
            MT = [[(1 if i == j else 0) - gamma * P[j][i] for j in range(S)] for i in range(S)]
            x = _solve(MT, list(g[n]))
            if x is None:
                raise Undecided(f"layer {L.index} sample {n}: I - gamma P is singular at the fixed point: no implicit derivative")
            lam[n] = x
    else:
        lam, tolv = g, A.const(L.vi.tol)
        for _ in range(L.vi.max_iter):
            _, gv = step_backward(A, L, T, gamma, _onehot(A, lam, pi, nA), sol.z)
            new = A.add(g, gv)
            with np.errstate(all="ignore"):
                res = np.abs(A.sub(new, lam)).max() if new.size else A.const(0)
            lam = new
            if res <= tolv:
                break
    H = _onehot(A, lam, pi, nA)
    return A.add(h, H) if h is not None else H


def backward(A, L, T, sol, g, choice_of, *, unrolled=False, gaps=None, q_at=None):
    """(cotangent on R [N, A, H, W], T's gradient per sample [N, A*k*k, 1]); ``g`` on V [N, S], or
    (``gaps`` [N, S], exact fixed points only: a tie functional) a cotangent on Q_last - Q_first
    (``gaps`` [N, S, A]: on Q* itself, e.g. Q_chosen - Q_other at a tie of three or more actions),
    or (``q_at`` = (k, h), unrolled blocks: a tie functional) the cotangent h [N, S, A] on the
    Q values of step k + 1 (``sol.steps[k]``): the backward starts there and runs k, ..., 1.
    Each sample's terms of an entry of T (one per state; unrolled: per step k = K .. 1, then state)
    are summed in that order; the parameter gradient then sums the samples in sample order."""
    gamma = A.const(mpq(L.vi.gamma))
    N, S, nA = sol.q.shape
    h = None
    if gaps is not None and gaps.ndim == 3:  # a cotangent on Q* itself [N, S, A]
        h, g = gaps, A.zeros(gaps.shape[:2])
    elif gaps is not None:  # +gaps on the last tied action, -gaps on the first
        first = np.argmax(sol.eq, axis=-1)
        last = nA - 1 - np.argmax(sol.eq[..., ::-1], axis=-1)
        h = A.zeros(sol.eq.shape)
        np.put_along_axis(h, last[..., None], gaps[..., None], -1)
        np.put_along_axis(h, first[..., None], A.neg(gaps)[..., None], -1)
        g = A.zeros(gaps.shape)
    if L.vi.method == "iterate" and not unrolled:
        pi = chosen(L, sol.eq, choice_of)
        H = implicit_cotangent(A, L, T, gamma, sol, g, pi, h)
        terms, _ = step_backward(A, L, T, gamma, H, sol.z)
        return np.swapaxes(H, 1, 2).reshape((N,) + L.in_shape), A.seq_sum(terms, axis=-1)[..., None]
    if h is not None:
        raise ValueError("tie functionals are computed for the fixed-point mode only")
    gR, all_terms, lam = None, [], g
    K = len(sol.steps)
    if q_at is not None:  # start inside the block: h on Q_{k0+1}, then the steps k0, ..., 1
        if L.vi.method != "unroll":
            raise ValueError("Q cotangents are seeded in unrolled blocks only")
        k0, gR = q_at
        terms, lam = step_backward(A, L, T, gamma, gR, sol.steps[k0][0])
        all_terms.append(terms)
        K = k0
    for k in range(K - 1, -1, -1):
        Vprev, eq, _ = sol.steps[k]
        pi = chosen(L, eq, choice_of, n_offset=k * S) if L.vi.method == "unroll" else np.argmax(eq, axis=-1)
        H = _onehot(A, lam, pi, nA)
        terms, lam = step_backward(A, L, T, gamma, H, Vprev)
        all_terms.append(terms)
        gR = H if gR is None else A.add(gR, H)
    if gR is None:
        gR = A.zeros((N, S, nA))
        return np.swapaxes(gR, 1, 2).reshape((N,) + L.in_shape), A.zeros((N, nA * L.vi.k**2, 1))
    return np.swapaxes(gR, 1, 2).reshape((N,) + L.in_shape), A.seq_sum(np.concatenate(all_terms, axis=-1), axis=-1)[..., None]


# ----------------------------------------------------------------------------------------------
# the Clarke Jacobian of V -> max_a (R_a + gamma C_a V) at V*: I - gamma P over per-state selections


def _schur_dets(base, states, rows, tied, sizes):
    """Every vertex determinant through the Schur complement of the untied block D (rows and
    columns of the untied states): det M = det D * det(A - B D^{-1} C), where only the tied rows
    (A, B) change, so each tied row is reduced once to a k-vector and a vertex costs a k x k
    determinant. None when D is singular (or there is no tie)."""
    import flint

    if not states:
        return None
    S = len(base)
    other = [j for j in range(S) if j not in set(states)]
    if other:
        D = _fmpq_mat([[base[i][j] for j in other] for i in other])
        dD = D.det()
        if dD == 0:
            return None
        X = D.solve(_fmpq_mat([[base[i][j] for j in states] for i in other]))
    else:
        dD = flint.fmpq(1)
    red = {}
    for (s, a), r in rows.items():
        A = _fmpq_mat([[r[j] for j in states]])
        red[(s, a)] = A - _fmpq_mat([[r[j] for j in other]]) * X if other else A
    k = len(states)
    dets = {}
    for idx in np.ndindex(*sizes):
        M = flint.fmpq_mat(k, k)
        for t, (s, i) in enumerate(zip(states, idx)):
            rr = red[(s, tied[s][i])]
            for j in range(k):
                M[t, j] = rr[0, j]
        dets[idx] = _mpq(dD * M.det())
    return dets


def vertex_test(L, T, gamma, pi, tied: dict, budget: int = 20) -> dict:
    """Is I - gamma P invertible for every P whose row s is C_pi(s)'s row off the tied states and a
    convex combination of the tied actions' rows at a tied state s (``tied[s]`` = its actions)?
    det(I - gamma P) is affine in each tied state's row, hence in its selection weights: it keeps
    one sign on the box (a product of simplices) iff the prod_s |tied[s]| vertex determinants (one
    action per tied state) are non-zero with one sign; two vertices with opposite signs that differ
    at one state give an exact singular element on the edge between them. Returns {"invertible",
    "vertices", "sign", "witness": {state: {action: weight}} | None, "reason"}."""
    states = sorted(tied)
    sizes = [len(tied[s]) for s in states]
    nv = int(np.prod(sizes, dtype=object)) if states else 1
    if nv > 2**budget:
        return {"invertible": None, "vertices": nv, "sign": None, "witness": None, "reason": f"{nv} vertices exceed the budget 2^{budget}"}
    S = len(pi)
    g = mpq(gamma)
    mats = {}  # action -> C_a

    def row(s, a):
        if a not in mats:
            mats[a] = transition(L, T, [a] * S)
        return [(1 if s == j else 0) - g * mats[a][s][j] for j in range(S)]

    base = [row(s, int(pi[s])) for s in range(S)]
    dets = _schur_dets(base, states, {(s, a): row(s, a) for s in states for a in tied[s]}, tied, sizes)
    if dets is None:  # the untied block is singular: every vertex's full determinant
        dets = {}
        for idx in np.ndindex(*sizes) if states else [()]:
            M = list(base)
            for s, i in zip(states, idx):
                M[s] = row(s, tied[s][i])
            dets[idx] = _det(M)
    signs = {(v > 0) - (v < 0) for v in dets.values()}
    if signs in ({1}, {-1}):
        return {"invertible": True, "vertices": nv, "sign": signs.pop(), "witness": None, "reason": f"all {nv} vertex determinants have one sign"}
    for idx, v in dets.items():
        if v == 0:
            return {"invertible": False, "vertices": nv, "sign": None, "witness": {str(s): {str(tied[s][i]): "1"} for s, i in zip(states, idx)}, "reason": "a vertex determinant is zero"}
    for idx, v in dets.items():
        for t, s in enumerate(states):
            for j in range(sizes[t]):
                other_idx = idx[:t] + (j,) + idx[t + 1 :]
                w = dets[other_idx]
                if (w > 0) != (v > 0):
                    lam = v / (v - w)  # det is affine along the edge: (1 - lam) v + lam w = 0
                    wit = {str(s2): {str(tied[s2][i]): "1"} for s2, i in zip(states, idx)}
                    wit[str(s)] = {str(tied[s][idx[t]]): str(1 - lam), str(tied[s][j]): str(lam)}
                    return {"invertible": False, "vertices": nv, "sign": None, "witness": wit, "reason": f"the determinant changes sign along an edge at state {s}: zero at weight {lam} on action {tied[s][j]}"}
    # no single-state edge changes sign although two vertices differ in sign: impossible (a path of
    # single-state changes joins any two vertices)
    return {"invertible": None, "vertices": nv, "sign": None, "witness": None, "reason": "no sign change found"}  # pragma: no cover

