"""The fast path of ``kinkcheck count`` along one swept scalar t (docs/count.md).

- exact side: along the sweep every value of the network is a piecewise affine function of t.
  ``_Walker`` follows it from the lowest to the highest grid value in exact rationals: on each open
  segment between breakpoints the activation pattern is constant and every pre-activation is
  alpha + beta*t; the next breakpoint is the nearest t where one of them reaches a kink (or two
  max-pool entries cross). Real ties are exactly the breakpoints (plus whole segments on which a
  unit sits identically on a kink);
- machine side: ``_machine_line`` runs the machine forward vectorised over the whole grid with the
  same operations, in the same order, as ``encodings/machine.py`` (float16 in float32 arrays rounded
  once per operation: the same values); only the columns that depend on t are computed per point;
- ``line`` combines them: per point, real tie, float tie, and a machine branch that differs from the
  exact one at a unit where neither run ties.
"""

from __future__ import annotations

import numpy as np
import sympy
from gmpy2 import mpq

from ..encodings import program as P
from ..encodings.activations import X
from ..encodings.arith import ArrayArith
from ..encodings.formats import FloatFormat, exact
from ..encodings.machine import MachineArith
from ..encodings.network import Network

_PL_OPS = {"relu", "leaky_relu", "abs", "identity", "hardtanh", "relu6", "hardsigmoid"}

# ----------------------------------------------------------------------------------------------
# which networks take the fast path


_AFFINE: dict = {}


def _affine_pieces(act):
    """[(slope, intercept)] per piece, or None if a piece is not affine."""
    key = (act.name, tuple(sorted(act.params.items())))
    if key not in _AFFINE:
        _AFFINE[key] = _affine_uncached(act)
    return _AFFINE[key]


def _affine_uncached(act):
    out = []
    for pc in act.pieces:
        e = sympy.expand(pc.expr)
        if not e.is_polynomial(X) or sympy.degree(e, X) > 1:
            return None
        out.append((mpq(str(e.coeff(X, 1))), mpq(str(e.subs(X, 0)))))
    return out


def fast_path(net: Network, idx: int) -> tuple[int | None, str]:
    """(layer holding theta[idx], "") if the exact walk applies, else (None, reason)."""
    holders = [L.index for L in net.layers for r in (L.weight, L.bias) if r is not None and (r.src == idx).any()]
    if len(set(holders)) != 1:
        return None, "the swept scalar is used in no layer or in several layers"
    layer = holders[0]
    if net.layers[layer].op != "linear":
        return None, f"the swept scalar sits in a {net.layers[layer].op} layer (only linear layers are walked)"
    for L in net.layers:
        if L.act is not None:
            if L.op not in _PL_OPS or _affine_pieces(L.act) is None:
                return None, f"{L.label} is not piecewise affine"
        elif L.op not in ("linear", "flatten", "maxpool1d", "maxpool2d"):
            return None, f"{L.label}: not walked"
    if net.loss.op not in ("sum", "dot", "mse", "l1"):
        return None, f"loss {net.loss.op} is not walked"
    return layer, ""


# ----------------------------------------------------------------------------------------------
# machine side: the forward over all grid points at once


def round_half(v) -> np.ndarray:
    """float32 -> the nearest float16 value (ties to even, overflow to inf, subnormals, NaN kept), as
    float32: the same values as ``v.astype(float16).astype(float32)`` at a third of the cost
    (tests/test_count.py compares them on a million random bit patterns)."""
    v = np.asarray(v, dtype=np.float32)
    with np.errstate(all="ignore"):
        u = v.view(np.uint32)
        r = ((u + ((u >> np.uint32(13)) & np.uint32(1)) + np.uint32(0xFFF)) & np.uint32(0xFFFFE000)).view(np.float32)
        small = (u & np.uint32(0x7F800000)) < np.uint32(0x38800000)  # |v| < 2**-14: float16 subnormals
        if small.any():
            r[small] = np.rint(v[small] * np.float32(2.0**24)) * np.float32(2.0**-24)
        big = (u & np.uint32(0x7FFFFFFF)) >= np.uint32(0x477FF000)  # |v| >= 65520 rounds to inf; NaN
        if big.any():
            vb = v[big]
            r[big] = np.where(vb != vb, vb, np.copysign(np.float32(np.inf), vb))
        return r


class _Half(MachineArith):
    """float16 held in float32 arrays, every operation rounded once to float16 (numpy's own float16
    ufuncs compute in float32 and round the same way; float32 holds every float16 product exactly and
    2*11+2 <= 24 makes the double rounding of sums and quotients innocuous)."""

    def __init__(self, fmt):
        super().__init__(fmt, force_generic=True)
        self.dtype = np.dtype(np.float32)

    def _r(self, v):
        return round_half(v)

    dot = ArrayArith.dot


def machine_arith(fmt: FloatFormat) -> MachineArith:
    if fmt.numpy_dtype is not None and np.dtype(fmt.numpy_dtype) == np.float16:
        return _Half(fmt)
    return MachineArith(fmt)


def _row_dot(A, wrow, x, tcol, sign_of):
    """One output row of the spec-order dot product for all grid points: wrow [in] constants,
    x [N, in] constants, the entries j with sign_of[j] != 0 are sign * t (tcol [P, 1])."""
    acc = None
    for j in range(x.shape[-1]):
        w = A.neg(tcol) if sign_of[j] < 0 else tcol if sign_of[j] > 0 else A.dtype.type(wrow[j])
        prod = A.mul(x[:, j][None, :] if sign_of[j] else x[:, j], w)
        acc = prod if acc is None else A.add(acc, prod)
    return acc


def _locate(A, x, kinks):
    """A.locate without the float64 copy when every kink is a value of x's dtype (same result)."""
    ats = [float(k.at) for k in kinks]
    if x.dtype.kind != "f" or any(a != k.at or x.dtype.type(a) != a for a, k in zip(ats, kinks)):
        return A.locate(x, kinks)
    piece = np.zeros(x.shape, dtype=np.int8)
    kink = np.full(x.shape, -1, dtype=np.int8)
    for j, a in enumerate(ats):
        at = x.dtype.type(a)
        piece += x > at
        kink[x == at] = j
    return piece, kink


_KINDS: dict = {}


def _kinds(act):
    """Per piece: "id" (value x), a constant (mpq), or None (run the piece's program)."""
    key = (act.name, tuple(sorted(act.params.items())))
    if key not in _KINDS:
        out = []
        for pc in act.pieces:
            e = sympy.expand(pc.expr)
            out.append("id" if e == X else mpq(str(e)) if e.is_number else None)
        _KINDS[key] = out
    return _KINDS[key]


def _pieces(A, act, x, piece):
    """program._apply_pieces with whole-array selects (same values: the programs are elementwise)."""
    if len(act.pieces) == 1:
        return P._apply_pieces(A, act, x, piece)
    kinds = _kinds(act)

    def value(i):
        k = kinds[i]
        return x if k == "id" else A.dtype.type(A.const(k)) if k is not None else np.asarray(act.pieces[i].value_program(x, A), dtype=x.dtype)

    y = value(len(kinds) - 1)
    for i in range(len(kinds) - 2, -1, -1):
        y = np.where(piece == i, value(i), y)
    return np.where(x != x, x, y).astype(x.dtype, copy=False)  # NaN lies on no piece: it propagates


def _last_needed(net: Network) -> int:
    """Index of the last layer whose machine values decide a tie or a branch."""
    if net.loss.op == "l1":
        return len(net.layers) - 1
    last = -1
    for L in net.layers:
        if (L.act is not None and L.act.kinks) or L.op in ("maxpool1d", "maxpool2d"):
            last = L.index
    return last


class _Vals:
    """Machine values of one layer for all points: ``base`` [N, U] (the values of the columns that
    do not depend on the point) and ``var`` [P, N, len(cols)] for the columns ``cols`` that do."""

    def __init__(self, base, cols=(), var=None):
        self.base, self.cols, self.var = base, np.asarray(cols, dtype=np.int64), var

    def full(self, Pn):
        out = np.broadcast_to(self.base, (Pn,) + self.base.shape).copy()
        if len(self.cols):
            out[:, :, self.cols] = self.var
        return out


def _linear_var(A, W, b, v: _Vals, Pn):
    """The spec-order dot product W x (+ b) when x = v: constant columns before the first varying
    one are summed once."""
    if not len(v.cols):
        y = A.dot(W, v.base)
        return _Vals(A.add(y, b) if b is not None else y)
    m = int(v.cols.min())
    pos = {int(c): i for i, c in enumerate(v.cols)}
    acc = A.dot(W[:, :m], v.base[:, :m]) if m > 0 else None
    for j in range(m, W.shape[1]):
        xj = v.var[:, :, pos[j] : pos[j] + 1] if j in pos else v.base[:, j : j + 1]
        prod = A.mul(xj, W[:, j])
        acc = prod if acc is None else A.add(acc, prod)
    acc = np.broadcast_to(acc, (Pn,) + acc.shape[-2:])
    if b is not None:
        acc = A.add(acc, b)
    return _Vals(acc[0], np.arange(W.shape[0]), acc)


def _machine_line(net: Network, A, idx: int, layer: int, tvals: np.ndarray, theta: np.ndarray):
    """Branches of every kinked unit at every grid point and the float-tie flag [P]. A branch is
    ("act", key, piece_base [N, U], kink_base, cols, piece_var [P, N, C], kink_var) or
    ("pool", key, eq [P, N, W, K])."""
    Pn, N = len(tvals), net.batch
    tcol = np.asarray(tvals, dtype=np.float64).astype(A.dtype)[:, None]
    v = _Vals(A.from_floats(net.inputs).reshape(N, -1))
    branches = []
    ftie = np.zeros(Pn, dtype=bool)
    for L in net.layers[: _last_needed(net) + 1]:
        if L.op == "linear":
            W = L.weight.values(theta)
            b = L.bias.values(theta) if L.bias is not None else None
            Wm, bm = A.from_floats(W), A.from_floats(b) if b is not None else None
            if L.index == layer:
                x = v.base
                ydot = A.dot(Wm, x)
                y = A.add(ydot, bm) if bm is not None else ydot
                wsign = np.where(L.weight.src.reshape(W.shape) == idx, L.weight.sign.reshape(W.shape), 0)
                bsign = np.where(L.bias.src == idx, L.bias.sign, 0) if L.bias is not None else np.zeros(W.shape[0])
                rows = np.flatnonzero(wsign.any(axis=1) | (bsign != 0))
                var = np.empty((Pn, N, len(rows)), dtype=A.dtype)
                for r, i in enumerate(rows):
                    acc = _row_dot(A, Wm[i], x, tcol, wsign[i]) if wsign[i].any() else ydot[:, i]
                    if bm is not None:
                        acc = A.add(acc, A.neg(tcol) if bsign[i] < 0 else tcol if bsign[i] > 0 else bm[i])
                    var[:, :, r] = acc
                v = _Vals(y, rows, var)
            else:
                v = _linear_var(A, Wm, bm, v, Pn)
        elif L.op in ("maxpool1d", "maxpool2d"):
            ix = P.pool_index(L)
            m, eq = A.max_first(v.full(Pn)[..., ix] if len(v.cols) else v.base[:, ix])
            eqP = eq if len(v.cols) else np.broadcast_to(eq, (Pn,) + eq.shape)
            branches.append(("pool", L.index, eqP))
            ftie |= (eqP.sum(axis=-1) >= 2).reshape(Pn, -1).any(axis=1)
            v = _Vals(m[0], np.arange(m.shape[-1]), m) if len(v.cols) else _Vals(m)
        elif L.op != "flatten":
            pb, kb = _locate(A, v.base, L.act.kinks)
            const = np.ones(pb.shape[-1], dtype=bool)
            const[v.cols] = False
            ftie |= bool((kb[:, const] >= 0).any())
            pv = kv = None
            if len(v.cols):
                pv, kv = _locate(A, v.var, L.act.kinks)
                ftie |= (kv >= 0).reshape(Pn, -1).any(axis=1)
                nv = _pieces(A, L.act, v.var, pv)
            branches.append(("act", L.index, pb, kb, v.cols, pv, kv))
            v = _Vals(_pieces(A, L.act, v.base, pb), v.cols, nv if len(v.cols) else None)
    if net.loss.op == "l1":
        r = A.sub(v.full(Pn), A.from_floats(net.targets).reshape(N, -1))
        piece, kink = _locate(A, r, P._abs().kinks)
        cols = np.arange(r.shape[-1])
        branches.append(("act", len(net.layers), piece[0], kink[0], cols, piece, kink))
        ftie |= (kink >= 0).reshape(Pn, -1).any(axis=1)
    return branches, ftie


# ----------------------------------------------------------------------------------------------
# exact side: walking the piecewise affine function of t


def _obj(a):
    out = np.empty(np.shape(a), dtype=object)
    out.reshape(-1)[:] = [mpq(v) if v - v == 0 else exact(v) for v in np.asarray(a, dtype=np.float64).reshape(-1).tolist()]
    return out


_ZERO = mpq(0)


def _zeros(shape):
    return np.full(shape, _ZERO, dtype=object)


class _Walker:
    """Exact affine forward of the network on the segment just right of t (see module docstring)."""

    def __init__(self, net: Network, idx: int, layer: int, theta: np.ndarray):
        self.net, self.idx, self.layer = net, idx, layer
        self.stop = _last_needed(net)
        self.params = {}
        for L in net.layers:
            if L.op == "linear":
                W = _obj(L.weight.values(theta))
                b = _obj(L.bias.values(theta)) if L.bias is not None else None
                E = e = None
                if L.index == layer:
                    wm = (L.weight.src == idx).reshape(W.shape)
                    W[wm] = mpq(0)
                    E = _obj(np.where(wm, L.weight.sign.reshape(W.shape), 0))
                    if b is not None:
                        bm = L.bias.src == idx
                        b[bm] = mpq(0)
                        e = _obj(np.where(bm, L.bias.sign, 0))
                self.params[L.index] = (W, b, E, e)
        self.pieces = {L.index: _affine_pieces(L.act) for L in net.layers if L.act is not None}
        self.kinks = {L.index: [k.at for k in L.act.kinks] for L in net.layers if L.act is not None}
        self.kinks[len(net.layers)] = [mpq(0)]
        self.pieces[len(net.layers)] = [(mpq(-1), mpq(0)), (mpq(1), mpq(0))]
        self.inputs = _obj(net.inputs)
        self.targets = _obj(net.targets) if net.targets is not None else None

    def _unit(self, key, a, b, t, nxt):
        """Piece just right of t for value a + b*t; (piece, tied at t, identically tied)."""
        ks = self.kinks[key]
        v = a + b * t
        piece = sum(1 for k in ks if v > k)
        on = v in ks
        ident = False
        if on and b > 0:
            piece += 1
        elif on and b == 0:
            ident = True
        if b != 0:
            for k in ks:
                s = (k - a) / b
                if s > t and (nxt[0] is None or s < nxt[0]):
                    nxt[0] = s
        return piece, on, ident

    def at(self, t):
        """(patterns list aligned with _machine_line's branches, tie at t, any identical tie, next
        breakpoint > t or None)."""
        net, N = self.net, self.net.batch
        a = self.inputs
        b = _zeros(a.shape)
        nxt = [None]
        pats, tie, ident_any = [], False, False
        for L in net.layers[: self.stop + 1]:
            if L.op == "linear":
                W, bias, E, e = self.params[L.index]
                na = a @ W.T
                nb = b @ W.T
                if E is not None:
                    nb = nb + a @ E.T
                if bias is not None:
                    na = na + bias
                if e is not None:
                    nb = nb + e
                a, b = na, nb
            elif L.op == "flatten":
                a, b = a.reshape(N, -1), b.reshape(N, -1)
            elif L.op in ("maxpool1d", "maxpool2d"):
                ix = P.pool_index(L)
                wa, wb = a.reshape(N, -1)[:, ix], b.reshape(N, -1)[:, ix]
                win = np.zeros(wa.shape[:2], dtype=np.int64)
                idn = np.zeros(wa.shape[:2], dtype=bool)
                oa, ob = _zeros(wa.shape[:2]), _zeros(wa.shape[:2])
                for n in range(wa.shape[0]):
                    for w in range(wa.shape[1]):
                        vals = [wa[n, w, k] + wb[n, w, k] * t for k in range(wa.shape[2])]
                        top = max(vals)
                        at_top = [k for k in range(len(vals)) if vals[k] == top]
                        tie |= len(at_top) >= 2
                        bmax = max(wb[n, w, k] for k in at_top)
                        best = [k for k in at_top if wb[n, w, k] == bmax]
                        idn[n, w] = len(best) >= 2
                        k0 = best[0]
                        win[n, w], oa[n, w], ob[n, w] = k0, wa[n, w, k0], wb[n, w, k0]
                        for k in range(wa.shape[2]):
                            if wb[n, w, k] > bmax:
                                s = (wa[n, w, k0] - wa[n, w, k]) / (wb[n, w, k] - bmax)
                                if s > t and (nxt[0] is None or s < nxt[0]):
                                    nxt[0] = s
                pats.append(("pool", win, idn))
                ident_any |= bool(idn.any())
                a, b = oa.reshape((N,) + L.out_shape), ob.reshape((N,) + L.out_shape)
            else:
                a, b, pat = self._act(L.index, a, b, t, nxt)
                tie |= pat[3]
                ident_any |= bool(pat[2].any())
                pats.append(pat[:3])
        if net.loss.op == "l1":
            ra = a.reshape(N, -1) - self.targets.reshape(N, -1)
            _, _, pat = self._act(len(net.layers), ra, b.reshape(N, -1), t, nxt)
            tie |= pat[3]
            ident_any |= bool(pat[2].any())
            pats.append(pat[:3])
        return pats, tie, ident_any, nxt[0]

    def _act(self, key, a, b, t, nxt):
        fa, fb = a.reshape(-1), b.reshape(-1)
        piece = np.zeros(fa.shape, dtype=np.int64)
        idn = np.zeros(fa.shape, dtype=bool)
        oa, ob = _zeros(fa.shape), _zeros(fa.shape)
        tie = False
        pcs = self.pieces[key]
        for u in range(fa.size):
            p, on, ident = self._unit(key, fa[u], fb[u], t, nxt)
            tie |= on
            piece[u], idn[u] = p, ident
            m, c = pcs[p]
            oa[u], ob[u] = m * fa[u] + c, m * fb[u]
        N = a.shape[0]
        return oa.reshape(a.shape), ob.reshape(b.shape), ("act", piece.reshape(N, -1), idn.reshape(N, -1), tie)


def _locate_q(vals: np.ndarray, q) -> tuple[int, int]:
    """Index range [i, j) of the exact value q in the increasing float64 array vals."""
    d = float(q)
    i = int(np.searchsorted(vals, d, "left"))
    while i > 0 and exact(vals[i - 1]) >= q:
        i -= 1
    while i < len(vals) and exact(vals[i]) < q:
        i += 1
    j = i
    while j < len(vals) and exact(vals[j]) == q:
        j += 1
    return i, j


def line(net: Network, idx: int, layer: int, tvals: np.ndarray, theta: np.ndarray, A=None):
    """Per-point flags along one sweep: real tie, float tie, and branch mismatch (a unit where neither
    run ties and the machine takes another piece / window maximum than the exact run; exact at every
    point without a real tie)."""
    A = A if A is not None else machine_arith(net.fmt)
    branches, ftie = _machine_line(net, A, idx, layer, tvals, theta)
    Pn = len(tvals)
    rtie = np.zeros(Pn, dtype=bool)
    mism = np.zeros(Pn, dtype=bool)
    wk = _Walker(net, idx, layer, theta)
    t, hi = exact(tvals[0]), exact(tvals[-1])
    pos = 0
    while True:
        pats, tie, ident, nxt = wk.at(t)
        i, j = _locate_q(tvals, t)
        rtie[i:j] |= tie
        end = hi if nxt is None or nxt > hi else nxt
        k, _ = _locate_q(tvals, end) if end < hi else (Pn, Pn)
        lo_i = max(j, pos)
        if end >= hi:
            k = _locate_q(tvals, hi)[0]
        if k > lo_i:
            if ident:
                rtie[lo_i:k] = True
            sl = slice(lo_i, k)
            for br, pat in zip(branches, pats):
                if br[0] == "act":
                    _, _, pb, kb, cols, pv, kv = br
                    const = np.ones(pb.shape[-1], dtype=bool)
                    const[cols] = False
                    if ((pb != pat[1]) & ~pat[2] & const & (kb < 0)).any():
                        mism[sl] = True
                    if len(cols):
                        m = (pv[sl] != pat[1][:, cols][None]) & ~pat[2][:, cols][None] & (kv[sl] < 0)
                        mism[sl] |= m.reshape(k - lo_i, -1).any(axis=1)
                else:
                    onehot = np.arange(br[2].shape[-1])[None, None, None, :] == pat[1][None, :, :, None]
                    m = (br[2][sl] != onehot).any(axis=-1) & ~pat[2][None] & (br[2][sl].sum(axis=-1) < 2)
                    mism[sl] |= m.reshape(k - lo_i, -1).any(axis=1)
        pos = k
        if end >= hi:
            if t != hi:
                _, tie_hi, _, _ = wk.at(hi)
                i, j = _locate_q(tvals, hi)
                rtie[i:j] |= tie_hi
            break
        t = end
    return rtie, ftie, mism
