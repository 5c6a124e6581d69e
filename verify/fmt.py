"""Rendering exact and machine values as strings (the report's only formatting rules)."""

from __future__ import annotations

from gmpy2 import mpq

from .encodings.exact import Interval


def rat(v) -> str | None:
    """An exact value as "p/q" (or "p" for integers); an enclosure as "[lo, hi]"."""
    if v is None:
        return None
    if isinstance(v, Interval):
        return f"[{rat(v.lo)}, {rat(v.hi)}]"
    q = mpq(v)
    return str(q.numerator) if q.denominator == 1 else f"{q.numerator}/{q.denominator}"


def hexf(fmt, v) -> str:
    return fmt.to_hex(float(v))


def parse_rat(s: str) -> mpq:
    return mpq(s)
