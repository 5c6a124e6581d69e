"""``kinkcheck check`` for search certificates (an unsat written by ``kinkcheck search --out``).

The certificate names the network, the box, the goal and how the unsat was reached. The check
re-runs every exact step from the embedded network and box with exact arithmetic and compares:

- ``enclosures``: the interval enclosures of every unit are re-computed; none may meet the goal;
- ``lemmas``: the enclosures, then the rounding-aware lemmas for every unit that may meet the goal
  (each must say "no" again, for the same units);
- ``monotone-bounds``: the first-layer corner bounds are re-computed;
- ``enumeration``: every float point of the box is checked again;
- ``solver``: the units the lemmas left out of the query are decided again, the SMT-LIB2 query is re-built from the network and the box (sliced by re-computed
  enclosures) and must be the certificate's, character for character (up to the numbering of
  Z3's let-names); its UNSAT is the solver's
  and is labelled **solver-trusted** (the check does not call a solver).

This check re-runs kinkcheck's own exact code for these steps (the interval arithmetics, the lemmas,
the point evaluation); it is not the independent rational checker of ``kinkcheck verify``
certificates (``certify/checker.py``), which ``check_any`` dispatches to for those.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from ..certify.checker import CheckFailed, check_certificate, read_certificate
from ..encodings.errors import InputError

SCHEMA = 1


def _canonical(text: str) -> str:
    """The query with Z3's let-names (?x123, $x45: internal term ids) numbered by first use."""
    names: dict = {}
    return re.sub(r"[?$][a-z]+\d+", lambda m: names.setdefault(m.group(0), f"{m.group(0)[0]}v{len(names)}"), text)


def check_any(cert) -> dict:
    """A verify certificate (``kinkcheck_certificate``) or a search certificate (``kinkcheck_search``)."""
    doc = read_certificate(cert) if isinstance(cert, (str, Path)) else cert
    if isinstance(doc, dict) and "kinkcheck_search" in doc:
        return check_search_certificate(doc)
    return check_certificate(doc)


def check_search_certificate(cert: dict) -> dict:
    """{"valid": True, "steps": [...]}; CheckFailed names the first failing step."""
    if cert.get("kinkcheck_search") != SCHEMA:
        raise InputError(f"not a kinkcheck search certificate (schema version {SCHEMA})")
    try:
        return _check(cert)
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as exc:
        raise CheckFailed(f"malformed search certificate: {type(exc).__name__}: {exc}") from None


def _check(cert) -> dict:
    from ..api import load
    from . import entries, lemmas, solver, structured

    if cert["status"] != "unsat":
        raise CheckFailed(f"a search certificate records an unsat (this one: {cert['status']!r}); a sat answer is a network file: verify it")
    goal, method = cert["goal"], cert["method"]
    if goal not in solver.GOALS:
        raise CheckFailed(f"unknown goal {goal!r}")
    try:
        net = load(cert["network"])
        bounds = entries.bounds(net, [(k, v[0], v[1]) for k, v in cert["box"].items()], None, None)
    except InputError as exc:
        raise CheckFailed(f"step 1 (network and box): {exc}") from None
    k_ulps = int(cert.get("k_ulps", 0))
    steps = [f"network and box ({len(bounds)} free entries) [exact]"]
    boxes = None
    if cert.get("pruning", {}).get("applied") or method in ("enclosures", "lemmas"):
        boxes = structured.enclosures(net, bounds)
        if [b.to_dict() for b in boxes.values()] != cert["enclosures"]:
            raise CheckFailed("step 2 (enclosures): the re-computed interval enclosures differ from the certificate's")
        steps.append(f"interval enclosures of {len(boxes)} units re-computed [exact]")
    cand = solver._candidates(goal, boxes) if boxes is not None else None
    if method == "enclosures":
        if cand is None or cand:
            raise CheckFailed(f"step 3 (enclosures): {len(cand or [])} units may still meet {goal}")
        steps.append(f"no unit can meet {goal} [exact]")
    elif method == "lemmas":
        r = lemmas.decide(net, goal, bounds, cand)
        if r is None or r[0] != "unsat":
            raise CheckFailed(f"step 3 (lemmas): the lemmas do not decide every unit ({'found ' + r[0] if r else 'undecided'})")
        if sorted(e["key"] for e in r[2]) != sorted(e["key"] for e in cert["evidence"]):
            raise CheckFailed("step 3 (lemmas): the units decided differ from the certificate's evidence")
        steps.append(f"rounding-aware lemmas: {len(r[2])} units cannot meet {goal} [exact]")
    elif method == "monotone-bounds":
        r = structured.search_structured(net, goal, bounds) if structured.applicable(net, bounds) else None
        if r is None or r[0] != "unsat":
            raise CheckFailed("step 3 (monotone bounds): the corner bounds do not exclude every tie")
        steps.append("monotone corner bounds of the first-layer units [exact]")
    elif method == "enumeration":
        real_goal = goal in ("real-tie", "compensation", "ad-mismatch")
        lists = [solver._values(net.fmt, lo, hi, real_goal) for _, lo, hi in bounds.values()]
        total = 1
        for v in lists:
            total *= len(v)
        if total > solver.EXHAUSTIVE_MAX:
            raise CheckFailed(f"step 3 (enumeration): {total} points, more than {solver.EXHAUSTIVE_MAX}")
        for combo in itertools.product(*lists):
            if solver._point_meets(net, bounds, combo, goal, k_ulps):
                raise CheckFailed(f"step 3 (enumeration): the point {dict(zip(bounds, combo))} meets {goal}")
        steps.append(f"all {total} float points of the box enumerated [exact]")
    elif method == "solver":
        exclude = set()
        if cert.get("evidence"):
            r = lemmas.decide(net, goal, bounds, cand)
            if r is None or r[0] != "partial" or sorted(e["key"] for e in r[1]) != sorted(e["key"] for e in cert["evidence"]):
                raise CheckFailed("step 3 (lemmas): the units the lemmas exclude differ from the certificate's evidence")
            exclude = {tuple(e["key"]) for e in r[1]}
            steps.append(f"rounding-aware lemmas: {len(exclude)} units cannot meet {goal} [exact]")
        s, _ = solver.build_query(net, goal, bounds, boxes, k_ulps, exclude=exclude)
        if _canonical(s.to_smt2()) != _canonical(cert["smtlib"]):
            raise CheckFailed("step 3 (query): the SMT-LIB2 query re-built from the network and the box differs from the certificate's")
        steps.append("SMT-LIB2 query re-built from the network and the box: identical [exact]")
        steps.append(f"SMT UNSAT of that query ({cert.get('solver', 'solver')}) [solver-trusted]")
    else:
        raise CheckFailed(f"unknown method {method!r}")
    return {"valid": True, "steps": steps, "trust": "solver-trusted" if method == "solver" else "exact"}
