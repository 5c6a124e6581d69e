"""The ``kinkcheck`` command line: one typer command per question (``verify``, ``check``,
``search``, ``count``, ``export-test``, ``import``, ``export``, ``survey``, ``conventions probe``);
the text report lives in ``render.py``, model files and .npy data in ``models.py``.

Exit codes (every command): 0 everything holds; 1 a finding; 2 bad input or usage; 3 undecided;
4 internal error. Bad input prints one line on stderr (``kinkcheck: FILE: where: what``) and never
a traceback; a usage error is one line with a hint.

May import: every other group (it is the top of the layout).
"""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer

from ..encodings.errors import InputError, one_line
from .models import _model_document
from .render import _count_table, _render, err, out

CONTEXT = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, context_settings=CONTEXT, help="Exact verification of AD at kinks for small networks.")

def _placeholders_only() -> None:
    """Help shows readable placeholders (FILE, N, NAME) instead of typer's type column (<str>,
    <bool>): a flag has no value, an argument is named by its placeholder."""
    from typer import core

    base = getattr(core, "_TyperParameter", None)
    if base is None or getattr(base, "_kinkcheck_plain", False):
        return
    shown = base.display_type

    def display_type(self, ctx):
        if getattr(self, "is_flag", False) or getattr(self, "param_type_name", "") == "argument" or self.metavar is not None:
            return ""
        return shown(self, ctx)

    base.display_type = display_type
    base._kinkcheck_plain = True


_placeholders_only()


def _fail(msg: str, code: int = 2):
    err.print(one_line(f"kinkcheck: {msg}"), markup=False)  # a user's string never breaks the line
    raise typer.Exit(code)


@app.command()
def verify(
    network: str = typer.Argument(..., metavar="NETWORK", help="network file (JSON, format version 1), or a model file (.onnx, .pt2, TorchScript .pt) with --inputs"),
    inputs: Optional[str] = typer.Option(None, "--inputs", metavar="FILE", help="model file only: X.npy, the batch, in the network's dtype"),
    targets: Optional[str] = typer.Option(None, "--targets", metavar="FILE", help="model file only: Y.npy"),
    loss: str = typer.Option("sum", "--loss", metavar="LOSS", help="model file only: sum | dot | mse | l1 | cross_entropy"),
    convention: Optional[str] = typer.Option(None, "--convention", metavar="NAME|FILE", help="pytorch | jax | tensorflow | FILE.json"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
    values: bool = typer.Option(False, "--values", help="always include the exact and machine AD outputs"),
    rounding: Optional[str] = typer.Option(None, "--rounding", metavar="exact|nearest", help="'nearest' rounds non-representable values (reported)"),
    certificate: Optional[str] = typer.Option(None, "--certificate", metavar="FILE", help="write the certificate (JSON) to this file"),
    report_html: Optional[str] = typer.Option(None, "--report", metavar="FILE", help="write a self-contained HTML page (verdicts, ties, the picture around each tie) to this file"),
    time_limit: float = typer.Option(60.0, "--time-limit", metavar="SECONDS", help="seconds for the decision and choice sensitivity together (default 60; 0: no limit); what the budget cannot reach is undecided, with the reason"),
):
    """Verify a network at its parameters: ties, branch mismatches, compensation, choice sensitivity, AD outputs.
    A model file is imported first (as `kinkcheck import` does; no network file is written).

    Exit codes: 0 everything holds, 1 a finding (not differentiable, AD not the gradient or not in Clarke, compensation, choice-sensitive), 2 bad input or usage, 3 undecided, 4 internal error."""
    from ..api import verify as _verify

    if time_limit < 0:
        _fail(f"--time-limit must be >= 0 (0: no limit), got {time_limit:g}")
    if rounding not in (None, "exact", "nearest"):
        _fail(f"--rounding must be 'exact' or 'nearest', got {rounding!r}")
    is_model = network.lower().endswith(MODEL_SUFFIXES)
    if is_model and not inputs:
        _fail(f"{network}: a model file needs its batch: --inputs X.npy")
    if not is_model and (inputs or targets):
        _fail(f"{network}: --inputs/--targets are for model files ({', '.join(MODEL_SUFFIXES)}); a network file carries its own data")
    try:
        source = network
        if is_model:
            source, notes = _model_document(network, inputs, targets, loss, rounding=rounding)
            for n in notes:
                err.print(f"kinkcheck: note: {n}", markup=False)
        report = _verify_with_progress(_verify, source, not json_out, convention=convention, values=True if values else None, rounding=rounding, time_limit=time_limit or None)
        report.network = network
    except InputError as exc:
        _fail(str(exc))
    if certificate:
        from ..files import write_atomic

        try:
            write_atomic(certificate, report.certificate())
        except OSError as exc:
            _fail(f"{certificate}: cannot write the certificate: {exc.strerror or exc}")
        except ValueError as exc:
            _fail(f"{network}: {exc}", 3)
    if report_html:
        from pathlib import Path

        from ..files import replace_atomic
        from ..htmlreport import render

        try:
            cert = report.certificate()
        except ValueError:
            cert = None  # no exact run: the page says what is undecided
        page = render(report, certificate=cert)
        try:
            replace_atomic(report_html, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"), ".html")
        except OSError as exc:
            _fail(f"{report_html}: cannot write the report: {exc.strerror or exc}")
    if json_out:
        sys.stdout.write(report.to_json() + "\n")
    else:
        _render(report)
    raise typer.Exit(report.exit_code)


def _verify_with_progress(fn, source, show, **kw):
    """``fn(source, progress=..., **kw)``; when it runs longer than 10 s, a line on stderr every
    10 s names the running step (fast runs print nothing)."""
    import threading
    import time

    state = {"stage": "starting", "t0": time.perf_counter()}
    stop = threading.Event()

    def heartbeat():
        while not stop.wait(10.0):
            err.print(f"kinkcheck verify [{time.perf_counter() - state['t0']:6.1f} s] still working: {state['stage']}", markup=False)

    if show:
        threading.Thread(target=heartbeat, daemon=True).start()
    try:
        return fn(source, progress=lambda line: state.__setitem__("stage", line), **kw)
    finally:
        stop.set()


@app.command()
def check(certificate: str = typer.Argument(..., metavar="CERTIFICATE", help="certificate written by kinkcheck verify --certificate or kinkcheck search --out (unsat)")):
    """Re-validate a certificate with exact arithmetic.

    Exit codes: 0 valid, 1 invalid (the first failing step is printed), 2 bad input or usage, 4 internal error."""
    from ..certify.checker import CheckFailed
    from ..search.certcheck import check_any as check_certificate

    try:
        res = check_certificate(certificate)
    except InputError as exc:
        _fail(str(exc))
    except CheckFailed as exc:
        out.print(f"[red]invalid:[/] {exc}", markup=True)
        raise typer.Exit(1)
    from rich.markup import escape

    out.print(f"[green]valid[/]: {escape(', '.join(res['steps']))}")
    raise typer.Exit(0)


@app.command()
def search(
    network: str = typer.Argument(..., metavar="NETWORK", help="network file"),
    find: str = typer.Option(..., "--find", metavar="GOAL", help="float-tie | real-tie | compensation | choice-sensitive | ad-mismatch"),
    k: int = typer.Option(0, "--k", metavar="N", help="ad-mismatch: more than K ulps (K >= 0)"),
    box: Optional[list[str]] = typer.Option(None, "--box", metavar="SPEC", help="NAME=LO:HI or NAME\\[i,j]=LO:HI (repeatable): free entries and their closed interval; NAME alone frees every entry of a tensor"),
    free: Optional[list[str]] = typer.Option(None, "--free", metavar="SPEC", help="NAME, NAME\\[i,j] or a comma-separated list (repeatable): free entries within --ulps K of their file values"),
    ulps: Optional[int] = typer.Option(None, "--ulps", metavar="N", help="with --free: K ulps each way (K >= 0)"),
    solver: str = typer.Option("z3", "--solver", metavar="z3|bitwuzla"),
    timeout: float = typer.Option(60.0, "--timeout", metavar="SECONDS", help="seconds for the whole search (default 60; 0: no limit)"),
    out_file: Optional[str] = typer.Option(None, "-o", "--output", "--out", metavar="FILE", help="write the counterexample network (sat) or the certificate (unsat; kinkcheck check reads it)"),
    smtlib: Optional[str] = typer.Option(None, "--smtlib", metavar="FILE", help="write the SMT-LIB2 query to this file"),
    json_out: bool = typer.Option(False, "--json", help="one JSON object on stdout (no progress lines)"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="no progress lines on stderr"),
    no_prune: bool = typer.Option(False, "--no-prune", help="no interval enclosures: the whole query, nothing sliced"),
    no_structure: bool = typer.Option(False, "--no-structure", help="the solver only: no lemmas, monotone bounds, enumeration or point checks first"),
):
    """Search a box of float parameters for a counterexample, or prove that none exists.

    Exit codes: 1 sat (a counterexample confirmed by point verification), 0 unsat (none exists), 3 unknown (time-out or solver unknown, with the reason), 2 bad input or usage, 4 internal error."""
    import json as _json
    import threading
    import time
    from pathlib import Path

    from ..files import replace_atomic, write_atomic
    from ..search.entries import parse_box_item, split_refs
    from ..search.solver import search as _search

    items, seen = [], set()
    try:
        for item in box or []:
            ref, lo, hi = parse_box_item(item)
            if ref in seen:
                raise InputError(f"--box {ref}: given twice (one interval per entry)")
            seen.add(ref)
            items.append((ref, lo, hi))
    except InputError as exc:
        _fail(str(exc))
    refs = [r for f in (free or []) for r in split_refs(f)]
    state = {"stage": "starting", "t0": time.perf_counter()}
    stop = threading.Event()

    def progress(line):
        state["stage"] = line.split("] ", 1)[-1]
        err.print(f"kinkcheck search {line}", markup=False)

    def heartbeat():
        while not stop.wait(10.0):
            err.print(f"kinkcheck search [{time.perf_counter() - state['t0']:6.2f} s] still working: {state['stage']}", markup=False)

    show = not (quiet or json_out)
    if show:
        threading.Thread(target=heartbeat, daemon=True).start()
    try:
        res = _search(
            network,
            find,
            box=items,
            free=refs,
            ulps=ulps,
            timeout=timeout,
            solver=solver,
            k_ulps=k,
            prune=not no_prune,
            structured=not no_structure,
            progress=progress if show else None,
        )
    except InputError as exc:
        _fail(str(exc))
    finally:
        stop.set()
    try:
        if smtlib:
            text = res.query_text()
            replace_atomic(smtlib, lambda tmp: Path(tmp).write_text(text))
        if out_file and res.status == "sat":
            write_atomic(out_file, res.counterexample)
        elif out_file and res.status == "unsat":
            write_atomic(out_file, res.certificate())
    except OSError as exc:
        _fail(f"cannot write: {exc}")
    if json_out:
        sys.stdout.write(_json.dumps(res.to_dict()) + "\n")
    else:
        shown = [f"{k} in [{lo}, {hi}]" for k, (lo, hi) in list(res.box.items())[:4]]
        if len(res.box) > 4:
            shown.append(f"... ({len(res.box)} entries)")
        out.print(f"{res.status}: {res.goal} in {', '.join(shown)} - {res.reason}", markup=False)
        for k, v in res.values.items():
            out.print(f"  {k} = {v}", markup=False)
        out.print(f"  answered by: {res.solver}" + (f" ({res.trust or 'solver-trusted'})" if res.status == "unsat" else ""), markup=False)
    raise typer.Exit(res.exit_code)


@app.command("export-test")
def export_test(
    cex: str = typer.Argument(..., metavar="CEX", help="counterexample network file (e.g. from kinkcheck search --out)"),
    framework: str = typer.Option("numpy", "--framework", metavar="NAME", help="numpy (the documented order, bit for bit) | torch (torch.nn.functional + autograd; asserts what no summation order can change)"),
    output: str = typer.Option(..., "-o", "--output", metavar="FILE", help="the pytest file to write"),
):
    """Write a self-contained pytest file that reproduces the counterexample.

    Exit codes: 0 written, 2 bad input, usage or an unsupported network (nothing written), 4 internal error."""
    from ..testgen.export import export_test as _export

    try:
        text = _export(cex, framework)
    except InputError as exc:
        _fail(str(exc))
    from pathlib import Path

    from ..files import replace_atomic

    try:
        replace_atomic(output, lambda tmp: Path(tmp).write_text(text), ".py")
    except OSError as exc:
        _fail(f"{output}: cannot write: {exc.strerror or exc}")
    out.print(f"wrote {output}")
    raise typer.Exit(0)


MODEL_SUFFIXES = (".onnx", ".pt2", ".pt", ".pth")


@app.command("import")
def import_model(
    model: str = typer.Argument(..., metavar="MODEL", help="model.onnx, model.pt2 (torch.export archive), or model.pt: TorchScript, or a state_dict with --arch"),
    inputs: str = typer.Option(..., "--inputs", metavar="FILE", help="X.npy: the batch, in the network's dtype"),
    targets: Optional[str] = typer.Option(None, "--targets", metavar="FILE", help="Y.npy"),
    loss: str = typer.Option("sum", "--loss", metavar="LOSS", help="sum | dot | mse | l1 | cross_entropy"),
    arch: Optional[str] = typer.Option(None, "--arch", metavar="ARCH", help='for a state_dict: "Linear(3,4),ReLU(),Linear(4,2)"'),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="allow unpickling a full module (runs code from the file)"),
    rounding: Optional[str] = typer.Option(None, "--rounding", metavar="exact|nearest", help="'nearest': round data that is not in the network's dtype (reported)"),
    output: str = typer.Option(..., "-o", "--output", metavar="FILE", help="the network file to write"),
    inline: bool = typer.Option(False, "--inline", help="keep every tensor in the JSON file (default: tensors of more than 4096 values go to <output stem>.npz beside it)"),
):
    """Import a PyTorch (TorchScript, torch.export, state_dict) or ONNX model file and a batch as a network file (exact bits).

    Exit codes: 0 written, 2 bad input or usage (nothing written), 4 internal error."""
    from ..files import write_atomic

    if rounding not in (None, "exact", "nearest"):
        _fail(f"--rounding must be 'exact' or 'nearest', got {rounding!r}")
    try:
        doc, notes = _model_document(model, inputs, targets, loss, arch=arch, trust_pickle=trust_pickle, rounding=rounding)
        from ..api import load

        net = load(doc)
    except InputError as exc:
        _fail(str(exc))
    for n in notes:
        err.print(f"kinkcheck: note: {n}", markup=False)
    from pathlib import Path

    arrays, sidecar = {}, Path(output).with_suffix(".npz")
    if not inline:
        from ..encodings.tensorfiles import externalize

        if sidecar.resolve() == Path(output).resolve():
            _fail(f"{output}: the network file must not end in .npz (its tensors go to a .npz beside it; or use --inline)")
        doc, arrays = externalize(doc, net, sidecar.name)
    try:
        if arrays:
            from ..encodings.tensorfiles import write_npz

            write_npz(sidecar, arrays)  # first: the JSON file never names a missing sidecar
        write_atomic(output, doc)
    except OSError as exc:
        _fail(f"{output}: cannot write: {exc.strerror or exc}")
    out.print(f"wrote {output}" + (f" and {sidecar} ({len(arrays)} tensors)" if arrays else ""))
    raise typer.Exit(0)


@app.command("export")
def export_model(
    network: str = typer.Argument(..., metavar="NETWORK", help="network file (JSON, format version 1)"),
    to: str = typer.Option(..., "--to", metavar="torch|pt2|onnx", help="torch (TorchScript .pt) | pt2 (torch.export archive) | onnx"),
    order: str = typer.Option("torch", "--order", metavar="torch|spec", help="torch: torch's own modules; spec: TorchScript that evaluates in kinkcheck's machine order (see docs/interop.md)"),
    output: str = typer.Option(..., "-o", "--output", metavar="FILE", help="the model file to write"),
):
    """Write a network file's model (exact parameter bits) as TorchScript, a torch.export archive or ONNX.

    Exit codes: 0 written, 2 bad input or usage (nothing written), 4 internal error."""
    from ..api import load
    from ..interop.torch_export import export_network

    if to not in ("torch", "pt2", "onnx"):
        _fail(f"--to must be torch, pt2 or onnx, got {to!r}")
    if order not in ("torch", "spec"):
        _fail(f"--order must be torch or spec, got {order!r}")
    try:
        notes = export_network(load(network), to, output, order=order)
    except InputError as exc:
        _fail(str(exc))
    for note in notes:
        err.print(f"kinkcheck: note: {note}", markup=False)
    out.print(f"wrote {output}")
    raise typer.Exit(0)


def _beta_survey(cfg, betas, quick, given, workers, out_dir, quiet):
    """``survey --betas``: Boustany's J_beta training experiment (``survey/protocol2.py``)."""
    from ..survey import protocol2 as P2

    out_dir = out_dir or "survey-out/p2-beta"
    try:
        res = P2.beta_survey(P2.from_cli(cfg, betas, quick, given), workers=workers)
        P2.write(res, out_dir)
    except InputError as exc:
        _fail(str(exc))
    except ImportError as exc:
        _fail(f"the survey needs PyTorch and scikit-learn: pip install 'kinkcheck[torch,survey]' ({exc})")
    except OSError as exc:
        _fail(f"{out_dir}: cannot write: {exc.strerror or exc}")
    if not quiet:
        out.print(res.markdown(), markup=False)
        out.print(f"written: {out_dir}/beta_summary.md, beta_results.json, beta_accuracy.png")


def default_survey_dir(cfg) -> str:
    """The survey's default --out: one folder per configuration. Runs there are reused only under
    the same run parameters (cfg.run_params(): protocol, arch, loss, seed, budgets, ...), so the
    folder is named by them; the grid (widths, depths, dtypes, inits) may grow in the same folder."""
    import hashlib
    import json as _json

    params = cfg.run_params()
    digest = hashlib.sha256(_json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"survey-out/p{cfg.protocol}-{cfg.arch}-{digest}"


@app.command()
def survey(
    quick: bool = typer.Option(False, "--quick", help="a preset that takes about 20 s on 2 cores, every event classified, 5 s verdict budget (options given explicitly override it)"),
    protocol: int = typer.Option(1, "--protocol", metavar="1|2", help="1: one epoch without updates (Bertoin et al.); 2: SGD training, every event recorded"),
    arch: str = typer.Option("mlp", "--arch", metavar="ARCH", help="mlp | cnn (Conv2d -> MaxPool2d -> ReLU -> ... -> Linear)"),
    widths: str | None = typer.Option(None, "--widths", metavar="LIST", help="hidden widths (mlp) or channels (cnn), comma-separated; default 16,64"),
    depths: str | None = typer.Option(None, "--depths", metavar="LIST", help="hidden layers (mlp) or conv layers (cnn), comma-separated; default 1"),
    dtypes: str | None = typer.Option(None, "--dtypes", metavar="LIST", help="comma-separated: float16, bfloat16, float32, float64; default float16,float32,float64"),
    inits: int | None = typer.Option(None, "--inits", metavar="N", help="random initialisations per grid point; default 8"),
    batch: int | None = typer.Option(None, "--batch", metavar="N", help="minibatch size; default 32"),
    max_batches: int | None = typer.Option(None, "--max-batches", metavar="N", help="at most this many minibatches per epoch; default all"),
    max_classified: str | None = typer.Option(None, "--max-classified", metavar="N|all", help="events classified exactly per run: N or all; default 5"),
    lr: float | None = typer.Option(None, "--lr", metavar="X", help="SGD learning rate, protocol 2; default 0.1"),
    epochs: int | None = typer.Option(None, "--epochs", metavar="N", help="training epochs, protocol 2; default 3"),
    loss: str | None = typer.Option(None, "--loss", metavar="LOSS", help="cross_entropy | mse (mse keeps every verdict rational); default cross_entropy"),
    inputs: str | None = typer.Option(None, "--inputs", metavar="FILE", help="pixels (value/16) | standardized (per pixel); default pixels for mlp, standardized for cnn"),
    verdict_budget: float | None = typer.Option(None, "--verdict-budget", metavar="SECONDS", help="seconds for the verdicts of one event, 0: no limit; default 60, with --quick 5"),
    data: str | None = typer.Option(None, "--data", metavar="FILE", help="your data set instead of load_digits: an .npz with arrays X (N samples, flattened) and y (labels 0..9), e.g. MNIST; --arch mlp only"),
    full_verify: bool = typer.Option(False, "--full-verify", help="classify with the whole kinkcheck.verify (adds kinkcheck's spec-order float run; slower)"),
    seed: int | None = typer.Option(None, "--seed", metavar="N", help="default 0"),
    executor: str = typer.Option("local", "--executor", metavar="local|dask", help="local (processes on this machine) | dask"),
    scheduler: str | None = typer.Option(None, "--scheduler", metavar="ADDRESS", help="dask scheduler address (tcp://HOST:PORT); without it: a local Dask cluster"),
    workers: int = typer.Option(2, "--workers", metavar="N", help="local processes (or local Dask workers)"),
    out_dir: str | None = typer.Option(
        None, "-o", "--output", "--out", metavar="DIR", help="folder for runs/, summary.md, results.json, plots; finished runs there are reused; "
        "default survey-out/p<protocol>-<arch>-<id>: one folder per configuration (id: a hash of the run parameters)"
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar and no table on stdout"),
    betas: str | None = typer.Option(None, "--betas", metavar="LIST", help="Protocol 2 with --arch cnn: train with the max-pool backward J_beta for each beta (e.g. 0,1,1000,10000) and report training accuracy (docs/survey.md)"),
):
    """Bertoin et al.'s and Boustany's experiments on load_digits or your data set (ReLU'(0) = 0 vs 1, max-pool first vs split), every event classified exactly.

    Exit codes: 0 done, 2 bad input or usage, 4 internal error."""
    from dataclasses import replace

    try:
        from ..survey.config import SurveyConfig
        from ..survey.execute import survey as _survey
        from ..survey.report import write
    except ImportError as exc:  # pragma: no cover
        _fail(f"the survey needs the [survey] extra: {exc}")

    def ints(name, text):
        try:
            return tuple(int(v) for v in text.split(","))
        except ValueError:
            _fail(f"--{name}: expected comma-separated integers, got {text!r}")

    if protocol not in (1, 2):
        _fail(f"--protocol: expected 1 or 2, got {protocol}")
    if arch not in ("mlp", "cnn"):
        _fail(f"--arch: expected mlp or cnn, got {arch!r}")
    if executor not in ("local", "dask"):
        _fail(f"--executor: expected local or dask, got {executor!r}")
    if scheduler is not None and executor != "dask":
        _fail("--scheduler needs --executor dask")
    if workers < 1:
        _fail(f"--workers: expected an integer >= 1, got {workers}")
    cfg = SurveyConfig.quick(protocol, arch) if quick else SurveyConfig(protocol=protocol, arch=arch)
    given = {}
    if widths is not None:
        given["widths"] = ints("widths", widths)
    if depths is not None:
        given["depths"] = ints("depths", depths)
    if dtypes is not None:
        given["dtypes"] = tuple(v.strip() for v in dtypes.split(","))
    if max_classified is not None:
        if max_classified == "all":
            given["max_classified"] = None
        else:
            try:
                given["max_classified"] = int(max_classified)
            except ValueError:
                _fail(f"--max-classified: expected an integer or 'all', got {max_classified!r}")
    if verdict_budget is not None:
        given["verdict_budget_s"] = verdict_budget or None
    for name, v in (("inits", inits), ("batch", batch), ("max_batches", max_batches), ("lr", lr), ("epochs", epochs), ("loss", loss), ("inputs", inputs), ("seed", seed), ("data", data)):
        if v is not None:
            given[name] = v
    if full_verify:
        given["full_verify"] = True
    cfg = replace(cfg, **given)
    if betas is not None:
        _beta_survey(cfg, betas, quick, given, workers, out_dir, quiet)
        return
    try:
        cfg.validate()
        if out_dir is None:
            out_dir = default_survey_dir(cfg)
        res = _survey(cfg, workers=workers, executor=executor, scheduler=scheduler, out_dir=out_dir, progress=not quiet and err.is_terminal)
    except InputError as exc:
        _fail(str(exc))
    except ImportError as exc:
        _fail(f"the survey needs PyTorch and scikit-learn: pip install 'kinkcheck[torch,survey]' ({exc})")
    try:
        files = write(res, out_dir)
    except OSError as exc:
        _fail(f"{out_dir}: cannot write: {exc.strerror or exc}")
    if not quiet:
        out.print(res.markdown(), markup=False)
    reused = len(res.runs) - res.computed
    out.print(f"{res.computed} run(s) computed, {reused} reused from {out_dir}/runs; wrote " + ", ".join(str(f) for f in files), markup=False)
    raise typer.Exit(0)


@app.command()
def count(
    network: str = typer.Argument(..., metavar="NETWORK", help="network file (JSON, format version 1)"),
    sweep: list[str] = typer.Option(..., "--sweep", metavar="PARAM", help="PARAM or PARAM[i,j]: a scalar to sweep over every machine number (once or twice)"),
    range_: Optional[list[str]] = typer.Option(None, "--range", metavar="LO:HI", help="LO:HI (decimal, ratio or hex; either side may be empty): one for every sweep, or one per --sweep"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
    list_k: int = typer.Option(5, "--list", metavar="K", help="show the first K points of each kind (exact hex)"),
    plot_path: Optional[str] = typer.Option(None, "--plot", metavar="FILE", help="write a picture of the real ties, float ties and nd set (PNG; needs the survey extra)"),
    timeout: float = typer.Option(600.0, "--timeout", metavar="SECONDS", help="seconds for the full decisions at tie points; points left are reported undecided"),
    no_choice: bool = typer.Option(False, "--no-choice", help="skip choice sensitivity: no full decision at points with a float tie but no real tie (faster)"),
    convention: Optional[str] = typer.Option(None, "--convention", metavar="NAME|FILE", help="pytorch | jax | tensorflow | FILE.json"),
):
    """Count, over every machine number of one or two swept scalars, the points with real ties, float ties, f not differentiable, wrong AD, ...

    Exit codes: 0 every point decided (non-zero counts are answers, not findings), 2 bad input or usage, 3 some points undecided (time-out), 4 internal error or disagreement (a bug)."""
    from ..search.count import count as _count
    from ..search.count import plot as _plot

    ranges = list(range_ or [])
    if len(ranges) > 1 and len(ranges) != len(sweep):
        _fail(f"--range: give one range, or one per --sweep ({len(sweep)}), not {len(ranges)}")
    if list_k < 0:
        _fail(f"--list: expected K >= 0, got {list_k}")
    if timeout <= 0:
        _fail(f"--timeout: expected seconds > 0, got {timeout}")
    if plot_path is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            _fail("--plot needs matplotlib: pip install 'kinkcheck[survey]'")
    progress = None
    bar = None
    if err.is_terminal and not json_out:
        from rich.progress import Progress

        bar = Progress(console=err, transient=True)
        task = bar.add_task("counting", total=None)
        bar.start()

        def progress(done, total):
            bar.update(task, completed=done, total=total)

    try:
        res = _count(network, sweep, range=ranges if len(ranges) > 1 else (ranges[0] if ranges else None), examples=list_k, timeout=timeout, convention=convention, progress=progress, keep=plot_path is not None, choice=not no_choice)
    except InputError as exc:
        _fail(str(exc) if str(exc).startswith(network) else f"{network}: {exc}")
    finally:
        if bar is not None:
            bar.stop()
    if plot_path is not None:
        try:
            _plot(res, plot_path)
        except OSError as exc:
            _fail(f"{plot_path}: cannot write the picture: {exc.strerror or exc}")
    if json_out:
        sys.stdout.write(json.dumps(res.to_dict()) + "\n")
    else:
        _count_table(res)
    raise typer.Exit(res.exit_code)


conventions_app = typer.Typer(no_args_is_help=True, help="Derivative conventions.")
app.add_typer(conventions_app, name="conventions")


@conventions_app.command("probe")
def conventions_probe(
    framework: str = typer.Option("torch", "--framework", metavar="NAME", help="torch | jax (JAX runs on CPU)"),
    output: Optional[str] = typer.Option(None, "-o", "--output", metavar="FILE", help="write the convention file here"),
):
    """Measure the installed framework's derivatives at every kink and write a convention file.

    Exit codes: 0 done, 2 bad input or usage (e.g. the framework is not installed), 4 internal error."""
    import json as _json

    from ..files import write_atomic
    from ..interop.probe import probe

    try:
        conv = probe(framework)
    except InputError as exc:
        _fail(str(exc))
    if output:
        try:
            write_atomic(output, conv)
        except OSError as exc:
            _fail(f"{output}: cannot write: {exc.strerror or exc}")
        out.print(f"wrote {output}")
    else:
        sys.stdout.write(_json.dumps(conv, indent=1) + "\n")
    raise typer.Exit(0)


def _version(value: bool):
    if value:
        from .. import __version__

        out.print(f"kinkcheck {__version__}", markup=False)
        raise typer.Exit(0)


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version and exit")):
    """kinkcheck: is f differentiable at w, is AD the gradient, is it Clarke, how does the float run branch.

    Exit codes (every command): 0 everything holds, 1 a finding, 2 bad input or usage, 3 undecided,
    4 internal error (a bug). `kinkcheck COMMAND -h` describes each command."""


def main():  # console script entry
    """Run the CLI. An unexpected exception is a kinkcheck bug: one line on stderr, exit 4
    (KINKCHECK_DEBUG=1 shows the traceback)."""
    import os

    try:
        code = app(prog_name="kinkcheck", standalone_mode=False)
    except KeyboardInterrupt:  # pragma: no cover
        err.print("kinkcheck: interrupted", markup=False)
        sys.exit(130)
    except Exception as exc:
        kinds = {c.__name__ for c in type(exc).__mro__}  # typer vendors click: match by name
        if "NoArgsIsHelpError" in kinds:
            sys.exit(2)  # the help was printed
        if "UsageError" in kinds:  # one line and a hint
            ctx = getattr(exc, "ctx", None)
            cmd = ctx.command_path if ctx is not None else "kinkcheck"
            err.print(one_line(f"kinkcheck: {exc.format_message()} (see '{cmd} -h')"), markup=False)
            sys.exit(2)
        if "ClickException" in kinds:
            err.print(one_line(f"kinkcheck: {exc.format_message()}"), markup=False)
            sys.exit(getattr(exc, "exit_code", 2))
        if "Abort" in kinds:  # pragma: no cover
            err.print("kinkcheck: interrupted", markup=False)
            sys.exit(130)
        if os.environ.get("KINKCHECK_DEBUG"):
            raise
        err.print(f"kinkcheck: internal error (a bug, please report it): {type(exc).__name__}: {exc}", markup=False)
        sys.exit(4)
    sys.exit(code if isinstance(code, int) else 0)
