"""kinkcheck search: SMT answers checked against exhaustive enumeration in tiny formats, the CLI
contract (exit codes, counterexample files that verify), SMT-LIB export."""

import json
import math
import os
from fractions import Fraction
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kinkcheck
from kinkcheck.encodings import program as P
from kinkcheck.encodings.machine import MachineArith
from kinkcheck.search import search

TIE16 = {
    "kinkcheck": 1,
    "dtype": "float16",
    "params": {"w": {"value": 1}, "b": {"value": "-0x1.008p+0"}},
    "inputs": {"shape": [1, 1], "values": [["0x1.004p+0"]]},
    "layers": [{"op": "linear", "weight": [["w"]], "bias": ["b"]}, {"op": "relu"}, {"op": "linear", "weight": [[2]]}],
    "loss": {"op": "sum"},
}


def test_float_tie_without_real_tie():
    # float16: w = x = 1 + 2^-10 gives w*x = 1 + 2^-9 + 2^-20, which rounds to 1 + 2^-9 = -b: a float tie.
    # Over the reals w*x = -b needs w = (1 + 2^-9)/(1 + 2^-10), not a float16 number: no real tie.
    r = search(TIE16, "float-tie", box={"w": ("0.5", "2")})
    assert r.status == "sat" and r.confirmed
    assert search(TIE16, "real-tie", box={"w": ("0.5", "2")}).status == "unsat"
    assert search(TIE16, "compensation", box={"w": ("0.5", "2")}).status == "sat"
    assert search(TIE16, "float-tie", box={"w": ("0.5", "0.75")}).status == "unsat"


@pytest.mark.parametrize("dtype", [{"exponent_bits": 4, "fraction_bits": 3}, {"exponent_bits": 3, "fraction_bits": 2}])
@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None, max_examples=10 * int(os.environ.get("KINKCHECK_TEST_SCALE", "1")))
@given(data=st.data())
def test_search_agrees_with_exhaustive_enumeration(dtype, data):
    """One free weight in a tiny format: sat/unsat of float-tie and choice-sensitive must match
    trying every finite value of the format."""
    fmt = kinkcheck.encodings.formats.FloatFormat.from_spec(dtype)
    vals = [v for v in fmt.all_finite_values().tolist() if abs(v) <= 4 and v == v]
    pick = lambda: data.draw(st.sampled_from(vals))
    doc = {
        "kinkcheck": 1,
        "dtype": dtype,
        "params": {"w": {"value": fmt.to_hex(pick())}, "b": {"value": fmt.to_hex(pick())}, "v": {"value": fmt.to_hex(pick())}},
        "inputs": {"shape": [2, 1], "values": [[fmt.to_hex(pick())], [fmt.to_hex(pick())]]},
        "layers": [
            {"op": "linear", "weight": [["w"], ["v"]], "bias": ["b", "b"]},
            {"op": data.draw(st.sampled_from(["relu", "abs", "hardtanh"]))},
            {"op": "linear", "weight": [[1, -1]]},
        ],
        "loss": {"op": "sum"},
    }
    lo, hi = sorted([pick(), pick()])
    net = kinkcheck.load(doc)
    truth_tie = truth_choice = truth_mismatch = False
    for v in vals:
        if not lo <= v <= hi:
            continue
        n2 = net.with_theta(np.array([v, net.theta[1], net.theta[2]]))
        r = kinkcheck.verify(n2, values=True)
        truth_tie |= bool(r.float_ties)
        truth_choice |= bool(r.choice_sensitive)
        truth_mismatch |= any(
            math.isfinite(float.fromhex(m)) and Fraction(float.fromhex(m)) != Fraction(e) for m, e in zip(r.machine_ad, r.ad)
        )
    box = {"w": (fmt.to_hex(lo), fmt.to_hex(hi))}
    assert search(doc, "float-tie", box=box).status == ("sat" if truth_tie else "unsat")
    assert search(doc, "choice-sensitive", box=box).status == ("sat" if truth_choice else "unsat")
    assert search(doc, "ad-mismatch", box=box, k_ulps=0).status == ("sat" if truth_mismatch else "unsat")


def test_ad_mismatch_at_a_float_tie():
    # at w = x = 1 + 2^-10 the float16 unit ties (relu'(0) = 0: float AD 0) while the exact unit is
    # active (exact AD 2x): a mismatch; for w <= 0.75 both runs are inactive (AD 0 = 0)
    r = search(TIE16, "ad-mismatch", box={"w": ("0.5", "2")}, k_ulps=1)
    assert r.status == "sat" and r.values == {"w": "0x1.004p+0"}
    assert search(TIE16, "ad-mismatch", box={"w": ("0.5", "0.75")}, k_ulps=1).status == "unsat"


def test_cli_contract(tmp_path):
    net = tmp_path / "net.json"
    net.write_text(json.dumps(TIE16))
    run = lambda *a: subprocess.run([sys.executable, "-c", "from kinkcheck.cli import main; main()", "search", str(net), *a], capture_output=True, text=True)
    cex = tmp_path / "cex.json"
    smt = tmp_path / "q.smt2"
    r = run("--find", "float-tie", "--box", "w=0.5:2", "--out", str(cex), "--smtlib", str(smt), "--json")
    assert r.returncode == 1, r.stderr
    assert json.loads(r.stdout)["status"] == "sat"
    # the counterexample is an ordinary network file whose float run ties
    rep = kinkcheck.verify(str(cex))
    assert rep.float_ties and not rep.real_ties
    assert "(declare-fun w () (_ FloatingPoint 5 11))" in smt.read_text()
    r = run("--find", "real-tie", "--box", "w=0.5:2", "--out", str(tmp_path / "cert.json"))
    assert r.returncode == 0
    cert = json.loads((tmp_path / "cert.json").read_text())
    assert cert["status"] == "unsat" and cert["trust"] == "solver-trusted" and "check-sat" in cert["smtlib"]
    assert run("--find", "float-tie", "--box", "w=2:1").returncode == 2
    assert run("--find", "nonsense", "--box", "w=0:1").returncode == 2
    assert run("--find", "float-tie", "--box", "nope=0:1").returncode == 2


def test_bitwuzla_backend_agrees_with_z3():
    pytest.importorskip("bitwuzla")
    seen = set()
    for box in ({"w": ("0.5", "2")}, {"w": ("0.5", "0.75")}):
        for goal in ("float-tie", "choice-sensitive"):
            doc = json.loads(json.dumps(TIE16))
            doc["layers"].append({"op": "abs"})  # a kink after the first layer: the solvers are asked
            rz = search(doc, goal, box=box)
            rb = search(doc, goal, box=box, solver="bitwuzla")
            assert rb.status == rz.status
            assert rb.solver.startswith("bitwuzla")
            seen.add(rb.status)
    # relu output 0 reaches abs' kink for small w (float-tie sat in both boxes); the proxy choice
    # matters only through the first-layer tie at w = 1 + 2^-10 (choice-sensitive unsat in the small box)
    assert seen == {"sat", "unsat"}
    with pytest.raises(kinkcheck.InputError):
        search(TIE16, "real-tie", box={"w": ("0.5", "2")}, solver="bitwuzla")
