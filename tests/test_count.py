"""``kinkcheck count``: counts over float grids against brute force (``verify`` on every point), the
float16 fast rounding against numpy's cast, sampled float16 sweeps against ``verify``, the
Lee-Park-Aiken bound (met and tight), the counterexample families, the command line.

Expected numbers in the hand-checked cases are derived in the comments; the brute-force cases
compare every key with an independent computation (one ``kinkcheck.verify`` per grid point)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import kinkcheck
from kinkcheck.cli import app
from kinkcheck.encodings.formats import FloatFormat
from kinkcheck.search import count as C
from kinkcheck.search import sweep as S

E2M1 = {"exponent_bits": 2, "fraction_bits": 1}  # 11 values: 0, +-{1/2, 1, 3/2, 2, 3}
E3M2 = {"exponent_bits": 3, "fraction_bits": 2}  # 55 values
E4M3 = {"exponent_bits": 4, "fraction_bits": 3}  # 239 values, largest 240


def mlp(dtype, W1, b1, W2, b2, X, act="relu", loss="sum", targets=None):
    d = {
        "kinkcheck": 1,
        "dtype": dtype,
        "params": {
            "W1": {"shape": list(np.shape(W1)), "values": W1},
            "b1": {"shape": [len(b1)], "values": b1},
            "W2": {"shape": list(np.shape(W2)), "values": W2},
            "b2": {"shape": [len(b2)], "values": b2},
        },
        "inputs": {"shape": list(np.shape(X)), "values": X},
        "layers": [{"op": "linear", "weight": "W1", "bias": "b1"}, {"op": act}, {"op": "linear", "weight": "W2", "bias": "b2"}],
        "loss": {"op": loss},
    }
    if targets is not None:
        d["targets"] = {"shape": list(np.shape(targets)), "values": targets}
    return d


def brute(doc, sweeps):
    """Every key by kinkcheck.verify at every point of the grid (inner sweep first)."""
    net = kinkcheck.load(doc)
    idx = [C.resolve(net, s)[0] for s in sweeps]
    g = C.grid(net.fmt)
    out = {k: 0 for k in C.KEYS}
    th = net.theta.copy()
    for vals in np.array(np.meshgrid(*([g] * len(idx)), indexing="ij")).reshape(len(idx), -1).T:
        th[idx] = vals
        d = C.decide_point(net, th.copy())
        assert None not in d.values()
        for k in C.KEYS:
            out[k] += bool(d[k])
    return out


RELU_MINUS_RELU = {
    "kinkcheck": 1,
    "dtype": E4M3,
    "params": {"w": {"value": 0}},
    "inputs": {"shape": [1, 1], "values": [[1]]},
    "layers": [{"op": "linear", "weight": [["w"], ["-w"]]}, {"op": "relu"}, {"op": "linear", "weight": [[1, -1]]}],
    "loss": {"op": "sum"},
}

SHARED_BIAS = {  # Park-Chun-Lee: hardsigmoid(3 + w) + hardsigmoid(-3 + w), one bias shared by a batch of 2
    "kinkcheck": 1,
    "dtype": E4M3,
    "params": {"w": {"value": 0}},
    "inputs": {"shape": [2, 1], "values": [[3], [-3]]},
    "layers": [{"op": "linear", "weight": [[1]], "bias": ["w"]}, {"op": "hardsigmoid"}],
    "loss": {"op": "sum"},
}

MAXPOOL = {  # Park-Chun-Lee: max(u + b, b) - max(-u + b, b) = u
    "kinkcheck": 1,
    "dtype": E2M1,
    "params": {"u": {"value": 0}, "b": {"value": 0}},
    "inputs": {"shape": [1, 1], "values": [[1]]},
    "layers": [{"op": "linear", "weight": [["u"], [0], ["-u"], [0]], "bias": ["b", "b", "b", "b"]}, {"op": "maxpool1d", "kernel": 2}, {"op": "linear", "weight": [[1, -1]]}],
    "loss": {"op": "sum"},
}


def test_grid_sizes():
    # finite values, zero once: 2 * (2**E - 1) * 2**M - 1
    assert len(C.grid(FloatFormat(5, 10))) == 2 * 31 * 1024 - 1 == 63487
    assert len(C.grid(FloatFormat(4, 3))) == 239
    g = C.grid(FloatFormat(4, 3))
    assert g[0] == -240 and g[-1] == 240 and np.all(np.diff(g) > 0)
    assert C.grid(FloatFormat(2, 1)).tolist() == [-3, -2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2, 3]
    assert C.grid(FloatFormat(2, 1), 0.7, 2).tolist() == [1, 1.5, 2]
    assert C.grid(FloatFormat(8, 23), 1, 1 + 2**-20).size == 9


def test_round_half_is_numpys_cast():
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2**32, size=1_000_000, dtype=np.uint64).astype(np.uint32)
    edges = np.array([65504, 65519.996, 65520, 65536, 2.0**-14, 2.0**-14 * (1 - 2.0**-12), 2.0**-25, 3 * 2.0**-26, -(2.0**-25), 0.0, -0.0, np.inf, -np.inf, 1 + 2.0**-11, 1 + 3 * 2.0**-11], dtype=np.float32)
    near = (rng.normal(size=200_000) * 2.0 ** rng.integers(-26, 17, size=200_000)).astype(np.float32)
    for x in (bits.view(np.float32), edges, near):
        with np.errstate(all="ignore"):
            ref = x.astype(np.float16).astype(np.float32)
        got = S.round_half(x)
        same = (ref.view(np.uint32) == got.view(np.uint32)) | (np.isnan(ref) & np.isnan(got))
        assert same.all(), x[~same][:5]


@pytest.mark.parametrize("sweep", ["W1[0,1]", "b1[2]", "W2[1,1]", "b2[0]"])
def test_counts_equal_brute_force_mlp(sweep):
    # hardtanh (two kinks per unit) and an l1 loss (a kink per output), 8-bit E3M2 grid
    doc = mlp(E3M2, [[1, 0.5, 2], [-2, 0.75, 1], [1, 1, -1]], [0.25, -1, 0], [[1, -1.5, 2], [0.5, 1, 1]], [0.5, 0], [[1, 2, 1], [0.5, -1, 0.25]], act="hardtanh", loss="l1", targets=[[1, 0], [0, 2]])
    r = C.count(doc, sweep)
    assert r.method == "walk" and r.disagreements == 0 and r.points == 55
    assert r.counts == brute(doc, [sweep])
    quick = C.count(doc, sweep, choice=False)  # float-tie-only points not decided by verify
    assert quick.counts == {**r.counts, "choice_sensitive": None}


def test_counts_equal_brute_force_2d_maxpool():
    r = C.count(MAXPOOL, ["u", "b"])
    assert r.points == 121 and r.method == "walk" and r.disagreements == 0
    assert r.counts == brute(MAXPOOL, ["u", "b"])
    # the real ties are u = 0 (all b): the pooled windows tie; AD (first index) is wrong there
    assert r.counts["real_tie"] == 11 and r.counts["ad_incorrect"] == 11 and r.counts["not_differentiable"] == 0


def test_fallback_equals_brute_force():
    # the swept scalar sits in two layers: no walk, every point decided by verify
    doc = {
        "kinkcheck": 1,
        "dtype": E2M1,
        "params": {"w": {"value": 1}},
        "inputs": {"shape": [2, 1], "values": [[1], [-0.5]]},
        "layers": [{"op": "linear", "weight": [["w"]], "bias": [0.5]}, {"op": "relu"}, {"op": "linear", "weight": [["w"]], "bias": [-1]}, {"op": "abs"}],
        "loss": {"op": "sum"},
    }
    r = C.count(doc, "w")
    assert r.method.startswith("per-point verify") and r.decided_points == 11
    assert r.counts == brute(doc, ["w"])


@pytest.mark.parametrize("hidden2", [False, True])
def test_float16_sweep_agrees_with_verify_on_samples(hidden2):
    rng = np.random.default_rng(3)

    def f16(a):
        return np.asarray(a, dtype=np.float16).astype(float).tolist()

    doc = mlp("float16", f16(rng.normal(size=(8, 4))), f16(rng.normal(size=8) * 0.1), f16(rng.normal(size=(1, 8))), f16([0.1]), f16(rng.normal(size=(8, 4))), loss="mse", targets=f16(rng.normal(size=(8, 1))))
    if hidden2:  # a second hidden layer: the machine rows after the swept layer are deduplicated
        doc["params"]["W2"] = {"shape": [6, 8], "values": f16(rng.normal(size=(6, 8)) / 3)}
        doc["params"]["b2"] = {"shape": [6], "values": f16(rng.normal(size=6) * 0.1)}
        doc["params"]["W3"] = {"shape": [1, 6], "values": f16(rng.normal(size=(1, 6)))}
        doc["layers"] += [{"op": "relu"}, {"op": "linear", "weight": "W3"}]
    net = kinkcheck.load(doc)
    for spec in ("W1[2,1]", "b1[3]"):
        idx, _ = C.resolve(net, spec)
        layer, _ = S.fast_path(net, idx)
        g = C.grid(net.fmt)
        rtie, ftie, mism = S.line(net, idx, layer, g, net.theta.copy())
        flagged = np.flatnonzero(rtie | ftie | mism)
        n = 10 if hidden2 else 25
        sample = np.concatenate([flagged[:n], rng.choice(len(g), n, replace=False), [0, len(g) - 1, len(g) // 2]])
        for p in sample:
            th = net.theta.copy()
            th[idx] = g[p]
            d = C.decide_point(net, th)
            assert d["real_tie"] == rtie[p] and d["float_tie"] == ftie[p], (spec, g[p])
            if not rtie[p]:  # no real tie: everything but choice sensitivity follows from the fast path
                assert d["branch_mismatch"] == mism[p] and d["compensation"] == (mism[p] or ftie[p]), (spec, g[p])
                assert d["not_differentiable"] is False and d["ad_incorrect"] is False and d["ad_not_in_clarke"] is False
            if not (rtie[p] or ftie[p]):
                assert d["choice_sensitive"] is False


def test_lpa_bound_met_and_tight():
    # f(w, b) = relu(w*1 + b), batch 1: a tie exactly when b = -w, which is on the (symmetric) grid for
    # each of the 55 values of w; every tie is a kink of f (nd). Bound: N * k * |grid of w| = 55.
    doc = {
        "kinkcheck": 1,
        "dtype": E3M2,
        "params": {"w": {"value": 1}, "b": {"value": 0}},
        "inputs": {"shape": [1, 1], "values": [[1]]},
        "layers": [{"op": "linear", "weight": [["w"]], "bias": ["b"]}, {"op": "relu"}],
        "loss": {"op": "sum"},
    }
    r = C.count(doc, ["b", "w"])
    assert r.bound == {"applies": True, "bound": 55, "formula": r.bound["formula"]}
    assert r.counts["not_differentiable"] == r.counts["real_tie"] == r.counts["float_tie"] == 55
    assert r.counts["ad_incorrect"] == 0 and r.counts["ad_not_in_clarke"] == 0 and r.counts["compensation"] == 0


def test_lpa_bound_batch_of_three():
    # relu(x_s * 1 + b) for x = 1, -2, 1/2: ties at b = -1, 2, -1/2 (all E4M3 values); bound 3 * 1 * 1
    doc = {
        "kinkcheck": 1,
        "dtype": E4M3,
        "params": {"b": {"value": 0}},
        "inputs": {"shape": [3, 1], "values": [[1], [-2], [0.5]]},
        "layers": [{"op": "linear", "weight": [[1]], "bias": ["b"]}, {"op": "relu"}],
        "loss": {"op": "sum"},
    }
    r = C.count(doc, "b")
    assert r.bound["bound"] == 3 and r.counts["not_differentiable"] == 3
    assert sorted(r.examples["not_differentiable"]) == sorted(["-0x1p+0", "0x1p+1", "-0x1p-1"])
    assert r.counts["ad_incorrect"] == 0


def test_counterexample_no_bias():
    # relu(w) - relu(-w) = w: only w = 0 ties (both units); f is differentiable there, AD gives 0, not 1
    r = kinkcheck.count(RELU_MINUS_RELU, "w")
    assert r.points == 239 and r.bound["applies"] is False
    assert r.counts["real_tie"] == 1 and r.counts["not_differentiable"] == 0
    assert r.counts["ad_incorrect"] == 1 and r.counts["ad_not_in_clarke"] == 1 and r.examples["ad_incorrect"] == ["0x0p+0"]


def test_counterexample_shared_bias():
    # hardsigmoid(3 + w) + hardsigmoid(-3 + w): real ties at w = -6, 0, 6; at +-6 one unit leaves its flat
    # piece (nd); at 0 both kinks compensate (f = 1 + w/6 near 0), AD (proxy 0) gives 0: incorrect
    r = C.count(SHARED_BIAS, "w")
    assert r.counts["real_tie"] == 3 and r.counts["not_differentiable"] == 2
    assert r.counts["ad_incorrect"] == 1 and r.examples["ad_incorrect"] == ["0x0p+0"]
    assert r.bound["applies"] and r.bound["bound"] == 4  # the bound holds; the empty incorrect set needs batch 1


def test_cli_json_and_bad_input(tmp_path):
    f = tmp_path / "net.json"
    f.write_text(json.dumps(RELU_MINUS_RELU))
    res = CliRunner().invoke(app, ["count", str(f), "--sweep", "w", "--json", "--list", "2"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    for k in ("points", "real_tie", "float_tie", "not_differentiable", "ad_incorrect", "ad_not_in_clarke", "compensation", "branch_mismatch", "choice_sensitive", "points_per_s"):
        assert k in d
    assert d["points"] == 239 and d["ad_incorrect"] == 1 and d["examples"]["ad_incorrect"] == ["0x0p+0"]
    res = CliRunner().invoke(app, ["count", str(f), "--sweep", "W[0]"])
    assert res.exit_code == 2 and "no parameter 'W'; parameters: w" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, ["count", str(f), "--sweep", "w", "--range", "2:1"])
    assert res.exit_code == 2 and "LO > HI" in res.output
    res = CliRunner().invoke(app, ["count", str(f), "--sweep", "w", "--range", "0.32:0.34"])
    assert res.exit_code == 2 and "no float(e4,m3) value in the range" in res.output
    res = CliRunner().invoke(app, ["count", str(f), "--sweep", "w", "--range", "0:1"])
    assert res.exit_code == 0 and "over 57 float(e4,m3) points" in res.output  # 0 and 56 positive values <= 1


def test_exhaustive_small_format():
    from kinkcheck.search.exhaustive import check

    # every combination of the free scalars: 2*relu(0.75*w + b) on E3M2 (55 x 55); a tie where
    # b = -0.75*w is a grid value, at most one b per w (bound 55); every tie is a kink of f
    row = check("private_bias", E3M2, workers=1)
    assert row["points"] == 3025 and row["bound"] == 55 and 0 < row["real_tie"] == row["not_differentiable"] <= 55
    assert row["ad_incorrect"] == 0 and row["ad_not_in_clarke"] == 0 and row["claim_holds"] is True
    # E2M1 (11 values), counterexample families
    row = check("maxpool", E2M1, workers=2)
    assert row["ad_incorrect"] == 11 and row["claim_holds"] is True  # u = 0, every b

    class Inline:  # any executor with submit() -> future.result() (e.g. a Dask client's processes)
        def submit(self, fn, *args):
            class Done:
                result = staticmethod(lambda: fn(*args))

            return Done()

    again = check("maxpool", E2M1, executor=Inline())
    assert again == {**row, "time_s": again["time_s"]}
    row = check("no_bias", E2M1, workers=1)
    assert row["ad_incorrect"] == 10 and row["claim_holds"] is True  # w = 0, every v != 0


def test_cli_plot(tmp_path, monkeypatch):
    f = tmp_path / "net.json"
    f.write_text(json.dumps({**MAXPOOL}))
    png = tmp_path / "grid.png"
    pytest.importorskip("matplotlib")
    res = CliRunner().invoke(app, ["count", str(f), "--sweep", "u", "--sweep", "b", "--plot", str(png), "--json"])
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and json.loads(res.stdout)["points"] == 121
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # as if the extra were missing
    res = CliRunner().invoke(app, ["count", str(f), "--sweep", "u", "--plot", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "--plot needs matplotlib" in res.output and not (tmp_path / "x.png").exists()
