"""The Z3 floating-point encoding of the machine semantics (encodings/smt.py) is trusted by
cross-validation: with every parameter fixed, the terms simplify bit for bit to the machine
evaluator's forward values, loss and AD output, in every format; the tie conditions are exactly
the machine run's float ties; and with a free parameter, Z3 finds float ties that the evaluator
confirms."""

import math

import numpy as np
import z3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kinkcheck
from kinkcheck.encodings import program as P
from kinkcheck.encodings.machine import MachineArith
from kinkcheck.encodings.smt import Z3FPArith, value_of

from strategies import networks


def bits(v: float) -> int:
    if math.isnan(v):
        return -1  # every NaN counts as one value
    return int(np.float64(v).view(np.uint64))


def same(zterms, mvals):
    zs = [bits(value_of(t)) for t in np.asarray(zterms, dtype=object).reshape(-1)]
    ms = [bits(float(v)) for v in np.asarray(mvals).reshape(-1)]
    return zs == ms


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], deadline=None)
@given(networks(max_width=4, max_batch=2), st.sampled_from([None, "left", "right"]))
def test_encoding_with_fixed_parameters_is_the_machine_run(doc, side):
    net = kinkcheck.load(doc)
    pr = P.resolve_proxies(net)
    Z, M = Z3FPArith(net.fmt), MachineArith(net.fmt)
    fz, fm = P.forward(net, Z), P.forward(net, M)
    for xz, xm in zip(fz.xs, fm.xs):
        assert same(xz, xm)
    assert same([fz.loss], [fm.loss])
    assert same(P.backward(net, Z, fz, pr, side=side), P.backward(net, M, fm, pr, side=side))
    # the tie conditions are the float ties
    ties = {(t.layer, t.sample, t.unit) for t in P.ties(net, fm) if t.op not in ("maxpool1d", "maxpool2d")}
    enc = set()
    for layer, (kind, conds) in fz.loc.items():
        for (n, u), c in np.ndenumerate(conds.reshape(conds.shape[0], -1)):
            if z3.is_true(z3.simplify(c)):
                enc.add((layer, n, u))
    if fz.loss_loc is not None:
        for (n, u), c in np.ndenumerate(fz.loss_loc[1]):
            if z3.is_true(z3.simplify(c)):
                enc.add((len(net.layers), n, u))
    assert enc == ties


def test_free_parameter_float_tie_is_found_and_confirmed():
    # relu(w * x + b) in float16 with x = 1 + 2^-10, b = -(1 + 2^-9): find w != 1 + 2^-10...
    # any w whose rounded product equals -b ties in the float run; Z3 finds one, the evaluator agrees
    doc = {
        "kinkcheck": 1,
        "dtype": "float16",
        "params": {"w": {"value": 1}, "b": {"value": "-0x1.008p+0"}},
        "inputs": {"shape": [1, 1], "values": [["0x1.004p+0"]]},
        "layers": [{"op": "linear", "weight": [["w"]], "bias": ["b"]}, {"op": "relu"}],
        "loss": {"op": "sum"},
    }
    net = kinkcheck.load(doc)
    Z = Z3FPArith(net.fmt)
    w = z3.FP("w", Z.sort)
    theta = np.array([w, Z.fpval(net.theta[1])], dtype=object)
    fz = P.forward(net, Z, theta=theta)
    tie = fz.loc[1][1].reshape(-1)[0]
    s = z3.Solver()
    s.add(tie, z3.Not(z3.fpIsNaN(w)), z3.Not(z3.fpIsInf(w)))
    assert s.check() == z3.sat
    wv = value_of(s.model().eval(w, model_completion=True))
    found = net.with_theta(np.array([wv, net.theta[1]]))
    fm = P.forward(found, MachineArith(found.fmt))
    assert [(t.layer, t.unit) for t in P.ties(found, fm)] == [(1, 0)]
