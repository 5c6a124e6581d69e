"""Old import paths, kept for one release.

kinkcheck 0.1 kept every module side by side in one flat package (``kinkcheck.cells``,
``kinkcheck.checker``, ...). Those names still import, and give the module at its new place (the
same module object, so monkeypatching either name patches both), with a DeprecationWarning naming
the new path; they go in 0.3. ``kinkcheck.torch`` is public API and stays for good (no warning).

An import hook (a meta path finder) does this, so the tree holds no stub files.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings

# old module (under kinkcheck) -> new module (under kinkcheck)
MOVED = {
    "ties": "decide.ties",
    "choice": "decide.choice",
    "cells": "decide.cells",
    "hinge": "decide.hinge",
    "differentiability": "decide.differentiability",
    "theorems": "decide.theorems",
    "linalg": "decide.linalg",
    "certificate": "certify.certificate",
    "checker": "certify.checker",
    "structured": "search.structured",
    "point": "search.point",
    "onnx_import": "interop.onnx",
    "probe": "interop.probe",
    "jax_probe": "interop.jax_probe",
    "export": "testgen.export",
    "fmt": "encodings.fmt",
    "runs": "encodings.runs",
}
# public names that point into a subpackage for good
PUBLIC = {"torch": "interop.torch"}

REMOVED_IN = "0.3"


def target(name: str) -> str | None:
    """The new full module name for an old short name (``"cells"`` -> ``"kinkcheck.decide.cells"``)."""
    new = MOVED.get(name) or PUBLIC.get(name)
    return f"kinkcheck.{new}" if new else None


def warn(name: str, stacklevel: int = 3) -> None:
    if name in MOVED:
        warnings.warn(
            f"kinkcheck.{name} has moved to kinkcheck.{MOVED[name]}; the old name is removed in kinkcheck {REMOVED_IN}",
            DeprecationWarning,
            stacklevel=stacklevel,
        )


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import kinkcheck.OLD`` -> the module ``kinkcheck.NEW`` itself, registered under both names."""

    def __init__(self):
        self._specs = {}

    def find_spec(self, fullname, path=None, target_=None):
        head, _, leaf = fullname.partition(".")
        if head != "kinkcheck" or "." in leaf or target(leaf) is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        leaf = spec.name.partition(".")[2]
        warn(leaf, stacklevel=8)
        module = importlib.import_module(target(leaf))
        self._specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module):
        # the import system set __spec__ to the alias spec: give the module its own back
        for name, spec in self._specs.items():
            if spec.name == module.__name__:
                module.__spec__ = spec


def install() -> None:
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.append(_Alias())
