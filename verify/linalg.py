"""Exact rational linear algebra on short lists of gmpy2 mpq (ranks, parallel classes)."""

from __future__ import annotations

from gmpy2 import mpq


def rank(vectors) -> int:
    """Rank of a list of equal-length rational vectors (Gaussian elimination, exact)."""
    rows = [[mpq(v) for v in vec] for vec in vectors]
    if not rows:
        return 0
    r = 0
    ncol = len(rows[0])
    for c in range(ncol):
        piv = next((i for i in range(r, len(rows)) if rows[i][c] != 0), None)
        if piv is None:
            continue
        rows[r], rows[piv] = rows[piv], rows[r]
        p = rows[r]
        for i in range(len(rows)):
            if i != r and rows[i][c] != 0:
                f = rows[i][c] / p[c]
                rows[i] = [a - f * b for a, b in zip(rows[i], p)]
        r += 1
        if r == len(rows):
            break
    return r


def is_zero(vec) -> bool:
    return all(v == 0 for v in vec)


def dot(a, b):
    return sum((x * y for x, y in zip(a, b)), mpq(0))


def sub(a, b):
    return [x - y for x, y in zip(a, b)]
