"""Differentiability from the exact directional derivative (verify/decide/directional.py): f'(w; .)
as linear forms over the direction and ReLU atoms, linear iff f is differentiable.

Checked against the complete cell enumeration (an independent decision: patterns, LPs, cell
gradients) on random networks, on engineered families with exact expected values, and through the
certificate checker (its own symbolic tangent pass)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from gmpy2 import mpq
from hypothesis import HealthCheck, event, given, note, settings

import kinkcheck
from kinkcheck.certify.checker import CheckFailed, Model
from kinkcheck.decide import differentiability as D
from kinkcheck.decide import directional as DD
from kinkcheck.encodings import program as P
from kinkcheck.encodings.runs import run

from strategies import networks

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from bench_decide import make_deep, make_pairs  # noqa: E402


def _decide(doc, **kw):
    net = kinkcheck.load(doc)
    runs = run(net, P.resolve_proxies(net))
    fw = runs.exact_full()
    return DD.decide(runs, fw, P.ties(net, fw), **kw)


@settings(max_examples=30 * int(os.environ.get("KINKCHECK_TEST_SCALE", "1")), suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], deadline=None)
@given(doc=networks(ties=True, extreme=False, max_batch=2))
def test_directional_agrees_with_the_cell_enumeration(doc):
    note(json.dumps(doc))
    net = kinkcheck.load(doc)
    r = kinkcheck.verify(net, values=True)
    if not r.real_ties or r._runs.exact is None or not DD.applies(net):
        event("not applicable")
        return
    a = _decide(doc, timeout_s=20)
    event(f"differentiable: cells {r.differentiable}, directional {a.differentiable} ({a.solver})")
    assert a.differentiable is not None
    if r.differentiable is not None:
        assert a.differentiable is r.differentiable
    # g and the witness direction, re-checked by the certificate checker's own tangent pass
    M = Model(net, net.convention.to_json()["ops"])
    G = M.linear_map(lambda k: "auto")
    assert G == a.gradient
    if a.differentiable is False:
        assert len(a.direction) == net.n_grad
        assert M.tangent(a.direction, lambda k: "auto")[1] != sum(x * y for x, y in zip(a.direction, G))
    if r.differentiable is True and r.gradient is not None:
        assert [str(x) if x.denominator != 1 else str(x.numerator) for x in a.gradient] == r.gradient
    if a.differentiable is True:
        # the same verdict through verify() with the directional path first, and its certificate
        old = D.DIRECTIONAL_FROM
        D.DIRECTIONAL_FROM = 1
        try:
            rd = kinkcheck.verify(net, values=True)
        finally:
            D.DIRECTIONAL_FROM = old
        assert rd.differentiable is True and rd.ad_correct is r.ad_correct
        if rd.decision["method"] == "directional":
            assert kinkcheck.check_certificate(json.loads(json.dumps(rd.certificate())))["valid"]


def test_compensating_pairs_at_64_and_100_ties_are_decided_and_checked():
    for m, k in ((64, 16), (100, 25)):
        r = kinkcheck.verify(make_pairs(m), values=True)
        assert len(r.real_ties) == m and r.decision["method"] == "directional"
        # f(w) = sum_k w_k: differentiable with gradient (1, ..., 1); AD (relu'(0) = 0) gives 0
        assert (r.differentiable, r.ad_correct, r.ad_in_clarke) == (True, False, False)
        assert r.gradient == ["1"] * k and r.ad == ["0"] * k
        assert "exact rewriting" in r.reason
        cert = json.loads(json.dumps(r.certificate()))
        assert cert["evidence"]["method"] == "directional" and cert["evidence"]["argument"] == "rewriting"
        out = kinkcheck.check_certificate(cert)
        assert out["valid"] and out["complete"] and "trusted" not in out
        # a forged gradient or a forged linearity claim is refused
        bad = json.loads(json.dumps(cert))
        bad["claims"]["gradient"] = ["1"] * (k - 1) + ["2"]
        with pytest.raises(CheckFailed):
            kinkcheck.check_certificate(bad)


def test_the_checker_refuses_rewriting_when_atoms_remain(monkeypatch):
    # relu(w x) at w = 0 with x = 1: f'(0; d) = max(d, 0), not linear
    doc = {"kinkcheck": 1, "dtype": "float32", "params": {"w": {"value": 0}}, "inputs": {"shape": [1, 1], "values": [[1]]},
           "layers": [{"op": "linear", "weight": [["w"]]}, {"op": "relu"}], "loss": {"op": "sum"}}
    a = _decide(doc)
    assert a.differentiable is False and a.direction == [mpq(-1)] and a.gradient == [mpq(1)]
    monkeypatch.setattr(D, "DIRECTIONAL_FROM", 1)

    def boom(*args, **kw):
        raise D.Budget("forced")

    monkeypatch.setattr(D, "enumerate_cells", boom)
    monkeypatch.setattr(D, "SAMPLE_FROM", None)
    r = kinkcheck.verify(doc, values=True)
    assert r.decision["method"] == "directional" and (r.differentiable, r.ad_correct) == (False, False)
    cert = json.loads(json.dumps(r.certificate()))
    assert cert["evidence"]["direction"] == ["-1"]
    assert kinkcheck.check_certificate(cert)["valid"]
    forged = json.loads(json.dumps(cert))
    forged["evidence"]["direction"] = ["1"]  # along +1, f'(0; 1) = 1 = g . 1: shows nothing
    with pytest.raises(CheckFailed, match="along the given direction"):
        kinkcheck.check_certificate(forged)
    forged = json.loads(json.dumps(cert))
    forged["claims"].update(differentiable=True, ad_correct=False, gradient=["1"])
    forged["evidence"] = {"method": "directional", "argument": "rewriting"}
    with pytest.raises(CheckFailed, match="do not cancel"):
        kinkcheck.check_certificate(forged)


# relu(relu(w) + relu(-w)) - relu(relu(w)) - relu(relu(-w)) = relu(|w|) - |w| = 0: linear, but the
# rewriting leaves atoms (max(|w|, 0) is not syntactically |w|): the solver decides
NESTED = {
    "kinkcheck": 1, "dtype": "float32", "params": {"w": {"value": 0}}, "inputs": {"shape": [1, 1], "values": [[1]]},
    "layers": [
        {"op": "linear", "weight": [["w"], ["-w"]]}, {"op": "relu"},
        {"op": "linear", "weight": [[1, 1], [1, 0], [0, 1]]}, {"op": "relu"},
        {"op": "linear", "weight": [[1, -1, -1]]},
    ],
    "loss": {"op": "sum"},
}


def test_solver_path_when_the_rewriting_leaves_atoms(monkeypatch):
    a = _decide(NESTED)
    assert a.differentiable is True and a.gradient == [mpq(0)] and a.smtlib is not None and a.solver.startswith("z3")
    monkeypatch.setattr(D, "DIRECTIONAL_FROM", 1)
    r = kinkcheck.verify(NESTED, values=True)
    assert len(r.real_ties) == 5 and r.decision["method"] == "directional"
    assert (r.differentiable, r.ad_correct, r.ad_in_clarke) == (True, True, True) and r.gradient == ["0"]
    cert = json.loads(json.dumps(r.certificate()))
    ev = cert["evidence"]
    assert ev["argument"] == "solver" and ev["answer"] == "unsat" and ev["trust"] == "solver" and "(check-sat)" in ev["smtlib"]
    out = kinkcheck.check_certificate(cert)
    assert out["valid"] and out["trusted"] == ["smtlib"] and not out["complete"]


def test_two_layer_family_is_not_differentiable_by_an_exact_direction():
    a = _decide(make_deep(20))
    assert a.differentiable is False
    net = kinkcheck.load(make_deep(20))
    M = Model(net, net.convention.to_json()["ops"])
    G = M.linear_map(lambda k: "auto")
    assert G == a.gradient
    assert M.tangent(a.direction, lambda k: "auto")[1] != sum(x * y for x, y in zip(a.direction, G))


def test_rewriting_with_ties_whose_tangent_is_zero(monkeypatch):
    # max-pool of (relu(w) - relu(-w), c, c) with c = 0 a constant tied entry, plus relu(0 * w)
    # ties: the constant entries and the relu of a constant have tangent 0 (the number, not a form)
    doc = {
        "kinkcheck": 1, "dtype": "float32", "params": {"w": {"value": 0}}, "inputs": {"shape": [1, 1], "values": [[1]]},
        "layers": [
            {"op": "linear", "weight": [["w"], ["-w"], [0], [0]]}, {"op": "relu"},
            {"op": "linear", "weight": [[1, -1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]},
            {"op": "maxpool1d", "kernel": 3},
        ],
        "loss": {"op": "sum"},
    }
    # f(w) = max(w, 0, 0) = relu(w): not differentiable at 0
    a = _decide(doc)
    assert a.differentiable is False and a.gradient == [mpq(1)]
    # the same network without the w entry in the pool: f = max(0, 0) = 0, linear by rewriting
    doc2 = json.loads(json.dumps(doc))
    doc2["layers"][2]["weight"] = [[0, 0, 1, 0], [0, 0, 0, 1]]
    doc2["layers"][3]["kernel"] = 2
    a2 = _decide(doc2)
    assert a2.differentiable is True and a2.gradient == [mpq(0)] and a2.smtlib is None
    monkeypatch.setattr(D, "DIRECTIONAL_FROM", 1)
    r = kinkcheck.verify(doc2, values=True)
    assert r.decision["method"] == "directional" and (r.differentiable, r.ad_correct, r.ad_in_clarke) == (True, True, True)
    out = kinkcheck.check_certificate(json.loads(json.dumps(r.certificate())))
    assert out["valid"] and out["complete"]


def test_out_of_time_is_undecided_not_a_verdict():
    a = _decide(make_pairs(64), timeout_s=0)
    assert a.differentiable is None and "ran out of time" in a.reason
