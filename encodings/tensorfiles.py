"""Binary tensors: a network file may keep tensors in a sidecar ``.npz`` or ``.safetensors`` file.

Syntax (docs/format.md, "Binary tensors"): a tensor ``{"shape": [256, 784], "file": "net.npz",
"key": "W0"}`` instead of ``"values"``; ``"file"`` defaults to the top-level ``"tensors"`` entry and
``"key"`` to the tensor's name (the param name, ``inputs``, ``targets``). The path is relative to
the directory of the JSON file (of the current directory for a document given as a dict).

Reading is strict and bounded: the stored dtype must be a binary floating-point one (npz: float16,
float32, float64; safetensors: F16, BF16, F32, F64), its shape must be the declared shape exactly,
and nothing larger than the declared shape is ever read (the npz member's header, or the
safetensors header's offsets, are checked before the data is). npz files are read with
``allow_pickle=False`` (object arrays are refused); the safetensors header is parsed here with
explicit bounds (no dependency). Every value must then be exactly representable in the network's
dtype, the same rule as for JSON values (NaN is refused; ``"rounding": "nearest"`` rounds).

Writing (``write_sidecar`` / ``externalize``): ``kinkcheck import`` moves tensors of more than
``INLINE_MAX`` values into ``<output stem>.npz`` (exact bits: the network's own numpy dtype, float32
for bfloat16, float64 for other custom formats).
"""

from __future__ import annotations

import json
import math
import struct
import zipfile
from pathlib import Path

import numpy as np

from .errors import InputError

INLINE_MAX = 4096  # import: tensors with more values go to the sidecar file
MAX_HEADER = 100 * 2**20  # safetensors JSON header bytes
SAFE_DTYPES = {"F16": np.dtype("<f2"), "F32": np.dtype("<f4"), "F64": np.dtype("<f8"), "BF16": None}
FLOAT_BITS = {2: (5, 10), 4: (8, 23), 8: (11, 52)}  # itemsize -> (exponent_bits, fraction_bits)


def _show_shape(shape) -> str:
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


class Sidecars:
    """Open sidecar files of one load (each file is opened once)."""

    def __init__(self, base: Path):
        self.base = base
        self.open: dict = {}

    def close(self):
        for f in self.open.values():
            f.close()
        self.open.clear()

    def read(self, file, key, shape, where) -> tuple[np.ndarray, tuple]:
        """The stored array (its own float dtype, read-only) and its format's (exponent_bits,
        fraction_bits)."""
        if file is None:
            raise InputError(f"{where}: no \"file\" for this tensor and no top-level \"tensors\" file")
        if not isinstance(file, str) or not file:
            raise InputError(f"{where}: \"file\" must be a file name (a .npz or .safetensors path relative to the network file)")
        if not isinstance(key, str) or not key:
            raise InputError(f"{where}: \"key\" must be a non-empty string")
        path = self.base / file
        label = f"{where}: {file}"
        if file not in self.open:
            if file.endswith(".npz"):
                self.open[file] = _Npz(path, label)
            elif file.endswith(".safetensors"):
                self.open[file] = _Safetensors(path, label)
            else:
                raise InputError(f"{label}: unknown tensor file type (expected .npz or .safetensors)")
        return self.open[file].read(key, tuple(shape), f"{label}[{key!r}]")


def _open(path: Path, label: str):
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise InputError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{label}: is a directory") from None
    except OSError as exc:
        raise InputError(f"{label}: cannot read: {exc.strerror or exc}") from None


def _check_dtype(dtype: np.dtype, label: str) -> tuple:
    if dtype.kind != "f" or dtype.itemsize not in FLOAT_BITS:
        raise InputError(f"{label}: dtype {dtype} is not a binary floating-point type (float16, float32 or float64)")
    return FLOAT_BITS[dtype.itemsize]


def _check_shape(stored, shape, label):
    if tuple(stored) != tuple(shape):
        raise InputError(f"{label}: shape {_show_shape(stored)} in the file, declared {_show_shape(shape)}")


class _Npz:
    def __init__(self, path, label):
        self.label = label
        self.fh = _open(path, label)
        try:
            self.zip = zipfile.ZipFile(self.fh)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            self.fh.close()
            raise InputError(f"{label}: not a readable .npz file ({exc})") from None

    def close(self):
        self.zip.close()
        self.fh.close()

    def read(self, key, shape, label):
        name = key + ".npy"
        try:
            info = self.zip.getinfo(name)
        except KeyError:
            keys = sorted(n[:-4] for n in self.zip.namelist() if n.endswith(".npy"))
            shown = ", ".join(keys[:10]) + (", ..." if len(keys) > 10 else "")
            raise InputError(f"{label}: no such array (the file has: {shown or 'none'})") from None
        fmt = np.lib.format
        try:
            with self.zip.open(info) as f:
                version = fmt.read_magic(f)
                if version == (1, 0):
                    stored, fortran, dtype = fmt.read_array_header_1_0(f)
                elif version in ((2, 0), (3, 0)):
                    stored, fortran, dtype = fmt.read_array_header_2_0(f)
                else:
                    raise ValueError(f"unsupported .npy version {version}")
                if dtype.hasobject:
                    raise InputError(f"{label}: an object array (pickled data is refused)")
                bits = _check_dtype(dtype, label)
                _check_shape(stored, shape, label)
                n = math.prod(shape)
                data = f.read(n * dtype.itemsize)  # bounded by the declared shape
                if len(data) != n * dtype.itemsize:
                    raise InputError(f"{label}: truncated data ({len(data)} of {n * dtype.itemsize} bytes)")
        except InputError:
            raise
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            raise InputError(f"{label}: cannot read the array: {exc}") from None
        a = np.frombuffer(data, dtype=dtype)
        if fortran:
            a = a.reshape(shape[::-1]).T
        return a.reshape(shape), bits


class _Safetensors:
    """The safetensors layout: an 8-byte little-endian header size N, N bytes of JSON
    ({name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}), then the
    data; offsets are relative to the start of the data."""

    def __init__(self, path, label):
        self.label = label
        self.fh = _open(path, label)
        try:
            size = self.fh.seek(0, 2)
            self.fh.seek(0)
            head = self.fh.read(8)
            if len(head) != 8:
                raise ValueError("shorter than its 8-byte header size")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER or n > size - 8:
                raise ValueError(f"header size {n} exceeds the file or {MAX_HEADER} bytes")
            header = json.loads(self.fh.read(n).decode("utf-8"))
            if not isinstance(header, dict):
                raise ValueError("the header is not a JSON object")
        except (ValueError, UnicodeDecodeError, OSError) as exc:
            self.fh.close()
            raise InputError(f"{label}: not a readable .safetensors file ({exc})") from None
        self.header = header
        self.data_start = 8 + n
        self.data_len = size - self.data_start

    def close(self):
        self.fh.close()

    def read(self, key, shape, label):
        entry = self.header.get(key) if key != "__metadata__" else None
        if not isinstance(entry, dict):
            keys = sorted(k for k in self.header if k != "__metadata__")
            shown = ", ".join(keys[:10]) + (", ..." if len(keys) > 10 else "")
            raise InputError(f"{label}: no such tensor (the file has: {shown or 'none'})")
        dt, stored, offs = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dt not in SAFE_DTYPES:
            raise InputError(f"{label}: dtype {dt!r} is not a binary floating-point type (F16, BF16, F32 or F64)")
        if not isinstance(stored, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in stored):
            raise InputError(f"{label}: malformed shape {stored!r} in the header")
        _check_shape(stored, shape, label)
        if not (isinstance(offs, list) and len(offs) == 2 and all(isinstance(o, int) and not isinstance(o, bool) for o in offs)):
            raise InputError(f"{label}: malformed data_offsets {offs!r} in the header")
        b, e = offs
        item = 2 if dt == "BF16" else SAFE_DTYPES[dt].itemsize
        n = math.prod(shape)
        if not 0 <= b <= e <= self.data_len or e - b != n * item:
            raise InputError(f"{label}: data_offsets [{b}, {e}] do not hold {n} values of {dt} within the {self.data_len} data bytes")
        try:
            self.fh.seek(self.data_start + b)
            data = self.fh.read(e - b)
        except OSError as exc:
            raise InputError(f"{label}: cannot read: {exc.strerror or exc}") from None
        if len(data) != e - b:
            raise InputError(f"{label}: truncated data")
        if dt == "BF16":
            u = np.frombuffer(data, dtype="<u2").astype(np.uint32) << 16
            return u.view(np.float32).reshape(shape), (8, 7)
        a = np.frombuffer(data, dtype=SAFE_DTYPES[dt])
        return a.reshape(shape), FLOAT_BITS[SAFE_DTYPES[dt].itemsize]


def _index(shape, flat: int) -> str:
    idx = np.unravel_index(flat, shape) if shape else ()
    return "[" + ",".join(str(int(i)) for i in idx) + "]" if idx else ""


def checked_values(vals, bits, fmt, rounding, name, value, rounded: list, origin: str) -> np.ndarray:
    """The stored values as the network's values: NaN refused; values not representable in ``fmt``
    refused (with the loader's message for the first one, via ``value``) or, under
    ``rounding == "nearest"``, rounded to nearest-even and their places appended to ``rounded``.
    The result may keep the stored dtype (every float dtype converts to float64 exactly)."""
    flat = vals.reshape(-1)
    nan = np.isnan(flat)
    if nan.any():
        raise InputError(f"{name}{_index(vals.shape, int(np.argmax(nan)))}: NaN is not allowed{origin}")
    if contained(bits, fmt):
        return vals  # every stored value is a value of the format: nothing to check
    flat = flat.astype(np.float64)
    with np.errstate(all="ignore"):
        if fmt.numpy_dtype is not None:
            r = flat.astype(fmt.numpy_dtype).astype(np.float64)
        else:
            r = fmt.round_array(flat)
    bad = r != flat
    if not bad.any():
        return flat.reshape(vals.shape)
    if rounding != "nearest":
        i = int(np.argmax(bad))
        try:
            value(float(flat[i]), f"{name}{_index(vals.shape, i)}")
        except InputError as exc:
            raise InputError(exc.bare + origin) from None
        raise InputError(f"{name}{_index(vals.shape, i)}: {flat[i]!r} is not representable in {fmt.name}{origin}")  # pragma: no cover
    rounded.extend(f"{name}{_index(vals.shape, int(i))}" for i in np.flatnonzero(bad))
    return fmt.round_array(flat).reshape(vals.shape)


def contained(bits: tuple, fmt) -> bool:
    """Every value of the stored format (exponent_bits, fraction_bits) is a value of ``fmt``."""
    E, M = bits
    return E <= fmt.exponent_bits and M <= fmt.fraction_bits


def is_sidecar(spec) -> bool:
    return isinstance(spec, dict) and "values" not in spec and "value" not in spec and ("file" in spec or "key" in spec or "shape" in spec)


# ----------------------------------------------------------------------------------------------
# writing


def storage_dtype(fmt) -> np.dtype:
    """The numpy dtype that holds every value of ``fmt`` exactly (the smallest of the three)."""
    if fmt.numpy_dtype is not None:
        return np.dtype(fmt.numpy_dtype)
    for size, (E, M) in sorted(FLOAT_BITS.items()):
        if fmt.exponent_bits <= E and fmt.fraction_bits <= M:
            return np.dtype(f"<f{size}")
    return np.dtype("<f8")  # pragma: no cover - every supported format fits binary64


def externalize(doc: dict, net, sidecar: str, *, inline_max: int = INLINE_MAX) -> tuple[dict, dict]:
    """(doc with every tensor of more than ``inline_max`` values moved out, {key: array}) for a
    loaded ``net`` of ``doc``; the moved tensors read ``{"shape": [...], "key": name}`` with the
    top-level ``"tensors": sidecar``. Values come from ``net`` (exact)."""
    dt = storage_dtype(net.fmt)
    arrays: dict = {}
    out = dict(doc)
    params = dict(doc["params"])
    for p in net.params:
        if p.size > inline_max:
            arrays[p.name] = net.theta[p.offset : p.offset + p.size].reshape(p.shape).astype(dt)
            spec = {"shape": list(p.shape), "key": p.name}
            if not p.trainable:
                spec["trainable"] = False
            params[p.name] = spec
    out["params"] = params
    for name, arr in (("inputs", net.inputs), ("targets", net.targets)):
        if arr is not None and arr.dtype.kind == "f" and arr.size > inline_max:
            arrays[name] = arr.astype(dt)
            out[name] = {"shape": list(arr.shape), "key": name}
    if arrays:
        out["tensors"] = sidecar
    return out, arrays


def write_npz(path, arrays: dict) -> None:
    """An uncompressed .npz (``np.savez``) written atomically."""
    from ..files import replace_atomic

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    replace_atomic(path, write, ".npz")


def inline_tensors(net) -> dict:
    """``net.raw`` with every sidecar tensor written inline (exact values), so that a document
    derived from it (a certificate, a counterexample) is self-contained; ``net.raw`` itself when
    it has no sidecar tensor."""
    raw = net.raw or {}
    secs = [("inputs", net.inputs), ("targets", net.targets)]
    if not any(is_sidecar(s) for s in (raw.get("params") or {}).values()) and not any(is_sidecar(raw.get(k)) for k, _ in secs):
        return raw
    out = {k: v for k, v in raw.items() if k != "tensors"}
    params = dict(raw["params"])
    for p in net.params:
        if is_sidecar(params.get(p.name)):
            spec = {"shape": list(p.shape), "values": _json_values(net.theta[p.offset : p.offset + p.size].reshape(p.shape))}
            if not p.trainable:
                spec["trainable"] = False
            params[p.name] = spec
    out["params"] = params
    for k, arr in secs:
        if is_sidecar(raw.get(k)):
            out[k] = {"shape": list(arr.shape), "values": _json_values(arr)}
    return out


def _json_values(a: np.ndarray):
    """Nested lists of JSON numbers (binary64 values, exact) with infinities as "inf" / "-inf"."""
    if np.isinf(a).any():
        flat = [("inf" if v > 0 else "-inf") if math.isinf(v) else v for v in a.reshape(-1).tolist()]
        return np.array(flat, dtype=object).reshape(a.shape).tolist()
    return a.tolist()
