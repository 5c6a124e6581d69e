"""Running the two semantics of a network: exact (filtered, with certified precision escalation)
and machine.

This is the only place that decides how hard to try:
- The exact *branches* (which piece / kink each unit is on, which pool entries are maximal, the l1
  residual signs) are first classified by the float64 filter with a rigorous error bound
  (``encodings/enclosure.py``); only the samples with an undecided unit are evaluated exactly.
- The full exact forward pass (exact loss, exact AD output) is computed on demand.
- Transcendental ops: the exact semantics starts at 128 bits of enclosure precision and quadruples
  it when a comparison is undecided, up to ``MAX_PREC`` bits; past that the exact side is reported
  as undecided (``null`` with the reason), never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import enclosure as F
from . import program as P
from .errors import Undecided
from .exact import ExactArith
from .machine import MachineArith

START_PREC = 128
MAX_PREC = 8192


class Classified:
    """The exact run's branches for the whole batch, from the filter plus exact evaluation of the
    samples it could not decide. Quacks like ``program.Forward`` for ties and compensation."""

    def __init__(self, loc, pools, loss_loc, sub, samples):
        self.loc = loc
        self.pools = pools
        self.loss_loc = loss_loc
        self.sub = sub  # exact Forward on the undecided samples (or None)
        self.samples = {int(s): i for i, s in enumerate(samples)}

    def value_at(self, layer, sample, unit):
        if sample not in self.samples:
            return None
        return self.sub.value_at(layer, self.samples[sample], unit)

    def residual_at(self, sample, unit):
        if sample not in self.samples:
            return None
        return self.sub.residual_at(self.samples[sample], unit)


@dataclass
class Runs:
    net: object
    proxies: object
    machine: object = None  # P.Forward
    exact: object = None  # P.Forward or Classified (branches of the exact run), None if unavailable
    exact_reason: str | None = None  # why the exact run is unavailable
    filtered: int = 0  # samples decided by the float64 filter alone
    _full: object = None
    _cache: dict = field(default_factory=dict)

    @property
    def MA(self):
        return self.machine.A

    def exact_full(self):
        """The full exact forward pass (computed on first use); None if unavailable."""
        if self.exact is None:
            return None
        if self._full is None:
            if isinstance(self.exact, P.Forward):
                self._full = self.exact
            else:
                self._full = exact_forward(self.net)
        return self._full

    def machine_ad(self, **kw):
        key = ("m", kw.get("side"), kw.get("only"))
        if key not in self._cache:
            self._cache[key] = P.backward(self.net, self.MA, self.machine, self.proxies, **kw)
        return self._cache[key]

    def exact_ad(self, **kw):
        fw = self.exact_full()
        if fw is None:
            return None
        key = ("e", kw.get("side"), kw.get("only"))
        if key not in self._cache:
            A = fw.A
            while True:
                try:
                    self._cache[key] = P.backward(self.net, A, fw, self.proxies, **kw)
                    break
                except Undecided:
                    if A.prec >= MAX_PREC:
                        raise
                    A = ExactArith(A.prec * 4)
                    fw = self._full = P.forward(self.net, A)
        return self._cache[key]


def exact_forward(net, prec: int = START_PREC):
    """Full exact forward with precision escalation; raises Undecided past MAX_PREC."""
    while True:
        try:
            return P.forward(net, ExactArith(prec))
        except Undecided:
            if prec >= MAX_PREC:
                raise
            prec *= 4


def _classify(net):
    """Exact branches via the float64 filter + exact evaluation of undecided samples."""
    E = F.forward(net)  # may raise F.Unsupported
    N = net.batch
    loc, pools = {}, {}
    und = np.zeros(N, dtype=bool)
    for L in net.layers:
        c, r = E.c[L.index], E.r[L.index]
        if L.act is not None:
            piece, kink, u = F.classify(c, r, L.act.kinks)
            loc[L.index] = (piece, kink)
            und |= u.reshape(N, -1).any(axis=1)
        elif L.op in ("maxpool1d", "maxpool2d"):
            idx = P.pool_index(L)
            eq, u = F.classify_pool(c.reshape(N, -1)[:, idx], r.reshape(N, -1)[:, idx])
            pools[L.index] = eq
            und |= u.any(axis=1)
    loss_loc = None
    if E.residual is not None:
        piece, kink, u = F.classify(*E.residual, P._abs().kinks)
        loss_loc = (piece, kink)
        und |= u.any(axis=1)
    samples = np.flatnonzero(und)
    sub = None
    if samples.size:
        sub = exact_forward(net.subset(samples))
        for li, (piece, kink) in loc.items():
            sp, sk = sub.loc[li]
            piece[samples], kink[samples] = sp, sk
        for li, eq in pools.items():
            eq[samples] = sub.pools[li]
        if loss_loc is not None:
            loss_loc[0][samples], loss_loc[1][samples] = sub.loss_loc
    return Classified(loc, pools, loss_loc, sub, samples), N - samples.size


def run(net, proxies, *, use_filter: bool = True, machine: bool = True) -> Runs:
    """The machine run (unless ``machine`` is False: callers that only need the exact side, e.g. a
    survey whose float run is the framework's) and the exact branches."""
    runs = Runs(net=net, proxies=proxies)
    if machine:
        runs.machine = P.forward(net, MachineArith(net.fmt))
    if not net.all_finite():
        runs.exact_reason = "the exact semantics is undefined: a parameter, input or target is infinite"
        return runs
    try:
        if use_filter:
            try:
                runs.exact, runs.filtered = _classify(net)
                return runs
            except F.Unsupported:
                pass
        runs.exact = exact_forward(net)
        runs._full = runs.exact
    except Undecided as exc:
        runs.exact = None
        runs.exact_reason = f"undecided at {MAX_PREC} bits of enclosure precision: {exc}"
    return runs
