"""Sufficient conditions from the papers, checked exactly, used when the general procedure runs out
of budget and reported (``decision.theorems``) whenever they hold.

- **private-bias** (Lee-Park-Aiken Thm 3.6; Park-Chun-Lee Thm 1 is its batch-size-1 case): every
  real tie is an elementwise unit whose pre-activation comes straight from a linear/conv layer whose
  bias entry for that unit is a trainable scalar used nowhere else, no two ties share that scalar,
  and every proxy lies in its Clarke interval [min(l, r), max(l, r)]. Then AD is a Clarke
  subderivative. Proof sketch: ordering ties by layer, tie j's functional has coefficient 1 at its
  private bias and every earlier tie has 0 there, so for every pattern the functionals are
  independent and every pattern's cell is non-empty; the AD output is a multi-affine function of
  the derivative values used at the ties, so with proxies in the intervals it is a convex
  combination of the pattern gradients, which are limiting gradients.
- **per-layer lambda** (Park-Chun-Lee Thm 4): any batch size; every kinked unit has a bias scalar
  of its own (shared only across the samples of the batch); every layer's proxies are
  lambda * left + (1 - lambda) * right with one lambda in [0, 1] per layer. Then AD is a Clarke
  subderivative.
- **independent activations** (in the spirit of Park-Chun-Lee Thm 5, fully connected layers): every
  real tie is a unit fed directly by a linear layer whose weight row and bias entry for that unit
  are trainable scalars used nowhere else; for each tied unit, the vectors (x_n, 1) of the layer
  inputs of the samples tied there are linearly independent; every proxy lies in its Clarke
  interval. Then AD is a Clarke subderivative: restricted to each unit's private row, the tie
  functionals are exactly those vectors (whatever the pattern), rows of different units and later
  layers are disjoint / triangular, so every pattern's cell is non-empty, and the multi-affine
  argument above applies. (Stated and proved here; the paper's exact hypotheses may differ.)
Max-pool ties and l1-loss ties are outside these conditions.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from gmpy2 import mpq


def _uses(net) -> Counter:
    c = Counter()
    for L in net.layers:
        for ref in (L.weight, L.bias):
            if ref is not None:
                c.update(int(s) for s in ref.src[ref.src >= 0])
    return c


def _trainable(net):
    t = np.zeros(net.theta.size, dtype=bool)
    t[net.trainable_index] = True
    return t


def _bias_of(net, tie):
    """The theta index of the bias scalar feeding the tied unit directly, or None."""
    if tie.op in ("maxpool1d", "maxpool2d", "l1") or tie.layer == 0:
        return None
    prev = net.layers[tie.layer - 1]
    if prev.op not in ("linear", "conv2d") or prev.bias is None:
        return None
    if prev.op == "linear":
        channel = tie.unit
    else:
        channel = tie.unit // int(np.prod(prev.out_shape[1:]))
    src = int(prev.bias.src[channel])
    return src if src >= 0 else None


def _private_biases(net, ties, per_sample_ok: bool):
    uses = _uses(net)
    trainable = _trainable(net)
    owner = {}
    for t in ties:
        b = _bias_of(net, t)
        if b is None or not trainable[b] or uses[b] != 1:
            return False
        # per_sample_ok: the same unit in several samples may share its bias (Thm 4)
        key = (t.layer, t.unit) if per_sample_ok else t.key
        if b in owner and owner[b] != key:
            return False
        owner[b] = key
    return True


def _proxies_in_clarke(net, proxies, ties) -> bool:
    for t in ties:
        act = net.layers[t.layer].act
        k = act.kinks[t.kink]
        p = mpq(proxies.kinks[t.layer][t.kink])
        if not min(k.left, k.right) <= p <= max(k.left, k.right):
            return False
    return True


def _layer_lambdas(net, proxies, ties) -> bool:
    for layer in {t.layer for t in ties}:
        act = net.layers[layer].act
        lam = None
        for k, p in zip(act.kinks, proxies.kinks[layer]):
            p = mpq(p)
            if k.left == k.right:
                if p != k.left:
                    return False
                continue
            v = (p - k.right) / (k.left - k.right)  # p = v * left + (1 - v) * right
            if not 0 <= v <= 1 or (lam is not None and v != lam):
                return False
            lam = v
    return True


def _independent_rows(net, fw, ties) -> bool:
    from .linalg import rank

    uses = _uses(net)
    trainable = _trainable(net)
    groups: dict = {}
    for t in ties:
        if t.layer == 0:
            return False
        prev = net.layers[t.layer - 1]
        if prev.op != "linear" or prev.bias is None:
            return False
        row = prev.weight.src.reshape(prev.weight.shape)[t.unit]
        b = int(prev.bias.src[t.unit])
        for s in list(row) + [b]:
            s = int(s)
            if s < 0 or not trainable[s] or uses[s] != 1:
                return False
        x = fw.xs[prev.index][t.sample]
        groups.setdefault((t.layer, t.unit), []).append(list(x) + [mpq(1)])
    return all(rank(vecs) == len(vecs) for vecs in groups.values())


def check(net, proxies, ties, fw=None) -> list:
    """Names of the sufficient conditions (for "AD is a Clarke subderivative") that hold."""
    if not ties or any(t.op in ("maxpool1d", "maxpool2d", "l1") for t in ties) or any(L.op in ("fixed_point", "value_iteration") for L in net.layers):
        return []  # the theorems are about feed-forward networks without pools, blocks or l1 ties
    out = []
    if _private_biases(net, ties, per_sample_ok=False) and _proxies_in_clarke(net, proxies, ties):
        out.append("private-bias (Lee-Park-Aiken Thm 3.6 / Park-Chun-Lee Thm 1)")
    if _private_biases(net, ties, per_sample_ok=True) and _layer_lambdas(net, proxies, ties):
        out.append("per-layer lambda proxies (Park-Chun-Lee Thm 4)")
    if fw is not None and _proxies_in_clarke(net, proxies, ties) and _independent_rows(net, fw, ties):
        out.append("independent activations (cf. Park-Chun-Lee Thm 5)")
    return out
