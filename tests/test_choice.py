"""Choice sensitivity decided exactly (verify/decide/choice.py): does SOME assignment of options at
the float ties (the convention's proxy, the left or right derivative at a kink, any tied entry of a
max-pool window) change the machine AD output?

The property test checks kinkcheck's answer against a brute force in the independent reference
(tests/reference.py): every assignment of every option at every float tie, each one a full
reference machine run, when there are at most ``BRUTE`` assignments - no pruning, no zero-cotangent
argument. Witnesses and single-tie causes are replayed in the reference whatever their number."""

from __future__ import annotations

import itertools
import json
import math
import os

from hypothesis import HealthCheck, event, given, note, reject, settings

import kinkcheck
from kinkcheck.decide.choice import choice_sensitivity
from kinkcheck.encodings import program as P

import reference as R
from conftest import EXAMPLES
from strategies import networks

BRUTE = 64


def same(a, b) -> bool:
    return all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b))


def ref_ad(doc, assignment=None):
    return R.ref_machine(doc, side=assignment or None).ad


def as_assignment(ties) -> dict:
    return {(t["layer"], t["sample"], t["unit"]): t["choice"] for t in ties}


def ref_options(ref_m) -> dict:
    """{tie key: options} in the reference's own terms (None: the proxy)."""
    out = {}
    for layer, n, u, _ in ref_m.ties:
        key = (layer, n, u)
        out[key] = [None] + list(ref_m.pool_entries[key]) if key in ref_m.pool_entries else [None, "left", "right"]
    return out


def brute_force(doc, ref_m):
    """True iff some assignment changes the reference's machine AD output; None past BRUTE."""
    opts = ref_options(ref_m)
    keys = sorted(opts)
    if math.prod(len(opts[k]) for k in keys) > BRUTE:
        return None
    base = ref_m.ad
    for combo in itertools.product(*[opts[k] for k in keys]):
        a = {k: o for k, o in zip(keys, combo) if o is not None}
        if a and not same(ref_ad(doc, a), base):
            return True
    return False


@settings(max_examples=40 * int(os.environ.get("KINKCHECK_TEST_SCALE", "1")), suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], deadline=None)
@given(doc=networks(ties=True, extreme=False, max_batch=2, max_width=3))
def test_choice_sensitivity_against_brute_force(doc):
    note(json.dumps(doc))
    try:
        ref_m = R.ref_machine(doc)
    except R.RefNaN:
        reject()
    rep = kinkcheck.verify(doc, values=True)
    assert {(t["layer"], t["sample"], t["unit"]) for t in rep.float_ties} == {k[:3] for k in ref_m.ties}
    base = ref_m.ad
    if rep.choice_witness is not None:
        w = ref_ad(doc, as_assignment(rep.choice_witness["ties"]))
        assert not same(w, base), "the witness does not change the reference's output"
        assert [R.bits(float.fromhex(h) if h not in ("inf", "-inf", "nan") else float(h)) for h in rep.choice_witness["machine_ad"]] == [R.bits(v) for v in w]
    for c in rep.choice_causes:
        assert not same(ref_ad(doc, as_assignment([c])), base), f"cause {c} does not change the output alone"
    if rep.choice_causes == [] and rep.float_ties and not any("choice_causes" in u for u in rep.unknown):
        opts = ref_options(ref_m)
        for key, os_ in opts.items():
            for o in os_[1:]:
                assert same(ref_ad(doc, {key: o}), base), f"tie {key} option {o!r} changes the output alone"
    truth = brute_force(doc, ref_m)
    event(f"float ties: {len(rep.float_ties)}, brute force: {truth}, kinkcheck: {rep.choice_sensitive}")
    if truth is not None:
        assert rep.choice_sensitive is truth
    if rep.choice_sensitive is True:
        assert rep.choice_witness is not None
    elif rep.choice_sensitive is False:
        assert rep.choice_witness is None and rep.choice_causes == []


# ----------------------------------------------------------------------------------------------
# regression: only a mixed assignment changes the output (the old all-left / all-right test missed it)


def test_relu6_maxpool_mixed_assignment():
    # float32: linear [[6], ["w"]] at w = 6, x = 1 -> relu6 -> maxpool1d(2) -> sum, f(w) = max(6, relu6(w)) = 6 near 6
    doc = json.loads((EXAMPLES / "relu6_maxpool_mixed_choice.json").read_text())
    r = kinkcheck.verify(doc, values=True)
    assert (r.differentiable, r.ad_correct, r.ad_in_clarke) == (True, True, True)
    assert r.gradient == ["0"] and r.ad == ["0"] and r.machine_ad == ["0x0p+0"]
    keys = [(t["layer"], t["sample"], t["unit"], t["kink"]) for t in r.float_ties]
    assert keys == [(1, 0, 0, "6"), (1, 0, 1, "6"), (2, 0, 0, "max")]
    assert r.choice_sensitive is True and r.choice_causes == []
    assert r.choice_witness == {
        "ties": [
            {"layer": 1, "op": "relu6", "sample": 0, "unit": 1, "choice": "left"},
            {"layer": 2, "op": "maxpool1d", "sample": 0, "unit": 0, "choice": 1},
        ],
        "method": "exhaustive",
        "machine_ad": ["0x1p+0"],
    }
    assert "choice-sensitive: the float AD output depends on the proxy choice" in r.findings and r.exit_code == 1
    # the reference, independently: all-left (relu6' = 1, first entry: the constant unit) gives 0,
    # all-right (relu6' = 0, last entry) gives 0, left at unit 1 with the last entry gives x = 1
    assert R.ref_machine(doc).ad == [0.0]
    assert R.ref_machine(doc, side="left").ad == [0.0] and R.ref_machine(doc, side="right").ad == [0.0]
    assert R.ref_machine(doc, side={(1, 0, 1): "left", (2, 0, 0): 1}).ad == [1.0]
    assert R.ref_machine(doc, side={(1, 0, 1): "left"}).ad == [0.0]
    assert R.ref_machine(doc, side={(2, 0, 0): 1}).ad == [0.0]


def _doc(layers, params, x=1, dtype="float32"):
    return {"kinkcheck": 1, "dtype": dtype, "params": params, "inputs": {"shape": [1, 1], "values": [[x]]}, "layers": layers, "loss": {"op": "sum"}}


def test_not_choice_sensitive_when_the_cotangent_at_the_tie_is_zero():
    # relu(w x) at w = 0 feeds a zero weight: the cotangent arriving at the tie is 0 under every choice
    doc = _doc([{"op": "linear", "weight": [["w"]]}, {"op": "relu"}, {"op": "linear", "weight": [[0]]}], {"w": {"value": 0}})
    r = kinkcheck.verify(doc, values=True)
    assert [(t["layer"], t["unit"]) for t in r.float_ties] == [(1, 0)]
    assert r.choice_sensitive is False and r.choice_witness is None and r.choice_causes == []
    assert r.machine_ad == ["0x0p+0"] and R.ref_machine(doc, side="right").ad == [0.0]


def test_not_choice_sensitive_when_every_tied_entry_gives_the_same_output():
    # max(w x, w x): the gradient goes to either entry, each gives x
    doc = _doc([{"op": "linear", "weight": [["w"], ["w"]]}, {"op": "maxpool1d", "kernel": 2}], {"w": {"value": 3}})
    r = kinkcheck.verify(doc, values=True)
    assert [(t["layer"], t["entries"]) for t in r.float_ties] == [(1, [0, 1])]
    assert r.choice_sensitive is False and r.choice_witness is None and r.machine_ad == ["0x1p+0"]
    assert R.ref_machine(doc, side={(1, 0, 0): 1}).ad == [1.0]


def test_three_tied_entries_the_middle_one_matters():
    # max(u, w, u) with u = w = 2 (x = 1): first and last entry give dw = 0 (du = 1); the middle one gives dw = 1
    doc = _doc([{"op": "linear", "weight": [["u"], ["w"], ["u"]]}, {"op": "maxpool1d", "kernel": 3}], {"u": {"value": 2}, "w": {"value": 2}})
    r = kinkcheck.verify(doc, values=True)
    assert r.machine_ad == ["0x1p+0", "0x0p+0"]
    assert R.ref_machine(doc, side="left").ad == R.ref_machine(doc, side="right").ad == [1.0, 0.0]
    assert r.choice_sensitive is True
    assert r.choice_causes == [{"layer": 1, "op": "maxpool1d", "sample": 0, "unit": 0, "choice": 1}]
    assert r.choice_witness == {"ties": r.choice_causes, "method": "single tie", "machine_ad": ["0x0p+0", "0x1p+0"]}


def test_over_budget_is_undecided_not_false():
    doc = json.loads((EXAMPLES / "relu6_maxpool_mixed_choice.json").read_text())
    r = kinkcheck.verify(doc, values=True)
    runs = r._runs
    ties = P.ties(runs.net, runs.machine)
    out = choice_sensitivity(runs, ties, max_passes=3)
    assert out["choice_sensitive"] is None and out["witness"] is None and out["passes"] == 3
    assert "choice sensitivity undecided" in out["reason"]
    assert choice_sensitivity(runs, ties)["choice_sensitive"] is True
