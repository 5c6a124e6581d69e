"""Tests for kinkcheck.encodings.activations: the derived kink data, the programs, the exact API."""

from __future__ import annotations

import functools
import struct
from fractions import Fraction

import pytest
import sympy
from gmpy2 import mpq
from hypothesis import given, settings
from hypothesis import strategies as st

from kinkcheck.encodings import activations as A
from kinkcheck.encodings.activations import (
    ELEMENTWISE,
    PARAMS,
    ExactArith,
    SympyArith,
    X,
    Y,
    activation,
    max_rule,
    to_mpq,
    to_rational,
)


def f32(v: float) -> mpq:
    """The float32 nearest to v, as an exact rational (what the caller passes in)."""
    return mpq(struct.unpack("f", struct.pack("f", v))[0])


SLOPE32 = f32(0.01)  # 0x1.47ae14p-7

# (label, name, params) - every activation, plus the special constants the brief asks about
CASES = [
    ("relu", "relu", {}),
    ("leaky_relu", "leaky_relu", {"negative_slope": SLOPE32}),
    ("leaky_relu_1", "leaky_relu", {"negative_slope": mpq(1)}),
    ("leaky_relu_3", "leaky_relu", {"negative_slope": mpq(3)}),
    ("leaky_relu_0", "leaky_relu", {"negative_slope": mpq(0)}),
    ("hardtanh", "hardtanh", {"min_val": mpq(-1), "max_val": mpq(1)}),
    ("hardtanh_odd", "hardtanh", {"min_val": mpq(-5, 8), "max_val": mpq(3, 1024)}),
    ("relu6", "relu6", {}),
    ("hardsigmoid", "hardsigmoid", {}),
    ("hardswish", "hardswish", {}),
    ("abs", "abs", {}),
    ("identity", "identity", {}),
    ("sigmoid", "sigmoid", {}),
    ("tanh", "tanh", {}),
]
IDS = [c[0] for c in CASES]
RATIONAL_CASES = [c for c in CASES if c[1] not in ("sigmoid", "tanh")]
RATIONAL_IDS = [c[0] for c in RATIONAL_CASES]


def get(case):
    _, name, params = case
    return activation(name, **params)


# ------------------------------------------------------------------------------------------------
# the derived kink data against the spec's values

# name, params, [(at, left, right), ...]
EXPECTED_KINKS = [
    ("relu", {}, [(0, 0, 1)]),
    ("leaky_relu", {"negative_slope": SLOPE32}, [(0, SLOPE32, 1)]),
    ("leaky_relu", {"negative_slope": mpq(3)}, [(0, 3, 1)]),
    ("leaky_relu", {"negative_slope": mpq(1)}, []),
    ("hardtanh", {"min_val": mpq(-1), "max_val": mpq(1)}, [(-1, 0, 1), (1, 1, 0)]),
    ("relu6", {}, [(0, 0, 1), (6, 1, 0)]),
    ("hardsigmoid", {}, [(-3, 0, mpq(1, 6)), (3, mpq(1, 6), 0)]),
    ("hardswish", {}, [(-3, 0, mpq(-1, 2)), (3, mpq(3, 2), 1)]),
    ("abs", {}, [(0, -1, 1)]),
    ("identity", {}, []),
    ("sigmoid", {}, []),
    ("tanh", {}, []),
]


@pytest.mark.parametrize("name,params,expected", EXPECTED_KINKS, ids=[f"{e[0]}{list(e[1].values())}" for e in EXPECTED_KINKS])
def test_kinks_match_spec(name, params, expected):
    act = activation(name, **params)
    got = [(k.at, k.left, k.right) for k in act.kinks]
    assert got == [(mpq(a), mpq(l), mpq(r)) for a, l, r in expected]
    for i, k in enumerate(act.kinks):
        assert k.index == i
        assert all(isinstance(v, type(mpq())) for v in (k.at, k.left, k.right))
        assert k.clarke == (min(k.left, k.right), max(k.left, k.right))
    assert act.smooth == (not expected)
    assert len(act.pieces) == len(act.kinks) + 1


def test_abs_clarke_and_one_sided():
    act = activation("abs")
    (k,) = act.kinks
    assert k.clarke == (mpq(-1), mpq(1))
    assert act.one_sided(0, "left") == -1 and act.one_sided(0, "right") == 1
    with pytest.raises(ValueError):
        act.one_sided(0, "middle")


def test_leaky_relu_uses_exact_slope():
    act = activation("leaky_relu", negative_slope=SLOPE32)
    assert act.params == {"negative_slope": SLOPE32}
    assert SLOPE32 == mpq(5368709, 536870912) != mpq(1, 100)
    assert act.kinks[0].left == SLOPE32
    assert act.exact_value(mpq(-2)) == -2 * SLOPE32
    assert act.pieces[0].expr == to_rational(SLOPE32) * X


def test_leaky_relu_slope_one_has_no_kink():
    act = activation("leaky_relu", negative_slope=mpq(1))
    assert act.kinks == () and act.smooth and len(act.pieces) == 1
    p = act.pieces[0]
    assert p.lo is None and p.hi is None and p.expr == X
    assert act.exact_value(mpq(-7, 3)) == mpq(-7, 3)
    assert act.exact_derivative(mpq(0)) == 1  # 0 is not a kink here
    assert act.locate(mpq(0)) == (0, None)


def test_leaky_relu_steep_slope():
    act = activation("leaky_relu", negative_slope=mpq(3))
    assert act.exact_value(mpq(-1, 2)) == mpq(-3, 2)
    assert act.exact_derivative(mpq(-1, 2)) == 3
    assert act.exact_derivative(mpq(1, 2)) == 1
    assert act.kinks[0].clarke == (mpq(1), mpq(3))


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_transcendental(name):
    act = activation(name)
    assert act.transcendental and act.smooth and act.kinks == ()
    with pytest.raises(TypeError):
        act.exact_value(mpq(1, 2))
    with pytest.raises(TypeError):
        act.exact_derivative(mpq(1, 2))
    with pytest.raises(TypeError):
        act.pieces[0].value_program(mpq(1), ExactArith)


@pytest.mark.parametrize("case", RATIONAL_CASES, ids=RATIONAL_IDS)
def test_not_transcendental(case):
    assert not get(case).transcendental


def test_names_and_params_tables():
    assert ELEMENTWISE == frozenset(
        ["relu", "leaky_relu", "hardtanh", "relu6", "hardsigmoid", "hardswish", "abs", "identity", "sigmoid", "tanh"]
    )
    assert set(PARAMS) == ELEMENTWISE
    assert PARAMS["leaky_relu"] == ("negative_slope",)
    assert PARAMS["hardtanh"] == ("min_val", "max_val")
    assert all(PARAMS[n] == () for n in ELEMENTWISE - {"leaky_relu", "hardtanh"})


def test_pieces_cover_the_line():
    for case in CASES:
        act = get(case)
        ats = [k.at for k in act.kinks]
        assert ats == sorted(set(ats))
        assert [p.lo for p in act.pieces] == [None, *ats]
        assert [p.hi for p in act.pieces] == [*ats, None]


# ------------------------------------------------------------------------------------------------
# errors and caching


@pytest.mark.parametrize("lo,hi", [(1, 1), (2, -1), (0, 0)])
def test_hardtanh_bad_bounds(lo, hi):
    with pytest.raises(ValueError):
        activation("hardtanh", min_val=mpq(lo), max_val=mpq(hi))


def test_unknown_and_bad_params():
    with pytest.raises(ValueError):
        activation("softplus")
    with pytest.raises(KeyError):
        activation("softplus")
    with pytest.raises(ValueError):
        activation("leaky_relu")  # missing
    with pytest.raises(ValueError):
        activation("relu", negative_slope=mpq(1, 2))  # extra
    with pytest.raises(ValueError):
        activation("hardtanh", min_val=mpq(-1))  # missing max_val
    with pytest.raises(ValueError):
        activation("leaky_relu", negative_slope="0.01")  # not an exact rational object
    with pytest.raises(ValueError):
        activation("leaky_relu", negative_slope=0.01)  # a float: the caller must round it first
    with pytest.raises(ValueError):
        activation("leaky_relu", negative_slope=True)


def test_cached_and_param_types():
    a = activation("hardtanh", min_val=mpq(-1), max_val=mpq(1))
    assert activation("hardtanh", max_val=mpq(1), min_val=mpq(-1)) is a
    assert activation("hardtanh", min_val=-1, max_val=Fraction(1)) is a
    assert activation("relu") is activation("relu")
    assert all(isinstance(v, type(mpq())) for v in a.params.values())


def test_exact_derivative_on_kink_raises():
    act = activation("hardswish")
    for k in act.kinks:
        with pytest.raises(ValueError):
            act.exact_derivative(k.at)


def test_max_rule():
    rule = max_rule()
    assert rule == {"partials_a_gt_b": (1, 0), "partials_a_lt_b": (0, 1)}


def test_derivation_rejects_jump_and_c1_join():
    step = sympy.Piecewise((0, X < 0), (1, True))
    with pytest.raises(ValueError, match="not continuous"):
        A._derive("step", step, [])
    smooth_join = sympy.Piecewise((X**2, X < 0), (X**3, True))
    with pytest.raises(NotImplementedError):
        A._derive("join", smooth_join, [])


def test_derivation_on_a_new_expression():
    # the machinery is generic: a kink at an odd rational from Max, found by sympy
    e = sympy.Max(3 * X - 1, -X)
    kinks, pieces, trans = A._derive(
        "demo",
        e,
        [
            (lambda x, Ar: Ar.neg(x), lambda x, y, Ar: Ar.const(-1)),
            (lambda x, Ar: Ar.sub(Ar.mul(Ar.const(3), x), Ar.const(1)), lambda x, y, Ar: Ar.const(3)),
        ],
    )
    assert [(k.at, k.left, k.right) for k in kinks] == [(mpq(1, 4), -1, 3)]
    assert not trans and len(pieces) == 2


def test_derivation_rejects_wrong_program():
    with pytest.raises(ValueError, match="no program"):
        A._derive("bad", sympy.Abs(X), [(lambda x, Ar: x, lambda x, y, Ar: Ar.const(1))])
    with pytest.raises(ValueError, match="derivative program"):
        A._derive(
            "bad",
            sympy.Abs(X),
            [(lambda x, Ar: Ar.neg(x), lambda x, y, Ar: Ar.const(1)), (lambda x, Ar: x, lambda x, y, Ar: Ar.const(1))],
        )


# ------------------------------------------------------------------------------------------------
# the programs agree with the derived pieces (sympy.simplify, as the brief asks)


@functools.lru_cache(maxsize=None)
def _simplified_zero(e: sympy.Expr) -> bool:
    return sympy.simplify(e) == 0


PIECE_CASES = [(c, i) for c in CASES for i in range(len(get(c).pieces))]


@pytest.mark.parametrize("case,i", PIECE_CASES, ids=[f"{c[0]}-piece{i}" for c, i in PIECE_CASES])
def test_programs_match_pieces(case, i):
    piece = get(case).pieces[i]
    v = piece.value_program(X, SympyArith)
    assert _simplified_zero(v - piece.expr)
    dv = piece.derivative_program(X, piece.expr, SympyArith)
    assert _simplified_zero(dv - piece.dexpr)
    assert _simplified_zero(piece.dexpr - sympy.diff(piece.expr, X))
    # the derivative program as written over a free output symbol, then y := the piece value
    dy = piece.derivative_program(X, Y, SympyArith).subs(Y, piece.expr)
    assert _simplified_zero(dy - piece.dexpr)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_pieces_are_the_definition(case):
    """On each piece the piece's formula equals the one definition, at an interior point."""
    act = get(case)
    for p in act.pieces:
        lo, hi = p.lo, p.hi
        t = mpq(0) if lo is None and hi is None else (hi - 1 if lo is None else (lo + 1 if hi is None else (lo + hi) / 2))
        t = to_rational(t)
        assert _simplified_zero(act.expr.subs(X, t) - p.expr.subs(X, t))


def test_sigmoid_tanh_programs_literal():
    s = activation("sigmoid").pieces[0]
    assert s.derivative_program(X, Y, SympyArith) == (1 - Y) * Y
    t = activation("tanh").pieces[0]
    assert t.derivative_program(X, Y, SympyArith) == 1 - Y * Y


# ------------------------------------------------------------------------------------------------
# property tests with random rationals

rationals = st.fractions(min_value=-12, max_value=12, max_denominator=64).map(lambda f: mpq(f.numerator, f.denominator))


@st.composite
def case_and_point(draw, cases=RATIONAL_CASES):
    case = draw(st.sampled_from(cases))
    act = get(case)
    ats = [k.at for k in act.kinks]
    if ats and draw(st.booleans()):
        # near or on a kink
        q = draw(st.sampled_from(ats)) + draw(st.sampled_from([mpq(0), mpq(1, 2**20), -mpq(1, 2**20), mpq(1, 3), -mpq(1, 3)]))
    else:
        q = draw(rationals)
    return case, q


@settings(max_examples=150, deadline=None)
@given(case_and_point())
def test_exact_value_matches_sympy(cp):
    case, q = cp
    act = get(case)
    want = act.expr.subs(X, to_rational(q))
    assert act.exact_value(q) == to_mpq(want)


@settings(max_examples=150, deadline=None)
@given(case_and_point())
def test_exact_derivative_matches_sympy(cp):
    case, q = cp
    act = get(case)
    i, k = act.locate(q)
    if k is not None:
        with pytest.raises(ValueError):
            act.exact_derivative(q)
        return
    want = sympy.diff(act.expr, X).subs(X, to_rational(q))
    assert act.exact_derivative(q) == to_mpq(want)
    assert act.exact_derivative(q) == to_mpq(act.pieces[i].dexpr.subs(X, to_rational(q)))


@settings(max_examples=200, deadline=None)
@given(case_and_point(CASES))
def test_locate_consistent(cp):
    case, q = cp
    act = get(case)
    i, k = act.locate(q)
    if k is not None:
        assert i == k and act.kinks[k].at == q
        assert act.pieces[k].hi == q and act.pieces[k + 1].lo == q
    else:
        assert all(kk.at != q for kk in act.kinks)
        p = act.pieces[i]
        assert (p.lo is None or p.lo < q) and (p.hi is None or q < p.hi)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_piece_derivatives_meet_one_sided_limits(case):
    act = get(case)
    for k in act.kinks:
        b = to_rational(k.at)
        left_piece, right_piece = act.pieces[k.index], act.pieces[k.index + 1]
        assert to_mpq(sympy.limit(left_piece.dexpr, X, b, "-")) == act.one_sided(k.index, "left")
        assert to_mpq(sympy.limit(right_piece.dexpr, X, b, "+")) == act.one_sided(k.index, "right")
        # values meet too (continuity)
        assert left_piece.expr.subs(X, b) == right_piece.expr.subs(X, b) == act.expr.subs(X, b)
        assert k.left != k.right


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(RATIONAL_CASES), st.data())
def test_one_sided_derivative_is_derivative_nearby(case, data):
    """Just left/right of a kink (inside the adjacent piece) exact_derivative -> the one-sided values."""
    act = get(case)
    if not act.kinks:
        return
    k = data.draw(st.sampled_from(act.kinks))
    eps = data.draw(st.sampled_from([mpq(1, 2**30), mpq(1, 2**60)]))
    dl = act.exact_derivative(k.at - eps)
    dr = act.exact_derivative(k.at + eps)
    assert abs(dl - k.left) <= 2 * eps  # hardswish's middle piece has slope varying by x/3
    assert abs(dr - k.right) <= 2 * eps


@settings(max_examples=60, deadline=None)
@given(
    st.fractions(min_value=-4, max_value=4, max_denominator=1 << 12),
    st.fractions(min_value=-4, max_value=4, max_denominator=1 << 12),
)
def test_hardtanh_random_bounds(a, b):
    lo, hi = sorted((mpq(a.numerator, a.denominator), mpq(b.numerator, b.denominator)))
    if lo == hi:
        with pytest.raises(ValueError):
            activation("hardtanh", min_val=lo, max_val=hi)
        return
    act = activation("hardtanh", min_val=lo, max_val=hi)
    assert [(k.at, k.left, k.right) for k in act.kinks] == [(lo, 0, 1), (hi, 1, 0)]
    assert act.exact_value(lo - 1) == lo and act.exact_value(hi + 1) == hi
    assert act.exact_value((lo + hi) / 2) == (lo + hi) / 2


@settings(max_examples=40, deadline=None)
@given(st.fractions(min_value=-4, max_value=4, max_denominator=1 << 10))
def test_leaky_relu_random_slope(s):
    s = mpq(s.numerator, s.denominator)
    act = activation("leaky_relu", negative_slope=s)
    if s == 1:
        assert act.kinks == ()
    else:
        assert [(k.at, k.left, k.right) for k in act.kinks] == [(0, s, 1)]
    assert act.exact_value(mpq(-3)) == -3 * s
    assert act.exact_value(mpq(5)) == 5


def test_exact_arith():
    assert ExactArith.div(ExactArith.const(1), ExactArith.const(3)) == mpq(1, 3)
    assert ExactArith.neg(mpq(2)) == -2
    with pytest.raises(TypeError):
        ExactArith.sigmoid(mpq(0))
    with pytest.raises(TypeError):
        ExactArith.tanh(mpq(0))
    assert SympyArith.const(mpq(1, 6)) == sympy.Rational(1, 6)
    assert SympyArith().sigmoid(X) == 1 / (1 + sympy.exp(-X))


@pytest.mark.parametrize("name", sorted(A._DERIVED))
def test_derived_table_is_the_sympy_derivation(name):
    """The start-up table (no sympy import for a relu network) holds exactly what the sympy
    derivation gives: kinks with one-sided derivatives, piece bounds, constant derivatives, the
    program each piece runs (compared symbolically), transcendental-ness."""
    table = A._from_table(name)
    derived = A._build_derived(name, ())
    assert activation(name) is A._build(name, ())
    assert table.kinks == derived.kinks
    assert table.transcendental == derived.transcendental
    assert len(table.pieces) == len(derived.pieces)
    for tp, dp in zip(table.pieces, derived.pieces):
        assert (tp.lo, tp.hi, tp.dconst) == (dp.lo, dp.hi, dp.dconst)
        want_d = None if dp.dexpr.free_symbols else to_mpq(dp.dexpr)
        assert tp.dconst == want_d  # independent of the derivation's own dconst
        assert _simplified_zero(tp.value_program(X, SympyArith) - dp.expr)
        assert _simplified_zero(tp.derivative_program(X, dp.expr, SympyArith) - dp.dexpr)
        assert tp == dp  # the lazy expressions are the derived ones
    assert table.expr == derived.expr
