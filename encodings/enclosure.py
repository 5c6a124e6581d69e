"""A float64 filter with a rigorous error bound for the exact semantics.

Deciding where each exact pre-activation lies relative to the kinks is what the verdicts need; most
signs are far from doubt. This pass evaluates the network in binary64 (BLAS matrix products) and
carries, for every value, a radius r with |exact - center| <= r. A unit whose enclosure
[c - r, c + r] avoids every kink has a decided branch; the samples with any undecided unit (max-pool
window, l1 residual) are evaluated exactly (``exact.py``) instead. Verdicts therefore never rest on
a float: the filter only ever says "decided" when the bound proves it.

The bound (Higham, Accuracy and Stability of Numerical Algorithms, 3.1/3.5): a dot product of n
binary64 terms computed in any order, with or without FMA, has error at most
gamma_n * sum |w_i x_i| plus n * 2^-1074 for underflowing products; the exact input error propagates
through |W| r. Both sums are bounded together by Cauchy-Schwarz, ||W_i|| * ||s|| (``_linear``), so
a linear layer costs one matrix product (the center) plus O(N (in + out)). Every bound is computed in binary64 and inflated by (1 + 2^-20), far more than the
rounding of the bound computation itself (relative 2^-40 for n < 2^12... and gamma_n < 2^-33 for any
n here). Elementwise ops are Lipschitz (constant from the activation library's derived one-sided
derivatives) plus the binary64 evaluation error of their piece programs. Transcendental ops
(sigmoid, tanh, cross-entropy) are outside the filter: networks with them are evaluated exactly.

The only assumption: numpy's matrix product returns, for each entry, *some* sum of correctly
rounded products (true of every BLAS on IEEE hardware without flush-to-zero).
"""

from __future__ import annotations

import math

import numpy as np

from . import program as P

U = 2.0**-53
# absolute error terms (underflow) are bounded by ABS = 2^-900 >= n * 4 * 2^-1074 for any size here;
# a normal number on purpose: subnormal radii make BLAS products (and x86) orders of magnitude slower
ETA = 2.0**-1074
ABS = 2.0**-900
INFLATE = 1.0 + 2.0**-20


def gamma(n: int) -> float:
    return (n * U) / (1.0 - n * U) * INFLATE


class Unsupported(Exception):
    pass


_LIPSCHITZ: dict = {}


def _lipschitz(act) -> float:
    """Global Lipschitz constant of a piecewise-polynomial activation from its derived pieces
    (computed once per activation object)."""
    key = id(act)
    hit = _LIPSCHITZ.get(key)
    if hit is not None and hit[0] is act:
        return hit[1]
    v = _lipschitz_of(act)
    _LIPSCHITZ[key] = (act, v)
    return v


def _lipschitz_of(act) -> float:
    best = 0.0
    for pc in act.pieces:
        if pc.dconst is not None:  # a constant derivative (known without sympy)
            best = max(best, abs(float(pc.dconst)))
            continue
        if pc.lo is None or pc.hi is None:
            raise Unsupported(f"{act.name}: unbounded derivative")
        from .activations import X

        d = pc.dexpr
        if d.free_symbols:
            # linear derivative on a bounded piece (hardswish): max |d| at the ends
            if pc.lo is None or pc.hi is None:
                raise Unsupported(f"{act.name}: unbounded derivative")
            vals = [abs(float(d.subs(X, v))) for v in (pc.lo, pc.hi)]
            best = max(best, *vals)
        else:
            best = max(best, abs(float(d)))
    return best * INFLATE


def _piece_eval_error(act, c, y):
    """Bound on |f64-evaluated piece program - exact piece value at c| (not counting input error)."""
    # relu/leaky/hardtanh/relu6/abs/identity: at most one rounding of the result;
    # hardsigmoid: (x + 3) / 6: two roundings; hardswish: (x * (x + 3)) / 6: three roundings.
    k = {"hardsigmoid": 3.0, "hardswish": 5.0}.get(act.name, 1.0)
    mag = np.abs(y)
    if act.name == "hardswish":
        mag = np.abs(c) * (np.abs(c) + 3.0) / 6.0 + np.abs(c)
    elif act.name == "hardsigmoid":
        mag = (np.abs(c) + 3.0) / 6.0
    return (k * U * mag + ABS) * INFLATE


def _finite(c, r):
    bad = ~(np.isfinite(c) & np.isfinite(r))
    if bad.any():
        r = np.where(bad, np.inf, r)
        c = np.where(bad, 0.0, c)
    return c, r


def norm_upper(a) -> np.ndarray:
    """An upper bound on the exact Euclidean norm of each row (last axis) of a finite,
    nonnegative binary64 array.

    Rows are scaled by their maximum m first (so no square overflows), and every rounding is
    covered: t = a/m and t*t err by a relative u (or underflow, absolute < 2^-1074 each), the sum
    of n terms by a relative (n - 1) u, sqrt and the final product by u each; hence
    ||a|| <= m sqrt(q + n 2^-1070) (1 + 2^-30) for n < 2^20, evaluated as written (the factor
    (1 + 2^-30) also covers the rounding of this expression itself)."""
    a = np.asarray(a, dtype=np.float64)
    n = a.shape[-1]
    if n == 0:
        return np.zeros(a.shape[:-1])
    with np.errstate(all="ignore"):
        m = a.max(axis=-1)
        if m.size and bool(((m >= 2.0**-400) & (m <= 2.0**400)).all()):
            # no scaling needed: no square overflows, and underflowing squares err by at most
            # n 2^-1074 in all, a relative 2^-250 of the sum (>= m^2 >= 2^-800)
            return np.sqrt(np.einsum("...j,...j->...", a, a)) * (1.0 + 2.0**-30)
        safe = np.where(m > 0, m, 1.0)
        t = a / safe[..., None]
        q = np.einsum("...j,...j->...", t, t)
        return np.where(m > 0, m * np.sqrt(q + n * 2.0**-1070) * (1.0 + 2.0**-30), 0.0)


def _linear(c, r, W, b, nW=None):
    """Enclosure of W x + b for x in [c - r, c + r] (batched: c, r [..., in]).

    The center is one binary64 matrix product. The radius needs sum_j |W_ij| s_j with
    s = |c| + (INFLATE / gamma) r (the rounding error gamma_{n+1} sum |W_ij c_j| plus the
    propagated INFLATE sum |W_ij| r_j, both nonnegative); instead of a second matrix product it
    is bounded by Cauchy-Schwarz: ||W_i|| ||s||, with ``norm_upper`` (||W_i|| computed once per
    layer). This costs O(N (in + out)) and is at most a few times looser than |W| s, which only
    matters for units within ~1e-12 (relative) of a kink; those go to the exact evaluation, as
    before. radius = (gamma_{n+1} (||W_i|| ||s|| + |b_i|) + ABS) * INFLATE, where INFLATE
    covers the relative rounding (< 2^-29 in all) of computing s and the product."""
    n = W.shape[1] + (1 if b is not None else 0)
    g = gamma(n + 1)
    with np.errstate(all="ignore"):
        if nW is None:
            nW = norm_upper(np.abs(W))
        yc = c @ W.T
        s = np.abs(c)
        if r is not None and r.any():
            s += r * (INFLATE / g)
        ns = norm_upper(s)
        yr = ns[..., None] * nW
        if b is not None:
            yc += b
            yr += np.abs(b)
        yr *= g
        yr += ABS
        yr *= INFLATE
    return _finite(yc, yr)


def _weight_norms(net, L):
    """(W, upper bounds of its row norms) of a layer, computed once per (parameters, layer)."""
    cache = net.__dict__.setdefault("_weight_norms", {})
    hit = cache.get(L.index)
    if hit is not None and hit[0] is net.theta:
        return hit[1], hit[2]
    W = L.weight.values(net.theta)
    W2 = W.reshape(W.shape[0], -1)
    rows = max(1, (1 << 20) // max(1, W2.shape[1]))  # |W| in blocks of ~8 MiB (row norms are per row)
    nW = np.concatenate([norm_upper(np.abs(W2[i : i + rows])) for i in range(0, W2.shape[0], rows)]) if W2.shape[0] else norm_upper(np.abs(W2))
    cache[L.index] = (net.theta, W, nW)
    return W, nW


class Enclosures:
    """Per layer input enclosures (center, radius) over the whole batch."""

    def __init__(self, net):
        self.net = net
        self.c: list = []
        self.r: list = []
        self.residual = None  # (c, r) of out - target for l1


def forward(net) -> Enclosures:
    """Raise Unsupported for networks outside the filter (transcendental ops, infinite values)."""
    if net.infinite():
        raise Unsupported("non-finite values")
    if net.loss.op == "cross_entropy":
        pass  # the loss itself has no kink; only its value is transcendental
    N = net.batch
    E = Enclosures(net)
    c = net.inputs  # float64, never written (each layer makes new arrays)
    r = np.zeros_like(c)
    for L in net.layers:
        E.c.append(c)
        E.r.append(r)
        op = L.op
        if op == "linear":
            W, nW = _weight_norms(net, L)
            b = L.bias.values(net.theta) if L.bias is not None else None
            c, r = _linear(c, r, W, b, nW)
        elif op == "conv2d":
            W = L.weight.values(net.theta)
            b = L.bias.values(net.theta) if L.bias is not None else None
            cols_idx, interior, npad = P.conv_index(L)
            cp = np.zeros((N, npad))
            rp = np.zeros((N, npad))
            cp[:, interior] = c.reshape(N, -1)
            rp[:, interior] = r.reshape(N, -1)
            yc, yr = _linear(cp[:, cols_idx], rp[:, cols_idx], W.reshape(W.shape[0], -1), b)  # [N, P, out]
            c = np.ascontiguousarray(np.swapaxes(yc, 1, 2)).reshape((N,) + L.out_shape)
            r = np.ascontiguousarray(np.swapaxes(yr, 1, 2)).reshape((N,) + L.out_shape)
        elif op in ("maxpool1d", "maxpool2d"):
            idx = P.pool_index(L)
            wc = c.reshape(N, -1)[:, idx]
            wr = r.reshape(N, -1)[:, idx]
            c = wc.max(axis=-1).reshape((N,) + L.out_shape)
            r = wr.max(axis=-1).reshape((N,) + L.out_shape)
        elif op == "avgpool2d":
            idx = P.pool_index(L)
            K = idx.shape[1]
            wc = c.reshape(N, -1)[:, idx]
            wr = r.reshape(N, -1)[:, idx]
            with np.errstate(all="ignore"):
                yc = wc.sum(axis=-1) / K
                yr = (wr.sum(axis=-1) / K * INFLATE + gamma(K + 1) * np.abs(wc).sum(axis=-1) / K + ABS) * INFLATE
            c, r = _finite(yc.reshape((N,) + L.out_shape), yr.reshape((N,) + L.out_shape))
        elif op == "flatten":
            c, r = c.reshape(N, -1), r.reshape(N, -1)
        elif op in ("fixed_point", "value_iteration"):
            raise Unsupported(f"{op} layer (solved exactly)")
        else:
            act = L.act
            if act.transcendental:
                raise Unsupported(f"{act.name} is transcendental")
            Lf = _lipschitz(act)
            if len(act.kinks) == 1:
                piece = (c > float(act.kinks[0].at)).view(np.int8)
            elif act.kinks:
                piece = np.searchsorted(np.array([float(k.at) for k in act.kinks]), c, side="left")
            else:
                piece = np.zeros(c.shape, dtype=np.int64)
            with np.errstate(all="ignore"):
                # every piece's binary64 program on the whole array, then a select per entry
                vals = [pc.value_program(c, _F64) for pc in act.pieces]
                if len(vals) == 1:
                    y = np.array(np.broadcast_to(np.asarray(vals[0], dtype=np.float64), c.shape))
                elif len(vals) == 2:
                    y = np.where(piece == 0, vals[0], vals[1])
                else:
                    y = np.select([piece == i for i in range(len(vals) - 1)], vals[:-1], vals[-1])
                yr = (Lf * r + _piece_eval_error(act, c, y)) * INFLATE
            c, r = _finite(y, yr)
    E.c.append(c)
    E.r.append(r)
    if net.loss.op == "l1":
        t = net.targets.reshape(N, -1)
        with np.errstate(all="ignore"):
            rc = c.reshape(N, -1) - t
            rr = (r.reshape(N, -1) + U * np.abs(rc) + ABS) * INFLATE
        E.residual = _finite(rc, rr)
    return E


class _F64:
    """binary64 arithmetic for piece programs (errors bounded separately)."""

    @staticmethod
    def const(q):
        return float(q)

    @staticmethod
    def add(a, b):
        return a + b

    @staticmethod
    def sub(a, b):
        return a - b

    @staticmethod
    def mul(a, b):
        return a * b

    @staticmethod
    def div(a, b):
        return a / b

    @staticmethod
    def neg(a):
        return -a


def classify(c, r, kinks):
    """(piece, kink, undecided) where decidable: piece = number of kinks below, kink = -1 (a unit
    whose enclosure contains a kink is undecided)."""
    piece = np.zeros(c.shape, dtype=np.int64)
    und = ~np.isfinite(r)
    for k in kinks:
        at = float(k.at)
        if at != k.at:  # pragma: no cover - kinks are small dyadic numbers in every format
            raise Unsupported("kink not representable in binary64")
        lo, hi = c - r, c + r
        near = ~((lo > at) | (hi < at))
        und |= near
        piece += c > at
    return piece, np.full(c.shape, -1, dtype=np.int64), und


def classify_pool(wc, wr):
    """(eq mask [N, n_out, K] of the unique maximum, undecided [N, n_out])."""
    lo = wc - wr
    hi = wc + wr
    mlo = lo.max(axis=-1, keepdims=True)
    cand = hi >= mlo
    und = (cand.sum(axis=-1) != 1) | ~np.isfinite(wr).all(axis=-1)
    return cand & ~und[..., None], und


def is_finite_number(x) -> bool:
    return math.isfinite(x)
