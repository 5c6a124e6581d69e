"""Budgets are promises (issue 11 part 10): one time limit for the decision and choice
sensitivity of a verify call; when it runs out the verdicts left are null with the reason, never
a wrong answer. Also the hinge path's one-pass jumps, against one backward pass per tie."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, event, given, note, settings
from typer.testing import CliRunner

import kinkcheck
from kinkcheck.cli import app
from kinkcheck.decide import hinge
from kinkcheck.encodings import program as P
from kinkcheck.encodings.runs import run

from strategies import networks

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from bench_decide import make  # noqa: E402

SCALE = int(os.environ.get("KINKCHECK_TEST_SCALE", "1"))


def _batch_net(N):
    """f(w) = sum_n relu(w x_n) at w = 0, x_n >= 1: N real ties in one layer (the hinge path),
    N float ties. By hand: f = (sum x_n) max(w, 0), not differentiable; AD (relu'(0) = 0) is 0,
    the left derivative: a Clarke subderivative (the interval [0, sum x_n])."""
    X = (np.arange(N) % 4 + 1).astype(float).reshape(N, 1)
    return {
        "kinkcheck": 1,
        "dtype": "float32",
        "params": {"w": {"value": 0}},
        "inputs": {"shape": [N, 1], "values": X.tolist()},
        "layers": [{"op": "linear", "weight": [["w"]]}, {"op": "relu"}, {"op": "linear", "weight": [[1]]}],
        "loss": {"op": "sum"},
    }


def test_verdicts_by_hand_within_the_budget():
    r = kinkcheck.verify(_batch_net(40), time_limit=60)
    assert r.decision["method"] == "hinge"
    assert (r.differentiable, r.ad_correct, r.ad_in_clarke) == (False, False, True)


def test_a_spent_budget_gives_null_verdicts_with_the_reason():
    lines = []
    r = kinkcheck.verify(_batch_net(40), time_limit=1e-9, progress=lines.append)
    assert (r.differentiable, r.ad_correct, r.ad_in_clarke) == (None, None, None)
    assert "time limit ran out" in r.reason
    assert r.choice_sensitive is None
    assert any("time budget" in u for u in r.unknown)
    assert any("deciding 40 real tie(s)" in ln for ln in lines)
    # the certificate of a null verdict still checks (nothing is claimed)
    assert kinkcheck.check_certificate(json.loads(json.dumps(r.certificate())))["valid"] is True


def test_no_limit_and_a_generous_limit_agree():
    for doc in (make(8), _batch_net(12)):
        a = kinkcheck.verify(doc, time_limit=None)
        b = kinkcheck.verify(doc, time_limit=600)
        assert (a.differentiable, a.ad_correct, a.ad_in_clarke, a.choice_sensitive) == (b.differentiable, b.ad_correct, b.ad_in_clarke, b.choice_sensitive)


def test_cli_time_limit(tmp_path):
    f = tmp_path / "batch.json"
    f.write_text(json.dumps(_batch_net(40)))
    runner = CliRunner()
    r = runner.invoke(app, ["verify", str(f), "--time-limit", "-1"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["verify", str(f), "--time-limit", "0.000000001", "--json"])
    assert r.exit_code == 3, r.output
    assert json.loads(r.stdout)["differentiable"] is None
    r = runner.invoke(app, ["verify", str(f), "--time-limit", "0", "--json"])
    assert r.exit_code == 1  # a finding: not differentiable
    assert json.loads(r.stdout)["ad_in_clarke"] is True


def _jumps_agree(doc):
    net = kinkcheck.load(doc)
    runs = run(net, P.resolve_proxies(net))
    fw = runs.exact_full()
    ties = P.ties(net, fw)
    if not hinge.applies(net, ties) or any(L.act is not None and L.act.transcendental for L in net.layers) or net.loss.op == "cross_entropy":
        return None
    h = hinge.solve(runs, fw, ties)
    order = sorted(ties, key=lambda t: (t.layer, t.sample, t.unit))
    left = {t.key: "left" for t in order}
    base = list(P.backward(net, fw.A, fw, runs.proxies, choose=left))
    assert h.base == base
    for t, jump in zip(order, h.jumps):
        ch = dict(left)
        ch[t.key] = "right"
        g = list(P.backward(net, fw.A, fw, runs.proxies, choose=ch))
        assert jump == [x - y for x, y in zip(g, base)]
    return len(order)


def test_hinge_jumps_on_engineered_families():
    for op in ("relu", "abs", "leaky_relu"):
        doc = make(12)
        doc["layers"][1]["op"] = op
        assert _jumps_agree(doc) >= 12
    assert _jumps_agree(_batch_net(30)) == 30


@settings(max_examples=25 * SCALE, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], deadline=None)
@given(doc=networks(ties=True, extreme=False, max_batch=3))
def test_hinge_jumps_equal_one_backward_pass_per_tie(doc):
    """Delta_j = (r_j - l_j) s_j a_j (one cotangent pass) against g(tie j right) - g_L."""
    note(json.dumps(doc))
    net = kinkcheck.load(doc)
    if run(net, P.resolve_proxies(net)).exact is None:
        return
    n = _jumps_agree(doc)
    event("hinge does not apply" if n is None else f"hinge ties: {min(n, 3)}")
