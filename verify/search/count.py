"""Counting the non-differentiable set over float grids (``kinkcheck count``, docs/count.md).

Over every machine number of one or two swept scalars (the other parameters fixed) count the points
with a real tie, a float tie, f not differentiable, AD not the gradient, AD not a Clarke
subderivative, compensation, branch mismatch and choice sensitivity - exactly.

Fast path (``sweep.py``: the network is piecewise affine and the innermost swept scalar enters one
linear layer): the real ties come from an exact walk along the sweep, the float ties and the machine
branches of every unit at every point from a vectorised machine forward over the whole grid.
- a point with neither a real nor a float tie is differentiable, AD is the gradient and a Clarke
  subderivative, and it is not choice-sensitive; it is in the compensation zone iff some unit's
  machine branch differs from the exact one (``branch_mismatch``, computed for every point);
- every tie point gets the full decision: ``kinkcheck.verify`` on the network with that value.
Otherwise every point is verified (exact, slower, with a budget). ``points_per_s`` is measured.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import numpy as np
from gmpy2 import mpq

from ..api import verify
from ..encodings.errors import InputError
from ..encodings.formats import FloatFormat, exact
from ..encodings.network import Network
from ..encodings.network import load as _load
from .sweep import fast_path, line, machine_arith

KEYS = ("real_tie", "float_tie", "not_differentiable", "ad_incorrect", "ad_not_in_clarke", "compensation", "branch_mismatch", "choice_sensitive")
MAX_POINTS = 2**24  # per count call
DEFAULT_TIMEOUT = 600.0  # seconds for the per-point decisions


# ----------------------------------------------------------------------------------------------
# sweeps and grids


@dataclass
class Sweep:
    label: str
    index: int  # into theta
    values: np.ndarray  # float64, increasing


_SPEC = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(?:\[\s*([-\d,\s]*)\])?\s*$")


def resolve(net: Network, spec: str) -> tuple[int, str]:
    """'NAME[i,j]' -> (theta index, canonical label); InputError naming valid names/indices."""
    m = _SPEC.match(spec)
    names = ", ".join(p.name + (str(list(p.shape)) if p.shape else "") for p in net.params)
    if not m:
        raise InputError(f"--sweep {spec!r}: expected NAME or NAME[i,j,...]; parameters: {names}")
    name, idx = m.group(1), m.group(2)
    try:
        p = net.param(name)
    except KeyError:
        raise InputError(f"--sweep {spec!r}: no parameter {name!r}; parameters: {names}") from None
    if idx is None or not idx.strip():
        if p.size != 1:
            raise InputError(f"--sweep {spec!r}: {name} has shape {list(p.shape)}: give an index, e.g. {name}[{','.join('0' * len(p.shape))}]")
        ix = (0,) * len(p.shape)
    else:
        try:
            ix = tuple(int(s) for s in idx.split(","))
        except ValueError:
            raise InputError(f"--sweep {spec!r}: bad index") from None
        if len(ix) != len(p.shape) or any(not 0 <= i < n for i, n in zip(ix, p.shape)):
            raise InputError(f"--sweep {spec!r}: index out of range for {name} of shape {list(p.shape)}")
    flat = int(np.ravel_multi_index(ix, p.shape)) if p.shape else 0
    label = name + (f"[{','.join(map(str, ix))}]" if p.shape else "")
    return p.offset + flat, label


def _values_of_ordinals(fmt: FloatFormat, k: np.ndarray) -> np.ndarray:
    M = fmt.fraction_bits
    a = np.abs(k).astype(np.int64)
    fld = a >> M
    frac = a & ((1 << M) - 1)
    sig = np.where(fld == 0, frac, frac + (1 << M)).astype(np.float64)
    e = np.where(fld == 0, fmt.emin, fld - 1 + fmt.emin) - M
    return np.where(k < 0, -1.0, 1.0) * np.ldexp(sig, e.astype(np.int32))


_GRIDS: dict = {}


def grid(fmt: FloatFormat, lo=None, hi=None, limit: int = MAX_POINTS) -> np.ndarray:
    """Every finite value of ``fmt`` in [lo, hi] (rationals; default the whole format), increasing.
    Zero appears once (+0: -0 has the same real value; see docs/count.md). Read-only (cached)."""
    key = (fmt, None if lo is None else mpq(lo), None if hi is None else mpq(hi), limit)
    if key not in _GRIDS:
        if len(_GRIDS) > 64:
            _GRIDS.clear()
        g = _grid(fmt, lo, hi, limit)
        g.flags.writeable = False
        _GRIDS[key] = g
    return _GRIDS[key]


def _grid(fmt: FloatFormat, lo, hi, limit: int) -> np.ndarray:
    top = ((2**fmt.exponent_bits - 1) << fmt.fraction_bits) - 1
    klo, khi = -top, top
    if lo is not None:
        _, up = fmt.neighbours(mpq(lo))
        klo = max(klo, fmt.ordinal(up)) if up != float("inf") else top + 1
    if hi is not None:
        down, _ = fmt.neighbours(mpq(hi))
        khi = min(khi, fmt.ordinal(down)) if down != float("-inf") else -top - 1
    n = khi - klo + 1
    if n <= 0:
        raise InputError(f"--range {lo}:{hi}: no {fmt.name} value in the range")
    if n > limit:
        raise InputError(f"the sweep has {n} points (more than {limit}): give a smaller --range")
    return _values_of_ordinals(fmt, np.arange(klo, khi + 1, dtype=np.int64))


def parse_range(text: str):
    parts = text.split(":")
    if len(parts) != 2:
        raise InputError(f"--range {text!r}: expected LO:HI")
    out = []
    for s in parts:
        s = s.strip()
        if not s:
            out.append(None)
            continue
        try:
            out.append(mpq(s) if "x" not in s.lower() else exact(float.fromhex(s)))
        except (ValueError, ZeroDivisionError, OverflowError):
            raise InputError(f"--range {text!r}: {s!r} is not a number") from None
    if out[0] is not None and out[1] is not None and out[0] > out[1]:
        raise InputError(f"--range {text!r}: LO > HI")
    return tuple(out)


# ----------------------------------------------------------------------------------------------
# the full decision at one point


def decide_point(net: Network, theta: np.ndarray) -> dict:
    """Every key for one point through ``kinkcheck.verify``: True / False / None (undecided)."""
    r = verify(net.with_theta(theta), values=False)
    dif = r.differentiable
    return {
        "real_tie": bool(r.real_ties) if r._runs.exact is not None else None,
        "float_tie": bool(r.float_ties),
        "not_differentiable": None if dif is None else not dif,
        "ad_incorrect": None if dif is None else False if not dif else None if r.ad_correct is None else not r.ad_correct,
        "ad_not_in_clarke": None if r.ad_in_clarke is None else not r.ad_in_clarke,
        "compensation": r.compensation,
        "branch_mismatch": None if r.compensation is None else any(c["kind"] == "branch flipped" for c in r.compensation_neurons),
        "choice_sensitive": r.choice_sensitive,
    }


# ----------------------------------------------------------------------------------------------
# the bound of Lee, Park and Aiken (docs/count.md)


def lpa_bound(net: Network, sweeps: list) -> dict:
    """N * sum over kinked units u of k_u * prod_{other sweeps} |grid|, when every kinked unit has a
    private bias that is swept; else {"applies": False, "reason": ...}."""
    swept = {s.index: j for j, s in enumerate(sweeps)}
    uses = np.zeros(net.theta.size, dtype=np.int64)
    for L in net.layers:
        for r in (L.weight, L.bias):
            if r is not None:
                np.add.at(uses, r.src[r.src >= 0], 1)
    total = 0
    prev = None
    for L in net.layers:
        if L.act is not None and L.act.kinks:
            if prev is None or prev.op != "linear" or prev.bias is None:
                return {"applies": False, "reason": f"{L.label} does not follow a linear layer with a bias"}
            for u, src in enumerate(prev.bias.src):
                if src < 0 or uses[src] != 1 or src not in swept:
                    return {"applies": False, "reason": f"unit {u} of {L.label} has no private swept bias"}
                others = int(np.prod([len(s.values) for j, s in enumerate(sweeps) if j != swept[src]], dtype=np.int64))
                total += net.batch * len(L.act.kinks) * others
        elif L.op in ("maxpool1d", "maxpool2d", "conv2d", "avgpool2d"):
            return {"applies": False, "reason": f"{L.label}: the bound is stated for fully connected networks"}
        if L.op == "linear":
            prev = L
    if net.loss.op not in ("sum", "dot", "mse"):
        return {"applies": False, "reason": f"loss {net.loss.op} has a kink without a bias"}
    return {"applies": True, "bound": total, "formula": "N * sum_u k_u * prod_{j != sweep(b_u)} |grid_j|"}


# ----------------------------------------------------------------------------------------------
# counting


@dataclass
class CountResult:
    network: str
    dtype: str
    sweeps: list
    points: int
    counts: dict
    unknown: dict
    examples: dict
    points_per_s: float
    time_s: float
    method: str
    decided_points: int = 0  # points given the full decision (verify)
    disagreements: int = 0  # fast-path tie flags that verify contradicted (a bug if ever non-zero)
    bound: dict = field(default_factory=dict)
    complete: bool = True
    kept: dict | None = field(default=None, repr=False)  # key -> [n, 2] grid positions (inner, outer)
    grids: list = field(default_factory=list, repr=False)  # the swept values

    def to_dict(self) -> dict:
        d = {"network": self.network, "dtype": self.dtype, "sweeps": self.sweeps, "points": self.points}
        d.update({k: self.counts[k] for k in KEYS})
        d.update(
            {
                "points_per_s": round(self.points_per_s, 1),
                "time_s": round(self.time_s, 6),
                "unknown": self.unknown,
                "examples": self.examples,
                "method": self.method,
                "decided_points": self.decided_points,
                "disagreements": self.disagreements,
                "lpa_bound": self.bound,
                "complete": self.complete,
            }
        )
        return d

    @property
    def exit_code(self) -> int:
        if self.disagreements:
            return 4  # the fast path and verify disagree on a tie: a kinkcheck bug
        return 3 if any(self.unknown.values()) or not self.complete else 0


def count(network, sweep, *, range=None, fixed=None, examples: int = 5, timeout: float = DEFAULT_TIMEOUT, convention=None, rounding=None, progress=None, keep: bool = False, choice: bool = True) -> CountResult:
    """Count the non-differentiable set (and the other sets of ``KEYS``) over one or two swept scalars.

    ``sweep``: "NAME[i,j]" or a list of one or two; ``range``: (lo, hi) rationals or "LO:HI" for every
    sweep, or a list with one such range per sweep (None: the whole format); ``fixed``: {"NAME[i]": value} overrides; ``examples``: how many
    points of each kind to return (hex, in sweep order); ``progress``: callable(done, total) or None;
    ``keep``: keep the grid positions of every counted point (``result.kept``, for pictures);
    ``choice=False``: no full decision at points with float ties but no real tie (their other keys
    follow from the fast path, docs/count.md): ``choice_sensitive`` is then not computed (None).
    ``convention`` / ``rounding`` apply when ``network`` is a path or a document (a loaded Network
    keeps its own)."""
    t0 = time.perf_counter()
    net = network if isinstance(network, Network) else _load(network, rounding=rounding, convention=convention)
    specs = [sweep] if isinstance(sweep, str) else [*sweep]
    if not 1 <= len(specs) <= 2:
        raise InputError("count: give one or two --sweep")
    ranges = [*range] if isinstance(range, list) else [range] * len(specs)
    if len(ranges) != len(specs):
        raise InputError(f"count: {len(ranges)} ranges for {len(specs)} sweeps")
    theta = net.theta.copy()
    for name, v in (fixed or {}).items():
        i, _ = resolve(net, name)
        if not net.fmt.is_representable(mpq(v)):
            raise InputError(f"fixed {name} = {v}: not a {net.fmt.name} value")
        theta[i] = float(v)
    sweeps = []
    for s, rg in zip(specs, ranges):
        i, label = resolve(net, s)
        lo, hi = parse_range(rg) if isinstance(rg, str) else (rg if rg is not None else (None, None))
        sweeps.append(Sweep(label, i, grid(net.fmt, lo, hi)))
    if len({s.index for s in sweeps}) != len(sweeps):
        raise InputError("count: the same scalar is swept twice")
    total = int(np.prod([len(s.values) for s in sweeps], dtype=np.int64))
    if total > MAX_POINTS:
        raise InputError(f"the sweep has {total} points (more than {MAX_POINTS}): give a smaller --range")
    inner, outer = sweeps[0], (sweeps[1] if len(sweeps) == 2 else None)
    layer, why = fast_path(net, inner.index)
    counts = {k: 0 for k in KEYS}
    unknown = {k: 0 for k in KEYS}
    shown = {k: [] for k in KEYS}
    state = {"decided": 0, "disagree": 0, "complete": True}
    deadline = t0 + timeout
    A = machine_arith(net.fmt)
    outer_vals = outer.values if outer is not None else [None]

    kept = {k: [] for k in KEYS}

    def label(pos):
        t = net.fmt.to_hex(float(inner.values[pos[0]]))
        return t if outer is None else [t, net.fmt.to_hex(float(outer.values[pos[1]]))]

    def add(k, v, pos):
        if v is None:
            unknown[k] += 1
        elif v:
            counts[k] += 1
            if len(shown[k]) < examples:
                shown[k].append(label(pos))
            if keep:
                kept[k].append(pos)

    def full(th, pt, rt=None, ft=None):  # pt: grid position
        if time.perf_counter() > deadline:
            state["complete"] = False
            for k in KEYS:
                if k == "real_tie" and rt is not None:
                    add(k, rt, pt)
                elif k == "float_tie" and ft is not None:
                    add(k, ft, pt)
                else:
                    unknown[k] += 1
            return
        d = decide_point(net, th)
        state["decided"] += 1
        if rt is not None and (d["real_tie"] is not None and d["real_tie"] != rt or d["float_tie"] != ft):
            state["disagree"] += 1
        for k in KEYS:
            add(k, d[k], pt)

    done = 0
    for q, u in enumerate(outer_vals):
        th = theta.copy()
        if u is not None:
            th[outer.index] = u
        if layer is not None:
            rtie, ftie, mism = line(net, inner.index, layer, inner.values, th, A)
            cand = rtie | ftie
            for p in np.flatnonzero(cand | mism):
                if not cand[p] or (not choice and not rtie[p]):  # no real tie: no verify needed
                    add("float_tie", bool(ftie[p]), (p, q))
                    add("compensation", True, (p, q))  # a float tie only, or a flipped branch
                    add("branch_mismatch", bool(mism[p]), (p, q))
                    continue
                th[inner.index] = float(inner.values[p])
                full(th.copy(), (p, q), bool(rtie[p]), bool(ftie[p]))
        else:
            for p, t in enumerate(inner.values):
                th[inner.index] = float(t)
                full(th.copy(), (p, q))
        done += len(inner.values)
        if progress is not None:
            progress(done, total)
    dt = time.perf_counter() - t0
    if not choice and layer is not None:
        counts["choice_sensitive"] = None
    return CountResult(
        network=net.source,
        dtype=net.fmt.name,
        sweeps=[s.label for s in sweeps],
        points=total,
        counts=counts,
        unknown=unknown,
        examples=shown,
        points_per_s=total / dt if dt > 0 else float("inf"),
        time_s=dt,
        method="walk" if layer is not None else f"per-point verify ({why})",
        decided_points=state["decided"],
        disagreements=state["disagree"],
        bound=lpa_bound(net, sweeps),
        complete=state["complete"],
        kept={k: np.asarray(v, dtype=np.int64).reshape(-1, 2) for k, v in kept.items()} if keep else None,
        grids=[s.values for s in sweeps],
    )


# ----------------------------------------------------------------------------------------------
# pictures


def plot(result: CountResult, path, title: str | None = None) -> None:
    """A strip (one sweep) or a grid picture (two sweeps) of the exact zero sets (real ties), the float
    ties and the nd set, on the grid's positions (``count(..., keep=True)``). Needs matplotlib (the
    ``survey`` extra): ImportError otherwise."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..files import replace_atomic

    kinds = (("real_tie", "real tie (exact zero set)", "tab:blue"), ("float_tie", "float tie", "tab:orange"), ("not_differentiable", "not differentiable", "tab:red"))
    g = result.grids
    if len(g) == 1:
        fig, ax = plt.subplots(figsize=(10, 2.6))
        for row, (k, name, colour) in enumerate(kinds):
            pos = result.kept[k][:, 0]
            ax.vlines(pos, row + 0.1, row + 0.9, colors=colour, linewidth=1)
            ax.text(-0.01, row + 0.5, f"{name}: {result.counts[k]}", transform=ax.get_yaxis_transform(), ha="right", va="center", fontsize=8)
        ax.set_ylim(0, len(kinds))
        ax.set_yticks([])
        ax.set_xlim(-0.5, len(g[0]) - 0.5)
        ticks = np.linspace(0, len(g[0]) - 1, 7).astype(int)
        ax.set_xticks(ticks, [f"{g[0][i]:.3g}" for i in ticks], fontsize=8)
        ax.set_xlabel(f"{result.sweeps[0]} (every {result.dtype} value, equally spaced by position on the grid)")
    else:
        fig, ax = plt.subplots(figsize=(6.5, 6))
        cell = min(30.0, max(1.0, (350.0 / max(len(g[0]), len(g[1]))) ** 2))  # marker area per grid cell
        size = {"float_tie": 1.0, "not_differentiable": 2.0, "real_tie": 0.35}
        for k, name, colour in (kinds[1], kinds[2], kinds[0]):  # real ties (small) drawn on top
            pos = result.kept[k]
            ax.scatter(pos[:, 0], pos[:, 1], s=cell * size[k], c=colour, marker="s" if k == "not_differentiable" else "o", label=f"{name}: {result.counts[k]}", linewidths=0)
        for axis, vals, setter in ((0, g[0], ax.set_xticks), (1, g[1], ax.set_yticks)):
            ticks = np.linspace(0, len(vals) - 1, 7).astype(int)
            setter(ticks, [f"{vals[i]:.3g}" for i in ticks], fontsize=8)
        ax.set_xlim(-0.5, len(g[0]) - 0.5)
        ax.set_ylim(-0.5, len(g[1]) - 0.5)
        ax.set_xlabel(f"{result.sweeps[0]} (grid position)")
        ax.set_ylabel(f"{result.sweeps[1]} (grid position)")
        ax.legend(loc="upper right", fontsize=7, markerscale=min(3.0, 6.0 / cell**0.5))
    ax.set_title(f"{title or result.network}: {result.points} {result.dtype} points", fontsize=9)
    fig.tight_layout()
    try:
        replace_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=130), suffix=".png")
    finally:
        plt.close(fig)
