"""PyTorch interop: ``from_torch`` (a ``torch.nn.Sequential`` to a network document, exact bits),
``check`` (an exact gradcheck: torch's own autograd output judged by the exact procedures), model
files without running untrusted code (``load_module``: TorchScript, ``torch.export`` archives,
state_dicts) and the way back (``to_torch``, ``to_onnx``).

Supported layers: Linear, Conv2d, MaxPool1d/2d, AvgPool2d, Flatten, ReLU, LeakyReLU, Hardtanh,
ReLU6, Hardsigmoid, Hardswish, Sigmoid, Tanh, Identity (and this module's Abs, Clamp and Spec*
modules). Losses: the network file's (sum, dot, mse, l1, cross_entropy). Parameters keep their exact
values: float16/float32/float64/bfloat16 are all exactly representable as binary64 and written as
JSON numbers (bfloat16 through float32). Anything else is refused with an error naming the layer.

This module is the public face (``kinkcheck.torch``); the code lives beside it:
``torch_modules`` (kinkcheck's own module classes), ``torch_import`` (``from_torch``),
``torch_check`` (``check``), ``torch_archive`` (``load_module``: model files, torch.export archives,
scripted modules) and ``torch_export`` (``to_torch``, ``to_onnx``, ``export_network``).
"""

from __future__ import annotations

from ..encodings.errors import InputError as InputError
from .torch_archive import ARCH_LAYERS as ARCH_LAYERS
from .torch_archive import exported_to_sequential as exported_to_sequential
from .torch_archive import load_exported as load_exported
from .torch_archive import load_module as load_module
from .torch_archive import parse_arch as parse_arch
from .torch_archive import scripted_to_sequential as scripted_to_sequential
from .torch_check import check
from .torch_export import ORDERS as ORDERS
from .torch_export import TORCH_DT as TORCH_DT
from .torch_export import export_network as export_network
from .torch_export import export_notes as export_notes
from .torch_export import to_onnx as to_onnx
from .torch_export import to_torch as to_torch
from .torch_import import DTYPES as DTYPES
from .torch_import import from_torch
from .torch_modules import KC_MODULES as KC_MODULES

if KC_MODULES:  # the module classes exist only with torch installed
    from .torch_deq import DEQ as DEQ
    from .torch_modules import Abs as Abs
    from .torch_modules import Clamp as Clamp
    from .torch_modules import SpecAvgPool2d as SpecAvgPool2d
    from .torch_modules import SpecConv2d as SpecConv2d
    from .torch_modules import SpecHardsigmoid as SpecHardsigmoid
    from .torch_modules import SpecHardswish as SpecHardswish
    from .torch_modules import SpecLinear as SpecLinear

__all__ = ["check", "from_torch"]
