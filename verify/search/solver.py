"""Search float parameter space with SMT: counterexamples, proofs of absence (solver-trusted).

``search(network, goal, box=..., free=..., ulps=...)`` encodes the machine run (Z3 FloatingPoint
terms, ``encodings/smt.py``) and, for goals that need it, the exact run (Z3 Real terms over
fp.to_real of the same parameter variables), restricts the named scalar parameters to a box, and
asks Z3 for parameters meeting the goal:

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
enclosures fix are substituted), monotone bounds and bisection for first-layer ties, exhaustive
enumeration of boxes of at most EXHAUSTIVE_MAX float points, and a few cheap point checks.

"sat" is only reported after the counterexample (a network file with the found parameters as
exact hex floats) has been confirmed by the ordinary point verification; otherwise "unknown".
"unsat" comes with the SMT-LIB2 query and the solver's answer, labelled solver-trusted. A time-out
is "unknown" with the reason.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import z3

from ..encodings import program as P
from ..encodings.errors import InputError
from ..encodings.formats import InvalidValue, parse_value
from ..encodings.network import Network
from ..encodings.smt import (
    Unsupported,
    Z3FPArith,
    Z3RealArith,
    pool_tie_conditions,
    value_of,
)
from . import structured as _structured

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
        }

    def certificate(self) -> dict:
        """For unsat: the query and the answer (solver-trusted)."""
        return {"kinkcheck_search": 1, **self.to_dict(), "enclosures": self.enclosures, "smtlib": self.smtlib}


def _bounds(net: Network, box, free, ulps) -> dict:
    out = {}
    fmt = net.fmt
    if box:
        for name, (lo, hi) in box.items():
            p = _scalar(net, name)
            try:
                lo_v, _ = parse_value(lo, fmt, "exact")
                hi_v, _ = parse_value(hi, fmt, "exact")
            except InvalidValue as exc:
                raise InputError(f"--box {name}: {exc}") from None
            if not lo_v <= hi_v:
                raise InputError(f"--box {name}: empty interval {lo}:{hi}")
            out[name] = (p, lo_v, hi_v)
    if free:
        if ulps is None or ulps < 0:
            raise InputError("--free needs --ulps K (K >= 0)")
        for name in free:
            p = _scalar(net, name)
            v = float(net.theta[p.offset])
            lo = hi = v
            for _ in range(ulps):
                lo, hi = fmt.next_down(lo), fmt.next_up(hi)
            out[name] = (p, lo, hi)
    if not out:
        raise InputError("name the free parameters with --box NAME=LO:HI or --free NAME --ulps K")
    return out


def _scalar(net, name):
    try:
        p = net.param(name)
    except KeyError:
        raise InputError(f"unknown parameter {name!r}") from None
    if p.shape != ():
        raise InputError(f"parameter {name!r} has shape {list(p.shape)}: only scalar params can be free")
    return p


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


def search(
    network,
    goal: str,
    *,
    box=None,
    free=None,
    ulps=None,
    timeout: float | None = None,
    solver: str = "z3",
    k_ulps: int = 0,
    prune: bool = True,
    structured: bool = True,
) -> SearchResult:
    """Search the box for parameters meeting ``goal`` (see the module docstring).

    ``prune``: interval enclosures over the box fix the branch of every unit that cannot tie there
    (exact "unsat" when no unit can; otherwise the SMT query is sliced to the units that may tie and
    the fixed branches are substituted). ``structured``: answer without a solver where the
    structure allows (first-layer monotone bounds and bisection, exhaustive enumeration of small
    boxes, cheap point checks before the solver). Both only change how fast the answer comes."""
    from ..api import load

    t0 = time.perf_counter()
    if goal not in GOALS:
        raise InputError(f"unknown goal {goal!r} (known: {', '.join(GOALS)})")
    if solver not in ("z3", "bitwuzla"):
        raise InputError(f"unknown solver {solver!r} (z3 or bitwuzla)")
    if solver == "bitwuzla" and goal in ("real-tie", "compensation", "ad-mismatch"):
        raise InputError(f"--solver bitwuzla has no real arithmetic: goal {goal} needs z3")
    net = network if isinstance(network, Network) else load(network)
    bounds = _bounds(net, box, free, ulps)
    res = SearchResult("unknown", goal, {k: (net.fmt.to_hex(lo), net.fmt.to_hex(hi)) for k, (_, lo, hi) in bounds.items()}, solver=f"z3 {z3.get_version_string()}")
    res.k_ulps = k_ulps
    real_goal = goal in ("real-tie", "compensation", "ad-mismatch")

    # 1. interval enclosures: which units can tie anywhere in the box
    boxes = None
    if prune:
        try:
            boxes = _structured.enclosures(net, bounds)
        except (Unsupported, ValueError, ArithmeticError, TypeError, OverflowError) as exc:
            res.pruning = {"applied": False, "reason": f"no enclosure: {exc}"}
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
        if cand is not None and not cand:
            what = {"float-tie": "a kink in the float run", "real-tie": "a kink over the reals", "compensation": "a kink, float or real", "choice-sensitive": "a kink in the float run (no tie: no proxy choice)"}[goal]
            res.status, res.trust, res.solver = "unsat", "exact", "interval enclosures (exact, no solver)"
            res.reason = f"no unit can reach {what} anywhere in the box (interval enclosures of all {len(boxes)} units)"
            res.time_s = time.perf_counter() - t0
            return res

    # 2. the SMT query (always built: it is the artefact behind a solver answer)
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
    try:
        fz = P.forward(net, Z, theta=theta)
        if real_goal:
            R = Z3RealArith(net.fmt)
            for name, (v, lo, hi) in variables.items():
                s.add(z3.Not(z3.fpIsInf(v)))
            rtheta = np.array([R.real(float(v)) for v in net.theta.tolist()], dtype=object)
            for name, (v, lo, hi) in variables.items():
                rtheta[bounds[name][0].offset] = z3.fpToReal(v)
            fr = P.forward(net, R, theta=rtheta)
        goal_term = _goal_term(net, goal, Z, fz, R, fr, k_ulps, boxes)
        if boxes is not None:
            pairs = _fixed_branch_atoms(net, boxes, Z, fz, R, fr)
            if pairs:
                goal_term = z3.simplify(z3.substitute(goal_term, *pairs))
    except (Unsupported, ValueError, OverflowError) as exc:
        res.reason = f"not encodable: {exc}"
        res.time_s = time.perf_counter() - t0
        return res
    s.add(goal_term)
    res.smtlib = s.to_smt2()

    # 3. structure before the solver
    if structured:
        if goal in ("float-tie", "real-tie", "compensation") and _structured.applicable(net, bounds):
            found = _structured.search_structured(net, goal, bounds)
            if found is not None and found[0] == "unsat":
                res.status, res.solver = "unsat", "structured (exact monotone bounds, no solver)"
                res.reason = found[1]
                res.trust = "exact"
                res.time_s = time.perf_counter() - t0
                return res
            if found is not None and found[0] == "sat":
                _, t, _key = found
                res.solver = "structured (bisection on the float grid, no solver)"
                r = _confirm(res, net, {name: float(t[p.offset]) for name, (p, _, _) in bounds.items()}, goal, t0)
                if r.status == "sat":
                    return r
                _reset(res)
        done = _points(res, net, bounds, goal, k_ulps, t0, timeout)
        if done is not None:
            return done
    if solver == "bitwuzla":
        return _bitwuzla(res, net, variables, goal, _remaining(timeout, t0), t0)
    rem = _remaining(timeout, t0)
    if rem is not None:
        if rem <= 0:
            res.reason = "time-out before the solver was called"
            res.time_s = time.perf_counter() - t0
            return res
        s.set("timeout", max(1, int(rem * 1000)))
    r = s.check()
    res.solver = f"z3 {z3.get_version_string()}" + (" (query sliced by interval enclosures)" if boxes is not None else "")
    res.time_s = time.perf_counter() - t0
    if r == z3.unknown:
        res.reason = f"solver: {s.reason_unknown()}"
        return res
    if r == z3.unsat:
        res.status = "unsat"
        res.reason = f"no parameters in the box meet {goal} (Z3: unsat; solver-trusted)"
        return res
    m = s.model()
    return _confirm(res, net, {name: value_of(m.eval(v, model_completion=True)) for name, (v, _, _) in variables.items()}, goal, t0)


def _reset(res):
    """Forget an unconfirmed candidate (the search goes on)."""
    res.status, res.reason, res.values, res.counterexample, res.confirmed = "unknown", "", {}, None, False


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


def _goal_term(net, goal, Z, fz, R, fr, k_ulps, boxes):
    """The goal as one Bool term; tie disjunctions keep only the units that may tie (slicing)."""
    keep = _candidates(goal, boxes) if boxes is not None and goal != "choice-sensitive" else None

    def ties(fw, A):
        return [(k, c) for k, c in _tie_conditions(net, fw, A) if keep is None or k in keep]

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


def _bitwuzla(res, net, variables, goal, timeout, t0):
    """The same SMT-LIB2 query, answered by Bitwuzla (optional extra; FloatingPoint only)."""
    try:
        import bitwuzla as bw
    except ImportError:
        raise InputError("--solver bitwuzla needs the optional extra: pip install 'kinkcheck[bitwuzla]'") from None
    if net.fmt.name not in ("float16", "float32", "float64"):
        raise InputError(f"--solver bitwuzla is used for float16/float32/float64 only (got {net.fmt.name}); use z3")
    tm = bw.TermManager()
    opts = bw.Options()
    opts.set(bw.Option.PRODUCE_MODELS, True)
    if timeout:
        opts.set(bw.Option.TIME_LIMIT_PER, int(timeout * 1000))
    parser = bw.Parser(tm, opts)
    query = "\n".join(line for line in res.smtlib.splitlines() if not line.startswith("(check-sat"))
    parser.parse(query, True, False)
    solver = parser.bitwuzla()
    r = solver.check_sat()
    res.solver = f"bitwuzla {getattr(bw, '__version__', '')}".strip()
    res.time_s = time.perf_counter() - t0
    if r == bw.Result.UNKNOWN:
        res.reason = "solver: unknown (time limit)"
        return res
    if r == bw.Result.UNSAT:
        res.status = "unsat"
        res.reason = f"no parameters in the box meet {goal} (Bitwuzla: unsat; solver-trusted)"
        return res
    fmt = net.fmt
    values = {}
    funs = {str(t): t for t in parser.get_declared_funs()}
    for name in variables:
        sign, exp_bits, sig_bits = solver.get_value(funs[name]).value(2)
        e, m = int(exp_bits, 2), int(sig_bits, 2)
        if e == 0:
            v = m * 2.0 ** (fmt.emin - fmt.fraction_bits)
        elif e == 2**fmt.exponent_bits - 1:
            v = float("inf") if m == 0 else float("nan")
        else:
            v = (1 + m * 2.0**-fmt.fraction_bits) * 2.0 ** (e - fmt.emax)
        values[name] = -v if sign == "1" else v
    return _confirm(res, net, values, goal, t0)


def _mismatch(rep, net, k) -> bool:
    """Point check: some machine AD entry is more than k ulps (of itself) from the exact AD."""
    if rep.ad is None or rep.machine_ad is None:
        return False
    for e, m in zip(rep.ad, rep.machine_ad):
        if e.startswith("["):
            return False
        mv = float.fromhex(m)
        if not math.isfinite(mv):
            continue
        if abs(Fraction(mv) - Fraction(e)) > k * Fraction(net.fmt.ulp(mv)):
            return True
    return False


def _confirm(res, net, values, goal, t0):
    """Write the counterexample network and confirm it by point verification."""
    from ..api import verify
    from ..encodings.tensorfiles import inline_tensors

    doc = copy.deepcopy(inline_tensors(net))  # self-contained (sidecar tensors inline)
    for name, val in values.items():
        res.values[name] = net.fmt.to_hex(val)
        spec = dict(doc["params"][name])
        spec.pop("value", None)
        spec.pop("shape", None)
        spec.pop("values", None)
        spec["value"] = net.fmt.to_hex(val)
        doc["params"][name] = spec
    res.counterexample = doc
    rep = verify(doc, values=(goal == "ad-mismatch"))
    ok = {
        "float-tie": bool(rep.float_ties),
        "real-tie": bool(rep.real_ties),
        "compensation": rep.compensation is True,
        "choice-sensitive": rep.choice_sensitive is True,
        "ad-mismatch": _mismatch(rep, net, res.k_ulps),
    }[goal]
    res.confirmed = ok
    res.status = "sat" if ok else "unknown"
    res.reason = "counterexample confirmed by point verification" if ok else "the solver's model was not confirmed by the point verification"
    res.time_s = time.perf_counter() - t0
    return res
