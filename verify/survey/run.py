"""Surveys: how often does training meet kinks at 16/32/64 bits, and what are the events, exactly?

Bertoin et al. (ReLU'(0)) and Boustany (max-pool) at laptop scale, on scikit-learn's
``load_digits`` (shipped with scikit-learn, no download), with every event classified exactly.

Two copies of the backward pass are compared on each minibatch: mode A is PyTorch's native one
(ReLU'(0) = 0, max-pool gradient to the first maximal entry) and mode B the other proxy
(ReLU'(0) = 1, max-pool gradient split evenly among the tied maxima, a custom autograd Function).
An *event* is a minibatch where the two backprops differ (the bifurcation zone).

- Protocol 1 (Bertoin et al.'s volume estimate): N random initialisations, one epoch of minibatches
  without updating; an initialisation is *in the zone* when some minibatch is an event.
- Protocol 2: N random initialisations trained with plain SGD (mode A gradients, ``lr``,
  ``epochs``); every event along the way is recorded with the parameters of that step.

Detection: forward hooks on every ReLU / MaxPool2d module record the float ties of the PyTorch run
(a ReLU input exactly 0, a pooling window whose maximum is attained twice or more). The two modes
only differ at such ties, so mode B is run only on minibatches where the hooks saw a tie, and the
event is confirmed by comparing the two backprops bit for bit (``torch.equal``). A minibatch with a
float tie whose backward signal is zero is counted in ``tie_batches`` but is not an event.

Classification: the event's network file (``kinkcheck.torch.from_torch`` of the parameters of that
step and the minibatch) goes through kinkcheck's exact run (float64 filter with a rigorous bound,
exact rationals where it cannot decide) and its decision procedure (``differentiability.decide``,
what ``kinkcheck.verify`` uses; ``full_verify`` runs the whole ``kinkcheck.verify``, which adds
kinkcheck's own spec-order float run). Each float tie PyTorch saw is looked up among the exact
run's real ties by (layer, sample, unit): the event is a *real tie* when one of them is a real tie,
*float-only* otherwise. The verdicts (differentiable, AD the gradient, AD in Clarke) are kinkcheck's,
``None`` where undecided or past ``verdict_budget_s`` (with cross-entropy, equalities between
gradients are transcendental and often undecided; ``loss="mse"`` keeps everything rational).
PyTorch's summation order differs from the spec's, so the float tie is PyTorch's observation; the
exact side does not depend on order.

Runs are independent and seeded (their own ``torch.Generator``, one torch thread each): the result
is the same with the serial, process-pool or Dask executor. With an output folder, each finished
run is written to ``runs/<key>.json`` atomically and a re-invocation skips the finished runs.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..encodings.errors import InputError

DTYPES = ("float16", "bfloat16", "float32", "float64")
ARCHS = ("mlp", "cnn")
LOSSES = ("cross_entropy", "mse")
EXECUTORS = ("local", "dask")
MAX_TIES_KEPT = 20  # float ties stored per event (all are used for the classification)
CONFIG_FILE = "config.json"
FORMAT = 1


@dataclass
class SurveyConfig:
    """One survey. ``widths`` are hidden widths (MLP) or channels (CNN); ``depths`` hidden layers
    (MLP) or conv layers (CNN: Conv2d(1,c,3) -> MaxPool2d(2) -> ReLU, then (Conv2d(c,c,3,pad 1) ->
    ReLU) x (depth-1), -> Flatten -> Linear(9c, 10)). ``max_batches`` caps minibatches per epoch,
    ``max_classified`` the events classified exactly per run (None: all)."""

    protocol: int = 1
    arch: str = "mlp"
    widths: tuple = (16, 64)
    depths: tuple = (1,)
    dtypes: tuple = ("float16", "float32", "float64")
    inits: int = 8
    batch: int = 32
    seed: int = 0
    max_batches: int | None = None
    max_classified: int | None = 5
    lr: float = 0.1
    epochs: int = 3
    loss: str = "cross_entropy"
    inputs: str | None = None  # "pixels" | "standardized"; None: pixels (MLP), standardized (CNN)
    verdict_budget_s: float | None = 60.0  # per event, for the decision procedure (None: none)
    full_verify: bool = False  # classify with the whole kinkcheck.verify (adds spec-order choice sensitivity)

    @classmethod
    def quick(cls, protocol: int = 1, arch: str = "mlp") -> SurveyConfig:
        """About a minute on two cores (two worker processes), every event classified; the
        verdicts of an event get 5 s (see docs/survey.md for measured times)."""
        kw = {"protocol": protocol, "arch": arch, "inits": 3, "max_classified": None, "verdict_budget_s": 5.0}
        if arch == "cnn":
            if protocol == 2:
                return cls(**kw, widths=(4, 16), depths=(1,), epochs=2)
            return cls(**kw, widths=(4, 8, 16), depths=(1, 2))
        if protocol == 2:
            return cls(**kw, widths=(64, 256), depths=(1, 2), epochs=2)
        return cls(**kw, widths=(64, 256), depths=(1, 2, 3))

    def __post_init__(self):
        for k in ("widths", "depths", "dtypes"):
            v = getattr(self, k)
            setattr(self, k, tuple(v) if isinstance(v, (list, tuple)) else (v,))

    def validate(self) -> SurveyConfig:
        def pos_int(name, v, lo=1):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise InputError(f"--{name.replace('_', '-')}: expected an integer >= {lo}, got {v!r}")

        if self.protocol not in (1, 2):
            raise InputError(f"--protocol: expected 1 or 2, got {self.protocol!r}")
        if self.arch not in ARCHS:
            raise InputError(f"--arch: expected one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.inputs not in (None, "pixels", "standardized"):
            raise InputError(f"--inputs: expected pixels or standardized, got {self.inputs!r}")
        if self.loss not in LOSSES:
            raise InputError(f"--loss: expected one of {', '.join(LOSSES)}, got {self.loss!r}")
        if not self.widths or not self.depths or not self.dtypes:
            raise InputError("--widths, --depths and --dtypes need at least one value each")
        for w in self.widths:
            pos_int("widths", w)
        for d in self.depths:
            pos_int("depths", d)
        for dt in self.dtypes:
            if dt not in DTYPES:
                raise InputError(f"--dtypes: {dt!r} is not one of {', '.join(DTYPES)}")
        for name in ("inits", "batch", "epochs"):
            pos_int(name, getattr(self, name))
        pos_int("seed", self.seed, 0)
        if self.max_batches is not None:
            pos_int("max_batches", self.max_batches)
        if self.max_classified is not None:
            pos_int("max_classified", self.max_classified, 0)
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not math.isfinite(self.lr) or self.lr <= 0:
            raise InputError(f"--lr: expected a finite number > 0, got {self.lr!r}")
        b = self.verdict_budget_s
        if b is not None and (isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or b < 0):
            raise InputError(f"--verdict-budget: expected a finite number of seconds >= 0, got {b!r}")
        if len(set(self.widths)) != len(self.widths) or len(set(self.depths)) != len(self.depths) or len(set(self.dtypes)) != len(self.dtypes):
            raise InputError("--widths, --depths and --dtypes must not repeat a value")
        return self

    def run_params(self) -> dict:
        """What one run's result depends on besides its grid point (compared when resuming)."""
        keys = ["protocol", "arch", "loss", "batch", "seed", "max_batches", "max_classified", "verdict_budget_s", "full_verify"]
        if self.protocol == 2:
            keys += ["lr", "epochs"]
        return {"survey_format": FORMAT, **{k: getattr(self, k) for k in keys}, "inputs": self.inputs or _default_inputs(self.arch)}

    def jobs(self) -> list:
        return [(dt, d, w, i) for dt in self.dtypes for d in self.depths for w in self.widths for i in range(self.inits)]


def job_key(job) -> str:
    dt, d, w, i = job
    return f"{dt}-d{d}-w{w}-i{i}"


def _config_from_dict(d: dict) -> SurveyConfig:
    names = SurveyConfig.__dataclass_fields__
    return SurveyConfig(**{k: v for k, v in d.items() if k in names})


# ----------------------------------------------------------------------------------------------
# torch pieces (imported lazily: the module loads without torch)


def _torch():
    import torch

    return torch


_FNS = {}


def _functions():
    """The mode-B autograd Functions: ReLU with ReLU'(0) = 1, max-pool with the split tie-break."""
    if _FNS:
        return _FNS["relu1"], _FNS["split"]
    torch = _torch()

    class ReluOne(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return torch.relu(x)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * (x >= 0).to(g.dtype)

    class SplitMaxPool2d(torch.autograd.Function):
        """Non-overlapping max-pool (kernel = stride); backward shares the gradient evenly among
        the tied maxima of each window (Boustany's J_split): each gets fl(g / count)."""

        @staticmethod
        def forward(ctx, x, k):
            win = _windows(x, k)
            mx = win.amax(-1)
            ctx.save_for_backward(win, mx)
            ctx.k, ctx.shape = k, x.shape
            return mx

        @staticmethod
        def backward(ctx, g):
            win, mx = ctx.saved_tensors
            k = ctx.k
            mask = win == mx.unsqueeze(-1)
            share = (g / mask.sum(-1).to(g.dtype)).unsqueeze(-1) * mask.to(g.dtype)
            N, C, Ho, Wo, _ = share.shape
            gi = share.reshape(N, C, Ho, Wo, k, k).permute(0, 1, 2, 4, 3, 5).reshape(N, C, Ho * k, Wo * k)
            out = g.new_zeros(ctx.shape)
            out[:, :, : Ho * k, : Wo * k] = gi
            return out, None

    _FNS.update(relu1=ReluOne, split=SplitMaxPool2d)
    return ReluOne, SplitMaxPool2d


def _windows(x, k):
    """[N, C, H, W] -> [N, C, Ho, Wo, k*k]: non-overlapping k x k windows, row-major inside."""
    N, C, H, W = x.shape
    Ho, Wo = H // k, W // k
    xc = x[:, :, : Ho * k, : Wo * k]
    return xc.reshape(N, C, Ho, k, Wo, k).permute(0, 1, 2, 4, 3, 5).reshape(N, C, Ho, Wo, k * k)


def _pool_k(m):
    k, s = m.kernel_size, m.stride if m.stride is not None else m.kernel_size
    k = k[0] if isinstance(k, tuple) else k
    s = s[0] if isinstance(s, tuple) else s
    if k != s or m.padding not in (0, (0, 0)) or m.dilation not in (1, (1, 1)) or m.ceil_mode:
        raise InputError("the survey's split max-pool needs kernel = stride, no padding/dilation/ceil_mode")
    return k


def _mode_b(model):
    """The same parameters with the other proxies: ReLU'(0) = 1 and split max-pool."""
    torch = _torch()
    nn = torch.nn
    ReluOne, Split = _functions()

    class R(nn.Module):
        def forward(self, x):
            return ReluOne.apply(x)

    class P(nn.Module):
        def __init__(self, k):
            super().__init__()
            self.k = k

        def forward(self, x):
            return Split.apply(x, self.k)

    mods = []
    for m in model:
        if type(m) is nn.ReLU:
            mods.append(R())
        elif type(m) is nn.MaxPool2d:
            mods.append(P(_pool_k(m)))
        else:
            mods.append(m)  # shared: same parameters, same .grad
    return nn.Sequential(*mods)


def build_model(arch: str, width: int, depth: int, dtype: str, seed: int):
    """A Sequential of plain torch modules (what ``from_torch`` reads); parameters drawn from a
    private generator like torch's default init (U(-1/sqrt(fan_in), 1/sqrt(fan_in)))."""
    torch = _torch()
    nn = torch.nn
    if arch == "mlp":
        mods, d_in = [], 64
        for _ in range(depth):
            mods += [nn.Linear(d_in, width), nn.ReLU()]
            d_in = width
        mods.append(nn.Linear(d_in, 10))
    else:
        mods = [nn.Conv2d(1, width, 3), nn.MaxPool2d(2), nn.ReLU()]
        for _ in range(depth - 1):
            mods += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        mods += [nn.Flatten(), nn.Linear(9 * width, 10)]
    model = nn.Sequential(*mods).to(torch.float64)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in mods:
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                bound = 1.0 / math.sqrt(m.weight[0].numel())
                for p in (m.weight, m.bias):
                    p.copy_((torch.rand(p.shape, generator=g, dtype=torch.float64) * 2 - 1) * bound)
    return model.to(getattr(torch, dtype))


_DATA = {}


def _default_inputs(arch: str) -> str:
    return "standardized" if arch == "cnn" else "pixels"


def load_data(arch: str, dtype: str, inputs: str | None = None):
    """load_digits as (X, y), [N, 64] (MLP) or [N, 1, 8, 8] (CNN). ``inputs``: "pixels" (value / 16,
    exact in every format) or "standardized" (per pixel (x - mean) / std in binary64, rounded to
    ``dtype``; std 0 -> 1); None: pixels for the MLP, standardized for the CNN."""
    inputs = inputs or _default_inputs(arch)
    key = (arch, dtype, inputs)
    if key not in _DATA:
        import numpy as np
        from sklearn.datasets import load_digits

        torch = _torch()
        d = load_digits()
        A = np.asarray(d.data, dtype=np.float64)
        if inputs == "standardized":
            sd = A.std(axis=0)
            A = (A - A.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        else:
            A = A / 16.0
        X = torch.tensor(A).to(getattr(torch, dtype))
        if arch == "cnn":
            X = X.reshape(-1, 1, 8, 8)
        _DATA[key] = (X, torch.tensor(d.target, dtype=torch.int64))
    return _DATA[key]


def _targets(yb, loss, dtype):
    torch = _torch()
    return torch.nn.functional.one_hot(yb, 10).to(dtype) if loss == "mse" else yb


def _loss(out, t, loss):
    F = _torch().nn.functional
    return F.mse_loss(out, t) if loss == "mse" else F.cross_entropy(out, t)


class TieRecorder:
    """Forward hooks on every ReLU and MaxPool2d of a Sequential: the float ties of the run, as
    (layer, op, sample, unit) with kinkcheck's numbering (unit = flat index in the sample's
    pre-activation / pool output)."""

    def __init__(self, model):
        torch = _torch()
        self.ties = []
        self.handles = []
        for i, m in enumerate(model):
            if type(m) is torch.nn.ReLU:
                self.handles.append(m.register_forward_hook(self._relu(i)))
            elif type(m) is torch.nn.MaxPool2d:
                self.handles.append(m.register_forward_hook(self._pool(i, _pool_k(m))))

    def _relu(self, i):
        def hook(mod, inp, out):
            x = inp[0].detach()
            for n, u in (x.reshape(x.shape[0], -1) == 0).nonzero().tolist():
                self.ties.append((i, "relu", n, u))

        return hook

    def _pool(self, i, k):
        def hook(mod, inp, out):
            win = _windows(inp[0].detach(), k)
            cnt = (win == win.amax(-1, keepdim=True)).sum(-1)
            for n, u in (cnt.reshape(cnt.shape[0], -1) >= 2).nonzero().tolist():
                self.ties.append((i, "maxpool2d", n, u))

        return hook

    def take(self):
        t, self.ties = self.ties, []
        return t

    def remove(self):
        for h in self.handles:
            h.remove()


def _grads(model, xb, t, loss):
    model.zero_grad(set_to_none=True)
    lo = _loss(model(xb), t, loss)
    lo.backward()
    return lo, [p.grad.clone() for p in model.parameters()]


def _seed(cfg, job) -> int:
    """The run's seed: from (seed, arch, depth, width, init), not the dtype, so that every
    precision starts from the same draws (rounded to it)."""
    import hashlib

    _dt, d, w, i = job
    return int.from_bytes(hashlib.sha256(f"{cfg.seed}/{cfg.arch}/{d}/{w}/{i}".encode()).digest()[:7], "little")


def _simulate(cfg: SurveyConfig, job, *, stop_at: int | None = None, keep: int | None = None):
    """Run one job. With ``stop_at``: return (model, xb, targets, indices) at the start of that step
    (for the zone picture; deterministic replay). Otherwise return (record, snapshots of the first
    ``keep`` events)."""
    torch = _torch()
    dt, depth, width, _init = job
    X, y = load_data(cfg.arch, dt, cfg.inputs)
    dtype = getattr(torch, dt)
    seed = _seed(cfg, job)
    model = build_model(cfg.arch, width, depth, dt, seed)
    model_b = _mode_b(model)
    params = list(model.parameters())
    rec = TieRecorder(model)
    g = torch.Generator().manual_seed(seed)
    nb = X.shape[0] // cfg.batch
    if cfg.max_batches is not None:
        nb = min(nb, cfg.max_batches)
    epochs = cfg.epochs if cfg.protocol == 2 else 1
    events, snaps = [], []
    step = tie_batches = float_ties = 0
    diverged = None
    for epoch in range(epochs):
        perm = torch.randperm(X.shape[0], generator=g)
        for b in range(nb):
            idx = perm[b * cfg.batch : (b + 1) * cfg.batch]
            xb, tb = X[idx], _targets(y[idx], cfg.loss, dtype)
            if stop_at is not None and step == stop_at:
                rec.remove()
                return model, xb, tb, idx
            lo, ga = _grads(model, xb, tb, cfg.loss)
            ties = rec.take()
            if not torch.isfinite(lo):
                diverged = step
                break
            if ties:
                tie_batches += 1
                float_ties += len(ties)
                _, gb = _grads(model_b, xb, tb, cfg.loss)
                if any(not torch.equal(a, c) for a, c in zip(ga, gb)):
                    events.append({"step": step, "epoch": epoch, "batch": b, "n_ties": len(ties), "ties": [list(t) for t in ties[:MAX_TIES_KEPT]]})
                    if keep is None or len(snaps) < keep:
                        snaps.append(([p.detach().clone() for p in params], idx, ties))
            if cfg.protocol == 2:
                with torch.no_grad():
                    for p, gp in zip(params, ga):
                        p.add_(gp, alpha=-cfg.lr)
            step += 1
        if diverged is not None:
            break
    rec.remove()
    if stop_at is not None:
        raise InputError(f"step {stop_at} is beyond the run's {step} steps")
    out = {"steps": step, "tie_batches": tie_batches, "float_ties": float_ties, "events": events, "diverged_at": diverged}
    if cfg.protocol == 2:
        with torch.no_grad():
            out["train_accuracy"] = float((model(X).argmax(1) == y).double().mean())
    return out, snaps, model


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
    from kinkcheck.interop.torch import from_torch

    from ..api import load, verify
    from ..decide.differentiability import decide
    from ..encodings import program as P

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


def run_one(cfg: SurveyConfig, job) -> dict:
    """One initialisation: the protocol's minibatches, two backprops where a float tie occurs,
    the first ``cfg.max_classified`` events classified exactly."""
    import threading

    torch = _torch()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # runs are parallel; one thread each (and a fixed summation order)
    try:
        return _run_one(cfg, job)
    finally:
        if threading.current_thread() is threading.main_thread():  # a serial run: give it back
            torch.set_num_threads(threads)  # (worker threads share the setting: leave it at 1)


def _run_one(cfg: SurveyConfig, job) -> dict:
    torch = _torch()
    dt, depth, width, init = job
    load_data(cfg.arch, dt, cfg.inputs)  # scikit-learn import and loading: not training time
    # the classification's imports (z3, sympy, ...) are not classification time
    from ..decide import differentiability
    from ..interop import torch as _interop

    del differentiability, _interop
    t0 = time.perf_counter()
    out, snaps, model = _simulate(cfg, job, keep=cfg.max_classified)
    t_train = time.perf_counter() - t0
    t1 = time.perf_counter()
    X, y = load_data(cfg.arch, dt, cfg.inputs)
    params = list(model.parameters())
    classified = []
    for ev, (state, idx, ties) in zip(out["events"], snaps):
        with torch.no_grad():
            for p, s in zip(params, state):
                p.copy_(s)
        c = classify(model, X[idx], _targets(y[idx], cfg.loss, getattr(torch, dt)), ties, cfg.loss, budget_s=cfg.verdict_budget_s, full=cfg.full_verify)
        classified.append({"step": ev["step"], **c})
    return {
        "key": job_key(job),
        "arch": cfg.arch,
        "protocol": cfg.protocol,
        "dtype": dt,
        "depth": depth,
        "width": width,
        "init": init,
        **{k: v for k, v in out.items() if k != "events"},
        "events": len(out["events"]),
        "in_zone": bool(out["events"]),
        "event_list": out["events"],
        "classified": classified,
        "time_train_s": t_train,
        "time_classify_s": time.perf_counter() - t1,
    }


# ----------------------------------------------------------------------------------------------
# results


def _tally(rows_in, key):
    rows = {}
    for r in rows_in:
        k = key(r)
        row = rows.setdefault(k, {"dtype": r["dtype"], "depth": r["depth"], "width": r["width"], "inits": 0, "in_zone": 0, "steps": 0, "tie_batches": 0, "events": 0, "classified": 0, "real": 0, "float_only": 0, "t_train": 0.0, "t_classify": 0.0})
        row["inits"] += 1
        row["in_zone"] += r["in_zone"]
        row["steps"] += r["steps"]
        row["tie_batches"] += r["tie_batches"]
        row["events"] += r["events"]
        row["classified"] += len(r["classified"])
        row["real"] += sum(c["kind"] == "real tie" for c in r["classified"])
        row["float_only"] += sum(c["kind"] == "float-only" for c in r["classified"])
        row["t_train"] += r["time_train_s"]
        row["t_classify"] += r["time_classify_s"]
    return [rows[k] for k in sorted(rows)]


def _verdicts(cs, name):
    yes = sum(c[name] is True for c in cs)
    no = sum(c[name] is False for c in cs)
    return f"{yes} / {no} / {len(cs) - yes - no}"


@dataclass
class SurveyResult:
    config: dict
    runs: list = field(default_factory=list)
    computed: int = 0  # runs computed by this invocation (the others were resumed from disk)

    def table(self) -> list:
        return _tally(self.runs, lambda r: (r["dtype"], r["depth"], r["width"]))

    def timing(self) -> dict:
        ev = [c for r in self.runs for c in r["classified"]]
        t_train = sum(r["time_train_s"] for r in self.runs)
        t_cls = sum(r["time_classify_s"] for r in self.runs)
        return {
            "runs": len(self.runs),
            "train_s": t_train,
            "classify_s": t_cls,
            "events_classified": len(ev),
            "train_s_per_run": t_train / len(self.runs) if self.runs else 0.0,
            "classify_s_per_event": t_cls / len(ev) if ev else 0.0,
            "classify_s_max_event": max((c["time_s"] for c in ev), default=0.0),
        }

    def markdown(self, pictures=()) -> str:
        cfg = self.config
        proto = (
            "Protocol 1: one epoch without updates"
            if cfg["protocol"] == 1
            else f"Protocol 2: SGD, lr {cfg['lr']}, {cfg['epochs']} epoch(s)"
        )
        full = cfg.get("full_verify", False)
        prox = "ReLU'(0) = 0 versus 1" + (", max-pool first versus split" if cfg["arch"] == "cnn" else "")
        out = [
            f"# kinkcheck survey: {cfg['arch'].upper()} on load_digits, {proto}; {prox}",
            "",
            f"Loss {cfg['loss']}, minibatch {cfg['batch']}, seed {cfg['seed']}"
            + (f", at most {cfg['max_batches']} minibatches per epoch" if cfg.get("max_batches") else "")
            + ". An *event* is a minibatch where the two backprops differ; *tie batches* are minibatches where PyTorch's forward met a float tie (a ReLU input exactly 0 or a tied max-pool window).",
            "",
            "## Fraction of initialisations in the zone",
            "",
            "| dtype | depth | width | inits in the zone | events / minibatches | tie batches | classified | real tie | float-only | train s | classify s |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in self.table():
            out.append(
                f"| {r['dtype']} | {r['depth']} | {r['width']} | {r['in_zone']}/{r['inits']} | {r['events']}/{r['steps']} | {r['tie_batches']} | {r['classified']} | {r['real']} | {r['float_only']} | {r['t_train']:.2f} | {r['t_classify']:.2f} |"
            )
        out += ["", "Per precision (all depths and widths):", ""]
        for dt in sorted({r["dtype"] for r in self.runs}):
            rs = [r for r in self.runs if r["dtype"] == dt]
            out.append(f"- {dt}: {sum(r['in_zone'] for r in rs)}/{len(rs)} initialisations in the zone, {sum(r['events'] for r in rs)} events in {sum(r['steps'] for r in rs)} minibatches")
        div = [r["key"] for r in self.runs if r.get("diverged_at") is not None]
        if div:
            out.append(f"- diverged (non-finite loss, run stopped): {', '.join(div)}")
        if cfg["protocol"] == 2:
            accs = ", ".join(f"{dt} {sum(r['train_accuracy'] for r in self.runs if r['dtype'] == dt) / max(1, sum(r['dtype'] == dt for r in self.runs)):.3f}" for dt in sorted({r["dtype"] for r in self.runs}))
            out.append(f"- mean training accuracy after training: {accs}")
        out += [
            "",
            "## Exact classification of the events (kinkcheck's exact run and decision procedure)",
            "",
            "Verdict columns: yes / no / undecided. *Real tie*: some float tie PyTorch saw is a tie over the reals too; *float-only*: none is (rounding put the neuron on the kink).",
            "",
            "| dtype | classified | real tie | float-only | real ties not seen by torch | differentiable | AD = gradient | AD in Clarke |" + (" compensation (spec order) | choice-sensitive (spec order) |" if full else ""),
            "|---|---|---|---|---|---|---|---|" + ("---|---|" if full else ""),
        ]
        for dt in sorted({r["dtype"] for r in self.runs}):
            cs = [c for r in self.runs if r["dtype"] == dt for c in r["classified"]]
            out.append(
                f"| {dt} | {len(cs)} | {sum(c['kind'] == 'real tie' for c in cs)} | {sum(c['kind'] == 'float-only' for c in cs)} | {sum(c['real_ties_unseen_by_torch'] for c in cs)} | {_verdicts(cs, 'differentiable')} | {_verdicts(cs, 'ad_correct')} | {_verdicts(cs, 'ad_in_clarke')} |"
                + (f" {_verdicts(cs, 'compensation_spec_order')} | {_verdicts(cs, 'choice_sensitive_spec_order')} |" if full else "")
            )
        reasons = sorted({c["reason"] for r in self.runs for c in r["classified"] if c["differentiable"] is None or c["ad_in_clarke"] is None})
        if reasons:
            out += ["", "Undecided because: " + "; ".join(reasons)]
        t = self.timing()
        ratio = f"{t['classify_s'] / t['train_s']:.2f}" if t["train_s"] else "n/a"
        out += [
            "",
            "## Time",
            "",
            f"- training (the protocol's forward/backward passes): {t['train_s']:.2f} s in {t['runs']} runs, {t['train_s_per_run']:.3f} s per run",
            f"- classification: {t['classify_s']:.2f} s for {t['events_classified']} events, {t['classify_s_per_event']:.3f} s per event (slowest {t['classify_s_max_event']:.3f} s)",
            f"- classification / training = {ratio}",
        ]
        if pictures:
            out += ["", "## Plots", ""]
            for title, name in pictures:
                out.append(f"- {title}: [{name}]({name})")
                out.append(f"  ![{title}]({name})")
        return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------------
# executors, resume, progress


def _write_atomic(path: Path, text: str) -> None:
    from ..files import replace_atomic

    replace_atomic(path, lambda tmp: Path(tmp).write_text(text))


def _resume(cfg: SurveyConfig, out: Path) -> dict:
    """Finished runs in ``out`` (key -> record); checks the stored run parameters first."""
    want = cfg.run_params()
    cf = out / CONFIG_FILE
    if cf.exists():
        try:
            have = json.loads(cf.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{cf}: unreadable ({exc}); choose another --out or remove the folder") from None
        diff = [k for k in sorted(set(want) | set(have)) if want.get(k) != have.get(k)]
        if diff:
            k = diff[0]
            raise InputError(f"{cf}: the results there were made with {k}={have.get(k)!r}, this survey has {k}={want.get(k)!r}; choose another --out or remove the folder")
    elif (out / "runs").is_dir() and any((out / "runs").glob("*.json")):
        raise InputError(f"{out}: runs/ without {CONFIG_FILE}; choose another --out or remove the folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "runs").mkdir(exist_ok=True)
        if not cf.exists():
            _write_atomic(cf, json.dumps(want, indent=1) + "\n")
    except OSError as exc:
        raise InputError(f"{out}: cannot use as the output folder: {exc.strerror or exc}") from None
    done = {}
    for p in (out / "runs").glob("*.json"):
        try:
            r = json.loads(p.read_text())
        except (OSError, ValueError):
            continue  # unreadable: recomputed
        if isinstance(r, dict) and r.get("key") == p.stem:
            done[p.stem] = r
    return done


def _execute(cfg, jobs, *, executor, workers, scheduler, on_done):
    if executor == "local":
        if workers <= 1 or len(jobs) <= 1:
            for j in jobs:
                on_done(j, run_one(cfg, j))
            return
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # never fork this (possibly multithreaded: torch, JAX, ...) process: workers come from a
        # fork server that has imported only this module, or are spawned
        if "forkserver" in mp.get_all_start_methods():
            ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload(["kinkcheck.survey.run"])
        else:  # pragma: no cover - not Linux
            ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as ex:
            futs = {ex.submit(run_one, cfg, j): j for j in jobs}
            for f in as_completed(futs):
                on_done(futs[f], f.result())
        return
    try:
        from distributed import Client, LocalCluster
        from distributed import as_completed as dask_completed
    except ImportError:
        raise InputError("--executor dask needs dask.distributed: pip install 'kinkcheck[survey]'") from None
    cluster = None
    if isinstance(scheduler, Client):
        client, own = scheduler, False
    else:
        try:
            if scheduler:
                client = Client(scheduler, timeout="10s")
            else:
                cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=1, dashboard_address=None)
                client = Client(cluster)
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError(f"--scheduler {scheduler}: cannot connect: {exc}") from None
        own = True
    try:
        futs = [client.submit(run_one, cfg, j, pure=False) for j in jobs]
        which = {f.key: j for f, j in zip(futs, jobs)}
        for f in dask_completed(futs):
            on_done(which[f.key], f.result())
    finally:
        if own:
            client.close()
            if cluster is not None:
                cluster.close()


class _Progress:
    def __init__(self, total, done, enabled):
        self.p = None
        if enabled and total:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.p = Progress(TextColumn("survey"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.description}"), console=Console(stderr=True), transient=False)
            self.task = self.p.add_task("", total=total, completed=done)

    def __enter__(self):
        if self.p:
            self.p.start()
        return self

    def advance(self, text):
        if self.p:
            self.p.update(self.task, advance=1, description=text)

    def __exit__(self, *a):
        if self.p:
            self.p.stop()


def survey(cfg: SurveyConfig, *, workers: int = 1, executor: str = "local", scheduler=None, out_dir=None, progress: bool = False) -> SurveyResult:
    """Run (or resume) a survey. ``executor``: "local" (``workers`` processes; 1: in this process)
    or "dask" (``scheduler``: an address or a ``distributed.Client``; none: a LocalCluster of
    ``workers`` processes). With ``out_dir`` each finished run is written to ``runs/<key>.json``
    and runs already there are not recomputed (their run parameters must match: ``InputError``)."""
    cfg.validate()
    if executor not in EXECUTORS:
        raise InputError(f"--executor: expected one of {', '.join(EXECUTORS)}, got {executor!r}")
    if scheduler is not None and executor != "dask":
        raise InputError("--scheduler needs --executor dask")
    jobs = cfg.jobs()
    out = Path(out_dir) if out_dir is not None else None
    done = _resume(cfg, out) if out is not None else {}
    results = {k: v for k, v in done.items() if k in {job_key(j) for j in jobs}}
    todo = [j for j in jobs if job_key(j) not in results]

    def on_done(job, rec):
        results[job_key(job)] = rec
        if out is not None:
            _write_atomic(out / "runs" / f"{job_key(job)}.json", json.dumps(rec, indent=1) + "\n")
        bar.advance(f"{job_key(job)}: {rec['events']} events")

    with _Progress(len(jobs), len(jobs) - len(todo), progress) as bar:
        if todo:
            _execute(cfg, todo, executor=executor, workers=workers, scheduler=scheduler, on_done=on_done)
    return SurveyResult(asdict(cfg), [results[job_key(j)] for j in jobs], computed=len(todo))


# ----------------------------------------------------------------------------------------------
# the zone picture


def _step_ulps(vals, n):
    """vals (numpy float array) moved by n[k] ulps each (n integer array; nextafter steps)."""
    import numpy as np

    v = vals.copy()
    rem = n.copy()
    inf = np.array(np.inf, dtype=v.dtype)
    while np.any(rem != 0):
        up, dn = rem > 0, rem < 0
        v = np.where(up, np.nextafter(v, inf), np.where(dn, np.nextafter(v, -inf), v))
        rem = rem - up.astype(rem.dtype) + dn.astype(rem.dtype)
    return v


def zone_plane(model, xb, layer: int, sample: int, unit: int, *, grid: int = 41, seed: int = 0) -> dict:
    """The zone around one float tie of ``model`` on the minibatch ``xb``, on a random 2-D plane of
    integer-ulp perturbations of the parameters that feed it directly (the Linear row / Conv2d
    filter and bias): grid point (i, j) moves each such parameter k by i*a_k + j*b_k ulps (a, b
    random in {-1, 0, 1}; i, j in [-(grid-1)/2, (grid-1)/2]; nextafter steps, so every point is a
    machine number).

    The quantity is the kink's argument: a ReLU's input (``model[layer]`` a ReLU after a Linear, or
    after the first Conv2d -> MaxPool2d), or, for a max-pool tie (``model[layer]`` the MaxPool2d
    right after the first Conv2d), the gap between the window's first two tied entries. ``float``:
    as PyTorch computes it (the same module calls on the same minibatch shape as in training);
    ``exact``: in rationals (gmpy2) from the exact inputs of that layer. Returns the magnitudes
    (floats, for the picture), the exact zero sets of both, and the exact values."""
    import gmpy2
    import numpy as np

    torch = _torch()
    nn = torch.nn
    mods = list(model)
    op = "relu" if type(mods[layer]) is nn.ReLU else "maxpool2d" if type(mods[layer]) is nn.MaxPool2d else None
    if op == "relu" and layer >= 1 and type(mods[layer - 1]) is nn.Linear:
        plin, pool = layer - 1, None
    elif type(mods[0]) is nn.Conv2d and type(mods[1]) is nn.MaxPool2d and (op, layer) in (("relu", 2), ("maxpool2d", 1)):
        plin, pool = 0, _pool_k(mods[1])
    else:
        raise InputError(f"layer {layer}: the zone picture supports a ReLU after a Linear or after the first Conv2d -> MaxPool2d, and the first MaxPool2d after a Conv2d")
    pm = mods[plin]
    np_dt = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}.get(pm.weight.dtype)
    if np_dt is None:
        raise InputError(f"the zone picture supports float16/32/64, not {pm.weight.dtype}")
    with torch.no_grad():
        h = xb
        for m in mods[:plin]:
            h = m(h)
    # exact inputs of the parameter layer for this sample: the exact forward of the (MLP) prefix
    hx = [gmpy2.mpq(float(v)) for v in xb[sample].reshape(-1).tolist()]
    for m in mods[:plin]:
        if type(m) is nn.Linear:
            W = [[gmpy2.mpq(float(v)) for v in row] for row in m.weight.detach().double().tolist()]
            b = [gmpy2.mpq(float(v)) for v in m.bias.detach().double().tolist()]
            hx = [sum((w * x for w, x in zip(row, hx)), gmpy2.mpq(0)) + bb for row, bb in zip(W, b)]
        elif type(m) is nn.ReLU:
            hx = [v if v > 0 else gmpy2.mpq(0) for v in hx]
        else:  # pragma: no cover - MLP prefixes only
            raise InputError(f"zone picture: unsupported layer {type(m).__name__} before the tie")
    if pool is None:
        ch, fan = unit, pm.weight.shape[1]
        where = [None]
        patches = [list(range(fan))]
    else:
        C, H, W_ = xb.shape[1:]
        kh, kw = pm.weight.shape[2:]
        Ho, Wo = (H - kh + 1) // pool, (W_ - kw + 1) // pool
        ch, rest = divmod(unit, Ho * Wo)
        oy, ox = divmod(rest, Wo)
        where = [(oy * pool + dy, ox * pool + dx) for dy in range(pool) for dx in range(pool)]
        patches = [[c * H * W_ + (y0 + i) * W_ + (x0 + j) for c in range(C) for i in range(kh) for j in range(kw)] for y0, x0 in where]

    def entries_float():
        z = pm(h)
        if pool is None:
            return [float(z[sample, ch])]
        return [float(z[sample, ch, y0, x0]) for y0, x0 in where]

    pair = None
    if op == "maxpool2d":
        with torch.no_grad():
            e0 = entries_float()
        tied = [k for k, v in enumerate(e0) if v == max(e0)]
        if len(tied) < 2:
            raise InputError(f"layer {layer} sample {sample} unit {unit}: no max-pool tie there")
        pair = tied[:2]

    def quantity(ent):
        return ent[pair[0]] - ent[pair[1]] if pair else max(ent)

    w0 = pm.weight.detach()[ch].reshape(-1).double().numpy().astype(np_dt)
    b0 = np.array([float(pm.bias.detach()[ch])], dtype=np_dt)
    vals = np.concatenate([w0, b0])
    rng = np.random.default_rng(seed)
    a = rng.integers(-1, 2, size=vals.size)
    c2 = rng.integers(-1, 2, size=vals.size)
    r = (grid - 1) // 2
    ticks = list(range(-r, r + 1))
    ii, jj = np.meshgrid(np.array(ticks), np.array(ticks), indexing="ij")
    offs = ii.reshape(-1, 1) * a[None, :] + jj.reshape(-1, 1) * c2[None, :]
    V = _step_ulps(np.broadcast_to(vals, offs.shape).copy(), offs).reshape(grid, grid, -1)
    qf = [[None] * grid for _ in range(grid)]
    qx = [[None] * grid for _ in range(grid)]
    wsave, bsave = pm.weight.detach().clone(), pm.bias.detach().clone()
    try:
        for gi in range(grid):
            for gj in range(grid):
                v = V[gi, gj]
                with torch.no_grad():
                    pm.weight[ch] = torch.tensor(v[:-1].astype(np.float64)).reshape(pm.weight.shape[1:]).to(pm.weight.dtype)
                    pm.bias[ch] = float(v[-1])
                    qf[gi][gj] = quantity([gmpy2.mpq(e) for e in entries_float()])  # exact difference of floats
                wq = [gmpy2.mpq(float(t)) for t in v]
                qx[gi][gj] = quantity([sum((wq[k] * hx[p] for k, p in enumerate(ps)), gmpy2.mpq(0)) + wq[-1] for ps in patches])
    finally:
        with torch.no_grad():
            pm.weight.copy_(wsave)
            pm.bias.copy_(bsave)
    return {
        "op": op, "layer": layer, "sample": sample, "unit": unit, "pair": pair, "ticks": ticks,
        "dtype": str(pm.weight.dtype).replace("torch.", ""),
        "float": qf, "exact": qx,
        "float_abs": np.array([[abs(float(v)) for v in row] for row in qf]),
        "exact_abs": np.array([[abs(float(v)) for v in row] for row in qx]),
        "float_zero": np.array([[v == 0 for v in row] for row in qf]),
        "exact_zero": np.array([[v == 0 for v in row] for row in qx]),
    }


def _zone_supported(arch, layer, op):
    if op == "relu":
        return arch == "mlp" or layer == 2
    return arch == "cnn" and op == "maxpool2d" and layer == 1


def _pick_zone_event(result):
    """The first classified event (float16/32/64) with a tie the zone picture supports, ReLU ties
    first."""
    arch = result.config["arch"]
    for want in ("relu", "maxpool2d"):
        for r in result.runs:
            if r["dtype"] == "bfloat16":
                continue
            steps = {c["step"] for c in r["classified"]}
            for ev in r["event_list"]:
                if ev["step"] not in steps:
                    continue
                for layer, op, n, u in ev["ties"]:
                    if op == want and _zone_supported(arch, layer, op):
                        return r, ev, (layer, n, u)
    return None


def _plot_zone(z, path, title):
    import matplotlib.pyplot as plt
    import numpy as np

    what = "gap between the two tied max-pool entries" if z["op"] == "maxpool2d" else "pre-activation (ReLU input)"
    zf, zx = z["float_abs"], z["exact_abs"]
    pos = np.concatenate([zf[zf > 0], zx[zx > 0]])
    lo, hi = (np.log10(pos.min()), np.log10(pos.max())) if pos.size else (-1, 0)
    t = np.array(z["ticks"])
    r = int(t[-1])
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 5.0), sharey=True)
    fig.subplots_adjust(bottom=0.2, top=0.82)
    im = None
    for ax, vals, name in ((axes[0], zf, f"{z['dtype']}, computed by PyTorch"), (axes[1], zx, "exact")):
        img = np.where(vals > 0, np.log10(np.where(vals > 0, vals, 1)), np.nan)
        im = ax.imshow(img, origin="lower", extent=(-r - 0.5, r + 0.5, -r - 0.5, r + 0.5), vmin=lo, vmax=hi, cmap="viridis")
        ii, jj = np.nonzero(z["float_zero"])
        ax.scatter(t[jj], t[ii], s=10, c="red", marker="s", label="float zero set (PyTorch's value is 0)")
        ii, jj = np.nonzero(z["exact_zero"])
        ax.scatter(t[jj], t[ii], s=40, facecolors="none", edgecolors="black", marker="o", label="exact zero set (the real tie)")
        ax.set_title(f"|{what}|\n{name}", fontsize=9)
        ax.set_xlabel("direction 2 (grid step: 0 or 1 ulp per parameter)")
    axes[0].set_ylabel("direction 1 (grid step: 0 or 1 ulp per parameter)")
    fig.colorbar(im, ax=axes, label="log10 |value| (blank: exactly 0)", shrink=0.85)
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_fractions(result, out):
    import matplotlib.pyplot as plt

    made = []
    table = result.table()
    for axis, other, name in (("width", "depth", "zone_fraction_width.png"), ("depth", "width", "zone_fraction_depth.png")):
        if len({r[axis] for r in table}) < 2:
            continue
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for ci, dt in enumerate(sorted({r["dtype"] for r in table})):
            for si, o in enumerate(sorted({r[other] for r in table})):
                rows = sorted((r for r in table if r["dtype"] == dt and r[other] == o), key=lambda r: r[axis])
                ax.plot([r[axis] for r in rows], [r["in_zone"] / r["inits"] for r in rows], marker="osd^v"[si % 5], color=f"C{ci}", linestyle=["-", "--", ":", "-."][si % 4], label=f"{dt}, {other} {o}")
        ax.set_xlabel(axis + (" (channels)" if axis == "width" and result.config["arch"] == "cnn" else ""))
        ticks = sorted({r[axis] for r in table})
        if axis == "width":
            ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_ylabel("fraction of initialisations in the zone")
        ax.set_ylim(-0.05, 1.05)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        made.append((f"fraction in the zone versus {axis}", name))
    return made


def write(result: SurveyResult, out_dir, *, zone: bool = True) -> list:
    """summary.md, results.json and the plots (zone fraction versus width / depth, the zone
    picture of one event) in ``out_dir``; returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    pictures = []
    notes = []
    try:
        import matplotlib

        matplotlib.use("Agg")
        have_mpl = True
    except ImportError:  # pragma: no cover
        have_mpl = False
        notes.append("matplotlib is not installed: no plots")
    if have_mpl:
        pictures += _plot_fractions(result, out)
    zinfo = None
    if zone:
        pick = _pick_zone_event(result)
        if pick is None:
            notes.append("no classified event with a tie the zone picture supports: no zone picture")
        else:
            r, ev, (layer, n, u) = pick
            cfg = _config_from_dict(result.config)
            job = (r["dtype"], r["depth"], r["width"], r["init"])
            torch = _torch()
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # as in the run: the same kernels, the same float results
            try:
                model, xb, _, _ = _simulate(cfg, job, stop_at=ev["step"])
                z = zone_plane(model, xb, layer, n, u, seed=cfg.seed)
            finally:
                torch.set_num_threads(threads)
            kind = next(c["kind"] for c in r["classified"] if c["step"] == ev["step"])
            mid = len(z["ticks"]) // 2
            zinfo = {
                "run": r["key"], "step": ev["step"], "layer": layer, "op": z["op"], "sample": n, "unit": u, "pair": z["pair"], "kind": kind,
                "ticks": z["ticks"],
                "float": [[str(v) for v in row] for row in z["float"]],
                "exact": [[str(v) for v in row] for row in z["exact"]],
                "float_zeros": int(z["float_zero"].sum()),
                "exact_zeros": int(z["exact_zero"].sum()),
                "center_float": str(z["float"][mid][mid]),
                "center_exact": str(z["exact"][mid][mid]),
            }
            _write_atomic(out / "zone.json", json.dumps(zinfo) + "\n")
            written.append(out / "zone.json")
            if have_mpl:
                title = (f"run {r['key']}, step {ev['step']}: {z['op']} tie at layer {layer}, sample {n}, unit {u} ({kind}); "
                         f"{zinfo['float_zeros']} float zeros, {zinfo['exact_zeros']} exact zeros on the {len(z['ticks'])}x{len(z['ticks'])} grid")
                _plot_zone(z, out / "zone_plane.png", title)
                pictures.append(("the zone around one tie (a random plane of ulp perturbations of the parameters feeding it)", "zone_plane.png"))
    md = result.markdown(pictures)
    if zinfo is not None:
        what = "the gap between the tied entries" if zinfo["op"] == "maxpool2d" else "the pre-activation"
        md += (f"\nZone picture: run {zinfo['run']}, step {zinfo['step']}, {zinfo['op']} tie at layer {zinfo['layer']} sample {zinfo['sample']} unit {zinfo['unit']} "
               f"({zinfo['kind']}): at the centre {what} is {zinfo['center_float']} as PyTorch computes it and {zinfo['center_exact']} exactly; "
               f"{zinfo['float_zeros']} grid points are float zeros, {zinfo['exact_zeros']} exact zeros (data: zone.json).\n")
    for n_ in notes:
        md += f"\nNote: {n_}.\n"
    _write_atomic(out / "results.json", json.dumps({"config": result.config, "runs": result.runs}, indent=1) + "\n")
    _write_atomic(out / "summary.md", md)
    written += [out / "results.json", out / "summary.md"] + [out / p for _, p in pictures]
    return written
