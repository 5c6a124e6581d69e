"""The JAX conventions probe: what ``jax.grad`` returns at every kink of every op of the format that
JAX has, written as a convention file in the schema of ``encodings/conventions/*.json`` (the same as
``probe_torch``).

``kinkcheck conventions probe --framework jax [-o conv.json]``. JAX runs on CPU (``JAX_PLATFORMS``
is set to ``cpu`` when this module imports JAX first). Every value is measured in float32 (JAX's
default dtype), op by op (each ``jax.grad`` eagerly); the same points are measured again as one
``jax.jit`` program in float32 and in float64 (``enable_x64``), and any disagreement is recorded
under ``extra`` - the convention file takes the op-by-op float32 values.

The JAX functions probed (the ones a JAX user writes for the format's ops):

* relu: ``jax.nn.relu`` at +0 and -0; leaky_relu: ``jax.nn.leaky_relu`` at 0 with two slopes
  (written "left"/"right" when the value follows the slope / is 1); hardtanh: ``jax.nn.hard_tanh``
  (bounds -1 and 1 only); relu6: ``jax.nn.relu6``; hardsigmoid / hardswish: ``jax.nn.hard_sigmoid``
  / ``jax.nn.hard_swish``; abs: ``jnp.abs``; l1: ``jnp.abs(output - target)`` at equality.
* maxpool1d / maxpool2d: ``lax.reduce_window(x, -inf, lax.max, window, strides, "VALID")`` (what
  flax's ``max_pool`` runs) on a window of equal entries.
* extra (not format ops): ``jnp.clip`` at its bounds, ``jnp.maximum(x, 0)`` at 0, ``jnp.max`` /
  ``jnp.amax`` ties, ``jnp.abs(target - output)`` at equality, and ``hard_sigmoid`` at the float32
  number just below 3 (JAX computes relu6(x + 3) / 6, so its float kink is where fl(x + 3) = 6).
"""

from __future__ import annotations

import math
import os
import sys

from ..encodings.conventions import tie_rule
from ..encodings.errors import InputError


def _jax():
    if "jax" not in sys.modules:
        os.environ["JAX_PLATFORMS"] = "cpu"
    try:
        import jax
        import jax.numpy as jnp
        from jax import lax
    except ImportError:
        raise InputError("the jax probe needs JAX: pip install 'kinkcheck[jax]'") from None
    return jax, jnp, lax


def _x64(jax):
    """A context manager that enables float64, or None if this JAX has none."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    try:
        from jax.experimental import enable_x64
    except ImportError:
        return None
    return enable_x64()


def _measure(jax, jnp, lax, dtype, jit: bool) -> dict:
    """Every probed derivative, as lists of floats (pool rules as gradient lists). Op by op, each
    ``jax.grad`` runs eagerly; with ``jit`` all of them run as one jitted program."""
    nn = jax.nn

    def d(f, x0):
        return lambda: jax.grad(f)(jnp.asarray(x0, dtype=dtype)).reshape(1)

    def grads(f, shape):
        return lambda: jax.grad(lambda x: f(x).sum())(jnp.ones(shape, dtype=dtype)).reshape(-1)

    def pool(window):
        return lambda x: lax.reduce_window(x, -jnp.inf, lax.max, window, window, "VALID")

    def both(f, a, b):
        return lambda: jnp.concatenate([d(f, a)(), d(f, b)()])

    half = jnp.asarray(0.5, dtype=dtype)
    below3 = jnp.nextafter(jnp.asarray(3.0, dtype=dtype), jnp.asarray(0.0, dtype=dtype))
    thunks = {
        "relu": d(nn.relu, 0.0),
        "relu(-0)": d(nn.relu, -0.0),
        "leaky_relu(0.25)": d(lambda x: nn.leaky_relu(x, negative_slope=0.25), 0.0),
        "leaky_relu(0.5)": d(lambda x: nn.leaky_relu(x, negative_slope=0.5), 0.0),
        "hardtanh": both(nn.hard_tanh, -1.0, 1.0),
        "relu6": both(nn.relu6, 0.0, 6.0),
        "hardsigmoid": both(nn.hard_sigmoid, -3.0, 3.0),
        "hardswish": both(nn.hard_swish, -3.0, 3.0),
        "abs": d(jnp.abs, 0.0),
        "abs(-0)": d(jnp.abs, -0.0),
        "l1": d(lambda o: jnp.abs(o - half), 0.5),
        "maxpool1d": grads(pool((3,)), (3,)),
        "maxpool2d": grads(pool((2, 2)), (2, 2)),
        "clip_at_bounds": both(lambda x: jnp.clip(x, -1.0, 1.0), -1.0, 1.0),
        "maximum_x_0_at_0": d(lambda x: jnp.maximum(x, 0.0), 0.0),
        "max_ties": grads(jnp.max, (3,)),
        "amax_ties": grads(jnp.amax, (3,)),
        "l1_target_minus_output": d(lambda o: jnp.abs(half - o), 0.5),
        "hard_sigmoid_below_3": d(nn.hard_sigmoid, below3),
        "hard_swish_below_3": d(nn.hard_swish, below3),
    }
    if jit:
        raw = jax.jit(lambda: {k: f() for k, f in thunks.items()})()
    else:
        raw = {k: f() for k, f in thunks.items()}
    return {k: [float(v) for v in raw[k]] for k in thunks}


def _num(v: float):
    return v if math.isfinite(v) else str(v)


def probe_jax() -> dict:
    jax, jnp, lax = _jax()
    cpu = jax.devices("cpu")[0]
    with jax.default_device(cpu):
        m = _measure(jax, jnp, lax, jnp.float32, jit=False)
        others = {"jit, float32": _measure(jax, jnp, lax, jnp.float32, jit=True)}
        ctx = _x64(jax)
        if ctx is not None:
            with ctx:
                others["jit, float64"] = _measure(jax, jnp, lax, jnp.float64, jit=True)
    src = f"measured with jax {jax.__version__} jax.grad (CPU, float32, op by op) by kinkcheck conventions probe"

    def entry(vals, fn, note=""):
        return {"kink_derivatives": [_num(v) if isinstance(v, float) else v for v in vals], "source": f"{src}: {fn}", **({"note": note} if note else {})}

    a, b = m["leaky_relu(0.25)"][0], m["leaky_relu(0.5)"][0]
    leaky = ["left"] if (a, b) == (0.25, 0.5) else ["right"] if (a, b) == (1.0, 1.0) else [a]
    ops = {
        "relu": entry(m["relu"], "jax.nn.relu", f"relu'(+0) = {m['relu'][0]}, relu'(-0) = {m['relu(-0)'][0]}"),
        "leaky_relu": entry(leaky, "jax.nn.leaky_relu", f"at 0: {a} with negative_slope 0.25, {b} with 0.5"),
        "hardtanh": entry(m["hardtanh"], "jax.nn.hard_tanh", "jax.nn.hard_tanh has the bounds -1 and 1 only; the entry applies to any bounds"),
        "relu6": entry(m["relu6"], "jax.nn.relu6"),
        "hardsigmoid": entry(m["hardsigmoid"], "jax.nn.hard_sigmoid"),
        "hardswish": entry(m["hardswish"], "jax.nn.hard_swish"),
        "abs": entry(m["abs"], "jnp.abs", f"abs'(+0) = {m['abs'][0]}, abs'(-0) = {m['abs(-0)'][0]}"),
        "maxpool1d": {"tie_break": tie_rule(m["maxpool1d"]), "source": f"{src}: lax.reduce_window(x, -inf, lax.max, (3,), (3,), 'VALID') on a window of equal entries"},
        "maxpool2d": {"tie_break": tie_rule(m["maxpool2d"]), "source": f"{src}: lax.reduce_window(x, -inf, lax.max, (2, 2), (2, 2), 'VALID') on a window of equal entries"},
        "l1": entry(m["l1"], "jnp.abs(output - target) at output = target", f"jnp.abs(target - output) gives {m['l1_target_minus_output'][0]} instead"),
    }
    extra = {
        "clip_at_bounds": [_num(v) for v in m["clip_at_bounds"]],
        "maximum_x_0_at_0": _num(m["maximum_x_0_at_0"][0]),
        "max_ties": tie_rule(m["max_ties"]),
        "amax_ties": tie_rule(m["amax_ties"]),
        "l1_target_minus_output": _num(m["l1_target_minus_output"][0]),
        "hard_sigmoid_below_3": _num(m["hard_sigmoid_below_3"][0]),
        "hard_swish_below_3": _num(m["hard_swish_below_3"][0]),
    }
    pools = ("maxpool1d", "maxpool2d", "max_ties", "amax_ties")
    for mode, other in others.items():  # compare what the file records: numbers, or the pool rule
        diff = sorted(k for k in m if (tie_rule(other[k]) != tie_rule(m[k]) if k in pools else other[k] != m[k]))
        if mode.endswith("float64"):  # the number below 3 is another number in float64
            diff = [k for k in diff if not k.endswith("_below_3")]
        extra[f"differs under {mode}"] = {k: other[k] for k in diff}
    platform = cpu.platform
    return {
        "convention": f"jax-{jax.__version__}-probed",
        "framework": "JAX",
        "version": f"{jax.__version__} ({platform.upper()}, probed)",
        "mode": "jax.grad, float32, CPU, op by op (also measured under jax.jit in float32 and float64: see extra)",
        "ops": ops,
        "extra": extra,
    }
