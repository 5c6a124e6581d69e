"""The survey's J_beta experiment (Protocol 2 with --betas): the autograd Function computes the
documented machine formula (hand-derived values), beta = 0 is PyTorch's own backward, and the
--quick run writes the table and the plot."""

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from kinkcheck.survey import protocol2 as P2  # noqa: E402


def pool_grad(x, g, beta):
    """Gradient of sum(g * pool(x)) for one [1, 1, 2, 4] input (two 2x2 windows)."""
    x = x.clone().requires_grad_(True)
    y = P2.jbeta_function().apply(x, 2, beta)
    (y * g).sum().backward()
    return x.grad


# window 0 (left 2x2): entries (row-major) 2, 2, 1, 0 - two tied maxima, the first at (0, 0);
# window 1 (right 2x2): 3, 1, 0, 0 - one maximum
X = [[[[2, 2, 3, 1], [1, 0, 0, 0]]]]


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_jbeta_backward_by_hand(dtype):
    dt = getattr(torch, dtype)
    x = torch.tensor(X, dtype=dt)
    g = torch.tensor([[[[0.1875, 0.1875]]]], dtype=dt)  # 3 * 2^-4
    gi = pool_grad(x, g, 1000.0)
    # s = 1000 * 0.1875 / 2 = 93.75 (exact in both); (1 - 1000) * 0.1875 = -187.3125: float16 rounds
    # it to -187.25 (spacing 1/8, ties to even), float32 keeps it; first = 93.75 + that
    first = -93.5 if dtype == "float16" else -93.5625
    assert gi.tolist() == [[[[first, 93.75, 0.1875, 0.0], [0.0, 0.0, 0.0, 0.0]]]]
    # beta = 10000, g = 1 in float16: 1 - 10000 = -9999 rounds to -10000, so the first gets
    # 5000 - 10000 = -5000; float32 keeps -9999: 5000 - 9999 = -4999
    gi = pool_grad(x, torch.ones(1, 1, 1, 2, dtype=dt), 10000.0)
    assert gi[0, 0, 0, :2].tolist() == ([-5000.0, 5000.0] if dtype == "float16" else [-4999.0, 5000.0])
    # beta = 1: the split, g/2 each; beta = 0: PyTorch's own max-pool backward (first index)
    assert pool_grad(x, g, 1.0).tolist() == [[[[0.09375, 0.09375, 0.1875, 0.0], [0.0, 0.0, 0.0, 0.0]]]]
    xr = x.clone().requires_grad_(True)
    (torch.nn.functional.max_pool2d(xr, 2) * g).sum().backward()
    assert torch.equal(pool_grad(x, g, 0.0), xr.grad)


def test_bad_betas_are_refused():
    from kinkcheck.encodings.errors import InputError

    with pytest.raises(InputError, match="10001 is not exactly representable in float16"):
        P2.BetaConfig(betas=(10001,), dtypes=("float16",)).validate()
    with pytest.raises(InputError, match="--betas needs --protocol 2 --arch cnn"):
        from kinkcheck.survey import SurveyConfig

        P2.from_cli(SurveyConfig(protocol=1, arch="cnn"), "0,1", True, {})


def test_quick_cli_run_writes_table_and_plot(tmp_path):
    from typer.testing import CliRunner

    from kinkcheck.cli import app

    out = tmp_path / "beta"
    r = CliRunner().invoke(app, ["survey", "--quick", "--protocol", "2", "--arch", "cnn", "--betas", "0,1,1000,10000", "--dtypes", "float16,float32", "--workers", "1", "-o", str(out)])
    assert r.exit_code == 0, r.output
    data = json.loads((out / "beta_results.json").read_text())
    table = data["table"]
    assert {(row["beta"], row["dtype"]) for row in table} == {(b, d) for b in (0.0, 1.0, 1000.0, 10000.0) for d in ("float16", "float32")}
    assert (out / "beta_accuracy.png").stat().st_size > 1000
    summary = (out / "beta_summary.md").read_text()
    assert "| beta | float16 accuracy |" in summary and "| 10000 |" in summary
    # J_beta differs from J_first only at tied windows: a precision whose runs met none trains
    # the same network for every beta (same draws, same minibatches), so the same accuracy
    for dt in ("float16", "float32"):
        runs = [x for x in data["runs"] if x["dtype"] == dt]
        if all(x["tied_windows"] == 0 for x in runs):
            assert len({x["train_accuracy"] for x in runs}) == 1
    assert all(0 <= row["accuracy_min"] <= row["accuracy_mean"] <= row["accuracy_max"] <= 1 for row in table)
