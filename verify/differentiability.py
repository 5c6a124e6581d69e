"""Is f differentiable at w, is the AD output the gradient, is it a Clarke subderivative?

Decided here (exactly): with no real tie anywhere, every op is smooth on a neighbourhood of w, so f
is C^1 near w, all three answers are yes and the gradient is the exact AD output. With real ties the
answers need the directional-derivative analysis (the decision-procedure issue); until then they are
``None`` (undecided) with the reason. Never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Verdict:
    differentiable: bool | None
    ad_correct: bool | None
    ad_in_clarke: bool | None
    gradient_is_ad: bool  # the gradient equals the exact AD output
    reason: str


def decide(runs, real_ties) -> Verdict:
    if runs.exact is None:
        return Verdict(None, None, None, False, runs.exact_reason or "the exact run is unavailable")
    if not real_ties:
        return Verdict(True, True, True, True, "no real tie: f is smooth near w, its gradient is the exact AD output")
    return Verdict(
        None,
        None,
        None,
        False,
        f"{len(real_ties)} real tie(s): deciding differentiability needs the directional-derivative analysis (not in this version)",
    )
