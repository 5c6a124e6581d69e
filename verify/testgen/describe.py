"""A network as plain data for the replay engine and the torch builder.

``describe_network(net)`` turns a loaded :class:`~kinkcheck.encodings.network.Network` into the
JSON-like dict the generated torch test file carries as ``NET``: params and inputs as hex floats,
weights as entries (``["p", offset, sign]`` or ``["c", hex]``), conv and pool layers as index
windows, activations as traced piece programs with their kinks, proxies and one-sided derivatives,
and whether torch's own backward uses those proxies (the pytorch convention).
"""

from fractions import Fraction

import numpy as np


def _tracer():
    """An arithmetic that records a piece program as a tree (constants: exact and format value)."""

    class T:
        fmt = None

        @staticmethod
        def const(q):
            q = Fraction(int(q.numerator), int(q.denominator)) if not isinstance(q, float) else Fraction(q)
            return ["c", str(q), T.fmt.to_hex(T.fmt.round_rational(_mpq(q)))]

        add = staticmethod(lambda a, b: ["add", a, b])
        sub = staticmethod(lambda a, b: ["sub", a, b])
        mul = staticmethod(lambda a, b: ["mul", a, b])
        div = staticmethod(lambda a, b: ["div", a, b])
        neg = staticmethod(lambda a: ["neg", a])

    return T


def _mpq(q):
    from gmpy2 import mpq

    return mpq(q.numerator, q.denominator)


def _qh(fmt, q) -> list:
    """[exact rational string, hex of its rounding into the format]."""
    q = Fraction(int(q.numerator), int(q.denominator)) if not isinstance(q, (float, int)) else Fraction(q)
    return [str(q), fmt.to_hex(fmt.round_rational(_mpq(q)))]


def _act_spec(fmt, act, proxies, builtin):
    T = _tracer()
    T.fmt = fmt
    pieces = []
    for pc in act.pieces:
        v = pc.value_program(["x"], T)
        d = pc.derivative_program(["x"], None, T)
        pieces.append({"value": v, "deriv": d})
    spec = {
        "op": act.name,
        "kinks": [fmt.to_hex(float(k.at)) for k in act.kinks],
        "pieces": pieces,
        "proxies": [_qh(fmt, Fraction(v)) for v in proxies],
        "left": [_qh(fmt, k.left) for k in act.kinks],
        "right": [_qh(fmt, k.right) for k in act.kinks],
        "builtin": builtin,
    }
    for name in ("negative_slope", "min_val", "max_val"):
        if name in act.params:
            spec[name] = fmt.to_hex(fmt.round_rational(act.params[name]))
    if act.name == "relu6":
        spec["min_val"], spec["max_val"] = "0x0p+0", "0x1.8p+2"
    return spec


def _torch_builtin(net, act, proxies) -> bool:
    """Whether torch's own backward (the pytorch convention, torch 2.13) uses these proxies."""
    from ..encodings.conventions import load_convention, resolve_kink_derivatives

    entries = load_convention("pytorch").kink_entries(act.name) or ()
    if len(entries) != len(act.kinks):
        return not act.kinks
    return tuple(resolve_kink_derivatives(entries, act, net.fmt, act.name)) == tuple(proxies)


def _ref(fmt, names, ref, shape):
    """Entries of a weight/bias and, when it is exactly one named param in order, that name."""
    entries = []
    for k in range(int(np.prod(shape))):
        s = int(ref.src[k])
        entries.append(["p", s, int(ref.sign[k])] if s >= 0 else ["c", fmt.to_hex(float(ref.const[k]))])
    direct = None
    srcs = [int(v) for v in ref.src.reshape(-1)]
    if srcs and srcs[0] in names and all(e[0] == "p" and e[2] > 0 for e in entries):
        p = names[srcs[0]]
        if p.size == len(srcs) and srcs == list(range(p.offset, p.offset + p.size)):
            direct = p.name
    return entries, direct


def describe_network(net) -> dict:
    """The network as plain data for the replay engine and the torch builder."""
    from kinkcheck.encodings import program as P

    fmt = net.fmt
    proxies = P.resolve_proxies(net)
    names = {p.offset: p for p in net.params}
    layers = []
    for L in net.layers:
        spec = {"op": L.op, "in_size": int(np.prod(L.in_shape)) if L.in_shape else 1, "in_shape": list(L.in_shape), "out_shape": list(L.out_shape)}
        if L.op == "linear":
            o, i = L.weight.shape
            spec.update(out=int(o), **{"in": int(i)})
            spec["weight"], spec["weight_param"] = _ref(fmt, names, L.weight, L.weight.shape)
        elif L.op == "conv2d":
            o, c, kh, kw = L.weight.shape
            cols, interior, npad = P.conv_index(L)
            inv = np.full(npad, -1, dtype=np.int64)
            inv[interior] = np.arange(interior.size)
            spec.update(out=int(o), ckk=int(c * kh * kw), cols=inv[cols].tolist(), kernel=[int(kh), int(kw)], stride=list(L.stride), padding=list(L.padding))
            spec["weight"], spec["weight_param"] = _ref(fmt, names, L.weight, L.weight.shape)
        elif L.op in ("maxpool1d", "maxpool2d", "avgpool2d"):
            idx = P.pool_index(L)
            spec.update(windows=idx.tolist(), kernel=list(L.kernel), stride=list(L.stride))
            if L.op == "avgpool2d":
                spec["k"] = _qh(fmt, Fraction(idx.shape[1]))
            else:
                rule = proxies.ties[L.index]
                if isinstance(rule, str):
                    spec["rule"] = rule
                else:  # J_beta: beta and 1 - beta, each [exact, hex of its rounding]
                    spec.update(rule="beta", beta=[_qh(fmt, rule.q), _qh(fmt, 1 - rule.q)])
        elif L.act is not None:
            spec.update(_act_spec(fmt, L.act, proxies.kinks[L.index], _torch_builtin(net, L.act, proxies.kinks[L.index])))
        if L.op in ("linear", "conv2d"):
            if L.bias is not None:
                spec["bias"], spec["bias_param"] = _ref(fmt, names, L.bias, L.bias.shape)
            else:
                spec["bias"], spec["bias_param"] = None, None
        layers.append(spec)
    count = int(net.batch * int(np.prod(net.out_shape)) if net.out_shape else net.batch)
    lo = {"op": net.loss.op, "reduction": net.loss.reduction, "count": _qh(fmt, Fraction(count)), "one": _qh(fmt, Fraction(1))}
    if net.loss.op == "mse":
        lo["c2"] = _qh(fmt, Fraction(2, count) if net.loss.reduction == "mean" else Fraction(2))
    if net.loss.op == "l1":
        lo["inv"] = _qh(fmt, Fraction(1, count))
        lo["abs"] = _act_spec(fmt, P._abs(), proxies.kinks["loss"], tuple(proxies.kinks["loss"]) == (0.0,))
    hexes = lambda a: [fmt.to_hex(float(v)) for v in np.asarray(a, dtype=np.float64).reshape(-1)]
    return {
        "dtype": fmt.name,
        "params": [{"name": p.name, "shape": list(p.shape), "offset": p.offset, "size": p.size, "trainable": p.trainable} for p in net.params],
        "theta": hexes(net.theta),
        "grad_index": [int(v) for v in net.trainable_index],
        "in_shape": list(net.inputs.shape[1:]),
        "inputs": [hexes(row) for row in net.inputs.reshape(net.batch, -1)],
        "targets": [hexes(row) for row in net.targets.reshape(net.batch, -1)] if net.targets is not None else None,
        "out_shape": list(net.out_shape),
        "layers": layers,
        "loss": lo,
    }
