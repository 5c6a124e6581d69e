"""Local emptiness of a pattern's region in nonlinear real arithmetic (issue 11 part 4).

The question: is {X : |X_j| < r for every variable, p(X) > 0 for every constraint p} empty, for
polynomial constraints p (a pattern's signed tie pre-activations, ``encodings/poly.py``) and a
rational radius r? It is written once as an SMT-LIB2 query in a small canonical form (``smtlib``:
declarations, the box as ``(> xj (- r))`` / ``(< xj r)``, each constraint as ``(> p 0)`` with p a
sum of monomials in a fixed order, exact rational coefficients, no ``let``), and that very text is
what both solvers read: Z3 (nlsat) through ``Solver.from_string`` and cvc5 (cylindrical algebraic
coverings) through its SMT-LIB2 parser. The checker reads the same text with its own strict reader
(``certify/smtlib.py``) and requires its assertions to be exactly the box and the constraints it
replays. An UNSAT counts as a proof
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


def _num(c) -> str:
    """An exact rational as an SMT-LIB2 Real term: 3, (- 3), (/ 1 2), (- (/ 1 2))."""
    c = mpq(c)
    a = str(abs(c.numerator)) if c.denominator == 1 else f"(/ {abs(c.numerator)} {c.denominator})"
    return f"(- {a})" if c < 0 else a


def term(p) -> str:
    """A polynomial as an SMT-LIB2 term: monomials in sorted exponent order, x^2 as (* x x)."""
    out = []
    for m, c in sorted(p.t.items()):
        factors = [f"x{j}" for j, e in enumerate(m) for _ in range(e)]  # plain QF_NRA: no powers
        if not factors:
            out.append(_num(c))
            continue
        prod = factors[0] if len(factors) == 1 else f"(* {' '.join(factors)})"
        if c == 1:
            out.append(prod)
        elif c == -1:
            out.append(f"(- {prod})")
        else:
            out.append(f"(* {_num(c)} {' '.join(factors)})")
    return "0" if not out else out[0] if len(out) == 1 else f"(+ {' '.join(out)})"


def smtlib(polys, radius) -> str:
    """The canonical query text: is {X : |X_j| < radius for the variables the constraints use,
    p(X) > 0 for every p} non-empty?"""
    used = sorted(set().union(*(p.variables() for p in polys))) if polys else []
    r = _num(radius)
    lines = ["; kinkcheck local emptiness: the box |xj| < r around w, then the pattern's strict tie signs", "(set-logic QF_NRA)"]
    lines += [f"(declare-fun x{j} () Real)" for j in used]
    for j in used:
        lines += [f"(assert (> x{j} {_num(-mpq(radius))}))", f"(assert (< x{j} {r}))"]
    lines += [f"(assert (> {term(p)} 0))" for p in polys]
    return "\n".join(lines + ["(check-sat)", ""])


def query(polys, radius):
    """(z3 solver, variables, SMT-LIB2 text) of the box-and-signs question; the solver holds the
    assertions parsed from the text itself."""
    import z3

    text = smtlib(polys, radius)
    used = sorted(set().union(*(p.variables() for p in polys))) if polys else []
    s = z3.Solver()
    s.from_string(text)
    return s, {j: z3.Real(f"x{j}") for j in used}, text


def _cvc5(text, timeout_ms):
    import cvc5

    tm = cvc5.TermManager()
    slv = cvc5.Solver(tm)
    slv.setOption("tlimit-per", str(max(1, int(timeout_ms))))
    sm = cvc5.SymbolManager(tm)
    parser = cvc5.InputParser(slv, sm)
    parser.setStringInput(cvc5.InputLanguage.SMT_LIB_2_6, text, "query")
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
