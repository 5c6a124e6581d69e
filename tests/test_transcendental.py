"""Certified enclosures for sigmoid / tanh / cross-entropy (exact semantics) and correct rounding
(machine semantics), checked against independent high-precision values (Python's decimal)."""

import math
from decimal import Decimal, getcontext

import pytest
from gmpy2 import mpq
from hypothesis import HealthCheck, assume, given, settings

import kinkcheck
from kinkcheck.encodings.exact import Interval, sigmoid_enclosure, tanh_enclosure
from kinkcheck.encodings.formats import FloatFormat
from kinkcheck.encodings.machine import MachineArith

from strategies import networks

getcontext().prec = 80


def dec(q):
    return Decimal(int(q.numerator)) / Decimal(int(q.denominator))


def sigmoid_dec(q):
    return 1 / (1 + (-dec(q)).exp())


def tanh_dec(q):
    e = (2 * dec(q)).exp()
    return (e - 1) / (e + 1)


def test_enclosures_contain_the_value_and_are_tight():
    for q in (mpq(1, 3), mpq(-5, 2), mpq(7), mpq(-1, 1024), mpq(40)):
        for enc, ref in ((sigmoid_enclosure, sigmoid_dec), (tanh_enclosure, tanh_dec)):
            iv = enc(q, 128)
            assert isinstance(iv, Interval)
            assert dec(iv.lo) <= ref(q) <= dec(iv.hi)
            assert iv.hi - iv.lo < mpq(1, 2**100)


def test_exact_points():
    assert sigmoid_enclosure(mpq(0), 64) == mpq(1, 2)
    assert tanh_enclosure(mpq(0), 64) == 0


def test_machine_sigmoid_is_correctly_rounded():
    for name in ("float16", "bfloat16", "float32", "float64"):
        fmt = FloatFormat.from_spec(name)
        A = MachineArith(fmt)
        xs = [0.5, -3.25, 1.0 / 1024, 11.0, -0.0]
        got = A.sigmoid(A.from_floats(xs))
        for x, y in zip(xs, got.tolist()):
            exact = sigmoid_dec(mpq(x))
            lo, hi = fmt.neighbours(mpq(str(exact)))  # the two format values around the decimal
            # the correctly rounded value is the nearer neighbour (the decimal is within 1e-70)
            nearer = lo if abs(Decimal(lo) - exact) < abs(Decimal(hi) - exact) else hi
            assert y == nearer, (name, x, y, nearer)


def test_sigmoid_network_verdicts_and_enclosed_gradient():
    doc = {
        "kinkcheck": 1,
        "dtype": "float32",
        "params": {"w": {"value": 0.5}, "b": {"value": -0.25}},
        "inputs": {"shape": [2, 1], "values": [[1], [2]]},
        "targets": {"shape": [2], "values": [0, 1]},
        "layers": [{"op": "linear", "weight": [["w"], ["b"]]}, {"op": "sigmoid"}],
        "loss": {"op": "cross_entropy"},
    }
    r = kinkcheck.verify(doc, values=True)
    assert (r.differentiable, r.ad_correct, r.ad_in_clarke) == (True, True, True)
    assert r.gradient is None  # not rational
    assert all(s.startswith("[") for s in r.ad)
    # the machine gradient lies within a float32 rounding distance of the enclosure
    for enc, m in zip(r.ad, r.machine_ad):
        lo, hi = (float(v) for v in enc.strip("[]").split(","))
        assert lo - 1e-6 <= float.fromhex(m) <= hi + 1e-6
    assert math.isfinite(float.fromhex(r.loss_machine))


CE_DOC = {
    "kinkcheck": 1,
    "dtype": "float32",
    "description": "ReLU tie through a bias (sample 0, unit 0) under a cross-entropy loss",
    "params": {"W": {"shape": [3, 2], "values": [[1, 2], [1, -1], [0.5, 1]]}, "b": {"shape": [3], "values": [-3, 1, 0]},
               "V": {"shape": [3, 3], "values": [[1, 0, 1], [0, 1, -1], [1, 1, 0]]}},
    "inputs": {"shape": [2, 2], "values": [[1, 1], [2, 0]]},
    "targets": {"shape": [2], "values": [0, 2]},
    "layers": [{"op": "linear", "weight": "W", "bias": "b"}, {"op": "relu"}, {"op": "linear", "weight": "V"}],
    "loss": {"op": "cross_entropy"},
}


def test_cross_entropy_ties_decided_and_certified():
    """Cross-entropy over piecewise-linear layers: 'not differentiable' by disjoint gradient
    enclosures of two cells, 'AD in Clarke' by the AD pattern's own cell; the certificate checks
    with the checker's own MPFR enclosures, and altered claims are refused."""
    import copy
    import json

    from gmpy2 import mpq

    r = kinkcheck.verify(CE_DOC)
    assert [(t["layer"], t["sample"], t["unit"]) for t in r.real_ties] == [(1, 0, 0)]
    assert (r.differentiable, r.ad_correct, r.ad_in_clarke) == (False, False, True)
    cert = json.loads(json.dumps(r.certificate()))
    assert kinkcheck.check_certificate(cert)["valid"]
    muts = []
    c = copy.deepcopy(cert)
    k = next(i for i, v in enumerate(c["claims"]["ad"]) if v.startswith("["))
    lo, hi = (mpq(x) for x in c["claims"]["ad"][k].strip("[]").split(","))
    c["claims"]["ad"][k] = f"[{hi + 1}, {hi + 2}]"
    muts.append(c)
    c = copy.deepcopy(cert)
    c["claims"]["differentiable"] = True
    muts.append(c)
    c = copy.deepcopy(cert)
    c["claims"]["ad_in_clarke"] = False
    muts.append(c)
    c = copy.deepcopy(cert)
    for ch in c["evidence"]["ad_cell"]["choices"]:
        ch["choice"] = "right" if ch["choice"] == "left" else "left"
    c["evidence"]["ad_cell"]["witness"] = [str(-mpq(x)) for x in c["evidence"]["ad_cell"]["witness"]]
    muts.append(c)
    c = copy.deepcopy(cert)
    i, j = c["evidence"]["witnesses"]
    c["evidence"]["witnesses"] = [i, i]
    muts.append(c)
    for m in muts:
        with pytest.raises(kinkcheck.CheckFailed):
            kinkcheck.check_certificate(m)
    # no tie (bias moved off the kink): smooth, and the certificate checks too
    smooth = copy.deepcopy(CE_DOC)
    smooth["params"]["b"]["values"][0] = -4
    s = kinkcheck.verify(smooth)
    assert not s.real_ties and (s.differentiable, s.ad_correct, s.ad_in_clarke) == (True, True, True)
    assert kinkcheck.check_certificate(json.loads(json.dumps(s.certificate())))["valid"]


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], deadline=None)
@given(networks(dtypes=["float32"], archs=["mlp", "pool1d"], ties=True, extreme=False, max_width=4, max_batch=3,
                activations=("relu", "leaky_relu", "hardtanh", "abs", "hardsigmoid"), losses=["cross_entropy"]))
def test_cross_entropy_certificates_check_independently(doc):
    """Every cross-entropy verdict comes with a certificate the independent checker accepts (it
    encloses softmax itself); 'AD in Clarke' under cross-entropy agrees with the rational
    procedure on the same network with a sum loss (the AD pattern's cell does not depend on the loss)."""
    import json

    r = kinkcheck.verify(doc)
    assume(r._runs.exact is not None)
    assert r.ad_correct is not True or not r.real_ties
    cert = json.loads(json.dumps(r.certificate()))
    assert kinkcheck.check_certificate(cert)["valid"]
    if r.real_ties and r.ad_in_clarke is True:
        doc2 = dict(doc, loss={"op": "sum"})
        doc2.pop("targets", None)
        r2 = kinkcheck.verify(doc2)
        if r2.ad_in_clarke is not None:
            assert r2.ad_in_clarke is True
