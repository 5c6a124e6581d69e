"""Model files (ONNX, torch.export, TorchScript, state_dict + --arch) and .npy data as a network
document, shared by ``kinkcheck import`` and ``kinkcheck verify MODEL --inputs X.npy``. Errors name
the .npy file and say how to cast."""

from __future__ import annotations

from ..encodings.errors import InputError


def _cast_hint(path: str, dtype: str) -> str:
    from pathlib import Path

    stem = Path(path).stem
    var = stem if stem.isidentifier() else "X"
    if dtype == "bfloat16":  # numpy has no bfloat16: float32 arrays holding bfloat16 numbers
        return f"cast with {var}.astype(np.float32) after rounding to bfloat16 (or pass --rounding nearest)"
    return f"cast with {var}.astype(np.{dtype}) (or pass --rounding nearest)"


def _read_npy(path: str, what: str):
    import numpy as _np

    try:
        a = _np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the {what}: {exc}") from None
    if not isinstance(a, _np.ndarray) or a.dtype.kind not in "fiu":
        raise InputError(f"{path}: the {what} must be one numeric array (.npy), got dtype {getattr(a, 'dtype', type(a).__name__)}")
    return a


def _fit_data(doc: dict, key: str, path: str, a, rounding: str | None) -> list:
    """Check (or, with --rounding nearest, round) the array ``a`` read from ``path`` against the
    network's dtype; returns notes. Errors name the .npy file and say how to cast."""
    import numpy as _np

    from ..encodings.formats import FloatFormat

    dtype = doc["dtype"]
    fmt = FloatFormat.from_spec(dtype)
    vals = _np.asarray(a, dtype=_np.float64)
    bad = _np.flatnonzero(~_np.isfinite(vals))
    if bad.size:
        raise InputError(f"{path}: entry {int(bad[0])} is {float(vals.reshape(-1)[bad[0]])!r} (data must be finite)")
    same = a.dtype.kind == "f" if dtype == "bfloat16" else a.dtype == _np.dtype(dtype)
    rounded = fmt.round_array(vals)
    changed = _np.flatnonzero(rounded.reshape(-1) != vals.reshape(-1))
    if rounding == "nearest":
        doc[key]["values"] = rounded.tolist()
        return [f"{path}: {changed.size} value(s) rounded to {dtype} (--rounding nearest)"] if changed.size else []
    if not same:
        raise InputError(f"{path}: dtype {a.dtype} is not the network's {dtype}; {_cast_hint(path, dtype)}")
    if changed.size:
        i = int(changed[0])
        raise InputError(f"{path}: entry {i} ({float(vals.reshape(-1)[i])!r}) is not a {dtype} number; {_cast_hint(path, dtype)}")
    return []


def _model_document(model: str, inputs: str, targets: str | None, loss: str, *, arch=None, trust_pickle=False, rounding=None):
    """A model file (ONNX, torch.export, TorchScript, state_dict + arch) and .npy data as a
    validated network document; shared by ``import`` and ``verify``. Returns (doc, notes)."""
    from ..api import load

    xa = _read_npy(inputs, "inputs")
    ya = _read_npy(targets, "targets") if targets else None
    if ya is not None and loss == "cross_entropy" and ya.dtype.kind not in "iu":
        var = targets.rsplit("/", 1)[-1].split(".")[0]
        raise InputError(f"{targets}: dtype {ya.dtype}: cross_entropy targets are class indices; cast with {var if var.isidentifier() else 'Y'}.astype(np.int64)")
    if model.endswith(".onnx"):
        from ..interop.onnx import from_onnx

        doc = from_onnx(model, xa, ya, loss)
    else:
        from ..interop.torch_archive import load_module, scripted_to_sequential
        from ..interop.torch_import import from_torch
        from ..interop.torch_modules import _t

        torch = _t()
        m = scripted_to_sequential(load_module(model, arch=arch, trust_pickle=trust_pickle))
        doc = from_torch(m, torch.from_numpy(xa), torch.from_numpy(ya) if ya is not None else None, loss)
    notes = _fit_data(doc, "inputs", inputs, xa, rounding)
    if ya is not None and loss != "cross_entropy":
        notes += _fit_data(doc, "targets", targets, ya, rounding)
    load(doc)  # validate before use
    return doc, notes
