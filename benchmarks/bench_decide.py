"""Benchmark: point decisions (differentiable / AD correct / Clarke) and the independent check of
their certificates, at 1 to 100 engineered real ties in every family (the widths grow with the tie
count), with the check/decide ratio per row (target: check <= 2 x decide).

    python benchmarks/bench_decide.py [--ties 1,5,10,20,40,64,100] [--family NAME ...] [--json rows.json]

Four families: (a) ties in one hidden layer of a 6-H-1 ReLU MLP (biases set to minus the exact
pre-activation of the first sample), decided by the hinge decomposition; (b) the same ties with the
hinge path switched off (sampled cells, else the complete enumeration); (c) ties in both hidden
layers of a 6-H-H-1 MLP; (d) compensating pairs in two layers, differentiable with AD not in
Clarke, which needs the complete enumeration below 24 ties and the directional derivative
(verify/decide/directional.py) from 24 ties on. Each row times the decision (``decision.time_s``,
inside verify's default 60 s budget), the whole verify call, and the independent checker on the
certificate. Baseline in the same run: one exact forward+backward pass of the network (the
report's AD output). The tie counts include a few ties the random data make by itself.

Measured on the 2-core machine (shared, loaded), check/decide before -> after the one-pass checker
(issue 11): one-layer hinge 87-338x -> 0.4-0.8x (66 ties: check 133 s -> 0.6 s); one layer
without the hinge path 5.8-17x -> 0.1-0.9x; two layers 7.9-71x -> 0.09-1.2x; compensating pairs
up to 2.6x -> 0.2-0.9x. Worst after: 1.2x (two layers, 4 ties). Two layers at 102 ties spent
113-131 s in the directional step before its loops honoured the 60 s budget; now 25 s."""

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


FAMILIES = ("one-layer", "one-layer, no hinge", "two layers", "two-layer pairs")
TIES = (1, 5, 10, 20, 40, 64, 100)


def network(family, m):
    """The family's network with (about) m real ties: the widths grow with m so that every family
    reaches 100 ties."""
    if family == "two layers":
        return make_deep(m, H=max(16, m // 2 + 4))
    if family == "two-layer pairs":
        return make_pairs(m)
    return make(m, H=max(24, m + 4))


def row(family, m):
    import kinkcheck
    import kinkcheck.certify.checker  # noqa: F401  (imported before the timed check)
    from kinkcheck.decide import differentiability as D
    from kinkcheck.encodings import program as P
    from kinkcheck.encodings.runs import exact_forward

    D.HINGE_FROM = 10**9 if family != "one-layer" else 3
    try:
        net = kinkcheck.load(network(family, m))
        r0 = kinkcheck.verify(net, values=True)
        # baseline: the exact AD output alone (forward + backward), measured in the same run
        tb = time.perf_counter()
        fw = exact_forward(net)
        P.backward(net, fw.A, fw, r0._runs.proxies)
        base = time.perf_counter() - tb
        decide = r0.decision["time_s"]
        cert = json.loads(json.dumps(r0.certificate()))
        t = time.perf_counter()
        ok = kinkcheck.check_certificate(cert)["valid"]
        check = time.perf_counter() - t
    finally:
        D.HINGE_FROM = 3
    return {
        "family": family, "ties": len(r0.real_ties), "method": r0.decision["method"], "verify_s": r0.time_s, "decide_s": decide,
        "check_s": check, "base_s": base, "ratio": check / max(decide, 1e-9),
        "verdicts": f"diff={r0.differentiable} ad_correct={r0.ad_correct} clarke={r0.ad_in_clarke} cert={'valid' if ok else 'INVALID'}",
    }


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ties", default=",".join(map(str, TIES)), help="comma-separated tie counts")
    ap.add_argument("--family", action="append", choices=FAMILIES, help="only this family (repeatable)")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    a = ap.parse_args(argv)
    rows = []
    print(f"{'family':>20} {'ties':>5} {'method':>13} {'verify s':>9} {'decide s':>9} {'check s':>8} {'base s':>7} {'check/decide':>12}  verdicts", flush=True)
    for family in a.family or FAMILIES:
        for m in (int(v) for v in a.ties.split(",")):
            r = row(family, m)
            rows.append(r)
            print(
                f"{r['family']:>20} {r['ties']:>5} {r['method']:>13} {r['verify_s']:>9.3f} {r['decide_s']:>9.3f} {r['check_s']:>8.3f} {r['base_s']:>7.3f} "
                f"{r['ratio']:>12.2f}  {r['verdicts']}",
                flush=True,
            )
    worst = max(rows, key=lambda r: r["ratio"])
    print(f"worst check/decide: {worst['ratio']:.2f} ({worst['family']}, {worst['ties']} ties); target <= 2")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
