"""A report people look at: ``kinkcheck verify NET --report out.html``.

One self-contained HTML page (no scripts, no external files: styles inline, pictures as inline
SVG) with the verdicts, the findings, the tie tables (exact rational, machine hex float, and a
decimal approximation beside every exact value), the picture around each elementwise tie, and the
certificate summary.

The picture around a tie (as the survey draws it, but with kinkcheck's own two semantics): the
kink's argument (the unit's pre-activation minus the kink) on a plane of machine numbers around w,
spanned by the two trainable scalars that move it most (largest |d pre-activation / d param| in
the machine run's tangent). Grid point (i, j) moves those two scalars by i and j ulps (nextafter
steps: every point is a machine number). Each cell shows log2 |float argument| as a shade; a cell
whose float argument is exactly zero (a float tie) is filled red, one whose exact argument is zero
(a real tie) is outlined blue. Where both sets differ, rounding has moved the kink. The grid is
evaluated point by point within a time budget; cells past the budget are left blank and the page
says so. Max-pool and l1 ties get no picture (their argument is a difference of two entries), nor do
ties inside fixed-point layers.
"""

from __future__ import annotations

import html
import math
import time

import numpy as np

from .api import Report
from .encodings import program as P
from .encodings.errors import Undecided
from .encodings.exact import ExactArith
from .encodings.fmt import approx, is_exact
from .encodings.machine import MachineArith

MAX_PICTURES = 6
GRID = 21  # points per axis (odd: w in the middle)
BUDGET_S = 10.0  # for all pictures together

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em;max-width:70em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f0f0f0}.yes{color:#14632d;font-weight:600}.no{color:#a4161a;font-weight:600}.unknown{color:#8a6d00;font-weight:600}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.92em}.dec{color:#666}
figure{display:inline-block;margin:0 1.5em 1.5em 0}figcaption{font-size:.85em;max-width:26em}
"""


def _e(v) -> str:
    return html.escape(str(v), quote=True)


def decimal(q, digits: int = 12) -> str:
    """A decimal approximation of an exact value "p/q" (the integer itself for an integer)."""
    if q is None:
        return ""
    return approx(str(q), digits) or (str(q) if "/" not in str(q) and not str(q).startswith("[") else "")


def _verdict(v) -> str:
    if v is True:
        return '<span class="yes">yes</span>'
    if v is False:
        return '<span class="no">no</span>'
    return '<span class="unknown">undecided</span>'


def _exact_cell(q) -> str:
    if q is None:
        return '<span class="unknown">unknown</span>'
    d = decimal(q)
    return f"<code>{_e(q)}</code>" + (f' <span class="dec">&asymp; {_e(d)}</span>' if d and d != str(q) else "")


def _tie_table(ties: list, title: str) -> str:
    if not ties:
        return f"<h2>{_e(title)}</h2><p>none</p>"
    rows = "".join(
        "<tr>"
        f"<td>{t['layer']}</td><td>{_e(t['op'])}</td><td>{t['sample']}</td><td>{_e(t.get('index'))}</td>"
        f"<td>{_exact_cell(t.get('kink'))}</td><td>{_exact_cell(t.get('exact'))}</td><td><code>{_e(t.get('machine'))}</code></td>"
        "</tr>"
        for t in ties
    )
    head = "<tr><th>layer</th><th>op</th><th>sample</th><th>index</th><th>kink</th><th>exact argument</th><th>machine argument</th></tr>"
    return f"<h2>{_e(title)} ({len(ties)})</h2><table>{head}{rows}</table>"


def _tangent(net, fw, MA, proxies, layer: int, sample: int, unit: int):
    """The machine tangent of one pre-activation over the trainable params (a one-hot seed)."""
    x = fw.xs[layer]
    g = np.zeros(x.shape)
    g.reshape(x.shape[0], -1)[sample, unit] = 1
    return np.asarray(P.backward(net, MA, fw, proxies, seed=(layer, MA.from_floats(g))), dtype=float)


def plane(net, proxies, tie: dict, *, grid: int = GRID, deadline: float | None = None) -> dict | None:
    """The kink's argument around w on the ulp plane of the two params that move it most.

    Returns {"axes": [label, label], "float": [[float|None]], "float_zero": [[bool]],
    "exact_zero": [[bool|None]], "complete": bool}; None when the tie has no picture."""
    if tie["op"] in ("maxpool1d", "maxpool2d", "l1", "fixed_point") or tie.get("kink") in (None, "max"):
        return None  # fixed-point ties: the argument's tangent needs the implicit solve per pattern
    from gmpy2 import mpq

    layer, sample, unit = tie["layer"], tie["sample"], tie["unit"]
    one = net.subset(np.array([sample]))
    MA = MachineArith(one.fmt)
    fw = P.forward(one, MA, with_loss=False)
    try:
        tan = _tangent(one, fw, MA, proxies, layer, 0, unit)
    except (ValueError, TypeError, ArithmeticError):
        return None
    tan = np.nan_to_num(np.abs(tan))
    order = [int(i) for i in np.argsort(-tan, kind="stable") if tan[i] > 0][:2]
    if not order:
        return None
    pos = one.trainable_index[order]
    labels = [net.grad_labels()[i] for i in order]
    kink = mpq(tie["kink"])
    fmt = one.fmt
    half = grid // 2
    rows = grid if len(pos) == 2 else 1  # one param: a strip
    fl = [[None] * grid for _ in range(rows)]
    fz = [[False] * grid for _ in range(rows)]
    ez = [[None] * grid for _ in range(rows)]
    base = [fmt.ordinal(float(one.theta[p])) for p in pos]
    complete = True
    for r in range(rows):
        for c in range(grid):
            if deadline is not None and time.perf_counter() > deadline:
                complete = False
                break
            theta = one.theta.copy()
            steps = (c - half, (rows // 2) - r)  # x to the right, y up
            ok = True
            for k, p in enumerate(pos[: len(steps)]):
                try:
                    theta[p] = fmt.from_ordinal(base[k] + steps[k])
                except (ValueError, OverflowError):
                    ok = False
            if not ok or not np.isfinite(theta).all():
                continue
            m = P.forward(one, MA, theta=theta, with_loss=False).value_at(layer, 0, unit)
            fl[r][c] = float(m) - float(kink)
            fz[r][c] = mpq(float(m)) == kink
            try:
                e = P.forward(one, ExactArith(128), theta=theta, with_loss=False).value_at(layer, 0, unit)
                ez[r][c] = bool(is_exact(e) and mpq(e) == kink)
            except Undecided:
                ez[r][c] = None
        if not complete:
            break
    return {"axes": labels, "float": fl, "float_zero": fz, "exact_zero": ez, "complete": complete}


def _svg(p: dict, cell: int = 12) -> str:
    n, m = len(p["float"]), len(p["float"][0])
    vals = [abs(v) for row in p["float"] for v in row if v not in (None, 0.0)]
    lo, hi = (math.log2(min(vals)), math.log2(max(vals))) if vals else (0.0, 1.0)
    span = (hi - lo) or 1.0
    parts = []
    for r in range(n):
        for c in range(m):
            v, x, y = p["float"][r][c], c * cell, r * cell
            if v is None:
                fill = "#ffffff"
            elif p["float_zero"][r][c]:
                fill = "#d62828"
            else:
                t = (math.log2(abs(v)) - lo) / span if v else 0.0
                g = int(40 + 200 * t)
                fill = f"#{g:02x}{g:02x}{min(255, g + 15):02x}"
            parts.append(f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{fill}"/>')
            if p["exact_zero"][r][c]:
                parts.append(f'<rect x="{x + 1}" y="{y + 1}" width="{cell - 2}" height="{cell - 2}" fill="none" stroke="#1d4ed8" stroke-width="2"/>')
    parts.append(f'<rect x="{(m // 2) * cell}" y="{(n // 2) * cell}" width="{cell}" height="{cell}" fill="none" stroke="#000" stroke-width="1" stroke-dasharray="2,2"/>')
    w, h = m * cell, n * cell
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">{"".join(parts)}</svg>'


def render(report: Report, *, grid: int = GRID, budget_s: float = BUDGET_S, certificate: dict | None = None) -> str:
    """The page for a report of :func:`kinkcheck.verify` (its network is kept on the report)."""
    net = getattr(report, "_net", None)
    d = report.to_dict()
    out = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>kinkcheck: {_e(report.network)}</title><style>{_CSS}</style></head><body>"]
    out.append(f"<h1>kinkcheck report: <code>{_e(report.network)}</code></h1>")
    out.append(f"<p>dtype <code>{_e(report.dtype)}</code>, convention <code>{_e(report.convention)}</code>, {report.n_params} trainable scalars, batch {report.batch}, kinkcheck {_e(d['kinkcheck'])}.</p>")
    out.append("<h2>Verdicts</h2><table>")
    rows = [
        ("f differentiable at w", report.differentiable),
        ("AD output is the gradient", report.ad_correct),
        ("AD output is a Clarke subderivative", report.ad_in_clarke),
        ("float run branches differently from the exact run (compensation)", report.compensation),
        ("another proxy choice changes the float gradient (choice sensitive)", report.choice_sensitive),
    ]
    out.extend(f"<tr><th>{_e(k)}</th><td>{_verdict(v)}</td></tr>" for k, v in rows)
    out.append(f"<tr><th>loss</th><td>exact {_exact_cell(report.loss_exact)}; machine <code>{_e(report.loss_machine)}</code></td></tr></table>")
    if report.reason:
        out.append(f"<p>{_e(report.reason)}</p>")
    out.append("<h2>Findings</h2>" + ("<ul>" + "".join(f"<li>{_e(f)}</li>" for f in report.findings) + "</ul>" if report.findings else "<p>none</p>"))
    if report.unknown:
        out.append("<h2>Undecided</h2><ul>" + "".join(f"<li>{_e(u)}</li>" for u in report.unknown) + "</ul>")
    if report.implicit:
        rows = []
        for e in report.implicit:
            m, x = e.get("machine") or {}, e.get("exact") or {}
            inv = ", ".join(f"sample {smp['sample']}: {'invertible' if smp['clarke_jacobian_invertible'] else 'singular element' if smp['clarke_jacobian_invertible'] is False else 'undecided'} ({smp['vertices']} vertices)" for smp in e.get("samples", []))
            rows.append(
                f"<tr><td>{e['layer']}</td><td>{m.get('iterations')}</td><td><code>{_e(m.get('residual'))}</code></td><td>{_verdict(m.get('converged'))}</td>"
                f"<td>{_verdict(x.get('unique'))}</td><td>{_verdict(e.get('pattern_agrees'))}</td><td>{_e(inv or e.get('reason', ''))}</td></tr>"
            )
        out.append("<h2>Fixed-point layers</h2><table><tr><th>layer</th><th>iterations</th><th>residual</th><th>converged</th><th>unique (proved)</th><th>float pattern = exact</th><th>Clarke Jacobian</th></tr>" + "".join(rows) + "</table>")
    out.append(_tie_table(report.real_ties, "Real ties (exact run)"))
    out.append(_tie_table(report.float_ties, "Float ties (machine run)"))
    if report.ad is not None or report.machine_ad is not None:
        labels = report.labels or [str(i) for i in range(report.n_params)]
        n = len(labels)
        grad = report.gradient or [None] * n
        ad = report.ad or [None] * n
        mad = report.machine_ad or [None] * n
        body = "".join(f"<tr><td><code>{_e(labels[i])}</code></td><td>{_exact_cell(grad[i])}</td><td>{_exact_cell(ad[i])}</td><td><code>{_e(mad[i])}</code></td></tr>" for i in range(min(n, 200)))
        more = f"<p>first 200 of {n} entries</p>" if n > 200 else ""
        out.append(f"<h2>Gradient and AD outputs</h2><table><tr><th>param</th><th>gradient</th><th>exact AD</th><th>machine AD</th></tr>{body}</table>{more}")
    # pictures
    ties = {(t["layer"], t["sample"], t["unit"]): t for t in report.real_ties + report.float_ties}
    if net is not None and ties:
        proxies = P.resolve_proxies(net, net.convention)
        deadline = time.perf_counter() + budget_s
        figs = []
        for key in list(ties)[:MAX_PICTURES]:
            p = plane(net, proxies, ties[key], grid=grid, deadline=deadline)
            if p is None:
                continue
            note = "" if p["complete"] else " (time budget reached: blank cells were not evaluated)"
            figs.append(
                f"<figure>{_svg(p)}<figcaption>layer {key[0]}, sample {key[1]}, unit {key[2]}: x = <code>{_e(p['axes'][0])}</code>"
                + (f", y = <code>{_e(p['axes'][1])}</code>" if len(p["float"]) > 1 else " (the one param that moves it)")
                + ", "
                f"one ulp per cell, w at the dashed cell. Red: float argument exactly 0; blue outline: exact argument 0; shade: log2 |float argument|{note}.</figcaption></figure>"
            )
        if figs:
            out.append("<h2>Around each tie</h2>" + "".join(figs))
        if len(ties) > MAX_PICTURES:
            out.append(f"<p>pictures for the first {MAX_PICTURES} of {len(ties)} ties</p>")
    if certificate is not None:
        ev = certificate.get("evidence", {})
        out.append("<h2>Certificate</h2><table>")
        out.append(f"<tr><th>digest</th><td><code>{_e(certificate.get('claims', {}).get('digest', ''))}</code></td></tr>")
        out.append(f"<tr><th>claims</th><td><code>{_e({k: v for k, v in certificate.get('claims', {}).items() if k in ('differentiable', 'ad_correct', 'ad_in_clarke')})}</code></td></tr>")
        out.append(f"<tr><th>evidence</th><td>{_e(', '.join(sorted(ev)) or 'none')}</td></tr></table>")
        out.append("<p>Re-check it with <code>kinkcheck check CERT.json</code> (exact arithmetic, independent of the decision code).</p>")
    out.append("</body></html>\n")
    return "".join(out)
