"""Machine (IEEE) semantics: the network as a program running in the file's dtype.

Every operation is rounded to nearest-even in the format, with gradual underflow, IEEE signed zeros
and overflow to infinity. Values are numpy arrays:
- float16 / float32 / float64: numpy's own dtype, whose elementwise +, -, *, / are correctly rounded
  (numpy computes float16 in float32 and rounds again, which is exact: 24 >= 2*11 + 2);
- any other supported format (bfloat16, custom {exponent_bits, fraction_bits} with E <= 10, M <= 24):
  float64 arrays, each operation computed in binary64 and rounded once more with
  ``FloatFormat.round_array`` (innocuous double rounding, see formats.py).
Transcendental primitives (sigmoid, tanh, exp, log) are *correctly rounded* (a documented choice:
libm results differ between platforms): an exact enclosure is refined until both ends round to the
same format value (Ziv's strategy).

Evaluation order is fixed by ``arith.ArrayArith`` (dot products, sums, accumulations) and by the
network program (``program.py``); see docs/semantics.md.
"""

from __future__ import annotations

import weakref

import numpy as np

from . import kernels as _kernels
from .arith import ArrayArith
from .formats import FloatFormat, exact


class MachineArith(ArrayArith):
    exact = False
    whole_arrays = True  # elementwise programs may run on whole arrays (then select per entry)

    def __init__(self, fmt: FloatFormat, *, force_generic: bool = False):
        self.fmt = fmt
        self.native = fmt.numpy_dtype is not None and not force_generic
        self.dtype = np.dtype(fmt.numpy_dtype) if self.native else np.dtype(np.float64)
        self.name = f"machine[{fmt.name}]"

    # values are arrays of self.dtype
    def _r(self, v):
        if self.native:
            return v
        return self.fmt.round_array(np.asarray(v, dtype=np.float64))

    def const(self, q):
        if isinstance(q, float):
            v = q if self.fmt.is_representable(q) else self.fmt.round_rational(exact(q))
        else:
            v = self.fmt.round_rational(q)
        return self.dtype.type(v)

    def from_floats(self, a):
        return np.asarray(a, dtype=np.float64).astype(self.dtype)

    def param_values(self, ref, theta):
        """``from_floats(ref.values(theta))``, converted once per (reference, parameter vector,
        dtype) and kept on the reference, read-only (parameters are never written in place)."""
        cache = ref.__dict__.setdefault("_machine_values", {})
        hit = cache.get(self.dtype.str)
        if hit is not None and hit[0] is theta:
            return hit[1]
        v = ref.values(theta)
        if v.ndim == 2 and v.shape[0] > 1 and v.shape[1] > 1:
            # a matrix is kept as its contiguous transpose and handed out as a view: the spec-order
            # kernels read W^T, so no second copy is made (``_transposed`` finds it contiguous)
            WT = np.ascontiguousarray(self.from_floats(v).T)
            WT.flags.writeable = False
            W = WT.T
        else:
            W = self.from_floats(v)
        W.flags.writeable = False
        cache[self.dtype.str] = (theta, W)
        return W

    def zeros(self, shape):
        return np.zeros(shape, dtype=self.dtype)

    def add(self, a, b):
        with np.errstate(all="ignore"):
            return self._r(np.add(a, b, dtype=self.dtype))

    def sub(self, a, b):
        with np.errstate(all="ignore"):
            return self._r(np.subtract(a, b, dtype=self.dtype))

    def mul(self, a, b):
        with np.errstate(all="ignore"):
            return self._r(np.multiply(a, b, dtype=self.dtype))

    def div(self, a, b):
        with np.errstate(all="ignore"):
            return self._r(np.divide(a, b, dtype=self.dtype))

    def neg(self, a):
        return np.negative(a, dtype=self.dtype)

    def dot(self, W, x):
        """Same order as ArrayArith.dot (acc = W[:,0]*x[0]; acc = acc + W[:,j]*x[j]), with one
        errstate and in-place buffers: native dtypes round every ufunc result to the dtype; or the
        same loop compiled (``kernels.py``)."""
        x = np.asarray(x, dtype=self.dtype)
        W = np.asarray(W, dtype=self.dtype)
        if W.shape[1] > 1 and x.size and _kernels.active(W.shape[1]):
            with np.errstate(all="ignore"):
                return _kernels.dot(self.fmt, self.dtype, W, x, _transposed(W) if _kernels.native_kind(self.fmt, self.dtype) else None)
        WT = np.ascontiguousarray(W.T)
        xs = np.ascontiguousarray(np.moveaxis(x, -1, 0))[..., None]  # [in, ..., 1]
        with np.errstate(all="ignore"):
            acc = np.multiply(xs[0], WT[0])
            if self.native:
                tmp = np.empty_like(acc)
                for j in range(1, WT.shape[0]):
                    np.multiply(xs[j], WT[j], out=tmp)
                    np.add(acc, tmp, out=acc)
                return acc
            r = self.fmt.round_array
            acc = r(acc)
            for j in range(1, WT.shape[0]):
                acc = r(acc + r(np.multiply(xs[j], WT[j])))
            return acc

    def accumulate_params(self, blocks, n_theta):
        """``ArrayArith.accumulate_params`` without materialising the [N, n_theta] term matrix when
        every kept entry has its own parameter, one term per sample and a + sign (untied weights,
        the common case): each block's sample-order sums are then one spec-order dot product over
        the batch axis (outer blocks: acc = g[0,i]*x[0,j]; acc = acc + g[n,i]*x[n,j]) or one
        sequential sum (term blocks), which are the same operations in the same order (products
        commute exactly). Anything else takes the generic path."""
        parts = []
        spans = []  # (start, stop) of blocks whose entries are theta[start:stop] in order
        count = None
        for _, kind, payload, src, sign in blocks:
            if kind == "outer":
                g, x = payload
                if g.ndim != 2 or x.ndim != 2:
                    return super().accumulate_params(blocks, n_theta)
            elif payload.ndim != 3 or payload.shape[2] != 1:
                return super().accumulate_params(blocks, n_theta)
            n = src.size
            if n and src[0] >= 0 and src[-1] == src[0] + n - 1 and (sign > 0).all() and np.array_equal(src, np.arange(src[0], src[0] + n)):
                spans.append((int(src[0]), int(src[0]) + n))
                parts.append((kind, payload, src, None))
                continue
            keep = src >= 0
            if not keep.any():
                continue
            if (sign[keep] < 0).any():
                return super().accumulate_params(blocks, n_theta)  # -(a+b) and (-a)+(-b) differ at signed zeros
            if count is None:
                count = np.zeros(n_theta, dtype=np.int64)
            count += np.bincount(src[keep], minlength=n_theta)
            parts.append((kind, payload, src, keep))
        if count is not None:
            for a, b in spans:
                count[a:b] += 1
            if (count > 1).any():
                return super().accumulate_params(blocks, n_theta)
        else:
            spans.sort()
            if any(b0 > a1 for (_, b0), (a1, _) in zip(spans, spans[1:])):
                return super().accumulate_params(blocks, n_theta)
        out = self.zeros((n_theta,))
        for kind, payload, src, keep in parts:
            if kind == "outer":
                g, x = payload
                S = self.dot(np.ascontiguousarray(g.T), np.ascontiguousarray(x.T)).T  # [out, in]
            else:
                S = self.seq_sum(payload[:, :, 0], axis=0)
            S = np.asarray(S, dtype=self.dtype).reshape(-1)
            if keep is None:
                out[src[0] : src[0] + src.size] = S
            else:
                out[src[keep]] = S[keep]
        return out

    def seq_sum(self, a, axis=-1):
        a = np.asarray(a)
        n = a.shape[axis] if a.ndim else 0
        if n > 1 and _kernels.active(n):
            with np.errstate(all="ignore"):
                return _kernels.seq_sum(self.fmt, self.dtype, a, axis)
        return super().seq_sum(a, axis)

    def locate(self, a, kinks):
        a = np.asarray(a, dtype=np.float64)  # NaN: no kink, piece 0 (comparisons are false)
        piece = np.zeros(a.shape, dtype=np.int64)
        kink = np.full(a.shape, -1, dtype=np.int64)
        for j, k in enumerate(kinks):
            at = float(k.at)  # kinks are small rationals; compare exactly
            if at != k.at:
                above = np.array([exact(v) > k.at for v in a.reshape(-1)]).reshape(a.shape)
                piece += above
                continue
            piece += a > at
            kink[a == at] = j
        return piece, kink

    def cmp(self, a, b):
        a = np.asarray(a)
        b = np.asarray(b)
        return (np.greater(a, b).astype(np.int8) - np.less(a, b).astype(np.int8)).astype(np.int8)

    def max_first(self, windows):
        m = windows[..., 0]
        for j in range(1, windows.shape[-1]):
            m = np.where(windows[..., j] > m, windows[..., j], m)
        return m, windows == m[..., None]

    # correctly rounded transcendental primitives
    def _cr(self, a, enclosure):
        from .exact import lower, upper

        a = np.asarray(a)
        out = np.empty(a.shape, dtype=self.dtype)
        of = out.reshape(-1)
        for i, v in enumerate(a.reshape(-1).tolist()):
            of[i] = self.dtype.type(correctly_rounded(self.fmt, enclosure, v, lower, upper))
        return out

    def sigmoid(self, a):
        from .exact import sigmoid_enclosure

        return self._cr(a, sigmoid_enclosure)

    def tanh(self, a):
        from .exact import tanh_enclosure

        return self._cr(a, tanh_enclosure)

    def exp(self, a):
        from .exact import exp_enclosure

        return self._cr(a, exp_enclosure)

    def log(self, a):
        from .exact import log_enclosure

        return self._cr(a, log_enclosure)


_TRANSPOSED: dict = {}


def _transposed(W):
    """W^T contiguous; kept (until W is collected) for read-only W, i.e. cached parameters."""
    if W.flags.writeable:
        return None
    if W.T.flags.c_contiguous:
        return W.T  # a matrix from ``param_values``: its transpose is the stored array
    key = id(W)
    hit = _TRANSPOSED.get(key)
    if hit is not None and hit[0]() is W:
        return hit[1]
    WT = np.ascontiguousarray(W.T)
    _TRANSPOSED[key] = (weakref.ref(W, lambda _r, key=key, d=_TRANSPOSED: d.pop(key, None)), WT)
    return WT


def correctly_rounded(fmt, enclosure, v: float, lower, upper) -> float:
    """fmt-rounding of f(v) for a monotone f given by a certified enclosure (Ziv's loop)."""
    import math

    if math.isnan(v):
        return v
    if math.isinf(v):
        # limits: sigmoid(+-inf) = 1/0, tanh = +-1, exp(+inf)=inf, exp(-inf)=0, log(inf)=inf
        big = fmt.max_finite * (1 if v > 0 else -1)
        return correctly_rounded(fmt, enclosure, big, lower, upper) if enclosure.__name__ != "exp_enclosure" else (math.inf if v > 0 else 0.0)
    if enclosure.__name__ == "log_enclosure" and v <= 0:
        return -math.inf if v == 0 else math.nan
    if v == 0 and enclosure.__name__ == "tanh_enclosure":
        return v  # tanh(+-0) = +-0 (IEEE 754 9.2)
    q = exact(v)
    prec = 2 * fmt.precision + 16
    for _ in range(12):
        e = enclosure(q, prec)
        lo, hi = fmt.round_rational(lower(e)), fmt.round_rational(upper(e))
        if lo == hi and math.copysign(1, lo) == math.copysign(1, hi):
            return lo
        prec *= 2
    raise ArithmeticError(f"could not round f({v!r}) correctly")  # pragma: no cover - irrational values separate
