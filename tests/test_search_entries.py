"""kinkcheck search on imported-style networks: tensor entries freed by name and index (API and CLI),
argument errors (exit 2, one line), certificates that ``kinkcheck check`` re-validates, the two
targets of the rounding-aware lemmas, and every lemma answer checked against exhaustive enumeration
in small formats (so a lemma cannot be wrong silently)."""

import itertools
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

import kinkcheck
from kinkcheck.cli import app
from kinkcheck.encodings.errors import InputError
from kinkcheck.encodings.formats import FloatFormat
from kinkcheck.search import lemmas
from kinkcheck.search.certcheck import check_any
from kinkcheck.search.solver import _point_meets, _values, search


def mlp(dtype="float32", W=None, b=None, x=None, act="relu", v=None):
    """An imported-style network: l0.weight [U, I], l0.bias [U], l1.weight [1, U] (shaped params)."""
    W = np.asarray(W, dtype=float)
    U, _ = W.shape
    x = np.asarray(x, dtype=float)
    fmt = FloatFormat.from_spec(dtype)
    hx = lambda a: np.vectorize(fmt.to_hex, otypes=[object])(np.asarray(a, dtype=float)).tolist()
    return {
        "kinkcheck": 1,
        "dtype": dtype,
        "params": {
            "l0.weight": {"shape": list(W.shape), "values": hx(W)},
            "l0.bias": {"shape": [U], "values": hx(b)},
            "l1.weight": {"shape": [1, U], "values": hx(v if v is not None else [[1] * U])},
        },
        "inputs": {"shape": list(x.shape), "values": hx(x)},
        "layers": [
            {"op": "linear", "weight": "l0.weight", "bias": "l0.bias"},
            {"op": act},
            {"op": "linear", "weight": "l1.weight"},
        ],
        "loss": {"op": "sum"},
    }


# float16 tie: w = x = 1 + 2^-10, b = -(1 + 2^-9) ties in float (w*x rounds to -b) but not over the reals
NET16 = mlp("float16", W=[[0.5, 0.25], [1 + 2**-10, 0.0], [1, 1]], b=[0.125, -1.0, 3], x=[[1 + 2**-10, 1.5]])


RUNNER = CliRunner()


class _Run:
    def __init__(self, result):
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        self.returncode, self.stdout, self.stderr = result.exit_code, result.stdout, result.stderr


def run(*args):
    """In process (fast); test_cli_entries_progress_and_certificates also runs one real process."""
    return _Run(RUNNER.invoke(app, list(args)))


def run_process(*args):
    return subprocess.run([sys.executable, "-c", "from kinkcheck.cli import main; main()", *args], capture_output=True, text=True, check=False)


def test_api_frees_one_entry_of_a_tensor():
    # unit 1: z = fl(fl(w*x) + 0*1.5) + b with w = x = 1 + 2^-10: b = -(1 + 2^-9), 2 ulps below the file's -1
    r = search(NET16, "float-tie", box={"l0.bias[1]": ("-2", "-1")})
    assert r.status == "sat" and r.confirmed and list(r.values) == ["l0.bias[1]"]
    assert r.values["l0.bias[1]"] == "-0x1.008p+0"  # the only float16 b with fl(fl(w x) + 0*1.5 + b) = 0 here
    doc = r.counterexample
    assert doc["params"]["l0.bias"]["values"][1] == "-0x1.008p+0" and doc["params"]["l0.bias"]["values"][0] == NET16["params"]["l0.bias"]["values"][0]
    rep = kinkcheck.verify(doc)
    assert rep.float_ties and not rep.real_ties
    # no float16 b makes it a real tie: w*x + 0*1.5 + b = 0 needs b = -(1 + 2^-10)^2 (22 significant bits)
    r = search(NET16, "real-tie", box={"l0.bias[1]": ("-2", "-1")})
    assert (r.status, r.trust, r.method) == ("unsat", "exact", "lemmas")
    assert search(NET16, "compensation", box={"l0.bias[1]": ("-2", "-1")}).status == "sat"


def test_api_frees_a_whole_tensor_and_single_weights():
    r = search(NET16, "real-tie", free=["l0.bias"], ulps=3)
    assert set(r.box) == {"l0.bias[0]", "l0.bias[1]", "l0.bias[2]"}
    # within 3 ulps of the file values no unit reaches a real tie
    assert r.status == "unsat" and r.trust == "exact"
    r = search(NET16, "real-tie", box={"l0.bias": ("-8", "8")})
    assert r.status == "sat" and r.confirmed
    r = search(NET16, "float-tie", box={"l0.weight[2,1]": ("-8", "8")})
    assert r.status == "sat" and r.confirmed and list(r.values) == ["l0.weight[2,1]"]
    doc = r.counterexample
    assert doc["params"]["l0.weight"]["values"][2][1] == r.values["l0.weight[2,1]"]


BAD = [
    (["--find", "float-tie", "--box", "l0.bias[1]=0:1", "--k", "-1"], "--k"),
    (["--find", "float-tie", "--box", "l0.bias[1]=0:1", "--timeout", "-5"], "--timeout"),
    (["--find", "float-tie", "--box", "l0.bias[1]=0:1", "--box", "l0.bias[1]=0:2"], "given twice"),
    (["--find", "float-tie", "--box", "l0.bias=0:1", "--box", "l0.bias[1]=0:2"], "already free"),
    (["--find", "float-tie", "--box", "l0.bias[1]=0:1", "--free", "l0.bias", "--ulps", "1"], "already free"),
    (["--find", "float-tie", "--box", "l0.bias[3]=0:1"], "out of range"),
    (["--find", "float-tie", "--box", "l0.weight[1]=0:1"], "shape [3, 2]"),
    (["--find", "float-tie", "--box", "l0.bias[x]=0:1"], "malformed index"),
    (["--find", "float-tie", "--box", "l0.bias=1"], "NAME=LO:HI"),
    (["--find", "float-tie", "--box", "l0.bias[0]=1:0"], "empty interval"),
    (["--find", "float-tie", "--box", "nope=0:1"], "l0.weight[3,2], l0.bias[3], l1.weight[1,3]"),
    (["--find", "float-tie", "--free", "l0.bias[0]"], "--ulps"),
    (["--find", "float-tie", "--free", "l0.bias[0]", "--ulps", "-2"], "--ulps"),
    (["--find", "float-tie"], "name the free parameters"),
    (["--find", "nonsense", "--box", "l0.bias[0]=0:1"], "unknown goal"),
]


@pytest.mark.parametrize("args,needle", BAD, ids=[n for _, n in BAD])
def test_cli_argument_errors_exit_2_with_one_line(tmp_path, args, needle):
    net = tmp_path / "net.json"
    net.write_text(json.dumps(NET16))
    out = tmp_path / "out.json"
    r = run("search", str(net), *args, "--out", str(out))
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert not out.exists()


def test_cli_entries_progress_and_certificates(tmp_path):
    net = tmp_path / "net.json"
    net.write_text(json.dumps(NET16))
    cex = tmp_path / "cex.json"
    r = run_process("search", str(net), "--find", "float-tie", "--free", "l0.bias[1],l0.weight[0,1]", "--ulps", "4", "--out", str(cex))
    assert r.returncode == 1, r.stderr
    assert "l0.bias[1] = -0x1.008p+0" in r.stdout
    assert "kinkcheck search [" in r.stderr and "done: sat" in r.stderr  # progress: stage and elapsed time
    assert kinkcheck.verify(str(cex)).float_ties
    # quiet
    r = run("search", str(net), "--find", "float-tie", "--free", "l0.bias[1]", "--ulps", "4", "-q")
    assert r.returncode == 1 and r.stderr == ""
    # an exact unsat: the certificate is re-validated by kinkcheck check
    cert = tmp_path / "cert.json"
    r = run("search", str(net), "--find", "real-tie", "--box", "l0.bias=-8:-1", "--out", str(cert), "--json")
    assert r.returncode == 0 and r.stderr == "" and json.loads(r.stdout)["trust"] == "exact"
    r = run("check", str(cert))
    assert r.returncode == 0 and "lemmas" in r.stdout and "solver-trusted" not in r.stdout, r.stdout
    # a solver-trusted unsat: the check re-builds the query and labels the UNSAT step
    cert2 = tmp_path / "cert2.json"
    r = run("search", str(net), "--find", "real-tie", "--box", "l0.bias[1]=-2:-1", "--no-structure", "--out", str(cert2), "-q")
    assert r.returncode == 0
    r = run("check", str(cert2))
    assert r.returncode == 0 and "query re-built" in r.stdout and "[solver-trusted]" in r.stdout, r.stdout
    # a tampered certificate is invalid (exit 1): another box
    doc = json.loads(cert2.read_text())
    doc["box"]["l0.bias[1]"] = ["-0x1p+2", "-0x1p+0"]
    cert2.write_text(json.dumps(doc))
    assert run("check", str(cert2)).returncode == 1
    doc = json.loads(cert.read_text())
    doc["evidence"] = doc["evidence"][1:]
    cert.write_text(json.dumps(doc))
    assert run("check", str(cert)).returncode == 1


def test_certificate_of_every_exact_method_checks():
    for kw in ({}, {"structured": False}):
        r = search(NET16, "real-tie", box={"l0.bias[1]": ("-2", "-1")}, **kw)
        assert r.status == "unsat"
        res = check_any(r.certificate())
        assert res["valid"] and res["trust"] == r.trust
    # enclosures: unit 1 cannot reach 0 for b in [1, 2]
    r = search(NET16, "float-tie", box={"l0.bias[1]": ("1", "2")})
    assert (r.status, r.method) == ("unsat", "enclosures") and check_any(r.certificate())["valid"]


# -- the two targets ------------------------------------------------------------------------


def test_compensation_w_times_one_plus_b_is_unsat_exactly():
    """z = w*1 + b in float32 over w, b in [-1, 1]: w*1 is exact and one rounded addition never
    changes a sign nor rounds a non-zero sum to zero: no compensation anywhere (no solver)."""
    doc = mlp("float32", W=[[0.5]], b=[0.25], x=[[1.0]])
    r = search(doc, "compensation", box={"l0.weight": ("-1", "1"), "l0.bias": ("-1", "1")})
    assert (r.status, r.trust, r.method) == ("unsat", "exact", "lemmas")
    assert "sign preservation" in r.evidence[0]["lemma"]
    assert check_any(r.certificate())["valid"]
    # with x = 3 the product rounds: the lemma does not apply, and a compensation exists
    doc3 = mlp("float16", W=[[0.5]], b=[0.25], x=[[3.0]])
    r = search(doc3, "compensation", box={"l0.weight": ("-1", "1"), "l0.bias": ("-1", "1")}, timeout=60)
    assert r.status == "sat" and r.confirmed


def _fan_in_64(representable):
    rng = np.random.default_rng(7)
    if representable:  # small integers: w.x is an integer, -w.x a float32 value
        W = rng.integers(-3, 4, size=(1, 64)).astype(float)
        x = rng.integers(-3, 4, size=(1, 64)).astype(float)
    else:
        W = rng.standard_normal((1, 64)).astype(np.float32).astype(float)
        x = rng.standard_normal((1, 64)).astype(np.float32).astype(float)
    return mlp("float32", W=W, b=[0.0], x=x), float(-(W @ x.T)[0, 0]) if representable else None


def test_real_tie_fan_in_64_by_solving_for_the_bias():
    doc, b = _fan_in_64(True)
    r = search(doc, "real-tie", box={"l0.bias": ("-1000", "1000")})
    assert r.status == "sat" and r.confirmed and float.fromhex(r.values["l0.bias[0]"]) == b
    doc, _ = _fan_in_64(False)
    r = search(doc, "real-tie", box={"l0.bias": ("-1000", "1000")})
    assert (r.status, r.trust, r.method) == ("unsat", "exact", "lemmas")  # -(w.x) has too many bits
    assert check_any(r.certificate())["valid"]


# -- every lemma answer against exhaustive enumeration ----------------------------------------

SMALL = [{"exponent_bits": 3, "fraction_bits": 2}, {"exponent_bits": 4, "fraction_bits": 3}]


def _random_case(rng, spec):
    fmt = FloatFormat.from_spec(spec)
    vals = [v for v in fmt.all_finite_values().tolist() if abs(v) <= 4]
    pick = lambda: rng.choice(vals)
    xs = [1.0, -1.0, 2.0, 0.5, 0.0, 0.75, 1.25, -1.5, 3.0]
    n_in, units, batch = rng.randint(1, 3), rng.randint(1, 2), rng.randint(1, 2)
    exactish = rng.random() < 0.4  # w * 2^k + b: the sign-preservation lemma's home ground
    if exactish:
        n_in = 1
    W = [[pick() for _ in range(n_in)] for _ in range(units)]
    b = [pick() for _ in range(units)]
    x = [[rng.choice([1.0, -1.0, 2.0, 4.0] if exactish else xs + [pick()]) for _ in range(n_in)] for _ in range(batch)]
    doc = mlp(spec, W=W, b=b, x=x, act=rng.choice(["relu", "abs", "hardtanh", "leaky_relu"]))
    net = kinkcheck.load(doc)
    # 1 or 2 free entries of unit 0 (bias and/or weights), small boxes
    refs = ["l0.bias[0]"] + [f"l0.weight[0,{j}]" for j in range(n_in)]
    chosen = refs if exactish else rng.sample(refs, rng.randint(1, min(2, len(refs))))
    box = {}
    for ref in chosen:
        a, c = sorted([pick(), pick()])
        lo_o = fmt.ordinal(a)
        hi_o = min(fmt.ordinal(c), lo_o + 12)
        box[ref] = (fmt.to_hex(fmt.from_ordinal(lo_o)), fmt.to_hex(fmt.from_ordinal(hi_o)))
    return fmt, doc, net, box


@pytest.mark.parametrize("spec", SMALL, ids=["e3m2", "e4m3"])
def test_every_lemma_answer_agrees_with_exhaustive_enumeration(spec):
    from kinkcheck.search.entries import bounds as make_bounds

    rng = random.Random(12)
    answered = {"no": 0, "yes": 0, "sign": 0, "one free": 0, "enumerated": 0}
    for _ in range(30 * int(os.environ.get("KINKCHECK_TEST_SCALE", "1"))):
        fmt, doc, net, box = _random_case(rng, spec)
        bounds = make_bounds(net, box, None, None)
        for goal in ("float-tie", "real-tie", "compensation"):
            found = lemmas.decide(net, goal, bounds, None)
            if found is None:
                continue
            if found[0] == "sat":
                answered["yes"] += 1
                combo = tuple(float(found[1][e.offset]) for e, _, _ in bounds.values())
                assert _point_meets(net, bounds, combo, goal, 0), (doc, box, goal, found)
                continue
            answered["no"] += 1
            answered["sign"] += any("sign preservation" in e["lemma"] for e in found[2])
            answered["one free"] += any("one free entry" in e["lemma"] for e in found[2])
            answered["enumerated"] += any("enumerated" in e["lemma"] for e in found[2])
            grids = [_values(fmt, lo, hi, True) for _, lo, hi in bounds.values()]
            for combo in itertools.product(*grids):
                assert not _point_meets(net, bounds, combo, goal, 0), (doc, box, goal, combo, found)
    assert all(v > 0 for v in answered.values()), answered  # every kind of answer was exercised


def test_lemma_pieces():
    f32 = FloatFormat.from_spec("float32")
    one = lemmas._entry_iv(f32, -1.0, 1.0, 1)
    # w * 1, w * 2, w * 0 are exact over [-1, 1]; w * 0.5 may lose the last bit of a subnormal; w * 3 rounds
    assert lemmas._product_exact(f32, one, 1.0) is not None and lemmas._product_exact(f32, one, 2.0) is not None
    assert lemmas._product_exact(f32, one, 0.0).zero
    assert lemmas._product_exact(f32, one, 0.5) is None and lemmas._product_exact(f32, one, 3.0) is None
    # Sterbenz: a in [1, 1.5], b in [-2, -1]: a + b exact; a in [1, 3] is not within a factor 2 of [1, 2]
    A = lemmas._entry_iv(f32, 1.0, 1.5, 1)
    assert lemmas._sum_exact(f32, A, lemmas._entry_iv(f32, -2.0, -1.0, 1)) is not None
    assert lemmas._sum_exact(f32, lemmas._entry_iv(f32, 1.0, 3.0, 1), lemmas._entry_iv(f32, -2.0, -1.0 + 2**-20, 1)) is None
    # a common grid: multiples of 2^-2 below 2^22 add exactly
    q = lemmas._entry_iv(f32, 0.25, 0.25, 1)
    assert lemmas._sum_exact(f32, q, lemmas._entry_iv(f32, 1024.0, 2000.0, 1)) is not None
    with pytest.raises(InputError):
        search(NET16, "float-tie", box={"l0.bias[0]": ("0", "1")}, timeout=-1)


def test_time_out_is_unknown_with_the_reason():
    from kinkcheck.search.solver import DEFAULT_TIMEOUT

    assert DEFAULT_TIMEOUT == 60
    doc = mlp("float32", W=[[0.5]], b=[0.25], x=[[1.0]])
    r = search(doc, "compensation", box={"l0.weight": ("-1", "1"), "l0.bias": ("-1", "1")}, structured=False, timeout=1)
    assert r.status == "unknown" and "time-out" in r.reason and r.exit_code == 3
    lines = []
    r = search(doc, "compensation", box={"l0.weight": ("-1", "1"), "l0.bias": ("-1", "1")}, progress=lines.append)
    assert r.status == "unsat" and any("lemmas" in ln for ln in lines) and lines[-1].endswith("done: unsat (rounding-aware lemmas (exact, no solver))")
    assert all(ln.startswith("[") and " s] " in ln for ln in lines)


def test_help_shows_entry_syntax_and_default_time_out():
    r = RUNNER.invoke(app, ["search", "--help"], env={"COLUMNS": "200"})
    flat = "".join(ch for ch in r.stdout if not ch.isspace() and ch not in "│╭╮╰╯─")  # any width, any wrapping
    assert r.exit_code == 0 and "NAME[i,j]=LO:HI" in flat and "default60" in flat, r.stdout


def test_lemmas_leave_the_rest_to_the_solver(monkeypatch):
    """Units the lemmas decide are left out of the query; the certificate's check decides them again."""
    from kinkcheck.search import solver

    spec = {"exponent_bits": 4, "fraction_bits": 3}
    # unit 0: 1 + 0.5 * 0.5625 + b = 0 needs b = -1.28125 (5 fraction bits): no real tie (one free entry)
    # unit 1: w0 + 0.5625 w1 - 1 = 0 has no solution on the grid of [0.5, 1] (two free entries)
    doc = mlp(spec, W=[[1, 0.5], [1, 1]], b=[0.25, -1], x=[[1, 0.5625]])
    box = {"l0.bias[0]": ("-2", "-1"), "l0.weight[1,0]": ("0.5", "1"), "l0.weight[1,1]": ("0.5", "1")}
    r = search(doc, "real-tie", box=box)
    assert (r.status, r.method) == ("unsat", "lemmas") and len(r.evidence) == 2
    assert any("enumerated" in e["lemma"] for e in r.evidence)
    monkeypatch.setattr(lemmas, "ENUMERATE_MAX", {"real-tie": 0, "float-tie": 0, "compensation": 0})
    monkeypatch.setattr(solver, "EXHAUSTIVE_MAX", 0)
    r = search(doc, "real-tie", box=box)
    assert (r.status, r.method) == ("unsat", "solver") and [e["key"] for e in r.evidence] == [[1, 0, 0]]
    assert "|l0.weight[1,0]|" in r.smtlib
    res = check_any(r.certificate())
    assert res["valid"] and res["trust"] == "solver-trusted" and any("lemmas" in st for st in res["steps"])


def test_lemmas_never_answer_for_units_after_the_first_layer():
    """A kinked unit after the first activation is not the lemmas' to decide: no unsat from them."""
    from kinkcheck.search.entries import bounds as make_bounds

    doc = mlp("float16", W=[[1.0]], b=[3.0], x=[[1.0]])
    doc["layers"].append({"op": "abs"})  # abs(relu(w + 3)) - 1: a kink after the first layer
    doc["layers"][2]["weight"] = "l1.weight"
    doc["params"]["l1.weight"] = {"shape": [1, 1], "values": [[1.0]]}
    doc["layers"].insert(3, {"op": "linear", "weight": [[1.0]], "bias": [-1.0]})
    net = kinkcheck.load(doc)
    b = make_bounds(net, {"l0.bias": ("-4", "-3.5")}, None, None)  # relu(1 + b) = 0: the first unit never ties
    found = lemmas.decide(net, "real-tie", b, None)
    assert found[0] == "partial" and [e["key"] for e in found[1]] == [[1, 0, 0]]  # the abs unit is left open
    r = search(doc, "real-tie", box={"l0.bias": ("-4", "-3.5")}, prune=False)
    assert r.status == "unsat" and r.method != "lemmas"  # abs(0 - 1) never ties, found by another step
