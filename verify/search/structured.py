"""Structure before brute force: exact search for ties of first-layer units, without a solver.

Applies when the free parameters are entries of the first layer (a ``linear`` layer on fixed input
data), each used at most once per unit's row, the next layer is elementwise and nothing after it
has a kink. Then every tie is a first-layer unit on a kink, and its machine pre-activation

    z = fl(...fl(fl(w_0 x_0) + fl(w_1 x_1))... + b)

is a monotone function of each free entry (rounding to nearest is monotone; a product is
increasing in w for x > 0 and decreasing for x < 0). So over a box, the float z ranges exactly
between its values at two corners, and the exact z (linear) likewise: a kink outside both ranges
proves "no tie" (unsat) with exact arithmetic - no solver, nothing to trust. Inside the range a
float tie is constructed by bisection on the float grid of one coordinate at a time (monotone), and
a compensation is a float tie whose exact pre-activation is not the kink. When construction fails
within its budget the caller falls back to the SMT encoding.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
from gmpy2 import mpq

from ..encodings.arith import ArrayArith
from ..encodings.formats import exact


def applicable(net, bounds) -> bool:
    if len(net.layers) < 2 or net.layers[0].op != "linear" or net.layers[1].act is None:
        return False
    for L in net.layers[2:]:
        if L.op not in ("linear", "identity", "flatten") and not (L.act is not None and L.act.smooth and not L.act.transcendental):
            return False
    if net.loss.op == "l1":
        return False
    free = {p.offset for p, _, _ in bounds.values()}
    L0 = net.layers[0]
    for L in net.layers[1:]:
        for ref in (L.weight, L.bias):
            if ref is not None and set(ref.src[ref.src >= 0].tolist()) & free:
                return False
    W = L0.weight.src.reshape(L0.weight.shape)
    for i in range(W.shape[0]):
        used = [int(s) for s in W[i] if s in free]
        if L0.bias is not None and int(L0.bias.src[i]) in free:
            used.append(int(L0.bias.src[i]))
        if len(used) != len(set(used)):
            return False
    return True


class Unit:
    """One first-layer unit of one sample: machine and exact pre-activation as functions of theta."""

    def __init__(self, net, n, i):
        self.net = net
        L0 = net.layers[0]
        self.fmt = net.fmt
        self.x = [float(v) for v in net.inputs[n].reshape(-1)]
        self.src = L0.weight.src.reshape(L0.weight.shape)[i].tolist()
        self.sign = L0.weight.sign.reshape(L0.weight.shape)[i].tolist()
        self.const = L0.weight.const.reshape(L0.weight.shape)[i].tolist()
        if L0.bias is not None:
            self.bsrc, self.bsign, self.bconst = int(L0.bias.src[i]), float(L0.bias.sign[i]), float(L0.bias.const[i])
        else:
            self.bsrc = None

    def _w(self, theta, j):
        s = self.src[j]
        return (-theta[s] if self.sign[j] < 0 else theta[s]) if s >= 0 else self.const[j]

    def _b(self, theta):
        if self.bsrc is None:
            return None
        return (-theta[self.bsrc] if self.bsign < 0 else theta[self.bsrc]) if self.bsrc >= 0 else self.bconst

    def machine(self, theta) -> float:
        """The machine pre-activation, in the evaluator's order: each operation in binary64 then
        rounded into the format (exact for every supported format, see formats.py)."""

        def r(v):
            with np.errstate(all="ignore"):
                return float(self.fmt.round_array(np.array([v], dtype=np.float64))[0])

        acc = None
        for j, xv in enumerate(self.x):
            with np.errstate(all="ignore"):
                p = r(np.float64(self._w(theta, j)) * np.float64(xv))
            acc = p if acc is None else r(np.float64(acc) + np.float64(p))
        b = self._b(theta)
        if b is not None:
            acc = r(np.float64(acc) + np.float64(b))
        return acc

    def real(self, theta):
        z = sum((exact(self._w(theta, j)) * exact(xv) for j, xv in enumerate(self.x)), mpq(0))
        b = self._b(theta)
        return z + exact(b) if b is not None else z

    def direction(self, offset) -> int:
        """+1 / -1 / 0: how z moves when theta[offset] grows."""
        d = 0
        for j, s in enumerate(self.src):
            if s == offset and self.x[j] != 0:
                d += (1 if self.x[j] > 0 else -1) * (1 if self.sign[j] > 0 else -1)
        if self.bsrc == offset:
            d += 1 if self.bsign > 0 else -1
        return d


def _corner(theta, bounds, unit, up):
    t = theta.copy()
    for p, lo, hi in bounds.values():
        d = unit.direction(p.offset)
        t[p.offset] = (hi if (d > 0) == up else lo) if d != 0 else lo
    return t


def _bisect(fmt, f, lo, hi, target, increasing, steps=200):
    """A float v in [lo, hi] with f(v) == target for monotone f, or None (bisection on the grid)."""
    a, b = lo, hi
    fa, fb = f(a), f(b)
    if math.isnan(fa) or math.isnan(fb):  # NaN: no monotone structure to use
        return None
    if fa == target:
        return a
    if fb == target:
        return b
    if not increasing:
        fa, fb = fb, fa
    if not (fa <= target <= fb) if increasing else not (min(fa, fb) <= target <= max(fa, fb)):
        return None
    for _ in range(steps):
        if fmt.next_up(a) >= b:
            break
        m = fmt.round_rational((exact(a) + exact(b)) / 2)
        if m <= a or m >= b:
            m = fmt.next_up(a)
        fm = f(m)
        if fm == target:
            return m
        if (fm < target) == increasing:
            a = m
        else:
            b = m
    return None


def search_structured(net, goal, bounds, *, restarts=8, seed=0):
    """('sat', theta, key) / ('unsat', reason) / None (undecided here)."""
    theta0 = net.theta.copy()
    for p, lo, hi in bounds.values():
        theta0[p.offset] = lo if not lo <= theta0[p.offset] <= hi else theta0[p.offset]
    act = net.layers[1].act
    kinks = [k.at for k in act.kinks]
    units = [Unit(net, n, i) for n in range(net.batch) for i in range(net.layers[0].out_shape[0])]
    keys = [(1, n, i) for n in range(net.batch) for i in range(net.layers[0].out_shape[0])]
    float_possible, real_possible = [], []
    for key, u in zip(keys, units):
        zlo, zhi = u.machine(_corner(theta0, bounds, u, False)), u.machine(_corner(theta0, bounds, u, True))
        try:
            rlo, rhi = u.real(_corner(theta0, bounds, u, False)), u.real(_corner(theta0, bounds, u, True))
        except ValueError:  # an infinite entry: no bound
            rlo = rhi = None
        for k in kinks:
            fin = np.isfinite(zlo) and np.isfinite(zhi)
            if not fin or exact(zlo) <= k <= exact(zhi):
                float_possible.append((key, u, k))
            if rlo is None or rlo <= k <= rhi:
                real_possible.append((key, u, k))
    if goal == "float-tie" and not float_possible:
        return ("unsat", "no first-layer unit can reach a kink in the float run over the box (monotone corner bounds)")
    if goal == "real-tie" and not real_possible:
        return ("unsat", "no first-layer unit can reach a kink over the reals in the box (linear corner bounds)")
    if goal == "compensation" and not float_possible and not real_possible:
        return ("unsat", "no first-layer unit can reach a kink, float or real, over the box")
    if goal not in ("float-tie", "compensation"):
        return None
    rng = random.Random(seed)
    free = list(bounds.values())
    for key, u, k in float_possible:
        target = float(k)
        for attempt in range(restarts):
            t = theta0.copy()
            for p, lo, hi in (v for v in free):
                if attempt:
                    t[p.offset] = rng.choice([lo, hi, t[p.offset]])
            order = [f for f in free if u.direction(f[0].offset) != 0]
            rng.shuffle(order)
            for p, lo, hi in order:
                inc = u.direction(p.offset) > 0

                def f(v, p=p, t=t, u=u):
                    t2 = t.copy()
                    t2[p.offset] = v
                    return u.machine(t2)

                v = _bisect(net.fmt, f, lo, hi, target, inc)
                if v is not None:
                    t[p.offset] = v
                    try:
                        real_tie = u.real(t) == k
                    except ValueError:
                        real_tie = False
                    if goal == "float-tie" or not real_tie:
                        return ("sat", t, key)
                    break
    return None


# ================================================================================================
# Interval enclosures over the box: which units can tie at all (pruning and slicing)
#
# The network program runs once over interval arithmetics: MachineBox encloses the float run
# (rounding to nearest is monotone, so an operation on intervals is enclosed by the rounded results
# at the end points / corners) and RealBox the exact run, for every parameter value in the box at
# once. A unit whose float (real) enclosure contains no kink cannot tie anywhere in the box: its
# branch is fixed there, and the SMT query is sliced to the units that may tie.
# ================================================================================================


class FBox:
    """Machine values in [lo, hi] (format values, -0 = +0), or NaN when ``nan``."""

    __slots__ = ("hi", "lo", "nan")

    def __init__(self, lo, hi, nan=False):
        self.lo, self.hi, self.nan = lo, hi, nan

    def __neg__(self):
        return FBox(-self.hi, -self.lo, self.nan)

    def __repr__(self):
        return f"FBox({self.lo!r}, {self.hi!r}{', nan' if self.nan else ''})"


class RBox:
    """Real values in [lo, hi] (exact rationals)."""

    __slots__ = ("hi", "lo")

    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi

    def __neg__(self):
        return RBox(-self.hi, -self.lo)

    def __repr__(self):
        return f"RBox({self.lo}, {self.hi})"


def _objmap(fn, *arrays):
    with np.errstate(all="ignore"):
        return np.frompyfunc(fn, len(arrays), 1)(*arrays)


class _BoxArith:
    """Shared plumbing of the two interval arithmetics (symbolic path of ``program.forward``)."""

    symbolic = True
    exact = False
    name = "box"

    def zeros(self, shape):
        out = np.empty(shape, dtype=object)
        out.fill(self.point(0.0))
        return out

    def from_floats(self, a):
        a = np.asarray(a, dtype=object)
        out = np.empty(a.shape, dtype=object)
        for i, v in enumerate(a.reshape(-1)):
            out.reshape(-1)[i] = v if isinstance(v, (FBox, RBox)) else self.point(float(v))
        return out

    def add(self, a, b):
        return _objmap(self._add, a, b)

    def sub(self, a, b):
        return _objmap(self._sub, a, b)

    def mul(self, a, b):
        return _objmap(self._mul, a, b)

    def div(self, a, b):
        return _objmap(self._div, a, b)

    def neg(self, a):
        return _objmap(lambda v: -v, a)

    def sigmoid(self, a):
        from ..encodings.smt import Unsupported

        raise Unsupported("transcendental op: no interval enclosure here")

    tanh = exp = log = sigmoid

    dot = ArrayArith.dot
    seq_sum = ArrayArith.seq_sum

    # -- branches ---------------------------------------------------------------------------
    def tie_conditions(self, act, x):
        return _objmap(lambda v: any(self.may_equal(v, k) for k in act.kinks), x)

    def piecewise_value(self, act, x):
        return _objmap(lambda v: self._piecewise(act, v), x)

    def _piecewise(self, act, v):
        if self.is_nan_only(v):
            return v
        parts = []
        ks = act.kinks
        for i, pc in enumerate(act.pieces):
            lo_k = ks[i - 1] if i > 0 else None
            hi_k = ks[i] if i < len(ks) else None
            clipped = self.clip(v, lo_k, hi_k)
            if clipped is None:
                continue
            parts.append(pc.value_program(clipped, self.scalar))
        return self.union(parts, v)

    def max_first(self, windows):
        m = np.empty(windows.shape[:-1], dtype=object)
        eq = np.empty(windows.shape, dtype=object)
        for idx in np.ndindex(*windows.shape[:-1]):
            vals = [windows[idx + (j,)] for j in range(windows.shape[-1])]
            mx = self.maximum(vals)
            m[idx] = mx
            for j, v in enumerate(vals):
                eq[idx + (j,)] = self.may_be_max(v, mx)
        return m, eq


class _Scalar:
    """The arithmetic the piece programs see (scalars)."""

    def __init__(self, A):
        self.A = A

    def const(self, q):
        return self.A.const(q)

    def add(self, a, b):
        return self.A._add(a, b)

    def sub(self, a, b):
        return self.A._sub(a, b)

    def mul(self, a, b):
        return self.A._mul(a, b)

    def div(self, a, b):
        return self.A._div(a, b)

    def neg(self, a):
        return -a


class MachineBox(_BoxArith, ArrayArith):
    """Enclosures of the machine run: each operation rounds the end-point (corner) results, which
    encloses every rounded result because rounding to nearest is monotone."""

    def __init__(self, fmt):
        self.fmt = fmt
        self.scalar = _Scalar(self)
        dt = fmt.numpy_dtype
        self._cast = np.dtype(dt).type if dt is not None else None

    def rnd(self, v):
        if self._cast is not None:
            with np.errstate(all="ignore"):
                return float(self._cast(v))
        return float(self.fmt.round_array(np.array([v], dtype=np.float64))[0])

    def point(self, v):
        v = float(v)
        return FBox(v, v, nan=True) if math.isnan(v) else FBox(v, v)

    def const(self, q):
        v = q if isinstance(q, float) and self.fmt.is_representable(q) else self.fmt.round_rational(exact(q) if isinstance(q, float) else q)
        return self.point(v)

    def is_nan_only(self, v):
        return v.nan and math.isnan(v.lo)

    def _ends(self, vals, nan):
        vals = [x for x in vals if not math.isnan(x)]
        if not vals:
            return FBox(float("nan"), float("nan"), True)
        return FBox(self.rnd(min(vals)), self.rnd(max(vals)), nan or len(vals) < 4)

    def _corners(self, a, b, op):
        if self.is_nan_only(a) or self.is_nan_only(b):
            return FBox(float("nan"), float("nan"), True)
        with np.errstate(all="ignore"):
            vals = [op(np.float64(x), np.float64(y)) for x in (a.lo, a.hi) for y in (b.lo, b.hi)]
        res = self._ends([float(v) for v in vals], a.nan or b.nan)
        if not res.nan and any(math.isnan(v) for v in vals):
            res.nan = True
        return res

    def _add(self, a, b):
        r = self._corners(a, b, lambda x, y: x + y)
        if (a.hi == float("inf") and b.lo == float("-inf")) or (a.lo == float("-inf") and b.hi == float("inf")):
            r.nan = True
        return r

    def _sub(self, a, b):
        return self._add(a, -b)

    def _mul(self, a, b):
        r = self._corners(a, b, lambda x, y: x * y)
        zero_a, zero_b = a.lo <= 0 <= a.hi, b.lo <= 0 <= b.hi
        inf_a, inf_b = abs(a.lo) == float("inf") or abs(a.hi) == float("inf"), abs(b.lo) == float("inf") or abs(b.hi) == float("inf")
        if (zero_a and inf_b) or (zero_b and inf_a):
            r.nan = True
        return r

    def _div(self, a, b):
        if b.lo <= 0 <= b.hi:
            return FBox(float("-inf"), float("inf"), True)
        return self._corners(a, b, lambda x, y: x / y)

    def may_equal(self, v, k):
        if not self.fmt.is_representable(k.at):
            return False  # no format value equals it
        return not self.is_nan_only(v) and v.lo <= float(k.at) <= v.hi

    def clip(self, v, lo_k, hi_k):
        lo, hi = v.lo, v.hi
        if lo_k is not None and self.fmt.is_representable(lo_k.at):
            lo = max(lo, float(lo_k.at))
        if hi_k is not None and self.fmt.is_representable(hi_k.at):
            hi = min(hi, float(hi_k.at))
        if math.isnan(lo) or lo > hi:
            return None
        return FBox(lo, hi)

    def union(self, parts, v):
        parts = [p for p in parts if not self.is_nan_only(p)]
        if not parts:
            return FBox(float("nan"), float("nan"), True)
        return FBox(min(p.lo for p in parts), max(p.hi for p in parts), v.nan or any(p.nan for p in parts))

    def maximum(self, vals):
        if any(v.nan for v in vals):
            ok = [v for v in vals if not math.isnan(v.lo)]
            return FBox(min(v.lo for v in ok), max(v.hi for v in ok), True) if ok else FBox(float("nan"), float("nan"), True)
        return FBox(max(v.lo for v in vals), max(v.hi for v in vals))

    def may_be_max(self, v, mx):
        return mx.nan or v.nan or v.hi >= mx.lo


class RealBox(_BoxArith, ArrayArith):
    """Enclosures of the exact run (interval arithmetic over the rationals)."""

    exact = True

    def __init__(self, fmt):
        self.fmt = fmt
        self.scalar = _Scalar(self)

    def point(self, v):
        q = exact(v) if isinstance(v, float) else mpq(v)
        return RBox(q, q)

    def const(self, q):
        return self.point(q)

    def from_floats(self, a):
        a = np.asarray(a, dtype=object)
        out = np.empty(a.shape, dtype=object)
        for i, v in enumerate(a.reshape(-1)):
            if isinstance(v, RBox):
                out.reshape(-1)[i] = v
            else:
                if not np.isfinite(float(v)):
                    raise ValueError("an infinite value: the exact semantics is undefined")
                out.reshape(-1)[i] = self.point(float(v))
        return out

    def is_nan_only(self, v):
        return False

    def _add(self, a, b):
        return RBox(a.lo + b.lo, a.hi + b.hi)

    def _sub(self, a, b):
        return RBox(a.lo - b.hi, a.hi - b.lo)

    def _mul(self, a, b):
        ps = [a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi]
        return RBox(min(ps), max(ps))

    def _div(self, a, b):
        if b.lo <= 0 <= b.hi:
            raise ValueError("division by an enclosure around 0")
        ps = [a.lo / b.lo, a.lo / b.hi, a.hi / b.lo, a.hi / b.hi]
        return RBox(min(ps), max(ps))

    def may_equal(self, v, k):
        return v.lo <= k.at <= v.hi

    def clip(self, v, lo_k, hi_k):
        lo = max(v.lo, lo_k.at) if lo_k is not None else v.lo
        hi = min(v.hi, hi_k.at) if hi_k is not None else v.hi
        return RBox(lo, hi) if lo <= hi else None

    def union(self, parts, v):
        return RBox(min(p.lo for p in parts), max(p.hi for p in parts))

    def maximum(self, vals):
        return RBox(max(v.lo for v in vals), max(v.hi for v in vals))

    def may_be_max(self, v, mx):
        return v.hi >= mx.lo


@dataclass
class UnitBox:
    """What the enclosures say about one unit (kinked neuron, max-pool window or l1 residual)."""

    key: tuple  # (layer, sample, unit)
    kind: str  # "act" | "pool" | "l1"
    float_tie: bool  # may tie in the float run somewhere in the box
    real_tie: bool | None  # may tie in the exact run (None: no exact enclosure)
    float_piece: int | None = None  # the fixed piece of the float run (act/l1), or fixed argmax (pool)
    real_piece: int | None = None
    float_box: object = None
    real_box: object = None

    def to_dict(self) -> dict:
        def show(b):
            if b is None:
                return None
            if isinstance(b, list):  # a max-pool window: its entries
                return [show(v) for v in b]
            return [str(b.lo), str(b.hi)] + (["nan"] if getattr(b, "nan", False) else [])

        return {
            "key": list(self.key),
            "kind": self.kind,
            "may_float_tie": self.float_tie,
            "may_real_tie": self.real_tie,
            "float_branch": self.float_piece,
            "real_branch": self.real_piece,
            "float_enclosure": show(self.float_box),
            "real_enclosure": show(self.real_box),
        }


def _fixed_piece(A, v, kinks):
    """The piece every value of the enclosure lies on, if no kink can be reached (else None)."""
    if v is None or getattr(v, "nan", False) or any(A.may_equal(v, k) for k in kinks):
        return None
    for i, k in enumerate(kinks):
        at = float(k.at) if isinstance(A, MachineBox) else k.at
        if v.hi < at:
            return i
        if not v.lo > at:
            return None  # straddles a kink that is not representable: both sides possible
    return len(kinks)


def _fixed_argmax(A, vals):
    if any(getattr(v, "nan", False) for v in vals):
        return None
    best = max(range(len(vals)), key=lambda j: vals[j].lo)
    return best if all(vals[best].lo > v.hi for j, v in enumerate(vals) if j != best) else None


def enclosures(net, bounds) -> dict:
    """{key: UnitBox} for every kinked unit, max-pool window and l1 residual, over the box
    ``bounds`` = {name: (param, lo, hi)} (other params at their file values)."""
    from ..encodings import program as P

    MB, RB = MachineBox(net.fmt), RealBox(net.fmt)
    theta_f = MB.from_floats(net.theta)
    for p, lo, hi in bounds.values():
        theta_f[p.offset] = FBox(float(lo), float(hi))
    ff = P.forward(net, MB, theta=theta_f)
    fr = None
    try:
        theta_r = RB.from_floats(net.theta)
        for p, lo, hi in bounds.values():
            if not (np.isfinite(lo) and np.isfinite(hi)):
                raise ValueError("an infinite bound")
            theta_r[p.offset] = RBox(exact(float(lo)), exact(float(hi)))
        fr = P.forward(net, RB, theta=theta_r)
    except ValueError:
        fr = None
    out = {}
    N = net.batch
    for L in net.layers:
        if L.index in ff.loc:
            kinks = L.act.kinks
            xf = ff.xs[L.index].reshape(N, -1)
            xr = fr.xs[L.index].reshape(N, -1) if fr is not None else None
            for (n, u), v in np.ndenumerate(xf):
                rv = xr[n, u] if xr is not None else None
                out[(L.index, n, u)] = UnitBox(
                    (L.index, n, u),
                    "act",
                    any(MB.may_equal(v, k) for k in kinks),
                    None if rv is None else any(RB.may_equal(rv, k) for k in kinks),
                    _fixed_piece(MB, v, kinks),
                    None if rv is None else _fixed_piece(RB, rv, kinks),
                    v,
                    rv,
                )
        elif L.index in ff.pools:
            idx = P.pool_index(L)
            wf = ff.xs[L.index].reshape(N, -1)[:, idx]
            wr = fr.xs[L.index].reshape(N, -1)[:, idx] if fr is not None else None
            ef = ff.pools[L.index]
            er = fr.pools[L.index] if fr is not None else None
            for n in range(N):
                for w in range(idx.shape[0]):
                    fv = list(wf[n, w])
                    rv = list(wr[n, w]) if wr is not None else None
                    out[(L.index, n, w)] = UnitBox(
                        (L.index, n, w),
                        "pool",
                        sum(bool(e) for e in ef[n, w]) >= 2,
                        None if er is None else sum(bool(e) for e in er[n, w]) >= 2,
                        _fixed_argmax(MB, fv),
                        None if rv is None else _fixed_argmax(RB, rv),
                        fv,
                        rv,
                    )
    if ff.loss_loc is not None:
        kinks = P._abs().kinks
        for (n, u), v in np.ndenumerate(ff.residual):
            rv = fr.residual[n, u] if fr is not None else None
            out[(len(net.layers), n, u)] = UnitBox(
                (len(net.layers), n, u),
                "l1",
                MB.may_equal(v, kinks[0]),
                None if rv is None else RB.may_equal(rv, kinks[0]),
                _fixed_piece(MB, v, kinks),
                None if rv is None else _fixed_piece(RB, rv, kinks),
                v,
                rv,
            )
    return out
