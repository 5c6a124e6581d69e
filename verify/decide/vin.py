"""Value-iteration blocks at w: the Clarke Jacobian of the Bellman map, and which verdicts apply.

A block V* = max_a (R_a + gamma C_a V*) (``encodings/valueiteration.py``) has, at V*, the Clarke
Jacobian {gamma P : row s of P a convex combination of the rows C_a(s) over the actions a that attain
the maximum at s}. Its elements I - gamma P are all invertible iff det(I - gamma P) keeps one sign on
the vertices (one tied action per tied state): ``valueiteration.vertex_test``. Then the implicit
function theorem (no tie) or the coherent-orientation argument of ``implicit.decide_ties`` (two-way
ties: the pattern "left" / "right" selects the first / last tied action, the tie's functional is the
tangent of the gap Q_last - Q_first) decides the verdicts, with the machinery of the fixed-point
layers; a tie of m >= 3 actions picks one of them (m choices, its cell constraints Q_chosen - Q_other
> 0) and elementwise ties elsewhere in the network join the patterns as further coordinates. Ties
of an unrolled block are max ties of an ordinary composition: ``differentiability`` decides them
with the cells (one branch per tied action, like max-pool ties). What is not decided here - a
block next to a fixed-point layer, max-pool ties or unrolled-block ties next to ties at a
value-iteration fixed point - is reported with its reason.
"""

from __future__ import annotations

import numpy as np
from gmpy2 import mpq

from ..encodings import valueiteration as VI
from ..encodings.errors import Undecided
from ..encodings.fmt import hexf, rat


def layers(net) -> list:
    return [L for L in net.layers if L.op == "value_iteration"]


def vertex(fw, L, s) -> dict:
    """``vertex_test`` at sample s's fixed point (cached on the solution)."""
    sol = fw.fp[L.index]
    if s not in sol.vertex:
        eq = sol.eq[s]
        tied = {int(st): [int(a) for a in np.flatnonzero(eq[st])] for st in np.flatnonzero(eq.sum(axis=-1) >= 2)}
        pi = [int(a) for a in np.argmax(eq, axis=-1)]
        res = VI.vertex_test(L, fw.params[L.index][0], mpq(L.vi.gamma), pi, tied)
        sol.vertex[s] = dict(res, tied=sorted(tied), tied_actions={str(k): v for k, v in tied.items()})
    return sol.vertex[s]


def implicit_ties(net, real_ties) -> list:
    """The real ties at the fixed point of an iterated block (decided by ``implicit.decide_ties``);
    the ties of unrolled blocks are max ties of an ordinary composition (decided by the cells)."""
    return [t for t in real_ties if t.op == "value_iteration" and net.layers[t.layer].vi.method == "iterate"]


def obstacle(runs, real_ties) -> str | None:
    """Why the verdicts are not decided for a network with value-iteration blocks, or None (then
    no real tie means f is smooth near w, ties at an iterated block's fixed point are decided by
    ``implicit.decide_ties`` with elementwise ties elsewhere, and otherwise - ties of unrolled
    blocks, ties outside the blocks - by the ordinary cells)."""
    net = runs.net
    vis = layers(net)
    if any(L.op == "fixed_point" for L in net.layers):
        return "value_iteration and fixed_point layers in one network: the verdicts are not decided for such mixes yet"
    if implicit_ties(net, real_ties):  # ties at an iterated block's fixed point: the implicit method
        pools = sorted({t.layer for t in real_ties if t.op in ("maxpool1d", "maxpool2d")})
        if pools:
            return f"max-pool ties (layers {pools}) next to ties at a value-iteration fixed point: the verdicts are not decided for such networks yet"
        unrolled = [t for t in real_ties if t.op == "value_iteration" and net.layers[t.layer].vi.method == "unroll"]
        if unrolled:
            return f"layer {unrolled[0].layer}: ties of an unrolled value-iteration block next to ties at a value-iteration fixed point: the verdicts are not decided for such networks yet"
    fw = runs.exact_full()
    for L in vis:
        if L.vi.method != "iterate":
            continue
        for s in range(fw.fp[L.index].z.shape[0]):
            res = vertex(fw, L, s)
            if res["invertible"] is not True:
                what = "has a singular element" if res["invertible"] is False else "is not proved invertible"
                return f"value-iteration layer {L.index}, sample {s}: the Clarke Jacobian I - gamma P {what} ({res['reason']}): the implicit derivative is not defined there"
    return None


def _unrolled(runs, L) -> dict:
    from ..encodings import program as P

    net = runs.net
    with np.errstate(all="ignore"):
        un = P.backward(net, runs.MA, runs.machine, runs.proxies, unrolled=(L.index,))
    imp = runs.machine_ad()
    out = {"equals_implicit_bitwise": bool(np.array_equal(np.asarray(un, dtype=np.float64), np.asarray(imp, dtype=np.float64), equal_nan=True))}
    if net.n_grad <= 4096:
        out["machine_ad"] = [hexf(net.fmt, v) for v in un]
    return out


def section(runs) -> list:
    """The report's ``implicit`` entries of the value-iteration blocks."""
    net = runs.net
    out = []
    for L in layers(net):
        vi = L.vi
        S = int(np.prod(L.out_shape))
        solver = {"method": vi.method, "max_iter": vi.max_iter, "tol": hexf(net.fmt, vi.tol)} if vi.method == "iterate" else {"method": "unroll", "iterations": vi.iterations}
        entry = {"layer": L.index, "op": "value_iteration", "grid": list(vi.grid), "actions": vi.actions, "kernel": vi.k, "gamma": rat(mpq(vi.gamma)), "units": S, "solver": solver}
        m = runs.machine.fp[L.index] if runs.machine is not None else None
        if m is not None:
            entry["machine"] = {"iterations": m.iterations, "residual": hexf(net.fmt, m.residual) if m.residual is not None else None, "converged": m.converged}
            if vi.method == "iterate":
                entry["unrolled"] = _unrolled(runs, L)
        try:
            fw = runs.exact_full()
        except Undecided as exc:
            fw, runs.exact_reason = None, str(exc)
        if fw is None:
            entry["exact"] = None
            entry["reason"] = runs.exact_reason or "the exact values are unavailable"
            out.append(entry)
            continue
        sol = fw.fp[L.index]
        if vi.method == "iterate":
            entry["exact"] = {"unique": sol.unique, "uniqueness": "proved: gamma * max_a sum |T_a| < 1 (a contraction)" if sol.unique else "not proved", "pattern_rounds": sol.pattern_rounds}
        else:
            entry["exact"] = {"iterations": vi.iterations}
        if m is not None:
            differ = [[int(n), int(st)] for n in range(sol.eq.shape[0]) for st in range(S) if not np.array_equal(sol.eq[n, st], m.eq[n, st])]
            entry["pattern_agrees"] = not differ  # the maximal actions at the output, state by state
            entry["pattern_differs"] = differ
        samples = []
        for s in range(sol.z.shape[0]):
            if vi.method != "iterate":
                samples.append({"sample": s, "tied_states": [int(st) for st in np.flatnonzero(sol.eq[s].sum(axis=-1) >= 2)]})
                continue
            res = vertex(fw, L, s)
            samples.append(
                {
                    "sample": s,
                    "tied_units": res["tied"],
                    "tied_actions": res["tied_actions"],
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
