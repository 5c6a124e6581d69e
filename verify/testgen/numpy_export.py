"""The numpy exporter: a counterexample as a pytest file of numpy scalar arithmetic.

``kinkcheck export-test CEX.json --framework numpy -o tests/test_cex_NAME.py``: the generated file
(``templates/test_cex_numpy.py`` filled) rebuilds the network from exact bit patterns (hex floats),
runs the forward and backward pass with numpy scalar-by-scalar arithmetic in the documented
evaluation order (docs/semantics.md), and asserts what the counterexample shows: which units tie
in the float run, the float AD output bit for bit, and - when they differ - that it is not the
exact AD output (given as exact rationals). Supported: float16 / float32 / float64 networks of
``linear`` layers and the piecewise-linear activations relu, leaky_relu, hardtanh, relu6, abs,
identity, with the ``sum``, ``dot`` and ``mse`` losses (``sum`` reduction or ``mean``).
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

from ..encodings.errors import InputError
from .render import render, ruff_format

SUPPORTED_OPS = {"linear", "relu", "leaky_relu", "hardtanh", "relu6", "abs", "identity"}


def export_numpy(cex) -> str:
    """The numpy pytest file for a counterexample (a network file path or document)."""
    from kinkcheck.encodings import program as P

    from ..api import load, verify

    net = load(cex)
    if net.fmt.name not in ("float16", "float32", "float64"):
        raise InputError(f"the numpy exporter needs float16, float32 or float64 (got {net.fmt.name})")
    ops = {L.op for L in net.layers}
    if not ops <= SUPPORTED_OPS or net.loss.op not in ("sum", "dot", "mse") or any(p.shape != () for p in net.params):
        raise InputError("the numpy exporter supports scalar params, linear layers, piecewise-linear activations and the sum/dot/mse losses")
    report = verify(net, values=True)
    proxies = P.resolve_proxies(net)
    names = {p.offset: p.name for p in net.params}
    fmt = net.fmt

    def entry(ref, k):
        s = int(ref.src[k])
        if s >= 0:
            return ["p", names[s], int(ref.sign[k])]
        return ["c", fmt.to_hex(ref.const[k])]

    layers = []
    for L in net.layers:
        if L.op == "linear":
            out_n, in_n = L.weight.shape
            spec = {"op": "linear", "weight": [[entry(L.weight, i * in_n + j) for j in range(in_n)] for i in range(out_n)]}
            if L.bias is not None:
                spec["bias"] = [entry(L.bias, i) for i in range(out_n)]
        else:
            spec = {"op": L.op, "kinks": [fmt.to_hex(float(k.at)) for k in L.act.kinks], "proxies": [fmt.to_hex(v) for v in proxies.kinks[L.index]]}
            if L.op == "leaky_relu":
                spec["negative_slope"] = fmt.to_hex(float(L.act.params["negative_slope"]))
            if L.op in ("hardtanh", "relu6"):
                lo, hi = (L.act.kinks[0].at, L.act.kinks[1].at)
                spec["min_val"], spec["max_val"] = fmt.to_hex(float(lo)), fmt.to_hex(float(hi))
        layers.append(spec)
    params = {p.name: fmt.to_hex(net.theta[p.offset]) for p in net.params}
    grad_order = [p.name for p in net.params if p.trainable]
    float_ties = sorted([t["layer"], t["sample"], t["unit"]] for t in report.float_ties if t["op"] != "l1")
    same = [Fraction(float.fromhex(h)) for h in report.machine_ad] == [Fraction(s) for s in report.ad] if report.ad else None
    if same is None:
        raise InputError("the exact AD output is not available for this network")
    data = {
        "DT": f"np.{net.fmt.name}",
        "LAYERS": json.dumps(layers),
        "PARAMS": json.dumps(params),
        "INPUTS": json.dumps([[fmt.to_hex(v) for v in row] for row in net.inputs.reshape(net.batch, -1)]),
        "TARGETS": json.dumps([[fmt.to_hex(v) for v in row] for row in net.targets.reshape(net.batch, -1)]) if net.targets is not None else "None",
        "LOSS": json.dumps({"op": net.loss.op, "reduction": net.loss.reduction}),
        "GRAD_ORDER": json.dumps(grad_order),
        "FLOAT_TIES": json.dumps(float_ties),
        "MACHINE_AD": json.dumps(report.machine_ad),
        "EXACT_AD": json.dumps(report.ad),
    }
    fields = {"SOURCE": Path(str(net.source)).name, "DTYPE": net.fmt.name, "SAME": str(same)}
    return ruff_format(render("test_cex_numpy.py", data=data, fields=fields))
