"""Fixed-point (deep equilibrium) layers: z* = act(W z* + U x + b), in both semantics.

A layer (read by ``network.py``) ``{"op": "fixed_point", "cell": {"weight": W, "input_weight": U, "bias": b, "activation":
{"op": "relu"}}, "solver": {"method": "iterate", "max_iter": 100, "tol": 0}, "init": "zeros"}`` maps
a vector x [in] to the fixed point z* [n] of z -> act(W z + U x + b) (docs/implicit.md).

Machine semantics: the solver as it runs in the dtype. z_0 = 0; each iteration computes
a = (W z + U x) + b, with W z and U x dot products in the spec's order (as a linear layer), then
z' = act(a) by the activation's per-piece programs; it stops when max_i |z'_i - z_i| <= tol (in the
dtype) or after max_iter iterations. The layer's output is the last iterate z*; its
pre-activation, where ties are read and the backward linearises, is a* = (W z* + U x) + b evaluated
once more. The iteration runs on the whole batch and stops on the batch's largest change.

Exact semantics: the exact fixed point, for piecewise-linear activations. The activation pattern of
a binary64 run of the same iteration is the first guess; on a pattern, act is affine (slope s_i,
offset c_i), so z = S (W z + U x + b) + c is a linear system, solved in rationals. The pattern is
accepted when every unit's exact pre-activation lies on its guessed piece (a unit exactly on a kink
belongs to both neighbouring pieces) - then z* = act(a*) holds exactly, which is checked once more;
otherwise the located pieces become the next guess (at most ``PATTERN_ROUNDS`` rounds, else the
exact run is undecided). Uniqueness is proved when ||W||_inf * Lip(act) < 1 (a contraction).

Backward (implicit, as DEQ implementations differentiate): with the cotangent g on z*, lambda solves
(I - D W)^T lambda = g, D = diag(act'(a*)) with the convention's proxies at ties; mu = D lambda; then
W gets mu z*^T, U gets mu x^T, b gets mu and the input gets U^T mu. Exact: a rational solve (a
singular I - D W is reported as undecided). Machine: the adjoint iteration lambda' = g + W^T (D
lambda) from lambda = g, in the dtype, with the layer's solver settings.

This module knows nothing of the network program: ``program.py`` calls it with the arithmetic and
the two helpers it needs (the activation's values and derivatives).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from gmpy2 import mpq

from .errors import Undecided

PATTERN_ROUNDS = 64
GUESS_ITERATIONS = 10_000  # binary64 iterations for the exact semantics' first pattern guess


@dataclass
class Solution:
    """One semantics' fixed point of one layer (for the report's ``implicit`` section)."""

    z: object  # [N, n]
    a: object  # [N, n] pre-activation at z
    iterations: int | None = None  # machine: iterations run
    residual: object = None  # machine: the last max |z' - z| (dtype value)
    iterates: list = field(default_factory=list)  # machine: (z_{k-1}, a_k, piece_k, kink_k) per iteration (for unrolled AD)
    converged: bool | None = None  # machine: residual <= tol
    unique: bool | None = None  # exact: proved unique (contraction), None: not proved
    pattern_rounds: int | None = None  # exact: patterns tried
    notes: list = field(default_factory=list)
    vertex: dict = field(default_factory=dict)  # sample -> vertex_test result (computed once)


# ----------------------------------------------------------------------------------------------
# forward


def _affine_pieces(A, act):
    """(slope, offset) of every piece; Undecided for a piece that is not affine."""
    out = []
    pts = np.array([mpq(0), mpq(1), mpq(2)], dtype=object)
    for pc in act.pieces:
        try:
            v = np.asarray(pc.value_program(pts, A), dtype=object)
        except TypeError:
            raise Undecided(f"{act.name} is transcendental: no exact fixed point") from None
        if v.shape != (3,):
            v = np.full(3, v.reshape(-1)[0] if v.size else mpq(0), dtype=object)
        s, c = v[1] - v[0], v[0]
        if v[2] != c + 2 * s:
            raise Undecided(f"{act.name} is not piecewise linear: the exact fixed point is not computed")
        out.append((mpq(s), mpq(c)))
    return out


def lipschitz(act) -> mpq:
    from .exact import ExactArith

    return max(abs(s) for s, _ in _affine_pieces(ExactArith(), act))


def _fmpq_mat(M):
    import flint

    rows = [[mpq(v) for v in row] for row in M]
    return flint.fmpq_mat(len(rows), len(rows[0]) if rows else 0, [flint.fmpq(int(v.numerator), int(v.denominator)) for row in rows for v in row])


def _mpq(v) -> mpq:
    return mpq(int(v.p), int(v.q))


def _solve(M, rhs):
    """Exact solution of M z = rhs (FLINT's rational linear algebra); None if M is singular."""
    n = len(M)
    if n == 0:
        return []
    A = _fmpq_mat(M)
    if A.det() == 0:
        return None
    x = A.solve(_fmpq_mat([[r] for r in rhs]))
    return [_mpq(x[i, 0]) for i in range(n)]


def _pre(A, W, Ux, b, z):
    a = A.add(A.dot(W, z), Ux)
    return A.add(a, b) if b is not None else a


def forward(A, L, x, W, b, U, apply_pieces) -> Solution:
    """The layer's fixed point in arithmetic ``A`` (exact or machine) for the batch x [N, in]."""
    if getattr(A, "symbolic", False) or not (A.exact or A.name.startswith("machine")):
        raise ValueError("fixed_point layers are evaluated only in the exact and machine semantics (not encoded for search)")
    Ux = A.dot(U, x)
    if A.exact:
        return _exact(A, L, x, W, b, U, Ux, apply_pieces)
    fp = L.fp
    if fp.method == "anderson":
        return _anderson(A, L, W, b, Ux, apply_pieces)
    N, n = x.shape[0], W.shape[0]
    z = A.zeros((N, n))
    res, it = None, 0
    tol = A.const(fp.tol)
    iterates = []
    while it < fp.max_iter:
        a = _pre(A, W, Ux, b, z)
        piece, kink = A.locate(a, L.act.kinks)
        znew = apply_pieces(A, L.act, a, piece)
        iterates.append((z, a, piece, kink))
        it += 1
        with np.errstate(all="ignore"):
            d = np.abs(A.sub(znew, z))
        res = d.max() if d.size else A.const(0)
        z = znew
        if res <= tol:
            break
    a = _pre(A, W, Ux, b, z)
    return Solution(z=z, a=a, iterations=it, residual=res, converged=bool(res <= tol), iterates=iterates)


def _rowdot(A, x, y):
    """Per sample, sum_i x_i y_i in the spec's order (acc = x_0 y_0; acc = acc + x_i y_i): [N]."""
    acc = A.mul(x[:, 0], y[:, 0])
    for i in range(1, x.shape[1]):
        acc = A.add(acc, A.mul(x[:, i], y[:, i]))
    return acc


def _anderson_gamma(A, dF, f):
    """gamma [N, m] solving the normal equations (dF^T dF) gamma = dF^T f per sample, in the dtype:
    H_pq = dF_p . dF_q and r_p = dF_p . f by ``_rowdot``; Gaussian elimination without pivoting
    (for c: for i > c: l = H_ic / H_cc; H_ij -= l H_cj for j > c; r_i -= l r_c), then back
    substitution (gamma_i = (r_i - sum_{j>i} H_ij gamma_j, subtracted in increasing j) / H_ii). A
    sample with a zero pivot or a non-finite gamma takes gamma = 0 (the plain step)."""
    m, N = len(dF), f.shape[0]
    H = [[_rowdot(A, dF[p], dF[q]) for q in range(m)] for p in range(m)]
    r = [_rowdot(A, dF[p], f) for p in range(m)]
    bad = np.zeros(N, dtype=bool)
    for c in range(m):
        bad |= np.asarray(H[c][c] == 0)
        for i in range(c + 1, m):
            lv = A.div(H[i][c], H[c][c])
            for j in range(c + 1, m):
                H[i][j] = A.sub(H[i][j], A.mul(lv, H[c][j]))
            r[i] = A.sub(r[i], A.mul(lv, r[c]))
    gam = [None] * m
    for i in reversed(range(m)):
        acc = r[i]
        for j in range(i + 1, m):
            acc = A.sub(acc, A.mul(H[i][j], gam[j]))
        gam[i] = A.div(acc, H[i][i])
    G = np.stack(gam, axis=1)
    with np.errstate(all="ignore"):
        bad |= ~np.isfinite(np.asarray(G, dtype=np.float64)).all(axis=1)
    G[bad] = A.const(0)
    return G


def _anderson(A, L, W, b, Ux, apply_pieces) -> Solution:
    """Anderson acceleration (type II, Walker and Ni's form) in the dtype (docs/implicit.md):
    iteration k evaluates g_k = act(W z_k + U x + b) and f_k = g_k - z_k; it stops when
    max |f_k| <= tol (over the batch) or at max_iter, the output being g_k. Otherwise, with the last
    m_k = min(m, k) differences dF_j = f_{j+1} - f_j and dG_j = g_{j+1} - g_j (oldest first), gamma
    solves the normal equations (``_anderson_gamma``), gbar = g_k - sum_j dG_j gamma_j (subtracted in
    increasing j) and z_{k+1} = gbar when beta = 1, else beta gbar + (1 - beta) zbar with zbar =
    z_k - sum_j dZ_j gamma_j alike."""
    fp = L.fp
    N, n = Ux.shape
    z = A.zeros((N, n))
    tol, beta, one = A.const(fp.tol), A.const(fp.beta), A.const(1)
    hist, it = [], 0
    while True:
        a = _pre(A, W, Ux, b, z)
        piece, _ = A.locate(a, L.act.kinks)
        g = apply_pieces(A, L.act, a, piece)
        it += 1
        f = A.sub(g, z)
        with np.errstate(all="ignore"):
            res = np.abs(f).max() if f.size else A.const(0)
        if res <= tol or it >= fp.max_iter:
            break
        hist = (hist + [(z, g, f)])[-(fp.m + 1) :]
        d = [tuple(A.sub(hist[j + 1][t], hist[j][t]) for t in range(3)) for j in range(len(hist) - 1)]
        gam = _anderson_gamma(A, [dj[2] for dj in d], f) if d else None
        gbar, zbar = g, z
        for j, (dz, dg, _) in enumerate(d):
            gbar = A.sub(gbar, A.mul(dg, gam[:, j : j + 1]))
            if beta != one:
                zbar = A.sub(zbar, A.mul(dz, gam[:, j : j + 1]))
        z = gbar if beta == one else A.add(A.mul(gbar, beta), A.mul(zbar, A.sub(one, beta)))
    z = g
    a = _pre(A, W, Ux, b, z)
    return Solution(z=z, a=a, iterations=it, residual=res, converged=bool(res <= tol))


def _exact(A, L, x, W, b, U, Ux, apply_pieces) -> Solution:
    from .formats import FLOAT64
    from .machine import MachineArith

    act = L.act
    pieces = _affine_pieces(A, act)
    N, n = x.shape[0], W.shape[0]
    # first guess: the pattern of a binary64 run of the same iteration (a float64 network)
    M64 = MachineArith(FLOAT64)
    W64, U64 = np.asarray(W, dtype=float), np.asarray(U, dtype=float)
    b64 = np.asarray(b, dtype=float) if b is not None else None
    x64 = np.asarray(x, dtype=float)
    Ux64 = M64.dot(U64, x64)
    z64 = np.zeros((N, n))
    for _ in range(GUESS_ITERATIONS):
        a64 = _pre(M64, W64, Ux64, b64, z64)
        p64, _ = M64.locate(a64, act.kinks)
        znew = apply_pieces(M64, act, a64, p64)
        if np.array_equal(znew, z64):
            break
        z64 = znew
    guess, _ = M64.locate(_pre(M64, W64, Ux64, b64, z64), act.kinks)
    Wq = [[mpq(v) for v in row] for row in np.asarray(W, dtype=object)]
    base = A.add(Ux, b) if b is not None else Ux
    z = np.empty((N, n), dtype=object)
    rounds = 0
    for s in range(N):
        g = [int(v) for v in guess[s]]
        for r in range(PATTERN_ROUNDS):
            rounds += 1
            sl = [pieces[p][0] for p in g]
            off = [pieces[p][1] for p in g]
            M = [[(1 if i == j else 0) - sl[i] * Wq[i][j] for j in range(n)] for i in range(n)]
            rhs = [sl[i] * base[s, i] + off[i] for i in range(n)]
            zs = _solve(M, rhs)
            if zs is None:
                raise Undecided(f"layer {L.index} sample {s}: I - S W is singular on the activation pattern {g}")
            zv = np.array(zs, dtype=object)
            av = A.add(A.dot(W, zv[None, :]), base[s : s + 1])[0]
            piece, kink = A.locate(av[None, :], act.kinks)
            piece, kink = piece[0], kink[0]
            ok = all(piece[i] == g[i] or (kink[i] >= 0 and g[i] in (kink[i], kink[i] + 1)) for i in range(n))
            if ok:
                break
            g = [int(piece[i]) if not (kink[i] >= 0 and g[i] in (kink[i], kink[i] + 1)) else g[i] for i in range(n)]
        else:
            raise Undecided(f"layer {L.index} sample {s}: no consistent activation pattern in {PATTERN_ROUNDS} rounds (the exact fixed point may not exist)")
        z[s] = zv
    a = _pre(A, W, Ux, b, z)
    piece, _ = A.locate(a, act.kinks)
    if not all(v == w for v, w in zip(apply_pieces(A, act, a, piece).reshape(-1), z.reshape(-1))):
        raise Undecided(f"layer {L.index}: the solved pattern does not satisfy z = act(W z + U x + b)")  # pragma: no cover - guarded by the pattern check
    lip = max(abs(s) for s, _ in pieces)
    norm = max((sum(abs(v) for v in row) for row in Wq), default=mpq(0))
    return Solution(z=z, a=a, unique=True if norm * lip < 1 else None, pattern_rounds=rounds)


# ----------------------------------------------------------------------------------------------
# backward


def backward(A, L, g, d, W, U, tol, pre: bool = False):
    """lambda with (I - D W)^T lambda = g for every sample; returns mu = D lambda [N, n].

    ``pre``: g is a cotangent on the pre-activation a* (a* = (I - W D)^{-1} r to first order, r
    the perturbation of W z* + U x + b), so mu solves (I - D W^T) mu = g (exact arithmetic only:
    this is the decision procedures' tangent functional, not a framework's backward)."""
    N, n = g.shape
    if pre:
        if not A.exact:
            raise ValueError("a pre-activation cotangent is only propagated exactly")
        Wq = np.asarray(W, dtype=object)
        mu = np.empty((N, n), dtype=object)
        for s in range(N):
            M = [[(1 if i == j else 0) - d[s, i] * Wq[j][i] for j in range(n)] for i in range(n)]
            sol = _solve(M, list(g[s]))
            if sol is None:
                raise Undecided(f"layer {L.index} sample {s}: I - D W is singular at the fixed point: no implicit derivative")
            mu[s] = sol
        return mu
    if A.exact:
        Wq = np.asarray(W, dtype=object)
        lam = np.empty((N, n), dtype=object)
        for s in range(N):
            MT = [[(1 if i == j else 0) - Wq[j][i] * d[s, j] for j in range(n)] for i in range(n)]
            sol = _solve(MT, list(g[s]))
            if sol is None:
                raise Undecided(f"layer {L.index} sample {s}: I - D W is singular at the fixed point: no implicit derivative")
            lam[s] = sol
        return A.mul(d, lam)
    WT = np.ascontiguousarray(np.asarray(W).T)
    lam = g
    tolv = A.const(tol)
    for _ in range(L.fp.max_iter):
        new = A.add(g, A.dot(WT, A.mul(d, lam)))
        with np.errstate(all="ignore"):
            res = np.abs(A.sub(new, lam)).max() if new.size else A.const(0)
        lam = new
        if res <= tolv:
            break
    return A.mul(d, lam)


def unrolled(A, sol, g, W, derivative):
    """Backprop through the solver's iterations instead of the implicit formula (what autograd
    gives when it records the loop): lambda_K = g; for k = K .. 1: mu_k = act'(a_k) lambda_k
    (``derivative(a, piece, kink)``, the convention's proxy at a kink), lambda_{k-1} = W^T mu_k.
    Returns (mu [N, n, K] with positions in backward order k = K .. 1, z_{k-1} [N, n, K] alike):
    W receives sum_k mu_k z_{k-1}^T and the cell's input side sum_k mu_k, summed in that order."""
    if not sol.iterates:
        raise ValueError("unrolled AD is modelled for the method iterate only (no iterates recorded)")
    WT = np.ascontiguousarray(np.asarray(W).T)
    lam, mus, zs = g, [], []
    for z_prev, a, piece, kink in reversed(sol.iterates):
        mu = A.mul(derivative(a, piece, kink), lam)
        mus.append(mu)
        zs.append(z_prev)
        lam = A.dot(WT, mu)
    return np.stack(mus, axis=-1), np.stack(zs, axis=-1)


# ----------------------------------------------------------------------------------------------
# the Clarke Jacobian of z -> act(W z + c) at z*: I - D W over a box of slopes


def _det(M) -> mpq:
    """Exact determinant (FLINT)."""
    if len(M) == 0:
        return mpq(1)
    return _mpq(_fmpq_mat(M).det())


def vertex_test(W, slopes, boxes, budget: int = 20) -> dict:
    """Is I - D W invertible for every D with D_ii = slopes[i] off the tied units and D_ii in
    boxes[i] = (lo, hi) on them? det(I - D W) is multilinear in the tied slopes, so it keeps one
    sign on the box iff the 2^k vertex determinants are non-zero with one sign; a sign change (or a
    zero vertex) gives an exact singular element. Returns {"invertible": bool | None, "vertices": k,
    "sign": +-1 | None, "witness": {unit: slope} | None, "reason": str}."""
    W = [[mpq(v) for v in row] for row in W]
    n = len(W)
    tied = sorted(boxes)
    k = len(tied)
    if k > budget:
        return {"invertible": None, "vertices": 2**k, "sign": None, "witness": None, "reason": f"{k} tied units: 2^{k} vertices exceed the budget 2^{budget}"}
    import flint

    Wf = _fmpq_mat(W) if n else None
    eye = flint.fmpq_mat(n, n, [1 if i == j else 0 for i in range(n) for j in range(n)])
    fq = lambda v: flint.fmpq(int(mpq(v).numerator), int(mpq(v).denominator))  # noqa: E731
    Dm = flint.fmpq_mat(n, n)
    for i, v in enumerate(slopes):
        if i not in boxes:
            Dm[i, i] = fq(v)
    ends = {u: (fq(boxes[u][0]), fq(boxes[u][1])) for u in tied}
    dets = {}
    for mask in range(2**k):
        for t, u in enumerate(tied):
            Dm[u, u] = ends[u][(mask >> t) & 1]
        dets[mask] = _mpq((eye - Dm * Wf).det()) if n else mpq(1)
    signs = {(v > 0) - (v < 0) for v in dets.values()}
    if signs in ({1}, {-1}):
        return {"invertible": True, "vertices": 2**k, "sign": signs.pop(), "witness": None, "reason": f"all {2**k} vertex determinants have one sign"}
    for mask, v in dets.items():  # a singular element: a zero vertex or a root on an edge
        D = {u: boxes[u][(mask >> t) & 1] for t, u in enumerate(tied)}
        if v == 0:
            return {"invertible": False, "vertices": 2**k, "sign": None, "witness": {u: str(s) for u, s in D.items()}, "reason": "a vertex determinant is zero"}
        for t, u in enumerate(tied):
            other = dets[mask ^ (1 << t)]
            if (other > 0) != (v > 0) and other != 0:
                lo, hi = boxes[u][(mask >> t) & 1], boxes[u][((mask >> t) & 1) ^ 1]
                root = lo + (hi - lo) * v / (v - other)  # det is affine in this slope along the edge
                D[u] = root
                return {"invertible": False, "vertices": 2**k, "sign": None, "witness": {u2: str(s) for u2, s in D.items()}, "reason": f"the determinant changes sign along an edge: zero at slope {root} of unit {u}"}
    return {"invertible": None, "vertices": 2**k, "sign": None, "witness": None, "reason": "no sign change found"}  # pragma: no cover - unreachable
