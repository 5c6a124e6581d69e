"""The torch side of kinkcheck's PyTorch interop: ``_t()`` (torch, or an InputError naming the
extra to install) and kinkcheck's own module classes (``Abs``, ``Clamp`` and the ``Spec*`` modules
that evaluate in kinkcheck's machine order), public as ``kinkcheck.torch.Abs`` etc.
"""

from __future__ import annotations

from ..encodings.errors import InputError

try:  # the module classes below need torch; every function raises InputError through _t() without it
    import torch as _torch
except ImportError:  # pragma: no cover - exercised only without the extra
    _torch = None


def _t():
    try:
        import torch
    except ImportError:
        raise InputError("PyTorch is not installed: pip install 'kinkcheck[torch]'") from None
    return torch


def _pair(v):
    return list(v) if isinstance(v, (tuple, list)) else [v, v]


# ----------------------------------------------------------------------------------------------
# modules of our own: ops torch.nn has no module for (Abs, Clamp), and "spec order" modules that
# evaluate in kinkcheck's machine order (docs/semantics.md) with one rounded torch op per step, so
# that their forward pass equals kinkcheck's machine forward bit for bit (docs/interop.md). They
# are scriptable; a TorchScript file keeps their class name, which load_module maps back.

if _torch is not None:
    _nn = _torch.nn

    def _weight_bias(m, weight, bias):
        """Copies of ``weight`` and ``bias`` (or a registered None bias) as m's parameters."""
        m.weight = _nn.Parameter(weight.detach().clone())
        if bias is None:
            m.register_parameter("bias", None)
        else:
            m.bias = _nn.Parameter(bias.detach().clone())

    class Abs(_nn.Module):
        """abs(x) (the format's ``abs``; torch.nn has no module for it)."""

        ARGS = ()

        def forward(self, x):
            return _torch.abs(x)

    class Clamp(_nn.Module):
        """torch.clamp(x, min_val, max_val), as found in a torch.export graph: the hardtanh function
        with clamp's own derivative at the bounds (from_torch measures it with the installed torch)."""

        ARGS = ("min_val", "max_val")

        def __init__(self, min_val: float, max_val: float):
            super().__init__()
            self.min_val = float(min_val)
            self.max_val = float(max_val)

        def forward(self, x):
            return _torch.clamp(x, self.min_val, self.max_val)

    class SpecLinear(_nn.Module):
        """y = W x + b as ``acc = x[0]*W[:,0]; acc = acc + x[j]*W[:,j]``; then ``acc + b``."""

        ARGS = ("weight", "bias")

        def __init__(self, weight, bias=None):
            super().__init__()
            _weight_bias(self, weight, bias)

        def forward(self, x):
            w = self.weight
            acc = x[:, 0:1] * w[:, 0]
            for j in range(1, w.shape[1]):
                acc = acc + x[:, j : j + 1] * w[:, j]
            b = self.bias
            if b is not None:
                acc = acc + b
            return acc

    class SpecConv2d(_nn.Module):
        """conv2d as the same dot product over the zero-padded receptive field in (in-channel, kh,
        kw) order - one strided slice of the padded input per kernel entry - then ``+ b``."""

        ARGS = ("weight", "bias", "stride", "padding")

        def __init__(self, weight, bias=None, stride=(1, 1), padding=(0, 0)):
            super().__init__()
            _weight_bias(self, weight, bias)
            self.stride = [int(stride[0]), int(stride[1])]
            self.padding = [int(padding[0]), int(padding[1])]

        def forward(self, x):
            w = self.weight
            o, c, kh, kw = w.shape[0], w.shape[1], w.shape[2], w.shape[3]
            p0, p1, s0, s1 = self.padding[0], self.padding[1], self.stride[0], self.stride[1]
            xp = x.new_zeros([x.shape[0], c, x.shape[2] + 2 * p0, x.shape[3] + 2 * p1])  # +0 padding
            xp[:, :, p0 : p0 + x.shape[2], p1 : p1 + x.shape[3]] = x
            h = (xp.shape[2] - kh) // s0 + 1
            v = (xp.shape[3] - kw) // s1 + 1
            acc = x.new_zeros([0])
            first = True
            for ci in range(c):
                for i in range(kh):
                    for j in range(kw):
                        term = xp[:, ci : ci + 1, i : i + s0 * (h - 1) + 1 : s0, j : j + s1 * (v - 1) + 1 : s1] * w[:, ci, i, j].reshape(1, o, 1, 1)
                        if first:
                            acc = term
                            first = False
                        else:
                            acc = acc + term
            b = self.bias
            if b is not None:
                acc = acc + b.reshape(1, o, 1, 1)
            return acc

    class SpecAvgPool2d(_nn.Module):
        """avgpool2d as the window summed left to right in row-major order, then ``/ fl(kh*kw)``."""

        ARGS = ("kernel_size", "stride", "size")

        def __init__(self, kernel_size, stride, size):
            super().__init__()
            self.kernel_size = [int(kernel_size[0]), int(kernel_size[1])]
            self.stride = [int(stride[0]), int(stride[1])]
            self.register_buffer("size", size.detach().clone())  # fl(kh*kw) in the dtype

        def forward(self, x):
            kh, kw, s0, s1 = self.kernel_size[0], self.kernel_size[1], self.stride[0], self.stride[1]
            h = (x.shape[2] - kh) // s0 + 1
            v = (x.shape[3] - kw) // s1 + 1
            acc = x[:, :, 0 : s0 * (h - 1) + 1 : s0, 0 : s1 * (v - 1) + 1 : s1]
            for i in range(kh):
                for j in range(kw):
                    if i + j > 0:
                        acc = acc + x[:, :, i : i + s0 * (h - 1) + 1 : s0, j : j + s1 * (v - 1) + 1 : s1]
            return acc / self.size

    class _SpecConsts(_nn.Module):
        """Constants 0, 1, 3, 6 as 0-d tensors of the dtype: every arithmetic step is then one op
        in the dtype (torch computes a half op in float32 and rounds once: innocuous double rounding)."""

        ARGS = ("one",)

        def __init__(self, one):
            super().__init__()
            for name, v in (("zero", 0.0), ("one", 1.0), ("three", 3.0), ("six", 6.0)):
                self.register_buffer(name, _torch.tensor(v, dtype=one.dtype))

    class SpecHardsigmoid(_SpecConsts):
        """0 for x <= -3, (x + 3) / 6 for x < 3, else 1 (the pieces of docs/semantics.md)."""

        def forward(self, x):
            return _torch.where(x <= -3.0, self.zero, _torch.where(x < 3.0, (x + self.three) / self.six, self.one))

    class SpecHardswish(_SpecConsts):
        """0 for x <= -3, (x * (x + 3)) / 6 for x < 3, else x (torch's own kernel computes
        x * 6 / 6 there, which is not always x)."""

        def forward(self, x):
            return _torch.where(x <= -3.0, self.zero, _torch.where(x < 3.0, (x * (x + self.three)) / self.six, x))

    KC_MODULES = {c.__name__: c for c in (Abs, Clamp, SpecLinear, SpecConv2d, SpecAvgPool2d, SpecHardsigmoid, SpecHardswish)}
else:  # pragma: no cover
    KC_MODULES = {}
    # placeholders so that the other torch_* modules import without torch; every function there
    # calls _t() (an InputError) before it could use one, and kinkcheck.torch does not export them
    Abs = Clamp = SpecLinear = SpecConv2d = SpecAvgPool2d = SpecHardsigmoid = SpecHardswish = None
