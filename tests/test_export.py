"""export-test: generated pytest files reproduce the counterexample, pass ruff, and can fail."""

import json
import shutil
import subprocess
import sys

import pytest

import kinkcheck
from conftest import EXAMPLES
from kinkcheck.export import export_test
from test_search import TIE16


def run_pytest(path):
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)], capture_output=True, text=True, cwd=path.parent)


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
        lint = subprocess.run(["ruff", "check", "--isolated", str(out)], capture_output=True, text=True)
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
    )
    assert cli.returncode == 2 and not (tmp_path / "t.py").exists()
