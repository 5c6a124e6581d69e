"""The torch exporter: a counterexample as a pytest file that runs the network three ways.

``kinkcheck export-test CEX.json --framework torch`` (docs/search.md): the generated file
(``templates/test_cex_torch.py`` filled) rebuilds the network as torch tensors from exact bit
patterns and asserts each run only what is certain:

1. exact (fractions.Fraction): real ties, exact AD output;
2. the spec's machine run (kinkcheck's documented order, every operation computed in binary64 and
   rounded into the dtype - exact for float16/bfloat16/float32): float ties and the machine AD
   output bit for bit, on any platform;
3. the torch way (torch.nn.functional + autograd): what no summation order can change. Its
   predictions come from :class:`~kinkcheck.testgen.torch_model.TorchModel`, an arithmetic over
   enclosures that holds for EVERY order of the sums torch may use, and knows the value exactly
   where every order gives the same float.

Runs 1 and 2 use the replay engine (:mod:`kinkcheck.testgen.engine`), whose source is copied
verbatim into the generated file; the network travels as plain data
(:func:`kinkcheck.testgen.describe.describe_network`). Before writing, the exporter replays the
counterexample itself and refuses (RuntimeError) when the replay does not reproduce kinkcheck.
"""

from __future__ import annotations

import inspect
import math
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..encodings.errors import InputError
from .describe import describe_network
from .engine import ENGINE, Exact, Spec, backward, forward, ties_of
from .render import render, ruff_format
from .torch_model import TorchModel

TORCH_OPS = {"linear", "conv2d", "maxpool1d", "maxpool2d", "avgpool2d", "flatten", "relu", "leaky_relu", "hardtanh", "relu6", "hardsigmoid", "hardswish", "abs", "identity"}
TORCH_DTYPES = ("float16", "bfloat16", "float32", "float64")


def _pred(fmt, e):
    """A prediction of torch's value from an enclosure (see ``check`` in the generated file)."""
    if e.r is None:
        return None
    if e.r == 0:
        return ["=", fmt.to_hex(float(e.c))]
    return ["in", str(e.c - e.r), str(e.c + e.r)]


def _excludes(pred, q) -> bool:
    if pred is None:
        return False
    if pred[0] == "=":
        return Fraction(float.fromhex(pred[1])) != q
    return not Fraction(pred[1]) <= q <= Fraction(pred[2])


def _disjoint(a, b) -> bool:
    if a is None or b is None:
        return False
    lo = lambda p: Fraction(float.fromhex(p[1])) if p[0] == "=" else Fraction(p[1])
    hi = lambda p: Fraction(float.fromhex(p[1])) if p[0] == "=" else Fraction(p[2])
    return hi(a) < lo(b) or hi(b) < lo(a)


def _hexbits(v: float) -> str:
    return float(v).hex()


def _phenomena_text(f) -> list:
    out = []
    if f["float_ties"]:
        out.append(f"float ties at {_keys(f['float_ties'])} (the spec's machine run)")
    if f["real_ties"]:
        out.append(f"real ties at {_keys(f['real_ties'])}")
    if f["branch_mismatch"]:
        out.append(f"branch mismatch at {_keys(f['branch_mismatch'])}: the float run branches differently from the exact run")
    if f["choice"]:
        out.append("choice sensitivity: the float AD output changes with the proxy choice at the float ties")
    if f["mismatch"]:
        out.append(f"the float AD output differs from the exact AD output at entries {[m[0] for m in f['mismatch']]}")
    if f["ad_correct"] is False:
        out.append("the exact AD output is not the gradient")
    if f["differentiable"] is False:
        out.append("f is not differentiable at w")
    return out or ["no tie, no mismatch: the float AD output equals the exact one"]


def _keys(ks) -> str:
    return ", ".join(f"(layer {k[0]}, sample {k[1]}, unit {k[2]})" for k in ks)


def _convention_text(D) -> list:
    out = []
    for li, L in enumerate(D["layers"]):
        if L.get("kinks"):
            ds = ", ".join(f"{L['op']}'({float.fromhex(k)!r}) = {q}" for k, (q, _) in zip(L["kinks"], L["proxies"]))
            how = "torch's own backward" if L["builtin"] else "Kinked (torch's backward, this derivative on the kink)"
            out.append(f"layer {li} {L['op']}: {ds} - {how}")
        elif L["op"] in ("maxpool1d", "maxpool2d"):
            how = "torch's own max_pool" if L["rule"] == "first" else "Pool (index windows)"
            if L["rule"] == "beta":
                out.append(f"layer {li} {L['op']}: J_beta with beta = {L['beta'][0][0]}: (beta*g)/k to each of the k tied entries, plus (1-beta)*g to the first - {how}")
            else:
                out.append(f"layer {li} {L['op']}: ties go to the {L['rule']} maximal entry - {how}")
    lo = D["loss"]
    if lo["op"] == "l1":
        how = "torch's l1_loss" if lo["abs"]["builtin"] else "Kinked abs"
        out.append(f"loss l1: abs'(0) = {lo['abs']['proxies'][0][0]} - {how}")
    return out or ["no kinked op"]


def export_torch(cex) -> str:
    """The torch pytest file for a counterexample (a network file path or document)."""
    from ..api import load, verify
    from ..encodings.conventions import load_convention

    net = load(cex)
    fmt = net.fmt
    if fmt.name not in TORCH_DTYPES:
        raise InputError(f"the torch exporter needs float16, bfloat16, float32 or float64: torch has no tensor dtype for the format {fmt.name}")
    bad = sorted({L.op for L in net.layers} - TORCH_OPS)
    if bad or net.loss.op not in ("sum", "dot", "mse", "l1"):
        what = ", ".join(bad) if bad else f"loss {net.loss.op}"
        raise InputError(f"the torch exporter supports linear, conv2d, pooling, flatten, the piecewise-linear/-quadratic activations and the sum/dot/mse/l1 losses (not {what})")
    report = verify(net, values=True)
    if report.ad is None or any(a.startswith("[") for a in report.ad):
        raise InputError("the exact AD output is not available for this network")
    D = describe_network(net)

    # the replay must reproduce kinkcheck's own runs (or the generated file would be wrong)
    def rnd(v):
        with np.errstate(all="ignore"):
            return float(fmt.round_array(np.array([v], dtype=np.float64))[0])

    S, E = Spec(rnd), Exact()
    fs, fe = forward(S, D), forward(E, D)
    machine, exact_ad = backward(S, D, fs), backward(E, D, fe)
    problems = []
    if [_hexbits(v) for v in machine] != [_hexbits(float.fromhex(h)) for h in report.machine_ad]:
        problems.append("machine AD output")
    if exact_ad != [Fraction(q) for q in report.ad]:
        problems.append("exact AD output")
    float_ties, real_ties = ties_of(fs), ties_of(fe)
    if float_ties != sorted([t["layer"], t["sample"], t["unit"]] for t in report.float_ties):
        problems.append("float ties")
    if real_ties != sorted([t["layer"], t["sample"], t["unit"]] for t in report.real_ties):
        problems.append("real ties")
    comp = sorted(list(k) for k in fs["branch"] if fs["branch"][k] != fe["branch"][k])
    if report.branch_mismatch is not None and comp != sorted([c["layer"], c["sample"], c["unit"]] for c in report.branch_mismatch_units):
        problems.append("branch mismatch")
    causes = sorted([c["layer"], c["sample"], c["unit"], c["choice"]] for c in report.choice_causes)
    witness = [[c["layer"], c["sample"], c["unit"], c["choice"]] for c in report.choice_witness["ties"]] if report.choice_witness else None
    left, right = backward(S, D, fs, "left"), backward(S, D, fs, "right")
    all_at_once = not _same(left, right)
    for *k, c in causes:
        if _same(backward(S, D, fs, {tuple(k): c}), machine):
            problems.append(f"choice cause {k}")
    if report.choice_sensitive is True and (witness is None or _same(backward(S, D, fs, {tuple(k): c for *k, c in witness}), machine)):
        problems.append("choice witness")
    if report.choice_sensitive is False and (all_at_once or causes):
        problems.append("choice sensitivity")
    if problems:  # pragma: no cover - a bug in the replay engine or in kinkcheck
        raise RuntimeError(f"export-test: the replay does not reproduce kinkcheck's {', '.join(problems)} for {net.source}")
    mismatch = []
    for i, (m, e) in enumerate(zip(machine, exact_ad)):
        if math.isfinite(m) and Fraction(m) != e:
            ulp = fmt.ulp(m)
            mismatch.append([i, fmt.to_hex(ulp), str(abs(Fraction(m) - e) / Fraction(ulp))])
    facts = {
        "float_ties": float_ties,
        "real_ties": real_ties,
        "branch_mismatch": comp,
        "choice": bool(report.choice_sensitive),
        "mismatch": mismatch,
        "ad_correct": report.ad_correct,
        "differentiable": report.differentiable,
    }

    # the torch run, for every summation order
    M = TorchModel(fmt)
    ft = forward(M, D)
    nl = len(D["layers"])
    units, windows, torch_ties, not_asserted = [], [], [], []
    for key in sorted({tuple(k) for k in float_ties + real_ties + comp}):
        layer, n, u = key
        if layer < nl and D["layers"][layer]["op"] in ("maxpool1d", "maxpool2d"):
            idx = D["layers"][layer]["windows"][u]
            preds = [_pred(fmt, ft["xs"][layer][n][i]) for i in idx]
            if all(p is not None and p[0] == "=" for p in preds):
                windows.append([layer, n, u, idx, preds])
                if sum(p == max(preds, key=lambda q: float.fromhex(q[1])) for p in preds) >= 2:
                    torch_ties.append(list(key))
            else:
                not_asserted.append(list(key))
            continue
        e = ft["res"][n][u] if layer == nl else ft["xs"][layer][n][u]
        p = _pred(fmt, e)
        if p is None:
            not_asserted.append(list(key))
            continue
        units.append([layer, n, u, p])
        kinks = D["loss"]["abs"]["kinks"] if layer == nl else D["layers"][layer]["kinks"]
        if p[0] == "=" and float.fromhex(p[1]) in [float.fromhex(k) for k in kinks]:
            torch_ties.append(list(key))
        elif p[0] == "in":
            not_asserted.append(list(key))
    tgrad = [_pred(fmt, v) for v in backward(M, D, ft)]
    exact_q = [Fraction(q) for q in report.ad]
    differs = [i for i, p in enumerate(tgrad) if _excludes(p, exact_q[i])]
    tleft = [_pred(fmt, v) for v in backward(M, D, ft, "left")]
    tright = [_pred(fmt, v) for v in backward(M, D, ft, "right")]
    tchoice = [i for i, (a, b) in enumerate(zip(tleft, tright)) if _disjoint(a, b)]
    uses_builtin = [li for li, L in enumerate(D["layers"]) if (L.get("kinks") and L["builtin"]) or (L["op"] in ("maxpool1d", "maxpool2d") and L["rule"] == "first")]
    if D["loss"]["op"] == "l1" and D["loss"]["abs"]["builtin"]:
        uses_builtin.append(nl)

    conv = load_convention("pytorch").to_json()
    try:
        import torch

        gen_torch = f"torch {torch.__version__}"
    except ImportError:  # pragma: no cover - the [torch] extra is not installed
        gen_torch = "torch not installed"
    n_known = sum(p is not None for p in tgrad)
    torch_lines = []
    if torch_ties:
        torch_lines.append(f"ties every order gives: {_keys(torch_ties)}")
    if units or windows:
        torch_lines.append("the values entering the tie units: exactly (one rounding, or exact sums) or within rigorous bounds")
    if not_asserted:
        torch_lines.append(f"NOT asserted: whether torch's run ties at {_keys(not_asserted)} - its summation order can decide it")
    if n_known:
        torch_lines.append(f"the AD output: {n_known} of {len(tgrad)} entries exactly or within rigorous bounds" + (f"; entries {differs} differ from the exact AD output in every order" if differs else ""))
    if n_known < len(tgrad):
        torch_lines.append(f"NOT asserted: AD entries {[i for i, p in enumerate(tgrad) if p is None]} (a branch torch's order could change lies upstream)")
    if tchoice:
        torch_lines.append(f"choice sensitivity: entries {tchoice} change from all-left to all-right one-sided derivatives in every order")
    elif facts["choice"]:
        torch_lines.append("NOT asserted: choice sensitivity in torch's run (its ties depend on the summation order)")

    doc = [
        f"Generated by kinkcheck export-test --framework torch from {Path(str(net.source)).name}.",
        "",
        f"Network: {D['dtype']}, {len(D['inputs'])} sample(s), layers {[L['op'] for L in D['layers']]}, loss {D['loss']['op']}.",
        "The counterexample shows:",
        *[f"- {t}" for t in _phenomena_text(facts)],
        "",
        f"Assumes PyTorch {conv.get('version', '2.13')} (generated with {gen_torch}) and these derivatives at kinks",
        "(test_torch_convention_at_kinks checks torch's own ones):",
        *[f"- {t}" for t in _convention_text(D)],
        "",
        "Three runs of the network, rebuilt from exact bit patterns (hex floats):",
        "1. exact (fractions.Fraction): the real ties and the exact AD output;",
        "2. the spec's machine run (kinkcheck's documented order, docs/semantics.md): every operation",
        f"   computed in binary64 and rounded into {D['dtype']} by torch's conversion (exact: 53 >= 2p + 2),",
        "   sums left to right: the float ties and the machine AD output bit for bit, on any platform;",
        "3. the torch way: torch.nn.functional and autograd. torch's matrix products and reductions sum",
        "   in an unspecified order (BLAS blocking, fused multiply-adds, float32 accumulation of",
        "   float16/bfloat16), so this file asserts of torch's run only what no summation order can",
        "   change (bounds computed by kinkcheck in exact arithmetic for every order):",
        *[f"   - {t}" for t in torch_lines or ["nothing is order-independent here: runs 1 and 2 carry the assertions"]],
    ]
    consts = {
        "NET": D,
        "FLOAT_TIES": float_ties,
        "REAL_TIES": real_ties,
        "BRANCH_MISMATCH": comp,
        "MACHINE_AD": report.machine_ad,
        "EXACT_AD": report.ad,
        "GRADIENT": report.gradient,
        "AD_CORRECT": report.ad_correct,
        "MISMATCH": mismatch,
        "ALL_AT_ONCE": all_at_once,
        "CHOICE_CAUSES": causes,
        "CHOICE_WITNESS": witness,
        "TORCH_UNITS": units,
        "TORCH_WINDOWS": windows,
        "TORCH_TIES": torch_ties,
        "TORCH_GRAD": tgrad,
        "TORCH_DIFFERS": differs,
        "TORCH_LEFT": tleft,
        "TORCH_RIGHT": tright,
        "TORCH_CHOICE": tchoice,
        "TORCH_BUILTIN": uses_builtin,
    }
    docstring = '"""' + "\n".join(doc).replace("\\", "\\\\") + '\n"""\n'
    engine = "\n\n".join(inspect.getsource(obj) for obj in ENGINE)
    keep = {
        "if_choice": facts["choice"],
        "if_gradient": report.gradient is not None,
        "if_builtin": bool(uses_builtin),
        "if_torch_units": bool(units or windows),
        "if_torch_ad": bool(n_known),
        "if_torch_choice": bool(tchoice),
    }
    text = render("test_cex_torch.py", data={k: repr(v) for k, v in consts.items()}, text={"docstring": docstring, "engine": engine}, keep=keep)
    return ruff_format(text)


def _same(a, b) -> bool:
    return all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b))

