"""Patterns of the ties as polynomial regions, and witness arcs into them (issue 11 parts 1-3, 5).

A *pattern* sigma fixes one side per real tie (max-pool: one entry among the tied maxima). Ties are
processed in layer order; tie i's pre-activation under the choices before it is a polynomial
z_i^sigma in the shifted trainable scalars X = theta - w (``encodings/poly.py``). The pattern's
region near w is S_sigma = {X : sigma_i z_i^sigma(X) > 0 for every tie whose polynomial is not
identically zero} (max-pool: the chosen entry's polynomial exceeds every other distinct one). On
S_sigma f is the polynomial f_sigma, so the limiting gradients at w are g_sigma(w) for the patterns
with w in the closure of S_sigma, and the Clarke set is their convex hull (docs/clarke.md).

Fast paths (part 5): an identically-zero tie has one branch; a tie whose polynomial is c times an
earlier tie's (z_j = c z_i, e.g. a mirrored unit z_j = -z_i) has its sign fixed by the earlier
choice - the other branch is empty by that identity, without any solver. Max-pool: entries with
identical polynomials are one branch, and an entry whose polynomial is a convex combination of the
other distinct entries' (z_m = sum_o mu_o z_o identically, mu >= 0, sum mu = 1; e.g. z_m = 0 between
a and -a, or z_m = 2a between a and 3a) can never be the strict maximum - its branch is empty by
that identity (``_convex``: an exact LP in the coefficients, re-checked by polynomial arithmetic).

Witness arcs (part 3): X(t) = t d1 + t^2 d2 + ... + t^K dK with rational d's. The coefficient of t^k
in z(X(t)) is L(d_k) + c_k(d_1..d_{k-1}) with L the linear part of z, so after d_1..d_{k-1} the
next order is a linear feasibility problem over the ties still at zero. Each level picks a point in
the relative interior of that polyhedron (the average of one witness per tie that can be strictly
positive) moved generically inside its affine hull, and the degree rises until every tie's leading
coefficient is strictly positive. Every arc is re-checked by exact substitution.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from gmpy2 import mpq

from ..encodings import poly as PL
from ..encodings import program as P
from .cells import Budget, _rat, feasible


@dataclass
class Pattern:
    choices: dict  # tie key -> 'left' / 'right' / window position
    cons: list  # [(tie key, Poly)]: each must be > 0 on the region
    zero: list  # tie keys whose polynomial is identically zero (one branch)
    gradient: list | None = None  # g_sigma(w)
    level: str | None = None  # "cone" | "ray" | "arc" (shown active) | "empty" (shown empty)
    arc: list | None = None  # [d1, d2, ...] (active)
    empty: object = None  # nra.Emptiness (UNSAT by both solvers)

    @property
    def polys(self):
        return [p for _, p in self.cons]


@dataclass
class Identity:
    choices: dict  # the prefix (ending with the empty branch)
    tie: tuple  # tie j
    of: tuple  # the earlier tie i (max-pool: the tie itself)
    ratio: mpq | None  # z_j = ratio * (signed constraint polynomial of tie i)
    weights: dict | None = None  # max-pool: {entry o: mu_o} with z_choice = sum_o mu_o z_o


@dataclass
class Patterns:
    variables: list  # gradient positions of the polynomial variables
    order: list  # tie keys in processing order
    patterns: list
    identities: list = field(default_factory=list)


def enumerate_patterns(runs, ties, *, deadline=None, max_patterns=4096) -> Patterns:
    variables = PL.tie_variables(runs.net, ties)
    order = sorted(ties, key=lambda t: (t.layer, t.sample, t.unit))
    keys = [t.key for t in order]
    out, idents = [], []

    def records(prefix):
        if deadline is not None and time.perf_counter() > deadline:
            raise Budget("time limit exceeded while building the tie polynomials")
        return PL.tie_polynomials(runs, variables, prefix)

    def visit(i, prefix, cons, zero, rec, signed):
        if i == len(keys):
            out.append(Pattern(dict(prefix), list(cons), list(zero)))
            if len(out) > max_patterns:
                raise Budget(f"more than {max_patterns} tie patterns")
            return
        key = keys[i]
        kind, z = rec[key]
        if kind == "pool":
            groups: list = []
            for pos, p in sorted(z.items()):
                for g in groups:
                    if z[g[0]] == p:
                        g.append(pos)
                        break
                else:
                    groups.append([pos])
            reps = [g[0] for g in groups]
            first = min(z)
            if len(reps) == 1:
                branches = [(reps[0], [], True)]
            else:
                branches = []
                for r in reps:
                    mu = _convex(z, r, [o for o in reps if o != r]) if len(reps) >= 3 else None
                    if mu is not None:
                        idents.append(Identity({**prefix, key: r}, key, key, None, mu))
                    else:
                        branches.append((r, [(key, z[r] - z[o]) for o in reps if o != r], False))
            default = first
        else:
            if z.is_zero():
                branches = [("left", [], True)]
            else:
                forced = None
                for k2, p2 in signed.items():
                    c = z.ratio(p2)
                    if c is not None:
                        forced = ("right" if c > 0 else "left", k2, c)
                        break
                if forced is not None:
                    side, k2, c = forced
                    other = "left" if side == "right" else "right"
                    idents.append(Identity({**prefix, key: other}, key, k2, c))
                    branches = [(side, [(key, z if side == "right" else -z)], False)]
                else:
                    branches = [("left", [(key, -z)], False), ("right", [(key, z)], False)]
            default = "left"
        for choice, bc, is_zero in branches:
            p2 = {**prefix, key: choice}
            r2 = rec if choice == default else records(p2)
            s2 = {**signed, key: bc[0][1]} if kind != "pool" and bc else signed
            visit(i + 1, p2, cons + bc, zero + ([key] if is_zero else []), r2, s2)

    visit(0, {}, [], [], records({}), {})
    return Patterns(variables, keys, out, idents)


def _convex(z, r, others):
    """{o: mu_o} with mu >= 0, sum mu = 1 and z[r] = sum mu_o z[o] identically, or None (exact LP
    over the polynomials' coefficients; the answer is re-checked by polynomial arithmetic)."""
    import z3

    monos = sorted(set(z[r].t).union(*(z[o].t for o in others)))
    s = z3.Solver()
    s.set("timeout", 2000)
    mu = {o: z3.Real(f"mu{o}") for o in others}
    s.add(*[m >= 0 for m in mu.values()], z3.Sum(list(mu.values())) == 1)
    for m in monos:
        s.add(z3.Sum([z3.RealVal(str(z[o].t.get(m, 0))) * mu[o] for o in others]) == z3.RealVal(str(z[r].t.get(m, 0))))
    if s.check() != z3.sat:
        return None  # unsat: not a convex combination; unknown: no shortcut (the branch stays)
    md = s.model()
    w = {o: _rat(md.eval(v, model_completion=True)) for o, v in mu.items()}
    w = {o: c for o, c in w.items() if c != 0}
    acc = PL.Poly(z[r].nv)
    for o, c in w.items():
        acc = acc + z[o] * c
    ok = all(c > 0 for c in w.values()) and sum(w.values()) == 1 and (acc - z[r]).is_zero()
    return w if ok else None


def pattern_gradient(runs, fw, pat: Pattern) -> list:
    return list(P.backward(runs.net, fw.A, fw, runs.proxies, choose=dict(pat.choices)))


# ----------------------------------------------------------------------------------------------
# arcs


def check_arc(polys, arc) -> bool:
    """Exact substitution: every polynomial's leading coefficient along the arc is > 0."""
    order = max(1, len(arc)) * max([p.degree() for p in polys] + [1])
    for p in polys:
        lead = PL.leading(p.series(arc, order))
        if lead is None or lead[0] == 0 or lead[1] <= 0:
            return False
    return True


def _dot(a, b):
    return sum((x * y for x, y in zip(a, b) if x != 0), mpq(0))


def _null_space(rows, n):
    """A basis of {d : r.d = 0 for every row} (exact)."""
    rows = [list(r) for r in rows if any(v != 0 for v in r)]
    piv = []
    r = 0
    for c in range(n):
        p = next((i for i in range(r, len(rows)) if rows[i][c] != 0), None)
        if p is None:
            continue
        rows[r], rows[p] = rows[p], rows[r]
        rows[r] = [v / rows[r][c] for v in rows[r]]
        for i in range(len(rows)):
            if i != r and rows[i][c] != 0:
                f = rows[i][c]
                rows[i] = [a - f * b for a, b in zip(rows[i], rows[r])]
        piv.append(c)
        r += 1
    free = [c for c in range(n) if c not in piv]
    basis = []
    for f in free:
        v = [mpq(0)] * n
        v[f] = mpq(1)
        for i, c in enumerate(piv):
            v[c] = -rows[i][f]
        basis.append(v)
    return basis


def _affine_points(Ls, cs, n, timeout_ms, rng, variants=3):
    """Points d with L_i.d + c_i >= 0 for every i, the ties that can be strictly positive strictly
    so (a relative-interior point), plus generic moves inside the affine hull. [] if infeasible."""
    import z3

    def solve(strict_i):
        s = z3.Solver()
        s.set("timeout", int(timeout_ms))
        d = [z3.Real(f"d{j}") for j in range(n)]
        for i, (L, c) in enumerate(zip(Ls, cs)):
            e = z3.Sum([z3.RealVal(str(v)) * d[j] for j, v in enumerate(L) if v != 0] or [z3.RealVal(0)]) + z3.RealVal(str(c))
            s.add(e > 0 if i == strict_i else e >= 0)
        r = s.check()
        if r == z3.unknown:
            raise Budget(f"Z3 unknown in the arc LP ({s.reason_unknown()})")
        if r == z3.unsat:
            return None
        m = s.model()
        return [_rat(m.eval(x, model_completion=True)) for x in d]

    base = solve(None)
    if base is None:
        return []
    wit = []
    for i in range(len(Ls)):
        if _dot(Ls[i], base) + cs[i] > 0:
            continue
        w = solve(i)
        if w is not None:
            wit.append(w)
    pts = [base] + wit
    p0 = [sum((p[j] for p in pts), mpq(0)) / len(pts) for j in range(n)]
    tight = [i for i in range(len(Ls)) if _dot(Ls[i], p0) + cs[i] == 0]
    null = _null_space([Ls[i] for i in tight], n)
    out = [p0]
    slack = [i for i in range(len(Ls)) if i not in tight]
    moves = [[mpq(int(k)) for k in rng.integers(-3, 4, len(null))] for _ in range(variants if null else 0)]
    if variants > 1 and 0 < len(null) <= 4:  # the full search also moves along each basis vector
        moves += [[mpq(s) if i == k else mpq(0) for i in range(len(null))] for k in range(len(null)) for s in (1, -1)]
    for mv in moves:
        v = [sum((c * b[j] for c, b in zip(mv, null)), mpq(0)) for j in range(n)]
        if all(x == 0 for x in v):
            continue
        eps = mpq(1)
        for _ in range(40):
            q = [a + eps * b for a, b in zip(p0, v)]
            if all(_dot(Ls[i], q) + cs[i] > 0 for i in slack):
                out.append(q)
                break
            eps /= 2
    return out


def find_arc(polys, n, *, max_degree=4, variants=3, deadline=None, timeout_ms=5000, seed=0, max_nodes=200):
    """A rational arc [d1, ..., dK] along which every polynomial's leading coefficient is > 0,
    or None (none found within the degree and the budget; not a proof of emptiness)."""
    if not polys:
        return [[mpq(0)] * n]
    rng = np.random.default_rng(seed)
    zero = [mpq(0)] * n
    lin = [p.linear() for p in polys]

    nodes = [0]

    def rec(arc, pending, K):
        if not pending:
            return arc
        if arc and check_arc(polys, arc):
            return arc  # the lower orders already sign every tie (e.g. a ray whose t^2 terms do)
        k = len(arc) + 1
        if k > K or nodes[0] >= max_nodes:
            return None
        nodes[0] += 1  # one LP level per node: the search is bounded, not only by the clock
        if deadline is not None and time.perf_counter() > deadline:
            raise Budget("time limit exceeded in the arc search")
        cs = [polys[i].series(arc + [zero], k)[k] for i in pending]
        Ls = [lin[i] for i in pending]
        for d in _affine_points(Ls, cs, n, timeout_ms, rng, variants):
            vals = [_dot(L, d) + c for L, c in zip(Ls, cs)]
            if any(v < 0 for v in vals):
                continue
            nxt = [i for i, v in zip(pending, vals) if v == 0]
            if len(nxt) == len(pending) and all(x == 0 for x in d) and k == K:
                continue  # no progress at the last order
            got = rec(arc + [d], nxt, K)
            if got is not None:
                return got
        return None

    arc = None
    for K in range(1, max_degree + 1):  # the degree rises step by step: the lowest found first
        arc = rec([], list(range(len(polys))), K)
        if arc is not None:
            break
    if arc is None:
        return None
    while len(arc) > 1 and all(x == 0 for x in arc[-1]):
        arc = arc[:-1]
    if len(arc) > 1 and all(all(x == 0 for x in d) for d in arc[:-1]) and check_arc(polys, arc[-1:]):
        arc = arc[-1:]  # t^k d_k alone: the ray t d_k (s = t^k)
    return arc if check_arc(polys, arc) else None


def cone(polys, n, timeout_ms=5000):
    """The first-order level: a rational d with every linear part > 0 at d (a ray w + t d enters
    the region), or None."""
    return feasible([p.linear() for p in polys], n, timeout_ms) if polys else [mpq(0)] * n
