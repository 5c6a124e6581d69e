"""Exact rational linear algebra on short lists of gmpy2 mpq (ranks, parallel classes)."""

from __future__ import annotations

from gmpy2 import mpq


def _reduce(rows, ncol):
    """Gauss-Jordan elimination in place on the first ``ncol`` columns; returns the pivot columns."""
    r, piv_cols = 0, []
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
        piv_cols.append(c)
        r += 1
        if r == len(rows):
            break
    return piv_cols


def rank(vectors) -> int:
    """Rank of a list of equal-length rational vectors (Gaussian elimination, exact)."""
    rows = [[mpq(v) for v in vec] for vec in vectors]
    return len(_reduce(rows, len(rows[0]))) if rows else 0


def solve(cols, target):
    """x with sum_k x_k cols[k] = target, or None when target is outside their span (exact;
    for independent columns x is unique, otherwise free coordinates are 0)."""
    K = len(cols)
    rows = [[mpq(cols[k][i]) for k in range(K)] + [mpq(target[i])] for i in range(len(target))]
    piv_cols = _reduce(rows, K)
    if any(rows[i][K] != 0 for i in range(len(piv_cols), len(rows))):
        return None
    x = [mpq(0)] * K
    for i, c in enumerate(piv_cols):
        x[c] = rows[i][K] / rows[i][c]
    return x


def is_zero(vec) -> bool:
    return all(v == 0 for v in vec)


def dot(a, b):
    return sum((x * y for x, y in zip(a, b)), mpq(0))


def sub(a, b):
    return [x - y for x, y in zip(a, b)]
