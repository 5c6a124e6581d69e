"""Machine-number formats: which numbers are machine numbers and how the machine rounds.

Why one module: a format, its machine numbers, their rounding and the value syntax that names them
exactly in a file are one concept; every other module asks this one whether a rational is a
machine number.

Every decision in this module is made in exact rational arithmetic (``gmpy2.mpq``); Python
floats / float64 arrays appear only where the result is provably exact.

Formats
-------
A :class:`FloatFormat` is an IEEE-754-style *binary* format with ``E`` exponent bits and ``M``
fraction bits: precision ``p = M + 1``, ``emax = 2**(E-1) - 1``, ``emin = 1 - emax``, gradual
underflow (subnormals with fixed spacing ``2**(emin - M)``), signed zeros and infinities, and
round-to-nearest-even with IEEE overflow (``|q| >= (2 - 2**-p) * 2**emax`` rounds to infinity).
The named formats are ``float16`` (5, 10), ``bfloat16`` (8, 7), ``float32`` (8, 23) and
``float64`` (11, 52); any other ``{"exponent_bits": E, "fraction_bits": M}`` is supported when

    2 <= E <= 11, 1 <= M <= 52, and either (E, M) == (11, 52) or (E <= 10 and M <= 24).

Why that restriction
--------------------
The machine evaluator computes each ``+ - * /`` of two format numbers in binary64 and rounds the
binary64 result once more into the format.  That double rounding gives the correctly rounded
result when

* binary64 has enough precision: ``53 >= 2 * (M + 1) + 2`` (Figueroa, "When is double rounding
  innocuous?", 1995), i.e. ``M <= 24``; and
* binary64 neither overflows nor underflows harmfully: with ``E <= 10`` every format number has
  magnitude in ``[2**-534, 2**512)``, so an exact result that is finite in the format is in the
  binary64 *normal* range (where it is rounded to 53 bits), a binary64 result that underflows is
  far below half the format's smallest subnormal (both roundings give a zero of the right sign),
  and one that overflows is far above the format's overflow threshold (both give infinity).

Every value of every supported format is exactly a binary64 number, so machine numbers are
carried as Python floats / float64 arrays everywhere.  ``float64`` itself is the identity case.

Values in files (see the network-format spec, "Tensors and values") are read by
:func:`parse_value`: a JSON number means the binary64 number nearest to it, a string means its
exact value (hex floats are parsed exactly, never through ``float.fromhex``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from typing import Any

import gmpy2
import numpy as np
from gmpy2 import mpq, mpz

from .errors import one_line

__all__ = [
    "FormatError",
    "InvalidValue",
    "NotRepresentable",
    "FloatFormat",
    "FLOAT16",
    "BFLOAT16",
    "FLOAT32",
    "FLOAT64",
    "parse_value",
    "json_float",
    "OverflowLiteral",
    "exact",
    "to_hex",
]

_SUPPORT_RULE = (
    "supported formats have 2 <= E <= 11 exponent bits and 1 <= M <= 52 fraction bits with either "
    "(E, M) == (11, 52) (float64) or E <= 10 and M <= 24: the machine evaluator computes each "
    "+, -, *, / in binary64 and rounds the result once more into the format, which is exact only "
    "when 53 >= 2*(M+1)+2 (Figueroa) and binary64 neither overflows nor underflows harmfully"
)

_DTYPE_HELP = 'expected float16, bfloat16, float32, float64 or {"exponent_bits": E, "fraction_bits": M}'

# |exponent field| accepted in decimal / hexadecimal value strings.  Far beyond any supported
# format's range (binary64 spans about 1e-324 .. 1e308), but bounded so that the exact value can
# be built without exhausting memory.
EXPONENT_LIMIT = 1_000_000


class FormatError(ValueError):
    """Bad dtype specification or unsupported format."""


class InvalidValue(ValueError):
    """A value that is not a number of any format (unparsable, NaN, bool, ...).

    The message carries no location; callers add file / tensor / index.
    """


class OverflowLiteral(float):
    """A JSON number literal beyond the binary64 range (``1e400``): Python's reader makes it an
    infinity, but a JSON number means its nearest binary64 value and this one has no finite one.
    It stays a float (an infinity) for code that only looks at types; :func:`parse_value` rejects it.
    """

    text: str

    def __new__(cls, text: str):
        obj = super().__new__(cls, float(text))
        obj.text = text
        return obj


def json_float(text: str) -> float:
    """``parse_float`` hook for ``json.loads``: a float, or an :class:`OverflowLiteral`."""
    v = float(text)
    return OverflowLiteral(text) if math.isinf(v) else v


_OVERFLOW_HELP = (
    "is beyond the binary64 range (a JSON number means its nearest binary64 value, and there is no "
    'finite one); write the string "inf" or "-inf" for an infinity, or the exact value as a string'
)


def _short(text: str, limit: int = 60) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 15] + "..." + text[-12:]


def _format_rational(q: mpq) -> str:
    """A readable exact rendering of ``q``: integer, terminating decimal, or ``n/d``."""
    q = mpq(q)
    n, d = q.numerator, q.denominator
    if d == 1:
        return _short(n.digits(10))
    # terminating decimal iff d = 2^a 5^b
    a = 0
    dd = d
    while dd % 2 == 0:
        dd //= 2
        a += 1
    b = 0
    while dd % 5 == 0:
        dd //= 5
        b += 1
    if dd == 1:
        k = max(a, b)
        digits = abs(n * (mpz(10) ** k) // d).digits(10).rjust(k + 1, "0")
        text = ("-" if n < 0 else "") + digits[:-k] + "." + digits[-k:]
        if len(text) <= 60:
            return text
    ratio = f"{n.digits(10)}/{d.digits(10)}"
    if len(ratio) <= 60:
        return ratio
    approx = gmpy2.mpfr(q, 80)
    return "approx. " + format(approx, ".17g")


class NotRepresentable(InvalidValue):
    """A value that is not exactly a number of the format.

    Attributes: ``value`` (mpq, the exact value), ``below`` / ``above`` (floats, the nearest
    representable numbers on either side, ``-inf`` / ``inf`` past the finite range), ``fmt``
    (FloatFormat) and ``text`` (the value as the user wrote it, or None).
    """

    def __init__(self, value, below: float, above: float, fmt: "FloatFormat | None" = None,
                 text: str | None = None):
        self.value = mpq(value)
        self.below = float(below)
        self.above = float(above)
        self.fmt = fmt
        self.text = text
        shown = _short(text) if text is not None else _format_rational(self.value)
        where = fmt.name if fmt is not None else "the format"
        super().__init__(
            f"{shown} is not exactly representable in {where} "
            f"(nearest: {to_hex(self.below)} below, {to_hex(self.above)} above)"
        )

    def __reduce__(self):
        return (type(self), (self.value, self.below, self.above, self.fmt, self.text))


# ---------------------------------------------------------------------------------------------
# exact values of floats, hex rendering
# ---------------------------------------------------------------------------------------------


def exact(v) -> mpq:
    """Exact rational value of a finite float (``-0.0`` gives 0). ValueError on inf/nan."""
    if isinstance(v, bool):
        raise TypeError("exact() takes a float, not a bool")
    if isinstance(v, np.floating):
        if v.dtype.itemsize > 8:
            raise TypeError("exact() does not take extended-precision floats")
        v = float(v)
    if isinstance(v, int):
        return mpq(v)
    if not isinstance(v, float):
        raise TypeError(f"exact() takes a float, not {type(v).__name__}")
    if not math.isfinite(v):
        raise ValueError(f"exact() needs a finite float, got {v!r}")
    return mpq(v)  # gmpy2 converts binary64 exactly


def to_hex(v: float) -> str:
    """Canonical shortest hex form: ``0x1.8p-3``, ``0x1p+0``, ``-0x0p+0``, ``inf``, ``nan``.

    Every nonzero value is written ``[-]0x1[.hhh]p[+-]E`` (binary64 subnormals normalised too);
    ``float.fromhex(to_hex(v)) == v`` exactly, sign of zero included.
    """
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    sign = "-" if math.copysign(1.0, v) < 0 else ""
    if v == 0.0:
        return sign + "0x0p+0"
    m, e = math.frexp(abs(v))  # |v| = m * 2**e, 0.5 <= m < 1, exact also for subnormals
    sig = int(math.ldexp(m, 53))  # 53-bit integer, 2**52 <= sig < 2**53 (exact)
    frac = format(sig - (1 << 52), "013x").rstrip("0")
    exp = e - 1
    return f"{sign}0x1{'.' + frac if frac else ''}p{'+' if exp >= 0 else '-'}{abs(exp)}"


def _to_mpq(x) -> mpq:
    """mpq of an exact number (mpq, mpz, int, Fraction, finite float)."""
    if isinstance(x, bool):
        raise TypeError("expected a number, not a bool")
    if type(x) is type(mpq(0)):
        return x
    if isinstance(x, (int, type(mpz(0)), np.integer)):
        return mpq(int(x))
    if isinstance(x, Fraction):
        return mpq(x.numerator, x.denominator)
    if isinstance(x, (float, np.floating)):
        return exact(x)
    raise TypeError(f"expected an exact number (mpq, int, Fraction or float), not {type(x).__name__}")


def _floor_log2(n, d) -> int:
    """floor(log2(n/d)) for positive integers n, d."""
    e = n.bit_length() - d.bit_length()
    # n/d in [2**(e-1), 2**(e+1))
    if e >= 0:
        if n < (d << e):
            e -= 1
    else:
        if (n << -e) < d:
            e -= 1
    return e


# ---------------------------------------------------------------------------------------------
# the format
# ---------------------------------------------------------------------------------------------

_NAMED = {"float16": (5, 10), "bfloat16": (8, 7), "float32": (8, 23), "float64": (11, 52)}
_NAME_OF = {v: k for k, v in _NAMED.items()}
_NUMPY = {(5, 10): np.dtype("float16"), (8, 23): np.dtype("float32"), (11, 52): np.dtype("float64")}


def _check_supported(E, M) -> None:
    for what, x in (("exponent_bits", E), ("fraction_bits", M)):
        if isinstance(x, bool) or not isinstance(x, int):
            raise FormatError(f"{what} must be an integer, got {x!r}")
    if (E, M) == (11, 52):
        return
    if not (2 <= E <= 11 and 1 <= M <= 52) or not (E <= 10 and M <= 24):
        raise FormatError(f"unsupported format (exponent_bits={E}, fraction_bits={M}); {_SUPPORT_RULE}")


@dataclass(frozen=True)
class FloatFormat:
    """An IEEE-754-style binary format (see the module docstring).

    Equality and hashing use ``(exponent_bits, fraction_bits)`` only; ``name`` is a label
    (defaults to the canonical name: ``float16`` ... or ``float(eE,mM)``).
    """

    exponent_bits: int
    fraction_bits: int
    name: str = field(default="", compare=False)

    def __post_init__(self):
        _check_supported(self.exponent_bits, self.fraction_bits)
        if not self.name:
            key = (self.exponent_bits, self.fraction_bits)
            object.__setattr__(
                self, "name", _NAME_OF.get(key, f"float(e{self.exponent_bits},m{self.fraction_bits})")
            )

    # -- parameters --------------------------------------------------------------------------

    @property
    def precision(self) -> int:
        return self.fraction_bits + 1

    @property
    def emax(self) -> int:
        return 2 ** (self.exponent_bits - 1) - 1

    @property
    def emin(self) -> int:
        return 1 - self.emax

    @property
    def max_finite(self) -> float:
        return math.ldexp(2.0 - math.ldexp(1.0, -self.fraction_bits), self.emax)

    @property
    def min_normal(self) -> float:
        return math.ldexp(1.0, self.emin)

    @property
    def min_subnormal(self) -> float:
        return math.ldexp(1.0, self.emin - self.fraction_bits)

    @property
    def numpy_dtype(self):
        return _NUMPY.get((self.exponent_bits, self.fraction_bits))

    @cached_property
    def _max_q(self) -> mpq:
        return exact(self.max_finite)

    @cached_property
    def _overflow_q(self) -> mpq:
        # max_finite + half an ulp = (2 - 2**-p) * 2**emax; ties go to infinity
        return (2 - mpq(1, 2**self.precision)) * mpq(2) ** self.emax

    # -- construction -----------------------------------------------------------------------

    @staticmethod
    def from_spec(spec) -> "FloatFormat":
        """Format from a dtype spec: a name or ``{"exponent_bits": E, "fraction_bits": M}``."""
        if isinstance(spec, FloatFormat):
            return spec
        if isinstance(spec, str):
            if spec in _NAMED:
                return FloatFormat(*_NAMED[spec], spec)
            raise FormatError(f"unknown dtype {_quote(spec)}; {_DTYPE_HELP}")
        if isinstance(spec, dict):
            keys = set(spec)
            if keys != {"exponent_bits", "fraction_bits"}:
                extra = sorted(map(repr, keys - {"exponent_bits", "fraction_bits"}))
                missing = sorted(map(repr, {"exponent_bits", "fraction_bits"} - keys))
                detail = "; ".join(
                    p for p in (
                        f"unexpected key(s) {', '.join(extra)}" if extra else "",
                        f"missing key(s) {', '.join(missing)}" if missing else "",
                    ) if p
                )
                raise FormatError(f"bad dtype object {spec!r} ({detail}); {_DTYPE_HELP}")
            E, M = spec["exponent_bits"], spec["fraction_bits"]
            _check_supported(E, M)
            return FloatFormat(E, M)
        raise FormatError(f"bad dtype {spec!r} of type {type(spec).__name__}; {_DTYPE_HELP}")

    # -- exact rounding ---------------------------------------------------------------------

    def _split(self, a: mpq):
        """For 0 < a <= max-ish: (m, k, rem2cmp) with m = floor(a / 2**k) at the format's
        quantum 2**k for a's binade, and rem2cmp = sign(2*(a - m*2**k) - 2**k) or None if exact."""
        n, d = a.numerator, a.denominator
        e = max(_floor_log2(n, d), self.emin)
        k = e - self.fraction_bits
        if k >= 0:
            d = d << k
        else:
            n = n << -k
        m, r = divmod(n, d)
        if r == 0:
            return int(m), k, None
        c = 2 * r - d
        return int(m), k, (c > 0) - (c < 0)

    def round_rational(self, q, negative_zero: bool = False) -> float:
        """Round the exact value ``q`` to nearest-even in the format (IEEE overflow to inf).

        ``q`` is an mpq, int, Fraction or float (a float inf passes through).  A result that
        rounds to zero is ``-0.0`` when ``q < 0`` (or ``q == 0`` and ``negative_zero``).
        """
        if isinstance(q, (float, np.floating)) and not math.isfinite(q):
            if math.isnan(q):
                raise ValueError("cannot round NaN")
            return float(q)
        if isinstance(q, (float, np.floating)) and q == 0:
            negative_zero = negative_zero or math.copysign(1.0, q) < 0
        q = _to_mpq(q)
        if q == 0:
            return -0.0 if negative_zero else 0.0
        neg = q < 0
        a = -q if neg else q
        if a >= self._overflow_q:
            return -math.inf if neg else math.inf
        m, k, c = self._split(a)
        if c is not None and (c > 0 or (c == 0 and m & 1)):
            m += 1
        r = math.ldexp(float(m), k)  # m <= 2**p <= 2**53: exact; the value is a binary64 number
        return -r if neg else r

    def neighbours(self, q) -> tuple[float, float]:
        """(largest representable <= q, smallest representable >= q).

        Past ``max_finite`` the missing side is ``inf`` / ``-inf``.  Both are ``q`` itself when
        ``q`` is representable.  For ``-min_subnormal < q < 0`` the upper neighbour is ``-0.0``.
        """
        if isinstance(q, (float, np.floating)):
            if math.isnan(q):
                raise ValueError("NaN has no neighbours")
            if math.isinf(q) or q == 0:
                return float(q), float(q)
        q = _to_mpq(q)
        if q == 0:
            return 0.0, 0.0
        neg = q < 0
        a = -q if neg else q
        if a > self._max_q:
            lo, hi = self.max_finite, math.inf
        else:
            m, k, c = self._split(a)
            lo = math.ldexp(float(m), k)
            hi = lo if c is None else math.ldexp(float(m + 1), k)
        if neg:
            return -hi, -lo
        return lo, hi

    def is_representable(self, v) -> bool:
        """Whether ``v`` (mpq, int, Fraction or float; inf and -0.0 included) is a value of the format."""
        if isinstance(v, (float, np.floating)):
            if math.isnan(v):
                return False
            if math.isinf(v):
                return True
        q = _to_mpq(v)
        if q == 0:
            return True
        a = abs(q)
        if a > self._max_q:
            return False
        return self._split(a)[2] is None

    # -- vectorised rounding ----------------------------------------------------------------

    def round_array(self, x) -> np.ndarray:
        """Round a float64 array elementwise to nearest-even in the format, as float64.

        inf / -inf / nan pass through, signed zeros are kept, overflow goes to inf exactly as in
        :meth:`round_rational` (bit-exact equal to ``round_rational(exact(x))`` for finite x).
        """
        x = np.asarray(x)
        if x.dtype.kind != "f" or x.dtype.itemsize > 8:
            raise TypeError(f"round_array expects a float16/32/64 array, got dtype {x.dtype}")
        x = x.astype(np.float64, copy=True)  # float16/32 -> float64 is exact
        if (self.exponent_bits, self.fraction_bits) == (11, 52):
            return x
        M = self.fraction_bits
        with np.errstate(all="ignore"):
            a = np.abs(x)
            _, e = np.frexp(a)  # a = f * 2**e, 0.5 <= f < 1 (binary64 subnormals included)
            k = np.maximum(e - 1, self.emin) - M  # quantum exponent of a's binade in the format
            # Scaling by a power of two is exact unless it over/underflows in binary64, which it
            # cannot do here: a < 2**(k+M+1) always, so scaled < 2**(M+1) <= 2**25; and when
            # k > 0 (a scale-down) a >= 2**(k+M) so scaled >= 2**M, far from underflow.
            scaled = np.ldexp(a, -k)
            r = np.rint(scaled)  # round half to even, exact
            res = np.ldexp(r, k)  # exact (or inf only far above the format's range)
            res = np.where(res > self.max_finite, np.inf, res)
            res = np.copysign(res, x)
            res = np.where(np.isfinite(x), res, x)
        return np.asarray(res, dtype=np.float64)

    # -- spacing ----------------------------------------------------------------------------

    def to_hex(self, v: float) -> str:
        """Canonical shortest hex form of ``v`` (see module-level :func:`to_hex`)."""
        return to_hex(v)

    def ulp(self, v: float) -> float:
        """Spacing of the format at |v|: ``2**(max(floor(log2|v|), emin) - M)``.

        For a representable v this is the distance from |v| to the next larger-magnitude
        representable (taken with unbounded exponent at ``max_finite``, so
        ``ulp(max_finite) = 2**(emax - M)``).  ``ulp(0) = min_subnormal``; inf for |v| >= 2**(emax+1)
        (including inf); nan for nan.
        """
        v = float(v)
        if math.isnan(v):
            return math.nan
        a = abs(v)
        if a == 0:
            return self.min_subnormal
        if math.isinf(a):
            return math.inf
        _, e = math.frexp(a)  # 2**(e-1) <= a < 2**e
        if e - 1 > self.emax:
            return math.inf
        return math.ldexp(1.0, max(e - 1, self.emin) - self.fraction_bits)

    def next_up(self, v: float) -> float:
        """Smallest representable number strictly greater than ``v`` (IEEE nextUp).

        ``next_up(max_finite) = inf``, ``next_up(inf) = inf``, ``next_up(-inf) = -max_finite``,
        ``next_up(-min_subnormal) = -0.0``, ``next_up(±0.0) = min_subnormal``; nan gives nan.
        ``v`` need not be representable.
        """
        v = float(v)
        if math.isnan(v):
            return math.nan
        if v == math.inf:
            return math.inf
        if v == -math.inf:
            return -self.max_finite
        q = exact(v)
        lo, hi = self.neighbours(q)
        if _exact_or_none(hi) != q:
            return hi  # v not representable: the upper neighbour is > v
        # v representable: every representable number is a multiple of min_subnormal, so the
        # next one above v is the upper neighbour of v + min_subnormal / 2
        return self.neighbours(q + mpq(1, 2) * exact(self.min_subnormal))[1]

    def next_down(self, v: float) -> float:
        """Largest representable number strictly less than ``v`` (IEEE nextDown)."""
        return -self.next_up(-float(v))

    # -- enumeration ------------------------------------------------------------------------

    def ordinal(self, v: float) -> int:
        """Position of v on the format's grid: monotone, consecutive values differ by 1,
        -0 = +0 = 0, +-inf just past +-max_finite."""
        if v == 0:
            return 0
        sign = -1 if v < 0 else 1
        a = abs(v)
        M = self.fraction_bits
        if math.isinf(a):
            return sign * ((2**self.exponent_bits - 1) << M)
        E = math.frexp(a)[1] - 1
        if E < self.emin:
            return sign * int(Fraction(a) / Fraction(2) ** (self.emin - M))
        return sign * (((E - self.emin + 1) << M) + int(Fraction(a) / Fraction(2) ** (E - M)) - (1 << M))

    def from_ordinal(self, k: int) -> float:
        """The value at position k of the grid (inverse of ``ordinal``; 0 gives +0)."""
        if k == 0:
            return 0.0
        sign = -1.0 if k < 0 else 1.0
        k = abs(k)
        M = self.fraction_bits
        if k >= (2**self.exponent_bits - 1) << M:
            return sign * float("inf")
        e_field, mant = k >> M, k & ((1 << M) - 1)
        if e_field == 0:
            return sign * float(Fraction(mant) * Fraction(2) ** (self.emin - M))
        return sign * float((1 + Fraction(mant, 2**M)) * Fraction(2) ** (e_field - 1 + self.emin))

    def all_finite_values(self) -> np.ndarray:
        """Sorted float64 array of every finite value, ``-0.0`` (just before) ``+0.0`` included.

        There are ``2 * (2**E - 1) * 2**M`` of them; FormatError when that is more than ``2**20``.
        """
        E, M = self.exponent_bits, self.fraction_bits
        count = 2 * (2**E - 1) * 2**M
        if count > 2**20:
            raise FormatError(
                f"{self.name} has {count} finite values; all_finite_values is limited to 2**20"
            )
        i = np.arange((2**E - 1) * 2**M, dtype=np.int64)
        fld = i >> M
        frac = i & (2**M - 1)
        sig = np.where(fld == 0, frac, frac + 2**M).astype(np.float64)
        k = np.where(fld == 0, self.emin, fld - 1 + self.emin) - M
        pos = np.ldexp(sig, k.astype(np.int32))  # increasing, pos[0] = +0.0
        return np.concatenate([-pos[::-1], pos])


def _exact_or_none(v: float):
    """exact(v) for finite v, None for inf/nan (helper)."""
    return exact(v) if math.isfinite(v) else None


def _quote(s: str) -> str:
    """A user's string in a message: JSON-quoted, every non-printable character escaped."""
    return one_line(json.dumps(s, ensure_ascii=False))


FLOAT16 = FloatFormat(5, 10, "float16")
BFLOAT16 = FloatFormat(8, 7, "bfloat16")
FLOAT32 = FloatFormat(8, 23, "float32")
FLOAT64 = FloatFormat(11, 52, "float64")


# ---------------------------------------------------------------------------------------------
# parsing values from files
# ---------------------------------------------------------------------------------------------

_HEX_RE = re.compile(r"([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?(?:[pP]([+-]?[0-9]+))?")
_DEC_RE = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?(?:[eE]([+-]?[0-9]+))?")
_RATIO_RE = re.compile(r"([+-]?)([0-9]+)/([0-9]+)")
_INF_RE = re.compile(r"([+-]?)(?:inf|infinity)", re.IGNORECASE)
_NAN_RE = re.compile(r"[+-]?s?nan", re.IGNORECASE)


def _exponent(text: str, token: str) -> int:
    digits = text.lstrip("+-").lstrip("0")
    if len(digits) > 7 or int(text) > EXPONENT_LIMIT or int(text) < -EXPONENT_LIMIT:
        raise InvalidValue(
            f"exponent of {_quote(_short(token))} is out of the supported range "
            f"(|exponent| <= {EXPONENT_LIMIT})"
        )
    return int(text)


def _parse_string(s: str) -> tuple[bool, Any]:
    """(negative sign written, exact value as mpq or math.inf) of a value string."""
    if _NAN_RE.fullmatch(s):
        raise InvalidValue("NaN is not allowed")
    m = _INF_RE.fullmatch(s)
    if m:
        return m.group(1) == "-", math.inf
    m = _HEX_RE.fullmatch(s)
    if m:
        sign, ipart, fpart, exp = m.groups()
        fpart = fpart or ""
        if not ipart and not fpart:
            raise InvalidValue(f"invalid hexadecimal number {_quote(_short(s))}")
        mant = mpz(ipart + fpart, 16)
        e = (_exponent(exp, s) if exp is not None else 0) - 4 * len(fpart)
        val = mpq(mant) * (mpq(2) ** e) if e >= 0 else mpq(mant, mpz(2) ** -e)
        return sign == "-", val
    m = _RATIO_RE.fullmatch(s)
    if m:
        sign, num, den = m.groups()
        d = mpz(den)
        if d == 0:
            raise InvalidValue(f"zero denominator in {_quote(_short(s))}")
        return sign == "-", mpq(mpz(num), d)
    m = _DEC_RE.fullmatch(s)
    if m:
        sign, ipart, fpart, exp = m.groups()
        fpart = fpart or ""
        if not ipart and not fpart:
            raise InvalidValue(f"invalid number {_quote(_short(s))}")
        mant = mpz(ipart + fpart)
        e = (_exponent(exp, s) if exp is not None else 0) - len(fpart)
        val = mpq(mant * mpz(10) ** e) if e >= 0 else mpq(mant, mpz(10) ** -e)
        return sign == "-", val
    raise InvalidValue(
        f"invalid value {_quote(_short(s))}: expected a number, a hexadecimal float (0x1.8p-3), "
        'a decimal (0.375), a ratio (3/8), "inf", "-inf" or "-0" (no surrounding whitespace)'
    )


def parse_value(token, fmt: FloatFormat, rounding: str = "exact") -> tuple[float, bool]:
    """Read one value of a file: returns ``(value, rounded)``.

    ``token`` is a JSON number as produced by ``json.load`` (float or int; it means the binary64
    number nearest to it) or a string meaning its exact value (hex float, decimal, integer ratio,
    ``inf``/``-inf`` - also ``infinity``, any case -, signed zeros; exponents up to
    ``EXPONENT_LIMIT`` in magnitude).  A value representable in ``fmt`` is returned as
    ``(float, False)``.  Otherwise ``rounding="exact"`` raises :class:`NotRepresentable` and
    ``rounding="nearest"`` returns ``(round-to-nearest-even value, True)``.  NaN, bools and other
    types raise :class:`InvalidValue`.
    """
    if rounding not in ("exact", "nearest"):
        raise ValueError(f'rounding must be "exact" or "nearest", got {rounding!r}')
    fmt = FloatFormat.from_spec(fmt)
    if isinstance(token, bool):
        raise InvalidValue(f"{str(token).lower()} is not a number")
    if isinstance(token, OverflowLiteral):
        raise InvalidValue(f"the JSON number {_short(token.text)} {_OVERFLOW_HELP}")
    if isinstance(token, float):
        if math.isnan(token):
            raise InvalidValue("NaN is not allowed")
        token = float(token)
        text = repr(token)
        if math.isinf(token):
            return token, False
        neg = math.copysign(1.0, token) < 0
        value = exact(token)
    elif isinstance(token, int):
        # the binary64 number nearest to the integer; past the binary64 range there is none
        b64 = FLOAT64.round_rational(mpq(token))
        if math.isinf(b64):
            try:
                shown = _short(str(token))
            except ValueError:  # more digits than Python converts
                shown = f"of about {int(abs(token).bit_length() * 0.30103)} digits"
            raise InvalidValue(f"the JSON integer {shown} {_OVERFLOW_HELP}")
        text = _format_rational(mpq(token))
        neg = False
        value = exact(b64)
    elif isinstance(token, str):
        neg, value = _parse_string(token)
        text = token
        if value is math.inf:
            return (-math.inf if neg else math.inf), False
        if neg:
            value = -value
    else:
        raise InvalidValue(f"expected a number or a string, got {type(token).__name__}")

    if value == 0:
        return (-0.0 if neg else 0.0), False
    if fmt.is_representable(value):
        return fmt.round_rational(value), False
    if rounding == "nearest":
        return fmt.round_rational(value), True
    below, above = fmt.neighbours(value)
    raise NotRepresentable(value, below, above, fmt, text=text)
