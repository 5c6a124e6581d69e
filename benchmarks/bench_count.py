"""Benchmark: ``kinkcheck.count`` over the whole float16 grid (63487 values) of one first-layer
parameter of a small MLP (batch 8, mse), against per-point ``kinkcheck.verify`` on a sample of the
same grid, measured in the same run.

    python benchmarks/bench_count.py [--repeat 5] [--hidden 8] [--layers 1] [--sample 200]

Prints, per swept parameter, the best-of-N time of the count of the ties and the nd set
(``choice=False``: only real-tie points get the full decision) and of every key (every tie point
gets it), points/s by wall clock and by CPU time of this process (less sensitive to other load),
and the ratio to the per-point baseline's points/s (these machines are shared and noisy: compare
ratios, not absolute seconds).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def make_doc(n_in=4, hidden=8, layers=1, batch=8, seed=0):
    rng = np.random.default_rng(seed)

    def f16(a):
        return np.asarray(a, dtype=np.float16).astype(np.float64).tolist()

    sizes = [n_in] + [hidden] * layers + [1]
    params, lays = {}, []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        params[f"W{i + 1}"] = {"shape": [b, a], "values": f16(rng.standard_normal((b, a)) / np.sqrt(a))}
        params[f"b{i + 1}"] = {"shape": [b], "values": f16(0.1 * rng.standard_normal(b))}
        lays.append({"op": "linear", "weight": f"W{i + 1}", "bias": f"b{i + 1}"})
        if i < len(sizes) - 2:
            lays.append({"op": "relu"})
    return {
        "kinkcheck": 1,
        "dtype": "float16",
        "params": params,
        "inputs": {"shape": [batch, n_in], "values": f16(rng.standard_normal((batch, n_in)))},
        "targets": {"shape": [batch, 1], "values": f16(rng.standard_normal((batch, 1)))},
        "layers": lays,
        "loss": {"op": "mse"},
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--hidden", type=int, default=8)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--sample", type=int, default=200)
    args = ap.parse_args()

    import kinkcheck
    from kinkcheck.search.count import decide_point, grid, resolve

    net = kinkcheck.load(make_doc(hidden=args.hidden, layers=args.layers))
    g = grid(net.fmt)
    rng = np.random.default_rng(1)
    print(f"float16 MLP 4-{'-'.join([str(args.hidden)] * args.layers)}-1, batch 8, {len(g)} points per sweep; load average {os.getloadavg()[0]:.1f}")
    for spec in ("W1[0,0]", "W1[3,2]", "b1[5]"):
        idx, _ = resolve(net, spec)
        sample = rng.choice(g, args.sample, replace=False)
        t0 = time.perf_counter()
        for v in sample:
            th = net.theta.copy()
            th[idx] = v
            decide_point(net, th)
        base = args.sample / (time.perf_counter() - t0)
        for choice, what in ((False, "ties + nd"), (True, "all keys ")):
            kinkcheck.count(net, spec, choice=choice)  # warm-up (imports, caches)
            best = None
            cpu = []
            for _ in range(args.repeat):
                c0 = time.process_time()
                r = kinkcheck.count(net, spec, choice=choice)
                cpu.append(time.process_time() - c0)
                best = r if best is None or r.time_s < best.time_s else best
            c = best.counts
            print(
                f"{spec:8s} {what} {best.time_s * 1e3:7.1f} ms {best.points_per_s:10.0f} points/s "
                f"(CPU time {min(cpu) * 1e3:6.1f} ms: {best.points / min(cpu):10.0f} points/s) "
                f"(per-point verify {base:4.0f} points/s: x{best.points_per_s / base:,.0f}); "
                f"real ties {c['real_tie']}, float ties {c['float_tie']}, nd {c['not_differentiable']}, "
                f"branch mismatch {c['branch_mismatch']}, verified {best.decided_points}"
            )


if __name__ == "__main__":
    main()
