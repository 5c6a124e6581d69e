"""Fast exact path: every real tie in one layer (elementwise ties) or all at the l1 loss.

No tie then sits downstream of another, so each tie j only switches its own derivative: with g_L
the gradient with every tie on its left derivative, a_j the tie's input functional and
Delta_j = g(tie j right, others left) - g_L (necessarily kappa_j * a_j),

    f'(w; d) = g_L.d + sum_j [a_j.d > 0] Delta_j.d .

Grouping the ties by the line of a_j (a_j = lambda_j * a_k), each line k contributes a hinge
C_k * max(a_k.d, 0) with C_k = sum_{lambda>0} delta_j - sum_{lambda<0} delta_j (Delta_j = delta_j a_k)
plus a linear term. Hinges on distinct lines are linearly independent modulo linear maps, so f is
differentiable at w exactly when every C_k = 0, with gradient G = g_L + sum_{lambda_j<0} Delta_j.
Otherwise, when the active lines are linearly independent, every sign pattern of them is a cell:
the limiting gradients are G + sum_{k in S} C_k a_k and their hull is the zonotope
G + sum_k [0, 1] C_k a_k, so AD is a Clarke subderivative iff AD - G = sum_k mu_k C_k a_k with
0 <= mu_k <= 1 (mu unique). This takes m + 2 backward passes instead of up to 2^m cells: the jump
of an elementwise tie is Delta_j = (r_j - l_j) s_j a_j, with r_j, l_j its one-sided derivatives and
s_j the cotangent arriving at its unit's output under all-left choices (one backward pass for the
layer: no tie lies downstream, so s_j does not depend on any tie's choice); an l1 tie's jump is
still measured by its own pass. Each tie's functional is one pass; the loop checks the decision's
deadline (``cells.check_deadline``) and reports its progress.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gmpy2 import mpq

from ..encodings import program as P
from .cells import affine_tie_inputs, check_deadline, functional, report
from .linalg import rank
from .linalg import solve as solve_linear


@dataclass
class Hinge:
    base: list  # g_L
    functionals: list  # a_j
    jumps: list  # Delta_j
    lines: list  # [(normal a_k, [(j, lambda_j)], C_k)]
    gradient: list  # G
    differentiable: bool
    independent: bool  # active lines linearly independent
    mu: list | None = None  # zonotope coordinates of AD - G (None: not in the span)


def applies(net, ties) -> bool:
    if not ties:
        return False
    layers = {t.layer for t in ties}
    if len(layers) != 1:
        return False
    return all(t.op not in ("maxpool1d", "maxpool2d", "value_iteration") for t in ties)


def _normalize(a):
    k = next(i for i, v in enumerate(a) if v != 0)
    lam = a[k]
    return [v / lam for v in a], lam


def solve(runs, fw, ties) -> Hinge | None:
    """The hinge decomposition, or None when its premises fail (then enumerate cells)."""
    net = runs.net
    order = sorted(ties, key=lambda t: (t.layer, t.sample, t.unit))
    left = {t.key: "left" for t in order}
    base = list(P.backward(net, fw.A, fw, runs.proxies, choose=left))
    cot = {}  # layer -> cotangents [sample, unit] arriving at its output, every tie on its left side
    for layer in sorted({t.layer for t in order if t.op != "l1"}):
        cot[layer] = np.asarray(P.backward(net, fw.A, fw, runs.proxies, choose=left, cotangent_at=layer + 1), dtype=object).reshape(net.batch, -1)
    funcs, jumps = [], []
    for i, t in enumerate(order):
        check_deadline(f"the hinge decomposition ({i} of {len(order)} ties)")
        if i % 100 == 0:
            report(f"hinge decomposition: {i} of {len(order)} ties")
        layer = len(net.layers) if t.op == "l1" else t.layer
        a = functional(runs, fw, layer, t.sample, t.unit, {})
        if t.op == "l1":
            ch = dict(left)
            ch[t.key] = "right"
            g = list(P.backward(net, fw.A, fw, runs.proxies, choose=ch))
            delta = [x - y for x, y in zip(g, base)]
        else:
            act = net.layers[t.layer].act
            k = mpq(act.one_sided(t.kink, "right")) - mpq(act.one_sided(t.kink, "left"))
            k *= mpq(cot[t.layer][t.sample, t.unit])
            delta = [k * v for v in a]
        funcs.append(a)
        jumps.append(delta)
    lines = []  # [normal, members, C]
    for j, (a, delta) in enumerate(zip(funcs, jumps)):
        if all(v == 0 for v in a):
            if any(v != 0 for v in delta):
                return None  # impossible for a continuous f'; stay on the general path
            continue
        na, lam = _normalize(a)
        # delta_j: Delta_j = delta_j * na
        k = next(i for i, v in enumerate(na) if v != 0)
        dj = delta[k] / na[k]
        if [dj * v for v in na] != delta:
            return None
        for ln in lines:
            if ln[0] == na:
                ln[1].append((j, lam, dj))
                break
        else:
            lines.append([na, [(j, lam, dj)], None])
    grad = list(base)
    for ln in lines:
        C = mpq(0)
        for j, lam, dj in ln[1]:
            if lam > 0:
                C += dj
            else:
                C -= dj
                grad = [x + y for x, y in zip(grad, jumps[j])]
        ln[2] = C
    active = [ln for ln in lines if ln[2] != 0]
    diff = not active
    indep = rank([ln[0] for ln in active]) == len(active) if active else True
    h = Hinge(base, funcs, jumps, [(ln[0], [(j, lam) for j, lam, _ in ln[1]], ln[2]) for ln in lines], grad, diff, indep)
    return h


def zonotope_coordinates(h: Hinge, ad):
    """mu with AD - G = sum_k mu_k C_k a_k over the active lines (independent), or None."""
    active = [(a, C) for a, _, C in h.lines if C != 0]
    target = [x - y for x, y in zip(ad, h.gradient)]
    cols = [[C * v for v in a] for a, C in active]
    return solve_linear(cols, target)  # independent columns: unique, or None outside their span


def complete_for_clarke_no(net, h: Hinge, upto: int | None = None) -> bool:
    """The zonotope is all of conv(limiting gradients): no cusp-shaped regions are possible
    (``upto``: the ties' layer, see ``cells.affine_tie_inputs``)."""
    if not h.independent:
        return False
    if net.n_grad <= 1 or affine_tie_inputs(net, upto):
        return True
    return all(len(members) == 1 for _, members, C in h.lines)
