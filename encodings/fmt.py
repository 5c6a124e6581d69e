"""Rendering exact and machine values as strings (the report's only formatting rules)."""

from __future__ import annotations

from gmpy2 import mpq

from .exact import Interval


def _dec(q, rnd) -> str:
    import gmpy2

    with gmpy2.context(gmpy2.get_context(), precision=80, round=rnd):
        return format(gmpy2.mpfr(q), ".20g") if q != 0 else "0"


def rat(v) -> str | None:
    """An exact value as "p/q" (or "p" for integers); a certified enclosure (transcendental ops) as
    "[lo, hi]" with 20 significant decimal digits rounded outwards."""
    import gmpy2

    if v is None:
        return None
    if isinstance(v, Interval):
        return f"[{_dec(v.lo, gmpy2.RoundDown)}, {_dec(v.hi, gmpy2.RoundUp)}]"
    q = mpq(v)
    return str(q.numerator) if q.denominator == 1 else f"{q.numerator}/{q.denominator}"


def hexf(fmt, v) -> str:
    return fmt.to_hex(float(v))


def rat_all(values) -> list:
    """[rat(v) for v in values], vectorised (the same strings)."""
    from .dyadic import rats

    return rats(values, rat)


def hexf_all(fmt, values) -> list:
    """[hexf(fmt, v) for v in values], vectorised (the same strings) for the formats whose hex form
    is the canonical one of their binary64 value (every FloatFormat)."""
    from .dyadic import hexes
    from .formats import FloatFormat, to_hex

    if getattr(type(fmt), "to_hex", None) is not FloatFormat.to_hex:
        return [hexf(fmt, v) for v in values]
    return hexes(values, to_hex)


def parse_rat(s: str) -> mpq:
    return mpq(s)


def is_exact(v) -> bool:
    return v is not None and not isinstance(v, Interval)


def all_exact(values) -> bool:
    """all(is_exact(v) for v in values), one type test per distinct type."""
    return not any(t is type(None) or issubclass(t, Interval) for t in set(map(type, values)))


def approx(text, digits: int = 12) -> str:
    """A decimal approximation of an exact value written "p/q" (empty for integers, enclosures and
    anything that is not a rational): shown beside the exact value, never instead of it."""
    import gmpy2

    if text is None or not isinstance(text, str) or text.startswith("["):
        return ""
    try:
        q = mpq(text)
    except (ValueError, ZeroDivisionError):
        return ""
    if q.denominator == 1:
        return ""
    with gmpy2.context(gmpy2.get_context(), precision=96):
        return format(gmpy2.mpfr(q), f".{digits}g")
