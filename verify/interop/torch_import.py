"""``from_torch``: a ``torch.nn.Sequential`` (of the layers listed in ``kinkcheck.torch``) applied
to a batch, as a network document with the parameters' exact values.
"""

from __future__ import annotations

from ..encodings.errors import InputError
from .torch_deq import DEQ
from .torch_modules import KC_MODULES, Abs, Clamp, SpecAvgPool2d, SpecConv2d, SpecHardsigmoid, SpecHardswish, SpecLinear, _pair, _t

DTYPES = {"torch.float16": "float16", "torch.bfloat16": "bfloat16", "torch.float32": "float32", "torch.float64": "float64"}


def _vals(t):
    torch = _t()
    return t.detach().to(torch.float64).cpu().numpy().tolist()


def _clamp_derivatives(lo: float, hi: float, dtype) -> list:
    """What the installed torch's autograd gives for torch.clamp(x, lo, hi) at x = lo and x = hi."""
    torch = _t()
    out = []
    for v in (lo, hi):
        x = torch.tensor(v, dtype=dtype, requires_grad=True)
        torch.clamp(x, lo, hi).backward()
        out.append(float(x.grad))
    return out


def _elementwise(m, nn):
    """The layer object of an elementwise torch module, or None."""
    if isinstance(m, nn.ReLU):
        return {"op": "relu"}
    if isinstance(m, nn.LeakyReLU):
        return {"op": "leaky_relu", "negative_slope": m.negative_slope}
    if isinstance(m, nn.ReLU6):  # before Hardtanh: ReLU6 is a Hardtanh subclass
        return {"op": "relu6"}
    if isinstance(m, nn.Hardtanh):
        return {"op": "hardtanh", "min_val": m.min_val, "max_val": m.max_val}
    if isinstance(m, nn.Hardsigmoid):
        return {"op": "hardsigmoid"}
    if isinstance(m, nn.Hardswish):
        return {"op": "hardswish"}
    if isinstance(m, nn.Sigmoid):
        return {"op": "sigmoid"}
    if isinstance(m, nn.Tanh):
        return {"op": "tanh"}
    if isinstance(m, nn.Identity):
        return {"op": "identity"}
    return None


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
        if isinstance(m, (nn.Linear, SpecLinear)):
            params[f"l{i}.weight"] = {"shape": list(m.weight.shape), "values": _vals(m.weight)}
            spec = {"op": "linear", "weight": f"l{i}.weight"}
            if m.bias is not None:
                params[f"l{i}.bias"] = {"shape": list(m.bias.shape), "values": _vals(m.bias)}
                spec["bias"] = f"l{i}.bias"
        elif isinstance(m, (nn.Conv2d, SpecConv2d)):
            if isinstance(m, nn.Conv2d) and (m.groups != 1 or _pair(m.dilation) != [1, 1] or isinstance(m.padding, str) or m.padding_mode != "zeros"):
                raise InputError(f"{where}: only groups=1, dilation=1, numeric zero padding are supported")
            params[f"l{i}.weight"] = {"shape": list(m.weight.shape), "values": _vals(m.weight)}
            spec = {"op": "conv2d", "weight": f"l{i}.weight", "stride": _pair(m.stride), "padding": _pair(m.padding)}
            if m.bias is not None:
                params[f"l{i}.bias"] = {"shape": list(m.bias.shape), "values": _vals(m.bias)}
                spec["bias"] = f"l{i}.bias"
        elif isinstance(m, SpecAvgPool2d):
            spec = {"op": "avgpool2d", "kernel": list(m.kernel_size), "stride": list(m.stride)}
        elif isinstance(m, Abs):
            spec = {"op": "abs"}
        elif isinstance(m, Clamp):
            dt = getattr(torch, (dtype or "float32"))
            spec = {"op": "hardtanh", "min_val": m.min_val, "max_val": m.max_val, "kink_derivatives": _clamp_derivatives(m.min_val, m.max_val, dt)}
        elif isinstance(m, SpecHardsigmoid):
            spec = {"op": "hardsigmoid"}
        elif isinstance(m, SpecHardswish):
            spec = {"op": "hardswish"}
        elif isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool2d)):
            if getattr(m, "padding", 0) not in (0, (0, 0)) or getattr(m, "dilation", 1) not in (1, (1, 1)) or m.ceil_mode:
                raise InputError(f"{where}: padding, dilation and ceil_mode are not supported")
            if isinstance(m, nn.AvgPool2d) and m.divisor_override is not None:
                raise InputError(f"{where}: divisor_override is not supported")
            op = {nn.MaxPool1d: "maxpool1d", nn.MaxPool2d: "maxpool2d", nn.AvgPool2d: "avgpool2d"}[type(m)]
            k = m.kernel_size
            s = m.stride if m.stride is not None else k
            spec = {"op": op, "kernel": k if op == "maxpool1d" else _pair(k), "stride": s if op == "maxpool1d" else _pair(s)}
            if op == "maxpool1d" and isinstance(k, tuple):
                spec["kernel"], spec["stride"] = k[0], (s[0] if isinstance(s, tuple) else s)
        elif isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                raise InputError(f"{where}: only Flatten(start_dim=1, end_dim=-1) is supported (the batch axis stays)")
            spec = {"op": "flatten"}
        elif _elementwise(m, nn) is not None:
            spec = _elementwise(m, nn)
        elif DEQ is not None and isinstance(m, DEQ):
            act = _elementwise(m.act, nn)
            if act is None:
                raise InputError(f"{where}: the DEQ's activation {type(m.act).__name__} is not an elementwise module kinkcheck reads")
            for key, t in (("weight", m.W), ("input_weight", m.U), ("bias", m.b)):
                if t is not None:
                    params[f"l{i}.{key}"] = {"shape": list(t.shape), "values": _vals(t)}
            cell = {"weight": f"l{i}.weight", "input_weight": f"l{i}.input_weight", "activation": act}
            if m.b is not None:
                cell["bias"] = f"l{i}.bias"
            spec = {"op": "fixed_point", "cell": cell, "solver": {"method": "iterate", "max_iter": m.max_iter, "tol": m.tol}}
            if getattr(m, "solver", "iterate") == "anderson":
                spec["solver"].update(method="anderson", m=m.m, beta=m.beta)
        else:
            raise InputError(f"{where}: unsupported module (supported: Linear, Conv2d, MaxPool1d/2d, AvgPool2d, Flatten, ReLU, LeakyReLU, Hardtanh, ReLU6, Hardsigmoid, Hardswish, Sigmoid, Tanh, Identity, and kinkcheck.torch's {', '.join(KC_MODULES)})")
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
