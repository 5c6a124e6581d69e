"""Boustany's J_beta max-pool family (tie_break {"beta": B}): hand-derived AD outputs, Clarke
verdicts, the machine formula, the checker's replay, Z3, test generation and bad input."""

import json
import types
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kinkcheck
from kinkcheck.encodings import program as P
from kinkcheck.encodings.machine import MachineArith

from conftest import EXAMPLES


def tied_pair(tb=None, dtype="float32", scale=None, convention=None):
    """pre = W*1 + b = [1, 1] at W = 0, b = 1: one window of two tied entries; f = scale * max."""
    pool = {"op": "maxpool1d", "kernel": 2}
    if tb is not None:
        pool["tie_break"] = tb
    layers = [{"op": "linear", "weight": "W", "bias": "b"}, pool]
    if scale is not None:
        layers.append({"op": "linear", "weight": [[scale]]})
    doc = {
        "kinkcheck": 1,
        "dtype": dtype,
        "params": {"W": {"shape": [2, 1], "values": [[0], [0]]}, "b": {"shape": [2], "values": [1, 1]}},
        "inputs": {"shape": [1, 1], "values": [[1]]},
        "layers": layers,
        "loss": {"op": "sum"},
    }
    if convention is not None:
        doc["convention"] = convention
    return doc


def q(xs):
    return [Fraction(x) for x in xs]


def hexq(xs):
    return [Fraction(float.fromhex(x)) for x in xs]


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_two_tied_entries_beta_1000(dtype):
    # g = 1 arrives at the window, m = 2 tied: first = 1000 * (1/2) + (1 - 1000) * 1 = -499,
    # second = 1000 / 2 = 500 (the parameters are W (input 1) then b, so the AD is that twice);
    # every intermediate (1000, 500, -999, -499) is a float16 number, so the machine agrees
    r = kinkcheck.verify(tied_pair({"beta": 1000}, dtype), values=True)
    assert q(r.ad) == [-499, 500, -499, 500]
    assert hexq(r.machine_ad) == [-499, 500, -499, 500]
    # f = max(W1 + b1, W2 + b2) at a tie: not differentiable; the Clarke set is the segment
    # between (1, 0, 1, 0) and (0, 1, 0, 1) - (-499, 500, ...) is not on it
    assert r.differentiable is False and r.ad_in_clarke is False and r.ad_correct is False
    assert r.choice_sensitive is True


@pytest.mark.parametrize(
    "beta, first, second, clarke",
    [("0.5", Fraction(3, 4), Fraction(1, 4), True), (-1, Fraction(3, 2), Fraction(-1, 2), False), (3, Fraction(-1, 2), Fraction(3, 2), False), ("0x1p-3", Fraction(15, 16), Fraction(1, 16), True)],
)
def test_two_tied_entries_any_beta(beta, first, second, clarke):
    # first = beta/2 + (1 - beta), second = beta/2: a convex combination of (1, 0) and (0, 1)
    # exactly when 0 <= beta <= 1 (then first, second >= 0)
    r = kinkcheck.verify(tied_pair({"beta": beta}), values=True)
    assert q(r.ad) == [first, second, first, second]
    assert r.ad_in_clarke is clarke and r.differentiable is False


def test_beta_0_and_1_are_first_and_split():
    for beta, rule in ((0, "first"), (1, "split")):
        a = kinkcheck.verify(tied_pair({"beta": beta}, scale=3), values=True)
        b = kinkcheck.verify(tied_pair(rule, scale=3), values=True)
        assert a.ad == b.ad and a.machine_ad == b.machine_ad
    assert q(kinkcheck.verify(tied_pair({"beta": 1}, scale=3)).ad) == [Fraction(3, 2)] * 4


def test_park_chun_lee_max_pool_with_beta():
    # f(u, b) = max(u+b, b) - max(-u+b, b) = u, both windows tied at u = b = 0 with cotangents +1, -1.
    # J_beta: window 1 gives (1 - beta/2, beta/2) to (u+b, b), window 2 the negatives to (-u+b, b):
    # df/du = (1 - beta/2) + (1 - beta/2) = 2 - beta, df/db = 0. Right only for beta = 1 (split).
    for beta, ad in ((1000, -998), ("0.5", Fraction(3, 2)), (1, 1), (-2, 4)):
        r = kinkcheck.verify(str(EXAMPLES / "maxpool_u_b.json"), convention={"maxpool1d": {"beta": beta}}, values=True)
        assert q(r.ad) == [ad, 0]
        assert r.differentiable is True and r.gradient == ["1", "0"]
        assert r.ad_correct is (ad == 1) and r.ad_in_clarke is (ad == 1)


def test_float16_rounds_one_minus_beta():
    # shared weight: pre = [w, w] (w = 1), f = max(w, w) = w, exact gradient 1. J_beta, beta = 10000:
    # exact 10000/2 + (1 - 10000) + 10000/2 = 1. float16: 1 - 10000 = -9999 rounds to -10000 (the
    # spacing is 8 there), so the first entry gets fl(5000 - 10000) = -5000 and the sum is 0;
    # float32 holds -9999 and gives 5000 - 9999 = -4999, sum 1.
    doc = {
        "kinkcheck": 1,
        "dtype": "float16",
        "params": {"w": {"value": 1}},
        "inputs": {"shape": [1, 1], "values": [[1]]},
        "layers": [{"op": "linear", "weight": [["w"], ["w"]]}, {"op": "maxpool1d", "kernel": 2, "tie_break": {"beta": 10000}}],
        "loss": {"op": "sum"},
    }
    r = kinkcheck.verify(doc, values=True)
    assert q(r.ad) == [1] and r.ad_correct is True
    assert hexq(r.machine_ad) == [0]
    doc["dtype"] = "float32"
    assert hexq(kinkcheck.verify(doc, values=True).machine_ad) == [1]


def test_machine_formula_order_in_float16():
    # g = 3 * 2^-4 arrives; beta = 1000: fl(1000 g) = fl(187.5) = 187.5, /2 = 93.75;
    # (1 - beta) g = -999 * 0.1875 = -187.3125 rounds (spacing 0.125 in [128, 256)) to -187.25
    # (ties to even: -187.3125 is halfway between -187.25 and -187.375; 187.25 = 1498 * 0.125, even);
    # first = fl(93.75 - 187.25) = -93.5. Exact: 93.75 - 187.3125 = -93.5625.
    r = kinkcheck.verify(tied_pair({"beta": 1000}, "float16", scale="0x1.8p-3"), values=True)
    assert q(r.ad)[:2] == [Fraction(-935625, 10000), Fraction(9375, 100)]
    assert hexq(r.machine_ad)[:2] == [Fraction(-935, 10), Fraction(9375, 100)]


def test_certificate_and_independent_replay():
    from kinkcheck.certify.replay import Model

    for doc in (tied_pair({"beta": 1000}), tied_pair(convention={"maxpool1d": {"beta": "-0x1.8p+1"}})):
        r = kinkcheck.verify(doc)
        cert = json.loads(json.dumps(r.certificate()))
        assert kinkcheck.check_certificate(cert)["valid"] is True
    # the checker's own model: forward tangents with J_beta (beta = -3: first = -3/2 + 4 = 5/2, second -3/2)
    net = kinkcheck.load(tied_pair(convention={"maxpool1d": {"beta": -3}}))
    M = Model(net, {"maxpool1d": {"beta": -3}})
    assert [Fraction(int(v.numerator), int(v.denominator)) for v in M.linear_map(lambda k: "proxy")] == q(["5/2", "-3/2", "5/2", "-3/2"])


def test_z3_encodings_match_the_evaluators():
    import z3  # noqa: F401

    from kinkcheck.encodings.smt import Z3FPArith, Z3RealArith, value_of

    for dtype in ("float16", "float32"):
        net = kinkcheck.load(tied_pair({"beta": 1000}, dtype, scale="0x1.8p-3"))
        pr = P.resolve_proxies(net)
        Z, M = Z3FPArith(net.fmt), MachineArith(net.fmt)
        gz = P.backward(net, Z, P.forward(net, Z), pr)
        gm = P.backward(net, M, P.forward(net, M), pr)
        assert [value_of(t) for t in np.asarray(gz, dtype=object).reshape(-1)] == [float(v) for v in np.asarray(gm).reshape(-1)]
    R = Z3RealArith(net.fmt)
    gr = P.backward(net, R, P.forward(net, R), pr)
    vals = [z3.simplify(t).as_fraction() for t in np.asarray(gr, dtype=object).reshape(-1)]
    assert [Fraction(v.numerator, v.denominator) for v in vals] == [Fraction(-935625, 10000), Fraction(9375, 100)] * 2


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None, max_examples=25)
@given(
    st.lists(st.integers(-3, 3), min_size=4, max_size=4),
    st.integers(-8, 8),
    st.sampled_from([Fraction(1000), Fraction(-3), Fraction(3, 4), Fraction(5, 8), Fraction(-1, 2)]),
)
def test_exact_ad_is_affine_in_beta(pre, scale, beta):
    # one max-pool layer; the rest of the backward is linear in the cotangent and does not depend
    # on the tie rule, so exactly AD_beta = beta * AD_split + (1 - beta) * AD_first
    doc = {
        "kinkcheck": 1,
        "dtype": "float32",
        "params": {"b": {"shape": [4], "values": pre}},
        "inputs": {"shape": [1, 4], "values": [[0, 0, 0, 0]]},
        "layers": [{"op": "linear", "weight": [[0] * 4] * 4, "bias": "b"}, {"op": "maxpool1d", "kernel": 2}, {"op": "linear", "weight": [[scale, 1]]}],
        "loss": {"op": "sum"},
    }
    tok = f"{beta.numerator}/{beta.denominator}"
    ad = {r: q(kinkcheck.verify(doc, convention={"maxpool1d": r}, values=True).ad) for r in ("split", "first")}
    got = q(kinkcheck.verify(doc, convention={"maxpool1d": {"beta": tok}}, values=True).ad)
    assert got == [beta * s + (1 - beta) * f for s, f in zip(ad["split"], ad["first"])]


def test_torch_export_with_beta(tmp_path):
    pytest.importorskip("torch")
    from kinkcheck.testgen.export import export_test

    text = export_test(tied_pair({"beta": 1000}, "float16", scale="0x1.8p-3"), "torch")
    assert "J_beta with beta = 1000" in text
    mod = types.ModuleType("generated_beta")
    exec(compile(text, "generated_beta.py", "exec"), mod.__dict__)  # noqa: S102 - the generated file
    tests = [getattr(mod, n) for n in dir(mod) if n.startswith("test_")]
    assert len(tests) >= 4
    for t in tests:
        t()
    # it can fail: the machine AD's first entry (-93.5) replaced by the exact one's rounding -93.5625
    bad = text.replace('"-0x1.76p+6"', '"-0x1.762p+6"', 1)
    assert bad != text
    mod = types.ModuleType("generated_bad")
    exec(compile(bad, "generated_bad.py", "exec"), mod.__dict__)  # noqa: S102
    with pytest.raises(AssertionError):
        for n in dir(mod):
            if n.startswith("test_"):
                getattr(mod, n)()


@pytest.mark.parametrize(
    "tb, dtype, msg",
    [
        ({"beta": 10001}, "float16", "tie_break beta 10001 is not exactly representable in float16"),
        ({"beta": "inf"}, "float32", "tie_break beta must be finite"),
        ({"beta": [1]}, "float32", "tie_break beta must be a number"),
        ({"gamma": 1}, "float32", 'tie_break must be one of first, last, split or {"beta": B}'),
    ],
)
def test_bad_beta_is_one_line_exit_2(tmp_path, tb, dtype, msg):
    from typer.testing import CliRunner

    from kinkcheck.cli import app

    runner = CliRunner()
    f = tmp_path / "net.json"
    f.write_text(json.dumps(tied_pair(tb, dtype)))
    r = runner.invoke(app, ["verify", str(f)])
    assert r.exit_code == 2 and r.stdout == "" and "Traceback" not in r.stderr
    assert msg in r.stderr and "layers[1] (maxpool1d)" in r.stderr and str(f) in r.stderr and len(r.stderr.strip().splitlines()) == 1
    conv = tmp_path / "conv.json"
    conv.write_text(json.dumps({"maxpool1d": {"tie_break": tb}}))
    f.write_text(json.dumps(tied_pair(None, dtype)))
    r = runner.invoke(app, ["verify", str(f), "--convention", str(conv)])
    assert r.exit_code == 2 and msg in r.stderr and str(conv) in r.stderr and len(r.stderr.strip().splitlines()) == 1
