"""How often Clarke membership stays undecided without / with the polynomial-region step
(docs/clarke.md), on seeded random MLP families with engineered ties.

    python benchmarks/bench_clarke.py [--n 100] [--seed 0]

Families: 1, 2 and 3 hidden layers of width 2-3 over shared trainable scalars a, b, c at 0 (so
pre-activations that sum to zero in their constant parts are real ties, and trainable weights in
later layers make the tie inputs non-affine), mirrored pairs (a row and its negation) in half of
the hidden layers, activations relu / leaky_relu / abs with either one-sided derivative at the kink.
Each network is decided twice in the same run: with the step switched off (the first-order cells
alone) and on. Prints, per family, the ad_in_clarke nulls before and after, the verdicts the step
added, and the median / max decide time of each.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import kinkcheck  # noqa: E402
from kinkcheck.decide import differentiability as D  # noqa: E402

NAMES = ["a", "b", "c"]


def entry(rng, params):
    r = rng.random()
    if r < 0.45:
        p = rng.choice(params)
        return p if rng.random() < 0.5 else f"-{p}"
    return rng.choice([0, 1, -1, 1, -1, 2])


def neg(e):
    return e[1:] if isinstance(e, str) and e.startswith("-") else f"-{e}" if isinstance(e, str) else -e


def network(rng, depth):
    params = NAMES[: rng.randint(2, 3)]
    width_in = 1
    layers = []
    for _ in range(depth):
        width = rng.randint(2, 3)
        rows = [[entry(rng, params) for _ in range(width_in)] for _ in range(width)]
        if rng.random() < 0.5:
            rows[-1] = [neg(e) for e in rows[0]]  # a mirrored pair
        layers.append({"op": "linear", "weight": rows})
        act = rng.choice(["relu", "leaky_relu", "abs"])
        L = {"op": act, "kink_derivatives": [rng.choice(["left", "right"])]}
        if act == "leaky_relu":
            L["negative_slope"] = 0.25
        layers.append(L)
        width_in = width
    layers.append({"op": "linear", "weight": [[entry(rng, params) if rng.random() < 0.3 else rng.choice([1, -1, 2, -2]) for _ in range(width_in)]]})
    return {
        "kinkcheck": 1,
        "dtype": "float32",
        "params": {p: {"value": 0} for p in params},
        "inputs": {"shape": [1, 1], "values": [[1]]},
        "layers": layers,
        "loss": {"op": "sum"},
    }


def run(doc, enabled):
    saved = D._decide_clarke
    if not enabled:
        D._decide_clarke = lambda *a, **k: None
    try:
        t0 = time.perf_counter()
        r = kinkcheck.verify(doc)
        return r, time.perf_counter() - t0
    finally:
        D._decide_clarke = saved


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    total = {"nets": 0, "with_ties": 0, "null_before": 0, "null_after": 0}
    for depth in (1, 2, 3):
        rng = random.Random(args.seed * 1000 + depth)
        nb = na = ties = 0
        added = {True: 0, False: 0}
        tb, ta = [], []
        left = []
        for _ in range(args.n):
            doc = network(rng, depth)
            rb, sb = run(doc, False)
            ra, sa = run(doc, True)
            if rb.real_ties:
                ties += 1
                tb.append(sb)
                ta.append(sa)
            nb += rb.ad_in_clarke is None and bool(rb.real_ties)
            na += ra.ad_in_clarke is None and bool(ra.real_ties)
            if rb.ad_in_clarke is None and ra.ad_in_clarke is not None:
                added[ra.ad_in_clarke] += 1
            if rb.ad_in_clarke is not None and ra.ad_in_clarke != rb.ad_in_clarke:
                raise SystemExit(f"the step changed a decided verdict: {doc}")
            if ra.ad_in_clarke is None and ra.real_ties:
                left.append(ra.reason[-160:])
        print(
            f"{depth} hidden layer(s): {args.n} nets, {ties} with real ties; ad_in_clarke null {nb} -> {na} "
            f"(+{added[True]} yes, +{added[False]} no); decide time median {statistics.median(tb or [0]):.3f} s -> {statistics.median(ta or [0]):.3f} s, "
            f"max {max(tb or [0]):.2f} s -> {max(ta or [0]):.2f} s"
        )
        for why in left[:3]:
            print(f"   still null: ...{why}")
        total["nets"] += args.n
        total["with_ties"] += ties
        total["null_before"] += nb
        total["null_after"] += na
    print(f"total: {total}")


if __name__ == "__main__":
    main()
