"""The independent certificate checker.

It re-validates a kinkcheck certificate with exact rational arithmetic only. It imports neither Z3
nor the decision code nor the semantics: it shares only the file loader (``encodings.network``,
which parses the embedded network and its values). Its own code - a few hundred lines, meant to be
read - re-evaluates the network exactly, sample by sample, with a forward tangent pass:

- ``tangent(d, choice)`` computes the exact forward values and the directional derivative along a
  rational direction d, where each tie differentiates by ``choice(key)``: "proxy" (the convention's
  derivative; that is what AD uses), "left"/"right", a max-pool window position, or "auto" (by the
  sign of its own input tangent - the true directional derivative f'(w; d)).
- The AD output is the proxy tangent map along every unit vector; a cell's gradient is its fixed
  pattern's tangent map along every unit vector; a witness direction is checked to lie strictly
  inside its cell by the signs of the tie tangents ("auto").
- Enumeration evidence (empty patterns with Gordan multipliers, non-empty cells with witnesses) is
  re-walked tie by tie, so that "differentiable" and "AD not in Clarke" rest on a complete list.

Its activation table is written here again on purpose (kinks, one-sided derivatives, values):
a second, independent statement of the library's derived data.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from gmpy2 import mpq

from ..encodings.errors import InputError
from ..encodings.network import load
from . import arc_check, directional_check, fixedpoint_check, vin_check
from .forms import _enc
from .replay import CheckFailed, Enc, Model, _params, _table

SCHEMA = 1


def _key(k):
    return tuple(int(v) for v in k)


def _qs(strings, what):
    try:
        return [mpq(s) for s in strings]
    except (ValueError, TypeError, ZeroDivisionError):
        raise CheckFailed(f"{what}: not a list of exact rationals") from None


def _choices(obj):
    out = {}
    for item in obj:
        c = item["choice"]
        if not (c in ("left", "right") or (isinstance(c, int) and not isinstance(c, bool))):
            raise CheckFailed(f"choice {c!r} at tie {item['tie']}: a pattern picks 'left', 'right' or a max-pool entry")
        out[_key(item["tie"])] = c
    return out


def read_certificate(path) -> object:
    """The JSON document in a certificate file (InputError if unreadable; never reads a device)."""
    p = Path(path)
    if p.exists() and not p.is_file() and not p.is_dir():  # a device or a pipe: maybe endless
        raise InputError("not a regular file, expected a certificate", source=str(path))
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise InputError("no such file", source=str(path)) from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read certificate: {exc}", source=str(path)) from None


def check_certificate(cert) -> dict:
    """Validate a certificate (dict or path). Returns a summary; raises CheckFailed (invalid) or
    InputError (unreadable)."""
    if isinstance(cert, (str, Path)):
        cert = read_certificate(cert)
    if not isinstance(cert, dict) or cert.get("kinkcheck_certificate") != SCHEMA:
        raise InputError(f"not a kinkcheck certificate (schema version {SCHEMA})")
    try:
        out = _check(cert)
        if (cert["evidence"].get("clarke") or {}).get("empty"):  # emptiness by two solvers' unsat
            out["trusted"] = out.get("trusted", []) + ["clarke.empty"]
        return out
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        raise CheckFailed(f"malformed certificate: {type(exc).__name__}: {exc}") from None


def _check(cert) -> dict:
    conv = cert["convention"]
    if not isinstance(conv, dict):
        raise CheckFailed("convention must be an object")
    try:
        net = load(cert["network"], convention={"ops": conv, "base": "pytorch"})
    except InputError as exc:
        raise CheckFailed(f"embedded network: {exc}") from None
    ev = cert["evidence"]
    fixed = ev.get("fixed_points") or {}
    M = Model(net, conv, fixed_points={int(k): v for k, v in fixed.items()} if isinstance(fixed, dict) else None, layers={"value_iteration": vin_check.layer})
    claims = cert["claims"]
    text = json.dumps({"network": cert["network"], "convention": conv}, sort_keys=True, separators=(",", ":"))
    if claims.get("digest") != "sha256:" + hashlib.sha256(text.encode()).hexdigest():
        raise CheckFailed("step 0 (digest): the embedded network or convention does not match the claims' digest")
    # step 1: the real ties
    _, _, _, ties = M.tangent([mpq(0)] * M.P, lambda k: "proxy")
    found = sorted(_key(t[0]) for t in ties)
    claimed = sorted(_key(t) for t in claims["real_ties"])
    if found != claimed:
        raise CheckFailed(f"step 1 (real ties): the network has ties {found}, the certificate claims {claimed}")
    if any(t[1] == "vin" for t in ties) and ev.get("method") != "implicit" and any(claims.get(k) is not None for k in ("differentiable", "ad_correct", "ad_in_clarke")):
        raise CheckFailed("step 3 (value iteration): verdicts at ties inside a value-iteration block are certified by the implicit method only")
    # step 2: the AD output
    ad = M.linear_map(lambda k: "proxy")
    if net.loss.op == "cross_entropy":
        return _check_ce(M, claims, ev, ties, found, ad)
    if ad != _qs(claims["ad"], "claims.ad"):
        raise CheckFailed("step 2 (AD output): the exact AD output differs from the claimed one")
    diff, correct, clarke = claims["differentiable"], claims["ad_correct"], claims["ad_in_clarke"]
    grad = _qs(claims["gradient"], "claims.gradient") if claims.get("gradient") is not None else None
    steps = ["real ties", "AD output"]
    if not found:
        if not (diff is True and correct is True and clarke is True and grad == ad):
            raise CheckFailed("step 3 (smooth): without real ties f is C^1 near w: the claims must be true, true, true with gradient = AD")
        return {"valid": True, "steps": steps + ["smooth"]}
    if "clarke" in ev:  # the polynomial-region evidence decides ad_in_clarke alone (arc_check.py)
        steps += arc_check.check(M, ev["clarke"], claims, ad, found, _qs, _choices, _key)
        claims = dict(claims, ad_in_clarke=None)
        clarke = None
        if diff is None and correct is None:
            return {"valid": True, "steps": steps, "complete": False}
    if "theorem" in ev:
        if clarke is not True:
            raise CheckFailed("theorem evidence only supports ad_in_clarke: true")
        if ev["theorem"] == "ad-pattern":
            _, g = _check_cell(M, ev.get("ad_cell") or {}, found, "evidence.ad_cell")
            if g != ad:
                raise CheckFailed("theorem (ad-pattern): the cell's gradient is not the AD output")
        else:
            _check_theorem(M, ev["theorem"], ties, found)
        steps.append(f"Clarke by the {ev['theorem']} condition")
        if diff is None and correct is None:
            return {"valid": True, "steps": steps, "complete": False}
        claims = dict(claims, ad_in_clarke=None)  # the rest of the evidence need not prove it again
        clarke = None
    if diff is None and correct is None and clarke is None:
        return {"valid": True, "steps": steps + ["undecided verdicts: nothing more to check"], "complete": False}
    if ev.get("method") == "hinge":
        _check_hinge(M, ev, claims, ad, ties, found)
        return {"valid": True, "steps": steps + ["hinge decomposition"], "complete": True}
    if ev.get("method") == "directional":
        return directional_check.check(M, ev, claims, ad, steps, found, _qs, _check_complete_by)
    order = [_key(k) for k in ev["order"]]
    if sorted(order) != found or order != sorted(order, key=lambda k: (k[0], k[1], k[2])):
        raise CheckFailed("step 3 (order): the tie order must list every real tie by (layer, sample, unit)")
    implicit = ev.get("method") == "implicit"
    if implicit:  # ties inside fixed-point layers: the cells are sound only under coherent orientation
        def _op(k):
            return net.layers[k[0]].op if k[0] < len(net.layers) else None
        if any(_op(k) == "value_iteration" for k in found):
            if any(_op(k) == "fixed_point" for k in found):
                raise CheckFailed("step 3 (implicit): ties inside value-iteration blocks are not combined with fixed-point ties")
        elif not any(_op(k) == "fixed_point" for k in found):
            raise CheckFailed("step 3 (implicit): some real tie must lie inside a fixed-point layer or a value-iteration block")
        if any(_op(k) in ("maxpool1d", "maxpool2d") for k in found):
            raise CheckFailed("step 3 (implicit): max-pool ties are not combined with fixed-point ties")
        n_vertices = fixedpoint_check.coherent_orientation(M, _layer_inputs) + vin_check.coherent_orientation(M, _layer_inputs)
        steps.append(f"coherent orientation ({n_vertices} vertex determinants)")
    cells = []
    for i, c in enumerate(ev["cells"]):
        cells.append(_check_cell(M, c, found, f"cells[{i}]"))
    steps.append(f"{len(cells)} cells")
    complete = False
    if diff is True or clarke is False:
        if implicit:
            fixedpoint_check.check_patterns(M, ev, cells, found, _qs, _choices)
        else:
            _check_tree(M, order, ev, cells)
        complete = True
        steps.append("enumeration complete")
    grads = [g for _, g in cells]
    if diff is True:
        if grad is None or any(g != grad for g in grads) or not grads:
            raise CheckFailed("step 4 (differentiable): every cell must have the claimed gradient")
        if correct is not (ad == grad):
            raise CheckFailed(f"step 4 (AD correct): AD {'equals' if ad == grad else 'differs from'} the gradient")
    elif diff is False:
        i, j = ev["witnesses"]
        if grads[i] == grads[j]:
            raise CheckFailed("step 4 (not differentiable): the two witness cells have the same gradient")
        if correct is not False:
            raise CheckFailed("step 4: AD cannot be the gradient of a non-differentiable f")
    if clarke is True:
        if diff is True and ad == grad:
            pass
        else:
            lam = _qs(ev["clarke_weights"], "evidence.clarke_weights")
            if len(lam) != len(grads) or any(v < 0 for v in lam) or sum(lam) != 1:
                raise CheckFailed("step 5 (Clarke): the weights must be >= 0 and sum to 1, one per cell")
            comb = [sum((lam[c] * grads[c][k] for c in range(len(grads))), mpq(0)) for k in range(M.P)]
            if comb != ad:
                raise CheckFailed("step 5 (Clarke): the convex combination of cell gradients is not the AD output")
        steps.append("Clarke membership")
    elif clarke is False:
        v = _qs(ev["separator"], "evidence.separator")
        for c, g in enumerate(grads):
            if sum((v[k] * (ad[k] - g[k]) for k in range(M.P)), mpq(0)) <= 0:
                raise CheckFailed(f"step 5 (not Clarke): the separator does not separate AD from cell {c}")
        if implicit and ev.get("complete_by") == "independent" and ev.get("empty"):
            raise CheckFailed("completeness (implicit): with independent functionals every pattern must be a non-empty cell")
        _check_complete_by(M, ev.get("complete_by"), cells, found)
        steps.append("AD separated from every limiting gradient")
    return {"valid": True, "steps": steps, "complete": complete}


def _parse_enc(v, what) -> Enc:
    """A claimed value: exact ("p/q") or an enclosure "[lo, hi]" (decimal end points)."""
    if isinstance(v, str) and v.startswith("["):
        lo, hi = (mpq(x.strip()) for x in v.strip("[]").split(","))
        if lo > hi:
            raise CheckFailed(f"{what}: empty interval {v}")
        return Enc(lo, hi)
    q = _qs([v], what)[0]
    return Enc(q, q)


def _check_ce(M, claims, ev, ties, found, ad) -> dict:
    """Cross-entropy loss over piecewise-linear layers: gradients are J^T s with a rational J and
    a transcendental seed s, enclosed here independently. Certified verdicts: smooth (no tie),
    "not differentiable" (two cells whose gradient enclosures are disjoint somewhere) and "AD in
    Clarke" (the AD output's own pattern has a non-empty cell, so AD is a limiting gradient).
    Other positive or negative claims have no certificate under cross-entropy and are refused."""
    steps = ["real ties", "AD output (enclosed)"]
    claimed = [_parse_enc(v, "claims.ad") for v in claims["ad"]]
    if len(claimed) != len(ad) or any(_enc(a).disjoint(c) for a, c in zip(ad, claimed)):
        raise CheckFailed("step 2 (AD output): the claimed enclosure of the AD output misses the checker's")
    diff, correct, clarke = claims["differentiable"], claims["ad_correct"], claims["ad_in_clarke"]
    if not found:
        if not (diff is True and correct is True and clarke is True):
            raise CheckFailed("step 3 (smooth): without real ties f is C^1 near w: the claims must be true, true, true")
        return {"valid": True, "steps": steps + ["smooth"]}
    if diff is True or correct is True or clarke is False:
        raise CheckFailed("cross-entropy: only 'not differentiable' and 'AD in Clarke' (AD pattern cell) are certified")
    if diff is False:
        if correct is not False:
            raise CheckFailed("step 4: AD cannot be the gradient of a non-differentiable f")
        i, j = ev["witnesses"]
        gs = []
        for k in (i, j):
            ch, _ = _check_cell(M, ev["cells"][k], found, f"cells[{k}]", compare=False)
            gs.append(M.linear_map(lambda key, ch=ch: ch[key]))
        if not any(_enc(a).disjoint(_enc(b)) for a, b in zip(*gs)):
            raise CheckFailed("step 4 (not differentiable): the two witness cells' gradient enclosures overlap everywhere")
        steps.append("two cells with certainly different gradients")
    if clarke is True and ev.get("theorem") not in (None, "ad-pattern"):
        _check_theorem(M, ev["theorem"], ties, found)  # premises on the layers: any smooth loss
        steps.append(f"Clarke by the {ev['theorem']} condition")
    elif clarke is True:
        ch, _ = _check_cell(M, ev["ad_cell"], found, "evidence.ad_cell", compare=False)
        _check_ad_choices(M, ch, ties, {_key(k) for k in ev["ad_cell"].get("zero_ties", [])})
        steps.append("AD is the gradient of its own non-empty cell (Clarke)")
    return {"valid": True, "steps": steps, "complete": False}


def _check_ad_choices(M, ch, ties, zero):
    """Every tie of the pattern uses the AD output's own derivative (so the pattern's gradient is
    the AD output, the same computation), except ties whose tangent functional is identically zero
    (their derivative multiplies zero)."""
    net = M.net
    info = {_key(t[0]): t for t in ties}
    for key, cv in ch.items():
        if key in zero:
            F = _functionals(M, key, ch)
            vals = list(F.values()) if isinstance(F, dict) else [F]
            if isinstance(F, dict) and any(v != vals[0] for v in vals) or not isinstance(F, dict) and any(x != 0 for x in F):
                raise CheckFailed(f"ad pattern: tie {key} is claimed degenerate but its functional is not zero")
            continue
        _, kind, extra = info[key]
        if kind == "act":
            L = net.layers[key[0]]
            kinks, derivs, _, _ = _table(L.op, _params(L))
            k = next(i for i, at in enumerate(kinks) if str(at) == extra)
            if cv not in ("left", "right") or derivs[k][0 if cv == "left" else 1] != M.proxy[L.index][k]:
                raise CheckFailed(f"ad pattern: tie {key} does not use the AD output's derivative")
        elif kind == "l1":
            if cv not in ("left", "right") or mpq(-1 if cv == "left" else 1) != M.proxy["loss"][0]:
                raise CheckFailed(f"ad pattern: tie {key} does not use the AD output's derivative")
        elif net.layers[key[0]].op == "value_iteration":
            vin_check.ad_choice(key, cv, extra, lambda: _functionals(M, key, ch))
        else:
            rule = M.tie_break[key[0]]
            win = M._windows(net.layers[key[0]])[key[2]]
            tied = [p for p, e in enumerate(win) if e in extra]
            if rule not in ("first", "last"):
                raise CheckFailed(f"ad pattern: max-pool tie {key} uses {rule!r}, not one entry")
            want = tied[0] if rule == "first" else tied[-1]
            if cv != want:
                F = _functionals(M, key, ch)
                if cv not in F or F[cv] != F[want]:
                    raise CheckFailed(f"ad pattern: max-pool tie {key} does not pass the gradient where AD does")


def _check_cell(M, c, found, where, compare=True):
    ch = _choices(c["choices"])
    if sorted(ch) != found:
        raise CheckFailed(f"{where}: the pattern must give a choice for every tie")
    d = _qs(c["witness"], f"{where}.witness")
    if len(d) != M.P:
        raise CheckFailed(f"{where}: witness has the wrong length")
    _, _, rec, ties = M.tangent(d, lambda k: "auto")
    kinds = {_key(t[0]): t[1] for t in ties}
    zero = {_key(k) for k in c.get("zero_ties", [])}
    for key, cv in ch.items():
        tv = rec[key]
        if kinds[key] == "max" or isinstance(tv, dict):  # max-pool, or a value-iteration tie of >= 3 actions
            best = max(tv.values())
            top = [p for p, v in tv.items() if v == best]
            if key in zero:
                if len(set(tv.values())) != 1:
                    raise CheckFailed(f"{where}: tie {key} is claimed degenerate but its tangents differ")
                continue
            if cv not in top:
                raise CheckFailed(f"{where}: witness is not inside the cell at max-pool tie {key}")
            if len(top) > 1:  # entries with identical functionals are one branch
                F = _functionals(M, key, ch)
                if any(F[p] != F[cv] for p in top):
                    raise CheckFailed(f"{where}: witness is not strictly inside the cell at max-pool tie {key}")
        else:
            if key in zero:
                if tv != 0:
                    raise CheckFailed(f"{where}: tie {key} is claimed degenerate but its tangent is not 0")
                continue
            if tv == 0 or (tv < 0) != (cv == "left"):
                raise CheckFailed(f"{where}: witness is not strictly inside the cell at tie {key}")
    if not compare:
        return ch, None
    g = M.linear_map(lambda k: ch[k])
    if g != _qs(c["gradient"], f"{where}.gradient"):
        raise CheckFailed(f"{where}: the claimed gradient is not the pattern's gradient")
    return ch, g


def _functionals(M, key, prefix):
    """Tangent functional(s) of a tie's input(s) under the choices of ``prefix`` (every other tie
    "left"): one linear-form pass per prefix of earlier layers (``Model.functional``)."""
    return M.functional(key, prefix)


def _check_tree(M, order, ev, cells):
    """Every pattern is a listed cell or extends a listed empty prefix (Gordan-certified)."""
    empty = []
    for e in ev["empty"]:
        y = _qs(e["multipliers"], "evidence.empty.multipliers")
        empty.append((_choices(e["choices"]), y))
    cell_patterns = [ch for ch, _ in cells]
    used_cells = set()

    def walk(i, prefix, cons):
        if i == len(order):
            for k, ch in enumerate(cell_patterns):
                if all(ch[key] == prefix[key] for key in prefix):
                    used_cells.add(k)
                    return
            raise CheckFailed(f"enumeration: the non-empty pattern {sorted(prefix.items())} is not a listed cell")
        key = order[i]
        F = _functionals(M, key, prefix)
        if isinstance(F, dict):
            groups = []
            for p, a in F.items():
                for gr in groups:
                    if F[gr[0]] == a:
                        gr.append(p)
                        break
                else:
                    groups.append([p])
            reps = [gr[0] for gr in groups]
            if len(reps) == 1:
                branches = [(reps[0], [])]
            else:
                branches = [(r, [[x - y for x, y in zip(F[r], F[o])] for o in reps if o != r]) for r in reps]
        else:
            if all(v == 0 for v in F):
                branches = [("left", [])]
            else:
                branches = [("left", [[-v for v in F]]), ("right", [F])]
        for choice, bc in branches:
            p2 = dict(prefix)
            p2[key] = choice
            c2 = cons + bc
            hit = next((y for ch, y in empty if ch == p2), None)
            if hit is not None:
                if len(hit) != len(c2) or any(v < 0 for v in hit) or sum(hit) != 1:
                    raise CheckFailed(f"enumeration: bad Gordan multipliers for {sorted(p2.items())}")
                for k in range(M.P):
                    if sum((hit[j] * c2[j][k] for j in range(len(c2))), mpq(0)) != 0:
                        raise CheckFailed(f"enumeration: Gordan multipliers for {sorted(p2.items())} do not cancel")
                continue
            walk(i + 1, p2, c2)

    walk(0, {}, [])


def _check_complete_by(M, how, cells, found):
    net = M.net
    if how == "one-parameter":
        if M.P != 1:
            raise CheckFailed("completeness: more than one parameter")
    elif how == "affine":
        # only the layers before the last tie's layer shape the ties' arguments
        upto = max((k[0] for k in found), default=len(net.layers))
        vin_check.not_affine(net, upto)
        first = None
        for L in net.layers[:upto]:
            tw = L.weight is not None and bool(M.trainable[L.weight.src[L.weight.src >= 0]].any())
            tb = L.bias is not None and bool(M.trainable[L.bias.src[L.bias.src >= 0]].any())
            if tw and first is not None:
                raise CheckFailed("completeness: a layer with trainable weights sees trainable inputs (not affine)")
            if (tw or tb) and first is None:
                first = L.index
            if first is not None and L.op in ("hardswish", "sigmoid", "tanh"):
                raise CheckFailed("completeness: a non-affine op after the first trainable layer")
    elif how == "independent":
        for ch, _ in cells:
            vecs = []
            for key in sorted(ch):
                F = _functionals(M, key, ch)
                if isinstance(F, dict):
                    ps = sorted(F)
                    vecs += [[x - y for x, y in zip(F[ps[0]], F[p])] for p in ps[1:]]
                else:
                    vecs.append(F)
            # identically zero functionals (and equal max-pool entries) select no new gradient:
            # only the non-zero ones must be independent
            vecs = [vec for vec in vecs if any(v != 0 for v in vec)]
            if _rank(vecs) < len(vecs):
                raise CheckFailed("completeness: dependent tie functionals in a cell")
    else:
        raise CheckFailed(f"completeness: unsupported argument {how!r}")


def _rank(vectors):
    rows = [list(v) for v in vectors]
    r = 0
    for c in range(len(rows[0]) if rows else 0):
        piv = next((i for i in range(r, len(rows)) if rows[i][c] != 0), None)
        if piv is None:
            continue
        rows[r], rows[piv] = rows[piv], rows[r]
        for i in range(len(rows)):
            if i != r and rows[i][c] != 0:
                f = rows[i][c] / rows[r][c]
                rows[i] = [a - f * b for a, b in zip(rows[i], rows[r])]
        r += 1
    return r


def _solve(cols, target):
    """x with sum_k x_k cols[k] = target (columns independent), or None."""
    n, K = len(target), len(cols)
    rows = [[cols[k][i] for k in range(K)] + [target[i]] for i in range(n)]
    r, piv = 0, []
    for c in range(K):
        p = next((i for i in range(r, n) if rows[i][c] != 0), None)
        if p is None:
            continue
        rows[r], rows[p] = rows[p], rows[r]
        for i in range(n):
            if i != r and rows[i][c] != 0:
                f = rows[i][c] / rows[r][c]
                rows[i] = [x - f * y for x, y in zip(rows[i], rows[r])]
        piv.append(c)
        r += 1
    if any(rows[i][K] != 0 for i in range(r, n)):
        return None
    x = [mpq(0)] * K
    for i, c in enumerate(piv):
        x[c] = rows[i][K] / rows[i][c]
    return x


def _check_hinge(M, ev, claims, ad, ties, found):
    """Recompute the hinge decomposition (every tie in one layer, no max-pool tie): see hinge.py."""
    kinds = {_key(t[0]): t[1] for t in ties}
    if len({k[0] for k in found}) != 1 or any(kinds[k] == "max" for k in found):
        raise CheckFailed("hinge: the ties must all lie in one layer and not be max-pool ties")
    order = sorted(found)
    lines = []  # [normal, members [(lambda, delta, jump)], C]
    jumps = {}
    if M.forms:  # one pass: g_L, every functional a_k and sensitivity s_k (replay.Model.jacobian)
        base, funcs, _, sens = M.jacobian(lambda k: "left", inject=True)
        info = {_key(t[0]): t for t in ties}
    else:
        base = M.linear_map(lambda k: "left")
    for key in order:
        if M.forms:
            a = funcs[key]
            left, right = M.one_sided(key, info[key][1], info[key][2])
            jump = [(right - left) * sens[key] * v for v in a]  # g(right at key) - g_L, exactly
        else:
            a = _functionals(M, key, {})
            g = M.linear_map(lambda k, key=key: "right" if k == key else "left")
            jump = [x - y for x, y in zip(g, base)]
        jumps[key] = jump
        if all(v == 0 for v in a):
            if any(v != 0 for v in jump):
                raise CheckFailed(f"hinge: tie {key} has a zero functional but a non-zero jump")
            continue
        i0 = next(i for i, v in enumerate(a) if v != 0)
        lam = a[i0]
        na = [v / lam for v in a]
        dj = jump[i0] / na[i0]
        if [dj * v for v in na] != jump:
            raise CheckFailed(f"hinge: the jump of tie {key} is not parallel to its functional")
        for ln in lines:
            if ln[0] == na:
                ln[1].append((lam, dj, key))
                break
        else:
            lines.append([na, [(lam, dj, key)], None])
    G = list(base)
    for ln in lines:
        C = mpq(0)
        for lam, dj, key in ln[1]:
            if lam > 0:
                C += dj
            else:
                C -= dj
                G = [x + y for x, y in zip(G, jumps[key])]
        ln[2] = C
    active = [ln for ln in lines if ln[2] != 0]
    diff, correct, clarke = claims["differentiable"], claims["ad_correct"], claims["ad_in_clarke"]
    if diff is not (not active):
        raise CheckFailed(f"hinge: f is {'not ' if active else ''}differentiable (active hinge lines: {len(active)})")
    if diff:
        if _qs(claims["gradient"], "claims.gradient") != G:
            raise CheckFailed("hinge: the claimed gradient is not g_L + sum of the negative-side jumps")
        if correct is not (ad == G):
            raise CheckFailed("hinge: ad_correct does not match")
    elif correct is not False:
        raise CheckFailed("hinge: AD cannot be the gradient of a non-differentiable f")
    cols = [[ln[2] * v for v in ln[0]] for ln in active]
    target = [x - y for x, y in zip(ad, G)]
    if clarke is True:
        if ad == G:
            return
        mu = _qs(ev["mu"], "evidence.mu")
        if len(mu) != len(cols) or any(m < 0 or m > 1 for m in mu):
            raise CheckFailed("hinge: mu must have one entry in [0, 1] per active line")
        if [sum((mu[k] * cols[k][i] for k in range(len(cols))), mpq(0)) for i in range(M.P)] != target:
            raise CheckFailed("hinge: AD - G is not sum mu_k C_k a_k")
    elif clarke is False:
        if _rank([ln[0] for ln in active]) != len(active) if active else False:
            raise CheckFailed("hinge: the active lines are dependent (the zonotope may not be the Clarke set)")
        if not (M.P <= 1 or all(len(ln[1]) == 1 for ln in lines)):
            _check_complete_by(M, "affine", [], found)
        mu = _solve(cols, target) if cols else ([] if target == [0] * len(target) else None)
        if mu is not None and all(0 <= m <= 1 for m in mu):
            raise CheckFailed("hinge: AD is in the zonotope of limiting gradients")


def _check_theorem(M, name, ties, found):
    """Premises of the private-bias / per-layer-lambda conditions (see verify/theorems.py)."""
    net = M.net
    kinds = {_key(t[0]): t[1] for t in ties}
    if any(kinds[k] != "act" for k in found):
        raise CheckFailed("theorem: only elementwise ties are covered")
    uses = {}
    for L in net.layers:
        for ref in (L.weight, L.bias):
            if ref is not None:
                for s in ref.src[ref.src >= 0].tolist():
                    uses[s] = uses.get(s, 0) + 1
    owner = {}
    per_sample = name == "per-layer-lambda"
    if name not in ("private-bias", "per-layer-lambda", "independent-activations"):
        raise CheckFailed(f"theorem: unknown condition {name!r}")
    if name == "independent-activations":
        _check_independent_rows(M, found, uses)
        name = "private-bias-proxies"  # the proxy premise is the private-bias one
        for layer in {k[0] for k in found}:
            L = net.layers[layer]
            _, derivs, _, _ = _table(L.op, _params(L))
            for (l, r), p in zip(derivs, M.proxy[layer]):
                if not min(l, r) <= p <= max(l, r):
                    raise CheckFailed(f"theorem: layer {layer}: a proxy is outside its Clarke interval")
        return
    for key in found:
        layer, n, u = key
        prev = net.layers[layer - 1] if layer > 0 else None
        if prev is None or prev.op not in ("linear", "conv2d") or prev.bias is None:
            raise CheckFailed(f"theorem: tie {key} is not fed directly by a layer with a bias")
        ch = u if prev.op == "linear" else u // int(np.prod(prev.out_shape[1:]))
        b = int(prev.bias.src[ch])
        if b < 0 or not M.trainable[b] or uses.get(b) != 1:
            raise CheckFailed(f"theorem: the bias of tie {key} is not a trainable scalar used once")
        who = (layer, u) if per_sample else key
        if owner.setdefault(b, who) != who:
            raise CheckFailed(f"theorem: two ties share the bias of tie {key}")
    for layer in {k[0] for k in found}:
        L = net.layers[layer]
        _, derivs, _, _ = _table(L.op, _params(L))
        lam = None
        for (l, r), p in zip(derivs, M.proxy[layer]):
            if name == "private-bias":
                if not min(l, r) <= p <= max(l, r):
                    raise CheckFailed(f"theorem: layer {layer}: a proxy is outside its Clarke interval")
            elif l == r:
                if p != l:
                    raise CheckFailed(f"theorem: layer {layer}: a proxy is not the derivative at a smooth breakpoint")
            else:
                v = (p - r) / (l - r)
                if not 0 <= v <= 1 or (lam is not None and v != lam):
                    raise CheckFailed(f"theorem: layer {layer}: the proxies are not one lambda-mix of the one-sided derivatives")
                lam = v


def _check_independent_rows(M, found, uses):
    net = M.net
    groups = {}
    xs = {}
    for key in found:
        layer, n, u = key
        prev = net.layers[layer - 1] if layer > 0 else None
        if prev is None or prev.op != "linear" or prev.bias is None:
            raise CheckFailed(f"theorem: tie {key} is not fed directly by a linear layer with a bias")
        row = prev.weight.src.reshape(prev.weight.shape)[u].tolist() + [int(prev.bias.src[u])]
        for s in row:
            if s < 0 or not M.trainable[s] or uses.get(s) != 1:
                raise CheckFailed(f"theorem: the weight row / bias of tie {key} is not made of private trainable scalars")
        if n not in xs:
            xs[n] = _layer_inputs(M, n)
        groups.setdefault((layer, u), []).append(list(xs[n][prev.index]) + [mpq(1)])
    for g, vecs in groups.items():
        if _rank(vecs) != len(vecs):
            raise CheckFailed(f"theorem: the tied samples of unit {g} have dependent inputs")


def _layer_inputs(M, n):
    """Exact input of every layer for sample n."""
    out = []
    x = M.inputs[n].copy()
    t = np.empty(x.shape, dtype=object)
    t.fill(mpq(0))
    dW = M.dW([mpq(0)] * M.P)
    for L in M.net.layers:
        out.append(x.reshape(-1))
        x, t = M._layer(L, n, x, t, dW, lambda k: "proxy", {}, [])
    return out
