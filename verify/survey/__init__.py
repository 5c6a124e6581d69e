"""Surveys: how often training meets kinks at 16/32/64 bits, every event classified exactly
(Bertoin et al.'s and Boustany's experiments at laptop scale).

May import: ``kinkcheck.encodings``, ``kinkcheck.decide``, ``kinkcheck.api``, ``kinkcheck.interop``,
``kinkcheck.files``.
"""

from .run import SurveyConfig, SurveyResult, classify, survey, write

__all__ = ["SurveyConfig", "SurveyResult", "survey", "write", "classify"]
