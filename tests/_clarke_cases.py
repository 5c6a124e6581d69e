"""Random MLPs with engineered ties for the Clarke acceptance test (tests/test_acceptance_clarke.py).

:func:`clarke_cases` draws a network document (a dict in the network-file format) and the set of
engineering steps that took effect: 1-3 hidden layers (linear, then relu, leaky_relu, hardtanh,
relu6, abs, hardsigmoid, hardswish or maxpool1d), a linear output layer, the losses sum, dot,
mse, l1, the dtypes float16, bfloat16, float32, float64 and the 8-bit format E4M3
(``{"exponent_bits": 4, "fraction_bits": 3}``). Values are small dyadic numbers (exact in every
dtype) except where a float-only tie needs rounding.

Engineered categories (each drawn independently; ``meta["categories"]`` lists what took effect):

* ``real``: a bias set to (kink - the exact pre-activation without it), so a unit sits exactly on
  a kink; in a max-pool layer, two entries of one window made equal;
* ``two_layer``: real ties engineered in two or more hidden layers;
* ``float_only``: a row of wide-significand weights (and inputs) so that the machine dot product
  rounds, then the bias (kink - the *machine* sum): a float tie that is no real tie;
* ``masked``: a tied unit whose outgoing weights in the next layer are all zero (trainable zeros
  or constants);
* ``mirror``: two units z and -z of a hidden layer (inline weights naming the same scalar params,
  negated), tied at 0;
* ``l1``: l1 targets equal to the exact outputs;
* ``few_params``: at most 3 trainable scalars (inline weights, every other parameter frozen), where
  the reference's sampling is dense.
"""

from __future__ import annotations

import math
from fractions import Fraction

from hypothesis import strategies as st

import reference as R

__all__ = ["clarke_cases", "DTYPES", "ACTIVATIONS", "LOSSES"]

DTYPES = ("float16", "bfloat16", "float32", "float64", {"exponent_bits": 4, "fraction_bits": 3})
ACTIVATIONS = ("relu", "leaky_relu", "hardtanh", "relu6", "abs", "hardsigmoid", "hardswish", "maxpool1d")
LOSSES = ("sum", "dot", "mse", "l1")
SMALL = (-2, -1.5, -1, -0.5, -0.25, 0, 0.25, 0.5, 1, 1.5, 2)


class _Net:
    """The document under construction, with handles on every bias entry and weight column."""

    def __init__(self, draw, dtype):
        self.draw = draw
        self.dtype = dtype
        self.fmt = R.Fmt(dtype)
        self.params: dict = {}
        self.layers: list = []
        self.bias_ref: dict = {}  # (layer, unit) -> ("t", name, index) | ("s", name, sign) | ("c", layer, unit)
        self.weight_ref: dict = {}  # layer -> (mode, name) for column masking

    def small(self):
        return self.draw(st.sampled_from(SMALL))

    def wide(self):
        """A value with a full significand in [1, 2) (products and sums of such values round)."""
        M = self.fmt.M
        k = self.draw(st.integers(2**M + 1, 2**(M + 1) - 1))
        v = math.ldexp(float(k), -M)
        return -v if self.draw(st.booleans()) else v

    def new_param(self, prefix, value, *, shape=None, trainable=True):
        name = f"{prefix}{len(self.params)}"
        spec = {"value": value} if shape is None else {"shape": list(shape), "values": value}
        if not trainable:
            spec["trainable"] = False
        self.params[name] = spec
        return name

    few = False  # at most 3 trainable scalars: inline layers only, frozen at the end

    def linear(self, n_in, n_out, *, mirror=False):
        li = len(self.layers)
        mode = "inline" if mirror or self.few else self.draw(st.sampled_from(["named", "named", "inline"]))
        if mode == "named":
            W = [[self.small() for _ in range(n_in)] for _ in range(n_out)]
            wname = self.new_param("W", W, shape=(n_out, n_in), trainable=self.draw(st.integers(0, 7)) > 0)
            b = [self.small() for _ in range(n_out)]
            bname = self.new_param("b", b, shape=(n_out,))
            for u in range(n_out):
                self.bias_ref[(li, u)] = ("t", bname, u)
            self.weight_ref[li] = ("named", wname)
            self.layers.append({"op": "linear", "weight": wname, "bias": bname})
            return
        rows, bias = [], []
        u = 0
        while u < n_out:
            if mirror and u + 1 < n_out and (u == 0 or self.draw(st.booleans())):
                row = [self.leaf() for _ in range(n_in)]
                bn = self.new_param("c", self.small())
                rows += [row, [_negate(x) for x in row]]
                bias += [bn, "-" + bn]
                self.bias_ref[(li, u)] = ("s", bn, 1)
                self.bias_ref[(li, u + 1)] = ("s", bn, -1)
                u += 2
                continue
            rows.append([self.leaf() for _ in range(n_in)])
            bn = self.new_param("c", self.small())
            bias.append(bn)
            self.bias_ref[(li, u)] = ("s", bn, 1)
            u += 1
        self.weight_ref[li] = ("inline", None)
        self.layers.append({"op": "linear", "weight": rows, "bias": bias})

    def leaf(self):
        if self.draw(st.integers(0, 2)) == 0:
            return self.small()
        name = self.new_param("a", self.small(), trainable=self.draw(st.integers(0, 9)) > 0)
        return ("-" + name) if self.draw(st.booleans()) else name

    def doc(self, inputs, loss, targets=None):
        d = {"kinkcheck": 1, "dtype": self.dtype, "params": self.params, "inputs": inputs,
             "layers": self.layers, "loss": loss}
        if targets is not None:
            d["targets"] = targets
        return d

    # -- reading and writing values
    def get_bias(self, li, u) -> Fraction:
        kind, a, b = self.bias_ref[(li, u)]
        if kind == "t":
            return Fraction(self.params[a]["values"][b])
        return Fraction(self.params[a]["value"]) * b

    def set_bias(self, li, u, v: Fraction) -> bool:
        if not (self.fmt.representable(v) and abs(v) <= 64):
            return False
        kind, a, b = self.bias_ref[(li, u)]
        if kind == "t":
            self.params[a]["values"][b] = _num(v)
        else:
            self.params[a]["value"] = _num(v * b)
        return True

    def mask_column(self, li, u):
        """Zero every weight of linear layer ``li`` reading input ``u``."""
        spec = self.layers[li]
        mode, name = self.weight_ref[li]
        if mode == "named":
            for row in self.params[name]["values"]:
                row[u] = 0
        else:
            for row in spec["weight"]:
                row[u] = 0


def _negate(x):
    if isinstance(x, str):
        return x[1:] if x.startswith("-") else "-" + x
    return -x if x != 0 else 0


def _num(v: Fraction):
    return int(v) if v.denominator == 1 else float(v)


def _kinks(spec, fmt) -> list:
    op = spec["op"]
    if op in ("relu", "leaky_relu", "abs"):
        return [Fraction(0)]
    if op == "relu6":
        return [Fraction(0), Fraction(6)]
    if op in ("hardsigmoid", "hardswish"):
        return [Fraction(-3), Fraction(3)]
    if op == "hardtanh":
        return [fmt.round_const(Fraction(spec.get("min_val", -1))), fmt.round_const(Fraction(spec.get("max_val", 1)))]
    return []


@st.composite
def clarke_cases(draw, *, dtypes=DTYPES, activations=ACTIVATIONS, losses=LOSSES, max_hidden=3, max_width=4):
    """(document, meta): meta = {"categories": sorted engineered categories that took effect,
    "activations": [...], "dtype": name}."""
    dtype = draw(st.sampled_from(list(dtypes)))
    b = _Net(draw, dtype)
    cats = set()
    b.few = draw(st.integers(0, 3)) == 0
    want = {c for c in ("real", "float_only", "masked", "mirror", "l1") if draw(st.integers(0, 2)) > 0}
    n0 = draw(st.integers(1, 3))
    depth = draw(st.integers(1, max_hidden))
    width = n0
    hidden = []  # (linear layer index, activation layer index, spec)
    acts = []
    for _ in range(depth):
        op = draw(st.sampled_from(list(activations)))
        out = draw(st.integers(2 if op == "maxpool1d" else 1, max_width))
        mirror = "mirror" in want and out >= 2 and op != "maxpool1d" and draw(st.booleans())
        b.linear(width, out, mirror=mirror)
        li = len(b.layers) - 1
        if op == "maxpool1d":
            k = 2
            s = draw(st.integers(1, 2))
            spec = {"op": "maxpool1d", "kernel": k}
            if s != k:
                spec["stride"] = s
            width = (out - k) // s + 1
        else:
            spec = {"op": op}
            if op == "leaky_relu" and draw(st.booleans()):
                spec["negative_slope"] = draw(st.sampled_from([0.25, 0.5, "1/8"]))
            if op == "hardtanh" and draw(st.booleans()):
                spec["min_val"], spec["max_val"] = draw(st.sampled_from([(-2, 2), (0, 1), (-0.5, 0.5)]))
            width = out
        b.layers.append(spec)
        hidden.append((li, li + 1, spec, mirror))
        acts.append(op)
    b.linear(width, draw(st.integers(1, 2)))
    N = draw(st.integers(1, 3))
    xin = [[b.small() for _ in range(n0)] for _ in range(N)]
    if N >= 2 and draw(st.integers(0, 2)) == 0:
        xin[-1] = list(xin[0])  # a duplicated sample: every tie of sample 0 twice
    inputs = {"shape": [N, n0], "values": xin}
    loss_op = draw(st.sampled_from(list(losses)))
    loss = {"op": loss_op}
    if loss_op in ("mse", "l1") and draw(st.booleans()):
        loss["reduction"] = draw(st.sampled_from(["mean", "sum"]))
    out_w = len(b.layers[-1]["weight"]) if isinstance(b.layers[-1]["weight"], list) else b.params[b.layers[-1]["weight"]]["shape"][0]
    targets = None
    if loss_op != "sum":
        targets = {"shape": [N, out_w], "values": [[b.small() for _ in range(out_w)] for _ in range(N)]}
    if draw(st.integers(0, 5)) == 0:
        loss_conv = draw(st.sampled_from(["jax", "tensorflow", {"relu": [1]}, {"maxpool1d": "last"}]))
    else:
        loss_conv = None

    def doc():
        d = b.doc(inputs, loss, targets)
        if loss_conv is not None:
            d["convention"] = loss_conv
        return d

    def exact():
        return R.ref_exact(doc())

    # float-only ties: wide weights in one row of a hidden layer (and wide inputs for layer 0)
    if "float_only" in want:
        li, ai, spec, mirror = draw(st.sampled_from(hidden))
        ks = _kinks(spec, b.fmt)
        if ks and not mirror:
            u = draw(st.integers(0, _width(b, li) - 1))
            _widen_row(b, li, u)
            if li == 0:
                n = draw(st.integers(0, N - 1))
                xin[n] = [b.wide() for _ in range(n0)]
            old = b.get_bias(li, u)
            b.set_bias(li, u, Fraction(0))
            d = doc()
            e, m = R.ref_exact(d), R.ref_machine(d)
            n = draw(st.integers(0, N - 1))
            acc_e, acc_m = e.xs[ai][n][u], m.xs[ai][n][u]
            k = draw(st.sampled_from(ks))
            if math.isfinite(acc_m) and acc_e != Fraction(acc_m) and b.set_bias(li, u, k - Fraction(acc_m)):
                cats.add("float_only")
            else:
                b.set_bias(li, u, old)
    # real ties, layer by layer
    tied_layers = set()
    if "real" in want or "mirror" in want or "masked" in want:
        for li, ai, spec, mirror in hidden:
            if "real" not in want and not mirror and draw(st.booleans()):
                continue
            for _ in range(draw(st.integers(1, 3))):
                e = exact()
                n = draw(st.integers(0, N - 1))
                z = e.xs[ai][n]
                if spec["op"] == "maxpool1d":
                    s = spec.get("stride", 2)
                    w = draw(st.integers(0, (len(z) - 2) // s))
                    u1, u2 = w * s, w * s + 1
                    if draw(st.booleans()):
                        u1, u2 = u2, u1
                    if b.set_bias(li, u2, b.get_bias(li, u2) + z[u1] - z[u2]):
                        tied_layers.add(li)
                    continue
                ks = _kinks(spec, b.fmt)
                u = draw(st.integers(0, len(z) - 1))
                k = Fraction(0) if mirror and 0 in ks else draw(st.sampled_from(ks))
                if b.set_bias(li, u, b.get_bias(li, u) + k - z[u]):
                    tied_layers.add(li)
                    if mirror and b.bias_ref[(li, u)][0] == "s":
                        cats.add("mirror")
        if tied_layers:
            cats.add("real")
        if len(tied_layers) >= 2:
            cats.add("two_layer")
    # masked ties: a tied unit's outgoing weights are zero
    if "masked" in want:
        e = exact()
        tied = sorted({(k[0], k[2]) for k in e.ties if k[0] < len(b.layers)})
        cand = [(ai, u) for ai, u in tied if b.layers[ai]["op"] != "maxpool1d"]
        if cand:
            ai, u = draw(st.sampled_from(cand))
            b.mask_column(ai + 1, u)
            cats.add("masked")
    # l1 ties: targets equal to the exact outputs
    if loss_op == "l1" and "l1" in want:
        e = exact()
        for n in range(N):
            for u in range(out_w):
                q = e.xs[-1][n][u]
                if draw(st.booleans()) and b.fmt.representable(q) and abs(q) <= 2**10:
                    targets["values"][n][u] = _num(q)
                    cats.add("l1")
    if b.few:  # keep 1-3 scalars trainable (dense sampling in the reference)
        names = sorted(b.params)
        keep = set(draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True)))
        for nm in names:
            if nm not in keep:
                b.params[nm]["trainable"] = False
            else:
                b.params[nm].pop("trainable", None)
        cats.add("few_params")
    d = doc()
    return d, {"categories": sorted(cats), "activations": acts, "dtype": dtype if isinstance(dtype, str) else "E4M3"}


def _width(b: _Net, li):
    w = b.layers[li]["weight"]
    return len(w) if isinstance(w, list) else b.params[w]["shape"][0]


def _widen_row(b: _Net, li, u):
    spec = b.layers[li]
    mode, name = b.weight_ref[li]
    if mode == "named":
        row = b.params[name]["values"][u]
        for j in range(len(row)):
            row[j] = b.wide()
    else:
        row = spec["weight"][u]
        for j in range(len(row)):
            x = row[j]
            if isinstance(x, str):
                nm = x.lstrip("-")
                b.params[nm]["value"] = b.wide()
            else:
                row[j] = b.wide()
