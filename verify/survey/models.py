"""The torch side of a survey (torch is imported lazily: the package loads without it).

The models (``build_model``: MLP or CNN, seeded like torch's default init), the data
(``load_data``: scikit-learn's ``load_digits`` or the user's ``--data`` set), the loss, the mode-B copy of a model (``_mode_b``:
ReLU'(0) = 1 and the split max-pool, custom autograd Functions) and the forward hooks that record
PyTorch's float ties (``TieRecorder``).
"""

from __future__ import annotations

import math

from ..encodings.errors import InputError
from .config import _default_inputs


def _torch():
    import torch

    return torch


_FNS = {}


def _functions():
    """The mode-B autograd Functions: ReLU with ReLU'(0) = 1, max-pool with the split tie-break."""
    if _FNS:
        return _FNS["relu1"], _FNS["split"]
    torch = _torch()

    class ReluOne(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return torch.relu(x)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * (x >= 0).to(g.dtype)

    class SplitMaxPool2d(torch.autograd.Function):
        """Non-overlapping max-pool (kernel = stride); backward shares the gradient evenly among
        the tied maxima of each window (Boustany's J_split): each gets fl(g / count)."""

        @staticmethod
        def forward(ctx, x, k):
            win = _windows(x, k)
            mx = win.amax(-1)
            ctx.save_for_backward(win, mx)
            ctx.k, ctx.shape = k, x.shape
            return mx

        @staticmethod
        def backward(ctx, g):
            win, mx = ctx.saved_tensors
            k = ctx.k
            mask = win == mx.unsqueeze(-1)
            share = (g / mask.sum(-1).to(g.dtype)).unsqueeze(-1) * mask.to(g.dtype)
            N, C, Ho, Wo, _ = share.shape
            gi = share.reshape(N, C, Ho, Wo, k, k).permute(0, 1, 2, 4, 3, 5).reshape(N, C, Ho * k, Wo * k)
            out = g.new_zeros(ctx.shape)
            out[:, :, : Ho * k, : Wo * k] = gi
            return out, None

    _FNS.update(relu1=ReluOne, split=SplitMaxPool2d)
    return ReluOne, SplitMaxPool2d


def _windows(x, k):
    """[N, C, H, W] -> [N, C, Ho, Wo, k*k]: non-overlapping k x k windows, row-major inside."""
    N, C, H, W = x.shape
    Ho, Wo = H // k, W // k
    xc = x[:, :, : Ho * k, : Wo * k]
    return xc.reshape(N, C, Ho, k, Wo, k).permute(0, 1, 2, 4, 3, 5).reshape(N, C, Ho, Wo, k * k)


def _pool_k(m):
    k, s = m.kernel_size, m.stride if m.stride is not None else m.kernel_size
    k = k[0] if isinstance(k, tuple) else k
    s = s[0] if isinstance(s, tuple) else s
    if k != s or m.padding not in (0, (0, 0)) or m.dilation not in (1, (1, 1)) or m.ceil_mode:
        raise InputError("the survey's split max-pool needs kernel = stride, no padding/dilation/ceil_mode")
    return k


def _mode_b(model):
    """The same parameters with the other proxies: ReLU'(0) = 1 and split max-pool."""
    torch = _torch()
    nn = torch.nn
    ReluOne, Split = _functions()

    class R(nn.Module):
        def forward(self, x):
            return ReluOne.apply(x)

    class P(nn.Module):
        def __init__(self, k):
            super().__init__()
            self.k = k

        def forward(self, x):
            return Split.apply(x, self.k)

    mods = []
    for m in model:
        if type(m) is nn.ReLU:
            mods.append(R())
        elif type(m) is nn.MaxPool2d:
            mods.append(P(_pool_k(m)))
        else:
            mods.append(m)  # shared: same parameters, same .grad
    return nn.Sequential(*mods)


def build_model(arch: str, width: int, depth: int, dtype: str, seed: int, n_in: int = 64):
    """A Sequential of plain torch modules (what ``from_torch`` reads); parameters drawn from a
    private generator like torch's default init (U(-1/sqrt(fan_in), 1/sqrt(fan_in)))."""
    torch = _torch()
    nn = torch.nn
    if arch == "mlp":
        mods, d_in = [], n_in
        for _ in range(depth):
            mods += [nn.Linear(d_in, width), nn.ReLU()]
            d_in = width
        mods.append(nn.Linear(d_in, 10))
    else:
        mods = [nn.Conv2d(1, width, 3), nn.MaxPool2d(2), nn.ReLU()]
        for _ in range(depth - 1):
            mods += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        mods += [nn.Flatten(), nn.Linear(9 * width, 10)]
    model = nn.Sequential(*mods).to(torch.float64)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in mods:
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                bound = 1.0 / math.sqrt(m.weight[0].numel())
                for p in (m.weight, m.bias):
                    p.copy_((torch.rand(p.shape, generator=g, dtype=torch.float64) * 2 - 1) * bound)
    return model.to(getattr(torch, dtype))


_DATA = {}



def load_data(arch: str, dtype: str, inputs: str | None = None, data: str | None = None):
    """load_digits as (X, y), [N, 64] (MLP) or [N, 1, 8, 8] (CNN), or the user's data set ``data``
    (``config.read_data``: an .npz with X [N, D...] and y, MLP only, [N, D]). ``inputs``: "pixels"
    (load_digits: value / 16, exact in every format; a data set: its values as given, rounded to
    ``dtype``) or "standardized" (per pixel (x - mean) / std in binary64, rounded to ``dtype``;
    std 0 -> 1); None: pixels for the MLP, standardized for the CNN."""
    inputs = inputs or _default_inputs(arch)
    key = (arch, dtype, inputs, data)
    if key not in _DATA:
        import numpy as np

        torch = _torch()
        if data is not None:
            from .config import read_data

            A, target, _ = read_data(data)
        else:
            from sklearn.datasets import load_digits

            d = load_digits()
            A, target = np.asarray(d.data, dtype=np.float64), d.target
            if inputs != "standardized":
                A = A / 16.0
        if inputs == "standardized":
            sd = A.std(axis=0)
            A = (A - A.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        X = torch.tensor(A).to(getattr(torch, dtype))
        if arch == "cnn":
            X = X.reshape(-1, 1, 8, 8)
        _DATA[key] = (X, torch.tensor(np.asarray(target), dtype=torch.int64))
    return _DATA[key]


def _targets(yb, loss, dtype):
    torch = _torch()
    return torch.nn.functional.one_hot(yb, 10).to(dtype) if loss == "mse" else yb


def _loss(out, t, loss):
    F = _torch().nn.functional
    return F.mse_loss(out, t) if loss == "mse" else F.cross_entropy(out, t)


class TieRecorder:
    """Forward hooks on every ReLU and MaxPool2d of a Sequential: the float ties of the run, as
    (layer, op, sample, unit) with kinkcheck's numbering (unit = flat index in the sample's
    pre-activation / pool output)."""

    def __init__(self, model):
        torch = _torch()
        self.ties = []
        self.handles = []
        for i, m in enumerate(model):
            if type(m) is torch.nn.ReLU:
                self.handles.append(m.register_forward_hook(self._relu(i)))
            elif type(m) is torch.nn.MaxPool2d:
                self.handles.append(m.register_forward_hook(self._pool(i, _pool_k(m))))

    def _relu(self, i):
        def hook(mod, inp, out):
            x = inp[0].detach()
            for n, u in (x.reshape(x.shape[0], -1) == 0).nonzero().tolist():
                self.ties.append((i, "relu", n, u))

        return hook

    def _pool(self, i, k):
        def hook(mod, inp, out):
            win = _windows(inp[0].detach(), k)
            cnt = (win == win.amax(-1, keepdim=True)).sum(-1)
            for n, u in (cnt.reshape(cnt.shape[0], -1) >= 2).nonzero().tolist():
                self.ties.append((i, "maxpool2d", n, u))

        return hook

    def take(self):
        t, self.ties = self.ties, []
        return t

    def remove(self):
        for h in self.handles:
            h.remove()


def _grads(model, xb, t, loss):
    model.zero_grad(set_to_none=True)
    lo = _loss(model(xb), t, loss)
    lo.backward()
    return lo, [p.grad.clone() for p in model.parameters()]
