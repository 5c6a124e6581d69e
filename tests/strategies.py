"""Hypothesis strategies for random small network DOCUMENTS (dicts in the network-file format).

Main entry point: :func:`networks`. Example::

    from hypothesis import given
    from strategies import networks

    @given(networks(dtypes=["float32"], archs=["mlp"], ties=True))
    def test_something(doc):
        report = kinkcheck.verify(doc)

Every document is valid (parameters, inputs and targets exactly representable in its dtype),
small (at most about 8 units per layer, batch 1-3) so that exact evaluation is fast, and uses only
the ops the independent reference (tests/reference.py) implements exactly: linear (with and without bias,
named tensors or inline lists with tied scalars ``"w"`` / ``"-w"`` and constants), conv2d (padding,
stride), maxpool1d / maxpool2d (overlapping windows when stride < kernel), avgpool2d, flatten, the
piecewise-linear activations and the losses sum / dot / mse / l1 (sigmoid, tanh and
cross_entropy on request; the reference only approximates them in the exact semantics). Values are written in every
syntax of the format (JSON numbers, hex strings, decimal strings, ratios, ``"-0"``).

In ``ties`` mode the document is post-processed to sit exactly on kinks on purpose: biases equal
to a kink minus the exact pre-activation, two pool entries made equal, l1 targets equal to the
outputs, duplicated samples, inputs from a tiny value set.
"""

from __future__ import annotations

import math
from fractions import Fraction

from hypothesis import strategies as st

try:  # tests/ is not a package; support both layouts
    from . import reference as R  # type: ignore
except ImportError:  # pragma: no cover - the usual case under pytest's rootdir import
    import reference as R  # type: ignore

__all__ = [
    "networks", "DTYPES", "ACTIVATIONS", "KINKED", "SMOOTH_TRANSCENDENTAL", "LOSSES", "ARCHS", "machine_value",
    "value_token",
]

DTYPES = (
    "float16",
    "bfloat16",
    "float32",
    "float64",
    {"exponent_bits": 4, "fraction_bits": 3},
    {"exponent_bits": 5, "fraction_bits": 2},
)
ACTIVATIONS = ("relu", "leaky_relu", "hardtanh", "relu6", "hardsigmoid", "hardswish", "abs", "identity")
KINKED = tuple(a for a in ACTIVATIONS if a != "identity")
SMOOTH_TRANSCENDENTAL = ("sigmoid", "tanh")  # opt-in: activations=ACTIVATIONS + SMOOTH_TRANSCENDENTAL
LOSSES = ("sum", "dot", "mse", "l1")  # opt-in: losses=LOSSES + ("cross_entropy",)
ARCHS = ("mlp", "pool1d", "conv")

_SLOPES = (None, 0.01, 0.25, "0.1", "1/3", 0.5, 2)
_HARDTANH = (None, (-1, 1), ("-0.5", 0.5), (0, 2), (-2, "1/3"), (-0.25, 4), (-3, 3))
_KINK_DERIVS = (0, 1, 0.5, -1, "left", "right", 0.25, "0.1")
_CONVENTIONS = (None, "pytorch", "jax", "tensorflow")


# ----------------------------------------------------------------------------------------------
# values


# max-pool tie-breaks: the three named rules and J_beta (beta = 3, -1: not convex combinations of
# the tied selections; 0.75: one); every beta and 1 - beta fit the smallest custom formats drawn
TIE_BREAKS = st.sampled_from(["first", "last", "split", {"beta": 3}, {"beta": -1}, {"beta": "0.75"}]).map(lambda v: dict(v) if isinstance(v, dict) else v)


def _decimal(q: Fraction) -> str:
    """Exact decimal expansion of a dyadic rational."""
    n, d = q.numerator, q.denominator
    k = d.bit_length() - 1
    assert d == 1 << k
    digits = str(abs(n) * 5**k).rjust(k + 1, "0")
    s = digits if k == 0 else digits[:-k] + "." + digits[-k:]
    return ("-" if n < 0 else "") + s


@st.composite
def value_token(draw, v: float):
    """A token (JSON number or string) whose value is exactly the float ``v`` (sign of zero kept)."""
    if v == 0:
        if math.copysign(1.0, v) < 0:
            return draw(st.sampled_from(["-0", -0.0, "-0x0p+0", "-0.0"]))
        return draw(st.sampled_from([0, 0.0, "0", "0x0p+0"]))
    q = Fraction(v)
    kind = draw(st.sampled_from(["num", "num", "hex", "dec", "ratio"]))
    if kind == "num":
        return int(v) if q.denominator == 1 and abs(v) < 2**53 else v
    if kind == "hex":
        return float.hex(v)
    if kind == "dec":
        return _decimal(q)
    return f"{q.numerator}/{q.denominator}"


@st.composite
def machine_value(draw, fmt: R.Fmt, *, tiny: bool = False, extreme: bool = False, wide: bool = True) -> float:
    """A small value exactly representable in ``fmt`` (a float).

    ``tiny``: from {0, +-1, +-2, 1/2} (many equal values, exact arithmetic);
    ``extreme``: occasionally near the underflow or overflow threshold;
    ``wide``: often a full-precision significand (so that rounding happens in every format)."""
    if tiny:
        return draw(st.sampled_from([0.0, 1.0, -1.0, 2.0, 0.5, -2.0, 1.0, 0.0, -0.0]))
    if extreme and draw(st.integers(0, 9)) == 0:
        e = draw(st.sampled_from([fmt.emin - fmt.M, fmt.emin - 1, fmt.emin, fmt.emax - 1, fmt.emax]))
        k = draw(st.integers(1, 2**fmt.p - 1))
        v = fmt.round(Fraction(k) * Fraction(2) ** e)
        if math.isinf(v):
            v = float(fmt.max_finite)
        return -v if draw(st.booleans()) else v
    if wide and draw(st.integers(0, 2)) == 0:
        # a full-precision significand: sums and products round even in float32/float64
        k = draw(st.integers(2**fmt.M, 2**fmt.p - 1))
        v = math.ldexp(float(k), draw(st.integers(-2, 1)) - fmt.M)
        v = -v if draw(st.booleans()) else v
    else:
        kmax = min(2**fmt.p - 1, 7)
        k = draw(st.integers(-kmax, kmax))
        e = draw(st.integers(-2, 0))
        v = math.ldexp(float(k), e)
    if v == 0 and draw(st.integers(0, 4)) == 0:
        v = -0.0
    assert fmt.representable(Fraction(v))
    return v


# ----------------------------------------------------------------------------------------------
# the builder


class _B:
    def __init__(self, draw, dtype, ties, extreme, overrides):
        self.draw = draw
        self.dtype = dtype
        self.fmt = R.Fmt(dtype)
        self.ties = ties
        self.extreme = extreme
        self.overrides = overrides
        self.wide = not ties or draw(st.booleans())  # engineered ties: often short significands
        self.params: dict = {}
        self.scalars: list = []
        self.named: dict = {}  # shape -> [names of named weight tensors]

    def val(self, tiny=False):
        return self.draw(machine_value(self.fmt, tiny=tiny, extreme=self.extreme, wide=self.wide))

    def tok(self, v):
        return self.draw(value_token(v))

    def nested(self, shape, leaf):
        if not shape:
            return leaf()
        return [self.nested(shape[1:], leaf) for _ in range(shape[0])]

    def tensor_param(self, prefix, shape, trainable=None):
        name = f"{prefix}{len(self.params)}"
        spec = {"shape": list(shape), "values": self.nested(list(shape), lambda: self.tok(self.val()))}
        if trainable is None:
            trainable = self.draw(st.integers(0, 9)) > 0
        if not trainable:
            spec["trainable"] = False
        elif self.draw(st.booleans()):
            spec["trainable"] = True
        self.params[name] = spec
        return name

    def scalar(self):
        if not self.scalars or (len(self.scalars) < 3 and self.draw(st.booleans())):
            name = f"s{len(self.params)}"
            self.params[name] = {"value": self.tok(self.val())}
            if self.draw(st.integers(0, 9)) == 0:
                self.params[name]["trainable"] = False
            self.scalars.append(name)
        return self.draw(st.sampled_from(self.scalars))

    def leaf(self):
        if self.draw(st.integers(0, 9)) < 4:
            return self.tok(self.val())
        name = self.scalar()
        return ("-" + name) if self.draw(st.booleans()) else name

    def weight(self, shape, *, bias=False):
        """A weight/bias spec: a named tensor (possibly reused) or an inline list with tied scalars."""
        mode = self.draw(st.sampled_from(["named", "named", "inline"]))
        if self.ties and bias:
            mode = "named"  # engineered ties rewrite named bias values
        if mode == "named":
            prev = self.named.get(tuple(shape), [])
            if prev and not bias and self.draw(st.integers(0, 3)) == 0:
                return self.draw(st.sampled_from(prev))  # the same tensor in two layers
            name = self.tensor_param("b" if bias else "W", shape)
            if not bias:
                self.named.setdefault(tuple(shape), []).append(name)
            return name
        return self.nested(list(shape), self.leaf)

    def activation(self, activations):
        op = self.draw(st.sampled_from(activations))
        spec = {"op": op}
        if op == "leaky_relu":
            s = self.draw(st.sampled_from(_SLOPES))
            if s is not None:
                spec["negative_slope"] = s
        if op == "hardtanh":
            mm = self.draw(st.sampled_from(_HARDTANH))
            if mm is not None:
                spec["min_val"], spec["max_val"] = mm
        nk = {"identity": 0, "sigmoid": 0, "tanh": 0, "hardtanh": 2, "relu6": 2, "hardsigmoid": 2, "hardswish": 2}.get(op, 1)
        if nk and self.overrides and self.draw(st.integers(0, 4)) == 0:
            spec["kink_derivatives"] = [self.draw(st.sampled_from(_KINK_DERIVS)) for _ in range(nk)]
        return spec

    def pool_tie_break(self, spec):
        if self.overrides and self.draw(st.integers(0, 3)) == 0:
            spec["tie_break"] = self.draw(TIE_BREAKS)
        return spec


def _linear(b: _B, n_in, n_out):
    spec = {"op": "linear", "weight": b.weight((n_out, n_in))}
    if b.ties or b.draw(st.integers(0, 3)) > 0:
        spec["bias"] = b.weight((n_out,), bias=True)
    return spec


def _mlp(b: _B, activations, max_width):
    n0 = b.draw(st.integers(1, 4))
    layers, width = [], n0
    depth = b.draw(st.integers(1, 3))
    for d in range(depth):
        out = b.draw(st.integers(1, max_width if d < depth - 1 else 3))
        layers.append(_linear(b, width, out))
        width = out
        if d < depth - 1 or b.draw(st.booleans()):
            layers.append(b.activation(activations))
    return (n0,), layers


def _pool1d(b: _B, activations, max_width):
    layers = []
    if b.draw(st.booleans()):  # pool directly on [C, L] inputs
        C, Lin = b.draw(st.integers(1, 2)), b.draw(st.integers(2, 6))
        in_shape = (C, Lin)
    else:
        n0 = b.draw(st.integers(1, 3))
        Lin = b.draw(st.integers(2, max(2, max_width)))
        in_shape = (n0,)
        layers.append(_linear(b, n0, Lin))
        layers.append(b.activation(activations))
        C = 1
    k = b.draw(st.integers(2, min(3, Lin)))
    s = b.draw(st.integers(1, k))
    spec = {"op": "maxpool1d", "kernel": k}
    if s != k or b.draw(st.booleans()):
        spec["stride"] = s
    layers.append(b.pool_tie_break(spec))
    Lout = (Lin - k) // s + 1
    width = Lout
    if len(in_shape) == 2:
        layers.append({"op": "flatten"})
        width = C * Lout
    if b.draw(st.booleans()):
        layers.append(_linear(b, width, b.draw(st.integers(1, 3))))
        if b.draw(st.booleans()):
            layers.append(b.activation(activations))
    return in_shape, layers


def _conv_arch(b: _B, activations, max_width):
    C, H, W = b.draw(st.integers(1, 2)), b.draw(st.integers(2, 4)), b.draw(st.integers(2, 4))
    in_shape = (C, H, W)
    layers = []
    if b.draw(st.integers(0, 4)) == 0:  # a pool straight on the input
        op = b.draw(st.sampled_from(["maxpool2d", "avgpool2d"]))
        kh, kw = b.draw(st.integers(1, min(2, H))), b.draw(st.integers(1, min(2, W)))
        spec = {"op": op, "kernel": [kh, kw] if kh != kw or b.draw(st.booleans()) else kh}
        if op == "maxpool2d":
            b.pool_tie_break(spec)
        layers.append(spec)
        H, W = (H - kh) // kh + 1, (W - kw) // kw + 1
    O = b.draw(st.integers(1, 3))
    p = b.draw(st.integers(0, 1))
    kh = b.draw(st.integers(1, min(3, H + 2 * p)))
    kw = b.draw(st.integers(1, min(3, W + 2 * p)))
    s = b.draw(st.integers(1, 2))
    spec = {"op": "conv2d", "weight": b.weight((O, C, kh, kw))}
    if b.ties or b.draw(st.integers(0, 3)) > 0:
        spec["bias"] = b.weight((O,), bias=True)
    if s != 1 or b.draw(st.booleans()):
        spec["stride"] = s if b.draw(st.booleans()) else [s, s]
    if p != 0 or b.draw(st.booleans()):
        spec["padding"] = p
    layers.append(spec)
    H, W = (H + 2 * p - kh) // s + 1, (W + 2 * p - kw) // s + 1
    if b.draw(st.integers(0, 3)) > 0:
        layers.append(b.activation(activations))
    pool = b.draw(st.sampled_from([None, "maxpool2d", "avgpool2d", "maxpool2d"]))
    if pool:
        ph, pw = b.draw(st.integers(1, min(3, H))), b.draw(st.integers(1, min(3, W)))  # sizes 3, 6, 9 round
        sh, sw = b.draw(st.integers(1, ph)), b.draw(st.integers(1, pw))
        spec = {"op": pool, "kernel": [ph, pw], "stride": [sh, sw]}
        if pool == "maxpool2d":
            b.pool_tie_break(spec)
        layers.append(spec)
        H, W = (H - ph) // sh + 1, (W - pw) // sw + 1
    layers.append({"op": "flatten"})
    if O * H * W > 8 or b.draw(st.booleans()):
        layers.append(_linear(b, O * H * W, b.draw(st.integers(1, 3))))
    return in_shape, layers


# ----------------------------------------------------------------------------------------------
# the strategy


def _out_shape(doc):
    if not doc["layers"]:
        return tuple(doc["inputs"]["shape"][1:])
    return R.parse({**doc, "loss": {"op": "sum"}}).layers[-1].out_shape


@st.composite
def networks(
    draw,
    *,
    dtypes=DTYPES,
    archs=ARCHS,
    activations=ACTIVATIONS,
    losses=LOSSES,
    max_batch: int = 3,
    max_width: int = 6,
    ties: bool | None = None,
    overrides: bool = True,
    conventions: bool = True,
    extreme: bool = True,
):
    """A random small network document (a dict in the network-file format, version 1).

    Parameters
    ----------
    dtypes: dtype specs to draw from (names or ``{"exponent_bits": E, "fraction_bits": M}``).
    archs: any of ``"mlp"`` (1-3 linear layers with activations), ``"pool1d"`` (maxpool1d with
        kernel 2-3 and stride <= kernel, on [C, L] inputs or after linear + activation) and
        ``"conv"`` (conv2d with padding/stride, activation, maxpool2d/avgpool2d, flatten, linear).
    activations: elementwise ops to draw from (default ACTIVATIONS, all piecewise
        linear/quadratic; add SMOOTH_TRANSCENDENTAL for sigmoid and tanh).
    losses: loss ops to draw from (default ``sum``, ``dot``, ``mse``, ``l1``, mean or sum
        reduction; ``cross_entropy`` with class-index targets on request).
    max_batch: batch size 1..max_batch. max_width: widest hidden linear layer.
    ties: True engineers ties on purpose (biases placing units exactly on kinks, equal pool
        entries, l1 targets equal to the outputs, duplicated samples, inputs from a tiny set);
        False never does; None (default) draws either.
    overrides: allow per-layer ``kink_derivatives`` / ``tie_break`` and l1 ``kink_derivatives``.
    conventions: allow a top-level ``"convention"`` (a name or a custom object).
    extreme: allow occasional values near the underflow / overflow thresholds (machine
        results may then be infinite; NaN is possible and callers may need to reject it).
    """
    dtype = draw(st.sampled_from(list(dtypes)))
    if ties is None:
        ties = draw(st.booleans())
    b = _B(draw, dtype, ties, extreme and not ties and draw(st.integers(0, 4)) == 0, overrides)
    arch = draw(st.sampled_from(list(archs)))
    in_shape, layers = {"mlp": _mlp, "pool1d": _pool1d, "conv": _conv_arch}[arch](b, activations, max_width)
    if not b.params:
        # kinkcheck cannot yet evaluate a network without parameters (see test_semantics.py,
        # test_no_params); an unused parameter also checks "a parameter with no term gets +0"
        b.params["unused"] = {"value": b.tok(b.val())}
    N = draw(st.integers(1, max_batch))
    tiny = ties and draw(st.booleans())
    inputs = {"shape": [N, *in_shape], "values": b.nested([N, *in_shape], lambda: b.tok(b.val(tiny=tiny)))}
    doc = {"kinkcheck": 1, "dtype": dtype, "params": b.params, "inputs": inputs, "layers": layers}
    loss_op = draw(st.sampled_from(list(losses)))
    loss = {"op": loss_op}
    if loss_op in ("mse", "l1", "cross_entropy"):
        red = draw(st.sampled_from([None, "mean", "sum"]))
        if red:
            loss["reduction"] = red
    if loss_op == "l1" and overrides and draw(st.integers(0, 3)) == 0:
        loss["kink_derivatives"] = [draw(st.sampled_from(_KINK_DERIVS))]
    doc["loss"] = loss
    if loss_op == "cross_entropy":
        (C,) = _out_shape(doc)  # every architecture here ends in a vector
        doc["targets"] = {"shape": [N], "values": [draw(st.integers(0, C - 1)) for _ in range(N)]}
    if loss_op in ("dot", "mse", "l1"):
        out = list(_out_shape(doc))
        doc["targets"] = {"shape": [N, *out], "values": b.nested([N, *out], lambda: b.tok(b.val(tiny=tiny)))}
    if conventions and draw(st.integers(0, 2)) == 0:
        conv = draw(st.sampled_from(_CONVENTIONS + ("custom",)))
        if conv == "custom":
            ops = {}
            for op in draw(st.lists(st.sampled_from(KINKED + ("l1", "maxpool1d", "maxpool2d")), max_size=3, unique=True)):
                if op.startswith("maxpool"):
                    ops[op] = draw(TIE_BREAKS)
                else:
                    nk = {"hardtanh": 2, "relu6": 2, "hardsigmoid": 2, "hardswish": 2}.get(op, 1)
                    ops[op] = [draw(st.sampled_from(_KINK_DERIVS)) for _ in range(nk)]
            conv = ops
            if draw(st.booleans()):  # the file schema, on top of a named base
                conv = {"convention": "mine", "base": draw(st.sampled_from(["pytorch", "jax", "tensorflow"])),
                        "ops": {op: ({"tie_break": v} if isinstance(v, (str, dict)) else {"kink_derivatives": v}) for op, v in ops.items()}}
        if conv is not None:
            doc["convention"] = conv
    if ties:
        _engineer_ties(draw, doc, b)
    return doc


def _set_value(doc, name, flat_index, v, b: _B):
    spec = doc["params"][name]
    shape = spec["shape"]
    node = spec["values"]
    idx = []
    r = flat_index
    for d in reversed(shape):
        idx.append(r % d)
        r //= d
    idx.reverse()
    for i in idx[:-1]:
        node = node[i]
    node[idx[-1]] = b.tok(v)


def _engineer_ties(draw, doc, b: _B):
    """Rewrite the document so that units sit exactly on kinks (see :func:`networks`)."""
    fmt = b.fmt
    inp = doc["inputs"]
    N = inp["shape"][0]
    if N >= 2 and draw(st.booleans()):
        inp["values"][1] = inp["values"][0]  # a duplicated sample (same list object is fine)
    n_layers = len(doc["layers"])
    for i, spec in enumerate(doc["layers"]):
        if spec["op"] not in ("linear", "conv2d") or not isinstance(spec.get("bias"), str):
            continue
        nxt = doc["layers"][i + 1]["op"] if i + 1 < n_layers else None
        nxt2 = doc["layers"][i + 2]["op"] if i + 2 < n_layers else None
        for _ in range(draw(st.integers(1, 3))):
            try:
                ex = R.ref_exact(doc)
                net = R.parse(doc)
            except (R.Unsupported, ZeroDivisionError):
                return
            pre = ex.xs[i + 1]
            L = net.layers[i]
            n = draw(st.integers(0, N - 1))
            units = len(pre[n])
            per_bias = units // len(net.layers[i].bias)  # conv: output positions per channel
            act = net.layers[i + 1].act if nxt and net.layers[i + 1].act is not None else None
            pool_next = nxt in ("maxpool1d", "maxpool2d") or (act is not None and nxt2 in ("maxpool1d", "maxpool2d"))
            if pool_next and draw(st.booleans()):
                # two entries of one pool window equal: shift unit u2's bias by z[u1] - z[u2]
                pl = net.layers[i + 1] if nxt in ("maxpool1d", "maxpool2d") else net.layers[i + 2]
                win = draw(st.sampled_from(pl.windows))
                u1, u2 = draw(st.sampled_from(win)), draw(st.sampled_from(win))
                o = u2 // per_bias
                delta = pre[n][u1] - pre[n][u2]
            elif act is not None and act.kinks:
                u = draw(st.integers(0, units - 1))
                o = u // per_bias
                delta = draw(st.sampled_from(act.kinks)) - pre[n][u]
            else:
                continue
            e = L.bias[o]
            if e[0] != "p":
                continue
            new = Fraction(net.theta[e[1]]) + delta
            if fmt.representable(new) and abs(new) <= 64:
                _set_value(doc, doc["layers"][i]["bias"], o, float(new), b)
    if doc["loss"]["op"] in ("l1", "mse"):
        try:
            ex = R.ref_exact(doc)
            ma = R.ref_machine(doc)
        except (R.Unsupported, R.RefNaN):
            return
        tv = doc["targets"]["values"]
        for n in range(N):
            for u in range(len(ex.xs[-1][n])):
                if draw(st.integers(0, 2)) == 0:
                    continue
                q = ex.xs[-1][n][u]
                v = float(q) if fmt.representable(q) else ma.xs[-1][n][u]
                if not math.isfinite(v):
                    continue
                _set_flat(tv, _out_shape(doc), n, u, b.tok(v))


def _set_flat(values, out_shape, n, u, tok):
    node = values[n]
    idx = []
    r = u
    for d in reversed(out_shape):
        idx.append(r % d)
        r //= d
    idx.reverse()
    for i in idx[:-1]:
        node = node[i]
    node[idx[-1]] = tok
