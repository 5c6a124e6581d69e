"""Clarke membership on the patterns' polynomial regions (docs/clarke.md).

Expected values are derived by hand in the comments (the curved examples of proofs/examples) or by
an independent computation in the test: tie pre-activations of two-layer networks written out as
polynomials in t along arcs with Fractions, and pattern gradients from the chain rule by hand.
"""

from __future__ import annotations

import copy
import json
from fractions import Fraction as F

import pytest
from gmpy2 import mpq
from hypothesis import given, note
from hypothesis import strategies as st

import kinkcheck
from kinkcheck.certify.checker import check_certificate
from kinkcheck.certify.replay import CheckFailed
from kinkcheck.encodings import poly as PL

from conftest import EXAMPLES


def verify(name):
    return kinkcheck.verify(str(EXAMPLES / f"{name}.json"), values=True)


# ----------------------------------------------------------------------------------------------
# the polynomial arithmetic


def test_series_along_an_arc_by_hand():
    # p = Y - X^2 along X = t, Y = 3/2 t^2: p(t) = 3/2 t^2 - t^2 = 1/2 t^2
    X, Y = PL.Poly.var(2, 0), PL.Poly.var(2, 1)
    p = Y - X * X
    assert p.series([[mpq(1), mpq(0)], [mpq(0), mpq(3, 2)]], 4) == [0, 0, mpq(1, 2), 0, 0]
    # q = (X + 2Y)^2 along X = t + t^2, Y = -t: (t^2 - t)^2 = t^2 - 2t^3 + t^4
    q = (X + Y * 2) * (X + Y * 2)
    assert q.series([[mpq(1), mpq(-1)], [mpq(1), mpq(0)]], 4) == [0, 0, 1, -2, 1]
    assert PL.leading([0, 0, mpq(-3)]) == (2, -3)
    assert (Y * 3 - X * X * 6).ratio(Y - X * X * 2) == 3
    assert (Y - X * X).ratio(Y + X * X) is None


def test_tie_polynomials_of_the_curved_example():
    # layers: (a, a, 1) -> (b - a^2, 2a^2 - b); X = a - 0, Y = b - 0
    from kinkcheck.encodings import program as P

    runs = verify("curved_piece_clarke")._runs

    fw = runs.exact_full()
    ties = P.ties(runs.net, fw)
    assert PL.tie_variables(runs.net, ties) == [0, 1]
    rec = PL.tie_polynomials(runs, [0, 1], {})
    X, Y = PL.Poly.var(2, 0), PL.Poly.var(2, 1)
    assert rec[(2, 0, 0)] == ("act", Y - X * X)
    assert rec[(2, 0, 1)] == ("act", X * X * 2 - Y)


def test_arc_levels_by_hand():
    from kinkcheck.decide import arcs

    X, Y = PL.Poly.var(2, 0), PL.Poly.var(2, 1)
    # X^2 - Y^2 > 0: no linear part (no cone), but the straight line (t, 0) gives t^2 > 0: a ray
    assert arcs.cone([X * X - Y * Y], 2) is None
    arc = arcs.find_arc([X * X - Y * Y], 2)
    assert arc is not None and len(arc) == 1 and arc[0][0] ** 2 > arc[0][1] ** 2
    # the cusp a^2 < b < 2a^2: degree 2 (the t-coefficient of both is the same +-d1b, so d1b = 0)
    arc = arcs.find_arc([Y - X * X, X * X * 2 - Y], 2)
    assert arc is not None and len(arc) == 2 and arc[0][1] == 0
    assert arc[0][0] ** 2 < arc[1][1] < 2 * arc[0][0] ** 2
    # -(X^2 + Y^2) > 0 is empty: no arc
    assert arcs.find_arc([-(X * X + Y * Y)], 2) is None


def test_emptiness_portfolio_by_hand():
    pytest.importorskip("cvc5")
    from kinkcheck.decide import nra

    X, Y = PL.Poly.var(2, 0), PL.Poly.var(2, 1)
    e = nra.empty_near([X * X - Y, Y - X * X * 2], mpq(1), 5000)  # 2a^2 < b < a^2: empty
    assert e.answer == "unsat" and e.answers == {"z3": "unsat", "cvc5": "unsat"}
    e = nra.empty_near([Y - X * X, X * X * 2 - Y], mpq(1, 16), 5000)  # the cusp: not empty
    assert e.answer == "sat"
    # far from w only: X > 1/2 is empty in the box of radius 1/4, not in the box of radius 1
    assert nra.empty_near([X - mpq(1, 2)], mpq(1, 4), 5000).answer == "unsat"
    assert nra.empty_near([X - mpq(1, 2)], mpq(1), 5000).answer == "sat"


def test_budget_gives_null_with_the_reason():
    from kinkcheck.decide import clarke
    from kinkcheck.decide.differentiability import convex_weights, separator
    from kinkcheck.encodings import program as P

    runs = verify("curved_piece_clarke")._runs
    fw = runs.exact_full()
    c = clarke.decide(runs, fw, P.ties(runs.net, fw), list(runs.exact_ad()), convex_weights, separator, time_limit=0.0)
    assert c.answer is None and "time limit" in c.reason


# ----------------------------------------------------------------------------------------------
# the four examples (hand-derived: see each file's description)


def _tpoly_mul(a, b):
    out = [F(0)] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            out[i + j] += x * y
    return out


def _tpoly_add(a, b):
    n = max(len(a), len(b))
    return [(a[i] if i < len(a) else 0) + (b[i] if i < len(b) else 0) for i in range(n)]


def _lead(p):
    return next((c for c in p if c != 0), 0)


def test_curved_piece_is_in_clarke_only_through_a_degree_two_arc():
    r = verify("curved_piece_clarke")
    assert (r.differentiable, r.ad_correct, r.ad_in_clarke) == (True, False, True)
    assert r.gradient == ["0", "1"] and r.ad == ["0", "2"]
    c = r._verdict.clarke
    rr = next(p for p in c.active if p.choices == {(2, 0, 0): "right", (2, 0, 1): "right"})
    assert rr.level == "arc" and len(rr.arc) == 2 and rr.gradient == [0, 2]
    # independent re-check: a = d1a t + d2a t^2, b = d1b t + d2b t^2; z1 = b - a^2, z2 = 2a^2 - b > 0
    (d1a, d1b), (d2a, d2b) = [[F(int(x.numerator), int(x.denominator)) for x in d] for d in rr.arc]
    a, b = [F(0), d1a, d2a], [F(0), d1b, d2b]
    aa = _tpoly_mul(a, a)
    z1 = _tpoly_add(b, [-x for x in aa])
    z2 = _tpoly_add([2 * x for x in aa], [-x for x in b])
    assert _lead(z1) > 0 and _lead(z2) > 0
    assert z1[1] == 0 and z2[1] == 0  # no ray: first-order coefficients vanish
    assert sum(w for w in c.weights) == 1
    cert = r.certificate()
    assert "clarke.empty" not in check_certificate(json.loads(json.dumps(cert))).get("trusted", [])


def test_dependent_functionals_cusp():
    # z1 = b + a^2, z2 = -b: the cusp -a^2 < b < 0 has gradient (0, 1) + (0, 1) = (0, 2) = AD
    r = verify("dependent_functionals_cusp")
    assert (r.differentiable, r.ad_correct, r.ad_in_clarke) == (True, False, True)
    assert r.ad == ["0", "2"] and r.gradient == ["0", "1"]
    levels = r.to_dict()["decision"]["clarke_patterns"]["levels"]
    assert levels["arc"] == 1 and levels["cone"] == 2


def test_mirrored_hidden_units_no_by_identity():
    # f = relu(z) - relu(-z) = z = b - a^2: Clarke set {(0, 1)}; AD = (0, 1) + (0, 1) = (0, 2)
    r = verify("mirrored_hidden_units")
    assert (r.differentiable, r.ad_correct, r.ad_in_clarke) == (True, False, False)
    c = r._verdict.clarke
    assert len(c.pats.identities) == 2 and not c.empty
    v = c.separator
    assert v[1] >= 1  # v.(AD - g) >= 1 with AD - g = (0, 2) - (0, 1) = (0, 1)
    cert = json.loads(json.dumps(r.certificate()))
    check_certificate(cert)
    bad = copy.deepcopy(cert)
    bad["evidence"]["clarke"]["identities"][0]["ratio"] = "2"
    with pytest.raises(CheckFailed, match="identity"):
        check_certificate(bad)
    bad = copy.deepcopy(cert)
    bad["evidence"]["clarke"]["identities"] = []
    with pytest.raises(CheckFailed, match="wrong side|not a listed|identity|shown empty"):
        check_certificate(bad)


def test_empty_curved_region_no_with_both_solvers():
    pytest.importorskip("cvc5")
    r = verify("curved_empty_not_clarke")
    assert (r.differentiable, r.ad_correct, r.ad_in_clarke) == (True, False, False)
    assert r.ad == ["0", "0"]
    c = r._verdict.clarke
    (e,) = c.empty
    assert e.choices == {(2, 0, 0): "left", (2, 0, 1): "left"}
    assert e.empty.answers == {"z3": "unsat", "cvc5": "unsat"}
    assert "(check-sat)" in e.empty.smtlib
    cert = json.loads(json.dumps(r.certificate()))
    out = check_certificate(cert)
    assert "clarke.empty" in out["trusted"]
    for mutate in (
        lambda ev: ev["empty"][0]["answers"].update(cvc5="sat"),
        lambda ev: ev["empty"].clear(),
        lambda ev: ev["empty"][0]["constraints"][0][0].__setitem__(1, "-2"),
        lambda ev: ev.__setitem__("separator", ["0", "1"]),
        lambda ev: ev["active"][0]["arc"][0].__setitem__(1, "1"),
    ):
        bad = copy.deepcopy(cert)
        mutate(bad["evidence"]["clarke"])
        with pytest.raises(CheckFailed):
            check_certificate(bad)


def test_without_cvc5_the_no_is_null_with_the_reason(monkeypatch):
    from kinkcheck.decide import nra

    monkeypatch.setattr(nra, "missing", lambda: nra.NEEDS_CVC5)
    r = verify("curved_empty_not_clarke")
    assert r.ad_in_clarke is None
    assert "needs cvc5 (pip install 'kinkcheck[nra]')" in r.reason


# ----------------------------------------------------------------------------------------------
# property: random two-layer networks with curved ties (x = (a, b, 1) -> z_k = W_k . x)

ENTRY = st.sampled_from(["a", "b", "-a", "-b", 0, 1, -1, 2])
LAST = st.sampled_from(["a", "b", "-a", "-b", 0])  # times the input 1: no constant term, so z_k(w) = 0


def _neg(e):
    return e[1:] if isinstance(e, str) and e.startswith("-") else f"-{e}" if isinstance(e, str) else -e


@st.composite
def curved_nets(draw):
    rows = [[draw(ENTRY), draw(ENTRY), draw(LAST)] for _ in range(draw(st.integers(1, 3)))]
    if draw(st.booleans()):  # a mirrored unit
        rows.append([_neg(e) for e in rows[draw(st.integers(0, len(rows) - 1))]])
    out = [draw(st.sampled_from([1, -1, 2, -2, 3])) for _ in rows]
    side = draw(st.sampled_from(["left", "right"]))
    return {
        "kinkcheck": 1,
        "dtype": "float32",
        "params": {"a": {"value": 0}, "b": {"value": 0}},
        "inputs": {"shape": [1, 1], "values": [[1]]},
        "layers": [
            {"op": "linear", "weight": [["a"], ["b"], [1]]},
            {"op": "linear", "weight": rows},
            {"op": "relu", "kink_derivatives": [side]},
            {"op": "linear", "weight": [out]},
        ],
        "loss": {"op": "sum"},
    }, rows, out, side


def _entry(e):
    """An entry as (constant, coefficient of a, coefficient of b)."""
    if isinstance(e, str):
        s = -1 if e.startswith("-") else 1
        return (F(0), F(s) if e.endswith("a") else F(0), F(s) if e.endswith("b") else F(0))
    return (F(e), F(0), F(0))


def _z_along(row, arc):
    """z = W0 a + W1 b + W2 as a polynomial in t along (a, b) = sum_k t^k d_k."""
    a = [F(0)] + [F(d[0]) for d in arc]
    b = [F(0)] + [F(d[1]) for d in arc]
    tot = [F(0)]
    for e, x in zip(row, (a, b, [F(1)])):
        c, ca, cb = _entry(e)
        w = _tpoly_add(_tpoly_add([c], [F(0)] + [ca * v for v in a[1:]]), [F(0)] + [cb * v for v in b[1:]])
        tot = _tpoly_add(tot, _tpoly_mul(w, x))
    return tot


def _grad(row):
    """The gradient of z at (0, 0): W0 a contributes c0 e_a, W1 b contributes c1 e_b, W2 * 1 its own
    coefficients."""
    (c0, _, _), (c1, _, _), (_, a2, b2) = _entry(row[0]), _entry(row[1]), _entry(row[2])
    return (c0 + a2, c1 + b2)


def _pattern_gradient(rows, out, slopes):
    g = [F(0), F(0)]
    for row, c, s in zip(rows, out, slopes):
        ga, gb = _grad(row)
        g[0] += c * s * ga
        g[1] += c * s * gb
    return g


@given(case=curved_nets(), arcs=st.lists(st.tuples(st.integers(-3, 3), st.integers(-3, 3), st.integers(-3, 3), st.integers(-3, 3)), min_size=6, max_size=6))
def test_random_curved_ties(case, arcs):
    doc, rows, out, side = case
    r = kinkcheck.verify(doc, values=True)
    note(json.dumps(doc["layers"][1]))
    c = r._verdict.clarke
    ad = [F(x) for x in r.ad]
    assert ad == _pattern_gradient(rows, out, [1 if side == "right" else 0] * len(rows))
    if c is None or c.answer is None:
        return
    keys = [(2, 0, u) for u in range(len(rows))]
    for p in c.active:  # every arc witness re-checks by independent substitution
        arc = [[F(int(x.numerator), int(x.denominator)) for x in d] for d in p.arc]
        for u, key in enumerate(keys):
            z = _z_along(rows[u], arc)
            if all(v == 0 for v in _z_along(rows[u], [[1, 0], [0, 1]])) and all(v == 0 for v in _z_along(rows[u], [[1, 1], [1, -1]])):
                continue  # an identically zero tie (both sides are the same map)
            lead = _lead(z)
            assert lead != 0 and (lead > 0) == (p.choices[key] == "right")
        assert [F(x) for x in p.gradient] == _pattern_gradient(rows, out, [1 if p.choices[k] == "right" else 0 for k in keys])
    if c.answer is False:
        v = [F(x) for x in c.separator]
        for d1a, d1b, d2a, d2b in arcs:  # patterns entered by random exact arcs
            zs = [_z_along(row, [[d1a, d1b], [d2a, d2b]]) for row in rows]
            leads = [_lead(z) for z in zs]
            if any(x == 0 for x in leads):
                continue
            g = _pattern_gradient(rows, out, [1 if x > 0 else 0 for x in leads])
            assert sum(vi * (a - gi) for vi, a, gi in zip(v, ad, g)) > 0
    else:
        lam = c.weights
        comb = [sum(F(w) * F(p.gradient[k]) for w, p in zip(lam, c.active)) for k in range(2)]
        assert comb == ad


# ----------------------------------------------------------------------------------------------
# max-pool: an entry that is a convex combination of the other tied entries is never the strict max


def _pool_net(rows):
    """x = (a, a, 1, 1) at a = b = 0, then the rows' entries, one max-pool window over all."""
    return {
        "kinkcheck": 1,
        "dtype": "float32",
        "params": {"a": {"value": 0}, "b": {"value": 0}},
        "inputs": {"shape": [1, 1], "values": [[1]]},
        "layers": [{"op": "linear", "weight": [["a"], ["a"], [1], [1]]}, {"op": "linear", "weight": rows}, {"op": "maxpool1d", "kernel": len(rows)}],
        "loss": {"op": "sum"},
    }


@pytest.mark.parametrize(
    "rows, pruned, weights, kept",
    [
        # (0, b - a^2, a^2 - b): 0 = (z1 + z2)/2, so entry 0 is never the strict maximum
        ([[0, 0, 0, 0], ["-a", 0, "b", 0], ["a", 0, "-b", 0]], 0, {1: mpq(1, 2), 2: mpq(1, 2)}, [1, 2]),
        # (a, 2a, 3a): 2a = (a + 3a)/2 (constant multiples of one polynomial)
        ([[1, 0, 0, 0], [2, 0, 0, 0], [3, 0, 0, 0]], 1, {0: mpq(1, 2), 2: mpq(1, 2)}, [0, 2]),
        # (2a^2, 2b, a^2 + b): the third is the midpoint of the first two
        ([["a", "a", 0, 0], [0, 0, "b", "b"], ["a", 0, "b", 0]], 2, {0: mpq(1, 2), 1: mpq(1, 2)}, [0, 1]),
        # (b - a^2, a^2 - b, 2a^2 - b): no entry is a convex combination of the others (the a^2 and
        # b coefficients (-1, 1), (1, -1), (2, -1) are not on one segment): all three kept
        ([["-a", 0, "b", 0], ["a", 0, "-b", 0], ["a", "a", "-b", 0]], None, None, [0, 1, 2]),
    ],
)
def test_maxpool_convex_entries_are_pruned_by_identity(rows, pruned, weights, kept):
    from kinkcheck.decide import arcs
    from kinkcheck.encodings import program as P

    r = kinkcheck.verify(_pool_net(rows), values=True)
    runs = r._runs
    fw = runs.exact_full()
    pats = arcs.enumerate_patterns(runs, P.ties(runs.net, fw))
    key = (2, 0, 0)
    assert [p.choices[key] for p in pats.patterns] == kept
    if pruned is None:
        assert pats.identities == []
    else:
        (i,) = pats.identities
        assert i.choices == {key: pruned} and i.weights == weights
    assert r.ad_in_clarke is True  # max(...) of entries tied at w: AD is one entry's gradient
    assert check_certificate(json.loads(json.dumps(r.certificate())))["valid"] is True


def test_checker_convex_identity_by_hand():
    from kinkcheck.certify.arc_check import _convex_holds, _Poly

    A2, B = _Poly(2, {(2, 0): mpq(1)}), _Poly(2, {(0, 1): mpq(1)})
    z = {0: A2 * 2, 1: B * 2, 2: A2 + B}
    assert _convex_holds(z, 2, {0: mpq(1, 2), 1: mpq(1, 2)})
    assert not _convex_holds(z, 2, {0: mpq(1, 3), 1: mpq(2, 3)})  # (2a^2 + 4b)/3 != a^2 + b
    assert not _convex_holds(z, 2, {0: mpq(1, 2), 1: mpq(1, 2), 2: mpq(0)})  # zero weight, itself
    assert not _convex_holds(z, 0, {1: mpq(1, 2), 2: mpq(1, 2)})  # 2a^2 is a vertex
    assert not _convex_holds(z, 2, {0: mpq(1), 1: mpq(1)})  # the weights must sum to 1
    assert not _convex_holds(z, 2, {})


def test_maxpool_convex_entries_in_a_no_certificate():
    # x = (a, a, 1, 1/2, a/2); windows [0, z1, z1/2] and [0, z2, z2/2] with z1 = b - a^2,
    # z2 = 2a^2 - b: max(0, z, z/2) = relu(z), so f = relu(z1) - relu(z2) as in
    # curved_empty_not_clarke; the first index wins the ties, so AD = 0 - 0 = (0, 0), while the
    # Clarke set is the segment (0, 1)-(0, 2): no. Entry 2 (z/2, the midpoint of 0 and z) of each
    # window is pruned by the identity z/2 = 1/2 * 0 + 1/2 * z; 2 x 2 patterns remain, one of them
    # (0, 0) = left/left of the curved example, the empty region 2a^2 < b < a^2.
    pytest.importorskip("cvc5")
    doc = {
        "kinkcheck": 1,
        "dtype": "float32",
        "params": {"a": {"value": 0}, "b": {"value": 0}},
        "inputs": {"shape": [1, 2], "values": [[1, 0.5]]},
        "layers": [
            {"op": "linear", "weight": [["a", 0], ["a", 0], [1, 0], [0, 1], [0, "a"]]},
            {"op": "linear", "weight": [[0, 0, 0, 0, 0], ["-a", 0, "b", 0, 0], [0, 0, 0, "b", "-a"], [0, 0, 0, 0, 0], ["a", "a", "-b", 0, 0], ["a", 0, 0, "-b", 0]]},
            {"op": "maxpool1d", "kernel": 3},
            {"op": "linear", "weight": [[1, -1]]},
        ],
        "loss": {"op": "sum"},
    }
    r = kinkcheck.verify(doc, values=True)
    assert (r.differentiable, r.gradient, r.ad, r.ad_in_clarke) == (True, ["0", "1"], ["0", "0"], False)
    c = r._verdict.clarke
    assert sorted(tuple(p.choices.values()) for p in c.pats.patterns) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [i.weights for i in c.pats.identities] == [{0: mpq(1, 2), 1: mpq(1, 2)}] * 3
    (e,) = c.empty
    assert e.choices == {(2, 0, 0): 0, (2, 0, 1): 0}
    cert = json.loads(json.dumps(r.certificate()))
    assert check_certificate(cert)["valid"] is True
    bad = copy.deepcopy(cert)
    bad["evidence"]["clarke"]["identities"][0]["weights"] = [[0, "1/3"], [1, "2/3"]]
    with pytest.raises(CheckFailed, match="convex combination"):
        check_certificate(bad)
    bad = copy.deepcopy(cert)
    bad["evidence"]["clarke"]["identities"][1]["weights"] = [[0, "1/2"], [1, "1/2"], [2, "0"]]
    with pytest.raises(CheckFailed, match="convex combination"):
        check_certificate(bad)
