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

"sat" is only reported after the counterexample (a network file with the found parameters as
exact hex floats) has been confirmed by the ordinary point verification; otherwise "unknown".
"unsat" comes with the SMT-LIB2 query and the solver's answer, labelled solver-trusted. A time-out
is "unknown" with the reason.
"""

from __future__ import annotations

import copy
import time
from fractions import Fraction
from dataclasses import dataclass, field

import numpy as np
import z3

from .encodings import program as P
from .encodings.errors import InputError
from .encodings.formats import InvalidValue, parse_value
from .encodings.network import Network
from . import structured
from .encodings.smt import Unsupported, Z3FPArith, Z3RealArith, pool_tie_conditions, value_of

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
        }

    def certificate(self) -> dict:
        """For unsat: the query and the answer (solver-trusted)."""
        return {"kinkcheck_search": 1, **self.to_dict(), "smtlib": self.smtlib}


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


def search(network, goal: str, *, box=None, free=None, ulps=None, timeout: float | None = None, solver: str = "z3", k_ulps: int = 0) -> SearchResult:
    import kinkcheck

    t0 = time.perf_counter()
    if goal not in GOALS:
        raise InputError(f"unknown goal {goal!r} (known: {', '.join(GOALS)})")
    if solver not in ("z3", "bitwuzla"):
        raise InputError(f"unknown solver {solver!r} (z3 or bitwuzla)")
    if solver == "bitwuzla" and goal in ("real-tie", "compensation", "ad-mismatch"):
        raise InputError(f"--solver bitwuzla has no real arithmetic: goal {goal} needs z3")
    net = network if isinstance(network, Network) else kinkcheck.load(network)
    bounds = _bounds(net, box, free, ulps)
    Z = Z3FPArith(net.fmt)
    theta = np.array([Z.fpval(v) for v in net.theta.tolist()], dtype=object)
    variables = {}
    for name, (p, lo, hi) in bounds.items():
        v = z3.FP(name, Z.sort)
        variables[name] = (v, lo, hi)
        theta[p.offset] = v
    res = SearchResult("unknown", goal, {k: (net.fmt.to_hex(lo), net.fmt.to_hex(hi)) for k, (_, lo, hi) in bounds.items()}, solver=f"z3 {z3.get_version_string()}")
    res.k_ulps = k_ulps
    s = z3.Solver()
    if timeout:
        s.set("timeout", int(timeout * 1000))
    for name, (v, lo, hi) in variables.items():
        s.add(z3.fpLEQ(Z.fpval(lo), v), z3.fpLEQ(v, Z.fpval(hi)), z3.Not(z3.fpIsNaN(v)))
    try:
        fz = P.forward(net, Z, theta=theta)
        if goal in ("float-tie", "compensation", "choice-sensitive"):
            ftie = _tie_conditions(net, fz, Z)
        if goal in ("real-tie", "compensation", "ad-mismatch"):
            R = Z3RealArith(net.fmt)
            for name, (v, lo, hi) in variables.items():
                s.add(z3.Not(z3.fpIsInf(v)))
            rtheta = np.array([R.real(float(v)) for v in net.theta.tolist()], dtype=object)
            for name, (v, lo, hi) in variables.items():
                rtheta[bounds[name][0].offset] = z3.fpToReal(v)
            fr = P.forward(net, R, theta=rtheta)
            rtie = _tie_conditions(net, fr, R)
    except (Unsupported, ValueError, OverflowError) as exc:
        res.reason = f"not encodable: {exc}"
        return res
    if goal == "float-tie":
        s.add(z3.Or([c for _, c in ftie]) if ftie else z3.BoolVal(False))
    elif goal == "real-tie":
        s.add(z3.Or([c for _, c in rtie]) if rtie else z3.BoolVal(False))
    elif goal == "compensation":
        s.add(z3.Or([z3.Xor(a, b) for (_, a), (_, b) in zip(ftie, rtie)]) if ftie else z3.BoolVal(False))
    elif goal == "ad-mismatch":
        pr = P.resolve_proxies(net)
        gm = P.backward(net, Z, fz, pr)
        ge = P.backward(net, R, fr, pr)
        conds = []
        for m_, e_ in zip(gm, ge):
            ulp = _ulp_term(net.fmt, m_)
            dist = z3.fpToReal(m_) - e_
            conds.append(z3.And(z3.Not(z3.fpIsNaN(m_)), z3.Not(z3.fpIsInf(m_)), z3.Or(dist > k_ulps * ulp, -dist > k_ulps * ulp)))
        s.add(z3.Or(conds) if conds else z3.BoolVal(False))
    else:
        pr = P.resolve_proxies(net)
        gl = P.backward(net, Z, fz, pr, side="left")
        gr = P.backward(net, Z, fz, pr, side="right")
        s.add(z3.Or([z3.Not(z3.Or(z3.fpEQ(a, b), z3.And(z3.fpIsNaN(a), z3.fpIsNaN(b)))) for a, b in zip(gl, gr)]) if len(gl) else z3.BoolVal(False))
    res.smtlib = s.to_smt2()
    if goal in ("float-tie", "real-tie", "compensation") and structured.applicable(net, bounds):
        found = structured.search_structured(net, goal, bounds)
        if found is not None and found[0] == "unsat":
            res.status, res.solver = "unsat", "structured (exact monotone bounds, no solver)"
            res.reason = found[1]
            res.trust = "exact"
            res.time_s = time.perf_counter() - t0
            return res
        if found is not None and found[0] == "sat":
            _, t, _key = found
            res.solver = "structured (bisection on the float grid, no solver)"
            return _confirm(res, net, {name: float(t[p.offset]) for name, (p, _, _) in bounds.items()}, goal, t0)
    if solver == "bitwuzla":
        return _bitwuzla(res, net, variables, goal, timeout, t0)
    r = s.check()
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
    import math

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
    import kinkcheck

    doc = copy.deepcopy(net.raw)
    for name, val in values.items():
        res.values[name] = net.fmt.to_hex(val)
        spec = dict(doc["params"][name])
        spec.pop("value", None)
        spec.pop("shape", None)
        spec.pop("values", None)
        spec["value"] = net.fmt.to_hex(val)
        doc["params"][name] = spec
    res.counterexample = doc
    rep = kinkcheck.verify(doc, values=(goal == "ad-mismatch"))
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
