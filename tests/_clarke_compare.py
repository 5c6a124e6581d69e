"""One acceptance case: kinkcheck's public API against the independent reference
(tests/_clarke_reference.py). Used by tests/test_acceptance_clarke.py; run as a script for a
summary of a JSONL log written by that test (``python tests/_clarke_compare.py LOG``).

Disagreements (each one is a bug in kinkcheck or in the reference):

* the certificate does not re-validate (``kinkcheck.check_certificate``);
* the real ties differ from the reference's exact tie set;
* kinkcheck's exact AD output differs from the reference's own backward pass;
* differentiable = True with gradient g, but a sampled direction d has f'(w; d) != g . d (the
  reference's directional derivatives are exact: the t-coefficient of f along the arc);
* differentiable = False although... (nothing: the reference cannot refute it in general; with at
  most 3 trainable scalars a linear fit of every sampled f'(w; d) is reported as a *suspect*);
* ad_correct = True but AD is not kinkcheck's gradient, or f'(w; d) != AD . d somewhere;
* ad_in_clarke = False but AD is a convex combination of limiting gradients the reference found;
* ad_in_clarke = True but AD is not in conv(G) even after following kinkcheck's own witness
  directions/arcs: a *suspect* (the reference is an inner approximation) - reported, investigated.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import Counter
from fractions import Fraction

import _clarke_reference as C

VERDICTS = ("differentiable", "ad_correct", "ad_in_clarke")


def run_case(doc: dict, meta: dict, *, seed: int = 0) -> dict:
    import kinkcheck  # the public API only

    rec = {"categories": meta.get("categories", []), "dtype": meta.get("dtype"), "activations": meta.get("activations"),
           "loss": doc["loss"]["op"], "problems": [], "suspects": []}
    t0 = time.perf_counter()
    rep = kinkcheck.verify(doc, values=True)
    rec["t_verify"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    cert = json.loads(json.dumps(rep.certificate()))
    try:
        kinkcheck.check_certificate(cert)
    except kinkcheck.CheckFailed as exc:
        rec["problems"].append(f"certificate does not check: {exc}")
    rec["t_check"] = time.perf_counter() - t0
    for k in VERDICTS:
        rec[k] = getattr(rep, k)
    rec["unknown"] = [str(u) for u in rep.unknown]
    rec["reason"] = rep.reason
    rec["n_real_ties"] = len(rep.real_ties)
    rec["n_float_only"] = len({(t["layer"], t["sample"], t["unit"]) for t in rep.float_ties}
                              - {(t["layer"], t["sample"], t["unit"]) for t in rep.real_ties})
    rec["nulls"] = [k for k in VERDICTS if getattr(rep, k) is None]

    t0 = time.perf_counter()
    ref = C.ClarkeRef(doc)
    rec["n_params"] = ref.n
    extra = C.certificate_arcs(cert, ref.n)
    ref.sample(random.Random(seed), extra=extra)
    v = ref.verdict()
    rec["t_ref"] = time.perf_counter() - t0
    rec["ref"] = {"G": len(v.G), "arcs": v.arcs_used, "dropped": v.arcs_dropped, "not_differentiable": v.not_differentiable,
                  "ad_in_clarke": v.ad_in_clarke, "witness_arcs": len(extra)}
    P = rec["problems"]

    kc_ties = {(t["layer"], t["sample"], t["unit"]) for t in rep.real_ties}
    if kc_ties != v.ties:
        P.append(f"real ties differ: kinkcheck only {sorted(kc_ties - v.ties)}, reference only {sorted(v.ties - kc_ties)}")
    kc_ad = [Fraction(x) for x in rep.ad] if rep.ad is not None else None
    if kc_ad != v.ad:
        P.append(f"exact AD differs: kinkcheck {rep.ad}, reference {[str(x) for x in v.ad]}")
    if rep.differentiable is True:
        g = [Fraction(x) for x in rep.gradient]
        mm = v.directional_mismatch(g)
        if mm is not None:
            P.append(f"differentiable with gradient {rep.gradient}, but f'(w; {[str(x) for x in mm[0]]}) = {mm[1]}")
    elif rep.differentiable is False and v.fit is not None and v.n <= 3:
        rec["suspects"].append(f"not differentiable, but every sampled f'(w; d) is linear (g = {[str(x) for x in v.fit]})")
    if rep.differentiable is None and v.not_differentiable:
        rec["ref_decides"] = "not differentiable"
    if rep.ad_correct is True:
        if rep.differentiable is not True or [Fraction(x) for x in rep.gradient] != kc_ad:
            P.append("ad_correct = True but AD is not the reported gradient")
        mm = v.directional_mismatch(v.ad)
        if mm is not None:
            P.append(f"ad_correct = True, but f'(w; {[str(x) for x in mm[0]]}) = {mm[1]} != AD . d")
    if rep.ad_in_clarke is False and v.ad_in_clarke:
        P.append(f"ad_in_clarke = False, but AD is a convex combination of limiting gradients {[[str(x) for x in g] for g in v.G]}"
                 f" (weights {[str(x) for x in v.weights]})")
    if rep.ad_in_clarke is True and not v.ad_in_clarke:
        (rec["suspects"] if v.n <= 3 else rec.setdefault("ref_incomplete", [])).append(
            "ad_in_clarke = True, AD not in conv(G) of the reference (kinkcheck's witnesses followed)")
    if rep.ad_in_clarke is None and v.ad_in_clarke:
        rec["ref_decides_clarke"] = True
    return rec


def summary(records) -> str:
    out = []
    n = len(records)
    out.append(f"cases: {n}")
    dis = [r for r in records if r["problems"]]
    sus = [r for r in records if r["suspects"]]
    out.append(f"disagreements: {len(dis)}; suspects: {len(sus)}; reference incomplete (ad_in_clarke true, not found): "
               f"{sum(1 for r in records if r.get('ref_incomplete'))}")
    nulls = [r for r in records if r["nulls"]]
    out.append(f"cases with a null verdict: {len(nulls)} ({sum(1 for r in nulls if r['n_real_ties'] <= 12)} with <= 12 real ties)")
    by_v = Counter(k for r in records for k in r["nulls"])
    out.append("null verdicts by kind: " + ", ".join(f"{k} {by_v[k]}" for k in VERDICTS))
    cats = Counter(c for r in records for c in (r["categories"] or ["none"]))
    ncats = Counter(c for r in nulls for c in (r["categories"] or ["none"]))
    out.append("by engineered category (cases / with a null): " + ", ".join(f"{c} {cats[c]}/{ncats[c]}" for c in sorted(cats)))
    bins = [(0, 0), (1, 2), (3, 6), (7, 12), (13, 10**9)]
    parts = []
    for lo, hi in bins:
        rs = [r for r in records if lo <= r["n_real_ties"] <= hi]
        parts.append(f"{lo}-{hi if hi < 10**9 else 'inf'}: {len(rs)}/{sum(1 for r in rs if r['nulls'])}")
    out.append("by real ties (cases / with a null): " + ", ".join(parts))
    acts = Counter(a for r in nulls for a in set(r["activations"] or []))
    out.append("activations in null cases: " + ", ".join(f"{a} {c}" for a, c in acts.most_common()))
    def why(r):
        text = "; ".join(r["unknown"]) or r.get("reason", "")
        for cut in ("undecided: ", "but the list may miss cusp regions: ", "cells found"):
            if cut in text:
                return text.split(cut, 1)[1][:100] or cut
        return text[:100]

    reasons = Counter(why(r) for r in nulls)
    out.append("null reasons: " + "; ".join(f"{k} x{c}" for k, c in reasons.most_common(8)))
    for key in ("t_verify", "t_check", "t_ref"):
        ts = sorted(r[key] for r in records)
        if ts:
            out.append(f"{key}: total {sum(ts):.1f} s, median {ts[len(ts) // 2]:.3f} s, max {ts[-1]:.2f} s")
    out.append(f"reference decides where kinkcheck is null: not differentiable {sum(1 for r in records if r.get('ref_decides'))},"
               f" AD in Clarke {sum(1 for r in records if r.get('ref_decides_clarke'))}")
    nd = [r for r in records if r.get("differentiable") is False]
    ac = [r for r in records if r.get("ad_in_clarke") is True]
    out.append(f"reference confirms independently: not differentiable {sum(1 for r in nd if r['ref']['not_differentiable'])}/{len(nd)},"
               f" AD in Clarke {sum(1 for r in ac if r['ref']['ad_in_clarke'])}/{len(ac)}; differentiable (checked on every"
               f" sampled direction) {sum(1 for r in records if r.get('differentiable') is True)},"
               f" not in Clarke (not refuted) {sum(1 for r in records if r.get('ad_in_clarke') is False)}")
    for r in dis[:20]:
        out.append(f"DISAGREEMENT {r.get('case')}: {r['problems']}")
    for r in sus[:20]:
        out.append(f"SUSPECT {r.get('case')}: {r['suspects']}")
    return "\n".join(out)


if __name__ == "__main__":  # pragma: no cover - a helper for the thorough run
    recs = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    print(summary(recs))
