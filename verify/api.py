"""The public Python API: ``load`` a network, ``verify`` it, get a :class:`Report`."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field

from . import __version__
from .decide.choice import TIME_BUDGET_S, choice_sensitivity
from .decide.choice import describe as describe_choice
from .decide.differentiability import decide
from .decide.ties import branch_mismatches, compensation_verdict, describe_tie
from .encodings import program as P
from .encodings.conventions import load_convention
from .encodings.errors import InputError, Undecided
from .encodings.fmt import all_exact, hexf, hexf_all, rat, rat_all
from .encodings.network import Network, check_convention
from .encodings.network import load as _load
from .encodings.runs import run

VALUES_AUTO_LIMIT = 200_000  # n_grad * batch above which AD values are only computed on request
TIME_LIMIT_S = 60.0  # default budget of one verify call (the decision and choice sensitivity share it)


def load(source, *, rounding: str | None = None, convention=None) -> Network:
    """Load a network file (path) or document (dict); raises InputError on bad input."""
    return _load(source, rounding=rounding, convention=convention)


@dataclass
class Report:
    network: str
    dtype: str
    convention: str
    n_params: int
    batch: int
    differentiable: bool | None
    ad_correct: bool | None
    ad_in_clarke: bool | None
    reason: str
    gradient: list | None
    ad: list | None
    machine_ad: list | None
    real_ties: list
    float_ties: list
    choice_sensitive: bool | None
    choice_causes: list
    choice_witness: dict | None
    compensation: bool | None
    compensation_neurons: list
    branch_mismatch: bool | None
    branch_mismatch_units: list
    loss_exact: str | None
    loss_machine: str
    unknown: list = field(default_factory=list)
    rounded_values: list = field(default_factory=list)
    values_included: bool = True
    time_s: float = 0.0
    decision: dict = field(default_factory=dict)
    labels: list = field(default_factory=list)
    implicit: list = field(default_factory=list)  # one entry per fixed-point layer (docs/implicit.md)

    @property
    def findings(self) -> list:
        """What makes the exit code 1. A branch mismatch alone is not a finding (docs/semantics.md):
        when f is differentiable with AD right over the reals it is a compensation (a finding);
        otherwise f is not differentiable or AD is not the gradient (findings already), or that is
        undecided (and so is compensation)."""
        out = []
        if self.differentiable is False:
            out.append("not differentiable")
        if self.ad_correct is False:
            out.append("AD is not the gradient")
        if self.ad_in_clarke is False:
            out.append("AD is not a Clarke subderivative")
        if self.compensation:
            out.append("compensation: f is differentiable and the exact AD output is the gradient, but the float run branches differently from the exact run")
        if self.choice_sensitive:
            out.append("choice-sensitive: the float AD output depends on the proxy choice")
        return out

    @property
    def undecided(self) -> bool:
        return any(v is None for v in (self.differentiable, self.ad_correct, self.ad_in_clarke, self.compensation, self.choice_sensitive))

    @property
    def exit_code(self) -> int:
        if self.findings:
            return 1
        if self.undecided:
            return 3
        return 0

    def to_dict(self) -> dict:
        return {
            "kinkcheck": __version__,
            "network": self.network,
            "dtype": self.dtype,
            "convention": self.convention,
            "n_params": self.n_params,
            "batch": self.batch,
            "differentiable": self.differentiable,
            "ad_correct": self.ad_correct,
            "ad_in_clarke": self.ad_in_clarke,
            "reason": self.reason,
            "gradient": self.gradient,
            "ad": self.ad,
            "machine_ad": self.machine_ad,
            "real_ties": self.real_ties,
            "float_ties": self.float_ties,
            "n_real_ties": len(self.real_ties),
            "n_float_ties": len(self.float_ties),
            "choice_sensitive": self.choice_sensitive,
            "choice_causes": self.choice_causes,
            "choice_witness": self.choice_witness,
            "compensation": self.compensation,
            "compensation_neurons": self.compensation_neurons,
            "branch_mismatch": self.branch_mismatch,
            "branch_mismatch_units": self.branch_mismatch_units,
            "loss": {"exact": self.loss_exact, "machine": self.loss_machine},
            "findings": self.findings,
            "unknown": self.unknown,
            "rounded_values": self.rounded_values,
            "values_included": self.values_included,
            "time_s": round(self.time_s, 6),
            "decision": self.decision,
            "implicit": self.implicit,
        }

    def to_json(self, indent: int | None = None) -> str:
        d = self.to_dict()
        if indent is not None:
            return json.dumps(d, indent=indent)
        return _dumps_long_lists(d, ("gradient", "ad", "machine_ad", "labels"))

    def certificate(self) -> dict:
        """The evidence behind the verdicts as a JSON-able dict (docs/certificate.md), for
        :func:`kinkcheck.check_certificate`."""
        from .certify.certificate import build

        return build(self)


_UNSAFE = re.compile(r'[\x00-\x1f"\\]')


def _dumps_long_lists(d: dict, keys) -> str:
    """json.dumps(d), byte for byte, with the long top-level lists of strings (the per-parameter
    values) joined in one pass instead of encoded string by string; a list holding anything that
    JSON would escape (or not a list of strings) goes through json.dumps as usual."""
    spliced = {}
    for k in keys:
        v = d.get(k)
        if isinstance(v, list) and len(v) > 1000 and all(type(x) is str for x in v):
            body = '", "'.join(v)
            if body.isascii() and not _UNSAFE.search(body):
                spliced[k] = '["' + body + '"]'
    if not spliced:
        return json.dumps(d)
    marks = {k: f"@@kinkcheck-{k}-{id(d)}@@" for k in spliced}
    text = json.dumps({k: (marks[k] if k in marks else v) for k, v in d.items()})
    if any(text.count(m) != 1 for m in marks.values()):  # a marker that also occurs in a value
        return json.dumps(d)
    for k, body in spliced.items():
        text = text.replace(json.dumps(marks[k]), body, 1)
    return text


def verify(network, convention=None, *, values: bool | None = None, rounding: str | None = None, time_limit: float | None = TIME_LIMIT_S, progress=None) -> Report:
    """Verify a network (a :class:`Network`, a path or a dict) at its parameters.

    ``values``: include the exact and machine AD outputs (None: only for small problems).
    ``time_limit``: seconds for the decision and choice sensitivity together (None or 0: no
    limit); a verdict the budget cannot reach is null with the reason. ``progress``: a callable
    taking one line per long step (the CLI prints them on stderr)."""
    t0 = time.perf_counter()
    deadline = t0 + time_limit if time_limit else None

    def say(line):
        if progress is not None:
            progress(line)

    if isinstance(network, Network):
        net = network
        conv = net.convention
        if convention is not None:
            try:
                conv = load_convention(convention)
            except InputError as exc:
                raise exc.located(net.source) if exc.source is None else exc from None
            check_convention(net, conv)
    else:
        net = load(network, rounding=rounding, convention=convention)
        conv = net.convention
    proxies = P.resolve_proxies(net, conv)
    say("exact and machine runs")
    runs = run(net, proxies)
    mfw = runs.machine
    unknown = []
    float_ties = P.ties(net, mfw)
    real_ties = P.ties(net, runs.exact) if runs.exact is not None else []
    if runs.exact is None:
        unknown.append(runs.exact_reason)
    if values is None:
        values = net.n_grad * net.batch <= VALUES_AUTO_LIMIT
    if real_ties:
        say(f"deciding {len(real_ties)} real tie(s)")
    verdict = decide(runs, real_ties, deadline=deadline, time_limit=None, progress=progress)

    # choice sensitivity (machine only)
    witness = None
    try:
        if float_ties:
            say(f"choice sensitivity at {len(float_ties)} float tie(s)")
        budget = TIME_BUDGET_S if deadline is None else max(0.0, min(TIME_BUDGET_S, deadline - time.perf_counter()))
        ch = choice_sensitivity(runs, float_ties, time_budget_s=budget)
        choice = ch["choice_sensitive"]
        causes = [describe_choice(net, t, o) for t, o in ch["causes"]]
        if ch["witness"] is not None:
            witness = {"ties": [describe_choice(net, t, o) for t, o in ch["witness"]], "method": ch["method"]}
            witness["machine_ad"] = [hexf(net.fmt, v) for v in ch["witness_ad"]] if values else None
        if ch["reason"] is not None:
            unknown.append(ch["reason"])
        if ch["checked_singly"] < len(float_ties):
            unknown.append(f"choice_causes: only {ch['checked_singly']} of {len(float_ties)} float ties were switched one at a time")
    except (FloatingPointError, ArithmeticError) as exc:  # pragma: no cover - defensive
        choice, causes = None, []
        unknown.append(f"choice sensitivity: {exc}")

    say("branch mismatches, AD outputs, the report")
    mismatch_units = branch_mismatches(net, runs.exact, mfw) if runs.exact is not None else []
    mismatch = bool(mismatch_units) if runs.exact is not None else None
    comp, why = compensation_verdict(verdict.differentiable, verdict.ad_correct, mismatch)
    if why is not None:
        unknown.append(why)

    ad = gradient = None
    loss_exact = None
    if values and runs.exact is not None:
        try:
            loss_exact = rat(runs.exact_full().loss)
            ead = runs.exact_ad()
            ad = rat_all(ead)
            if verdict.gradient is not None:
                gradient = rat_all(verdict.gradient)
            elif verdict.gradient_is_ad and all_exact(ead):
                gradient = ad
            elif verdict.gradient_is_ad:
                unknown.append("the gradient is not rational (transcendental ops): `ad` holds certified enclosures [lo, hi]")
        except Undecided as exc:
            unknown.append(f"exact AD output undecided: {exc}")
    machine_ad = hexf_all(net.fmt, runs.machine_ad()) if values else None
    exact_desc = runs.exact
    if values and runs.exact is not None and float_ties:
        try:
            exact_desc = runs.exact_full()  # exact pre-activations of filter-decided samples too
        except Undecided:
            pass

    report = Report(
        network=net.source,
        dtype=net.fmt.name,
        convention=conv.name,
        n_params=net.n_grad,
        batch=net.batch,
        differentiable=verdict.differentiable,
        ad_correct=verdict.ad_correct,
        ad_in_clarke=verdict.ad_in_clarke,
        reason=verdict.reason,
        gradient=gradient,
        ad=ad,
        machine_ad=machine_ad,
        real_ties=[describe_tie(net, t, exact_desc, mfw) for t in real_ties],
        float_ties=[describe_tie(net, t, exact_desc, mfw) for t in float_ties],
        choice_sensitive=choice,
        choice_causes=causes,
        choice_witness=witness,
        compensation=comp,
        compensation_neurons=mismatch_units if comp else [],
        branch_mismatch=mismatch,
        branch_mismatch_units=mismatch_units,
        loss_exact=loss_exact,
        loss_machine=hexf(net.fmt, mfw.loss),
        unknown=unknown,
        rounded_values=list(net.rounded),
        values_included=bool(values),
        labels=net.grad_labels() if values else [],
    )
    en = verdict.enumeration
    report.decision = {
        "method": verdict.method,
        "n_real_ties": len(real_ties),
        "time_s": round(verdict.time_s, 6),
        "n_cells": len(en.cells) if en is not None else None,
        "n_empty_patterns": len(en.pruned) if en is not None else None,
        "limiting_gradients": [[rat(x) for x in g] for g in verdict.limiting] if values else None,
        "theorems": list(verdict.theorems),
    }
    if getattr(verdict, "clarke", None) is not None and verdict.clarke.pats is not None:
        report.decision["clarke_patterns"] = verdict.clarke.summary(values)
    if any(L.op in ("fixed_point", "value_iteration") for L in net.layers):
        from .decide.implicit import section
        from .decide.vin import section as vin_section

        report.implicit = section(runs) + vin_section(runs)
    report._verdict = verdict
    report.time_s = time.perf_counter() - t0
    report._runs = runs  # for the decision procedures and certificates (not serialised)
    report._net = net
    return report


__all__ = ["load", "verify", "Report", "InputError"]
