"""The way back: a network file as a torch module (``to_torch``, torch's own modules or the
``Spec*`` ones in kinkcheck's order) and, through torch, as a TorchScript, torch.export or ONNX file
(``to_onnx``, ``export_network``; docs/interop.md).
"""

from __future__ import annotations

from ..encodings.errors import InputError
from .torch_modules import Abs, SpecAvgPool2d, SpecConv2d, SpecHardsigmoid, SpecHardswish, SpecLinear, _t

TORCH_DT = {"float16": "float16", "bfloat16": "bfloat16", "float32": "float32", "float64": "float64"}
ORDERS = ("torch", "spec")


def to_torch(network, order: str = "torch"):
    """An nn.Sequential computing the network's layers with its exact parameter values (every
    module is created in the network's dtype, so no bit is lost on the way).

    ``order="torch"``: torch's own modules (Linear, Conv2d, ...; their kernels choose the
    summation order). ``order="spec"``: linear, conv2d, avgpool2d, hardsigmoid and hardswish become
    this module's Spec* modules, which evaluate in kinkcheck's machine order one rounded op at a
    time, so that the forward pass equals kinkcheck's machine forward (docs/interop.md says where).
    Needs weights/biases that are whole named params or constants (negated tied inline scalars have
    no torch layer equivalent)."""
    from ..api import load

    torch = _t()
    nn = torch.nn
    if order not in ORDERS:
        raise InputError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    net = network if hasattr(network, "layers") else load(network)
    if net.fmt.name not in TORCH_DT:
        raise InputError(f"{net.source}: torch has no {net.fmt.name} dtype (export supports float16, bfloat16, float32, float64)")
    dt = getattr(torch, TORCH_DT[net.fmt.name])
    spec = order == "spec"
    mods = []
    for L in net.layers:
        where = f"{net.source}: {L.label}"
        op = L.op
        if op in ("linear", "conv2d"):
            for ref in (L.weight, L.bias):
                if ref is not None and (ref.sign < 0).any() and (ref.src >= 0).any():
                    raise InputError(f"{where}: negated tied scalars have no torch layer equivalent")
            W = torch.tensor(L.weight.values(net.theta), dtype=torch.float64).to(dt)  # exact: representable
            b = torch.tensor(L.bias.values(net.theta), dtype=torch.float64).to(dt) if L.bias is not None else None
            if spec:
                m = SpecLinear(W, b) if op == "linear" else SpecConv2d(W, b, L.stride, L.padding)
            else:
                if op == "linear":
                    m = nn.Linear(W.shape[1], W.shape[0], bias=b is not None, dtype=dt)
                else:
                    m = nn.Conv2d(W.shape[1], W.shape[0], tuple(W.shape[2:]), stride=L.stride, padding=L.padding, bias=b is not None, dtype=dt)
                with torch.no_grad():
                    m.weight.copy_(W)
                    if b is not None:
                        m.bias.copy_(b)
        elif op == "maxpool1d":
            m = nn.MaxPool1d(L.kernel[0], L.stride[0])
        elif op == "maxpool2d":
            m = nn.MaxPool2d(L.kernel, L.stride)
        elif op == "avgpool2d":
            k = L.kernel[0] * L.kernel[1]
            m = SpecAvgPool2d(L.kernel, L.stride, torch.tensor(float(k), dtype=torch.float64).to(dt)) if spec else nn.AvgPool2d(L.kernel, L.stride)
        elif op == "flatten":
            m = nn.Flatten()
        elif op == "relu":
            m = nn.ReLU()
        elif op == "leaky_relu":  # the dtype-rounded slope: torch's x * slope is then the format's product
            m = nn.LeakyReLU(float(L.act.params["negative_slope"]))
        elif op == "hardtanh":
            m = nn.Hardtanh(float(L.act.params["min_val"]), float(L.act.params["max_val"]))
        elif op == "relu6":
            m = nn.ReLU6()
        elif op == "hardsigmoid":
            m = SpecHardsigmoid(torch.ones((), dtype=dt)) if spec else nn.Hardsigmoid()
        elif op == "hardswish":
            m = SpecHardswish(torch.ones((), dtype=dt)) if spec else nn.Hardswish()
        elif op == "sigmoid":
            m = nn.Sigmoid()
        elif op == "tanh":
            m = nn.Tanh()
        elif op == "identity":
            m = nn.Identity()
        elif op == "abs":
            m = Abs()
        else:  # pragma: no cover - every op of the format is handled above
            raise InputError(f"{where}: op {op} has no torch module")
        mods.append(m)
    return nn.Sequential(*mods)


def export_notes(net) -> list:
    """What a model file does not carry from the network file (printed by ``kinkcheck export``)."""
    notes = []
    raw = net.raw or {}
    conv = raw.get("convention", "pytorch")
    if conv != "pytorch":
        notes.append(f"the convention {conv if isinstance(conv, str) else '(an object)'} is not carried over: the model differentiates with the framework's own kink derivatives")
    over = [str(i) for i, spec in enumerate(raw.get("layers", [])) if isinstance(spec, dict) and ("kink_derivatives" in spec or "tie_break" in spec)]
    if over or (isinstance(raw.get("loss"), dict) and "kink_derivatives" in raw["loss"]):
        notes.append(f"per-layer kink_derivatives / tie_break (layers {', '.join(over) or 'loss'}) are not carried over")
    inline = [str(L.index) for L in net.layers if any(isinstance((raw.get("layers") or [{}] * (L.index + 1))[L.index].get(k), list) for k in ("weight", "bias"))]
    frozen = [p.name for p in net.params if not p.trainable]
    if inline or frozen:
        notes.append("inline weights (layers " + (", ".join(inline) or "none") + ") and non-trainable params (" + (", ".join(frozen) or "none") + ") become ordinary trainable parameters")
    notes.append("the data and the loss are not part of the model: give --inputs/--targets/--loss again on import")
    return notes


def _example_input(net, m):
    torch = _t()
    ps = list(m.parameters())
    dt = ps[0].dtype if ps else getattr(torch, TORCH_DT[net.fmt.name])
    return torch.tensor(net.inputs, dtype=torch.float64).to(dt)  # exact: inputs are representable


def to_onnx(network, path: str) -> None:
    """Export through torch's ONNX exporter (legacy TorchScript path, dynamic batch axis), then
    check the file with onnx.checker (needs the onnx package)."""
    import warnings

    from ..api import load

    torch = _t()
    try:
        import onnx
    except ImportError:
        raise InputError("ONNX export needs the onnx package: pip install 'kinkcheck[onnx]'") from None
    net = network if hasattr(network, "layers") else load(network)
    for L in net.layers:
        if L.op == "maxpool1d" and len(L.in_shape) == 1:
            raise InputError(f"{net.source}: {L.label} pools a vector; ONNX MaxPool needs a channel axis (give the layer a [C, L] input)")
    m = to_torch(net)
    x = _example_input(net, m)

    def write(tmp):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(m, (x,), tmp, dynamo=False, input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
        onnx.checker.check_model(onnx.load(tmp), full_check=True)

    from ..files import replace_atomic

    try:
        replace_atomic(path, write, ".onnx")
    except InputError:
        raise
    except OSError as exc:
        raise InputError(f"{path}: cannot write: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - exporter and checker errors: one line naming the network
        raise InputError(f"{net.source}: ONNX export failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def export_network(network, to: str, output: str, order: str = "torch") -> list:
    """Write the network's model as ``to`` = "torch" (TorchScript, torch.jit.script), "pt2"
    (torch.export archive of the network's batch shape) or "onnx"; returns export_notes."""
    from ..api import load

    torch = _t()
    net = network if hasattr(network, "layers") else load(network)
    if to not in ("torch", "pt2", "onnx"):
        raise InputError(f"--to must be torch, pt2 or onnx, got {to!r}")
    if order == "spec" and to != "torch":
        raise InputError("--order spec writes TorchScript only (--to torch): its loops and unfold have no ONNX/torch.export form that kinkcheck imports")
    if to == "onnx":
        to_onnx(net, output)
        return export_notes(net)
    m = to_torch(net, order=order).eval()

    def write(tmp):
        if to == "torch":
            torch.jit.script(m).save(tmp)
        else:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.export.save(torch.export.export(m, (_example_input(net, m),)), tmp)

    from ..files import replace_atomic

    try:
        replace_atomic(output, write, ".pt2" if to == "pt2" else ".pt")
    except OSError as exc:
        raise InputError(f"{output}: cannot write: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - scripting / export errors: one line naming the network
        raise InputError(f"{net.source}: {to} export failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    return export_notes(net)
