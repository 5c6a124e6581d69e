"""Derivative conventions: which derivative AD uses at each kink, and how max-pool breaks ties.

The named conventions (``pytorch``, ``jax``, ``tensorflow``) are data files in ``conventions/``,
each entry citing the framework source it follows (see docs/conventions.md). A user convention is
an object mapping op names to kink derivatives (a list, one entry per kink in increasing order) or
to a max-pool tie-break (``"first" | "last" | "split"``, or ``{"beta": B}``: Boustany's J_beta =
B*J_split + (1-B)*J_first, B a value exactly representable in the network's dtype; see
``beta_rule``); ops it does not name fall back to the
``pytorch`` convention. An entry of a kink-derivative list is a number (any value syntax of the
network format; rounded to the network's dtype like every op constant) or ``"left"`` / ``"right"``:
the one-sided derivative of the op at that kink (derived by the activation library).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .errors import InputError

NAMED = ("pytorch", "jax", "tensorflow")
KINK_OPS = ("relu", "leaky_relu", "hardtanh", "relu6", "hardsigmoid", "hardswish", "abs", "l1")
SMOOTH_OPS = ("identity", "sigmoid", "tanh")
POOL_OPS = ("maxpool1d", "maxpool2d")
TIE_BREAKS = ("first", "last", "split")  # plus {"beta": B} (``tie_break_spec``)
SIDES = ("left", "right")


@dataclass(frozen=True)
class Convention:
    """A resolved convention: op -> kink-derivative entries or tie-break."""

    name: str
    kinks: dict = field(default_factory=dict)  # op -> tuple of entries ("left"/"right"/token)
    ties: dict = field(default_factory=dict)  # pool op -> tie-break
    origin: str = ""

    def kink_entries(self, op: str):
        return self.kinks.get(op)

    def tie_break(self, op: str):
        return self.ties.get(op, "first")

    def to_json(self) -> dict:
        ops: dict = {op: list(v) for op, v in self.kinks.items()}
        ops.update({op: dict(v) if isinstance(v, dict) else v for op, v in self.ties.items()})
        return {"name": self.name, "ops": ops}


def _show(v) -> str:
    try:
        return json.dumps(v)
    except (TypeError, ValueError):
        return repr(v)


def _check_entries(op, entries, where):
    if not isinstance(entries, (list, tuple)):
        raise InputError(f"{where}: kink derivatives of {op} must be a list, got {_show(entries)}")
    for i, e in enumerate(entries):
        if isinstance(e, bool) or not isinstance(e, (int, float, str)):
            raise InputError(f"{where}: {op}[{i}]: expected a number, \"left\" or \"right\", got {_show(e)}")
    return tuple(entries)


def _parse_ops(ops: dict, where: str, base: Convention | None, name: str, origin: str) -> Convention:
    if not isinstance(ops, dict):
        raise InputError(f"{where}: a convention must be an object mapping op names to kink derivatives or tie-breaks")
    kinks = dict(base.kinks) if base else {}
    ties = dict(base.ties) if base else {}
    for op, val in ops.items():
        if isinstance(val, dict) and not (op in POOL_OPS and "beta" in val):  # named-file schema: {"kink_derivatives": [...], "source": ...}
            if "tie_break" in val:
                val = val["tie_break"]
            elif "kink_derivatives" in val:
                val = val["kink_derivatives"]
            else:
                raise InputError(f"{where}: entry {op!r} has neither kink_derivatives nor tie_break")
        if op in POOL_OPS:
            ties[op] = tie_break_spec(val, f"{where}: {op}")
        elif op in KINK_OPS or op in SMOOTH_OPS:
            kinks[op] = _check_entries(op, val, where)
        else:
            raise InputError(f"{where}: unknown op {op!r} in convention (known: {', '.join(KINK_OPS + POOL_OPS)})")
    return Convention(name=name, kinks=kinks, ties=ties, origin=origin)


TIE_HELP = 'first, last, split or {"beta": B}'


def tie_break_spec(val, where: str):
    """A tie-break as written in a file: "first" | "last" | "split" or ``{"beta": B}`` (B in the
    value syntax of the network format; representability is checked against the dtype later, by
    ``beta_rule``). Returns the value unchanged (a dict is copied) or raises InputError."""
    if isinstance(val, str) and val in TIE_BREAKS:
        return val
    if isinstance(val, dict) and set(val) == {"beta"}:
        b = val["beta"]
        if isinstance(b, bool) or not isinstance(b, (int, float, str)):
            raise InputError(f"{where}: tie_break beta must be a number, got {_show(b)}")
        return {"beta": b}
    raise InputError(f"{where}: tie_break must be one of {TIE_HELP}, got {_show(val)}")


@dataclass(frozen=True)
class Beta:
    """Boustany's J_beta max-pool tie rule, resolved against a dtype: ``q`` the exact (dyadic)
    value of beta, ``token`` as written. At a window with m >= 2 tied maxima and cotangent g the
    exact rule gives beta*g/m to every tied entry plus (1-beta)*g to the first of them; the machine
    rule (docs/format.md) computes s = fl(fl(beta*g)/m) and b = fl(c*g) with c = 1 - beta rounded
    to the dtype, and gives s to every tied entry but the first, which gets fl(s + b)."""

    q: object  # mpq
    token: object = None

    def __str__(self) -> str:
        return f"beta={self.q}"

    def to_json(self) -> dict:
        return {"beta": self.token if self.token is not None else str(self.q)}


def beta_rule(spec, fmt, where: str):
    """Resolve a tie-break spec against the dtype ``fmt``: the strings unchanged; ``{"beta": B}``
    -> "first" for B = 0, "split" for B = 1 (the same rules), else ``Beta``. B must be finite and
    exactly representable in ``fmt`` (InputError otherwise)."""
    if not isinstance(spec, dict):
        return spec
    from gmpy2 import mpq

    from .formats import InvalidValue, NotRepresentable, parse_value

    tok = spec["beta"]
    try:
        v, _ = parse_value(tok, fmt, "exact")
    except NotRepresentable:
        raise InputError(f"{where}: tie_break beta {_show(tok)} is not exactly representable in {fmt.name} (beta multiplies the cotangent in the dtype)") from None
    except InvalidValue as exc:
        raise InputError(f"{where}: tie_break beta: {exc}") from None
    if math.isinf(v):
        raise InputError(f"{where}: tie_break beta must be finite, got {_show(tok)}")
    q = mpq(v)
    if q == 0:
        return "first"
    if q == 1:
        return "split"
    return Beta(q, tok)


def _load_named(name: str) -> Convention:
    text = resources.files(__package__).joinpath("conventions", f"{name}.json").read_text()
    data = json.loads(text)
    return _parse_ops(data["ops"], f"convention {name}", None, name, f"{data.get('framework', name)} {data.get('version', '')}".strip())


_CACHE: dict = {}


def named(name: str) -> Convention:
    if name not in _CACHE:
        _CACHE[name] = _load_named(name)
    return _CACHE[name]


MAX_FILE_BYTES = 1_000_000  # a convention file is a few hundred bytes; never read an unbounded file


def read_convention_file(path: str) -> dict:
    """A convention file's JSON (a regular file of at most MAX_FILE_BYTES; InputError otherwise)."""
    from .formats import json_float

    p = Path(path)
    try:
        if not p.is_file():
            raise InputError("not a regular file (a convention file is a JSON object)", source=path)
        with p.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise InputError(f"convention file larger than {MAX_FILE_BYTES} bytes", source=path)
        return json.loads(raw.decode("utf-8"), parse_float=json_float)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"cannot read convention file: {exc}", source=path) from None


def load_convention(spec=None, *, where: str = "convention", files: bool = True) -> Convention:
    """``None`` -> pytorch; a name; a dict (user mapping or file schema); a path to a JSON file
    (only with ``files``: a network file's ``"convention"`` is a name or an object, never a path)."""
    if spec is None:
        return named("pytorch")
    if isinstance(spec, Convention):
        return spec
    if isinstance(spec, str):
        if spec in NAMED:
            return named(spec)
        if not files:
            raise InputError(
                f"{where}: unknown convention {spec!r} (a network file names pytorch, jax or tensorflow, or "
                "gives an object such as {\"relu\": [1]}; a convention file is given on the command line: --convention FILE.json)"
            )
        if not Path(spec).exists():
            raise InputError(f"{where}: unknown convention {spec!r} (expected pytorch, jax, tensorflow or a JSON file)")
        return load_convention(read_convention_file(spec), where=spec)
    if isinstance(spec, dict):
        if "ops" in spec and isinstance(spec["ops"], dict):
            base_name = spec.get("base", "pytorch")
            base = named(base_name) if base_name in NAMED else named("pytorch")
            return _parse_ops(spec["ops"], where, base, str(spec.get("convention", spec.get("name", "custom"))), where)
        return _parse_ops(spec, where, named("pytorch"), "custom", where)
    raise InputError(f"{where}: a convention is a name (pytorch, jax, tensorflow), an object or a file")


def resolve_kink_derivatives(entries, act, fmt, where: str) -> tuple:
    """Turn convention entries into dtype values (floats), one per kink of ``act``."""
    from .formats import InvalidValue, parse_value

    if len(entries) != len(act.kinks):
        raise InputError(
            f"{where}: {act.name} has {len(act.kinks)} kink(s) but {len(entries)} kink derivative(s) were given"
        )
    out = []
    for k, e in enumerate(entries):
        if isinstance(e, str) and e in SIDES:
            q = act.one_sided(k, e)
            out.append(fmt.round_rational(q))
        else:
            try:
                v, _ = parse_value(e, fmt, "nearest")
            except InvalidValue as exc:
                raise InputError(f"{where}: kink_derivatives[{k}]: {exc}") from None
            if math.isinf(v):
                raise InputError(f"{where}: kink_derivatives[{k}]: {_show(e)} rounds to {v} in {fmt.name}; a kink derivative must be finite")
            out.append(v)
    return tuple(out)


def tie_rule(g: list) -> str:
    """The tie-break a framework used, read off the gradient of sum(max-pool(ones)) over one window."""
    if g[0] == 1 and all(v == 0 for v in g[1:]):
        return "first"
    if g[-1] == 1 and all(v == 0 for v in g[:-1]):
        return "last"
    if all(v == g[0] for v in g):
        return "split"
    return f"unrecognised gradient {g}"
