"""Scaled-integer tensors for the exact arithmetic: a tensor of rationals as an integer array times
one common scale, ``values = ints / den`` (``den`` a positive integer, the tensor's common
denominator).

Machine numbers are dyadic rationals, so a tensor of floats is an integer array over a power of
two, read straight off the float bits with numpy (``np.frexp``; no rational per entry, no gcd).
Products of such tensors are integer matrix products (python-flint's fmpz_mat from ``FLINT_MIN``
multiply-adds on, numpy's object matmul below) over the product of the scales. Non-dyadic values
(the 1/count of a mean loss, hardsigmoid's 1/6, slopes that are not powers of two) need no special
case: the common denominator is then the lcm of the entries' denominators, which is what
:func:`int_matrix` computes for any array of rationals. Enclosures (intervals) have no such form:
:func:`int_matrix` returns None and the caller keeps its rational path.

Every conversion here is exact; the conversions back to ``mpq`` (:func:`mpq_array`) reduce each
entry to lowest terms, so a value computed this way is the same ``mpq`` as the one computed entry
by entry. The module also holds the vectorised report formatting of many values at once
(:func:`rats`, :func:`hexes`), byte-identical to the per-value rules in ``fmt.py``.
"""

from __future__ import annotations

import math
from itertools import repeat
from operator import attrgetter, floordiv, mul

import numpy as np
from gmpy2 import mpq, mpz

MPQ = type(mpq(1, 2))
MPZ = type(mpz(1))
FLINT_MIN = 200_000  # multiply-adds from which an integer matrix product goes through FLINT

_num = attrgetter("numerator")
_den = attrgetter("denominator")


def float_ints(a):
    """float64 array (finite) -> (ints, den): ``a == ints / den`` exactly, ``den`` a power of two
    (an mpz), ``ints`` an int64 array when every entry fits in 62 bits, else an object array of
    Python integers. The common power of two is the smallest one that makes every entry an
    integer (trailing zero bits shared by all entries are dropped)."""
    a = np.asarray(a, dtype=np.float64)
    m, e = np.frexp(a)  # a = m * 2**e, 0.5 <= |m| < 1 (exact, subnormals included)
    mi = np.ldexp(m, 53).astype(np.int64)  # |mi| < 2**53, exact
    ex = e.astype(np.int64) - 53
    nz = mi != 0
    if not nz.any():
        return np.zeros(a.shape, dtype=np.int64), mpz(1)
    # drop trailing zero bits of each mantissa (lowest set bit), so the common exponent is minimal
    low = mi & -mi
    tz = np.zeros(a.shape, dtype=np.int64)
    tz[nz] = np.log2(np.abs(low[nz]).astype(np.float64)).astype(np.int64)  # exact: a power of two < 2**53
    mi = np.where(nz, mi >> tz, 0)  # arithmetic shift of an exact multiple: exact
    ex = ex + tz
    k = int(ex[nz].min())
    sh = np.where(nz, ex - k, 0)
    bits = np.where(nz, 54 - tz, 0) + sh  # |mi| < 2**(54 - tz)
    if int(bits.max()) <= 62:
        ints = mi << sh
    else:
        ints = np.empty(a.shape, dtype=object)
        ints.reshape(-1)[:] = [x << s for x, s in zip(mi.reshape(-1).tolist(), sh.reshape(-1).tolist())]
    if k >= 0:  # all integers: scale up, denominator 1
        if k:
            ints = np.asarray(ints, dtype=object) * (1 << k)
        return ints, mpz(1)
    return ints, mpz(1) << (-k)


def int_matrix(a):
    """object array of rationals (mpq / integers) -> (object array of Python ints, common
    denominator) with ``a == ints / den``; None if an entry is not rational (an enclosure)."""
    flat = a.reshape(-1).tolist()
    types = set(map(type, flat))
    if not types <= {MPQ, int, MPZ}:
        return None
    if types <= {int, MPZ}:
        out = np.empty(a.shape, dtype=object)
        out.reshape(-1)[:] = list(map(int, flat))
        return out, mpz(1)
    if types != {MPQ}:
        flat = list(map(mpq, flat))
    dens = list(map(_den, flat))
    den = mpz(1)
    for d in set(dens):
        if den % d:
            den = den * d // math.gcd(den, d)
    nums = map(_num, flat)
    out = np.empty(a.shape, dtype=object)
    if den == 1:
        out.reshape(-1)[:] = list(map(int, nums))
    else:
        out.reshape(-1)[:] = list(map(int, map(mul, nums, map(floordiv, repeat(den), dens))))
    return out, den


def int_matmul(a, b, flint_min=FLINT_MIN):
    """a @ b for integer arrays (int64 or object arrays of Python integers), [..., k] @ [k, m]:
    exact either way (int64 inputs are multiplied as Python integers, never in int64); large
    products go through python-flint's fmpz_mat (multi-modular, ~4x faster than numpy's object
    matmul on the 784-256 layer of a float32 MLP, conversions included). Returns an object array."""
    k = a.shape[-1]
    lead = a.shape[:-1]
    rows = int(np.prod(lead)) if lead else 1
    m = b.shape[1]
    if rows * k * m < flint_min or k == 0 or m == 0 or rows == 0:
        return np.asarray(a, dtype=object) @ np.asarray(b, dtype=object)
    import flint

    A = flint.fmpz_mat(rows, k, list(map(int, np.ascontiguousarray(a).reshape(-1).tolist())))
    B = flint.fmpz_mat(k, m, list(map(int, np.ascontiguousarray(b).reshape(-1).tolist())))
    out = np.empty(rows * m, dtype=object)
    out[:] = list(map(int, (A * B).entries()))
    return out.reshape(lead + (m,))


def mpq_array(ints, den):
    """(integer array, den) -> object array of the mpq values ints / den (each in lowest terms)."""
    out = np.empty(ints.shape, dtype=object)
    flat = ints.reshape(-1).tolist()
    if den == 1:
        out.reshape(-1)[:] = list(map(mpq, flat))
    else:
        out.reshape(-1)[:] = list(map(mpq, flat, repeat(den, len(flat))))
    return out


# ----------------------------------------------------------------------------------------------
# report formatting of many values (the same bytes as fmt.rat / fmt.hexf per value)


def rats(values, one):
    """[one(v) for v in values], with the common case (every value an mpq) formatted by gmpy2's own
    str, which writes "p/q" in lowest terms and "p" for integers - the rule of ``fmt.rat``."""
    values = list(values)
    if set(map(type, values)) <= {MPQ}:
        return list(map(str, values))
    return [one(v) for v in values]


_TINY = 2.2250738585072014e-308  # binary64's smallest normal


def hexes(values, one):
    """[one(v) for v in values] for the canonical hex form (``formats.to_hex``) of floats:
    normal floats through ``float.hex`` with the trailing zeros of the fraction removed by a few
    passes over the joined text, zeros likewise; binary64 subnormals, inf and NaN value by value."""
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    if a.size == 0:
        return []
    joined = "\n".join(map(float.hex, a.tolist()))
    # float.hex writes 13 fraction digits ("0x0.0p+0" for zero): drop 8, 4, 2, 1 trailing zeros
    # if present (at most 13 in all, one "p" per value), then an empty fraction's "."
    for k in (8, 4, 2, 1):
        joined = joined.replace("0" * k + "p", "p")
    out = joined.replace(".p", "p").split("\n")
    odd = ~np.isfinite(a) | ((a != 0) & (np.abs(a) < _TINY))
    for i in np.flatnonzero(odd).tolist():
        out[i] = one(float(a[i]))
    return out
