"""Exact multivariate polynomials over the trainable scalars: one more arithmetic for the network
program (issue 11 part 2).

Near w every non-tie unit keeps its piece and, once a *pattern* fixes one side per tie (max-pool:
one entry among the tied maxima), every op of a piecewise-polynomial network is a polynomial map of
the trainable scalars. ``tie_polynomials`` runs the network program's layers (``program.py``) with
:class:`PolyArith`, whose values are :class:`Poly` objects in the shifted variables
X_j = theta_j - w_j (so a polynomial's constant term is its value at w), and records every tie's
pre-activation as a polynomial under the pattern of the ties before it. Only the trainable scalars
that the ties can depend on are variables (``tie_variables``); the others stay at their values.

:class:`Poly` is a sparse dict {exponent tuple: mpq}; small and exact, meant for the few dozen
variables a tie depends on. ``series`` substitutes an arc X = t d1 + t^2 d2 + ... and returns the
truncated power series in t (mpq coefficients) whose leading coefficient signs the tie along it.
"""

from __future__ import annotations

import numpy as np
from gmpy2 import mpq

from . import program as P
from .arith import ArrayArith, Operators


class Poly:
    __slots__ = ("nv", "t")

    def __init__(self, nv, terms=None):
        self.nv = nv
        self.t = {m: c for m, c in (terms or {}).items() if c != 0}

    @classmethod
    def const(cls, nv, c):
        return cls(nv, {(0,) * nv: mpq(c)})

    @classmethod
    def var(cls, nv, j, c=1):
        e = [0] * nv
        e[j] = 1
        return cls(nv, {tuple(e): mpq(c)})

    def _lift(self, o):
        return o if isinstance(o, Poly) else Poly.const(self.nv, o)

    def __add__(self, o):
        o = self._lift(o)
        out = dict(self.t)
        for m, c in o.t.items():
            out[m] = out.get(m, mpq(0)) + c
        return Poly(self.nv, out)

    __radd__ = __add__

    def __neg__(self):
        return Poly(self.nv, {m: -c for m, c in self.t.items()})

    def __sub__(self, o):
        return self + (-self._lift(o))

    def __rsub__(self, o):
        return self._lift(o) - self

    def __mul__(self, o):
        if not isinstance(o, Poly):
            o = mpq(o)
            return Poly(self.nv, {m: c * o for m, c in self.t.items()})
        out: dict = {}
        for m1, c1 in self.t.items():
            for m2, c2 in o.t.items():
                m = tuple(a + b for a, b in zip(m1, m2))
                out[m] = out.get(m, mpq(0)) + c1 * c2
        return Poly(self.nv, out)

    __rmul__ = __mul__

    def __truediv__(self, o):
        if isinstance(o, Poly):
            if not o.is_constant():
                raise ValueError("division by a non-constant polynomial")
            o = o.constant()
        return self * (mpq(1) / mpq(o))

    def __eq__(self, o):
        o = self._lift(o)
        return self.t == o.t

    def __hash__(self):
        return hash(tuple(sorted(self.t.items())))

    def __repr__(self):
        return " + ".join(f"{c}*{m}" for m, c in sorted(self.t.items())) or "0"

    def is_zero(self) -> bool:
        return not self.t

    def is_constant(self) -> bool:
        return all(not any(m) for m in self.t)

    def constant(self) -> mpq:
        return self.t.get((0,) * self.nv, mpq(0))

    def linear(self) -> list:
        """The gradient at X = 0 (the linear part's coefficients)."""
        out = [mpq(0)] * self.nv
        for m, c in self.t.items():
            if sum(m) == 1:
                out[m.index(1)] = c
        return out

    def degree(self) -> int:
        return max((sum(m) for m in self.t), default=0)

    def ratio(self, o) -> mpq | None:
        """c with self = c * o (o non-zero), or None."""
        if o.is_zero() or set(self.t) != set(o.t):
            return None
        m0 = next(iter(o.t))
        c = self.t[m0] / o.t[m0]
        return c if all(self.t[m] == c * v for m, v in o.t.items()) else None

    def variables(self) -> set:
        return {j for m in self.t for j, e in enumerate(m) if e}

    def series(self, arc, order) -> list:
        """Coefficients [c_0 .. c_order] of p(t d1 + t^2 d2 + ...), ``arc`` = [d1, d2, ...]."""
        xs = [[mpq(0)] + [d[j] if k < len(arc) else mpq(0) for k, d in enumerate(arc)][: order + 1] for j in range(self.nv)]
        xs = [(s + [mpq(0)] * (order + 1))[: order + 1] for s in xs]
        out = [mpq(0)] * (order + 1)
        powers: dict = {}
        for m, c in self.t.items():
            acc = [mpq(0)] * (order + 1)
            acc[0] = c
            for j, e in enumerate(m):
                if e:
                    key = (j, e)
                    if key not in powers:
                        powers[key] = _spow(xs[j], e, order)
                    acc = _smul(acc, powers[key], order)
            out = [a + b for a, b in zip(out, acc)]
        return out

    def to_json(self) -> list:
        """[[exponents, "p/q"], ...] sorted by exponents (the certificate's form)."""
        return [[list(m), str(c)] for m, c in sorted(self.t.items())]


def _smul(a, b, order):
    out = [mpq(0)] * (order + 1)
    for i, x in enumerate(a):
        if x:
            for j in range(order + 1 - i):
                if b[j]:
                    out[i + j] += x * b[j]
    return out


def _spow(a, e, order):
    out = [mpq(1)] + [mpq(0)] * order
    for _ in range(e):
        out = _smul(out, a, order)
    return out


def leading(coeffs):
    """(order, coefficient) of the first non-zero coefficient, or None (zero to this order)."""
    for k, c in enumerate(coeffs):
        if c != 0:
            return k, c
    return None


# ----------------------------------------------------------------------------------------------
# the arithmetic


class PolyArith(Operators, ArrayArith):
    """Object arrays of :class:`Poly`. ``locate`` uses values at w (constant terms); a value exactly
    on a kink is a tie, whose piece the pattern chooses ('right': the piece above the kink, else
    the one below) and whose pre-activation minus the kink is recorded. Max-pool windows pick the
    pattern's entry (default: the first maximal one) and record every tied entry."""

    exact = True
    name = "polynomial"

    def __init__(self, nv, gvars, pattern):
        self.nv = nv
        self.gvars = gvars  # trainable position (gpos) -> variable index
        self.pattern = pattern  # tie key -> choice
        self.layer = None  # set by tie_polynomials before each layer
        self.records: dict = {}

    def const(self, q):
        return Poly.const(self.nv, q)

    def from_floats(self, a):
        a = np.asarray(a)
        out = np.empty(a.shape, dtype=object)
        for i, v in enumerate(a.reshape(-1).tolist()):
            out.reshape(-1)[i] = Poly.const(self.nv, mpq(v))
        return out

    def param_values(self, ref, theta, net=None):
        vals = ref.values(theta).reshape(-1)
        out = np.empty(vals.shape, dtype=object)
        for e, (v, s, sg) in enumerate(zip(vals.tolist(), ref.src.reshape(-1).tolist(), ref.sign.reshape(-1).tolist())):
            p = Poly.const(self.nv, mpq(v) if not isinstance(v, type(mpq(0))) else v)
            j = self.gvars.get(int(s), None) if s >= 0 else None
            if j is not None:
                p = p + Poly.var(self.nv, j, int(sg))
            out[e] = p
        return out.reshape(ref.shape)

    def zeros(self, shape):
        out = np.empty(shape, dtype=object)
        z = Poly(self.nv)
        for i in range(out.size):
            out.reshape(-1)[i] = z
        return out

    def locate(self, a, kinks):
        a = np.asarray(a, dtype=object)
        N = a.shape[0]
        piece = np.zeros(a.shape, dtype=np.int64)
        kink = np.full(a.shape, -1, dtype=np.int64)
        pf, kf = piece.reshape(N, -1), kink.reshape(N, -1)
        ks = [k.at for k in kinks]
        for n in range(N):
            for u, v in enumerate(a.reshape(N, -1)[n]):
                c = v.constant()
                p = sum(1 for k in ks if c > k)
                hit = next((j for j, k in enumerate(ks) if c == k), None)
                if hit is not None:
                    key = (self.layer, n, u)
                    self.records[key] = ("act", v - ks[hit])
                    kf[n, u] = hit
                    p = hit + (1 if self.pattern.get(key) == "right" else 0)
                pf[n, u] = p
        return piece, kink

    def cmp(self, a, b):
        d = np.asarray(a - b, dtype=object)
        out = np.empty(d.shape, dtype=np.int8)
        for i, v in enumerate(d.reshape(-1)):
            c = v.constant()
            out.reshape(-1)[i] = (c > 0) - (c < 0)
        return out

    def max_first(self, windows):
        N = windows.shape[0]
        flat = windows.reshape(N, -1, windows.shape[-1])
        m = np.empty(flat.shape[:2], dtype=object)
        eq = np.zeros(flat.shape, dtype=bool)
        for n in range(N):
            for w in range(flat.shape[1]):
                cs = [v.constant() for v in flat[n, w]]
                top = max(cs)
                tied = [p for p, c in enumerate(cs) if c == top]
                eq[n, w, tied] = True
                pick = tied[0]
                if len(tied) > 1:
                    key = (self.layer, n, w)
                    self.records[key] = ("pool", {p: flat[n, w, p] for p in tied})
                    ch = self.pattern.get(key)
                    if isinstance(ch, (int, np.integer)) and not isinstance(ch, bool) and ch in tied:
                        pick = int(ch)
                m[n, w] = flat[n, w, pick]
        return m.reshape(windows.shape[:-1]), eq.reshape(windows.shape)


SUPPORTED = {"linear", "conv2d", "maxpool1d", "maxpool2d", "avgpool2d", "flatten"}


def applies(net) -> bool:
    """Every op piecewise polynomial (no fixed point, no transcendental op or loss)."""
    if net.loss.op not in ("sum", "dot", "mse", "l1"):
        return False
    return all(L.op in SUPPORTED or (L.act is not None and not L.act.transcendental and L.op != "fixed_point") for L in net.layers)


def tie_variables(net, ties) -> list:
    """The trainable positions (indices into the gradient) the ties' pre-activations can depend
    on: the trainable scalars of the layers before the last tie's layer (every layer for a loss
    tie)."""
    upto = max((t.layer for t in ties), default=0)
    gpos = np.full(net.theta.size, -1, dtype=np.int64)
    gpos[net.trainable_index] = np.arange(net.n_grad)
    out = set()
    for L in net.layers[:upto]:
        for ref in (L.weight, L.bias, getattr(getattr(L, "fp", None), "input_weight", None)):
            if ref is not None:
                for s in ref.src[ref.src >= 0].tolist():
                    if gpos[s] >= 0:
                        out.add(int(gpos[s]))
    return sorted(out)


def tie_polynomials(runs, variables, pattern) -> dict:
    """{tie key: ("act", z - kink) | ("pool", {window position: z}) | ("l1", residual)}: every tie's
    pre-activation as a polynomial in X (X_i = theta[variables[i]] - w), the ties before it
    following ``pattern`` (tie key -> 'left' / 'right' / window position; default 'left' / the
    first maximal entry)."""
    net = runs.net
    gpos = np.full(net.theta.size, -1, dtype=np.int64)
    gpos[net.trainable_index] = np.arange(net.n_grad)
    index = {g: i for i, g in enumerate(variables)}
    gvars = {int(s): index[int(gpos[s])] for s in range(net.theta.size) if gpos[s] >= 0 and int(gpos[s]) in index}
    A = PolyArith(len(variables), gvars, pattern)
    N = net.batch
    x = A.from_floats(net.inputs)
    fw = P.Forward(A=A, xs=[], params={})
    upto = max((k[0] for k in pattern), default=0)
    for L in net.layers:
        A.layer = L.index
        fw.xs.append(x)
        x = P._layer_forward(net, A, L, x, net.theta, fw, N)
    if net.loss.op == "l1":
        t = A.from_floats(net.targets).reshape(N, -1)
        r = x.reshape(N, -1) - t
        for n in range(N):
            for u in range(r.shape[1]):
                if r[n, u].constant() == 0:
                    A.records[(len(net.layers), n, u)] = ("l1", r[n, u])
    del upto
    return A.records
