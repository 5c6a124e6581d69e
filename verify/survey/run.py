"""One run of a survey: one initialisation at one grid point (dtype, depth, width, init).

``_simulate`` replays the protocol's minibatches with the recording hooks (mode A, PyTorch's own
backward), runs mode B where a float tie occurred and keeps the events (the two backprops differ)
with a snapshot of the parameters; ``run_one`` then classifies the first ``max_classified``
events exactly (``classification.classify``). Runs are seeded and independent, so the executors
(``execute``) may run them anywhere; the process and Dask workers import this module.
"""

from __future__ import annotations

import time

from ..encodings.errors import InputError
from .classification import classify
from .config import MAX_TIES_KEPT, SurveyConfig, job_key
from .models import TieRecorder, _grads, _mode_b, _targets, _torch, build_model, load_data


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
    X, y = load_data(cfg.arch, dt, cfg.inputs, cfg.data)
    dtype = getattr(torch, dt)
    seed = _seed(cfg, job)
    model = build_model(cfg.arch, width, depth, dt, seed, n_in=X.shape[1] if cfg.arch == "mlp" else 64)
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
    load_data(cfg.arch, dt, cfg.inputs, cfg.data)  # scikit-learn import and loading: not training time
    # the classification's imports (z3, sympy, ...) are not classification time
    from ..decide import differentiability
    from ..interop import torch_import as _interop

    del differentiability, _interop
    t0 = time.perf_counter()
    out, snaps, model = _simulate(cfg, job, keep=cfg.max_classified)
    t_train = time.perf_counter() - t0
    t1 = time.perf_counter()
    X, y = load_data(cfg.arch, dt, cfg.inputs, cfg.data)
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
