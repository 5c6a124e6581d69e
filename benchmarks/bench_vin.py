"""Benchmark: value-iteration blocks (docs/implicit.md).

    python benchmarks/bench_vin.py

(a) ``verify`` of a value-iteration block on a 10x10 grid with 4 actions (3x3 kernels, gamma 1/2,
float32) on a batch of 8, no tie: the machine iteration, the exact fixed point by policy solve, the
implicit backward in both semantics and the unrolled second answer. Baseline in the same run: numpy
float64 value iteration to convergence plus one implicit backward (np.linalg.solve) per sample.
(b) the vertex test of the Clarke Jacobian with 4, 8 and 12 tied states (two actions each) on a 5x5
grid (2^k exact determinants). Baseline: one exact determinant.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_verify import interleaved  # noqa: E402


def block(H=10, W=10, A=4, N=8, seed=0):
    rng = np.random.default_rng(seed)
    T = rng.integers(0, 3, (A, 3, 3)) / 16.0  # sum_pq |T_a| <= 9/8: gamma * 9/8 < 1
    R = rng.integers(-8, 9, (N, A, H, W)) / 8.0 + rng.integers(0, 1024, (N, A, H, W)) / 2.0**14  # generic: no tie
    doc = {
        "kinkcheck": 1,
        "dtype": "float32",
        "params": {"T": {"shape": [A, 3, 3], "values": T.tolist()}},
        "inputs": {"shape": [N, A, H, W], "values": R.tolist()},
        "layers": [{"op": "value_iteration", "kernel": "T", "gamma": 0.5, "solver": {"method": "iterate", "max_iter": 400, "tol": 0}}],
        "loss": {"op": "sum"},
    }
    return doc, T, R


def numpy_baseline(T, R, gamma=0.5):
    N, A, H, W = R.shape
    S = H * W
    C = np.zeros((A, S, S))
    for a in range(A):
        for s in range(S):
            i, j = divmod(s, W)
            for p in range(3):
                for q in range(3):
                    if 0 <= i + p - 1 < H and 0 <= j + q - 1 < W:
                        C[a, s, (i + p - 1) * W + j + q - 1] += T[a, p, q]
    Rf = R.reshape(N, A, S)
    V = np.zeros((N, S))
    for _ in range(400):
        Q = Rf + gamma * np.einsum("ast,nt->nas", C, V)
        new = Q.max(axis=1)
        if np.array_equal(new, V):
            break
        V = new
    pi = Q.argmax(axis=1)
    for n in range(N):
        P = C[pi[n], np.arange(S)]
        np.linalg.solve((np.eye(S) - gamma * P).T, np.ones(S))
    return V


def main():
    import kinkcheck
    from kinkcheck.encodings import valueiteration as VI
    from kinkcheck.encodings.fixedpoint import _det
    from kinkcheck.encodings.network import load

    doc, T, R = block()
    r = kinkcheck.verify(doc, values=True)  # warms the imports; its report is printed below
    (tk, _), (tb, _) = interleaved([lambda: kinkcheck.verify(doc, values=True), lambda: numpy_baseline(T, R)], 3, warmup=0)
    e = r.implicit[0]
    print(
        f"(a) verify, 10x10 grid, 4 actions, batch 8: {tk:.3f} s (numpy float64 baseline {tb * 1e3:.2f} ms, ratio {tk / tb:.0f}x); "
        f"machine {e['machine']['iterations']} iterations, exact policy rounds {e['exact']['pattern_rounds']}, real ties {len(r.real_ties)}, verdict {r.differentiable}/{r.ad_correct}/{r.ad_in_clarke}"
    )
    # (b): two identical actions tie at every state; the vertex test over k of them
    from fractions import Fraction

    net = load({
        "kinkcheck": 1, "dtype": "float32",
        "params": {"T": {"shape": [2, 3, 3], "values": [[[0, 0.25, 0], [0.125, 0.25, 0], [0, 0, 0.25]], [[0, 0, 0.25], [0, 0.25, 0.125], [0.25, 0, 0]]]}},
        "inputs": {"shape": [1, 2, 5, 5], "values": np.zeros((1, 2, 5, 5)).tolist()},
        "layers": [{"op": "value_iteration", "kernel": "T", "gamma": 0.5}], "loss": {"op": "sum"},
    })
    L = net.layers[0]
    Tq = np.array([[[Fraction(v) for v in row] for row in Ta] for Ta in net.theta.reshape(2, 3, 3).tolist()], dtype=object)
    M = [[Fraction(int(i == j)) for j in range(25)] for i in range(25)]
    _det(M)
    t = time.perf_counter()
    _det(M)
    one = time.perf_counter() - t
    for k in (4, 8, 12):
        t = time.perf_counter()
        res = VI.vertex_test(L, Tq, Fraction(1, 2), [0] * 25, {s: [0, 1] for s in range(k)})
        dt = time.perf_counter() - t
        print(f"(b) vertex test, k = {k} tied states (2^{k} = {res['vertices']} determinants of 25x25): {dt:.3f} s, {dt / one:.0f}x one determinant; invertible {res['invertible']}")


if __name__ == "__main__":
    main()
