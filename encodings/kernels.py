"""Compiled kernels for the machine semantics' spec-order sums (optional: numba).

The machine semantics fixes the order of every dot product and sum (docs/semantics.md): a dot
product is ``acc = W[i,0]*x[0]; acc = acc + W[i,j]*x[j]`` for j = 1, 2, ..., each product and sum
rounded to the format; a sequential sum is ``acc = a[0]; acc = acc + a[j]``. Written as numpy calls
these are Python loops over the inner axis (one or two ufunc calls per step). The kernels here run
the same loops compiled, and compute the same bits:

- float32 / float64: the loops in the format itself. numba compiles without ``fastmath``, so LLVM
  neither reassociates nor contracts a product and a sum into an FMA: every operation is the
  correctly rounded IEEE operation, as numpy's ufuncs are. The vectorised axis is the batch (or the
  output unit), never the summed axis, so the order of each sum is untouched.
- every other format (float16, bfloat16, custom ``{exponent_bits, fraction_bits}``): each operation
  in binary64 and rounded once to the format (``round_to``, the same rounding as
  ``FloatFormat.round_array``), which is what ``MachineArith`` does; for float16, numpy's own path
  (binary32 then float16) gives the same bits because both double roundings are innocuous.

The kernels are optional: without numba (the ``fast`` extra) the numpy loops in ``machine.py`` run.
Which path runs (``mode()``):

- ``KINKCHECK_KERNELS=numpy``: never the kernels; ``=numba``: always (an error without numba);
- ``auto`` (default): the kernels once numba is imported anyway, or once this process has spent
  ``AUTO_AFTER`` Python-loop steps in the numpy path - importing numba costs ~0.3-0.5 s, more than
  a single small verification spends in the loops, so a one-shot CLI run stays on numpy while a
  long-running process (survey, search, benchmarks, repeated ``verify``) switches early.

Both paths are tested against each other (tests/test_kernels.py) with signed zeros, subnormals,
infinities and NaN. NaN payloads are whatever the hardware produces, as in numpy.
"""

from __future__ import annotations

import os
import sys

import numpy as np

AUTO_AFTER = 4000  # numpy-path loop steps before auto mode imports numba

_state = {"mode": None, "steps": 0, "numba": None}


def _env_mode() -> str:
    m = os.environ.get("KINKCHECK_KERNELS", "auto").strip().lower() or "auto"
    if m not in ("auto", "numba", "numpy"):
        raise ValueError(f"KINKCHECK_KERNELS must be auto, numba or numpy, got {m!r}")
    return m


def set_mode(mode: str | None) -> None:
    """Force ``"numba"`` / ``"numpy"`` / ``"auto"`` for this process (None: back to the environment)."""
    if mode not in (None, "auto", "numba", "numpy"):
        raise ValueError(f"mode must be auto, numba or numpy, got {mode!r}")
    _state["mode"] = mode


def mode() -> str:
    return _state["mode"] or _env_mode()


def available() -> bool:
    """numba importable (imports it)."""
    if _state["numba"] is None:
        try:
            import numba  # noqa: F401

            _state["numba"] = True
        except Exception:  # ImportError, or a numba that does not support this numpy
            _state["numba"] = False
    return _state["numba"]


def active(steps: int) -> bool:
    """Use the compiled kernels for a loop of ``steps`` Python steps?"""
    m = mode()
    if m == "numpy":
        return False
    if m == "numba":
        if not available():
            raise RuntimeError("KINKCHECK_KERNELS=numba but numba is not installed (pip install 'kinkcheck[fast]')")
        return True
    if _state["numba"] is False:
        return False
    if "numba" in sys.modules or _state["steps"] + steps > AUTO_AFTER:
        return available()
    _state["steps"] += steps
    return False


# ----------------------------------------------------------------------------------------------
# the compiled functions (built on first use)

_K: dict = {}


def _kernels() -> dict:
    if not _K:
        from . import _numba_kernels as nk

        _K.update({k: getattr(nk, k) for k in ("round_to", "dot_native_t", "dot_rounded", "seq_sum_native", "seq_sum_rounded", "round_array")})
    return _K


def _fmt_args(fmt):
    return int(fmt.emin), int(fmt.fraction_bits), float(fmt.max_finite)


def native_kind(fmt, dtype) -> bool:
    """The kernel runs in the array dtype itself (float32 / float64) rather than binary64 + rounding."""
    return dtype in (np.dtype(np.float32), np.dtype(np.float64)) and fmt.numpy_dtype is not None and np.dtype(fmt.numpy_dtype) == dtype


def dot(fmt, dtype, W, x, WT=None):
    """Spec-order W [out, in] . x [..., in] -> [..., out] in ``dtype`` (the machine arithmetic's
    array dtype: float16/float32/float64 for native formats, float64 holding format values else).
    ``WT``: W^T as a contiguous ``dtype`` array when the caller has it."""
    K = _kernels()
    W = np.asarray(W)
    x = np.asarray(x)
    lead = x.shape[:-1]
    n_in = x.shape[-1]
    O = W.shape[0]
    native = native_kind(fmt, dtype)
    wd = dtype if native else np.dtype(np.float64)
    x2 = np.ascontiguousarray(x.reshape(-1, n_in), dtype=wd)
    if native:
        WT = np.ascontiguousarray(W.T, dtype=wd) if WT is None else WT  # [in, out]
        out = np.empty((x2.shape[0], O), dtype=wd)
        K["dot_native_t"](WT, x2, out)
        return out.reshape(lead + (O,))
    Wc = np.ascontiguousarray(W, dtype=wd)
    xT = np.ascontiguousarray(x2.T)  # [in, N]
    out = np.empty((O, xT.shape[1]), dtype=wd)
    K["dot_rounded"](Wc, xT, out, *_fmt_args(fmt))
    return np.ascontiguousarray(out.T).reshape(lead + (O,)).astype(dtype, copy=False)


def seq_sum(fmt, dtype, a, axis=-1):
    """Spec-order sum along ``axis`` (first term first) in ``dtype``."""
    K = _kernels()
    a = np.moveaxis(np.asarray(a), axis, -1)
    lead = a.shape[:-1]
    native = native_kind(fmt, dtype)
    wd = dtype if native else np.dtype(np.float64)
    a2 = np.ascontiguousarray(a.reshape(-1, a.shape[-1]), dtype=wd)
    out = np.empty(a2.shape[0], dtype=wd)
    if native:
        K["seq_sum_native"](a2, out)
    else:
        K["seq_sum_rounded"](a2, out, *_fmt_args(fmt))
    res = out.reshape(lead).astype(dtype, copy=False)
    return res[()] if not lead else res


def round_array(fmt, a) -> np.ndarray:
    """Compiled ``FloatFormat.round_array`` (float64 in, float64 out)."""
    K = _kernels()
    a = np.ascontiguousarray(a, dtype=np.float64)
    out = np.empty_like(a)
    K["round_array"](a.reshape(-1), out.reshape(-1), *_fmt_args(fmt))
    return out
