"""kinkcheck: exact verification of automatic differentiation at kinks.

>>> import kinkcheck
>>> report = kinkcheck.verify("proofs/examples/relu_minus_relu.json")
>>> report.differentiable, report.ad, report.gradient, report.machine_ad
(True, ['0'], ['1'], ['0x0p+0'])

The names are imported lazily, so that ``import kinkcheck.checker`` (the independent certificate
checker) loads neither Z3 nor the decision code.
"""

__version__ = "0.1.0"

_LAZY = {
    "load": "api",
    "verify": "api",
    "Report": "api",
    "check_certificate": "checker",
    "CheckFailed": "checker",
    "from_torch": "torch",
    "membership": "point",
}


def __getattr__(name):
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    if name in ("InputError", "Undecided"):
        from .encodings import errors

        return getattr(errors, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["load", "verify", "Report", "InputError", "Undecided", "check_certificate", "CheckFailed", "from_torch", "membership", "__version__"]
