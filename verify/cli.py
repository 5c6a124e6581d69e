"""The ``kinkcheck`` command line.

Exit codes (every command): 0 everything holds; 1 a finding; 2 bad input or usage; 3 undecided.
Bad input prints one line on stderr (``kinkcheck: FILE: where: what``) and never a traceback.
"""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .encodings.errors import InputError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="Exact verification of AD at kinks for small networks.")
out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

MAX_ROWS = 20


def _fail(msg: str, code: int = 2):
    err.print(f"kinkcheck: {msg}", markup=False)
    raise typer.Exit(code)


def _yn(v):
    return {True: "[green]yes[/]", False: "[red]no[/]", None: "[yellow]undecided[/]"}[v]


def _flag(v):
    return {True: "[red]yes[/]", False: "[green]no[/]", None: "[yellow]undecided[/]"}[v]


def _render(report) -> None:
    d = report.to_dict()
    t = Table(title=f"kinkcheck verify {d['network']}", show_header=False, title_justify="left")
    t.add_column("question")
    t.add_column("answer")
    t.add_row("dtype / convention", f"{d['dtype']} / {d['convention']}")
    t.add_row("parameters x batch", f"{d['n_params']} x {d['batch']}")
    t.add_row("real ties / float ties", f"{d['n_real_ties']} / {d['n_float_ties']}")
    t.add_row("differentiable", _yn(d["differentiable"]))
    t.add_row("AD is the gradient", _yn(d["ad_correct"]))
    t.add_row("AD is a Clarke subderivative", _yn(d["ad_in_clarke"]))
    t.add_row("compensation (float branches differently)", _flag(d["compensation"]))
    t.add_row("choice-sensitive (bifurcation zone)", _flag(d["choice_sensitive"]))
    t.add_row("loss (exact / machine)", f"{d['loss']['exact']} / {d['loss']['machine']}")
    t.add_row("reason", d["reason"])
    out.print(t)
    for key, title in (("real_ties", "Real ties"), ("float_ties", "Float ties")):
        rows = d[key]
        if not rows:
            continue
        tt = Table(title=title, title_justify="left")
        for c in ("layer", "op", "sample", "unit", "kink", "exact", "machine"):
            tt.add_column(c)
        for r in rows[:MAX_ROWS]:
            tt.add_row(str(r["layer"]), r["op"], str(r["sample"]), str(r["unit"]), str(r["kink"]), str(r["exact"]), str(r["machine"]))
        if len(rows) > MAX_ROWS:
            tt.add_row("...", f"{len(rows) - MAX_ROWS} more", "", "", "", "", "")
        out.print(tt)
    if d["compensation_neurons"]:
        tt = Table(title="Compensation (machine branch differs from exact)", title_justify="left")
        for c in ("layer", "op", "sample", "unit", "kind", "exact", "machine"):
            tt.add_column(c)
        for r in d["compensation_neurons"][:MAX_ROWS]:
            tt.add_row(str(r["layer"]), r["op"], str(r["sample"]), str(r["unit"]), r["kind"], r["exact_branch"], r["machine_branch"])
        out.print(tt)
    if d["choice_causes"]:
        out.print("choice-sensitive ties: " + ", ".join(f"layer {c['layer']} sample {c['sample']} unit {c['unit']}" for c in d["choice_causes"][:MAX_ROWS]))
    if d["values_included"] and d["ad"] is not None or d["machine_ad"] is not None:
        tt = Table(title="AD output", title_justify="left")
        tt.add_column("parameter")
        tt.add_column("exact AD")
        tt.add_column("machine AD")
        tt.add_column("gradient")
        labels = report.labels
        n = len(d["machine_ad"] or [])
        for i in range(min(n, 64)):
            tt.add_row(labels[i], (d["ad"] or ["-"] * n)[i], d["machine_ad"][i], (d["gradient"] or ["-"] * n)[i])
        if n > 64:
            tt.add_row("...", f"{n - 64} more (use --json)", "", "")
        out.print(tt)
    for u in d["unknown"]:
        out.print(f"[yellow]unknown:[/] {u}")
    for f in d["findings"]:
        out.print(f"[red]finding:[/] {f}")


@app.command()
def verify(
    network: str = typer.Argument(..., help="network file (JSON, format version 1)"),
    convention: Optional[str] = typer.Option(None, help="pytorch | jax | tensorflow | FILE.json"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
    values: bool = typer.Option(False, "--values", help="always include the exact and machine AD outputs"),
    rounding: Optional[str] = typer.Option(None, help="'nearest' rounds non-representable values (reported)"),
    certificate: Optional[str] = typer.Option(None, "--certificate", help="write the certificate (JSON) to this file"),
):
    """Verify a network at its parameters: ties, compensation, choice sensitivity, AD outputs."""
    from .api import verify as _verify

    if rounding not in (None, "exact", "nearest"):
        _fail(f"--rounding must be 'exact' or 'nearest', got {rounding!r}")
    try:
        report = _verify(network, convention=convention, values=True if values else None, rounding=rounding)
    except InputError as exc:
        _fail(str(exc))
    if certificate:
        from .files import write_atomic

        try:
            write_atomic(certificate, report.certificate())
        except OSError as exc:
            _fail(f"{certificate}: cannot write the certificate: {exc.strerror or exc}")
        except ValueError as exc:
            _fail(f"{network}: {exc}", 3)
    if json_out:
        sys.stdout.write(report.to_json() + "\n")
    else:
        _render(report)
    raise typer.Exit(report.exit_code)


@app.command()
def check(certificate: str = typer.Argument(..., help="certificate written by kinkcheck verify --certificate")):
    """Re-validate a certificate with exact arithmetic: exit 0 valid, 1 invalid (first failing step), 2 bad input."""
    from .certify.checker import CheckFailed, check_certificate

    try:
        res = check_certificate(certificate)
    except InputError as exc:
        _fail(str(exc))
    except CheckFailed as exc:
        out.print(f"[red]invalid:[/] {exc}", markup=True)
        raise typer.Exit(1)
    out.print(f"[green]valid[/]: {', '.join(res['steps'])}")
    raise typer.Exit(0)


@app.command()
def search(
    network: str = typer.Argument(..., help="network file"),
    find: str = typer.Option(..., "--find", help="float-tie | real-tie | compensation | choice-sensitive | ad-mismatch"),
    k: int = typer.Option(0, "--k", help="ad-mismatch: more than K ulps"),
    box: Optional[list[str]] = typer.Option(None, "--box", help="NAME=LO:HI (repeatable): a free scalar param and its closed interval"),
    free: Optional[str] = typer.Option(None, "--free", help="NAME,NAME,...: free scalar params within --ulps K of their values"),
    ulps: Optional[int] = typer.Option(None, "--ulps"),
    solver: str = typer.Option("z3", "--solver"),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="seconds"),
    out_file: Optional[str] = typer.Option(None, "--out", help="write the counterexample network (sat) or the certificate (unsat)"),
    smtlib: Optional[str] = typer.Option(None, "--smtlib", help="write the SMT-LIB2 query to this file"),
    json_out: bool = typer.Option(False, "--json"),
    no_prune: bool = typer.Option(False, "--no-prune", help="no interval enclosures: the whole query, nothing sliced"),
    no_structure: bool = typer.Option(False, "--no-structure", help="the solver only: no monotone bounds, enumeration or point checks first"),
):
    """Search a box of float parameters: exit 1 sat (a confirmed counterexample), 0 unsat (none exists), 3 unknown, 2 bad input."""
    import json as _json

    from .files import write_atomic
    from .search.solver import search as _search

    boxes = {}
    for item in box or []:
        name, sep, rng = item.partition("=")
        lo, sep2, hi = rng.partition(":")
        if not sep or not sep2 or not name:
            _fail(f"--box {item!r}: expected NAME=LO:HI")
        boxes[name] = (lo, hi)
    try:
        res = _search(
            network,
            find,
            box=boxes,
            free=[f for f in (free or "").split(",") if f],
            ulps=ulps,
            timeout=timeout,
            solver=solver,
            k_ulps=k,
            prune=not no_prune,
            structured=not no_structure,
        )
    except InputError as exc:
        _fail(str(exc))
    try:
        if smtlib:
            with open(smtlib, "w") as f:
                f.write(res.smtlib)
        if out_file and res.status == "sat":
            write_atomic(out_file, res.counterexample)
        elif out_file and res.status == "unsat":
            write_atomic(out_file, res.certificate())
    except OSError as exc:
        _fail(f"cannot write: {exc}")
    if json_out:
        sys.stdout.write(_json.dumps(res.to_dict()) + "\n")
    else:
        out.print(f"{res.status}: {res.goal} in {', '.join(f'{k} in [{lo}, {hi}]' for k, (lo, hi) in res.box.items())} - {res.reason}")
        for k, v in res.values.items():
            out.print(f"  {k} = {v}")
        out.print(f"  answered by: {res.solver}" + (f" ({res.trust or 'solver-trusted'})" if res.status == "unsat" else ""))
    raise typer.Exit(res.exit_code)


@app.command("export-test")
def export_test(
    cex: str = typer.Argument(..., help="counterexample network file (e.g. from kinkcheck search --out)"),
    framework: str = typer.Option("numpy", "--framework", help="numpy (the documented order, bit for bit) | torch (torch.nn.functional + autograd; asserts what no summation order can change)"),
    output: str = typer.Option(..., "-o", "--output", help="the pytest file to write"),
):
    """Write a self-contained pytest file that reproduces the counterexample (exit 2 on unsupported networks)."""
    from .testgen.export import export_test as _export

    try:
        text = _export(cex, framework)
    except InputError as exc:
        _fail(str(exc))
    from pathlib import Path

    from .files import replace_atomic

    try:
        replace_atomic(output, lambda tmp: Path(tmp).write_text(text), ".py")
    except OSError as exc:
        _fail(f"{output}: cannot write: {exc.strerror or exc}")
    out.print(f"wrote {output}")
    raise typer.Exit(0)


@app.command("import")
def import_model(
    model: str = typer.Argument(..., help="model.onnx, model.pt2 (torch.export archive), or model.pt: TorchScript, or a state_dict with --arch"),
    inputs: str = typer.Option(..., "--inputs", help="X.npy: the batch"),
    targets: Optional[str] = typer.Option(None, "--targets", help="Y.npy"),
    loss: str = typer.Option("sum", "--loss", help="sum | dot | mse | l1 | cross_entropy"),
    arch: Optional[str] = typer.Option(None, "--arch", help='for a state_dict: "Linear(3,4),ReLU(),Linear(4,2)"'),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="allow unpickling a full module (runs code from the file)"),
    output: str = typer.Option(..., "-o", "--output", help="the network file to write"),
):
    """Import a PyTorch (TorchScript, torch.export, state_dict) or ONNX model file and a batch as a network file (exact bits)."""
    import numpy as _np

    from .files import write_atomic
    from .interop.torch import _t, from_torch, load_module, scripted_to_sequential

    try:
        arrays = []
        for name in (inputs, targets):
            try:
                arrays.append(_np.load(name, allow_pickle=False) if name else None)
            except (OSError, ValueError) as exc:
                raise InputError(f"{name}: cannot read the data: {exc}") from None
        xa, ya = arrays
        if model.endswith(".onnx"):
            from .interop.onnx import from_onnx

            doc = from_onnx(model, xa, ya, loss)
        else:
            torch = _t()
            m = scripted_to_sequential(load_module(model, arch=arch, trust_pickle=trust_pickle))
            doc = from_torch(m, torch.from_numpy(xa), torch.from_numpy(ya) if ya is not None else None, loss)
        from .api import load

        load(doc)  # validate before writing
    except InputError as exc:
        _fail(str(exc))
    try:
        write_atomic(output, doc)
    except OSError as exc:
        _fail(f"{output}: cannot write: {exc.strerror or exc}")
    out.print(f"wrote {output}")
    raise typer.Exit(0)


@app.command("export")
def export_model(
    network: str = typer.Argument(..., help="network file (JSON, format version 1)"),
    to: str = typer.Option(..., "--to", help="torch (TorchScript .pt) | pt2 (torch.export archive) | onnx"),
    order: str = typer.Option("torch", "--order", help="torch: torch's own modules; spec: TorchScript that evaluates in kinkcheck's machine order (see docs/interop.md)"),
    output: str = typer.Option(..., "-o", "--output", help="the model file to write"),
):
    """Write a network file's model (exact parameter bits) as TorchScript, a torch.export archive or ONNX."""
    from .api import load
    from .interop.torch import export_network

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


@app.command()
def survey(
    quick: bool = typer.Option(False, "--quick", help="a preset that finishes in about a minute on 2 cores (options given explicitly override it)"),
    protocol: int = typer.Option(1, "--protocol", help="1: one epoch without updates (Bertoin et al.); 2: SGD training, every event recorded"),
    arch: str = typer.Option("mlp", "--arch", help="mlp | cnn (Conv2d -> MaxPool2d -> ReLU -> ... -> Linear)"),
    widths: str | None = typer.Option(None, "--widths", help="hidden widths (mlp) or channels (cnn), comma-separated; default 16,64"),
    depths: str | None = typer.Option(None, "--depths", help="hidden layers (mlp) or conv layers (cnn), comma-separated; default 1"),
    dtypes: str | None = typer.Option(None, "--dtypes", help="comma-separated: float16, bfloat16, float32, float64; default float16,float32,float64"),
    inits: int | None = typer.Option(None, "--inits", help="random initialisations per grid point; default 8"),
    batch: int | None = typer.Option(None, "--batch", help="minibatch size; default 32"),
    max_batches: int | None = typer.Option(None, "--max-batches", help="at most this many minibatches per epoch; default all"),
    max_classified: str | None = typer.Option(None, "--max-classified", help="events classified exactly per run: N or all; default 5"),
    lr: float | None = typer.Option(None, "--lr", help="SGD learning rate, protocol 2; default 0.1"),
    epochs: int | None = typer.Option(None, "--epochs", help="training epochs, protocol 2; default 3"),
    loss: str | None = typer.Option(None, "--loss", help="cross_entropy | mse (mse keeps every verdict rational); default cross_entropy"),
    inputs: str | None = typer.Option(None, "--inputs", help="pixels (value/16) | standardized (per pixel); default pixels for mlp, standardized for cnn"),
    verdict_budget: float | None = typer.Option(None, "--verdict-budget", help="seconds for the verdicts of one event, 0: no limit; default 60, with --quick 2"),
    full_verify: bool = typer.Option(False, "--full-verify", help="classify with the whole kinkcheck.verify (adds kinkcheck's spec-order float run; slower)"),
    seed: int | None = typer.Option(None, "--seed", help="default 0"),
    executor: str = typer.Option("local", "--executor", help="local (processes on this machine) | dask"),
    scheduler: str | None = typer.Option(None, "--scheduler", help="dask scheduler address (tcp://HOST:PORT); without it: a local Dask cluster"),
    workers: int = typer.Option(2, "--workers", help="local processes (or local Dask workers)"),
    out_dir: str = typer.Option("survey-out", "--out", help="folder for runs/, summary.md, results.json, plots; finished runs there are reused"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar and no table on stdout"),
):
    """Bertoin et al.'s and Boustany's experiments on load_digits (ReLU'(0) = 0 vs 1, max-pool first vs split), every event classified exactly."""
    from dataclasses import replace

    try:
        from .survey.run import SurveyConfig, write
        from .survey.run import survey as _survey
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
    for name, v in (("inits", inits), ("batch", batch), ("max_batches", max_batches), ("lr", lr), ("epochs", epochs), ("loss", loss), ("inputs", inputs), ("seed", seed)):
        if v is not None:
            given[name] = v
    if full_verify:
        given["full_verify"] = True
    cfg = replace(cfg, **given)
    try:
        cfg.validate()
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


def _count_table(res) -> None:
    d = res.to_dict()
    t = Table(title=f"kinkcheck count {d['network']}: {' x '.join(d['sweeps'])} over {d['points']} {d['dtype']} points", title_justify="left")
    for c in ("set", "points", "undecided", "first points"):
        t.add_column(c)
    names = {
        "real_tie": "real tie",
        "float_tie": "float tie",
        "not_differentiable": "f not differentiable",
        "ad_incorrect": "AD not the gradient (f differentiable)",
        "ad_not_in_clarke": "AD not a Clarke subderivative",
        "compensation": "compensation",
        "branch_mismatch": "branch mismatch (no tie)",
        "choice_sensitive": "choice-sensitive",
    }
    for k, name in names.items():
        shown = ", ".join(e if isinstance(e, str) else "(" + ", ".join(e) + ")" for e in d["examples"][k])
        t.add_row(name, "not computed" if d[k] is None else str(d[k]), str(d["unknown"][k] or ""), shown)
    out.print(t)
    b = d["lpa_bound"]
    bound = f"{b['bound']} ({b['formula']}); nd count {d['not_differentiable']}" if b.get("applies") else f"does not apply: {b['reason']}"
    out.print(f"Lee-Park-Aiken bound: {bound}", markup=False)
    out.print(f"method: {d['method']}; {d['decided_points']} point(s) fully decided; {d['time_s']:.3f} s, {d['points_per_s']:.0f} points/s", markup=False)


@app.command()
def count(
    network: str = typer.Argument(..., help="network file (JSON, format version 1)"),
    sweep: list[str] = typer.Option(..., "--sweep", help="PARAM or PARAM[i,j]: a scalar to sweep over every machine number (once or twice)"),
    range_: Optional[list[str]] = typer.Option(None, "--range", help="LO:HI (decimal, ratio or hex; either side may be empty): one for every sweep, or one per --sweep"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
    list_k: int = typer.Option(5, "--list", help="show the first K points of each kind (exact hex)"),
    plot_path: Optional[str] = typer.Option(None, "--plot", help="write a picture of the real ties, float ties and nd set (PNG; needs the survey extra)"),
    timeout: float = typer.Option(600.0, "--timeout", help="seconds for the full decisions at tie points; points left are reported undecided"),
    no_choice: bool = typer.Option(False, "--no-choice", help="skip choice sensitivity: no full decision at points with a float tie but no real tie (faster)"),
    convention: Optional[str] = typer.Option(None, help="pytorch | jax | tensorflow | FILE.json"),
):
    """Count, over every machine number of one or two swept scalars, the points with real ties, float ties, f not differentiable, wrong AD, ... (exit 0; 3 if some points stayed undecided; 4 internal disagreement)."""
    from .search.count import count as _count
    from .search.count import plot as _plot

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
    framework: str = typer.Option("torch", "--framework", help="torch | jax (JAX runs on CPU)"),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="write the convention file here"),
):
    """Measure the installed framework's derivatives at every kink and write a convention file."""
    import json as _json

    from .files import write_atomic
    from .interop.probe import probe

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


@app.callback()
def _main():
    """kinkcheck: is f differentiable at w, is AD the gradient, is it Clarke, how does the float run branch."""


def main():  # console script entry
    """Run the CLI. An unexpected exception is a kinkcheck bug: one line on stderr, exit 4
    (KINKCHECK_DEBUG=1 shows the traceback)."""
    import os

    try:
        app(standalone_mode=True)  # click handles usage errors: message, exit 2
    except KeyboardInterrupt:  # pragma: no cover
        err.print("kinkcheck: interrupted", markup=False)
        sys.exit(130)
    except Exception as exc:  # pragma: no cover - bugs only
        if os.environ.get("KINKCHECK_DEBUG"):
            raise
        err.print(f"kinkcheck: internal error (a bug, please report it): {type(exc).__name__}: {exc}", markup=False)
        sys.exit(4)
