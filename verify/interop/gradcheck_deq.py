"""An a-posteriori rounding bound for ``kinkcheck.gradcheck`` on a lone ``kinkcheck.torch.DEQ``
(docs/gradcheck.md).

The solvers' stopping error has no a-priori bound, but torch's run leaves its state behind: the
float fixed point z_t (``DEQ.last_z``), the pre-activation there, and the adjoint lambda_t the
implicit hook returned (``DEQ.last_lambda``). From there torch computes, for the loss ``sum`` or
``dot`` (an exact cotangent), mu = act'(a_t) * lambda_t (obtained here from torch's own activation
backward on the same floats, so it is torch's value, not a model of it) and then

    grad W = mu^T z_t,   grad U = mu^T x,   grad b = sum over the batch of mu,

sums of N terms (N the batch) in any order. With T the exact value of these sums (rationals from
the observed floats) and a the exact AD output (the exact fixed point's implicit formula), every
torch entry t satisfies

    |t - a| <= |T - a| + gamma_{N+1} * sum |terms| + (N + 1) * eta

(gamma_k = k u / (1 - k u), u = 2^-p, eta the smallest subnormal: underflow). |T - a| is exact: it is
the whole effect of both solvers stopping where they did (and of the float pattern, if it differs);
the rest is the rounding of the last step. The bound is rigorous under the same model of torch's
kernels as the rest of gradcheck (each sum within its gamma bound, whatever the order).
"""

from __future__ import annotations

import math

import numpy as np
from gmpy2 import mpq


def _up(v: mpq) -> mpq:
    f = float(v)
    if mpq(f) < v:
        f = math.nextafter(f, math.inf)
    return mpq(f)


def applies(module, layers, loss: str):
    """The DEQ when the module is one kinkcheck.torch.DEQ (alone or the only entry of an
    nn.Sequential) that has run forward and backward and the loss seeds an exact cotangent; else None."""
    from .torch_deq import DEQ

    if DEQ is None or loss not in ("sum", "dot") or len(layers) != 1 or not isinstance(layers[0], DEQ):
        return None
    m = layers[0]
    return m if m.last_z is not None and m.last_lambda is not None and m.last_pre is not None else None


def bounds(m, inputs, net, ad, fmt) -> tuple[list, mpq]:
    """Per trainable entry of (W, U, b) in the network's order: the bound B (a binary64 number as an
    mpq) with |torch - exact AD| <= B; and the largest exact solver part |T - a|."""
    import torch

    pre = m.last_pre.detach().clone().requires_grad_()
    (mu,) = torch.autograd.grad(m.act(pre), pre, m.last_lambda)
    q = np.vectorize(lambda v: mpq(float(v)), otypes=[object])
    mu, z = q(mu.detach().double().numpy()), q(m.last_z.double().numpy())
    x = q(inputs.detach().double().numpy())
    N = mu.shape[0]
    u = mpq(1, 2**fmt.precision)
    k = N + 1
    if k * u >= 1:
        raise ValueError("batch too large for a rounding bound in this format")
    gam, eta = k * u / (1 - k * u), (N + 1) * mpq(fmt.min_subnormal)

    def parts(cols):  # T[i, j] = sum_s mu[s, i] cols[s, j], and sum |terms|
        T = np.empty((mu.shape[1], cols.shape[1]), dtype=object)
        S = np.empty_like(T)
        for i in range(mu.shape[1]):
            for j in range(cols.shape[1]):
                terms = [mu[s, i] * cols[s, j] for s in range(N)]
                T[i, j] = sum(terms, mpq(0))
                S[i, j] = sum((abs(t) for t in terms), mpq(0))
        return T, S

    blocks = [parts(z), parts(x)]
    if m.b is not None:
        blocks.append(parts(np.ones((N, 1), dtype=object) * mpq(1)))
    names = ["weight", "input_weight", "bias"]
    T, S = {}, {}
    for name, (t, s) in zip(names, blocks):
        T[name], S[name] = t.reshape(-1), s.reshape(-1)
    out, worst = [], mpq(0)
    i = 0
    for p in net.params:
        key = p.name.split(".", 1)[1]
        if not p.trainable:
            continue
        for t, s in zip(T[key], S[key]):
            solver = abs(t - ad[i])
            worst = max(worst, solver)
            out.append(_up(solver + gam * s + eta))
            i += 1
    return out, worst
