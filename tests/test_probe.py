"""Conventions probed from the installed framework agree with the shipped data files.

CI installs torch 2.13.0 (CPU); without torch these tests skip with the reason."""

import json
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install 'kinkcheck[torch]')")

from kinkcheck.encodings import activations  # noqa: E402
from kinkcheck.encodings.conventions import load_convention, named, resolve_kink_derivatives  # noqa: E402
from kinkcheck.encodings.formats import FloatFormat, exact  # noqa: E402
from kinkcheck.probe import probe  # noqa: E402

F64 = FloatFormat.from_spec("float64")
ACTS = {
    "relu": activations.activation("relu"),
    "leaky_relu": activations.activation("leaky_relu", negative_slope=exact(0.01)),
    "hardtanh": activations.activation("hardtanh", min_val=exact(-1.0), max_val=exact(1.0)),
    "relu6": activations.activation("relu6"),
    "hardsigmoid": activations.activation("hardsigmoid"),
    "hardswish": activations.activation("hardswish"),
    "abs": activations.activation("abs"),
    "l1": activations.activation("abs"),
}


def values(conv, op):
    return resolve_kink_derivatives(conv.kink_entries(op), ACTS[op], F64, op)


def test_shipped_pytorch_convention_matches_the_probe():
    probed = load_convention(probe("torch"))
    shipped = named("pytorch")
    for op in ACTS:
        assert values(probed, op) == values(shipped, op), op
    for op in ("maxpool1d", "maxpool2d"):
        assert probed.tie_break(op) == shipped.tie_break(op)


def test_probe_records_the_measured_facts():
    p = probe("torch")
    # measured facts of torch 2.13 CPU (issue 5): clamp passes the gradient at its bounds
    if torch.__version__.startswith("2.13"):
        assert p["extra"]["clamp_at_bounds"] == [1.0, 1.0]
        assert p["ops"]["hardswish"]["kink_derivatives"] == [0.0, 1.0]
    assert p["ops"]["leaky_relu"]["kink_derivatives"] == ["left"]


def test_cli_probe_writes_a_usable_convention(tmp_path):
    out = tmp_path / "torch.json"
    r = subprocess.run([sys.executable, "-c", "from kinkcheck.cli import main; main()", "conventions", "probe", "--framework", "torch", "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    conv = json.loads(out.read_text())
    assert conv["framework"] == "PyTorch" and torch.__version__ in conv["version"]
    from conftest import EXAMPLES

    import kinkcheck

    rep = kinkcheck.verify(str(EXAMPLES / "relu_minus_relu.json"), convention=str(out))
    assert rep.ad == ["0"]
