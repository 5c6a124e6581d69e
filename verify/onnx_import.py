"""ONNX import: a chain graph of Gemm / MatMul+Add, Conv, MaxPool, AveragePool, Flatten/Reshape,
Relu, LeakyRelu, Clip, HardSigmoid, HardSwish, Abs, Sigmoid, Tanh, Identity to a network document.
Initializers keep their exact values (float16/float32/float64/bfloat16). Anything else: an error
naming the node."""

from __future__ import annotations

import numpy as np

from .encodings.errors import InputError

DT = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16"}


def _onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise InputError("ONNX import needs the onnx package: pip install 'kinkcheck[onnx]'") from None
    return onnx, numpy_helper


def from_onnx(path: str, inputs: np.ndarray, targets=None, loss: str = "sum") -> dict:
    onnx, nh = _onnx()
    try:
        model = onnx.load(path)
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises several types for unreadable/invalid files
        raise InputError(f"{path}: not a valid ONNX model: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    g = model.graph
    init = {t.name: t for t in g.initializer}
    consts = {}
    for n in g.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = nh.to_array(n.attribute[0].t)
    params, layers = {}, []
    dtype = None
    cur = g.input[0].name

    def param(name):
        nonlocal dtype
        t = init[name]
        d = DT.get(t.data_type)
        if d is None:
            raise InputError(f"{path}: initializer {name}: unsupported data type {t.data_type}")
        if dtype not in (None, d):
            raise InputError(f"{path}: mixed initializer types ({dtype}, {d})")
        dtype = d
        return nh.to_array(t).astype(np.float64)

    def value(name):
        if name in init:
            return param(name)
        if name in consts:
            return consts[name].astype(np.float64)
        return None

    nodes = [n for n in g.node if n.op_type != "Constant"]
    i = 0
    while i < len(nodes):
        n = nodes[i]
        where = f"{path}: node {n.name or i} ({n.op_type})"
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        if n.input and n.input[0] != cur:
            raise InputError(f"{where}: only chain graphs are supported (input {n.input[0]!r}, expected {cur!r})")
        op = n.op_type
        spec = None
        if op == "Gemm":
            if attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0 or attrs.get("transA", 0):
                raise InputError(f"{where}: only alpha = beta = 1, transA = 0")
            W = param(n.input[1])
            W = W if attrs.get("transB", 0) else W.T
            wname = n.input[1]
            params[wname] = {"shape": list(W.shape), "values": W.tolist()}
            spec = {"op": "linear", "weight": wname}
            if len(n.input) > 2 and n.input[2]:
                b = param(n.input[2])
                params[n.input[2]] = {"shape": list(b.shape), "values": b.tolist()}
                spec["bias"] = n.input[2]
        elif op == "MatMul":
            W = param(n.input[1]).T
            params[n.input[1]] = {"shape": list(W.shape), "values": W.tolist()}
            spec = {"op": "linear", "weight": n.input[1]}
            if i + 1 < len(nodes) and nodes[i + 1].op_type == "Add" and nodes[i + 1].input[0] == n.output[0]:
                b = param(nodes[i + 1].input[1])
                params[nodes[i + 1].input[1]] = {"shape": list(b.shape), "values": b.tolist()}
                spec["bias"] = nodes[i + 1].input[1]
                i += 1
                n = nodes[i]
        elif op == "Conv":
            if attrs.get("group", 1) != 1 or any(d != 1 for d in attrs.get("dilations", [1, 1])):
                raise InputError(f"{where}: only group = 1, dilation = 1")
            pads = attrs.get("pads", [0, 0, 0, 0])
            if pads[:2] != pads[2:]:
                raise InputError(f"{where}: asymmetric padding")
            W = param(n.input[1])
            params[n.input[1]] = {"shape": list(W.shape), "values": W.tolist()}
            spec = {"op": "conv2d", "weight": n.input[1], "stride": list(attrs.get("strides", [1, 1])), "padding": list(pads[:2])}
            if len(n.input) > 2 and n.input[2]:
                b = param(n.input[2])
                params[n.input[2]] = {"shape": list(b.shape), "values": b.tolist()}
                spec["bias"] = n.input[2]
        elif op in ("MaxPool", "AveragePool"):
            if any(attrs.get("pads", [0]) ) or attrs.get("ceil_mode", 0):
                raise InputError(f"{where}: padding and ceil_mode are not supported")
            k = list(attrs["kernel_shape"])
            s = list(attrs.get("strides", k))
            if len(k) == 1:
                spec = {"op": "maxpool1d" if op == "MaxPool" else None, "kernel": k[0], "stride": s[0]}
                if spec["op"] is None:
                    raise InputError(f"{where}: 1-D average pooling is not in the format")
            else:
                spec = {"op": "maxpool2d" if op == "MaxPool" else "avgpool2d", "kernel": k, "stride": s}
        elif op in ("Flatten", "Reshape"):
            spec = {"op": "flatten"}
        elif op == "Relu":
            spec = {"op": "relu"}
        elif op == "LeakyRelu":
            spec = {"op": "leaky_relu", "negative_slope": float(attrs.get("alpha", 0.01))}
        elif op == "Clip":
            lo = value(n.input[1]) if len(n.input) > 1 and n.input[1] else attrs.get("min")
            hi = value(n.input[2]) if len(n.input) > 2 and n.input[2] else attrs.get("max")
            if lo is None or hi is None:
                raise InputError(f"{where}: Clip needs both bounds")
            lo, hi = float(np.asarray(lo)), float(np.asarray(hi))
            spec = {"op": "relu6"} if (lo, hi) == (0.0, 6.0) else {"op": "hardtanh", "min_val": lo, "max_val": hi}
        elif op == "HardSigmoid":
            if abs(attrs.get("alpha", 0.2) - 1 / 6) > 1e-7 or attrs.get("beta", 0.5) != 0.5:
                raise InputError(f"{where}: only PyTorch's hardsigmoid (alpha = 1/6, beta = 1/2)")
            spec = {"op": "hardsigmoid"}
        elif op == "HardSwish":
            spec = {"op": "hardswish"}
        elif op in ("Abs", "Sigmoid", "Tanh", "Identity"):
            spec = {"op": op.lower()}
        else:
            raise InputError(f"{where}: unsupported node")
        layers.append(spec)
        cur = n.output[0]
        i += 1
    dtype = dtype or "float32"
    doc = {
        "kinkcheck": 1,
        "dtype": dtype,
        "params": params,
        "inputs": {"shape": list(inputs.shape), "values": np.asarray(inputs, dtype=np.float64).tolist()},
        "layers": layers,
        "loss": {"op": loss},
    }
    if targets is not None:
        t = np.asarray(targets)
        doc["targets"] = {"shape": list(t.shape), "values": t.astype(np.int64).tolist() if loss == "cross_entropy" else t.astype(np.float64).tolist()}
    return doc
