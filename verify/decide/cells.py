"""The cells of the directional derivative d -> f'(w; d) at a point with real ties.

f is piecewise C^1, so f'(w; d) is a piecewise-linear function of d that only the tied units make
non-linear: an elementwise tie uses its left or right derivative by the sign of its input tangent
a.d; a max-pool tie passes the largest tangent of its tied entries (so does a max tie between
actions in an unrolled value-iteration block: the largest tangent of the tied Q values); an l1 residual tie uses the
sign of the residual's tangent. A *pattern* fixes every tie's choice; its *cell* is the open cone of
directions d where the tangents have those signs strictly: a set of strict linear inequalities
c.d > 0. On a non-empty cell, f'(w; d) = g . d with g the gradient of that pattern's selection
(a backward pass with the one-sided derivatives of the pattern).

The ties are processed in layer order (a tie's tangent functional depends only on the choices at
ties in earlier layers of the same sample); a depth-first search branches on each tie's choices
and prunes empty cells with an exact LP (Z3 over the reals). Every branch is justified:
- a non-empty cell by a rational witness direction d with every c.d >= 1;
- an empty one by Gordan multipliers y >= 0, sum(y) = 1, sum_k y_k c_k = 0 (no d has all c.d > 0);
- a tie whose tangent functional is identically zero (for max-pool: entries with equal functionals)
  has no branch: every choice gives the same tangent.
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass, field

import numpy as np
from gmpy2 import mpq

from ..encodings import program as P
from .linalg import is_zero, rank, sub


class Budget(Exception):
    """The enumeration exceeded its budget (cells, time or a solver time-out)."""


# The decision's deadline (a time.perf_counter() value; None: none). ``decide`` sets it for the
# duration of one decision; the per-tie primitives check it, so every long loop over ties stops
# with ``Budget`` once the verify budget is spent (a context variable: safe across threads).
DEADLINE: contextvars.ContextVar = contextvars.ContextVar("kinkcheck_decide_deadline", default=None)


def check_deadline(what: str) -> None:
    """Raise ``Budget`` when the decision's deadline has passed."""
    dl = DEADLINE.get()
    if dl is not None and time.perf_counter() > dl:
        raise Budget(f"the time limit ran out during {what}")


# Progress of the running decision: a callable taking one line (None: silent); set by ``decide``.
PROGRESS: contextvars.ContextVar = contextvars.ContextVar("kinkcheck_decide_progress", default=None)


def report(stage: str) -> None:
    """Tell the caller's progress callback (if any) which step is running."""
    cb = PROGRESS.get()
    if cb is not None:
        cb(stage)


def remaining(cap: float | None = None) -> float:
    """Seconds left before the decision's deadline (at most ``cap``; inf without both)."""
    dl = DEADLINE.get()
    left = float("inf") if dl is None else max(0.0, dl - time.perf_counter())
    return left if cap is None else min(cap, left)


@dataclass
class Branch:
    choice: object  # 'left' / 'right' / window position of the max entry / the tied action (value iteration)
    constraints: list  # list of vectors c (the branch needs c.d > 0)


@dataclass
class TieInfo:
    tie: P.Tie
    kind: str  # "act" | "pool" (max-pool or unrolled value-iteration max: one branch per group) | "l1"
    functionals: dict  # "a" -> vector, or window position -> vector (pool)
    branches: list
    zero: bool  # degenerate: every choice gives the same tangent


@dataclass
class Cell:
    choices: dict  # tie key -> choice
    witness: list  # rational direction strictly inside
    gradient: list  # exact gradient of the pattern's selection
    constraints: list = field(default_factory=list)
    zero_ties: list = field(default_factory=list)  # ties with no branch on this cell's path


@dataclass
class Pruned:
    choices: dict  # the prefix (tie key -> choice) whose cell is empty
    constraints: list
    multipliers: list  # Gordan certificate


@dataclass
class Enumeration:
    cells: list
    pruned: list
    ties: list  # TieInfo per tie, for the last visited prefix (for reporting)
    order: list  # tie keys in processing order
    degenerate: list  # reasons why the first-order cells may miss cusp-shaped regions
    zero_ties: list
    n_params: int
    time_s: float = 0.0
    complete: bool = True  # False: a sample of the cells (sound for "not differentiable" and "Clarke")
    ad_index: int | None = None  # sampled: the index of the AD pattern's own cell, if non-empty


def _onehot(net, fw, layer, sample, unit):
    x = fw.xs[layer]
    g = fw.A.zeros(x.shape)
    g.reshape(x.shape[0], -1)[sample, unit] = mpq(1)
    return (layer, g)


def functional(runs, fw, layer, sample, unit, choose):
    """Gradient over the trainable params of the value entering ``layer`` at (sample, unit)."""
    check_deadline("the tie functionals")
    net = runs.net
    return list(P.backward(net, fw.A, fw, runs.proxies, choose=choose, seed=_onehot(net, fw, layer, sample, unit)))


def q_functional(runs, fw, t: P.Tie, action, choose):
    """Gradient over the trainable params of Q_action at the (step, state) of an unrolled
    value-iteration tie ``t`` (unit = step index * S + state)."""
    check_deadline("the tie functionals")
    net = runs.net
    sol = fw.fp[t.layer]
    N, S, nA = sol.steps[0][2].shape
    k, st = divmod(t.unit, S)
    h = fw.A.zeros((N, S, nA))
    h[t.sample, st, action] = mpq(1)
    return list(P.backward(net, fw.A, fw, runs.proxies, choose=choose, seed=("vi_q", t.layer, k, h)))


def tie_info(runs, fw, t: P.Tie, choose) -> TieInfo:
    net = runs.net
    if t.op in ("maxpool1d", "maxpool2d", "value_iteration"):
        funcs = {}
        if t.op == "value_iteration":  # an unrolled block's max over the tied actions: one branch per action
            if net.layers[t.layer].vi.method != "unroll":
                raise ValueError(f"layer {t.layer}: ties of an iterated value-iteration block are decided by the implicit method")
            for a in t.entries:
                funcs[a] = q_functional(runs, fw, t, a, choose)
        else:
            window = list(P.pool_index(net.layers[t.layer])[t.unit])
            for flat in t.entries:
                funcs[window.index(flat)] = functional(runs, fw, t.layer, t.sample, flat, choose)
        # group entries with identical functionals: they are interchangeable
        groups = []
        for pos, a in funcs.items():
            for gr in groups:
                if funcs[gr[0]] == a:
                    gr.append(pos)
                    break
            else:
                groups.append([pos])
        reps = [gr[0] for gr in groups]
        if len(reps) == 1:
            return TieInfo(t, "pool", funcs, [Branch(reps[0], [])], True)
        branches = [Branch(r, [sub(funcs[r], funcs[o]) for o in reps if o != r]) for r in reps]
        return TieInfo(t, "pool", funcs, branches, False)
    if t.op == "l1":
        a = functional(runs, fw, len(net.layers), t.sample, t.unit, choose)
        kind = "l1"
    else:
        a = functional(runs, fw, t.layer, t.sample, t.unit, choose)
        kind = "act"
    if is_zero(a):
        return TieInfo(t, kind, {"a": a}, [Branch("left", [])], True)
    return TieInfo(t, kind, {"a": a}, [Branch("left", [[-v for v in a]]), Branch("right", [a])], False)


# ----------------------------------------------------------------------------------------------
# exact LP through Z3


def _rat(v) -> mpq:
    f = v.as_fraction()
    return mpq(f.numerator, f.denominator)


def feasible(constraints, n, timeout_ms):
    """A rational d with c.d >= 1 for every c, or None if none exists. Raises Budget on unknown."""
    import z3  # lazily: z3 costs start-up time and most runs never need it

    if not constraints:
        return [mpq(0)] * n
    # cheap try first: the sum of the constraint vectors (always works for one constraint or
    # pairwise non-obtuse ones); exact, so a success is a valid witness
    guess = [sum((c[i] for c in constraints), mpq(0)) for i in range(n)]
    vals = [_dot(c, guess) for c in constraints]
    if all(v > 0 for v in vals):
        m = min(vals)
        return [x / m for x in guess]
    s = z3.Solver()
    s.set("timeout", int(timeout_ms))
    used = sorted({i for c in constraints for i, v in enumerate(c) if v != 0})  # d is 0 elsewhere
    d = {i: z3.Real(f"d{i}") for i in used}
    for c in constraints:
        terms = [z3.RealVal(str(c[i])) * d[i] for i in used if c[i] != 0]
        s.add(z3.Sum(terms) >= 1 if terms else z3.BoolVal(False))
    r = s.check()
    if r == z3.unknown:
        raise Budget(f"Z3 answered unknown ({s.reason_unknown()})")
    if r == z3.unsat:
        return None
    m = s.model()
    out = [mpq(0)] * n
    for i, x in d.items():
        out[i] = _rat(m.eval(x, model_completion=True))
    return out


def opposed(constraints):
    """Gordan multipliers in closed form when two constraints are opposite rays (c_j = -lambda c_i,
    lambda > 0) or one is zero, else None. Checked on the newest constraints first."""
    m = len(constraints)
    for j in range(m - 1, -1, -1):
        cj = constraints[j]
        nz = [(k, v) for k, v in enumerate(cj) if v != 0]
        if not nz:
            y = [mpq(0)] * m
            y[j] = mpq(1)
            return y
        k0, v0 = nz[0]
        for i in range(j):
            ci = constraints[i]
            if ci[k0] == 0 or (ci[k0] > 0) == (v0 > 0):
                continue
            lam = -mpq(v0) / ci[k0]  # > 0; opposite rays when c_j = -lam * c_i
            if all(-a * lam == b for a, b in zip(ci, cj)):
                y = [mpq(0)] * m
                y[i], y[j] = lam / (1 + lam), 1 / (1 + lam)
                return y
    return None


def gordan(constraints, n, timeout_ms):
    """y >= 0 with sum(y) = 1 and sum_k y_k c_k = 0 (certifies that no d has all c.d > 0)."""
    import z3  # lazily: z3 costs start-up time and most runs never need it

    s = z3.Solver()
    s.set("timeout", int(timeout_ms))
    y = [z3.Real(f"y{k}") for k in range(len(constraints))]
    for v in y:
        s.add(v >= 0)
    s.add(z3.Sum(y) == 1)
    for i in range(n):
        terms = [z3.RealVal(str(c[i])) * y[k] for k, c in enumerate(constraints) if c[i] != 0]
        if terms:
            s.add(z3.Sum(terms) == 0)
    r = s.check()
    if r != z3.sat:
        raise Budget(f"no Gordan certificate found (Z3: {r})")
    m = s.model()
    return [_rat(m.eval(v, model_completion=True)) for v in y]


# ----------------------------------------------------------------------------------------------


def enumerate_cells(runs, fw, ties, *, max_cells=4096, time_limit=60.0, timeout_ms=20000) -> Enumeration:
    """All non-empty cells of f'(w; .), each with a witness and a gradient, and the empty prefixes
    with their Gordan certificates."""
    t0 = time.perf_counter()
    net = runs.net
    n = net.n_grad
    order = sorted(ties, key=lambda t: (t.layer, t.sample, t.unit))
    cells, pruned, zero_ties = [], [], set()
    infos_seen: dict = {}

    def inside(cons, d):
        return d is not None and all(_dot(c, d) > 0 for c in cons)

    def visit(i, choose, constraints, zeros, d):
        if time.perf_counter() - t0 > time_limit:
            raise Budget(f"the time limit ran out after {len(cells)} cells")
        if i == len(order):
            if not inside(constraints, d):
                d = feasible(constraints, n, timeout_ms)
            assert d is not None
            g = list(P.backward(net, fw.A, fw, runs.proxies, choose=dict(choose)))
            cells.append(Cell(dict(choose), d, g, [list(c) for c in constraints], list(zeros)))
            if len(cells) > max_cells:
                raise Budget(f"more than {max_cells} cells")
            return
        t = order[i]
        info = tie_info(runs, fw, t, dict(choose))
        infos_seen[t.key] = info
        if info.zero:
            zero_ties.add(t.key)
        for br in info.branches:
            cons = constraints + br.constraints
            ch = dict(choose)
            ch[t.key] = br.choice
            wd = d
            if br.constraints and not inside(br.constraints, d):
                y = opposed(cons)  # c and -lambda*c both required: empty without an LP
                wd = None if y is not None else feasible(cons, n, timeout_ms)  # the parent's witness is not in this branch
                if wd is None:
                    pruned.append(Pruned(ch, [list(c) for c in cons], y if y is not None else gordan(cons, n, timeout_ms)))
                    continue
            visit(i + 1, ch, cons, zeros + ([t.key] if info.zero else []), wd)

    visit(0, {}, [], [], [mpq(0)] * n)
    degenerate = _degeneracy(runs, order, cells, infos_seen, zero_ties)
    return Enumeration(
        cells=cells,
        pruned=pruned,
        ties=list(infos_seen.values()),
        order=[t.key for t in order],
        degenerate=degenerate,
        zero_ties=sorted(zero_ties),
        n_params=n,
        time_s=time.perf_counter() - t0,
    )


def affine_tie_inputs(net, upto: int | None = None) -> bool:
    """True when every tie's argument is an affine function of the trainable params on each
    selection (so the cells of first order are exactly the regions near w, no cusps): among the
    layers before ``upto`` (the last real tie's layer; None: every layer, as for a loss tie), no
    layer with trainable weights sees an input that depends on trainable params, and no op between
    the first trainable layer and ``upto`` has a non-affine piece. Layers after the last tie do not
    matter: they change no tie's argument, and on each selection f is smooth whatever they are."""
    first = None
    if any(L.op == "value_iteration" for L in net.layers[: None if upto is None else upto + 1]):
        return False  # Q_k multiplies T by values that depend on T (and V* is rational in the params)
    for L in net.layers[:upto]:
        if L.op == "fixed_point":
            return False  # z* is a rational, not affine, function of the layer's inputs and params
        trainable_w = L.weight is not None and _has_trainable(net, L.weight)
        trainable_b = L.bias is not None and _has_trainable(net, L.bias)
        if trainable_w and first is not None:
            return False
        if (trainable_w or trainable_b) and first is None:
            first = L.index
        if first is not None and L.act is not None and L.act.name in ("hardswish", "sigmoid", "tanh"):
            return False
        if first is not None and L.op == "avgpool2d":
            pass  # linear
    return True


def _has_trainable(net, ref) -> bool:
    src = ref.src[ref.src >= 0]
    if src.size == 0:
        return False
    trainable = np.zeros(net.theta.size, dtype=bool)
    trainable[net.trainable_index] = True
    return bool(trainable[src].any())


def _degeneracy(runs, order, cells, infos, zero_ties) -> list:
    """Reasons why first-order cells might not show every limiting gradient (empty list: they do)."""
    net = runs.net
    if net.n_grad <= 1:
        return []  # in one dimension the two half-lines are all there is
    if affine_tie_inputs(net, upto=max((t.layer for t in order), default=None)):
        return []  # tie inputs are affine on each selection: the regions are exactly the cells
    # Ties with an identically zero functional add no reason: their choice changes neither any
    # gradient at w nor any other tie's functional (both multiply the zero functional), so whatever
    # their sign does near w at higher order, it selects no new gradient. Cusp regions can only
    # come from the non-zero functionals, and only when those are dependent in some cell (else
    # every sign pattern is already a first-order cell).
    reasons = []
    for c in cells:
        vecs = c.constraints
        if vecs and rank(vecs) < len(vecs):
            reasons.append("dependent tie functionals in a cell (cusp-shaped regions invisible to first order are possible)")
            break
    return reasons


# ----------------------------------------------------------------------------------------------
# sampled cells: the cheap half of the decision


def ad_sides(runs, t: P.Tie):
    """The branch the AD output takes at tie ``t`` when its proxy is one of the one-sided
    derivatives ('left' / 'right'; for a max-pool tie with first/last tie-break, the window
    position), else None (a proxy strictly between the sides, or split)."""
    net, prox = runs.net, runs.proxies
    if t.op == "value_iteration":  # the framework's max backward: the first tied action
        return t.entries[0]
    if t.op in ("maxpool1d", "maxpool2d"):
        rule = prox.ties[t.layer]
        if rule not in ("first", "last"):
            return None
        window = list(P.pool_index(net.layers[t.layer])[t.unit])
        pos = sorted(window.index(e) for e in t.entries)
        return pos[0] if rule == "first" else pos[-1]
    if t.op == "l1":
        act, v = P._abs(), prox.kinks["loss"][t.kink]
    else:
        act, v = net.layers[t.layer].act, prox.kinks[t.layer][t.kink]
    v = mpq(v)
    for side in ("left", "right"):
        if act.one_sided(t.kink, side) == v:
            return side
    return None


class _Walker:
    """Tie functionals under a prefix of choices, cached (one backward pass per new prefix)."""

    def __init__(self, runs, fw, ties):
        self.runs, self.fw = runs, fw
        self.order = sorted(ties, key=lambda t: (t.layer, t.sample, t.unit))
        self.cache: dict = {}

    def info(self, i, choose) -> TieInfo:
        t = self.order[i]
        key = (i, tuple(choose.get(u.key) for u in self.order[:i]))
        if key not in self.cache:
            self.cache[key] = tie_info(self.runs, self.fw, t, dict(choose))
        return self.cache[key]

    def cell(self, choose):
        """The gradient of the pattern's selection (an exact backward pass with its choices)."""
        return list(P.backward(self.runs.net, self.fw.A, self.fw, self.runs.proxies, choose=dict(choose)))

    def walk(self, select):
        """Walk the ties in order; ``select(tie, info)`` gives the branch to take at each tie with a
        non-zero functional (ties with a zero one have a single branch). Returns (choices,
        constraints, zero ties), or None as soon as ``select`` gives None."""
        choose, cons, zeros = {}, [], []
        for i, t in enumerate(self.order):
            info = self.info(i, choose)
            if info.zero:
                choose[t.key] = info.branches[0].choice
                zeros.append(t.key)
                continue
            br = select(t, info)
            if br is None:
                return None
            choose[t.key] = br.choice
            cons += br.constraints
        return choose, cons, zeros

    def follow(self, d):
        """The cell containing direction d, or None when d lies on a cell boundary (some tie's
        tangent does not pick a branch strictly)."""

        def strict(t, info):
            hit = [br for br in info.branches if all(_dot(c, d) > 0 for c in br.constraints)]
            return hit[0] if len(hit) == 1 else None

        return self.walk(strict)

    def pattern(self, pick):
        """The pattern that takes branch ``pick(tie)`` at every tie (None: no such pattern, e.g. a
        proxy between the sides). A max-pool choice names a window position; the branch is the
        group of entries with that entry's functional."""

        def chosen(t, info):
            want = pick(t)
            if want is None:
                return None
            if info.kind == "pool":
                return next((b for b in info.branches if b.choice == want or info.functionals[b.choice] == info.functionals.get(want)), None)
            return next(b for b in info.branches if b.choice == want)

        return self.walk(chosen)


def _dot(c, d):
    return sum((a * b for a, b in zip(c, d) if a != 0), mpq(0))


def sample_cells(runs, fw, ties, *, n_random=6, seed=0, timeout_ms=20000, time_limit=10.0, gradients=True) -> Enumeration:
    """Some non-empty cells, each with a witness and its gradient: the cell of the AD output's own
    pattern when its proxies are one-sided derivatives (one exact LP), and the cells of a few
    random integer directions (no LP: the direction is its own witness). Sound evidence for "not
    differentiable" (two cells with different gradients) and for "AD is a Clarke subderivative"
    (convex weights over these cells); not for the other verdicts (``complete`` is False)."""
    t0 = time.perf_counter()
    net = runs.net
    n = net.n_grad
    W = _Walker(runs, fw, ties)
    cells = []

    def add(choose, cons, zeros, d):
        if any(c.choices == choose for c in cells):
            return
        cells.append(Cell(dict(choose), d, W.cell(choose) if gradients else None, [list(c) for c in cons], list(zeros)))

    ad_index = None
    c = ad_pattern_cell(runs, fw, ties, timeout_ms=timeout_ms, walker=W, gradient=gradients)
    if c is not None:
        cells.append(c)
        ad_index = 0
    rng = np.random.default_rng(seed)
    tries = stale = 0
    while tries < 4 * n_random and stale < n_random and len(cells) < n_random + 1 and time.perf_counter() - t0 < time_limit:
        tries += 1
        stale += 1
        d = [mpq(int(v)) for v in rng.integers(-1000, 1001, n)]
        got = W.follow(d)
        if got is not None and not any(c.choices == got[0] for c in cells):
            add(*got, d)
            stale = 0
    return Enumeration(
        cells=cells,
        pruned=[],
        ties=[],
        order=[t.key for t in W.order],
        degenerate=[],
        zero_ties=[],
        n_params=n,
        time_s=time.perf_counter() - t0,
        complete=False,
        ad_index=ad_index,
    )


def ad_pattern_cell(runs, fw, ties, *, timeout_ms=20000, walker=None, gradient=True):
    """The cell of the AD output's own pattern, with a witness, or None (a proxy between the
    sides, split tie-break, or an empty cell). One exact LP over the reals: when it is feasible,
    AD is the gradient of a selection that f follows on an open set touching w, i.e. a limiting
    gradient, so a Clarke subderivative. For networks with max-pools this is the kind of LP check
    Park-Chun-Lee's Theorem 8 / Algorithm 1 proposes; stated here in our own terms."""
    W = walker or _Walker(runs, fw, ties)
    pat = W.pattern(lambda t: ad_sides(runs, t))
    if pat is None:
        return None
    d = feasible(pat[1], runs.net.n_grad, timeout_ms)
    if d is None:
        return None
    choose, cons, zeros = pat
    return Cell(dict(choose), d, W.cell(choose) if gradient else None, [list(c) for c in cons], list(zeros))
