"""The ``kinkcheck verify`` command on good files: exit codes, the ``--json`` object, the human
(rich table) output, ``--values``, ``--convention``.

The networks are built here in tmp_path; every expected value is worked out by hand in the comments
(never pasted from kinkcheck's output). Most runs go through ``typer.testing.CliRunner`` (in-process,
fast); one goes through a real subprocess to check the process exit code and streams.

Exit codes: 0 everything holds; 1 a finding; 2 bad input or usage; 3 undecided.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction

import pytest
from typer.testing import CliRunner

from kinkcheck.cli import app

RUNNER = CliRunner()

# the spec's example, verbatim: f(w) = ReLU(w) - ReLU(-w) = w at w = 0
SPEC_EXAMPLE = {
    "kinkcheck": 1,
    "dtype": "float32",
    "params": {"w": {"value": 0}},
    "inputs": {"shape": [1, 1], "values": [[1]]},
    "layers": [
        {"op": "linear", "weight": [["w"], ["-w"]]},
        {"op": "relu"},
        {"op": "linear", "weight": [[1, -1]]},
    ],
    "loss": {"op": "sum"},
}

# No tie anywhere: W = [[1, 2], [3, 4]], b = [1/2, -1], two samples x0 = [1, 1], x1 = [-1, 1/2].
#   sample 0: u = [1 + 2 + 1/2, 3 + 4 - 1] = [7/2, 6]        both active
#   sample 1: u = [-1 + 1 + 1/2, -3 + 2 - 1] = [1/2, -2]     unit 0 active, unit 1 inactive
#   f = 7/2 + 6 + 1/2 + 0 = 10 (float32: 7/2 + 6 = 19/2, + 1/2 + 0 = 10, all exact) = 0x1.4p+3
# Gradient (sum loss, relu' = 1 on active units):
#   dW[0,:] = x0 + x1 = [0, 3/2];  dW[1,:] = x0 = [1, 1];  db = [2, 1]
#   layout w[0,0], w[0,1], w[1,0], w[1,1], b[0], b[1]
NO_TIE = {
    "kinkcheck": 1,
    "dtype": "float32",
    "params": {"w": {"shape": [2, 2], "values": [[1, 2], [3, 4]]}, "b": {"shape": [2], "values": [0.5, -1]}},
    "inputs": {"shape": [2, 2], "values": [[1, 1], [-1, "1/2"]]},
    "layers": [{"op": "linear", "weight": "w", "bias": "b"}, {"op": "relu"}],
    "loss": {"op": "sum"},
}
NO_TIE_GRADIENT = ["0", "3/2", "1", "1", "2", "1"]
# machine: every partial sum is exact in float32; 1 + (-1) = +0 under round-to-nearest-even
NO_TIE_MACHINE_AD = ["0x0p+0", "0x1.8p+0", "0x1p+0", "0x1p+0", "0x1p+1", "0x1p+0"]

# A float tie that is no real tie (compensation), float16 (10 fraction bits):
#   w = x = 1 + 2^-10 = 0x1.004p+0, b = -(1 + 2^-9) = -0x1.008p+0
#   exact: w*x = 1 + 2^-9 + 2^-20, so w*x + b = 2^-20 = 1/1048576 > 0   (no real tie, relu active)
#   float16: w*x rounds to 1 + 2^-9 (the 2^-20 is far below half an ulp, 2^-11), + b = 0: a float tie
# f = relu(w x + b): exact f = 2^-20, gradient (x, 1) = (1025/1024, 1) = exact AD (no real tie).
# Machine: relu(0) = 0, relu'(0) = 0 (pytorch) -> loss 0x0p+0, machine AD (0, 0).
COMPENSATION = {
    "kinkcheck": 1,
    "dtype": "float16",
    "params": {"w": {"value": "0x1.004p+0"}, "b": {"value": "-0x1.008p+0"}},
    "inputs": {"shape": [1, 1], "values": [["0x1.004p+0"]]},
    "layers": [{"op": "linear", "weight": [["w"]], "bias": ["b"]}, {"op": "relu"}],
    "loss": {"op": "sum"},
}

REQUIRED_KEYS = {
    "differentiable", "ad_correct", "ad_in_clarke", "gradient", "ad", "machine_ad",
    "real_ties", "float_ties", "choice_sensitive", "compensation", "branch_mismatch", "branch_mismatch_units",
}


def write(tmp_path, doc, name="net.json"):
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return str(p)


def run(*args):
    result = RUNNER.invoke(app, ["verify", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def run_json(*args):
    result = run(*args, "--json")
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert len(lines) == 1, "--json prints one JSON object on one line"
    return result.exit_code, json.loads(lines[0])


def check_types(rep):
    """The --json contract: keys and types."""
    assert REQUIRED_KEYS <= set(rep)
    for k in ("differentiable", "ad_correct", "ad_in_clarke", "choice_sensitive", "compensation", "branch_mismatch"):
        assert rep[k] in (True, False, None), k
    for k in ("gradient", "ad"):
        assert rep[k] is None or all(isinstance(s, str) for s in rep[k])
        if rep[k] is not None:
            for s in rep[k]:
                Fraction(s)  # "p/q" or "p"
                assert s == str(Fraction(s)), f"{s!r} is not in lowest terms p/q"
    assert rep["machine_ad"] is None or all(isinstance(s, str) for s in rep["machine_ad"])
    if rep["machine_ad"] is not None:
        for s in rep["machine_ad"]:
            float.fromhex(s)
            assert s.lstrip("-").startswith("0x")
    for k in ("real_ties", "float_ties"):
        assert isinstance(rep[k], list)
        for t in rep[k]:
            assert {"layer", "unit", "sample", "kink"} <= set(t)
            assert isinstance(t["layer"], int) and isinstance(t["unit"], int) and isinstance(t["sample"], int)


def ties(rep, key):
    return sorted((t["layer"], t["sample"], t["unit"], t["kink"]) for t in rep[key])


# ----------------------------------------------------------------------------------------------
# no tie: everything holds


def test_no_tie_json(tmp_path):
    code, rep = run_json(write(tmp_path, NO_TIE))
    check_types(rep)
    assert code == 0
    assert rep["differentiable"] is True and rep["ad_correct"] is True and rep["ad_in_clarke"] is True
    assert rep["gradient"] == NO_TIE_GRADIENT
    assert rep["ad"] == rep["gradient"]
    assert rep["machine_ad"] == NO_TIE_MACHINE_AD
    assert rep["real_ties"] == [] and rep["float_ties"] == []
    assert rep["compensation"] is False and rep["choice_sensitive"] is False
    assert rep["loss"] == {"exact": "10", "machine": "0x1.4p+3"}
    assert rep["n_params"] == 6 and rep["batch"] == 2
    assert rep["dtype"] == "float32" and rep["convention"] == "pytorch"
    assert rep["findings"] == [] and rep["rounded_values"] == []


def test_no_tie_human(tmp_path):
    result = run(write(tmp_path, NO_TIE))
    assert result.exit_code == 0
    assert result.stderr == ""
    out = result.stdout
    assert "differentiable" in out and "yes" in out
    assert "Real ties" not in out and "Float ties" not in out
    assert "0 / 0" in out  # real ties / float ties
    assert "finding" not in out


def test_no_tie_frozen_params(tmp_path):
    # b not trainable: the gradient is only over w, the first four entries above
    doc = json.loads(json.dumps(NO_TIE))
    doc["params"]["b"]["trainable"] = False
    code, rep = run_json(write(tmp_path, doc))
    assert code == 0
    assert rep["gradient"] == NO_TIE_GRADIENT[:4]
    assert rep["machine_ad"] == NO_TIE_MACHINE_AD[:4]
    assert rep["n_params"] == 4


# ----------------------------------------------------------------------------------------------
# the spec's example: two real ties, AD wrong


def test_spec_example_json(tmp_path):
    code, rep = run_json(write(tmp_path, SPEC_EXAMPLE))
    check_types(rep)
    # f = relu(w) - relu(-w); AD = relu'(w)*1 + relu'(-w)*1 = 0 + 0 at w = 0 (pytorch relu'(0) = 0)
    assert rep["ad"] == ["0"]
    assert rep["machine_ad"] == ["0x0p+0"]
    # layer 1 (relu), sample 0, units 0 (w*1 = 0) and 1 (-w*1 = -0, counts as 0): both on the kink 0
    assert ties(rep, "real_ties") == [(1, 0, 0, "0"), (1, 0, 1, "0")]
    assert ties(rep, "float_ties") == [(1, 0, 0, "0"), (1, 0, 1, "0")]
    assert rep["compensation"] is False  # the float run sits on the same kinks
    # relu'(0) = 1 at unit 0 alone would give AD 1: the float AD depends on the choice
    assert rep["choice_sensitive"] is True
    assert rep["loss"]["exact"] == "0"
    assert code == 1  # a finding (choice-sensitive; AD not the gradient)


def test_spec_example_verdicts(tmp_path):
    code, rep = run_json(write(tmp_path, SPEC_EXAMPLE))
    # f(w) = w: differentiable, gradient 1, Clarke set {1}; AD = 0 is neither
    assert rep["differentiable"] is True
    assert rep["gradient"] == ["1"]
    assert rep["ad_correct"] is False
    assert rep["ad_in_clarke"] is False
    assert code == 1


def test_spec_example_human(tmp_path):
    result = run(write(tmp_path, SPEC_EXAMPLE))
    assert result.exit_code == 1
    out = result.stdout
    assert "Real ties" in out and "Float ties" in out
    assert "relu" in out
    assert "2 / 2" in out  # real ties / float ties
    assert "choice-sensitive" in out
    assert "AD output" in out  # small problem: values shown


@pytest.mark.parametrize(
    "convention,ad,machine_ad",
    [
        # relu'(0) = 1: 1 + 1 = 2
        ({"relu": [1]}, "2", "0x1p+1"),
        # relu'(0) = 1/2: 1/2 + 1/2 = 1 (the true derivative)
        ({"relu": ["1/2"]}, "1", "0x1p+0"),
        # the right derivative is 1, the left 0
        ({"relu": ["right"]}, "2", "0x1p+1"),
        ({"relu": ["left"]}, "0", "0x0p+0"),
    ],
)
def test_convention_file(tmp_path, convention, ad, machine_ad):
    conv = tmp_path / "conv.json"
    conv.write_text(json.dumps(convention))
    code, rep = run_json(write(tmp_path, SPEC_EXAMPLE), "--convention", str(conv))
    assert rep["ad"] == [ad]
    assert rep["machine_ad"] == [machine_ad]
    assert code == 1  # choice-sensitive either way: the two ties can take different choices


def test_convention_in_file_and_override(tmp_path):
    doc = dict(SPEC_EXAMPLE, convention={"relu": [1]})
    _, rep = run_json(write(tmp_path, doc))
    assert rep["ad"] == ["2"]
    # the command line wins over the file: pytorch relu'(0) = 0
    _, rep = run_json(write(tmp_path, doc), "--convention", "pytorch")
    assert rep["ad"] == ["0"] and rep["convention"] == "pytorch"


def test_layer_kink_derivatives_override(tmp_path):
    doc = json.loads(json.dumps(SPEC_EXAMPLE))
    doc["layers"][1]["kink_derivatives"] = [1]  # overrides the convention for that layer: AD 2
    _, rep = run_json(write(tmp_path, doc), "--convention", "pytorch")
    assert rep["ad"] == ["2"]


@pytest.mark.parametrize("name", ["jax", "tensorflow"])
def test_named_conventions(tmp_path, name):
    # relu'(0) = 0 in JAX (jnp.where(x > 0, g, 0)) and TensorFlow (ReluGrad: x > 0): AD 0
    code, rep = run_json(write(tmp_path, SPEC_EXAMPLE), "--convention", name)
    assert rep["convention"] == name
    assert rep["ad"] == ["0"]


# ----------------------------------------------------------------------------------------------
# compensation: the float run has a tie the exact run does not have


def test_compensation_json(tmp_path):
    code, rep = run_json(write(tmp_path, COMPENSATION))
    check_types(rep)
    assert rep["real_ties"] == []
    assert ties(rep, "float_ties") == [(1, 0, 0, "0")]
    (t,) = rep["float_ties"]
    # the exact value of the relu input is 2^-20; it may be left out (null) when the float64 filter
    # decided the sample's exact branches without evaluating it exactly
    assert t["exact"] in ("1/1048576", None) and t["machine"] == "0x0p+0"
    # no real tie: smooth near w, gradient = exact AD = (x, 1)
    assert rep["differentiable"] is True and rep["ad_correct"] is True and rep["ad_in_clarke"] is True
    assert rep["gradient"] == ["1025/1024", "1"]
    assert rep["ad"] == ["1025/1024", "1"]
    assert rep["machine_ad"] == ["0x0p+0", "0x0p+0"]
    assert rep["loss"] == {"exact": "1/1048576", "machine": "0x0p+0"}
    assert rep["compensation"] is True and rep["branch_mismatch"] is True
    assert [(c["layer"], c["sample"], c["unit"], c["kind"]) for c in rep["compensation_neurons"]] == [
        (1, 0, 0, "float tie only")
    ]
    assert rep["branch_mismatch_units"] == rep["compensation_neurons"]
    # relu'(0) = 1 instead would give machine AD (x, 1) != (0, 0)
    assert rep["choice_sensitive"] is True
    assert code == 1


# A real tie that is no float tie, float16: w = x0 = 1 + 2^-10, c = -(1 + 2^-9), e = -2^-20, x = (x0, 1, 1)
#   exact: w*x0 + c + e = (1 + 2^-9 + 2^-20) - (1 + 2^-9) - 2^-20 = 0: a real tie, relu'(0; .) not linear in w
#   float16: w*x0 rounds to 1 + 2^-9, + c = 0, + e = -2^-20 < 0: relu's flat piece, no float tie
# The float run branches differently (a branch mismatch), but f is not differentiable at w: that is
# no compensation (Boustany's compensation zone needs AD right over the reals).
REAL_TIE_ONLY = {
    "kinkcheck": 1,
    "dtype": "float16",
    "params": {"w": {"value": "0x1.004p+0"}, "c": {"value": "-0x1.008p+0"}, "e": {"value": "-0x1p-20"}},
    "inputs": {"shape": [1, 3], "values": [["0x1.004p+0", "1", "1"]]},
    "layers": [{"op": "linear", "weight": [["w", "c", "e"]]}, {"op": "relu"}],
    "loss": {"op": "sum"},
}


def test_branch_mismatch_without_compensation(tmp_path):
    code, rep = run_json(write(tmp_path, REAL_TIE_ONLY))
    check_types(rep)
    assert ties(rep, "real_ties") == [(1, 0, 0, "0")] and rep["float_ties"] == []
    assert (rep["differentiable"], rep["ad_correct"], rep["ad_in_clarke"]) == (False, False, True)
    assert rep["branch_mismatch"] is True and rep["compensation"] is False
    assert [(c["layer"], c["sample"], c["unit"], c["kind"], c["exact_branch"], c["machine_branch"]) for c in rep["branch_mismatch_units"]] == [
        (1, 0, 0, "real tie only", "on kink 0", "piece 0")
    ]
    assert rep["compensation_neurons"] == []
    assert rep["machine_ad"] == ["0x0p+0"] * 3 and rep["loss"] == {"exact": "0", "machine": "0x0p+0"}
    assert not any("compensation" in f for f in rep["findings"])
    assert code == 1  # not differentiable, AD is not the gradient
    out = run(write(tmp_path, REAL_TIE_ONLY)).stdout
    assert "Branch mismatch (machine branch differs" in out and "Compensation (" not in out


def test_compensation_verdict_table():
    from kinkcheck.decide.ties import compensation_verdict

    assert compensation_verdict(True, True, True) == (True, None)
    for d, a in ((True, True), (None, None), (False, False), (True, None), (None, True)):
        assert compensation_verdict(d, a, False) == (False, None)
        assert compensation_verdict(d, a, None) == (None, None)
    assert compensation_verdict(False, False, True) == (False, None)
    assert compensation_verdict(True, False, True) == (False, None)
    assert compensation_verdict(None, False, True) == (False, None)
    v, why = compensation_verdict(None, None, True)
    assert v is None and "differentiability is undecided" in why
    v, why = compensation_verdict(True, None, True)
    assert v is None and "gradient is undecided" in why


def test_compensation_human(tmp_path):
    result = run(write(tmp_path, COMPENSATION))
    assert result.exit_code == 1
    out = result.stdout
    assert "Float ties" in out and "Real ties" not in out
    assert "Compensation" in out
    assert "0 / 1" in out  # real ties / float ties
    assert "compensation" in out.lower() and "finding" in out


def test_compensation_float32_has_no_tie(tmp_path):
    # the same values in float32 (23 fraction bits): w*x = 1 + 2^-9 + 2^-20 is exact, the sum is 2^-20
    doc = dict(COMPENSATION, dtype="float32")
    code, rep = run_json(write(tmp_path, doc))
    assert rep["float_ties"] == [] and rep["compensation"] is False
    assert rep["machine_ad"] == ["0x1.004p+0", "0x1p+0"]
    assert rep["loss"]["machine"] == "0x1p-20"
    assert code == 0


# ----------------------------------------------------------------------------------------------
# options


def test_values_flag(tmp_path):
    code, rep = run_json(write(tmp_path, NO_TIE), "--values")
    assert rep["values_included"] is True
    assert rep["ad"] == NO_TIE_GRADIENT and rep["machine_ad"] == NO_TIE_MACHINE_AD
    result = run(write(tmp_path, NO_TIE), "--values")
    assert result.exit_code == 0
    out = result.stdout
    assert "AD output" in out
    for label in ("w[0,1]", "b[1]"):
        assert label in out
    assert "0x1.8p+0" in out and "3/2" in out  # machine and exact AD of w[0,1]


def test_rounding_nearest_on_good_file(tmp_path):
    code, rep = run_json(write(tmp_path, NO_TIE), "--rounding", "nearest")
    assert code == 0 and rep["rounded_values"] == []
    code, rep = run_json(write(tmp_path, NO_TIE), "--rounding", "exact")
    assert code == 0


def test_json_output_is_only_json(tmp_path):
    result = run(write(tmp_path, COMPENSATION), "--json")
    assert result.exit_code == 1
    assert result.stderr == ""
    assert result.stdout.endswith("}\n") and result.stdout.count("\n") == 1


def test_subprocess_exit_codes(tmp_path):
    # the real process: exit codes and streams as a shell sees them (0 and 1 side by side)
    env = {k: v for k, v in os.environ.items() if k != "KINKCHECK_DEBUG"}
    main = [sys.executable, "-c", "from kinkcheck.cli import main; main()", "verify"]
    procs = [
        subprocess.Popen(main + [write(tmp_path, NO_TIE, "a.json"), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env),
        subprocess.Popen(main + [write(tmp_path, COMPENSATION, "b.json"), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env),
    ]
    outs = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    (out0, err0, rc0), (out1, err1, rc1) = outs
    assert (rc0, err0) == (0, "") and json.loads(out0)["gradient"] == NO_TIE_GRADIENT
    assert (rc1, err1) == (1, "") and json.loads(out1)["compensation"] is True


def test_written_files_get_the_ordinary_mode(tmp_path):
    """Atomic writes go through mkstemp (0600); the final file gets 0666 minus the umask like any
    new file, so a certificate written by one user can be checked by another."""
    from conftest import EXAMPLES

    out = tmp_path / "c.json"
    r = run(str(EXAMPLES / "bias_relu_clarke.json"), "--certificate", str(out))
    assert r.exit_code in (0, 1), r.output
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask


def test_choice_witness_human_and_json():
    # only a mixed assignment changes the machine AD output (proofs/examples, docs/semantics.md)
    from conftest import EXAMPLES

    path = str(EXAMPLES / "relu6_maxpool_mixed_choice.json")
    result = run(path)
    assert result.exit_code == 1
    assert "choice-sensitive: together, layer 1 sample 0 unit 1 left, layer 2 sample 0 unit 0 entry 1 -> machine AD (0x1p+0)" in result.stdout
    code, rep = run_json(path)
    assert code == 1 and rep["choice_sensitive"] is True and rep["choice_causes"] == []
    assert rep["choice_witness"]["ties"] == [
        {"layer": 1, "op": "relu6", "sample": 0, "unit": 1, "choice": "left"},
        {"layer": 2, "op": "maxpool1d", "sample": 0, "unit": 0, "choice": 1},
    ]
