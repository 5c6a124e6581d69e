"""The text report of ``kinkcheck verify``: the verdict table, ties, branch mismatches, fixed-point
layers, choice sensitivity and the AD outputs. Exact values carry a decimal approximation beside
them and are never cut in the middle (a table that would not fit becomes one line per row)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

MAX_ROWS = 20


def _yn(v):
    return {True: "[green]yes[/]", False: "[red]no[/]", None: "[yellow]undecided[/]"}[v]


def _flag(v):
    return {True: "[red]yes[/]", False: "[green]no[/]", None: "[yellow]undecided[/]"}[v]


def _option(c) -> str:
    return f"entry {c['choice']}" if isinstance(c["choice"], int) else c["choice"]


def _exact(q) -> str:
    """An exact value with its decimal approximation beside it: "1/3 (~0.333333333333)"."""
    from ..encodings.fmt import approx

    a = approx(q)
    return f"{q} (~{a})" if a else str(q)


def _vin_lines(out, e, m, x) -> None:
    """The ``implicit`` entry of a value-iteration block (docs/implicit.md)."""
    head = f"value-iteration layer {e['layer']} ({e['grid'][0]}x{e['grid'][1]} grid, {e['actions']} actions, gamma {e['gamma']}): "
    if e["solver"]["method"] == "unroll":
        out.print(head + f"{e['solver']['iterations']} unrolled step(s)" + (f"; float maximal actions {'agree' if e.get('pattern_agrees') else 'DIFFER'}" if x else f"; exact: {e.get('reason')}"))
        for smp in e.get("samples", []):
            if smp["tied_states"]:
                out.print(f"  sample {smp['sample']}: tied states at the output {smp['tied_states']}")
        return
    out.print(
        head
        + f"machine {m.get('iterations')} iteration(s), residual {m.get('residual')}, "
        + ("converged" if m.get("converged") else "NOT converged")
        + (f"; exact fixed point {'unique (contraction)' if x['unique'] else 'uniqueness not proved'}, float maximal actions {'agree' if e.get('pattern_agrees') else 'DIFFER'}" if x else f"; exact: {e.get('reason')}")
    )
    for smp in e.get("samples", []):
        if smp["tied_units"] or smp["clarke_jacobian_invertible"] is not True:
            inv = "invertible" if smp["clarke_jacobian_invertible"] else "has a singular element" if smp["clarke_jacobian_invertible"] is False else "undecided"
            out.print(f"  sample {smp['sample']}: tied states {smp['tied_actions']} (state: actions): Clarke Jacobian I - gamma P {inv} ({smp['reason']})")


def _table_or_lines(title: str, columns: list, rows: list) -> None:
    """A table when every row fits the terminal; otherwise one line per row, so that no number is
    ever cut in the middle by a narrow column."""
    width = sum(max([len(c)] + [len(r[i]) for r in rows]) + 3 for i, c in enumerate(columns)) + 1
    if width <= out.width:
        tt = Table(title=title, title_justify="left")
        for c in columns:
            tt.add_column(c, no_wrap=True)
        for r in rows:
            tt.add_row(*r)
        out.print(tt)
        return
    out.print(title, markup=False)
    for r in rows:
        out.print("  " + "; ".join(f"{c} {v}" for c, v in zip(columns, r)), markup=False, soft_wrap=True)


def _rounded(report) -> list:
    """Each place that rounding "nearest" changed, with the value it now has."""
    import re

    net = getattr(report, "_net", None)
    lines = []
    for place in report.rounded_values:
        v = None
        m = re.fullmatch(r"(?:params\.([^\[]+)|(inputs)|(targets))(?:\[([\d,]+)\])?", place)
        if net is not None and m:
            idx = tuple(int(i) for i in m.group(4).split(",")) if m.group(4) else ()
            try:
                if m.group(1):
                    p = net.param(m.group(1))
                    v = net.theta[p.offset : p.offset + p.size].reshape(p.shape)[idx]
                else:
                    v = (net.inputs if m.group(2) else net.targets)[idx]
            except (KeyError, IndexError, ValueError):
                v = None
        lines.append(f"{place} -> {net.fmt.to_hex(float(v))} (~{float(v):.12g})" if v is not None else place)
    return lines


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
    t.add_row("branch mismatch (float run branches differently)", _flag(d["branch_mismatch"]))
    t.add_row("compensation (mismatch, AD right over the reals)", _flag(d["compensation"]))
    t.add_row("choice-sensitive (bifurcation zone)", _flag(d["choice_sensitive"]))
    t.add_row("reason", d["reason"])
    out.print(t)
    out.print(f"loss: exact {_exact(d['loss']['exact'])}, machine {d['loss']['machine']}", markup=False)
    for line in _rounded(report):
        out.print(f"rounded (nearest): {line}", markup=False)
    for key, title in (("real_ties", "Real ties"), ("float_ties", "Float ties")):
        rows = d[key]
        if not rows:
            continue
        table = [[str(r["layer"]), r["op"], str(r["sample"]), str(r["unit"]), _exact(r["kink"]), _exact(r["exact"]), str(r["machine"])] for r in rows[:MAX_ROWS]]
        if len(rows) > MAX_ROWS:
            table.append(["...", f"{len(rows) - MAX_ROWS} more", "", "", "", "", ""])
        _table_or_lines(title, ["layer", "op", "sample", "unit", "kink", "exact", "machine"], table)
    if d["branch_mismatch_units"]:
        title = "Compensation" if d["compensation"] else "Branch mismatch"
        tt = Table(title=f"{title} (machine branch differs from exact)", title_justify="left")
        for c in ("layer", "op", "sample", "unit", "kind", "exact", "machine"):
            tt.add_column(c)
        for r in d["branch_mismatch_units"][:MAX_ROWS]:
            tt.add_row(str(r["layer"]), r["op"], str(r["sample"]), str(r["unit"]), r["kind"], r["exact_branch"], r["machine_branch"])
        out.print(tt)
    for e in d.get("implicit", []):
        m, x = e.get("machine") or {}, e.get("exact")
        if e.get("op") == "value_iteration":
            _vin_lines(out, e, m, x)
            continue
        out.print(
            f"fixed-point layer {e['layer']} ({e['units']} units): machine solver{_fp_method(e['solver'])} {m.get('iterations')} iteration(s), residual {m.get('residual')}, "
            + ("converged" if m.get("converged") else "NOT converged")
            + (f"; exact fixed point {'unique (contraction)' if x['unique'] else 'uniqueness not proved'}, float pattern {'agrees' if e.get('pattern_agrees') else 'DIFFERS'}" if x else f"; exact: {e.get('reason')}")
        )
        for smp in e.get("samples", []):
            if smp["tied_units"] or smp["clarke_jacobian_invertible"] is not True:
                out.print(f"  sample {smp['sample']}: tied units {smp['tied_units']}: Clarke Jacobian {'invertible' if smp['clarke_jacobian_invertible'] else 'has a singular element' if smp['clarke_jacobian_invertible'] is False else 'undecided'} ({smp['reason']})")
    if d["choice_causes"]:
        out.print("choice-sensitive ties (alone): " + ", ".join(f"layer {c['layer']} sample {c['sample']} unit {c['unit']} {_option(c)}" for c in d["choice_causes"][:MAX_ROWS]))
    if d["choice_witness"] and not d["choice_causes"]:
        w = d["choice_witness"]
        text = ", ".join(f"layer {c['layer']} sample {c['sample']} unit {c['unit']} {_option(c)}" for c in w["ties"][:MAX_ROWS])
        out.print(f"choice-sensitive: together, {text}" + (f" -> machine AD ({', '.join(w['machine_ad'][:8])}{', ...' if len(w['machine_ad']) > 8 else ''})" if w["machine_ad"] else ""))
    if d["values_included"] and d["ad"] is not None or d["machine_ad"] is not None:
        labels = report.labels
        n = len(d["machine_ad"] or [])
        table = [[labels[i], _exact((d["ad"] or ["-"] * n)[i]), d["machine_ad"][i], _exact((d["gradient"] or ["-"] * n)[i])] for i in range(min(n, 64))]
        if n > 64:
            table.append(["...", f"{n - 64} more (use --json)", "", ""])
        _table_or_lines("AD output", ["parameter", "exact AD", "machine AD", "gradient"], table)
    for u in d["unknown"]:
        out.print(f"[yellow]unknown:[/] {u}")
    for f in d["findings"]:
        out.print(f"[red]finding:[/] {f}")


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


def _fp_method(solver: dict) -> str:
    """The solver named after "machine solver": the Anderson settings, nothing for plain iteration."""
    return f" (anderson, m = {solver['m']}, beta = {solver['beta']})" if solver.get("method") == "anderson" else ""
