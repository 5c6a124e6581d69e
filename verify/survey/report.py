"""A survey's results: ``SurveyResult`` (the runs, their table, timing and the markdown summary)
and ``write`` (summary.md, results.json, the plots of the fraction in the zone and the zone picture
of one event, every file written atomically).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .config import _config_from_dict
from .models import _torch
from .run import _simulate
from .zone import _pick_zone_event, _plot_zone, zone_plane


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



def _write_atomic(path: Path, text: str) -> None:
    from ..files import replace_atomic

    replace_atomic(path, lambda tmp: Path(tmp).write_text(text))



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
