"""Shared test configuration.

Hypothesis profiles: ``ci`` (default: small, fast and derandomized, so that CI runs the same
examples every time and cannot turn red by chance) and ``thorough`` (random, 1000 examples; run by
hand: ``HYPOTHESIS_PROFILE=thorough python -m pytest``; some slow tests also scale with
``KINKCHECK_TEST_SCALE``).
"""

import os
from pathlib import Path

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "proofs" / "examples"
