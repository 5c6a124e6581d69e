"""kinkcheck search: SMT answers checked against exhaustive enumeration in tiny formats, the CLI
contract (exit codes, counterexample files that verify), SMT-LIB export."""

import json
import math
import os
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kinkcheck
from kinkcheck.search.solver import search

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
    vals = [v for v in fmt.all_finite_values().tolist() if abs(v) <= 4 and not math.isnan(v)]
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
    for kw in ({"structured": False}, {}):  # Z3 (query sliced by the enclosures), structure first
        assert search(doc, "float-tie", box=box, **kw).status == ("sat" if truth_tie else "unsat"), kw
        assert search(doc, "choice-sensitive", box=box, **kw).status == ("sat" if truth_choice else "unsat"), kw
        assert search(doc, "ad-mismatch", box=box, k_ulps=0, **kw).status == ("sat" if truth_mismatch else "unsat"), kw


def test_ad_mismatch_at_a_float_tie():
    # at w = x = 1 + 2^-10 the float16 unit ties (relu'(0) = 0: float AD 0) while the exact unit is
    # active (exact AD 2x): a mismatch; for w <= 0.75 both runs are inactive (AD 0 = 0)
    r = search(TIE16, "ad-mismatch", box={"w": ("0.5", "2")}, k_ulps=1)
    assert r.status == "sat" and r.values == {"w": "0x1.004p+0"}
    assert search(TIE16, "ad-mismatch", box={"w": ("0.5", "0.75")}, k_ulps=1).status == "unsat"


def test_cli_contract(tmp_path):
    net = tmp_path / "net.json"
    net.write_text(json.dumps(TIE16))
    run = lambda *a: subprocess.run([sys.executable, "-c", "from kinkcheck.cli import main; main()", "search", str(net), *a], capture_output=True, text=True, check=False)
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
    assert cert["status"] == "unsat" and cert["trust"] == "exact" and cert["method"] == "lemmas"
    # the same question for the solver only: a solver-trusted unsat whose certificate holds the query
    r = run("--find", "real-tie", "--box", "w=0.5:2", "--no-structure", "--out", str(tmp_path / "cert2.json"))
    assert r.returncode == 0
    cert = json.loads((tmp_path / "cert2.json").read_text())
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
            rz = search(doc, goal, box=box, structured=False)
            rb = search(doc, goal, box=box, solver="bitwuzla", structured=False)
            assert rb.status == rz.status
            assert rb.solver.startswith("bitwuzla")
            seen.add(rb.status)
    # relu output 0 reaches abs' kink for small w (float-tie sat in both boxes); the proxy choice
    # matters only through the first-layer tie at w = 1 + 2^-10 (choice-sensitive unsat in the small box)
    assert seen == {"sat", "unsat"}
    with pytest.raises(kinkcheck.InputError):
        search(TIE16, "real-tie", box={"w": ("0.5", "2")}, solver="bitwuzla")


@st.composite
def small_nets(draw):
    """Two-layer networks of scalar params in an 8-bit or 6-bit format, one or two of them free."""
    dtype = draw(st.sampled_from([{"exponent_bits": 4, "fraction_bits": 3}, {"exponent_bits": 3, "fraction_bits": 2}]))
    fmt = kinkcheck.encodings.formats.FloatFormat.from_spec(dtype)
    vals = [v for v in fmt.all_finite_values().tolist() if abs(v) <= 4 and not math.isnan(v)]
    pick = lambda: fmt.to_hex(draw(st.sampled_from(vals)))
    act = draw(st.sampled_from(["relu", "abs", "hardtanh", "leaky_relu"]))
    head = draw(st.sampled_from(["linear", "pool", "relu"]))
    layers = [{"op": "linear", "weight": [["w", pick()], ["v", "u"]], "bias": ["b", "-b"]}, {"op": act}]
    if head == "pool":
        layers.append({"op": "maxpool1d", "kernel": 2})
    else:
        layers.append({"op": "linear", "weight": [["u", -1]]})
        if head == "relu":
            layers.append({"op": "relu"})
    loss = draw(st.sampled_from(["sum", "mse", "l1"]))
    doc = {
        "kinkcheck": 1,
        "dtype": dtype,
        "params": {n: {"value": pick()} for n in ("w", "v", "u", "b")},
        "inputs": {"shape": [1, 2], "values": [[pick(), pick()]]},
        "layers": layers,
        "loss": {"op": loss, "reduction": "sum"} if loss != "sum" else {"op": "sum"},
    }
    if loss != "sum":
        doc["targets"] = {"shape": [1, 1], "values": [[pick()]]}
    free = draw(st.lists(st.sampled_from(["w", "v", "u", "b"]), min_size=1, max_size=2, unique=True))
    box = {}
    grid = sorted(set(vals))
    for name in free:  # at most 30 grid steps: the box has at most 1024 points (enumerated exactly)
        i = draw(st.integers(0, len(grid) - 1))
        box[name] = (fmt.to_hex(grid[i]), fmt.to_hex(grid[min(i + draw(st.integers(0, 30)), len(grid) - 1)]))
    return doc, box


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None, max_examples=15 * int(os.environ.get("KINKCHECK_TEST_SCALE", "1")))
@given(small_nets(), st.sampled_from(["float-tie", "real-tie", "compensation", "choice-sensitive", "ad-mismatch"]))
def test_pruned_query_gives_the_unpruned_answer(case, goal):
    """Soundness of the interval pruning and slicing: Z3 on the sliced query, Z3 on the whole
    query and exhaustive enumeration of the box (an exact answer, no solver) agree."""
    doc, box = case
    whole = search(doc, goal, box=box, k_ulps=1, prune=False, structured=False)
    sliced = search(doc, goal, box=box, k_ulps=1, structured=False)
    enum = search(doc, goal, box=box, k_ulps=1)
    # Z3 may answer unknown on either query (nonlinear real arithmetic); decided answers must agree
    assert enum.status in ("sat", "unsat") and enum.trust == ("exact" if enum.status == "unsat" else None), (enum.solver, enum.reason)
    for r in (whole, sliced):
        assert r.status in (enum.status, "unknown") and (r.status != "unknown" or r.reason.startswith("solver")), (r.solver, r.reason)
    assert sliced.pruning["applied"] and "pruning" not in whole.pruning or not whole.pruning.get("applied")


def test_enclosures_prune_and_slice():
    # float16 relu(w*x + b), x = 1 + 2^-10, b = -(1 + 2^-9): for w in [0.5, 0.75] w*x + b < 0 everywhere,
    # so the unit cannot tie (exact unsat from the enclosure alone, relu's branch fixed to 0)
    r = search(TIE16, "float-tie", box={"w": ("0.5", "0.75")})
    assert (r.status, r.trust, r.solver) == ("unsat", "exact", "interval enclosures (exact, no solver)")
    assert r.pruning == {"applied": True, "units": 1, "may_tie": 0, "float_branches_fixed": 1, "real_branches_fixed": 1}
    cert = r.certificate()
    assert cert["trust"] == "exact" and cert["enclosures"] == [
        {
            "key": [1, 0, 0],
            "kind": "act",
            "may_float_tie": False,
            "may_real_tie": False,
            "float_branch": 0,
            "real_branch": 0,
            "float_enclosure": ["-0.50146484375", "-0.2509765625"],  # fl(fl(0.5 x) + b), fl(fl(0.75 x) + b)
            "real_enclosure": ["-1027/2048", "-1029/4096"],
        }
    ]
    # two relu layers, w free in the first: the first unit may tie, the second (relu(-relu(.)) - 1) never does
    doc = json.loads(json.dumps(TIE16))
    doc["layers"] = doc["layers"][:2] + [{"op": "linear", "weight": [[-1]], "bias": [-1]}, {"op": "relu"}]
    r = search(doc, "float-tie", box={"w": ("0.5", "2")}, structured=False)
    assert r.status == "sat" and r.confirmed and r.values == {"w": "0x1.004p+0"}
    assert r.pruning["may_tie"] == 1 and [(e["key"], e["may_float_tie"], e["float_branch"]) for e in r.enclosures] == [([1, 0, 0], True, None), ([3, 0, 0], False, 0)]
    assert r.enclosures[0]["float_enclosure"] == ["-0.50146484375", "1.0"]  # fl(fl(0.5 x) + b), fl(fl(2 x) + b)
    assert r.enclosures[0]["real_enclosure"] == ["-1027/2048", "1"]
    # the second relu's branch (input <= -1 < 0 everywhere) is substituted: no comparison with its input is left
    whole = search(doc, "float-tie", box={"w": ("0.5", "2")}, structured=False, prune=False)
    assert whole.smtlib.count("fp.leq") == r.smtlib.count("fp.leq") + 1 and whole.smtlib.count("fp.eq") == r.smtlib.count("fp.eq") + 1


def test_exhaustive_enumeration_of_small_boxes():
    # 6-bit format, w free in [-1, 1]: every float point is tried (exact unsat, no solver)
    fmt = kinkcheck.encodings.formats.FloatFormat.from_spec({"exponent_bits": 3, "fraction_bits": 2})
    doc = {
        "kinkcheck": 1,
        "dtype": {"exponent_bits": 3, "fraction_bits": 2},
        "params": {"w": {"value": 1}},
        "inputs": {"shape": [1, 1], "values": [[1]]},
        "layers": [{"op": "linear", "weight": [["w"]], "bias": [3]}, {"op": "relu"}, {"op": "abs"}],
        "loss": {"op": "sum"},
    }
    n = len([v for v in fmt.all_finite_values().tolist() if -1 <= v <= 1])  # -0 and +0 included
    r = search(doc, "real-tie", box={"w": ("-1", "1")}, prune=False)
    assert (r.status, r.trust) == ("unsat", "exact") and r.solver.startswith(f"exhaustive enumeration of the {n} float points")
    r = search(doc, "real-tie", box={"w": ("-4", "1")}, prune=False)
    # the lemmas solve the first-layer unit exactly: w = -3 makes relu(w + 3) a real tie
    assert r.status == "sat" and r.confirmed and r.values == {"w": "-0x1.8p+1"}
