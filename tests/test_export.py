"""export-test: generated pytest files reproduce the counterexample, pass ruff, and can fail."""

import json
import os
import shutil
import subprocess
import sys
import types
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from test_search import TIE16

import kinkcheck
from kinkcheck.testgen.export import export_test

from conftest import EXAMPLES
from strategies import networks


def run_pytest(path):
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)], capture_output=True, text=True, cwd=path.parent, check=False)


@pytest.mark.parametrize("name", ["tie16", "relu_minus_relu", "mixed_proxy_h_of_minus_h", "mixed_proxy_g_minus_h"])
def test_generated_file_passes_and_can_fail(tmp_path, name):
    if name == "tie16":
        cex = tmp_path / "cex.json"
        cex.write_text(json.dumps(TIE16))
    else:
        cex = EXAMPLES / f"{name}.json"
    out = tmp_path / f"test_cex_{name}.py"
    out.write_text(export_test(str(cex)))
    r = run_pytest(out)
    assert r.returncode == 0, r.stdout + r.stderr
    if shutil.which("ruff"):
        lint = subprocess.run(["ruff", "check", "--isolated", str(out)], capture_output=True, text=True, check=False)
        assert lint.returncode == 0, lint.stdout
    # a generated test that cannot fail asserts nothing: flip one machine AD bit pattern
    text = out.read_text()
    ad = kinkcheck.verify(str(cex), values=True).machine_ad
    bad = text.replace(json.dumps(ad), json.dumps(["0x1.8p+3"] + ad[1:]), 1) if json.dumps(ad) in text else text.replace(ad[0], "0x1.8p+3", 1)
    out.write_text(bad)
    assert run_pytest(out).returncode != 0


def test_float16_counterexample_asserts_the_phenomenon(tmp_path):
    # w = x = 1 + 2^-10: the float16 pre-activation rounds to 0 (a float tie, relu'(0) = 0 kills the
    # gradient), the exact one is 2^-20 > 0 (exact AD dw = 2x, db = 2): the float AD is not the exact AD
    doc = json.loads(json.dumps(TIE16))
    doc["params"]["w"] = {"value": "0x1.004p+0"}
    cex = tmp_path / "cex.json"
    cex.write_text(json.dumps(doc))
    text = export_test(str(cex))
    assert "FLOAT_TIES = [[1, 0, 0]]" in text
    assert 'EXACT_AD = ["1025/512", "2"]' in text
    assert "is False" in text
    out = tmp_path / "test_cex.py"
    out.write_text(text)
    assert run_pytest(out).returncode == 0


def test_unsupported_networks_are_refused(tmp_path):
    with pytest.raises(kinkcheck.InputError):
        export_test(str(EXAMPLES / "maxpool_u_b.json"))
    cli = subprocess.run(
        [sys.executable, "-c", "from kinkcheck.cli import main; main()", "export-test", str(EXAMPLES / "maxpool_u_b.json"), "-o", str(tmp_path / "t.py")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert cli.returncode == 2 and not (tmp_path / "t.py").exists()


# ------------------------------------------------------------------------------------------------
# torch export: counterexamples from every search goal, generated and run


def _goal_docs():
    real = json.loads(json.dumps(TIE16))
    real["params"]["b"] = {"value": "-0x1.004p+0"}  # w = 1: w*x + b = 0 exactly
    choice = json.loads(json.dumps(TIE16))
    choice["layers"].append({"op": "abs"})
    return {
        "float_tie": (TIE16, "float-tie", 0),
        "real_tie": (real, "real-tie", 0),
        "compensation": (TIE16, "compensation", 0),
        "choice_sensitive": (choice, "choice-sensitive", 0),
        "ad_mismatch": (TIE16, "ad-mismatch", 1),
    }


@pytest.fixture(scope="module")
def torch_files(tmp_path_factory):
    """One torch test file per search goal, written by the CLI from the counterexample search found."""
    from kinkcheck.search.solver import search

    d = tmp_path_factory.mktemp("torch_cex")
    files = {}
    for name, (doc, goal, k) in _goal_docs().items():
        res = search(doc, goal, box={"w": ("0.5", "2")}, k_ulps=k)
        assert res.status == "sat" and res.confirmed, (goal, res.reason)
        cex = d / f"{name}.json"
        cex.write_text(json.dumps(res.counterexample))
        out = d / f"test_cex_{name}.py"
        if name == "float_tie":  # through the CLI once
            cli = subprocess.run(
                [sys.executable, "-c", "from kinkcheck.cli import main; main()", "export-test", str(cex), "--framework", "torch", "-o", str(out)],
                capture_output=True,
                text=True,
                check=False,
            )
            assert cli.returncode == 0, cli.stderr
        else:
            out.write_text(export_test(str(cex), "torch"))
        files[name] = out
    return files


def _constants(path):
    """The module-level constants of a generated file (its data, without importing torch)."""
    import ast

    tree = ast.parse(path.read_text())
    out = {}
    for t in tree.body:
        if isinstance(t, ast.Assign) and isinstance(t.targets[0], ast.Name) and t.targets[0].id.isupper():
            try:
                out[t.targets[0].id] = ast.literal_eval(t.value)
            except ValueError:  # DT = getattr(torch, ...), F = torch.nn.functional
                pass
    return out


def test_torch_files_pass_ruff_and_pytest_and_can_fail(torch_files, tmp_path):
    pytest.importorskip("torch")
    if shutil.which("ruff"):
        lint = subprocess.run(["ruff", "check", "--isolated", *map(str, torch_files.values())], capture_output=True, text=True, check=False)
        assert lint.returncode == 0, lint.stdout
    # three mutants that must fail: a machine AD bit pattern, an exact AD rational, a torch prediction
    real = torch_files["real_tie"].read_text()
    mutants = {
        "machine": torch_files["float_tie"].read_text().replace('MACHINE_AD = ["0x0p+0"', 'MACHINE_AD = ["-0x0p+0"', 1),
        "exact": torch_files["float_tie"].read_text().replace('EXACT_AD = ["1025/512"', 'EXACT_AD = ["1024/512"', 1),
        "torch": real.replace('TORCH_RIGHT = [["=", "0x1.004p+1"]', 'TORCH_RIGHT = [["=", "0x1p+1"]', 1),
    }
    paths = [str(p) for p in torch_files.values()]
    for name, text in mutants.items():
        assert text not in {p.read_text() for p in torch_files.values()}, name
        (tmp_path / f"test_mutant_{name}.py").write_text(text)
        paths.append(str(tmp_path / f"test_mutant_{name}.py"))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", *paths], capture_output=True, text=True, check=False)
    failed = {line.split("::")[0].rsplit("/", 1)[-1] for line in r.stdout.splitlines() if line.startswith("FAILED")}
    assert failed == {f"test_mutant_{n}.py" for n in mutants}, r.stdout[-3000:]
    assert "3 failed, " in r.stdout and "skipped" not in r.stdout, r.stdout[-500:]


def test_torch_files_assert_what_no_summation_order_changes(torch_files):
    c = {name: _constants(p) for name, p in torch_files.items()}
    # w = x = 1 + 2^-10, b = -(1 + 2^-9): the spec's float16 run ties (w*x rounds to -b), but torch
    # may fuse w*x + b or accumulate in float32 (2^-20): the tie is not asserted of torch's run, only
    # an enclosure of the pre-activation, and no torch AD entry (relu's branch is undecided upstream)
    for name in ("float_tie", "compensation", "ad_mismatch"):
        assert c[name]["FLOAT_TIES"] == [[1, 0, 0]] and c[name]["REAL_TIES"] == [] and c[name]["BRANCH_MISMATCH"] == [[1, 0, 0]]
        assert c[name]["TORCH_TIES"] == [] and c[name]["TORCH_GRAD"] == [None, None]
        (unit,) = c[name]["TORCH_UNITS"]
        assert unit[:3] == [1, 0, 0] and unit[3][0] == "in"
        assert Fraction(unit[3][1]) < 0 < Fraction(2) ** -20 < Fraction(unit[3][2])
        assert c[name]["MISMATCH"] == [[0, "0x1p-24", "33587200"], [1, "0x1p-24", "33554432"]]  # 2x / 2^-24, 2 / 2^-24
    # w = 1, x = 1 + 2^-10, b = -x: one product, exact: every order ties; relu'(0) = 0 (torch's own)
    # gives AD 0; the right derivative 1 gives (x, 1) * 2 = (0x1.004p+1, 2): choice-sensitive in torch
    r = c["real_tie"]
    assert r["REAL_TIES"] == r["FLOAT_TIES"] == r["TORCH_TIES"] == [[1, 0, 0]]
    assert r["TORCH_UNITS"] == [[1, 0, 0, ["=", "0x0p+0"]]]
    assert r["TORCH_GRAD"] == r["TORCH_LEFT"] == [["=", "0x0p+0"], ["=", "0x0p+0"]]
    assert r["TORCH_RIGHT"] == [["=", "0x1.004p+1"], ["=", "0x1p+1"]] and r["TORCH_CHOICE"] == [0, 1]
    assert c["choice_sensitive"]["ALL_AT_ONCE"] is True and c["choice_sensitive"]["FLOAT_TIES"] == [[1, 0, 0], [3, 0, 0]]
    doc = torch_files["float_tie"].read_text().split('"""')[1]
    assert "Assumes PyTorch 2.13" in doc and "relu'(0.0) = 0 - torch's own backward" in doc
    assert "NOT asserted: whether torch's run ties at (layer 1, sample 0, unit 0)" in doc


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], deadline=None, max_examples=12 * int(os.environ.get("KINKCHECK_TEST_SCALE", "1")))
@given(networks(dtypes=["float16", "bfloat16", "float32", "float64"], max_width=3, max_batch=2, ties=True))
def test_torch_predictions_hold_on_random_networks(doc):
    """The generated file's tests, run in-process against the installed torch: the replay
    reproduces kinkcheck and torch's run stays inside the every-order predictions."""
    pytest.importorskip("torch")
    text = export_test(doc, "torch")
    mod = types.ModuleType("generated_cex")
    exec(compile(text, "generated_cex.py", "exec"), mod.__dict__)  # noqa: S102 - the generated file, run in-process
    tests = [getattr(mod, n) for n in dir(mod) if n.startswith("test_")]
    assert len(tests) >= 4
    for t in tests:
        t()


def test_torch_export_refuses_custom_formats_and_transcendental_ops(tmp_path):
    doc = json.loads(json.dumps(TIE16))
    doc["dtype"] = {"exponent_bits": 4, "fraction_bits": 3}
    doc["params"]["b"] = {"value": -1}
    doc["inputs"]["values"] = [[1]]
    with pytest.raises(kinkcheck.InputError, match="torch has no tensor dtype"):
        export_test(doc, "torch")
    doc = json.loads(json.dumps(TIE16))
    doc["layers"][1]["op"] = "sigmoid"
    with pytest.raises(kinkcheck.InputError, match="sigmoid"):
        export_test(doc, "torch")
    with pytest.raises(kinkcheck.InputError, match="numpy or torch"):
        export_test(TIE16, "jax")


def test_torch_export_replays_a_mixed_choice_witness(tmp_path):
    """Only a mixed assignment changes the machine AD output (proofs/examples): the generated file
    carries the witness and its test replays it (in-process, against the installed torch)."""
    pytest.importorskip("torch")
    doc = json.loads((EXAMPLES / "relu6_maxpool_mixed_choice.json").read_text())
    text = export_test(doc, "torch")
    out = tmp_path / "test_mixed.py"
    out.write_text(text)
    c = _constants(out)
    assert c["CHOICE_WITNESS"] == [[1, 0, 1, "left"], [2, 0, 0, 1]] and c["CHOICE_CAUSES"] == [] and c["ALL_AT_ONCE"] is False
    mod = types.ModuleType("generated_mixed")
    exec(compile(text, "generated_mixed.py", "exec"), mod.__dict__)  # noqa: S102 - the generated file, run in-process
    mod.test_choice_sensitivity()
    mod.CHOICE_WITNESS = [[1, 0, 1, "left"]]  # the relu6 tie alone changes nothing: the test must fail
    with pytest.raises(AssertionError):
        mod.test_choice_sensitivity()
