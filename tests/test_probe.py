"""Conventions probed from the installed framework agree with the shipped data files.

CI installs torch 2.13.0 (CPU) and JAX (CPU); without one of them its tests skip with the reason."""

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from kinkcheck.cli import app
from kinkcheck.encodings import activations
from kinkcheck.encodings.conventions import (
    load_convention,
    named,
    resolve_kink_derivatives,
)
from kinkcheck.encodings.formats import FloatFormat, exact
from kinkcheck.interop.probe import probe

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


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="PyTorch is not installed (pip install 'kinkcheck[torch]')")


@pytest.fixture(scope="module")
def jax_probe():
    """The JAX probe, measured once for the module (JAX compiles every primitive on first use)."""
    if "jax" not in sys.modules:
        os.environ["JAX_PLATFORMS"] = "cpu"
    pytest.importorskip("jax", reason="JAX is not installed (pip install 'kinkcheck[jax]')")
    return probe("jax")


def test_shipped_pytorch_convention_matches_the_probe(torch):
    probed = load_convention(probe("torch"))
    shipped = named("pytorch")
    for op in ACTS:
        assert values(probed, op) == values(shipped, op), op
    for op in ("maxpool1d", "maxpool2d"):
        assert probed.tie_break(op) == shipped.tie_break(op)


def test_probe_records_the_measured_facts(torch):
    p = probe("torch")
    # measured facts of torch 2.13 CPU (issue 5): clamp passes the gradient at its bounds
    if torch.__version__.startswith("2.13"):
        assert p["extra"]["clamp_at_bounds"] == [1.0, 1.0]
        assert p["ops"]["hardswish"]["kink_derivatives"] == [0.0, 1.0]
    assert p["ops"]["leaky_relu"]["kink_derivatives"] == ["left"]


def test_cli_probe_writes_a_usable_convention(tmp_path, torch):
    out = tmp_path / "torch.json"
    r = subprocess.run([sys.executable, "-c", "from kinkcheck.cli import main; main()", "conventions", "probe", "--framework", "torch", "-o", str(out)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    conv = json.loads(out.read_text())
    assert conv["framework"] == "PyTorch" and torch.__version__ in conv["version"]
    import kinkcheck

    from conftest import EXAMPLES

    rep = kinkcheck.verify(str(EXAMPLES / "relu_minus_relu.json"), convention=str(out))
    assert rep.ad == ["0"]


# ----------------------------------------------------------------------------------------------
# JAX


def test_shipped_jax_convention_matches_the_probe(jax_probe):
    """Every entry of encodings/conventions/jax.json (read from the JAX source) is what the
    installed JAX's jax.grad returns - checked op by op after resolving "left"/"right"."""
    probed = load_convention(jax_probe)
    shipped = named("jax")
    for op in ACTS:
        assert values(probed, op) == values(shipped, op), op
    for op in ("maxpool1d", "maxpool2d"):
        assert probed.tie_break(op) == shipped.tie_break(op) == "first", op


def test_jax_probe_records_the_measured_facts(jax_probe):
    """The values measured with jax 0.10.2 on CPU (docs/conventions.md), all one-sided:
    relu'(0) = 0 (left), leaky_relu'(0) = 1 (right, whatever the slope),
    hard_tanh 1 at both ends, relu6 and hard_sigmoid 0 at both kinks, hard_swish 0 at -3 and 1 at
    3, abs'(0) = +1 (also at -0), l1 +1 for |output - target|; reduce_window max-pool gives a tie
    to the first entry. The pitfalls of docs/conventions.md: jnp.clip and jnp.maximum give 0.5 at a
    tie, jnp.max / jnp.amax split a tie evenly, |target - output| gives -1, and hard_sigmoid's float
    kink sits below 3 (fl(x + 3) = 6 for the float32 number just below 3, where the derivative is 0)."""
    import jax

    p = jax_probe
    assert p["framework"] == "JAX" and jax.__version__ in p["version"] and "float32" in p["mode"]
    ops = {k: v.get("kink_derivatives", v.get("tie_break")) for k, v in p["ops"].items()}
    assert ops == {
        "relu": [0.0], "leaky_relu": ["right"], "hardtanh": [1.0, 1.0], "relu6": [0.0, 0.0],
        "hardsigmoid": [0.0, 0.0], "hardswish": [0.0, 1.0], "abs": [1.0], "l1": [1.0],
        "maxpool1d": "first", "maxpool2d": "first",
    }
    assert "relu'(-0) = 0.0" in p["ops"]["relu"]["note"] and "abs'(-0) = 1.0" in p["ops"]["abs"]["note"]
    e = p["extra"]
    assert (e["clip_at_bounds"], e["maximum_x_0_at_0"], e["max_ties"], e["amax_ties"]) == ([0.5, 0.5], 0.5, "split", "split")
    assert (e["l1_target_minus_output"], e["hard_sigmoid_below_3"], e["hard_swish_below_3"]) == (-1.0, 0.0, 1.0)
    assert e["differs under jit, float32"] == {} and e["differs under jit, float64"] == {}


ABS_AT_ZERO = {  # f(w) = |w * 1| at w = 0: the AD output is the convention's abs'(0)
    "kinkcheck": 1, "dtype": "float32", "params": {"w": {"value": 0}}, "inputs": {"shape": [1, 1], "values": [[1]]},
    "layers": [{"op": "linear", "weight": [["w"]]}, {"op": "abs"}], "loss": {"op": "sum"},
}


def test_cli_jax_probe_writes_a_usable_convention(tmp_path, jax_probe):
    """The CLI writes the probe as a convention file; with it, |w| at w = 0 has AD output 1 (JAX's
    abs'(0) = +1) where the pytorch convention gives 0."""
    import kinkcheck

    out = tmp_path / "jax.json"
    r = CliRunner().invoke(app, ["conventions", "probe", "--framework", "jax", "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    conv = json.loads(out.read_text())
    assert conv["ops"] == jax_probe["ops"] and conv["framework"] == "JAX"
    assert kinkcheck.verify(ABS_AT_ZERO, convention=str(out)).ad == ["1"]
    assert kinkcheck.verify(ABS_AT_ZERO, convention="jax").ad == ["1"]
    assert kinkcheck.verify(ABS_AT_ZERO).ad == ["0"]


def test_probe_without_the_framework_is_one_line(monkeypatch):
    """Without the extra (simulated: the import fails) the probe is bad usage: exit 2, one line."""
    for name, extra in (("jax", "jax"), ("torch", "torch")):
        monkeypatch.setitem(sys.modules, name, None)
        r = CliRunner().invoke(app, ["conventions", "probe", "--framework", name])
        assert r.exit_code == 2 and r.stderr.count("\n") == 1 and f"pip install 'kinkcheck[{extra}]'" in r.stderr, r.stderr
    r = CliRunner().invoke(app, ["conventions", "probe", "--framework", "tensorflow"])
    assert r.exit_code == 2 and "unknown framework 'tensorflow'" in r.stderr
