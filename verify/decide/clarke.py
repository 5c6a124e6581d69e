"""Is the AD output a Clarke subderivative, where first-order cells are not enough (issue 11)?

The Clarke set at w is conv{g_sigma(w) : w in the closure of S_sigma} (``arcs.py``; docs/clarke.md).
The decision:

1. every pattern with its polynomial constraints (``arcs.enumerate_patterns``; identities between
   tie polynomials prune branches without a solver) and its gradient g_sigma(w);
2. level "cone": the first-order LP is strictly feasible - a ray enters S_sigma;
3. AD in the hull of the gradients shown active (exact convex weights): yes. Otherwise an exact
   separator v of AD from them; every pattern not yet shown active with v.g_sigma >= v.AD is
   either shown active by a witness arc (levels "ray" / "arc"; then the hull is tried again) or
   shown not essentially active by local emptiness in nonlinear real arithmetic (``nra.py``: both
   Z3 and cvc5 answer unsat for a box of rational radius r around w). When every such pattern is
   empty: no, with v.
Null only when the budget runs out or a region stays non-empty at every radius tried without an
arc, naming the patterns left.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from gmpy2 import mpq

from . import arcs, nra
from .cells import Budget

RADII = (mpq(1), mpq(1, 16), mpq(1, 256), mpq(1, 4096))
MAX_TIES = 16  # real ties: above this the patterns are not enumerated (2^ties leaves)
MAX_VARIABLES = 48  # polynomial variables (trainable scalars before the last tie)


@dataclass
class Clarke:
    answer: bool | None
    reason: str
    pats: object = None  # arcs.Patterns
    active: list = field(default_factory=list)  # Pattern objects shown active (level set)
    weights: list | None = None  # convex weights over ``active`` (yes)
    separator: list | None = None  # (no)
    empty: list = field(default_factory=list)  # Pattern objects shown empty (no)
    time_s: float = 0.0

    def summary(self, values=True) -> dict:
        """The report's ``decision.clarke_patterns``: every pattern with the level at which it was
        decided - "cone" (first-order LP), "ray" / "arc" (a witness arc of that degree), "empty"
        (local emptiness, both solvers), None (not needed or not decided)."""
        pats = self.pats.patterns
        out = {
            "answer": self.answer,
            "n_patterns": len(pats),
            "n_identities": len(self.pats.identities),
            "levels": {k: sum(1 for p in pats if p.level == k) for k in ("cone", "ray", "arc", "empty")},
            "time_s": round(self.time_s, 6),
        }
        if values:
            out["patterns"] = [
                {"choices": [[list(k), c if isinstance(c, str) else int(c)] for k, c in sorted(p.choices.items())], "level": p.level, "degree": len(p.arc) if p.arc else None}
                for p in pats
            ]
        return out


def applies(net) -> bool:
    from ..encodings import poly

    return poly.applies(net) and not any(L.op == "conv2d" for L in net.layers)


def decide(runs, fw, ties, ad, convex_weights, separator, *, time_limit=30.0) -> Clarke:
    """``convex_weights`` / ``separator``: the exact hull LPs (differentiability.py)."""
    t0 = time.perf_counter()
    deadline = t0 + time_limit

    def left_ms():
        return max(1, int(min(20.0, deadline - time.perf_counter()) * 1000))

    if len(ties) > MAX_TIES:
        return Clarke(None, f"{len(ties)} real ties: the pattern regions are enumerated up to {MAX_TIES} ties")
    n_vars = len(arcs.PL.tie_variables(runs.net, ties))
    if n_vars > MAX_VARIABLES:
        return Clarke(None, f"the ties depend on {n_vars} trainable scalars: the pattern regions are built over at most {MAX_VARIABLES}")
    try:
        pats = arcs.enumerate_patterns(runs, ties, deadline=deadline)
    except Budget as exc:
        return Clarke(None, f"pattern polynomials: {exc}", time_s=time.perf_counter() - t0)
    n = len(pats.variables)
    base = f"{len(pats.patterns)} pattern(s) over {n} variable(s), {len(pats.identities)} branch(es) empty by polynomial identities"
    for p in pats.patterns:
        p.gradient = arcs.pattern_gradient(runs, fw, p)
    try:
        for p in pats.patterns:
            d = arcs.cone(p.polys, n, left_ms())
            if d is not None:
                p.level, p.arc = "cone", [d]
        active = [p for p in pats.patterns if p.level]
        tried_arc: set = set()
        while True:
            grads = [p.gradient for p in active]
            if grads:
                lam = convex_weights(grads, ad, timeout_ms=left_ms())
                if lam is not None:
                    return Clarke(True, f"{base}: AD is a convex combination of {len(active)} limiting gradient(s) shown active ({_levels(active)})", pats, active, weights=lam, time_s=time.perf_counter() - t0)
            v = separator(grads, ad, timeout_ms=left_ms()) if grads else None
            cands = [p for p in pats.patterns if p.level is None and (v is None or _dot(v, p.gradient) >= _dot(v, ad))]
            if not cands:
                empty = [p for p in pats.patterns if p.level == "empty"]
                return Clarke(False, f"{base}: AD is not in the Clarke subdifferential (separated from {len(active)} active gradient(s); {len(empty)} pattern(s) on the wrong side shown empty near w by Z3 and cvc5)", pats, active, separator=v, empty=empty, time_s=time.perf_counter() - t0)
            grew = False
            for i, p in enumerate(cands):  # a quick arc search first (low degree, few moves)
                if id(p) in tried_arc:
                    continue
                tried_arc.add(id(p))
                if _arc(p, n, deadline, left_ms(), i, quick=True):
                    active.append(p)
                    grew = True
                    break
            if grew:
                continue
            why = nra.missing()
            if why is not None:
                return Clarke(None, f"{base}: {len(cands)} pattern(s) neither shown active nor empty: {why}", pats, active, time_s=time.perf_counter() - t0)
            left = []
            for i, p in enumerate(cands):
                for r in RADII:
                    if time.perf_counter() > deadline:
                        raise Budget("time limit exceeded in the emptiness proofs")
                    e = nra.empty_near(p.polys, r, left_ms())
                    if e.answer == "unsat":
                        p.level, p.empty = "empty", e
                        break
                    if e.answer == "unknown":
                        break
                if p.level is None and _arc(p, n, deadline, left_ms(), i, quick=False):
                    active.append(p)  # non-empty near w at every radius: the full arc search found it
                    grew = True
                    break
                if p.level is None:
                    left.append(p)
            if grew:
                continue
            if left:
                names = "; ".join(str(sorted(p.choices.items())) for p in left[:3])
                return Clarke(None, f"{base}: AD is outside the hull of the {len(active)} gradient(s) shown active; {len(left)} pattern(s) on the wrong side neither shown active by an arc nor empty near w by both solvers: {names}", pats, active, separator=v, time_s=time.perf_counter() - t0)
    except Budget as exc:
        return Clarke(None, f"{base}: {exc}", pats, time_s=time.perf_counter() - t0)


def _arc(p, n, deadline, timeout_ms, seed, quick) -> bool:
    arc = arcs.find_arc(p.polys, n, max_degree=2 if quick else 4, variants=1 if quick else 3, max_nodes=12 if quick else 200, deadline=deadline, timeout_ms=timeout_ms, seed=seed)
    if arc is None:
        return False
    p.level = "ray" if len(arc) == 1 else "arc"
    p.arc = arc
    return True


def _levels(active) -> str:
    out = {}
    for p in active:
        k = p.level if p.level != "arc" else f"arc of degree {len(p.arc)}"
        out[k] = out.get(k, 0) + 1
    return ", ".join(f"{v} {k}" for k, v in out.items())


def _dot(a, b):
    return sum((x * y for x, y in zip(a, b)), mpq(0))
