"""Search float parameter space with SMT: counterexamples, proofs of absence (solver-trusted).

``search(network, goal, box=..., free=..., ulps=...)`` encodes the machine run (Z3 FloatingPoint
terms, ``encodings/smt.py``) and, for goals that need it, the exact run (Z3 Real terms over
fp.to_real of the same parameter variables), restricts the free entries (``entries.py``: ``NAME``,
every entry of a tensor, or ``NAME[i,j]``) to a box, and asks Z3 for parameters meeting the goal:

- ``float-tie``: some unit is exactly on a kink in the float run (max-pool: a tied window; l1: a
  zero residual);
- ``real-tie``: the same over the reals;
- ``compensation``: some unit is a float tie but not a real tie, or the reverse;
- ``choice-sensitive``: the float AD output with every tie on its left derivative differs from the
  one with every tie on its right derivative (Bertoin et al.'s bifurcation zone);
- ``ad-mismatch``: some entry of the float AD output is more than K ulps (the spacing of its own
  binade in the format) away from the exact AD output (``k_ulps``, CLI ``--k``).

Before the solver (docs/search.md): interval enclosures of every unit over the box (exact "unsat"
when no unit can tie; otherwise the query is sliced to the units that may tie and the branches the
enclosures fix are substituted), the rounding-aware lemmas of ``lemmas.py`` (first-layer units
decided exactly), monotone bounds and bisection for first-layer ties, exhaustive enumeration of
boxes of at most EXHAUSTIVE_MAX float points, and a few cheap point checks.

"sat" is only reported after the counterexample (a network file with the found parameters as
exact hex floats) has been confirmed by the ordinary point verification; otherwise "unknown".
"unsat" is labelled exact or solver-trusted; its certificate (``certificate()``) is re-validated by
``kinkcheck check`` (``certcheck.py``). The whole search has a time-out (DEFAULT_TIMEOUT, 60 s);
running out is "unknown" with the reason.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import z3

from ..encodings import program as P
from ..encodings.errors import InputError
from ..encodings.network import Network
from ..encodings.smt import (
    Unsupported,
    Z3FPArith,
    Z3RealArith,
    pool_tie_conditions,
    value_of,
)
from . import backend_bitwuzla
from . import entries as _entries
from . import lemmas as _lemmas
from . import structured as _structured
from .answers import confirm as _confirm
from .answers import reset as _reset

GOALS = ("float-tie", "real-tie", "compensation", "choice-sensitive", "ad-mismatch")


@dataclass
class SearchResult:
    status: str  # sat | unsat | unknown
    goal: str
    box: dict  # name -> (lo hex, hi hex)
    values: dict = field(default_factory=dict)  # name -> hex (sat)
    counterexample: dict | None = None  # network document (sat)
    confirmed: bool = False
    reason: str = ""
    smtlib: str = ""
    solver: str = ""
    time_s: float = 0.0
    trust: str | None = None
    k_ulps: int = 0
    pruning: dict = field(default_factory=dict)  # what the interval enclosures decided
    method: str = ""  # how an unsat was reached: enclosures | lemmas | monotone-bounds | enumeration | solver
    evidence: list = field(default_factory=list)  # lemmas: one {"key", "lemma"} per unit that may tie
    enclosures: list = field(default_factory=list)  # every unit's enclosures, may-tie flags and fixed branches

    @property
    def exit_code(self) -> int:
        return {"sat": 1, "unsat": 0}.get(self.status, 3)

    def to_dict(self) -> dict:
        return {
            "status": self.status,
            "goal": self.goal,
            "box": {k: list(v) for k, v in self.box.items()},
            "values": self.values,
            "confirmed": self.confirmed,
            "reason": self.reason,
            "solver": self.solver,
            "trust": self.trust or ("solver-trusted" if self.status == "unsat" else ("confirmed by point verification" if self.confirmed else None)),
            "time_s": round(self.time_s, 6),
            "pruning": self.pruning,
            "method": self.method or None,
        }

    def query_text(self) -> str:
        """The SMT-LIB2 query of the question (built now if the answer came before the solver)."""
        if not self.smtlib and getattr(self, "_net", None) is not None:
            ex = {tuple(e["key"]) for e in self.evidence} if self.status != "unsat" or self.method == "solver" else ()
            s, _ = build_query(self._net, self.goal, self._bounds, getattr(self, "_boxes", None), self.k_ulps, exclude=ex)
            self.smtlib = s.to_smt2()
        return self.smtlib

    def certificate(self) -> dict:
        """For unsat: a document ``kinkcheck check`` accepts (docs/search.md): the network, the box,
        the goal, how the answer was reached and its evidence; the steps it rests on, each labelled
        exact (re-validated by the check) or solver-trusted (the SMT UNSAT of the query given)."""
        steps = [{"step": "network, box and goal", "trust": "exact"}]
        if self.pruning.get("applied"):
            steps.append({"step": f"interval enclosures of {self.pruning['units']} units", "trust": "exact"})
        what = {
            "enclosures": "no unit can meet the goal (enclosures)",
            "lemmas": f"rounding-aware lemmas decide the {len(self.evidence)} units that may meet the goal",
            "monotone-bounds": "monotone corner bounds of the first-layer units",
            "enumeration": "exhaustive enumeration of the box",
            "solver": "the SMT-LIB2 query is the question (re-built)",
        }.get(self.method)
        if what:
            steps.append({"step": what, "trust": "exact"})
        if self.method == "solver" and self.evidence:
            steps.append({"step": f"rounding-aware lemmas: {len(self.evidence)} units cannot meet the goal (left out of the query)", "trust": "exact"})
        if self.method == "solver":
            steps.append({"step": f"SMT UNSAT of the query ({self.solver})", "trust": "solver-trusted"})
        net = getattr(self, "_net", None)
        return {
            "kinkcheck_search": 1,
            **self.to_dict(),
            "k_ulps": self.k_ulps,
            "method": self.method,
            "steps": steps,
            "network": net.raw if net is not None else None,
            "evidence": self.evidence,
            "enclosures": self.enclosures,
            "smtlib": self.query_text() if self.method == "solver" else self.smtlib,
        }


def _tie_conditions(net, fw, A) -> list:
    """(key, Bool) for every unit/window/residual that may tie."""
    out = []
    N = net.batch
    for layer, (kind, conds) in fw.loc.items():
        c2 = conds.reshape(N, -1)
        for (n, u), c in np.ndenumerate(c2):
            out.append(((layer, n, u), c))
    for layer, eq in fw.pools.items():
        tc = pool_tie_conditions(eq)
        for (n, w), c in np.ndenumerate(tc):
            out.append(((layer, n, w), c))
    if fw.loss_loc is not None:
        for (n, u), c in np.ndenumerate(fw.loss_loc[1]):
            out.append(((len(net.layers), n, u), c))
    return out


EXHAUSTIVE_MAX = 1024  # boxes with at most this many float points are enumerated (exact answer)
SAMPLES = 48  # cheap point checks before the solver (sat only after point verification)


DEFAULT_TIMEOUT = 60.0  # seconds; None or 0: no limit


def search(
    network,
    goal: str,
    *,
    box=None,
    free=None,
    ulps=None,
    timeout: float | None = DEFAULT_TIMEOUT,
    solver: str = "z3",
    k_ulps: int = 0,
    prune: bool = True,
    structured: bool = True,
    progress=None,
) -> SearchResult:
    """Search the box for parameters meeting ``goal`` (see the module docstring).

    ``box``: {ref: (lo, hi)} where ref is a parameter name (a scalar, or every entry of a tensor) or
    one entry ``"NAME[i,j]"``; ``free``: refs within ``ulps`` of their file values. ``timeout``:
    seconds for the whole search (default 60; None or 0: no limit). ``progress``: a callable
    receiving one line per stage. ``prune``: interval enclosures over the box fix the branch of
    every unit that cannot tie there (exact "unsat" when no unit can; otherwise the SMT query is
    sliced to the units that may tie and the fixed branches are substituted). ``structured``:
    answer without a solver where the structure allows (rounding-aware lemmas, first-layer
    monotone bounds and bisection, exhaustive enumeration of small boxes, cheap point checks before
    the solver). Both only change how fast the answer comes."""
    from ..api import load

    t0 = time.perf_counter()
    if goal not in GOALS:
        raise InputError(f"unknown goal {goal!r} (known: {', '.join(GOALS)})")
    if solver not in ("z3", "bitwuzla"):
        raise InputError(f"unknown solver {solver!r} (z3 or bitwuzla)")
    if solver == "bitwuzla" and goal in ("real-tie", "compensation", "ad-mismatch"):
        raise InputError(f"--solver bitwuzla has no real arithmetic: goal {goal} needs z3")
    if isinstance(k_ulps, bool) or not isinstance(k_ulps, int) or k_ulps < 0:
        raise InputError(f"--k must be an integer >= 0 (got {k_ulps!r})")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0 or math.isinf(timeout)):
        raise InputError(f"--timeout must be a number of seconds >= 0 (0: no limit; got {timeout!r})")
    net = network if isinstance(network, Network) else load(network)
    for L in net.layers:
        if L.op == "fixed_point":  # the solver loop has no SMT encoding (docs/implicit.md)
            where = network if isinstance(network, str) else "network"
            raise InputError(f"{where}: layer {L.index} (fixed_point): search does not encode fixed-point layers; use kinkcheck verify, or kinkcheck count to sweep a scalar")
    bounds = _entries.bounds(net, box, free, ulps)
    res = SearchResult("unknown", goal, {k: (net.fmt.to_hex(lo), net.fmt.to_hex(hi)) for k, (_, lo, hi) in bounds.items()}, solver=f"z3 {z3.get_version_string()}")
    res.k_ulps = k_ulps
    res._net, res._bounds = net, bounds

    def say(stage):
        if progress is not None:
            progress(f"[{time.perf_counter() - t0:6.2f} s] {stage}")

    def done(status, trust, how, reason, **extra):
        res.status, res.trust, res.solver, res.reason = status, trust, how, reason
        res.method = extra.get("method", res.method)
        res.evidence = extra.get("evidence", res.evidence)
        res.time_s = time.perf_counter() - t0
        say(f"done: {status} ({how})")
        return res

    # 1. interval enclosures: which units can tie anywhere in the box
    say(f"{len(bounds)} free entr{'y' if len(bounds) == 1 else 'ies'}; goal {goal}; interval enclosures")
    boxes = None
    if prune:
        try:
            boxes = _structured.enclosures(net, bounds)
        except (Unsupported, ValueError, ArithmeticError, TypeError, OverflowError) as exc:
            res.pruning = {"applied": False, "reason": f"no enclosure: {exc}"}
    cand = None
    res._boxes = boxes
    if boxes is not None:
        cand = _candidates(goal, boxes)
        res.pruning = {
            "applied": True,
            "units": len(boxes),
            "may_tie": len(cand) if cand is not None else None,
            "float_branches_fixed": sum(b.float_piece is not None for b in boxes.values()),
            "real_branches_fixed": sum(b.real_piece is not None for b in boxes.values()),
        }
        res.enclosures = [b.to_dict() for b in boxes.values()]  # the evidence for the slicing (and for an exact unsat)
        say(f"enclosures: {len(boxes)} units, {len(cand) if cand is not None else 'all'} may meet the goal")
        if cand is not None and not cand:
            what = {"float-tie": "a kink in the float run", "real-tie": "a kink over the reals", "compensation": "a kink, float or real", "choice-sensitive": "a kink in the float run (no tie: no proxy choice)"}[goal]
            return done("unsat", "exact", "interval enclosures (exact, no solver)", f"no unit can reach {what} anywhere in the box (interval enclosures of all {len(boxes)} units)", method="enclosures")

    # 2. rounding-aware lemmas, unit by unit (first layer): exact, no solver
    if structured and goal in ("float-tie", "real-tie", "compensation"):
        say("rounding-aware lemmas (first-layer units)")
        deadline = t0 + timeout if timeout else None
        found = _lemmas.decide(net, goal, bounds, cand if boxes is not None else None, deadline)
        if found is not None and found[0] == "unsat":
            return done("unsat", "exact", "rounding-aware lemmas (exact, no solver)", found[1], method="lemmas", evidence=found[2])
        if found is not None and found[0] == "partial":
            res.evidence = found[1]  # units that cannot meet the goal: left out of the query
            say(f"lemmas: {len(found[1])} units cannot meet the goal; the rest goes on")
        if found is not None and found[0] == "sat":
            res.solver = f"rounding-aware lemmas ({found[3]})"
            r = _confirm(res, net, {k: float(found[1][e.offset]) for k, (e, _, _) in bounds.items()}, goal, t0)
            if r.status == "sat":
                return done("sat", None, res.solver, r.reason)
            _reset(res)  # pragma: no cover - the lemma's witness and the point verification disagree

    # 3. the SMT query (always built: it is the artefact behind a solver answer)
    say("building the SMT query")
    try:
        s, variables = build_query(net, goal, bounds, boxes, k_ulps, exclude={tuple(e["key"]) for e in res.evidence})
    except (Unsupported, ValueError, OverflowError) as exc:
        res.reason = f"not encodable: {exc}"
        res.time_s = time.perf_counter() - t0
        return res
    res.smtlib = s.to_smt2()

    # 4. structure before the solver
    if structured:
        if goal in ("float-tie", "real-tie", "compensation") and _structured.applicable(net, bounds):
            say("monotone bounds and bisection (first layer)")
            found = _structured.search_structured(net, goal, bounds)
            if found is not None and found[0] == "unsat":
                return done("unsat", "exact", "structured (exact monotone bounds, no solver)", found[1], method="monotone-bounds")
            if found is not None and found[0] == "sat":
                _, t, _key = found
                res.solver = "structured (bisection on the float grid, no solver)"
                r = _confirm(res, net, {name: float(t[p.offset]) for name, (p, _, _) in bounds.items()}, goal, t0)
                if r.status == "sat":
                    return done("sat", None, res.solver, r.reason)
                _reset(res)
        say("exhaustive enumeration or point checks")
        found = _points(res, net, bounds, goal, k_ulps, t0, timeout)
        if found is not None:
            if found.status == "unsat":
                found.method = "enumeration"
            say(f"done: {found.status} ({found.solver})")
            return found
    rem = _remaining(timeout, t0)
    if rem is not None and rem <= 0:
        res.reason = f"time-out ({timeout:g} s) before the solver was called"
        res.time_s = time.perf_counter() - t0
        say("done: unknown (time-out)")
        return res
    if solver == "bitwuzla":
        say(f"Bitwuzla on the query ({'no limit' if rem is None else f'{rem:.1f} s left'})")
        r = backend_bitwuzla.solve(res, net, variables, goal, rem, t0)
        if r.status == "unsat":
            r.method = "solver"
        say(f"done: {r.status} ({r.solver})")
        return r
    if rem is not None:
        s.set("timeout", max(1, int(rem * 1000)))
    say(f"Z3 on the {'sliced ' if boxes is not None else ''}query ({'no limit' if rem is None else f'{rem:.1f} s left'})")
    r = s.check()
    res.solver = f"z3 {z3.get_version_string()}" + (" (query sliced by interval enclosures)" if boxes is not None else "")
    res.time_s = time.perf_counter() - t0
    if r == z3.unknown:
        res.reason = f"solver: {s.reason_unknown()}" + (f" (time-out: {timeout:g} s)" if timeout and res.time_s >= timeout * 0.95 else "")
        say("done: unknown")
        return res
    if r == z3.unsat:
        return done("unsat", "solver-trusted", res.solver, f"no parameters in the box meet {goal} (Z3: unsat; solver-trusted)", method="solver")
    m = s.model()
    r = _confirm(res, net, {name: value_of(m.eval(v, model_completion=True)) for name, (v, _, _) in variables.items()}, goal, t0)
    say(f"done: {r.status}")
    return r


def build_query(net, goal, bounds, boxes, k_ulps, exclude=()):
    """(z3.Solver holding the query, {label: (variable, lo, hi)}): the float run (and the exact run
    when the goal needs it) over the free entries, the box, and the goal sliced by ``boxes`` and
    without the units in ``exclude`` (keys the lemmas proved cannot meet the goal)."""
    Z = Z3FPArith(net.fmt)
    theta = np.array([Z.fpval(v) for v in net.theta.tolist()], dtype=object)
    variables = {}
    for name, (p, lo, hi) in bounds.items():
        v = z3.FP(name, Z.sort)
        variables[name] = (v, lo, hi)
        theta[p.offset] = v
    s = z3.Solver()
    for name, (v, lo, hi) in variables.items():
        s.add(z3.fpLEQ(Z.fpval(lo), v), z3.fpLEQ(v, Z.fpval(hi)), z3.Not(z3.fpIsNaN(v)))
    R = fr = None
    fz = P.forward(net, Z, theta=theta)
    if goal in ("real-tie", "compensation", "ad-mismatch"):
        R = Z3RealArith(net.fmt)
        for name, (v, lo, hi) in variables.items():
            s.add(z3.Not(z3.fpIsInf(v)))
        rtheta = np.array([R.real(float(v)) for v in net.theta.tolist()], dtype=object)
        for name, (v, lo, hi) in variables.items():
            rtheta[bounds[name][0].offset] = z3.fpToReal(v)
        fr = P.forward(net, R, theta=rtheta)
    goal_term = _goal_term(net, goal, Z, fz, R, fr, k_ulps, boxes, set(exclude))
    if boxes is not None:
        pairs = _fixed_branch_atoms(net, boxes, Z, fz, R, fr)
        if pairs:
            goal_term = z3.simplify(z3.substitute(goal_term, *pairs))
    s.add(goal_term)
    return s, variables


def _remaining(timeout, t0):
    return None if not timeout else timeout - (time.perf_counter() - t0)


def _candidates(goal, boxes):
    """Keys of the units that may meet the goal's tie condition (None: the goal has no per-unit
    disjunction to slice - choice-sensitive needs some float tie, ad-mismatch none)."""
    if goal == "float-tie":
        return {k for k, b in boxes.items() if b.float_tie}
    if goal == "real-tie":
        return {k for k, b in boxes.items() if b.real_tie is not False}
    if goal == "compensation":
        return {k for k, b in boxes.items() if b.float_tie or b.real_tie is not False}
    if goal == "choice-sensitive":
        return {k for k, b in boxes.items() if b.float_tie}
    return None


def _goal_term(net, goal, Z, fz, R, fr, k_ulps, boxes, exclude=frozenset()):
    """The goal as one Bool term; tie disjunctions keep only the units that may tie (slicing)."""
    keep = _candidates(goal, boxes) if boxes is not None and goal != "choice-sensitive" else None

    def ties(fw, A):
        return [(k, c) for k, c in _tie_conditions(net, fw, A) if (keep is None or k in keep) and k not in exclude]

    def any_of(cs):
        return z3.Or(cs) if len(cs) > 1 else cs[0] if cs else z3.BoolVal(False)

    if goal == "float-tie":
        return any_of([c for _, c in ties(fz, Z)])
    if goal == "real-tie":
        return any_of([c for _, c in ties(fr, R)])
    if goal == "compensation":
        rt = dict(ties(fr, R))
        return any_of([z3.Xor(c, rt[k]) for k, c in ties(fz, Z)])
    pr = P.resolve_proxies(net)
    if goal == "ad-mismatch":
        gm = P.backward(net, Z, fz, pr)
        ge = P.backward(net, R, fr, pr)
        conds = []
        for m_, e_ in zip(gm, ge):
            ulp = _ulp_term(net.fmt, m_)
            dist = z3.fpToReal(m_) - e_
            conds.append(z3.And(z3.Not(z3.fpIsNaN(m_)), z3.Not(z3.fpIsInf(m_)), z3.Or(dist > k_ulps * ulp, -dist > k_ulps * ulp)))
        return any_of(conds)
    gl = P.backward(net, Z, fz, pr, side="left")
    gr = P.backward(net, Z, fz, pr, side="right")
    return any_of([z3.Not(z3.Or(z3.fpEQ(a, b), z3.And(z3.fpIsNaN(a), z3.fpIsNaN(b)))) for a, b in zip(gl, gr)])


def _fixed_branch_atoms(net, boxes, Z, fz, R, fr) -> list:
    """(atom, truth value) for every branch condition the enclosures decide over the whole box: the
    kink comparisons of units that cannot reach a kink, and the max-pool comparisons of windows
    whose maximum is one entry everywhere. Substituting them is sound (they hold for every
    parameter in the box, which the query constrains to) and slices the query."""
    from ..encodings.smt import _below

    N = net.batch
    T, Fa = z3.BoolVal(True), z3.BoolVal(False)
    pairs = []
    seen = set()

    def put(atom, val):
        if atom.get_id() not in seen:
            seen.add(atom.get_id())
            pairs.append((atom, T if val else Fa))

    for key, b in boxes.items():
        layer, n, u = key
        if b.kind == "pool":
            L = net.layers[layer]
            idx = P.pool_index(L)[u]
            for A, fw, a in ((Z, fz, b.float_piece), (R, fr, b.real_piece)):
                if a is None or fw is None:
                    continue
                w = [fw.xs[layer].reshape(N, -1)[n, i] for i in idx]
                gt = (lambda e, m: z3.fpGT(e, m)) if A is Z else (lambda e, m: e > m)
                eqf = z3.fpEQ if A is Z else (lambda x, y: x == y)
                m = w[0]
                chain = [m]
                for j in range(1, len(w)):
                    c = gt(w[j], m)
                    if j == a:
                        put(c, True)
                    elif j > a:
                        put(c, False)
                    m = z3.If(c, w[j], m)
                    chain.append(m)
                for j in range(len(w)):
                    put(eqf(w[j], m), j == a)
                for j in range(a, len(w)):
                    if not chain[j].eq(w[a]):
                        pairs.append((chain[j], w[a]))
            continue
        kinks = net.layers[layer].act.kinks if b.kind == "act" else P._abs().kinks
        for A, fw, piece in ((Z, fz, b.float_piece), (R, fr, b.real_piece)):
            if piece is None or fw is None:
                continue
            v = fw.residual[n, u] if b.kind == "l1" else fw.xs[layer].reshape(N, -1)[n, u]
            if A is Z:
                put(z3.fpIsNaN(v), False)
            for j, k in enumerate(kinks):
                below = j >= piece  # every value lies below kink j
                if A is Z:
                    c = A.kink_const(k)
                    if c is None:
                        put(z3.fpLEQ(v, _below(A, k)), below)
                    else:
                        put(z3.fpLEQ(v, c), below)
                        put(z3.fpLT(v, c), below)
                        put(z3.fpEQ(v, c), False)
                else:
                    kk = A._k(k)
                    put(v <= kk, below)
                    put(v < kk, below)
                    put(v == kk, False)
    return pairs


def _points(res, net, bounds, goal, k_ulps, t0, timeout):
    """Exhaustive enumeration of small boxes (an exact sat / unsat), else a few cheap point checks
    (the file point, corners, random grid points): a hit is confirmed by point verification."""
    import itertools
    import random

    fmt = net.fmt
    real_goal = goal in ("real-tie", "compensation", "ad-mismatch")
    grids = []
    total = 1
    for p, lo, hi in bounds.values():
        n = _count(fmt, lo, hi, real_goal)
        total *= n
        grids.append((p, lo, hi, n))
    budget = min(2.0, 0.25 * timeout) if timeout else 2.0
    if total <= EXHAUSTIVE_MAX:
        names = list(bounds)
        lists = [_values(fmt, lo, hi, real_goal) for _, lo, hi, _ in grids]
        limit = 0.5 * timeout if timeout else 20.0  # enumeration time allowed (estimated from the first point)
        for i, combo in enumerate(itertools.product(*lists)):
            t1 = time.perf_counter()
            if _point_meets(net, bounds, combo, goal, k_ulps):
                solver = res.solver
                res.solver = f"exhaustive enumeration of the {total} float points of the box"
                r = _confirm(res, net, dict(zip(names, combo)), goal, t0)
                if r.status == "sat":
                    return r
                _reset(res)  # pragma: no cover - the point check and the point verification disagree
                res.solver = solver  # pragma: no cover
                return None  # pragma: no cover
            if i == 0 and (time.perf_counter() - t1) * total > limit:
                break  # too slow to enumerate: sample instead
        else:
            res.status, res.trust = "unsat", "exact"
            res.solver = f"exhaustive enumeration of the {total} float points of the box (exact, no solver)"
            res.reason = f"none of the {total} float points of the box meets {goal}"
            res.time_s = time.perf_counter() - t0
            return res
    rng = random.Random(0)
    cands = []
    file_point = tuple(min(max(float(net.theta[p.offset]), lo), hi) for p, lo, hi, _ in grids)
    cands.append(file_point)
    cands.append(tuple(lo for _, lo, _, _ in grids))
    cands.append(tuple(hi for _, _, hi, _ in grids))
    while len(cands) < SAMPLES:
        cands.append(tuple(_random_value(fmt, lo, hi, real_goal, rng) for _, lo, hi, _ in grids))
    names = list(bounds)
    ts = time.perf_counter()
    for combo in cands:
        if time.perf_counter() - ts > budget:
            break
        if any(not np.isfinite(v) for v in combo) and real_goal:
            continue
        if _point_meets(net, bounds, combo, goal, k_ulps):
            solver = res.solver
            res.solver = "point check before the solver"
            r = _confirm(res, net, dict(zip(names, combo)), goal, t0)
            if r.status == "sat":
                return r
            _reset(res)  # pragma: no cover - the point check and the point verification disagree
            res.solver = solver  # pragma: no cover
    return None


def _count(fmt, lo, hi, finite_only) -> int:
    n = fmt.ordinal(hi) - fmt.ordinal(lo) + 1
    if lo <= 0 <= hi:
        n += 1  # -0 and +0
    if finite_only:
        n -= (lo == float("-inf")) + (hi == float("inf"))
    return max(n, 0)


def _values(fmt, lo, hi, finite_only) -> list:
    out = []
    for k in range(fmt.ordinal(lo), fmt.ordinal(hi) + 1):
        v = fmt.from_ordinal(k)
        if finite_only and not np.isfinite(v):
            continue
        if v == 0:
            out.extend([-0.0, 0.0])
        else:
            out.append(v)
    return out


def _random_value(fmt, lo, hi, finite_only, rng) -> float:
    a, b = fmt.ordinal(lo), fmt.ordinal(hi)
    for _ in range(8):
        v = fmt.from_ordinal(rng.randint(a, b))
        if not finite_only or np.isfinite(v):
            return v
    return lo


def _point_meets(net, bounds, combo, goal, k_ulps) -> bool:
    """The goal's condition at one point, exactly as the SMT query states it."""
    from ..encodings.errors import Undecided
    from ..encodings.exact import ExactArith
    from ..encodings.machine import MachineArith

    theta = net.theta.copy()
    for (p, _, _), v in zip(bounds.values(), combo):
        theta[p.offset] = v
    n2 = net.with_theta(theta)
    M = MachineArith(n2.fmt)
    fm = P.forward(n2, M)
    if goal == "float-tie":
        return bool(P.ties(n2, fm))
    pr = P.resolve_proxies(n2)
    if goal == "choice-sensitive":
        from ..decide.choice import same

        return not same(P.backward(n2, M, fm, pr, side="left"), P.backward(n2, M, fm, pr, side="right"))
    try:
        fe = P.forward(n2, ExactArith())
    except (Undecided, ValueError):
        return False
    if goal == "real-tie":
        return bool(P.ties(n2, fe))
    if goal == "compensation":
        return {t.key for t in P.ties(n2, fm)} != {t.key for t in P.ties(n2, fe)}
    gm = P.backward(n2, M, fm, pr)
    ge = P.backward(n2, fe.A, fe, pr)
    for m, e in zip(gm.tolist(), ge):
        m = float(m)
        if np.isfinite(m) and abs(Fraction(m) - Fraction(int(e.numerator), int(e.denominator))) > k_ulps * Fraction(n2.fmt.ulp(m)):
            return True
    return False


def _ulp_term(fmt, m):
    """ulp(m) as a Real term: 2^(max(e, emin) - M) from m's exponent field (one case per exponent)."""
    E, M = fmt.exponent_bits, fmt.fraction_bits
    bits = z3.fpToIEEEBV(m)
    e = z3.Extract(E + M - 1, M, bits)
    out = z3.RealVal(f"{Fraction(2) ** (fmt.emin - M)}")
    for code in range(2, 2**E - 1):
        out = z3.If(e == code, z3.RealVal(f"{Fraction(2) ** (code - fmt.emax - M)}"), out)
    return out
