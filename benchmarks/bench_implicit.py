"""Benchmark: fixed-point (DEQ) layers (docs/implicit.md).

    python benchmarks/bench_implicit.py

(a) ``verify`` of a 64-unit DEQ (z = relu(W z + U x + b), ||W||_inf < 1, 16 inputs, float32) on a
batch of 8, no tie: the machine solver, the exact fixed point by pattern solve, the implicit
backward in both semantics. Baseline in the same run: numpy float64 fixed-point iteration to
convergence plus one implicit backward (np.linalg.solve) on the same batch.
(a') the same with Anderson acceleration (m = 5) in the machine solver.
(b) the vertex test of the Clarke Jacobian at k = 4, 8, 12 tied units of a 16-unit cell (2^k exact
determinants). Baseline: one exact determinant.
"""

from __future__ import annotations

import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_verify import interleaved  # noqa: E402


def deq(n=64, m=16, N=8, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.integers(-4, 5, (n, n)) / (8.0 * n)  # row sums <= 1/2: a contraction
    U = rng.integers(-4, 5, (n, m)) / 8.0
    b = rng.integers(-4, 5, n) / 8.0
    X = rng.integers(-4, 5, (N, m)) / 4.0
    doc = {
        "kinkcheck": 1,
        "dtype": "float32",
        "params": {"W": {"shape": [n, n], "values": W.tolist()}, "U": {"shape": [n, m], "values": U.tolist()}, "b": {"shape": [n], "values": b.tolist()}},
        "inputs": {"shape": [N, m], "values": X.tolist()},
        "layers": [{"op": "fixed_point", "cell": {"weight": "W", "input_weight": "U", "bias": "b", "activation": {"op": "relu"}}, "solver": {"method": "iterate", "max_iter": 200, "tol": 0}}],
        "loss": {"op": "sum"},
    }
    return doc, W, U, b, X


def numpy_baseline(W, U, b, X):
    z = np.zeros((X.shape[0], W.shape[0]))
    for _ in range(200):
        new = np.maximum(z @ W.T + X @ U.T + b, 0)
        if np.array_equal(new, z):
            break
        z = new
    a = z @ W.T + X @ U.T + b
    for s in range(X.shape[0]):
        D = np.diag((a[s] > 0).astype(float))
        lam = np.linalg.solve((np.eye(W.shape[0]) - D @ W).T, np.ones(W.shape[0]))
        _ = np.outer(D @ lam, z[s])
    return z


def main():
    import kinkcheck
    from kinkcheck.encodings.fixedpoint import _det, vertex_test

    doc, W, U, b, X = deq()
    r = kinkcheck.verify(doc, values=True)  # warms the imports; its report is printed below
    (tk, _), (tb, _) = interleaved([lambda: kinkcheck.verify(doc, values=True), lambda: numpy_baseline(W, U, b, X)], 3, warmup=0)
    imp = r.implicit[0]
    print(f"(a) verify, 64-unit DEQ, batch 8: {tk:.3f} s (numpy float64 baseline {tb * 1e3:.2f} ms, ratio {tk / tb:.0f}x); "
          f"machine solver {imp['machine']['iterations']} iterations, exact pattern rounds {imp['exact']['pattern_rounds']}, verdict {r.differentiable}/{r.ad_correct}/{r.ad_in_clarke}")
    import copy

    ad = copy.deepcopy(doc)
    ad["layers"][0]["solver"] = {"method": "anderson", "m": 5, "max_iter": 200, "tol": 0}
    ra = kinkcheck.verify(ad, values=True)
    ((ta, _),) = interleaved([lambda: kinkcheck.verify(ad, values=True)], 3, warmup=0)
    ia = ra.implicit[0]
    print(f"(a') the same with Anderson (m = 5): {ta:.3f} s (ratio to iterate {ta / tk:.2f}); machine solver {ia['machine']['iterations']} iterations, "
          f"converged {ia['machine']['converged']}, pattern agrees {ia['pattern_agrees']}, verdict {ra.differentiable}/{ra.ad_correct}/{ra.ad_in_clarke}")
    rng = np.random.default_rng(1)
    n = 16
    Wq = [[Fraction(int(v), 32) for v in row] for row in rng.integers(-4, 5, (n, n))]
    M = [[(1 if i == j else 0) - Wq[i][j] for j in range(n)] for i in range(n)]
    _det(M)  # warm
    t = time.perf_counter()
    _det(M)
    one = time.perf_counter() - t
    for k in (4, 8, 12):
        boxes = {u: (Fraction(0), Fraction(1)) for u in range(k)}
        t = time.perf_counter()
        res = vertex_test(Wq, [Fraction(1)] * n, boxes)
        dt = time.perf_counter() - t
        print(f"(b) vertex test, 16 units, k = {k}: {res['vertices']} determinants in {dt:.3f} s (one determinant {one * 1e3:.2f} ms; ratio {dt / one:.0f}x), invertible: {res['invertible']}")


if __name__ == "__main__":
    main()
