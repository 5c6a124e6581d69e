"""Benchmark: point decisions (differentiable / AD correct / Clarke) at 1, 5, 10, 20, 64, 100 engineered
ties (the one-layer and two-layer families cap at 25 and 33 ties: their widths).

    python benchmarks/bench_decide.py

Four families: (a) ties in one hidden layer of a 6-24-1 ReLU MLP (biases set to minus the exact
pre-activation of the first sample), decided by the hinge decomposition; (b) the same ties with the
hinge path switched off (sampled cells, else the complete enumeration); (c) ties in both hidden
layers of a 6-16-16-1 MLP; (d) compensating pairs in two layers, differentiable with AD not in
Clarke, which needs the complete enumeration below 24 ties and the directional derivative
(verify/decide/directional.py) from 24 ties on. Each row also times the independent checker on the
certificate. Baseline in the same run: one exact forward+backward pass of the network (the
report's AD output).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def make(m, H=24, I=6, N=2, seed=1):
    rng = np.random.default_rng(seed)
    W = rng.integers(-3, 4, (H, I)).astype(float)
    X = rng.integers(-2, 3, (N, I)).astype(float)
    b = rng.integers(-3, 4, H).astype(float)
    b[:m] = -(W[:m] @ X[0])
    V = rng.integers(-2, 3, (1, H)).astype(float)
    return {
        "kinkcheck": 1,
        "dtype": "float32",
        "params": {"W": {"shape": [H, I], "values": W.tolist()}, "b": {"shape": [H], "values": b.tolist()}, "V": {"shape": [1, H], "values": V.tolist()}},
        "inputs": {"shape": [N, I], "values": X.tolist()},
        "layers": [{"op": "linear", "weight": "W", "bias": "b"}, {"op": "relu"}, {"op": "linear", "weight": "V"}],
        "loss": {"op": "sum"},
    }


def make_deep(m, H=16, I=6, N=2, seed=3):
    """Two hidden ReLU layers; ties engineered in both (m // 2 in the second, the rest in the
    first): the second layer's biases are minus the exact pre-activation of sample 0."""
    from fractions import Fraction

    rng = np.random.default_rng(seed)
    m2 = m // 2
    m1 = m - m2
    W1 = rng.integers(-3, 4, (H, I)).astype(float)
    X = rng.integers(-2, 3, (N, I)).astype(float)
    b1 = rng.integers(-3, 4, H).astype(float)
    b1[:m1] = -(W1[:m1] @ X[0])
    h = np.maximum(W1 @ X[0] + b1, 0)
    W2 = rng.integers(-2, 3, (H, H)).astype(float)
    b2 = rng.integers(-3, 4, H).astype(float)
    b2[:m2] = -(W2[:m2] @ h)
    assert all(Fraction(v).denominator == 1 for v in b2)
    V = rng.integers(-2, 3, (1, H)).astype(float)
    return {
        "kinkcheck": 1,
        "dtype": "float32",
        "params": {
            "W1": {"shape": [H, I], "values": W1.tolist()},
            "b1": {"shape": [H], "values": b1.tolist()},
            "W2": {"shape": [H, H], "values": W2.tolist()},
            "b2": {"shape": [H], "values": b2.tolist()},
            "V": {"shape": [1, H], "values": V.tolist()},
        },
        "inputs": {"shape": [N, I], "values": X.tolist()},
        "layers": [
            {"op": "linear", "weight": "W1", "bias": "b1"},
            {"op": "relu"},
            {"op": "linear", "weight": "W2", "bias": "b2"},
            {"op": "relu"},
            {"op": "linear", "weight": "V"},
        ],
        "loss": {"op": "sum"},
    }


def make_pairs(m):
    """Compensating pairs in two layers: f(w) = sum_k ReLU(d_k) - ReLU(-d_k) with
    d_k = ReLU(w_k) - ReLU(-w_k), at w = 0 (4 ties per pair, two per layer). f(w) = sum_k w_k is
    differentiable, AD (ReLU'(0) = 0) gives 0: not the gradient and not a Clarke subderivative.
    Every verdict needs the complete enumeration (2^(number of pairs) cells)."""
    k = max(1, round(m / 4))
    W = [[f"w{j}"] for j in range(k)] + [[f"-w{j}"] for j in range(k)]
    D = [[1 if j == i else -1 if j == i + k else 0 for j in range(2 * k)] for i in range(k)]
    return {
        "kinkcheck": 1,
        "dtype": "float32",
        "params": {f"w{j}": {"value": 0} for j in range(k)},
        "inputs": {"shape": [1, 1], "values": [[1]]},
        "layers": [
            {"op": "linear", "weight": W},
            {"op": "relu"},
            {"op": "linear", "weight": D + [[-v for v in row] for row in D]},
            {"op": "relu"},
            {"op": "linear", "weight": [[1] * k + [-1] * k]},
        ],
        "loss": {"op": "sum"},
    }


def main():
    import kinkcheck
    from kinkcheck.decide import differentiability as D

    print(f"{'family':>20} {'ties':>5} {'method':>13} {'decide s':>9} {'check s':>8} {'base s':>7} {'ratio':>7}  verdicts")
    for family in ("one-layer", "one-layer, no hinge", "two layers", "two-layer pairs"):
        for m in (1, 5, 10, 20, 64, 100):
            D.HINGE_FROM = 10**9 if family != "one-layer" else 3
            net = kinkcheck.load(make_deep(m) if family == "two layers" else make_pairs(m) if family == "two-layer pairs" else make(m))
            t = time.perf_counter()
            r0 = kinkcheck.verify(net, values=True)
            r0._runs.exact_ad()
            # baseline: the exact AD output alone (forward + backward), measured in the same run
            from kinkcheck.encodings import program as P
            from kinkcheck.encodings.runs import exact_forward

            tb = time.perf_counter()
            fw = exact_forward(net)
            P.backward(net, fw.A, fw, r0._runs.proxies)
            base = time.perf_counter() - tb
            total = r0.decision["time_s"]
            t = time.perf_counter()
            ok = kinkcheck.check_certificate(json.loads(json.dumps(r0.certificate())))["valid"]
            check = time.perf_counter() - t
            print(
                f"{family:>20} {len(r0.real_ties):>5} {r0.decision['method']:>13} {total:>9.3f} {check:>8.3f} {base:>7.3f} {total / base:>7.1f}  "
                f"diff={r0.differentiable} ad_correct={r0.ad_correct} clarke={r0.ad_in_clarke} cert={'valid' if ok else 'INVALID'}"
            )
    D.HINGE_FROM = 3


if __name__ == "__main__":
    main()
