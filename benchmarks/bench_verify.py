"""Benchmark: ``kinkcheck.verify`` on a 784-256-256-10 float32 MLP (random weights, batch 32, mse)
against a plain numpy float64 forward+backward of the same network, measured in the same run.

    python benchmarks/bench_verify.py [--repeat 3] [--values]

Prints the best-of-N times and their ratio (these machines are noisy: compare ratios, never
absolute seconds). ``--values`` also computes the exact and machine AD outputs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# one BLAS thread for both sides: on a shared 2-core machine multi-threaded BLAS spin-waits and the
# baseline varies by 100x between runs
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def make_doc(sizes=(784, 256, 256, 10), batch=32, seed=0):
    rng = np.random.default_rng(seed)
    params, layers = {}, []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        W = (rng.standard_normal((b, a)) / np.sqrt(a)).astype(np.float32)
        bias = (0.1 * rng.standard_normal(b)).astype(np.float32)
        params[f"W{i}"] = {"shape": [b, a], "values": W.astype(np.float64).tolist()}
        params[f"b{i}"] = {"shape": [b], "values": bias.astype(np.float64).tolist()}
        layers.append({"op": "linear", "weight": f"W{i}", "bias": f"b{i}"})
        if i < len(sizes) - 2:
            layers.append({"op": "relu"})
    X = rng.random((batch, sizes[0])).astype(np.float32)
    Y = rng.standard_normal((batch, sizes[-1])).astype(np.float32)
    doc = {
        "kinkcheck": 1,
        "dtype": "float32",
        "params": params,
        "inputs": {"shape": list(X.shape), "values": X.astype(np.float64).tolist()},
        "targets": {"shape": list(Y.shape), "values": Y.astype(np.float64).tolist()},
        "layers": layers,
        "loss": {"op": "mse"},
    }
    return doc, (params, X, Y)


def numpy_baseline(Ws, bs, X, Y):
    """float64 forward + backward of the MLP with relu and mse (mean)."""
    hs = [X]
    pre = []
    h = X
    for i, (W, b) in enumerate(zip(Ws, bs)):
        z = h @ W.T + b
        pre.append(z)
        h = np.maximum(z, 0) if i < len(Ws) - 1 else z
        hs.append(h)
    r = h - Y
    loss = np.mean(r * r)
    g = 2 * r / r.size
    grads = []
    for i in reversed(range(len(Ws))):
        if i < len(Ws) - 1:
            g = g * (pre[i] > 0)
        grads.append((g.T @ hs[i], g.sum(0)))
        g = g @ Ws[i]
    return loss, grads


def best(fn, repeat):
    ts = []
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return min(ts), out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--values", action="store_true")
    args = ap.parse_args(argv)
    import kinkcheck

    doc, (params, X, Y) = make_doc()
    Ws = [np.array(params[f"W{i}"]["values"]) for i in range(3)]
    bs = [np.array(params[f"b{i}"]["values"]) for i in range(3)]
    t_load, net = best(lambda: kinkcheck.load(doc), 1)
    t_np, _ = best(lambda: numpy_baseline(Ws, bs, X.astype(np.float64), Y.astype(np.float64)), max(args.repeat, 5))
    t_kc, rep = best(lambda: kinkcheck.verify(net, values=args.values or None), args.repeat)
    print(f"network: 784-256-256-10 float32 MLP, batch 32, mse; real ties {len(rep.real_ties)}, float ties {len(rep.float_ties)}")
    print(f"load (parse + validate)      : {t_load:9.4f} s (not in the ratio)")
    print(f"numpy float64 fwd+bwd (base) : {t_np:9.4f} s")
    print(f"kinkcheck verify{' --values' if args.values else '         '}     : {t_kc:9.4f} s")
    print(f"ratio verify / baseline      : {t_kc / t_np:9.1f}x")


if __name__ == "__main__":
    main()
