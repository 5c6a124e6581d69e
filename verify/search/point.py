"""The point question through the SMT encoding: with ALL parameters fixed, is w in the float-tie
set, the real-tie set, the nd set?

``membership(network)`` builds the same terms ``kinkcheck search`` hands to the solver
(``encodings/smt.py``: Z3 FloatingPoint terms for the machine run, Z3 Real terms for the exact run)
with every parameter a constant, and lets Z3 evaluate them (``z3.simplify`` of a ground term is a
constant). So it answers through the encoding, independently of the evaluator's own code paths
(``program.py`` over ``MachineArith`` / ``ExactArith``):

- ``float_tie``: some unit / max-pool window / l1 residual is exactly on a kink in the float run;
- ``real_tie``: the same over the reals;
- ``nd``: f is not differentiable at w. Without a real tie f is C^1 near w (every op is smooth on
  a neighbourhood), so ``nd`` is False from the encoding alone. With real ties, the exact
  differentiability decision of ``kinkcheck.verify`` (``differentiability.decide``: cells / hinge
  decomposition, exact LPs) decides it; its ties must be the encoding's (checked).

The test suite checks that these answers agree with ``kinkcheck.verify`` on random networks in
every format (``tests/test_point.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import z3

from ..encodings import program as P
from ..encodings.network import Network
from ..encodings.smt import Unsupported, Z3FPArith, Z3RealArith, pool_tie_conditions


@dataclass
class Membership:
    float_tie: bool
    real_tie: bool | None  # None: the exact run is not encodable (transcendental op, infinite value)
    nd: bool | None  # None: undecided (reason), or no exact run
    float_ties: list = field(default_factory=list)  # [(layer, sample, unit)] sorted
    real_ties: list = field(default_factory=list)
    reason: str = ""

    def to_dict(self) -> dict:
        return {
            "float_tie": self.float_tie,
            "real_tie": self.real_tie,
            "nd": self.nd,
            "float_ties": [list(k) for k in self.float_ties],
            "real_ties": [list(k) for k in self.real_ties],
            "reason": self.reason,
        }


def tie_conditions(net: Network, fw) -> list:
    """(key, Bool term) for every elementwise unit, max-pool window and l1 residual that may tie;
    key = (layer, sample, unit), layer = len(layers) for the l1 loss."""
    out = []
    N = net.batch
    for layer, (kind, conds) in fw.loc.items():
        for (n, u), c in np.ndenumerate(conds.reshape(N, -1)):
            out.append(((layer, n, u), c))
    for layer, eq in fw.pools.items():
        for (n, w), c in np.ndenumerate(pool_tie_conditions(eq)):
            out.append(((layer, n, w), c))
    if fw.loss_loc is not None:
        for (n, u), c in np.ndenumerate(fw.loss_loc[1]):
            out.append(((len(net.layers), n, u), c))
    return out


def _ground(c) -> bool:
    v = z3.simplify(c)
    if z3.is_true(v):
        return True
    if z3.is_false(v):
        return False
    raise RuntimeError(f"a tie condition with every parameter fixed did not evaluate to a constant: {v}")  # pragma: no cover


def float_ties(net: Network) -> list:
    """Keys of the float ties, from the Z3 FloatingPoint encoding with every parameter fixed."""
    fz = P.forward(net, Z3FPArith(net.fmt))
    return sorted(k for k, c in tie_conditions(net, fz) if _ground(c))


def real_ties(net: Network) -> list:
    """Keys of the real ties, from the Z3 Real encoding (raises Unsupported / ValueError)."""
    infinite = net.infinite()
    if infinite:
        raise ValueError(f"{infinite}: the exact semantics is undefined")
    fr = P.forward(net, Z3RealArith(net.fmt))
    return sorted(k for k, c in tie_conditions(net, fr) if _ground(c))


def membership(network, convention=None) -> Membership:
    """Is the network's parameter point w in the float-tie set, the real-tie set, the nd set?"""
    from ..api import load
    from ..decide.differentiability import decide
    from ..encodings.errors import InputError as _InputError
    from ..encodings.runs import run

    net = network if isinstance(network, Network) else load(network, convention=convention)
    try:
        ft = float_ties(net)
    except Unsupported as exc:
        raise _InputError(f"not encodable in the FloatingPoint theory: {exc}") from None
    try:
        rt = real_ties(net)
    except (Unsupported, ValueError) as exc:
        return Membership(bool(ft), None, None, ft, [], reason=f"exact run not encodable: {exc}")
    if not rt:
        return Membership(bool(ft), False, False, ft, rt, reason="no real tie: f is C^1 near w")
    proxies = P.resolve_proxies(net, convention)
    runs = run(net, proxies)
    if runs.exact is None:  # pragma: no cover - finite rational networks always have an exact run
        return Membership(bool(ft), True, None, ft, rt, reason=runs.exact_reason or "")
    ties = P.ties(net, runs.exact)
    if sorted(t.key for t in ties) != rt:  # pragma: no cover - a bug in the encoding or the evaluator
        raise RuntimeError(f"the Real encoding's ties {rt} differ from the evaluator's {sorted(t.key for t in ties)}")
    v = decide(runs, ties)
    nd = None if v.differentiable is None else not v.differentiable
    return Membership(bool(ft), True, nd, ft, rt, reason=v.reason)
