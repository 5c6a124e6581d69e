"""The network model and the loader for the network file, format version 1.

``load(path_or_dict)`` validates everything (docs/format.md is the reference of the file)
and returns a :class:`Network`. Any defect raises :class:`InputError` with one line naming the file
and the place (tensor and index, layer and key). Nothing is evaluated here: the semantics live in
``exact.py`` and ``machine.py``.

Representation choices:
- Every machine number of every supported format is exactly a binary64 value, so parameters,
  inputs and targets are held as float64 numpy arrays (signed zeros and infinities included).
- All parameters are concatenated into one flat vector ``theta`` (declaration order, row-major).
  A weight or bias of a layer is a :class:`Ref`: per entry either a constant or ``sign *
  theta[src]``; this covers whole named tensors, inline tied scalars (``"w"``, ``"-w"``) and
  constants uniformly. The gradient is laid out over the trainable params in declaration order.

Why one module: it is the one reader of one file format. Every rule of the format (keys, shapes,
values, ops, losses, limits) is checked here in one pass over the document, so that each error can
name its place and a reader finds every rule in one file.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import activations as _act
from .conventions import beta_rule, load_convention, tie_break_spec
from .errors import InputError
from .formats import FloatFormat, FormatError, InvalidValue, json_float, parse_value

TOP_KEYS = {"kinkcheck", "dtype", "params", "inputs", "targets", "layers", "loss", "convention", "rounding", "description", "tensors"}
ELEMENTWISE = ("relu", "leaky_relu", "hardtanh", "relu6", "hardsigmoid", "hardswish", "abs", "identity", "sigmoid", "tanh")
LAYER_KEYS = {
    "linear": {"weight", "bias"},
    "conv2d": {"weight", "bias", "stride", "padding"},
    "maxpool1d": {"kernel", "stride", "tie_break"},
    "maxpool2d": {"kernel", "stride", "tie_break"},
    "avgpool2d": {"kernel", "stride"},
    "flatten": set(),
    "fixed_point": {"cell", "solver", "init"},
    "value_iteration": {"kernel", "gamma", "solver", "init"},
    **{op: {"kink_derivatives"} for op in ELEMENTWISE},
}
LAYER_KEYS["leaky_relu"] = {"kink_derivatives", "negative_slope"}
LAYER_KEYS["hardtanh"] = {"kink_derivatives", "min_val", "max_val"}
LOSSES = {"sum": set(), "dot": set(), "mse": {"reduction"}, "l1": {"reduction", "kink_derivatives"}, "cross_entropy": {"reduction"}}
OP_DEFAULTS = {"leaky_relu": {"negative_slope": 0.01}, "hardtanh": {"min_val": -1, "max_val": 1}}


@dataclass
class Param:
    name: str
    shape: tuple
    offset: int  # into theta
    trainable: bool
    grad_offset: int | None  # into the gradient vector (trainable params only)

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass
class Ref:
    """A weight/bias tensor: entry = const if src < 0 else sign * theta[src]."""

    shape: tuple
    src: np.ndarray  # int64
    sign: np.ndarray  # float64, +1/-1
    const: np.ndarray  # float64

    @classmethod
    def whole(cls, shape: tuple, offset: int, n: int) -> "Ref":
        """A whole named tensor, theta[offset:offset + n]; src/sign/const are made on first use."""
        r = cls.__new__(cls)
        r.shape = shape
        r.__dict__["_whole"] = (offset, n)
        r.__dict__["_span"] = (offset, offset + n) if n > 0 else None
        return r

    def __getattr__(self, name):  # only for attributes not set: the lazy arrays of ``whole``
        w = self.__dict__.get("_whole")
        if w is None or name not in ("src", "sign", "const"):
            raise AttributeError(name)
        offset, n = w
        self.__dict__.update(src=np.arange(offset, offset + n, dtype=np.int64), sign=np.ones(n), const=np.zeros(n))
        return self.__dict__[name]

    def values(self, theta: np.ndarray) -> np.ndarray:
        if theta.size == 0:
            return np.asarray(self.const, dtype=np.float64).reshape(self.shape)
        span = self.span
        if span is not None:  # a whole named tensor: a read-only view of theta, no gather
            v = theta[span[0] : span[1]].reshape(self.shape)
            v.flags.writeable = False
            return v
        safe = np.where(self.src >= 0, self.src, 0)
        vals = theta[safe]
        vals = np.where(self.sign < 0, -vals, vals)  # negation is exact (also for exact objects)
        return np.where(self.src >= 0, vals, self.const).reshape(self.shape)

    @property
    def has_params(self) -> bool:
        return bool((self.src >= 0).any())

    @property
    def span(self) -> tuple | None:
        """(start, stop) when the entries are theta[start:stop] in order with sign +1, else None."""
        if "_span" not in self.__dict__:
            src, n = self.src, self.src.size
            ok = n > 0 and src[0] >= 0 and bool((src == np.arange(src[0], src[0] + n)).all()) and bool((self.sign > 0).all())
            self.__dict__["_span"] = (int(src[0]), int(src[0]) + n) if ok else None
        return self.__dict__["_span"]


@dataclass
class Layer:
    index: int
    op: str
    in_shape: tuple
    out_shape: tuple
    weight: Ref | None = None
    bias: Ref | None = None
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    kernel: tuple = ()
    act: object = None  # activations.Activation for elementwise ops
    kink_derivatives: tuple | None = None  # per-layer override (entries, unresolved)
    tie_break: str | dict | None = None  # per-layer override ("first" | "last" | "split" | {"beta": B})
    fp: object = None  # fixedpoint.FixedPoint for op fixed_point (its act and kink_derivatives are the cell's)
    vi: object = None  # ValueIteration for op value_iteration (its kernel T is ``weight``)

    @property
    def label(self) -> str:
        return f"layer {self.index} ({self.op})"


@dataclass
class FixedPoint:
    """The parts of a fixed-point layer beyond a linear layer's weight (W) and bias (b)."""

    input_weight: object  # Ref U [n, in]
    method: str
    max_iter: int
    tol: float
    init: str = "zeros"
    m: int = 0  # anderson: history depth
    beta: float = 1.0  # anderson: mixing (damping) in (0, 1], rounded to the dtype


@dataclass
class ValueIteration:
    """The parts of a value_iteration layer beyond its kernel T [A, k, k] (``weight``)."""

    grid: tuple  # (H, W)
    actions: int
    k: int
    gamma: float
    method: str  # "iterate" (to a fixed point) or "unroll" (exactly ``iterations`` steps)
    max_iter: int = 100
    tol: float = 0.0
    iterations: int = 0
    init: str = "zeros"


FP_METHODS = ("iterate", "anderson")
FP_MAX_M = 64
FP_MAX_ITER = 1_000_000


@dataclass
class Loss:
    op: str
    reduction: str = "mean"
    kink_derivatives: tuple | None = None


@dataclass
class Network:
    source: str
    fmt: FloatFormat
    params: list
    theta: np.ndarray
    inputs: np.ndarray  # [N, *sample_shape] float64
    targets: np.ndarray | None
    layers: list
    loss: Loss
    convention: object
    rounding: str
    rounded: list = field(default_factory=list)  # places where "nearest" rounding changed a value
    raw: dict = field(default_factory=dict)  # the parsed JSON document (for certificates and export)

    @property
    def batch(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def trainable_index(self) -> np.ndarray:
        """theta indices of the gradient entries, in gradient order."""
        parts = [np.arange(p.offset, p.offset + p.size) for p in self.params if p.trainable]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    @property
    def n_grad(self) -> int:
        return sum(p.size for p in self.params if p.trainable)

    @property
    def out_shape(self) -> tuple:
        return self.layers[-1].out_shape if self.layers else tuple(self.inputs.shape[1:])

    def infinite(self) -> str | None:
        """Where an infinity is (a parameter, an input, a target or an inline constant of a
        layer), or None. The exact semantics is undefined there: verdicts are null with this reason."""
        if not self.all_finite():
            if not np.isfinite(self.theta).all():
                return "a parameter is infinite"
            if not np.isfinite(self.inputs).all():
                return "an input is infinite"
            return "a target is infinite"
        for L in self.layers:
            for what, ref in (("weight", L.weight), ("bias", L.bias)):
                if ref is not None and "_whole" not in ref.__dict__ and not np.isfinite(ref.const).all():  # a whole tensor has no constants
                    return f"an inline {what} of {L.label} is infinite"
        return None

    def all_finite(self, targets: bool = True) -> bool:
        """Parameters and inputs (and float targets, unless ``targets`` is False) are all finite
        (cached per parameter vector)."""
        hit = self.__dict__.get("_all_finite")
        if hit is None or hit[0] is not self.theta or hit[1] is not self.inputs or hit[2] is not self.targets:
            t = self.targets
            pi = bool(np.isfinite(self.theta).all() and np.isfinite(self.inputs).all())
            tt = t is None or t.dtype.kind != "f" or bool(np.isfinite(t).all())
            hit = self.__dict__["_all_finite"] = (self.theta, self.inputs, self.targets, pi, tt)
        return hit[3] and (hit[4] or not targets)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def grad_labels(self) -> list:
        """Human labels of the gradient entries: name or name[i,j]."""
        out = []
        for p in self.params:
            if not p.trainable:
                continue
            if not p.shape:
                out.append(p.name)
            else:  # row-major, built one axis at a time (the same strings as np.ndindex's order)
                labels = [f"{p.name}["]
                for k, n in enumerate(p.shape):
                    ends = [f"{i}{']' if k == len(p.shape) - 1 else ','}" for i in range(n)]
                    labels = [a + b for a in labels for b in ends]
                out.extend(labels)
        return out

    def subset(self, samples) -> "Network":
        """The same network on a sub-batch (for evaluating a few samples exactly)."""
        import copy

        new = copy.copy(self)
        idx = np.asarray(samples, dtype=np.int64)
        new.inputs = self.inputs[idx]
        new.targets = self.targets[idx] if self.targets is not None else None
        return new

    def with_theta(self, theta: np.ndarray) -> "Network":
        """A copy whose parameters are ``theta`` (float64, values of the format)."""
        import copy

        new = copy.copy(self)
        new.theta = np.asarray(theta, dtype=np.float64).copy()
        return new


# ----------------------------------------------------------------------------------------------
# loading


def _dup_check(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise _Dup(k)
        out[k] = v
    return out


class _Dup(Exception):
    pass


def _dup_where(text: str) -> str:
    """Re-parse with the pure-Python scanner to find the object that repeats a key (error path only)."""
    import json.decoder as jd
    import json.scanner as js

    where = {}

    def parse_object(s_and_end, *args, **kw):
        try:
            return jd.JSONObject(s_and_end, *args, **kw)
        except _Dup:
            where.setdefault("pos", s_and_end[1] - 1)
            raise

    dec = json.JSONDecoder(object_pairs_hook=_dup_check, parse_constant=_parse_constant, parse_float=json_float)
    dec.parse_object = parse_object
    dec.scan_once = js.py_make_scanner(dec)
    try:
        dec.decode(text)
    except (_Dup, ValueError, RecursionError):
        pass
    if "pos" not in where:
        return ""
    pos = where["pos"]
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f" in the object starting at line {line} column {col}"


def _parse_constant(tok):
    # JSON has no NaN/Infinity; Python's reader accepts them: NaN is rejected where a value is
    # expected (with its place), and the infinities are the infinities
    return math.nan if tok == "NaN" else (math.inf if tok == "Infinity" else -math.inf)


MAX_FILE_BYTES = 2**31  # a network file is read whole; never an unbounded read


def read_json(path) -> tuple[dict, str]:
    src = str(path)
    p = Path(path)
    try:
        if p.exists() and not p.is_dir() and not p.is_file():  # a device or a pipe: maybe endless
            raise InputError("not a regular file, expected a network file", source=src)
        with p.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise InputError(f"larger than {MAX_FILE_BYTES} bytes, too large for a network file", source=src)
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise InputError("no such file", source=src) from None
    except IsADirectoryError:
        raise InputError("is a directory, expected a network file", source=src) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc.__class__.__name__}: {exc}", source=src) from None
    try:
        data = json.loads(text, object_pairs_hook=_dup_check, parse_constant=_parse_constant, parse_float=json_float)
    except _Dup as d:
        raise InputError(f"duplicate key {d.args[0]!r}{_dup_where(text)}", source=src) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", source=src) from None
    except RecursionError:
        raise InputError("malformed JSON: nested too deeply", source=src) from None
    except ValueError as exc:  # e.g. an integer literal longer than Python's limit
        raise InputError(f"malformed JSON: {exc}", source=src) from None
    return data, src


def load(source, *, rounding: str | None = None, convention=None) -> Network:
    """Load a network file (path) or an already-parsed document (dict)."""
    if isinstance(source, (str, Path)):
        data, src = read_json(source)
    elif isinstance(source, dict):
        data, src = source, "<network>"
    else:
        raise InputError(f"expected a path or a dict, got {type(source).__name__}")
    try:
        loader = _Loader(data, src, rounding, convention)
        try:
            return loader.build()
        finally:
            if loader.sidecars is not None:
                loader.sidecars.close()
    except InputError as exc:
        if exc.source is None:
            raise exc.located(src) from None
        raise


MAX_AXES = 16
MAX_VALUES = 50_000_000  # per tensor
MAX_SIZE = 2**16  # kernel, stride, padding
MAX_WORK = 200_000_000  # entries of a conv2d patch matrix (batch x positions x receptive field)


def _conv_where(conv) -> str:
    origin = conv.origin if conv.origin and conv.origin != "convention" and conv.name not in ("pytorch", "jax", "tensorflow") else ""
    return f"convention {origin}".strip() if origin else f"convention ({conv.name})"


def check_convention(net: "Network", conv) -> None:
    """Validate a convention against a loaded network (raises InputError naming the convention)."""
    loader = _Loader.__new__(_Loader)
    loader.fmt = net.fmt
    try:
        loader.check_convention(conv, net.layers, net.loss)
    except InputError as exc:
        raise exc.located(net.source) if exc.source is None else exc from None


def _show(node) -> str:
    """A JSON value for an error message (NaN allowed)."""
    try:
        text = json.dumps(node)
    except (TypeError, ValueError):
        text = repr(node)
    return text if len(text) <= 60 else text[:57] + "..."


def _fmt_index(idx) -> str:
    return "[" + ",".join(str(i) for i in idx) + "]" if idx else ""


class _Loader:
    def __init__(self, data, src, rounding, convention):
        self.data = data
        self.src = src
        self.rounding_override = rounding
        self.convention_override = convention
        self.rounded = []
        self.sidecars = None  # tensorfiles.Sidecars, opened on the first sidecar tensor

    # -- helpers -------------------------------------------------------------------------
    def value(self, token, where: str, rounding: str | None = None) -> float:
        if isinstance(token, float) and math.isnan(token):
            raise InputError(f"{where}: NaN is not allowed")
        try:
            v, was_rounded = parse_value(token, self.fmt, rounding or self.rounding)
        except InvalidValue as exc:
            raise InputError(f"{where}: {exc}") from None
        if was_rounded and rounding is None:
            self.rounded.append(where)
        return v

    def tensor_values(self, spec, shape, name) -> np.ndarray:
        """Parse a nested list of values with the given shape."""
        fast = self._fast_values(spec, shape)
        if fast is not None:
            return fast
        out = np.empty(shape, dtype=np.float64)

        def walk(node, idx):
            depth = len(idx)
            if depth == len(shape):
                if isinstance(node, list):
                    raise InputError(f"{name}{_fmt_index(idx)}: expected a value, found a list (shape is {list(shape)})")
                out[tuple(idx)] = self.value(node, f"{name}{_fmt_index(idx)}")
                return
            if not isinstance(node, list):
                raise InputError(
                    f"{name}{_fmt_index(idx)}: expected a list of length {shape[depth]} (shape {list(shape)}), found {_show(node)}"
                )
            if len(node) != shape[depth]:
                raise InputError(
                    f"{name}{_fmt_index(idx)}: expected {shape[depth]} entries along axis {depth} (shape {list(shape)}), found {len(node)}"
                )
            for i, child in enumerate(node):
                walk(child, idx + [i])

        walk(spec, [])
        return out

    def _fast_values(self, spec, shape):
        """Vectorised path for the common case: a rectangular nested list of JSON numbers that are
        all exactly representable. Anything else (strings, bools, NaN, ragged lists, values that
        need rounding or an error message) returns None and takes the element-wise path."""
        if not shape or not isinstance(spec, list):
            return None
        try:
            arr = np.array(spec, dtype=object)
        except ValueError:
            return None
        if arr.shape != tuple(shape):
            return None
        flat = arr.reshape(-1)
        if not set(map(type, flat)) <= {float, int}:
            return None
        try:
            vals = flat.astype(np.float64)  # float(int) is correctly rounded: a JSON number's binary64 value
        except OverflowError:
            return None
        with np.errstate(all="ignore"):
            ok = np.isfinite(vals) & (self.fmt.round_array(vals) == vals)
        if not ok.all():
            return None
        return vals.reshape(shape)

    def tensor(self, spec, name, *, allow_trainable) -> tuple[np.ndarray, bool]:
        if not isinstance(spec, dict):
            raise InputError(f"{name}: a tensor must be an object {{\"shape\": [...], \"values\": [...]}} or {{\"value\": x}}")
        allowed = {"shape", "values", "value", "file", "key"} | ({"trainable"} if allow_trainable else set())
        for k in spec:
            if k not in allowed:
                raise InputError(f"{name}: unknown key {k!r} (allowed: {', '.join(sorted(allowed))})")
        trainable = spec.get("trainable", True)
        if not isinstance(trainable, bool):
            raise InputError(f"{name}: trainable must be true or false")
        if "values" not in spec and "value" not in spec and ("file" in spec or "key" in spec or "tensors" in self.data):
            vals = self.sidecar_tensor(spec, name)
            # params are concatenated into theta (float64) anyway: convert there, in one pass
            return (vals if name.startswith("params.") else np.asarray(vals, dtype=np.float64)), trainable
        if "file" in spec or "key" in spec:
            raise InputError(f"{name}: give either \"values\" or \"file\"/\"key\" (a sidecar tensor), not both")
        if "value" in spec:
            if "values" in spec or ("shape" in spec and spec["shape"] != []):
                raise InputError(f"{name}: give either \"value\" (a scalar) or \"shape\" and \"values\"")
            return np.array(self.value(spec["value"], name), dtype=np.float64), trainable
        if "shape" not in spec or "values" not in spec:
            raise InputError(f"{name}: missing {'shape' if 'shape' not in spec else 'values'}")
        shape = spec["shape"]
        self.check_shape(shape, name)
        return self.tensor_values(spec["values"], tuple(shape), name), trainable

    def sidecar_tensor(self, spec, name) -> np.ndarray:
        """A tensor stored in a sidecar .npz / .safetensors file (encodings/tensorfiles.py)."""
        from . import tensorfiles as TF

        shape = spec.get("shape")
        if shape is None:
            raise InputError(f"{name}: missing shape (a sidecar tensor declares its shape)")
        self.check_shape(shape, name)
        if self.sidecars is None:
            self.sidecars = TF.Sidecars(Path(self.src).parent if self.src != "<network>" else Path("."))
        file = spec.get("file", self.data.get("tensors"))
        key = spec.get("key", name.split(".", 1)[1] if name.startswith("params.") else name)
        vals, bits = self.sidecars.read(file, key, shape, name)
        return TF.checked_values(vals, bits, self.fmt, self.rounding, name, self.value, self.rounded, f" (from {file})")

    def check_shape(self, shape, name):
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise InputError(f"{name}: shape must be a list of non-negative integers, got {_show(shape)}")
        if len(shape) > MAX_AXES:
            raise InputError(f"{name}: {len(shape)} axes (at most {MAX_AXES})")
        if math.prod(shape) > MAX_VALUES:
            raise InputError(f"{name}: shape {shape} has {math.prod(shape)} values (at most {MAX_VALUES})")

    # -- top level -----------------------------------------------------------------------
    def build(self) -> Network:
        d = self.data
        if not isinstance(d, dict):
            raise InputError("the top level must be a JSON object")
        for k in d:
            if k not in TOP_KEYS:
                raise InputError(f"unknown top-level key {k!r}")
        if "kinkcheck" not in d:
            raise InputError('missing "kinkcheck": 1 (format version)')
        if type(d["kinkcheck"]) is not int or d["kinkcheck"] != 1:
            raise InputError(f'unsupported format version {_show(d["kinkcheck"])} (this kinkcheck reads version 1, the integer 1)')
        for k in ("dtype", "params", "inputs", "layers", "loss"):
            if k not in d:
                raise InputError(f"missing required key {k!r}")
        try:
            self.fmt = FloatFormat.from_spec(d["dtype"])
        except FormatError as exc:
            raise InputError(f"dtype: {exc}") from None
        rounding = self.rounding_override or d.get("rounding", "exact")
        if rounding not in ("exact", "nearest"):
            raise InputError(f'rounding must be "exact" or "nearest", got {_show(rounding)}')
        self.rounding = rounding

        # params
        if not isinstance(d["params"], dict):
            raise InputError("params must be an object mapping names to tensors")
        self.params: list[Param] = []
        chunks = []
        offset = goff = 0
        for name, spec in d["params"].items():
            if not isinstance(name, str) or not name or name.startswith("-"):
                raise InputError(f"params: invalid parameter name {name!r}")
            vals, trainable = self.tensor(spec, f"params.{name}", allow_trainable=True)
            p = Param(name, tuple(vals.shape), offset, trainable, goff if trainable else None)
            self.params.append(p)
            chunks.append(vals.reshape(-1))
            offset += p.size
            if trainable:
                goff += p.size
        self.by_name = {p.name: p for p in self.params}
        self.theta = np.concatenate(chunks, dtype=np.float64) if chunks else np.zeros(0)

        # data
        inputs, _ = self.tensor(d["inputs"], "inputs", allow_trainable=False)
        if inputs.ndim == 0 or inputs.shape[0] == 0:
            raise InputError("inputs: empty batch (the first axis is the batch and must have at least one sample)")
        self.inputs = inputs
        # layers
        if not isinstance(d["layers"], list):
            raise InputError("layers must be a list")
        layers = []
        shape = tuple(inputs.shape[1:])
        for i, spec in enumerate(d["layers"]):
            layer = self.layer(i, spec, shape)
            layers.append(layer)
            shape = layer.out_shape
        self.out_shape = shape
        loss, targets = self.loss(d["loss"], d.get("targets"), shape)
        if self.convention_override is not None:  # the caller's (CLI --convention: a name, an object or a FILE.json)
            convention = load_convention(self.convention_override, where="convention")
        else:  # in a network file: a name or an object, never a path
            convention = load_convention(d.get("convention"), where="convention", files=False)
        self.check_convention(convention, layers, loss)
        net = Network(
            source=self.src,
            fmt=self.fmt,
            params=self.params,
            theta=self.theta,
            inputs=inputs,
            targets=targets,
            layers=layers,
            loss=loss,
            convention=convention,
            rounding=rounding,
            rounded=self.rounded,
            raw=d,
        )
        return net

    def check_convention(self, conv, layers, loss):
        """Every convention entry the network uses must resolve (count and values)."""
        from .conventions import SIDES, resolve_kink_derivatives

        for op, entries in conv.kinks.items():  # every numeric entry, also of ops this network lacks
            for k, e in enumerate(entries):
                if not (isinstance(e, str) and e in SIDES):
                    try:
                        v, _ = parse_value(e, self.fmt, "nearest")
                    except InvalidValue as exc:
                        raise InputError(f"{_conv_where(conv)}: {op}: kink_derivatives[{k}]: {exc}") from None
                    if math.isinf(v):
                        raise InputError(
                            f"{_conv_where(conv)}: {op}: kink_derivatives[{k}]: {_show(e)} rounds to {v} in {self.fmt.name}; "
                            "a kink derivative must be finite"
                        )
        for L in layers:
            if L.op in ("maxpool1d", "maxpool2d") and L.tie_break is None:
                beta_rule(conv.tie_break(L.op), self.fmt, f"{_conv_where(conv)}: {L.op}")
            if L.act is not None and L.kink_derivatives is None:
                entries = conv.kink_entries(L.act.name if L.op == "fixed_point" else L.op) or ()
                if len(entries) != len(L.act.kinks) and L.act.smooth:
                    continue
                resolve_kink_derivatives(entries, L.act, self.fmt, f"{_conv_where(conv)}: {L.op}")
        if loss.op == "l1" and loss.kink_derivatives is None and conv.kink_entries("l1") is not None:
            resolve_kink_derivatives(conv.kink_entries("l1"), _act.activation("abs"), self.fmt, f"{_conv_where(conv)}: l1")

    # -- weights -------------------------------------------------------------------------
    def ref(self, spec, expected, where, what) -> Ref:
        """Resolve a weight/bias spec. ``expected``: required shape (None entries are free)."""
        if isinstance(spec, str):
            if spec not in self.by_name:
                raise InputError(f"{where}: {what} names unknown parameter {spec!r}")
            p = self.by_name[spec]
            if len(p.shape) != len(expected) or any(e is not None and e != s for e, s in zip(expected, p.shape)):
                exp = "[" + ", ".join("?" if e is None else str(e) for e in expected) + "]"
                raise InputError(f"{where}: {what} {spec!r} has shape {list(p.shape)}, expected {exp}")
            n = p.size
            return Ref.whole(p.shape, p.offset, n)
        if not isinstance(spec, list):
            raise InputError(f"{where}: {what} must be a parameter name or a nested list")
        # infer shape from nesting
        shape = []
        node = spec
        while isinstance(node, list):
            shape.append(len(node))
            if not node:
                break
            node = node[0]
        shape = tuple(shape)
        if len(shape) != len(expected) or any(e is not None and e != s for e, s in zip(expected, shape)):
            exp = "[" + ", ".join("?" if e is None else str(e) for e in expected) + "]"
            raise InputError(f"{where}: {what} has shape {list(shape)}, expected {exp}")
        n = int(np.prod(shape, dtype=np.int64))
        src = np.full(n, -1, dtype=np.int64)
        sign = np.ones(n)
        const = np.zeros(n)
        flat = [0]

        def walk(node, idx):
            if len(idx) == len(shape):
                at = f"{where}: {what}{_fmt_index(idx)}"
                k = flat[0]
                flat[0] += 1
                if isinstance(node, list):
                    raise InputError(f"{at}: expected a value, found a list")
                if isinstance(node, str):
                    neg = node.startswith("-")
                    name = node[1:] if neg else node
                    if name in self.by_name:
                        p = self.by_name[name]
                        if p.shape != ():
                            raise InputError(f"{at}: {name!r} is not a scalar parameter (shape {list(p.shape)}); inline entries name scalar params")
                        src[k] = p.offset
                        sign[k] = -1.0 if neg else 1.0
                        return
                    try:
                        const[k] = self.value(node, at)
                        return
                    except InputError:
                        raise InputError(f"{at}: {node!r} is neither a scalar parameter nor a value") from None
                const[k] = self.value(node, at)
                return
            if not isinstance(node, list) or len(node) != shape[len(idx)]:
                raise InputError(f"{where}: {what}{_fmt_index(idx)}: ragged nested list (expected {shape[len(idx)]} entries)")
            for i, c in enumerate(node):
                walk(c, idx + [i])

        walk(spec, [])
        return Ref(shape, src, sign, const)

    # -- layers --------------------------------------------------------------------------
    def int_pair(self, val, where, key, minimum):
        if isinstance(val, int) and not isinstance(val, bool):
            val = [val, val]
        if (
            not isinstance(val, list)
            or len(val) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and minimum <= v <= MAX_SIZE for v in val)
        ):
            raise InputError(f"{where}: {key} must be an integer in {minimum}..{MAX_SIZE} or a pair of them, got {_show(val)}")
        return tuple(val)

    def layer(self, i, spec, shape) -> Layer:
        where = f"layers[{i}]"
        if not isinstance(spec, dict) or "op" not in spec:
            raise InputError(f"{where}: a layer must be an object with an \"op\"")
        op = spec["op"]
        if not isinstance(op, str) or op not in LAYER_KEYS:
            raise InputError(f"{where}: unknown op {_show(op)} (known: {', '.join(LAYER_KEYS)})")
        where = f"layers[{i}] ({op})"
        for k in spec:
            if k != "op" and k not in LAYER_KEYS[op]:
                raise InputError(f"{where}: unknown key {k!r} (allowed: {', '.join(sorted(LAYER_KEYS[op])) or 'none'})")
        L = Layer(index=i, op=op, in_shape=shape, out_shape=shape)
        if op == "linear":
            if len(shape) != 1:
                raise InputError(f"{where}: expects a vector input, got shape {list(shape)} (add a flatten layer)")
            if "weight" not in spec:
                raise InputError(f"{where}: missing weight")
            L.weight = self.ref(spec["weight"], (None, shape[0]), where, "weight")
            out = L.weight.shape[0]
            if out == 0:
                raise InputError(f"{where}: weight has no rows")
            if spec.get("bias") is not None:
                L.bias = self.ref(spec["bias"], (out,), where, "bias")
            L.out_shape = (out,)
        elif op == "conv2d":
            if len(shape) != 3:
                raise InputError(f"{where}: expects a [C, H, W] input, got shape {list(shape)}")
            if "weight" not in spec:
                raise InputError(f"{where}: missing weight")
            L.weight = self.ref(spec["weight"], (None, shape[0], None, None), where, "weight")
            out, _, kh, kw = L.weight.shape
            if out == 0 or kh == 0 or kw == 0:
                raise InputError(f"{where}: weight has an empty axis {list(L.weight.shape)}")
            if spec.get("bias") is not None:
                L.bias = self.ref(spec["bias"], (out,), where, "bias")
            L.stride = self.int_pair(spec.get("stride", 1), where, "stride", 1)
            L.padding = self.int_pair(spec.get("padding", 0), where, "padding", 0)
            H = (shape[1] + 2 * L.padding[0] - kh) // L.stride[0] + 1
            W = (shape[2] + 2 * L.padding[1] - kw) // L.stride[1] + 1
            if H < 1 or W < 1 or shape[1] + 2 * L.padding[0] < kh or shape[2] + 2 * L.padding[1] < kw:
                raise InputError(f"{where}: kernel {kh}x{kw} does not fit the padded input {list(shape)}")
            L.kernel = (kh, kw)
            L.out_shape = (out, H, W)
            work = self.inputs.shape[0] * H * W * shape[0] * kh * kw
            if work > MAX_WORK:
                raise InputError(f"{where}: too large for exact verification ({work} patch entries; at most {MAX_WORK})")
        elif op in ("maxpool1d", "maxpool2d", "avgpool2d"):
            two = op != "maxpool1d"
            if "kernel" not in spec:
                raise InputError(f"{where}: missing kernel")
            if two:
                if len(shape) != 3:
                    raise InputError(f"{where}: expects a [C, H, W] input, got shape {list(shape)}")
                L.kernel = self.int_pair(spec["kernel"], where, "kernel", 1)
                L.stride = self.int_pair(spec.get("stride", list(L.kernel)), where, "stride", 1)
                H = (shape[1] - L.kernel[0]) // L.stride[0] + 1 if shape[1] >= L.kernel[0] else 0
                W = (shape[2] - L.kernel[1]) // L.stride[1] + 1 if shape[2] >= L.kernel[1] else 0
                if H < 1 or W < 1:
                    raise InputError(f"{where}: kernel {list(L.kernel)} does not fit the input {list(shape)}")
                L.out_shape = (shape[0], H, W)
            else:
                if len(shape) not in (1, 2):
                    raise InputError(f"{where}: expects a [L] or [C, L] input, got shape {list(shape)}")
                k = spec["kernel"]
                s = spec.get("stride", k)
                for key, v in (("kernel", k), ("stride", s)):
                    if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= MAX_SIZE:
                        raise InputError(f"{where}: {key} must be an integer in 1..{MAX_SIZE}, got {_show(v)}")
                if shape[-1] < k:
                    raise InputError(f"{where}: kernel {k} does not fit the input {list(shape)}")
                L.kernel = (k,)
                L.stride = (s,)
                L.out_shape = shape[:-1] + ((shape[-1] - k) // s + 1,)
            if "tie_break" in spec:
                L.tie_break = tie_break_spec(spec["tie_break"], where)
                beta_rule(L.tie_break, self.fmt, where)  # validate now
        elif op == "flatten":
            L.out_shape = (int(np.prod(shape, dtype=np.int64)),)
        elif op == "fixed_point":
            self.fixed_point(L, spec, where, shape)
        elif op == "value_iteration":
            self.value_iteration(L, spec, where, shape)
        else:  # elementwise
            params = {}
            for key, default in OP_DEFAULTS.get(op, {}).items():
                from .formats import exact

                v = self.value(spec.get(key, default), f"{where}: {key}", rounding="nearest")
                if not math.isfinite(v):
                    raise InputError(f"{where}: {key} must be finite")
                params[key] = exact(v)
            try:
                L.act = _act.activation(op, **params)
            except ValueError as exc:
                raise InputError(f"{where}: {exc}") from None
            if "kink_derivatives" in spec:
                from .conventions import _check_entries, resolve_kink_derivatives

                entries = _check_entries(op, spec["kink_derivatives"], where)
                resolve_kink_derivatives(entries, L.act, self.fmt, where)  # validate now
                L.kink_derivatives = entries
        return L

    def fixed_point(self, L, spec, where: str, shape: tuple) -> None:
        """A fixed-point layer z* = act(W z* + U x + b) (docs/format.md; its semantics: fixedpoint.py)."""
        if len(shape) != 1:
            raise InputError(f"{where}: expects a vector input, got shape {list(shape)} (add a flatten layer)")
        cell = spec.get("cell")
        if not isinstance(cell, dict):
            raise InputError(f"{where}: cell must be an object with weight, input_weight, bias (optional) and activation")
        for k in cell:
            if k not in ("weight", "input_weight", "bias", "activation"):
                raise InputError(f"{where}: cell: unknown key {k!r} (allowed: activation, bias, input_weight, weight)")
        for k in ("weight", "input_weight", "activation"):
            if k not in cell:
                raise InputError(f"{where}: cell: missing {k}")
        U = self.ref(cell["input_weight"], (None, shape[0]), where, "cell.input_weight")
        n = U.shape[0]
        if n == 0:
            raise InputError(f"{where}: cell.input_weight has no rows")
        L.weight = self.ref(cell["weight"], (n, n), where, "cell.weight")
        if cell.get("bias") is not None:
            L.bias = self.ref(cell["bias"], (n,), where, "cell.bias")
        act_spec = cell["activation"]
        if not isinstance(act_spec, dict) or act_spec.get("op") not in ELEMENTWISE:
            raise InputError(f"{where}: cell.activation must be an elementwise layer object, e.g. {{\"op\": \"relu\"}}")
        inner = self.layer(L.index, act_spec, (n,))
        L.act, L.kink_derivatives = inner.act, inner.kink_derivatives
        solver = spec.get("solver", {})
        if not isinstance(solver, dict):
            raise InputError(f"{where}: solver must be an object with method, max_iter, tol")
        method = solver.get("method", "iterate")
        if method not in FP_METHODS:
            raise InputError(f"{where}: solver.method must be \"iterate\" (plain fixed-point iteration) or \"anderson\", got {method!r}")
        allowed = ("max_iter", "method", "tol") + (("beta", "m") if method == "anderson" else ())
        for k in solver:
            if k not in allowed:
                raise InputError(f"{where}: solver: unknown key {k!r} for method {method} (allowed: {', '.join(sorted(allowed))})")
        m = solver.get("m", 5)
        if not isinstance(m, int) or isinstance(m, bool) or not 0 <= m <= FP_MAX_M:
            raise InputError(f"{where}: solver.m must be an integer in 0..{FP_MAX_M}")
        beta = self.value(solver.get("beta", 1), f"{where}: solver.beta", rounding="nearest")
        if not 0 < beta <= 1:
            raise InputError(f"{where}: solver.beta must be a value in (0, 1]")
        max_iter = solver.get("max_iter", 100)
        if not isinstance(max_iter, int) or isinstance(max_iter, bool) or not 1 <= max_iter <= FP_MAX_ITER:
            raise InputError(f"{where}: solver.max_iter must be an integer in 1..{FP_MAX_ITER}")
        tol = self.value(solver.get("tol", 0), f"{where}: solver.tol", rounding="nearest")
        if not (tol >= 0 and np.isfinite(tol)):
            raise InputError(f"{where}: solver.tol must be a finite value >= 0")
        init = spec.get("init", "zeros")
        if init != "zeros":
            raise InputError(f"{where}: init must be \"zeros\"")
        L.fp = FixedPoint(U, method, max_iter, float(tol), init, m if method == "anderson" else 0, float(beta))
        L.out_shape = (n,)

    def value_iteration(self, L, spec, where: str, shape: tuple) -> None:
        """A value-iteration block V = max_a (R_a + gamma conv_a(V)) (docs/format.md; its semantics:
        valueiteration.py)."""
        if len(shape) != 3:
            raise InputError(f"{where}: expects rewards [A, H, W] (one map per action), got shape {list(shape)}")
        nA, H, W = shape
        if "kernel" not in spec:
            raise InputError(f"{where}: missing kernel")
        L.weight = self.ref(spec["kernel"], (nA, None, None), where, "kernel")
        _, kh, kw = L.weight.shape
        if kh != kw or kh % 2 == 0:
            raise InputError(f"{where}: kernel must be [A, k, k] with k odd, got {list(L.weight.shape)}")
        if nA < 1 or H < 1 or W < 1:
            raise InputError(f"{where}: empty rewards {list(shape)}")
        if "gamma" not in spec:
            raise InputError(f"{where}: missing gamma")
        gamma = self.value(spec["gamma"], f"{where}: gamma", rounding="nearest")
        if not (np.isfinite(gamma) and gamma >= 0):
            raise InputError(f"{where}: gamma must be a finite value >= 0")
        solver = spec.get("solver", {})
        if not isinstance(solver, dict):
            raise InputError(f"{where}: solver must be an object")
        method = solver.get("method", "iterate")
        allowed = {"iterate": ("method", "max_iter", "tol"), "unroll": ("method", "iterations")}
        if method not in allowed:
            raise InputError(f"{where}: solver.method must be \"iterate\" (to a fixed point) or \"unroll\" (K steps), got {_show(method)}")
        for k in solver:
            if k not in allowed[method]:
                raise InputError(f"{where}: solver: unknown key {k!r} for method {method} (allowed: {', '.join(allowed[method])})")
        vi = ValueIteration((H, W), nA, kh, float(gamma), method)
        for key, default in (("max_iter", 100), ("iterations", 1)):
            v = solver.get(key, default)
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= FP_MAX_ITER:
                raise InputError(f"{where}: solver.{key} must be an integer in 1..{FP_MAX_ITER}")
            setattr(vi, key, v)
        tol = self.value(solver.get("tol", 0), f"{where}: solver.tol", rounding="nearest")
        if not (tol >= 0 and np.isfinite(tol)):
            raise InputError(f"{where}: solver.tol must be a finite value >= 0")
        vi.tol = float(tol)
        if spec.get("init", "zeros") != "zeros":
            raise InputError(f"{where}: init must be \"zeros\"")
        work = self.inputs.shape[0] * H * W * nA * kh * kh * (vi.iterations if method == "unroll" else 1)
        if work > MAX_WORK:
            raise InputError(f"{where}: too large for exact verification ({work} terms per step; at most {MAX_WORK})")
        L.vi = vi
        L.out_shape = (H, W)

    # -- loss ----------------------------------------------------------------------------
    def loss(self, spec, targets_spec, out_shape):
        where = "loss"
        if not isinstance(spec, dict) or "op" not in spec:
            raise InputError(f"{where}: must be an object with an \"op\"")
        op = spec["op"]
        if not isinstance(op, str) or op not in LOSSES:
            raise InputError(f"{where}: unknown loss {_show(op)} (known: {', '.join(LOSSES)})")
        for k in spec:
            if k != "op" and k not in LOSSES[op]:
                raise InputError(f"{where} ({op}): unknown key {k!r}")
        loss = Loss(op=op, reduction=spec.get("reduction", "mean"))
        if loss.reduction not in ("mean", "sum"):
            raise InputError(f"{where}: reduction must be \"mean\" or \"sum\"")
        N = self.inputs.shape[0]
        targets = None
        if op in ("dot", "mse", "l1"):
            if targets_spec is None:
                raise InputError(f"{where}: {op} needs targets")
            targets, _ = self.tensor(targets_spec, "targets", allow_trainable=False)
            if targets.shape != (N,) + tuple(out_shape):
                raise InputError(f"targets: shape {list(targets.shape)}, expected {[N] + list(out_shape)} (batch x network output)")
        elif op == "cross_entropy":
            if len(out_shape) != 1:
                raise InputError(f"{where}: cross_entropy needs a vector output, got shape {list(out_shape)}")
            if targets_spec is None:
                raise InputError(f"{where}: cross_entropy needs targets (class indices)")
            if not isinstance(targets_spec, dict) or not set(targets_spec) <= {"shape", "values"}:
                raise InputError("targets: expected {\"shape\": [N], \"values\": [class indices]}")
            vals = targets_spec.get("values")
            shape = targets_spec.get("shape")
            if not isinstance(shape, list) or any(type(d) is not int for d in shape):
                raise InputError(f"targets: shape must be a list of integers, got {_show(shape)}")
            if shape != [N] or not isinstance(vals, list) or len(vals) != N:
                raise InputError(f"targets: cross_entropy needs shape [{N}] of class indices, got shape {_show(shape)}")
            cls = []
            for i, v in enumerate(vals):
                if isinstance(v, float) and v.is_integer():
                    v = int(v)
                if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < out_shape[0]:
                    raise InputError(f"targets[{i}]: expected a class index in 0..{out_shape[0] - 1}, got {_show(v)}")
                cls.append(v)
            targets = np.array(cls, dtype=np.int64)
        elif targets_spec is not None:
            targets, _ = self.tensor(targets_spec, "targets", allow_trainable=False)
        if op == "l1":
            act = _act.activation("abs")
            if "kink_derivatives" in spec:
                from .conventions import _check_entries, resolve_kink_derivatives

                entries = _check_entries("l1", spec["kink_derivatives"], where)
                resolve_kink_derivatives(entries, act, self.fmt, where)
                loss.kink_derivatives = entries
        return loss, targets
