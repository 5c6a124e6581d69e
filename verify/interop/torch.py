"""PyTorch interop: ``from_torch`` (a ``torch.nn.Sequential`` to a network document, exact bits),
``check`` (an exact gradcheck: torch's own autograd output judged by the exact procedures), model
files without running untrusted code (``load_module``: TorchScript, ``torch.export`` archives,
state_dicts) and the way back (``to_torch``, ``to_onnx``).

Supported layers: Linear, Conv2d, MaxPool1d/2d, AvgPool2d, Flatten, ReLU, LeakyReLU, Hardtanh,
ReLU6, Hardsigmoid, Hardswish, Sigmoid, Tanh, Identity (and this module's Abs, Clamp and Spec*
modules). Losses: the network file's (sum, dot, mse, l1, cross_entropy). Parameters keep their exact
values: float16/float32/float64/bfloat16 are all exactly representable as binary64 and written as
JSON numbers (bfloat16 through float32). Anything else is refused with an error naming the layer.
"""

from __future__ import annotations

from ..encodings.errors import InputError

try:  # the module classes below need torch; every function raises InputError through _t() without it
    import torch as _torch
except ImportError:  # pragma: no cover - exercised only without the extra
    _torch = None

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


# ----------------------------------------------------------------------------------------------
# modules of our own: ops torch.nn has no module for (Abs, Clamp), and "spec order" modules that
# evaluate in kinkcheck's machine order (docs/semantics.md) with one rounded torch op per step, so
# that their forward pass equals kinkcheck's machine forward bit for bit (docs/interop.md). They
# are scriptable; a TorchScript file keeps their class name, which load_module maps back.

if _torch is not None:
    _nn = _torch.nn

    class Abs(_nn.Module):
        """abs(x) (the format's ``abs``; torch.nn has no module for it)."""

        ARGS = ()

        def forward(self, x):
            return _torch.abs(x)

    class Clamp(_nn.Module):
        """torch.clamp(x, min_val, max_val), as found in a torch.export graph: the hardtanh function
        with clamp's own derivative at the bounds (from_torch measures it with the installed torch)."""

        ARGS = ("min_val", "max_val")

        def __init__(self, min_val: float, max_val: float):
            super().__init__()
            self.min_val = float(min_val)
            self.max_val = float(max_val)

        def forward(self, x):
            return _torch.clamp(x, self.min_val, self.max_val)

    class SpecLinear(_nn.Module):
        """y = W x + b as ``acc = x[0]*W[:,0]; acc = acc + x[j]*W[:,j]``; then ``acc + b``."""

        ARGS = ("weight", "bias")

        def __init__(self, weight, bias=None):
            super().__init__()
            self.weight = _nn.Parameter(weight.detach().clone())
            if bias is None:
                self.register_parameter("bias", None)
            else:
                self.bias = _nn.Parameter(bias.detach().clone())

        def forward(self, x):
            w = self.weight
            acc = x[:, 0:1] * w[:, 0]
            for j in range(1, w.shape[1]):
                acc = acc + x[:, j : j + 1] * w[:, j]
            b = self.bias
            if b is not None:
                acc = acc + b
            return acc

    class SpecConv2d(_nn.Module):
        """conv2d as the same dot product over the zero-padded receptive field in (in-channel, kh,
        kw) order - one strided slice of the padded input per kernel entry - then ``+ b``."""

        ARGS = ("weight", "bias", "stride", "padding")

        def __init__(self, weight, bias=None, stride=(1, 1), padding=(0, 0)):
            super().__init__()
            self.weight = _nn.Parameter(weight.detach().clone())
            if bias is None:
                self.register_parameter("bias", None)
            else:
                self.bias = _nn.Parameter(bias.detach().clone())
            self.stride = [int(stride[0]), int(stride[1])]
            self.padding = [int(padding[0]), int(padding[1])]

        def forward(self, x):
            w = self.weight
            o, c, kh, kw = w.shape[0], w.shape[1], w.shape[2], w.shape[3]
            p0, p1, s0, s1 = self.padding[0], self.padding[1], self.stride[0], self.stride[1]
            xp = x.new_zeros([x.shape[0], c, x.shape[2] + 2 * p0, x.shape[3] + 2 * p1])  # +0 padding
            xp[:, :, p0 : p0 + x.shape[2], p1 : p1 + x.shape[3]] = x
            h = (xp.shape[2] - kh) // s0 + 1
            v = (xp.shape[3] - kw) // s1 + 1
            acc = x.new_zeros([0])
            first = True
            for ci in range(c):
                for i in range(kh):
                    for j in range(kw):
                        term = xp[:, ci : ci + 1, i : i + s0 * (h - 1) + 1 : s0, j : j + s1 * (v - 1) + 1 : s1] * w[:, ci, i, j].reshape(1, o, 1, 1)
                        if first:
                            acc = term
                            first = False
                        else:
                            acc = acc + term
            b = self.bias
            if b is not None:
                acc = acc + b.reshape(1, o, 1, 1)
            return acc

    class SpecAvgPool2d(_nn.Module):
        """avgpool2d as the window summed left to right in row-major order, then ``/ fl(kh*kw)``."""

        ARGS = ("kernel_size", "stride", "size")

        def __init__(self, kernel_size, stride, size):
            super().__init__()
            self.kernel_size = [int(kernel_size[0]), int(kernel_size[1])]
            self.stride = [int(stride[0]), int(stride[1])]
            self.register_buffer("size", size.detach().clone())  # fl(kh*kw) in the dtype

        def forward(self, x):
            kh, kw, s0, s1 = self.kernel_size[0], self.kernel_size[1], self.stride[0], self.stride[1]
            h = (x.shape[2] - kh) // s0 + 1
            v = (x.shape[3] - kw) // s1 + 1
            acc = x[:, :, 0 : s0 * (h - 1) + 1 : s0, 0 : s1 * (v - 1) + 1 : s1]
            for i in range(kh):
                for j in range(kw):
                    if i + j > 0:
                        acc = acc + x[:, :, i : i + s0 * (h - 1) + 1 : s0, j : j + s1 * (v - 1) + 1 : s1]
            return acc / self.size

    class _SpecConsts(_nn.Module):
        """Constants 0, 1, 3, 6 as 0-d tensors of the dtype: every arithmetic step is then one op
        in the dtype (torch computes a half op in float32 and rounds once: innocuous double rounding)."""

        ARGS = ("one",)

        def __init__(self, one):
            super().__init__()
            for name, v in (("zero", 0.0), ("one", 1.0), ("three", 3.0), ("six", 6.0)):
                self.register_buffer(name, _torch.tensor(v, dtype=one.dtype))

    class SpecHardsigmoid(_SpecConsts):
        """0 for x <= -3, (x + 3) / 6 for x < 3, else 1 (the pieces of docs/semantics.md)."""

        def forward(self, x):
            return _torch.where(x <= -3.0, self.zero, _torch.where(x < 3.0, (x + self.three) / self.six, self.one))

    class SpecHardswish(_SpecConsts):
        """0 for x <= -3, (x * (x + 3)) / 6 for x < 3, else x (torch's own kernel computes
        x * 6 / 6 there, which is not always x)."""

        def forward(self, x):
            return _torch.where(x <= -3.0, self.zero, _torch.where(x < 3.0, (x * (x + self.three)) / self.six, x))

    KC_MODULES = {c.__name__: c for c in (Abs, Clamp, SpecLinear, SpecConv2d, SpecAvgPool2d, SpecHardsigmoid, SpecHardswish)}
else:  # pragma: no cover
    KC_MODULES = {}


def _clamp_derivatives(lo: float, hi: float, dtype) -> list:
    """What the installed torch's autograd gives for torch.clamp(x, lo, hi) at x = lo and x = hi."""
    torch = _t()
    out = []
    for v in (lo, hi):
        x = torch.tensor(v, dtype=dtype, requires_grad=True)
        torch.clamp(x, lo, hi).backward()
        out.append(float(x.grad))
    return out


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
    from ..api import verify

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
    report = verify(doc, values=True)
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
        "branch_mismatch": report.branch_mismatch,
        "doc": doc,
    }


__all__ = ["check", "from_torch"]


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
            if any(n == "archive_format" or n.endswith("/archive_format") for n in names):
                if arch is not None:
                    raise InputError(f"{path}: a torch.export archive carries its own architecture; --arch is for a state_dict")
                return load_exported(path)
            if any(n.endswith("constants.pkl") or "/code/" in n for n in names) and arch is None:
                return torch.jit.load(path, map_location="cpu")
    except (OSError, RuntimeError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: cannot read: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if arch is not None:
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except Exception as exc:  # noqa: BLE001 - the weights-only unpickler refuses anything but tensors
            raise InputError(f"{path}: not a plain state_dict ({type(exc).__name__}); refusing to unpickle arbitrary objects") from None
        model = parse_arch(arch)
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise InputError(f"{path}: the state_dict does not fit --arch: {str(exc).splitlines()[0]}") from None
        return model
    if not trust_pickle:
        raise InputError(f"{path}: a pickled module runs code when loaded; give --arch for a state_dict, use TorchScript or a torch.export archive (.pt2), or pass --trust-pickle if you trust the file")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None


# ----------------------------------------------------------------------------------------------
# torch.export archives (.pt2, written by torch.export.save)
#
# torch.export.load is not pickle-free: it unpickles tensor-subclass weights and custom objects,
# retries sample inputs with weights_only=False when the safe load fails, evaluates symbolic-shape
# strings with sympy.sympify, and ExportedProgram.module() compiles the archive's guard code. So the
# archive is read into memory and checked first (plain raw-bytes weights and constants only, no
# compiled code, static shapes, no guard code, sample inputs that load with weights_only=True);
# only then is that same buffer given to torch.export.load, and only its graph is read (never
# .module()). The graph is walked op by op and rebuilt as an nn.Sequential with the archive's
# parameter tensors copied bit for bit.

_PT2_REFUSED_DIRS = ("data/aotinductor/", "data/executorch/", "data/mtia", "xl_model_weights/")
_PT2_LEGACY = {"version", "serialized_exported_program.json", "serialized_state_dict.pt", "serialized_state_dict.json",
               "serialized_constants.pt", "serialized_constants.json", "serialized_example_inputs.pt"}


def _has_key(node, key: str) -> bool:
    stack = [node]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if key in v:
                return True
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return False


def _check_pt2(path: str, data: bytes) -> None:
    """Refuse an archive whose loading could run code from the file (see the comment above)."""
    import io
    import json
    import warnings
    import zipfile

    torch = _t()
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
        names = z.namelist()
    except zipfile.BadZipFile as exc:
        raise InputError(f"{path}: not a torch.export archive ({exc})") from None
    if any(n in _PT2_LEGACY for n in names):
        raise InputError(f"{path}: an old torch.export archive format (its loader unpickles); re-save it with torch.export.save")
    fmt = [n for n in names if n == "archive_format" or n.endswith("/archive_format")]
    if len(fmt) != 1:
        raise InputError(f"{path}: not a torch.export archive (no single archive_format entry)")
    root = fmt[0][: -len("archive_format")]
    if z.read(fmt[0]).decode("utf-8", "replace").strip() != "pt2":
        raise InputError(f"{path}: not a torch.export archive (archive_format is not pt2)")
    rel = {n[len(root):]: n for n in names if n.startswith(root)}
    if len(rel) != len(names):
        raise InputError(f"{path}: entries outside the archive folder {root!r}")

    def bad(what):
        raise InputError(f"{path}: {what}; refusing to load it (loading could run code from the file)")

    for r in rel:
        if r.startswith(_PT2_REFUSED_DIRS):
            bad(f"{r}: compiled code (AOTInductor / ExecuTorch) is not supported")
        if r.startswith(("data/weights/", "data/constants/")) and r.endswith(".pt"):
            bad(f"{r}: pickled legacy weights")
    models = [r for r in rel if r.startswith("models/") and r.endswith(".json")]
    if not models:
        raise InputError(f"{path}: not a torch.export archive (no models/*.json)")
    for r in models:
        name = r[len("models/"):-len(".json")]
        try:
            prog = json.loads(z.read(rel[r]))
        except ValueError as exc:
            raise InputError(f"{path}: {r}: not JSON ({exc})") from None
        if prog.get("guards_code"):
            bad(f"{r}: guard code (Python source) in the program")
        if prog.get("range_constraints"):
            bad(f"{r}: dynamic shapes (symbolic expressions are evaluated with sympy.sympify); export with static shapes")
        if _has_key(prog, "expr_str"):
            bad(f"{r}: symbolic expressions (evaluated with sympy.sympify); export with static shapes")
        for kind in ("weights", "constants"):
            cfg_name = f"data/{kind}/{name}_{kind}_config.json"
            if cfg_name not in rel:
                continue
            try:
                cfg = json.loads(z.read(rel[cfg_name])).get("config", {})
            except (ValueError, AttributeError):
                raise InputError(f"{path}: {cfg_name}: not a payload config") from None
            for fqn, meta in cfg.items():
                if not isinstance(meta, dict) or meta.get("use_pickle", True) or not str(meta.get("path_name", "")).startswith(("weight_", "tensor_")):
                    bad(f"{cfg_name}: {fqn} is a pickled object, not raw tensor bytes")
        sample = f"data/sample_inputs/{name}.pt"
        if sample in rel:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    torch.load(io.BytesIO(z.read(rel[sample])), map_location="cpu", weights_only=True)
            except Exception as exc:  # noqa: BLE001 - the weights-only unpickler refuses anything but tensors and containers
                bad(f"{sample}: sample inputs that are not plain tensors ({type(exc).__name__})")


def load_exported(path: str):
    """An nn.Sequential rebuilt from a torch.export archive (see the comment above)."""
    import io
    import logging
    import warnings

    torch = _t()
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    _check_pt2(path, data)
    log = logging.getLogger("torch.export")
    level = log.level
    try:
        log.setLevel(logging.CRITICAL)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ep = torch.export.load(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - torch raises many types for archives it cannot read
        raise InputError(f"{path}: torch.export.load failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    finally:
        log.setLevel(level)
    return exported_to_sequential(ep, where=path)


def _seq_index(node):
    """The index of the top-level Sequential child this node came from (None if unknown)."""
    stack = node.meta.get("nn_module_stack") or {}
    paths = [v[0] for v in stack.values() if isinstance(v, tuple) and len(v) == 2]
    types = [v[1] for v in stack.values() if isinstance(v, tuple) and len(v) == 2]
    if not paths or paths[0] != "" or not str(types[0]).endswith("Sequential"):
        return None
    for p in paths[1:]:
        if p.isdigit():
            return int(p)
    return None


def _module_type(node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    vals = [v for v in stack.values() if isinstance(v, tuple) and len(v) == 2]
    return str(vals[-1][1]) if vals else ""


def _decomposed_maxpool1d(n, in_shape, here, aten, operator):
    """MaxPool1d after run_decompositions: unsqueeze(x, -2) -> max_pool2d(_with_indices) with kernel
    [1, k] and stride [1, s] (-> getitem 0) -> squeeze(-2). Returns the module and the nodes taken
    (the last one carries the pooled value)."""
    torch = _t()
    bad = InputError(f"{here}: only the unsqueeze of a decomposed MaxPool1d is supported")
    nd = len(in_shape) if in_shape is not None else None
    d = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim")
    users = list(n.users)
    if nd is None or d not in (-2, nd - 1) or len(users) != 1:
        raise bad
    pool = users[0]
    if pool.target not in (aten.max_pool2d.default, aten.max_pool2d_with_indices.default):
        raise bad
    a = list(pool.args) + [None] * 6
    k = list(a[1])
    s = list(a[2] or k)
    if len(k) != 2 or len(s) != 2 or k[0] != 1 or s[0] != 1 or any(_pair(a[3] or 0)) or any(v != 1 for v in _pair(a[4] or 1)) or a[5]:
        raise bad
    taken = [pool]
    val = pool
    if pool.target is aten.max_pool2d_with_indices.default:
        live = [u for u in pool.users if u.users]
        if any(u.target is not operator.getitem for u in pool.users) or len(live) != 1 or live[0].args[1] != 0:
            raise bad
        val = live[0]
        taken.append(val)
    sq = list(val.users)
    if len(sq) != 1 or sq[0].target not in (aten.squeeze.dims, aten.squeeze.dim):
        raise bad
    dims = sq[0].args[1]
    dims = list(dims) if isinstance(dims, (list, tuple)) else [dims]
    if len(dims) != 1 or dims[0] not in (-2, nd - 1):
        raise bad
    taken.append(sq[0])
    return torch.nn.MaxPool1d(k[1], s[1]), taken


def exported_to_sequential(ep, where: str = "exported program"):
    """Walk an ExportedProgram's graph (a chain of supported aten ops on one user input) and rebuild
    it as an nn.Sequential whose parameters are the program's tensors, copied bit for bit. Children
    of a top-level Sequential keep their index (an Identity fills the place of a child that left no
    node), so from_torch names the parameters as it does for the original module."""
    import operator

    torch = _t()
    nn = torch.nn
    aten = torch.ops.aten
    sig = ep.graph_signature
    from torch.export.graph_signature import InputKind, OutputKind

    tensors, user = {}, []
    for s in sig.input_specs:
        name = getattr(s.arg, "name", None)
        if s.kind == InputKind.USER_INPUT:
            user.append(name)
        elif s.kind in (InputKind.PARAMETER, InputKind.BUFFER) and s.target in ep.state_dict:
            tensors[name] = (ep.state_dict[s.target], s.target)
        elif s.kind in (InputKind.BUFFER, InputKind.CONSTANT_TENSOR) and s.target in ep.constants:
            tensors[name] = (ep.constants[s.target], s.target)
        else:
            raise InputError(f"{where}: graph input {name} ({s.kind.name}) is not supported")
    if len(user) != 1:
        raise InputError(f"{where}: the program must take exactly one input tensor (it takes {len(user)})")
    outs = [s for s in sig.output_specs]
    if len(outs) != 1 or outs[0].kind != OutputKind.USER_OUTPUT:
        raise InputError(f"{where}: the program must return exactly one tensor and mutate nothing")

    def shape(n):
        v = n.meta.get("val")
        return tuple(v.shape) if hasattr(v, "shape") else None

    consts = {}  # node -> (tensor, transposed?) for parameter tensors and their transposes

    def param(arg, what, nd):
        if not isinstance(arg, torch.fx.Node) or arg not in consts:
            raise InputError(f"{here}: the {what} must be a parameter of the program")
        t, tr = consts[arg]
        if t.dim() != nd:
            raise InputError(f"{here}: the {what} has shape {list(t.shape)}")
        return t, tr

    def num(v, what):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InputError(f"{here}: {what} must be a number, got {v!r}")
        return float(v)

    mods, idx = [], []  # rebuilt modules and their Sequential index (or None)
    skip = set()
    cur = None
    for n in ep.graph.nodes:
        here = f"{where}: node {n.name} ({n.target})" + (f" from {_module_type(n).rsplit('.', 1)[-1]}" if _module_type(n) else "")
        if n.op == "placeholder":
            if n.name == user[0]:
                cur = n
            elif n.name in tensors:
                consts[n] = (tensors[n.name][0], False)
            continue
        if n.op == "output":
            res = n.args[0]
            res = res[0] if isinstance(res, (tuple, list)) and len(res) == 1 else res
            if res is not cur:
                raise InputError(f"{where}: the output is not the end of the layer chain")
            break
        if n.op != "call_function":
            raise InputError(f"{here}: unsupported node kind {n.op}")
        if not n.users or n is cur or n in skip:
            continue  # dead code (the unused indices of max_pool2d_with_indices), or nodes already taken
        t, args, kw = n.target, list(n.args), dict(n.kwargs)

        def arg(i, name, default, args=args, kw=kw):
            return args[i] if len(args) > i else kw.get(name, default)

        # parameter transposes (linear decomposed into addmm/mm)
        if args and args[0] in consts and t in (aten.permute.default, aten.t.default, aten.transpose.int):
            w, tr = consts[args[0]]
            ok = w.dim() == 2 and (t is aten.t.default or (t is aten.permute.default and list(args[1]) == [1, 0]) or (t is aten.transpose.int and sorted(int(a) % 2 for a in args[1:3]) == [0, 1]))
            if not ok:
                raise InputError(f"{here}: only a transpose of a 2-D parameter is supported")
            consts[n] = (w, not tr)
            continue
        data = args[1] if t in (aten.addmm.default,) else (args[0] if args else None)
        if data is not cur:
            raise InputError(f"{here}: only a chain of layers on the input is supported")
        if len(cur.users) != 1:
            raise InputError(f"{here}: the value {cur.name} is used more than once (only chain graphs are supported)")
        pos = _seq_index(n)
        m = None
        if t is aten.linear.default or t in (aten.addmm.default, aten.mm.default, aten.matmul.default):
            if shape(cur) is not None and len(shape(cur)) != 2:
                raise InputError(f"{here}: a linear layer needs a [batch, features] input, got {list(shape(cur))}")
            if t is aten.linear.default:
                W, tr = param(args[1], "weight", 2)
                b = arg(2, "bias", None)
                W = W.t() if tr else W
            else:
                M, tr = param(args[2] if t is aten.addmm.default else args[1], "weight", 2)
                W = M if tr else M.t()  # x @ M: nn.Linear's weight is M transposed
                b = args[0] if t is aten.addmm.default else None
                if t is aten.addmm.default and (kw.get("beta", 1) != 1 or kw.get("alpha", 1) != 1):
                    raise InputError(f"{here}: only alpha = beta = 1")
            bt = param(b, "bias", 1)[0] if b is not None else None
            m = nn.Linear(W.shape[1], W.shape[0], bias=bt is not None, dtype=W.dtype)
            with torch.no_grad():
                m.weight.copy_(W)
                if bt is not None:
                    m.bias.copy_(bt)
        elif t in (aten.conv2d.default, aten.convolution.default):
            W, tr = param(args[1], "weight", 4)
            b = arg(2, "bias", None)
            bt = param(b, "bias", 1)[0] if b is not None else None
            if t is aten.conv2d.default:
                stride, padding, dilation, groups = arg(3, "stride", [1, 1]), arg(4, "padding", [0, 0]), arg(5, "dilation", [1, 1]), arg(6, "groups", 1)
                transposed = False
            else:
                stride, padding, dilation, transposed, _, groups = args[3:9]
            if transposed or int(groups) != 1 or list(_pair(dilation)) != [1, 1] or isinstance(padding, str):
                raise InputError(f"{here}: only groups = 1, dilation = 1, numeric padding, no transposed convolution")
            m = nn.Conv2d(W.shape[1], W.shape[0], tuple(W.shape[2:]), stride=tuple(_pair(stride)), padding=tuple(_pair(padding)), bias=bt is not None, dtype=W.dtype)
            with torch.no_grad():
                m.weight.copy_(W)
                if bt is not None:
                    m.bias.copy_(bt)
        elif t in (aten.max_pool2d.default, aten.max_pool2d_with_indices.default, aten.max_pool1d.default, aten.avg_pool2d.default):
            one = t is aten.max_pool1d.default
            k = list(arg(1, "kernel_size", None))
            s = list(arg(2, "stride", None) or k)
            k, s = ([k[0]], [s[0]]) if one else (list(_pair(k if len(k) > 1 else k[0])), list(_pair(s if len(s) > 1 else s[0])))
            pad = arg(3, "padding", 0)
            if t is aten.avg_pool2d.default:
                if any(_pair(pad)) or arg(4, "ceil_mode", False) or arg(6, "divisor_override", None) is not None:
                    raise InputError(f"{here}: padding, ceil_mode and divisor_override are not supported")
                m = nn.AvgPool2d(tuple(k), tuple(s))
            else:
                if any(_pair(pad)) or any(d != 1 for d in _pair(arg(4, "dilation", 1))) or arg(5, "ceil_mode", False):
                    raise InputError(f"{here}: padding, dilation and ceil_mode are not supported")
                m = nn.MaxPool1d(k[0], s[0]) if one else nn.MaxPool2d(tuple(k), tuple(s))
            if t is aten.max_pool2d_with_indices.default:
                live = [u for u in n.users if u.users]
                if any(u.target is not operator.getitem for u in n.users) or len(live) != 1 or live[0].args[1] != 0:
                    raise InputError(f"{here}: the pooling indices are used (only the pooled values are supported)")
                mods.append(m)
                idx.append(pos)
                cur = live[0]
                continue
        elif t is aten.unsqueeze.default:  # MaxPool1d decomposed: unsqueeze(-2), 2-D pool [1, k], squeeze(-2)
            m, last = _decomposed_maxpool1d(n, shape(cur), here, aten, operator)
            skip.update(last[:-1])
            cur = last[-1]
            mods.append(m)
            idx.append(pos)
            continue
        elif t is operator.getitem:
            raise InputError(f"{here}: unsupported use of a multi-output op")
        elif t is aten.flatten.using_ints:
            sd, ed = arg(1, "start_dim", 0), arg(2, "end_dim", -1)
            nd = len(shape(cur)) if shape(cur) is not None else None
            if sd != 1 or (ed != -1 and (nd is None or ed != nd - 1)):
                raise InputError(f"{here}: only flatten(start_dim=1) is supported (the batch axis stays)")
            m = nn.Flatten()
        elif t in (aten.view.default, aten.reshape.default, aten._unsafe_view.default):
            a, b = shape(cur), shape(n)
            if a is None or b is None or len(b) != 2 or b[0] != a[0]:
                raise InputError(f"{here}: only a reshape to [batch, features] (a flatten) is supported")
            m = nn.Flatten()
        elif t in (aten.relu.default,):
            m = nn.ReLU()
        elif t is aten.leaky_relu.default:
            m = nn.LeakyReLU(num(arg(1, "negative_slope", 0.01), "negative_slope"))
        elif t in (aten.hardtanh.default, aten.relu6.default):
            lo, hi = (0.0, 6.0) if t is aten.relu6.default else (num(arg(1, "min_val", -1.0), "min_val"), num(arg(2, "max_val", 1.0), "max_val"))
            m = nn.ReLU6() if (lo, hi) == (0.0, 6.0) and (_module_type(n).endswith("ReLU6") or not _module_type(n)) else nn.Hardtanh(lo, hi)
        elif t is aten.clamp.default:
            lo, hi = arg(1, "min", None), arg(2, "max", None)
            if lo is None or hi is None:
                raise InputError(f"{here}: clamp needs both bounds")
            m = Clamp(num(lo, "min"), num(hi, "max"))
        elif t is aten.hardsigmoid.default:
            m = nn.Hardsigmoid()
        elif t is aten.hardswish.default:
            m = nn.Hardswish()
        elif t is aten.sigmoid.default:
            m = nn.Sigmoid()
        elif t is aten.tanh.default:
            m = nn.Tanh()
        elif t is aten.abs.default:
            m = Abs()
        elif t in (aten.clone.default, aten.alias.default, aten.detach.default):
            cur = n
            continue
        else:
            raise InputError(f"{here}: unsupported operation")
        mods.append(m)
        idx.append(pos)
        cur = n
    # keep the original Sequential positions: fill the places of children that left no node
    out, last = [], -1
    for m, pos in zip(mods, idx):
        if pos is not None and pos > last:
            out += [nn.Identity() for _ in range(pos - last - 1)]
            last = pos
        else:
            last += 1
        out.append(m)
    if not out:
        raise InputError(f"{where}: the program has no layers")
    return nn.Sequential(*out)


def _children(module):
    """Sequential children of an nn.Module or a scripted module."""
    return list(module.children()) if len(list(module.children())) else [module]


def scripted_to_sequential(module):
    """Rebuild an nn.Sequential from a scripted Sequential (by original_name and attributes), with
    the parameters copied bit for bit (modules are created in the parameters' dtype)."""
    torch = _t()
    if isinstance(module, torch.nn.Sequential):
        return module
    if not hasattr(module, "original_name"):
        return module
    mods = []
    for ch in _children(module):
        name = getattr(ch, "original_name", type(ch).__name__)
        where = f"layer {len(mods)} ({name})"
        if name in KC_MODULES:
            cls = KC_MODULES[name]
            try:
                mods.append(cls(*[getattr(ch, a) for a in cls.ARGS]))
            except (AttributeError, RuntimeError, TypeError, IndexError) as exc:
                raise InputError(f"{where}: not kinkcheck's {name} module ({exc})") from None
            continue
        if name not in ARCH_LAYERS:
            raise InputError(f"{where}: unsupported module")
        cls = getattr(torch.nn, name)
        ps = list(ch.parameters())
        dt = {"dtype": ps[0].dtype} if ps else {}
        if name == "Linear":
            m = cls(ch.weight.shape[1], ch.weight.shape[0], bias=ch.bias is not None, **dt)
        elif name == "Conv2d":
            o, i, kh, kw = ch.weight.shape
            m = cls(i, o, (kh, kw), stride=tuple(ch.stride), padding=tuple(ch.padding), bias=ch.bias is not None, **dt)
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
        mods.append(m)
    return torch.nn.Sequential(*mods)


# ----------------------------------------------------------------------------------------------
# export: a network file back to a torch module, and through torch to TorchScript, torch.export
# and ONNX files (docs/interop.md)

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
