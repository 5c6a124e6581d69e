"""Exact (real) semantics: the network evaluated in exact arithmetic at its machine-number values.

Values are gmpy2 ``mpq`` rationals held in numpy object arrays; products and sums of machine numbers
stay rational, and so do all piecewise-linear / piecewise-polynomial ops. Transcendental ops
(sigmoid, tanh, exp/log of cross-entropy) produce :class:`Interval` enclosures with rational end
points, computed with gmpy2 ``mpfr`` under directed rounding at a working precision; anything
downstream of them is interval arithmetic. A comparison an interval cannot decide raises
:class:`Undecided`; the caller may retry at a higher precision and reports ``unknown`` otherwise.

Speed: the matrix products (forward dot products, backward and weight gradients) are integer
matrix products over a common denominator (``dyadic.py``: float arrays are read off their bits as
integers over a power of two, kept per array made by ``from_floats`` and reused transposed by the
backward pass), through python-flint's fmpz_mat from ``FLINT_MIN`` multiply-adds on; order does not
matter in exact arithmetic. Elementwise ops stay entry by entry on ``mpq``.
"""

from __future__ import annotations

import gmpy2
import numpy as np
from gmpy2 import mpq, mpz

from . import dyadic as D
from .arith import ArrayArith, Operators
from .errors import Undecided

MPQ = type(mpq(1, 2))
MPZ = type(mpz(1))


class Interval:
    """A closed interval [lo, hi] with rational end points, lo < hi."""

    __slots__ = ("lo", "hi")

    def __init__(self, lo, hi):
        self.lo = lo
        self.hi = hi

    def __repr__(self):
        return f"Interval({self.lo}, {self.hi})"

    def __add__(self, o):
        if isinstance(o, Interval):
            return mk(self.lo + o.lo, self.hi + o.hi)
        return Interval(self.lo + o, self.hi + o)

    __radd__ = __add__

    def __neg__(self):
        return Interval(-self.hi, -self.lo)

    def __sub__(self, o):
        if isinstance(o, Interval):
            return mk(self.lo - o.hi, self.hi - o.lo)
        return Interval(self.lo - o, self.hi - o)

    def __rsub__(self, o):
        return Interval(o - self.hi, o - self.lo)

    def __mul__(self, o):
        if isinstance(o, Interval):
            ps = (self.lo * o.lo, self.lo * o.hi, self.hi * o.lo, self.hi * o.hi)
            return mk(min(ps), max(ps))
        if o >= 0:
            return mk(self.lo * o, self.hi * o)
        return Interval(self.hi * o, self.lo * o)

    __rmul__ = __mul__

    def __truediv__(self, o):
        if isinstance(o, Interval):
            return self * _recip(o)
        if o == 0:
            raise ZeroDivisionError("interval division by zero")
        return self * (mpq(1) / o)

    def __rtruediv__(self, o):
        return o * _recip(self)


def _recip(iv: Interval):
    if iv.lo <= 0 <= iv.hi:
        raise Undecided("division by an enclosure that contains 0")
    return Interval(mpq(1) / iv.hi, mpq(1) / iv.lo)


def mk(lo, hi):
    return lo if lo == hi else Interval(lo, hi)


def sign_of(v) -> int:
    if isinstance(v, Interval):
        if v.lo > 0:
            return 1
        if v.hi < 0:
            return -1
        raise Undecided("an enclosure contains 0")
    return (v > 0) - (v < 0)


def lower(v):
    return v.lo if isinstance(v, Interval) else v


def upper(v):
    return v.hi if isinstance(v, Interval) else v


def is_point(v) -> bool:
    return not isinstance(v, Interval)


# ----------------------------------------------------------------------------------------------
# certified transcendental enclosures


def _mpfr(q, prec, rnd):
    with gmpy2.context(gmpy2.get_context(), precision=prec, round=rnd):
        return gmpy2.mpfr(q)


def _bound(fn, q, prec, rnd):
    """fn evaluated on mpfr(q rounded the same way) with rounding ``rnd``: a one-sided bound for a
    monotone increasing fn."""
    with gmpy2.context(gmpy2.get_context(), precision=prec, round=rnd, emin=-(2**40), emax=2**40):
        return mpq(fn(gmpy2.mpfr(q)))


def _sig_down(q, prec):
    with gmpy2.context(gmpy2.get_context(), precision=prec, round=gmpy2.RoundUp, emin=-(2**40), emax=2**40):
        d = 1 + gmpy2.exp(gmpy2.mpfr(-q))
    with gmpy2.context(gmpy2.get_context(), precision=prec, round=gmpy2.RoundDown, emin=-(2**40), emax=2**40):
        return mpq(1 / d)


def _sig_up(q, prec):
    with gmpy2.context(gmpy2.get_context(), precision=prec, round=gmpy2.RoundDown, emin=-(2**40), emax=2**40):
        d = 1 + gmpy2.exp(gmpy2.mpfr(-q))
    with gmpy2.context(gmpy2.get_context(), precision=prec, round=gmpy2.RoundUp, emin=-(2**40), emax=2**40):
        return mpq(1 / d)


def _monotone(v, down, up, prec, exact_at=None):
    lo, hi = lower(v), upper(v)
    if exact_at is not None and lo == hi and lo in exact_at:
        return exact_at[lo]
    return mk(down(lo, prec), up(hi, prec))


def sigmoid_enclosure(v, prec):
    return _monotone(v, _sig_down, _sig_up, prec, {mpq(0): mpq(1, 2)})


def tanh_enclosure(v, prec):
    return _monotone(
        v,
        lambda q, p: _bound(gmpy2.tanh, q, p, gmpy2.RoundDown),
        lambda q, p: _bound(gmpy2.tanh, q, p, gmpy2.RoundUp),
        prec,
        {mpq(0): mpq(0)},
    )


def exp_enclosure(v, prec):
    return _monotone(
        v,
        lambda q, p: _bound(gmpy2.exp, q, p, gmpy2.RoundDown),
        lambda q, p: _bound(gmpy2.exp, q, p, gmpy2.RoundUp),
        prec,
        {mpq(0): mpq(1)},
    )


def log_enclosure(v, prec):
    if lower(v) <= 0:
        raise Undecided("log of an enclosure that is not positive")
    return _monotone(
        v,
        lambda q, p: _bound(gmpy2.log, q, p, gmpy2.RoundDown),
        lambda q, p: _bound(gmpy2.log, q, p, gmpy2.RoundUp),
        prec,
        {mpq(1): mpq(0)},
    )


# ----------------------------------------------------------------------------------------------
# the arithmetic


def to_object(a) -> np.ndarray:
    """float64 array (finite) -> object array of exact mpq. An object array (exact values, e.g.
    parameters off the machine grid for tests) is converted element-wise."""
    if isinstance(a, np.ndarray) and a.dtype == object:
        out = np.empty(a.shape, dtype=object)
        for i, v in enumerate(a.reshape(-1)):
            out.reshape(-1)[i] = mpq(v) if not isinstance(v, (MPQ, Interval)) else v
        return out
    return D.mpq_array(*_float_ints(a))


def _float_ints(a):
    a = np.asarray(a, dtype=np.float64)
    if not np.isfinite(a).all():
        raise ValueError("the exact semantics needs finite values")
    return D.float_ints(a)


def _int_matrix(a: np.ndarray):
    """object array of mpq -> (object array of Python ints, common denominator) or None if the
    array holds intervals."""
    return D.int_matrix(a)


def _int_matmul(a, b):
    """a @ b for arrays of integers (see :func:`dyadic.int_matmul`; FLINT from ``FLINT_MIN`` on)."""
    return D.int_matmul(a, b, FLINT_MIN)


FLINT_MIN = D.FLINT_MIN  # multiply-adds from which an integer matrix product goes through FLINT


class ExactArith(Operators, ArrayArith):
    exact = True
    name = "exact"

    def __init__(self, prec: int = 128):
        self.prec = prec
        # scaled-integer forms (ints, den) of the arrays made by from_floats, by id; the arrays are
        # kept alive here (so an id is never reused) and made read-only (so the form stays true)
        self._scaled = {}

    def const(self, q):
        if isinstance(q, float):
            return mpq(q)
        return mpq(q) if not isinstance(q, (MPQ, Interval)) else q

    def from_floats(self, a):
        if isinstance(a, np.ndarray) and a.dtype == object:
            return to_object(a)
        ints, den = _float_ints(a)
        out = D.mpq_array(ints, den)
        out.flags.writeable = False
        self._scaled[id(out)] = (out, ints, den)
        return out

    def _ints(self, a):
        """(ints, den) with a == ints / den, or None (enclosures)."""
        hit = self._scaled.get(id(a))
        if hit is not None and hit[0] is a:
            return hit[1], hit[2]
        return _int_matrix(np.asarray(a, dtype=object))

    def zeros(self, shape):
        out = np.empty(shape, dtype=object)
        out.fill(mpq(0))
        return out

    def _map(self, fn, a):
        a = np.asarray(a, dtype=object)
        out = np.empty(a.shape, dtype=object)
        of, af = out.reshape(-1), a.reshape(-1)
        for i in range(af.size):
            of[i] = fn(af[i], self.prec)
        return out

    def sigmoid(self, a):
        return self._map(sigmoid_enclosure, a)

    def tanh(self, a):
        return self._map(tanh_enclosure, a)

    def exp(self, a):
        return self._map(exp_enclosure, a)

    def log(self, a):
        return self._map(log_enclosure, a)

    def locate(self, a, kinks):
        a = np.asarray(a, dtype=object)
        piece = np.zeros(a.shape, dtype=np.int64)
        kink = np.full(a.shape, -1, dtype=np.int64)
        pf, kf = piece.reshape(-1), kink.reshape(-1)
        ks = [k.at for k in kinks]
        for i, v in enumerate(a.reshape(-1)):
            p = 0
            for j, k in enumerate(ks):
                s = sign_of(v - k)
                if s > 0:
                    p = j + 1
                elif s == 0:
                    kf[i] = j
                    break
                else:
                    break
            pf[i] = p
        return piece, kink

    def cmp(self, a, b):
        d = np.asarray(self.sub(a, b), dtype=object)
        out = np.empty(d.shape, dtype=np.int8)
        of = out.reshape(-1)
        for i, v in enumerate(d.reshape(-1)):
            of[i] = sign_of(v)
        return out

    def dot(self, W, x):
        return self._dot(W, x, self._ints(W), self._ints(x))

    def dot_t(self, W, g):
        """g @ W: the backward product, with W's integer form transposed (no copy of W)."""
        Wi = self._ints(W)
        return self._dot(np.ascontiguousarray(W.T), g, None if Wi is None else (Wi[0].T, Wi[1]), self._ints(g))

    def _dot(self, W, x, Wi, xi):
        if Wi is None or xi is None:
            W, x = np.asarray(W, dtype=object), np.asarray(x, dtype=object)
            if (Wi is None) != (xi is None):  # enclosures on one side only: four exact products
                return self._dot_enclosed(W, x, Wi is None)
            return x @ W.T
        (wn, wd), (xn, xd) = Wi, xi
        return D.mpq_array(_int_matmul(xn, wn.T), wd * xd)

    def _dot_enclosed(self, W, x, w_has_intervals):
        """x @ W.T when one operand holds enclosures: split it into end points and the rational
        operand into its positive and negative parts; the four products are exact integer matmuls,
        and the result encloses every value of x @ W.T (the same bounds as entrywise interval
        arithmetic, computed without one Python object per product)."""

        def ends(a):
            lo = np.empty(a.shape, dtype=object)
            hi = np.empty(a.shape, dtype=object)
            lf, hf = lo.reshape(-1), hi.reshape(-1)
            for i, v in enumerate(a.reshape(-1)):
                lf[i], hf[i] = (v.lo, v.hi) if isinstance(v, Interval) else (mpq(v), mpq(v))
            return lo, hi

        def parts(a):
            p = np.empty(a.shape, dtype=object)
            m = np.empty(a.shape, dtype=object)
            pf, mf = p.reshape(-1), m.reshape(-1)
            zero = mpq(0)
            for i, v in enumerate(a.reshape(-1)):
                v = mpq(v)
                pf[i], mf[i] = (v, zero) if v >= 0 else (zero, v)
            return p, m

        if w_has_intervals:
            Wl, Wh = ends(W)
            xp, xm = parts(x)
            lo = self.dot(Wl, xp) + self.dot(Wh, xm)
            hi = self.dot(Wh, xp) + self.dot(Wl, xm)
        else:
            xl, xh = ends(x)
            Wp, Wm = parts(W)
            lo = self.dot(Wp, xl) + self.dot(Wm, xh)
            hi = self.dot(Wp, xh) + self.dot(Wm, xl)
        out = np.empty(lo.shape, dtype=object)
        of = out.reshape(-1)
        for i, (a, b) in enumerate(zip(lo.reshape(-1), hi.reshape(-1))):
            of[i] = mk(a, b)
        return out

    def seq_sum(self, a, axis=-1):
        return np.sum(np.asarray(a, dtype=object), axis=axis)

    def accumulate_params(self, blocks, n_theta):
        out = self.zeros((n_theta,))
        for _, kind, payload, src, sign in blocks:
            keep = src >= 0
            if not keep.any():
                continue
            if kind == "outer":
                g, x = payload
                gi, xi = self._ints(g), self._ints(x)
                if gi is None or xi is None:
                    S = self.dot(np.ascontiguousarray(g.T), np.ascontiguousarray(x.T)).T.reshape(-1)
                else:  # S[i, j] = sum_n g[n, i] x[n, j]
                    S = D.mpq_array(_int_matmul(np.ascontiguousarray(gi[0].T), xi[0]), gi[1] * xi[1]).reshape(-1)
            else:
                S = np.sum(payload, axis=(0, 2))
            e = np.flatnonzero(keep)
            v = S[e]
            neg = sign[e] < 0
            if neg.any():
                v = v.copy()
                v[neg] = -v[neg]
            np.add.at(out, src[e], v)  # order-free: exact
        return out

    def max_first(self, windows):
        m = windows[..., 0].copy()
        arg = np.zeros(m.shape, dtype=np.int64)
        for j in range(1, windows.shape[-1]):
            gt = self.cmp(windows[..., j], m) > 0
            m[gt] = windows[..., j][gt]
            arg[gt] = j
        # the maximal entry itself is not compared with its own value (an enclosure minus itself
        # is never decided); the others are
        eq = np.zeros(windows.shape, dtype=bool)
        for j in range(windows.shape[-1]):
            mine = arg == j
            eq[..., j] = mine
            others = ~mine
            if others.any():
                eq[..., j][others] = self.cmp(windows[..., j][others], m[others]) == 0
        return m, eq
