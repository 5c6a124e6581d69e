"""The activation library: the only place in kinkcheck that knows where kinks are.

Every elementwise activation is written ONCE, as a sympy expression in the real symbol ``X``
(a ``Piecewise``, or ``Max``/``Min``/``Abs`` which are rewritten to ``Piecewise``).  Everything
else is *derived* from that one expression with sympy:

* candidate breakpoints: the real solutions of the relations in the ``Piecewise`` conditions;
* the formula on each open segment between breakpoints: the branch selected at an interior point;
* continuity at each breakpoint (checked with one-sided limits; a jump raises ``ValueError``);
* the one-sided derivatives at each breakpoint (one-sided limits of ``diff`` of the neighbouring
  formulas).  A breakpoint where they coincide is not a kink and its two segments are merged;
* the derivative on each smooth piece (``diff``).

Each piece also carries two tiny *programs* (``value_program(x, A)``, ``derivative_program(x, y, A)``)
over an arithmetic object ``A`` (``const add sub mul div neg sigmoid tanh``).  They fix the machine
formula (the order of operations PyTorch's CPU kernels use), so that the same pieces can be evaluated
exactly (``ExactArith``), symbolically (``SympyArith``) or in a rounding backend.  The programs are
the only hand-written part: each derived piece takes (left to right) the next listed program that
computes its formula, checked symbolically when the activation is built (and again, with
``sympy.simplify``, in the tests), and its derivative program must compute the derived derivative.
"""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable

import sympy
from gmpy2 import mpq, mpz

__all__ = [
    "X",
    "Y",
    "Kink",
    "Piece",
    "Activation",
    "activation",
    "ELEMENTWISE",
    "PARAMS",
    "max_rule",
    "SympyArith",
    "ExactArith",
    "UnknownActivation",
    "to_rational",
    "to_mpq",
]

X = sympy.Symbol("x", real=True)
Y = sympy.Symbol("y", real=True)  # the activation's output, in derivative programs


# --------------------------------------------------------------------------------------------
# exact conversions


def to_rational(q) -> sympy.Rational:
    """An exact rational (mpq, int, Fraction, ...) as a sympy.Rational."""
    q = mpq(q)
    return sympy.Rational(int(q.numerator), int(q.denominator))


def to_mpq(e) -> mpq:
    """A sympy number that must be rational, as an mpq (ValueError otherwise)."""
    e = sympy.sympify(e)
    if not e.is_Rational:
        raise ValueError(f"expected an exact rational, got {e!r}")
    return mpq(int(e.p), int(e.q))


def _as_exact_param(name: str, v) -> mpq:
    if isinstance(v, bool):
        raise ValueError(f"parameter {name!r}: expected an exact rational, got {v!r}")
    if isinstance(v, (sympy.Basic,)):
        return to_mpq(v)
    if isinstance(v, (type(mpq()), type(mpz()), int, Fraction)):
        return mpq(v)
    if isinstance(v, float):
        # refused on purpose: the caller must round the constant to the machine format first
        # (0.01 as a Python float is the binary64 value, not the float32 one a float32 net uses)
        raise ValueError(
            f"parameter {name!r}: got the Python float {v!r}; pass the exact machine value as gmpy2.mpq"
        )
    raise ValueError(f"parameter {name!r}: expected an exact rational (gmpy2.mpq), got {type(v).__name__}")


# --------------------------------------------------------------------------------------------
# arithmetics for the programs


class SympyArith:
    """Symbolic arithmetic: programs evaluated on sympy expressions (exact reals)."""

    @staticmethod
    def const(q):
        return to_rational(q)

    @staticmethod
    def add(a, b):
        return a + b

    @staticmethod
    def sub(a, b):
        return a - b

    @staticmethod
    def mul(a, b):
        return a * b

    @staticmethod
    def div(a, b):
        return a / b

    @staticmethod
    def neg(a):
        return -a

    @staticmethod
    def sigmoid(a):
        return 1 / (1 + sympy.exp(-a))

    @staticmethod
    def tanh(a):
        return sympy.tanh(a)


class ExactArith:
    """Exact rational arithmetic (mpq in, mpq out); sigmoid/tanh have no rational values."""

    @staticmethod
    def const(q):
        return mpq(q)

    @staticmethod
    def add(a, b):
        return mpq(a) + mpq(b)

    @staticmethod
    def sub(a, b):
        return mpq(a) - mpq(b)

    @staticmethod
    def mul(a, b):
        return mpq(a) * mpq(b)

    @staticmethod
    def div(a, b):
        return mpq(a) / mpq(b)

    @staticmethod
    def neg(a):
        return -mpq(a)

    @staticmethod
    def sigmoid(a):
        raise TypeError("sigmoid has no exact rational value")

    @staticmethod
    def tanh(a):
        raise TypeError("tanh has no exact rational value")


# --------------------------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class Kink:
    index: int  # position in increasing order of kinks (0-based)
    at: mpq  # where
    left: mpq  # left derivative (limit of f' from below)
    right: mpq  # right derivative

    @property
    def clarke(self) -> tuple[mpq, mpq]:
        return (min(self.left, self.right), max(self.left, self.right))


@dataclass(frozen=True)
class Piece:
    lo: mpq | None  # open interval (lo, hi) between consecutive kinks; None = unbounded
    hi: mpq | None
    expr: sympy.Expr  # value on this piece (in X)
    dexpr: sympy.Expr  # derivative on this piece (in X)
    value_program: Callable = field(compare=False, repr=False)  # (x, A) -> value
    derivative_program: Callable = field(compare=False, repr=False)  # (x, y, A) -> derivative


class Activation:
    """One elementwise activation with its derived kinks and pieces (build with ``activation``)."""

    def __init__(self, name, params, expr, kinks, pieces, transcendental):
        self.name: str = name
        self.params: dict[str, mpq] = dict(params)
        self.expr: sympy.Expr = expr
        self.kinks: tuple[Kink, ...] = tuple(kinks)
        self.pieces: tuple[Piece, ...] = tuple(pieces)
        self.smooth: bool = not self.kinks
        self.transcendental: bool = transcendental
        self._ats = [k.at for k in self.kinks]

    def __repr__(self):
        ps = ", ".join(f"{k}={v}" for k, v in self.params.items())
        ks = ", ".join(f"{k.at}:({k.left},{k.right})" for k in self.kinks)
        return f"Activation({self.name}({ps}); kinks [{ks}])"

    def locate(self, q) -> tuple[int, int | None]:
        """(i, None) for q strictly inside piece i; (k, k) for q exactly on kink k."""
        q = mpq(q)
        i = bisect.bisect_left(self._ats, q)
        if i < len(self._ats) and self._ats[i] == q:
            return (i, i)
        return (i, None)

    def one_sided(self, k: int, side: str) -> mpq:
        if side == "left":
            return self.kinks[k].left
        if side == "right":
            return self.kinks[k].right
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")

    def exact_value(self, q) -> mpq:
        """Exact value at the rational q (evaluates the piece's program in exact arithmetic).

        On a kink the left piece's program is used (the activation is continuous there)."""
        if self.transcendental:
            raise TypeError(f"{self.name} is transcendental: no exact rational value")
        q = mpq(q)
        i, _ = self.locate(q)
        return mpq(self.pieces[i].value_program(q, ExactArith))

    def exact_derivative(self, q) -> mpq:
        """Exact derivative at the rational q, which must lie strictly inside a piece."""
        if self.transcendental:
            raise TypeError(f"{self.name} is transcendental: no exact rational derivative")
        q = mpq(q)
        i, k = self.locate(q)
        if k is not None:
            raise ValueError(f"{self.name} has a kink at {q}: no derivative there (see kinks[{k}])")
        piece = self.pieces[i]
        y = mpq(piece.value_program(q, ExactArith))
        return mpq(piece.derivative_program(q, y, ExactArith))


# --------------------------------------------------------------------------------------------
# the definitions (the one place where activations are written down)
#
# Each entry: name -> (params, build(p) -> (expr, programs)) where p maps the parameter names to
# (sympy Rational, mpq) pairs, and ``programs`` lists the (value_program, derivative_program) of
# the pieces left to right.  Programs are matched to the derived pieces by formula, so a piece that
# disappears for special constants (leaky_relu with slope 1) simply leaves its program unused.


def _const(q):
    return lambda x, A: A.const(q)


def _dconst(q):
    return lambda x, y, A: A.const(q)


_ident = lambda x, A: x  # noqa: E731


def _def_relu(p):
    expr = sympy.Max(X, 0)
    return expr, [(_const(0), _dconst(0)), (_ident, _dconst(1))]


def _def_leaky_relu(p):
    s, sq = p["negative_slope"]
    expr = sympy.Piecewise((s * X, X < 0), (X, True))
    return expr, [
        (lambda x, A: A.mul(x, A.const(sq)), _dconst(sq)),
        (_ident, _dconst(1)),
    ]


def _clamp(lo, hi):
    (lo_s, lo_q), (hi_s, hi_q) = lo, hi
    expr = sympy.Min(sympy.Max(X, lo_s), hi_s)
    return expr, [(_const(lo_q), _dconst(0)), (_ident, _dconst(1)), (_const(hi_q), _dconst(0))]


def _def_hardtanh(p):
    return _clamp(p["min_val"], p["max_val"])


def _def_relu6(p):
    return _clamp((sympy.Integer(0), mpq(0)), (sympy.Integer(6), mpq(6)))


def _def_hardsigmoid(p):
    expr = sympy.Piecewise((0, X <= -3), (X / 6 + sympy.Rational(1, 2), X < 3), (1, True))
    return expr, [
        (_const(0), _dconst(0)),
        (lambda x, A: A.div(A.add(x, A.const(3)), A.const(6)), _dconst(mpq(1, 6))),
        (_const(1), _dconst(0)),
    ]


def _def_hardswish(p):
    # PyTorch's CPU formula x * min(max(x + 3, 0), 6) / 6 on every piece: x * 0 / 6 (-0 for
    # negative x) on the left, x * 6 / 6 (not x: two roundings, inf past FLT_MAX / 6) on the right
    expr = sympy.Piecewise((0, X <= -3), (X * (X + 3) / 6, X < 3), (X, True))
    return expr, [
        (lambda x, A: A.div(A.mul(x, A.const(0)), A.const(6)), _dconst(0)),
        (
            lambda x, A: A.div(A.mul(x, A.add(x, A.const(3))), A.const(6)),
            lambda x, y, A: A.add(A.div(x, A.const(3)), A.const(mpq(1, 2))),
        ),
        (lambda x, A: A.div(A.mul(x, A.const(6)), A.const(6)), _dconst(1)),
    ]


def _def_abs(p):
    expr = sympy.Abs(X)
    return expr, [(lambda x, A: A.neg(x), _dconst(-1)), (_ident, _dconst(1))]


def _def_identity(p):
    return X, [(_ident, _dconst(1))]


def _def_sigmoid(p):
    expr = 1 / (1 + sympy.exp(-X))
    return expr, [(lambda x, A: A.sigmoid(x), lambda x, y, A: A.mul(A.sub(A.const(1), y), y))]


def _def_tanh(p):
    expr = sympy.tanh(X)
    return expr, [(lambda x, A: A.tanh(x), lambda x, y, A: A.sub(A.const(1), A.mul(y, y)))]


_DEFS: dict[str, tuple[tuple[str, ...], Callable]] = {
    "relu": ((), _def_relu),
    "leaky_relu": (("negative_slope",), _def_leaky_relu),
    "hardtanh": (("min_val", "max_val"), _def_hardtanh),
    "relu6": ((), _def_relu6),
    "hardsigmoid": ((), _def_hardsigmoid),
    "hardswish": ((), _def_hardswish),
    "abs": ((), _def_abs),
    "identity": ((), _def_identity),
    "sigmoid": ((), _def_sigmoid),
    "tanh": ((), _def_tanh),
}

ELEMENTWISE: frozenset[str] = frozenset(_DEFS)
PARAMS: dict[str, tuple[str, ...]] = {name: ps for name, (ps, _) in _DEFS.items()}


# --------------------------------------------------------------------------------------------
# the derivation


def _piecewise_form(expr: sympy.Expr) -> sympy.Expr:
    return sympy.piecewise_fold(expr.rewrite(sympy.Piecewise))


def _breakpoints(pw: sympy.Expr) -> list[sympy.Rational]:
    """Real solutions of every relation occurring in the Piecewise conditions, sorted."""
    pts = set()
    for rel in pw.atoms(sympy.core.relational.Relational):
        sol = sympy.solveset(rel.lhs - rel.rhs, X, sympy.S.Reals)
        if not isinstance(sol, sympy.FiniteSet):
            raise ValueError(f"cannot isolate the breakpoints of condition {rel}: {sol}")
        for s in sol:
            if not s.is_Rational:
                raise ValueError(f"breakpoint {s} of condition {rel} is not rational")
            pts.add(s)
    return sorted(pts)


def _resolve(e: sympy.Expr, t: sympy.Rational) -> sympy.Expr:
    """The formula of e valid around X = t: every Piecewise replaced by its branch active at t."""
    if isinstance(e, sympy.Piecewise):
        for branch, cond in e.args:
            c = cond.subs(X, t)
            if c is sympy.true:
                return _resolve(branch, t)
            if c is not sympy.false:
                raise ValueError(f"cannot decide condition {cond} at x = {t}")
        raise ValueError(f"Piecewise {e} undefined at x = {t}")
    if not e.args or not e.has(sympy.Piecewise):
        return e
    return e.func(*[_resolve(a, t) for a in e.args])


def _sample(lo, hi) -> sympy.Rational:
    if lo is None and hi is None:
        return sympy.Integer(0)
    if lo is None:
        return hi - 1
    if hi is None:
        return lo + 1
    return (lo + hi) / 2


def _same(a: sympy.Expr, b: sympy.Expr) -> bool:
    """Symbolic equality (cheap tests first; simplify only as a last resort)."""
    d = sympy.sympify(a) - sympy.sympify(b)
    return d == 0 or sympy.cancel(d) == 0 or sympy.simplify(d) == 0


def _derive(name: str, expr: sympy.Expr, programs) -> tuple[tuple[Kink, ...], tuple[Piece, ...], bool]:
    pw = _piecewise_form(expr)
    bps = _breakpoints(pw)
    bounds = [None, *bps, None]
    segs = []  # [lo, hi, formula] per segment between candidate breakpoints
    for j in range(len(bps) + 1):
        lo, hi = bounds[j], bounds[j + 1]
        segs.append([lo, hi, _resolve(pw, _sample(lo, hi))])

    # walk the breakpoints: continuity, one-sided derivatives, drop the non-kinks
    kinks = []
    merged = [segs[0]]
    for j, b in enumerate(bps):
        left_seg, right_seg = merged[-1], segs[j + 1]
        eL, eR = left_seg[2], right_seg[2]
        vL = sympy.limit(eL, X, b, "-")
        vR = sympy.limit(eR, X, b, "+")
        v0 = _resolve(pw, b).subs(X, b)
        if not (_same(vL, vR) and _same(vL, v0)):
            raise ValueError(f"{name} is not continuous at x = {b}: left {vL}, value {v0}, right {vR}")
        dL = sympy.limit(sympy.diff(eL, X), X, b, "-")
        dR = sympy.limit(sympy.diff(eR, X), X, b, "+")
        if _same(dL, dR):
            # not a kink: the two segments must be one formula (a C^1 join of different
            # formulas would need a piece with two formulas, which no activation here has)
            if not _same(eL, eR):
                raise NotImplementedError(f"{name}: C^1 breakpoint at {b} between different formulas {eL} | {eR}")
            left_seg[1] = right_seg[1]  # extend the left segment over the breakpoint
            continue
        kinks.append(Kink(index=len(kinks), at=to_mpq(b), left=to_mpq(dL), right=to_mpq(dR)))
        merged.append(right_seg)

    # attach the programs: left to right, each piece takes the next program that computes its
    # formula (symbolically); its derivative program must then compute the derived derivative
    pieces = []
    nxt = 0
    for lo, hi, e in merged:
        de = sympy.diff(e, X)
        for j in range(nxt, len(programs)):
            vp, dp = programs[j]
            if _same(vp(X, SympyArith), e):
                break
        else:
            raise ValueError(f"{name}: no program computes the piece {e} on ({lo}, {hi})")
        if not _same(dp(X, e, SympyArith), de):
            raise ValueError(f"{name}: derivative program of piece {e} does not compute {de}")
        nxt = j + 1
        pieces.append(
            Piece(
                lo=None if lo is None else to_mpq(lo),
                hi=None if hi is None else to_mpq(hi),
                expr=e,
                dexpr=de,
                value_program=vp,
                derivative_program=dp,
            )
        )
    transcendental = not all(
        p.expr.is_rational_function(X) and all(n.is_Rational for n in p.expr.atoms(sympy.Number))
        for p in pieces
    )
    return tuple(kinks), tuple(pieces), transcendental


class UnknownActivation(ValueError, KeyError):
    """Unknown activation name (both a ValueError and a KeyError)."""

    def __str__(self):  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


@functools.lru_cache(maxsize=None)
def _build(name: str, items: tuple[tuple[str, mpq], ...]) -> Activation:
    names, definition = _DEFS[name]
    params = dict(items)
    p = {k: (to_rational(v), v) for k, v in params.items()}
    if name == "hardtanh" and not params["min_val"] < params["max_val"]:
        raise ValueError(f"hardtanh needs min_val < max_val, got {params['min_val']} >= {params['max_val']}")
    expr, programs = definition(p)
    kinks, pieces, transcendental = _derive(name, expr, programs)
    return Activation(name, {k: params[k] for k in names}, expr, kinks, pieces, transcendental)


def activation(name: str, **params) -> Activation:
    """The activation ``name`` with its exact constants (mpq, already rounded by the caller)."""
    if name not in _DEFS:
        raise UnknownActivation(f"unknown activation {name!r}; known: {', '.join(sorted(_DEFS))}")
    wanted = PARAMS[name]
    missing = [k for k in wanted if k not in params]
    extra = [k for k in params if k not in wanted]
    if missing or extra:
        raise ValueError(
            f"{name} takes parameters {list(wanted)}"
            + (f"; missing {missing}" if missing else "")
            + (f"; unexpected {extra}" if extra else "")
        )
    items = tuple(sorted((k, _as_exact_param(k, v)) for k, v in params.items()))
    return _build(name, items)


@functools.lru_cache(maxsize=None)
def max_rule() -> dict:
    """One-sided partial derivatives of max(a, b) on each side of the tie a == b, from sympy."""
    a, b = sympy.symbols("a b", real=True)
    m = sympy.Max(a, b)
    grads = [sympy.diff(m, v) for v in (a, b)]  # Heaviside(a - b), Heaviside(b - a)

    def side(sub):
        return tuple(to_mpq(g.subs(a, sub)) for g in grads)

    return {"partials_a_gt_b": side(b + 1), "partials_a_lt_b": side(b - 1)}
