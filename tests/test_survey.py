"""The survey (issue 6): the two proxies' backward passes, the float-tie hooks, the exact
classification of events, the zone picture, Protocols 1 and 2 on load_digits, executors (serial,
processes, Dask) giving the same results, resuming from the output folder, and the CLI's errors.

Hand-made networks carry the exact expectations (worked out in the comments); the load_digits runs
are tiny (a few minibatches) and checked for consistency and for equality across executors.
Skips without torch / scikit-learn."""

from __future__ import annotations

import json
from dataclasses import asdict
from fractions import Fraction

import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed")
pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install 'kinkcheck[survey]')")

from typer.testing import CliRunner

import kinkcheck.survey.classification as C
import kinkcheck.survey.execute as E
import kinkcheck.survey.models as M
import kinkcheck.survey.run as R
import kinkcheck.survey.zone as Z
from kinkcheck.cli import app
from kinkcheck.encodings.errors import InputError
from kinkcheck.survey import SurveyConfig, survey, write

RUNNER = CliRunner()
EPS30 = 2.0**-30


def mlp(w1, b1, w2, b2, dtype=torch.float32):
    """Linear(len(w1[0]), len(w1)) -> ReLU -> Linear(len(w1), len(w2)) with the given values."""
    nn = torch.nn
    m = nn.Sequential(nn.Linear(len(w1[0]), len(w1)), nn.ReLU(), nn.Linear(len(w1), len(w2))).to(dtype)
    with torch.no_grad():
        for p, v in zip(m.parameters(), (w1, b1, w2, b2)):
            p.copy_(torch.tensor(v, dtype=torch.float64))
    return m


# Model A: a real tie. Sample x = (1/2, 1/4), unit 0: 3/2 * 1/2 + 5/4 * 1/4 - 17/16 = 3/4 + 5/16 - 17/16 = 0
# exactly (and in float32: every step is exact). Unit 1: 1/2 - 1/4 + 1/2 = 3/4 > 0.
# Output = relu(0) + relu(3/4) = 3/4, mse against 0: dL/dout = 2 * 3/4 = 3/2, so the tie's backward
# signal is 3/2 * W2[0,0] = 3/2, not 0: ReLU'(0) = 0 versus 1 changes the gradient of W1[0] and b1[0].
A = ([[1.5, 1.25], [1.0, -1.0]], [-1.0625, 0.5], [[1.0, 1.0]], [0.0])
XA = [[0.5, 0.25]]
# Model B: a float-only tie. x = (1, 2^-30), unit 0: 1 + 2^-30 - 1 = 2^-30 exactly, but float32
# rounds 1 + 2^-30 to 1 (half an ulp of 1 is 2^-24), then 1 - 1 = 0.
B = ([[1.0, 1.0]], [-1.0], [[1.0]], [0.0])
XB = [[1.0, EPS30]]


def test_mode_b_backward_relu_one_and_split_maxpool():
    ReluOne, Split = M._functions()
    x = torch.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    ReluOne.apply(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0]  # ReLU'(0) = 1
    x.grad = None
    torch.relu(x).sum().backward()
    assert x.grad.tolist() == [0.0, 0.0, 1.0]  # torch's native ReLU'(0) = 0
    # two 2x2 windows: [1 3; 3 2] ties at positions 1 and 2, [5 4; 0 1] does not
    img = torch.tensor([[[[1.0, 3.0, 5.0, 4.0], [3.0, 2.0, 0.0, 1.0]]]], requires_grad=True)
    out = Split.apply(img, 2)
    assert out.tolist() == [[[[3.0, 5.0]]]]
    (out * torch.tensor([[[[2.0, 7.0]]]])).sum().backward()
    assert img.grad.tolist() == [[[[0.0, 1.0, 7.0, 0.0], [1.0, 0.0, 0.0, 0.0]]]]  # split: 2/2 each
    img.grad = None
    (torch.nn.functional.max_pool2d(img, 2) * torch.tensor([[[[2.0, 7.0]]]])).sum().backward()
    assert img.grad.tolist() == [[[[0.0, 2.0, 7.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]]  # native: the first maximum


def test_hooks_record_float_ties_and_the_backprops_differ():
    m = mlp(*A)
    rec = M.TieRecorder(m)
    xb, t = torch.tensor(XA), torch.zeros(1, 1)
    _, ga = M._grads(m, xb, t, "mse")
    assert rec.take() == [(1, "relu", 0, 0)]
    _, gb = M._grads(M._mode_b(m), xb, t, "mse")
    assert rec.take() == []  # mode B's modules carry no hooks
    # only W1[0] and b1[0] change: the tie's signal 3/2 times x = (3/4, 3/8), and 3/2 for the bias
    assert (gb[0] - ga[0]).tolist() == [[0.75, 0.375], [0.0, 0.0]]
    assert (gb[1] - ga[1]).tolist() == [1.5, 0.0]
    assert all(torch.equal(a, b) for a, b in zip(ga[2:], gb[2:]))
    mb = mlp(*B)
    rb = M.TieRecorder(mb)
    mb(torch.tensor(XB))
    assert rb.take() == [(1, "relu", 0, 0)]  # PyTorch's float32 run ties
    pool = torch.nn.Sequential(torch.nn.MaxPool2d(2))
    rp = M.TieRecorder(pool)
    pool(torch.tensor([[[[1.0, 3.0, 5.0, 4.0], [3.0, 2.0, 0.0, 1.0]], [[0.0, 0.0, 1.0, 2.0], [0.0, 0.0, 3.0, 4.0]]]]).reshape(1, 2, 2, 4))
    assert rp.take() == [(0, "maxpool2d", 0, 0), (0, "maxpool2d", 0, 2)]  # (channel 0 window 0, channel 1 window 0)


def test_classify_real_tie_and_float_only_exactly():
    a = C.classify(mlp(*A), torch.tensor(XA), torch.zeros(1, 1), [(1, "relu", 0, 0)], "mse")
    assert (a["kind"], a["torch_ties"], a["torch_ties_real"], a["real_ties"], a["real_ties_unseen_by_torch"]) == ("real tie", 1, 1, 1, 0)
    # the two one-sided cells differ in W1[0], b1[0] (signal 3/2 != 0): not differentiable, so AD is
    # not the gradient; one private-bias layer: AD is a Clarke subderivative
    assert (a["differentiable"], a["ad_correct"], a["ad_in_clarke"]) == (False, False, True)
    full = C.classify(mlp(*A), torch.tensor(XA), torch.zeros(1, 1), [(1, "relu", 0, 0)], "mse", full=True)
    assert (full["kind"], full["differentiable"], full["ad_correct"], full["ad_in_clarke"]) == ("real tie", False, False, True)
    assert full["spec_float_ties"] == 1 and full["choice_sensitive_spec_order"] is True
    # a claimed tie at unit 1 (exactly 3/4) is float-only, and the real tie at unit 0 is unseen
    c = C.classify(mlp(*A), torch.tensor(XA), torch.zeros(1, 1), [(1, "relu", 0, 1)], "mse")
    assert (c["kind"], c["torch_ties_real"], c["real_ties_unseen_by_torch"]) == ("float-only", 0, 1)
    b = C.classify(mlp(*B), torch.tensor(XB), torch.zeros(1, 1), [(1, "relu", 0, 0)], "mse")
    assert (b["kind"], b["real_ties"], b["differentiable"], b["ad_correct"], b["ad_in_clarke"]) == ("float-only", 0, True, True, True)
    # a budget that runs out: the verdicts are undecided, with the reason (the kind is still exact)
    late = C.classify(mlp(*A), torch.tensor(XA), torch.zeros(1, 1), [(1, "relu", 0, 0)], "mse", budget_s=1e-6)
    assert late["kind"] == "real tie" and late["differentiable"] is None and "time budget" in late["reason"]


def test_zone_plane_around_a_real_tie_is_exact():
    # params 3/2, 5/4, -17/16 stay inside their binades within 4 ulps, so the exact pre-activation is
    # affine in the grid coordinates: z(i, j) = z(0, 0) + i*(z(1,0) - z(0,0)) + j*(z(0,1) - z(0,0))
    z = Z.zone_plane(mlp(*A), torch.tensor(XA), 1, 0, 0, grid=9, seed=1)
    assert z["ticks"] == list(range(-4, 5))
    q = [[Fraction(str(v)) for v in row] for row in z["exact"]]
    assert q[4][4] == 0 and z["float"][4][4] == 0 and z["exact_zero"][4][4] and z["float_zero"][4][4]
    di, dj = q[5][4] - q[4][4], q[4][5] - q[4][4]
    assert (di, dj) != (0, 0)
    assert all(q[4 + i][4 + j] == i * di + j * dj for i in range(-4, 5) for j in range(-4, 5))
    assert (z["exact_zero"] == [[v == 0 for v in row] for row in q]).all()
    # float-only: PyTorch's value 0 at the centre, the exact value 2^-30
    zb = Z.zone_plane(mlp(*B), torch.tensor(XB), 1, 0, 0, grid=3, seed=0)
    assert zb["float"][1][1] == 0 and Fraction(str(zb["exact"][1][1])) == Fraction(1, 2**30)
    with pytest.raises(InputError, match="supports"):
        Z.zone_plane(mlp(*A), torch.tensor(XA), 2, 0, 0)


TINY = SurveyConfig(arch="cnn", widths=(4,), depths=(1,), dtypes=("float16", "float32"), inits=2, max_batches=6, max_classified=None)


def strip(res):
    """The runs without wall-clock times (the only thing allowed to differ between executors)."""
    return [{**{k: v for k, v in r.items() if not k.startswith("time")}, "classified": [{k: v for k, v in c.items() if k != "time_s"} for c in r["classified"]]} for r in res.runs]


def check_consistent(res):
    for r in res.runs:
        assert r["events"] == len(r["event_list"]) <= r["tie_batches"] <= r["steps"]
        assert r["in_zone"] == (r["events"] > 0)
        assert [c["step"] for c in r["classified"]] == [e["step"] for e in r["event_list"]][: len(r["classified"])]
        for e, c in zip(r["event_list"], r["classified"]):
            assert c["torch_ties"] == e["n_ties"] >= 1
            assert c["kind"] == ("real tie" if c["torch_ties_real"] else "float-only")
            if c["real_ties"] == 0:  # no real tie in the minibatch: f is smooth there
                assert (c["differentiable"], c["ad_correct"], c["ad_in_clarke"]) == (True, True, True)


def test_protocol1_cnn_same_results_serial_processes_and_dask():
    distributed = pytest.importorskip("distributed")
    a = survey(TINY)
    b = survey(TINY, workers=2)
    with distributed.LocalCluster(processes=False, n_workers=2, threads_per_worker=1, dashboard_address=None) as cl, distributed.Client(cl) as client:
        d = survey(TINY, executor="dask", scheduler=client)
    assert strip(a) == strip(b) == strip(d)
    check_consistent(a)
    assert [r["key"] for r in a.runs] == ["float16-d1-w4-i0", "float16-d1-w4-i1", "float32-d1-w4-i0", "float32-d1-w4-i1"]
    assert all(r["steps"] == 6 for r in a.runs)
    table = a.table()
    assert [(r["dtype"], r["inits"], r["steps"]) for r in table] == [("float16", 2, 12), ("float32", 2, 12)]
    assert "| float16 | 1 | 4 |" in a.markdown()


def test_protocol2_resume_and_config_mismatch(tmp_path, monkeypatch):
    cfg = SurveyConfig(protocol=2, arch="cnn", widths=(4,), depths=(1,), dtypes=("float16",), inits=1, max_batches=5, epochs=2, lr=0.05, max_classified=2)
    calls = []
    real_run = R.run_one

    def counting(c, job):
        calls.append(job)
        return real_run(c, job)

    monkeypatch.setattr(E, "run_one", counting)
    first = survey(cfg, out_dir=tmp_path)
    assert len(calls) == 1 and first.computed == 1
    r = first.runs[0]
    check_consistent(first)
    assert r["steps"] == 10 and 0 <= r["train_accuracy"] <= 1 and r["diverged_at"] is None
    assert len(r["classified"]) == min(2, r["events"])
    run_file = tmp_path / "runs" / "float16-d1-w4-i0.json"
    assert json.loads(run_file.read_text()) == r
    stamp = run_file.stat().st_mtime_ns
    again = survey(cfg, out_dir=tmp_path)  # nothing recomputed, the same result
    assert len(calls) == 1 and again.computed == 0 and again.runs == first.runs and run_file.stat().st_mtime_ns == stamp
    bigger = SurveyConfig(**{**asdict(cfg), "inits": 2})  # a larger grid reuses the finished run
    grown = survey(bigger, out_dir=tmp_path)
    assert [j[3] for j in calls] == [0, 1] and grown.computed == 1 and grown.runs[0] == r
    # Protocol 2 really trains: replaying to step 7 gives other parameters than the initial ones
    m7, *_ = R._simulate(cfg, ("float16", 1, 4, 0), stop_at=7)
    m0 = M.build_model("cnn", 4, 1, "float16", R._seed(cfg, ("float16", 1, 4, 0)))
    assert not torch.equal(m7[0].weight, m0[0].weight)
    with pytest.raises(InputError, match=r"config\.json: .*lr=0\.05.*lr=0\.1"):
        survey(SurveyConfig(**{**asdict(cfg), "lr": 0.1}), out_dir=tmp_path)
    res = RUNNER.invoke(app, ["survey", "--protocol", "2", "--arch", "cnn", "--widths", "4", "--depths", "1", "--dtypes", "float16", "--inits", "1", "--max-batches", "5", "--epochs", "2", "--lr", "0.1", "--max-classified", "2", "--workers", "1", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "lr=0.05" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    files = write(first, tmp_path)
    summary = (tmp_path / "summary.md").read_text()
    assert "Protocol 2: SGD, lr 0.05, 2 epoch(s)" in summary and "| float16 | 1 | 4 | " in summary
    assert "classification / training" in summary
    # the zone picture of the first classified event's tie (a max-pool tie: the CNN's ReLU never
    # tied here), linked from the summary; PyTorch's two tied entries are equal, the exact ones not
    assert r["classified"] and r["classified"][0]["kind"] == "float-only"
    assert (tmp_path / "zone_plane.png") in files and "(zone_plane.png)" in summary
    zone = json.loads((tmp_path / "zone.json").read_text())
    assert (zone["run"], zone["step"], zone["op"], zone["layer"]) == (r["key"], r["classified"][0]["step"], "maxpool2d", 1)
    assert zone["center_float"] == "0" and zone["center_exact"] != "0"


def test_cli_survey_quiet_run_and_resume(tmp_path):
    args = ["survey", "--arch", "mlp", "--widths", "16", "--depths", "1,2", "--dtypes", "float32", "--inits", "1", "--max-batches", "3", "--workers", "1", "--out", str(tmp_path), "-q"]
    first = RUNNER.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "2 run(s) computed, 0 reused" in first.stdout
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["float32-d1-w16-i0.json", "float32-d2-w16-i0.json"]
    second = RUNNER.invoke(app, args)
    assert second.exit_code == 0 and "0 run(s) computed, 2 reused" in second.stdout
    assert "zone_fraction_depth.png" in (tmp_path / "summary.md").read_text()
    (tmp_path / "a-file").write_text("")
    bad = RUNNER.invoke(app, [*args[:-2], str(tmp_path / "a-file"), "-q"])
    assert bad.exit_code == 2 and bad.stderr.strip() == f"kinkcheck: {tmp_path / 'a-file'}: cannot use as the output folder: File exists"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--protocol", "3"], "--protocol: expected 1 or 2, got 3"),
        (["--arch", "rnn"], "--arch: expected mlp or cnn"),
        (["--dtypes", "float8"], "'float8' is not one of"),
        (["--widths", "16,x"], "--widths: expected comma-separated integers"),
        (["--widths", "0"], "--widths: expected an integer >= 1"),
        (["--loss", "hinge"], "--loss: expected one of cross_entropy, mse"),
        (["--max-classified", "some"], "--max-classified: expected an integer or 'all'"),
        (["--scheduler", "tcp://127.0.0.1:1"], "--scheduler needs --executor dask"),
        (["--executor", "ray"], "--executor: expected local or dask"),
        (["--verdict-budget", "-1"], "--verdict-budget: expected a finite number"),
    ],
)
def test_cli_survey_rejects_bad_options(tmp_path, args, message):
    res = RUNNER.invoke(app, ["survey", "--out", str(tmp_path / "o"), *args])
    assert res.exit_code == 2
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output
    assert not (tmp_path / "o").exists()  # nothing written for bad input


def test_cli_survey_default_folder_per_configuration(tmp_path, monkeypatch):
    """Without --out every configuration gets its own folder under survey-out/: a second
    configuration (another seed) no longer fails on the first's folder; the same one reuses its runs."""
    monkeypatch.chdir(tmp_path)
    args = ["survey", "--widths", "16", "--depths", "1", "--dtypes", "float32", "--inits", "1", "--max-batches", "2", "--workers", "1", "-q"]
    first = RUNNER.invoke(app, args)
    second = RUNNER.invoke(app, [*args, "--seed", "1"])
    again = RUNNER.invoke(app, [*args, "--widths", "16,32"])  # a larger grid: same run parameters
    assert (first.exit_code, second.exit_code, again.exit_code) == (0, 0, 0), (first.output, second.output, again.output)
    folders = sorted(p.name for p in (tmp_path / "survey-out").iterdir())
    assert len(folders) == 2 and all(f.startswith("p1-mlp-") for f in folders)
    assert "1 run(s) computed, 0 reused from survey-out/p1-mlp-" in first.stdout
    assert "1 run(s) computed, 1 reused" in again.stdout
    from kinkcheck.cli import default_survey_dir
    from kinkcheck.survey.run import SurveyConfig

    base = SurveyConfig(widths=(16,), depths=(1,), dtypes=("float32",), inits=1, max_batches=2)
    assert default_survey_dir(base) != default_survey_dir(SurveyConfig(widths=(16,), depths=(1,), dtypes=("float32",), inits=1, max_batches=2, seed=1))
    assert default_survey_dir(base) == default_survey_dir(SurveyConfig(widths=(16, 32), depths=(1, 2), dtypes=("float16",), inits=3, max_batches=2))
    assert (tmp_path / default_survey_dir(base) / "config.json").is_file()


def test_help_readme_and_docs_give_the_same_timings_and_budgets():
    """--quick: about 20 s on 2 cores; verdict budget 60 s, 5 s with --quick - in the help, the
    README, docs/survey.md and the configuration's defaults alike."""
    import re
    from pathlib import Path

    from kinkcheck.survey.run import SurveyConfig

    root = Path(__file__).resolve().parent.parent
    help_text = " ".join(RUNNER.invoke(app, ["survey", "--help"], env={"COLUMNS": "1000", "TERMINAL_WIDTH": "1000"}).stdout.split())
    readme = " ".join((root / "README.md").read_text().split())
    docs = " ".join((root / "docs" / "survey.md").read_text().split())
    assert "about 20 s on 2 cores" in help_text and "5 s verdict budget" in help_text
    assert "default 60, with --quick 5" in help_text
    assert "`--quick` takes about 20 s on two cores" in readme
    assert "about 20 s on 2 cores" in docs and "(60 s; 5 s with `--quick`)" in docs
    assert SurveyConfig().verdict_budget_s == 60 and SurveyConfig.quick().verdict_budget_s == 5
    assert not re.search(r"about a minute", help_text + readme + docs)
