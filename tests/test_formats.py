"""Tests for kinkcheck.encodings.formats: machine numbers and rounding, checked exactly.

References used here are independent of the implementation: gmpy2.mpfr contexts emulating each
format, numpy's float16/float32 casts and arithmetic, and values built directly from bit fields.
"""

from __future__ import annotations

import functools
import json
import math
import os
import pickle
import struct
from fractions import Fraction

import gmpy2
import numpy as np
import pytest
from gmpy2 import mpfr, mpq
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from kinkcheck.encodings.formats import (
    BFLOAT16,
    FLOAT16,
    FLOAT32,
    FLOAT64,
    FloatFormat,
    FormatError,
    InvalidValue,
    NotRepresentable,
    exact,
    json_float,
    parse_value,
    to_hex,
)

# Example counts are modest so the module runs in seconds; KINKCHECK_TEST_SCALE=20 (say)
# multiplies them all for a thorough run.
SCALE = float(os.environ.get("KINKCHECK_TEST_SCALE", "1"))


def examples(n: int) -> settings:
    return settings(max_examples=max(1, int(n * SCALE)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


SETTINGS = examples(25)

E4M3 = FloatFormat.from_spec({"exponent_bits": 4, "fraction_bits": 3})
E5M2 = FloatFormat.from_spec({"exponent_bits": 5, "fraction_bits": 2})
E10M24 = FloatFormat.from_spec({"exponent_bits": 10, "fraction_bits": 24})
E2M1 = FloatFormat.from_spec({"exponent_bits": 2, "fraction_bits": 1})
E3M5 = FloatFormat.from_spec({"exponent_bits": 3, "fraction_bits": 5})
E7M12 = FloatFormat.from_spec({"exponent_bits": 7, "fraction_bits": 12})

ALL_FORMATS = [FLOAT16, BFLOAT16, FLOAT32, FLOAT64, E4M3, E5M2, E10M24, E2M1, E3M5, E7M12]
NARROW_FORMATS = [f for f in ALL_FORMATS if f != FLOAT64]
fmt_ids = lambda f: f.name  # noqa: E731


def bits(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def same(x: float, y: float) -> bool:
    """Bit-identical floats (NaN equal to NaN)."""
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return bits(x) == bits(y)


def same_arrays(x: np.ndarray, y: np.ndarray) -> bool:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    nx, ny = np.isnan(x), np.isnan(y)
    return bool(np.array_equal(nx, ny) and np.array_equal(x[~nx].view(np.uint64), y[~ny].view(np.uint64)))


# -- independent reference: MPFR emulating the format -----------------------------------------


def mpfr_context(fmt: FloatFormat):
    M = fmt.fraction_bits
    # MPFR writes x = m * 2**e with 0.5 <= m < 1: a format number 1.f * 2**E has MPFR exponent E+1
    return gmpy2.context(
        precision=fmt.precision,
        emin=fmt.emin - M + 1,
        emax=fmt.emax + 1,
        subnormalize=True,
        round=gmpy2.RoundToNearest,
    )


def mpfr_round(fmt: FloatFormat, q) -> float:
    with mpfr_context(fmt):
        r = mpfr(mpq(q))  # correctly rounded, then range-checked and subnormalized by gmpy2
    return float(r)


def build(fmt: FloatFormat, sign: int, field: int, frac: int) -> float:
    """The format value with the given bit fields, decoded from the IEEE definition."""
    M = fmt.fraction_bits
    if field == 0:
        v = Fraction(frac, 2**M) * Fraction(2) ** fmt.emin
    else:
        v = (1 + Fraction(frac, 2**M)) * Fraction(2) ** (field - 2 ** (fmt.exponent_bits - 1) + 1)
    f = v.numerator / v.denominator  # exact: v is a binary64 number
    assert Fraction(f) == v
    return -f if sign else f


@functools.lru_cache(maxsize=None)
def format_values(fmt: FloatFormat):
    """Strategy: any finite value of fmt (both zeros included)."""
    return st.builds(
        lambda s, e, m: build(fmt, s, e, m),
        st.integers(0, 1),
        st.integers(0, 2**fmt.exponent_bits - 2),
        st.integers(0, 2**fmt.fraction_bits - 1),
    )


@functools.lru_cache(maxsize=None)
def near_boundaries(fmt: FloatFormat):
    """Strategy: rationals at/near the interesting places of fmt (ties, subnormals, overflow)."""
    M, p = fmt.fraction_bits, fmt.precision
    lo_k, hi_k = fmt.emin - M - 3, fmt.emax - M + 3

    # (n + t) * 2**k with n around the p-bit integers, t a small fraction (0, 1/2 = tie, ...)
    scaled = st.builds(
        lambda n, t, k, s: (-1) ** s * (mpq(n) + t) * mpq(2) ** k,
        st.one_of(st.integers(0, 2 ** (p + 1)), st.integers(2**p - 3, 2**p + 3), st.integers(0, 4)),
        st.one_of(
            st.just(mpq(0)),
            st.just(mpq(1, 2)),
            st.sampled_from([mpq(1, 3), mpq(2, 3), mpq(1, 2**60), mpq(1, 2) - mpq(1, 2**70),
                             mpq(1, 2) + mpq(1, 2**70), mpq(999, 1000)]),
            st.fractions(0, 1, max_denominator=10**6).map(lambda f: mpq(f.numerator, f.denominator)),
        ),
        st.one_of(st.integers(lo_k, hi_k), st.sampled_from([lo_k, fmt.emin - M, hi_k - 3, hi_k - 4])),
        st.integers(0, 1),
    )
    # midpoints of consecutive representable numbers, nudged by a tiny amount
    def midpoint(x, nudge):
        up = fmt.next_up(x) if x < fmt.max_finite else x + fmt.ulp(x)
        return (exact(x) + exact(up)) / 2 + nudge

    mid = st.builds(
        midpoint,
        format_values(fmt).filter(lambda x: x >= 0),
        st.sampled_from([mpq(0), mpq(1, 2**1100), -mpq(1, 2**1100)]),
    )
    overflow = st.builds(
        lambda d, s: (-1) ** s * ((2 - mpq(1, 2**p)) * mpq(2) ** fmt.emax + d),
        st.sampled_from([mpq(0), mpq(-1), mpq(1), mpq(-1, 2**2000), mpq(1, 2**2000)])
        | st.fractions(-10, 10).map(lambda f: mpq(f.numerator, f.denominator) * mpq(2) ** (fmt.emax - p)),
        st.integers(0, 1),
    )
    wild = st.builds(lambda n, d: mpq(n, d), st.integers(-(10**400), 10**400), st.integers(1, 10**400))
    return st.one_of(scaled, mid, overflow, wild)


# ---------------------------------------------------------------------------------------------
# format parameters and from_spec
# ---------------------------------------------------------------------------------------------


def test_known_constants():
    assert FLOAT16.max_finite == 65504.0
    assert FLOAT16.min_subnormal == 2.0**-24
    assert FLOAT16.min_normal == 2.0**-14
    assert (FLOAT16.emax, FLOAT16.emin, FLOAT16.precision) == (15, -14, 11)
    assert BFLOAT16.max_finite == (2 - 2.0**-7) * 2.0**127
    assert BFLOAT16.min_subnormal == 2.0**-133
    assert BFLOAT16.min_normal == 2.0**-126
    assert FLOAT32.max_finite == float(np.finfo(np.float32).max)
    assert FLOAT32.min_subnormal == 2.0**-149
    assert FLOAT32.min_normal == 2.0**-126
    assert FLOAT64.max_finite == 1.7976931348623157e308
    assert FLOAT64.min_subnormal == 5e-324
    assert FLOAT64.min_normal == 2.2250738585072014e-308
    assert (FLOAT64.emax, FLOAT64.emin, FLOAT64.precision) == (1023, -1022, 53)
    assert E4M3.max_finite == 240.0
    assert E4M3.min_normal == 2.0**-6
    assert E4M3.min_subnormal == 2.0**-9
    assert E5M2.max_finite == 57344.0
    assert E5M2.min_subnormal == 2.0**-16
    assert E2M1.max_finite == 3.0
    assert E2M1.min_normal == 1.0
    assert E2M1.min_subnormal == 0.5
    assert E10M24.max_finite == (2 - 2.0**-24) * 2.0**511
    assert E10M24.min_subnormal == 2.0**-534


def test_named_formats_and_numpy_dtypes():
    assert FloatFormat.from_spec("float16") == FloatFormat(5, 10)
    assert FloatFormat.from_spec("bfloat16") == FloatFormat(8, 7)
    assert FloatFormat.from_spec("float32") == FloatFormat(8, 23)
    assert FloatFormat.from_spec("float64") == FloatFormat(11, 52)
    assert [f.name for f in (FLOAT16, BFLOAT16, FLOAT32, FLOAT64)] == ["float16", "bfloat16", "float32", "float64"]
    assert FLOAT16.numpy_dtype == np.dtype("float16")
    assert FLOAT32.numpy_dtype == np.dtype("float32")
    assert FLOAT64.numpy_dtype == np.dtype("float64")
    assert BFLOAT16.numpy_dtype is None
    assert E4M3.numpy_dtype is None
    for f in (FLOAT16, FLOAT32, FLOAT64):
        fi = np.finfo(f.numpy_dtype)
        assert f.max_finite == float(fi.max)
        assert f.min_normal == float(fi.tiny)
        assert f.precision == fi.nmant + 1


def test_custom_names_and_equality():
    assert E4M3.name == "float(e4,m3)"
    assert E10M24.name == "float(e10,m24)"
    # a dict spelling of a named format is that format
    assert FloatFormat.from_spec({"exponent_bits": 5, "fraction_bits": 10}).name == "float16"
    assert FloatFormat.from_spec({"exponent_bits": 8, "fraction_bits": 7}).name == "bfloat16"
    assert FloatFormat.from_spec({"exponent_bits": 11, "fraction_bits": 52}) == FLOAT64
    assert FloatFormat.from_spec(E4M3) is E4M3
    assert hash(FloatFormat(4, 3)) == hash(E4M3)
    assert FloatFormat(4, 3) != FloatFormat(3, 4)
    with pytest.raises(Exception):
        E4M3.exponent_bits = 5  # frozen


@pytest.mark.parametrize(
    "spec",
    [
        "float8", "Float32", "float32 ", "fp16", "half", "", None, 32, 1.5, ["float32"],
        {"exponent_bits": 4}, {"fraction_bits": 3},
        {"exponent_bits": 4, "fraction_bits": 3, "bias": 7},
        {"exponent_bits": True, "fraction_bits": 3}, {"exponent_bits": 4, "fraction_bits": False},
        {"exponent_bits": 4.0, "fraction_bits": 3}, {"exponent_bits": "4", "fraction_bits": 3},
        {"exponent_bits": 1, "fraction_bits": 3}, {"exponent_bits": 12, "fraction_bits": 3},
        {"exponent_bits": 4, "fraction_bits": 0}, {"exponent_bits": 4, "fraction_bits": 25},
        {"exponent_bits": 11, "fraction_bits": 24}, {"exponent_bits": 11, "fraction_bits": 10},
        {"exponent_bits": 10, "fraction_bits": 52}, {"exponent_bits": 8, "fraction_bits": 52},
        {"exponent_bits": 11, "fraction_bits": 53}, {"exponent_bits": 15, "fraction_bits": 112},
    ],
)
def test_from_spec_rejects(spec):
    with pytest.raises(FormatError):
        FloatFormat.from_spec(spec)


def test_from_spec_messages():
    with pytest.raises(FormatError) as ei:
        FloatFormat.from_spec("float8")
    msg = str(ei.value)
    assert '"float8"' in msg and "bfloat16" in msg and "exponent_bits" in msg and "fraction_bits" in msg
    with pytest.raises(FormatError) as ei:
        FloatFormat.from_spec({"exponent_bits": 8, "fraction_bits": 30})
    assert "Figueroa" in str(ei.value) and "binary64" in str(ei.value)
    with pytest.raises(FormatError):
        FloatFormat(8, 30)  # the constructor validates too
    assert issubclass(FormatError, ValueError)


@pytest.mark.parametrize("E,M", [(2, 1), (10, 24), (2, 24), (10, 1), (11, 52), (6, 9)])
def test_from_spec_accepts_edges(E, M):
    f = FloatFormat.from_spec({"exponent_bits": E, "fraction_bits": M})
    assert (f.exponent_bits, f.fraction_bits) == (E, M)
    assert f.max_finite == (2 - 2.0**-M) * 2.0**f.emax
    assert f.min_subnormal == 2.0 ** (f.emin - M)


# ---------------------------------------------------------------------------------------------
# exact and to_hex
# ---------------------------------------------------------------------------------------------


def test_exact():
    assert exact(0.1) == mpq(3602879701896397, 2**55)
    assert exact(-0.0) == 0 and exact(0.0) == 0
    assert exact(5e-324) == mpq(1, 2**1074)
    assert exact(1.7976931348623157e308) == (2**53 - 1) * mpq(2) ** 971
    assert exact(np.float32(0.1)) == mpq(13421773, 2**27)
    for bad in (math.inf, -math.inf, math.nan):
        with pytest.raises(ValueError):
            exact(bad)


@pytest.mark.parametrize(
    "v,s",
    [
        (0.1875, "0x1.8p-3"), (1.0, "0x1p+0"), (-18.0, "-0x1.2p+4"), (0.0, "0x0p+0"), (-0.0, "-0x0p+0"),
        (math.inf, "inf"), (-math.inf, "-inf"), (math.nan, "nan"), (5e-324, "0x1p-1074"),
        (2.0**-1073 + 2.0**-1074, "0x1.8p-1073"), (2.2250738585072009e-308, "0x1.ffffffffffffep-1023"),
        (1.7976931348623157e308, "0x1.fffffffffffffp+1023"), (0.1, "0x1.999999999999ap-4"),
        (float(np.float32(0.1)), "0x1.99999ap-4"), (65504.0, "0x1.ffcp+15"), (2.0**-24, "0x1p-24"),
    ],
)
def test_to_hex_examples(v, s):
    assert to_hex(v) == s
    assert FLOAT32.to_hex(v) == s


@SETTINGS
@given(st.floats(allow_nan=False))
@example(5e-324)
@example(-2.225073858507201e-308)
@example(-0.0)
def test_to_hex_round_trip(v):
    s = to_hex(v)
    assert same(float.fromhex(s), v)
    if v != 0 and math.isfinite(v):
        assert s.lstrip("-").startswith("0x1")
        mant = s.split("p")[0]
        assert not mant.endswith("0") and not mant.endswith(".")
    if math.isfinite(v) and abs(v) >= 2.2250738585072014e-308:
        # agrees with float.hex with the fraction's trailing zeros stripped
        h = v.hex()
        mant, exp = h.split("p")
        mant = mant.rstrip("0").rstrip(".")
        assert s == mant + "p" + exp


# ---------------------------------------------------------------------------------------------
# round_rational against MPFR and numpy
# ---------------------------------------------------------------------------------------------


@SETTINGS
@given(st.floats(allow_nan=False, allow_infinity=False))
@example(2.0**-150)  # tie with 0 -> +0
@example(-(2.0**-150))  # -> -0
@example(3 * 2.0**-150)  # tie -> 2**-148 (even)
@example(2.0**-150 + 2.0**-200)
@example(float(np.finfo(np.float32).max) + 2.0**103)  # exactly the overflow threshold -> inf
@example(float(np.finfo(np.float32).max) + 2.0**103 - 2.0**75)
@example(1 + 2.0**-24)  # tie -> 1
@example(1 + 3 * 2.0**-24)  # tie -> 1 + 2**-22
def test_mpfr_reference_and_round_rational_agree_with_numpy_float32(x):
    with np.errstate(over="ignore"):
        expected = float(np.float32(x))
    if x != 0:  # (an mpq has no signed zero)
        assert same(mpfr_round(FLOAT32, exact(x)), expected)  # validates the MPFR emulation
    assert same(FLOAT32.round_rational(exact(x), negative_zero=math.copysign(1, x) < 0), expected)
    assert same(FLOAT32.round_rational(x), expected)


@SETTINGS
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_mpfr_reference_agrees_with_numpy_float16(x):
    with np.errstate(over="ignore"):
        expected = float(np.float16(x))
    if x != 0:
        assert same(mpfr_round(FLOAT16, exact(x)), expected)


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=fmt_ids)
@examples(40)
@given(data=st.data())
def test_round_rational_matches_mpfr(fmt, data):
    q = data.draw(near_boundaries(fmt))
    r = fmt.round_rational(q)
    assert same(r, mpfr_round(fmt, q))
    assert fmt.is_representable(r)
    lo, hi = fmt.neighbours(q)
    assert r in (lo, hi)
    # the result is a nearest neighbour
    if math.isfinite(lo) and math.isfinite(hi) and lo != hi:
        dlo, dhi = q - exact(lo), exact(hi) - q
        assert dlo > 0 and dhi > 0
        assert (dlo < dhi and r == lo) or (dhi < dlo and r == hi) or (dlo == dhi)


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=fmt_ids)
def test_round_rational_fixed_points(fmt):
    M, p = fmt.fraction_bits, fmt.precision
    maxq = exact(fmt.max_finite)
    half_ulp_top = mpq(2) ** (fmt.emax - M - 1)
    assert fmt.round_rational(maxq) == fmt.max_finite
    assert fmt.round_rational(maxq + half_ulp_top) == math.inf  # tie goes to inf
    assert fmt.round_rational(-maxq - half_ulp_top) == -math.inf
    assert fmt.round_rational(maxq + half_ulp_top - mpq(1, 2**3000)) == fmt.max_finite
    assert fmt.round_rational(mpq(2) ** (fmt.emax + 1)) == math.inf
    assert fmt.round_rational(10**1000) == math.inf
    s = exact(fmt.min_subnormal)
    assert same(fmt.round_rational(s / 2), 0.0)  # tie with zero -> even (zero)
    assert same(fmt.round_rational(-s / 2), -0.0)
    assert fmt.round_rational(s / 2 + mpq(1, 2**3000)) == fmt.min_subnormal
    assert fmt.round_rational(3 * s / 2) == 2 * fmt.min_subnormal  # tie -> even
    assert fmt.round_rational(5 * s / 2) == 2 * fmt.min_subnormal
    assert same(fmt.round_rational(mpq(-1, 10**1000)), -0.0)
    assert same(fmt.round_rational(0), 0.0)
    assert same(fmt.round_rational(0, negative_zero=True), -0.0)
    assert same(fmt.round_rational(Fraction(0)), 0.0)
    assert fmt.round_rational(Fraction(3, 2)) == 1.5
    assert fmt.round_rational(1) == 1.0
    # ties in the normal range: 1 + half ulp -> 1, 1 + 3 half ulps -> 1 + 2 ulps
    hu = mpq(1, 2 ** (p))
    assert fmt.round_rational(1 + hu) == 1.0
    assert fmt.round_rational(1 + 3 * hu) == 1 + 2.0 ** (1 - M)
    assert type(fmt.round_rational(mpq(1, 3))) is float
    with pytest.raises(TypeError):
        fmt.round_rational("1")
    with pytest.raises(TypeError):
        fmt.round_rational(True)


def test_round_rational_float_inputs():
    assert FLOAT32.round_rational(math.inf) == math.inf
    assert same(FLOAT32.round_rational(-0.0), -0.0)
    assert FLOAT32.round_rational(0.1) == float(np.float32(0.1))
    with pytest.raises(ValueError):
        FLOAT32.round_rational(math.nan)


def test_round_rational_float64_subnormals():
    s = mpq(1, 2**1074)
    assert FLOAT64.round_rational(s) == 5e-324
    assert FLOAT64.round_rational(s / 2) == 0.0
    assert FLOAT64.round_rational(3 * s / 2) == 1e-323
    assert FLOAT64.round_rational(mpq(2**52 - 1) * s) == 2.225073858507201e-308
    assert FLOAT64.round_rational(mpq(1, 10)) == 0.1
    assert FLOAT64.round_rational(mpq(2**1024 - 2**970)) == math.inf
    assert FLOAT64.round_rational(mpq(2**1024 - 2**970 - 1)) == 1.7976931348623157e308


# ---------------------------------------------------------------------------------------------
# round_array
# ---------------------------------------------------------------------------------------------


def random_float64(rng: np.random.Generator, n: int, fmt: FloatFormat | None = None) -> np.ndarray:
    """Mixed float64 samples: random bit patterns, values scattered over the format's range,
    exact ties and near-ties of the format, format subnormals, overflow boundary, specials."""
    parts = [rng.integers(0, 2**64, n, dtype=np.uint64).view(np.float64)]
    if fmt is not None:
        M = fmt.fraction_bits
        e = rng.integers(fmt.emin - M - 4, fmt.emax + 3, n)
        parts.append(np.ldexp(rng.random(n) + 1.0, e) * rng.choice([-1.0, 1.0], n))
        # exact ties: odd multiples of half the quantum
        k = np.maximum(e, fmt.emin) - M - 1
        odd = 2 * rng.integers(0, 2**M + 2**(M - 1) + 1, n) + 1
        parts.append(np.ldexp(odd.astype(np.float64), k) * rng.choice([-1.0, 1.0], n))
        # subnormal range of the format
        parts.append(rng.integers(-(2 ** (M + 2)), 2 ** (M + 2), n) * (fmt.min_subnormal / 4))
        mx = fmt.max_finite
        half = 2.0 ** (fmt.emax - M - 1)
        parts.append(np.array([mx, mx + half, mx + half - 2.0 ** (fmt.emax - 40), -mx - half,
                               np.nextafter(mx + half, 0), fmt.min_subnormal / 2,
                               -fmt.min_subnormal / 2, np.nextafter(fmt.min_subnormal / 2, 1)]))
    parts.append(np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 1.7976931348623157e308,
                           -1.7976931348623157e308, 2.2250738585072009e-308, 1.0, -1.0]))
    return np.concatenate(parts)


@pytest.mark.parametrize("fmt", [FLOAT16, FLOAT32], ids=fmt_ids)
@examples(5)
@given(seed=st.integers(0, 2**32 - 1))
def test_round_array_matches_numpy_casts(fmt, seed):
    x = random_float64(np.random.default_rng(seed), 2000, fmt)
    with np.errstate(over="ignore", invalid="ignore"):
        expected = x.astype(fmt.numpy_dtype).astype(np.float64)
    got = fmt.round_array(x)
    assert got.dtype == np.float64 and got.shape == x.shape
    assert same_arrays(got, expected)


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=fmt_ids)
@examples(3)
@given(seed=st.integers(0, 2**32 - 1))
def test_round_array_matches_round_rational(fmt, seed):
    x = random_float64(np.random.default_rng(seed), 300, fmt)
    got = fmt.round_array(x)
    for xi, gi in zip(x.tolist(), got.tolist()):
        if not math.isfinite(xi):
            assert same(gi, xi)
        else:
            assert same(gi, fmt.round_rational(exact(xi), negative_zero=math.copysign(1, xi) < 0)), xi


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=fmt_ids)
@SETTINGS
@given(x=st.floats(allow_nan=False, allow_infinity=False), data=st.data())
def test_round_array_scalar_property(fmt, x, data):
    got = fmt.round_array(np.array([x]))[0]
    assert same(float(got), fmt.round_rational(x))
    y = data.draw(format_values(fmt))
    assert same(float(fmt.round_array(np.array([y]))[0]), y)  # representable values are fixed


def test_round_array_shapes_and_types():
    x = np.array([[0.1, -0.0], [np.inf, np.nan]])
    r = E4M3.round_array(x)
    assert r.shape == (2, 2) and r.dtype == np.float64
    assert r[0, 0] == 0.1015625 and same(r[0, 1], -0.0) and r[1, 0] == np.inf and np.isnan(r[1, 1])
    assert E4M3.round_array(np.float32([0.1]))[0] == 0.1015625  # float32 input is exact in float64
    assert E4M3.round_array(np.float64(300.0)).shape == ()
    x64 = np.array([0.1, 1e300, -5e-324])
    out = FLOAT64.round_array(x64)
    assert same_arrays(out, x64) and out is not x64
    with pytest.raises(TypeError):
        E4M3.round_array(np.array([1, 2]))
    x = np.array([1.0 + 2.0**-4])
    E4M3.round_array(x)
    assert x[0] == 1.0 + 2.0**-4  # input untouched


# ---------------------------------------------------------------------------------------------
# the double-rounding property relied on by the machine evaluator
# ---------------------------------------------------------------------------------------------

OPS = {
    "+": (np.add, lambda a, b: a + b),
    "-": (np.subtract, lambda a, b: a - b),
    "*": (np.multiply, lambda a, b: a * b),
    "/": (np.divide, lambda a, b: a / b),
}


def exact_op_rounded(fmt, op, a: float, b: float) -> float:
    qa, qb = exact(a), exact(b)
    q = OPS[op][1](qa, qb)
    if q == 0:
        # IEEE signs of exact zero results (round to nearest)
        sa, sb = math.copysign(1, a) < 0, math.copysign(1, b) < 0
        if op == "+":
            neg = sa and sb
        elif op == "-":
            neg = sa and not sb
        else:
            neg = sa != sb
        return fmt.round_rational(q, negative_zero=neg)
    return fmt.round_rational(q)


def machine_op(fmt, op, a, b):
    with np.errstate(all="ignore"):
        return fmt.round_array(OPS[op][0](np.float64(a), np.float64(b)))


@pytest.mark.parametrize("fmt", [E2M1, E4M3, E5M2], ids=fmt_ids)
@pytest.mark.parametrize("op", list(OPS))
def test_double_rounding_exhaustive_tiny_formats(fmt, op):
    v = fmt.all_finite_values()
    A, B = np.meshgrid(v, v, indexing="ij")
    A, B = A.ravel(), B.ravel()
    if op == "/":
        keep = B != 0
        A, B = A[keep], B[keep]
    got = machine_op(fmt, op, A, B)
    qs = {x: exact(x) for x in v.tolist()}
    f = OPS[op][1]
    for a, b, g in zip(A.tolist(), B.tolist(), got.tolist()):
        q = f(qs[a], qs[b])
        if q == 0:
            assert same(g, exact_op_rounded(fmt, op, a, b)), (a, op, b)
        else:
            assert same(g, fmt.round_rational(q)), (a, op, b)


@functools.lru_cache(maxsize=None)
def hard_pairs(fmt: FloatFormat):
    """Strategy: operand pairs whose exact sum / quotient lies at or very near a rounding
    boundary of fmt (a tie plus or minus a tiny amount, far below binary64's precision)."""
    M = fmt.fraction_bits

    def near_half_ulp(a, j, s, sign):
        # b ~ half an ulp of a, scaled down by 2**s (s up to 70: far below binary64's 53 bits)
        b = fmt.round_rational(exact(fmt.ulp(a)) / 2 * (1 + mpq(j, 2**M)) / mpq(2) ** s)
        return a, sign * b

    def near_midpoint_quotient(b, x):
        # a / b close to the midpoint between x and next_up(x)
        m = (exact(x) + exact(fmt.next_up(x))) / 2
        return fmt.round_rational(m * exact(b)), b

    xs = format_values(fmt).filter(lambda x: math.isfinite(x) and 0 < abs(x) < fmt.max_finite / 4)
    return st.one_of(
        st.builds(near_half_ulp, xs, st.integers(0, 3), st.integers(0, 70), st.sampled_from([1, -1])),
        st.builds(near_midpoint_quotient, xs, xs),
    ).filter(lambda ab: math.isfinite(ab[0]) and math.isfinite(ab[1]))


@pytest.mark.parametrize("fmt", [FLOAT16, BFLOAT16, FLOAT32, E10M24], ids=fmt_ids)
@pytest.mark.parametrize("op", list(OPS))
@examples(30)
@given(data=st.data())
def test_double_rounding_sampled(fmt, op, data):
    if data.draw(st.booleans(), label="hard"):
        a, b = data.draw(hard_pairs(fmt), label="a, b")
    else:
        a = data.draw(format_values(fmt), label="a")
        b = data.draw(format_values(fmt), label="b")
    if op == "/":
        assume(b != 0)
    got = float(machine_op(fmt, op, a, b))
    assert same(got, exact_op_rounded(fmt, op, a, b))
    if fmt.numpy_dtype is not None:
        t = fmt.numpy_dtype.type
        with np.errstate(all="ignore"):
            ref = float(OPS[op][0](t(a), t(b)))
        assert same(got, ref)


@pytest.mark.parametrize("fmt", [FLOAT16, FLOAT32], ids=fmt_ids)
@pytest.mark.parametrize("op", list(OPS))
def test_double_rounding_bulk_vs_numpy(fmt, op):
    """Many random pairs (bit patterns of the format) against numpy's own arithmetic."""
    rng = np.random.default_rng(12345)
    nbits = 16 if fmt == FLOAT16 else 32
    utype = np.uint16 if nbits == 16 else np.uint32
    a = rng.integers(0, 2**nbits, 200_000, dtype=np.uint64).astype(utype).view(fmt.numpy_dtype)
    b = rng.integers(0, 2**nbits, 200_000, dtype=np.uint64).astype(utype).view(fmt.numpy_dtype)
    # also pairs of close magnitudes (cancellation, quotients near 1)
    b[::2] = (a[::2].view(utype) ^ rng.integers(0, 16, 100_000, dtype=np.uint64).astype(utype)).view(fmt.numpy_dtype)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    with np.errstate(all="ignore"):
        ref = OPS[op][0](a, b).astype(np.float64)
        got = fmt.round_array(OPS[op][0](a.astype(np.float64), b.astype(np.float64)))
    assert same_arrays(got, ref)


# ---------------------------------------------------------------------------------------------
# parse_value
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token,value",
    [
        ("0x1.8p-3", 0.1875), ("-0X1P+0", -1.0), ("0x.8p1", 1.0), ("0x10", 16.0), ("0x1.", 1.0),
        ("+0x1p-2", 0.25), ("0xAbp0", 171.0), ("0x1.000000000000000000000p0", 1.0),
        ("0x0.00000000000000000000001p92", 1.0),
        ("0.375", 0.375), ("-1e-3", None), ("1E4", 10000.0), ("5", 5.0), ("+5", 5.0), (".5", 0.5),
        ("5.", 5.0), ("1.5e+2", 150.0), ("0.0625e-0", 0.0625), ("00012.5000", 12.5), ("25e-2", 0.25),
        ("3/8", 0.375), ("-3/8", -0.375), ("+3/8", 0.375), ("6/16", 0.375), ("0/7", 0.0),
        ("inf", math.inf), ("+inf", math.inf), ("-inf", -math.inf), ("Infinity", math.inf),
        ("-0", -0.0), ("-0.0", -0.0), ("+0", 0.0), ("0", 0.0), ("-0x0p0", -0.0), ("-0/3", -0.0),
        ("-0e10", -0.0), ("0x1p-24", 2.0**-24), ("65504", 65504.0),
        (0.375, 0.375), (-0.0, -0.0), (0.0, 0.0), (5, 5.0), (-3, -3.0), (0, 0.0), (math.inf, math.inf),
        (-math.inf, -math.inf), (65504, 65504.0),
    ],
)
def test_parse_value_syntax(token, value):
    if value is None:
        with pytest.raises(NotRepresentable):
            parse_value(token, FLOAT16)
        return
    v, rounded = parse_value(token, FLOAT16)
    assert type(v) is float and rounded is False
    assert same(v, value)


def test_parse_json_numbers():
    assert parse_value(json.loads("0.1"), FLOAT64) == (0.1, False)
    t = json.loads("0.1")
    with pytest.raises(NotRepresentable) as ei:
        parse_value(t, FLOAT32)
    e = ei.value
    # binary64 0.1 = 0x1.999999999999ap-4 lies between these two float32 numbers
    assert e.below == float.fromhex("0x1.999998p-4") and e.above == float.fromhex("0x1.99999ap-4")
    assert "0x1.999998p-4" in str(e) and "0x1.99999ap-4" in str(e)
    assert str(e).startswith("0.1 is not exactly representable in float32")
    assert e.value == exact(0.1) and e.fmt == FLOAT32
    # JSON round trip of float32 weights
    w = np.float32([0.1, -2.5e-40, 3.4e38, 1e-45])
    for x in json.loads(json.dumps(w.tolist())):
        assert parse_value(x, FLOAT32) == (x, False)
    # a Python infinity (json's plain reading of 1e400, or math.inf in a dict) is inf, a value of
    # every format; the network reader marks an overflowing JSON literal, which is rejected
    assert parse_value(json.loads("1e400"), FLOAT16) == (math.inf, False)
    with pytest.raises(InvalidValue, match="1e400 is beyond the binary64 range"):
        parse_value(json.loads("1e400", parse_float=json_float), FLOAT16)
    assert json.loads("[1.5, -1e-400]", parse_float=json_float) == [1.5, -0.0]
    assert parse_value(float(np.float16(0.1)), FLOAT16) == (float(np.float16(0.1)), False)


def test_parse_ints_mean_nearest_binary64():
    assert parse_value(2**53 + 1, FLOAT64) == (2.0**53, False)  # the JSON number means binary64
    with pytest.raises(NotRepresentable):
        parse_value(2**24 + 1, FLOAT32)  # binary64 value 16777217 is not a float32
    assert parse_value(2**24 + 1, FLOAT32, "nearest") == (2.0**24, True)
    assert parse_value(2**24 + 1, FLOAT64) == (16777217.0, False)
    big = 2**1024 - 2**970  # the binary64 overflow tie -> inf: no finite nearest binary64, rejected
    for n in (big, -big, 10**400):
        with pytest.raises(InvalidValue, match="JSON integer .* beyond the binary64 range"):
            parse_value(n, FLOAT64)
    assert parse_value(big - 1, FLOAT64) == (1.7976931348623157e308, False)
    with pytest.raises(OverflowError):
        float(big)
    assert float(big - 1) == 1.7976931348623157e308
    with pytest.raises(InvalidValue, match="about 5000 digits"):  # too long for str(): no crash
        parse_value(10**5000, FLOAT32)
    with pytest.raises(NotRepresentable):
        parse_value(10**39, FLOAT32)
    assert parse_value(10**39, FLOAT32, "nearest") == (math.inf, True)
    for n in (3, 2**60 + 1, 2**60 + 2**7, 10**30 + 12345, -(2**80) - 2**27 - 1):
        assert parse_value(n, FLOAT64)[0] == float(n)  # Python's correctly rounded int->float


@pytest.mark.parametrize(
    "token,fmt,below,above",
    [
        ("0.1", FLOAT64, "0x1.9999999999999p-4", "0x1.999999999999ap-4"),
        ("1/3", FLOAT32, "0x1.555554p-2", "0x1.555556p-2"),
        ("-1/3", FLOAT32, "-0x1.555556p-2", "-0x1.555554p-2"),
        ("0x1.00000000000001p0", FLOAT64, "0x1p+0", "0x1.0000000000001p+0"),
        ("0x1.000000000000008p0", FLOAT64, "0x1p+0", "0x1.0000000000001p+0"),
        ("0x1p-1075", FLOAT64, "0x0p+0", "0x1p-1074"),
        ("-0x1p-1075", FLOAT64, "-0x1p-1074", "-0x0p+0"),
        ("65520", FLOAT16, "0x1.ffcp+15", "inf"),
        ("-1e400", FLOAT64, "-inf", "-0x1.fffffffffffffp+1023"),
        ("0.5", E2M1, "0x1p-1", "0x1p-1"),
        ("0.25", E2M1, "0x0p+0", "0x1p-1"),
        ("2.5", E2M1, "0x1p+1", "0x1.8p+1"),
    ],
)
def test_parse_not_representable(token, fmt, below, above):
    if below == above:
        assert parse_value(token, fmt) == (float.fromhex(below), False)
        return
    with pytest.raises(NotRepresentable) as ei:
        parse_value(token, fmt)
    e = ei.value
    assert isinstance(e, InvalidValue) and isinstance(e, ValueError)
    assert same(e.below, float.fromhex(below)) and same(e.above, float.fromhex(above))
    assert str(e) == (f"{token} is not exactly representable in {fmt.name} "
                      f"(nearest: {below} below, {above} above)")
    assert e.fmt == fmt and e.text == token
    # rounding="nearest" gives the correctly rounded value, flagged
    v, rounded = parse_value(token, fmt, rounding="nearest")
    assert rounded is True and same(v, mpfr_round(fmt, e.value))
    assert v in (e.below, e.above)
    e2 = pickle.loads(pickle.dumps(e))
    assert str(e2) == str(e) and e2.value == e.value


def test_parse_exact_values():
    with pytest.raises(NotRepresentable) as ei:
        parse_value("0.1", FLOAT64)
    assert ei.value.value == mpq(1, 10)
    with pytest.raises(NotRepresentable) as ei:
        parse_value("0x1.00000000000001p0", FLOAT64)
    assert ei.value.value == 1 + mpq(1, 2**56)
    assert parse_value("0x1.00000000000001p0", FLOAT64, "nearest") == (1.0, True)
    z13 = "0" * 13  # 1 + 2**-53 is 0x1.<13 zeros>8p0, halfway between 1 and 1 + 2**-52
    assert parse_value(f"0x1.{z13}8p0", FLOAT64, "nearest") == (1.0, True)  # tie -> even
    assert parse_value(f"0x1.{z13}8{'0' * 40}1p0", FLOAT64, "nearest") == (1 + 2.0**-52, True)
    assert parse_value(f"0x1.{z13}7{'f' * 40}p0", FLOAT64, "nearest") == (1.0, True)
    # 1 + 3 * 2**-53 is halfway between 1 + 2**-52 (odd) and 1 + 2**-51 (even)
    assert parse_value(f"0x1.{z13[:-1]}18p0", FLOAT64, "nearest") == (1 + 2.0**-51, True)
    assert parse_value(f"0x1.{z13[:-1]}1p0", FLOAT64) == (1 + 2.0**-52, False)
    assert parse_value(f"0x1.{z13[:-1]}1{'0' * 100}p0", FLOAT64) == (1 + 2.0**-52, False)
    # float.fromhex agrees on these (it rounds correctly too, but we parse exactly)
    assert float.fromhex(f"0x1.{z13}8{'0' * 40}1p0") == 1 + 2.0**-52
    # a decimal with more digits than binary64 can hold, exactly a float16 value
    assert parse_value("0.000000059604644775390625", FLOAT16) == (2.0**-24, False)
    assert parse_value("5.9604644775390625e-8", FLOAT16) == (2.0**-24, False)
    assert parse_value("1" + "0" * 5000, FLOAT64, "nearest") == (math.inf, True)
    assert parse_value("0." + "0" * 5000 + "1", FLOAT64, "nearest") == (0.0, True)
    assert parse_value("-0." + "0" * 5000 + "1", FLOAT64, "nearest") == (-0.0, True)
    assert same(parse_value("-1e-400", FLOAT64, "nearest")[0], -0.0)
    assert parse_value("1e-400", FLOAT64, "nearest") == (0.0, True)
    assert parse_value("0.1", FLOAT32, "nearest") == (float(np.float32(0.1)), True)
    assert parse_value(0.1, FLOAT32, "nearest") == (float.fromhex("0x1.99999ap-4"), True)
    assert parse_value("0.375", FLOAT32, "nearest") == (0.375, False)
    assert parse_value("1e5", E4M3, "nearest") == (math.inf, True)
    assert parse_value("239.99", E4M3, "nearest") == (240.0, True)
    assert parse_value("247.99", E4M3, "nearest") == (240.0, True)
    assert parse_value("248", E4M3, "nearest") == (math.inf, True)  # max + half ulp -> inf


@pytest.mark.parametrize("token", [math.nan, -math.nan, "nan", "NaN", "-nan", "+NAN", "snan"])
def test_parse_nan(token):
    with pytest.raises(InvalidValue) as ei:
        parse_value(token, FLOAT32)
    assert str(ei.value) == "NaN is not allowed"
    with pytest.raises(InvalidValue):
        parse_value(token, FLOAT32, rounding="nearest")


@pytest.mark.parametrize(
    "token",
    [
        True, False, None, [1.0], {"value": 1}, b"1", np.float32(0.5), Fraction(1, 2), mpq(1, 2),
        "", " ", " 1", "1 ", "\t1", "1\n", "\n1", "--1", "+-1", "1e", "e5", "1e+", ".", "+", "-",
        "1.2.3", "1_000", "1,5", "0x", "0x.", "0xp1", "0x1p", "0x1p+", "0x1.8p-3.5", "0x1g", "0b101",
        "0o7", "1/0", "-1/0", "1/-2", "1/2/3", "1.5/2", "1/2e3", "/2", "1/", "0x1/2", "١", "٣/٨",
        "inf ", "-inff", "in", "1 / 2", "1e1.5", "½", "Ox1p0", "0x1P", "1d5", "1f", "infinity1",
    ],
)
def test_parse_invalid(token):
    with pytest.raises(InvalidValue) as ei:
        parse_value(token, FLOAT32)
    assert type(ei.value) is InvalidValue  # not a representability problem


def test_parse_exponent_limit():
    with pytest.raises(InvalidValue) as ei:
        parse_value("1e1000000000", FLOAT64, "nearest")
    assert type(ei.value) is InvalidValue and "exponent" in str(ei.value)
    with pytest.raises(InvalidValue):
        parse_value("0x1p-99999999999999999999", FLOAT64)
    assert parse_value("1e-100000", FLOAT64, "nearest") == (0.0, True)
    assert parse_value("0x1p100000", FLOAT64, "nearest") == (math.inf, True)
    assert parse_value("1e0000000000000000000001", FLOAT64) == (10.0, False)  # leading zeros ok


def test_parse_value_misc():
    with pytest.raises(ValueError):
        parse_value("1", FLOAT32, rounding="up")
    assert parse_value("1", "float32") == (1.0, False)  # a spec is accepted for fmt
    assert parse_value("1", {"exponent_bits": 4, "fraction_bits": 3}) == (1.0, False)
    with pytest.raises(NotRepresentable) as ei:
        parse_value("1" * 200 + "/3", FLOAT32)
    assert len(str(ei.value)) < 250  # long inputs are abbreviated in the message
    e = NotRepresentable(mpq(1, 10), 0.0625, 0.125, E2M1)
    assert str(e).startswith("0.1 is not exactly representable in float(e2,m1)")
    e = NotRepresentable(mpq(1, 3), 0.0, 0.5, E2M1)
    assert str(e).startswith("1/3 is not")


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=fmt_ids)
@SETTINGS
@given(data=st.data())
def test_parse_hex_of_every_value_round_trips(fmt, data):
    x = data.draw(format_values(fmt))
    assert parse_value(to_hex(x), fmt) == (x, False) and same(parse_value(to_hex(x), fmt)[0], x)
    assert same(parse_value(x, fmt)[0], x)


@pytest.mark.parametrize("fmt", NARROW_FORMATS, ids=fmt_ids)
@SETTINGS
@given(data=st.data())
def test_parse_ratio_agrees_with_mpfr(fmt, data):
    q = data.draw(near_boundaries(fmt))
    token = f"{q.numerator}/{q.denominator}"
    ref = mpfr_round(fmt, q)
    if fmt.is_representable(q):
        v, rounded = parse_value(token, fmt)
        assert not rounded and exact(v) == q
    else:
        with pytest.raises(NotRepresentable):
            parse_value(token, fmt)
        v, rounded = parse_value(token, fmt, "nearest")
        assert rounded and same(v, ref)


# ---------------------------------------------------------------------------------------------
# is_representable, neighbours, ulp, next_up / next_down, all_finite_values
# ---------------------------------------------------------------------------------------------


def test_is_representable():
    assert FLOAT32.is_representable(0.375)
    assert FLOAT32.is_representable(mpq(3, 8))
    assert FLOAT32.is_representable(Fraction(3, 8))
    assert FLOAT32.is_representable(16777216)
    assert not FLOAT32.is_representable(16777217)
    assert not FLOAT32.is_representable(0.1)
    assert FLOAT64.is_representable(0.1)
    assert not FLOAT64.is_representable(mpq(1, 10))
    for f in ALL_FORMATS:
        assert f.is_representable(math.inf) and f.is_representable(-math.inf)
        assert f.is_representable(-0.0) and f.is_representable(0)
        assert not f.is_representable(math.nan)
        assert f.is_representable(f.max_finite) and f.is_representable(-f.min_subnormal)
        assert f.is_representable(f.min_normal)
        assert not f.is_representable(exact(f.min_subnormal) / 2)
        assert not f.is_representable(exact(f.max_finite) + exact(f.ulp(f.max_finite)))
        assert not f.is_representable(2 ** (f.emax + 1))
        assert not f.is_representable(mpq(1, 3))
    assert not E4M3.is_representable(1.0625)
    assert E4M3.is_representable(1.125)
    assert E4M3.is_representable(2.0**-9) and not E4M3.is_representable(2.0**-10)
    assert E4M3.is_representable(3 * 2.0**-9)
    assert not E4M3.is_representable(256.0) and not E4M3.is_representable(248.0)
    assert FLOAT16.is_representable(65504) and not FLOAT16.is_representable(65505)


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=fmt_ids)
@SETTINGS
@given(data=st.data())
def test_neighbours_bracket(fmt, data):
    q = data.draw(near_boundaries(fmt))
    lo, hi = fmt.neighbours(q)
    assert not math.isnan(lo) and not math.isnan(hi)
    assert fmt.is_representable(lo) and fmt.is_representable(hi)
    if fmt.is_representable(q):
        assert exact(lo) == q == exact(hi)
        return
    assert lo < hi
    assert lo == -math.inf or exact(lo) < q
    assert hi == math.inf or q < exact(hi)
    # nothing representable strictly between: they are consecutive
    if math.isfinite(lo):
        assert fmt.next_up(lo) == hi
    if math.isfinite(hi):
        assert fmt.next_down(hi) == lo


def test_neighbours_examples():
    assert FLOAT32.neighbours(mpq(1, 10)) == (float.fromhex("0x1.999998p-4"), float.fromhex("0x1.99999ap-4"))
    assert FLOAT32.neighbours(exact(0.1)) == (float.fromhex("0x1.999998p-4"), float.fromhex("0x1.99999ap-4"))
    assert E4M3.neighbours(250) == (240.0, math.inf)
    assert E4M3.neighbours(-250) == (-math.inf, -240.0)
    assert E4M3.neighbours(240) == (240.0, 240.0)
    lo, hi = E4M3.neighbours(mpq(-1, 2**11))
    assert lo == -(2.0**-9) and same(hi, -0.0)
    lo, hi = E4M3.neighbours(mpq(1, 2**11))
    assert same(lo, 0.0) and hi == 2.0**-9
    assert E4M3.neighbours(Fraction(17, 16)) == (1.0, 1.125)
    assert E4M3.neighbours(math.inf) == (math.inf, math.inf)
    assert FLOAT64.neighbours(mpq(1, 2**1075)) == (0.0, 5e-324)
    with pytest.raises(ValueError):
        E4M3.neighbours(math.nan)


@pytest.mark.parametrize(
    "fmt,v,u",
    [
        (FLOAT32, 1.0, 2.0**-23), (FLOAT32, -1.0, 2.0**-23), (FLOAT32, 1.5, 2.0**-23), (FLOAT32, 2.0, 2.0**-22),
        (FLOAT32, 0.0, 2.0**-149), (FLOAT32, -0.0, 2.0**-149), (FLOAT32, 2.0**-149, 2.0**-149),
        (FLOAT32, 2.0**-126, 2.0**-149), (FLOAT32, 2.0**-127, 2.0**-149),
        (FLOAT32, float(np.finfo(np.float32).max), 2.0**104),
        (FLOAT16, 65504.0, 32.0), (FLOAT16, 1.0, 2.0**-10), (FLOAT16, 2.0**-14, 2.0**-24),
        (E4M3, 240.0, 16.0), (E4M3, 1.0, 0.125), (E4M3, 0.0, 2.0**-9), (E4M3, 2.0**-7, 2.0**-9),
        (E2M1, 3.0, 1.0), (E2M1, 0.5, 0.5), (E2M1, 1.0, 0.5),
        (FLOAT64, 1.0, 2.0**-52), (FLOAT64, 5e-324, 5e-324), (FLOAT64, 0.0, 5e-324),
        (FLOAT64, 1.7976931348623157e308, 2.0**971), (E4M3, math.inf, math.inf),
        (E4M3, 1000.0, math.inf),
    ],
)
def test_ulp(fmt, v, u):
    assert fmt.ulp(v) == u


@pytest.mark.parametrize("fmt", [FLOAT16, FLOAT32, FLOAT64], ids=fmt_ids)
@SETTINGS
@given(data=st.data())
def test_ulp_matches_numpy_spacing(fmt, data):
    x = data.draw(format_values(fmt))
    t = fmt.numpy_dtype.type
    if abs(x) == fmt.max_finite:
        return  # numpy: distance to inf
    assert fmt.ulp(x) == float(np.spacing(abs(t(x))))


@pytest.mark.parametrize("fmt", [FLOAT16, FLOAT32, FLOAT64], ids=fmt_ids)
@SETTINGS
@given(data=st.data())
def test_next_up_down_match_numpy(fmt, data):
    x = data.draw(format_values(fmt))
    t = fmt.numpy_dtype.type
    with np.errstate(over="ignore"):
        up = float(np.nextafter(t(x), t(np.inf)))
        down = float(np.nextafter(t(x), t(-np.inf)))
    if x == 0:
        assert fmt.next_up(x) == fmt.min_subnormal and fmt.next_down(x) == -fmt.min_subnormal
        return
    assert same(fmt.next_up(x), up if up != 0 else math.copysign(0.0, x))
    assert same(fmt.next_down(x), down if down != 0 else math.copysign(0.0, x))
    assert fmt.ulp(x) == (abs(up - x) if x > 0 else abs(down - x)) or abs(x) == fmt.max_finite


def test_next_up_down_edges():
    f = E4M3
    assert f.next_up(240.0) == math.inf
    assert f.next_up(math.inf) == math.inf
    assert f.next_up(-math.inf) == -240.0
    assert f.next_down(-240.0) == -math.inf
    assert f.next_down(math.inf) == 240.0
    assert f.next_up(0.0) == 2.0**-9 and f.next_up(-0.0) == 2.0**-9
    assert f.next_down(0.0) == -(2.0**-9) and f.next_down(-0.0) == -(2.0**-9)
    assert same(f.next_up(-(2.0**-9)), -0.0)
    assert same(f.next_down(2.0**-9), 0.0)
    assert f.next_up(1.0) == 1.125 and f.next_down(1.0) == 0.9375
    assert f.next_up(1.01) == 1.125 and f.next_down(1.01) == 1.0  # non-representable input
    assert f.next_up(239.0) == 240.0 and f.next_up(241.0) == math.inf and f.next_down(241.0) == 240.0
    assert f.next_down(1e300) == 240.0
    assert math.isnan(f.next_up(math.nan)) and math.isnan(f.next_down(math.nan))
    assert FLOAT64.next_up(1.7976931348623157e308) == math.inf
    assert FLOAT64.next_up(0.0) == 5e-324
    assert FLOAT64.next_up(1.0) == 1 + 2.0**-52


def count_finite(fmt):
    return 2 * (2**fmt.exponent_bits - 1) * 2**fmt.fraction_bits


@pytest.mark.parametrize("fmt", [E2M1, E4M3, E5M2, E3M5, FLOAT16, BFLOAT16], ids=fmt_ids)
def test_all_finite_values(fmt):
    v = fmt.all_finite_values()
    assert v.dtype == np.float64
    assert len(v) == count_finite(fmt)
    assert np.all(np.isfinite(v))
    assert np.all(np.diff(v) >= 0) and np.sum(np.diff(v) == 0) == 1  # only -0.0, +0.0 compare equal
    z = np.flatnonzero(v == 0)
    assert len(z) == 2 and np.signbit(v[z[0]]) and not np.signbit(v[z[1]])
    assert v[0] == -fmt.max_finite and v[-1] == fmt.max_finite
    assert v[z[1] + 1] == fmt.min_subnormal
    assert same_arrays(fmt.round_array(v), v)
    assert same_arrays(v, -v[::-1])
    pos = v[z[1]:]
    # consecutive values are next_up of each other (a sample, all for tiny formats)
    idx = range(len(pos) - 1) if len(pos) < 300 else np.random.default_rng(0).integers(0, len(pos) - 1, 300)
    for i in idx:
        assert fmt.next_up(float(pos[i])) == pos[i + 1]
    assert len(np.unique(v.view(np.uint64))) == len(v)


def test_all_finite_values_counts():
    assert len(E4M3.all_finite_values()) == 240
    assert len(E5M2.all_finite_values()) == 248
    assert len(E2M1.all_finite_values()) == 12
    assert E2M1.all_finite_values().tolist() == [-3.0, -2.0, -1.5, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0]
    assert E4M3.all_finite_values()[-8:].tolist() == [128.0, 144.0, 160.0, 176.0, 192.0, 208.0, 224.0, 240.0]
    # float16: exactly numpy's finite float16 values
    h = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    h = h[np.isfinite(h)].astype(np.float64)
    v = FLOAT16.all_finite_values()
    assert np.array_equal(np.sort(h.view(np.uint64)), np.sort(v.view(np.uint64)))
    for f in (FLOAT32, FLOAT64, E10M24, FloatFormat(10, 10), FloatFormat(2, 18), FloatFormat(8, 12)):
        with pytest.raises(FormatError):
            f.all_finite_values()
    assert len(FloatFormat(2, 17).all_finite_values()) == 2 * 3 * 2**17
    assert len(E7M12.all_finite_values()) == 2 * 127 * 2**12  # 1040384 <= 2**20 values: allowed


@pytest.mark.parametrize("spec", ["float16", "bfloat16", "float32", {"exponent_bits": 4, "fraction_bits": 3}])
def test_grid_ordinal_counts_every_value(spec):
    """ordinal numbers the grid consecutively (next_up adds exactly 1) and from_ordinal inverts it."""
    import random

    fmt = FloatFormat.from_spec(spec)
    rng = random.Random(0)
    vals = [0.0, fmt.min_subnormal, -fmt.min_subnormal, fmt.min_normal, fmt.max_finite, -fmt.max_finite, 1.0, -1.5]
    vals += [fmt.round_rational(mpq(rng.randint(-10**6, 10**6), rng.randint(1, 10**6))) for _ in range(50)]
    for v in (v for v in vals if math.isfinite(v)):
        k = fmt.ordinal(v)
        assert fmt.from_ordinal(k) == v
        assert fmt.ordinal(fmt.next_up(v)) == k + 1
    assert fmt.ordinal(math.inf) == fmt.ordinal(fmt.max_finite) + 1
