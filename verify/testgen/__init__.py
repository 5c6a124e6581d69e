"""Counterexamples as ordinary pytest files.

``export_test(counterexample, framework="numpy"|"torch")`` writes a self-contained test file that
replays the counterexample exactly and in machine arithmetic and asserts what kinkcheck found.

May import: ``kinkcheck.encodings``, ``kinkcheck.decide``, ``kinkcheck.api``.
"""

from .export import export_test

__all__ = ["export_test"]
