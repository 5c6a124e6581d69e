"""Running a survey (``survey``): the grid's runs on an executor - in this process, in a pool of
worker processes (from a fork server) or on Dask - with resume from an output folder (each finished
run is written to ``runs/<key>.json`` atomically and not recomputed) and a progress bar.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from ..encodings.errors import InputError
from .config import CONFIG_FILE, EXECUTORS, SurveyConfig, job_key
from .report import SurveyResult, _write_atomic
from .run import run_one


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
            ctx.set_forkserver_preload(["kinkcheck.survey.run"])  # where run_one lives
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
