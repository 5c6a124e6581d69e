"""Answers of ``search``: a candidate becomes "sat" only after the counterexample network (the file
with the found entries as exact hex floats) passes the ordinary point verification."""

from __future__ import annotations

import copy
import math
import time
from fractions import Fraction

from .entries import set_entries


def reset(res):
    """Forget an unconfirmed candidate (the search goes on)."""
    res.status, res.reason, res.values, res.counterexample, res.confirmed = "unknown", "", {}, None, False


def mismatch(rep, net, k) -> bool:
    """Point check: some machine AD entry is more than k ulps (of itself) from the exact AD."""
    if rep.ad is None or rep.machine_ad is None:
        return False
    for e, m in zip(rep.ad, rep.machine_ad):
        if e.startswith("["):
            return False
        mv = float.fromhex(m)
        if not math.isfinite(mv):
            continue
        if abs(Fraction(mv) - Fraction(e)) > k * Fraction(net.fmt.ulp(mv)):
            return True
    return False


def confirm(res, net, values, goal, t0):
    """Write the counterexample network and confirm it by point verification."""
    from ..api import verify
    from ..encodings.tensorfiles import inline_tensors

    doc = copy.deepcopy(inline_tensors(net))  # self-contained (sidecar tensors inline)
    entries = res._bounds
    for label, val in values.items():
        res.values[label] = net.fmt.to_hex(val)
    set_entries(doc, net, {label: (entries[label][0], res.values[label]) for label in values})
    res.counterexample = doc
    rep = verify(doc, values=(goal == "ad-mismatch"))
    ok = {
        "float-tie": bool(rep.float_ties),
        "real-tie": bool(rep.real_ties),
        "compensation": rep.branch_mismatch is True,  # the goal is a branch mismatch (docs/search.md)
        "choice-sensitive": rep.choice_sensitive is True,
        "ad-mismatch": mismatch(rep, net, res.k_ulps),
    }[goal]
    res.confirmed = ok
    res.status = "sat" if ok else "unknown"
    res.reason = "counterexample confirmed by point verification" if ok else "the solver's model was not confirmed by the point verification"
    res.time_s = time.perf_counter() - t0
    return res
