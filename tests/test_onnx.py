"""ONNX import and export: torch models exported to ONNX import to the same network as from_torch;
``kinkcheck export --to onnx|torch`` (run as a process) and re-import give the same parameters bit
for bit; the ONNX file passes onnx.checker and onnxruntime runs it; onnxruntime's forward equals
kinkcheck's machine forward where the arithmetic is exact, and is within the documented per-layer
bound otherwise (docs/interop.md). Skips cleanly without onnx/onnxruntime/torch."""

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'kinkcheck[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'kinkcheck[onnx]')")
torch = pytest.importorskip("torch", reason="PyTorch is not installed")

from test_torch import layer_errors

import kinkcheck
from kinkcheck.encodings import program as P
from kinkcheck.encodings.machine import MachineArith
from kinkcheck.interop.onnx import from_onnx
from kinkcheck.torch import from_torch


def ort_layers(path, net):
    """run_layer(k, x) for layer_errors: onnxruntime on the node of layer k alone (extracted from
    the file), fed kinkcheck's machine input (float32)."""
    import onnx.utils

    model = onnx.load(str(path))
    nodes = [n for n in model.graph.node if n.op_type != "Constant"]
    assert len(nodes) == len(net.layers)
    sessions = {}

    def run(k, x):
        if k not in sessions:
            sub = path.with_name(f"{path.stem}_node{k}.onnx")
            onnx.utils.extract_model(str(path), str(sub), [nodes[k].input[0]], [nodes[k].output[0]])
            sessions[k] = ort.InferenceSession(str(sub), providers=["CPUExecutionProvider"])
        s = sessions[k]
        return s.run(None, {s.get_inputs()[0].name: x.astype(np.float32)})[0]

    return run


# onnxruntime computes HardSigmoid/HardSwish as max(0, min(1, alpha*x + beta)) (* x) with alpha =
# fl(1/6), not (x + 3) / 6, and its own sigmoid/tanh: measured at most 4 ulps (onnxruntime 1.32 CPU,
# docs/interop.md); the tests allow 8 for other CPUs' vector paths
ORT_EXACT = {"relu", "leaky_relu", "hardtanh", "relu6", "maxpool2d", "maxpool1d", "avgpool2d", "flatten", "abs", "identity"}
ORT_ULPS = 8


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
    assert doc["params"] == ref["params"]  # names too (l{k}.weight)
    net = kinkcheck.load(doc)
    # op constants come back as their float32 values (0.1 -> float32(0.1)): the same network
    shape = lambda n: [(L.op, L.act.params if L.act else None, L.kernel, L.stride, L.padding) for L in n.layers]
    assert shape(net) == shape(kinkcheck.load(ref))
    fw = P.forward(net, MachineArith(net.fmt))
    ulps = layer_errors(net, fw, ort_layers(path, net), ORT_EXACT)
    assert all(v <= ORT_ULPS for v in ulps.values()), ulps


def test_cli_import_onnx_and_unsupported_node(tmp_path):
    torch.manual_seed(0)
    m = NETS["mlp"]()
    x = torch.randn(2, 3)
    export(m, x, tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", x.numpy())
    run = lambda p, o: subprocess.run([sys.executable, "-c", "from kinkcheck.cli import main; main()", "import", str(p), "--inputs", str(tmp_path / "x.npy"), "-o", str(o)], capture_output=True, text=True, check=False)
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
    assert again["params"] == doc["params"] and again["layers"] == back["layers"]
    net = kinkcheck.load(doc)
    fw = P.forward(net, MachineArith(net.fmt))
    ulps = layer_errors(net, fw, ort_layers(path, net), ORT_EXACT)
    assert all(v <= ORT_ULPS for v in ulps.values()), ulps


def exact_arithmetic_net():
    """A float32 network whose every product and sum is exactly representable (dyadic weights and
    inputs with few bits), so that any summation order, FMA or not, gives the same floats: where
    the evaluation order cannot matter, torch and onnxruntime must agree with kinkcheck bit for bit."""
    from kinkcheck.torch import Abs

    g = torch.Generator().manual_seed(7)

    def dyadic(shape, scale, lo, hi):  # integers in [lo, hi] times scale
        return torch.randint(lo, hi + 1, shape, generator=g).float() * scale

    m = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.ReLU(), torch.nn.AvgPool2d(2), torch.nn.MaxPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(8, 6), torch.nn.LeakyReLU(0.125), torch.nn.Linear(6, 6), Abs(), torch.nn.Hardtanh(-1.5, 6.25),
        torch.nn.Linear(6, 4), torch.nn.ReLU6(), torch.nn.Linear(4, 3, bias=False),
    )
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(dyadic(p.shape, 0.125, -8, 8))
    return m, dyadic((8, 1, 4, 4), 0.25, -8, 8)


def test_cli_export_round_trip_and_forward_agreement(tmp_path):
    """kinkcheck export --to onnx (a process) and --to torch, then import:
    the same parameters bit for bit and the same layers; onnxruntime and the TorchScript file
    compute exactly kinkcheck's machine output on a network whose arithmetic is exact."""
    from fractions import Fraction

    from typer.testing import CliRunner

    from kinkcheck.cli import app
    from kinkcheck.encodings.exact import ExactArith

    m, x = exact_arithmetic_net()
    doc = from_torch(m, x)
    net = kinkcheck.load(doc)
    fw = P.forward(net, MachineArith(net.fmt), with_loss=False)
    ex = P.forward(net, ExactArith(), with_loss=False)
    for a, b in zip(fw.xs, ex.xs):  # no rounding anywhere: the order cannot matter
        assert [Fraction(float(v)) for v in np.asarray(a, dtype=np.float64).reshape(-1)] == [Fraction(int(q.numerator), int(q.denominator)) for q in np.asarray(b).reshape(-1)]
    (tmp_path / "net.json").write_text(json.dumps(doc))
    np.save(tmp_path / "x.npy", x.numpy())
    # ONNX through a real process (exit code and streams); TorchScript in-process (same command)
    r = subprocess.run([sys.executable, "-c", "from kinkcheck.cli import main; main()", "export", str(tmp_path / "net.json"), "--to", "onnx", "-o", str(tmp_path / "m.onnx")],
                       capture_output=True, text=True, check=False, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("wrote ") and "kinkcheck: note: the data and the loss are not part of the model" in r.stderr
    r = CliRunner().invoke(app, ["export", str(tmp_path / "net.json"), "--to", "torch", "-o", str(tmp_path / "m.pt")])
    assert r.exit_code == 0, r.stderr
    onnx.checker.check_model(onnx.load(str(tmp_path / "m.onnx")), full_check=True)
    for name in ("m.pt", "m.onnx"):
        r = CliRunner().invoke(app, ["import", str(tmp_path / name), "--inputs", str(tmp_path / "x.npy"), "-o", str(tmp_path / "back.json")])
        assert r.exit_code == 0, r.stderr
        back = json.loads((tmp_path / "back.json").read_text())
        assert back["params"] == doc["params"] and back["layers"] == doc["layers"], name
    ours = np.asarray(fw.out, dtype=np.float64)
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert np.array_equal(sess.run(None, {"input": x.numpy()})[0].astype(np.float64), ours)
    assert np.array_equal(torch.jit.load(str(tmp_path / "m.pt"))(x).detach().double().numpy(), ours)
