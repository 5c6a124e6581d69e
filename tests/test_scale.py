"""Issue 13 parts 3, 4 and start-up: the machine parameter-gradient fast path, lazy imports of the
CLI, and the survey on a user's data set (``--data FILE.npz``)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kinkcheck.encodings import kernels
from kinkcheck.encodings.arith import ArrayArith
from kinkcheck.encodings.formats import FloatFormat
from kinkcheck.encodings.machine import MachineArith

SPECS = ("float16", "bfloat16", "float32", "float64", {"exponent_bits": 4, "fraction_bits": 3})


def _vals(draw, fmt, n):
    special = [0.0, -0.0, fmt.min_subnormal, -fmt.min_subnormal, fmt.max_finite, -fmt.max_finite, math.inf, -math.inf, math.nan, 1.0, -1.0]
    out = []
    for _ in range(n):
        if draw(st.integers(0, 3)) == 0:
            out.append(draw(st.sampled_from(special)))
        else:
            out.append(draw(st.floats(-4, 4, allow_nan=False, width=64)))
    return fmt.round_array(np.array(out, dtype=np.float64))


def _same(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    na, nb = np.isnan(a), np.isnan(b)
    assert (na == nb).all()
    assert np.array_equal(a[~na].view(np.uint64), b[~nb].view(np.uint64))  # signed zeros count


@settings(max_examples=40)
@given(st.data(), st.sampled_from(range(len(SPECS))), st.integers(1, 5), st.integers(1, 4), st.integers(1, 4), st.booleans(), st.sampled_from(["numpy", "auto"]))
def test_parameter_gradient_fast_path_is_the_generic_order(data, si, N, n_in, n_out, generic, mode):
    """MachineArith.accumulate_params (one spec-order dot over the batch per block) gives the same
    bits as the generic term-matrix path of ArrayArith, on values with signed zeros, subnormals,
    overflow, inf and NaN; tied or negated entries (which take the generic path) included."""
    fmt = FloatFormat.from_spec(SPECS[si])
    A = MachineArith(fmt, force_generic=generic)
    g = A.from_floats(_vals(data.draw, fmt, N * n_out).reshape(N, n_out))
    x = A.from_floats(_vals(data.draw, fmt, N * n_in).reshape(N, n_in))
    T = A.from_floats(_vals(data.draw, fmt, N * n_out).reshape(N, n_out, 1))
    E = n_out * n_in
    layout = data.draw(st.sampled_from(["disjoint", "constant", "tied", "negated"]))
    src_w = np.arange(E)
    src_b = E + np.arange(n_out)
    sign_w = np.ones(E, dtype=np.int64)
    if layout == "constant":
        src_w = np.where(np.arange(E) % 2 == 0, src_w, -1)
    elif layout == "tied":
        src_w = np.zeros(E, dtype=np.int64)
    elif layout == "negated":
        sign_w[0] = -1
    blocks = [(0, "outer", (g, x), src_w, sign_w), (0.5, "terms", T, src_b, np.ones(n_out, dtype=np.int64))]
    n_theta = E + n_out
    kernels.set_mode(mode)
    try:
        got = A.accumulate_params(blocks, n_theta)
        ref = ArrayArith.accumulate_params(A, blocks, n_theta)
    finally:
        kernels.set_mode(None)
    assert got.dtype == ref.dtype
    _same(got, ref)


def test_cli_verify_of_a_relu_network_does_not_import_sympy(tmp_path):
    """Start-up: ``kinkcheck verify`` of a small relu network (the CLI entry point, in a fresh
    process) runs without importing sympy (0.3 s); the verdict is still the exact one."""
    doc = tmp_path / "net.json"
    doc.write_text(
        '{"kinkcheck": 1, "dtype": "float32", "params": {"w": {"value": 0}}, "inputs": {"shape": [1, 1], "values": [[1]]},'
        ' "layers": [{"op": "linear", "weight": [["w"], ["-w"]]}, {"op": "relu"}, {"op": "linear", "weight": [[1, -1]]}], "loss": {"op": "sum"}}'
    )
    code = (
        "import sys, json\n"
        f"sys.argv = ['kinkcheck', 'verify', {str(doc)!r}, '--json']\n"
        "from kinkcheck.cli import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    rc = e.code\n"
        "print(json.dumps({'rc': rc, 'loaded': sorted(m for m in ('sympy',) if m in sys.modules)}))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = res.stdout.strip().splitlines()
    report, probe = json.loads(lines[0]), json.loads(lines[-1])
    # f(w) = relu(w) - relu(-w) = w at w = 0: differentiable with gradient 1, AD (relu'(0) = 0) gives 0
    assert report["differentiable"] is True and report["gradient"] == ["1"] and report["ad"] == ["0"]
    assert probe["rc"] == 1 and "sympy" not in probe["loaded"]


# ----------------------------------------------------------------------------------------------
# survey --data


def _write_data(path, N=70, D=12, seed=0, **override):
    rng = np.random.default_rng(seed)
    X = np.where(rng.random((N, D)) < 0.5, 0.0, rng.integers(1, 256, (N, D)) / 256.0)  # exact in float16
    y = rng.integers(0, 10, N)
    arrays = {"X": X, "y": y}
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return X, y


def test_survey_data_set_feeds_the_mlp(tmp_path):
    """``--data``: the MLP's input width is the file's D, the minibatches are the file's rows (in
    the run's dtype), the number of steps is min(N // batch, max_batches), and runs computed on one
    file are not reused for another (the file's hash is a run parameter)."""
    import pytest

    torch = pytest.importorskip("torch")
    from typer.testing import CliRunner

    import kinkcheck.survey.run as R
    from kinkcheck.cli import app
    from kinkcheck.survey import SurveyConfig

    path = tmp_path / "d.npz"
    X, y = _write_data(path)
    cfg = SurveyConfig(data=str(path), widths=(8,), depths=(2,), dtypes=("float16",), inits=1, batch=16, max_batches=3).validate()
    model, xb, tb, idx = R._simulate(cfg, ("float16", 2, 8, 0), stop_at=1)
    assert model[0].in_features == 12 and model[0].out_features == 8
    assert torch.equal(xb, torch.tensor(X[idx.numpy()]).to(torch.float16))
    assert torch.equal(tb, torch.tensor(y[idx.numpy()]))
    out = tmp_path / "out"
    args = ["survey", "--data", str(path), "--widths", "8", "--depths", "2", "--dtypes", "float16", "--inits", "1", "--batch", "16", "--max-batches", "3", "--workers", "1", "-o", str(out), "-q"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    run = json.loads((out / "runs" / "float16-d2-w8-i0.json").read_text())
    assert run["steps"] == min(70 // 16, 3)
    assert run["in_zone"] == (run["events"] > 0)
    _write_data(path, seed=1)  # other bytes: the folder's runs do not apply
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "made with data_sha256=" in res.stderr, res.output


@pytest.mark.parametrize(
    "override, message",
    [
        ({"y": None}, "d.npz: the data set needs arrays X and y; missing y"),
        ({"X": np.zeros(5)}, "d.npz: X: expected shape [N, D]"),
        ({"y": np.zeros((70, 2), dtype=np.int64)}, "d.npz: y: expected shape [70]"),
        ({"X": np.where(np.arange(70 * 12).reshape(70, 12) == 29, np.nan, 0.5)}, "d.npz: X[2, 5]: not finite"),
        ({"y": np.r_[np.zeros(40, dtype=np.int64), [10], np.zeros(29, dtype=np.int64)]}, "d.npz: y[40]: label 10 is outside 0..9"),
        ({"y": np.full(70, 0.5)}, "d.npz: y: expected integer labels 0..9"),
    ],
)
def test_survey_bad_data_set_is_one_line_exit_2(tmp_path, override, message):
    pytest.importorskip("torch")
    from typer.testing import CliRunner

    from kinkcheck.cli import app

    path = tmp_path / "d.npz"
    _write_data(path, **override)
    res = CliRunner().invoke(app, ["survey", "--data", str(path), "--widths", "4", "--dtypes", "float32", "--inits", "1", "--workers", "1", "-o", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output
    assert not (tmp_path / "o").exists()


def test_survey_data_not_an_npz_and_cnn(tmp_path):
    pytest.importorskip("torch")
    from typer.testing import CliRunner

    from kinkcheck.cli import app

    bad = tmp_path / "x.npz"
    bad.write_bytes(b"not a zip")
    res = CliRunner().invoke(app, ["survey", "--data", str(bad), "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and "x.npz: not a readable .npz data set" in res.stderr
    good = tmp_path / "d.npz"
    _write_data(good)
    res = CliRunner().invoke(app, ["survey", "--data", str(good), "--arch", "cnn", "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and "--data: only the MLP reads a data set" in res.stderr


# ----------------------------------------------------------------------------------------------
# choice sensitivity at many float ties


def _many_ties_net(dtype, rng, extra_layer=False):
    """relu(w x + b) against targets with the ``dot`` loss (the targets are the cotangents), w = 1,
    b = 0: 2048 samples x = 1 with target 1, then one with target -1024, then 100 with target 1;
    20 samples x = 0 with target 1 inserted at random among the first 2048 and 20 among the last
    100 are float (and real) ties. In float16 the bias gradient (the in-order sum of the cotangents
    of the samples on the right piece) stalls at 2048 and then drops to 1024: a tie switched to
    relu'(0) = 1 adds a 1 that is absorbed before the drop and counts after it."""
    head = ["p"] * 2048
    tail = ["p"] * 100
    for i in sorted(rng.choice(2048, 20, replace=False).tolist(), reverse=True):
        head.insert(int(i), "t")
    for i in sorted(rng.choice(100, 20, replace=False).tolist(), reverse=True):
        tail.insert(int(i), "t")
    kinds = head + ["d"] + tail
    xs = [0.0 if k == "t" else 1.0 for k in kinds]
    ts = [-1024.0 if k == "d" else 1.0 for k in kinds]
    layers = [{"op": "linear", "weight": "W", "bias": "b"}, {"op": "relu"}]
    params = {"W": {"shape": [1, 1], "values": [[1]]}, "b": {"shape": [1], "values": [0]}}
    if extra_layer:
        params["V"] = {"shape": [1, 1], "values": [[1]]}
        layers.append({"op": "linear", "weight": "V"})
    N = len(xs)
    return {"kinkcheck": 1, "dtype": dtype, "params": params, "inputs": {"shape": [N, 1], "values": [[v] for v in xs]},
            "targets": {"shape": [N, 1], "values": [[v] for v in ts]}, "layers": layers, "loss": {"op": "dot"}}


def _causes(doc, monkeypatch, screened: bool):
    import kinkcheck
    import kinkcheck.decide.choice as C
    from kinkcheck.encodings import program as P
    from kinkcheck.encodings.runs import run

    net = kinkcheck.load(doc)
    runs = run(net, P.resolve_proxies(net, net.convention))
    ft = P.ties(net, runs.machine)
    with monkeypatch.context() as m:
        m.setattr(C, "MAX_SINGLE", 10_000)
        if not screened:
            m.setattr(C, "screen", lambda s, ties: set())
        ch = C.choice_sensitivity(runs, ft)
    return ch, [(t.key, o) for t, o in ch["causes"]], len(ft)


def test_screened_causes_equal_one_pass_per_tie(monkeypatch):
    """The screen (one recomputed gradient entry per switch, no backward pass) proves exactly the
    causes that one backward pass per tie finds: in float16, where a switched tie before the drop of
    the bias gradient is absorbed and one after it is not, and in float32, where every switch counts;
    a later layer (V) makes the arriving cotangent a computed value."""
    rng = np.random.default_rng(3)
    for dtype, extra in (("float16", False), ("float16", True), ("float32", True)):
        doc = _many_ties_net(dtype, rng, extra)
        fast, c_fast, n_ties = _causes(doc, monkeypatch, True)
        slow, c_slow, _ = _causes(doc, monkeypatch, False)
        assert n_ties == 40
        assert c_fast == c_slow and fast["checked_singly"] == slow["checked_singly"] == 40
        assert fast["passes"] < slow["passes"]
        assert fast["choice_sensitive"] is slow["choice_sensitive"] is True
        # independently: a tie's switch counts iff it comes after the -1024 sample (float16), always (float32)
        inputs = [v[0] for v in doc["inputs"]["values"]]
        targets = [v[0] for v in doc["targets"]["values"]]
        drop = targets.index(-1024.0)
        tie_samples = [n for n, v in enumerate(inputs) if v == 0.0]
        want = [n for n in tie_samples if n > drop] if dtype == "float16" else tie_samples
        assert sorted(key[1] for key, _ in c_fast) == want
        assert all(o == "right" and key[0] == 1 for key, o in c_fast)


@settings(max_examples=30)
@given(st.integers(0, 4), st.integers(0, 5), st.integers(0, 4), st.integers(0, 200), st.booleans())
def test_flint_integer_matmul_is_the_object_matmul(rows, k, m, bits, batched):
    """The exact arithmetic's large integer products (python-flint) equal numpy's object matmul."""
    import kinkcheck.encodings.exact as EX

    rng = np.random.default_rng(rows * 1000 + k * 100 + m * 10 + bits)

    def ints(shape):
        out = np.empty(shape, dtype=object)
        flat = out.reshape(-1)
        for i in range(flat.size):
            flat[i] = int(rng.integers(-(2**20), 2**20)) << int(rng.integers(0, bits + 1))
        return out

    a = ints((2, rows, k) if batched else (rows, k))
    b = ints((k, m))
    old = EX.FLINT_MIN
    EX.FLINT_MIN = 0
    try:
        got = EX._int_matmul(a, b)
    finally:
        EX.FLINT_MIN = old
    want = a @ b if a.size and b.size else np.zeros(a.shape[:-1] + (m,), dtype=object)
    assert got.shape == want.shape
    assert [int(v) for v in got.reshape(-1)] == [int(v) for v in want.reshape(-1)]


def test_exact_reports_identical_through_flint(monkeypatch):
    """Every shipped example verified with all exact integer products through FLINT gives the same
    report (verdicts, exact AD outputs, ties) as with numpy's object matmul."""
    from pathlib import Path

    import kinkcheck
    import kinkcheck.encodings.exact as EX

    def untimed(d):
        if isinstance(d, dict):
            return {k: untimed(v) for k, v in d.items() if k != "time_s"}
        return [untimed(v) for v in d] if isinstance(d, list) else d

    def rep(path):
        return untimed(kinkcheck.verify(str(path), values=True).to_dict())

    for path in sorted((Path(__file__).resolve().parent.parent / "proofs" / "examples").glob("*.json")):
        monkeypatch.setattr(EX, "FLINT_MIN", 10**18)
        want = rep(path)
        monkeypatch.setattr(EX, "FLINT_MIN", 0)
        assert rep(path) == want, path.name
