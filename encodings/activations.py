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
import sys
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

from gmpy2 import mpq, mpz

__all__ = [
    "X",  # noqa: F822 (module __getattr__: sympy is imported on first use)
    "Y",  # noqa: F822
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



class _LazySympy:
    """``sympy``, imported on first use: it costs ~0.3 s of start-up, and a verification of a
    network whose activations are all in ``_DERIVED`` never needs it."""

    def __getattr__(self, name):
        import sympy as _s

        return getattr(_s, name)


sympy = _LazySympy()
_SYMBOLS: dict = {}


def _symbol(name: str):
    """X (the activation's input) or Y (its output, in derivative programs) as sympy symbols."""
    if name not in _SYMBOLS:
        import sympy as _s

        _SYMBOLS["X"] = _s.Symbol("x", real=True)
        _SYMBOLS["Y"] = _s.Symbol("y", real=True)
    return _SYMBOLS[name]


def __getattr__(name):  # ``from kinkcheck.encodings.activations import X`` (PEP 562)
    if name in ("X", "Y"):
        return _symbol(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    if "sympy" in sys.modules and isinstance(v, sys.modules["sympy"].Basic):  # no sympy object without sympy
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


class Piece:
    """One smooth piece: the open interval (lo, hi) between consecutive kinks (None = unbounded),
    its value ``expr`` and derivative ``dexpr`` (sympy, in X), the two programs, and ``dconst``:
    the derivative as an mpq when it is constant on the piece (else None). For activations built
    from ``_DERIVED`` the sympy expressions are derived on first access."""

    __slots__ = ("lo", "hi", "_expr", "_dexpr", "value_program", "derivative_program", "dconst", "_derive")

    def __init__(self, lo, hi, expr, dexpr, value_program, derivative_program, dconst=None, derive=None):
        self.lo, self.hi = lo, hi
        self._expr, self._dexpr = expr, dexpr
        self.value_program, self.derivative_program = value_program, derivative_program
        self.dconst = dconst
        self._derive = derive  # () -> the sympy-derived Piece (lazy expressions)

    def _load(self):
        if self._expr is None:
            full = self._derive()
            self._expr, self._dexpr = full.expr, full.dexpr

    @property
    def expr(self):
        self._load()
        return self._expr

    @property
    def dexpr(self):
        self._load()
        return self._dexpr

    def __eq__(self, other):
        if not isinstance(other, Piece):
            return NotImplemented
        return (self.lo, self.hi, self.expr, self.dexpr) == (other.lo, other.hi, other.expr, other.dexpr)

    def __hash__(self):
        return hash((self.lo, self.hi))

    def __repr__(self):
        return f"Piece(lo={self.lo}, hi={self.hi}, dconst={self.dconst})"


class Activation:
    """One elementwise activation with its derived kinks and pieces (build with ``activation``)."""

    def __init__(self, name, params, expr, kinks, pieces, transcendental):
        self.name: str = name
        self.params: dict[str, mpq] = dict(params)
        self._expr = expr  # a sympy expression, or a thunk returning it (lazy sympy)
        self.kinks: tuple[Kink, ...] = tuple(kinks)
        self.pieces: tuple[Piece, ...] = tuple(pieces)
        self.smooth: bool = not self.kinks
        self.transcendental: bool = transcendental
        self._ats = [k.at for k in self.kinks]

    @property
    def expr(self):
        if callable(self._expr):
            self._expr = self._expr()
        return self._expr

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
# Each entry: name -> (params, build(p) -> (expr_of, programs)) where p maps the parameter names to
# (sympy Rational, mpq) pairs, expr_of(X) builds the sympy expression (only when it is derived), and ``programs`` lists the (value_program, derivative_program) of
# the pieces left to right.  Programs are matched to the derived pieces by formula, so a piece that
# disappears for special constants (leaky_relu with slope 1) simply leaves its program unused.


def _const(q):
    return lambda x, A: A.const(q)


def _dconst(q):
    return lambda x, y, A: A.const(q)


_ident = lambda x, A: x  # noqa: E731


def _def_relu(p):
    return (lambda X: sympy.Max(X, 0)), [(_const(0), _dconst(0)), (_ident, _dconst(1))]


def _def_leaky_relu(p):
    s, sq = p["negative_slope"]
    return (lambda X: sympy.Piecewise((s * X, X < 0), (X, True))), [
        (lambda x, A: A.mul(x, A.const(sq)), _dconst(sq)),
        (_ident, _dconst(1)),
    ]


def _clamp(lo_q, hi_q):
    expr = lambda X: sympy.Min(sympy.Max(X, to_rational(lo_q)), to_rational(hi_q))  # noqa: E731
    return expr, [(_const(lo_q), _dconst(0)), (_ident, _dconst(1)), (_const(hi_q), _dconst(0))]


def _def_hardtanh(p):
    return _clamp(p["min_val"][1], p["max_val"][1])


def _def_relu6(p):
    return _clamp(mpq(0), mpq(6))


def _def_hardsigmoid(p):
    return (lambda X: sympy.Piecewise((0, X <= -3), (X / 6 + sympy.Rational(1, 2), X < 3), (1, True))), [
        (_const(0), _dconst(0)),
        (lambda x, A: A.div(A.add(x, A.const(3)), A.const(6)), _dconst(mpq(1, 6))),
        (_const(1), _dconst(0)),
    ]


def _def_hardswish(p):
    # PyTorch's CPU formula x * min(max(x + 3, 0), 6) / 6 on every piece: x * 0 / 6 (-0 for
    # negative x) on the left, x * 6 / 6 (not x: two roundings, inf past FLT_MAX / 6) on the right
    return (lambda X: sympy.Piecewise((0, X <= -3), (X * (X + 3) / 6, X < 3), (X, True))), [
        (lambda x, A: A.div(A.mul(x, A.const(0)), A.const(6)), _dconst(0)),
        (
            lambda x, A: A.div(A.mul(x, A.add(x, A.const(3))), A.const(6)),
            lambda x, y, A: A.add(A.div(x, A.const(3)), A.const(mpq(1, 2))),
        ),
        (lambda x, A: A.div(A.mul(x, A.const(6)), A.const(6)), _dconst(1)),
    ]


def _def_abs(p):
    return (lambda X: sympy.Abs(X)), [(lambda x, A: A.neg(x), _dconst(-1)), (_ident, _dconst(1))]


def _def_identity(p):
    return (lambda X: X), [(_ident, _dconst(1))]


def _def_sigmoid(p):
    return (lambda X: 1 / (1 + sympy.exp(-X))), [(lambda x, A: A.sigmoid(x), lambda x, y, A: A.mul(A.sub(A.const(1), y), y))]


def _def_tanh(p):
    return (lambda X: sympy.tanh(X)), [(lambda x, A: A.tanh(x), lambda x, y, A: A.sub(A.const(1), A.mul(y, y)))]


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
    X = _symbol("X")
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
    X = _symbol("X")
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
    X = _symbol("X")
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
                dconst=None if de.free_symbols else to_mpq(de),
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
    if not items and name in _DERIVED:
        return _from_table(name)
    return _build_derived(name, items)


@functools.lru_cache(maxsize=None)
def _build_derived(name: str, items: tuple[tuple[str, mpq], ...]) -> Activation:
    """The activation derived with sympy from its one expression."""
    names, definition = _DEFS[name]
    params = dict(items)
    p = {k: (to_rational(v), v) for k, v in params.items()}  # (sympy Rational, mpq) pairs
    if name == "hardtanh" and not params["min_val"] < params["max_val"]:
        raise ValueError(f"hardtanh needs min_val < max_val, got {params['min_val']} >= {params['max_val']}")
    expr_of, programs = definition(p)
    expr = expr_of(_symbol("X"))
    kinks, pieces, transcendental = _derive(name, expr, programs)
    return Activation(name, {k: params[k] for k in names}, expr, kinks, pieces, transcendental)


# The derivation's results for the parameter-free activations, so that a run which only needs
# kinks, one-sided derivatives and programs does not import sympy (~0.3 s of start-up). This is a
# cache, not a second definition: tests/test_activations.py derives every entry again with sympy
# and compares (kinks, piece bounds, constant derivatives, which program each piece runs); the
# sympy expressions of a table-built activation are derived on first access.
# name -> (kinks [(at, left, right)], pieces [(lo, hi, program index, constant derivative | None)],
#          transcendental)
_DERIVED: dict = {
    "relu": ([("0", "0", "1")], [(None, "0", 0, "0"), ("0", None, 1, "1")], False),
    "relu6": ([("0", "0", "1"), ("6", "1", "0")], [(None, "0", 0, "0"), ("0", "6", 1, "1"), ("6", None, 2, "0")], False),
    "abs": ([("0", "-1", "1")], [(None, "0", 0, "-1"), ("0", None, 1, "1")], False),
    "identity": ([], [(None, None, 0, "1")], False),
    "hardsigmoid": ([("-3", "0", "1/6"), ("3", "1/6", "0")], [(None, "-3", 0, "0"), ("-3", "3", 1, "1/6"), ("3", None, 2, "0")], False),
    "hardswish": ([("-3", "0", "-1/2"), ("3", "3/2", "1")], [(None, "-3", 0, "0"), ("-3", "3", 1, None), ("3", None, 2, "1")], False),
    "sigmoid": ([], [(None, None, 0, None)], True),
    "tanh": ([], [(None, None, 0, None)], True),
}


def _from_table(name: str) -> Activation:
    kinks_t, pieces_t, transcendental = _DERIVED[name]
    _, definition = _DEFS[name]
    q = lambda v: None if v is None else mpq(v)  # noqa: E731
    kinks = [Kink(index=i, at=q(a), left=q(lft), right=q(rgt)) for i, (a, lft, rgt) in enumerate(kinks_t)]
    full = lambda: _build_derived(name, ())  # noqa: E731
    programs = []

    def program(j):  # the programs are plain callables; building them needs no sympy
        if not programs:
            programs.extend(_programs_of(name))
        return programs[j]

    pieces = []
    for i, (lo, hi, j, d) in enumerate(pieces_t):
        vp, dp = program(j)
        pieces.append(Piece(q(lo), q(hi), None, None, vp, dp, dconst=q(d), derive=lambda i=i: full().pieces[i]))
    return Activation(name, {}, lambda: full().expr, kinks, pieces, transcendental)


def _programs_of(name: str):
    """The (value, derivative) programs of a parameter-free activation, without its expression."""
    return _DEFS[name][1]({})[1]


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
