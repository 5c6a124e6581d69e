"""Differential tests of the decision procedure (differentiability, AD correctness, Clarke).

Random small networks with ties engineered on purpose are decided, then cross-checked against
exact evaluation near w:
- every limiting gradient the procedure reports must be met: the gradient at w + t*d (t tiny,
  d inside a reported cell) equals that cell's gradient;
- every gradient sampled at w + t*d for random directions d (points where f is smooth) must be one
  of the reported limiting gradients - so the list of cells is complete;
- "differentiable" must agree with the samples (all equal), and the certificate must check.
"""

import json
import random

import numpy as np
import pytest
from gmpy2 import mpq
from hypothesis import HealthCheck, assume, given, settings

import kinkcheck
from kinkcheck.encodings import program as P
from kinkcheck.encodings.exact import ExactArith

from strategies import networks


def margin(net):
    """Smallest non-zero distance of an exact value to a kink (units), between distinct pool
    entries (windows) or of an l1 residual to 0: perturbations far below it only move ties."""
    A = ExactArith()
    fw = P.forward(net, A)
    gaps = []
    for L in net.layers:
        x = fw.xs[L.index].reshape(-1)
        if L.act is not None:
            gaps += [abs(v - k.at) for v in x for k in L.act.kinks if v != k.at]
        elif L.op.startswith("maxpool"):
            win = x.reshape(net.batch, -1)[:, P.pool_index(L)]
            gaps += [abs(a - b) for row in win.reshape(-1, win.shape[-1]) for a in row for b in row if a != b]
    if fw.residual is not None:
        gaps += [abs(v) for v in fw.residual.reshape(-1) if v != 0]
    return min(gaps + [mpq(1)])


def limit_gradient(net, proxies, direction):
    """lim_{t -> 0+} of the gradient at w + t*direction: along the ray the gradient of the active
    selection is a polynomial in t (degree <= 3 here), so exact Lagrange extrapolation from six
    tiny t gives the limit exactly (None if one of the points is not smooth)."""
    scale = margin(net) / (1 + sum(abs(v) for v in direction)) / 2**40
    TS = [scale / 2**i for i in range(6)]
    ys = [gradient_at(net, proxies, direction, t) for t in TS]
    if any(y is None for y in ys):
        return None
    out = []
    for k in range(len(ys[0])):
        v = mpq(0)
        for i, ti in enumerate(TS):
            w = mpq(1)
            for j, tj in enumerate(TS):
                if j != i:
                    w *= (0 - tj) / (ti - tj)
            v += ys[i][k] * w
        out.append(v)
    return out


def gradient_at(net, proxies, direction, t):
    """Exact AD output at w + t*direction (a smooth point for a generic direction)."""
    theta = np.empty(net.theta.size, dtype=object)
    for i, v in enumerate(net.theta.tolist()):
        theta[i] = mpq(v)
    for k, i in enumerate(net.trainable_index.tolist()):
        theta[i] = theta[i] + t * direction[k]
    A = ExactArith()
    fw = P.forward(net, A, theta=theta)
    if P.ties(net, fw):
        return None  # not a smooth point: skip this sample
    return list(P.backward(net, A, fw, proxies))


def decide(doc):
    net = kinkcheck.load(doc)
    assume(net.n_grad <= 24)
    r = kinkcheck.verify(net, values=True)
    assume(0 < len(r.real_ties) <= 6)
    return net, r


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], deadline=None)
@given(networks(dtypes=["float32", "float64"], archs=["mlp", "pool1d"], ties=True, extreme=False, max_width=4, max_batch=2, activations=("relu", "leaky_relu", "hardtanh", "relu6", "hardsigmoid", "abs", "identity")))
def test_decisions_against_nearby_gradients(doc):
    net, r = decide(doc)
    v = r._verdict
    assume(v.enumeration is not None)
    proxies = r._runs.proxies
    limiting = [tuple(c.gradient) for c in v.enumeration.cells]
    # each reported cell is met at a point inside it
    for c in v.enumeration.cells:
        g = limit_gradient(net, proxies, c.witness)
        if g is not None:
            assert tuple(g) == tuple(c.gradient)
    # random directions land in reported cells (when the list is complete, not a sample)
    rng = random.Random(0)
    for _ in range(6 if v.enumeration.complete else 0):
        d = [mpq(rng.randint(-7, 7), rng.randint(1, 5)) for _ in range(net.n_grad)]
        g = limit_gradient(net, proxies, d)
        if g is not None:
            assert tuple(g) in limiting
    if r.differentiable is True:
        assert len(set(limiting)) == 1
        assert [mpq(x) for x in r.gradient] == list(limiting[0])
    elif r.differentiable is False:
        assert len(set(limiting)) >= 2
    # the certificate checks
    cert = json.loads(json.dumps(r.certificate()))
    assert kinkcheck.check_certificate(cert)["valid"]


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], deadline=None)
@given(networks(dtypes=["float32"], archs=["mlp"], ties=True, extreme=False, max_width=4, max_batch=2, losses=["sum", "dot"]))
def test_clarke_verdict_is_consistent(doc):
    net, r = decide(doc)
    v = r._verdict
    assume(v.enumeration is not None and r.ad_in_clarke is not None)
    ad = [mpq(x) for x in r.ad]
    grads = [c.gradient for c in v.enumeration.cells]
    if r.ad_in_clarke:
        if v.clarke_weights is not None:
            lam = v.clarke_weights
            assert all(x >= 0 for x in lam) and sum(lam) == 1
            assert [sum(lam[i] * grads[i][k] for i in range(len(grads))) for k in range(len(ad))] == ad
        else:
            assert all(g == ad for g in grads)
    else:
        sep = v.separator
        for g in grads:
            assert sum(sep[k] * (ad[k] - g[k]) for k in range(len(ad))) > 0


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], deadline=None)
@given(networks(dtypes=["float32"], archs=["mlp"], ties=True, extreme=False, max_width=5, max_batch=3,
                activations=("relu", "leaky_relu", "hardtanh", "abs", "hardsigmoid"), losses=["sum", "dot", "l1"]))
def test_hinge_path_agrees_with_cell_enumeration(doc):
    """The fast hinge decomposition (ties in one layer) and the general enumeration agree."""
    from kinkcheck.decide import differentiability as D
    from kinkcheck.decide import hinge

    net = kinkcheck.load(doc)
    assume(net.n_grad <= 24)
    r = kinkcheck.verify(net, values=True)
    ties = P.ties(net, r._runs.exact_full())
    assume(0 < len(ties) <= 6 and hinge.applies(net, ties))
    runs = r._runs
    ad = list(runs.exact_ad())
    h = D._decide_hinge(runs, runs.exact_full(), ties, ad)
    assume(h is not None)
    old = D.HINGE_FROM, D.SAMPLE_FROM
    D.HINGE_FROM, D.SAMPLE_FROM = 10**9, None  # force the general procedure (complete enumeration)
    try:
        g = D._decide_ties(runs, ties, 4096, 60.0)
    finally:
        D.HINGE_FROM, D.SAMPLE_FROM = old
    assert g.method == "cells"
    assert h.differentiable == g.differentiable
    assert h.ad_correct == g.ad_correct
    if h.ad_in_clarke is not None and g.ad_in_clarke is not None:
        assert h.ad_in_clarke == g.ad_in_clarke
    if h.gradient is not None:
        assert h.gradient == g.gradient
    cert = json.loads(json.dumps(r.certificate()))
    assert kinkcheck.check_certificate(cert)["valid"]


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], deadline=None)
@given(networks(dtypes=["float32"], archs=["mlp", "pool1d"], ties=True, extreme=False, max_width=4, max_batch=3,
                activations=("relu", "leaky_relu", "hardtanh", "relu6", "hardsigmoid", "abs")))
def test_sufficient_conditions_agree_with_the_general_procedure(doc):
    """Whenever a paper's sufficient condition holds, the general procedure finds AD in Clarke."""
    net = kinkcheck.load(doc)
    assume(net.n_grad <= 24)
    r = kinkcheck.verify(net, values=True)
    assume(0 < len(r.real_ties) <= 6 and r.decision["theorems"])
    v = r._verdict
    if v.clarke_by is None:
        assert r.ad_in_clarke is True, (r.decision["theorems"], r.reason)


def test_theorem_decides_when_the_enumeration_runs_out(monkeypatch):
    """Budget exhausted (forced): the private-bias condition still gives 'AD in Clarke', and the
    certificate carries the premises, which the checker re-verifies."""
    from kinkcheck.decide import cells

    def boom(*a, **k):
        raise cells.Budget("forced for the test")

    monkeypatch.setattr("kinkcheck.decide.differentiability.enumerate_cells", boom)
    r = kinkcheck.verify(str(__import__("conftest").EXAMPLES / "bias_relu_clarke.json"))
    assert r.differentiable is None and r.ad_in_clarke is True
    cert = json.loads(json.dumps(r.certificate()))
    assert cert["evidence"]["theorem"] == "private-bias"
    assert kinkcheck.check_certificate(cert)["valid"]
    # the same claim on the shared-bias counterexample is refused by the checker
    bad = kinkcheck.verify(str(__import__("conftest").EXAMPLES / "hardsigmoid_shared_bias.json")).certificate()
    bad["claims"]["ad_in_clarke"] = True
    bad["evidence"] = {"theorem": "private-bias"}
    with pytest.raises(kinkcheck.CheckFailed):
        kinkcheck.check_certificate(json.loads(json.dumps(bad)))


@pytest.mark.parametrize("name", ["private-bias", "per-layer-lambda", "independent-activations"])
def test_checker_verifies_each_theorem_premise(name):
    from conftest import EXAMPLES

    good = kinkcheck.verify(str(EXAMPLES / "bias_relu_clarke.json")).certificate()
    good["evidence"] = {"theorem": name}
    good["claims"].update(differentiable=None, ad_correct=None, ad_in_clarke=True)
    assert kinkcheck.check_certificate(json.loads(json.dumps(good)))["valid"]
    for bad_example in ("hardsigmoid_shared_bias.json", "relu_minus_relu.json", "maxpool_u_b.json"):
        bad = kinkcheck.verify(str(EXAMPLES / bad_example)).certificate()
        bad["evidence"] = {"theorem": name}
        bad["claims"].update(differentiable=None, ad_correct=None, ad_in_clarke=True)
        with pytest.raises(kinkcheck.CheckFailed):
            kinkcheck.check_certificate(json.loads(json.dumps(bad)))


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], deadline=None)
@given(networks(dtypes=["float32"], archs=["mlp", "pool1d"], ties=True, extreme=False, max_width=4, max_batch=3,
                activations=("relu", "leaky_relu", "hardtanh", "relu6", "hardsigmoid", "abs"), losses=["sum", "dot", "l1"]))
def test_sampled_cells_and_ad_pattern_agree_with_the_complete_enumeration(doc):
    """The cheap paths (sampled cells; the AD pattern's LP) never contradict the complete
    enumeration: whatever they decide, the enumeration decides the same."""
    from kinkcheck.decide import cells
    from kinkcheck.decide import differentiability as D

    net = kinkcheck.load(doc)
    assume(net.n_grad <= 24)
    r = kinkcheck.verify(net, values=True)
    runs = r._runs
    assume(runs.exact is not None and 0 < len(r.real_ties) <= 6)
    fw = runs.exact_full()
    ties = P.ties(net, fw)
    ad = list(runs.exact_ad())
    s = D._decide_sampled(runs, fw, ties, ad)
    old = D.HINGE_FROM, D.SAMPLE_FROM
    D.HINGE_FROM, D.SAMPLE_FROM = 10**9, None
    try:
        full = D._decide_ties(runs, ties, 4096, 60.0)
    finally:
        D.HINGE_FROM, D.SAMPLE_FROM = old
    assert full.method == "cells"
    if s is not None:
        for c in s.enumeration.cells:  # every sampled cell is one of the complete list
            assert any(c.choices == e.choices and c.gradient == e.gradient for e in full.enumeration.cells)
        if s.differentiable is not None:
            assert s.differentiable == full.differentiable
        if s.ad_in_clarke is not None and full.ad_in_clarke is not None:
            assert s.ad_in_clarke == full.ad_in_clarke
    c = cells.ad_pattern_cell(runs, fw, ties)
    if c is not None and c.gradient == ad and full.ad_in_clarke is not None:
        assert full.ad_in_clarke is True
    if full.ad_in_clarke is False:
        assert c is None or c.gradient != ad


def test_ad_pattern_condition_decides_max_pool_clarke_and_is_checked(monkeypatch):
    """The max-pool LP condition: the AD pattern's cell is non-empty, so AD is a limiting
    gradient. It decides when the enumeration runs out (forced) and its certificate checks; on the
    u-b max-pool counterexample it does not hold, and a forged claim is refused."""
    from kinkcheck.decide import cells

    from conftest import EXAMPLES

    doc = {
        "kinkcheck": 1,
        "dtype": "float32",
        "params": {"W": {"shape": [2, 1], "values": [[0], [0]]}, "b": {"shape": [2], "values": [1, 1]}},
        "inputs": {"shape": [1, 1], "values": [[1]]},
        "layers": [{"op": "linear", "weight": "W", "bias": "b"}, {"op": "maxpool1d", "kernel": 2}, {"op": "linear", "weight": [[2]]}],
        "loss": {"op": "sum"},
    }
    ref = kinkcheck.verify(doc)
    assert ref.real_ties and ref.ad_in_clarke is True

    def boom(*a, **k):
        raise cells.Budget("forced for the test")

    monkeypatch.setattr("kinkcheck.decide.differentiability.enumerate_cells", boom)
    monkeypatch.setattr("kinkcheck.decide.differentiability.SAMPLE_FROM", None)
    r = kinkcheck.verify(doc)
    assert r.differentiable is None and r.ad_in_clarke is True
    assert r.decision["theorems"][-1].startswith("ad-pattern")
    cert = json.loads(json.dumps(r.certificate()))
    assert cert["evidence"]["theorem"] == "ad-pattern"
    assert kinkcheck.check_certificate(cert)["valid"]
    bad = json.loads(json.dumps(cert))
    bad["evidence"]["ad_cell"]["witness"] = [str(-mpq(x) - 1) for x in bad["evidence"]["ad_cell"]["witness"]]
    with pytest.raises(kinkcheck.CheckFailed):
        kinkcheck.check_certificate(bad)
    ub = kinkcheck.verify(str(EXAMPLES / "maxpool_u_b.json"))
    assert not any(t.startswith("ad-pattern") for t in ub.decision["theorems"])
    forged = ub.certificate()
    forged["claims"].update(differentiable=None, ad_correct=None, ad_in_clarke=True)
    forged["evidence"] = {"theorem": "ad-pattern", "ad_cell": cert["evidence"]["ad_cell"]}
    with pytest.raises(kinkcheck.CheckFailed):
        kinkcheck.check_certificate(json.loads(json.dumps(forged)))


def test_two_layer_compensating_pairs_are_differentiable_with_a_checked_enumeration():
    """Ties in two layers that cancel: f(w) = sum_k ReLU(d_k) - ReLU(-d_k), d_k = ReLU(w_k) - ReLU(-w_k)
    at w = 0 equals sum_k w_k. Differentiable with gradient (1, 1, 1); AD (ReLU'(0) = 0) gives 0,
    outside the Clarke set {(1, 1, 1)}. 12 ties; opposite-ray branches are pruned in closed form."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("bench_decide", Path(__file__).resolve().parent.parent / "benchmarks" / "bench_decide.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    r = kinkcheck.verify(bench.make_pairs(12), values=True)
    assert len(r.real_ties) == 12
    assert (r.differentiable, r.ad_correct, r.ad_in_clarke) == (True, False, False)
    assert r.gradient == ["1", "1", "1"] and r.ad == ["0", "0", "0"]
    assert r.decision["n_cells"] == 8  # one cell per sign pattern of (dw_0, dw_1, dw_2)
    cert = json.loads(json.dumps(r.certificate()))
    assert kinkcheck.check_certificate(cert)["valid"]
    cert["evidence"]["empty"].pop()  # drop one Gordan certificate: the enumeration is incomplete
    with pytest.raises(kinkcheck.CheckFailed):
        kinkcheck.check_certificate(cert)


def test_zero_functional_ties_do_not_block_a_complete_clarke_verdict():
    """f = ReLU(ReLU(w1) + 1) + ReLU(w2 * ReLU(w3)) at 0 with ReLU'(0) = 2 (a proxy outside the Clarke
    interval). The tie ReLU(w2 * ReLU(w3)) has an identically zero functional and a non-affine input;
    its choice changes no gradient at w, so the first-order cells of the other (independent) ties
    are complete: limiting gradients (0,0,0) and (1,0,0), AD = (2,0,0) is not in Clarke - certified."""
    doc = {
        "kinkcheck": 1, "dtype": "float32",
        "params": {"w1": {"value": 0}, "w2": {"value": 0}, "w3": {"value": 0}},
        "inputs": {"shape": [1, 1], "values": [[1]]},
        "layers": [{"op": "linear", "weight": [["w1"], ["w3"]]}, {"op": "relu", "kink_derivatives": [2]},
                   {"op": "linear", "weight": [[1, 0], [0, "w2"]], "bias": [1, 0]}, {"op": "relu", "kink_derivatives": [2]},
                   {"op": "linear", "weight": [[1, 1]]}],
        "loss": {"op": "sum"},
    }
    r = kinkcheck.verify(doc, values=True)
    assert [(t["layer"], t["unit"]) for t in r.real_ties] == [(1, 0), (1, 1), (3, 1)]
    assert (r.differentiable, r.ad_correct, r.ad_in_clarke) == (False, False, False)
    assert r.ad == ["2", "0", "0"]
    assert sorted(r.decision["limiting_gradients"]) == [["0", "0", "0"], ["1", "0", "0"]]
    cert = json.loads(json.dumps(r.certificate()))
    assert kinkcheck.check_certificate(cert)["complete"] is True


def test_affine_tie_inputs_looks_only_up_to_the_last_tie():
    """f(w, v) = v * (relu(w) - relu(-w)) at (0, 1): the ties are in layer 1, whose arguments w and
    -w are affine in (w, v); the trainable v after them does not matter (issue 11: the test used to
    fail whenever any later layer had trainable weights, leaving "not in Clarke" undecided).
    Near (0, 1), f = v*w: gradient (1, 0); AD with relu'(0) = 0 gives (0, 0), outside {(1, 0)}."""
    import kinkcheck
    from kinkcheck.decide.cells import affine_tie_inputs

    doc = {
        "kinkcheck": 1,
        "dtype": "float32",
        "params": {"w": {"value": 0}, "v": {"value": 1}},
        "inputs": {"shape": [1, 1], "values": [[1]]},
        "layers": [{"op": "linear", "weight": [["w"], ["-w"]]}, {"op": "relu"}, {"op": "linear", "weight": [["v", "-v"]]}],
        "loss": {"op": "sum"},
    }
    net = kinkcheck.load(doc)
    assert affine_tie_inputs(net, upto=1) and not affine_tie_inputs(net)
    r = kinkcheck.verify(net)
    assert (r.differentiable, r.ad_correct, r.ad_in_clarke) == (True, False, False)
    assert r.gradient == ["1", "0"] and r.ad == ["0", "0"]
    cert = r.certificate()
    assert cert["evidence"]["complete_by"] == "affine"
    assert kinkcheck.check_certificate(cert)["complete"] is True
    # the same network with a second relu after the trainable layer: that tie's argument v*w - ...
    # is not affine, and the checker refuses "affine" completeness for it
    doc2 = {**doc, "layers": doc["layers"] + [{"op": "relu"}]}
    net2 = kinkcheck.load(doc2)
    assert not affine_tie_inputs(net2, upto=3)
    from kinkcheck.certify.checker import _check_complete_by
    from kinkcheck.certify.replay import Model

    M2 = Model(net2, cert["convention"])
    _check_complete_by(M2, "affine", [], [(1, 0, 0)])  # ties in layer 1 only: affine
    with pytest.raises(kinkcheck.CheckFailed, match="not affine"):
        _check_complete_by(M2, "affine", [], [(1, 0, 0), (3, 0, 0)])
