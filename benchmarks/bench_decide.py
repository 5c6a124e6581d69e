"""Benchmark: point decisions (differentiable / AD correct / Clarke) at 1, 5, 10, 20 engineered ties.

    python benchmarks/bench_decide.py

Two families: (a) ties in one hidden layer of a 6-24-1 ReLU MLP (biases set to minus the exact
pre-activation of the first sample), decided by the hinge decomposition; (b) the same ties forced
through the general cell enumeration (up to 10 ties: it is exponential in the number of ties that
share no hyperplane). Each row also times the independent checker on the certificate. Baseline in
the same run: one exact forward+backward pass of the network (the report's AD output).
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


def main():
    import kinkcheck
    from kinkcheck import differentiability as D

    print(f"{'ties':>5} {'method':>7} {'decide s':>9} {'check s':>8} {'base s':>7} {'ratio':>7}  verdicts")
    for force_cells in (False, True):
        for m in (1, 5, 10, 20):
            if force_cells and m > 10:
                continue
            D.HINGE_FROM = 10**9 if force_cells else 3
            net = kinkcheck.load(make(m))
            t = time.perf_counter()
            r0 = kinkcheck.verify(net, values=True)
            r0._runs.exact_ad()
            # baseline: the exact AD output alone (forward + backward), measured in the same run
            from kinkcheck.runs import exact_forward
            from kinkcheck.encodings import program as P

            tb = time.perf_counter()
            fw = exact_forward(net)
            P.backward(net, fw.A, fw, r0._runs.proxies)
            base = time.perf_counter() - tb
            total = r0.decision["time_s"]
            t = time.perf_counter()
            ok = kinkcheck.check_certificate(json.loads(json.dumps(r0.certificate())))["valid"]
            check = time.perf_counter() - t
            print(
                f"{len(r0.real_ties):>5} {r0.decision['method']:>7} {total:>9.3f} {check:>8.3f} {base:>7.3f} {total / base:>7.1f}  "
                f"diff={r0.differentiable} ad_correct={r0.ad_correct} clarke={r0.ad_in_clarke} cert={'valid' if ok else 'INVALID'}"
            )
    D.HINGE_FROM = 3


if __name__ == "__main__":
    main()
