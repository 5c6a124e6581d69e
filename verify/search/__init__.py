"""Questions across float parameter space: find parameters that break AD, or prove none exist.

``search(network, goal, box=..., free=..., ulps=...)`` (``solver``: Z3 / Bitwuzla over the SMT
encoding) after the exact structure of ``structured`` (interval bounds, slicing, bisection on the
float grid, exhaustive small boxes) and ``lemmas`` (rounding-aware, unit by unit); ``entries``
names the free tensor entries, ``certcheck`` re-validates unsat certificates; ``point.membership``
answers the point question through the same encoding.

May import: ``kinkcheck.encodings``, ``kinkcheck.decide``, ``kinkcheck.certify``, ``kinkcheck.api``.
"""

from .solver import SearchResult, search

__all__ = ["search", "SearchResult"]
