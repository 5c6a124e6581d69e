"""Conventions probed, not assumed: measure what the installed framework's autograd returns at every
kink of every supported op, and write it as a convention file (the schema of
``encodings/conventions/*.json``).

``kinkcheck conventions probe --framework torch|jax [-o conv.json]`` (JAX: ``jax_probe.py``). For
torch, every derivative is measured in float64 eager mode on CPU at the exact kink (and relu also
at -0). A value equal to the op's one-sided derivative for two different op constants is written
as "left"/"right" (leaky_relu's negative_slope); otherwise the measured number. Max-pool ties are
probed on a window of equal entries (first / last / split). Ops outside the format (clamp,
max/amax) are recorded under ``"extra"`` for the record.
"""

from __future__ import annotations

import math

from ..encodings.conventions import tie_rule


def _torch():
    try:
        import torch
    except ImportError:
        from ..encodings.errors import InputError

        raise InputError("the torch probe needs PyTorch: pip install 'kinkcheck[torch]'") from None
    return torch


def _grad(torch, fn, x0):
    x = torch.tensor(float(x0), dtype=torch.float64, requires_grad=True)
    y = fn(x)
    y.backward()
    return float(x.grad)


def probe_torch() -> dict:
    torch = _torch()
    F = torch.nn.functional
    ops = {}
    src = f"measured with torch {torch.__version__} autograd (CPU, float64, eager) by kinkcheck conventions probe"

    def entry(vals, note=""):
        return {"kink_derivatives": vals, "source": src, **({"note": note} if note else {})}

    relu0 = _grad(torch, F.relu, 0.0)
    relu_m0 = _grad(torch, F.relu, -0.0)
    ops["relu"] = entry([relu0], f"relu'(+0) = {relu0}, relu'(-0) = {relu_m0}")
    # leaky_relu: is the derivative at 0 the slope (left), 1 (right) or a constant?
    a = _grad(torch, lambda x: F.leaky_relu(x, 0.01), 0.0)
    b = _grad(torch, lambda x: F.leaky_relu(x, 0.25), 0.0)
    ops["leaky_relu"] = entry(["left"] if (a, b) == (0.01, 0.25) else ["right"] if (a, b) == (1.0, 1.0) else [a])
    ops["hardtanh"] = entry([_grad(torch, F.hardtanh, -1.0), _grad(torch, F.hardtanh, 1.0)])
    ops["relu6"] = entry([_grad(torch, F.relu6, 0.0), _grad(torch, F.relu6, 6.0)])
    ops["hardsigmoid"] = entry([_grad(torch, F.hardsigmoid, -3.0), _grad(torch, F.hardsigmoid, 3.0)])
    ops["hardswish"] = entry([_grad(torch, F.hardswish, -3.0), _grad(torch, F.hardswish, 3.0)])
    ops["abs"] = entry([_grad(torch, torch.abs, 0.0)])
    t = torch.tensor(0.5, dtype=torch.float64)
    ops["l1"] = entry([_grad(torch, lambda x: F.l1_loss(x + 0.5, t), 0.0)])

    def pool_rule(fn, shape):
        x = torch.ones(shape, dtype=torch.float64, requires_grad=True)
        fn(x).sum().backward()
        return tie_rule(x.grad.reshape(-1).tolist())

    ops["maxpool1d"] = {"tie_break": pool_rule(lambda x: F.max_pool1d(x, 3), (1, 1, 3)), "source": src}
    ops["maxpool2d"] = {"tie_break": pool_rule(lambda x: F.max_pool2d(x, 2), (1, 1, 2, 2)), "source": src}
    extra = {
        "clamp_at_bounds": [_grad(torch, lambda x: torch.clamp(x, -1.0, 1.0), -1.0), _grad(torch, lambda x: torch.clamp(x, -1.0, 1.0), 1.0)],
        "max_ties": pool_rule(lambda x: torch.max(x), (3,)),
        "amax_ties": pool_rule(lambda x: torch.amax(x), (3,)),
    }
    for k, v in list(extra.items()):
        if isinstance(v, list):
            extra[k] = [x if math.isfinite(x) else str(x) for x in v]
    return {
        "convention": f"torch-{torch.__version__}-probed",
        "framework": "PyTorch",
        "version": f"{torch.__version__} (CPU, probed)",
        "mode": "eager, float64, CPU",
        "ops": ops,
        "extra": extra,
    }


def probe(framework: str) -> dict:
    if framework == "torch":
        return probe_torch()
    if framework == "jax":
        from .jax_probe import probe_jax

        return probe_jax()
    from ..encodings.errors import InputError

    raise InputError(f"unknown framework {framework!r} (torch or jax)")
