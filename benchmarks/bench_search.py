"""Benchmark: compensation search for one float32 neuron with fan-in n free weights in a box.

    python benchmarks/bench_search.py [--cap 30]

relu(w . x + b) with random float32 x, w and b = 0.01 - (float32 dot of the file weights); every weight
w_j is free in [w_j - 2^-6, w_j + 2^-6]. Goal: a compensation (a float tie that is no real tie).
Compared in the same run: plain Z3 on the FloatingPoint encoding (capped) and kinkcheck search
(structure first: monotone corner bounds + bisection on the float grid, Z3 only as fallback).
Each sat answer is confirmed by point verification.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def make(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n).astype(np.float32)
    w = rng.standard_normal(n).astype(np.float32)
    acc = np.float32(w[0] * x[0])
    for j in range(1, n):
        acc = np.float32(acc + np.float32(w[j] * x[j]))
    b = np.float32(-acc + np.float32(0.01))  # the file point is no tie: the search must move weights
    params = {f"w{j}": {"value": float(w[j])} for j in range(n)}
    params["b"] = {"value": float(b)}
    doc = {
        "kinkcheck": 1,
        "dtype": "float32",
        "params": params,
        "inputs": {"shape": [1, n], "values": [[float(v) for v in x]]},
        "layers": [{"op": "linear", "weight": [[f"w{j}" for j in range(n)]], "bias": ["b"]}, {"op": "relu"}],
        "loss": {"op": "sum"},
    }
    box = {f"w{j}": (float(w[j]) - 2**-6, float(w[j]) + 2**-6) for j in range(n)}
    # box bounds must be float32 values
    box = {k: (float(np.float32(lo)), float(np.float32(hi))) for k, (lo, hi) in box.items()}
    return doc, box


def plain_z3(doc, box, cap):
    import z3

    from kinkcheck.search import search as _  # noqa: F401  (warm imports)
    import kinkcheck
    from kinkcheck.encodings import program as P
    from kinkcheck.encodings.smt import Z3FPArith, Z3RealArith

    net = kinkcheck.load(doc)
    Z, R = Z3FPArith(net.fmt), Z3RealArith(net.fmt)
    theta = np.array([Z.fpval(v) for v in net.theta.tolist()], dtype=object)
    rtheta = np.array([R.real(float(v)) for v in net.theta.tolist()], dtype=object)
    s = z3.Solver()
    s.set("timeout", int(cap * 1000))
    for name, (lo, hi) in box.items():
        p = net.param(name)
        v = z3.FP(name, Z.sort)
        theta[p.offset] = v
        rtheta[p.offset] = z3.fpToReal(v)
        s.add(z3.fpLEQ(Z.fpval(lo), v), z3.fpLEQ(v, Z.fpval(hi)))
    fz = P.forward(net, Z, theta=theta)
    fr = P.forward(net, R, theta=rtheta)
    s.add(z3.Xor(fz.loc[1][1].reshape(-1)[0], fr.loc[1][1].reshape(-1)[0]))
    t = time.perf_counter()
    r = s.check()
    return str(r), time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--cap", type=float, default=30.0, help="seconds for plain Z3")
    ap.add_argument("--sizes", default="4,8,16,32,64")
    args = ap.parse_args(argv)
    from kinkcheck.search import search

    print(f"{'n':>3} {'plain Z3':>22} {'kinkcheck search':>30}")
    for n in [int(v) for v in args.sizes.split(",")]:
        doc, box = make(n)
        zr, zt = plain_z3(doc, box, args.cap)
        t = time.perf_counter()
        res = search(doc, "compensation", box=box, timeout=args.cap)
        kt = time.perf_counter() - t
        ztxt = f"{zr} {zt:.2f}s" if zr != "unknown" else f"unknown (>{args.cap:.0f}s cap)"
        print(f"{n:>3} {ztxt:>22} {res.status + (' confirmed' if res.confirmed else '') + f' {kt:.2f}s':>30}  [{res.solver}]")


if __name__ == "__main__":
    main()
