"""Is f differentiable at w, is the AD output the gradient, is it a Clarke subderivative?

- No real tie: every op is smooth near w, f is C^1 there, all three answers are yes and the
  gradient is the exact AD output.
- Real ties: f is piecewise C^1, hence differentiable at w exactly when d -> f'(w; d) is linear,
  i.e. when every non-empty cell of the tie patterns (``cells.py``) has the same gradient.
  The limiting (Bouligand) gradients are the cell gradients; the AD output is a Clarke
  subderivative when it is a convex combination of them (certified by exact convex weights; always
  sound). "Not in the Clarke subdifferential" additionally needs the list of cells to be complete:
  first-order cells show every limiting gradient when the tie inputs are affine on each selection,
  when there is a single parameter, or when the tie functionals of every cell are linearly
  independent; otherwise the answer is ``None`` with the reason.
Never a guess: budgets exceeded and solver time-outs give ``None`` with the reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from gmpy2 import mpq

from ..encodings.errors import Undecided
from ..encodings.exact import Interval, mk
from . import directional, hinge, theorems
from .cells import DEADLINE, PROGRESS, Budget, _rat, ad_pattern_cell, affine_tie_inputs, enumerate_cells, remaining, report, sample_cells

HINGE_FROM = 3  # ties in one layer: above this many, use the hinge decomposition instead of cells
SAMPLE_FROM = 4  # this many ties or more: try sampled cells before the (exponential) enumeration
DIRECTIONAL_FROM = 24  # this many ties or more: one directional-derivative query before the cells


@dataclass
class Verdict:
    differentiable: bool | None
    ad_correct: bool | None
    ad_in_clarke: bool | None
    gradient_is_ad: bool  # the gradient equals the exact AD output
    reason: str
    gradient: list | None = None  # exact gradient when differentiable (and ties exist)
    method: str = ""
    enumeration: object = None
    clarke_weights: list | None = None  # convex weights over enumeration.cells
    separator: list | None = None  # v with v.AD > v.g for every cell
    witnesses: tuple | None = None  # (cell i, cell j) with different gradients
    limiting: list = field(default_factory=list)  # distinct cell gradients
    time_s: float = 0.0
    n_ties: int = 0
    hinge: object = None
    mu: list | None = None
    theorems: list = field(default_factory=list)  # sufficient conditions that hold
    clarke_by: str | None = None  # a theorem decided ad_in_clarke
    ad_cell: object = None  # the AD pattern's non-empty cell (the ad-pattern LP condition)
    directional: object = None  # directional.Answer (method "directional")
    clarke: object = None  # clarke.Clarke: the polynomial-region decision (docs/clarke.md)


AD_PATTERN = "ad-pattern LP: the AD output's own pattern has a non-empty cell (cf. Park-Chun-Lee Thm 8 / Algorithm 1)"


def convex_weights(points, target, timeout_ms=20000):
    """lambda >= 0, sum = 1, sum lambda_i p_i = target, or None."""
    import z3  # lazily: z3 costs start-up time and most runs never need it

    s = z3.Solver()
    s.set("timeout", timeout_ms)
    lam = [z3.Real(f"l{i}") for i in range(len(points))]
    for v in lam:
        s.add(v >= 0)
    s.add(z3.Sum(lam) == 1)
    # a coordinate where every point equals the target holds for any weights summing to 1
    for k in (k for k in range(len(target)) if any(p[k] != target[k] for p in points)):
        s.add(z3.Sum([z3.RealVal(str(p[k])) * lam[i] for i, p in enumerate(points)]) == z3.RealVal(str(target[k])))
    r = s.check()
    if r == z3.unknown:
        raise Budget(f"Z3 unknown in the Clarke LP ({s.reason_unknown()})")
    if r == z3.unsat:
        return None
    m = s.model()
    return [_rat(m.eval(v, model_completion=True)) for v in lam]


def separator(points, target, timeout_ms=20000):
    """v with v.(target - p) >= 1 for every point p (certifies target outside their hull)."""
    import z3  # lazily: z3 costs start-up time and most runs never need it

    s = z3.Solver()
    s.set("timeout", timeout_ms)
    # only coordinates where some point differs from the target take part; v is 0 elsewhere
    used = [k for k in range(len(target)) if any(p[k] != target[k] for p in points)]
    v = {k: z3.Real(f"v{k}") for k in used}
    for p in points:
        s.add(z3.Sum([z3.RealVal(str(target[k] - p[k])) * v[k] for k in used if target[k] != p[k]] or [z3.RealVal(0)]) >= 1)
    r = s.check()
    if r != z3.sat:
        raise Budget(f"no separating vector found (Z3: {r})")
    m = s.model()
    out = [mpq(0)] * len(target)
    for k, x in v.items():
        out[k] = _rat(m.eval(x, model_completion=True))
    return out


def _implicit_obstacle(runs, real_ties) -> str | None:
    """Why the verdicts do not apply to a network with fixed-point layers, or None. Off the ties,
    such a layer is smooth near w when I - D W is invertible at its fixed point (the implicit
    function theorem); a layer with a tie inside is checked by ``_decide_implicit`` (its whole
    Clarke box)."""
    layers = [L for L in runs.net.layers if L.op == "fixed_point"]
    if not layers:
        return None
    inside = {t.layer for t in real_ties if t.op == "fixed_point"}
    from .implicit import invertible_at_w

    for L in layers:
        if L.index in inside:
            continue
        why = invertible_at_w(runs, L)
        if why is not None:
            return why
    return None


def _decide_implicit(runs, ties) -> Verdict:
    from .implicit import decide_ties

    t0 = time.perf_counter()
    r = decide_ties(runs, ties)
    if "obstacle" in r:
        return Verdict(None, None, None, False, r["obstacle"], method="implicit", n_ties=len(ties))
    ad = list(runs.exact_ad())
    grads, base, en = r["gradients"], r["base"], r["enumeration"]
    common = dict(method="implicit", n_ties=len(ties), limiting=grads, time_s=time.perf_counter() - t0, enumeration=en)
    if len(grads) == 1:
        g = grads[0]
        if g == ad:
            return Verdict(True, True, True, True, f"{base}: f is differentiable and AD is the gradient", gradient=g, **common)
        if r["complete"]:
            return Verdict(True, False, False, False, f"{base}: f is differentiable, AD is not the gradient and not in the Clarke subdifferential", gradient=g, separator=separator([g], ad), **common)
        return Verdict(True, False, None, False, f"{base}: f is differentiable but AD is not the gradient; Clarke membership undecided: dependent tie functionals leave curved regions possible", gradient=g, **common)
    cg = [c.gradient for c in en.cells]
    i = next(i for i, c in enumerate(cg) if c != cg[0])
    common["witnesses"] = (0, i)
    lam = convex_weights(cg, ad)
    if lam is not None:
        return Verdict(False, False, True, False, f"{base}: f is not differentiable; AD is a convex combination of limiting gradients (Clarke)", clarke_weights=lam, **common)
    if not r["complete"]:
        return Verdict(False, False, None, False, f"{base}: f is not differentiable; AD is outside the hull of the cells found, but dependent tie functionals leave curved regions possible", **common)
    return Verdict(False, False, False, False, f"{base}: f is not differentiable and AD is not in the Clarke subdifferential", separator=separator(cg, ad), **common)


def decide(runs, real_ties, *, max_cells=4096, time_limit=60.0, deadline=None, progress=None) -> Verdict:
    """The verdicts at the real ties. Every step honours one budget: ``deadline`` (a
    time.perf_counter() value), else ``time_limit`` seconds from now (None: no limit). When it
    runs out the verdicts left are null with the reason (``cells.check_deadline``). ``progress``:
    a callable taking one line per long step."""
    t0 = time.perf_counter()
    if deadline is None and time_limit is not None:
        deadline = t0 + time_limit
    token, ptoken = DEADLINE.set(deadline), PROGRESS.set(progress)
    try:
        return _decide(runs, real_ties, max_cells, t0)
    finally:
        DEADLINE.reset(token)
        PROGRESS.reset(ptoken)


def _decide(runs, real_ties, max_cells, t0) -> Verdict:
    if runs.exact is None:
        return Verdict(None, None, None, False, runs.exact_reason or "the exact run is unavailable")
    if any(L.op == "value_iteration" for L in runs.net.layers):  # value-iteration blocks: decide/vin.py
        from .vin import implicit_ties, obstacle

        why = obstacle(runs, real_ties)
        if why is not None:
            return Verdict(None, None, None, False, why, method="implicit")
        if implicit_ties(runs.net, real_ties):
            return _decide_implicit(runs, real_ties)  # its reasons name the value-iteration blocks
        if not real_ties:
            return Verdict(True, True, True, True, "no real tie: f is smooth near w (the implicit function theorem at every value-iteration fixed point), its gradient is the exact AD output", method="smooth")
        # ties of unrolled blocks (max ties, one branch per tied action) and ordinary ties elsewhere:
        # the cells below, as for max-pool ties
    implicit = _implicit_obstacle(runs, real_ties)
    if implicit is not None:
        return Verdict(None, None, None, False, implicit, method="implicit")
    if any(t.op == "fixed_point" for t in real_ties):
        return _decide_implicit(runs, real_ties)  # with the other ties as further pattern coordinates
    if not real_ties:
        return Verdict(True, True, True, True, "no real tie: f is smooth near w, its gradient is the exact AD output", method="smooth")
    try:
        v = _decide_ties(runs, real_ties, max_cells)
    except Budget as exc:
        v = Verdict(None, None, None, False, f"{len(real_ties)} real tie(s): {exc}")
    try:
        v.theorems = theorems.check(runs.net, runs.proxies, real_ties, runs.exact_full())
    except Undecided:
        v.theorems = theorems.check(runs.net, runs.proxies, real_ties)
    if not _transcendental(runs.net):
        try:
            en = v.enumeration  # the sampled cells may hold the AD pattern's cell already
            c = en.cells[en.ad_index] if en is not None and en.ad_index is not None else ad_pattern_cell(runs, runs.exact_full(), real_ties, timeout_ms=_ms(20.0))
            if c is not None and c.gradient == list(runs.exact_ad()):
                v.theorems.append(AD_PATTERN)
                v.ad_cell = c
        except (Budget, Undecided):
            pass
    if v.ad_in_clarke is None and v.theorems:
        v.ad_in_clarke = True
        v.clarke_by = v.theorems[0]
        v.reason += f"; AD is a Clarke subderivative by {v.theorems[0]}"
    if v.ad_in_clarke is None and v.differentiable is not None:
        _decide_clarke(runs, real_ties, v, remaining())
    v.time_s = time.perf_counter() - t0
    v.n_ties = len(real_ties)
    return v


def _decide_clarke(runs, ties, v, time_left) -> None:
    """Clarke membership through the patterns' polynomial regions (clarke.py): arcs for "yes",
    emptiness proofs for "no", when the first-order cells left it open."""
    from . import clarke

    if _transcendental(runs.net) or not clarke.applies(runs.net) or any(t.op == "fixed_point" for t in ties):
        return
    try:
        fw = runs.exact_full()
        ad = list(runs.exact_ad())
    except Undecided:
        return
    if time_left <= 0:
        v.reason += "; the time limit ran out before the polynomial regions were examined"
        return
    c = clarke.decide(runs, fw, ties, ad, convex_weights, separator, time_limit=time_left)
    v.clarke = c
    if c.answer is None:
        v.reason += f"; the polynomial regions left it open: {c.reason}"
        return
    v.ad_in_clarke = c.answer
    if c.answer is False:
        v.separator = c.separator  # it separates every cell too: each cell's ray enters a pattern shown active or separated
    v.reason += f"; Clarke membership decided on the patterns' polynomial regions: {c.reason}"


def _transcendental(net) -> bool:
    return net.loss.op == "cross_entropy" or any(L.act is not None and L.act.transcendental for L in net.layers)


def _ce_only(net) -> bool:
    """Cross-entropy is the only transcendental op: every tie functional and every cell Jacobian
    is rational; only the loss seed (softmax - onehot) is not."""
    return net.loss.op == "cross_entropy" and not any(L.act is not None and L.act.transcendental for L in net.layers)


def _decide_ties(runs, real_ties, max_cells, time_limit=None) -> Verdict:
    if time_limit is not None and DEADLINE.get() is None:  # called alone (tests): its own budget
        token = DEADLINE.set(time.perf_counter() + time_limit)
        try:
            return _decide_ties(runs, real_ties, max_cells)
        finally:
            DEADLINE.reset(token)
    if _ce_only(runs.net) and runs.exact is not None:
        try:
            return _decide_ce(runs, real_ties)
        except (Budget, Undecided) as exc:
            return Verdict(None, None, None, False, f"real ties under a cross-entropy loss: {exc}")
    if _transcendental(runs.net):
        # the cell gradients are not rational: equalities cannot be decided (do not compute them)
        return Verdict(None, None, None, False, "real ties in a network with transcendental ops (sigmoid, tanh or cross_entropy): the AD output and cell gradients are not rational, so equalities cannot be decided")
    try:
        fw = runs.exact_full()
        ad = list(runs.exact_ad())
    except Undecided as exc:
        return Verdict(None, None, None, False, f"exact evaluation undecided: {exc}")
    if any(isinstance(v, Interval) for v in ad):
        return Verdict(None, None, None, False, "real ties in a network with transcendental ops (sigmoid, tanh or cross_entropy): the AD output and cell gradients are not rational, so equalities cannot be decided")
    if hinge.applies(runs.net, real_ties) and len(real_ties) > HINGE_FROM:
        report(f"{len(real_ties)} real ties: hinge decomposition")
        v = _decide_hinge(runs, fw, real_ties, ad)
        if v is not None:
            return v
    dirv = None
    if DIRECTIONAL_FROM is not None and len(real_ties) >= DIRECTIONAL_FROM and directional.applies(runs.net):
        report(f"{len(real_ties)} real ties: directional derivative")
        dirv = _decide_directional(runs, fw, real_ties, ad)
        if dirv.differentiable is True and dirv.ad_in_clarke is not None:
            return dirv
        if dirv.differentiable is None:
            dirv = None
    sampled = None
    if SAMPLE_FROM is not None and len(real_ties) >= SAMPLE_FROM:
        report(f"{len(real_ties)} real ties: sampled cells")
        try:
            sampled = _decide_sampled(runs, fw, real_ties, ad)
        except (Budget, Undecided):
            sampled = None
        if sampled is not None and sampled.ad_in_clarke is True and sampled.differentiable is False:
            return sampled
    report(f"{len(real_ties)} real ties: cell enumeration")
    try:
        en = enumerate_cells(runs, fw, real_ties, max_cells=max_cells, time_limit=remaining(), timeout_ms=_ms(20.0))
    except Budget as exc:
        if dirv is not None:
            dirv.reason += f"; the cell enumeration (for Clarke membership) stopped: {exc}"
            return dirv
        if sampled is not None and (sampled.differentiable is not None or sampled.ad_in_clarke is not None):
            sampled.reason += f"; the full enumeration stopped: {exc}"
            return sampled
        return Verdict(None, None, None, False, f"{len(real_ties)} real tie(s): cell enumeration stopped: {exc}")
    except Undecided as exc:
        return Verdict(None, None, None, False, f"exact evaluation undecided: {exc}")
    grads = []
    for c in en.cells:
        if c.gradient not in grads:
            grads.append(c.gradient)
    base = f"{len(real_ties)} real tie(s), {len(en.cells)} cell(s), {len(en.pruned)} empty pattern(s)"
    if len(grads) == 1:
        g = grads[0]
        correct = g == ad
        if correct:
            clarke, reason = True, f"{base}: f'(w;.) is linear, f is differentiable and AD is its gradient"
        elif en.degenerate:
            clarke, reason = None, f"{base}: f is differentiable but AD is not the gradient; Clarke membership undecided: {'; '.join(en.degenerate)}"
        else:
            clarke, reason = False, f"{base}: f is differentiable, AD is not the gradient and not in the Clarke subdifferential {{gradient}}"
        v = Verdict(True, correct, clarke, correct, reason, gradient=g, method="cells", enumeration=en, limiting=grads)
        if clarke is False:
            v.separator = separator([g], ad)
        return v
    # not differentiable
    i = next(k for k, c in enumerate(en.cells) if c.gradient == grads[0])
    j = next(k for k, c in enumerate(en.cells) if c.gradient == grads[1])
    try:
        lam = convex_weights([c.gradient for c in en.cells], ad, timeout_ms=_ms(20.0))
    except Budget as exc:
        return Verdict(False, False, None, False, f"{base}: not differentiable; Clarke membership undecided: {exc}", method="cells", enumeration=en, witnesses=(i, j), limiting=grads)
    if lam is not None:
        return Verdict(False, False, True, False, f"{base}: f is not differentiable; AD is a convex combination of limiting gradients (Clarke)", method="cells", enumeration=en, witnesses=(i, j), clarke_weights=lam, limiting=grads)
    if en.degenerate:
        return Verdict(False, False, None, False, f"{base}: not differentiable; AD is outside the hull of the cells found, but the list may miss cusp regions: {'; '.join(en.degenerate)}", method="cells", enumeration=en, witnesses=(i, j), limiting=grads)
    sep = separator([c.gradient for c in en.cells], ad)
    return Verdict(False, False, False, False, f"{base}: f is not differentiable and AD is not in the Clarke subdifferential", method="cells", enumeration=en, witnesses=(i, j), separator=sep, limiting=grads)


def _ms(cap_s: float) -> int:
    """A solver time-out in ms: at most ``cap_s`` seconds and what is left of the budget (>= 1)."""
    return max(1, int(1000 * remaining(cap_s)))


def _decide_directional(runs, fw, ties, ad) -> Verdict:
    """Differentiability by one query on the exact directional derivative (directional.py). Clarke
    membership only where it follows: AD = gradient (True); AD != gradient with first-order cells
    complete - one parameter or affine tie inputs - so that the Clarke set is {gradient} (False)."""
    a = directional.decide(runs, fw, ties, timeout_s=remaining(30.0))
    how = "exact rewriting of the one-sided rules" if a.solver == "exact rewriting" else f"one query ({a.solver})" if a.smtlib else f"a direction found by {a.solver}"
    base = f"{len(ties)} real tie(s), directional derivative f'(w;.) decided by {how}"
    if a.differentiable is None:
        return Verdict(None, None, None, False, f"{base}: {a.reason}", method="directional", directional=a)
    if a.differentiable is False:
        return Verdict(False, False, None, False, f"{base}: f'(w;.) is not linear, f is not differentiable", method="directional", directional=a)
    g = list(a.gradient)
    if g == ad:
        return Verdict(True, True, True, True, f"{base}: f'(w;.) is linear, f is differentiable and AD is its gradient", gradient=g, method="directional", directional=a)
    if runs.net.n_grad <= 1 or affine_tie_inputs(runs.net, upto=max(t.layer for t in ties)):
        v = Verdict(True, False, False, False, f"{base}: f is differentiable, AD is not the gradient and not in the Clarke subdifferential {{gradient}}", gradient=g, method="directional", directional=a)
        v.separator = separator([g], ad)
        return v
    return Verdict(True, False, None, False, f"{base}: f is differentiable but AD is not the gradient", gradient=g, method="directional", directional=a)


def _decide_hinge(runs, fw, ties, ad):
    h = hinge.solve(runs, fw, ties)
    if h is None:
        return None
    base = f"{len(ties)} real tie(s) in one layer, {len(h.lines)} hinge line(s), {sum(1 for ln in h.lines if ln[2] != 0)} active"
    complete = hinge.complete_for_clarke_no(runs.net, h, upto=max(t.layer for t in ties))
    if h.differentiable:
        g = h.gradient
        if g == ad:
            return Verdict(True, True, True, True, f"{base}: f'(w;.) is linear, f is differentiable and AD is its gradient", gradient=g, method="hinge", hinge=h)
        clarke = False if complete else None
        why = "not in the Clarke subdifferential {gradient}" if complete else "Clarke membership undecided (parallel tie functionals with non-affine inputs may hide cusp regions)"
        return Verdict(True, False, clarke, False, f"{base}: f is differentiable, AD is not the gradient; {why}", gradient=g, method="hinge", hinge=h)
    if not h.independent:
        return None  # dependent hinge lines: enumerate the cells instead
    mu = hinge.zonotope_coordinates(h, ad)
    if mu is not None and all(0 <= m <= 1 for m in mu):
        return Verdict(False, False, True, False, f"{base}: f is not differentiable; AD is in the zonotope of limiting gradients (Clarke)", method="hinge", hinge=h, mu=mu)
    if complete:
        return Verdict(False, False, False, False, f"{base}: f is not differentiable and AD is not in the Clarke subdifferential", method="hinge", hinge=h, mu=mu)
    return Verdict(False, False, None, False, f"{base}: f is not differentiable; Clarke membership undecided (parallel tie functionals with non-affine inputs)", method="hinge", hinge=h, mu=mu)


def _decide_sampled(runs, fw, ties, ad):
    """The cheap half: a few cells with witnesses (the AD pattern's own cell, random directions).
    Two different gradients prove "not differentiable"; convex weights over the sampled cells prove
    "AD is a Clarke subderivative". Anything else needs the complete enumeration; the partial
    verdict returned here is the fallback when that enumeration runs out of budget."""
    en = sample_cells(runs, fw, ties, time_limit=remaining(10.0), timeout_ms=_ms(20.0))
    if not en.cells:
        return None
    grads = []
    for c in en.cells:
        if c.gradient not in grads:
            grads.append(c.gradient)
    base = f"{len(ties)} real tie(s), {len(en.cells)} sampled cell(s) with witnesses"
    lam = convex_weights([c.gradient for c in en.cells], ad, timeout_ms=_ms(20.0))
    if len(grads) >= 2:
        i = next(k for k, c in enumerate(en.cells) if c.gradient == grads[0])
        j = next(k for k, c in enumerate(en.cells) if c.gradient == grads[1])
        if lam is not None:
            return Verdict(False, False, True, False, f"{base}: f is not differentiable (two cells with different gradients); AD is a convex combination of limiting gradients (Clarke)", method="sampled-cells", enumeration=en, witnesses=(i, j), clarke_weights=lam, limiting=grads)
        return Verdict(False, False, None, False, f"{base}: f is not differentiable (two cells with different gradients); Clarke membership needs the complete list of cells", method="sampled-cells", enumeration=en, witnesses=(i, j), limiting=grads)
    if lam is not None:
        return Verdict(None, None, True, False, f"{base}: AD is the gradient of a non-empty cell (a limiting gradient, so Clarke); differentiability needs the complete list of cells", method="sampled-cells", enumeration=en, clarke_weights=lam, limiting=grads)
    return None


def _lohi(v):
    return (v.lo, v.hi) if isinstance(v, Interval) else (v, v)


def _separated(g, h) -> int | None:
    """A coordinate where the enclosures of g and h are disjoint (so g != h for certain), or None."""
    for k, (a, b) in enumerate(zip(g, h)):
        (alo, ahi), (blo, bhi) = _lohi(a), _lohi(b)
        if ahi < blo or bhi < alo:
            return k
    return None


CE_FULL_GRADIENTS = 200_000  # params x batch: above this, no full enclosed gradients under cross-entropy


def _coarse_seed(runs, fw, n, bits=64):
    """The loss seed (softmax - onehot, scaled) of sample n only, every enclosure widened outwards to
    end points on the 2^-bits grid (other samples' rows are 0: u at sample n does not depend on
    them). Still an enclosure, with small integers for the exact matmuls."""
    import gmpy2

    from ..encodings import program as P

    net = runs.net
    out = fw.out.reshape(net.batch, -1)
    seed = P._loss_seed(net, fw.A, fw, out, runs.proxies, P.Choice(), net.batch)
    seed = np.array(seed, dtype=object).reshape(net.batch, -1)
    scale = mpq(2) ** bits
    res = np.empty(seed.shape, dtype=object)
    res.fill(mpq(0))
    for k, v in enumerate(seed[n]):
        lo, hi = _lohi(v)
        res[n, k] = mk(mpq(gmpy2.floor(lo * scale)) / scale, mpq(gmpy2.ceil(hi * scale)) / scale) if lo != hi else lo
    return res.reshape(fw.out.shape)


def _one_tie_apart(runs, fw, cells):
    """Two cells whose patterns differ at exactly one tie k (a branching tie, so its functional is
    not zero) and whose gradients certainly differ, or None. Their gradients differ by
    delta * u * a: delta = the jump of k's derivative (right - left; for a max-pool tie the two
    entries' functionals differ instead), a = k's tangent functional (non-zero) and u = the
    cotangent at k's output, the same in both cells (only ties after k feed it, and those agree).
    So they differ exactly when u != 0, decided by u's enclosure: one partial backward pass, no
    parameter gradient."""
    from ..encodings import program as P

    for i in range(len(cells)):
        for j in range(i):
            diff = [k for k in cells[i].choices if cells[i].choices[k] != cells[j].choices[k]]
            if len(diff) != 1:
                continue
            layer, n, unit = diff[0]
            g = P.backward(runs.net, fw.A, fw, runs.proxies, choose=dict(cells[i].choices), cotangent_at=layer + 1, seed=(len(runs.net.layers), _coarse_seed(runs, fw, n)))
            u = g.reshape(runs.net.batch, -1)[n, unit]
            lo, hi = _lohi(u)
            if lo > 0 or hi < 0:
                return (j, i)
    return None


def _decide_ce(runs, ties) -> Verdict:
    """Real ties under a cross-entropy loss with piecewise-linear layers. Tie functionals are
    rational (they never reach the loss), so cells and witnesses are exact; cell gradients are
    J_cell^T s with a rational Jacobian and the transcendental seed s = softmax - onehot, enclosed
    in intervals. Decided:
    - not differentiable: two cells whose gradient enclosures are disjoint in some coordinate;
    - AD is a Clarke subderivative: the AD output's own pattern has a non-empty cell. Its choices
      use the proxies' values at every tie with a non-zero functional (and a tie with a zero
      functional contributes nothing), so that cell's gradient IS the AD output - the same
      computation - without comparing transcendental numbers.
    Equalities of different cells' gradients (differentiable; AD not in Clarke) are not decided."""
    fw = runs.exact_full()
    en = sample_cells(runs, fw, ties, gradients=False)
    ad_cell = en.cells[en.ad_index] if en.ad_index is not None else None
    pair = _one_tie_apart(runs, fw, en.cells)
    if pair is None and runs.net.n_grad * runs.net.batch <= CE_FULL_GRADIENTS:
        from ..encodings import program as P

        for c in en.cells:
            c.gradient = list(P.backward(runs.net, fw.A, fw, runs.proxies, choose=dict(c.choices)))
        for i in range(len(en.cells)):
            for j in range(i):
                if _separated(en.cells[i].gradient, en.cells[j].gradient) is not None:
                    pair = (j, i)
                    break
            if pair:
                break
    base = f"{len(ties)} real tie(s) under cross-entropy, {len(en.cells)} sampled cell(s)"
    parts = []
    diff = correct = clarke = None
    if pair is not None:
        diff, correct = False, False
        parts.append("f is not differentiable (two cells with certainly different gradients)")
    else:
        parts.append("differentiability undecided (gradients through softmax are transcendental: equal-looking cell gradients cannot be proved equal)")
    if ad_cell is not None:
        clarke = True
        parts.append("AD is the gradient of its own non-empty cell, a limiting gradient (Clarke)")
    else:
        parts.append("Clarke membership undecided (the AD pattern has no cell; hulls of transcendental gradients are not decided)")
    v = Verdict(diff, correct, clarke, False, f"{base}: " + "; ".join(parts), method="sampled-cells (cross-entropy)", enumeration=en, witnesses=pair)
    v.ad_cell = ad_cell
    return v
