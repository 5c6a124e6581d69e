"""kinkcheck's two semantics against an independent reference (tests/reference.py).

The reference is written from docs/semantics.md and the network-format spec alone, as scalar
loops over Fractions (exact) and numpy scalars / gmpy2.mpfr format emulation (machine). Compared:

* machine semantics: every layer's values ``fw.xs`` (and the output), the loss and the AD output,
  **bit for bit** (binary64 bit patterns, so signed zeros count; NaNs, which the generator avoids,
  would compare as "both NaN"); float ties as sets of (layer, sample, unit, kink), with the tied
  entries of max-pool windows;
* exact semantics: xs, loss, real ties and the AD output, exactly (Fractions vs mpq);
* with the document's convention, the "jax"/"tensorflow"/custom conventions given to
  ``resolve_proxies``, per-layer ``kink_derivatives`` / ``tie_break`` overrides (drawn by the
  strategy), and ``backward(side="left" / "right")``;
* numpy's native float16/float32 path against ``MachineArith(fmt, force_generic=True)``;
* ``kinkcheck.verify`` report fields (``ad``, ``machine_ad``, ``loss``, tie lists) on a few docs;
* hand-computed regression cases.

sigmoid, tanh and cross_entropy: the machine semantics bit for bit (both sides correctly rounded;
the reference rounds a 600-bit mpfr value); the exact semantics by containment of the reference's
600-bit approximations in kinkcheck's certified enclosures (with a 2^-400 relative slack).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from hypothesis import event, example, given, note, reject, settings
from hypothesis import strategies as st

import kinkcheck
from kinkcheck.encodings import program as P
from kinkcheck.encodings.errors import Undecided
from kinkcheck.encodings.exact import ExactArith, Interval
from kinkcheck.encodings.machine import MachineArith
from kinkcheck.encodings.network import load

import reference as R
from strategies import DTYPES, LOSSES, SMOOTH_TRANSCENDENTAL, networks

CONVENTION_ARGS = (None, "pytorch", "jax", "tensorflow", {"relu": [1], "abs": ["right"], "maxpool1d": "split", "maxpool2d": "last", "l1": ["left"], "hardtanh": [0.5, "left"]})


# ----------------------------------------------------------------------------------------------
# running kinkcheck


def _flat(a, N):
    return np.asarray(a).reshape(N, -1)


def kc_run(doc, semantics, *, convention=None, side=None, force_generic=False):
    """kinkcheck's (xs per layer [N][units], loss, tie keys, pool entries, AD output)."""
    net = load(doc)
    proxies = P.resolve_proxies(net, convention) if convention is not None else P.resolve_proxies(net)
    A = ExactArith() if semantics == "exact" else MachineArith(net.fmt, force_generic=force_generic)
    fw = P.forward(net, A)
    ties = P.ties(net, fw)
    grad = P.backward(net, A, fw, proxies, side=side)
    N = net.batch
    conv = (lambda v: Fraction(int(v.numerator), int(v.denominator))) if semantics == "exact" else float
    xs = [[[conv(v) for v in row] for row in _flat(x, N)] for x in fw.xs]
    keys = {(t.layer, t.sample, t.unit, t.kink) for t in ties}
    pools = {(t.layer, t.sample, t.unit): tuple(t.entries) for t in ties if t.op in ("maxpool1d", "maxpool2d")}
    return xs, conv(fw.loss), keys, pools, [conv(v) for v in np.asarray(grad).reshape(-1)]


def _show(v):
    if isinstance(v, float):
        return f"{v!r} ({float.hex(v)})"
    return str(v)


def _eq(a, b, exact):
    return a == b if exact else R.same_bits(a, b)


def _first_diff(kc, ref, exact):
    for i, (u, v) in enumerate(zip(kc, ref)):
        if not _eq(u, v, exact):
            return i, u, v
    return None


def assert_matches(doc, semantics, *, convention=None, side=None, tanh_signed_zero=True):
    exact = semantics == "exact"
    try:
        ref = R.evaluate(doc, semantics, convention=convention, side=side, tanh_signed_zero=tanh_signed_zero)
    except R.RefNaN:
        reject()
    xs, loss, keys, pools, ad = kc_run(doc, semantics, convention=convention, side=side)
    where = f"{semantics} semantics, convention={convention!r}, side={side!r}"
    assert len(xs) == len(ref.xs), where
    for i, (kx, rx) in enumerate(zip(xs, ref.xs)):
        for n, (kr, rr) in enumerate(zip(kx, rx)):
            assert len(kr) == len(rr), f"{where}: xs[{i}] sample {n}: {len(kr)} vs {len(rr)} units"
            d = _first_diff(kr, rr, exact)
            assert d is None, f"{where}: xs[{i}] (input of layer {i}) sample {n} unit {d[0]}: kinkcheck {_show(d[1])}, reference {_show(d[2])}"
    assert _eq(loss, ref.loss, exact), f"{where}: loss kinkcheck {_show(loss)}, reference {_show(ref.loss)}"
    assert keys == ref.ties, f"{where}: ties only in kinkcheck {sorted(keys - ref.ties)}, only in reference {sorted(ref.ties - keys)}"
    assert pools == ref.pool_entries, f"{where}: pool tie entries {pools} vs {ref.pool_entries}"
    assert len(ad) == len(ref.ad), where
    d = _first_diff(ad, ref.ad, exact)
    assert d is None, f"{where}: AD output entry {d[0]}: kinkcheck {_show(d[1])}, reference {_show(d[2])}\nkinkcheck {ad}\nreference {ref.ad}"
    _events(ref, semantics)
    return ref


def _events(ref, semantics):
    """Coverage statistics (``pytest --hypothesis-show-statistics``); nothing outside @given."""
    from hypothesis.control import currently_in_test_context

    if not currently_in_test_context():
        return
    kinds = {"elementwise" if (l, n, u) not in ref.pool_entries else "pool" for (l, n, u, _) in ref.ties}
    for k in sorted(kinds):
        event(f"{semantics}: {k} ties")
    if not ref.ties:
        event(f"{semantics}: no ties")
    if semantics == "machine":
        vals = list(ref.ad) + [v for x in ref.xs for row in x for v in row]
        if any(v == 0 and math.copysign(1, v) < 0 for v in vals):
            event("machine: a -0 value")
        if any(math.isinf(v) for v in vals):
            event("machine: an infinite value")


# ----------------------------------------------------------------------------------------------
# properties: kinkcheck == reference


@given(doc=networks())
def test_machine_matches_reference(doc):
    note(repr(doc))
    assert_matches(doc, "machine")


@given(doc=networks(extreme=False))
def test_exact_matches_reference(doc):
    note(repr(doc))
    assert_matches(doc, "exact")


@given(doc=networks(ties=True), convention=st.sampled_from(CONVENTION_ARGS), side=st.sampled_from([None, "left", "right"]))
def test_engineered_ties_both_semantics(doc, convention, side):
    note(repr(doc))
    ref_m = assert_matches(doc, "machine", convention=convention, side=side)
    ref_e = assert_matches(doc, "exact", convention=convention, side=side)
    note(f"real ties {sorted(ref_e.ties)}, float ties {sorted(ref_m.ties)}")


@given(doc=networks(), convention=st.sampled_from(CONVENTION_ARGS), side=st.sampled_from(["left", "right"]))
def test_conventions_and_sides(doc, convention, side):
    note(repr(doc))
    assert_matches(doc, "machine", convention=convention, side=side)
    assert_matches(doc, "exact", convention=convention, side=side)


@given(doc=networks(dtypes=["float16", "float32"]))
def test_native_and_generic_paths_agree(doc):
    note(repr(doc))
    for conv in (None, "jax"):
        errs = []
        for generic in (False, True):
            try:
                kc_run(doc, "machine", convention=conv, force_generic=generic)
                errs.append(None)
            except FloatingPointError as exc:  # a NaN reached a kink test
                errs.append(str(exc))
        assert errs[0] == errs[1]
        if errs[0] is not None:
            reject()
        a = kc_run(doc, "machine", convention=conv)
        b = kc_run(doc, "machine", convention=conv, force_generic=True)
        for i, (u, v) in enumerate(zip(a[0], b[0])):
            assert [R.bits(x) for r in u for x in r] == [R.bits(x) for r in v for x in r], f"xs[{i}]"
        assert R.same_bits(a[1], b[1]), "loss"
        assert a[2] == b[2] and a[3] == b[3], "float ties"
        assert [R.bits(x) for x in a[4]] == [R.bits(x) for x in b[4]], f"AD output {a[4]} vs {b[4]}"


@settings(max_examples=10)
@given(doc=networks(extreme=False, max_batch=2))
def test_verify_report_matches_reference(doc):
    note(repr(doc))
    try:
        ref_m, ref_e = R.ref_machine(doc), R.ref_exact(doc)
    except R.RefNaN:
        reject()
    rep = kinkcheck.verify(doc, values=True)
    fmt = load(doc).fmt
    rat = lambda q: str(q.numerator) if q.denominator == 1 else f"{q.numerator}/{q.denominator}"
    assert rep.ad == [rat(q) for q in ref_e.ad]
    assert [R.bits(float.fromhex(h) if h not in ("inf", "-inf", "nan") else float(h)) for h in rep.machine_ad] == [R.bits(v) for v in ref_m.ad]
    assert rep.loss_exact == rat(ref_e.loss)
    assert {(t["layer"], t["sample"], t["unit"], t["kink_index"]) for t in rep.real_ties} == ref_e.ties
    assert {(t["layer"], t["sample"], t["unit"], t["kink_index"]) for t in rep.float_ties} == ref_m.ties
    assert fmt.to_hex(ref_m.loss) == rep.loss_machine


# float16, relu(w x + b) with w = x = 1 + 2^-10, b = -(1 + 2^-9): a float tie that is no real tie
# (f smooth, AD right over the reals: a compensation); with a third term -2^-20 the exact
# pre-activation is 0 and the float one -2^-20: a real tie only (f not differentiable: no compensation)
FLOAT_TIE_ONLY = {
    "kinkcheck": 1, "dtype": "float16",
    "params": {"w": {"value": "0x1.004p+0"}, "b": {"value": "-0x1.008p+0"}},
    "inputs": {"shape": [1, 1], "values": [["0x1.004p+0"]]},
    "layers": [{"op": "linear", "weight": [["w"]], "bias": ["b"]}, {"op": "relu"}], "loss": {"op": "sum"},
}
REAL_TIE_ONLY = {
    "kinkcheck": 1, "dtype": "float16",
    "params": {"w": {"value": "0x1.004p+0"}, "c": {"value": "-0x1.008p+0"}, "e": {"value": "-0x1p-20"}},
    "inputs": {"shape": [1, 3], "values": [["0x1.004p+0", "1", "1"]]},
    "layers": [{"op": "linear", "weight": [["w", "c", "e"]]}, {"op": "relu"}], "loss": {"op": "sum"},
}


@example(doc=FLOAT_TIE_ONLY)
@example(doc=REAL_TIE_ONLY)
@settings(max_examples=40)
@given(doc=networks(ties=True, extreme=False, max_batch=2, dtypes=["float16", "bfloat16", {"exponent_bits": 4, "fraction_bits": 3}]))
def test_branch_mismatch_and_compensation_match_reference(doc):
    note(repr(doc))
    try:
        ref_m, ref_e = R.ref_machine(doc), R.ref_exact(doc)
    except R.RefNaN:
        reject()
    rep = kinkcheck.verify(doc, values=False)
    mismatch = R.branch_mismatch(doc, ref_e, ref_m)
    event(f"branch mismatch: {bool(mismatch)}, compensation: {rep.compensation}")
    assert {(c["layer"], c["sample"], c["unit"]) for c in rep.branch_mismatch_units} == mismatch
    assert rep.branch_mismatch is bool(mismatch)
    assert rep.compensation is R.compensation(rep.differentiable, rep.ad_correct, mismatch)
    assert rep.compensation_neurons == (rep.branch_mismatch_units if rep.compensation else [])
    assert ("compensation" in " ".join(rep.findings)) is (rep.compensation is True)


# ----------------------------------------------------------------------------------------------
# transcendental ops (sigmoid, tanh, cross_entropy): machine bit for bit (both correctly rounded);
# exact: kinkcheck's certified enclosures must contain the reference's 600-bit approximations

TRANS = dict(activations=SMOOTH_TRANSCENDENTAL * 2 + ("relu", "leaky_relu", "abs", "hardswish", "identity"),
             losses=LOSSES + ("cross_entropy",) * 2)


def _enclosure(v):
    if isinstance(v, Interval):
        return Fraction(int(v.lo.numerator), int(v.lo.denominator)), Fraction(int(v.hi.numerator), int(v.hi.denominator))
    q = Fraction(int(v.numerator), int(v.denominator))
    return q, q


def _contains(enc, q):
    slack = Fraction(1, 2**400) * (1 + abs(q))  # the reference's approximation error is far below
    return enc[0] - slack <= q <= enc[1] + slack


def _transcendental_events(doc):
    ops = {l["op"] for l in doc["layers"]} | {doc["loss"]["op"]}
    for op in sorted(ops & {"sigmoid", "tanh", "cross_entropy"}):
        event(f"has {op}")


TINY = 9.183549615799121e-41  # the smallest bfloat16 subnormal

# found by the thorough profile: exp of a huge negative number rounds to +0 (the reference once gave -0)
EXP_UNDERFLOW = {
    "kinkcheck": 1, "dtype": "bfloat16",
    "params": {"W0": {"shape": [3, 4], "values": [[TINY] * 4] * 3}, "b1": {"shape": [3], "values": [TINY, TINY, 8.507059173023462e37], "trainable": False}},
    "inputs": {"shape": [1, 4], "values": [[TINY] * 4]},
    "layers": [{"op": "linear", "weight": "W0", "bias": "b1"}], "loss": {"op": "cross_entropy"}, "targets": {"shape": [1], "values": [0]},
}


@example(doc=EXP_UNDERFLOW)
@given(doc=networks(**TRANS))
def test_transcendental_machine_matches_reference(doc):
    note(repr(doc))
    _transcendental_events(doc)
    # tanh(-0) = -0 (IEEE 754 9.2), fixed; compared bit for bit like everything else
    assert_matches(doc, "machine")


@given(doc=networks(**TRANS, extreme=False), side=st.sampled_from([None, "left", "right"]))
def test_transcendental_exact_enclosures_contain_reference(doc, side):
    note(repr(doc))
    _transcendental_events(doc)
    ref = R.ref_exact(doc, side=side)
    net = load(doc)
    proxies = P.resolve_proxies(net)
    for prec in (128, 512, 2048):
        try:
            A = ExactArith(prec)
            fw = P.forward(net, A)
            ties = P.ties(net, fw)
            grad = P.backward(net, A, fw, proxies, side=side)
            break
        except Undecided:
            continue
    else:
        reject()
    N = net.batch
    for i, x in enumerate(fw.xs):
        for n, row in enumerate(_flat(x, N)):
            for u, v in enumerate(row):
                assert _contains(_enclosure(v), ref.xs[i][n][u]), f"xs[{i}] sample {n} unit {u}: {v} vs {ref.xs[i][n][u]}"
    assert _contains(_enclosure(fw.loss), ref.loss), f"loss {fw.loss} vs {ref.loss}"
    assert {(t.layer, t.sample, t.unit, t.kink) for t in ties} == ref.ties
    for j, (v, q) in enumerate(zip(np.asarray(grad).reshape(-1), ref.ad)):
        assert _contains(_enclosure(v), q), f"AD output entry {j}: {v} vs {q}"
    if not ref.approximate:  # no transcendental value: exactly equal
        assert _enclosure(fw.loss) == (ref.loss, ref.loss)


# ----------------------------------------------------------------------------------------------
# the reference's own arithmetic, checked two independent ways


_FORMATS = [R.Fmt(d) for d in DTYPES] + [R.Fmt({"exponent_bits": 2, "fraction_bits": 1}), R.Fmt({"exponent_bits": 10, "fraction_bits": 24})]


@st.composite
def _fmt_value(draw, fmt):
    """Any value of the format (subnormals, extremes, signed zeros, infinities)."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.sampled_from([0.0, -0.0, math.inf, -math.inf, float(fmt.max_finite), -float(fmt.max_finite)]))
    e = draw(st.integers(fmt.emin - fmt.M, fmt.emax - fmt.M))
    m = draw(st.integers(1, 2**fmt.p - 1))
    v = fmt.round(Fraction(m) * Fraction(2) ** e)
    return -v if draw(st.booleans()) else v


def _rne_op(fmt, op, a, b):
    """IEEE result from the hand-written rounding (special cases by IEEE 754 rules)."""
    if not (math.isfinite(a) and math.isfinite(b)):
        with np.errstate(all="ignore"):
            r = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}[op](np.float64(a), np.float64(b))
        return float(r)
    qa, qb = Fraction(a), Fraction(b)
    if op == "div" and qb == 0:
        with np.errstate(all="ignore"):
            return float(np.float64(a) / np.float64(b))
    q = {"add": qa + qb, "sub": qa - qb, "mul": qa * qb, "div": qa / qb if qb else None}[op]
    sa, sb = math.copysign(1, a) < 0, math.copysign(1, b) < 0
    if op == "add":
        nz = sa and sb if q == 0 and qa == 0 and qb == 0 else False
    elif op == "sub":
        nz = sa and not sb if q == 0 and qa == 0 and qb == 0 else False
    else:
        nz = sa != sb
    return fmt.round(q, neg_zero=(q == 0 and nz) or (q != 0 and q < 0))


@settings(max_examples=300)
@given(data=st.data(), fi=st.integers(0, len(_FORMATS) - 1), op=st.sampled_from(["add", "sub", "mul", "div"]))
def test_reference_arithmetic_is_correctly_rounded(data, fi, op):
    """mpfr emulation, numpy scalars and the hand-written RNE agree on every format."""
    fmt = _FORMATS[fi]
    a, b = data.draw(_fmt_value(fmt)), data.draw(_fmt_value(fmt))
    expected = _rne_op(fmt, op, a, b)
    got = getattr(R.MpfrArith(fmt), op)(a, b)
    assert R.same_bits(got, expected), (fmt, op, a, b, got, expected)
    if (fmt.E, fmt.M) in R.NUMPY_TYPES:
        assert R.same_bits(getattr(R.NumpyArith(fmt), op)(a, b), expected)


def test_reference_tables_are_consistent():
    """Hand-typed one-sided derivatives == derivative programs of the adjacent pieces at each kink."""
    A = R.ExactArith(R.Fmt("float64"))
    for op, table in R.ONE_SIDED.items():
        act = R.make_act(op, slope=Fraction(1, 4), lo=Fraction(-1), hi=Fraction(1))
        table = [tuple(Fraction(1, 4) if v == "slope" else Fraction(v) for v in lr) for lr in table]
        assert [tuple(map(Fraction, lr)) for lr in act.one_sided] == table, op
        for k, at in enumerate(act.kinks):
            assert act.derivs[k](at, A) == table[k][0] and act.derivs[k + 1](at, A) == table[k][1], (op, k)
            assert act.values[k](at, A) == act.values[k + 1](at, A), (op, k)  # continuity


def test_rne_by_hand():
    f = R.Fmt({"exponent_bits": 5, "fraction_bits": 2})
    assert f.round(Fraction(9)) == 8.0  # 9 halfway between 8 and 10: even mantissa 1.00
    assert f.round(Fraction(11)) == 12.0  # halfway between 10 (1.01) and 12 (1.10): even 12
    assert f.round(Fraction(2, 9)) == 0.21875  # 1.11b * 2^-3
    assert float(f.max_finite) == 57344.0 and f.round(Fraction(61440)) == math.inf  # 1.11*2^15, halfway to 2^16
    e4 = R.Fmt({"exponent_bits": 4, "fraction_bits": 3})
    assert float(e4.max_finite) == 240.0 and e4.round(Fraction(2 ** -10)) == 0.0  # half of 2^-9 ties to 0
    assert e4.round(Fraction(3, 2 ** 11)) == 2.0 ** -9  # 1.5 * 2^-10 rounds up
    assert R.Fmt("float32").round(Fraction(1, 100)) == float.fromhex("0x1.47ae14p-7")  # the spec's example


# ----------------------------------------------------------------------------------------------
# hand-computed regression cases (expected values derived by hand in the comments)


def _doc(dtype, params, inputs, layers, loss, targets=None, **kw):
    d = {"kinkcheck": 1, "dtype": dtype, "params": params, "inputs": inputs, "layers": layers, "loss": loss}
    if targets is not None:
        d["targets"] = targets
    d.update(kw)
    return d


def _both(doc, **kw):
    m = kc_run(doc, "machine", **kw)
    e = kc_run(doc, "exact", **kw)
    return m, e


def test_two_unit_relu_at_a_tie():
    # The spec's example: f(w) = relu(w) - relu(-w) = w, at w = 0, x = 1.
    # Pre-activations: z = [w*1, -w*1] = [0*1, -0*1] = [+0, -0]; both are ties (relu kink 0).
    # relu(+0) = +0, relu(-0) = +0 (constant piece). Output 1*(+0) + (-1)*(+0) = +0 + -0 = +0.
    # Backward: g_out = 1; g_relu_out = [1*1, -1*1] = [1, -1]; relu'(0) = 0 (pytorch) ->
    # g_z = [1*0, -1*0] = [+0, -0]. Weight terms: entry (0,0) "w": g_z[0]*x = +0*1 = +0;
    # entry (1,0) "-w": -(g_z[1]*x) = -(-0) = +0. grad = +0 + +0 = +0. The true derivative is 1.
    # With relu'(0) = 1 (custom): g_z = [1, -1], terms 1 and -(-1) = 1, grad = 2.
    doc = _doc("float32", {"w": {"value": 0}}, {"shape": [1, 1], "values": [[1]]},
               [{"op": "linear", "weight": [["w"], ["-w"]]}, {"op": "relu"}, {"op": "linear", "weight": [[1, -1]]}],
               {"op": "sum"})
    (xs, loss, ties, _, ad), (exs, eloss, eties, _, ead) = _both(doc)
    assert [R.bits(v) for v in xs[1][0]] == [R.bits(0.0), R.bits(-0.0)]
    assert R.same_bits(loss, 0.0) and eloss == 0
    assert ties == eties == {(1, 0, 0, 0), (1, 0, 1, 0)}
    assert R.same_bits(ad[0], 0.0) and ead == [0]
    _, _, _, _, ad1 = kc_run(doc, "machine", convention={"relu": [1]})
    assert ad1 == [2.0]
    # side="right": relu right derivative 1 at both ties -> 2 as well; "left": 0
    assert kc_run(doc, "exact", side="right")[4] == [2]
    assert kc_run(doc, "exact", side="left")[4] == [0]


def test_overlapping_maxpool1d_backward():
    # x = [1, 3, 3, 2] (a non-trainable input), relu is the identity here (all positive),
    # maxpool1d kernel 3 stride 1: windows [1,3,3] -> max 3, entries 1,2 tied (tie, unit 0);
    # [3,3,2] -> max 3, entries 1,2 tied in input positions 1,2 (tie, unit 1).
    # Then linear weight [[a, b]] with a = 2, b = -1 (trainable "v" = [2, -1]), loss sum.
    # Forward: out = 2*3 + (-1)*3 = 3. Backward: g_pool = [2, -1].
    #   first: window 0 gives 2 to position 1, window 1 gives -1 to position 1 -> g_x[1] = 2 + -1 = 1,
    #          g_x[2] = +0 + +0 = +0, g_x[0] = +0, g_x[3] = +0.
    #   last:  position 2 gets 2 (window 0) and -1 (window 1) -> 1; position 1 gets +0.
    #   split: k = 2: window 0 gives 1 to positions 1 and 2, window 1 gives -1/2 to both ->
    #          g_x = [+0, 1/2, 1/2, +0].
    # The first layer is a linear with weight diag-free "s" scaling: y = s * x (4x4 inline with "s"
    # on the diagonal, s = 1), so d/ds = sum_j g_x[j] * x[j]:
    #   first: 1*3 = 3 (terms in row-major entry order: 0*1, 1*3, 0*3, 0*2 -> 3);
    #   last: 1*3 = 3; split: 1/2*3 + 1/2*3 = 3. And grad v = [3, 3] (pool outputs).
    eye = [["s" if i == j else 0 for j in range(4)] for i in range(4)]
    for tb, gx in (("first", [0, 1, 0, 0]), ("last", [0, 0, 1, 0]), ("split", [0, 0.5, 0.5, 0])):
        doc = _doc("float16", {"s": {"value": 1}, "v": {"shape": [1, 2], "values": [[2, -1]]}},
                   {"shape": [1, 4], "values": [[1, 3, 3, 2]]},
                   [{"op": "linear", "weight": eye}, {"op": "relu"},
                    {"op": "maxpool1d", "kernel": 3, "stride": 1, "tie_break": tb},
                    {"op": "linear", "weight": "v"}],
                   {"op": "sum"})
        (xs, loss, ties, pools, ad), (_, eloss, eties, epools, ead) = _both(doc)
        assert loss == 3.0 and eloss == 3
        assert ties == eties == {(2, 0, 0, 0), (2, 0, 1, 0)}
        assert pools == epools == {(2, 0, 0): (1, 2), (2, 0, 1): (1, 2)}
        assert ad == [3.0, 3.0, 3.0] and ead == [3, 3, 3]
        # the input gradient itself: with s's terms g_x[j] * x[j] in order j = 0..3
        ref = R.ref_machine(doc)
        assert ref.ad == [3.0, 3.0, 3.0]
    # signed zeros: position 0 gets only window 0's +0 contribution, position 3 only window 1's.


def test_three_way_split():
    # float16: y = [s*1, 1, 1] (s = 1), maxpool1d kernel 3 (one window, three tied maxima),
    # tie_break split, then linear v = [[5]] (non-trainable), sum loss. Loss 5.
    # g_pool = 5; each tied entry gets fl(5 / fl(3)) = fl(1.6667) = 1 + 683/1024 = 0x1.aacp+0
    # (682.67 ulps -> 683). grad s = fl(share * x_0) = 0x1.aacp+0. (g * fl(1/3) would give
    # fl(5 * 1365/4096) = 1 + 682/1024 = 0x1.aa8p+0.) Exact: 5/3. With "first": 5; "last": 0.
    def doc(tb):
        return _doc("float16", {"s": {"value": 1}, "v": {"shape": [1, 1], "values": [[5]], "trainable": False}},
                    {"shape": [1, 3], "values": [[1, 1, 1]]},
                    [{"op": "linear", "weight": [["s", 0, 0], [0, 1, 0], [0, 0, 1]]},
                     {"op": "maxpool1d", "kernel": 3, "tie_break": tb}, {"op": "linear", "weight": "v"}],
                    {"op": "sum"})
    (_, loss, ties, pools, ad), (_, _, _, _, ead) = _both(doc("split"))
    assert loss == 5.0 and ties == {(1, 0, 0, 0)} and pools == {(1, 0, 0): (0, 1, 2)}
    assert ad == [float.fromhex("0x1.aacp+0")] and ead == [Fraction(5, 3)]
    assert kc_run(doc("first"), "machine")[4] == [5.0]
    assert kc_run(doc("last"), "machine")[4] == [0.0]

def test_conv2d_with_padding():
    # Input 1x2x2 [[1, 2], [3, 4]], weight 1x1x2x2 [[a, b], [c, d]] = [[1, 0], [0, -1]] (named "K"),
    # padding 1, stride 1: padded input 4x4
    #   0 0 0 0
    #   0 1 2 0
    #   0 3 4 0
    #   0 0 0 0
    # output 3x3: y[p,q] = xp[p,q] - xp[p+1,q+1]:
    #   y = [[0-1, 0-2, 0-0], [0-3, 1-4, 2-0], [0-0, 3-0, 4-0]] = [[-1, -2, 0], [-3, -3, 2], [0, 3, 4]]
    #   (y[0,2] = 0*1 + 0*0 + 0*0 + 0*(-1): +0 + +0 + +0 + -0 = +0.)
    # bias "c" = 1 -> z = [[0, -1, 1], [-2, -2, 3], [1, 4, 5]]; relu -> [[0,0,1],[0,0,3],[1,4,5]],
    # tie at unit 0 (z = 0). loss sum = 14.
    # Backward: g = relu'(z): [[0(proxy),0,1],[0,0,1],[1,1,1]].
    #   dL/dc = sum g = 5.
    #   dL/dK[0,0] = sum_p g[p] * xp[p] (top-left of each window) over p with g = 1:
    #       p=(0,2): xp[0,2]=0; (1,2): xp[1,2]=2; (2,0): xp[2,0]=0; (2,1): xp[2,1]=3; (2,2): xp[2,2]=4 -> 9
    #   dL/dK[0,1] = sum g * xp[p, q+1]: (0,2): xp[0,3]=0; (1,2): xp[1,3]=0; (2,0): xp[2,1]=3;
    #       (2,1): xp[2,2]=4; (2,2): xp[2,3]=0 -> 7
    #   dL/dK[1,0] = sum g * xp[p+1, q]: (0,2): xp[1,2]=2; (1,2): xp[2,2]=4; (2,0): xp[3,0]=0;
    #       (2,1): xp[3,1]=0; (2,2): xp[3,2]=0 -> 6
    #   dL/dK[1,1] = sum g * xp[p+1, q+1]: (0,2): xp[1,3]=0; (1,2): xp[2,3]=0; (2,*): row 3 = 0 -> 0
    # With side="right" the tie at unit 0 uses relu' = 1: adds xp[0,0], xp[0,1], xp[1,0], xp[1,1]
    # = 0, 0, 0, 1 to K (so K[1,1] = 1) and 1 to c (6).
    doc = _doc("bfloat16", {"K": {"shape": [1, 1, 2, 2], "values": [[[[1, 0], [0, -1]]]]}, "c": {"shape": [1], "values": [1]}},
               {"shape": [1, 1, 2, 2], "values": [[[[1, 2], [3, 4]]]]},
               [{"op": "conv2d", "weight": "K", "bias": "c", "padding": 1}, {"op": "relu"}, {"op": "flatten"}],
               {"op": "sum"})
    (xs, loss, ties, _, ad), (_, eloss, eties, _, ead) = _both(doc)
    assert [float(v) for v in xs[1][0]] == [0, -1, 1, -2, -2, 3, 1, 4, 5]
    assert loss == 14.0 and eloss == 14
    assert ties == eties == {(1, 0, 0, 0)}
    assert ad == [9.0, 7.0, 6.0, 0.0, 5.0] and ead == [9, 7, 6, 0, 5]
    assert kc_run(doc, "exact", side="right")[4] == [9, 7, 6, 1, 6]


def test_mean_divides_by_rounded_count():
    # E5M2 (M = 2): l1 loss with mean over 9 outputs; count 9 is not representable, fl(9) = 8.
    # Outputs = inputs (identity), targets 0, inputs all 1 except one 0 (an l1 tie):
    # terms |1| x 8 and |0| -> sum 8 (exact in E5M2), machine loss = 8 / fl(9) = 8/8 = 1
    # (exact loss 8/9). Seed c = fl(1/9): 1/9 = 0.111 between 0.109375 (1.11b*2^-4) and
    # 0.125 -> 0.109375. A trainable scale "s" = 1 on the identity weights: y_j = s*x_j ->
    # machine grad = sum_j fl(fl(d_j*c) * x_j) = 8 * 0.109375 = 0.875 (all exact), and the
    # tie term d = 0 (pytorch) * x = 0. Exact grad = 8/9.
    eye = [["s" if i == j else 0 for j in range(9)] for i in range(9)]
    doc = _doc({"exponent_bits": 5, "fraction_bits": 2}, {"s": {"value": 1}},
               {"shape": [1, 9], "values": [[1, 1, 1, 1, 0, 1, 1, 1, 1]]},
               [{"op": "linear", "weight": eye}], {"op": "l1"},
               targets={"shape": [1, 9], "values": [[0] * 9]})
    (xs, loss, ties, _, ad), (_, eloss, eties, _, ead) = _both(doc)
    assert loss == 1.0 and eloss == Fraction(8, 9)
    assert ties == eties == {(1, 0, 4, 0)}
    assert ad == [0.875] and ead == [Fraction(8, 9)]


def test_hardswish_and_hardsigmoid_boundaries():
    # float32, x = [-3, 3, 1] through linear "s" = 1 (y = s*x), then hardswish, loss sum.
    # hardswish: -3 -> left piece 0 (tie kink 0), 3 -> middle piece 3*(3+3)/6 = 3 (tie kink 1),
    # 1 -> 1*4/6 = 2/3 (float32: fl(4/6) = 0x1.555556p-1). Pytorch proxies 0 at -3, 1 at 3;
    # middle derivative at 1: fl(fl(1/3) + 1/2) = fl(0x1.555556p-2 + 0.5) = 0x1.555556p-1.
    # grad s = 0*(-3) + 1*3 + (fl(1/3)+1/2)*1 -> float: 3 + 0x1.555556p-1 rounded;
    # exact: 0 + 3 + 5/6 = 23/6.
    doc = _doc("float32", {"s": {"value": 1}}, {"shape": [1, 3], "values": [[-3, 3, 1]]},
               [{"op": "linear", "weight": [["s", 0, 0], [0, "s", 0], [0, 0, "s"]]}, {"op": "hardswish"}],
               {"op": "sum"})
    (xs, loss, ties, _, ad), (_, eloss, eties, _, ead) = _both(doc)
    assert ties == eties == {(1, 0, 0, 0), (1, 0, 1, 1)}
    t = float(np.float32(np.float32(1) / np.float32(3)) + np.float32(0.5))
    assert ad == [float(np.float32(np.float32(np.float32(0) + np.float32(3)) + np.float32(t)))]
    assert ead == [Fraction(23, 6)]
    assert eloss == 3 + Fraction(2, 3)
    # side left at kink 1 (x = 3): derivative 3/2 instead of 1 -> exact 0 + 9/2 + 5/6 = 16/3;
    # side right at kink 0 (x = -3): -1/2 -> 3/2 + 3 + 5/6 = 16/3 as well (with kink 1 right = 1).
    assert kc_run(doc, "exact", side="left")[4] == [Fraction(16, 3)]
    assert kc_run(doc, "exact", side="right")[4] == [Fraction(3, 2) + 3 + Fraction(5, 6)]


def test_abs_at_zero_sign_of_output():
    # Documented rule: an input exactly on a kink takes the piece to its LEFT; abs's left piece is
    # -x, so abs(+0) = -0 and abs(-0) = +0 in the machine semantics (a literal reading of
    # docs/semantics.md; PyTorch's abs(+0) is +0). We check that kinkcheck and the reference agree
    # on the literal reading: outputs for inputs [+0, -0, -2] are [-0, +0, 2].
    doc = _doc("float64", {"s": {"value": 1}}, {"shape": [1, 3], "values": [[0, "-0", -2]]},
               [{"op": "abs"}, {"op": "linear", "weight": [["s", "s", "s"]]}],
               {"op": "sum"})
    ref = R.ref_machine(doc)
    xs = kc_run(doc, "machine")[0]
    assert [R.bits(v) for v in ref.xs[1][0]] == [R.bits(-0.0), R.bits(0.0), R.bits(2.0)]
    assert [R.bits(v) for v in xs[1][0]] == [R.bits(v) for v in ref.xs[1][0]]


def test_one_sided_derivatives_exact_in_exact_run():
    # hardsigmoid at x = 3 (kink 1): left derivative 1/6, right 0; pytorch proxy 0.
    # y = hardsigmoid(s * 3) with s = 1, sum loss: grad s = d * 3.
    # Exact run: proxy -> 0; side="left" -> the real 1/6 * 3 = 1/2 (kinkcheck's choice; the doc
    # only defines side= for machine runs); machine side="left": fl(1/6) = 0x1.555556p-3 =
    # 0x1555556 * 2^-27 (float32), times 3 = 0x4000002 * 2^-27 = 1/2 + 2^-26, a quarter ulp above
    # 1/2 -> 1/2.
    doc = _doc("float32", {"s": {"value": 1}}, {"shape": [1, 1], "values": [[3]]},
               [{"op": "linear", "weight": [["s"]]}, {"op": "hardsigmoid"}], {"op": "sum"})
    assert kc_run(doc, "exact")[4] == [0]
    assert kc_run(doc, "exact", side="left")[4] == [Fraction(1, 2)]
    assert kc_run(doc, "machine", side="left")[4] == [0.5]
    assert kc_run(doc, "exact", convention={"hardsigmoid": [0, "left"]})[4] == [3 * Fraction(float.fromhex("0x1.555556p-3"))]

def test_mse_seed_uses_rounded_two_over_count():
    # E5M2 (M = 2), mse mean over 9 outputs (count 9 is not representable: fl(9) = 8, a tie
    # between 8 = 1.00b*2^3 and 10 = 1.01b*2^3 going to the even significand).
    # y_0 = s * x_0 with s = 1, y_j = 1 * x_j (constants) for j > 0; x = 1, targets 0 -> r = 1.
    # Seed c = fl(2/9): 2/9 = 0.2222 between 0.21875 (1.11b*2^-3) and 0.25 -> 0.21875.
    # (The other reading fl(2)/fl(9) = 2/8 = 0.25 would differ.) grad s = fl(fl(r*c) * x_0) = 0.21875.
    # Loss: nine terms 1, summed: 1, 2, ..., 8, then 8 + 1 = 9 -> 8 (tie, even); 8 / fl(9) = 8/8 = 1.
    # Exact: grad 2/9, loss 9/9 = 1.
    W = [["s" if (i, j) == (0, 0) else (1 if i == j else 0) for j in range(9)] for i in range(9)]
    doc = _doc({"exponent_bits": 5, "fraction_bits": 2}, {"s": {"value": 1}},
               {"shape": [1, 9], "values": [[1] * 9]}, [{"op": "linear", "weight": W}], {"op": "mse"},
               targets={"shape": [1, 9], "values": [[0] * 9]})
    (_, loss, _, _, ad), (_, eloss, _, _, ead) = _both(doc)
    assert ad == [0.21875] and ead == [Fraction(2, 9)]
    assert loss == 1.0 and eloss == 1


def test_avgpool_divides_the_sum_by_rounded_size():
    # float16: conv2d 1x1 weight "s" = 1 on a 1x1x3 input [1, 2, 2], avgpool2d kernel [1, 3], sum.
    # Forward: (1 + 2 + 2) / 3 = 5/3 -> float16 1 + 683/1024 = 0x1.aacp+0 (682.67 -> 683).
    # Backward: each entry gets fl(1/3) = 1365/4096 = 0x1.554p-2. grad s = sum over output
    # positions p of fl(g[p] * x[p]): a = 1365/4096, then 2a, 2a (exact products).
    #   a + 2a = 4095/4096: spacing 2^-11 in [1/2, 1): 2047.5 ulps, tie -> even 2048 -> 1.0;
    #   1.0 + 2a = 1 + 682.5/1024: spacing 2^-10, tie -> even 682 -> 1 + 682/1024 = 0x1.aa8p+0.
    # Exact: loss 5/3, grad (1 + 2 + 2)/3 = 5/3.
    doc = _doc("float16", {"s": {"value": 1}}, {"shape": [1, 1, 1, 3], "values": [[[[1, 2, 2]]]]},
               [{"op": "conv2d", "weight": [[[["s"]]]]}, {"op": "avgpool2d", "kernel": [1, 3]}, {"op": "flatten"}],
               {"op": "sum"})
    (_, loss, _, _, ad), (_, eloss, _, _, ead) = _both(doc)
    assert loss == float.fromhex("0x1.aacp+0") and eloss == Fraction(5, 3)
    assert ad == [float.fromhex("0x1.aa8p+0")] and ead == [Fraction(5, 3)]


def test_tied_scalar_weight_terms_before_bias_terms():
    # E5M2: y = w*4 + w*0.5 + w (weight [["w", "w"]], bias ["w"]), w = 1, x = [4, 0.5], sum loss.
    # Forward: 4 + 0.5 = 4.5 -> tie between 4 (1.00b*2^2) and 5 (1.01b*2^2) -> 4; 4 + 1 = 5.
    # AD: terms ordered weight entries (0,0), (0,1), then the bias: 4, 0.5, 1 ->
    #   4 + 0.5 -> 4; 4 + 1 = 5. (Bias first would give 1 + 4 = 5, 5 + 0.5 = 5.5 -> 6.)
    # Exact: 5.5 for both.
    doc = _doc({"exponent_bits": 5, "fraction_bits": 2}, {"w": {"value": 1}}, {"shape": [1, 2], "values": [[4, 0.5]]},
               [{"op": "linear", "weight": [["w", "w"]], "bias": ["w"]}], {"op": "sum"})
    (_, loss, _, _, ad), (_, eloss, _, _, ead) = _both(doc)
    assert loss == 5.0 and ad == [5.0]
    assert eloss == Fraction(11, 2) and ead == [Fraction(11, 2)]


def test_overlapping_pool_gradient_signed_zero():
    # float64: y = [2, s*1, 0] (linear, s = 1 at entry (1,1), constants elsewhere), x = [2, 1, 0].
    # maxpool1d kernel 2 stride 1: windows [2, 1] -> 2 (first entry), [1, 0] -> 1 (first entry).
    # Then linear v = [[1, "-0"]] (non-trainable), sum loss: 1*2 + (-0)*1 = 2 + -0 = 2.
    # Backward: g_pool = [1*1, -0*1] = [1, -0]. Window 0 sends 1 to y_0 and +0 to y_1; window 1
    # sends -0 to y_1 and +0 to y_2. y_1 sums its contributions in window order: +0 + -0 = +0.
    # grad s = g_y1 * x_1 = +0 * 1 = +0. (Had non-maximal entries contributed nothing, y_1 would
    # get -0 and grad s would be -0.)
    doc = _doc("float64", {"s": {"value": 1}, "v": {"shape": [1, 2], "values": [[1, "-0"]], "trainable": False}},
               {"shape": [1, 3], "values": [[2, 1, 0]]},
               [{"op": "linear", "weight": [[1, 0, 0], [0, "s", 0], [0, 0, 1]]},
                {"op": "maxpool1d", "kernel": 2, "stride": 1}, {"op": "linear", "weight": "v"}],
               {"op": "sum"})
    (_, loss, ties, _, ad), _ = _both(doc)
    assert loss == 2.0 and ties == set()
    assert [R.bits(v) for v in ad] == [R.bits(0.0)]


# ----------------------------------------------------------------------------------------------
# discrepancies found (kinkcheck side), fixed: regression tests


def test_no_params():
    # f = 1 * x with x = 1: loss 1, empty AD output.
    doc = _doc("float16", {}, {"shape": [1, 1], "values": [[1]]}, [{"op": "linear", "weight": [[1]]}], {"op": "sum"})
    ref = R.ref_machine(doc)
    assert ref.loss == 1.0 and ref.ad == []
    assert_matches(doc, "machine")


def test_maxpool_of_sigmoid_exact():
    # sigmoid(0) = 1/2 and sigmoid(1) = 0.731..., distinct: the window's maximum is sigmoid(1), no tie.
    # The exact loss is sigmoid(1) (an enclosure), the exact AD output d/dw = sigmoid'(1) * 1 > 0.
    doc = _doc("float32", {"w": {"value": 1}}, {"shape": [1, 2], "values": [[0, 1]]},
               [{"op": "linear", "weight": [["w", 0], [0, "w"]]}, {"op": "sigmoid"}, {"op": "maxpool1d", "kernel": 2}],
               {"op": "sum"})
    ref = R.ref_exact(doc)
    assert ref.ties == set() and abs(float(ref.loss) - 1 / (1 + math.exp(-1))) < 1e-15
    net = load(doc)
    fw = P.forward(net, ExactArith(8192))
    assert _contains(_enclosure(fw.loss), ref.loss)


def test_tanh_of_negative_zero():
    # input -0 -> linear 1 * -0 = -0 -> tanh(-0) = -0 -> linear 1 * -0 = -0; loss (one term) -0.
    doc = _doc("float16", {"w": {"value": 1}}, {"shape": [1, 1], "values": [["-0"]]},
               [{"op": "tanh"}, {"op": "linear", "weight": [["w"]]}], {"op": "sum"})
    ref = R.ref_machine(doc)
    assert R.same_bits(ref.xs[1][0][0], -0.0) and R.same_bits(ref.loss, -0.0)
    assert_matches(doc, "machine")
