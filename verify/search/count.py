"""Counting the non-differentiable set over float grids (``kinkcheck count``, docs/count.md).

Over every machine number of one or two swept scalars (the other parameters fixed) count the points
with a real tie, a float tie, f not differentiable, AD not the gradient, AD not a Clarke
subderivative, compensation, branch mismatch and choice sensitivity - exactly.

Fast path (the network is piecewise linear and the innermost swept scalar enters one linear layer):
- exact side: along the sweep every value of the network is a piecewise affine function of the swept
  scalar t. ``_walk`` follows it from the lowest to the highest grid value in exact rationals: on
  each open segment between breakpoints the activation pattern is constant and every pre-activation
  is alpha + beta*t; the next breakpoint is the nearest t where one of them reaches a kink (or two
  max-pool entries cross). Real ties are exactly the breakpoints (plus whole segments on which a unit
  sits identically on a kink);
- machine side: ``_machine_line`` runs the machine forward vectorised over the whole grid with the
  same operations, in the same order, as ``encodings/machine.py`` (float16 computed in float32 and
  rounded once per operation: bit-identical, see docs/count.md); float ties and machine branches of
  every unit at every point;
- a point with neither a real nor a float tie is differentiable, AD is the gradient and a Clarke
  subderivative, and it is not choice-sensitive; it is in the compensation zone iff some unit's
  machine branch differs from the exact one (``branch_mismatch``, computed for every point);
- every tie point gets the full decision: ``kinkcheck.verify`` on the network with that value.
Otherwise every point is verified (exact, slower, with a budget). ``points_per_s`` is measured.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import numpy as np
import sympy
from gmpy2 import mpq

from ..api import verify
from ..encodings import program as P
from ..encodings.activations import X
from ..encodings.arith import ArrayArith
from ..encodings.errors import InputError
from ..encodings.formats import FloatFormat, exact
from ..encodings.machine import MachineArith
from ..encodings.network import Network
from ..encodings.network import load as _load

KEYS = ("real_tie", "float_tie", "not_differentiable", "ad_incorrect", "ad_not_in_clarke", "compensation", "branch_mismatch", "choice_sensitive")
MAX_POINTS = 2**24  # per count call
DEFAULT_TIMEOUT = 600.0  # seconds for the per-point decisions
_PL_OPS = {"relu", "leaky_relu", "abs", "identity", "hardtanh", "relu6", "hardsigmoid"}


# ----------------------------------------------------------------------------------------------
# sweeps and grids


@dataclass
class Sweep:
    label: str
    index: int  # into theta
    values: np.ndarray  # float64, increasing


_SPEC = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(?:\[\s*([-\d,\s]*)\])?\s*$")


def resolve(net: Network, spec: str) -> tuple[int, str]:
    """'NAME[i,j]' -> (theta index, canonical label); InputError naming valid names/indices."""
    m = _SPEC.match(spec)
    names = ", ".join(p.name + (str(list(p.shape)) if p.shape else "") for p in net.params)
    if not m:
        raise InputError(f"--sweep {spec!r}: expected NAME or NAME[i,j,...]; parameters: {names}")
    name, idx = m.group(1), m.group(2)
    try:
        p = net.param(name)
    except KeyError:
        raise InputError(f"--sweep {spec!r}: no parameter {name!r}; parameters: {names}") from None
    if idx is None or not idx.strip():
        if p.size != 1:
            raise InputError(f"--sweep {spec!r}: {name} has shape {list(p.shape)}: give an index, e.g. {name}[{','.join('0' * len(p.shape))}]")
        ix = (0,) * len(p.shape)
    else:
        try:
            ix = tuple(int(s) for s in idx.split(","))
        except ValueError:
            raise InputError(f"--sweep {spec!r}: bad index") from None
        if len(ix) != len(p.shape) or any(not 0 <= i < n for i, n in zip(ix, p.shape)):
            raise InputError(f"--sweep {spec!r}: index out of range for {name} of shape {list(p.shape)}")
    flat = int(np.ravel_multi_index(ix, p.shape)) if p.shape else 0
    label = name + (f"[{','.join(map(str, ix))}]" if p.shape else "")
    return p.offset + flat, label


def _values_of_ordinals(fmt: FloatFormat, k: np.ndarray) -> np.ndarray:
    M = fmt.fraction_bits
    a = np.abs(k).astype(np.int64)
    fld = a >> M
    frac = a & ((1 << M) - 1)
    sig = np.where(fld == 0, frac, frac + (1 << M)).astype(np.float64)
    e = np.where(fld == 0, fmt.emin, fld - 1 + fmt.emin) - M
    return np.where(k < 0, -1.0, 1.0) * np.ldexp(sig, e.astype(np.int32))


def grid(fmt: FloatFormat, lo=None, hi=None, limit: int = MAX_POINTS) -> np.ndarray:
    """Every finite value of ``fmt`` in [lo, hi] (rationals; default the whole format), increasing.
    Zero appears once (+0: -0 has the same real value; see docs/count.md)."""
    top = ((2**fmt.exponent_bits - 1) << fmt.fraction_bits) - 1
    klo, khi = -top, top
    if lo is not None:
        _, up = fmt.neighbours(mpq(lo))
        klo = max(klo, fmt.ordinal(up)) if up != float("inf") else top + 1
    if hi is not None:
        down, _ = fmt.neighbours(mpq(hi))
        khi = min(khi, fmt.ordinal(down)) if down != float("-inf") else -top - 1
    n = khi - klo + 1
    if n <= 0:
        raise InputError(f"--range {lo}:{hi}: no {fmt.name} value in the range")
    if n > limit:
        raise InputError(f"the sweep has {n} points (more than {limit}): give a smaller --range")
    return _values_of_ordinals(fmt, np.arange(klo, khi + 1, dtype=np.int64))


def parse_range(text: str):
    parts = text.split(":")
    if len(parts) != 2:
        raise InputError(f"--range {text!r}: expected LO:HI")
    out = []
    for s in parts:
        s = s.strip()
        if not s:
            out.append(None)
            continue
        try:
            out.append(mpq(s) if "x" not in s.lower() else exact(float.fromhex(s)))
        except (ValueError, ZeroDivisionError, OverflowError):
            raise InputError(f"--range {text!r}: {s!r} is not a number") from None
    if out[0] is not None and out[1] is not None and out[0] > out[1]:
        raise InputError(f"--range {text!r}: LO > HI")
    return tuple(out)


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
    """Per-point (real tie, float tie, branch mismatch away from ties) flags along one sweep."""
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
                    _, _, pb, _, cols, pv, _ = br
                    const = np.ones(pb.shape[-1], dtype=bool)
                    const[cols] = False
                    if ((pb != pat[1]) & ~pat[2] & const).any():
                        mism[sl] = True
                    if len(cols):
                        m = (pv[sl] != pat[1][:, cols][None]) & ~pat[2][:, cols][None]
                        mism[sl] |= m.reshape(k - lo_i, -1).any(axis=1)
                else:
                    onehot = np.arange(br[2].shape[-1])[None, None, None, :] == pat[1][None, :, :, None]
                    m = (br[2][sl] != onehot).any(axis=-1) & ~pat[2][None]
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


# ----------------------------------------------------------------------------------------------
# the full decision at one point


def decide_point(net: Network, theta: np.ndarray) -> dict:
    """Every key for one point through ``kinkcheck.verify``: True / False / None (undecided)."""
    r = verify(net.with_theta(theta), values=False)
    dif = r.differentiable
    return {
        "real_tie": bool(r.real_ties) if r._runs.exact is not None else None,
        "float_tie": bool(r.float_ties),
        "not_differentiable": None if dif is None else not dif,
        "ad_incorrect": None if dif is None else False if not dif else None if r.ad_correct is None else not r.ad_correct,
        "ad_not_in_clarke": None if r.ad_in_clarke is None else not r.ad_in_clarke,
        "compensation": r.compensation,
        "branch_mismatch": None if r.compensation is None else any(c["kind"] == "branch flipped" for c in r.compensation_neurons),
        "choice_sensitive": r.choice_sensitive,
    }


# ----------------------------------------------------------------------------------------------
# the bound of Lee, Park and Aiken (docs/count.md)


def lpa_bound(net: Network, sweeps: list) -> dict:
    """N * sum over kinked units u of k_u * prod_{other sweeps} |grid|, when every kinked unit has a
    private bias that is swept; else {"applies": False, "reason": ...}."""
    swept = {s.index: j for j, s in enumerate(sweeps)}
    uses = np.zeros(net.theta.size, dtype=np.int64)
    for L in net.layers:
        for r in (L.weight, L.bias):
            if r is not None:
                np.add.at(uses, r.src[r.src >= 0], 1)
    total = 0
    prev = None
    for L in net.layers:
        if L.act is not None and L.act.kinks:
            if prev is None or prev.op != "linear" or prev.bias is None:
                return {"applies": False, "reason": f"{L.label} does not follow a linear layer with a bias"}
            for u, src in enumerate(prev.bias.src):
                if src < 0 or uses[src] != 1 or src not in swept:
                    return {"applies": False, "reason": f"unit {u} of {L.label} has no private swept bias"}
                others = int(np.prod([len(s.values) for j, s in enumerate(sweeps) if j != swept[src]], dtype=np.int64))
                total += net.batch * len(L.act.kinks) * others
        elif L.op in ("maxpool1d", "maxpool2d", "conv2d", "avgpool2d"):
            return {"applies": False, "reason": f"{L.label}: the bound is stated for fully connected networks"}
        if L.op == "linear":
            prev = L
    if net.loss.op not in ("sum", "dot", "mse"):
        return {"applies": False, "reason": f"loss {net.loss.op} has a kink without a bias"}
    return {"applies": True, "bound": total, "formula": "N * sum_u k_u * prod_{j != sweep(b_u)} |grid_j|"}


# ----------------------------------------------------------------------------------------------
# counting


@dataclass
class CountResult:
    network: str
    dtype: str
    sweeps: list
    points: int
    counts: dict
    unknown: dict
    examples: dict
    points_per_s: float
    time_s: float
    method: str
    decided_points: int = 0  # points given the full decision (verify)
    disagreements: int = 0  # fast-path tie flags that verify contradicted (a bug if ever non-zero)
    bound: dict = field(default_factory=dict)
    complete: bool = True

    def to_dict(self) -> dict:
        d = {"network": self.network, "dtype": self.dtype, "sweeps": self.sweeps, "points": self.points}
        d.update({k: self.counts[k] for k in KEYS})
        d.update(
            {
                "points_per_s": round(self.points_per_s, 1),
                "time_s": round(self.time_s, 6),
                "unknown": self.unknown,
                "examples": self.examples,
                "method": self.method,
                "decided_points": self.decided_points,
                "disagreements": self.disagreements,
                "lpa_bound": self.bound,
                "complete": self.complete,
            }
        )
        return d

    @property
    def exit_code(self) -> int:
        return 3 if any(self.unknown.values()) or self.disagreements else 0


def count(network, sweep, *, range=None, fixed=None, examples: int = 5, timeout: float = DEFAULT_TIMEOUT, convention=None, rounding=None, progress=None) -> CountResult:
    """Count the non-differentiable set (and the other sets of ``KEYS``) over one or two swept scalars.

    ``sweep``: "NAME[i,j]" or a list of one or two; ``range``: (lo, hi) rationals or "LO:HI" for every
    sweep, or a list with one such range per sweep (None: the whole format); ``fixed``: {"NAME[i]": value} overrides; ``examples``: how many
    points of each kind to return (hex, in sweep order); ``progress``: callable(done, total) or None."""
    t0 = time.perf_counter()
    net = network if isinstance(network, Network) else _load(network, rounding=rounding, convention=convention)
    specs = [sweep] if isinstance(sweep, str) else [*sweep]
    if not 1 <= len(specs) <= 2:
        raise InputError("count: give one or two --sweep")
    ranges = [*range] if isinstance(range, list) else [range] * len(specs)
    theta = net.theta.copy()
    for name, v in (fixed or {}).items():
        i, _ = resolve(net, name)
        theta[i] = float(v)
    sweeps = []
    for s, rg in zip(specs, ranges):
        i, label = resolve(net, s)
        lo, hi = parse_range(rg) if isinstance(rg, str) else (rg if rg is not None else (None, None))
        sweeps.append(Sweep(label, i, grid(net.fmt, lo, hi)))
    if len({s.index for s in sweeps}) != len(sweeps):
        raise InputError("count: the same scalar is swept twice")
    total = int(np.prod([len(s.values) for s in sweeps], dtype=np.int64))
    if total > MAX_POINTS:
        raise InputError(f"the sweep has {total} points (more than {MAX_POINTS}): give a smaller --range")
    inner, outer = sweeps[0], (sweeps[1] if len(sweeps) == 2 else None)
    layer, why = fast_path(net, inner.index)
    counts = {k: 0 for k in KEYS}
    unknown = {k: 0 for k in KEYS}
    shown = {k: [] for k in KEYS}
    state = {"decided": 0, "disagree": 0, "complete": True}
    deadline = t0 + timeout
    A = machine_arith(net.fmt)
    outer_vals = outer.values if outer is not None else [None]

    def label(t, u):
        return net.fmt.to_hex(t) if u is None else [net.fmt.to_hex(t), net.fmt.to_hex(u)]

    def add(k, v, pt):
        if v is None:
            unknown[k] += 1
        elif v:
            counts[k] += 1
            if len(shown[k]) < examples:
                shown[k].append(pt)

    def full(th, pt, rt=None, ft=None):
        if time.perf_counter() > deadline:
            state["complete"] = False
            for k in KEYS:
                if k == "real_tie" and rt is not None:
                    add(k, rt, pt)
                elif k == "float_tie" and ft is not None:
                    add(k, ft, pt)
                else:
                    unknown[k] += 1
            return
        d = decide_point(net, th)
        state["decided"] += 1
        if rt is not None and (d["real_tie"] is not None and d["real_tie"] != rt or d["float_tie"] != ft):
            state["disagree"] += 1
        for k in KEYS:
            add(k, d[k], pt)

    done = 0
    for u in outer_vals:
        th = theta.copy()
        if u is not None:
            th[outer.index] = u
        if layer is not None:
            rtie, ftie, mism = line(net, inner.index, layer, inner.values, th, A)
            cand = rtie | ftie
            for p in np.flatnonzero(cand | mism):
                t = float(inner.values[p])
                if not cand[p]:  # no tie: only the branch differs
                    add("compensation", True, label(t, u))
                    add("branch_mismatch", True, label(t, u))
                    continue
                th[inner.index] = t
                full(th.copy(), label(t, u), bool(rtie[p]), bool(ftie[p]))
        else:
            for t in inner.values:
                th[inner.index] = float(t)
                full(th.copy(), label(float(t), u))
        done += len(inner.values)
        if progress is not None:
            progress(done, total)
    dt = time.perf_counter() - t0
    return CountResult(
        network=net.source,
        dtype=net.fmt.name,
        sweeps=[s.label for s in sweeps],
        points=total,
        counts=counts,
        unknown=unknown,
        examples=shown,
        points_per_s=total / dt if dt > 0 else float("inf"),
        time_s=dt,
        method="walk" if layer is not None else f"per-point verify ({why})",
        decided_points=state["decided"],
        disagreements=state["disagree"],
        bound=lpa_bound(net, sweeps),
        complete=state["complete"],
    )
