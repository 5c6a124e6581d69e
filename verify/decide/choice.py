"""Bifurcation zone (Bertoin et al. 2021): would another proxy choice change the machine AD output?

Two machine backward passes on the same machine forward: every float tie using its left one-sided
derivative (ReLU'(0)=0; max-pool: first maximal entry) and every float tie using its right one
(ReLU'(0)=1; max-pool: last). The AD outputs are compared as numbers (-0 equals +0; two NaNs are
equal). ``causes`` lists the ties that change the output when switched alone (left versus right,
every other tie keeping the convention's proxy), up to ``MAX_SINGLE`` ties.
"""

from __future__ import annotations

import numpy as np

MAX_SINGLE = 256


def same(a, b) -> bool:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


def choice_sensitivity(runs, float_ties) -> dict:
    if not float_ties:
        return {"choice_sensitive": False, "causes": [], "checked_singly": 0}
    left = runs.machine_ad(side="left")
    right = runs.machine_ad(side="right")
    all_at_once = not same(left, right)
    causes = []
    checked = 0
    for t in float_ties[:MAX_SINGLE]:
        checked += 1
        a = runs.machine_ad(only=(t.key, "left"))
        b = runs.machine_ad(only=(t.key, "right"))
        if not same(a, b):
            causes.append(t)
    return {
        "choice_sensitive": all_at_once or bool(causes),
        "all_at_once": all_at_once,
        "causes": causes,
        "checked_singly": checked,
    }
