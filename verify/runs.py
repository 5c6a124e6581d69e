"""Running the two semantics of a network: exact (with certified precision escalation) and machine.

This is the only place that decides how hard to try: the exact semantics starts at a modest
enclosure precision for transcendental ops and quadruples it when a comparison is undecided, up to
``MAX_PREC`` bits; past that the exact side is reported as undecided (``null`` with the reason),
never guessed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .encodings import program as P
from .encodings.errors import Undecided
from .encodings.exact import ExactArith
from .encodings.machine import MachineArith

START_PREC = 128
MAX_PREC = 8192


@dataclass
class Runs:
    net: object
    proxies: object
    machine: object = None  # P.Forward
    exact: object = None  # P.Forward or None
    exact_reason: str | None = None  # why the exact run is unavailable
    _cache: dict = field(default_factory=dict)

    @property
    def MA(self):
        return self.machine.A

    @property
    def EA(self):
        return self.exact.A if self.exact is not None else None

    def machine_ad(self, **kw):
        key = ("m", kw.get("side"), kw.get("only"))
        if key not in self._cache:
            self._cache[key] = P.backward(self.net, self.MA, self.machine, self.proxies, **kw)
        return self._cache[key]

    def exact_ad(self, **kw):
        if self.exact is None:
            return None
        key = ("e", kw.get("side"), kw.get("only"))
        if key not in self._cache:
            self._cache[key] = _escalate(lambda A: P.backward(self.net, A, self._exact_at(A), self.proxies, **kw), self)
        return self._cache[key]

    def _exact_at(self, A):
        if A is self.exact.A:
            return self.exact
        self.exact = P.forward(self.net, A)
        return self.exact


def _escalate(fn, runs):
    A = runs.exact.A
    while True:
        try:
            return fn(A)
        except Undecided:
            if A.prec >= MAX_PREC:
                raise
            A = ExactArith(A.prec * 4)


def run(net, proxies) -> Runs:
    runs = Runs(net=net, proxies=proxies)
    runs.machine = P.forward(net, MachineArith(net.fmt))
    if not np.isfinite(net.theta).all() or not np.isfinite(net.inputs).all() or (
        net.targets is not None and net.targets.dtype.kind == "f" and not np.isfinite(net.targets).all()
    ):
        runs.exact_reason = "the exact semantics is undefined: a parameter, input or target is infinite"
        return runs
    prec = START_PREC
    while True:
        try:
            runs.exact = P.forward(net, ExactArith(prec))
            return runs
        except Undecided as exc:
            if prec >= MAX_PREC:
                runs.exact_reason = f"undecided at {prec} bits of enclosure precision: {exc}"
                return runs
            prec *= 4


def is_finite_float(v) -> bool:
    return math.isfinite(float(v))
