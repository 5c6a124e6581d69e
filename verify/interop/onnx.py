"""ONNX import: a chain graph of Gemm / MatMul+Add, Conv, MaxPool, AveragePool, Flatten/Reshape (to
[batch, features]), Relu, LeakyRelu, Clip, HardSigmoid, HardSwish, Abs, Sigmoid, Tanh, Identity to a
network document. Initializers keep their exact values (float16/float32/float64/bfloat16). Anything
else: an error naming the node."""

from __future__ import annotations

import numpy as np

from ..encodings.errors import InputError

DT = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16"}


def _onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise InputError("ONNX import needs the onnx package: pip install 'kinkcheck[onnx]'") from None
    return onnx, numpy_helper


def from_onnx(path: str, inputs: np.ndarray, targets=None, loss: str = "sum") -> dict:
    """The network document of a chain graph applied to the batch ``inputs``. Parameters are named
    ``l{k}.weight`` / ``l{k}.bias`` after their layer position k, as from_torch names them; torch's
    exporter names nodes ``/k/...`` after the Sequential index, and a module that left no node
    (an Identity) gets an identity layer, so that an exported Sequential imports as from_torch sees it."""
    import re

    onnx, nh = _onnx()
    try:
        model = onnx.load(path)
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - onnx raises several types for unreadable/invalid files
        raise InputError(f"{path}: not a valid ONNX model: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    g = model.graph
    init = {t.name: t for t in g.initializer}
    consts = {}
    for n in g.node:
        if n.op_type == "Constant":
            if len(n.attribute) != 1 or n.attribute[0].name != "value":
                raise InputError(f"{path}: node {n.name} (Constant): only tensor constants are supported")
            consts[n.output[0]] = nh.to_array(n.attribute[0].t)
    data_inputs = [v.name for v in g.input if v.name not in init]
    if len(data_inputs) != 1 or len(g.output) != 1:
        raise InputError(f"{path}: the graph must have one data input and one output (it has {len(data_inputs)} and {len(g.output)})")
    params, layers = {}, []
    named = {}  # initializer -> (param name, transposed)
    dtype = None
    cur = data_inputs[0]

    def param(name, where):
        nonlocal dtype
        if name not in init:
            raise InputError(f"{where}: {name!r} is not an initializer (weights must be constants of the graph)")
        t = init[name]
        d = DT.get(t.data_type)
        if d is None:
            raise InputError(f"{path}: initializer {name}: unsupported data type {t.data_type}")
        if dtype not in (None, d):
            raise InputError(f"{path}: mixed initializer types ({dtype}, {d})")
        dtype = d
        return nh.to_array(t).astype(np.float64)

    def add_param(name, kind, where, transpose=False):
        """The param for initializer ``name`` (shared initializers stay one param)."""
        if name in named:
            pname, tr = named[name]
            if tr != transpose:
                raise InputError(f"{where}: initializer {name!r} is used in two layouts")
            return pname
        v = param(name, where)
        v = v.T if transpose else v
        pname = f"l{len(layers)}.{kind}"
        params[pname] = {"shape": list(v.shape), "values": v.tolist()}
        named[name] = (pname, transpose)
        return pname

    def value(name):
        if name in init:
            return param(name, path)
        if name in consts:
            return consts[name].astype(np.float64)
        return None

    flat_checks = []  # (layer index, size) for a Reshape to [batch, size]
    nodes = [n for n in g.node if n.op_type != "Constant"]
    i = 0
    while i < len(nodes):
        n = nodes[i]
        where = f"{path}: node {n.name or i} ({n.op_type})"
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        if not n.input or n.input[0] != cur:
            raise InputError(f"{where}: only chain graphs are supported (input {n.input[0] if n.input else None!r}, expected {cur!r})")
        m = re.match(r"^/(\d+)/", n.name or "")
        while m and int(m.group(1)) > len(layers):  # a module of the exported Sequential that left no node
            layers.append({"op": "identity"})
        op = n.op_type
        spec = None
        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
            raise InputError(f"{where}: auto_pad {attrs['auto_pad']!r} is not supported")
        if op == "Gemm":
            if attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0 or attrs.get("transA", 0):
                raise InputError(f"{where}: only alpha = beta = 1, transA = 0")
            spec = {"op": "linear", "weight": add_param(n.input[1], "weight", where, transpose=not attrs.get("transB", 0))}
            if len(n.input) > 2 and n.input[2]:
                spec["bias"] = add_param(n.input[2], "bias", where)
        elif op == "MatMul":
            spec = {"op": "linear", "weight": add_param(n.input[1], "weight", where, transpose=True)}
            if i + 1 < len(nodes) and nodes[i + 1].op_type == "Add" and nodes[i + 1].input[0] == n.output[0] and nodes[i + 1].input[1] in init:
                spec["bias"] = add_param(nodes[i + 1].input[1], "bias", where)
                i += 1
                n = nodes[i]
        elif op == "Conv":
            if attrs.get("group", 1) != 1 or any(d != 1 for d in attrs.get("dilations", [1, 1])):
                raise InputError(f"{where}: only group = 1, dilation = 1")
            pads = attrs.get("pads", [0, 0, 0, 0])
            if pads[:2] != pads[2:]:
                raise InputError(f"{where}: asymmetric padding")
            spec = {"op": "conv2d", "weight": add_param(n.input[1], "weight", where), "stride": list(attrs.get("strides", [1, 1])), "padding": list(pads[:2])}
            if len(n.input) > 2 and n.input[2]:
                spec["bias"] = add_param(n.input[2], "bias", where)
        elif op in ("MaxPool", "AveragePool"):
            if any(attrs.get("pads", [0])) or attrs.get("ceil_mode", 0) or any(d != 1 for d in attrs.get("dilations", [1])):
                raise InputError(f"{where}: padding, dilation and ceil_mode are not supported")
            if len(n.output) > 1 and n.output[1]:
                raise InputError(f"{where}: the pooling indices output is not supported")
            k = list(attrs["kernel_shape"])
            s = list(attrs.get("strides", k))
            if len(k) == 1:
                spec = {"op": "maxpool1d" if op == "MaxPool" else None, "kernel": k[0], "stride": s[0]}
                if spec["op"] is None:
                    raise InputError(f"{where}: 1-D average pooling is not in the format")
            else:
                spec = {"op": "maxpool2d" if op == "MaxPool" else "avgpool2d", "kernel": k, "stride": s}
        elif op == "Flatten":
            if attrs.get("axis", 1) != 1:
                raise InputError(f"{where}: only axis = 1 (the batch axis stays)")
            spec = {"op": "flatten"}
        elif op == "Reshape":
            shp = value(n.input[1]) if len(n.input) > 1 else None
            shp = [int(v) for v in np.asarray(shp).reshape(-1)] if shp is not None else None
            if shp is None or len(shp) != 2 or shp[0] not in (0, -1, len(inputs)) or not (shp[1] == -1 or shp[1] > 0) or shp == [-1, -1]:
                raise InputError(f"{where}: only a reshape to [batch, features] with a constant shape (a flatten) is supported")
            if shp[1] > 0:
                flat_checks.append((len(layers), shp[1], where))
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
    if cur != g.output[0].name:
        raise InputError(f"{path}: the graph output {g.output[0].name!r} is not the end of the layer chain")
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
    if flat_checks:
        from ..api import load

        net = load(doc)
        for k, size, where in flat_checks:
            have = int(np.prod(net.layers[k].in_shape))
            if have != size:
                raise InputError(f"{where}: reshapes {have} features per sample to {size}; only a flatten is supported")
    return doc
