"""The exact arithmetic's scaled-integer fast path (encodings/dyadic.py) against an independent
entry-by-entry rational evaluation: the same exact values, the same exact AD, the same report
strings.

The reference arithmetic below converts every float with ``mpq(float)`` (gmpy2's own exact
conversion), multiplies with numpy's object matmul of ``mpq`` entries and accumulates parameter
gradients with the generic, order-fixing ``ArrayArith.accumulate_params``; the report reference
formats value by value with ``fmt.rat`` / ``fmt.hexf``.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from gmpy2 import mpq
from hypothesis import given, settings
from hypothesis import strategies as st

import kinkcheck
import kinkcheck.encodings.dyadic as D
from kinkcheck.encodings import fmt as F
from kinkcheck.encodings import program as P
from kinkcheck.encodings.arith import ArrayArith
from kinkcheck.encodings.exact import ExactArith
from kinkcheck.encodings.formats import to_hex

from strategies import networks

ROOT = Path(__file__).resolve().parent.parent


def _ref_from_floats(self, a):
    a = np.asarray(a)
    out = np.empty(a.shape, dtype=object)
    for i, v in enumerate(a.reshape(-1).tolist()):
        out.reshape(-1)[i] = v if isinstance(v, type(mpq(0))) else mpq(v)
    return out


def _ref_dot(self, W, x):
    return np.asarray(x, dtype=object) @ np.asarray(W, dtype=object).T


def _ref_dot_t(self, W, g):
    return np.asarray(g, dtype=object) @ np.asarray(W, dtype=object)


def _ref_accumulate(self, blocks, n_theta):
    return ArrayArith.accumulate_params(self, blocks, n_theta)


class RefExact(ExactArith):
    from_floats = _ref_from_floats
    dot = _ref_dot
    dot_t = _ref_dot_t
    accumulate_params = _ref_accumulate


def _exact_strings(a):
    return [f"{type(v).__name__}:{v}" for v in np.asarray(a, dtype=object).reshape(-1)]


# ----------------------------------------------------------------------------------------------
# float arrays as integers over a power of two

_FORMATS = {  # (mantissa bits, emin, emax) of the IEEE formats
    "float16": (10, -14, 15),
    "bfloat16": (7, -126, 127),
    "float32": (23, -126, 127),
    "float64": (52, -1022, 1023),
}


@st.composite
def format_floats(draw):
    M, emin, emax = _FORMATS[draw(st.sampled_from(sorted(_FORMATS)))]

    def one():
        kind = draw(st.integers(0, 5))
        if kind == 0:
            return draw(st.sampled_from([0.0, -0.0]))
        if kind == 1:  # subnormal
            v = math.ldexp(draw(st.integers(1, 2**M - 1)), emin - M)
        else:
            v = math.ldexp(draw(st.integers(2**M, 2 ** (M + 1) - 1)), draw(st.integers(emin, emax)) - M)
        return -v if draw(st.booleans()) else v

    n = draw(st.integers(0, 12))
    return np.array([one() for _ in range(n)], dtype=np.float64)


@given(format_floats())
def test_float_ints_is_exact(a):
    """ints / den is every float exactly (signed zeros, subnormals and extreme exponents in every
    IEEE format), den a power of two, and the mpq array is gmpy2's own conversion."""
    ints, den = D.float_ints(a)
    assert ints.shape == a.shape
    assert den >= 1 and den & (den - 1) == 0
    for i, v in enumerate(a.tolist()):
        assert Fraction(int(ints[i]), int(den)) == Fraction(v)
    assert _exact_strings(D.mpq_array(ints, den)) == _exact_strings([mpq(v) for v in a.tolist()])


def test_float_ints_wide_and_integer_ranges():
    a = np.array([5e-324, 1.7976931348623157e308, -0.0, 1.5])  # object path: 2098 bits apart
    ints, den = D.float_ints(a)
    assert ints.dtype == object
    assert [Fraction(int(n), int(den)) for n in ints] == [Fraction(v) for v in a]
    ints, den = D.float_ints(np.array([2.0**70, -3.0 * 2**64, 0.0]))  # integers only: den 1
    assert den == 1 and [int(n) for n in ints] == [2**70, -3 * 2**64, 0]


@given(st.lists(st.fractions(max_denominator=10**6), max_size=10))
def test_int_matrix_common_denominator(qs):
    a = np.empty(len(qs), dtype=object)
    a[:] = [mpq(q.numerator, q.denominator) for q in qs]
    ints, den = D.int_matrix(a)
    assert [Fraction(int(n), int(den)) for n in ints] == qs
    for q in qs:
        assert den % q.denominator == 0


@given(st.lists(st.one_of(st.floats(width=16), st.floats(width=32), st.floats(), st.just(-0.0), st.just(5e-324)), max_size=20))
def test_vectorised_formatting_is_per_value(vals):
    from kinkcheck.encodings.formats import FloatFormat  # noqa: F401

    assert D.hexes(vals, to_hex) == [to_hex(v) for v in vals]
    qs = [mpq(v) for v in vals if math.isfinite(v)] + [mpq(-3), mpq(0), mpq(7, 12)]
    assert D.rats(qs, F.rat) == [F.rat(q) for q in qs]


# ----------------------------------------------------------------------------------------------
# random networks: forward values and AD


@settings(max_examples=60, deadline=None)
@given(networks(), st.booleans())
def test_exact_forward_and_ad_are_the_reference(doc, flint):
    """flint: every integer product through python-flint (else numpy's object matmul)."""
    import kinkcheck.encodings.exact as EX

    net = kinkcheck.load(doc)
    proxies = P.resolve_proxies(net, net.convention)
    old, EX.FLINT_MIN = EX.FLINT_MIN, (0 if flint else EX.FLINT_MIN)
    try:
        got_fw = P.forward(net, ExactArith())
        got = P.backward(net, got_fw.A, got_fw, proxies)
    finally:
        EX.FLINT_MIN = old
    ref_fw = P.forward(net, RefExact())
    assert len(got_fw.xs) == len(ref_fw.xs)
    for a, b in zip(got_fw.xs, ref_fw.xs):
        assert _exact_strings(a) == _exact_strings(b)
    assert _exact_strings([got_fw.loss]) == _exact_strings([ref_fw.loss])
    ref = P.backward(net, ref_fw.A, ref_fw, proxies)
    assert _exact_strings(got) == _exact_strings(ref)


# ----------------------------------------------------------------------------------------------
# every shipped example: the same report


def _untimed(d):
    if isinstance(d, dict):
        return {k: _untimed(v) for k, v in d.items() if k != "time_s"}
    return [_untimed(v) for v in d] if isinstance(d, list) else d


@pytest.mark.parametrize("path", sorted((ROOT / "proofs" / "examples").glob("*.json")), ids=lambda p: p.name)
def test_shipped_examples_report_identically(path, monkeypatch):
    got = _untimed(kinkcheck.verify(str(path), values=True).to_dict())
    for name in ("from_floats", "dot", "dot_t", "accumulate_params"):
        monkeypatch.setattr(ExactArith, name, getattr(RefExact, name))
    import kinkcheck.api as api

    monkeypatch.setattr(api, "rat_all", lambda vs: [F.rat(v) for v in vs])
    monkeypatch.setattr(api, "hexf_all", lambda fmt, vs: [F.hexf(fmt, v) for v in vs])
    want = _untimed(kinkcheck.verify(str(path), values=True).to_dict())
    assert got == want


@given(st.lists(st.text(max_size=4), min_size=0, max_size=1200), st.sampled_from(["ad", "machine_ad", "other"]))
def test_report_json_is_json_dumps(strings, key):
    """The report's JSON with its long lists joined in one pass is json.dumps' output byte for
    byte (quotes, backslashes, control and non-ASCII characters included)."""
    import json

    from kinkcheck.api import _dumps_long_lists

    strings = strings * (1 + 1000 // max(1, len(strings)))  # long enough to be joined
    d = {"a": 1, key: strings, "b": [None, "x"], "ad2": strings[:3]}
    assert _dumps_long_lists(d, ("gradient", "ad", "machine_ad")) == json.dumps(d)
    safe = ["0x1.8p-3", "-3/4", "[1, 2]"] * 400
    assert _dumps_long_lists({"ad": safe, "n": 0}, ("ad",)) == json.dumps({"ad": safe, "n": 0})


def test_all_exact_is_per_value():
    from kinkcheck.encodings.exact import Interval

    for vals in ([], [mpq(1)], [mpq(1), None], [Interval(mpq(0), mpq(1)), mpq(2)], [0, mpq(1, 3)]):
        assert F.all_exact(vals) == all(F.is_exact(v) for v in vals)
