"""Local emptiness of a pattern's region in nonlinear real arithmetic (issue 11 part 4).

The question: is {X : |X_j| < r for every variable, p(X) > 0 for every constraint p} empty, for
polynomial constraints p (a pattern's signed tie pre-activations, ``encodings/poly.py``) and a
rational radius r? It is put once as an SMT-LIB2 query, printed by Z3 from its own terms
(``Solver.to_smt2``), and given to two solvers: Z3 (nlsat) and cvc5 (cylindrical algebraic
coverings), cvc5 reading the very same text through its SMT-LIB2 parser. An UNSAT counts as a proof
only when BOTH say unsat (Z3 has had wrong-unsat bugs in nonlinear arithmetic); the certificate
carries the query and both answers, labelled solver-trusted. A SAT answer is Z3's model point (the
region meets the box); anything else is unknown. Every call has a time-out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gmpy2 import mpq

NEEDS_CVC5 = "needs cvc5 (pip install 'kinkcheck[nra]')"


def missing() -> str | None:
    """None when cvc5 can be imported, else the reason the emptiness proofs are unavailable."""
    try:
        import cvc5  # noqa: F401
    except ImportError:
        return NEEDS_CVC5
    return None


@dataclass
class Emptiness:
    answer: str  # "unsat" (both solvers) | "sat" | "unknown"
    radius: mpq
    smtlib: str
    answers: dict = field(default_factory=dict)  # solver name -> "unsat" / "sat" / "unknown"
    solvers: dict = field(default_factory=dict)  # solver name -> version
    point: list | None = None  # a model point (sat), as rationals where Z3 gives them


def _z3_term(z3, p, xs):
    terms = []
    for m, c in sorted(p.t.items()):
        factors = [xs[j] for j, e in enumerate(m) for _ in range(e)]  # x^2 as (* x x): plain QF_NRA
        coef = z3.RealVal(str(c))
        if not factors:
            terms.append(coef)
        elif c == 1:
            terms.append(factors[0] if len(factors) == 1 else z3.Product(factors))
        else:
            terms.append(z3.Product([coef] + factors))
    return z3.Sum(terms) if len(terms) > 1 else terms[0] if terms else z3.RealVal(0)


def query(polys, radius):
    """(z3 solver, variables, SMT-LIB2 text) of the box-and-signs question."""
    import z3

    nv = polys[0].nv if polys else 0
    used = sorted(set().union(*(p.variables() for p in polys))) if polys else []
    xs = {j: z3.Real(f"x{j}") for j in used}
    s = z3.Solver()
    r = z3.RealVal(str(radius))
    for j in used:
        s.add(xs[j] > -r, xs[j] < r)
    for p in polys:
        s.add(_z3_term(z3, p, xs) > 0)
    del nv
    return s, xs, s.to_smt2()


def _cvc5(text, timeout_ms):
    import cvc5

    tm = cvc5.TermManager()
    slv = cvc5.Solver(tm)
    slv.setOption("tlimit-per", str(max(1, int(timeout_ms))))
    sm = cvc5.SymbolManager(tm)
    parser = cvc5.InputParser(slv, sm)
    parser.setStringInput(cvc5.InputLanguage.SMT_LIB_2_6, "(set-logic QF_NRA)\n" + text, "query")
    answer = "unknown"
    while True:
        cmd = parser.nextCommand()
        if cmd.isNull():
            break
        out = cmd.invoke(slv, sm).strip()
        if out in ("sat", "unsat", "unknown"):
            answer = out
    version = slv.getVersion()
    if isinstance(version, bytes):
        version = version.decode()
    return answer, "cvc5 " + str(version).strip("b'\"")


def empty_near(polys, radius, timeout_ms) -> Emptiness:
    """Decide the box-and-signs question at ``radius`` with the two-solver portfolio."""
    import z3

    s, xs, text = query(polys, radius)
    s.set("timeout", max(1, int(timeout_ms)))
    r = s.check()
    z3name = f"z3 {z3.get_version_string()}"
    e = Emptiness("unknown", mpq(radius), text, {"z3": str(r)}, {"z3": z3name})
    if r == z3.sat:
        m = s.model()
        point = {}
        for j, x in xs.items():
            v = m.eval(x, model_completion=True)
            if z3.is_rational_value(v):
                f = v.as_fraction()
                point[j] = mpq(f.numerator, f.denominator)
        e.answer, e.point = "sat", point
        return e
    if r != z3.unsat:
        return e
    try:
        ans, name = _cvc5(text, timeout_ms)
    except ImportError:
        e.answers["cvc5"] = "missing"
        return e
    e.answers["cvc5"], e.solvers["cvc5"] = ans, name
    if ans == "unsat":
        e.answer = "unsat"
    return e
