"""The Bitwuzla back end of ``search``: the same SMT-LIB2 query (FloatingPoint only), answered by
Bitwuzla (optional extra ``kinkcheck[bitwuzla]``); a model is confirmed by point verification."""

from __future__ import annotations

import time

from ..encodings.errors import InputError
from .answers import confirm as _confirm


def solve(res, net, variables, goal, timeout, t0):
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
    funs = {str(t).strip("|"): t for t in parser.get_declared_funs()}
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
