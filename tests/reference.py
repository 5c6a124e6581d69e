"""An independent reference implementation of kinkcheck's two semantics.

Written from ``docs/semantics.md`` and ``docs/format.md`` only, as plain scalar loops
(slow, for small networks). It shares no code with ``kinkcheck.encodings`` (no program, arith,
exact, machine, activations, conventions, formats): the document is parsed here, activations,
kink positions, one-sided derivatives and the named conventions' proxy values are typed by hand
below, and the machine arithmetic is

* numpy *scalar* arithmetic (``np.float16(a) + np.float16(b)``) for float16 / float32 / float64;
* ``gmpy2.mpfr`` under a context that emulates the format (precision M+1, shifted emin/emax,
  ``subnormalize=True``, round-to-nearest-even) for bfloat16 and custom formats;
* rounding of exact constants (op constants, proxies, ``fl(2/count)`` ...) by the hand-written
  round-to-nearest-even :meth:`Fmt.round` on :class:`fractions.Fraction`.

Signed zeros: the reference follows the literal rules of docs/semantics.md (constant pieces are
constants, e.g. relu(x) = +0 for x <= 0; an input on a kink takes the piece to its left, so
abs(+0) = -(+0) = -0; sums start from their first term; a parameter with no term gets +0;
non-maximal max-pool entries receive a +0 contribution).

Machine values are carried as Python floats: every value of every supported format is a binary64
number, so this is exact, and it keeps signed zeros and infinities.

Entry points: :func:`ref_exact`, :func:`ref_machine` (both return a :class:`RefResult`),
:func:`evaluate` (either), :func:`parse` (the document, as a :class:`RefNet`), :class:`Fmt`.

Transcendental ops (``sigmoid``, ``tanh``, ``exp``/``log`` in ``cross_entropy``) are computed
*approximately*: gmpy2.mpfr at ``TRANSCENDENTAL_BITS`` bits, round-to-nearest (no certified
enclosure, no Ziv loop). The machine run rounds that approximation once more into the format with
:meth:`Fmt.round`, which is the correctly rounded value unless the true value lies within
2^-590 (relative) of a rounding boundary - never for the test data. The exact run keeps the
approximation as a Fraction and flags the result ``approximate``: compare it to kinkcheck's
certified enclosures by containment, with a slack (see ``RefResult.approximate``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

import gmpy2
import numpy as np

__all__ = [
    "Fmt", "RefNet", "RefResult", "Unsupported", "RefNaN", "parse", "evaluate", "ref_exact",
    "ref_machine", "NumpyArith", "MpfrArith", "ExactArith", "machine_arith", "bits", "same_bits",
    "CONVENTIONS", "ONE_SIDED",
]


class Unsupported(ValueError):
    """Something this reference deliberately does not implement (infinite values in the exact
    semantics, unknown ops)."""


class RefNaN(ArithmeticError):
    """A NaN reached a kink test or a max-pool comparison in the machine run (undefined there)."""


# ----------------------------------------------------------------------------------------------
# formats and round-to-nearest-even (hand written)

NAMED_FORMATS = {"float16": (5, 10), "bfloat16": (8, 7), "float32": (8, 23), "float64": (11, 52)}
NUMPY_TYPES = {(5, 10): np.float16, (8, 23): np.float32, (11, 52): np.float64}


class Fmt:
    """A binary format with E exponent bits and M fraction bits (subnormals, RNE, overflow to inf)."""

    def __init__(self, spec):
        if isinstance(spec, str):
            self.E, self.M = NAMED_FORMATS[spec]
        else:
            self.E, self.M = int(spec["exponent_bits"]), int(spec["fraction_bits"])
        self.p = self.M + 1
        self.emax = 2 ** (self.E - 1) - 1
        self.emin = 1 - self.emax
        self.max_finite = (2 - Fraction(1, 2**self.M)) * Fraction(2) ** self.emax

    def __repr__(self):
        return f"Fmt(E={self.E}, M={self.M})"

    def round(self, q, neg_zero: bool = False) -> float:
        """The format value nearest to the rational ``q`` (ties to even), as a Python float."""
        q = Fraction(q)
        if q == 0:
            return -0.0 if neg_zero else 0.0
        neg = q < 0
        a = -q if neg else q
        n, d = a.numerator, a.denominator
        e = n.bit_length() - d.bit_length()  # a in (2^(e-1), 2^(e+1))
        if (e >= 0 and n < (d << e)) or (e < 0 and (n << -e) < d):
            e -= 1  # now 2^e <= a < 2^(e+1)
        e = max(e, self.emin)
        k = e - self.M  # the quantum of a's binade (subnormals: of the lowest one)
        num, den = (n, d << k) if k >= 0 else (n << -k, d)
        m, r = divmod(num, den)
        if 2 * r > den or (2 * r == den and m % 2 == 1):
            m += 1
        if Fraction(m) * Fraction(2) ** k > self.max_finite:
            return -math.inf if neg else math.inf
        v = math.ldexp(float(m), k)  # m <= 2^p <= 2^53: exact
        return -v if neg else v

    def representable(self, q) -> bool:
        v = self.round(q)
        return math.isfinite(v) and Fraction(v) == Fraction(q)

    def round_const(self, q) -> Fraction:
        """An op constant / proxy rounded to the format (a finite value is required)."""
        v = self.round(q)
        if not math.isfinite(v):
            raise ValueError(f"constant {q} overflows the format")
        return Fraction(v)


# ----------------------------------------------------------------------------------------------
# values in the file

_HEX = re.compile(r"^([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?[pP]([+-]?\d+)$")


def parse_token(tok):
    """A value token -> (Fraction or None for infinities, binary64 float with the sign of zero).

    JSON numbers mean the binary64 value; strings are exact (hex, decimal, ratio, inf, -0)."""
    if isinstance(tok, bool):
        raise ValueError("a bool is not a value")
    if isinstance(tok, int):
        return Fraction(tok), float(tok)
    if isinstance(tok, float):
        if math.isnan(tok):
            raise ValueError("NaN")
        if math.isinf(tok):
            return None, tok
        return Fraction(tok), tok
    if not isinstance(tok, str):
        raise ValueError(f"not a value: {tok!r}")
    s = tok.strip()
    low = s.lower()
    if low in ("inf", "+inf", "infinity", "+infinity"):
        return None, math.inf
    if low in ("-inf", "-infinity"):
        return None, -math.inf
    neg = s.startswith("-")
    m = _HEX.match(s)
    if m:
        ip, fp, ex = m.group(2), m.group(3) or "", int(m.group(4))
        q = Fraction(int(ip + fp or "0", 16), 16 ** len(fp)) * Fraction(2) ** ex
        q = -q if neg else q
    else:
        q = Fraction(s)
    f = float(q)
    if q == 0 and neg:
        f = -0.0
    return q, f


def value_of(tok, fmt: Fmt) -> float:
    """A value that must be exactly representable in ``fmt``."""
    q, f = parse_token(tok)
    if q is not None and (not fmt.representable(q) or Fraction(f) != q):
        raise ValueError(f"{tok!r} is not representable in {fmt}")
    return f


def const_of(tok, fmt: Fmt) -> Fraction:
    """An op constant: rounded to the nearest format value."""
    q, _ = parse_token(tok)
    if q is None:
        raise ValueError("op constants must be finite")
    return fmt.round_const(q)


# ----------------------------------------------------------------------------------------------
# arithmetics


class ExactArith:
    exact = True

    def __init__(self, fmt: Fmt):
        self.fmt = fmt

    def add(self, a, b):
        return a + b

    def sub(self, a, b):
        return a - b

    def mul(self, a, b):
        return a * b

    def div(self, a, b):
        return a / b

    def neg(self, a):
        return -a

    def const(self, q):
        return Fraction(q)

    def val(self, x: float):
        if not math.isfinite(x):
            raise Unsupported("the exact semantics is undefined for infinite values")
        return Fraction(x)

    approximate = False  # set when a transcendental op was evaluated (approximately)

    def _tr(self, name, x):
        self.approximate = True
        return _transcendental(name, x)

    def sigmoid(self, x):
        return self._tr("sigmoid", x)

    def tanh(self, x):
        return self._tr("tanh", x)

    def exp(self, x):
        return self._tr("exp", x)

    def log(self, x):
        return self._tr("log", x)


TRANSCENDENTAL_BITS = 600


def _transcendental(name, x) -> Fraction:
    """f(x) for a finite rational x, as a Fraction: mpfr at TRANSCENDENTAL_BITS bits (RN)."""
    with gmpy2.context(precision=TRANSCENDENTAL_BITS, emin=-(2**40), emax=2**40, round=gmpy2.RoundToNearest):
        v = gmpy2.mpfr(gmpy2.mpq(x.numerator, x.denominator))
        if name == "sigmoid":
            r = 1 / (1 + gmpy2.exp(-v))
        elif name == "tanh":
            r = gmpy2.tanh(v)
        elif name == "exp":
            r = gmpy2.exp(v)
        else:
            r = gmpy2.log(v)
        if not gmpy2.is_finite(r):  # log(0) is impossible here (S >= 1)
            raise ArithmeticError(f"{name}({x}) is not finite")
        return Fraction(*r.as_integer_ratio())


class NumpyArith:
    """float16 / float32 / float64 by numpy scalar operations."""

    exact = False

    def __init__(self, fmt: Fmt):
        self.fmt = fmt
        self.T = NUMPY_TYPES[(fmt.E, fmt.M)]

    def _op(self, f, a, b):
        with np.errstate(all="ignore"):
            return float(f(self.T(a), self.T(b)))

    def add(self, a, b):
        return self._op(lambda x, y: x + y, a, b)

    def sub(self, a, b):
        return self._op(lambda x, y: x - y, a, b)

    def mul(self, a, b):
        return self._op(lambda x, y: x * y, a, b)

    def div(self, a, b):
        return self._op(lambda x, y: x / y, a, b)

    def neg(self, a):
        return -a

    def const(self, q):
        return self.fmt.round(Fraction(q))

    def val(self, x: float):
        return x

    # transcendental primitives, correctly rounded (see the module docstring)
    def _cr(self, name, x):
        if math.isnan(x):
            return x
        if math.isinf(x):
            lim = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "exp": (0.0, math.inf), "log": (math.nan, math.inf)}[name]
            return lim[1] if x > 0 else lim[0]
        if name == "log" and x <= 0:
            return -math.inf if x == 0 else math.nan
        q = _transcendental(name, Fraction(x)) if x != 0 or name in ("sigmoid", "exp") else Fraction(0)
        # IEEE 754 (9.2): tanh(-0) = -0
        # (only tanh: exp and sigmoid are positive, a tiny one rounds to +0 even for negative x)
        neg_zero = name == "tanh" and q == 0 and math.copysign(1, x) < 0 and getattr(self, "tanh_signed_zero", True)
        return self.fmt.round(q, neg_zero=neg_zero)

    def sigmoid(self, x):
        return self._cr("sigmoid", x)

    def tanh(self, x):
        return self._cr("tanh", x)

    def exp(self, x):
        return self._cr("exp", x)

    def log(self, x):
        return self._cr("log", x)


class MpfrArith(NumpyArith):
    """Any format by gmpy2.mpfr emulation: precision M+1, subnormals, RNE, overflow to inf.

    MPFR's exponent e means m * 2^e with 0.5 <= m < 1, so IEEE emax (1.f * 2^emax) is MPFR
    emax + 1 and the smallest subnormal 2^(emin - M) = 0.5 * 2^(emin - M + 1)."""

    def __init__(self, fmt: Fmt):
        self.fmt = fmt
        self.ctx = gmpy2.context(
            precision=fmt.p,
            emin=fmt.emin - fmt.M + 1,
            emax=fmt.emax + 1,
            subnormalize=True,
            round=gmpy2.RoundToNearest,
        )

    def _op(self, name, a, b):
        x, y = gmpy2.mpfr(a, 53), gmpy2.mpfr(b, 53)  # exact: the values are binary64 numbers
        return float(getattr(self.ctx, name)(x, y))

    def add(self, a, b):
        return self._op("add", a, b)

    def sub(self, a, b):
        return self._op("sub", a, b)

    def mul(self, a, b):
        return self._op("mul", a, b)

    def div(self, a, b):
        return self._op("div", a, b)


def machine_arith(fmt: Fmt, *, force_mpfr: bool = False):
    if not force_mpfr and (fmt.E, fmt.M) in NUMPY_TYPES:
        return NumpyArith(fmt)
    return MpfrArith(fmt)


def bits(x) -> int:
    """The binary64 bit pattern of a machine value (NaNs collapse to one pattern)."""
    x = float(x)
    if math.isnan(x):
        return -1
    return int(np.float64(x).view(np.uint64))


def same_bits(a, b) -> bool:
    return bits(a) == bits(b)


# ----------------------------------------------------------------------------------------------
# activations, typed by hand from docs/semantics.md (PyTorch's CPU formulas)
#
# Each activation: kinks (increasing), pieces (value program, derivative program); piece i lies
# left of kink i; an input exactly on kink i takes piece i. One-sided derivatives at each kink
# (left, right) are typed separately (ONE_SIDED) as an independent check.


class Act:
    def __init__(self, op, kinks, values, derivs, one_sided):
        self.op = op
        self.kinks = kinks
        self.values = values
        self.derivs = derivs
        self.one_sided = one_sided  # [(left, right)] exact, unrounded


def make_act(op, *, slope=None, lo=None, hi=None) -> Act:
    Z = Fraction(0)
    c = lambda q: (lambda x, A: A.const(q))
    ident = lambda x, A: x
    if op == "relu":
        return Act(op, [Z], [c(0), ident], [c(0), c(1)], [(0, 1)])
    if op == "leaky_relu":
        return Act(op, [Z], [lambda x, A: A.mul(x, A.const(slope)), ident], [c(slope), c(1)], [(slope, 1)])
    if op == "hardtanh":
        return Act(op, [lo, hi], [c(lo), ident, c(hi)], [c(0), c(1), c(0)], [(0, 1), (1, 0)])
    if op == "relu6":
        return Act(op, [Z, Fraction(6)], [c(0), ident, c(6)], [c(0), c(1), c(0)], [(0, 1), (1, 0)])
    if op == "hardsigmoid":
        return Act(
            op, [Fraction(-3), Fraction(3)],
            [c(0), lambda x, A: A.div(A.add(x, A.const(3)), A.const(6)), c(1)],
            [c(0), c(Fraction(1, 6)), c(0)],
            [(0, Fraction(1, 6)), (Fraction(1, 6), 0)],
        )
    if op == "hardswish":
        return Act(
            op, [Fraction(-3), Fraction(3)],
            [lambda x, A: A.div(A.mul(x, A.const(0)), A.const(6)), lambda x, A: A.div(A.mul(x, A.add(x, A.const(3))), A.const(6)),
             lambda x, A: A.div(A.mul(x, A.const(6)), A.const(6))],
            [c(0), lambda x, A: A.add(A.div(x, A.const(3)), A.const(Fraction(1, 2))), c(1)],
            [(0, Fraction(-1, 2)), (Fraction(3, 2), 1)],
        )
    if op in ("abs", "l1"):
        return Act(op, [Z], [lambda x, A: A.neg(x), ident], [c(-1), c(1)], [(-1, 1)])
    if op == "identity":
        return Act(op, [], [ident], [c(1)], [])
    if op == "sigmoid":  # derivative program fl(fl(1 - y) * y), y = sigmoid(x) (recomputed: same value)
        return Act(op, [], [lambda x, A: A.sigmoid(x)],
                   [lambda x, A: (lambda y: A.mul(A.sub(A.const(1), y), y))(A.sigmoid(x))], [])
    if op == "tanh":  # fl(1 - fl(y * y))
        return Act(op, [], [lambda x, A: A.tanh(x)],
                   [lambda x, A: (lambda y: A.sub(A.const(1), A.mul(y, y)))(A.tanh(x))], [])
    raise Unsupported(f"activation {op!r} is not in the reference")


# the one-sided derivatives again, as a table (checked against Act.one_sided in the tests)
ONE_SIDED = {
    "relu": [(0, 1)],
    "leaky_relu": [("slope", 1)],
    "hardtanh": [(0, 1), (1, 0)],
    "relu6": [(0, 1), (1, 0)],
    "hardsigmoid": [(0, Fraction(1, 6)), (Fraction(1, 6), 0)],
    "hardswish": [(0, Fraction(-1, 2)), (Fraction(3, 2), 1)],
    "abs": [(-1, 1)],
    "l1": [(-1, 1)],
}

# named conventions, typed from docs/conventions.md (summary table)
_PT = {
    "relu": [0], "leaky_relu": ["left"], "hardtanh": [0, 0], "relu6": [0, 0], "hardsigmoid": [0, 0],
    "hardswish": [0, 1], "abs": [0], "l1": [0], "maxpool1d": "first", "maxpool2d": "first",
}
CONVENTIONS = {
    "pytorch": _PT,
    "jax": {**_PT, "leaky_relu": [1], "hardtanh": [1, 1], "abs": [1], "l1": [1]},
    "tensorflow": {**_PT, "hardtanh": [1, 1]},
}


def resolve_convention(spec) -> dict:
    if spec is None:
        return dict(CONVENTIONS["pytorch"])
    if isinstance(spec, str):
        return dict(CONVENTIONS[spec])
    if isinstance(spec, dict):
        if "ops" in spec and isinstance(spec["ops"], dict):
            base = dict(CONVENTIONS.get(spec.get("base", "pytorch"), CONVENTIONS["pytorch"]))
            ops = spec["ops"]
        else:
            base, ops = dict(CONVENTIONS["pytorch"]), spec
        for op, v in ops.items():
            if isinstance(v, dict):
                v = v.get("tie_break", v.get("kink_derivatives"))
            base[op] = v
        return base
    raise ValueError(f"bad convention {spec!r}")


# ----------------------------------------------------------------------------------------------
# the parsed network


@dataclass
class RLayer:
    index: int
    op: str
    in_shape: tuple
    out_shape: tuple
    spec: dict
    weight: list | None = None  # entries: ("p", theta_index, sign) or ("c", float)
    wshape: tuple = ()
    bias: list | None = None
    kernel: tuple = ()
    stride: tuple = ()
    padding: tuple = (0, 0)
    act: Act | None = None
    windows: list | None = None  # pools: per output unit, the flat input positions (window order)


@dataclass
class RefNet:
    fmt: Fmt
    theta: list  # floats
    trainable_index: list  # theta indices of the gradient, in order
    inputs: list  # per sample: flat list of floats
    in_shape: tuple
    targets: list | None  # per sample: flat list of floats
    layers: list
    loss: dict
    convention: object


def _prod(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def _flatten(node, shape):
    if not shape:
        if isinstance(node, list):
            raise ValueError("shape mismatch")
        return [node]
    if not isinstance(node, list) or len(node) != shape[0]:
        raise ValueError("shape mismatch")
    out = []
    for c in node:
        out.extend(_flatten(c, shape[1:]))
    return out


def _nest_shape(node):
    shape = []
    while isinstance(node, list):
        shape.append(len(node))
        if not node:
            break
        node = node[0]
    return tuple(shape)


def _tensor(spec, fmt):
    if "value" in spec:
        return (), [value_of(spec["value"], fmt)]
    shape = tuple(spec["shape"])
    return shape, [value_of(t, fmt) for t in _flatten(spec["values"], shape)]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def parse(doc: dict) -> RefNet:
    fmt = Fmt(doc["dtype"])
    theta, trainable, names = [], [], {}
    for name, spec in doc["params"].items():
        shape, vals = _tensor(spec, fmt)
        names[name] = (len(theta), shape)
        if spec.get("trainable", True):
            trainable.extend(range(len(theta), len(theta) + len(vals)))
        theta.extend(vals)
    ishape, ivals = _tensor(doc["inputs"], fmt)
    N = ishape[0]
    ss = _prod(ishape[1:])
    inputs = [ivals[n * ss:(n + 1) * ss] for n in range(N)]

    def ref(spec, expected_ndim):
        if isinstance(spec, str):
            off, shape = names[spec]
            return [("p", off + i, 1) for i in range(_prod(shape))], shape
        shape = _nest_shape(spec)
        out = []
        for tok in _flatten(spec, shape):
            if isinstance(tok, str):
                neg = tok.startswith("-")
                nm = tok[1:] if neg else tok
                if nm in names:
                    off, pshape = names[nm]
                    assert pshape == (), "inline entries name scalar params"
                    out.append(("p", off, -1 if neg else 1))
                    continue
            out.append(("c", value_of(tok, fmt)))
        assert len(shape) == expected_ndim
        return out, shape

    layers = []
    shape = tuple(ishape[1:])
    for i, spec in enumerate(doc["layers"]):
        op = spec["op"]
        L = RLayer(i, op, shape, shape, spec)
        if op == "linear":
            L.weight, L.wshape = ref(spec["weight"], 2)
            assert L.wshape[1] == shape[0]
            if spec.get("bias") is not None:
                L.bias, _ = ref(spec["bias"], 1)
            L.out_shape = (L.wshape[0],)
        elif op == "conv2d":
            L.weight, L.wshape = ref(spec["weight"], 4)
            O, C, kh, kw = L.wshape
            assert C == shape[0]
            if spec.get("bias") is not None:
                L.bias, _ = ref(spec["bias"], 1)
            L.stride = _pair(spec.get("stride", 1))
            L.padding = _pair(spec.get("padding", 0))
            L.kernel = (kh, kw)
            H = (shape[1] + 2 * L.padding[0] - kh) // L.stride[0] + 1
            W = (shape[2] + 2 * L.padding[1] - kw) // L.stride[1] + 1
            L.out_shape = (O, H, W)
        elif op == "maxpool1d":
            k = spec["kernel"]
            s = spec.get("stride", k)
            Lin = shape[-1]
            C = shape[0] if len(shape) == 2 else 1
            Lout = (Lin - k) // s + 1
            L.kernel, L.stride = (k,), (s,)
            L.out_shape = shape[:-1] + (Lout,)
            L.windows = [[c * Lin + o * s + j for j in range(k)] for c in range(C) for o in range(Lout)]
        elif op in ("maxpool2d", "avgpool2d"):
            kh, kw = _pair(spec["kernel"])
            sh, sw = _pair(spec.get("stride", [kh, kw]))
            C, H, W = shape
            Ho, Wo = (H - kh) // sh + 1, (W - kw) // sw + 1
            L.kernel, L.stride = (kh, kw), (sh, sw)
            L.out_shape = (C, Ho, Wo)
            L.windows = [
                [c * H * W + (y * sh + i) * W + (x * sw + j) for i in range(kh) for j in range(kw)]
                for c in range(C) for y in range(Ho) for x in range(Wo)
            ]
        elif op == "flatten":
            L.out_shape = (_prod(shape),)
        else:
            kw_ = {}
            if op == "leaky_relu":
                kw_["slope"] = const_of(spec.get("negative_slope", 0.01), fmt)
            if op == "hardtanh":
                kw_["lo"] = const_of(spec.get("min_val", -1), fmt)
                kw_["hi"] = const_of(spec.get("max_val", 1), fmt)
            L.act = make_act(op, **kw_)
        layers.append(L)
        shape = L.out_shape
    loss = dict(doc["loss"])
    if loss["op"] not in ("sum", "dot", "mse", "l1", "cross_entropy"):
        raise Unsupported(f"loss {loss['op']!r}")
    targets = None
    if loss["op"] == "cross_entropy":
        targets = [int(t) for t in doc["targets"]["values"]]
    if loss["op"] in ("dot", "mse", "l1"):
        tshape, tvals = _tensor(doc["targets"], fmt)
        assert tshape == (N,) + shape
        os_ = _prod(shape)
        targets = [tvals[n * os_:(n + 1) * os_] for n in range(N)]
    return RefNet(fmt, theta, trainable, inputs, tuple(ishape[1:]), targets, layers, loss, doc.get("convention"))


# ----------------------------------------------------------------------------------------------
# proxies


def _proxy_values(entries, act: Act, fmt: Fmt) -> list:
    if len(entries) != len(act.kinks):
        raise ValueError(f"{act.op}: {len(act.kinks)} kinks, {len(entries)} kink derivatives")
    out = []
    for k, e in enumerate(entries):
        if e in ("left", "right"):
            out.append(fmt.round_const(act.one_sided[k][0 if e == "left" else 1]))
        else:
            out.append(const_of(e, fmt))
    return out


def _layer_proxies(net: RefNet, conv: dict):
    kinks, ties = {}, {}
    for L in net.layers:
        if L.act is not None and L.act.kinks:
            entries = L.spec.get("kink_derivatives")
            if entries is None:
                entries = conv[L.op]
            kinks[L.index] = _proxy_values(entries, L.act, net.fmt)
        elif L.op in ("maxpool1d", "maxpool2d"):
            rule = L.spec.get("tie_break") or conv.get(L.op, "first")
            if isinstance(rule, dict):  # J_beta: beta exact (representable); 0 / 1 are first / split
                beta = const_of(rule["beta"], net.fmt)
                rule = "first" if beta == 0 else "split" if beta == 1 else ("beta", beta)
            ties[L.index] = rule
    if net.loss["op"] == "l1":
        entries = net.loss.get("kink_derivatives") or conv.get("l1") or [0]
        kinks["loss"] = _proxy_values(entries, make_act("l1"), net.fmt)
    return kinks, ties


# ----------------------------------------------------------------------------------------------
# evaluation


@dataclass
class RefResult:
    semantics: str
    loss: object  # Fraction (exact) or float (machine)
    xs: list  # xs[i][n] = flat input of layer i for sample n; xs[-1] = network outputs
    ties: set  # {(layer, sample, unit, kink)}
    pool_entries: dict  # (layer, sample, window) -> tuple of tied flat input positions
    ad: list  # gradient over the trainable params (declaration order, row-major)
    residual: list | None = None
    approximate: bool = False  # exact run through a transcendental op: values are approximations


def _seq_sum(A, terms):
    acc = terms[0]
    for t in terms[1:]:
        acc = A.add(acc, t)
    return acc


def _locate(A, x, kinks):
    """(piece, kink index or -1) of x: piece = number of kinks strictly below x."""
    if isinstance(x, float):
        if math.isnan(x):
            raise RefNaN("NaN at a kink test")
        if math.isinf(x):
            return (len(kinks) if x > 0 else 0), -1
        x = Fraction(x)  # -0 -> 0
    piece = sum(1 for k in kinks if k < x)
    kink = next((i for i, k in enumerate(kinks) if k == x), -1)
    return piece, kink


def _entry(A, net, e):
    if e[0] == "c":
        return A.val(e[1])
    v = A.val(net.theta[e[1]])
    return A.neg(v) if e[2] < 0 else v


def _pool_max(A, vals):
    """(value of the first maximal entry, mask of entries equal to the maximum)."""
    if any(isinstance(v, float) and math.isnan(v) for v in vals):
        raise RefNaN("NaN in a max-pool window")
    m = vals[0]
    for v in vals[1:]:
        if v > m:
            m = v
    mask = [v == m for v in vals]
    return vals[mask.index(True)], mask


def _forward_sample(net: RefNet, A, x):
    """xs (inputs of each layer and the output) and per-layer locations / pool masks."""
    xs, loc, pools = [], {}, {}
    for L in net.layers:
        xs.append(x)
        op = L.op
        if op == "linear":
            out, inn = L.wshape
            W = [_entry(A, net, e) for e in L.weight]
            b = [_entry(A, net, e) for e in L.bias] if L.bias is not None else None
            y = []
            for i in range(out):
                acc = A.mul(W[i * inn], x[0])
                for j in range(1, inn):
                    acc = A.add(acc, A.mul(W[i * inn + j], x[j]))
                if b is not None:
                    acc = A.add(acc, b[i])
                y.append(acc)
            x = y
        elif op == "conv2d":
            x = _conv_forward(net, A, L, x)
        elif op in ("maxpool1d", "maxpool2d"):
            y, masks = [], []
            for win in L.windows:
                v, mask = _pool_max(A, [x[p] for p in win])
                y.append(v)
                masks.append(mask)
            pools[L.index] = masks
            x = y
        elif op == "avgpool2d":
            size = A.const(L.kernel[0] * L.kernel[1])
            x = [A.div(_seq_sum(A, [x[p] for p in win]), size) for win in L.windows]
        elif op == "flatten":
            x = list(x)
        else:
            act = L.act
            lc = [_locate(A, v, act.kinks) for v in x]
            loc[L.index] = lc
            x = [act.values[pc](v, A) for v, (pc, _) in zip(x, lc)]
    xs.append(x)
    return xs, loc, pools


def _padded(A, L, x):
    C, H, W = L.in_shape
    ph, pw = L.padding
    Hp, Wp = H + 2 * ph, W + 2 * pw
    zero = A.const(0)  # +0 (materialised padding)
    xp = [zero] * (C * Hp * Wp)
    for c in range(C):
        for y in range(H):
            for xx in range(W):
                xp[(c * Hp + y + ph) * Wp + xx + pw] = x[(c * H + y) * W + xx]
    return xp, Hp, Wp


def _conv_geometry(L):
    O, C, kh, kw = L.wshape
    _, Ho, Wo = L.out_shape
    sh, sw = L.stride
    return O, C, kh, kw, Ho, Wo, sh, sw


def _conv_forward(net, A, L, x):
    O, C, kh, kw, Ho, Wo, sh, sw = _conv_geometry(L)
    xp, Hp, Wp = _padded(A, L, x)
    W = [_entry(A, net, e) for e in L.weight]
    b = [_entry(A, net, e) for e in L.bias] if L.bias is not None else None
    y = []
    for o in range(O):
        for oy in range(Ho):
            for ox in range(Wo):
                acc = None
                for c in range(C):
                    for i in range(kh):
                        for j in range(kw):
                            t = A.mul(W[((o * C + c) * kh + i) * kw + j], xp[(c * Hp + oy * sh + i) * Wp + ox * sw + j])
                            acc = t if acc is None else A.add(acc, t)
                if b is not None:
                    acc = A.add(acc, b[o])
                y.append(acc)
    return y


def _side_at(side, key):
    """``side``: None / "left" / "right" for every tie, or a dict {(layer, sample, unit): choice}
    naming some ties (the others: the proxy); a max-pool choice may be the flat input position
    (int) of the tied entry that takes the gradient."""
    return side.get(key) if isinstance(side, dict) else side


def _backward_sample(net, A, n, xs, loc, pools, g, kinks, ties, side, terms):
    """Propagate the seed g of sample n; append parameter terms (key, theta index, value)."""
    for L in reversed(net.layers):
        x = xs[L.index]
        op = L.op
        need_gx = L.index > 0
        if op == "linear":
            out, inn = L.wshape
            for idx, e in enumerate(L.weight):
                if e[0] == "p":
                    i, j = divmod(idx, inn)
                    t = A.mul(g[i], x[j])
                    terms.append(((n, L.index, 0, idx, 0), e[1], A.neg(t) if e[2] < 0 else t))
            if L.bias is not None:
                for i, e in enumerate(L.bias):
                    if e[0] == "p":
                        terms.append(((n, L.index, 1, i, 0), e[1], A.neg(g[i]) if e[2] < 0 else g[i]))
            if not need_gx:
                return
            W = [_entry(A, net, e) for e in L.weight]
            gx = []
            for j in range(inn):
                acc = A.mul(W[j], g[0])
                for i in range(1, out):
                    acc = A.add(acc, A.mul(W[i * inn + j], g[i]))
                gx.append(acc)
            g = gx
        elif op == "conv2d":
            g = _conv_backward(net, A, L, n, x, g, terms, need_gx)
            if g is None:
                return
        elif op in ("maxpool1d", "maxpool2d"):
            rule = ties[L.index]
            contrib = {}  # input position -> list of contributions in window order
            for w, (win, mask) in enumerate(zip(L.windows, pools[L.index])):
                cnt = sum(mask)
                r = rule
                s = _side_at(side, (L.index, n, w))
                if cnt >= 2 and isinstance(s, int):
                    if not mask[list(win).index(s)]:
                        raise ValueError(f"entry {s} is not a maximal entry of window {w}")
                    r = "at"
                elif cnt >= 2 and s is not None:
                    r = "first" if s == "left" else "last"
                vals = [A.const(0)] * len(win)
                if r == "at":
                    vals[list(win).index(s)] = g[w]
                elif cnt < 2 or r == "first":
                    vals[mask.index(True)] = g[w]
                elif r == "last":
                    vals[len(mask) - 1 - mask[::-1].index(True)] = g[w]
                elif r == "split":
                    share = A.div(g[w], A.const(cnt))
                    vals = [share if m else A.const(0) for m in mask]
                else:  # ("beta", beta): (beta*g)/cnt to each tied entry; the first adds (1-beta)*g
                    beta = r[1]
                    share = A.div(A.mul(A.const(beta), g[w]), A.const(cnt))
                    vals = [share if m else A.const(0) for m in mask]
                    i = mask.index(True)
                    vals[i] = A.add(share, A.mul(A.const(1 - beta), g[w]))
                for p, v in zip(win, vals):
                    contrib.setdefault(p, []).append(v)
            g = [(_seq_sum(A, contrib[p]) if p in contrib else A.const(0)) for p in range(_prod(L.in_shape))]
        elif op == "avgpool2d":
            size = A.const(L.kernel[0] * L.kernel[1])
            contrib = {}
            for w, win in enumerate(L.windows):
                share = A.div(g[w], size)
                for p in win:
                    contrib.setdefault(p, []).append(share)
            g = [(_seq_sum(A, contrib[p]) if p in contrib else A.const(0)) for p in range(_prod(L.in_shape))]
        elif op == "flatten":
            pass
        else:
            act = L.act
            gi = []
            for u, (v, (pc, k)) in enumerate(zip(x, loc[L.index])):
                if k >= 0:
                    s = _side_at(side, (L.index, n, u))
                    if s is None:
                        d = A.const(kinks[L.index][k])
                    else:
                        # the true one-sided derivative: exact in the exact run, fl() in the machine run
                        d = A.const(act.one_sided[k][0 if s == "left" else 1])
                else:
                    d = act.derivs[pc](v, A)
                gi.append(A.mul(g[u], d))
            g = gi


def _conv_backward(net, A, L, n, x, g, terms, need_gx):
    O, C, kh, kw, Ho, Wo, sh, sw = _conv_geometry(L)
    P = Ho * Wo
    xp, Hp, Wp = _padded(A, L, x)
    K = C * kh * kw
    for o in range(O):
        for k in range(K):
            e = L.weight[o * K + k]
            if e[0] != "p":
                continue
            c, r = divmod(k, kh * kw)
            i, j = divmod(r, kw)
            for p in range(P):
                oy, ox = divmod(p, Wo)
                t = A.mul(g[o * P + p], xp[(c * Hp + oy * sh + i) * Wp + ox * sw + j])
                terms.append(((n, L.index, 0, o * K + k, p), e[1], A.neg(t) if e[2] < 0 else t))
    if L.bias is not None:
        for o, e in enumerate(L.bias):
            if e[0] == "p":
                for p in range(P):
                    terms.append(((n, L.index, 1, o, p), e[1], A.neg(g[o * P + p]) if e[2] < 0 else g[o * P + p]))
    if not need_gx:
        return None
    W = [_entry(A, net, e) for e in L.weight]
    contrib = {}  # padded input position -> contributions in (output position, kernel offset) order
    for p in range(P):
        oy, ox = divmod(p, Wo)
        for k in range(K):
            c, r = divmod(k, kh * kw)
            i, j = divmod(r, kw)
            acc = A.mul(W[k], g[p])  # o = 0
            for o in range(1, O):
                acc = A.add(acc, A.mul(W[o * K + k], g[o * P + p]))
            contrib.setdefault((c * Hp + oy * sh + i) * Wp + ox * sw + j, []).append(acc)
    Cin, H, Wd = L.in_shape
    ph, pw = L.padding
    out = []
    for c in range(Cin):
        for y in range(H):
            for xx in range(Wd):
                q = (c * Hp + y + ph) * Wp + xx + pw
                out.append(_seq_sum(A, contrib[q]) if q in contrib else A.const(0))
    return out


def evaluate(doc: dict, semantics: str, *, convention=None, side: str | None = None,
             tanh_signed_zero: bool = True) -> RefResult:
    """Run one semantics (``"exact"`` or ``"machine"``) of a network document.

    ``tanh_signed_zero``: machine tanh(-0) = -0 (IEEE 754 9.2; default) or +0.
    ``convention`` overrides the document's; ``side`` = "left"/"right" uses that one-sided
    derivative at every tie (max-pool: first / last maximal entry) instead of the proxies; a dict
    {(layer, sample, unit): "left" / "right" / flat input position of a tied max-pool entry}
    switches the ties it names only.
    docs/semantics.md only uses ``side`` for machine runs (choice sensitivity); for the exact run
    this reference follows kinkcheck's choice: the one-sided derivative is the exact real number
    (e.g. 1/6 for hardsigmoid), not its dtype rounding (proxies from the convention, including
    its "left"/"right" entries, are dtype-rounded in both semantics)."""
    net = parse(doc)
    conv = resolve_convention(convention if convention is not None else net.convention)
    kinks, ties = _layer_proxies(net, conv)
    A = ExactArith(net.fmt) if semantics == "exact" else machine_arith(net.fmt)
    A.tanh_signed_zero = tanh_signed_zero  # False: tanh(-0) = +0, kinkcheck's current behaviour
    N = len(net.inputs)
    runs = []
    for n in range(N):
        runs.append(_forward_sample(net, A, [A.val(v) for v in net.inputs[n]]))
    xs = [[runs[n][0][i] for n in range(N)] for i in range(len(net.layers) + 1)]
    outs = xs[-1]
    count = N * len(outs[0])
    lop = net.loss["op"]
    mean = net.loss.get("reduction", "mean") == "mean"
    ties_set, pool_entries = set(), {}
    for n in range(N):
        _, loc, pools = runs[n]
        for L in net.layers:
            if L.index in loc:
                for u, (_, k) in enumerate(loc[L.index]):
                    if k >= 0:
                        ties_set.add((L.index, n, u, k))
            if L.index in pools:
                for w, mask in enumerate(pools[L.index]):
                    if sum(mask) >= 2:
                        ties_set.add((L.index, n, w, 0))
                        pool_entries[(L.index, n, w)] = tuple(p for p, m in zip(L.windows[w], mask) if m)
    residual = None
    seeds = []
    if lop == "sum":
        loss = _seq_sum(A, [v for o in outs for v in o])
        seeds = [[A.const(1)] * len(o) for o in outs]
    elif lop == "dot":
        T = [[A.val(t) for t in tn] for tn in net.targets]
        loss = _seq_sum(A, [A.mul(t, v) for tn, o in zip(T, outs) for t, v in zip(tn, o)])
        seeds = T
    elif lop == "cross_entropy":
        # per sample: m = max, e_i = exp(x_i - m), S = e_0 + e_1 + ..., (m + log S) - x_t
        per = []
        for o, t in zip(outs, net.targets):
            m, _ = _pool_max(A, o)  # the first maximal value
            e = [A.exp(A.sub(v, m)) for v in o]
            S = _seq_sum(A, e)
            per.append(A.sub(A.add(m, A.log(S)), o[t]))
            g = [A.sub(A.div(ei, S), A.const(1 if i == t else 0)) for i, ei in enumerate(e)]
            seeds.append([A.mul(gi, A.const(Fraction(1, N))) for gi in g] if mean else g)
        loss = _seq_sum(A, per)
        if mean:
            loss = A.div(loss, A.const(N))
    else:
        T = [[A.val(t) for t in tn] for tn in net.targets]
        residual = [[A.sub(v, t) for v, t in zip(o, tn)] for o, tn in zip(outs, T)]
        if lop == "mse":
            terms = [A.mul(r, r) for rn in residual for r in rn]
            c = A.const(Fraction(2, count) if mean else 2)
            seeds = [[A.mul(r, c) for r in rn] for rn in residual]
        else:
            absact = make_act("l1")
            terms, seeds = [], []
            for n, rn in enumerate(residual):
                sn = []
                for u, r in enumerate(rn):
                    pc, k = _locate(A, r, absact.kinks)
                    terms.append(absact.values[pc](r, A))
                    if k >= 0:
                        ties_set.add((len(net.layers), n, u, 0))
                        s = _side_at(side, (len(net.layers), n, u))
                        if s is None:
                            d = A.const(kinks["loss"][0])
                        else:
                            d = A.const(absact.one_sided[0][0 if s == "left" else 1])
                    else:
                        d = absact.derivs[pc](r, A)
                    sn.append(A.mul(d, A.const(Fraction(1, count))) if mean else d)
                seeds.append(sn)
        loss = _seq_sum(A, terms)
        if mean:  # sum and dot have no reduction
            loss = A.div(loss, A.const(count))
    # parameter terms
    terms = []
    for n in range(N):
        xs_n, loc, pools = runs[n]
        _backward_sample(net, A, n, xs_n, loc, pools, list(seeds[n]), kinks, ties, side, terms)
    by_param: dict = {}
    for key, ti, v in sorted(terms, key=lambda t: t[0]):
        by_param.setdefault(ti, []).append(v)
    ad = [(_seq_sum(A, by_param[ti]) if ti in by_param else A.const(0)) for ti in net.trainable_index]
    return RefResult(semantics, loss, xs, ties_set, pool_entries, ad, residual, bool(getattr(A, "approximate", False)))


def ref_exact(doc: dict, *, convention=None, side: str | None = None) -> RefResult:
    """Exact (real) semantics: Fractions everywhere; proxies and op constants dtype-rounded."""
    return evaluate(doc, "exact", convention=convention, side=side)


def ref_machine(doc: dict, *, convention=None, side: str | None = None, tanh_signed_zero: bool = True) -> RefResult:
    """Machine semantics: every operation rounded to nearest-even in the dtype, documented order."""
    return evaluate(doc, "machine", convention=convention, side=side, tanh_signed_zero=tanh_signed_zero)


# ----------------------------------------------------------------------------------------------
# branches of a run: branch mismatch and compensation (docs/semantics.md)


def branches(doc: dict, res: RefResult) -> dict:
    """{(layer, sample, unit): branch} of every unit on a kinked op in one run: ("piece", p) or
    ("kink", k) for an elementwise unit or an l1 residual (layer = number of layers), ("max",
    window positions of the maximal entries) for a max-pool window."""
    net = parse(doc)
    out = {}
    for L in net.layers:
        xs = res.xs[L.index]
        if L.act is not None and L.act.kinks:
            for n, xn in enumerate(xs):
                for u, v in enumerate(xn):
                    p, k = _locate(None, v, L.act.kinks)
                    out[(L.index, n, u)] = ("kink", k) if k >= 0 else ("piece", p)
        elif L.op in ("maxpool1d", "maxpool2d"):
            for n, xn in enumerate(xs):
                for w, win in enumerate(L.windows):
                    _, mask = _pool_max(None, [xn[p] for p in win])
                    out[(L.index, n, w)] = ("max", tuple(i for i, m in enumerate(mask) if m))
    if net.loss["op"] == "l1":
        kinks = make_act("l1").kinks
        for n, rn in enumerate(res.residual):
            for u, r in enumerate(rn):
                p, k = _locate(None, r, kinks)
                out[(len(net.layers), n, u)] = ("kink", k) if k >= 0 else ("piece", p)
    return out


def branch_mismatch(doc: dict, exact: RefResult, machine: RefResult) -> set:
    """Keys of the units whose branch differs between the exact and the machine run."""
    e, m = branches(doc, exact), branches(doc, machine)
    return {k for k in e if e[k] != m[k]}


def compensation(differentiable, ad_correct, mismatch: set):
    """Boustany's compensation zone at w: f differentiable, the exact AD output its gradient, and
    some branch mismatch. False as soon as one of them fails; None when none fails but a verdict
    is unknown."""
    if not mismatch or differentiable is False or ad_correct is False:
        return False
    if differentiable is True and ad_correct is True:
        return True
    return None
