"""``kinkcheck verify MODEL --inputs X.npy`` (no network file in between) and the data checks that
``verify`` and ``import`` share: a .npy in the wrong dtype is a one-line error naming the file and
the cast; ``--rounding nearest`` rounds it and says so."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from kinkcheck.cli import app

torch = pytest.importorskip("torch")

RUNNER = CliRunner()


def _model(tie: bool):
    """relu(W x + b) summed; with ``tie`` the first unit's pre-activation is exactly 0 on sample 0."""
    m = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1))
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        m[0].bias.copy_(torch.tensor([-3.0 if tie else 0.5, -1.0]))
        m[2].weight.copy_(torch.tensor([[1.0, -1.0]]))
        m[2].bias.copy_(torch.tensor([0.25]))
    return m, torch.tensor([[1.0, 1.0], [-1.0, 0.5]])


def _pt2(tmp_path, tie=False):
    m, x = _model(tie)
    path = tmp_path / ("tie.pt2" if tie else "m.pt2")
    torch.export.save(torch.export.export(m, (x,)), str(path))
    np.save(tmp_path / "X.npy", x.numpy())
    return str(path), str(tmp_path / "X.npy")


def _run(*args):
    return RUNNER.invoke(app, list(args))


def test_verify_pt2_directly_equals_import_then_verify(tmp_path):
    model, xs = _pt2(tmp_path)
    direct = _run("verify", model, "--inputs", xs, "--json", "--values")
    assert direct.exit_code == 0, direct.output
    assert _run("import", model, "--inputs", xs, "-o", str(tmp_path / "net.json")).exit_code == 0
    via = _run("verify", str(tmp_path / "net.json"), "--json", "--values")
    a, b = json.loads(direct.stdout), json.loads(via.stdout)
    assert a["network"] == model
    for k in ("differentiable", "ad_correct", "ad_in_clarke", "ad", "machine_ad", "gradient", "loss", "n_real_ties"):
        assert a[k] == b[k], k


def test_verify_model_with_a_tie_reports_it(tmp_path):
    model, xs = _pt2(tmp_path, tie=True)
    r = _run("verify", model, "--inputs", xs, "--json")
    assert r.exit_code == 1
    d = json.loads(r.stdout)
    assert d["differentiable"] is False and d["ad_in_clarke"] is True
    assert [(t["layer"], t["sample"], t["unit"]) for t in d["real_ties"]] == [(1, 0, 0)]


def test_verify_onnx_directly(tmp_path):
    pytest.importorskip("onnx")
    from kinkcheck.torch import from_torch, to_onnx

    m, x = _model(False)
    to_onnx(from_torch(m, x), str(tmp_path / "m.onnx"))
    np.save(tmp_path / "X.npy", x.numpy())
    r = subprocess.run([sys.executable, "-c", "from kinkcheck.cli import main; main()", "verify", str(tmp_path / "m.onnx"), "--inputs", str(tmp_path / "X.npy"), "--json"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["network"].endswith("m.onnx") and d["differentiable"] is True and d["n_params"] == 9


@pytest.mark.parametrize("cmd", ["verify", "import"])
def test_wrong_dtype_names_the_file_and_the_cast(tmp_path, cmd):
    model, _ = _pt2(tmp_path)
    np.save(tmp_path / "X.npy", np.array([[1, 1], [-1, 0]], dtype=np.int64))
    out = tmp_path / "net.json"
    args = [cmd, model, "--inputs", str(tmp_path / "X.npy")] + (["-o", str(out)] if cmd == "import" else [])
    r = subprocess.run([sys.executable, "-c", "from kinkcheck.cli import main; main()", *args], capture_output=True, text=True, check=False)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [f"kinkcheck: {tmp_path / 'X.npy'}: dtype int64 is not the network's float32; cast with X.astype(np.float32) (or pass --rounding nearest)"]
    assert not out.exists()


def test_values_outside_the_dtype_error_or_round_with_nearest(tmp_path):
    model, _ = _pt2(tmp_path)
    xs = tmp_path / "X.npy"
    np.save(xs, np.array([[0.1, 1.0], [-1.0, 0.5]], dtype=np.float64))  # 0.1 is no float32
    r = _run("verify", model, "--inputs", str(xs))
    assert r.exit_code == 2 and "X.npy: dtype float64 is not the network's float32" in r.output
    np.save(xs, np.array([[0.1, 1.0], [-1.0, 0.5]], dtype=np.float32).astype(np.float64))
    r = _run("verify", model, "--inputs", str(xs), "--rounding", "nearest", "--json", "--values")
    assert r.exit_code == 0
    r = _run("import", model, "--inputs", str(xs), "--rounding", "nearest", "-o", str(tmp_path / "n.json"))
    assert r.exit_code == 0
    doc = json.loads((tmp_path / "n.json").read_text())
    assert doc["inputs"]["values"][0][0] == float(np.float32(0.1))
    np.save(xs, np.array([[0.1, 1.0], [-1.0, 0.5]], dtype=np.float64))
    r = subprocess.run([sys.executable, "-c", "from kinkcheck.cli import main; main()", "import", model, "--inputs", str(xs), "--rounding", "nearest", "-o", str(tmp_path / "r.json")], capture_output=True, text=True, check=False)
    assert r.returncode == 0 and "X.npy: 1 value(s) rounded to float32 (--rounding nearest)" in r.stderr
    assert json.loads((tmp_path / "r.json").read_text())["inputs"]["values"][0][0] == float(np.float32(0.1))


def test_usage_errors(tmp_path):
    model, xs = _pt2(tmp_path)
    r = _run("verify", model)
    assert r.exit_code == 2 and "m.pt2: a model file needs its batch: --inputs X.npy" in r.output
    (tmp_path / "net.json").write_text("{}")
    r = _run("verify", str(tmp_path / "net.json"), "--inputs", xs)
    assert r.exit_code == 2 and "--inputs/--targets are for model files" in r.output
    np.save(tmp_path / "Y.npy", np.array([0.0, 1.0]))
    r = _run("verify", model, "--inputs", xs, "--targets", str(tmp_path / "Y.npy"), "--loss", "cross_entropy")
    assert r.exit_code == 2 and "Y.npy: dtype float64: cross_entropy targets are class indices; cast with Y.astype(np.int64)" in r.output
    np.save(tmp_path / "X.npy", np.array([[np.inf, 1.0], [1.0, 1.0]], dtype=np.float32))
    r = _run("verify", model, "--inputs", xs)
    assert r.exit_code == 2 and "X.npy: entry 0 is inf (data must be finite)" in r.output
    (tmp_path / "bad.npy").write_text("not numpy")
    r = _run("verify", model, "--inputs", str(tmp_path / "bad.npy"))
    assert r.exit_code == 2 and "bad.npy: cannot read the inputs" in r.output


def test_targets_are_checked_and_rounded_like_inputs(tmp_path):
    model, xs = _pt2(tmp_path)
    ys = tmp_path / "Y.npy"
    np.save(ys, np.array([[0.1], [0.2]]))
    r = _run("verify", model, "--inputs", xs, "--targets", str(ys), "--loss", "mse")
    assert r.exit_code == 2 and "Y.npy: dtype float64 is not the network's float32; cast with Y.astype(np.float32)" in r.output
    r = _run("verify", model, "--inputs", xs, "--targets", str(ys), "--loss", "mse", "--rounding", "nearest", "--json")
    assert r.exit_code == 0
    np.save(ys, np.array([[0.1], [0.2]], dtype=np.float32))
    direct = json.loads(_run("verify", model, "--inputs", xs, "--targets", str(ys), "--loss", "mse", "--json", "--values").stdout)
    assert direct["loss"]["exact"] == json.loads(r.stdout)["loss"]["exact"]  # the same rounded targets
