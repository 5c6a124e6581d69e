"""Benchmark: exact classification of survey events at the papers' MNIST scale (issue 13 part 4).

    python benchmarks/bench_survey.py [--dtypes float16,float32] [--max-batches 40] [--events 5]

A synthetic MNIST-shaped data set (784 inputs, pixel values k/255 with ~80% exact zeros like MNIST,
labels 0..9; no download) is written to a temporary .npz and read through ``--data`` exactly as a
user's MNIST would be. One Protocol 1 run of a 784-256-256-256-10 MLP at batch 128 (``--widths 256
--depths 3``) per dtype: PyTorch's minibatches with the tie hooks, then the first ``--events`` events
classified exactly (real tie or float-only, and the three verdicts). Printed: the median
classification time of one event, and the ratio of the classification time to the training
(simulation) time of the same run - both measured in this process; compare ratios across machines.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.append(str(Path(__file__).resolve().parent.parent))


def synthetic_mnist(path, n=6000, seed=0):
    rng = np.random.default_rng(seed)
    X = np.where(rng.random((n, 784)) < 0.8, 0, rng.integers(1, 256, (n, 784))).astype(np.float64) / 255.0
    y = rng.integers(0, 10, n)
    np.savez(path, X=X.astype(np.float32), y=y)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtypes", default="float16,float32")
    ap.add_argument("--max-batches", type=int, default=40)
    ap.add_argument("--events", type=int, default=5)
    ap.add_argument("--inits", type=int, default=1)
    args = ap.parse_args(argv)
    import kinkcheck.survey.run as R
    from kinkcheck.survey import SurveyConfig

    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "mnist_like.npz")
        synthetic_mnist(data)
        rows = []
        for dt in args.dtypes.split(","):
            cfg = SurveyConfig(data=data, widths=(256,), depths=(3,), dtypes=(dt,), inits=args.inits, batch=128,
                               max_batches=args.max_batches, max_classified=args.events, verdict_budget_s=60.0).validate()
            for init in range(args.inits):
                t0 = time.perf_counter()
                r = R.run_one(cfg, (dt, 3, 256, init))
                wall = time.perf_counter() - t0
                ev = [c["time_s"] for c in r["classified"]]
                kinds = [c["kind"] for c in r["classified"]]
                verdicts = [(c["differentiable"], c["ad_correct"], c["ad_in_clarke"]) for c in r["classified"]]
                rows.append((dt, init, r["steps"], r["events"], ev, r["time_train_s"], r["time_classify_s"], wall, kinds, verdicts))
    print("784-256-256-256-10 MLP, batch 128, Protocol 1 on a synthetic 784-dim data set read with --data")
    for dt, init, steps, n_ev, ev, t_train, t_cls, wall, kinds, verdicts in rows:
        med = f"{statistics.median(ev):.3f} s (min {min(ev):.3f}, max {max(ev):.3f})" if ev else "-"
        print(f"{dt} init {init}: {steps} minibatches, {n_ev} events; classified {len(ev)}: median {med}")
        print(f"    training (simulation) {t_train:.2f} s, classification {t_cls:.2f} s, ratio classification/training {t_cls / t_train:.2f}")
        print(f"    kinds {kinds}; verdicts (differentiable, ad_correct, ad_in_clarke) {sorted(set(verdicts), key=str)}")
    allev = [t for row in rows for t in row[4]]
    t_train = sum(row[5] for row in rows)
    t_cls = sum(row[6] for row in rows)
    if allev:
        print(f"all runs: {len(allev)} events classified, median {statistics.median(allev):.3f} s per event (max {max(allev):.3f}); "
              f"classification/training {t_cls / t_train:.2f} ({t_cls:.2f} s / {t_train:.2f} s)")
    return rows


if __name__ == "__main__":
    main()
