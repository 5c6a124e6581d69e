"""The compiled machine kernels (encodings/kernels.py, numba) against the numpy implementation.

The numpy loops in ``MachineArith`` are the reference (they are themselves checked against the
independent scalar reference in test_semantics.py). Compared bit for bit: dot products and
sequential sums in every dtype family (float16, bfloat16, float32, float64, custom formats) on
values that include signed zeros, subnormals, the largest finite values (overflow), infinities and
NaN (compared as "both NaN": payloads are the hardware's); the compiled rounding against
``FloatFormat.round_array``; whole network runs (forward values, ties, AD output) on random networks;
and ``kinkcheck.verify`` reports. Skipped without numba (the ``fast`` extra); the numpy path is what
runs then, and every other test file exercises it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kinkcheck.encodings import kernels
from kinkcheck.encodings import program as P
from kinkcheck.encodings.formats import FloatFormat
from kinkcheck.encodings.machine import MachineArith
from kinkcheck.encodings.network import load

from conftest import EXAMPLES
from strategies import DTYPES, networks

numba = pytest.importorskip("numba")

SPECS = ("float16", "bfloat16", "float32", "float64", {"exponent_bits": 4, "fraction_bits": 3}, {"exponent_bits": 5, "fraction_bits": 2}, {"exponent_bits": 8, "fraction_bits": 23})


@pytest.fixture
def mode():
    """Run a block under a kernel mode, restoring the environment's afterwards."""

    class _M:
        def __call__(self, m):
            kernels.set_mode(m)

    yield _M()
    kernels.set_mode(None)


def _with(m, fn):
    kernels.set_mode(m)
    try:
        return fn()
    finally:
        kernels.set_mode(None)


@st.composite
def fmt_values(draw, fmt: FloatFormat, shape):
    """An array of format values with specials: +-0, subnormals, +-max_finite, +-inf, NaN."""
    n = int(np.prod(shape))
    special = [0.0, -0.0, fmt.min_subnormal, -fmt.min_subnormal, fmt.min_normal, fmt.min_normal - fmt.min_subnormal, fmt.max_finite, -fmt.max_finite, math.inf, -math.inf, math.nan, 1.0, -1.0]
    out = []
    for _ in range(n):
        kind = draw(st.integers(0, 9))
        if kind == 0:
            out.append(draw(st.sampled_from(special)))
        elif kind == 1:  # near the bottom of the range
            k = draw(st.integers(0, 2 ** (fmt.fraction_bits + 1) - 1))
            out.append(math.ldexp(k, fmt.emin - fmt.fraction_bits + draw(st.integers(0, 3))) * draw(st.sampled_from([1, -1])))
        elif kind == 2:  # near the top
            k = draw(st.integers(2**fmt.fraction_bits, 2 ** (fmt.fraction_bits + 1) - 1))
            out.append(math.ldexp(k, fmt.emax - fmt.fraction_bits - draw(st.integers(0, 2))) * draw(st.sampled_from([1, -1])))
        else:  # ordinary values with full significands
            out.append(draw(st.floats(-8, 8, allow_nan=False, width=64)))
    a = fmt.round_array(np.array(out, dtype=np.float64))
    return a.reshape(shape)


def _same(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    na, nb = np.isnan(a), np.isnan(b)
    assert (na == nb).all(), "NaN positions differ"
    assert np.array_equal(a[~na].view(np.uint64), b[~nb].view(np.uint64)), "bits differ (signed zeros count)"


@settings(max_examples=40)
@given(st.data(), st.sampled_from(range(len(SPECS))), st.integers(1, 4), st.integers(1, 9), st.integers(1, 5), st.booleans(), st.booleans())
def test_dot_matches_numpy_path(data, si, n, n_in, n_out, generic, specials):
    fmt = FloatFormat.from_spec(SPECS[si])
    A = MachineArith(fmt, force_generic=generic)
    if specials:
        W = data.draw(fmt_values(fmt, (n_out, n_in)))
        x = data.draw(fmt_values(fmt, (n, n_in)))
    else:
        W = fmt.round_array(np.array(data.draw(st.lists(st.floats(-4, 4), min_size=n_out * n_in, max_size=n_out * n_in))).reshape(n_out, n_in))
        x = fmt.round_array(np.array(data.draw(st.lists(st.floats(-4, 4), min_size=n * n_in, max_size=n * n_in))).reshape(n, n_in))
    W, x = A.from_floats(W), A.from_floats(x)
    ref = _with("numpy", lambda: A.dot(W, x))
    got = _with("numba", lambda: A.dot(W, x))
    assert got.dtype == ref.dtype
    _same(got, ref)
    # a 3-d batch (conv patches) and a read-only weight (the cached transposed path)
    x3 = x.reshape(n, 1, n_in)
    Wr = W.copy()
    Wr.flags.writeable = False
    _same(_with("numba", lambda: A.dot(Wr, x3)), _with("numpy", lambda: A.dot(W, x3)))


@settings(max_examples=40)
@given(st.data(), st.sampled_from(range(len(SPECS))), st.integers(1, 3), st.integers(2, 12), st.booleans())
def test_seq_sum_matches_numpy_path(data, si, rows, n, generic):
    fmt = FloatFormat.from_spec(SPECS[si])
    A = MachineArith(fmt, force_generic=generic)
    a = A.from_floats(data.draw(fmt_values(fmt, (rows, n))))
    _same(_with("numba", lambda: A.seq_sum(a, axis=-1)), _with("numpy", lambda: A.seq_sum(a, axis=-1)))
    _same(_with("numba", lambda: A.seq_sum(a.T, axis=0)), _with("numpy", lambda: A.seq_sum(a.T, axis=0)))
    flat = a.reshape(-1)
    got, ref = _with("numba", lambda: A.seq_sum(flat)), _with("numpy", lambda: A.seq_sum(flat))
    assert np.ndim(got) == np.ndim(ref) == 0
    _same(got, ref)


@settings(max_examples=60)
@given(st.sampled_from(range(len(SPECS))), st.lists(st.floats(width=64), min_size=1, max_size=30), st.integers(-30, 30))
def test_compiled_rounding_matches_round_array(si, vals, shift):
    fmt = FloatFormat.from_spec(SPECS[si])
    a = np.array(vals, dtype=np.float64)
    with np.errstate(all="ignore"):
        a = np.concatenate([a, np.ldexp(a, shift), np.ldexp(a, fmt.emin), np.ldexp(a, fmt.emax)])
    # exact ties and the overflow threshold
    m = fmt.fraction_bits
    ties = [math.ldexp(2 * k + 1, -m - 1) for k in range(4)] + [math.ldexp(1.0, fmt.emin - m - 1), math.ldexp(3.0, fmt.emin - m - 2)]
    if m < 52:  # the overflow threshold max_finite + ulp/2 (a tie that goes to infinity)
        ties.append(math.ldexp(2.0 - math.ldexp(1.0, -m - 1), fmt.emax))
    a = np.concatenate([a, ties, [-t for t in ties], [0.0, -0.0, math.inf, -math.inf, math.nan]])
    _same(kernels.round_array(fmt, a), fmt.round_array(a))


def _machine_run(doc):
    net = load(doc)
    A = MachineArith(net.fmt)
    fw = P.forward(net, A)
    proxies = P.resolve_proxies(net)
    grads = [P.backward(net, A, fw, proxies, side=s) for s in (None, "left", "right")]
    ties = sorted((t.layer, t.sample, t.unit, t.kink, t.entries) for t in P.ties(net, fw))
    return [np.asarray(x) for x in fw.xs], np.asarray(fw.loss), ties, grads


@settings(max_examples=25)
@given(networks(dtypes=DTYPES, max_width=8))
def test_network_runs_identical(doc):
    a = _with("numpy", lambda: _machine_run(doc))
    b = _with("numba", lambda: _machine_run(doc))
    for xa, xb in zip(a[0], b[0]):
        _same(xa, xb)
    _same(a[1], b[1])
    assert a[2] == b[2]
    for ga, gb in zip(a[3], b[3]):
        _same(ga, gb)


@pytest.mark.parametrize("name", ["relu_minus_relu.json", "two_layer_pairs.json", "maxpool_u_b.json", "bias_relu_clarke.json"])
def test_verify_reports_identical(name):
    import kinkcheck

    def rep():
        d = kinkcheck.verify(str(EXAMPLES / name), values=True).to_dict()
        d.pop("time_s")
        d["decision"].pop("time_s", None)
        return d

    assert _with("numba", rep) == _with("numpy", rep)


def test_fixed_order_example():
    """A float32 sum whose value depends on the order: the kernel must keep the spec's order."""
    fmt = FloatFormat.from_spec("float32")
    A = MachineArith(fmt)
    W = np.array([[1.0, 1.0, 1.0]], dtype=np.float32)
    x = np.array([[2.0**24, 1.0, 1.0]], dtype=np.float32)  # (2^24 + 1) + 1 = 2^24 in float32; 2^24 + 2 otherwise
    got = _with("numba", lambda: A.dot(W, x))
    assert got.tolist() == [[2.0**24]]
    assert _with("numba", lambda: A.seq_sum(x[0])) == np.float32(2.0**24)


def test_modes(monkeypatch):
    monkeypatch.setenv("KINKCHECK_KERNELS", "numpy")
    assert kernels.mode() == "numpy" and not kernels.active(10**9)
    monkeypatch.setenv("KINKCHECK_KERNELS", "numba")
    assert kernels.active(1)
    monkeypatch.setenv("KINKCHECK_KERNELS", "fast")
    with pytest.raises(ValueError, match="KINKCHECK_KERNELS"):
        kernels.mode()
    monkeypatch.setenv("KINKCHECK_KERNELS", "numpy")
    kernels.set_mode("numba")
    try:
        assert kernels.active(1)
    finally:
        kernels.set_mode(None)
    with pytest.raises(ValueError):
        kernels.set_mode("gpu")
