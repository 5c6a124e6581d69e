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

import random

import numpy as np
from gmpy2 import mpq

from .encodings.formats import exact


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
    for _, (p, lo, hi) in bounds.items():
        d = unit.direction(p.offset)
        t[p.offset] = (hi if (d > 0) == up else lo) if d != 0 else lo
    return t


def _bisect(fmt, f, lo, hi, target, increasing, steps=200):
    """A float v in [lo, hi] with f(v) == target for monotone f, or None (bisection on the grid)."""
    a, b = lo, hi
    fa, fb = f(a), f(b)
    if fa != fa or fb != fb:  # NaN: no monotone structure to use
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
    for _, (p, lo, hi) in bounds.items():
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

                def f(v, p=p):
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
