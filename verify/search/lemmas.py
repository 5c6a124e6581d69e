"""Rounding-aware lemmas: decide common search questions exactly, before any solver.

They look at one first-layer unit at a time (a ``linear`` layer on the fixed input data followed by
a kinked activation). Its machine pre-activation, in the evaluator's order, is

    p_j = fl(w_j x_j),  acc = p_0,  acc = fl(acc + p_j) (j = 1..n-1),  z = fl(acc + b)

and its exact one is ``sum w_j x_j + b``. A goal "some unit ties" is a disjunction over units, and
a first-layer unit depends only on its own row of free entries, so

    exists theta in the box: OR_u P_u(theta)   <=>   OR_u exists theta in the box: P_u(theta)

and each unit can be decided on its own. A unit is decided here by

- **one free entry in its row** (``--free l0.bias``: every unit has exactly one): it enters linearly.
  Real ties are solved exactly, ``v = (k - rest) / c``, a tie iff that rational is a value of the
  format inside the box; the float pre-activation is monotone in v (rounding to nearest is
  monotone), so the float ties form one interval of the float grid per kink, found by bisection on
  the grid ordinals (complete: a monotone step function is bracketed to adjacent grid points);
- **exact operations**: a product by +-2^e (x = 1, -1, 2, 1/2 ...) or by 0 is exact when it
  cannot overflow or underflow over the box, a sum of terms on a common grid 2^g is exact while
  |sum| <= 2^(p+g), a difference of same-signed terms within a factor of 2 is exact (Sterbenz).
  If every operation is exact, fl(z) = z everywhere: float tie <=> real tie. If all but the last
  operation are exact and the last is an addition, the kinks at 0 still agree: IEEE round to
  nearest never changes the sign of a sum nor rounds a non-zero sum to zero (gradual underflow),
  so fl(z) = 0 <=> z = 0 (a compensation is impossible: z = w*1 + b, for instance);
- **the rigorous error bound** |fl(z) - z| <= gamma_m * sum |terms| + n 2^(emin-M)
  (gamma_m = m u / (1 - m u), u = 2^-p, m roundings along the longest chain): a unit whose exact
  pre-activation stays further than that from every kink over the box ties neither way;
- **solving for an entry that enters linearly** at a few trial points (real ties, sat only).

Every "no" is a statement about every point of the box, proven with exact rational arithmetic;
every "yes" is a witness that the caller confirms by point verification.
"""

from __future__ import annotations

import math

import numpy as np
from gmpy2 import mpq

from ..encodings.formats import exact

FIRST = 1  # the layer index of the first layer's activation (keys (1, n, i))


def first_layer(net) -> bool:
    return len(net.layers) >= 2 and net.layers[0].op == "linear" and net.layers[1].act is not None and bool(net.layers[1].act.kinks)


class Row:
    """Unit i of sample n of the first layer: the machine and exact pre-activation over theta."""

    def __init__(self, net, n, i):
        L0 = net.layers[0]
        shp = L0.weight.shape
        self.fmt = net.fmt
        self.key = (FIRST, n, i)
        self.x = [float(v) for v in net.inputs[n].reshape(-1)]
        self.src = [int(s) for s in L0.weight.src.reshape(shp)[i]]
        self.sign = [float(s) for s in L0.weight.sign.reshape(shp)[i]]
        self.const = [float(c) for c in L0.weight.const.reshape(shp)[i]]
        self.has_bias = L0.bias is not None
        if self.has_bias:
            self.bsrc, self.bsign, self.bconst = int(L0.bias.src[i]), float(L0.bias.sign[i]), float(L0.bias.const[i])
        dt = net.fmt.numpy_dtype
        self._cast = np.dtype(dt).type if dt is not None else None

    def rnd(self, v) -> float:  # callers hold np.errstate(all="ignore")
        if self._cast is not None:
            return float(self._cast(v))
        return float(self.fmt.round_array(np.array([v], dtype=np.float64))[0])

    def w(self, theta, j):
        s = self.src[j]
        return (-theta[s] if self.sign[j] < 0 else theta[s]) if s >= 0 else self.const[j]

    def b(self, theta):
        s = self.bsrc
        return (-theta[s] if self.bsign < 0 else theta[s]) if s >= 0 else self.bconst

    def machine(self, theta) -> float:
        with np.errstate(all="ignore"):
            return self._chain(theta, 0, None)

    def _chain(self, theta, start, acc):
        """The evaluator's chain from product ``start`` on, with the running sum ``acc``."""
        r = self.rnd
        for j in range(start, len(self.x)):
            p = r(np.float64(self.w(theta, j)) * np.float64(self.x[j]))
            acc = p if acc is None else r(np.float64(acc) + np.float64(p))
        if self.has_bias:
            acc = r(np.float64(acc) + np.float64(self.b(theta)))
        return acc

    def machine_in(self, theta, pos):
        """z as a function of the entry read at ``pos`` (a weight index or "b"), the rest of theta
        fixed: the running sum before it is computed once."""
        with np.errstate(all="ignore"):
            if pos == "b":
                acc = self._chain_no_bias(theta)
                return lambda t: self._add_bias(acc, t)
            acc = self._chain_prefix(theta, pos)
            return lambda t: self._chain_safe(t, pos, acc)

    def _add_bias(self, acc, t):
        with np.errstate(all="ignore"):
            return self.rnd(np.float64(acc) + np.float64(self.b(t)))

    def _chain_safe(self, t, pos, acc):
        with np.errstate(all="ignore"):
            return self._chain(t, pos, acc)

    def _chain_no_bias(self, theta):
        r, acc = self.rnd, None
        for j in range(len(self.x)):
            p = r(np.float64(self.w(theta, j)) * np.float64(self.x[j]))
            acc = p if acc is None else r(np.float64(acc) + np.float64(p))
        return acc

    def _chain_prefix(self, theta, stop):
        r, acc = self.rnd, None
        for j in range(stop):
            p = r(np.float64(self.w(theta, j)) * np.float64(self.x[j]))
            acc = p if acc is None else r(np.float64(acc) + np.float64(p))
        return acc

    def real(self, theta):
        z = sum((exact(self.w(theta, j)) * exact(xv) for j, xv in enumerate(self.x)), mpq(0))
        return z + exact(self.b(theta)) if self.has_bias else z

    def uses(self, free) -> list:
        """Positions of the row that read a free entry: (j | "b", offset, coefficient sign)."""
        out = [(j, s, self.sign[j]) for j, s in enumerate(self.src) if s in free]
        if self.has_bias and self.bsrc in free:
            out.append(("b", self.bsrc, self.bsign))
        return out


# ------------------------------------------------------------------------------------------------
# one free entry: exact real solutions, float tie intervals by bisection on the grid


class _NaN(Exception):
    pass


def _one_free(row, theta0, e, lo, hi, kinks, goal):
    """Decide a unit whose row reads one free entry (offset e) once. ('yes', theta, why) /
    ('no', why) / None."""
    fmt = row.fmt
    if not (math.isfinite(lo) and math.isfinite(hi)) or not all(math.isfinite(v) for v in row.x):
        return None
    pos = next(j for j, s, _ in row.uses({e}))
    coef = exact(row.x[pos]) * int(row.sign[pos]) if pos != "b" else mpq(int(row.bsign))
    t = theta0.copy()

    def at(v):
        t2 = t.copy()
        t2[e] = v
        return t2

    try:
        rest = row.real(at(0.0))  # exact pre-activation without the free entry's term
    except ValueError:
        return None
    if coef == 0:  # the entry is multiplied by 0: the unit is constant over the box
        return _fixed(row, theta0, kinks, goal)
    # real ties: coef * v + rest = k
    real_pts = []
    for k in kinks if goal != "float-tie" else []:
        if coef == 0:
            if rest == k:
                real_pts.append(lo)
            continue
        v = (k - rest) / coef
        if exact(lo) <= v <= exact(hi) and fmt.is_representable(v):
            real_pts.append(float(v))
    # float ties: z(v) monotone in v; per representable kink an interval of grid ordinals
    olo, ohi = fmt.ordinal(lo), fmt.ordinal(hi)
    zf = row.machine_in(t, pos)
    zs = [zf(at(lo)), zf(at(hi))]
    if any(math.isnan(z) for z in zs):
        return None
    d = 1 if coef >= 0 else -1

    def h(o):  # non-decreasing in o
        z = zf(at(fmt.from_ordinal(o)))
        if math.isnan(z):
            raise _NaN
        return d * z

    float_iv = []
    try:
        for k in kinks if goal != "real-tie" else []:
            if not fmt.is_representable(k):
                continue
            tk = d * float(k)
            a = _lower_bound(h, olo, ohi, lambda y, tk=tk: y >= tk)
            b = _lower_bound(h, olo, ohi, lambda y, tk=tk: y > tk)
            if a < b:
                float_iv.append((a, b - 1))
    except _NaN:
        return None
    real_ord = {fmt.ordinal(v) for v in real_pts}
    hx = lambda o: fmt.to_hex(fmt.from_ordinal(o))  # noqa: E731
    reals = ", ".join(hx(o) for o in sorted(real_ord)) or "none"
    floats = ", ".join(f"[{hx(a)}, {hx(b)}]" if a != b else hx(a) for a, b in float_iv) or "none"
    where = f"one free entry, exact: real ties {reals}; float ties {floats}"
    if goal == "real-tie":
        return ("yes", at(real_pts[0]), where) if real_pts else ("no", where)
    if goal == "float-tie":
        return ("yes", at(fmt.from_ordinal(float_iv[0][0])), where) if float_iv else ("no", where)
    for a, b in float_iv:  # compensation: a float tie that is not a real tie, or the reverse
        for o in range(a, min(b, a + len(real_ord)) + 1):
            if o not in real_ord:
                return ("yes", at(fmt.from_ordinal(o)), where)
    for o in real_ord:
        if not any(a <= o <= b for a, b in float_iv):
            return ("yes", at(fmt.from_ordinal(o)), where)
    return ("no", where)


def _lower_bound(h, a, b, pred):
    """The smallest ordinal o in [a, b] with pred(h(o)) (pred monotone false -> true), else b + 1."""
    lo, hi = a, b + 1
    while lo < hi:
        m = (lo + hi) // 2
        if pred(h(m)):
            hi = m
        else:
            lo = m + 1
    return lo


# ------------------------------------------------------------------------------------------------
# exact operations over the box, sign preservation, the error bound


class _Iv:
    """Exact values in [lo, hi] (rationals), every one a multiple of 2^g (g None: only zero)."""

    __slots__ = ("g", "hi", "lo")

    def __init__(self, lo, hi, g):
        self.lo, self.hi, self.g = lo, hi, g

    @property
    def mag(self):
        return max(abs(self.lo), abs(self.hi))

    @property
    def zero(self):
        return self.lo == 0 and self.hi == 0


def _grid_of(fmt, lo, hi):
    """log2 of a power of two dividing every format value in [lo, hi] (None if only zero)."""
    if lo == 0 and hi == 0:
        return None
    if lo <= 0 <= hi:
        return fmt.emin - fmt.fraction_bits
    m = min(abs(lo), abs(hi))
    if lo == hi:
        q = exact(m)
        num, den = q.numerator, q.denominator
        return (int(num) & -int(num)).bit_length() - 1 - (int(den).bit_length() - 1)
    return max(math.frexp(m)[1] - 1, fmt.emin) - fmt.fraction_bits


def _operand(bounds_by_offset, theta0, src, sign, const):
    """(lo, hi, sign) of one operand of a unit: a free entry's box, a fixed entry's value, or a
    constant (sign 1); ValueError when a bound is not finite."""
    if src >= 0:
        lo, hi = bounds_by_offset.get(src, (theta0[src], theta0[src]))
    else:
        lo = hi = const
        sign = 1.0
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError
    return lo, hi, sign


def _entry_iv(fmt, lo, hi, sign):
    if sign < 0:
        lo, hi = -hi, -lo
    return _Iv(exact(lo), exact(hi), _grid_of(fmt, lo, hi))


def _product_exact(fmt, W, xv):
    """Is fl(w * x) = w * x for every w in W? Returns the product's _Iv or None."""
    x = exact(xv)
    if x == 0 or W.zero:
        return _Iv(mpq(0), mpq(0), None)
    lo, hi = sorted([W.lo * x, W.hi * x])
    if W.lo == W.hi:
        p = W.lo * x
        if not fmt.is_representable(p):
            return None
        return _Iv(p, p, _grid_of(fmt, float(p), float(p)))
    num, den = abs(x.numerator), x.denominator
    if num & (num - 1) or den & (den - 1):
        return None  # x is not +-2^e: only the grid argument below could help; not used
    e = (int(num).bit_length() - 1) - (int(den).bit_length() - 1)
    if max(abs(lo), abs(hi)) > exact(fmt.max_finite):
        return None
    if e < 0:
        small = mpq(0) if W.lo <= 0 <= W.hi else min(abs(W.lo), abs(W.hi))
        if small * abs(x) < exact(fmt.min_normal):
            return None  # the product may be subnormal and lose bits
    return _Iv(lo, hi, max(W.g + e, fmt.emin - fmt.fraction_bits))


def _sum_exact(fmt, A, B):
    """Is fl(a + b) = a + b for every a in A, b in B (exact operands)? The sum's _Iv or None."""
    lo, hi = A.lo + B.lo, A.hi + B.hi
    g = min(v for v in (A.g, B.g) if v is not None) if (A.g, B.g) != (None, None) else None
    if A.zero or B.zero:
        return _Iv(lo, hi, g)
    if max(abs(lo), abs(hi)) > exact(fmt.max_finite):
        return None
    if A.mag + B.mag <= mpq(2) ** (fmt.precision + max(g, fmt.emin - fmt.fraction_bits)):
        return _Iv(lo, hi, g)  # multiples of 2^g, |sum| <= 2^(p+g): a value of the format
    # Sterbenz: a, -b of one sign, y/2 <= x <= 2y for every x in A, y in -B
    for P, Q in ((A, B), (B, A)):
        if P.lo > 0 and Q.hi < 0:
            x_lo, x_hi, y_lo, y_hi = P.lo, P.hi, -Q.hi, -Q.lo
            if y_hi <= 2 * x_lo and x_hi <= 2 * y_lo:
                return _Iv(lo, hi, g)
    return None


def operations(row, bounds_by_offset, theta0):
    """The unit's operations over the box: a list of (kind, exact?) in the evaluator's order, with
    kind "mul" | "add" | "add0" (adding a constant zero). None when an operand is not finite."""
    fmt = row.fmt
    ops = []

    def entry(src, sign, const):
        lo, hi, sign = _operand(bounds_by_offset, theta0, src, sign, const)
        return _entry_iv(fmt, lo, hi, sign)

    try:
        acc = None
        exact_so_far = True
        for j, xv in enumerate(row.x):
            if not math.isfinite(xv):
                return None
            W = entry(row.src[j], row.sign[j], row.const[j])
            p = _product_exact(fmt, W, xv) if exact_so_far else None
            ops.append(("mul", p is not None))
            if acc is None:
                acc = p
                exact_so_far = p is not None
                continue
            s = _sum_exact(fmt, acc, p) if (acc is not None and p is not None) else None
            ops.append(("add", s is not None))
            acc = s
            exact_so_far = s is not None
        if row.has_bias:
            B = entry(row.bsrc, row.bsign, row.bconst)
            if B.zero:
                ops.append(("add0", True))
            else:
                s = _sum_exact(fmt, acc, B) if acc is not None else None
                ops.append(("add", s is not None))
    except ValueError:
        return None
    return ops


def _sign_lemma(ops, kinks):
    """'exact' (fl z = z over the box), 'sign' (fl z = 0 <=> z = 0 over the box) or None."""
    if ops is None:
        return None
    rounded = [i for i, (_, ok) in enumerate(ops) if not ok]
    if not rounded:
        return "exact"
    if len(rounded) == 1 and ops[rounded[0]][0] == "add" and all(kind == "add0" for kind, _ in ops[rounded[0] + 1 :]):
        if all(k == 0 for k in kinks):
            return "sign"
    return None


def _error_bound(row, bounds_by_offset, theta0):
    """(exact enclosure lo, hi, E) with |fl(z) - z| <= E over the box, or None (infinite data,
    possible overflow)."""
    fmt = row.fmt
    n = len(row.x)
    terms = mpq(0)
    lo = hi = mpq(0)

    def rng(src, sign, const):
        a, b, sign = _operand(bounds_by_offset, theta0, src, sign, const)
        a, b = exact(a), exact(b)
        return (-b, -a) if sign < 0 else (a, b)

    try:
        for j, xv in enumerate(row.x):
            if not math.isfinite(xv):
                return None
            a, b = rng(row.src[j], row.sign[j], row.const[j])
            ps = sorted([a * exact(xv), b * exact(xv)])
            lo, hi = lo + ps[0], hi + ps[1]
            terms += max(abs(ps[0]), abs(ps[1]))
        m = n  # roundings along the longest chain: p_0's product and the n - 1 additions ...
        if row.has_bias:
            a, b = rng(row.bsrc, row.bsign, row.bconst)
            lo, hi = lo + a, hi + b
            terms += max(abs(a), abs(b))
            m += 1  # ... and the bias addition
    except ValueError:
        return None
    u = mpq(1, 2**fmt.precision)
    if m * u >= 1:
        return None
    gamma = m * u / (1 - m * u)
    if terms * (1 + gamma) * 2 >= exact(fmt.max_finite):
        return None  # an intermediate might overflow
    E = gamma * terms + n * mpq(2) ** (fmt.emin - fmt.fraction_bits)
    return lo, hi, E


# ------------------------------------------------------------------------------------------------
# solving for an entry that enters linearly, at a few trial points (real ties; sat only)


def _solve_linear(row, theta0, uses, bounds_by_offset, kinks, rng):
    fmt = row.fmt
    trials = [theta0.copy()]
    for pick in (lambda lo, hi: lo, lambda lo, hi: hi):
        t = theta0.copy()
        for _, s, _ in uses:
            t[s] = pick(*bounds_by_offset[s])
        trials.append(t)
    for _ in range(4):
        t = theta0.copy()
        for _, s, _ in uses:
            lo, hi = bounds_by_offset[s]
            a, b = fmt.ordinal(lo), fmt.ordinal(hi)
            t[s] = fmt.from_ordinal(rng.randint(a, b))
        trials.append(t)
    for t in trials:
        try:
            z = row.real(t)
        except ValueError:
            continue
        for j, s, sg in uses:
            if [u[1] for u in uses].count(s) != 1:
                continue
            c = (exact(row.x[j]) if j != "b" else mpq(1)) * int(sg)
            if c == 0:
                continue
            cur = exact(t[s])
            for k in kinks:
                v = cur + (k - z) / c
                lo, hi = bounds_by_offset[s]
                if exact(lo) <= v <= exact(hi) and fmt.is_representable(v):
                    t2 = t.copy()
                    t2[s] = float(v)
                    return t2
    return None


# ------------------------------------------------------------------------------------------------


def _fixed(row, theta0, kinks, goal):
    """A unit that does not depend on the free entries: decided at one point."""
    zf = row.machine(theta0)
    try:
        zr = row.real(theta0)
    except ValueError:
        return None
    ft, rt = any(zf == k for k in kinks if row.fmt.is_representable(k)), any(zr == k for k in kinks)
    hit = {"float-tie": ft, "real-tie": rt, "compensation": ft != rt}[goal]
    return ("yes", theta0.copy(), "a unit the free entries do not change") if hit else ("no", "a unit the free entries do not change")


def decide_unit(row, goal, bounds_by_offset, theta0, kinks, rng):
    """('yes', theta, why) / ('no', why) / None for one first-layer unit."""
    free = set(bounds_by_offset)
    uses = row.uses(free)
    offsets = [s for _, s, _ in uses]
    if not uses:
        return _fixed(row, theta0, kinks, goal)
    if len(set(offsets)) == 1 and len(offsets) == 1:
        lo, hi = bounds_by_offset[offsets[0]]
        r = _one_free(row, theta0, offsets[0], lo, hi, kinks, goal)
        if r is not None:
            return r
    eb = _error_bound(row, bounds_by_offset, theta0)
    if eb is not None:
        lo, hi, E = eb
        if all(lo - k > E or k - hi > E for k in kinks):
            return ("no", f"error bound: the exact pre-activation stays more than {float(E):.3g} (the rigorous float bound) from every kink")
    lemma = _sign_lemma(operations(row, bounds_by_offset, theta0), kinks)
    if goal == "compensation" and lemma is not None:
        why = "every operation is exact over the box: fl(z) = z" if lemma == "exact" else "exact terms and one rounded addition: fl(z) = 0 iff z = 0 (sign preservation)"
        return ("no", why)
    if goal == "real-tie" or (goal == "float-tie" and lemma == "exact"):
        t = _solve_linear(row, theta0, uses, bounds_by_offset, kinks, rng)
        if t is not None:
            return ("yes", t, "solved for an entry that enters linearly")
    r = _enumerate_and_solve(row, goal, bounds_by_offset, theta0, kinks, offsets)
    if r is None and goal in ("float-tie", "compensation"):
        r = _one_free_at_trials(row, goal, bounds_by_offset, theta0, kinks, uses)
    return r


def _one_free_at_trials(row, goal, bb, theta0, kinks, uses):
    """Sat only: the others at the file point or a corner, one entry (the bias if free, else the
    weight with the largest |x|) decided exactly by bisection on its grid."""
    once = [u for u in uses if [v[1] for v in uses].count(u[1]) == 1]
    if not once:
        return None
    bias = [u for u in once if u[0] == "b"]
    e = (bias or [max(once, key=lambda u: abs(row.x[u[0]]))])[0][1]
    for pick in (None, 0, 1):
        t = theta0.copy()
        if pick is not None:
            for _, s, _ in uses:
                t[s] = bb[s][pick]
        r = _one_free(row, t, e, bb[e][0], bb[e][1], kinks, goal)
        if r is not None and r[0] == "yes":
            return ("yes", r[1], "the other entries at a corner, one entry solved exactly")
    return None


ENUMERATE_MAX = {"real-tie": 4096, "float-tie": 512, "compensation": 512}  # grid points of the other entries


def _enumerate_and_solve(row, goal, bb, theta0, kinks, offsets):
    """Several free entries in the row, each read once: every grid point of all but the one with the
    largest grid, and the exact one-entry decision for that one (exact when the others' grid is
    small)."""
    import itertools

    fmt = row.fmt
    if len(set(offsets)) != len(offsets):
        return None
    size = {e: fmt.ordinal(bb[e][1]) - fmt.ordinal(bb[e][0]) + 1 for e in offsets}
    solved = max(offsets, key=lambda e: size[e])
    rest = [e for e in offsets if e != solved]
    total = math.prod(size[e] for e in rest)
    if total > ENUMERATE_MAX[goal] or not all(math.isfinite(v) for e in offsets for v in bb[e]):
        return None
    grids = [[fmt.from_ordinal(o) for o in range(fmt.ordinal(bb[e][0]), fmt.ordinal(bb[e][1]) + 1)] for e in rest]
    t = theta0.copy()
    for combo in itertools.product(*grids):
        for e, v in zip(rest, combo):
            t[e] = v
        r = _one_free(row, t, solved, bb[solved][0], bb[solved][1], kinks, goal)
        if r is None:
            return None
        if r[0] == "yes":
            return ("yes", r[1], f"{total} grid points of the other entries, one entry solved exactly")
    return ("no", f"every one of the {total} grid points of {len(rest)} entries enumerated, the last entry solved exactly")


def _only_first_kinks(net) -> bool:
    """No kinked unit, max-pool window or l1 residual after the first activation."""
    if net.loss.op == "l1":
        return False
    return all(L.op in ("linear", "identity", "flatten") or (L.act is not None and not L.act.kinks) for L in net.layers[2:])


def decide(net, goal, bounds, candidates, deadline=None):
    """Decide ``goal`` (float-tie, real-tie, compensation) from the first-layer units.

    ``candidates``: keys of the units that may meet the goal (from the enclosures; None: every
    unit). Returns ('sat', theta, key, why), ('unsat', reason, evidence), ('partial', evidence)
    (the units decided "no"; the others are left to the solver) or None. Evidence: one
    {"key", "lemma"} per unit decided "no"."""
    import random
    import time

    if goal not in ("float-tie", "real-tie", "compensation") or not first_layer(net):
        return None
    theta0 = net.theta.copy()
    bb = {}
    for e, lo, hi in bounds.values():
        bb[e.offset] = (lo, hi)
        if not lo <= theta0[e.offset] <= hi:
            theta0[e.offset] = lo
    kinks = [k.at for k in net.layers[1].act.kinks]
    N, U = net.batch, net.layers[0].out_shape[0]
    first = {(FIRST, n, i) for n in range(N) for i in range(U)}
    keys = sorted(first) if candidates is None else sorted(candidates)
    others = [k for k in keys if k not in first] if candidates is not None else ([] if _only_first_kinks(net) else ["later units"])
    rng = random.Random(0)
    evidence = []
    undecided = 0
    for key in keys:
        if key not in first:
            continue
        if deadline is not None and time.perf_counter() > deadline:
            return None
        r = decide_unit(Row(net, key[1], key[2]), goal, bb, theta0, kinks, rng)
        if r is None:
            undecided += 1
            continue
        if r[0] == "yes":
            return ("sat", r[1], key, r[2])
        evidence.append({"key": list(key), "lemma": r[1]})
    if others or undecided:
        return ("partial", evidence) if evidence else None
    return ("unsat", f"every unit that may tie was decided exactly ({len(evidence)} by the first-layer lemmas)", evidence)
