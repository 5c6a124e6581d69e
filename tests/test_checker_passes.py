"""The certificate checker's one-pass Jacobians (verify/certify/replay.py ``Model.jacobian``).

Checked against the checker's own numeric tangent pass along every unit vector (the method the
one-pass forms replace): gradients and tie functionals of fixed patterns are equal, and a tie's
sensitivity s_k predicts exactly how the gradient moves when that one tie switches sides
(g(c') - g(c) = (c' - c) s_k a_k). Tampered hinge and pattern evidence is still refused."""

from __future__ import annotations

import copy
import json
import os
import random
import sys
from pathlib import Path

import pytest
from gmpy2 import mpq
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

import kinkcheck
from kinkcheck.certify.checker import CheckFailed, Model
from kinkcheck.decide import differentiability as D

from strategies import networks

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from bench_decide import make  # noqa: E402

SCALE = int(os.environ.get("KINKCHECK_TEST_SCALE", "1"))


def _numeric(M, choice):
    """Gradient and tie functionals from one numeric pass per unit vector (the reference)."""
    g, cols = [], []
    for i in range(M.P):
        _, df, rec, _ = M.tangent(M.unit(i), choice)
        g.append(df)
        cols.append(rec)
    return g, cols


def _model(doc):
    net = kinkcheck.load(doc)
    try:
        return Model(net, net.convention.to_json()["ops"])
    except CheckFailed:  # transcendental ops: no rational model
        return None


@settings(max_examples=40 * SCALE, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], deadline=None)
@given(doc=networks(ties=True, extreme=False, max_batch=2), seed=st.integers(0, 2**16))
def test_one_pass_jacobian_equals_the_unit_vector_passes(doc, seed):
    note(json.dumps(doc))
    M = _model(doc)
    if M is None or not M.forms or M.P == 0:
        event("no linear-form pass")
        return
    ties = M.tangent([mpq(0)] * M.P, lambda k: "proxy")[3]
    rng = random.Random(seed)
    pattern = {}
    for key, kind, extra in ties:  # a random fixed pattern: a side, or one tied max-pool entry
        if kind == "max":
            pattern[key] = rng.choice(sorted(M.tangent([mpq(0)] * M.P, lambda k: "proxy")[2][key]))
        else:
            pattern[key] = rng.choice(["left", "right"])
    for choice in (lambda k: "proxy", lambda k: pattern[k]):
        g, funcs, ties2, _ = M.jacobian(choice)
        ref, cols = _numeric(M, choice)
        assert g == ref
        assert [t[0] for t in ties2] == [t[0] for t in ties]
        for key, _, _ in ties:
            if isinstance(funcs[key], dict):
                assert funcs[key] == {p: [c[key][p] for c in cols] for p in funcs[key]}
            else:
                assert funcs[key] == [c[key] for c in cols]
    event(f"ties: {min(len(ties), 3)}")
    # sensitivities: switching one tie alone moves the gradient by (c' - c) s_k a_k
    base, funcs, _, sens = M.jacobian(lambda k: pattern[k], inject=True)
    for key, kind, extra in ties:
        if kind == "max":
            for p in funcs[key]:
                g2 = _numeric(M, lambda k, key=key, p=p: p if k == key else pattern[k])[0]
                assert g2 == [b + sens[key] * (x - y) for b, x, y in zip(base, funcs[key][p], funcs[key][pattern[key]])]
        else:
            left, right = M.one_sided(key, kind, extra)
            other = "right" if pattern[key] == "left" else "left"
            dv = (right - left) if other == "right" else (left - right)
            g2 = _numeric(M, lambda k, key=key, o=other: o if k == key else pattern[k])[0]
            assert g2 == [b + dv * sens[key] * a for b, a in zip(base, funcs[key])]


def test_jacobian_by_hand():
    """f(w) = sum_n v relu(w x_n + b) at w = 1, b = -1, v = 3, x = (1, 2): sample 0 ties (its
    pre-activation is 0), sample 1 is active. By hand: the tie's functional is (x_0, 1) = (1, 1);
    the left pattern's gradient is sample 1's (v x_1, v, relu(1)) = (6, 3, 1); the tie's
    sensitivity is v = 3, so the right pattern adds (1 - 0) * 3 * (1, 1, 0): (9, 6, 1)."""
    doc = {
        "kinkcheck": 1,
        "dtype": "float32",
        "params": {"w": {"value": 1}, "b": {"value": -1}, "v": {"value": 3}},
        "inputs": {"shape": [2, 1], "values": [[1], [2]]},
        "layers": [{"op": "linear", "weight": [["w"]], "bias": ["b"]}, {"op": "relu"}, {"op": "linear", "weight": [["v"]]}],
        "loss": {"op": "sum"},
    }
    M = _model(doc)
    g, funcs, ties, sens = M.jacobian(lambda k: "left", inject=True)
    key = (1, 0, 0)
    assert [t[0] for t in ties] == [key]
    assert g == [6, 3, 1]
    assert funcs[key] == [1, 1, 0]
    assert sens == {key: 3}
    assert M.linear_map(lambda k: "right") == [9, 6, 1]


def test_tampered_hinge_certificate_fails():
    D.HINGE_FROM = 3
    r = kinkcheck.verify(kinkcheck.load(make(8)), values=True)
    assert r.decision["method"] == "hinge"
    cert = json.loads(json.dumps(r.certificate()))
    assert kinkcheck.check_certificate(cert)["valid"] is True
    m = copy.deepcopy(cert)  # a flipped verdict
    m["claims"]["differentiable"] = not cert["claims"]["differentiable"]
    with pytest.raises(CheckFailed):
        kinkcheck.check_certificate(m)
    if cert["claims"]["ad_in_clarke"] is True and "mu" in cert["evidence"]:
        m = copy.deepcopy(cert)  # one zonotope coefficient moved: sum mu_k C_k a_k no longer reaches AD - G
        mu = m["evidence"]["mu"]
        mu[0] = "0" if mu[0] != "0" else "1"
        with pytest.raises(CheckFailed):
            kinkcheck.check_certificate(m)
    m = copy.deepcopy(cert)  # a tie dropped from the claims
    m["claims"]["real_ties"] = m["claims"]["real_ties"][1:]
    with pytest.raises(CheckFailed):
        kinkcheck.check_certificate(m)


def test_pattern_choices_must_be_sides_or_entries():
    cert = json.loads((Path(__file__).resolve().parent.parent / "proofs" / "certificates" / "maxpool_u_b.cert.json").read_text())
    for bad in ("auto", "symbolic", "proxy", True):
        m = copy.deepcopy(cert)
        m["evidence"]["cells"][0]["choices"][0]["choice"] = bad
        with pytest.raises(CheckFailed):
            kinkcheck.check_certificate(m)
