"""``kinkcheck.gradcheck``: torch.autograd.gradcheck's call shape, judged exactly (docs/gradcheck.md).

torch's autograd output is a float; the exact AD output (kinkcheck's exact run, proxy derivatives at
kinks) is a rational. They differ by rounding, so bit equality is the wrong test. This module bounds
the rounding rigorously: for every parameter entry it computes B with

    |torch's value - exact AD| <= B

whenever torch's run takes the exact run's branches (same activation pieces, same max-pool entries,
same l1 signs), for ANY summation order, blocking or FMA use of torch's kernels. The bound is the
forward one of docs/interop.md carried through the backward pass: a sum of n products computed in
any order is within gamma_{n+1} * (sum of |terms|) (+ (n+1) * eta for underflow) of its exact value,
gamma_k = k u / (1 - k u), u = 2^-p; a difference in an input of the sum enters through |W| (or
|activation|, |adjoint|). Everything is computed in exact rationals (gmpy2 mpq), rounded up to
binary64 once per layer. torch's branches are observed on the same forward run that produced its
gradient: a branch the exact run does not take (a float tie, a sign flipped by rounding) is named
when it explains a value outside the bound.

Verdicts: fails when f is differentiable and AD is not the gradient, when AD is not a Clarke
subderivative, when torch's value (or a forward value) is outside the bound, or when a verdict is
undecided; at a non-differentiable point where AD is a Clarke subderivative it passes with a
:class:`GradcheckWarning` (``strict=True``: fails).

Fixed-point layers (``kinkcheck.torch.DEQ``): the solver's stopping error has no a-priori bound, so
the rounding comparison's verdict is ``"no bound"`` (``GradcheckResult.rounding``): every entry
gives torch's value, the exact AD and their distance in ulps, with ``bound`` and ``within_bound``
None; the exact verdicts (differentiable, AD the gradient, AD in Clarke) still pass or fail, and a
pass comes with a :class:`GradcheckWarning` saying that the floats were not judged. The pattern of
torch's float fixed point (its pre-activation at the last iterate) is compared with the exact one.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from gmpy2 import mpq

from ..encodings import program as P
from ..encodings.errors import InputError
from .torch import from_torch

EXACT_ACTS = ("relu", "hardtanh", "relu6", "abs", "identity")  # torch selects, negates: no rounding
BOUNDED_ACTS = EXACT_ACTS + ("leaky_relu", "hardsigmoid", "hardswish")
LOSSES = ("sum", "dot", "mse", "l1")
LIST = 8  # entries named in an error message
DEQ_NAMES = {"W": "weight", "U": "input_weight", "b": "bias"}  # kinkcheck.torch.DEQ's parameters as from_torch names them


class GradcheckError(RuntimeError):
    """Raised by :func:`gradcheck`; ``.result`` holds the :class:`GradcheckResult`."""

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result


class GradcheckWarning(UserWarning):
    """f is not differentiable at the parameters, and torch's AD output is a Clarke subderivative."""


@dataclass
class Entry:
    name: str  # e.g. "l0.weight[2,1]"
    exact_ad: str  # the exact AD output (rational)
    gradient: str | None  # the exact gradient (None where f is not differentiable)
    torch: float  # torch's autograd value
    ulps: int  # format steps between torch's value and the exact AD rounded to nearest
    bound: float | None  # rigorous: |torch - exact AD| <= bound if torch takes the exact run's branches (None: no bound)
    within_bound: bool | None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class GradcheckResult:
    passed: bool
    problems: list  # why it failed (empty when passed)
    warning: str | None  # non-differentiable point, AD a Clarke subderivative
    differentiable: bool | None
    ad_is_gradient: bool | None  # the exact AD output is the gradient (kinkcheck's ad_correct)
    ad_in_clarke: bool | None
    torch_within_bound: bool | None  # every entry of torch's gradient is within the rounding bound (None: no bound)
    torch_bitwise_equals_spec_order_ad: bool  # torch's floats == kinkcheck's machine AD (spec order), as numbers (+0 == -0)
    torch_bitwise_equals_exact_ad: bool  # torch's floats == the exact rationals (rarely: rounding)
    max_ulps: int
    entries: list = field(default_factory=list)
    divergences: list = field(default_factory=list)  # branches torch took that the exact run did not
    report: object = None  # the kinkcheck Report
    rounding: str = "bounded"  # "bounded" | "a-posteriori" (a lone DEQ) | "no bound" (other fixed-point networks: ulps only)
    no_bound_reason: str | None = None
    solver_error: float | None = None  # a-posteriori: the largest exact |T - exact AD| (torch's stopped solvers)

    def message(self) -> str:
        return "kinkcheck.gradcheck: " + "; ".join(self.problems or ([self.warning] if self.warning else ["ok"]))

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "report"}
        d["entries"] = [e.to_dict() for e in self.entries]
        return d


def _torch():
    try:
        import torch
    except ImportError:
        raise InputError("PyTorch is not installed: pip install 'kinkcheck[torch]'") from None
    return torch


# ----------------------------------------------------------------------------------------------
# exact helpers: object arrays of mpq


def _q(a):
    return np.vectorize(mpq, otypes=[object])(np.asarray(a, dtype=object)) if np.size(a) else np.asarray(a, dtype=object)


def _abs(a):
    return np.abs(np.asarray(a, dtype=object))


def _up(a):
    """Each non-negative rational replaced by the smallest binary64 number >= it (as an mpq)."""

    def one(v):
        f = float(v)
        if mpq(f) < v:
            f = math.nextafter(f, math.inf)
        return mpq(f)

    a = np.asarray(a, dtype=object)
    return np.vectorize(one, otypes=[object])(a) if a.size else a


def _zeros(shape):
    z = np.empty(shape, dtype=object)
    z.fill(mpq(0))
    return z


class _Consts:
    def __init__(self, fmt):
        self.u = mpq(1, 2**fmt.precision)
        self.eta = mpq(fmt.min_subnormal)

    def gamma(self, k: int):
        """gamma_k = k u / (1 - k u); None (no bound) when k u >= 1."""
        ku = k * self.u
        return ku / (1 - ku) if ku < 1 else None


def _g(c, k):
    g = c.gamma(k)
    if g is None:
        raise _Vacuous(f"fan-in {k} is too large for a rounding bound in this format (k u >= 1)")
    return g


class _Vacuous(Exception):
    pass


# ----------------------------------------------------------------------------------------------
# the bound: forward errors E[k] >= |torch's input of layer k - exact|, backward D[k] >= |torch's
# adjoint at the input of layer k - exact adjoint|, parameter bounds per parameter name


def _forward_errors(net, fw, c):
    N = net.batch
    E = [_zeros(np.shape(fw.xs[0]))]
    for L in net.layers:
        a = np.asarray(fw.xs[L.index], dtype=object)
        e = E[-1]
        if L.op == "linear":
            W, b = fw.params[L.index]
            aW = _abs(W)
            n = aW.shape[1]
            aa = _abs(a) + e
            ab = _abs(b) if b is not None else 0
            out = np.dot(e, aW.T) + _g(c, n + 1) * (np.dot(aa, aW.T) + ab) + (n + 1) * c.eta
        elif L.op == "conv2d":
            W, b = fw.params[L.index]
            cols_idx, interior, npad = P.conv_index(L)
            O = W.shape[0]
            Wm = _abs(W).reshape(O, -1)
            n = Wm.shape[1]
            ca, ce = (_cols(v.reshape(N, -1), cols_idx, interior, npad) for v in (_abs(a), e))
            ab = _abs(b) if b is not None else 0
            y = np.dot(ce, Wm.T) + _g(c, n + 1) * (np.dot(ca + ce, Wm.T) + ab) + (n + 1) * c.eta  # [N, P, O]
            out = np.swapaxes(y, 1, 2).reshape((N,) + tuple(L.out_shape))
        elif L.op in ("maxpool1d", "maxpool2d"):
            idx = P.pool_index(L)
            out = e.reshape(N, -1)[:, idx].max(axis=-1).reshape((N,) + tuple(L.out_shape))
        elif L.op == "avgpool2d":
            idx = P.pool_index(L)
            K = idx.shape[1]
            win_e = e.reshape(N, -1)[:, idx]
            win_a = _abs(a).reshape(N, -1)[:, idx] + win_e
            out = (win_e.sum(axis=-1) + _g(c, K + 1) * win_a.sum(axis=-1)) / K + K * c.eta
            out = out.reshape((N,) + tuple(L.out_shape))
        elif L.op == "flatten":
            out = e.reshape(N, -1)
        else:
            lip, rnd = _act_forward(L.act, c)
            out = lip * e + rnd(_abs(a) + e)
        E.append(_up(out))
    return E


def _cols(flat, cols_idx, interior, npad):
    N = flat.shape[0]
    pad = _zeros((N, npad))
    pad[:, interior] = flat
    return pad[:, cols_idx]  # [N, P, CKK]


def _scatter(vals, idx, size):
    """Sum of vals [N, M] into [N, size] at positions idx [M]."""
    out = _zeros((size, vals.shape[0]))
    np.add.at(out, idx, vals.T)
    return out.T


def _overlap(idx, size):
    return int(np.bincount(idx.reshape(-1), minlength=size).max()) if idx.size else 0


def _act_forward(act, c):
    """(Lipschitz constant, rounding bound as a function of |torch's input|) of torch's activation."""
    name, u3 = act.name, _g(c, 4)
    if name in EXACT_ACTS:
        return mpq(1), lambda m: 0
    if name == "leaky_relu":
        s = abs(mpq(act.params["negative_slope"]))
        return max(mpq(1), s * (1 + 2 * c.u)), lambda m: u3 * s * m + 2 * c.eta
    if name == "hardsigmoid":
        return mpq(1, 6), lambda m: u3 * (m / 6 + mpq(1, 2)) + 3 * c.eta
    if name == "hardswish":
        return mpq(3, 2), lambda m: u3 * m + 3 * c.eta
    raise InputError(f"gradcheck: no rounding bound for {name} (torch's {name} is not correctly rounded)")


def _act_backward(L, z, e, g, d, loc, proxies, c):
    """D at the activation's input from D at its output (torch on the exact run's pieces)."""
    act, name = L.act, L.act.name
    piece, kink = loc
    z, e, g, d = (np.asarray(v, dtype=object).reshape(-1) for v in (z, e, g, d))
    piece, kink = piece.reshape(-1), kink.reshape(-1)
    out = np.empty(z.shape, dtype=object)
    for i in range(z.size):
        k = int(kink[i])
        if k >= 0:
            de = mpq(proxies.kinks[L.index][k])
        else:
            pc = act.pieces[int(piece[i])]
            de = mpq(pc.derivative_program(z[i], None, _ExactOps))
        ag = abs(g[i])
        if name in EXACT_ACTS:
            out[i] = abs(de) * d[i]
            continue
        if name == "leaky_relu":
            dd = 2 * c.u * abs(mpq(act.params["negative_slope"]))
        elif name == "hardsigmoid":
            dd = c.u / 6
        else:  # hardswish: torch evaluates x/3 + 1/2 (autograd through x*(x+3)/6: <= 4 roundings) at its own input
            dd = e[i] / 3 + _g(c, 4) * ((abs(z[i]) + e[i]) / 3 + mpq(1, 2)) if k < 0 and int(piece[i]) == 1 else mpq(0)
        S = abs(de) + dd
        out[i] = S * d[i] + dd * ag + c.u * S * (ag + d[i]) + c.eta
    return out


class _ExactOps:
    """The arithmetic the activation library's derivative programs run on (exact, scalar)."""

    const = staticmethod(mpq)
    add = staticmethod(lambda a, b: a + b)
    sub = staticmethod(lambda a, b: a - b)
    mul = staticmethod(lambda a, b: a * b)
    div = staticmethod(lambda a, b: a / b)


def _loss_seed_error(net, fw, E_out, c):
    count = int(np.prod(np.shape(fw.out)))
    op, mean = net.loss.op, net.loss.reduction == "mean"
    if op in ("sum", "dot"):
        return _zeros(np.shape(fw.out))
    if op == "mse":
        k = mpq(2, count) if mean else mpq(2)
        r = _abs(np.asarray(fw.residual, dtype=object)).reshape(np.shape(fw.out))
        return k * E_out + _g(c, 4) * k * (r + E_out) + 2 * c.eta
    k = mpq(1, count) if mean else mpq(1)  # l1: sign * fl(1/count)
    out = _zeros(np.shape(fw.out))
    out[...] = c.u * k + c.eta
    return out


def rounding_bounds(report) -> tuple[dict, list]:
    """Rigorous bounds for torch on ``report``'s network: ([(weight/bias Ref, bound array of its
    shape)], forward error arrays E[k] per layer input). Raises InputError for ops without a bound."""
    net, runs = report._net, report._runs
    runs.exact_ad()  # settles the exact run's precision
    fw = runs.exact_full()
    if fw is None:
        raise InputError(f"gradcheck: no exact run ({runs.exact_reason})")
    if runs.proxies.ties and any(r not in ("first", "last") for r in runs.proxies.ties.values()):
        rule = next(str(r) for r in runs.proxies.ties.values() if r not in ("first", "last"))
        raise InputError(f"gradcheck: a {rule} max-pool tie-break has no torch counterpart (torch's max-pool backward is first-index)")
    c = _Consts(net.fmt)
    N = net.batch
    E = _forward_errors(net, fw, c)
    nl = len(net.layers)
    D = _loss_seed_error(net, fw, E[nl], c)
    g = np.asarray(P.backward(net, fw.A, fw, runs.proxies, cotangent_at=nl), dtype=object)
    bounds = {}
    for L in reversed(net.layers):
        k = L.index
        a, e = np.asarray(fw.xs[k], dtype=object), E[k]
        gin = np.asarray(P.backward(net, fw.A, fw, runs.proxies, cotangent_at=k), dtype=object) if k > 0 else None
        ag = _abs(g)
        if L.op == "linear":
            W, b = fw.params[k]
            aW = _abs(W)
            m = aW.shape[0]
            aa = _abs(a).reshape(N, -1) + e.reshape(N, -1)
            g2, d2 = ag.reshape(N, m), D.reshape(N, m)
            gg = g2 + d2
            bounds[k] = (np.dot(d2.T, aa) + np.dot(g2.T, e.reshape(N, -1)) + _g(c, N) * np.dot(gg.T, aa) + N * c.eta,
                         (d2.sum(axis=0) + _g(c, N) * gg.sum(axis=0)) if b is not None else None)
            Din = np.dot(d2, aW) + _g(c, m) * np.dot(gg, aW) + m * c.eta
        elif L.op == "conv2d":
            W, b = fw.params[k]
            cols_idx, interior, npad = P.conv_index(L)
            O = W.shape[0]
            Wm = _abs(W).reshape(O, -1)
            NP = N * cols_idx.shape[0]
            ca, ce = (_cols(v.reshape(N, -1), cols_idx, interior, npad) for v in (_abs(a), e))
            aa = (ca + ce).reshape(NP, -1)
            gP = np.swapaxes(ag.reshape(N, O, -1), 1, 2).reshape(NP, O)
            dP = np.swapaxes(D.reshape(N, O, -1), 1, 2).reshape(NP, O)
            gg = gP + dP
            bounds[k] = (np.dot(dP.T, aa) + np.dot(gP.T, ce.reshape(NP, -1)) + _g(c, NP) * np.dot(gg.T, aa) + NP * c.eta,
                         (dP.sum(axis=0) + _g(c, NP) * gg.sum(axis=0)) if b is not None else None)
            M = O * int(W.shape[2]) * int(W.shape[3])
            gc = np.dot(dP, Wm) + _g(c, M) * np.dot(gg, Wm) + M * c.eta  # [NP, CKK]
            Din = _scatter(gc.reshape(N, -1), cols_idx.reshape(-1), npad)[:, interior]
        elif L.op in ("maxpool1d", "maxpool2d"):
            idx = P.pool_index(L)
            size = int(np.prod(L.in_shape))
            eq = fw.pools[k]
            rule = runs.proxies.ties[k]
            K = idx.shape[1]
            pick = np.argmax(eq, axis=-1) if rule == "first" else K - 1 - np.argmax(eq[..., ::-1], axis=-1)
            pos = idx[np.arange(idx.shape[0])[None, :], pick]  # [N, n_out]: the selected input entry
            d2, gg = D.reshape(N, -1), (ag + D).reshape(N, -1)
            Din = _zeros((N, size))
            many = _overlap(idx, size) > 1
            for n in range(N):
                np.add.at(Din[n], pos[n], d2[n] + (_g(c, K) * gg[n] if many else 0))
        elif L.op == "avgpool2d":
            idx = P.pool_index(L)
            size = int(np.prod(L.in_shape))
            K = idx.shape[1]
            w = _overlap(idx, size)
            share = (D.reshape(N, -1) + _g(c, w + 1) * (ag + D).reshape(N, -1)) / K + c.eta
            Din = _scatter(np.repeat(share, K, axis=1), idx.reshape(-1), size)
        elif L.op == "flatten":
            Din = D
        else:
            Din = _act_backward(L, a, e, g, D, fw.loc[k], runs.proxies, c)
        if k > 0:
            D = _up(np.asarray(Din, dtype=object).reshape(np.shape(fw.xs[k])))
            g = gin
    out = []
    for L in net.layers:
        if L.index in bounds:
            bw, bb = bounds[L.index]
            for ref, val in ((L.weight, bw), (L.bias, bb)):
                if ref is not None and val is not None:
                    out.append((ref, _up(val).reshape(ref.shape)))
    return out, E


def _param_bounds(net, by_ref) -> list:
    """The bound per gradient entry, in kinkcheck's gradient order (a shared entry: the sum)."""
    per_theta = {}
    for ref, arr in by_ref:
        for s, v in zip(ref.src.reshape(-1), arr.reshape(-1)):
            if s >= 0:
                per_theta[int(s)] = per_theta.get(int(s), mpq(0)) + v
    return [per_theta.get(int(i), mpq(0)) for i in net.trainable_index]


# ----------------------------------------------------------------------------------------------
# torch's run, observed


def _torch_run(module, inputs, targets, loss, reduction):
    """torch's gradient {param name: float64 array} and the value entering every layer."""
    torch = _torch()
    nn = torch.nn
    layers = list(module) if isinstance(module, nn.Sequential) else [module]
    module.zero_grad(set_to_none=True)
    x = inputs
    seen = []
    for m in layers:
        seen.append(x.detach().to(torch.float64).numpy())
        x = m(x)
    seen.append(x.detach().to(torch.float64).numpy())
    F = nn.functional
    red = reduction or "mean"
    if loss == "sum":
        value = x.sum()
    elif loss == "dot":
        value = (x * targets).sum()
    elif loss == "mse":
        value = F.mse_loss(x, targets, reduction=red)
    else:
        value = F.l1_loss(x, targets, reduction=red)
    value.backward()
    grads = {}
    for i, m in enumerate(layers):
        for pname, p in m.named_parameters(recurse=False):
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            grads[f"l{i}.{DEQ_NAMES.get(pname, pname)}"] = g.detach().to(torch.float64).numpy()
    return grads, seen


def _fixed_point_pre(module) -> dict:
    """{layer: torch's pre-activation at its float fixed point} for the DEQ modules of the run."""
    from .torch_deq import DEQ

    layers = list(module) if isinstance(module, _torch().nn.Sequential) else [module]
    return {i: m.last_pre.detach().to(_torch().float64).numpy() for i, m in enumerate(layers) if DEQ is not None and isinstance(m, DEQ) and m.last_pre is not None}


def _divergences(net, fw, runs, seen, targets, fp_pre=None) -> list:
    """Branches of torch's run (``seen``; ``fp_pre``: fixed-point layers' pre-activations) that the
    exact run does not take."""
    out = []
    N = net.batch
    for L in net.layers:
        k = L.index
        if L.op == "fixed_point":  # torch's float fixed point's pattern against the exact one's
            if fp_pre and k in fp_pre and L.act.kinks:
                piece, kink = fw.loc[k]
                ex = np.asarray(fw.fp[k].a, dtype=object).reshape(-1)
                for i, (tv, p, kk) in enumerate(zip(fp_pre[k].reshape(-1), piece.reshape(-1), kink.reshape(-1))):
                    tp, tk = L.act.locate(mpq(float(tv)))
                    if (tk if tk is not None else -1) != int(kk) or (tk is None and tp != int(p)):
                        out.append(_div(L, i, fp_pre[k].size // N, ex[i], tv, "the float fixed point's pattern differs (" + ("float tie" if tk is not None else "another piece" if kk < 0 else "exact tie, torch off the kink") + ")"))
            continue
        if L.act is not None and L.act.kinks:
            piece, kink = fw.loc[k]
            ex = np.asarray(fw.xs[k], dtype=object).reshape(-1)
            for i, (tv, p, kk) in enumerate(zip(seen[k].reshape(-1), piece.reshape(-1), kink.reshape(-1))):
                tp, tk = L.act.locate(mpq(float(tv)))
                if (tk if tk is not None else -1) != int(kk) or (tk is None and tp != int(p)):
                    out.append(_div(L, i, seen[k].size // N, ex[i], tv, "float tie" if tk is not None else ("sign flipped by rounding" if kk < 0 else "exact tie, torch off the kink")))
        elif L.op in ("maxpool1d", "maxpool2d"):
            idx = P.pool_index(L)
            eq = fw.pools[k]
            K = idx.shape[1]
            rule = runs.proxies.ties[k]
            pick = np.argmax(eq, axis=-1) if rule == "first" else K - 1 - np.argmax(eq[..., ::-1], axis=-1)
            win = seen[k].reshape(N, -1)[:, idx]
            tpick = np.argmax(win, axis=-1) if rule == "first" else K - 1 - np.argmax(win[..., ::-1], axis=-1)
            for n, w in zip(*np.nonzero(tpick != pick)):
                out.append({"layer": k, "op": L.op, "sample": int(n), "unit": int(w), "what": f"torch's maximum is window entry {int(tpick[n, w])}, the exact run's {int(pick[n, w])}"})
    if net.loss.op == "l1":
        r = np.asarray(fw.residual, dtype=object).reshape(-1)
        t = np.asarray(targets.detach().double().numpy() if hasattr(targets, "detach") else targets, dtype=np.float64)
        rt = (seen[-1] - t).reshape(-1)  # the sign of torch's rounded difference is the exact difference's sign
        for i, (a, b) in enumerate(zip(r, rt)):
            if int(a > 0) - int(a < 0) != int(np.sign(b)):
                out.append({"layer": len(net.layers), "op": "l1", "sample": i // max(1, r.size // N), "unit": i % max(1, r.size // N), "what": f"residual sign: exact {a}, torch {b!r}"})
    return out


def _div(L, i, per, exact, tv, what):
    return {"layer": L.index, "op": L.op, "sample": i // per, "unit": i % per, "exact": str(exact), "torch": float(tv), "what": what}


def _forward_outside(net, fw, E, seen) -> list:
    bad = []
    for k in range(1, len(net.layers) + 1):
        ex = np.asarray(fw.xs[k], dtype=object).reshape(-1)
        for i, (q, e, tv) in enumerate(zip(ex, E[k].reshape(-1), seen[k].reshape(-1))):
            if not math.isfinite(tv) or abs(mpq(float(tv)) - q) > e:
                bad.append(f"the input of layer {k}, entry {i}: torch {tv!r}, exact {q}, bound {float(e):.3g}")
    return bad


# ----------------------------------------------------------------------------------------------
# the check


def gradcheck_report(module, inputs, targets=None, loss: str = "sum", *, strict: bool = False, reduction: str | None = None) -> GradcheckResult:
    """Run torch's autograd on ``module`` (an ``nn.Sequential`` that ``from_torch`` reads) and judge
    it exactly. Returns a :class:`GradcheckResult` (never raises for a failing check)."""
    from ..api import verify

    torch = _torch()
    if not isinstance(module, torch.nn.Module):
        raise InputError("gradcheck: module_or_fn must be an nn.Module (an nn.Sequential of supported layers), not a plain function")
    if loss not in LOSSES:
        raise InputError(f"gradcheck: loss {loss!r} has no rounding bound (supported: {', '.join(LOSSES)})")
    doc = from_torch(module, inputs, targets, loss, reduction)
    fixed = [i for i, spec in enumerate(doc["layers"]) if spec["op"] == "fixed_point"]
    for i, m in enumerate(list(module) if isinstance(module, torch.nn.Sequential) else [module]):
        for pname, p in m.named_parameters(recurse=False):
            if not p.requires_grad:  # frozen, as in torch: a constant of f
                doc["params"][f"l{i}.{DEQ_NAMES.get(pname, pname)}"]["trainable"] = False
    for i, spec in enumerate(doc["layers"]):
        if spec["op"] in ("sigmoid", "tanh"):
            raise InputError(f"gradcheck: layer {i} ({spec['op']}): no rounding bound (torch's {spec['op']} is not correctly rounded)")
    grads, seen = _torch_run(module, inputs, targets, loss, reduction)
    report = verify(doc, values=True)
    net, runs = report._net, report._runs
    no_bound = post = solver_error = None
    if fixed:  # no a-priori bound for a solver's stopping error (docs/gradcheck.md)
        from . import gradcheck_deq

        by_ref, E, vacuous = None, None, None
        deq = gradcheck_deq.applies(module, list(module) if isinstance(module, torch.nn.Sequential) else [module], loss)
        if deq is not None:  # a-posteriori, from torch's final iterates
            post, worst = gradcheck_deq.bounds(deq, inputs, net, [mpq(v) for v in report.ad], net.fmt)
            solver_error = float(worst)
        else:
            no_bound = f"fixed-point layer(s) {', '.join(map(str, fixed))}: the solver's stopping error has no a-priori rounding bound (and the a-posteriori one needs a lone kinkcheck.torch.DEQ with the loss sum or dot); torch's values are reported with their ulp distance from the exact AD, not judged"
    else:
        try:
            by_ref, E = rounding_bounds(report)
            vacuous = None
        except _Vacuous as exc:
            by_ref, E, vacuous = None, None, str(exc)
    fw = runs.exact_full()
    labels = report.labels
    tvals = []
    for p in net.params:
        if p.trainable:
            tvals += [float(v) for v in grads[p.name].reshape(-1)]
    ad = [mpq(s) for s in report.ad]
    bounds = _param_bounds(net, by_ref) if by_ref is not None else post if post is not None else [None] * len(ad)
    fmt = net.fmt
    entries = []
    for name, t, a, b, gr in zip(labels, tvals, ad, bounds, report.gradient or [None] * len(ad)):
        ulps = abs(fmt.ordinal(t) - fmt.ordinal(fmt.round_rational(a))) if math.isfinite(t) else -1
        if no_bound:
            entries.append(Entry(name, str(a), gr, t, ulps, None, None))
            continue
        within = math.isfinite(t) and (b is None or abs(mpq(t) - a) <= b)
        entries.append(Entry(name, str(a), gr, t, ulps, float(b) if b is not None else math.inf, within))
    machine = [float(v) for v in np.asarray(runs.machine_ad(), dtype=np.float64)]
    divergences = _divergences(net, fw, runs, seen, targets, _fixed_point_pre(module))
    problems = []
    if report.differentiable is True and report.ad_correct is False:
        wrong = [e.name for e in entries if e.gradient is not None and e.gradient != e.exact_ad]
        problems.append(f"AD is not the gradient (f is differentiable here): {_names(wrong, entries, 'gradient')}")
    if report.ad_in_clarke is False:
        problems.append(f"AD is not a Clarke subderivative ({report.reason})")
    if report.differentiable is None or (report.differentiable is False and report.ad_in_clarke is None) or (report.differentiable and report.ad_correct is None):
        problems.append(f"undecided: {report.reason or '; '.join(report.unknown)}")
    outside = [e for e in entries if e.within_bound is False]
    if outside:
        why = ("torch took branches the exact run does not: " + ", ".join(f"layer {d['layer']} sample {d['sample']} unit {d['unit']} ({d['what']})" for d in divergences[:LIST])) if divergences else "torch took the exact run's branches: a framework bug or a kernel outside the bound's model (docs/gradcheck.md)"
        problems.append("torch's value is outside the rounding bound of the exact AD at " + "; ".join(f"{e.name}: torch {e.torch!r}, exact AD ~{float(mpq(e.exact_ad)):.17g} ({e.ulps} ulps), |difference| {abs(float(mpq(e.torch) - mpq(e.exact_ad))):.3g} > bound {e.bound:.3g}" for e in outside[:LIST]) + (f" (and {len(outside) - LIST} more)" if len(outside) > LIST else "") + f" - {why}")
    if E is not None:
        fwd = _forward_outside(net, fw, E, seen)
        if fwd:
            problems.append("torch's forward value is outside the rounding bound at " + "; ".join(fwd[:LIST]))
    warning = None
    if report.differentiable is False and report.ad_in_clarke is True:
        ties = ", ".join(f"layer {t['layer']} sample {t['sample']} unit {t['unit']}" for t in report.real_ties[:LIST])
        warning = f"f is not differentiable at these parameters (real ties: {ties}); the AD output is a Clarke subderivative"
        if strict:
            problems.append(warning + " (strict=True)")
    if vacuous:
        problems.append(f"no rounding bound: {vacuous}")
    return GradcheckResult(
        passed=not problems,
        problems=problems,
        warning=warning,
        differentiable=report.differentiable,
        ad_is_gradient=report.ad_correct,
        ad_in_clarke=report.ad_in_clarke,
        torch_within_bound=None if no_bound else not outside,
        torch_bitwise_equals_spec_order_ad=tvals == machine,
        torch_bitwise_equals_exact_ad=all(mpq(t) == a for t, a in zip(tvals, ad)),
        max_ulps=max((e.ulps for e in entries), default=0),
        entries=entries,
        divergences=divergences,
        report=report,
        rounding="no bound" if no_bound else "a-posteriori" if post is not None else "bounded",
        no_bound_reason=no_bound,
        solver_error=solver_error,
    )


def _short(r: str) -> str:
    return r if len(r) <= 24 else f"~{float(mpq(r)):.17g}"


def _names(names, entries, what):
    by = {e.name: e for e in entries}
    return "; ".join(f"{n}: exact AD {_short(by[n].exact_ad)}, {what} {_short(by[n].gradient)}, torch {by[n].torch!r}" for n in names[:LIST]) + (f" (and {len(names) - LIST} more)" if len(names) > LIST else "")


def gradcheck(module_or_fn, inputs, targets=None, loss: str = "sum", *, strict: bool = False, raise_exception: bool = True, reduction: str | None = None) -> bool:
    """torch.autograd.gradcheck's call shape, judged exactly: True, or raise :class:`GradcheckError`
    (``raise_exception=False``: return False). A non-differentiable point where AD is a Clarke
    subderivative passes with a :class:`GradcheckWarning` (``strict=True``: fails). Details:
    :func:`gradcheck_report`."""
    if isinstance(inputs, (tuple, list)) and len(inputs) == 1:
        inputs = inputs[0]  # torch.autograd.gradcheck passes a tuple of inputs
    r = gradcheck_report(module_or_fn, inputs, targets, loss, strict=strict, reduction=reduction)
    if r.warning and r.passed:
        warnings.warn(r.message(), GradcheckWarning, stacklevel=2)
    if r.rounding == "no bound" and r.passed:
        warnings.warn(f"kinkcheck.gradcheck: no rounding bound ({r.no_bound_reason}); torch's gradient is at most {r.max_ulps} ulp(s) from the exact AD - not a proof", GradcheckWarning, stacklevel=2)
    if r.passed:
        return True
    if raise_exception:
        raise GradcheckError(r.message(), r)
    return False


__all__ = ["gradcheck", "gradcheck_report", "rounding_bounds", "GradcheckError", "GradcheckWarning", "GradcheckResult", "Entry"]
