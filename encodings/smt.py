"""The machine semantics as Z3 floating-point terms (SMT-LIB FloatingPoint theory).

``Z3FPArith`` is a third arithmetic for the one network program (``program.py``): every value is a
Z3 ``FPRef`` of the file's format (any (E, M), bfloat16 and custom formats included), every
operation ``fp.add/sub/mul/div`` with round-to-nearest-even, in exactly the order the machine
evaluator uses (the order lives in ``arith.ArrayArith`` and ``program.py``, shared). Branches on
kinks are ``If`` terms, so parameters may be free variables: the result is a formula about the
float run for every parameter value in a region.

Traps handled (see the issue): IEEE equality is ``fpEQ`` (Z3's ``==`` on FP terms is structural);
ReLU and max are written with explicit ``If`` terms matching the evaluator's signed-zero
behaviour (relu(-0) = +0; a max keeps the first maximal entry), never ``fpMax``/``fpMin``, whose
sign on (+0, -0) is unspecified. Transcendental ops are not encoded (``Unsupported``).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import z3

from .arith import ArrayArith
from .formats import FloatFormat


class Unsupported(Exception):
    pass


def _vec(fn, nargs):
    return np.frompyfunc(fn, nargs, 1)


class _Z3Base(ArrayArith):
    """Elementwise ops over object arrays of Z3 terms (``_add`` ... set by the subclass)."""

    symbolic = True

    def add(self, a, b):
        return self._add(a, b)

    def sub(self, a, b):
        return self._sub(a, b)

    def mul(self, a, b):
        return self._mul(a, b)

    def div(self, a, b):
        return self._div(a, b)

    def neg(self, a):
        return self._neg(a)

    @staticmethod
    def count_max(eq, zero):
        """Number of maximal entries of each window, as a term starting from ``zero``."""
        cnt = np.empty(eq.shape[:-1], dtype=object)
        cnt.fill(zero)
        for j in range(eq.shape[-1]):
            cnt = _vec(lambda c, e: c + z3.If(e, 1, 0), 2)(cnt, eq[..., j])
        return cnt

    @staticmethod
    def first_or_last(eq, gw, rule, zero):
        """Max-pool cotangents: the first (or last) maximal entry of each window takes g."""
        K = eq.shape[-1]
        T = np.empty(eq.shape, dtype=object)
        rng = range(K) if rule == "first" else range(K - 1, -1, -1)
        seen = np.full(eq.shape[:-1], z3.BoolVal(False), dtype=object)
        for j in rng:
            take = _vec(lambda e, s: z3.And(e, z3.Not(s)), 2)(eq[..., j], seen)
            T[..., j] = _vec(lambda t, g: z3.If(t, g, zero), 2)(take, gw)
            seen = _vec(z3.Or, 2)(seen, eq[..., j])
        return T


class Z3FPArith(_Z3Base):
    exact = False

    def __init__(self, fmt: FloatFormat):
        self.fmt = fmt
        self.sort = z3.FPSort(fmt.exponent_bits, fmt.precision)
        self.rm = z3.RNE()
        self.name = f"z3fp[{fmt.name}]"
        rm = self.rm
        self._add = _vec(lambda a, b: z3.fpAdd(rm, a, b), 2)
        self._sub = _vec(lambda a, b: z3.fpSub(rm, a, b), 2)
        self._mul = _vec(lambda a, b: z3.fpMul(rm, a, b), 2)
        self._div = _vec(lambda a, b: z3.fpDiv(rm, a, b), 2)
        self._neg = _vec(lambda a: z3.fpNeg(a), 1)

    # -- values ----------------------------------------------------------------------------------
    def fpval(self, v: float):
        v = float(v)
        if math.isnan(v):
            return z3.fpNaN(self.sort)
        if math.isinf(v):
            return z3.fpPlusInfinity(self.sort) if v > 0 else z3.fpMinusInfinity(self.sort)
        if v == 0:
            return z3.fpMinusZero(self.sort) if math.copysign(1.0, v) < 0 else z3.fpPlusZero(self.sort)
        return z3.FPVal(v, self.sort)  # v is a value of the format: the decimal repr rounds back to it

    def const(self, q):
        if isinstance(q, float):
            v = q if self.fmt.is_representable(q) else self.fmt.round_rational(Fraction(q))
        else:
            v = self.fmt.round_rational(q)
        return self.fpval(v)

    def from_floats(self, a):
        a = np.asarray(a, dtype=object)
        out = np.empty(a.shape, dtype=object)
        for i, v in enumerate(a.reshape(-1)):
            out.reshape(-1)[i] = v if isinstance(v, z3.ExprRef) else self.fpval(float(v))
        return out

    def zeros(self, shape):
        out = np.empty(shape, dtype=object)
        out.fill(z3.fpPlusZero(self.sort))
        return out

    def sigmoid(self, a):
        raise Unsupported("sigmoid is transcendental: not encoded in the FP theory")

    tanh = exp = log = sigmoid

    # -- branches ----------------------------------------------------------------------------------
    def kink_const(self, k):
        """A kink position as a term of the format (kinks are small dyadic numbers); None if the
        format cannot represent it (then no float value equals it)."""
        return self.fpval(float(k.at)) if self.fmt.is_representable(k.at) else None

    def piecewise_value(self, act, x):
        """If-chain over the pieces: x <= k_0 -> piece 0 (the left piece on a kink) ...; NaN -> NaN."""
        pieces = [_as_obj(pc.value_program(x, self), x.shape) for pc in act.pieces]
        out = pieces[-1]
        for i in range(len(act.kinks) - 1, -1, -1):
            cond = _vec(lambda v, k=act.kinks[i]: _le_kink(self, v, k), 1)(x)
            out = _vec(z3.If, 3)(cond, pieces[i], out)
        return _vec(lambda v, y: z3.If(z3.fpIsNaN(v), v, y), 2)(x, out)

    def piecewise_derivative(self, act, x, y, proxies, side):
        pieces = [_as_obj(pc.derivative_program(x, y, self), x.shape) for pc in act.pieces]
        out = pieces[-1]
        for i in range(len(act.kinks) - 1, -1, -1):
            k = act.kinks[i]
            at = self.const(proxies[i] if side is None else k.left if side == "left" else k.right)
            below = _vec(lambda v, k=k: _lt_kink(self, v, k), 1)(x)
            on = _vec(lambda v, k=k: _eq_kink(self, v, k), 1)(x)
            out = _vec(z3.If, 3)(below, pieces[i], _vec(z3.If, 3)(on, _as_obj(at, x.shape), out))
        return out

    def tie_conditions(self, act, x):
        """[N, ...] object array of Bool: x is exactly on some kink."""
        conds = []
        for k in act.kinks:
            conds.append(_vec(lambda v, k=k: _eq_kink(self, v, k), 1)(x))
        if not conds:
            return np.full(x.shape, z3.BoolVal(False), dtype=object)
        out = conds[0]
        for c in conds[1:]:
            out = _vec(z3.Or, 2)(out, c)
        return out

    def max_first(self, windows):
        m = windows[..., 0]
        for j in range(1, windows.shape[-1]):
            m = _vec(lambda e, mm: z3.If(z3.fpGT(e, mm), e, mm), 2)(windows[..., j], m)
        eq = _vec(z3.fpEQ, 2)(windows, m[..., None])
        return m, eq

    def pool_backward(self, eq, gw, rule):
        """Window cotangents T [N, n_out, K] for tie-break ``rule`` with symbolic tie masks."""
        K = eq.shape[-1]
        zero = z3.fpPlusZero(self.sort)
        T = np.empty(eq.shape, dtype=object)
        if rule in ("first", "last"):
            return self.first_or_last(eq, gw, rule, zero)
        # split: g / (number of maximal entries), the count rounded to the format
        cnt = self.count_max(eq, z3.IntVal(0))

        def share(g, c):
            res = z3.fpDiv(self.rm, g, self.const(Fraction(K)))
            for k in range(K - 1, 0, -1):
                res = z3.If(c == k, z3.fpDiv(self.rm, g, self.const(Fraction(k))), res)
            return res

        beta = _beta(rule)
        if beta is None:
            sh = _vec(share, 2)(gw, cnt)
            for j in range(K):
                T[..., j] = _vec(lambda e, s: z3.If(e, s, zero), 2)(eq[..., j], sh)
            return T
        # J_beta: s = fl(fl(beta*g)/m) to every tied entry, the first gets fl(s + fl(fl(1-beta)*g))
        bq, cq = self.const(beta), self.const(1 - beta)
        sh = _vec(share, 2)(_vec(lambda g: z3.fpMul(self.rm, bq, g), 1)(gw), cnt)
        fb = _vec(lambda s, g: z3.fpAdd(self.rm, s, z3.fpMul(self.rm, cq, g)), 2)(sh, gw)
        return _beta_windows(eq, gw, cnt, sh, fb, zero)


def _beta(rule):
    """J_beta's beta as a Fraction (``conventions.Beta``), or None for split."""
    q = getattr(rule, "q", None)
    return None if q is None else Fraction(int(q.numerator), int(q.denominator))


def _beta_windows(eq, gw, cnt, sh, fb, zero):
    """J_beta window cotangents: an untied window passes g to its maximum; a tie gives ``sh`` to
    every tied entry but the first, which gets ``fb``."""
    K = eq.shape[-1]
    T = np.empty(eq.shape, dtype=object)
    seen = np.full(eq.shape[:-1], z3.BoolVal(False), dtype=object)
    for j in range(K):
        first = _vec(lambda e, s: z3.And(e, z3.Not(s)), 2)(eq[..., j], seen)
        T[..., j] = _vec(
            lambda e, f, c, g, s, b: z3.If(e, z3.If(c == 1, g, z3.If(f, b, s)), zero), 6
        )(eq[..., j], first, cnt, gw, sh, fb)
        seen = _vec(z3.Or, 2)(seen, eq[..., j])
    return T


def _as_obj(v, shape):
    if isinstance(v, np.ndarray):
        return v
    out = np.empty(shape, dtype=object)
    out.fill(v)
    return out


def _below(A, k):
    """The largest format value below a non-representable kink (x <= k <=> x <= it)."""
    lo, _ = A.fmt.neighbours(k.at)
    return A.fpval(lo)


def _le_kink(A, v, k):
    c = A.kink_const(k)
    return z3.fpLEQ(v, c) if c is not None else z3.fpLEQ(v, _below(A, k))


def _lt_kink(A, v, k):
    c = A.kink_const(k)
    return z3.fpLT(v, c) if c is not None else z3.fpLEQ(v, _below(A, k))


def _eq_kink(A, v, k):
    c = A.kink_const(k)
    return z3.fpEQ(v, c) if c is not None else z3.BoolVal(False)


def value_of(term) -> float:
    """The float value of a ground FP term (simplified), sign of zero included."""
    if isinstance(term, np.ndarray):
        term = term.item()
    t = z3.simplify(term)
    if not isinstance(t, z3.FPNumRef):
        raise ValueError(f"not a ground floating-point value: {t}")
    if t.isNaN():
        return math.nan
    if t.isInf():
        return math.inf if t.isPositive() else -math.inf
    if t.isZero():
        return -0.0 if t.isNegative() else 0.0
    r = z3.simplify(z3.fpToReal(t)).as_fraction()
    return float(Fraction(r.numerator, r.denominator))


class Z3RealArith(_Z3Base):
    """The exact semantics as Z3 Real terms (linear/polynomial real arithmetic), for queries that
    relate the float run to the real function over the same parameter variables
    (``fp.to_real`` of the FP parameter variables)."""

    exact = True

    def __init__(self, fmt: FloatFormat):
        self.fmt = fmt
        self.name = "z3real"
        self._add = _vec(lambda a, b: a + b, 2)
        self._sub = _vec(lambda a, b: a - b, 2)
        self._mul = _vec(lambda a, b: a * b, 2)
        self._div = _vec(lambda a, b: a / b, 2)
        self._neg = _vec(lambda a: -a, 1)

    @staticmethod
    def real(v):
        if isinstance(v, z3.ExprRef):
            return z3.fpToReal(v) if z3.is_fp(v) else v
        q = Fraction(v) if not isinstance(v, float) else Fraction(v)
        return z3.RealVal(f"{q.numerator}/{q.denominator}")

    def const(self, q):
        return self.real(Fraction(q) if not isinstance(q, float) else q)

    def from_floats(self, a):
        a = np.asarray(a, dtype=object)
        out = np.empty(a.shape, dtype=object)
        for i, v in enumerate(a.reshape(-1)):
            out.reshape(-1)[i] = self.real(v)
        return out

    def zeros(self, shape):
        out = np.empty(shape, dtype=object)
        out.fill(z3.RealVal(0))
        return out

    def sigmoid(self, a):
        raise Unsupported("sigmoid is transcendental: not encoded in real arithmetic")

    tanh = exp = log = sigmoid

    def _k(self, k):
        return self.real(Fraction(int(k.at.numerator), int(k.at.denominator)))

    def piecewise_value(self, act, x):
        pieces = [_as_obj(pc.value_program(x, self), x.shape) for pc in act.pieces]
        out = pieces[-1]
        for i in range(len(act.kinks) - 1, -1, -1):
            k = self._k(act.kinks[i])
            out = _vec(lambda v, a, b, k=k: z3.If(v <= k, a, b), 3)(x, pieces[i], out)
        return out

    def piecewise_derivative(self, act, x, y, proxies, side):
        pieces = [_as_obj(pc.derivative_program(x, y, self), x.shape) for pc in act.pieces]
        out = pieces[-1]
        for i in range(len(act.kinks) - 1, -1, -1):
            kk = act.kinks[i]
            k = self._k(kk)
            at = self.const(proxies[i] if side is None else (kk.left if side == "left" else kk.right))
            out = _vec(lambda v, a, b, k=k, at=at: z3.If(v < k, a, z3.If(v == k, at, b)), 3)(x, pieces[i], out)
        return out

    def tie_conditions(self, act, x):
        if not act.kinks:
            return np.full(x.shape, z3.BoolVal(False), dtype=object)
        ks = [self._k(k) for k in act.kinks]
        return _vec(lambda v: z3.Or([v == k for k in ks]), 1)(x)

    def max_first(self, windows):
        m = windows[..., 0]
        for j in range(1, windows.shape[-1]):
            m = _vec(lambda e, mm: z3.If(e > mm, e, mm), 2)(windows[..., j], m)
        eq = _vec(lambda a, b: a == b, 2)(windows, m[..., None])
        return m, eq

    def pool_backward(self, eq, gw, rule):
        K = eq.shape[-1]
        T = np.empty(eq.shape, dtype=object)
        zero = z3.RealVal(0)
        if rule in ("first", "last"):
            return self.first_or_last(eq, gw, rule, zero)
        cnt = self.count_max(eq, z3.RealVal(0))
        beta = _beta(rule)
        if beta is None:
            for j in range(K):
                T[..., j] = _vec(lambda e, g, c: z3.If(e, g / c, zero), 3)(eq[..., j], gw, cnt)
            return T
        bq, cq = self.const(beta), self.const(1 - beta)
        sh = _vec(lambda g, c: bq * g / c, 2)(gw, cnt)
        fb = _vec(lambda s, g: s + cq * g, 2)(sh, gw)
        return _beta_windows(eq, gw, cnt, sh, fb, zero)


def pool_tie_conditions(eq):
    """[..., n_out] Bool: two or more entries of the window equal its maximum."""
    K = eq.shape[-1]
    out = np.empty(eq.shape[:-1], dtype=object)
    for idx in np.ndindex(*eq.shape[:-1]):
        e = [eq[idx + (j,)] for j in range(K)]
        out[idx] = z3.Or([z3.And(e[i], e[j]) for i in range(K) for j in range(i + 1, K)]) if K > 1 else z3.BoolVal(False)
    return out
