"""The emptiness queries' SMT-LIB2 text: the decision side's canonical writer (decide/nra.py), the
checker's strict reader (certify/smtlib.py), and the checker's requirement that a query asserts
exactly the box and the tie constraints it replays (docs/certificate.md).

Expected atoms are written out by hand or rebuilt from Fractions in the test."""

from __future__ import annotations

import copy
import json
from fractions import Fraction as F

import pytest
from gmpy2 import mpq
from hypothesis import given
from hypothesis import strategies as st

from kinkcheck.certify import smtlib
from kinkcheck.certify.checker import check_certificate
from kinkcheck.certify.replay import CheckFailed
from kinkcheck.decide import nra
from kinkcheck.encodings import poly as PL

from conftest import ROOT


def _atoms(text):
    q = smtlib.read(text)
    return q.variables, [(rel, {tuple((q.variables[i], e) for i, e in m): F(int(c.numerator), int(c.denominator)) for m, c in p.items()}) for rel, p in q.atoms]


# ----------------------------------------------------------------------------------------------
# the reader by hand


def test_reader_by_hand():
    text = """; a comment
(set-info :status unknown)
(set-logic QF_NRA)
(declare-fun a () Real)
(declare-const b Real)
(assert (and (< (- (/ 1 3)) a 0.25) (>= (* 2 a b) (- b a 1))))
(assert (= (/ (+ a a) 4) (- a)))
(check-sat)
"""
    names, atoms = _atoms(text)
    assert names == ["a", "b"]
    A, B, AB = (("a", 1),), (("b", 1),), (("a", 1), ("b", 1))
    assert atoms == [
        (">", {A: F(1), (): F(1, 3)}),  # a - (-1/3) > 0
        (">", {(): F(1, 4), A: F(-1)}),  # 1/4 - a > 0
        (">=", {AB: F(2), B: F(-1), A: F(1), (): F(1)}),  # 2ab - (b - a - 1) >= 0
        ("=", {A: F(3, 2)}),  # (a + a)/4 - (-a) = a/2 + a
    ]


@pytest.mark.parametrize(
    "text, why",
    [
        ("(declare-fun x0 () Real)(assert false)(check-sat)", "not a declared variable|only 'and'"),
        ("(declare-fun x0 () Real)(assert (not (> x0 0)))(check-sat)", "only 'and'"),
        ("(declare-fun x0 () Real)(assert (let ((y x0)) (> y 0)))(check-sat)", "only 'and'"),
        ("(declare-fun x0 () Real)(push 1)(assert (> x0 0))(check-sat)", "not in the fragment"),
        ("(declare-fun x0 () Real)(assert (> x0 0))(check-sat)(check-sat)", "last command"),
        ("(declare-fun x0 () Real)(assert (> x0 0))", "no \\(check-sat\\)"),
        ("(declare-fun x0 () Int)(assert (> x0 0))(check-sat)", "not in the fragment"),
        ("(declare-fun x0 () Real)(declare-fun x0 () Real)(check-sat)", "twice"),
        ("(declare-fun x0 () Real)(assert (> (/ 1 x0) 0))(check-sat)", "divisor"),
        ("(declare-fun x0 () Real)(assert (> (/ x0 0) 0))(check-sat)", "divisor"),
        ("(declare-fun x0 () Real)(assert (> x1 0))(check-sat)", "not a declared variable"),
        ("(declare-fun x0 () Real)(assert (> x0 #x01))(check-sat)", "not a token"),
        ("(declare-fun x0 () Real)(assert (> x0 01))(check-sat)", "not a token"),
        ("(set-logic QF_LRA)(check-sat)", "QF_NRA"),
        ("(declare-fun x0 () Real)(set-logic QF_NRA)(check-sat)", "once, before"),
        ("(declare-fun x0 () Real)(assert (> x0 0)(check-sat)", "unbalanced"),
        ("(declare-fun x0 () Real)(assert (> (+ x0) 0))(check-sat)", "not in the fragment"),
    ],
)
def test_reader_rejects_what_is_outside_the_fragment(text, why):
    with pytest.raises(smtlib.SmtLibError, match=why):
        smtlib.read(text)


# ----------------------------------------------------------------------------------------------
# writer -> reader, exactly

COEF = st.fractions(min_value=-50, max_value=50, max_denominator=40)


@st.composite
def polys(draw, nv):
    terms = draw(st.dictionaries(st.tuples(*[st.integers(0, 3)] * nv), COEF, min_size=1, max_size=6))
    return {m: c for m, c in terms.items() if c != 0} or {(0,) * nv: F(1)}


@given(data=st.data(), nv=st.integers(1, 4), radius=st.fractions(min_value=F(1, 5000), max_value=10, max_denominator=5000))
def test_writer_reader_round_trip(data, nv, radius):
    ps = data.draw(st.lists(polys(nv), min_size=1, max_size=4))
    text = nra.smtlib([PL.Poly(nv, {m: mpq(c.numerator, c.denominator) for m, c in p.items()}) for p in ps], mpq(radius.numerator, radius.denominator))
    used = sorted({j for p in ps for m in p for j, e in enumerate(m) if e})
    names, atoms = _atoms(text)
    assert names == [f"x{j}" for j in used]

    def named(p):
        return {tuple((f"x{j}", e) for j, e in enumerate(m) if e): c for m, c in p.items()}

    want = []
    for j in used:
        want += [(">", {((f"x{j}", 1),): F(1), (): radius}), (">", {(): radius, ((f"x{j}", 1),): F(-1)})]
    want += [(">", named(p)) for p in ps]
    assert atoms == want


# ----------------------------------------------------------------------------------------------
# the checker on the committed certificates, and tampered queries


def _with_emptiness():
    out = []
    for path in sorted((ROOT / "proofs" / "certificates").glob("*.cert.json")):
        cert = json.loads(path.read_text())
        if cert.get("evidence", {}).get("clarke", {}).get("empty"):
            out.append((path.name, cert))
    return out


def test_every_committed_emptiness_certificate_checks():
    certs = _with_emptiness()
    assert certs, "proofs/certificates has an emptiness step (curved_empty_not_clarke)"
    for name, cert in certs:
        out = check_certificate(cert)
        assert "clarke.empty" in out["trusted"], name
        for e in cert["evidence"]["clarke"]["empty"]:
            q = smtlib.read(e["smtlib"])
            assert len(q.atoms) == 2 * len(q.variables) + len(e["constraints"]), name


def _curved():
    return dict(_with_emptiness())["curved_empty_not_clarke.cert.json"]


# its query (radius 1): x0 > -1, x0 < 1, x1 > -1, x1 < 1, x0^2 - x1 > 0, x1 - 2 x0^2 > 0
TAMPER = [
    (lambda s: s.replace("(check-sat)", "(assert false)\n(check-sat)"), "not in the emptiness fragment"),
    (lambda s: s.replace("(check-sat)", "(assert (> x0 0))\n(check-sat)"), "asserts 1\\*x0 > 0"),
    (lambda s: s.replace("(* (- 2) x0 x0)", "(* (- 3) x0 x0)"), "asserts|does not assert"),
    (lambda s: s.replace("(< x0 1)", "(< x0 2)"), "asserts|box"),
    (lambda s: s.replace("(assert (> x1 (- 1)))\n(assert (< x1 1))\n", "(assert (> x1 (- (/ 1 2))))\n(assert (< x1 (/ 1 2)))\n"), "asserts|box"),
    (lambda s: s.replace("(assert (> (+ x1 (* (- 2) x0 x0)) 0))\n", ""), "does not assert the constraint"),
    (lambda s: s.replace("(assert (< x1 1))\n", ""), "does not assert the box side x1 < 1"),
    (lambda s: s.replace("(declare-fun x1 () Real)", "(declare-fun x1 () Real)\n(declare-fun x2 () Real)"), "declares"),
    (lambda s: s.replace("(check-sat)", "(push 1)\n(check-sat)"), "not in the emptiness fragment"),
    (lambda s: s.replace("(> (+ x1 (* (- 2) x0 x0)) 0)", "(>= (+ x1 (* (- 2) x0 x0)) 0)"), "only strict"),
    (lambda s: s.replace("(> (+ x1 (* (- 2) x0 x0)) 0)", "(> (* (- 1) (+ x1 (* (- 2) x0 x0))) 0)"), "asserts"),
]


@pytest.mark.parametrize("i", range(len(TAMPER)))
def test_tampered_queries_are_rejected(i):
    pytest.importorskip("z3")
    mutate, why = TAMPER[i]
    cert = copy.deepcopy(_curved())
    e = cert["evidence"]["clarke"]["empty"][0]
    new = mutate(e["smtlib"])
    assert new != e["smtlib"], "the tampering applies to the committed text"
    e["smtlib"] = new
    with pytest.raises(CheckFailed, match=why):
        check_certificate(cert)


def test_positive_scaling_and_order_are_accepted_and_the_radius_field_must_match():
    cert = copy.deepcopy(_curved())
    e = cert["evidence"]["clarke"]["empty"][0]
    lines = e["smtlib"].split("\n")
    asserts = [x for x in lines if x.startswith("(assert")]
    rest = [x for x in lines if not x.startswith("(assert") and x != "(check-sat)" and x]
    scaled = [x.replace("(> (+ x1 (* (- 2) x0 x0)) 0)", "(> (+ (* 4 x1) (* (- 8) x0 x0)) 0)") for x in asserts[::-1]]
    e["smtlib"] = "\n".join(rest + scaled + ["(check-sat)", ""])
    check_certificate(cert)  # the same set of strict atoms, one multiplied by 4 > 0: the same region
    e["radius"] = "1/2"  # the query's box is radius 1
    with pytest.raises(CheckFailed, match="box"):
        check_certificate(cert)


def test_the_documented_query_is_the_committed_one():
    doc = (ROOT / "docs" / "clarke.md").read_text()
    block = doc.split("```text\n(set-logic QF_NRA)\n", 1)[1].split("```", 1)[0]
    text = _curved()["evidence"]["clarke"]["empty"][0]["smtlib"]
    assert text.endswith("(set-logic QF_NRA)\n" + block)
