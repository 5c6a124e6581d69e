"""Fixed-point layers at w: is the implicit derivative defined, and is the Clarke Jacobian invertible?

For a layer z* = act(W z* + U x + b) (``encodings/fixedpoint.py``), the map z -> act(W z + c) has,
at z*, the Clarke Jacobian {D W : D diagonal, D_ii in the Clarke derivative of act at a*_i}: a
single slope off the kinks, the interval between the one-sided derivatives at a tie. Bolte et al.'s
condition for nonsmooth implicit differentiation is that every I - D W is invertible; then the
implicit Jacobian of the solution map is {(I - D W)^{-1} D [dW z* + dU x + db + U dx]}.
``vertex_test`` decides it exactly (det(I - D W) is multilinear in the tied slopes: one sign on the
2^k vertices, or an exact singular element).

Off the ties, one invertible I - D W is the implicit function theorem: the layer is smooth near w
and the network's verdicts apply unchanged (``invertible_at_w``). Ties inside the layer couple its
units through the fixed point: ``decide_ties`` decides them, together with the network's other
elementwise ties (ReLU-like activations, the l1 loss), by enumerating every one-sided pattern of
all the ties at once (max-pool ties next to them stay undecided).
"""

from __future__ import annotations

import itertools

import numpy as np
from gmpy2 import mpq

from ..encodings.errors import Undecided
from ..encodings.fixedpoint import _affine_pieces, vertex_test
from ..encodings.fmt import hexf, rat


def _slopes(A, L, a_row, piece_row, kink_row):
    """(slopes off the ties, {unit: (left, right)} at the ties) for one sample."""
    pieces = _affine_pieces(A, L.act)
    slopes, boxes = [], {}
    for i, (p, k) in enumerate(zip(piece_row, kink_row)):
        if k >= 0:
            lo, hi = L.act.one_sided(int(k), "left"), L.act.one_sided(int(k), "right")
            boxes[i] = (mpq(min(lo, hi)), mpq(max(lo, hi)))
            slopes.append(mpq(lo))
        else:
            slopes.append(pieces[int(p)][0])
    return slopes, boxes


def _vertex(fw, L, s) -> dict:
    """``vertex_test`` at sample s's fixed point (cached on the solution)."""
    if L.op == "value_iteration":
        from .vin import vertex

        return vertex(fw, L, s)
    sol = fw.fp[L.index]
    if s not in sol.vertex:
        piece, kink = fw.loc[L.index]
        slopes, boxes = _slopes(fw.A, L, sol.a[s], piece[s], kink[s])
        sol.vertex[s] = dict(vertex_test(fw.params[L.index][0], slopes, boxes), tied=sorted(boxes))
    return sol.vertex[s]


def _layer_parts(runs, L):
    fw = runs.exact_full()
    sol = fw.fp[L.index]
    W = fw.params[L.index][0]
    piece, kink = fw.loc[L.index]
    return fw, sol, W, piece, kink


def invertible_at_w(runs, L) -> str | None:
    """None when I - D W is invertible at every sample's fixed point (no tie inside); else why not."""
    fw, sol, W, piece, kink = _layer_parts(runs, L)
    for s in range(sol.z.shape[0]):
        res = _vertex(fw, L, s)
        if res["tied"]:
            continue  # handled by the caller (ties inside)
        if not res["invertible"]:
            return f"fixed-point layer {L.index}, sample {s}: I - D W is singular at the fixed point: the implicit function theorem does not apply"
    return None


def _unrolled(runs, L) -> dict:
    """The machine AD output with this layer differentiated through its iterations (autograd on
    the unrolled solver), next to the implicit one."""
    from ..encodings import program as P

    net = runs.net
    with np.errstate(all="ignore"):
        un = P.backward(net, runs.MA, runs.machine, runs.proxies, unrolled=(L.index,))
    imp = runs.machine_ad()
    same = bool(np.array_equal(np.asarray(un, dtype=np.float64), np.asarray(imp, dtype=np.float64), equal_nan=True))
    out = {"equals_implicit_bitwise": same}
    if net.n_grad <= 4096:
        out["machine_ad"] = [hexf(net.fmt, v) for v in un]
    return out


def section(runs) -> list:
    """The report's ``implicit`` entries, one per fixed-point layer."""
    net = runs.net
    out = []
    for L in net.layers:
        if L.op != "fixed_point":
            continue
        m = runs.machine.fp[L.index] if runs.machine is not None else None
        entry = {"layer": L.index, "units": L.out_shape[0], "solver": {"method": L.fp.method, "max_iter": L.fp.max_iter, "tol": hexf(net.fmt, L.fp.tol)}}
        if L.fp.method == "anderson":
            entry["solver"].update(m=L.fp.m, beta=hexf(net.fmt, L.fp.beta))
        if m is not None:
            entry["machine"] = {"iterations": m.iterations, "residual": hexf(net.fmt, m.residual), "converged": m.converged}
            if L.fp.method == "anderson":  # backprop through the mixing and its least-squares solves is not modelled
                entry["unrolled"] = {"equals_implicit_bitwise": None, "reason": "unrolled AD is modelled for method iterate only"}
            else:
                entry["unrolled"] = _unrolled(runs, L)
        try:
            fw = runs.exact_full()
        except Undecided as exc:
            fw, runs.exact_reason = None, str(exc)
        if fw is None:
            entry["exact"] = None
            entry["reason"] = runs.exact_reason or "the exact fixed point is unavailable"
            out.append(entry)
            continue
        fw, sol, W, piece, kink = _layer_parts(runs, L)
        entry["exact"] = {"unique": sol.unique, "uniqueness": "proved: ||W||_inf * Lip(act) < 1 (a contraction)" if sol.unique else "not proved", "pattern_rounds": sol.pattern_rounds}
        if m is not None:
            mp, mk = runs.machine.loc[L.index]
            differ = [[int(s), int(u)] for s in range(piece.shape[0]) for u in range(piece.shape[1]) if (piece[s, u], kink[s, u]) != (mp[s, u], mk[s, u])]
            entry["pattern_agrees"] = not differ
            entry["pattern_differs"] = differ
        samples = []
        for s in range(sol.z.shape[0]):
            res = _vertex(fw, L, s)
            samples.append(
                {
                    "sample": s,
                    "tied_units": res["tied"],
                    "clarke_jacobian_invertible": res["invertible"],
                    "vertices": res["vertices"],
                    "determinant_sign": res["sign"],
                    "singular_witness": res["witness"],
                    "reason": res["reason"],
                }
            )
        entry["samples"] = samples
        entry["z"] = [[rat(v) for v in row] for row in sol.z] if sol.z.size <= 256 else None
        out.append(entry)
    return out


# ----------------------------------------------------------------------------------------------
# verdicts at ties inside a fixed-point layer


MAX_PATTERNS = 4096


def decide_ties(runs, ties, *, timeout_ms: int = 20000) -> dict:
    """The cells when some real ties lie inside fixed-point layers (docs/implicit.md).

    Under Bolte et al.'s condition - every element of the Clarke Jacobian invertible, with one
    determinant sign (``vertex_test``) - the pre-activation tangent u solves G(u) = r, G a
    piecewise-linear map on the tied coordinates' orthants whose pieces I - W D_s all have
    determinants of one sign: a coherently oriented normal map, hence a homeomorphism (Robinson
    1992). So the directional derivative of z* along d is unique, selected by the tied units'
    one-sided pattern s; its
    cell is {d : s_i l_{s,i}(d) > 0}, where l_{s,i} is the tangent of the tied pre-activation a*_i
    on pattern s (a coupled, pattern-dependent functional). The cells' closures cover every
    direction and f'(w; d) = g_s . d on cell s, so f is differentiable iff every non-empty cell has
    one gradient. The limiting gradients are the g_s of the non-empty cells when every pattern's
    functionals are linearly independent (then every cell is non-empty and no curved region can
    hide another piece: ``complete``).

    Elementwise ties elsewhere in the network (an activation's kink, the l1 loss at 0) join the
    pattern as further coordinates: on a full pattern s every map between the ties is linear in
    the direction (the fixed-point layers' tangents by the same homeomorphism), so the tangent of
    each tied argument is a linear functional l_{s,i} (the backward pass seeded at that argument,
    with s's one-sided derivatives at every tie), and the cells, gradients and completeness rule
    are the same. Max-pool ties (several choices each) are not combined with fixed-point ties.

    Returns {"obstacle": reason} when the question is not decided here, else {"enumeration": an
    ``cells.Enumeration`` of every pattern (non-empty cells with witnesses, empty ones with Gordan
    multipliers), "gradients": distinct gradients, "complete": bool, "base": summary}."""
    from ..encodings import program as P
    from .cells import Budget, Cell, Enumeration, Pruned, feasible, functional, gordan
    from .linalg import rank

    net = runs.net
    inside = "value-iteration blocks" if any(L.op == "value_iteration" for L in net.layers) else "fixed-point layers"
    pools = [t for t in ties if t.op in ("maxpool1d", "maxpool2d")]
    if pools:
        return {"obstacle": f"real ties inside {inside} and a max-pool tie ({pools[0].key}): such mixes are not decided"}
    if net.loss.op == "cross_entropy" or any(L.act is not None and L.act.transcendental for L in net.layers):
        return {"obstacle": f"real ties inside {inside} in a network with transcendental ops: the cell gradients are not rational"}
    fw = runs.exact_full()
    inner = ("fixed_point", "value_iteration")  # ties inside the layer: seeded at its tie gaps
    for L in {t.layer: net.layers[t.layer] for t in ties if t.op in inner}.values():
        for s in range(fw.fp[L.index].z.shape[0]):
            res = _vertex(fw, L, s)
            if res["invertible"] is not True or res["sign"] is None:
                what = "has a singular element" if res["invertible"] is False else "is not proved invertible"
                return {"obstacle": f"fixed-point layer {L.index}, sample {s}: the Clarke Jacobian {what} ({res['reason']}): the implicit derivative is not defined there (Bolte et al.'s condition fails)"}
    k = len(ties)
    n = net.n_grad
    order = sorted(ties, key=lambda t: t.key)
    # a two-way tie picks a side ("left": the first tied action of a value-iteration tie); a
    # value-iteration tie of m >= 3 actions picks one of them (m choices)
    options = [list(t.entries) if t.op == "value_iteration" and len(t.entries) > 2 else ["left", "right"] for t in order]
    count = int(np.prod([len(o) for o in options], dtype=object))
    if count > MAX_PATTERNS:
        return {"obstacle": f"{k} real ties (some inside {inside}): {count} patterns exceed the budget {MAX_PATTERNS}"}
    cells, empty, complete = [], [], True
    for combo in itertools.product(*options[::-1]):  # the first tie varies fastest
        combo = combo[::-1]
        choose = {t.key: c for t, c in zip(order, combo)}
        funcs = []
        for t, c in zip(order, combo):
            if isinstance(c, int):  # Q_c - Q_o > 0 for every other tied action o
                for o in t.entries:
                    if o != c:
                        h = fw.A.zeros(fw.fp[t.layer].q.shape)
                        h[t.sample, t.unit, c], h[t.sample, t.unit, o] = fw.A.const(1), fw.A.const(-1)
                        funcs.append(list(P.backward(net, fw.A, fw, runs.proxies, choose=choose, seed=("fixed_point", t.layer, h))))
            else:
                if t.op in inner:
                    e = fw.A.zeros(fw.fp[t.layer].a.shape)
                    e[t.sample, t.unit] = fw.A.const(1)
                    f = list(P.backward(net, fw.A, fw, runs.proxies, choose=choose, seed=("fixed_point", t.layer, e)))
                else:  # an elementwise tie elsewhere: the tangent of its argument (the loss's input for l1)
                    f = functional(runs, fw, len(net.layers) if t.op == "l1" else t.layer, t.sample, t.unit, choose)
                funcs.append([v if c == "right" else -v for v in f])
            if any(all(v == 0 for v in f) for f in funcs):
                return {"obstacle": f"tie {t.key} has an identically zero tangent on pattern {choose}: higher-order terms decide its side (undecided)"}
        if rank([list(f) for f in funcs]) < len(funcs):
            complete = False
        try:
            w = feasible(funcs, n, timeout_ms)
            if w is None:
                empty.append(Pruned(choose, funcs, gordan(funcs, n, timeout_ms)))
                continue
        except Budget as exc:
            return {"obstacle": f"cell of pattern {choose}: {exc}"}
        cells.append(Cell(choose, w, list(P.backward(net, fw.A, fw, runs.proxies, choose=choose)), funcs))
    grads = []
    for c in cells:
        if c.gradient not in grads:
            grads.append(c.gradient)
    complete = (complete and not empty) or n <= 1  # one parameter: the first-order signs decide both half-lines
    base = f"{k} real tie(s) ({sum(t.op in inner for t in ties)} inside {inside}), {len(cells)} non-empty cell(s) of {count} patterns"
    en = Enumeration(cells=cells, pruned=empty, ties=[], order=[t.key for t in order], degenerate=[] if complete else ["dependent tie functionals in a pattern"], zero_ties=[], n_params=n)
    return {"enumeration": en, "gradients": grads, "complete": complete, "base": base}
