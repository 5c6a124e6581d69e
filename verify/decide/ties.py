"""Which neurons sit on a kink (real ties, float ties), where the float run branches differently
from the exact one (branch mismatches), and whether that is a compensation (Boustany 2024).

A neuron's *branch* is where its input lies relative to the kinks of its op: on which smooth piece,
or on which kink. For a max-pool window it is the set of maximal entries; for an l1 residual the
sign. A *branch mismatch* is a neuron whose branch in the machine run differs from the exact run's:
a float tie that is no real tie, a real tie that is no float tie, or a piece that rounding changed.

*Compensation* (Boustany's compensation zone: AD wrong in floating point although right over the
reals) needs more than a branch mismatch: f is differentiable at w, the exact AD output is the
gradient, and the machine run branches differently from the exact run at some unit
(:func:`compensation_verdict`).
"""

from __future__ import annotations

import numpy as np

from ..encodings import program as P
from ..encodings.fmt import hexf, rat


def describe_tie(net, t: P.Tie, exact_fw, machine_fw) -> dict:
    d = {"layer": t.layer, "op": t.op, "sample": t.sample, "unit": t.unit}
    if t.op in ("maxpool1d", "maxpool2d"):
        L = net.layers[t.layer]
        d["index"] = [int(i) for i in np.unravel_index(t.unit, L.out_shape)] if L.out_shape else []
        d["kink"] = "max"
        d["kink_index"] = 0
        d["entries"] = list(t.entries)
        e0 = t.entries[0]
        d["exact"] = rat(exact_fw.value_at(t.layer, t.sample, e0)) if exact_fw is not None else None
        d["machine"] = hexf(net.fmt, machine_fw.value_at(t.layer, t.sample, e0))
        return d
    if t.op == "value_iteration":  # a max tie between actions: the tied Q value
        L = net.layers[t.layer]
        S = int(np.prod(L.out_shape))
        d["index"] = [int(i) for i in np.unravel_index(t.unit % S, L.out_shape)]
        d["kink"], d["kink_index"], d["entries"] = "max", 0, list(t.entries)
        if L.vi.method == "unroll":
            d["step"] = t.unit // S + 1
        efp = getattr(exact_fw, "fp", {}).get(t.layer) if exact_fw is not None else None
        q = (lambda sol: sol.q) if L.vi.method == "iterate" else (lambda sol: sol.steps[t.unit // S][2] if t.unit // S < len(sol.steps) else None)
        eq, mq = q(efp) if efp is not None else None, q(machine_fw.fp[t.layer])
        d["exact"] = rat(eq[t.sample, t.unit % S, t.entries[0]]) if eq is not None else None
        d["machine"] = hexf(net.fmt, mq[t.sample, t.unit % S, t.entries[0]]) if mq is not None else None
        return d
    if t.op == "l1":
        d["index"] = list(np.unravel_index(t.unit, net.out_shape)) if net.out_shape else []
        ev = exact_fw.residual_at(t.sample, t.unit) if exact_fw is not None else None
        mv = machine_fw.residual_at(t.sample, t.unit)
    elif t.op == "fixed_point":  # the unit's pre-activation a* = W z* + U x + b at the fixed point
        d["index"] = [t.unit]
        efp = getattr(exact_fw, "fp", {}).get(t.layer) if exact_fw is not None else None
        ev = efp.a[t.sample, t.unit] if efp is not None else None
        mv = machine_fw.fp[t.layer].a[t.sample, t.unit]
    else:
        L = net.layers[t.layer]
        d["index"] = [int(i) for i in np.unravel_index(t.unit, L.in_shape)] if L.in_shape else []
        ev = exact_fw.value_at(t.layer, t.sample, t.unit) if exact_fw is not None else None
        mv = machine_fw.value_at(t.layer, t.sample, t.unit)
    d["kink"] = rat(t.at)
    d["kink_index"] = t.kink
    d["exact"] = rat(ev) if ev is not None else None
    d["machine"] = hexf(net.fmt, mv)
    d["index"] = [int(i) for i in d["index"]]
    return d


def _branch_maps(net, fw):
    """{(layer, sample, unit): branch} for every kinked neuron, window and l1 residual."""
    out = {}
    for L in net.layers:
        if L.index in fw.loc and not L.act.smooth:
            piece, kink = fw.loc[L.index]
            N = piece.shape[0]
            out[L.index] = ("act", piece.reshape(N, -1), kink.reshape(N, -1))
        elif L.index in fw.pools:
            eq = fw.pools[L.index]
            out[L.index] = ("pool", eq)
        elif L.op == "value_iteration" and L.index in fw.fp:  # the maximal actions per state (per step when unrolled)
            sol = fw.fp[L.index]
            out[L.index] = ("pool", sol.eq if L.vi.method == "iterate" else np.concatenate([st[1] for st in sol.steps], axis=1))
    if fw.loss_loc is not None:
        piece, kink = fw.loss_loc
        out[len(net.layers)] = ("act", piece, kink)
    return out


def _name(kind, piece, kink, kinks=None):
    if kink >= 0:
        return f"on kink {kinks[kink]}" if kinks is not None else f"on kink {kink}"
    return f"piece {piece}"


def compensation_verdict(differentiable, ad_correct, mismatch):
    """(compensation: True / False / None, reason when None) from the exact verdicts and the
    branch mismatch (None when the exact run is unavailable)."""
    if mismatch is None:
        return None, None  # the exact run's reason is reported already
    if not mismatch or differentiable is False or ad_correct is False:
        return False, None
    if differentiable is True and ad_correct is True:
        return True, None
    missing = "differentiability" if differentiable is None else "whether the exact AD output is the gradient"
    return None, f"compensation undecided: the float run branches differently from the exact run, but {missing} is undecided"


def branch_mismatches(net, exact_fw, machine_fw) -> list:
    """Neurons where the machine run takes another branch than the exact run."""
    E = _branch_maps(net, exact_fw)
    M = _branch_maps(net, machine_fw)
    found = []
    for layer, e in E.items():
        m = M[layer]
        op = net.layers[layer].op if layer < len(net.layers) else "l1"
        if e[0] == "act":
            diff = (e[1] != m[1]) | (e[2] != m[2])
            if not diff.any():
                continue
            kinks = [rat(k.at) for k in (net.layers[layer].act.kinks if layer < len(net.layers) else P._abs().kinks)]
            for n, u in zip(*np.nonzero(diff)):
                ek, mk = int(e[2][n, u]), int(m[2][n, u])
                kind = "float tie only" if (mk >= 0 and ek < 0) else "real tie only" if (ek >= 0 and mk < 0) else "branch flipped"
                found.append(
                    {
                        "layer": layer,
                        "op": op,
                        "sample": int(n),
                        "unit": int(u),
                        "kind": kind,
                        "exact_branch": _name("act", int(e[1][n, u]), ek, kinks),
                        "machine_branch": _name("act", int(m[1][n, u]), mk, kinks),
                    }
                )
        else:
            diff = (e[1] != m[1]).any(axis=-1)
            what = "actions" if op == "value_iteration" else "window entries"
            for n, w in zip(*np.nonzero(diff)):
                ce, cm = int(e[1][n, w].sum()), int(m[1][n, w].sum())
                kind = "float tie only" if (cm >= 2 and ce < 2) else "real tie only" if (ce >= 2 and cm < 2) else "branch flipped"
                found.append(
                    {
                        "layer": layer,
                        "op": op,
                        "sample": int(n),
                        "unit": int(w),
                        "kind": kind,
                        "exact_branch": f"maxima at {what} " + ",".join(map(str, np.flatnonzero(e[1][n, w]))),
                        "machine_branch": f"maxima at {what} " + ",".join(map(str, np.flatnonzero(m[1][n, w]))),
                    }
                )
    return found
