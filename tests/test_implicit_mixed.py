"""Ties inside a fixed-point layer together with ties elsewhere in the network, decided jointly
(every one-sided pattern of all the ties), against hand-derived directional derivatives; the
certificates are re-validated by the independent checker."""

from __future__ import annotations

import json
from fractions import Fraction

import kinkcheck


def doc(v=1.0, fp_proxy=None, out_proxy=None):
    """f(b, c) = relu(v z*(b) + c), z*(b) the fixed point of z = relu(z / 2 + b) (1 unit, x = 0),
    at b = c = 0: a tie inside the layer (a* = 0) and one in the outer relu (v z* + c = 0)."""
    act = {"op": "relu"}
    if fp_proxy is not None:
        act["kink_derivatives"] = [fp_proxy]
    outer = {"op": "relu"}
    if out_proxy is not None:
        outer["kink_derivatives"] = [out_proxy]
    return {
        "kinkcheck": 1,
        "dtype": "float32",
        "params": {"b": {"shape": [1], "values": [0]}, "c": {"shape": [1], "values": [0]}},
        "inputs": {"shape": [1, 1], "values": [[0]]},
        "layers": [
            {"op": "fixed_point", "cell": {"weight": [[0.5]], "input_weight": [[0]], "bias": "b", "activation": act}},
            {"op": "linear", "weight": [[v]], "bias": "c"},
            outer,
        ],
        "loss": {"op": "sum"},
    }


def grads(r):
    return sorted(tuple(Fraction(x) for x in g) for g in r.decision["limiting_gradients"])


def checked(r):
    cert = json.loads(json.dumps(r.certificate()))
    return kinkcheck.check_certificate(cert)["valid"]


def test_relu_of_a_deq_tie_with_an_outer_tie():
    """z*(b) = 2 relu(b) (b > 0: z = z/2 + b), so f = relu(2 relu(b) + c) and along (db, dc):
    f'(0; d) = relu(2 relu(db) + dc): the gradient is (2, 1) on {db > 0, 2 db + dc > 0}, (0, 1) on
    {db < 0, dc > 0} and (0, 0) elsewhere. ReLU'(0) = 0 at both ties gives AD = (0, 0), a
    limiting gradient: not differentiable, AD not the gradient, AD in Clarke."""
    r = kinkcheck.verify(doc(), values=True)
    assert sorted(t["op"] for t in r.real_ties) == ["fixed_point", "relu"]
    assert (r.differentiable, r.ad_correct, r.ad_in_clarke) == (False, False, True)
    assert grads(r) == [(0, 0), (0, 1), (2, 1)]
    assert [Fraction(x) for x in r.ad] == [0, 0]
    assert checked(r)


def test_proxies_one_inside_and_zero_outside():
    """ReLU'(0) = 1 inside the layer gives dz*/db = 1 / (1 - 1/2) = 2; the outer proxy 0 kills it:
    AD = (0, 0) again; with the outer proxy 1 as well AD = (2, 1), the right-right cell's gradient."""
    r = kinkcheck.verify(doc(fp_proxy=1, out_proxy=0), values=True)
    assert [Fraction(x) for x in r.ad] == [0, 0] and r.ad_in_clarke is True
    r = kinkcheck.verify(doc(fp_proxy=1, out_proxy=1), values=True)
    assert [Fraction(x) for x in r.ad] == [2, 1]
    assert (r.differentiable, r.ad_correct, r.ad_in_clarke) == (False, False, True)
    assert checked(r)


def test_negative_outer_weight():
    """v = -1: f = relu(c - 2 relu(b)); cells: (-2, 1) on {db > 0, dc - 2 db > 0}, (0, 1) on
    {db < 0, dc > 0}, (0, 0) elsewhere (db > 0 with dc < 2 db, or db < 0 with dc < 0)."""
    r = kinkcheck.verify(doc(v=-1.0), values=True)
    assert grads(r) == [(-2, 1), (0, 0), (0, 1)]
    assert r.differentiable is False and r.ad_in_clarke is True


def test_harmless_ties_on_both_sides_differentiable():
    """z = relu(W z + b) with W = 0 and b = (0, 1): unit 0 ties but feeds nothing; a linear layer
    y = (z1 - 1, z1) with bias c on its first output, relu, and a dot loss with targets (0, 1):
    f = relu(z1) = b1 near w. The outer tie (y0 = 0) is multiplied by the target 0. The functionals
    db0 and db1 + dc are independent, every pattern is a cell with gradient (0, 1, 0) over
    (b0, b1, c): differentiable, and AD is that gradient."""
    d = {
        "kinkcheck": 1,
        "dtype": "float32",
        "params": {"b": {"shape": [2], "values": [0, 1]}, "c": {"shape": [], "values": -1}},
        "inputs": {"shape": [1, 1], "values": [[0]]},
        "layers": [
            {"op": "fixed_point", "cell": {"weight": [[0, 0], [0, 0]], "input_weight": [[0], [0]], "bias": "b", "activation": {"op": "relu"}}},
            {"op": "linear", "weight": [[0, 1], [0, 1]], "bias": ["c", 0]},
            {"op": "relu"},
        ],
        "loss": {"op": "dot"},
        "targets": {"shape": [1, 2], "values": [[0, 1]]},
    }
    r = kinkcheck.verify(d, values=True)
    assert len(r.real_ties) == 2
    assert (r.differentiable, r.ad_correct, r.ad_in_clarke) == (True, True, True)
    assert grads(r) == [(0, 1, 0)] and r.decision["n_cells"] == 4
    assert [Fraction(x) for x in r.ad] == [0, 1, 0]
    assert checked(r)


def test_an_outer_tie_with_a_singular_clarke_element_stays_undecided():
    """W = [[2]]: z = relu(2 z + b) at b = 0 has the fixed point 0 with a tie; I - D W = 1 - 2 D is
    singular at D = 1/2 inside the box [0, 1]: undecided, with Bolte et al.'s condition as reason,
    even though another tie sits outside the layer."""
    d = doc()
    d["layers"][0]["cell"]["weight"] = [[2]]
    r = kinkcheck.verify(d, values=True)
    assert len(r.real_ties) == 2 and r.differentiable is None
    assert "Bolte" in r.reason and r.implicit[0]["samples"][0]["singular_witness"] == {0: "1/2"}


def test_search_and_export_test_refuse_fixed_point_layers(tmp_path):
    from typer.testing import CliRunner

    from kinkcheck.cli import app

    path = tmp_path / "deq.json"
    path.write_text(json.dumps(doc()))
    runner = CliRunner()
    for args in (["search", str(path), "--find", "real-tie", "--box", "b[0]=-1:1"], ["export-test", str(path), "-o", str(tmp_path / "t.py")], ["export-test", str(path), "-o", str(tmp_path / "t.py"), "--framework", "torch"]):
        res = runner.invoke(app, args)
        lines = res.output.strip().splitlines()
        assert res.exit_code == 2 and len(lines) == 1, res.output
        assert "layer 0 (fixed_point)" in lines[0] and str(path) in lines[0]
    assert not (tmp_path / "t.py").exists()


def test_the_committed_example():
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "proofs" / "examples" / "deq_mixed_ties.json"
    r = kinkcheck.verify(str(path), values=True)
    assert (r.differentiable, r.ad_correct, r.ad_in_clarke) == (False, False, True)
    assert grads(r) == [(0, 0), (0, 1), (2, 1)]
