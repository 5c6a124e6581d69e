"""Benchmark: kinkcheck search against plain Z3 on the same encoding, in the same run.

    python benchmarks/bench_search.py [--cap 30] [--sizes 4,8,16,32,64] [--hidden 2,4,8] [--table 1|2|3|both|all] [--baseline-cap 10]

Table 1 (the issue's benchmark): compensation search for one float32 neuron relu(w . x + b) with
fan-in n, random float32 x, w and b = 0.01 - (float32 dot of the file weights); every weight w_j is
free in [w_j - 2^-6, w_j + 2^-6]. Plain Z3 gets the FloatingPoint + Real encoding of that neuron
(capped); kinkcheck search answers by monotone corner bounds + bisection on the float grid.

Table 2 (structure for ad-mismatch and deeper networks): a 2-layer MLP relu(W1 x + b1) -> W2 with
3 inputs and h hidden units, every first-layer weight free within 2^-8 of its value. Plain Z3 is
``search(..., prune=False, structured=False)`` (the whole query); kinkcheck search is the default
(interval enclosures prune the units that cannot tie and fix their branches, the query is sliced
and simplified; cheap point checks and exhaustive enumeration of small boxes before the solver).
Every sat answer is confirmed by point verification; ratios are plain / kinkcheck in this run.

Table 3 (rounding-aware lemmas, ``verify/search/lemmas.py``): imported-style networks (shaped
params ``l0.weight``, ``l0.bias``) and the two targets of issue 12 - compensation for
z = w*1 + b in float32 over w, b in [-1, 1] (exact unsat by sign preservation), and real-tie for a
first-layer unit of fan-in 64 with ``l0.bias`` free (exact by solving b = -(w.x)); also one unit
over a batch of 4. Plain Z3 is ``search(..., prune=False, structured=False)`` with the short
``--baseline-cap``.
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

    import kinkcheck
    from kinkcheck.encodings import program as P
    from kinkcheck.encodings.smt import Z3FPArith, Z3RealArith
    from kinkcheck.search.solver import search as _  # noqa: F401  (warm imports)

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


def mlp(n_in, hidden, seed=0, dtype="float32", margin=0.5, w2_trainable=True, near_tie=False):
    """relu(W1 x + b1) -> W2 (sum loss). Biases keep every unit at least ``margin`` from its kink at
    the file point (``near_tie``: unit 0 only 2^-9 above it). Box: W1 entries within 2^-8."""
    rng = np.random.default_rng(seed)
    f = np.float32 if dtype == "float32" else np.float16
    x = rng.standard_normal(n_in).astype(f)
    W1 = rng.standard_normal((hidden, n_in)).astype(f)
    z = [sum(float(W1[i, j]) * float(x[j]) for j in range(n_in)) for i in range(hidden)]
    b1 = [float(f(-z[i] + (margin if z[i] >= 0 else -margin) + (0.25 if i % 2 else 0))) for i in range(hidden)]
    if near_tie:
        b1[0] = float(f(-z[0] + 2**-9))
    W2 = rng.standard_normal((1, hidden)).astype(f)
    params = {f"w{i}_{j}": {"value": float(W1[i, j])} for i in range(hidden) for j in range(n_in)}
    params.update({f"b{i}": {"value": b1[i]} for i in range(hidden)})
    params["W2"] = {"shape": [1, hidden], "values": W2.astype(float).tolist(), "trainable": w2_trainable}
    doc = {
        "kinkcheck": 1,
        "dtype": dtype,
        "params": params,
        "inputs": {"shape": [1, n_in], "values": [[float(v) for v in x]]},
        "layers": [
            {"op": "linear", "weight": [[f"w{i}_{j}" for j in range(n_in)] for i in range(hidden)], "bias": [f"b{i}" for i in range(hidden)]},
            {"op": "relu"},
            {"op": "linear", "weight": "W2"},
        ],
        "loss": {"op": "sum"},
    }
    box = {f"w{i}_{j}": (float(f(float(W1[i, j]) - 2**-8)), float(f(float(W1[i, j]) + 2**-8))) for i in range(hidden) for j in range(n_in)}
    return doc, box


def cell(status, t, cap, capped_at=None):
    if status == "unknown" and capped_at is not None and t >= capped_at * 0.95:
        return f"unknown (>{cap:.0f}s cap)"
    return f"{status} {t:.3f}s" if t < 0.1 else f"{status} {t:.2f}s"


def ratio(t_plain, status_plain, t_kc, cap):
    r = t_plain / max(t_kc, 1e-3)
    return f"{'>' if status_plain == 'unknown' and t_plain >= 0.95 * cap else ''}{r:.0f}x"


def table1(sizes, cap):
    from kinkcheck.search.solver import search

    print("Table 1: compensation, one float32 neuron, fan-in n (plain Z3 capped)")
    print(f"{'n':>3} {'plain Z3':>22} {'kinkcheck search':>26}  {'ratio':>7}  answered by")
    for n in sizes:
        doc, box = make(n)
        zr, zt = plain_z3(doc, box, cap)
        t = time.perf_counter()
        res = search(doc, "compensation", box=box, timeout=cap)
        kt = time.perf_counter() - t
        kc = res.status + (" confirmed" if res.confirmed else "") + (f" {kt:.3f}s" if kt < 0.1 else f" {kt:.2f}s")
        print(f"{n:>3} {cell(zr, zt, cap, cap):>22} {kc:>26}  {ratio(zt, zr, kt, cap):>7}  {res.solver}")


def table2(hidden_sizes, cap):
    from kinkcheck.search.solver import search

    print("\nTable 2: 2-layer MLP, 3 inputs, h hidden relu units, 3h first-layer weights free (plain Z3 = whole query, capped)")
    print(f"{'case':<44} {'h':>2} {'plain Z3':>22} {'kinkcheck search':>26}  {'ratio':>7}  answered by")
    cases = [
        ("ad-mismatch K=0, float32 (sat)", {}, "ad-mismatch", 0),
        ("ad-mismatch K=1, float32, W2 frozen (unsat)", {"w2_trainable": False}, "ad-mismatch", 1),
        ("choice-sensitive, float32 (unsat)", {}, "choice-sensitive", 0),
        ("float-tie, float32 (unsat)", {}, "float-tie", 0),
        ("ad-mismatch K=1, float16, unit 0 near a tie", {"dtype": "float16", "w2_trainable": False, "near_tie": True}, "ad-mismatch", 1),
    ]
    for label, kw, goal, k in cases:
        for h in hidden_sizes:
            doc, box = mlp(3, h, **kw)
            t = time.perf_counter()
            plain = search(doc, goal, box=box, k_ulps=k, prune=False, structured=False, timeout=cap)
            pt = time.perf_counter() - t
            t = time.perf_counter()
            res = search(doc, goal, box=box, k_ulps=k, timeout=cap)
            kt = time.perf_counter() - t
            if "unknown" not in (plain.status, res.status):
                assert plain.status == res.status, (label, h, plain.status, res.status)
            kc = res.status + (" confirmed" if res.confirmed else "") + (f" {kt:.3f}s" if kt < 0.1 else f" {kt:.2f}s")
            pc = cell(plain.status, pt, cap, cap) if plain.status == "unknown" else plain.status + (" confirmed" if plain.confirmed else "") + f" {pt:.2f}s"
            print(f"{label:<44} {h:>2} {pc:>22} {kc:>26}  {ratio(pt, plain.status, kt, cap):>7}  {res.solver}", flush=True)


def shaped(W, b, x, dtype="float32"):
    W, x = np.asarray(W, dtype=float), np.asarray(x, dtype=float)
    return {
        "kinkcheck": 1,
        "dtype": dtype,
        "params": {
            "l0.weight": {"shape": list(W.shape), "values": W.tolist()},
            "l0.bias": {"shape": [W.shape[0]], "values": [float(v) for v in b]},
            "l1.weight": {"shape": [1, W.shape[0]], "values": [[1.0] * W.shape[0]]},
        },
        "inputs": {"shape": list(x.shape), "values": x.tolist()},
        "layers": [{"op": "linear", "weight": "l0.weight", "bias": "l0.bias"}, {"op": "relu"}, {"op": "linear", "weight": "l1.weight"}],
        "loss": {"op": "sum"},
    }


def table3(cap):
    from kinkcheck.search.solver import search

    rng = np.random.default_rng(1)
    f32 = lambda a: np.asarray(a, dtype=np.float32).astype(float)  # noqa: E731
    Wr, xr = f32(rng.standard_normal((1, 64))), f32(rng.standard_normal((1, 64)))
    Wi, xi = rng.integers(-3, 4, size=(1, 64)).astype(float), rng.integers(-3, 4, size=(1, 64)).astype(float)
    xb = f32(rng.standard_normal((4, 64)))
    cases = [
        ("compensation, z = w*1 + b, w, b in [-1, 1] (unsat)", shaped([[0.5]], [0.25], [[1.0]]), {"l0.weight": ("-1", "1"), "l0.bias": ("-1", "1")}, "compensation"),
        ("real-tie, fan-in 64, l0.bias free (unsat)", shaped(Wr, [0.0], xr), {"l0.bias": ("-1000", "1000")}, "real-tie"),
        ("real-tie, fan-in 64, l0.bias free (sat)", shaped(Wi, [0.0], xi), {"l0.bias": ("-1000", "1000")}, "real-tie"),
        ("real-tie, fan-in 64, batch 4, l0.bias free", shaped(Wr, [0.0], xb), {"l0.bias": ("-8", "8")}, "real-tie"),
        ("float-tie, fan-in 64, batch 4, l0.bias free", shaped(Wr, [0.0], xb), {"l0.bias": ("-8", "8")}, "float-tie"),
        ("compensation, fan-in 64, batch 4, l0.bias free", shaped(Wr, [0.0], xb), {"l0.bias": ("-8", "8")}, "compensation"),
    ]
    print(f"\nTable 3: rounding-aware lemmas (plain Z3 = whole query, capped at {cap:.0f} s)")
    print(f"{'case':<52} {'plain Z3':>22} {'kinkcheck search':>26}  {'ratio':>7}  answered by")
    for label, doc, box, goal in cases:
        t = time.perf_counter()
        plain = search(doc, goal, box=box, prune=False, structured=False, timeout=cap)
        pt = time.perf_counter() - t
        t = time.perf_counter()
        res = search(doc, goal, box=box, timeout=60)
        kt = time.perf_counter() - t
        if "unknown" not in (plain.status, res.status):
            assert plain.status == res.status, (label, plain.status, res.status)
        kc = res.status + (" confirmed" if res.confirmed else "") + (f" {kt:.3f}s" if kt < 0.1 else f" {kt:.2f}s")
        pc = cell(plain.status, pt, cap, cap) if plain.status == "unknown" else plain.status + f" {pt:.2f}s"
        print(f"{label:<52} {pc:>22} {kc:>26}  {ratio(pt, plain.status, kt, cap):>7}  {res.solver}", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--cap", type=float, default=30.0, help="seconds for plain Z3")
    ap.add_argument("--sizes", default="4,8,16,32,64")
    ap.add_argument("--hidden", default="2,4,8")
    ap.add_argument("--table", choices=["1", "2", "3", "both", "all"], default="all", help="both: tables 1 and 2")
    ap.add_argument("--baseline-cap", type=float, default=10.0, help="seconds for plain Z3 in table 3")
    args = ap.parse_args(argv)
    if args.table in ("1", "both", "all"):
        table1([int(v) for v in args.sizes.split(",")], args.cap)
    if args.table in ("2", "both", "all"):
        table2([int(v) for v in args.hidden.split(",")], args.cap)
    if args.table in ("3", "all"):
        table3(args.baseline_cap)


if __name__ == "__main__":
    main()
