"""Certificates: the evidence behind a report's verdicts, in a JSON document (schema version 1,
docs/certificate.md) that ``checker.py`` re-validates with exact arithmetic alone."""

from __future__ import annotations

import json

from ..decide.cells import affine_tie_inputs
from ..encodings.fmt import rat
from ..encodings.tensorfiles import inline_tensors

SCHEMA = 1


def _key(k):
    return [int(v) for v in k]


def _choices(ch: dict):
    return [{"tie": _key(k), "choice": (int(c) if not isinstance(c, str) else c)} for k, c in sorted(ch.items())]


def build(report) -> dict:
    net = report._net
    v = report._verdict
    runs = report._runs
    if runs.exact is None:
        raise ValueError("no certificate: the exact run is unavailable")
    ad = [rat(x) for x in runs.exact_ad()]
    conv = runs.proxies.convention.to_json()["ops"]
    claims = {
        "differentiable": v.differentiable,
        "ad_correct": v.ad_correct,
        "ad_in_clarke": v.ad_in_clarke,
        "gradient": [rat(x) for x in v.gradient] if v.gradient is not None else (ad if v.gradient_is_ad else None),
        "ad": ad,
        "real_ties": [[t["layer"], t["sample"], t["unit"]] for t in report.real_ties],
    }
    evidence: dict = {}
    en = v.enumeration
    if v.clarke_by is not None:
        evidence["theorem"] = (
            "private-bias"
            if v.clarke_by.startswith("private-bias")
            else "per-layer-lambda"
            if v.clarke_by.startswith("per-layer")
            else "ad-pattern"
            if v.clarke_by.startswith("ad-pattern")
            else "independent-activations"
        )
    if v.method == "hinge":
        evidence["method"] = "hinge"
        evidence["order"] = sorted([t["layer"], t["sample"], t["unit"]] for t in report.real_ties)
        if v.mu is not None:
            evidence["mu"] = [rat(x) for x in v.mu]
    if v.method == "directional":
        a = v.directional
        evidence["method"] = "directional"
        if a.differentiable is False:
            evidence["direction"] = [rat(x) for x in a.direction]
        elif a.smtlib is None:
            evidence["argument"] = "rewriting"
        else:
            evidence["argument"] = "solver"
            evidence["smtlib"] = a.smtlib
            evidence["answer"] = "unsat"
            evidence["solver"] = a.solver
            evidence["trust"] = "solver"
        if v.separator is not None:
            evidence["separator"] = [rat(x) for x in v.separator]
            evidence["complete_by"] = "one-parameter" if net.n_grad <= 1 else "affine"
    if en is not None:
        evidence["order"] = [_key(k) for k in en.order]
        evidence["cells"] = [
            {
                "choices": _choices(c.choices),
                "witness": [rat(x) for x in c.witness],
                "gradient": [rat(x) for x in c.gradient] if c.gradient is not None else None,
                "zero_ties": [_key(k) for k in c.zero_ties],
            }
            for c in en.cells
        ]
        evidence["empty"] = [{"choices": _choices(p.choices), "multipliers": [rat(x) for x in p.multipliers]} for p in en.pruned]
        if v.witnesses is not None:
            evidence["witnesses"] = list(v.witnesses)
        if v.clarke_weights is not None:
            evidence["clarke_weights"] = [rat(x) for x in v.clarke_weights]
        if v.separator is not None:
            evidence["separator"] = [rat(x) for x in v.separator]
            evidence["complete_by"] = "one-parameter" if net.n_grad <= 1 else "affine" if affine_tie_inputs(net, upto=max((t["layer"] for t in report.real_ties), default=None)) else "independent"
    if v.method == "implicit" and en is not None:
        evidence["method"] = "implicit"  # every pattern of the fixed-point ties is listed: a cell or empty
        if v.separator is not None:
            evidence["complete_by"] = "one-parameter" if net.n_grad <= 1 else "independent"
    fixed = {str(L.index): [[rat(x) for x in row] for row in runs.exact_full().fp[L.index].z] for L in net.layers if L.op == "fixed_point" or (L.op == "value_iteration" and L.vi.method == "iterate")}
    if fixed:
        evidence["fixed_points"] = fixed  # z* per sample; the checker verifies z* = act(W z* + U x + b)
    if v.ad_cell is not None and (evidence.get("theorem") == "ad-pattern" or net.loss.op == "cross_entropy"):
        c = v.ad_cell
        evidence["ad_cell"] = {"choices": _choices(c.choices), "witness": [rat(x) for x in c.witness], "gradient": [rat(x) for x in c.gradient] if c.gradient is not None else None, "zero_ties": [_key(k) for k in c.zero_ties]}
    if getattr(v, "clarke", None) is not None and v.clarke.answer is not None:
        evidence["clarke"] = _clarke(v.clarke)
    raw = inline_tensors(net)  # self-contained: sidecar tensors written inline
    claims["digest"] = digest(raw, conv)
    return {
        "kinkcheck_certificate": SCHEMA,
        "tool": f"kinkcheck {report.to_dict()['kinkcheck']}",
        "network": raw,
        "convention": conv,
        "claims": claims,
        "evidence": evidence,
    }


def _clarke(c) -> dict:
    """The polynomial-region evidence (checked by certify/arc_check.py)."""
    out = {
        "variables": [int(j) for j in c.pats.variables],
        "active": [{"choices": _choices(p.choices), "level": p.level, "arc": [[rat(x) for x in d] for d in p.arc], "gradient": [rat(x) for x in p.gradient]} for p in c.active],
    }
    if c.answer:
        out["weights"] = [rat(x) for x in c.weights]
        return out
    out["separator"] = [rat(x) for x in c.separator]
    out["empty"] = [
        {
            "choices": _choices(p.choices),
            "radius": rat(p.empty.radius),
            "constraints": [q.to_json() for q in p.polys],
            "smtlib": p.empty.smtlib,
            "answers": dict(p.empty.answers),
            "solvers": dict(p.empty.solvers),
            "trust": "solver",
        }
        for p in c.empty
    ]
    out["identities"] = [
        {"choices": _choices(i.choices), "tie": _key(i.tie), "of": _key(i.of), "ratio": rat(i.ratio)}
        if i.weights is None
        else {"choices": _choices(i.choices), "tie": _key(i.tie), "weights": [[int(o), rat(m)] for o, m in sorted(i.weights.items())]}
        for i in c.pats.identities
    ]
    return out


def digest(network: dict, convention: dict) -> str:
    """sha256 of the canonical JSON of the embedded network and convention."""
    import hashlib

    text = json.dumps({"network": network, "convention": convention}, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
