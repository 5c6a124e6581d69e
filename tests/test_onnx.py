"""ONNX import: torch models exported to ONNX import to the same network as from_torch; the ONNX
file passes onnx.checker and onnxruntime runs it; our machine forward agrees with onnxruntime
within the documented ulp bound. Skips cleanly without onnx/onnxruntime/torch."""

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'kinkcheck[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'kinkcheck[onnx]')")
torch = pytest.importorskip("torch", reason="PyTorch is not installed")

import kinkcheck  # noqa: E402
from kinkcheck.encodings import program as P  # noqa: E402
from kinkcheck.encodings.machine import MachineArith  # noqa: E402
from kinkcheck.onnx_import import from_onnx  # noqa: E402
from kinkcheck.torch import from_torch  # noqa: E402


def export(m, x, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (x,), str(path), dynamo=False)


NETS = {
    "mlp": lambda: torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 4), torch.nn.Hardtanh(-0.5, 0.5), torch.nn.Linear(4, 2), torch.nn.LeakyReLU(0.1)),
    "acts": lambda: torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU6(), torch.nn.Linear(3, 3), torch.nn.Hardsigmoid(), torch.nn.Linear(3, 3), torch.nn.Hardswish(), torch.nn.Linear(3, 2), torch.nn.Tanh()),
    "conv": lambda: torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(8, 2)),
}


@pytest.mark.parametrize("name", sorted(NETS))
def test_onnx_import_matches_from_torch_and_onnxruntime(tmp_path, name):
    torch.manual_seed(3)
    m = NETS[name]()
    x = torch.randn(2, 1, 4, 4) if name == "conv" else torch.randn(2, 3)
    path = tmp_path / "m.onnx"
    export(m, x, path)
    onnx.checker.check_model(onnx.load(str(path)))
    doc = from_onnx(str(path), x.numpy())
    ref = from_torch(m, x)
    assert [l["op"] for l in doc["layers"]] == [l["op"] for l in ref["layers"]]
    assert sorted(json.dumps(p["values"]) for p in doc["params"].values()) == sorted(json.dumps(p["values"]) for p in ref["params"].values())
    net = kinkcheck.load(doc)
    ours = np.asarray(P.forward(net, MachineArith(net.fmt)).out, dtype=np.float64)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    theirs = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0].astype(np.float64)
    assert np.all(np.abs(ours - theirs) <= 64 * 2.0**-23 * (1 + np.abs(theirs)))


def test_cli_import_onnx_and_unsupported_node(tmp_path):
    torch.manual_seed(0)
    m = NETS["mlp"]()
    x = torch.randn(2, 3)
    export(m, x, tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", x.numpy())
    run = lambda p, o: subprocess.run([sys.executable, "-c", "from kinkcheck.cli import main; main()", "import", str(p), "--inputs", str(tmp_path / "x.npy"), "-o", str(o)], capture_output=True, text=True)
    r = run(tmp_path / "m.onnx", tmp_path / "net.json")
    assert r.returncode == 0, r.stderr
    assert kinkcheck.verify(str(tmp_path / "net.json")).n_params == sum(p.numel() for p in m.parameters())
    g = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.GELU())
    export(g, x, tmp_path / "g.onnx")
    r = run(tmp_path / "g.onnx", tmp_path / "g.json")
    assert r.returncode == 2 and "unsupported node" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "g.json").exists()


def test_round_trip_network_to_torch_and_onnx(tmp_path):
    """network file -> torch -> ONNX -> network file gives back the same network; the forward
    passes of kinkcheck (machine), torch and onnxruntime agree within the documented bound."""
    from kinkcheck.torch import to_onnx, to_torch

    torch.manual_seed(5)
    m = NETS["mlp"]()
    x = torch.randn(3, 3)
    doc = from_torch(m, x)
    back = from_torch(to_torch(doc), x)
    assert back["params"] == doc["params"]
    # op constants come back as their dtype-rounded values (0.1 -> float32(0.1)): the same network
    n1, n2 = kinkcheck.load(doc), kinkcheck.load(back)
    assert [L.op for L in n1.layers] == [L.op for L in n2.layers]
    assert [L.act.params if L.act else None for L in n1.layers] == [L.act.params if L.act else None for L in n2.layers]
    path = tmp_path / "rt.onnx"
    to_onnx(doc, path)
    onnx.checker.check_model(onnx.load(str(path)))
    again = from_onnx(str(path), x.numpy())
    assert sorted(json.dumps(p["values"]) for p in again["params"].values()) == sorted(json.dumps(p["values"]) for p in doc["params"].values())
    net = kinkcheck.load(doc)
    ours = np.asarray(P.forward(net, MachineArith(net.fmt)).out, dtype=np.float64)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    theirs = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0].astype(np.float64)
    assert np.all(np.abs(ours - theirs) <= 64 * 2.0**-23 * (1 + np.abs(theirs)))
