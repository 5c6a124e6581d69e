"""The network program: forward pass, kink detection and AD backward pass, written once.

Both semantics run this same code with a different arithmetic (``exact.ExactArith`` or
``machine.MachineArith``), so they cannot drift apart in structure or order. Everything is
vectorised over the batch. The orders it fixes (documented in docs/semantics.md):

forward
- linear: ``acc = W[i,0]*x[0]; acc = acc + W[i,j]*x[j]`` for j = 1, 2, ...; then ``acc + b[i]``.
- conv2d: the same dot product over the receptive field in (in-channel, kh, kw) order; padding is
  materialised as +0 inputs that take part in the products; then ``+ b``.
- maxpool: the value of the first maximal entry in window order (row-major); avgpool: the window
  summed in row-major order, then divided by the window size (rounded to the dtype).
- elementwise ops: the activation library's per-piece programs (PyTorch's formulas); an input exactly
  on a kink takes the piece to its left (all activations are continuous).
- loss: terms summed left to right over (sample, output) in row-major order; ``mean`` divides by the
  count (rounded). cross_entropy per sample: m = max, e_i = exp(x_i - m), S = sum e_i,
  loss = (m + log S) - x_t; then summed over samples (and divided by N for mean).
backward
- seed: sum -> 1; dot -> target; mse -> c*r with c = 2/count (mean) or 2; l1 -> d*c with d the
  derivative of |r| (proxy at r = 0) and c = 1/count or 1; cross_entropy -> (e_i/S - [i = t]) * c.
- elementwise: g_in = g * d, d the piece's derivative program (proxy at a kink).
- linear: g_x[j] = sum_i W[i,j] g[i] accumulated in increasing i (same dot order).
- conv2d: per output position, sum over out-channels in order; each input position then sums its
  contributions in (output position, kernel offset) order.
- maxpool: the window's gradient goes to the first / last maximal entry or is split g/k among the k
  tied ones (tie-break); J_beta (k >= 2 tied): s = (beta*g)/k to each tied entry, and the first
  one gets s + (1-beta)*g, i.e. machine fl(fl(fl(beta*g)/k) + fl(fl(1-beta)*g)); avgpool: g/size to each entry; overlapping windows accumulate in window order.
- parameter gradients: every contribution is a term; a parameter's gradient is the left-to-right sum
  of its terms ordered by (sample, layer, entry row-major with weight before bias, output position).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from gmpy2 import mpq

from . import activations as _act
from . import fixedpoint as _fp
from . import valueiteration as _vi
from .conventions import Beta, beta_rule, load_convention, resolve_kink_derivatives
from .network import Layer, Network

ABS = None


def _abs():
    global ABS
    if ABS is None:
        ABS = _act.activation("abs")
    return ABS


# ----------------------------------------------------------------------------------------------
# derivative choices


@dataclass
class Proxies:
    kinks: dict  # elementwise layer index (or "loss") -> tuple of dtype floats, one per kink
    ties: dict  # pool layer index -> "first" | "last" | "split" | conventions.Beta
    convention: object = None


def resolve_proxies(net: Network, convention=None) -> Proxies:
    conv = load_convention(convention) if convention is not None else net.convention
    hit = net.__dict__.get("_proxies")  # resolved once per (network, convention object)
    if hit is not None and hit[0] is conv and hit[1] is net.layers:
        return hit[2]
    proxies = _resolve_proxies(net, conv)
    net.__dict__["_proxies"] = (conv, net.layers, proxies)
    return proxies


def _resolve_proxies(net: Network, conv) -> Proxies:
    kinks, ties = {}, {}
    for L in net.layers:
        if L.act is not None:
            entries = L.kink_derivatives
            if entries is None:
                entries = conv.kink_entries(L.act.name if L.op == "fixed_point" else L.op) or ()
                if len(entries) != len(L.act.kinks) and L.act.smooth:
                    entries = ()  # e.g. leaky_relu with slope 1 has no kink
            kinks[L.index] = resolve_kink_derivatives(entries, L.act, net.fmt, f"{L.label}: kink_derivatives")
        elif L.op in ("maxpool1d", "maxpool2d"):
            spec = L.tie_break or conv.tie_break(L.op)
            ties[L.index] = beta_rule(spec, net.fmt, f"{L.label}: tie_break" if L.tie_break else f"convention: {L.op}")
    if net.loss.op == "l1":
        entries = net.loss.kink_derivatives or conv.kink_entries("l1") or (0,)
        kinks["loss"] = resolve_kink_derivatives(entries, _abs(), net.fmt, "loss: kink_derivatives")
    return Proxies(kinks, ties, conv)


# ----------------------------------------------------------------------------------------------
# index plumbing (pure integers, cached per layer)

_IDX_CACHE: dict = {}


def pool_index(L: Layer) -> np.ndarray:
    """[n_out, K] flat input positions of each window's entries (row-major window order)."""
    key = ("pool", L.op, L.in_shape, L.kernel, L.stride)
    if key in _IDX_CACHE:
        return _IDX_CACHE[key]
    if L.op == "maxpool1d":
        shp = L.in_shape if len(L.in_shape) == 2 else (1,) + L.in_shape
        C, Lin = shp
        (k,), (s,) = L.kernel, L.stride
        Lout = (Lin - k) // s + 1
        c = np.arange(C)[:, None, None]
        o = np.arange(Lout)[None, :, None]
        j = np.arange(k)[None, None, :]
        idx = (c * Lin + o * s + j).reshape(C * Lout, k)
    else:
        C, H, W = L.in_shape
        (kh, kw), (sh, sw) = L.kernel, L.stride
        Ho, Wo = L.out_shape[1:]
        c = np.arange(C)[:, None, None, None, None]
        y = np.arange(Ho)[None, :, None, None, None]
        x = np.arange(Wo)[None, None, :, None, None]
        i = np.arange(kh)[None, None, None, :, None]
        j = np.arange(kw)[None, None, None, None, :]
        idx = (c * H * W + (y * sh + i) * W + (x * sw + j)).reshape(C * Ho * Wo, kh * kw)
    _IDX_CACHE[key] = idx
    return idx


def conv_index(L: Layer):
    """(cols [P, C*kh*kw] into the padded flat input, interior [C*H*W] positions in the padded input)."""
    key = ("conv", L.in_shape, L.weight.shape, L.stride, L.padding)
    if key in _IDX_CACHE:
        return _IDX_CACHE[key]
    C, H, W = L.in_shape
    _, _, kh, kw = L.weight.shape
    (sh, sw), (ph, pw) = L.stride, L.padding
    Hp, Wp = H + 2 * ph, W + 2 * pw
    Ho, Wo = L.out_shape[1:]
    y = np.arange(Ho)[:, None, None, None, None]
    x = np.arange(Wo)[None, :, None, None, None]
    c = np.arange(C)[None, None, :, None, None]
    i = np.arange(kh)[None, None, None, :, None]
    j = np.arange(kw)[None, None, None, None, :]
    cols = (c * Hp * Wp + (y * sh + i) * Wp + (x * sw + j)).reshape(Ho * Wo, C * kh * kw)
    interior = (np.arange(C)[:, None, None] * Hp * Wp + (np.arange(H)[None, :, None] + ph) * Wp + (np.arange(W)[None, None, :] + pw)).reshape(-1)
    _IDX_CACHE[key] = (cols, interior, C * Hp * Wp)
    return _IDX_CACHE[key]


# ----------------------------------------------------------------------------------------------
# forward


@dataclass
class Forward:
    A: object
    xs: list  # xs[i] = input of layer i (backend array [N, *in_shape]); xs[-1] = network output
    params: dict  # layer index -> (W, b) backend arrays
    loc: dict = field(default_factory=dict)  # elementwise layer -> (piece, kink) int arrays [N, *shape]
    pools: dict = field(default_factory=dict)  # maxpool layer -> tie mask [N, n_out, K]
    loss: object = None  # backend scalar
    residual: object = None  # l1/mse: out - target [N, O]
    loss_loc: tuple | None = None  # l1: (piece, kink) of the residual
    ce: tuple | None = None  # cross-entropy (e [N, C], S [N])
    fp: dict = field(default_factory=dict)  # fixed-point layer -> fixedpoint.Solution (its pre-activation a*)

    @property
    def out(self):
        return self.xs[-1]

    def value_at(self, layer: int, sample: int, unit: int):
        """The value entering ``layer`` (len(layers): the network output) for one sample/unit."""
        x = self.xs[layer]
        return x.reshape(x.shape[0], -1)[sample, unit]

    def residual_at(self, sample: int, unit: int):
        return self.residual.reshape(self.residual.shape[0], -1)[sample, unit]


def forward(net: Network, A, *, theta=None, with_loss: bool = True) -> Forward:
    theta = net.theta if theta is None else theta
    N = net.batch
    x = A.from_floats(net.inputs)
    fw = Forward(A=A, xs=[], params={})
    for L in net.layers:
        fw.xs.append(x)
        x = _layer_forward(net, A, L, x, theta, fw, N)
    fw.xs.append(x)
    if with_loss:
        _loss_forward(net, A, fw, N)
    return fw


def _weights(A, L, theta, fw):
    if L.index not in fw.params:
        conv = getattr(A, "param_values", None)  # a cached conversion (machine arithmetic)
        if conv is None:
            conv = lambda ref, th: A.from_floats(ref.values(th))  # noqa: E731
        W = conv(L.weight, theta) if L.weight is not None else None
        b = conv(L.bias, theta) if L.bias is not None else None
        fw.params[L.index] = (W, b)
    return fw.params[L.index]


def _layer_forward(net, A, L: Layer, x, theta, fw, N):
    op = L.op
    if op == "linear":
        W, b = _weights(A, L, theta, fw)
        y = A.dot(W, x)
        return A.add(y, b) if b is not None else y
    if op == "conv2d":
        W, b = _weights(A, L, theta, fw)
        cols_idx, interior, npad = conv_index(L)
        xpad = A.zeros((N, npad))
        xpad[:, interior] = x.reshape(N, -1)
        cols = xpad[:, cols_idx]  # [N, P, CKK]
        y = A.dot(W.reshape(W.shape[0], -1), cols)  # [N, P, out]
        if b is not None:
            y = A.add(y, b)
        return np.ascontiguousarray(np.swapaxes(y, 1, 2)).reshape((N,) + L.out_shape)
    if op in ("maxpool1d", "maxpool2d"):
        idx = pool_index(L)
        win = x.reshape(N, -1)[:, idx]  # [N, n_out, K]
        m, eq = A.max_first(win)
        fw.pools[L.index] = eq
        return m.reshape((N,) + L.out_shape)
    if op == "avgpool2d":
        idx = pool_index(L)
        win = x.reshape(N, -1)[:, idx]
        s = A.seq_sum(win, axis=-1)
        return A.div(s, A.const(mpq(idx.shape[1]))).reshape((N,) + L.out_shape)
    if op == "flatten":
        return x.reshape(N, -1)
    if op == "fixed_point":
        W, b = _weights(A, L, theta, fw)
        U = A.from_floats(L.fp.input_weight.values(theta))
        fw.params[L.index] = (W, b, U)
        sol = _fp.forward(A, L, x, W, b, U, _apply_pieces)
        fw.fp[L.index] = sol
        fw.loc[L.index] = A.locate(sol.a, L.act.kinks)
        return sol.z
    if op == "value_iteration":
        T, _ = _weights(A, L, theta, fw)
        sol = _vi.forward(A, L, x, T)
        fw.fp[L.index] = sol
        return sol.z.reshape((N,) + L.out_shape)
    # elementwise
    act = L.act
    if getattr(A, "symbolic", False):
        fw.loc[L.index] = ("symbolic", A.tie_conditions(act, x))
        return A.piecewise_value(act, x)
    piece, kink = A.locate(x, act.kinks)
    fw.loc[L.index] = (piece, kink)
    return _apply_pieces(A, act, x, piece)


def _apply_pieces(A, act, x, piece):
    if len(act.pieces) == 1:
        return _as_array(A, act.pieces[0].value_program(x, A), x)
    if getattr(A, "whole_arrays", False):
        # cheap elementwise arithmetic: every piece's program on the whole array, then a select
        # (no boolean gathers); the same value per entry as the masked evaluation below
        vals = [pc.value_program(x, A) for pc in act.pieces]
        if len(vals) == 2:
            y = np.where(piece == 0, vals[0], vals[1])
        else:
            y = np.select([piece == i for i in range(len(vals) - 1)], vals[:-1], vals[-1])
        y = _as_array(A, y.astype(x.dtype, copy=False), x)
        nan = np.isnan(x)
        if nan.any():
            y[nan] = x[nan]
        return y
    y = A.zeros(x.shape)
    for i, pc in enumerate(act.pieces):
        m = piece == i
        if m.any():
            y[m] = pc.value_program(x[m], A)
    if not A.exact:
        nan = np.isnan(x)
        if nan.any():  # a NaN input propagates (it lies on no piece)
            y[nan] = x[nan]
    return y


def _as_array(A, v, like):
    if np.ndim(v) == 0 and np.ndim(like) > 0:
        out = A.zeros(like.shape)
        out[...] = v
        return out
    return v


def _loss_forward(net, A, fw, N):
    out = fw.out.reshape(N, -1)
    loss = net.loss
    count = out.size
    if loss.op == "sum":
        fw.loss = A.seq_sum(out.reshape(-1))
        return
    if loss.op == "cross_entropy":
        if A.exact:
            m = out[:, 0]  # any shift gives the same exact value
        else:
            m = out.max(axis=1)
        s = A.sub(out, m[:, None])
        e = A.exp(s)
        S = A.seq_sum(e, axis=-1)
        lse = A.add(m, A.log(S))
        picked = out[np.arange(N), net.targets]
        per = A.sub(lse, picked)
        total = A.seq_sum(per)
        fw.ce = (e, S)
        fw.loss = A.div(total, A.const(mpq(N))) if loss.reduction == "mean" else total
        return
    t = A.from_floats(net.targets).reshape(N, -1)
    if loss.op == "dot":
        fw.loss = A.seq_sum(A.mul(t, out).reshape(-1))
        return
    r = A.sub(out, t)
    fw.residual = r
    if loss.op == "mse":
        terms = A.mul(r, r)
    elif getattr(A, "symbolic", False):  # l1, symbolic
        fw.loss_loc = ("symbolic", A.tie_conditions(_abs(), r))
        terms = A.piecewise_value(_abs(), r)
    else:  # l1
        piece, kink = A.locate(r, _abs().kinks)
        fw.loss_loc = (piece, kink)
        terms = _apply_pieces(A, _abs(), r, piece)
    total = A.seq_sum(terms.reshape(-1))
    fw.loss = A.div(total, A.const(mpq(count))) if loss.reduction == "mean" else total


# ----------------------------------------------------------------------------------------------
# ties


@dataclass(frozen=True)
class Tie:
    layer: int  # layer index; len(layers) for the loss
    op: str
    sample: int
    unit: int  # flat index within the sample's tensor (pre-activation / pool output / loss output)
    kink: int  # kink index (0 for a max-pool tie)
    at: object  # the kink position (mpq) or None for a max-pool tie
    entries: tuple = ()  # max-pool: flat input positions of the tied maxima

    @property
    def key(self):
        return (self.layer, self.sample, self.unit)


def ties(net: Network, fw: Forward) -> list:
    out = []
    for L in net.layers:
        if L.index in fw.loc:
            piece, kink = fw.loc[L.index]
            k2 = kink.reshape(kink.shape[0], -1)
            for n, u in zip(*np.nonzero(k2 >= 0)):
                kk = int(k2[n, u])
                out.append(Tie(L.index, L.op, int(n), int(u), kk, L.act.kinks[kk].at))
        elif L.index in fw.pools:
            eq = fw.pools[L.index]
            idx = pool_index(L)
            cnt = eq.sum(axis=-1)
            for n, w in zip(*np.nonzero(cnt >= 2)):
                ent = tuple(int(v) for v in idx[w][eq[n, w]])
                out.append(Tie(L.index, L.op, int(n), int(w), 0, None, ent))
        elif L.op == "value_iteration" and L.index in fw.fp:
            sol = fw.fp[L.index]
            masks = [(0, sol.eq)] if L.vi.method == "iterate" else [(k * sol.eq.shape[1], eq) for k, (_, eq, _) in enumerate(sol.steps)]
            for off, eq in masks:  # unroll: unit = step * S + state
                for n, st in zip(*np.nonzero(eq.sum(axis=-1) >= 2)):
                    out.append(Tie(L.index, L.op, int(n), off + int(st), 0, None, tuple(int(a) for a in np.flatnonzero(eq[n, st]))))
    if fw.loss_loc is not None:
        _, kink = fw.loss_loc
        for n, u in zip(*np.nonzero(kink >= 0)):
            out.append(Tie(len(net.layers), "l1", int(n), int(u), 0, mpq(0)))
    return out


# ----------------------------------------------------------------------------------------------
# backward


class Choice:
    """Which derivative each tie uses: None (the convention's proxy), 'left' / 'right' (that
    one-sided derivative; max-pool: first / last maximal entry) or, for a max-pool tie, the window
    position (int) of the entry that takes the gradient.

    ``side`` applies to every tie, ``only`` = (tie key, side) to one tie, ``choose`` = {tie key:
    choice} to the ties it names (it wins over the others)."""

    def __init__(self, side=None, only=None, choose=None, unrolled=()):
        self.side = side
        self.only = only
        self.choose = choose
        self.unrolled = set(unrolled)  # fixed-point layers differentiated through their iterations

    def of(self, key):
        if self.choose is not None and key in self.choose:
            return self.choose[key]
        if self.only is not None:
            return self.only[1] if key == self.only[0] else None
        return self.side


def _elementwise_derivative(A, act, x, y, piece, kink, proxies, ch, layer_key, net):
    d = A.zeros(x.shape)
    for i, pc in enumerate(act.pieces):
        m = (piece == i) & (kink < 0)
        if m.any():
            d[m] = pc.derivative_program(x[m], y[m] if y is not None else None, A)
    if (kink >= 0).any():
        N = x.shape[0]
        k2 = kink.reshape(N, -1)
        d2 = d.reshape(N, -1)
        for n, u in zip(*np.nonzero(k2 >= 0)):
            k = int(k2[n, u])
            s = ch.of((layer_key, int(n), int(u)))
            v = proxies[k] if s is None else act.one_sided(k, s)  # exact; the machine arithmetic rounds it
            d2[n, u] = A.const(v)
        d = d2.reshape(x.shape)
    return d


def backward(net: Network, A, fw: Forward, proxies: Proxies, *, side=None, only=None, choose=None, seed=None, cotangent_at=None, unrolled=()):
    """The AD output (gradient over trainable params, backend values).

    Derivative choices at ties: see :class:`Choice`. ``seed`` = (layer, g) starts the backward pass
    at the input of ``layer`` (len(layers): the network output) with cotangent g [N, *shape]
    instead of the loss: the result is then the gradient of sum(g * value) - e.g. a one-hot g gives
    the gradient of one pre-activation (a tie's tangent functional)."""
    N = net.batch
    ch = Choice(side, only, choose, unrolled)
    blocks = []
    if seed is None:
        out = fw.out.reshape(N, -1)
        g = _loss_seed(net, A, fw, out, proxies, ch, N).reshape(fw.out.shape)
        start = len(net.layers)
    elif seed[0] == "vi_q":  # ("vi_q", layer, k, h): h [N, S, A] on the Q values of step k + 1 of an unrolled block
        _, start, k, h = seed
        g = _vi_backward(net, A, net.layers[start], None, fw, ch, blocks, start > 0, q_at=(k, h))
    elif seed[0] == "fixed_point" and net.layers[seed[1]].op == "value_iteration":  # e on the tie gaps [N, S]
        _, start, e = seed
        g = _vi_backward(net, A, net.layers[start], None, fw, ch, blocks, start > 0, gaps=e)
    elif seed[0] == "fixed_point":  # ("fixed_point", layer, e): a cotangent on the layer's pre-activation a*
        _, start, e = seed
        L = net.layers[start]
        g = _fp_backward(net, A, L, fw.xs[start], fw.xs[start + 1], e, fw, proxies, ch, blocks, start > 0, pre=True)
    else:
        start, g = seed
    if cotangent_at is not None and cotangent_at >= start:
        return g
    for L in reversed(net.layers[:start]):
        x = fw.xs[L.index]
        y = fw.xs[L.index + 1]
        need_gx = L.index > 0
        g = _layer_backward(net, A, L, x, y, g, fw, proxies, ch, blocks, need_gx, N)
        if cotangent_at is not None and L.index == cotangent_at:
            return g  # the cotangent at fw.xs[cotangent_at] (no parameter gradient)
        if g is None:
            break
    grad_theta = A.accumulate_params(blocks, net.theta.size)
    if all(p.trainable for p in net.params):  # theta's order is the gradient's (offsets in declaration order)
        return grad_theta
    return grad_theta[net.trainable_index]


def _loss_seed(net, A, fw, out, proxies, ch, N):
    loss = net.loss
    count = out.size
    mean = loss.reduction == "mean"
    if loss.op == "sum":
        g = A.zeros(out.shape)
        g[...] = A.const(mpq(1))
        return g
    if loss.op == "dot":
        return A.from_floats(net.targets).reshape(N, -1)
    if loss.op == "mse":
        c = A.const(mpq(2, count) if mean else mpq(2))
        return A.mul(fw.residual, c)
    if loss.op == "l1" and getattr(A, "symbolic", False):
        d = A.piecewise_derivative(_abs(), fw.residual, None, proxies.kinks["loss"], _symbolic_side(ch))
        return A.mul(d, A.const(mpq(1, count))) if mean else d
    if loss.op == "l1":
        piece, kink = fw.loss_loc
        d = _elementwise_derivative(A, _abs(), fw.residual, None, piece, kink, proxies.kinks["loss"], ch, len(net.layers), net)
        return A.mul(d, A.const(mpq(1, count))) if mean else d
    # cross_entropy
    e, S = fw.ce
    p = A.div(e, S[:, None])
    onehot = np.zeros(out.shape)
    onehot[np.arange(N), net.targets] = 1.0
    g = A.sub(p, A.from_floats(onehot))
    return A.mul(g, A.const(mpq(1, N))) if mean else g


def _layer_backward(net, A, L, x, y, g, fw, proxies, ch, blocks, need_gx, N):
    op = L.op
    if op == "linear":
        W, b = fw.params[L.index]
        blocks.append((L.index, "outer", (g, x), L.weight.src, L.weight.sign))
        if L.bias is not None:
            blocks.append((L.index + 0.5, "terms", g[:, :, None], L.bias.src, L.bias.sign))
        return A.dot_t(W, g) if need_gx else None
    if op == "conv2d":
        W, b = fw.params[L.index]
        cols_idx, interior, npad = conv_index(L)
        out_c = W.shape[0]
        P = cols_idx.shape[0]
        gP = np.ascontiguousarray(np.swapaxes(g.reshape(N, out_c, P), 1, 2))  # [N, P, out]
        xpad = A.zeros((N, npad))
        xpad[:, interior] = x.reshape(N, -1)
        cols = xpad[:, cols_idx]  # [N, P, CKK]
        T = A.mul(g.reshape(N, out_c, 1, P), np.swapaxes(cols, 1, 2).reshape(N, 1, -1, P))
        blocks.append((L.index, "terms", T.reshape(N, -1, P), L.weight.src, L.weight.sign))
        if L.bias is not None:
            blocks.append((L.index + 0.5, "terms", g.reshape(N, out_c, P), L.bias.src, L.bias.sign))
        if not need_gx:
            return None
        Wm = W.reshape(out_c, -1)
        gcols = A.dot_t(Wm, gP)  # [N, P, CKK]
        gpad = A.seq_accumulate(gcols.reshape(N, -1), cols_idx.reshape(-1), npad)
        return gpad[:, interior].reshape((N,) + L.in_shape)
    if op in ("maxpool1d", "maxpool2d") and getattr(A, "symbolic", False):
        idx = pool_index(L)
        side = _symbolic_side(ch)
        rule = proxies.ties[L.index] if side is None else {"left": "first", "right": "last"}[side]
        T = A.pool_backward(fw.pools[L.index], g.reshape(N, -1), rule)
        gin = A.seq_accumulate(T.reshape(N, -1), idx.reshape(-1), int(np.prod(L.in_shape)))
        return gin.reshape((N,) + L.in_shape)
    if op in ("maxpool1d", "maxpool2d"):
        idx = pool_index(L)
        eq = fw.pools[L.index]
        gw = g.reshape(N, -1)  # [N, n_out]
        K = idx.shape[1]
        T = A.zeros(eq.shape)
        rule = proxies.ties[L.index]
        cnt = eq.sum(axis=-1)
        first = np.argmax(eq, axis=-1)
        last = K - 1 - np.argmax(eq[..., ::-1], axis=-1)
        # per window: which rule applies (ties may be switched by side/only)
        sel_first = np.full(cnt.shape, rule == "first")
        sel_last = np.full(cnt.shape, rule == "last")
        sel_split = np.full(cnt.shape, rule == "split" or isinstance(rule, Beta))
        chosen = {}
        for n, w in zip(*np.nonzero(cnt >= 2)):
            s = ch.of((L.index, int(n), int(w)))
            if isinstance(s, (int, np.integer)) and not isinstance(s, bool):
                sel_first[n, w], sel_last[n, w], sel_split[n, w] = False, False, False
                chosen[(int(n), int(w))] = int(s)
            elif s is not None:
                sel_first[n, w], sel_last[n, w], sel_split[n, w] = s == "left", s == "right", False
        single = cnt < 2
        pick = np.where(sel_last & ~single, last, first)
        one = single | sel_first | sel_last
        for (n, w), j in chosen.items():
            if not eq[n, w, j]:
                raise ValueError(f"layer {L.index} sample {n} window {w}: entry {j} is not a maximal entry")
            pick[n, w] = j
            one[n, w] = True
        nn, ww = np.nonzero(one)
        T[nn, ww, pick[nn, ww]] = gw[nn, ww]
        sp = sel_split & ~single
        if sp.any():
            nn, ww = np.nonzero(sp)
            gs = gw[nn, ww]
            if isinstance(rule, Beta):  # the J_split branch's cotangent: beta*g
                gs = A.mul(gs, A.const(rule.q))
            share = A.div(gs, np.array([A.const(mpq(int(c))) for c in cnt[nn, ww]], dtype=gw.dtype))
            for t, (n, w) in enumerate(zip(nn, ww)):
                T[n, w, eq[n, w]] = share[t]
            if isinstance(rule, Beta):  # J_first's branch: (1-beta)*g, added to the first tied entry
                b = A.mul(gw[nn, ww], A.const(1 - rule.q))
                fi = first[nn, ww]
                T[nn, ww, fi] = A.add(share, b)
        gin = A.seq_accumulate(T.reshape(N, -1), idx.reshape(-1), int(np.prod(L.in_shape)))
        return gin.reshape((N,) + L.in_shape)
    if op == "avgpool2d":
        idx = pool_index(L)
        gw = g.reshape(N, -1)
        share = A.div(gw, A.const(mpq(idx.shape[1])))
        T = A.zeros((N,) + idx.shape)
        T[...] = share[:, :, None]
        gin = A.seq_accumulate(T.reshape(N, -1), idx.reshape(-1), int(np.prod(L.in_shape)))
        return gin.reshape((N,) + L.in_shape)
    if op == "flatten":
        return g.reshape((N,) + L.in_shape)
    if op == "fixed_point":
        return _fp_backward(net, A, L, x, y, g, fw, proxies, ch, blocks, need_gx)
    if op == "value_iteration":
        return _vi_backward(net, A, L, g.reshape(N, -1), fw, ch, blocks, need_gx)
    if getattr(A, "symbolic", False):
        d = A.piecewise_derivative(L.act, x, y, proxies.kinks[L.index], _symbolic_side(ch))
        return A.mul(g, d)
    piece, kink = fw.loc[L.index]
    d = _elementwise_derivative(A, L.act, x, y, piece, kink, proxies.kinks[L.index], ch, L.index, net)
    return A.mul(g, d)


def _fp_backward(net, A, L, x, y, g, fw, proxies, ch, blocks, need_gx, pre=False):
    """Implicit backward through a fixed-point layer (``fixedpoint.backward``); ``pre``: g is a
    cotangent on the pre-activation a* instead of the output z*."""
    W, b, U = fw.params[L.index]
    sol = fw.fp[L.index]
    if L.index in ch.unrolled and not pre:
        if A.exact:
            raise ValueError("unrolled AD is computed in the machine semantics only")
        # through the solver's iterations (kinks of an iterate use the convention's proxy)
        der = lambda a, pc, kk: _elementwise_derivative(A, L.act, a, None, pc, kk, proxies.kinks[L.index], Choice(), L.index, net)  # noqa: E731
        mus, zs = _fp.unrolled(A, sol, g, W, der)
        N, n, K = mus.shape
        T = A.mul(mus[:, :, None, :], zs[:, None, :, :]).reshape(N, n * n, K)
        blocks.append((L.index, "terms", T, L.weight.src, L.weight.sign))
        c = A.seq_sum(mus, axis=-1)  # the cell's input side: sum over the iterations, k = K .. 1
        blocks.append((L.index + 0.25, "outer", (c, x), L.fp.input_weight.src, L.fp.input_weight.sign))
        if L.bias is not None:
            blocks.append((L.index + 0.5, "terms", mus, L.bias.src, L.bias.sign))
        return A.dot(np.ascontiguousarray(U.T), c) if need_gx else None
    piece, kink = fw.loc[L.index]
    d = _elementwise_derivative(A, L.act, sol.a, sol.z, piece, kink, proxies.kinks[L.index], ch, L.index, net)
    mu = _fp.backward(A, L, g, d, W, U, L.fp.tol, pre=pre)
    blocks.append((L.index, "outer", (mu, y), L.weight.src, L.weight.sign))
    blocks.append((L.index + 0.25, "outer", (mu, x), L.fp.input_weight.src, L.fp.input_weight.sign))
    if L.bias is not None:
        blocks.append((L.index + 0.5, "terms", mu[:, :, None], L.bias.src, L.bias.sign))
    return A.dot(np.ascontiguousarray(U.T), mu) if need_gx else None


def _vi_backward(net, A, L, g, fw, ch, blocks, need_gx, gaps=None, q_at=None):
    """Backward through a value-iteration block (``valueiteration.backward``); ``gaps``: a cotangent
    on the tie gaps Q_last - Q_first instead of g on V."""
    gR, terms = _vi.backward(A, L, fw.params[L.index][0], fw.fp[L.index], g, lambda n, u: ch.of((L.index, n, u)), unrolled=L.index in ch.unrolled, gaps=gaps, q_at=q_at)
    blocks.append((L.index, "terms", terms, L.weight.src, L.weight.sign))
    return gR if need_gx else None


def _symbolic_side(ch):
    if ch.only is not None or ch.choose:
        raise NotImplementedError("per-tie derivative choices are not encoded symbolically (use side=)")
    return ch.side
