"""The exact classification of one survey event (``classify``): real tie or float-only, and
kinkcheck's verdicts (differentiable, AD the gradient, AD in Clarke) within a time budget.
"""

from __future__ import annotations

import time
from contextlib import contextmanager


class BudgetExceeded(BaseException):
    """The verdicts' time budget ran out (a BaseException, so no ``except Exception`` eats it)."""


@contextmanager
def _time_budget(seconds):
    """Raise BudgetExceeded after ``seconds`` (SIGALRM; only in a main thread - elsewhere, e.g. in
    Dask's worker threads, there is no budget). Yields whether the budget is active."""
    import signal
    import threading

    if not seconds or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield False
        return

    def on_alarm(signum, frame):
        raise BudgetExceeded()

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _exact_runs(net):
    """``runs.run`` without the machine run: the exact branches are all ``decide`` uses. The float
    side of a survey event is PyTorch's run, not kinkcheck's spec-order one."""
    from ..encodings import program as P
    from ..encodings.runs import run

    return run(net, P.resolve_proxies(net, net.convention), machine=False)


def classify(model, xb, targets, ties, loss: str, *, budget_s: float | None = None, full: bool = False) -> dict:
    """Classify one event exactly. The network file of ``model`` on the minibatch
    (``kinkcheck.torch.from_torch``) goes through kinkcheck's exact run (float64 filter with a
    rigorous bound, exact rationals where it cannot decide) and its decision procedure
    (``differentiability.decide``, the one ``kinkcheck.verify`` uses); each float tie PyTorch saw,
    (layer, op, sample, unit), is looked up among the exact run's real ties.

    ``full``: run the whole ``kinkcheck.verify`` instead, which adds kinkcheck's own machine run in
    the spec's order (its float ties, compensation and choice sensitivity: one machine backward
    pass per float tie, the expensive part). ``budget_s``: time budget of the verdicts (None: no budget); past it
    the verdicts are ``None`` with the reason."""
    from ..api import load, verify
    from ..decide.differentiability import decide
    from ..encodings import program as P
    from ..interop.torch_import import from_torch

    t0 = time.perf_counter()
    doc = from_torch(model, xb, targets, loss=loss)
    over = f"did not finish within the survey's time budget of {budget_s:g} s" if budget_s else ""
    none = {"differentiable": None, "ad_correct": None, "ad_in_clarke": None}
    if full:
        try:
            with _time_budget(budget_s):
                rep = verify(doc, values=False)
        except BudgetExceeded:
            rep = None
        if rep is None:
            real, exact_ok = set(), False
            out = {**none, "reason": f"kinkcheck.verify {over}", "spec_float_ties": None, "compensation_spec_order": None, "choice_sensitive_spec_order": None}
        else:
            real = {(t["layer"], t["sample"], t["unit"]) for t in rep.real_ties}
            exact_ok = rep.branch_mismatch is not None
            out = {"differentiable": rep.differentiable, "ad_correct": rep.ad_correct, "ad_in_clarke": rep.ad_in_clarke, "reason": rep.reason,
                   "spec_float_ties": len(rep.float_ties), "compensation_spec_order": rep.compensation, "choice_sensitive_spec_order": rep.choice_sensitive}
    else:
        net = load(doc)
        runs = _exact_runs(net)
        exact_ok = runs.exact is not None
        real_t = P.ties(net, runs.exact) if exact_ok else []
        real = {t.key for t in real_t}
        out = {} if exact_ok else {"exact_unavailable": runs.exact_reason}
        try:
            with _time_budget(budget_s):
                v = decide(runs, real_t)
            out.update(differentiable=v.differentiable, ad_correct=v.ad_correct, ad_in_clarke=v.ad_in_clarke, reason=v.reason)
        except BudgetExceeded:
            out.update(none, reason=f"the decision procedure {over}")
    seen = [(t[0], t[2], t[3]) for t in ties]
    n_real = sum(k in real for k in seen)
    return {
        "kind": ("real tie" if n_real else "float-only") if exact_ok else None,
        "torch_ties": len(seen),
        "torch_ties_real": n_real,
        "real_ties": len(real),
        "real_ties_unseen_by_torch": len(real - set(seen)),
        **out,
        "time_s": time.perf_counter() - t0,
    }
