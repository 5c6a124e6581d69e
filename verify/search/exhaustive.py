"""Exhaustive theorem checks: every parameter combination of tiny networks in 8-bit formats.

``check(family, dtype, workers=2)`` runs :func:`kinkcheck.count` over ALL values of the family's 2 or 3
free scalars (the grid of the format, zero once) and checks the claim attached to the family:

- ``private_bias`` / ``private_bias_3`` (Lee-Park-Aiken; Park-Chun-Lee Theorem 1: distinct biases,
  batch 1): the incorrect set is empty, AD is a Clarke subderivative everywhere, and the nd count is
  at most the bound of docs/count.md;
- ``no_bias`` (f(w, v) = v*(relu(w) - relu(-w)) = v*w), ``shared_bias`` (f(w, v) =
  v*(hardsigmoid(3 + w) + hardsigmoid(-3 + w)): one bias shared by a minibatch of 2), ``maxpool``
  (f(u, b) = max(u+b, b) - max(-u+b, b) = u): Park-Chun-Lee's counterexamples with a second free
  scalar; their incorrect set must be non-empty (the theorems' conditions are needed).

Choice sensitivity is not a claim of these theorems: the counts use ``choice=False`` (only the
real-tie points get the full decision; ``choice_sensitive`` is None: not computed).
The outer scalar's grid is split among ``workers`` processes (concurrent.futures); a Dask client can
be passed as ``executor`` (anything with ``submit`` returning futures with ``result()``) - its
workers must be processes, not threads: Z3, used by the decisions at tie points, is not
thread-safe (a thread pool crashes it).
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from ..encodings.network import load
from .count import KEYS, Sweep, count, grid, lpa_bound, resolve

FORMATS = {"E4M3": {"exponent_bits": 4, "fraction_bits": 3}, "E5M2": {"exponent_bits": 5, "fraction_bits": 2}, "E3M4": {"exponent_bits": 3, "fraction_bits": 4}}


def _doc(dtype, params, inputs, layers):
    return {"kinkcheck": 1, "dtype": dtype, "params": {k: {"value": v} for k, v in params.items()}, "inputs": {"shape": [len(inputs), len(inputs[0])], "values": inputs}, "layers": layers, "loss": {"op": "sum"}}


def family(name: str, dtype) -> tuple[dict, list, str]:
    """(network document, free scalars (inner first), claim) of a named family."""
    if name == "private_bias":  # f(w, b) = 2*relu(0.75*w + b): one unit, its own bias
        doc = _doc(dtype, {"w": 1, "b": 0}, [[0.75]], [{"op": "linear", "weight": [["w"]], "bias": ["b"]}, {"op": "relu"}, {"op": "linear", "weight": [[2]]}])
        return doc, ["b", "w"], "correct"
    if name == "private_bias_3":  # relu(0.75*w + b1) - 1.5*relu(0.75*w + b2): two private biases
        doc = _doc(dtype, {"w": 1, "b1": 0, "b2": 0}, [[0.75]], [{"op": "linear", "weight": [["w"], ["w"]], "bias": ["b1", "b2"]}, {"op": "relu"}, {"op": "linear", "weight": [[1, -1.5]]}])
        return doc, ["b1", "b2", "w"], "correct"
    if name == "no_bias":  # v*(relu(w) - relu(-w)) = v*w: at w = 0 AD gives (0, 0), the gradient (v, 0)
        doc = _doc(dtype, {"w": 0, "v": 1}, [[1]], [{"op": "linear", "weight": [["w"], ["-w"]]}, {"op": "relu"}, {"op": "linear", "weight": [["v", "-v"]]}])
        return doc, ["w", "v"], "incorrect somewhere"
    if name == "shared_bias":  # v*(hardsigmoid(3 + w) + hardsigmoid(-3 + w)) = v*(1 + w/6) near w = 0
        doc = _doc(dtype, {"w": 0, "v": 1}, [[3], [-3]], [{"op": "linear", "weight": [[1]], "bias": ["w"]}, {"op": "hardsigmoid"}, {"op": "linear", "weight": [["v"]]}])
        return doc, ["w", "v"], "incorrect somewhere"
    if name == "maxpool":  # max(u + b, b) - max(-u + b, b) = u; first-index tie-break
        doc = _doc(dtype, {"u": 0, "b": 0}, [[1]], [{"op": "linear", "weight": [["u"], [0], ["-u"], [0]], "bias": ["b", "b", "b", "b"]}, {"op": "maxpool1d", "kernel": 2}, {"op": "linear", "weight": [[1, -1]]}])
        return doc, ["u", "b"], "incorrect somewhere"
    raise KeyError(name)


FAMILIES = ("private_bias", "private_bias_3", "no_bias", "shared_bias", "maxpool")


def _part(doc, free, lo, hi, fixed_values):
    """count over the first two free scalars, the second restricted to [lo, hi] (or, with three free
    scalars, for each value of the third in ``fixed_values``); summed counts."""
    tot = {k: 0 for k in KEYS}
    unk = {k: 0 for k in KEYS}
    n = decided = disagree = 0
    for fv in fixed_values:
        fixed = {free[2]: fv} if fv is not None else None
        r = count(doc, free[:2], range=[None, (lo, hi)], fixed=fixed, examples=0, choice=False)
        for k in KEYS:
            tot[k] += r.counts[k] or 0
            unk[k] += r.unknown[k]
        n += r.points
        decided += r.decided_points
        disagree += r.disagreements
    return tot, unk, n, decided, disagree


def check(name: str, fmt, workers: int = 2, executor=None) -> dict:
    """Run one family over every parameter combination in one format (a name of ``FORMATS`` or a
    dtype spec); a table row."""
    t0 = time.perf_counter()
    doc, free, claim = family(name, FORMATS.get(fmt, fmt) if isinstance(fmt, str) else fmt)
    net = load(doc)
    g = grid(net.fmt)
    sweeps = [Sweep(s, resolve(net, s)[0], g) for s in free]
    jobs = []
    if len(free) == 2:
        for part in np.array_split(g, max(1, workers * 4)):
            jobs.append((doc, free, float(part[0]), float(part[-1]), [None]))
    else:
        for part in np.array_split(g, max(1, workers * 4)):
            jobs.append((doc, free, None, None, [float(v) for v in part]))
    if executor is None and workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = [f.result() for f in [pool.submit(_part, *j) for j in jobs]]
    elif executor is not None:
        results = [f.result() for f in [executor.submit(_part, *j) for j in jobs]]
    else:
        results = [_part(*j) for j in jobs]
    tot = {k: sum(r[0][k] for r in results) for k in KEYS}
    tot["choice_sensitive"] = None  # not computed (choice=False)
    unk = {k: sum(r[1][k] for r in results) for k in KEYS}
    points = sum(r[2] for r in results)
    bound = lpa_bound(net, sweeps)
    if claim == "correct":
        holds = tot["ad_incorrect"] == 0 and tot["ad_not_in_clarke"] == 0 and bound.get("applies", False) and tot["not_differentiable"] <= bound["bound"]
    else:
        holds = tot["ad_incorrect"] > 0
    keys = ("not_differentiable", "ad_incorrect", "ad_not_in_clarke") if claim == "correct" else ()
    undecided = any(unk[k] for k in keys) or any(r[4] for r in results)
    return {
        "family": name,
        "format": fmt if isinstance(fmt, str) else f"E{fmt['exponent_bits']}M{fmt['fraction_bits']}",
        "free": free,
        "points": points,
        **tot,
        "bound": bound.get("bound"),
        "claim": claim,
        "claim_holds": None if undecided else bool(holds),
        "unknown": unk,
        "decided_points": sum(r[3] for r in results),
        "time_s": round(time.perf_counter() - t0, 2),
    }
