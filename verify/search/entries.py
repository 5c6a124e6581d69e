"""Which parameter entries a search frees: ``NAME`` (a scalar, or every entry of a tensor),
``NAME[i]``, ``NAME[i,j]`` ... with ``--box`` (a closed interval) or ``--free`` (within K ulps of
the file value). Every mistake is an ``InputError`` with one line: an unknown name (the valid names
are listed), an index out of range or of the wrong arity, a malformed spec, an entry given twice."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..encodings.errors import InputError
from ..encodings.formats import InvalidValue, parse_value


@dataclass(frozen=True)
class Entry:
    """One free scalar: entry ``index`` of parameter ``name``, at ``offset`` in theta."""

    name: str
    index: tuple
    offset: int

    @property
    def label(self) -> str:
        return self.name + ("[" + ",".join(map(str, self.index)) + "]" if self.index else "")


_REF = re.compile(r"^(?P<name>.+?)\[(?P<idx>[^\[\]]*)\]$")


def _by_name(net) -> dict:
    return {p.name: p for p in net.params}


def _names(net) -> str:
    shown = [p.name + (str(list(p.shape)).replace(" ", "") if p.shape else "") for p in net.params]
    more = f", ... ({len(shown)} in all)" if len(shown) > 20 else ""
    return ", ".join(shown[:20]) + more


def resolve(net, ref: str, what: str) -> list[Entry]:
    """The entries named by ``ref``: ``NAME`` (every entry) or ``NAME[i,j,...]`` (one)."""
    if not isinstance(ref, str) or not ref.strip():
        raise InputError(f"{what}: empty parameter name")
    ref = ref.strip()
    if ref in _by_name(net):
        p = _by_name(net)[ref]
        if not p.shape:
            return [Entry(p.name, (), p.offset)]
        return [Entry(p.name, idx, p.offset + k) for k, idx in enumerate(np.ndindex(*p.shape))]
    m = _REF.match(ref)
    name = m.group("name").strip() if m else ref
    if name not in _by_name(net):
        raise InputError(f"{what}: unknown parameter {name!r} (parameters: {_names(net)})")
    if m is None:  # pragma: no cover - a known name is returned above
        raise InputError(f"{what}: malformed entry {ref!r} (NAME or NAME[i,j])")
    p = _by_name(net)[name]
    parts = [s.strip() for s in m.group("idx").split(",")]
    if not all(re.fullmatch(r"[0-9]+", s) for s in parts):
        example = name + "[" + ",".join(["0"] * max(1, len(p.shape))) + "]"
        raise InputError(f"{what}: malformed index in {ref!r} (non-negative integers separated by commas, e.g. {example})")
    idx = tuple(int(s) for s in parts)
    if len(idx) != len(p.shape):
        raise InputError(f"{what}: {ref!r} has {len(idx)} index(es) but {name} has shape {list(p.shape)}")
    for axis, (i, d) in enumerate(zip(idx, p.shape)):
        if i >= d:
            raise InputError(f"{what}: index {i} out of range for axis {axis} of {name} (shape {list(p.shape)})")
    return [Entry(p.name, idx, p.offset + int(np.ravel_multi_index(idx, p.shape)))]


def split_refs(text: str) -> list[str]:
    """``a,b[1,2],c`` -> ``["a", "b[1,2]", "c"]`` (commas inside brackets belong to the index)."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [s.strip() for s in out if s.strip()]


def parse_box_item(item: str) -> tuple[str, str, str]:
    """``NAME[i,j]=LO:HI`` -> (ref, lo, hi); InputError when malformed."""
    ref, sep, rng = item.partition("=")
    lo, sep2, hi = rng.partition(":")
    if not sep or not sep2 or not ref.strip() or not lo.strip() or not hi.strip():
        raise InputError(f"--box {item!r}: expected NAME=LO:HI or NAME[i,j]=LO:HI")
    return ref.strip(), lo.strip(), hi.strip()


def bounds(net, box, free, ulps) -> dict:
    """{label: (Entry, lo, hi)} from ``box`` ({ref: (lo, hi)} or [(ref, lo, hi)]) and ``free``
    (refs within ``ulps`` of their file values)."""
    fmt = net.fmt
    out: dict = {}
    by_offset: dict = {}

    def put(e, lo, hi, src):
        if e.offset in by_offset:
            raise InputError(f"{src}: {e.label} is already free (by {by_offset[e.offset]}); give each entry once")
        by_offset[e.offset] = src
        out[e.label] = (e, lo, hi)

    items = list(box.items()) if isinstance(box, dict) else list(box or [])
    for item in items:
        ref, (lo, hi) = (item[0], item[1]) if len(item) == 2 else (item[0], item[1:])
        what = f"--box {ref}"
        try:
            lo_v, _ = parse_value(lo, fmt, "exact")
            hi_v, _ = parse_value(hi, fmt, "exact")
        except InvalidValue as exc:
            raise InputError(f"{what}: {exc}") from None
        if not lo_v <= hi_v:
            raise InputError(f"{what}: empty interval {lo}:{hi}")
        for e in resolve(net, ref, what):
            put(e, lo_v, hi_v, what)
    if isinstance(free, str):
        free = split_refs(free)
    if free:
        if ulps is None or isinstance(ulps, bool) or not isinstance(ulps, int) or ulps < 0:
            raise InputError(f"--free needs --ulps K with an integer K >= 0 (got {ulps!r})")
        for ref in free:
            what = f"--free {ref}"
            for e in resolve(net, ref, what):
                v = float(net.theta[e.offset])
                lo, hi = _step(fmt, v, -ulps), _step(fmt, v, ulps)
                put(e, lo, hi, what)
    if not out:
        raise InputError("name the free parameters with --box NAME=LO:HI or --free NAME --ulps K")
    return out


def _step(fmt, v, k):
    """v moved k places on the format's grid (clamped at +-inf)."""
    if not np.isfinite(v):
        return v
    o = fmt.ordinal(v) + k
    top = fmt.ordinal(float("inf"))
    return fmt.from_ordinal(max(-top, min(top, o)))


def set_entries(doc: dict, net, values: dict) -> dict:
    """The network document with the given entries ({label: (Entry, hex)}) replaced in place."""
    for e, hexval in values.values():
        spec = doc["params"][e.name]
        p = _by_name(net)[e.name]
        if not p.shape:
            new = {"value": hexval}
            if isinstance(spec, dict) and "trainable" in spec:
                new["trainable"] = spec["trainable"]
            doc["params"][e.name] = new
            continue
        full = net.theta[p.offset : p.offset + p.size].reshape(p.shape)
        vals = spec.get("values")
        if not _nested_ok(vals, p.shape):  # rewrite the tensor as hex floats of the file's values
            vals = np.vectorize(net.fmt.to_hex, otypes=[object])(full).tolist()
        node = vals
        for i in e.index[:-1]:
            node = node[i]
        node[e.index[-1]] = hexval
        spec["values"] = vals
    return doc


def _nested_ok(vals, shape) -> bool:
    try:
        return isinstance(vals, list) and np.array(vals, dtype=object).shape == tuple(shape)
    except ValueError:
        return False
