"""An independent exact reference for the Clarke verdicts: limits of nearby gradients along arcs.

It shares no code with kinkcheck (no ``decide/``, ``certify/``, ``encodings``): the network
document is read by the test-side reference parser (``tests/reference.py``, written from the docs
alone) and everything here is :class:`fractions.Fraction` arithmetic.

Method (another method than kinkcheck's cells and LPs):

* An *arc* is x(t) = w + t d1 + t^2 d2 + t^3 d3 over the trainable scalars (rational d's; a ray
  when d2 = d3 = 0). Along it every value of the network is a polynomial in t with rational
  coefficients on a fixed piece, so the forward pass runs over exact univariate polynomials
  (:class:`Poly`, never truncated). A unit that ties at w takes, for all small t > 0, the side
  given by the sign of the leading non-zero coefficient of (pre-activation - kink); a max-pool
  window tied at w is won by the entries whose polynomials are lexicographically largest; an l1
  residual likewise. This is exact: "t small enough" needs no number.
* Each unit is then strictly on one piece at x(t) for small t > 0, so f is one polynomial map P
  near x(t) and grad f(x(t)) = grad P(x(t)) -> grad P(w) as t -> 0: a *limiting gradient*
  (Bouligand subdifferential). grad P(w) is the exact backward pass at w with the one-sided
  derivative of the arc's side at every tie (``reference.evaluate(..., side=...)``).
* A unit whose pre-activation stays exactly on its kink along the whole arc (or pool entries that
  stay equal) does not decide its side. If no trainable scalar reaches it through the network's
  structure, its pre-activation is constant everywhere and its side multiplies a zero derivative:
  any side will do. Otherwise every combination of sides at such units is tried; the arc counts
  only when all of them give the same gradient at w (then every limiting gradient at the nearby
  points x(t) tends to it, and the limiting set is closed), otherwise it is dropped.
* G = the distinct limiting gradients found. Two of them: f is certainly not differentiable at w
  (a PC^1 function with two limiting gradients has no derivative). AD in conv(G), decided by an
  exact phase-1 simplex over Fractions (:func:`in_convex_hull`): AD is certainly a Clarke
  subderivative (Clarke = conv of the limiting gradients). Otherwise: "not found" - G is an inner
  approximation of the limiting set.

Arcs come from random small-integer rays and degree-2/3 arcs, arcs *aimed* at the ties (the
first-order direction in the null space of some ties' tangents, so that higher orders decide
them: cusp regions that no ray enters), and optionally directions the caller passes (e.g. the
witnesses in kinkcheck's certificate: the reference re-derives their gradients itself).

Supported: linear, maxpool1d, flatten, the piecewise-polynomial activations, identity, and the
losses sum, dot, mse, l1 (what the acceptance generator ``tests/_clarke_cases.py`` produces).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from fractions import Fraction

import reference as R

__all__ = ["Poly", "ClarkeRef", "analyse", "in_convex_hull", "Unsupported"]

Unsupported = R.Unsupported
ZERO = Fraction(0)


# ----------------------------------------------------------------------------------------------
# exact univariate polynomials in t


class Poly:
    """c[0] + c[1] t + c[2] t^2 + ... with Fraction coefficients (trailing zeros trimmed)."""

    __slots__ = ("c",)

    def __init__(self, coeffs):
        c = [Fraction(x) for x in coeffs]
        while c and c[-1] == 0:
            c.pop()
        self.c = c

    def at0(self) -> Fraction:
        return self.c[0] if self.c else ZERO

    def is_zero(self) -> bool:
        return not self.c

    def lead_sign(self) -> int:
        """Sign of the lowest-order non-zero coefficient (0 for the zero polynomial): the sign of
        the polynomial for all small t > 0."""
        for x in self.c:
            if x:
                return 1 if x > 0 else -1
        return 0

    def __add__(self, o):
        a, b = self.c, o.c
        n = max(len(a), len(b))
        return Poly([(a[i] if i < len(a) else ZERO) + (b[i] if i < len(b) else ZERO) for i in range(n)])

    def __neg__(self):
        return Poly([-x for x in self.c])

    def __sub__(self, o):
        return self + (-o)

    def __mul__(self, o):
        a, b = self.c, o.c
        if not a or not b:
            return Poly([])
        out = [ZERO] * (len(a) + len(b) - 1)
        for i, x in enumerate(a):
            if x:
                for j, y in enumerate(b):
                    out[i + j] += x * y
        return Poly(out)

    def __eq__(self, o):
        return isinstance(o, Poly) and self.c == o.c

    def __hash__(self):
        return hash(tuple(self.c))

    def __repr__(self):
        return f"Poly({[str(x) for x in self.c]})"


def _cmp(p: Poly, q: Poly) -> int:
    """Sign of p - q for all small t > 0."""
    return (p - q).lead_sign()


class PolyArith:
    """The arithmetic ``reference.Act`` piece programs run on (division by constants only)."""

    exact = True

    def add(self, a, b):
        return a + b

    def sub(self, a, b):
        return a - b

    def mul(self, a, b):
        return a * b

    def neg(self, a):
        return -a

    def div(self, a, b):
        if len(b.c) > 1 or b.is_zero():
            raise Unsupported("division by a non-constant polynomial")
        return Poly([x / b.c[0] for x in a.c])

    def const(self, q):
        return Poly([Fraction(q)])


PA = PolyArith()


# ----------------------------------------------------------------------------------------------
# the forward pass along an arc


@dataclass
class Tie:
    key: tuple  # (layer, sample, unit) as reference.evaluate's ``side`` names it
    kind: str  # "kink" (elementwise or l1) or "pool"
    kink: int = -1  # kink index (elementwise)
    entries: tuple = ()  # pool: flat input positions of the maximal entries at w


def _entry_poly(net, theta, e):
    if e[0] == "c":
        return Poly([Fraction(e[1])])
    v = theta[e[1]]
    return -v if e[2] < 0 else v


class _Forward:
    """One forward pass over polynomials: ``sides`` (tie key -> side) for every tie at w, and
    ``open`` (tie key -> options) for ties that the arc does not decide."""

    def __init__(self, ref: "ClarkeRef", theta, force=None):
        self.ref = ref
        self.sides: dict = {}
        self.open: dict = {}
        self.first_order: dict = {}  # tie key -> coefficient of t in (pre-activation - kink)
        net = ref.net
        lop = net.loss["op"]
        terms = []
        for n, x0 in enumerate(net.inputs):
            x = [Poly([Fraction(v)]) for v in x0]
            for L in net.layers:
                x = self.layer(L, n, x, theta, force)
            if lop == "sum":
                terms += x
            elif lop == "dot":
                terms += [o * Poly([Fraction(tv)]) for o, tv in zip(x, net.targets[n])]
            else:
                for u, (o, tv) in enumerate(zip(x, net.targets[n])):
                    r = o - Poly([Fraction(tv)])
                    if lop == "mse":
                        terms.append(r * r)
                        continue
                    key = (len(net.layers), n, u)
                    if r.at0() == 0:
                        self.kink_side(key, r, force)
                        s = self.sides[key]
                    else:
                        s = "left" if r.at0() < 0 else "right"
                    terms.append(-r if s == "left" else r)
        loss = Poly([])
        for v in terms:
            loss = loss + v
        if lop in ("mse", "l1") and net.loss.get("reduction", "mean") == "mean":
            loss = Poly([c / len(terms) for c in loss.c])
        self.loss = loss  # f along the arc, exactly (for small t > 0)

    def kink_side(self, key, d: Poly, force):
        self.first_order[key] = d.c[1] if len(d.c) > 1 else ZERO
        if force is not None and key in force:
            self.sides[key] = force[key]
            return
        s = d.lead_sign()
        if s == 0 and key in self.ref.constant:
            self.sides[key] = "left"  # no trainable scalar reaches it: its side changes no gradient
        elif s == 0:
            self.open[key] = ("left", "right")
            self.sides[key] = "left"  # the value on the kink is the same from both pieces
        else:
            self.sides[key] = "left" if s < 0 else "right"

    def layer(self, L, n, x, theta, force):
        net = self.ref.net
        op = L.op
        if op == "linear":
            out, inn = L.wshape
            W = [_entry_poly(net, theta, e) for e in L.weight]
            b = [_entry_poly(net, theta, e) for e in L.bias] if L.bias is not None else None
            y = []
            for i in range(out):
                acc = W[i * inn] * x[0]
                for j in range(1, inn):
                    acc = acc + W[i * inn + j] * x[j]
                if b is not None:
                    acc = acc + b[i]
                y.append(acc)
            return y
        if op == "maxpool1d":
            y = []
            for wi, win in enumerate(L.windows):
                vals = [x[p] for p in win]
                m0 = max(v.at0() for v in vals)
                tied = [p for p, v in zip(win, vals) if v.at0() == m0]
                key = (L.index, n, wi)
                if len(tied) < 2:
                    y.append(x[tied[0]])
                    continue
                diff = x[tied[1]] - x[tied[0]]
                self.first_order[key] = diff.c[1] if len(diff.c) > 1 else ZERO
                if force is not None and key in force:
                    self.sides[key] = force[key]
                    y.append(x[force[key]])
                    continue
                best = [tied[0]]
                for p in tied[1:]:
                    c = _cmp(x[p], x[best[0]])
                    if c > 0:
                        best = [p]
                    elif c == 0:
                        best.append(p)
                self.sides[key] = best[0]
                if len(best) > 1 and key not in self.ref.constant:
                    self.open[key] = tuple(best)
                y.append(x[best[0]])
            return y
        if op == "flatten":
            return list(x)
        act = L.act
        if act is None:
            raise Unsupported(f"op {op!r} is not in the Clarke reference")
        y = []
        for u, v in enumerate(x):
            z0 = v.at0()
            k = next((i for i, kk in enumerate(act.kinks) if kk == z0), -1)
            if k < 0:
                piece = sum(1 for kk in act.kinks if kk < z0)
            else:
                key = (L.index, n, u)
                self.kink_side(key, v - Poly([act.kinks[k]]), force)
                piece = k if self.sides[key] == "left" else k + 1
            y.append(act.values[piece](v, PA))
        return y


# ----------------------------------------------------------------------------------------------
# exact convex-hull membership (phase-1 simplex over Fractions, Bland's rule)


def in_convex_hull(points, target):
    """Convex weights (list of Fractions) with sum_i lam_i points[i] = target, or None."""
    points = [list(p) for p in points]
    if not points:
        return None
    if any(list(p) == list(target) for p in points):
        return [Fraction(int(list(p) == list(target))) for p in points]
    m_pts = len(points)
    dim = len(target)
    rows = [[Fraction(points[i][k]) for i in range(m_pts)] + [Fraction(target[k])] for k in range(dim)]
    rows.append([Fraction(1)] * m_pts + [Fraction(1)])
    # drop identical rows (cheap reduction), then make every right-hand side >= 0
    uniq = []
    for r in rows:
        if r not in uniq and any(r):
            uniq.append(r)
        elif not any(r[:-1]) and r[-1] != 0:
            return None
    rows = [r if r[-1] >= 0 else [-v for v in r] for r in uniq]
    m = len(rows)
    nv = m_pts + m  # real variables, then one artificial per row
    T = [r[:-1] + [Fraction(int(i == j)) for j in range(m)] + [r[-1]] for i, r in enumerate(rows)]
    basis = [m_pts + i for i in range(m)]
    # objective: minimise the sum of artificials -> reduced costs
    cost = [ZERO] * (nv + 1)
    for r in T:
        for j in range(nv + 1):
            if j < m_pts or j == nv:
                cost[j] -= r[j]
    for _ in range(10_000):
        enter = next((j for j in range(nv) if cost[j] < 0), None)
        if enter is None:
            break
        best, leave = None, None
        for i, r in enumerate(T):
            if r[enter] > 0:
                ratio = r[-1] / r[enter]
                if best is None or ratio < best or (ratio == best and basis[i] < basis[leave]):
                    best, leave = ratio, i
        if leave is None:  # unbounded cannot happen in phase 1
            return None
        piv = T[leave][enter]
        T[leave] = [v / piv for v in T[leave]]
        for i in range(m):
            if i != leave and T[i][enter] != 0:
                f = T[i][enter]
                T[i] = [a - f * b for a, b in zip(T[i], T[leave])]
        f = cost[enter]
        cost = [a - f * b for a, b in zip(cost, T[leave])]
        basis[leave] = enter
    if -cost[-1] != 0:
        return None
    lam = [ZERO] * m_pts
    for i, b in enumerate(basis):
        if b < m_pts:
            lam[b] = T[i][-1]
    # re-check exactly
    if sum(lam) != 1 or any(v < 0 for v in lam):
        return None
    for k in range(dim):
        if sum(lam[i] * Fraction(points[i][k]) for i in range(m_pts)) != Fraction(target[k]):
            return None
    return lam


# ----------------------------------------------------------------------------------------------
# the reference


def _nullspace(rows, n):
    """A basis of {d in Q^n : r . d = 0 for r in rows} (exact Gaussian elimination)."""
    M = [list(r) for r in rows if any(r)]
    pivots = []
    r = 0
    for c in range(n):
        p = next((i for i in range(r, len(M)) if M[i][c] != 0), None)
        if p is None:
            continue
        M[r], M[p] = M[p], M[r]
        pv = M[r][c]
        M[r] = [v / pv for v in M[r]]
        for i in range(len(M)):
            if i != r and M[i][c] != 0:
                f = M[i][c]
                M[i] = [a - f * b for a, b in zip(M[i], M[r])]
        pivots.append(c)
        r += 1
        if r == len(M):
            break
    free = [c for c in range(n) if c not in pivots]
    basis = []
    for fc in free:
        v = [ZERO] * n
        v[fc] = Fraction(1)
        for i, pc in enumerate(pivots):
            v[pc] = -M[i][fc]
        basis.append(v)
    return basis


def _integral(v):
    den = 1
    for x in v:
        den = den * x.denominator // _gcd(den, x.denominator)
    return [x * den for x in v]


def _gcd(a, b):
    while b:
        a, b = b, a % b
    return a


@dataclass
class RefVerdict:
    n: int
    ties: set  # {(layer, sample, unit)} real ties at w
    ad: list  # the exact AD output (the convention's proxies), reference.ref_exact
    G: list  # distinct limiting gradients (tuples of Fractions)
    arcs_used: int = 0
    arcs_dropped: int = 0
    weights: list | None = None  # convex weights of AD over G, if found
    patterns: dict = field(default_factory=dict)  # gradient -> one side assignment reaching it
    directional: list = field(default_factory=list)  # (d, f'(w; d)) exactly
    fit: list | None = None  # a linear g with g . d = f'(w; d) on every sampled d, or None

    @property
    def not_differentiable(self) -> bool:
        """Certain: the sampled directional derivatives are not linear in d. (Two distinct
        limiting gradients alone do not prove it: a PC^1 function can be differentiable with a
        curved piece whose gradient differs - the cusp example in tests/test_acceptance_clarke.py.)"""
        return self.fit is None

    def directional_mismatch(self, g):
        """A sampled (d, f'(w; d)) with g . d != f'(w; d), or None."""
        for d, v in self.directional:
            if sum(a * b for a, b in zip(g, d)) != v:
                return d, v
        return None

    @property
    def ad_in_clarke(self) -> bool:
        return self.weights is not None


class ClarkeRef:
    def __init__(self, doc: dict):
        self.doc = doc
        self.net = R.parse(doc)
        for L in self.net.layers:
            if L.op not in ("linear", "maxpool1d", "flatten") and L.act is None:
                raise Unsupported(f"op {L.op!r} is not in the Clarke reference")
        if self.net.loss["op"] not in ("sum", "dot", "mse", "l1"):
            raise Unsupported(f"loss {self.net.loss['op']!r}")
        self.tr = list(self.net.trainable_index)
        self.n = len(self.tr)
        self.w = [Fraction(v) for v in self.net.theta]
        self.exact = R.ref_exact(doc)
        self.constant = self._constant_units()
        base = self.forward([])
        self.tie_keys = sorted(base.sides, key=str)
        self._grad_cache: dict = {}
        self.G: dict = {}  # gradient tuple -> side assignment
        self.used = self.dropped = 0
        self.D: list = []  # (d, f'(w; d)) exact directional derivatives

    def _constant_units(self) -> set:
        """Tie keys (any unit, tied or not) whose pre-activation no trainable scalar reaches through
        the network's structure (a trainable weight reaches a unit unless its input is a constant
        0): constant on the whole parameter space, so the side chosen there multiplies a zero
        derivative in every piece."""
        net = self.net
        tr = set(self.tr)

        def dep(e):
            return e[0] == "p" and e[1] in tr

        out = set()
        for n, x0 in enumerate(net.inputs):
            x = [False] * len(x0)
            for L in net.layers:
                if L.op == "linear":
                    o, inn = L.wshape
                    val = self.exact.xs[L.index][n]  # constant inputs have this value everywhere
                    x = [any(x[j] or (dep(L.weight[i * inn + j]) and val[j] != 0) for j in range(inn))
                         or (L.bias is not None and dep(L.bias[i])) for i in range(o)]
                elif L.op == "maxpool1d":
                    for wi, win in enumerate(L.windows):
                        if not any(x[p] for p in win):
                            out.add((L.index, n, wi))
                    x = [any(x[p] for p in win) for win in L.windows]
                elif L.act is not None:
                    out.update((L.index, n, u) for u, d in enumerate(x) if not d)
            out.update((len(net.layers), n, u) for u, d in enumerate(x) if not d)
        return out

    # -- arcs
    def theta(self, arc):
        th = [Poly([v]) for v in self.w]
        for k, i in enumerate(self.tr):
            th[i] = Poly([self.w[i]] + [Fraction(d[k]) for d in arc])
        return th

    def forward(self, arc, force=None) -> _Forward:
        return _Forward(self, self.theta(arc), force)

    def gradient(self, sides: dict) -> tuple:
        key = tuple(sorted(sides.items(), key=str))
        if key not in self._grad_cache:
            res = R.evaluate(self.doc, "exact", side=dict(sides))
            self._grad_cache[key] = tuple(Fraction(v) for v in res.ad)
        return self._grad_cache[key]

    def add_arc(self, arc, max_combos: int = 32):
        """Follow one arc; add its limiting gradient to G (True) or drop it (False)."""
        if not self.tie_keys:
            g = self.gradient({})
            self.G.setdefault(g, {})
            self.used += 1
            return True
        fw = self.forward(arc)
        d1 = [Fraction(v) for v in arc[0]] if arc else [ZERO] * self.n
        c1 = fw.loss.c[1] if len(fw.loss.c) > 1 else ZERO
        self.D.append((tuple(d1), c1))  # f'(w; d1) = c1 (f is Lipschitz: the arc's tail is O(t^2))
        opens = list(fw.open.items())
        n_combos = 1
        for _, opts in opens:
            n_combos *= len(opts)
        if n_combos > max_combos:
            self.dropped += 1
            return False
        grads = set()
        first = None
        for choice in itertools.product(*[opts for _, opts in opens]):
            sides = dict(fw.sides)
            for (key, _), c in zip(opens, choice):
                sides[key] = c
            g = self.gradient(sides)
            grads.add(g)
            if first is None:
                first = sides
            if len(grads) > 1:
                self.dropped += 1
                return False
        (g,) = grads
        if sum(a * b for a, b in zip(g, d1)) != c1:
            raise AssertionError(f"reference inconsistency: f'(w; d) = {c1} along the arc, but the piece gradient gives another value (arc {arc})")
        self.G.setdefault(g, first)
        self.used += 1
        return True

    def tangents(self, force) -> dict:
        """tie key -> the row (d(pre-activation)/d theta_k) at w on the piece ``force`` fixes."""
        rows = {k: [ZERO] * self.n for k in self.tie_keys}
        for j in range(self.n):
            e = [Fraction(int(k == j)) for k in range(self.n)]
            fw = self.forward([e], force)
            for k, v in fw.first_order.items():
                if k in rows:
                    rows[k][j] = v
        return rows

    def sample(self, rng: random.Random, n_rays=24, n_arcs=24, n_aimed=24, extra=()):
        n = self.n
        for arc in extra:
            self.add_arc(arc)
        if n == 0:
            self.add_arc([])
            return

        def rvec(lo=-3, hi=3, sparse=False):
            while True:
                v = [Fraction(0 if sparse and rng.random() < 0.5 else rng.randint(lo, hi)) for _ in range(n)]
                if any(v):
                    return v

        for _ in range(n_rays):
            self.add_arc([rvec()])
        for _ in range(n_arcs):
            deg = rng.choice([2, 3])
            self.add_arc([rvec(sparse=True) for _ in range(deg)])
        if not self.tie_keys or n_aimed == 0:
            return
        # aimed arcs: d1 in the null space of some ties' tangents (on a random ray's piece)
        bases = []
        for _ in range(2):
            fw = self.forward([rvec()])
            if not fw.open:
                bases.append(self.tangents(fw.sides))
        pool_keys = list(self.tie_keys)
        for i in range(n_aimed):
            if not bases:
                break
            rows = rng.choice(bases)
            kinkrows = [k for k in pool_keys if any(rows[k])]
            if not kinkrows:
                break
            size = rng.randint(1, min(len(kinkrows), max(1, n - 1)))
            S = rng.sample(kinkrows, size)
            ns = _nullspace([rows[k] for k in S], n)
            if not ns:
                continue
            d1 = [ZERO] * n
            for b in ns:
                c = rng.randint(-2, 2)
                d1 = [a + c * x for a, x in zip(d1, b)]
            if not any(d1):
                d1 = list(rng.choice(ns))
            d1 = _integral(d1)
            deg = rng.choice([2, 2, 3])
            arc = [d1] + [rvec() for _ in range(deg - 1)]
            if rng.random() < 0.3 and deg == 3:  # second order in the null space too
                arc[1] = [ZERO] * n
            self.add_arc(arc)

    def verdict(self) -> RefVerdict:
        ad = [Fraction(v) for v in self.exact.ad]
        G = list(self.G)
        lam = in_convex_hull(G, ad) if G else None
        ties = {(k[0], k[1], k[2]) for k in self.exact.ties}
        return RefVerdict(self.n, ties, ad, G, self.used, self.dropped, lam, dict(self.G), list(self.D),
                          linear_fit(self.D, self.n))


def linear_fit(D, n):
    """Some g with g . d = v for every (d, v) in D (exact elimination), or None: then d -> f'(w; d)
    is not linear and f is certainly not differentiable at w (f is B-differentiable)."""
    rows = [list(d) + [v] for d, v in D]
    M, piv = [], []
    for r in rows:
        r = list(r)
        for (c, pr) in zip(piv, M):
            if r[c] != 0:
                f = r[c]
                r = [a - f * b for a, b in zip(r, pr)]
        c = next((j for j in range(n) if r[j] != 0), None)
        if c is None:
            if r[n] != 0:
                return None
            continue
        pv = r[c]
        r = [a / pv for a in r]
        for i in range(len(M)):
            if M[i][c] != 0:
                f = M[i][c]
                M[i] = [a - f * b for a, b in zip(M[i], r)]
        M.append(r)
        piv.append(c)
    g = [ZERO] * n
    for c, r in zip(piv, M):
        g[c] = r[n]
    return g


def certificate_arcs(cert, n: int) -> list:
    """Directions in a kinkcheck certificate (``witness`` rays, ``arc`` coefficient lists) as arcs
    for :meth:`ClarkeRef.sample`: the reference follows them and computes their gradients itself."""
    out = []

    def vec(v):
        if isinstance(v, list) and len(v) == n and all(isinstance(x, (str, int)) for x in v):
            try:
                return [Fraction(x) for x in v]
            except (ValueError, ZeroDivisionError):
                return None
        return None

    def walk(o):
        if isinstance(o, dict):
            for k, v in o.items():
                if k in ("witness", "direction") and vec(v) is not None:
                    out.append([vec(v)])
                elif k == "arc" and isinstance(v, list) and v and all(vec(d) is not None for d in v):
                    out.append([vec(d) for d in v])
                else:
                    walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    if n > 0:
        walk(cert.get("evidence", {}))
    return out


def analyse(doc: dict, *, seed: int = 0, extra=(), **kw) -> RefVerdict:
    ref = ClarkeRef(doc)
    ref.sample(random.Random(seed), extra=extra, **kw)
    return ref.verdict()
