"""The checker's steps for ties inside fixed-point layers (docs/implicit.md, docs/certificate.md).

Part of the independent checker: it uses only the checker's own exact model (``replay.py``) and
re-derives everything it needs:

- coherent orientation: at every sample's fixed point, det(I - D W) has one non-zero sign on every
  vertex of the box of the tied units' one-sided slopes (so the directional derivative of z* is
  unique along every direction and the listed cells are the true pieces);
- completeness (for "differentiable" and "not in Clarke"): every one of the 2^k one-sided patterns
  of the tied units is a listed cell (checked by ``checker._check_cell``) or is listed empty with
  Gordan multipliers y >= 0, sum y = 1, sum_i y_i s_i l_{s,i} = 0 over the pattern's tangent
  functionals, which the checker computes itself.
"""

from __future__ import annotations

import itertools

from gmpy2 import mpq

from .replay import CheckFailed, _params, _table


def _det(M) -> mpq:
    a = [[mpq(v) for v in row] for row in M]
    n, det = len(a), mpq(1)
    for c in range(n):
        p = next((r for r in range(c, n) if a[r][c] != 0), None)
        if p is None:
            return mpq(0)
        if p != c:
            a[c], a[p] = a[p], a[c]
            det = -det
        det *= a[c][c]
        for r in range(c + 1, n):
            if a[r][c] != 0:
                f = a[r][c] / a[c][c]
                a[r] = [x - f * y for x, y in zip(a[r], a[c])]
    return det


def coherent_orientation(M, layer_inputs) -> int:
    """Check every fixed-point layer's Clarke box at every sample; returns the vertices checked."""
    net = M.net
    count = 0
    for L in net.layers:
        if L.op != "fixed_point":
            continue
        W, b = M.W[L.index]
        from .replay import _q

        U = _q(L.fp.input_weight.values(net.theta))
        kinks, derivs, _, der = _table(L.act.name, _params(L))
        Wl = W.tolist()
        m = len(Wl)
        for n in range(net.batch):
            x = layer_inputs(M, n)[L.index]
            z = [mpq(v) for v in M.fixed_points[L.index][n]]
            a = [sum((Wl[i][j] * z[j] for j in range(m)), mpq(0)) + sum((U[i][j] * x[j] for j in range(len(x))), mpq(0)) + (b[i] if b is not None else 0) for i in range(m)]
            slopes, tied = [], []
            for i, av in enumerate(a):
                k = next((k for k, at in enumerate(kinks) if av == at), None)
                slopes.append(der(av) if k is None else None)
                if k is not None:
                    tied.append((i, k))
            if len(tied) > 20:
                raise CheckFailed(f"layer {L.index} sample {n}: {len(tied)} tied units: too many vertices to check")
            sign = None
            for mask in range(2 ** len(tied)):
                D = list(slopes)
                for t, (i, k) in enumerate(tied):
                    D[i] = derivs[k][(mask >> t) & 1]
                d = _det([[(1 if i == j else 0) - D[i] * Wl[i][j] for j in range(m)] for i in range(m)])
                s = (d > 0) - (d < 0)
                if s == 0 or (sign is not None and s != sign):
                    raise CheckFailed(f"layer {L.index} sample {n}: the Clarke Jacobian of the fixed-point map is not coherently oriented (a vertex determinant is {'zero' if s == 0 else 'of the other sign'})")
                sign = s
                count += 1
    return count


def _functionals(M, found, pattern) -> list:
    """The pattern's cell constraints: s_i l_{s,i} per two-way tie (its tangent signed by its
    side); at a tie of three or more actions with choice c, dQ_c - dQ_o for every other o."""
    cols = []
    for j in range(M.P):
        _, _, rec, _ = M.tangent(M.unit(j), lambda key, p=pattern: p[key])
        col = []
        for key in found:
            c, r = pattern[key], rec[key]
            if isinstance(r, dict):
                col += [r[c] - r[o] for o in r if o != c]
            else:
                col.append(r if c == "right" else -r)
        cols.append(col)
    return [[cols[j][i] for j in range(M.P)] for i in range(len(cols[0]) if cols else 0)]


def check_patterns(M, ev, cells, found, qs, choices_of) -> None:
    """Every pattern of the ties ``found`` (a side per two-way tie, one action per value-iteration
    tie of three or more actions) is a listed cell or a certified empty one, and no tie has an
    identically zero tangent on any pattern (its side would be decided by higher order terms,
    which first-order cells cannot see)."""
    listed = [ch for ch, _ in cells]
    empty = [(choices_of(e["choices"]), qs(e["multipliers"], "evidence.empty.multipliers")) for e in ev.get("empty", [])]
    tied = {tuple(int(v) for v in key): extra for key, kind, extra in M.tangent([mpq(0)] * M.P, lambda k: "proxy")[3]}
    options = [list(tied[key]) if isinstance(tied[key], tuple) and len(tied[key]) > 2 else ["left", "right"] for key in found]
    for combo in itertools.product(*options):
        pattern = dict(zip(found, combo))
        F = _functionals(M, found, pattern)
        if any(all(v == 0 for v in f) for f in F):
            raise CheckFailed(f"fixed-point patterns: a tie has an identically zero tangent on {sorted(pattern.items())}")
        if any(all(ch.get(key) == v for key, v in pattern.items()) for ch in listed):
            continue
        match = [y for ch, y in empty if all(ch.get(key) == v for key, v in pattern.items())]
        if not match:
            raise CheckFailed(f"fixed-point patterns: the pattern {sorted(pattern.items())} is neither a listed cell nor certified empty")
        y = match[0]
        if len(y) != len(F) or any(v < 0 for v in y) or sum(y) != 1:
            raise CheckFailed("fixed-point patterns: Gordan multipliers must be >= 0, one per constraint, summing to 1")
        if any(sum((y[i] * F[i][j] for i in range(len(F))), mpq(0)) != 0 for j in range(M.P)):
            raise CheckFailed(f"fixed-point patterns: the multipliers of {sorted(pattern.items())} do not certify an empty cell")
