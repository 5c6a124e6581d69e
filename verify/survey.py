"""Surveys: how often does training meet kinks at 16/32/64 bits, and what are the events, exactly?

Protocol 1 (Bertoin et al.'s volume estimate) at laptop scale: for N random initialisations of an
MLP on scikit-learn's ``load_digits`` (shipped with scikit-learn, no download), run one epoch of
minibatches without updating, with two copies of the network whose ReLU'(0) is 0 and 1, and count
the initialisations where the two backprops differ on some minibatch. Every such event (the
parameters and the minibatch) becomes a network file that kinkcheck classifies exactly: real tie or
float-only (the framework's float tie has no real counterpart), and for real ties the verdicts
where they are decidable (cross-entropy is transcendental: equalities of gradients are then
undecided and reported as such). The framework's own summation order differs from the spec's, so
the float tie is PyTorch's observation; the exact side does not depend on order.

Runs are independent and seeded: the local executor runs them in processes and gives the same
results as a serial run.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field


@dataclass
class SurveyConfig:
    widths: tuple = (16, 64)
    depths: tuple = (1,)
    dtypes: tuple = ("float16", "float32", "float64")
    inits: int = 8
    batch: int = 32
    seed: int = 0
    max_batches: int | None = None  # None: one full epoch
    max_classified: int = 5  # events classified exactly per run

    @classmethod
    def quick(cls):
        return cls(widths=(64, 256), depths=(1,), dtypes=("float16", "float32", "float64"), inits=3, max_batches=None, max_classified=2)


def _torch():
    import torch

    return torch


def _relu_with(p):
    torch = _torch()

    class ReluP(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return torch.relu(x)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            d = (x > 0).to(g.dtype)
            if p:
                d = d + (x == 0).to(g.dtype) * p
            return g * d

    class Mod(torch.nn.Module):
        def forward(self, x):
            return ReluP.apply(x)

    return Mod()


def _mlp(width, depth, dtype, seed, relu):
    torch = _torch()
    torch.manual_seed(seed)
    layers, d_in = [], 64
    for _ in range(depth):
        layers += [torch.nn.Linear(d_in, width), relu()]
        d_in = width
    layers.append(torch.nn.Linear(d_in, 10))
    return torch.nn.Sequential(*layers).to(getattr(torch, dtype))


def _data(dtype):
    import numpy as np
    from sklearn.datasets import load_digits

    torch = _torch()
    d = load_digits()
    X = torch.tensor(np.asarray(d.data, dtype=np.float64) / 16.0).to(getattr(torch, dtype))
    y = torch.tensor(d.target, dtype=torch.int64)
    return X, y


def run_one(cfg: SurveyConfig, width: int, depth: int, dtype: str, init: int) -> dict:
    """One initialisation: one epoch of minibatches, two backprops each, events classified."""
    import kinkcheck
    from kinkcheck.torch import from_torch

    torch = _torch()
    torch.set_num_threads(1)  # runs are parallel processes; one thread each
    t0 = time.perf_counter()
    X, y = _data(dtype)
    seed = cfg.seed * 100003 + init * 1009 + width * 31 + depth
    m0 = _mlp(width, depth, dtype, seed, lambda: _relu_with(0.0))
    m1 = _mlp(width, depth, dtype, seed, lambda: _relu_with(1.0))
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(X.shape[0], generator=g)
    events = []
    nb = X.shape[0] // cfg.batch
    if cfg.max_batches is not None:
        nb = min(nb, cfg.max_batches)
    for b in range(nb):
        idx = perm[b * cfg.batch : (b + 1) * cfg.batch]
        xb, yb = X[idx], y[idx]
        grads = []
        for m in (m0, m1):
            m.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(m(xb), yb).backward()
            grads.append([p.grad.clone() for p in m.parameters()])
        if any(not torch.equal(a, c) for a, c in zip(*grads)):
            events.append({"batch": b, "indices": idx.tolist()})
    t_train = time.perf_counter() - t0
    t1 = time.perf_counter()
    plain = _mlp(width, depth, dtype, seed, torch.nn.ReLU)
    classified = []
    for ev in events[: cfg.max_classified]:
        idx = torch.tensor(ev["indices"])
        doc = from_torch(plain, X[idx], y[idx], loss="cross_entropy")
        rep = kinkcheck.verify(doc, values=False)
        classified.append(
            {
                "batch": ev["batch"],
                "kind": "real tie" if rep.real_ties else "float-only",
                "real_ties": len(rep.real_ties),
                "float_ties_spec_order": len(rep.float_ties),
                "differentiable": rep.differentiable,
                "ad_in_clarke": rep.ad_in_clarke,
                "compensation": rep.compensation,
            }
        )
    return {
        "width": width,
        "depth": depth,
        "dtype": dtype,
        "init": init,
        "batches": nb,
        "events": len(events),
        "in_zone": bool(events),
        "classified": classified,
        "time_train_s": t_train,
        "time_classify_s": time.perf_counter() - t1,
    }


@dataclass
class SurveyResult:
    config: dict
    runs: list = field(default_factory=list)

    def table(self) -> list:
        rows = {}
        for r in self.runs:
            k = (r["dtype"], r["depth"], r["width"])
            row = rows.setdefault(k, {"dtype": k[0], "depth": k[1], "width": k[2], "inits": 0, "in_zone": 0, "events": 0, "real": 0, "float_only": 0, "t_train": 0.0, "t_classify": 0.0})
            row["inits"] += 1
            row["in_zone"] += r["in_zone"]
            row["events"] += r["events"]
            row["real"] += sum(c["kind"] == "real tie" for c in r["classified"])
            row["float_only"] += sum(c["kind"] == "float-only" for c in r["classified"])
            row["t_train"] += r["time_train_s"]
            row["t_classify"] += r["time_classify_s"]
        return [rows[k] for k in sorted(rows)]

    def markdown(self) -> str:
        out = [
            "# kinkcheck survey (Protocol 1: ReLU'(0) = 0 versus 1, one epoch without updates)",
            "",
            "| dtype | depth | width | inits in the zone | events | classified: real tie | float-only | train s | classify s |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in self.table():
            out.append(
                f"| {r['dtype']} | {r['depth']} | {r['width']} | {r['in_zone']}/{r['inits']} | {r['events']} | {r['real']} | {r['float_only']} | {r['t_train']:.2f} | {r['t_classify']:.2f} |"
            )
        return "\n".join(out) + "\n"


def survey(cfg: SurveyConfig, *, workers: int = 1) -> SurveyResult:
    jobs = [(w, d, dt, i) for dt in cfg.dtypes for d in cfg.depths for w in cfg.widths for i in range(cfg.inits)]
    if workers <= 1:
        runs = [run_one(cfg, *j) for j in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers) as ex:
            runs = list(ex.map(run_one, [cfg] * len(jobs), *zip(*jobs)))
    return SurveyResult(asdict(cfg), runs)


def write(result: SurveyResult, out_dir) -> None:
    from pathlib import Path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"config": result.config, "runs": result.runs}, indent=1))
    (out / "summary.md").write_text(result.markdown())
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        table = result.table()
        for dt in sorted({r["dtype"] for r in table}):
            rows = [r for r in table if r["dtype"] == dt]
            ax.plot([r["width"] for r in rows], [r["in_zone"] / r["inits"] for r in rows], marker="o", label=dt)
        ax.set_xlabel("width")
        ax.set_ylabel("fraction of initialisations in the zone")
        ax.set_ylim(-0.05, 1.05)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "zone_fraction.png", dpi=100)
        plt.close(fig)
    except ImportError:
        pass
