"""Bifurcation zone (Bertoin et al. 2021), decided exactly: does the machine AD output depend on the
derivative chosen at the float ties?

The *options* at a float tie are the convention's proxy and every one-sided derivative: the left and
the right derivative at a kink (ReLU'(0) = 0 or 1; l1's residual: -1 or 1), or for a max-pool
window any one of its tied maximal entries taking the whole gradient (``first`` and ``last`` are two
of them; ``split`` is an option only as the convention's proxy). An *assignment* picks one option
per float tie. ``choice_sensitive`` is True when some assignment gives a machine AD output that
differs from the convention's (compared as numbers: -0 equals +0, two NaNs are equal), with that
assignment as the witness; False when no assignment does, by the proof below; None (with the reason)
when the proof would need more than ``MAX_PASSES`` backward passes or ``TIME_BUDGET_S`` seconds.
Never False by sampling.

The proof (``exhaustive``): the backward pass visits the layers from the loss to the input, and the
cotangent arriving at a tie of layer L depends only on the choices at the ties of later layers. When
it is zero (+0 or -0), every option at that tie sends on a zero - the options are finite numbers, and
a max-pool routes the zero to one entry - so, as numbers, nothing downstream depends on that tie's
choice: multiplying by a fixed value, adding and dividing by a fixed non-zero value all map
operands that are equal as numbers to results equal as numbers (the sign of a zero only decides the
sign of a zero result). The search therefore walks the tie layers from the loss down; at each it
computes the arriving cotangents under the choices made so far, and branches only on the ties whose
cotangent is non-zero (NaN counts as non-zero), over their options with distinct derivative values.
Every assignment is equal as numbers, at every cotangent, to one leaf of that tree; each leaf is one
machine backward pass compared with the convention's output. No leaf differs -> no assignment does.

``causes`` lists the ties that change the output alone (one option at that tie, every other tie on
the convention's proxy), with the option; a tie whose arriving cotangent is zero under the
convention cannot (same argument). Before any switch gets its own backward pass, ``screen``
proves the switches that change the output by recomputing one gradient entry exactly (the bias or
a weight of the tied unit, whose gradient is an in-order sum over the batch in which only the
switched sample's term changes); the rest get a pass each, at most ``MAX_SINGLE`` of them. With
hundreds of float ties on a linear -> activation layer this is one prefix sum per entry instead of
one backward pass per tie (batch 1000, one parameter: 1000 causes in 0.2 s instead of 256 of them
in 2.5 s).
"""

from __future__ import annotations

import itertools
import time

import numpy as np

from ..encodings import program as P

MAX_SINGLE = 256
MAX_PASSES = 4096  # machine backward passes (full or partial) for the exhaustive search
TIME_BUDGET_S = 30.0


class _OverBudget(Exception):
    pass


def same(a, b) -> bool:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


def options(net, proxies, MA, t) -> list:
    """The options at tie ``t`` other than the convention's proxy, with pairwise distinct effect:
    'left' / 'right' (a kink; dropped when its rounded value equals the proxy's or an earlier
    option's), or a max-pool window position (int) of a tied entry (the convention's own entry is
    dropped unless the rule is ``split``)."""
    if t.op in ("maxpool1d", "maxpool2d"):
        L = net.layers[t.layer]
        pos = [int(j) for j, p in enumerate(P.pool_index(L)[t.unit]) if int(p) in t.entries]
        rule = proxies.ties[t.layer]
        own = pos[0] if rule == "first" else pos[-1] if rule == "last" else None
        return [j for j in pos if j != own]
    if t.op == "value_iteration":  # the tied actions other than the proxy (the first tied one)
        return [int(a) for a in t.entries[1:]]
    if t.op == "l1":
        act, prox = P._abs(), proxies.kinks["loss"]
    else:
        act, prox = net.layers[t.layer].act, proxies.kinks[t.layer]
    seen = [MA.const(prox[t.kink])]
    out = []
    for side in ("left", "right"):
        v = MA.const(act.one_sided(t.kink, side))
        if not any(same(v, s) for s in seen):
            seen.append(v)
            out.append(side)
    return out


def describe(net, t, option) -> dict:
    """A tie with the option it takes: 'left' / 'right', or for a max-pool window the flat input
    position (one of the tie's ``entries``) of the entry that takes the gradient."""
    d = {"layer": t.layer, "op": t.op, "sample": t.sample, "unit": t.unit}
    if isinstance(option, int) and t.op == "value_iteration":
        d["choice"] = {"action": int(option)}
    elif isinstance(option, int):
        d["choice"] = int(P.pool_index(net.layers[t.layer])[t.unit][option])
    else:
        d["choice"] = option
    return d


class _Search:
    def __init__(self, runs, float_ties, max_passes, time_budget_s):
        self.net, self.MA, self.fw, self.pr = runs.net, runs.MA, runs.machine, runs.proxies
        self.base = runs.machine_ad()
        self.opts = {t.key: options(self.net, self.pr, self.MA, t) for t in float_ties}
        self.by_layer: dict = {}
        for t in float_ties:
            self.by_layer.setdefault(t.layer, []).append(t)
        self.layers = sorted(self.by_layer, reverse=True)  # from the loss to the input
        self.passes = 0
        self._conv: dict = {}  # cotangent_at -> the convention's cotangent there
        self.screened = 0
        self.max_passes = max_passes
        self.deadline = time.perf_counter() + time_budget_s

    def backward(self, choose, at=None):
        key = at if not choose else None
        if key is not None and key in self._conv:
            return self._conv[key]  # the convention's cotangents, computed once
        if self.passes >= self.max_passes or time.perf_counter() > self.deadline:
            raise _OverBudget
        self.passes += 1
        out = P.backward(self.net, self.MA, self.fw, self.pr, choose=choose, cotangent_at=at)
        if key is not None:
            self._conv[key] = out
        return out

    def live(self, choose, layer) -> set:
        """Keys of the ties of ``layer`` whose arriving cotangent is non-zero under ``choose``."""
        ties = self.by_layer[layer]
        if layer == len(self.net.layers):  # l1 residuals: the seed's factor 1 (or 1/count) arrives
            return {t.key for t in ties}
        if self.net.layers[layer].op == "value_iteration":  # coupled through the block: every tie may matter
            return {t.key for t in ties}
        g = np.asarray(self.backward(choose, at=layer + 1), dtype=np.float64).reshape(self.net.batch, -1)
        return {t.key for t in ties if not g[t.sample, t.unit] == 0}

    def causes(self, float_ties, limit):
        """[(tie, option)] of the ties that change the output alone; the number of ties decided."""
        live = set()
        for layer in self.layers:
            live |= self.live({}, layer)
        proved = screen(self, [t for t in float_ties if t.key in live and self.opts[t.key]])
        found, decided, switched = [], 0, 0
        for t in float_ties:
            if t.key in live and self.opts[t.key]:
                first = next((o for o in self.opts[t.key] if (t.key, o) in proved), None)
                if first is not None and first == self.opts[t.key][0]:
                    found.append((t, first))  # its first option changes the output (proved without a pass)
                    decided += 1
                    continue
                if switched >= limit:
                    continue
                switched += 1
                for o in self.opts[t.key]:
                    if (t.key, o) in proved or not same(self.backward({t.key: o}), self.base):
                        found.append((t, o))
                        break
            decided += 1
        return found, decided

    def exhaustive(self, i=0, choose=None):
        """A witness assignment {key: option} whose output differs from the convention's, or None
        when there is none (see the module docstring)."""
        choose = {} if choose is None else choose
        if i == len(self.layers):
            out = self.backward(choose)
            return None if same(out, self.base) else (dict(choose), out)
        layer = self.layers[i]
        live = self.live(choose, layer)
        branching = [t for t in self.by_layer[layer] if t.key in live and self.opts[t.key]]
        for combo in itertools.product(*[[None] + self.opts[t.key] for t in branching]):
            ch = dict(choose)
            ch.update({t.key: o for t, o in zip(branching, combo) if o is not None})
            found = self.exhaustive(i + 1, ch)
            if found is not None:
                return found
        return None


SCREEN_COLUMNS = 4  # weight-gradient entries of a tied unit recomputed per switch (plus its bias)


def _solo_entries(net) -> np.ndarray:
    """theta index -> True when that parameter is trainable and enters exactly one weight/bias
    entry of one layer with sign +1 (so its gradient is one in-order sum over the batch)."""
    n = net.theta.size
    uses = np.zeros(n, dtype=np.int64)
    neg = np.zeros(n, dtype=bool)
    for L in net.layers:
        refs = [L.weight, L.bias] + ([L.fp.input_weight] if L.fp is not None else [])
        for r in refs:
            if r is None:
                continue
            keep = r.src >= 0
            uses += np.bincount(r.src[keep], minlength=n)
            neg[r.src[keep & (np.asarray(r.sign) < 0)]] = True
    ok = (uses == 1) & ~neg
    trainable = np.zeros(n, dtype=bool)
    trainable[net.trainable_index] = True
    return ok & trainable


def screen(s, ties) -> set:
    """{(tie key, option)} of single switches whose change of the machine AD output is *proved*
    without a backward pass per tie (issue 13: hundreds of float ties).

    A switch at tie (layer L, sample n, unit u) changes only the pre-activation cotangent of that
    sample and unit, from the convention's delta = g * d to delta' = g * d' (g: the cotangent
    arriving at the activation's output, which the choices at L and below do not touch). When layer
    L - 1 is a linear layer, the gradient of its bias entry u is the in-order machine sum over the
    batch of delta[:, u], and of its weight entry (u, j) the in-order sum of delta[:, u] * x[:, j] -
    for a parameter used in that entry alone (``_solo_entries``). Recomputing such a sum with the
    one term of sample n replaced (the prefix is the convention's own partial sum) gives that
    gradient entry of the switched run exactly, in the machine's own operations; if it differs as a
    number from the convention's, the output differs. The convention's sum is recomputed too and
    must equal the AD output's entry bit for bit (else the entry is not used). Nothing is concluded
    when no checked entry differs: those switches get a backward pass as before. Native dtypes only
    (numpy's sequential ``add.accumulate`` rounds every step in the dtype)."""
    net, MA = s.net, s.MA
    if not ties or not MA.native:
        return set()
    N = net.batch
    solo = _solo_entries(net)
    pos = np.full(net.theta.size, -1, dtype=np.int64)
    pos[net.trainable_index] = np.arange(net.trainable_index.size)
    base = np.asarray(s.base)
    by_layer: dict = {}
    for t in ties:
        by_layer.setdefault(t.layer, []).append(t)
    proved = set()
    acc = lambda col: np.add.accumulate(col, dtype=MA.dtype)  # noqa: E731 - in order, rounded each step

    for layer, ts in by_layer.items():
        if layer == 0 or layer >= len(net.layers):
            continue
        L, lin = net.layers[layer], net.layers[layer - 1]
        if L.act is None or L.op == "fixed_point" or lin.op != "linear":
            continue
        g = np.asarray(s.backward({}, at=layer + 1)).reshape(N, -1)
        delta = np.asarray(s.backward({}, at=layer)).reshape(N, -1)
        x = np.asarray(s.fw.xs[layer - 1]).reshape(N, -1)
        n_in = x.shape[1]
        sums: dict = {}  # theta index -> (terms, prefix sums) or None (not usable)

        def column(src, u, j):
            if src in sums:
                return sums[src]
            col = delta[:, u] if j is None else MA.mul(delta[:, u], x[:, j])
            pre = acc(col)
            gi = pos[src]
            ok = gi >= 0 and np.asarray(pre[-1:]).tobytes() == np.asarray(base[gi : gi + 1], dtype=MA.dtype).tobytes()  # bit for bit
            sums[src] = (col, pre, gi) if ok else None
            return sums[src]

        for t in ts:
            u, n = t.unit, t.sample
            entries = []
            if lin.bias is not None and lin.bias.src[u] >= 0 and solo[lin.bias.src[u]]:
                entries.append((int(lin.bias.src[u]), None))
            for j in np.flatnonzero(x[n] != 0)[:SCREEN_COLUMNS]:
                src = int(lin.weight.src[u * n_in + j])
                if src >= 0 and solo[src]:
                    entries.append((src, int(j)))
            for o in s.opts[t.key]:
                if not isinstance(o, str):
                    continue
                d_new = MA.mul(g[n, u], MA.const(L.act.one_sided(t.kink, o)))
                for src, j in entries:
                    hit = column(src, u, j)
                    if hit is None:
                        continue
                    col, pre, gi = hit
                    term = d_new if j is None else MA.mul(d_new, x[n, j])
                    start = term if n == 0 else MA.add(pre[n - 1], term)
                    new = acc(np.concatenate([np.atleast_1d(np.asarray(start, dtype=MA.dtype)), col[n + 1 :]]))[-1]
                    if not same(new, pre[-1]):
                        proved.add((t.key, o))
                        s.screened += 1
                        break
    return proved


def choice_sensitivity(runs, float_ties, *, max_passes: int = MAX_PASSES, time_budget_s: float = TIME_BUDGET_S) -> dict:
    """{"choice_sensitive": True / False / None, "causes": [(tie, option)], "checked_singly": ties
    decided alone, "witness": [(tie, option)] or None, "witness_ad": the machine AD output under
    the witness, "method", "passes", "reason" (when None)}."""
    out = {"choice_sensitive": False, "causes": [], "checked_singly": 0, "witness": None, "witness_ad": None, "method": "no float tie", "passes": 0, "reason": None}
    if not float_ties:
        return out
    s = _Search(runs, float_ties, max_passes, time_budget_s)
    keyed = {t.key: t for t in float_ties}
    try:
        out["causes"], out["checked_singly"] = s.causes(float_ties, MAX_SINGLE)
        if out["causes"]:
            t, o = out["causes"][0]
            out.update(choice_sensitive=True, witness=[(t, o)], witness_ad=s.backward({t.key: o}), method="single tie")
        else:
            found = s.exhaustive()
            if found is None:
                out.update(choice_sensitive=False, method="exhaustive")
            else:
                ch, ad = found
                out.update(choice_sensitive=True, witness=[(keyed[k], o) for k, o in sorted(ch.items())], witness_ad=ad, method="exhaustive")
    except _OverBudget:
        out.update(
            choice_sensitive=None,
            method="over budget",
            reason=f"choice sensitivity undecided: no single tie changes the machine AD output, and trying every class of options at the "
            f"{len(float_ties)} float ties needs more than {s.max_passes} backward passes or the {time_budget_s:.3g} s left of the time budget",
        )
    out["passes"] = s.passes
    return out
