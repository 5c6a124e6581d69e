"""PyTorch interop: from_torch keeps exact bits, agrees with torch's forward pass, and the exact
gradcheck judges torch's own autograd output. Skips cleanly without torch."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install 'kinkcheck[torch]')")

import kinkcheck  # noqa: E402
from kinkcheck.encodings import program as P  # noqa: E402
from kinkcheck.encodings.machine import MachineArith  # noqa: E402
from kinkcheck.torch import check, from_torch  # noqa: E402


def small_net(dtype):
    torch.manual_seed(1)
    m = torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 4), torch.nn.Hardtanh(-0.5, 0.5),
        torch.nn.Linear(4, 2), torch.nn.LeakyReLU(0.1),
    ).to(dtype)
    x = torch.randn(5, 3).to(dtype)
    return m, x


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_from_torch_keeps_bits_and_matches_the_forward_pass(dtype):
    m, x = small_net(dtype)
    doc = from_torch(m, x)
    net = kinkcheck.load(doc)  # exact representability is checked by the loader
    for name, p in m.named_parameters():
        i, kind = name.split(".")
        ours = net.theta[net.param(f"l{i}.{kind}").offset:][: p.numel()]
        assert np.array_equal(ours, p.detach().double().numpy().reshape(-1))
    fw = P.forward(net, MachineArith(net.fmt))
    ours = np.asarray(fw.out, dtype=np.float64)
    theirs = m(x).detach().double().numpy()
    # torch's matmul order (and FMA) differs from the spec's left-to-right order: agreement within
    # the documented bound of a few ulps of the format per layer, not bit for bit
    ulp = float(net.fmt.ulp(1.0))
    assert np.all(np.abs(ours - theirs) <= 64 * ulp * (1 + np.abs(theirs)))


def test_fan_in_one_agrees_bit_for_bit():
    m = torch.nn.Sequential(torch.nn.Linear(1, 3, bias=False), torch.nn.ReLU(), torch.nn.Linear(3, 1, bias=False)).double()
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[0.1], [-0.3], [2.5]], dtype=torch.float64))
        m[2].weight.copy_(torch.tensor([[1.0, 1.0, 1.0]], dtype=torch.float64))
    x = torch.tensor([[0.7]], dtype=torch.float64)
    net = kinkcheck.load(from_torch(m, x))
    fw = P.forward(net, MachineArith(net.fmt))
    # layer 0: single products; layer 2: 1*a + 1*b + 1*c with exact products: one order of sums,
    # the spec's; torch's 3-term dot may differ, so compare the first layer only
    assert np.array_equal(np.asarray(fw.xs[1], dtype=np.float64), (m[0](x)).detach().numpy())


def test_exact_gradcheck_catches_a_bias_on_a_kink():
    # relu(1 * x + b) with x = 1, b = -1: the pre-activation is exactly 0. torch's autograd gives 0
    # for both parameters (relu'(0) = 0); f is not differentiable there (the kink), and 0 is a
    # Clarke subderivative. A finite-difference gradcheck sees only a number in between.
    m = torch.nn.Sequential(torch.nn.Linear(1, 1), torch.nn.ReLU()).double()
    with torch.no_grad():
        m[0].weight.fill_(1.0)
        m[0].bias.fill_(-1.0)
    r = check(m, torch.tensor([[1.0]], dtype=torch.float64))
    assert r["torch_grad"] == [0.0, 0.0]
    assert r["torch_equals_exact_ad"] is True
    assert r["differentiable"] is False and r["is_gradient"] is False
    assert r["ad_in_clarke"] is True
    assert [(t["layer"], t["unit"]) for t in r["real_ties"]] == [(1, 0)]


def test_exact_gradcheck_on_a_smooth_point():
    m, x = small_net(torch.float64)
    r = check(m, x, targets=torch.zeros(5, 2, dtype=torch.float64), loss="mse")
    if not r["real_ties"]:
        assert r["differentiable"] is True and r["ad_in_clarke"] is True


def test_unsupported_module_is_refused_with_its_layer():
    m = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.GELU())
    with pytest.raises(kinkcheck.InputError, match="layer 1 \\(GELU\\)"):
        from_torch(m, torch.zeros(1, 2))


def _cli(*args, cwd=None):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", "from kinkcheck.cli import main; main()", *args], capture_output=True, text=True, cwd=cwd)


def test_import_torchscript_and_state_dict(tmp_path):
    import json

    m, x = small_net(torch.float32)
    np.save(tmp_path / "x.npy", x.numpy())
    ts = tmp_path / "model_ts.pt"
    torch.jit.script(m).save(str(ts))
    sd = tmp_path / "model_sd.pt"
    torch.save(m.state_dict(), sd)
    direct = from_torch(m, x)
    for args in (
        [str(ts)],
        [str(sd), "--arch", "Linear(3,4),ReLU(),Linear(4,4),Hardtanh(-0.5,0.5),Linear(4,2),LeakyReLU(0.1)"],
    ):
        out = tmp_path / "net.json"
        r = _cli("import", *args, "--inputs", str(tmp_path / "x.npy"), "-o", str(out))
        assert r.returncode == 0, r.stderr
        doc = json.loads(out.read_text())
        assert doc["params"] == direct["params"] and doc["layers"] == direct["layers"]


def test_malicious_pickle_is_refused_without_trust(tmp_path):
    import pickle

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    bad = tmp_path / "evil.pt"
    with open(bad, "wb") as f:
        pickle.dump({"model": Evil()}, f)
    np.save(tmp_path / "x.npy", np.zeros((1, 2), dtype=np.float32))
    for args in ([str(bad)], [str(bad), "--arch", "Linear(2,1)"]):
        r = _cli("import", *args, "--inputs", str(tmp_path / "x.npy"), "-o", str(tmp_path / "net.json"))
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert not marker.exists()
        assert not (tmp_path / "net.json").exists()
    assert "trust-pickle" in _cli("import", str(bad), "--inputs", str(tmp_path / "x.npy"), "-o", str(tmp_path / "n.json")).stderr


def test_arch_is_parsed_not_evaluated():
    from kinkcheck.torch import parse_arch

    with pytest.raises(kinkcheck.InputError):
        parse_arch("__import__('os').system('true')")
    with pytest.raises(kinkcheck.InputError):
        parse_arch("Linear(2, x)")
    assert len(parse_arch("Linear(2,3), ReLU(), Linear(3, 1, bias=False)")) == 3
