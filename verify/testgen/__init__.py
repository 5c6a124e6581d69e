"""Counterexamples as ordinary pytest files.

``export_test(counterexample, framework="numpy"|"torch")`` writes a self-contained test file that
replays the counterexample exactly and in machine arithmetic and asserts what kinkcheck found.
``export`` is the entry point, ``numpy_export`` / ``torch_export`` the exporters, ``engine`` the
replay engine copied into torch files, ``torch_model`` the every-summation-order arithmetic,
``describe`` the network as plain data, ``render`` fills ``templates/`` (real, checked modules).

May import: ``kinkcheck.encodings``, ``kinkcheck.decide``, ``kinkcheck.api``.
"""

from .export import export_test

__all__ = ["export_test"]
