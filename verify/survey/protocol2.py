"""Protocol 2, Boustany's J_beta experiment: train the survey's CNN with the max-pool backward
J_beta = beta*J_split + (1-beta)*J_first for several beta at several precisions and report the
final training accuracy per (beta, dtype) - a table and a plot (accuracy against beta, one line
per precision).

Training: the CNN of ``models.build_model("cnn", ...)`` (Conv2d -> MaxPool2d -> ReLU -> ...), every
``MaxPool2d`` replaced by ``JBetaMaxPool2d`` (a ``torch.autograd.Function``: forward the max,
backward J_beta), plain SGD on load_digits for ``epochs`` epochs of minibatches (a seeded
permutation), everything in the run's dtype. The initial parameters depend on (seed, width,
depth, init) only: every beta and every precision starts from the same draws (rounded to the
dtype). A non-finite loss stops the run (``diverged_at``); the training accuracy is then measured
on the whole data set with the final parameters (a diverged net scores what its NaN outputs give).

The backward is kinkcheck's machine formula (docs/format.md, ``"tie_break": {"beta": B}``): at a
window with m >= 2 tied maxima and cotangent g, s = fl(fl(B*g)/m) to every tied entry but the first,
which gets fl(s + fl(c*g)), c = 1 - B rounded to the dtype; an untied window passes g to its
maximum; B = 0 is PyTorch's own first-index backward, B = 1 the even split. In float16, bfloat16 and
float32 PyTorch's CPU kernels compute each of these operations in float32 and round once to the
dtype (the products are exact in float32 since B and c are numbers of the dtype; a quotient or sum
rounded to float32 and then to a format of p <= 11 bits is correctly rounded, 24 >= 2p + 2), so
the training run computes exactly the cotangents kinkcheck models.

No torch at import time; ``beta_survey`` runs the grid (serially or in worker processes), ``write``
writes ``beta_results.json``, ``beta_summary.md`` and ``beta_accuracy.png``.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..encodings.errors import InputError

BETAS = (0.0, 1.0, 1000.0, 10000.0)
PRECISIONS = ("float16", "float32")
_BITS = {"float16": 16, "bfloat16": 16, "float32": 32, "float64": 64}


@dataclass
class BetaConfig:
    """One J_beta experiment: ``betas`` x ``dtypes`` x ``inits`` training runs of the CNN with
    ``width`` channels and ``depth`` conv layers."""

    betas: tuple = BETAS
    dtypes: tuple = PRECISIONS
    width: int = 8
    depth: int = 1
    inits: int = 3
    epochs: int = 10
    batch: int = 32
    lr: float = 0.1
    seed: int = 0
    max_batches: int | None = None
    loss: str = "cross_entropy"
    inputs: str | None = None

    @classmethod
    def quick(cls) -> BetaConfig:
        """A CI-sized run (a few seconds on one core): one initialisation, 2 epochs of 20 batches."""
        return cls(width=4, inits=1, epochs=2, max_batches=20)

    def __post_init__(self):
        self.betas = tuple(float(b) for b in (self.betas if isinstance(self.betas, (list, tuple)) else (self.betas,)))
        self.dtypes = tuple(self.dtypes) if isinstance(self.dtypes, (list, tuple)) else (self.dtypes,)

    def validate(self) -> BetaConfig:
        import torch

        from .config import DTYPES, LOSSES

        if not self.betas or not self.dtypes:
            raise InputError("--betas and --dtypes need at least one value each")
        for dt in self.dtypes:
            if dt not in DTYPES:
                raise InputError(f"--dtypes: {dt!r} is not one of {', '.join(DTYPES)}")
            for b in self.betas:
                if not math.isfinite(b) or float(torch.tensor(b, dtype=getattr(torch, dt))) != b:
                    raise InputError(f"--betas: {b:g} is not exactly representable in {dt} (J_beta multiplies the cotangent by beta in the dtype)")
        if len(set(self.betas)) != len(self.betas) or len(set(self.dtypes)) != len(self.dtypes):
            raise InputError("--betas and --dtypes must not repeat a value")
        for name in ("width", "depth", "inits", "epochs", "batch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"--{name}: expected an integer >= 1, got {v!r}")
        if self.max_batches is not None and (isinstance(self.max_batches, bool) or not isinstance(self.max_batches, int) or self.max_batches < 1):
            raise InputError(f"--max-batches: expected an integer >= 1, got {self.max_batches!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise InputError(f"--lr: expected a finite number > 0, got {self.lr!r}")
        if self.loss not in LOSSES:
            raise InputError(f"--loss: expected one of {', '.join(LOSSES)}, got {self.loss!r}")
        return self

    def jobs(self) -> list:
        return [(b, dt, i) for dt in self.dtypes for b in self.betas for i in range(self.inits)]


def from_cli(cfg, betas: str, quick: bool, given: dict) -> BetaConfig:
    """The CLI's ``survey --betas LIST`` (with ``--protocol 2 --arch cnn``): a BetaConfig from the
    preset (``--quick``: ``BetaConfig.quick()``) and the options given explicitly (the first of
    ``--widths`` / ``--depths``; dtypes, inits, batch, max-batches, lr, epochs, loss, inputs, seed)."""
    from dataclasses import replace

    if cfg.protocol != 2 or cfg.arch != "cnn":
        raise InputError("--betas needs --protocol 2 --arch cnn (the J_beta experiment trains the CNN)")
    try:
        bs = tuple(float(v) for v in betas.split(","))
    except ValueError:
        raise InputError(f"--betas: expected comma-separated numbers, got {betas!r}") from None
    picked = {k: v for k, v in given.items() if k in ("dtypes", "inits", "batch", "max_batches", "lr", "epochs", "loss", "inputs", "seed")}
    picked.update({k: given[k + "s"][0] for k in ("width", "depth") if k + "s" in given})
    return replace(BetaConfig.quick() if quick else BetaConfig(), betas=bs, **picked)


# ----------------------------------------------------------------------------------------------
# the J_beta max-pool

_FN = {}


def jbeta_function():
    """The autograd Function ``JBetaMaxPool2d.apply(x, k, beta)``: non-overlapping k x k max-pool
    (kernel = stride, no padding); backward J_beta as in the module docstring. It counts the tied
    windows its backward meets in ``JBetaMaxPool2d.tied`` (a one-element list)."""
    if "f" in _FN:
        return _FN["f"]
    import torch

    from .models import _windows

    class JBetaMaxPool2d(torch.autograd.Function):
        tied = [0]

        @staticmethod
        def forward(ctx, x, k, beta):
            win = _windows(x, k)
            mx = win.amax(-1)
            ctx.save_for_backward(win, mx)
            ctx.k, ctx.shape, ctx.beta = k, x.shape, beta
            return mx

        @staticmethod
        def backward(ctx, g):
            win, mx = ctx.saved_tensors
            k, beta = ctx.k, ctx.beta
            mask = win == mx.unsqueeze(-1)
            cnt = mask.sum(-1)
            K = mask.shape[-1]
            pos = torch.arange(K).expand_as(mask)
            first = torch.where(mask, K - pos, -1).argmax(-1, keepdim=True)
            one = torch.zeros(mask.shape, dtype=torch.bool).scatter(-1, first, True)  # first maximal entry
            tie = (cnt >= 2).unsqueeze(-1)
            JBetaMaxPool2d.tied[0] += int(tie.sum())
            gu = g.unsqueeze(-1)
            zero = torch.zeros((), dtype=g.dtype)
            if beta == 0:  # J_first: PyTorch's own
                T = torch.where(one, gu, zero)
            else:
                s = (g * beta).unsqueeze(-1) / cnt.unsqueeze(-1).to(g.dtype) if beta != 1 else gu / cnt.unsqueeze(-1).to(g.dtype)
                if beta != 1:
                    c = float(torch.tensor(1.0 - beta, dtype=g.dtype))  # 1 - beta rounded to the dtype
                    s_first = s + (g * c).unsqueeze(-1)
                    T = torch.where(mask & tie, torch.where(one, s_first, s), torch.where(one & ~tie, gu, zero))
                else:  # J_split
                    T = torch.where(mask, s, zero)
            N, C, Ho, Wo, _ = T.shape
            gi = T.reshape(N, C, Ho, Wo, k, k).permute(0, 1, 2, 4, 3, 5).reshape(N, C, Ho * k, Wo * k)
            out = g.new_zeros(ctx.shape)
            out[:, :, : Ho * k, : Wo * k] = gi
            return out, None, None

    _FN["f"] = JBetaMaxPool2d
    return JBetaMaxPool2d


def jbeta_model(model, beta: float):
    """The same modules (shared parameters) with every MaxPool2d replaced by the J_beta pool."""
    import torch

    from .models import _pool_k

    nn = torch.nn
    F = jbeta_function()

    class Pool(nn.Module):
        def __init__(self, k):
            super().__init__()
            self.k = k

        def forward(self, x):
            return F.apply(x, self.k, beta)

    return nn.Sequential(*[Pool(_pool_k(m)) if type(m) is nn.MaxPool2d else m for m in model])


# ----------------------------------------------------------------------------------------------
# one run and the grid


def _seed(cfg: BetaConfig, init: int) -> int:
    """From (seed, width, depth, init): not beta nor the dtype, so every run of a column starts
    from the same draws."""
    return int.from_bytes(hashlib.sha256(f"jbeta/{cfg.seed}/{cfg.width}/{cfg.depth}/{init}".encode()).digest()[:7], "little")


def train_one(cfg: BetaConfig, job) -> dict:
    """Train one (beta, dtype, init): SGD with the J_beta backward; the final training accuracy."""
    import torch

    from .models import _loss, _targets, build_model, load_data

    beta, dt, init = job
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        X, y = load_data("cnn", dt, cfg.inputs)
        dtype = getattr(torch, dt)
        seed = _seed(cfg, init)
        model = jbeta_model(build_model("cnn", cfg.width, cfg.depth, dt, seed), beta)
        params = list(model.parameters())
        F = jbeta_function()
        F.tied[0] = 0
        g = torch.Generator().manual_seed(seed)
        nb = X.shape[0] // cfg.batch
        if cfg.max_batches is not None:
            nb = min(nb, cfg.max_batches)
        step, diverged, t0 = 0, None, time.perf_counter()
        for _epoch in range(cfg.epochs):
            perm = torch.randperm(X.shape[0], generator=g)
            for b in range(nb):
                idx = perm[b * cfg.batch : (b + 1) * cfg.batch]
                model.zero_grad(set_to_none=True)
                lo = _loss(model(X[idx]), _targets(y[idx], cfg.loss, dtype), cfg.loss)
                if not torch.isfinite(lo):
                    diverged = step
                    break
                lo.backward()
                with torch.no_grad():
                    for p in params:
                        p.add_(p.grad, alpha=-cfg.lr)
                step += 1
            if diverged is not None:
                break
        with torch.no_grad():
            acc = float((model(X).argmax(1) == y).double().mean())
        return {"beta": beta, "dtype": dt, "bits": _BITS[dt], "init": init, "train_accuracy": acc, "steps": step, "diverged_at": diverged, "tied_windows": F.tied[0], "time_s": time.perf_counter() - t0}
    finally:
        torch.set_num_threads(threads)


@dataclass
class BetaResult:
    config: BetaConfig
    runs: list

    def table(self) -> list:
        """One row per (beta, dtype): mean / min / max final training accuracy over the inits,
        diverged runs, tied windows met per run (mean)."""
        rows = []
        for dt in self.config.dtypes:
            for b in self.config.betas:
                rs = [r for r in self.runs if r["dtype"] == dt and r["beta"] == b]
                if not rs:
                    continue
                accs = [r["train_accuracy"] for r in rs]
                rows.append({
                    "beta": b, "dtype": dt, "bits": _BITS[dt], "runs": len(rs), "accuracy_mean": sum(accs) / len(accs), "accuracy_min": min(accs),
                    "accuracy_max": max(accs), "diverged": sum(r["diverged_at"] is not None for r in rs), "tied_windows": sum(r["tied_windows"] for r in rs) / len(rs),
                })
        return rows

    def markdown(self) -> str:
        c = self.config
        head = (
            f"# J_beta max-pool training (Boustany's Protocol 2)\n\nCNN: {c.depth} conv layer(s), {c.width} channels; load_digits; "
            f"SGD lr {c.lr:g}, batch {c.batch}, {c.epochs} epoch(s){'' if c.max_batches is None else f' of at most {c.max_batches} minibatches'}; "
            f"{c.inits} initialisation(s) per cell (the same draws for every beta and precision).\n\n"
            "Final training accuracy (mean, min-max over the initialisations); diverged: runs stopped by a non-finite loss; "
            "tied windows: max-pool windows with two or more maximal entries met by the backward per run (mean).\n\n"
        )
        lines = ["| beta | " + " | ".join(f"{dt} accuracy | diverged | tied windows" for dt in c.dtypes) + " |", "|---" * (1 + 3 * len(c.dtypes)) + "|"]
        rows = {(r["beta"], r["dtype"]): r for r in self.table()}
        for b in c.betas:
            cells = []
            for dt in c.dtypes:
                r = rows.get((b, dt))
                cells += ["-", "-", "-"] if r is None else [f"{r['accuracy_mean']:.3f} ({r['accuracy_min']:.3f}-{r['accuracy_max']:.3f})", f"{r['diverged']}/{r['runs']}", f"{r['tied_windows']:.0f}"]
            lines.append(f"| {b:g} | " + " | ".join(cells) + " |")
        return head + "\n".join(lines) + "\n"

    def to_json(self) -> dict:
        return {"config": asdict(self.config), "table": self.table(), "runs": self.runs}


def beta_survey(cfg: BetaConfig, *, workers: int = 1, progress=None) -> BetaResult:
    """Every (beta, dtype, init) run; ``workers`` > 1: a process pool (runs are independent and
    seeded, one torch thread each, so the result does not depend on it)."""
    cfg.validate()
    jobs = cfg.jobs()
    runs = []
    if workers <= 1:
        for j in jobs:
            runs.append(train_one(cfg, j))
            if progress:
                progress(len(runs), len(jobs))
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as ex:
            for r in ex.map(train_one, [cfg] * len(jobs), jobs):
                runs.append(r)
                if progress:
                    progress(len(runs), len(jobs))
    return BetaResult(cfg, runs)


def plot(result: BetaResult, path) -> None:
    """Accuracy against beta (symlog axis: 0 and 1 linear, 1000 and 10000 logarithmic), one line per
    precision, the min-max band over the initialisations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for dt in result.config.dtypes:
        rows = sorted((r for r in result.table() if r["dtype"] == dt), key=lambda r: r["beta"])
        xs = [r["beta"] for r in rows]
        ax.plot(xs, [r["accuracy_mean"] for r in rows], marker="o", label=f"{dt} ({_BITS[dt]} bits)")
        ax.fill_between(xs, [r["accuracy_min"] for r in rows], [r["accuracy_max"] for r in rows], alpha=0.2)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("beta (J_beta = beta J_split + (1 - beta) J_first)")
    ax.set_ylabel("final training accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title("Max-pool backward J_beta: training accuracy against beta")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(result: BetaResult, out_dir) -> list:
    """beta_results.json, beta_summary.md and (with matplotlib) beta_accuracy.png in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "beta_results.json", out / "beta_summary.md"]
    files[0].write_text(json.dumps(result.to_json(), indent=1))
    text = result.markdown()
    try:
        plot(result, out / "beta_accuracy.png")
        files.append(out / "beta_accuracy.png")
        text += "\n![accuracy against beta](beta_accuracy.png)\n"
    except ImportError:  # pragma: no cover
        text += "\nmatplotlib is not installed: no plot\n"
    files[1].write_text(text)
    return files
