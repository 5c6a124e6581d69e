"""Checking the polynomial-region evidence of a Clarke verdict (docs/clarke.md, docs/certificate.md).

Part of the independent checker: no decision code, no Z3, no semantics. It replays the network
itself in exact multivariate polynomial arithmetic (its own small sparse type, ``_Poly``) over the
shifted trainable scalars X = theta - w of the layers before the last tie, with every tie's side
fixed by a pattern, and so obtains each tie's pre-activation polynomial (``_replay``). Then:

- an *active* pattern (yes): its arc X(t) = t d1 + t^2 d2 + ... is substituted into every tie
  constraint (truncated power series in t with rational coefficients); every leading coefficient
  must be > 0. Its gradient at w is recomputed by the model's exact tangent pass. The convex
  weights must give the AD output.
- a *no*: every pattern of the tie tree (re-walked here, branch by branch) must either have a
  gradient g with v.(AD - g) > 0 for the separator v, or be listed as empty: its constraint
  polynomials must equal the ones replayed here; the recorded SMT-LIB2 query, read by the strict
  reader ``smtlib.py``, must declare exactly the variables those polynomials use and assert exactly
  the box |X_j| < radius and those polynomials > 0 (``_query_is``: each atom compared up to a
  positive factor, as a set); and two solvers (Z3 and cvc5) must both have answered unsat to that
  text (solver-trusted: the answers are not re-derived). A branch empty by an identity
  z_j = c * (constraint of tie i) is re-checked exactly.
"""

from __future__ import annotations

import numpy as np
from gmpy2 import mpq

from . import smtlib
from .replay import CheckFailed, _params

H = mpq(1, 2)


class _Poly:
    __slots__ = ("nv", "t")

    def __init__(self, nv, t=None):
        self.nv = nv
        self.t = {m: c for m, c in (t or {}).items() if c != 0}

    def _l(self, o):
        return o if isinstance(o, _Poly) else _Poly(self.nv, {(0,) * self.nv: mpq(o)})

    def __add__(self, o):
        o = self._l(o)
        out = dict(self.t)
        for m, c in o.t.items():
            out[m] = out.get(m, mpq(0)) + c
        return _Poly(self.nv, out)

    __radd__ = __add__

    def __neg__(self):
        return _Poly(self.nv, {m: -c for m, c in self.t.items()})

    def __sub__(self, o):
        return self + (-self._l(o))

    def __rsub__(self, o):
        return self._l(o) - self

    def __mul__(self, o):
        if not isinstance(o, _Poly):
            return _Poly(self.nv, {m: c * mpq(o) for m, c in self.t.items()})
        out: dict = {}
        for m1, c1 in self.t.items():
            for m2, c2 in o.t.items():
                m = tuple(a + b for a, b in zip(m1, m2))
                out[m] = out.get(m, mpq(0)) + c1 * c2
        return _Poly(self.nv, out)

    __rmul__ = __mul__

    def __eq__(self, o):
        return self.t == self._l(o).t

    __hash__ = None

    def c0(self):
        return self.t.get((0,) * self.nv, mpq(0))

    def json(self):
        return [[list(m), str(c)] for m, c in sorted(self.t.items())]

    def lead_along(self, arc):
        """(order, coefficient) of the first non-zero coefficient of p(X(t)), or None."""
        deg = max((sum(m) for m in self.t), default=0)
        K = max(1, len(arc)) * max(1, deg)
        xs = []
        for j in range(self.nv):
            s = [mpq(0)] * (K + 1)
            for k, d in enumerate(arc[:K]):
                s[k + 1] = mpq(d[j])
            xs.append(s)
        tot = [mpq(0)] * (K + 1)
        for m, c in self.t.items():
            acc = [c] + [mpq(0)] * K
            for j, e in enumerate(m):
                for _ in range(e):
                    acc = [sum((acc[i] * xs[j][k - i] for i in range(k + 1)), mpq(0)) for k in range(K + 1)]
            tot = [a + b for a, b in zip(tot, acc)]
        return next(((k, c) for k, c in enumerate(tot) if c != 0), None)


def _pieces(op, prm):
    """(kinks, piece value functions left to right): the checker's own statement."""
    if op == "relu":
        return [mpq(0)], [lambda x: 0 * x, lambda x: x]
    if op == "leaky_relu":
        s = prm["negative_slope"]
        return ([], [lambda x: x]) if s == 1 else ([mpq(0)], [lambda x: s * x, lambda x: x])
    if op in ("hardtanh", "relu6"):
        lo, hi = (prm["min_val"], prm["max_val"]) if op == "hardtanh" else (mpq(0), mpq(6))
        return [lo, hi], [lambda x: 0 * x + lo, lambda x: x, lambda x: 0 * x + hi]
    if op == "hardsigmoid":
        return [mpq(-3), mpq(3)], [lambda x: 0 * x, lambda x: x * mpq(1, 6) + H, lambda x: 0 * x + 1]
    if op == "hardswish":
        return [mpq(-3), mpq(3)], [lambda x: 0 * x, lambda x: x * (x + 3) * mpq(1, 6), lambda x: x]
    if op == "abs":
        return [mpq(0)], [lambda x: -x, lambda x: x]
    if op == "identity":
        return [], [lambda x: x]
    raise CheckFailed(f"polynomial replay: op {op!r} is not covered")


def variables(M, found):
    """Gradient positions of the trainable scalars in the layers before the last tie's layer."""
    net = M.net
    upto = max(k[0] for k in found)
    out = set()
    for L in net.layers[:upto]:
        for ref in (L.weight, L.bias):
            if ref is not None:
                for s in ref.src[ref.src >= 0].tolist():
                    if M.trainable[s]:
                        out.add(int(M.gpos[s]))
    return sorted(out)


def _replay(M, vars_, pattern):
    net = M.net
    nv = len(vars_)
    index = {g: i for i, g in enumerate(vars_)}

    def param(ref, vals):
        out = np.empty(ref.src.size, dtype=object)
        for e, (v, s, sg) in enumerate(zip(vals.reshape(-1), ref.src.reshape(-1).tolist(), ref.sign.reshape(-1).tolist())):
            p = _Poly(nv, {(0,) * nv: mpq(v)})
            if s >= 0 and M.trainable[s] and int(M.gpos[s]) in index:
                m = [0] * nv
                m[index[int(M.gpos[s])]] = 1
                p = p + _Poly(nv, {tuple(m): mpq(int(sg))})
            out[e] = p
        return out.reshape(ref.shape)

    Ws = {i: (param(net.layers[i].weight, W), param(net.layers[i].bias, b) if b is not None else None) for i, (W, b) in M.W.items()}
    rec = {}
    for n in range(net.batch):
        x = np.array([_Poly(nv, {(0,) * nv: v}) for v in M.inputs[n].reshape(-1)], dtype=object)
        for L in net.layers:
            if L.op == "linear":
                W, b = Ws[L.index]
                x = np.array([sum((W[i, j] * x[j] for j in range(W.shape[1])), _Poly(nv)) + (b[i] if b is not None else 0) for i in range(W.shape[0])], dtype=object)
            elif L.op == "flatten":
                pass
            elif L.op in ("maxpool1d", "maxpool2d", "avgpool2d"):
                ys = []
                for w, win in enumerate(M._windows(L)):
                    vals = [x[i] for i in win]
                    if L.op == "avgpool2d":
                        ys.append(sum(vals, _Poly(nv)) * mpq(1, len(win)))
                        continue
                    cs = [v.c0() for v in vals]
                    tied = [p for p, c in enumerate(cs) if c == max(cs)]
                    pick = tied[0]
                    if len(tied) > 1:
                        key = (L.index, n, w)
                        rec[key] = ("pool", {p: vals[p] for p in tied})
                        ch = pattern.get(key)
                        if isinstance(ch, int) and not isinstance(ch, bool) and ch in tied:
                            pick = ch
                    ys.append(vals[pick])
                x = np.array(ys, dtype=object)
            elif L.act is not None and L.op != "fixed_point":
                kinks, fns = _pieces(L.op, _params(L))
                ys = []
                for u, v in enumerate(x):
                    c = v.c0()
                    piece = sum(1 for k in kinks if c > k)
                    hit = next((j for j, k in enumerate(kinks) if c == k), None)
                    if hit is not None:
                        key = (L.index, n, u)
                        rec[key] = ("act", v - kinks[hit])
                        piece = hit + (1 if pattern.get(key) == "right" else 0)
                    ys.append(fns[piece](v))
                x = np.array(ys, dtype=object)
            else:
                raise CheckFailed(f"polynomial replay: layer {L.index} ({L.op}) is not covered")
        if net.loss.op == "l1":
            tg = M.targets[n].reshape(-1)
            for u, (v, y) in enumerate(zip(x, tg)):
                if v.c0() == y:
                    rec[(len(net.layers), n, u)] = ("l1", v - y)
        elif net.loss.op not in ("sum", "dot", "mse"):
            raise CheckFailed(f"polynomial replay: loss {net.loss.op!r} is not covered")
    return rec


def _branches(kind, z, cons, ident):
    """[(choice, constraints, zero)] of one tie under a prefix (``ident``: (choice, c, i) of a
    listed identity that empties ``choice``)."""
    if kind == "pool":
        groups = []
        for p in sorted(z):
            g = next((g for g in groups if z[g[0]] == z[p]), None)
            if g is None:
                groups.append([p])
            else:
                g.append(p)
        if len(groups) == 1:
            return [(p, [], True) for p in groups[0]], groups
        return [(p, [z[p] - z[o[0]] for o in groups if p not in o], False) for g in groups for p in g], groups
    if not z.t:
        return [("left", [], True), ("right", [], True)], None
    return [("left", [-z], False), ("right", [z], False)], None


def _constraints(M, vars_, order, choices):
    rec = _replay(M, vars_, choices)
    cons = []
    for key in order:
        kind, z = rec[key]
        brs, _ = _branches(kind, z, cons, None)
        hit = [b for b in brs if b[0] == choices.get(key)]
        if not hit:
            raise CheckFailed(f"clarke: the pattern has no valid choice at tie {key}")
        cons += hit[0][1]
    return cons


def _normal(t: dict) -> tuple:
    """p > 0 up to a positive factor: p / |coefficient of p's greatest monomial| (0 stays 0)."""
    if not t:
        return ()
    s = abs(t[max(t)])
    return tuple(sorted((m, c / s) for m, c in t.items()))


def _show(t: dict) -> str:
    def mono(m):
        return "*".join(f"x{j}^{e}" if e > 1 else f"x{j}" for j, e in enumerate(m) if e) or "1"

    return " + ".join(f"{c}*{mono(m)}" for m, c in sorted(t.items())) or "0"


def _query_is(text, cons, radius, nv, where):
    """The SMT-LIB2 text asserts exactly {|X_j| < radius : j used by cons} and {c > 0 : c in cons}."""
    try:
        q = smtlib.read(text)
    except smtlib.SmtLibError as exc:
        raise CheckFailed(f"{where}: the SMT-LIB2 query is not in the emptiness fragment: {exc}") from None
    used = sorted({j for c in cons for m in c.t for j, e in enumerate(m) if e})
    names = [f"x{j}" for j in used]
    if sorted(q.variables) != sorted(names):
        raise CheckFailed(f"{where}: the SMT-LIB2 query declares {q.variables}, not the variables of the constraints {names}")
    pos = {n: int(n[1:]) for n in q.variables}
    got = set()
    for rel, p in q.atoms:
        t: dict = {}
        for m, c in p.items():
            e = [0] * nv
            for i, k in m:
                e[pos[q.variables[i]]] = k
            t[tuple(e)] = c
        if rel != ">":
            raise CheckFailed(f"{where}: the SMT-LIB2 query asserts {_show(t)} {rel} 0: only strict constraints belong to the region")
        got.add(_normal(t))
    want = {}
    for j in used:
        for s in (1, -1):  # radius + X_j > 0 and radius - X_j > 0
            e = [0] * nv
            e[j] = 1
            want[_normal({(0,) * nv: radius, tuple(e): mpq(s)})] = f"the box side x{j} {'>' if s > 0 else '<'} {-radius if s > 0 else radius}"
    for c in cons:
        want.setdefault(_normal(c.t), f"the constraint {_show(c.t)} > 0")
    extra = got - set(want)
    if extra:
        raise CheckFailed(f"{where}: the SMT-LIB2 query asserts {_show(dict(min(extra)))} > 0, which is neither the box |x| < {radius} nor a replayed tie constraint")
    missing = [w for k, w in want.items() if k not in got]
    if missing:
        raise CheckFailed(f"{where}: the SMT-LIB2 query does not assert {missing[0]}")


def _convex_holds(z, choice, mu) -> bool:
    """z[choice] = sum_o mu_o z[o] identically with mu_o > 0, sum mu = 1, each o a tied entry with
    a polynomial other than z[choice]'s: then z[choice] never exceeds all of them (empty branch)."""
    if not mu or any(o not in z or z[o] == z[choice] or m <= 0 for o, m in mu.items()) or sum(mu.values()) != 1:
        return False
    return sum((z[o] * m for o, m in mu.items()), _Poly(z[choice].nv)) == z[choice]


def _dot(a, b):
    return sum((x * y for x, y in zip(a, b)), mpq(0))


def check(M, ev, claims, ad, found, qs, choices_of, key_of) -> list:
    """Validate ``evidence.clarke`` for the claim ad_in_clarke; returns the step names."""
    clarke = claims["ad_in_clarke"]
    vars_ = variables(M, found)
    if [int(v) for v in ev["variables"]] != vars_:
        raise CheckFailed("clarke: the polynomial variables must be the trainable scalars before the last tie")
    order = sorted(found)
    nv = len(vars_)
    steps = []
    active = []
    for i, a in enumerate(ev.get("active", [])):
        ch = choices_of(a["choices"])
        if sorted(ch) != order:
            raise CheckFailed(f"clarke.active[{i}]: the pattern must choose at every real tie")
        arc = [qs(d, f"clarke.active[{i}].arc") for d in a["arc"]]
        if any(len(d) != nv for d in arc):
            raise CheckFailed(f"clarke.active[{i}]: arc vectors must have one entry per variable")
        for c in _constraints(M, vars_, order, ch):
            lead = c.lead_along(arc)
            if lead is None or lead[0] == 0 or lead[1] <= 0:
                raise CheckFailed(f"clarke.active[{i}]: a tie's leading coefficient along the arc is not > 0")
        g = M.linear_map(lambda k, ch=ch: ch[k])
        if g != qs(a["gradient"], f"clarke.active[{i}].gradient"):
            raise CheckFailed(f"clarke.active[{i}]: the claimed gradient is not the pattern's gradient")
        active.append(g)
    steps.append(f"{len(active)} active pattern(s) re-checked along their arcs")
    if clarke is True:
        lam = qs(ev["weights"], "clarke.weights")
        if len(lam) != len(active) or any(v < 0 for v in lam) or sum(lam) != 1:
            raise CheckFailed("clarke: the weights must be >= 0 and sum to 1, one per active pattern")
        if [sum((lam[c] * active[c][k] for c in range(len(active))), mpq(0)) for k in range(M.P)] != ad:
            raise CheckFailed("clarke: the convex combination of the arc-witnessed gradients is not the AD output")
        return steps + ["Clarke membership through the patterns' regions"]
    if clarke is not False:
        raise CheckFailed("clarke evidence supports ad_in_clarke true or false only")
    v = qs(ev["separator"], "clarke.separator")
    empty = {}
    for e in ev.get("empty", []):
        if e.get("trust") != "solver" or any(e["answers"].get(s) != "unsat" for s in ("z3", "cvc5")):
            raise CheckFailed("clarke: an emptiness step needs unsat from both Z3 and cvc5 (solver-trusted)")
        if mpq(e["radius"]) <= 0 or not e.get("smtlib"):
            raise CheckFailed("clarke: an emptiness step needs a positive radius and its SMT-LIB2 query")
        empty[tuple(sorted(choices_of(e["choices"]).items(), key=str))] = e
    idents = {}
    for i in ev.get("identities", []):
        if "weights" in i:  # max-pool: the chosen entry is a convex combination of the others
            idents[tuple(sorted(choices_of(i["choices"]).items(), key=str))] = ("pool", {int(o): mpq(m) for o, m in i["weights"]})
        else:
            idents[tuple(sorted(choices_of(i["choices"]).items(), key=str))] = (key_of(i["of"]), mpq(i["ratio"]))
    count = {"patterns": 0, "empty": 0}

    def walk(i, prefix, cons, signed):
        if i == len(order):
            count["patterns"] += 1
            g = M.linear_map(lambda k: prefix[k])
            if _dot(v, [a - b for a, b in zip(ad, g)]) > 0:
                return
            listed = empty.get(tuple(sorted(prefix.items(), key=str)))
            if listed is None:
                raise CheckFailed(f"clarke: pattern {sorted(prefix.items())} is on the wrong side of the separator and not shown empty")
            if listed["constraints"] != [c.json() for c in cons]:
                raise CheckFailed(f"clarke: the emptiness constraints of {sorted(prefix.items())} are not the replayed tie polynomials")
            _query_is(listed["smtlib"], cons, mpq(listed["radius"]), nv, f"clarke: the emptiness step of {sorted(prefix.items())}")
            count["empty"] += 1
            return
        key = order[i]
        kind, z = _replay(M, vars_, prefix)[key]
        brs, groups = _branches(kind, z, cons, None)
        if groups is not None:  # max-pool: entries with identical polynomials are one branch
            brs = [b for b in brs if any(b[0] == g[0] for g in groups)]
        elif not z.t:
            brs = brs[:1]  # identically zero: both sides are the same map near w
        for choice, bc, zero in brs:
            p2 = {**prefix, key: choice}
            hit = idents.get(tuple(sorted(p2.items(), key=str)))
            if hit is not None and kind == "pool":
                if hit[0] != "pool" or not _convex_holds(z, choice, hit[1]):
                    raise CheckFailed(f"clarke: the identity emptying {sorted(p2.items())} (max-pool entry a convex combination of the others) does not hold")
                continue
            if hit is not None:
                other, c = hit
                if other == "pool" or other not in signed or z != signed[other] * c or (c > 0) != (choice == "left"):
                    raise CheckFailed(f"clarke: the identity emptying {sorted(p2.items())} does not hold")
                continue
            walk(i + 1, p2, cons + bc, {**signed, key: bc[0]} if kind != "pool" and bc else signed)

    walk(0, {}, [], {})
    return steps + [f"{count['patterns']} pattern(s) walked: separated or empty near w ({count['empty']} by Z3 and cvc5, solver-trusted)"]
