"""PyTorch interop: ``from_torch`` (a ``torch.nn.Sequential`` to a network document, exact bits) and
``check`` (an exact gradcheck: torch's own autograd output judged by the exact procedures).

Supported layers: Linear, Conv2d, MaxPool1d/2d, AvgPool2d, Flatten, ReLU, LeakyReLU, Hardtanh,
ReLU6, Hardsigmoid, Hardswish, Sigmoid, Tanh, Identity. Losses: the network file's (sum, dot, mse,
l1, cross_entropy). Parameters keep their exact values: float16/float32/float64/bfloat16 are all
exactly representable as binary64 and written as JSON numbers (bfloat16 through float32). Anything
else is refused with an error naming the layer.
"""

from __future__ import annotations

from .encodings.errors import InputError

DTYPES = {"torch.float16": "float16", "torch.bfloat16": "bfloat16", "torch.float32": "float32", "torch.float64": "float64"}


def _t():
    try:
        import torch
    except ImportError:
        raise InputError("PyTorch is not installed: pip install 'kinkcheck[torch]'") from None
    return torch


def _vals(t):
    torch = _t()
    return t.detach().to(torch.float64).cpu().numpy().tolist()


def _pair(v):
    return list(v) if isinstance(v, (tuple, list)) else [v, v]


def from_torch(module, inputs, targets=None, loss: str = "sum", reduction: str | None = None) -> dict:
    """The network document of a Sequential ``module`` applied to the batch ``inputs``."""
    torch = _t()
    nn = torch.nn
    layers_in = list(module) if isinstance(module, nn.Sequential) else [module]
    params, layers = {}, []
    dtype = None
    for i, m in enumerate(layers_in):
        where = f"layer {i} ({type(m).__name__})"
        for p in m.parameters(recurse=False):
            d = DTYPES.get(str(p.dtype))
            if d is None:
                raise InputError(f"{where}: unsupported parameter dtype {p.dtype}")
            if dtype not in (None, d):
                raise InputError(f"{where}: mixed parameter dtypes ({dtype} and {d})")
            dtype = d
        if isinstance(m, nn.Linear):
            params[f"l{i}.weight"] = {"shape": list(m.weight.shape), "values": _vals(m.weight)}
            spec = {"op": "linear", "weight": f"l{i}.weight"}
            if m.bias is not None:
                params[f"l{i}.bias"] = {"shape": list(m.bias.shape), "values": _vals(m.bias)}
                spec["bias"] = f"l{i}.bias"
        elif isinstance(m, nn.Conv2d):
            if m.groups != 1 or _pair(m.dilation) != [1, 1] or isinstance(m.padding, str) or m.padding_mode != "zeros":
                raise InputError(f"{where}: only groups=1, dilation=1, numeric zero padding are supported")
            params[f"l{i}.weight"] = {"shape": list(m.weight.shape), "values": _vals(m.weight)}
            spec = {"op": "conv2d", "weight": f"l{i}.weight", "stride": _pair(m.stride), "padding": _pair(m.padding)}
            if m.bias is not None:
                params[f"l{i}.bias"] = {"shape": list(m.bias.shape), "values": _vals(m.bias)}
                spec["bias"] = f"l{i}.bias"
        elif isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool2d)):
            if getattr(m, "padding", 0) not in (0, (0, 0)) or getattr(m, "dilation", 1) not in (1, (1, 1)) or m.ceil_mode:
                raise InputError(f"{where}: padding, dilation and ceil_mode are not supported")
            if isinstance(m, nn.AvgPool2d) and not m.count_include_pad:
                pass  # no padding: the same
            op = {nn.MaxPool1d: "maxpool1d", nn.MaxPool2d: "maxpool2d", nn.AvgPool2d: "avgpool2d"}[type(m)]
            k = m.kernel_size
            s = m.stride if m.stride is not None else k
            spec = {"op": op, "kernel": k if op == "maxpool1d" else _pair(k), "stride": s if op == "maxpool1d" else _pair(s)}
            if op == "maxpool1d" and isinstance(k, tuple):
                spec["kernel"], spec["stride"] = k[0], (s[0] if isinstance(s, tuple) else s)
        elif isinstance(m, nn.Flatten):
            spec = {"op": "flatten"}
        elif isinstance(m, nn.ReLU):
            spec = {"op": "relu"}
        elif isinstance(m, nn.LeakyReLU):
            spec = {"op": "leaky_relu", "negative_slope": m.negative_slope}
        elif isinstance(m, nn.ReLU6):
            spec = {"op": "relu6"}
        elif isinstance(m, nn.Hardtanh):
            spec = {"op": "hardtanh", "min_val": m.min_val, "max_val": m.max_val}
        elif isinstance(m, nn.Hardsigmoid):
            spec = {"op": "hardsigmoid"}
        elif isinstance(m, nn.Hardswish):
            spec = {"op": "hardswish"}
        elif isinstance(m, nn.Sigmoid):
            spec = {"op": "sigmoid"}
        elif isinstance(m, nn.Tanh):
            spec = {"op": "tanh"}
        elif isinstance(m, nn.Identity):
            spec = {"op": "identity"}
        else:
            raise InputError(f"{where}: unsupported module (supported: Linear, Conv2d, MaxPool1d/2d, AvgPool2d, Flatten, ReLU, LeakyReLU, Hardtanh, ReLU6, Hardsigmoid, Hardswish, Sigmoid, Tanh, Identity)")
        layers.append(spec)
    x = inputs.detach() if hasattr(inputs, "detach") else torch.as_tensor(inputs)
    dtype = dtype or DTYPES.get(str(x.dtype), "float32")
    doc = {
        "kinkcheck": 1,
        "dtype": dtype,
        "params": params,
        "inputs": {"shape": list(x.shape), "values": _vals(x)},
        "layers": layers,
        "loss": {"op": loss, **({"reduction": reduction} if reduction else {})},
        "convention": "pytorch",
    }
    if targets is not None:
        t = targets.detach() if hasattr(targets, "detach") else torch.as_tensor(targets)
        if loss == "cross_entropy":
            doc["targets"] = {"shape": list(t.shape), "values": [int(v) for v in t.reshape(-1).tolist()]}
        else:
            doc["targets"] = {"shape": list(t.shape), "values": _vals(t)}
    return doc


def _torch_loss(out, targets, loss, reduction):
    torch = _t()
    F = torch.nn.functional
    red = reduction or "mean"
    if loss == "sum":
        return out.sum()
    if loss == "dot":
        return (out * targets).sum()
    if loss == "mse":
        return F.mse_loss(out, targets, reduction=red)
    if loss == "l1":
        return F.l1_loss(out, targets, reduction=red)
    if loss == "cross_entropy":
        return F.cross_entropy(out, targets, reduction=red)
    raise InputError(f"unknown loss {loss!r}")


def check(module, inputs, targets=None, loss: str = "sum", reduction: str | None = None):
    """Exact gradcheck: run torch autograd on ``module``, then judge its output exactly.

    Returns a dict with the kinkcheck report (``report``), torch's gradient (``torch_grad``, as
    floats in kinkcheck's parameter order), and the verdicts: whether torch's gradient equals
    kinkcheck's exact AD output, is the true gradient, is a Clarke subderivative; which units sit
    on kinks; whether the float run diverged from the exact one."""
    import kinkcheck

    torch = _t()
    doc = from_torch(module, inputs, targets, loss, reduction)
    module.zero_grad(set_to_none=True)
    out = module(inputs)
    _torch_loss(out, targets, loss, reduction).backward()
    grads = []
    for m in list(module) if isinstance(module, torch.nn.Sequential) else [module]:
        for p in m.parameters(recurse=False):
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            grads += g.detach().to(torch.float64).reshape(-1).tolist()
    report = kinkcheck.verify(doc, values=True)
    from fractions import Fraction

    exact_ad = [Fraction(s) for s in report.ad] if report.ad and not any(s.startswith("[") for s in report.ad) else None
    tg = [Fraction(v) for v in grads]
    grad = [Fraction(s) for s in report.gradient] if report.gradient else None
    return {
        "report": report,
        "torch_grad": grads,
        "torch_equals_exact_ad": (tg == exact_ad) if exact_ad is not None else None,
        "is_gradient": (tg == grad) if grad is not None else (False if report.differentiable is False else None),
        "differentiable": report.differentiable,
        "ad_in_clarke": report.ad_in_clarke,
        "real_ties": report.real_ties,
        "float_ties": report.float_ties,
        "compensation": report.compensation,
        "doc": doc,
    }


__all__ = ["from_torch", "check"]


# ----------------------------------------------------------------------------------------------
# loading model files without running untrusted code

ARCH_LAYERS = {
    "Linear", "Conv2d", "MaxPool1d", "MaxPool2d", "AvgPool2d", "Flatten", "ReLU", "LeakyReLU",
    "Hardtanh", "ReLU6", "Hardsigmoid", "Hardswish", "Sigmoid", "Tanh", "Identity",
}


def parse_arch(text: str):
    """A Sequential from "Linear(3,4),ReLU(),Linear(4,2)": names from a fixed list and literal
    numbers/booleans as arguments (keyword arguments allowed); never eval."""
    import ast

    torch = _t()
    try:
        tree = ast.parse(f"[{text}]", mode="eval")
    except SyntaxError as exc:
        raise InputError(f"--arch: not a list of layers: {exc.msg}") from None
    mods = []
    for node in tree.body.elts:
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or node.func.id not in ARCH_LAYERS:
            raise InputError(f"--arch: {ast.unparse(node)!r} is not one of {', '.join(sorted(ARCH_LAYERS))}(...)")
        try:
            args = [ast.literal_eval(a) for a in node.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
        except ValueError:
            raise InputError(f"--arch: {ast.unparse(node)!r}: arguments must be literal numbers or booleans") from None
        try:
            mods.append(getattr(torch.nn, node.func.id)(*args, **kwargs))
        except (TypeError, ValueError) as exc:
            raise InputError(f"--arch: {ast.unparse(node)}: {exc}") from None
    return torch.nn.Sequential(*mods)


def load_module(path: str, *, arch: str | None = None, trust_pickle: bool = False):
    """A module from a TorchScript file, a state_dict (with ``arch``; ``weights_only=True``), or -
    only with ``trust_pickle`` - a pickled full module."""
    torch = _t()
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
            if any(n.endswith("constants.pkl") or "/code/" in n for n in names) and arch is None:
                return torch.jit.load(path, map_location="cpu")
    except (OSError, RuntimeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    if arch is not None:
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except Exception as exc:  # the weights-only unpickler refuses anything but tensors
            raise InputError(f"{path}: not a plain state_dict ({type(exc).__name__}); refusing to unpickle arbitrary objects") from None
        model = parse_arch(arch)
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise InputError(f"{path}: the state_dict does not fit --arch: {str(exc).splitlines()[0]}") from None
        return model
    if not trust_pickle:
        raise InputError(f"{path}: a pickled module runs code when loaded; give --arch for a state_dict, use TorchScript, or pass --trust-pickle if you trust the file")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None


def _children(module):
    """Sequential children of an nn.Module or a scripted module."""
    return list(module.children()) if len(list(module.children())) else [module]


def scripted_to_sequential(module):
    """Rebuild an nn.Sequential from a scripted Sequential (by original_name and attributes)."""
    torch = _t()
    if isinstance(module, torch.nn.Sequential):
        return module
    if not hasattr(module, "original_name"):
        return module
    mods = []
    for ch in _children(module):
        name = getattr(ch, "original_name", type(ch).__name__)
        if name not in ARCH_LAYERS:
            raise InputError(f"layer {len(mods)} ({name}): unsupported module")
        cls = getattr(torch.nn, name)
        if name == "Linear":
            m = cls(ch.weight.shape[1], ch.weight.shape[0], bias=ch.bias is not None)
        elif name == "Conv2d":
            o, i, kh, kw = ch.weight.shape
            m = cls(i, o, (kh, kw), stride=tuple(ch.stride), padding=tuple(ch.padding), bias=ch.bias is not None)
        elif name == "LeakyReLU":
            m = cls(ch.negative_slope)
        elif name == "Hardtanh":
            m = cls(ch.min_val, ch.max_val)
        elif name in ("MaxPool1d", "MaxPool2d", "AvgPool2d"):
            m = cls(ch.kernel_size, ch.stride)
        else:
            m = cls()
        with torch.no_grad():
            for pn, p in m.named_parameters():
                p.copy_(getattr(ch, pn))
        mods.append(m.to(next(iter(ch.parameters())).dtype) if list(ch.parameters()) else m)
    return torch.nn.Sequential(*mods)


# ----------------------------------------------------------------------------------------------
# export: a network file back to a torch module (and through torch to ONNX)

TORCH_DT = {"float16": "float16", "bfloat16": "bfloat16", "float32": "float32", "float64": "float64"}


def to_torch(network):
    """An nn.Sequential computing the network's layers (with its exact parameter values). Needs
    weights/biases that are whole named params or constants (tied inline scalars have no torch
    layer equivalent)."""
    import kinkcheck

    torch = _t()
    nn = torch.nn
    net = network if hasattr(network, "layers") else kinkcheck.load(network)
    if net.fmt.name not in TORCH_DT:
        raise InputError(f"torch has no {net.fmt.name} dtype")
    dt = getattr(torch, TORCH_DT[net.fmt.name])
    mods = []
    for L in net.layers:
        where = f"{L.label}"
        op = L.op
        if op in ("linear", "conv2d"):
            for ref in (L.weight, L.bias):
                if ref is not None and (ref.sign < 0).any() and (ref.src >= 0).any():
                    raise InputError(f"{where}: negated tied scalars have no torch layer equivalent")
            W = torch.tensor(L.weight.values(net.theta), dtype=torch.float64)
            b = torch.tensor(L.bias.values(net.theta), dtype=torch.float64) if L.bias is not None else None
            if op == "linear":
                m = nn.Linear(W.shape[1], W.shape[0], bias=b is not None)
            else:
                m = nn.Conv2d(W.shape[1], W.shape[0], tuple(W.shape[2:]), stride=L.stride, padding=L.padding, bias=b is not None)
            with torch.no_grad():
                m.weight.copy_(W)
                if b is not None:
                    m.bias.copy_(b)
        elif op == "maxpool1d":
            m = nn.MaxPool1d(L.kernel[0], L.stride[0])
        elif op == "maxpool2d":
            m = nn.MaxPool2d(L.kernel, L.stride)
        elif op == "avgpool2d":
            m = nn.AvgPool2d(L.kernel, L.stride)
        elif op == "flatten":
            m = nn.Flatten()
        elif op == "relu":
            m = nn.ReLU()
        elif op == "leaky_relu":
            m = nn.LeakyReLU(float(L.act.params["negative_slope"]))
        elif op == "hardtanh":
            m = nn.Hardtanh(float(L.act.params["min_val"]), float(L.act.params["max_val"]))
        elif op == "relu6":
            m = nn.ReLU6()
        elif op == "hardsigmoid":
            m = nn.Hardsigmoid()
        elif op == "hardswish":
            m = nn.Hardswish()
        elif op == "sigmoid":
            m = nn.Sigmoid()
        elif op == "tanh":
            m = nn.Tanh()
        elif op == "identity":
            m = nn.Identity()
        else:
            raise InputError(f"{where}: op {op} has no torch module (abs: use torch.abs)")
        mods.append(m.to(dt))
    return nn.Sequential(*mods)


def to_onnx(network, path: str) -> None:
    """Export through torch's ONNX exporter (legacy TorchScript path; needs the onnx package)."""
    import warnings

    import kinkcheck

    torch = _t()
    net = network if hasattr(network, "layers") else kinkcheck.load(network)
    m = to_torch(net)
    x = torch.tensor(net.inputs, dtype=next(m.parameters()).dtype if list(m.parameters()) else torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (x,), str(path), dynamo=False)
