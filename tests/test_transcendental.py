"""Certified enclosures for sigmoid / tanh / cross-entropy (exact semantics) and correct rounding
(machine semantics), checked against independent high-precision values (Python's decimal)."""

import math
from decimal import Decimal, getcontext

from gmpy2 import mpq

import kinkcheck
from kinkcheck.encodings.exact import Interval, sigmoid_enclosure, tanh_enclosure
from kinkcheck.encodings.formats import FloatFormat
from kinkcheck.encodings.machine import MachineArith

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
