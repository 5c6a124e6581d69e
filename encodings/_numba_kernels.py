"""numba-compiled spec-order loops for ``kernels.py`` (imported only when the kernels run).

Compiled without fastmath (no reassociation, no FMA contraction); cached on disk next to this file
(numba's ``cache=True``), so a process pays the compilation once per machine.
"""

from __future__ import annotations

import math

from numba import njit

jit = njit(cache=True, nogil=True, fastmath=False, error_model="numpy")


@jit
def round_to(v, emin, M, max_finite):
    """v (binary64) rounded to nearest-even in the format with min exponent emin and M fraction
    bits (subnormals, signed zeros, overflow to inf; inf and NaN pass through)."""
    if not (v - v == 0.0):  # inf or nan
        return v
    a = abs(v)
    if a == 0.0:
        return v
    _, e = math.frexp(a)  # a = f * 2**e, 0.5 <= f < 1
    k = max(e - 1, emin) - M
    scaled = math.ldexp(a, -k)  # exact, < 2**(M+1)
    f = math.floor(scaled)
    d = scaled - f
    if d > 0.5 or (d == 0.5 and f % 2.0 == 1.0):
        f += 1.0
    r = math.ldexp(f, k)
    if r > max_finite:
        r = math.inf
    return math.copysign(r, v)

@jit
def dot_rounded(W, xT, out, emin, M, max_finite):
    """out[i, n] = spec-order sum_j W[i, j] * xT[j, n], in binary64 with every product and sum
    rounded to the format (float16, bfloat16, custom formats)."""
    O, I = W.shape
    N = xT.shape[1]
    for i in range(O):
        w = W[i, 0]
        for n in range(N):
            out[i, n] = round_to(w * xT[0, n], emin, M, max_finite)
        for j in range(1, I):
            w = W[i, j]
            for n in range(N):
                out[i, n] = round_to(out[i, n] + round_to(w * xT[j, n], emin, M, max_finite), emin, M, max_finite)

@jit
def seq_sum_native(a, out):
    """out[r] = spec-order sum of a[r, :] (a [R, T], T >= 1)."""
    R, T = a.shape
    for r in range(R):
        acc = a[r, 0]
        for t in range(1, T):
            acc = acc + a[r, t]
        out[r] = acc

@jit
def seq_sum_rounded(a, out, emin, M, max_finite):
    R, T = a.shape
    for r in range(R):
        acc = a[r, 0]
        for t in range(1, T):
            acc = round_to(acc + a[r, t], emin, M, max_finite)
        out[r] = acc

@jit
def round_array(a, out, emin, M, max_finite):
    for i in range(a.size):
        out[i] = round_to(a[i], emin, M, max_finite)


@jit
def dot_native_t(WT, x, out):
    """out[n, i] = spec-order sum_j x[n, j] * WT[j, i] in the arrays' own dtype (WT = W^T, [in, out]).

    The output unit i is the vectorised axis (independent accumulators); the summed axis j runs
    in order, four terms per pass (the same left-to-right additions)."""
    I, O = WT.shape
    N = x.shape[0]
    for n in range(N):
        v = x[n, 0]
        for i in range(O):
            out[n, i] = WT[0, i] * v
        j = 1
        while j + 3 < I:
            v0 = x[n, j]
            v1 = x[n, j + 1]
            v2 = x[n, j + 2]
            v3 = x[n, j + 3]
            for i in range(O):
                out[n, i] = (((out[n, i] + WT[j, i] * v0) + WT[j + 1, i] * v1) + WT[j + 2, i] * v2) + WT[j + 3, i] * v3
            j += 4
        while j < I:
            v = x[n, j]
            for i in range(O):
                out[n, i] = out[n, i] + WT[j, i] * v
            j += 1
