"""The replay engine: one network program, run over an arithmetic.

``forward(A, net)`` and ``backward(A, net, fw, mode)`` run a network described as plain data
(:func:`kinkcheck.testgen.describe.describe_network`) over an arithmetic ``A``: :class:`Exact`
(fractions, the exact semantics), :class:`Spec` (the spec's machine run: every operation in binary64,
rounded once into the format, sums left to right - docs/semantics.md), or the torch exporter's
enclosure arithmetic (:class:`kinkcheck.testgen.torch_model.TorchModel`). ``ties_of`` lists the
units on a kink and the max-pool windows with two or more maximal entries.

Stdlib only, and self-contained: the exporter copies the source of every object in ``ENGINE``
verbatim (``inspect.getsource``) into the generated torch test file, which therefore needs no
kinkcheck. Changing a line here changes every generated file.
"""

import math
from fractions import Fraction


class Exact:
    """Exact rational arithmetic: the exact semantics."""

    def val(self, h):
        return Fraction(float.fromhex(h))

    def const(self, q, h):
        return Fraction(q)

    def zero(self):
        return Fraction(0)

    def unknown(self):
        raise ArithmeticError("every branch of the exact run is decided")

    def add(self, a, b):
        return a + b

    def sub(self, a, b):
        return a - b

    def mul(self, a, b):
        return a * b

    def div(self, a, b):
        return a / b

    def neg(self, a):
        return -a

    def gt(self, a, b):
        return a > b

    def eq(self, a, b):
        return a == b

    def program(self, tree, x):
        return evaluate(self, tree, x)

    def terms(self, ts):
        total = Fraction(0)
        for a, b, s in ts:
            v = a if b is None else a * b
            total += v if s > 0 else -v
        return total


class Spec(Exact):
    """The machine run in kinkcheck's documented order: every operation computed in binary64
    (Python floats) and rounded once into the format by ``rnd`` (exact: 53 >= 2p + 2 for float16,
    bfloat16 and float32; float64 needs no rounding); sums left to right from the first term."""

    def __init__(self, rnd):
        self.rnd = rnd

    def val(self, h):
        return float.fromhex(h)

    def const(self, q, h):
        return float.fromhex(h)

    def zero(self):
        return 0.0

    def add(self, a, b):
        return self.rnd(a + b)

    def sub(self, a, b):
        return self.rnd(a - b)

    def mul(self, a, b):
        return self.rnd(a * b)

    def div(self, a, b):
        return self.rnd(a / b)

    def terms(self, ts):
        acc = None
        for a, b, s in ts:
            v = a if b is None else self.mul(a, b)
            v = v if s > 0 else -v
            acc = v if acc is None else self.add(acc, v)
        return 0.0 if acc is None else acc


def evaluate(A, tree, x):
    """A piece program (``["x"]``, ``["c", exact, hex]``, ``["neg", t]``, ``["add"|"sub"|"mul"|"div", t, t]``)."""
    if tree[0] == "x":
        return x
    if tree[0] == "c":
        return A.const(tree[1], tree[2])
    a = evaluate(A, tree[1], x)
    if tree[0] == "neg":
        return A.neg(a)
    return getattr(A, tree[0])(a, evaluate(A, tree[2], x))


def locate(A, x, kinks):
    """(piece, kink): piece = number of kinks strictly below x, kink = the kink x is on (-1);
    None when the arithmetic cannot decide."""
    piece = 0
    for j, k in enumerate(kinks):
        on = A.eq(x, k)
        if on is None:
            return None
        if on:
            return piece, j
        above = A.gt(x, k)
        if above is None:
            return None
        if not above:
            break
        piece = j + 1
    return piece, -1


def activate(A, L, v, branch, key):
    if isinstance(v, float) and math.isnan(v):  # NaN: on no piece, propagates
        branch[key] = (0, -1)
        return v
    loc = locate(A, v, [A.val(k) for k in L["kinks"]])
    branch[key] = loc
    if loc is None:
        return A.unknown()
    return A.program(L["pieces"][loc[0]]["value"], v)


def side_of(mode, key):
    """mode None: the file's proxies; "left" / "right": every tie's one-sided derivative (max-pool:
    first / last maximal entry); (key, side): that one tie switched, the others the file's; a dict
    {key: side}: the ties it names switched (a max-pool side may be the flat input position of the
    tied entry that takes the gradient)."""
    if isinstance(mode, dict):
        return mode.get(tuple(key))
    if isinstance(mode, (list, tuple)):
        return mode[1] if tuple(mode[0]) == tuple(key) else None
    return mode


def derivative(A, L, x, loc, mode, key):
    """The derivative AD uses: the piece's, or at a kink the proxy or one-sided derivative."""
    if loc is None:
        return A.unknown()
    piece, kink = loc
    if kink >= 0:
        side = side_of(mode, key)
        return A.const(*L["proxies" if side is None else side][kink])
    return A.program(L["pieces"][piece]["deriv"], x)


def window_max(A, vals):
    """The first maximal entry's value and the mask of the entries equal to it."""
    m = vals[0]
    for v in vals[1:]:
        above = A.gt(v, m)
        if above is None:
            return A.unknown(), None
        if above:
            m = v
    mask = []
    for v in vals:
        e = A.eq(v, m)
        if e is None:
            return A.unknown(), None
        mask.append(bool(e))
    return m, tuple(mask)


def entry_value(A, e, theta):
    if e[0] == "p":
        return theta[e[1]] if e[2] > 0 else A.neg(theta[e[1]])
    return A.val(e[1])


def forward(A, net):
    """Every layer's input per sample (flat lists), the branches, the residuals and the loss."""
    theta = [A.val(h) for h in net["theta"]]
    xs = [[[A.val(h) for h in row] for row in net["inputs"]]]
    branch = {}
    nl = len(net["layers"])
    for li, L in enumerate(net["layers"]):
        op = L["op"]
        W = [entry_value(A, e, theta) for e in L["weight"]] if "weight" in L else None
        b = [entry_value(A, e, theta) for e in L["bias"]] if L.get("bias") is not None else None
        out = []
        for n, x in enumerate(xs[-1]):
            if op == "linear":
                m = L["in"]
                y = [A.terms([(W[i * m + j], x[j], 1) for j in range(m)] + ([(b[i], None, 1)] if b else [])) for i in range(L["out"])]
            elif op == "conv2d":
                m = L["ckk"]
                xp = [[x[c] if c >= 0 else A.zero() for c in col] for col in L["cols"]]
                y = [
                    A.terms([(W[o * m + k], xp[p][k], 1) for k in range(m)] + ([(b[o], None, 1)] if b else []))
                    for o in range(L["out"])
                    for p in range(len(xp))
                ]
            elif op in ("maxpool1d", "maxpool2d"):
                y = []
                for w, idx in enumerate(L["windows"]):
                    v, branch[(li, n, w)] = window_max(A, [x[i] for i in idx])
                    y.append(v)
            elif op == "avgpool2d":
                y = [A.div(A.terms([(x[i], None, 1) for i in idx]), A.const(*L["k"])) for idx in L["windows"]]
            elif op == "flatten":
                y = list(x)
            else:
                y = [activate(A, L, v, branch, (li, n, u)) for u, v in enumerate(x)]
            out.append(y)
        xs.append(out)
    lo = net["loss"]
    out = xs[-1]
    res = None
    T = [[A.val(h) for h in row] for row in net["targets"]] if net["targets"] is not None else None
    if lo["op"] == "sum":
        total = A.terms([(v, None, 1) for row in out for v in row])
    elif lo["op"] == "dot":
        total = A.terms([(t, v, 1) for row, trow in zip(out, T) for v, t in zip(row, trow)])
    else:
        res = [[A.sub(v, t) for v, t in zip(row, trow)] for row, trow in zip(out, T)]
        if lo["op"] == "mse":
            total = A.terms([(r, r, 1) for row in res for r in row])
        else:
            vals = [activate(A, lo["abs"], r, branch, (nl, n, u)) for n, row in enumerate(res) for u, r in enumerate(row)]
            total = A.terms([(v, None, 1) for v in vals])
        if lo["reduction"] == "mean":
            total = A.div(total, A.const(*lo["count"]))
    return {"theta": theta, "xs": xs, "branch": branch, "res": res, "loss": total}


def pool_cotangents(A, g, mask, K, rule, side, beta=None):
    """Window cotangents; ``beta`` (rule "beta"): [beta, 1 - beta] as [exact, hex] pairs."""
    if mask is None:
        return [A.unknown()] * K
    if isinstance(side, int) and not isinstance(side, bool):  # a window position
        return [g if i == side else A.zero() for i in range(K)]
    if side is not None:
        rule = "first" if side == "left" else "last"
    cnt = sum(mask)
    if cnt >= 2 and rule in ("split", "beta"):
        gs = A.mul(A.const(*beta[0]), g) if rule == "beta" else g
        share = A.div(gs, A.const(str(cnt), float(cnt).hex()))
        T = [share if e else A.zero() for e in mask]
        if rule == "beta":  # J_first's branch (1 - beta) * g joins the first tied entry
            j = mask.index(True)
            T[j] = A.add(share, A.mul(A.const(*beta[1]), g))
        return T
    at = [j for j, e in enumerate(mask) if e] or [0]
    j = at[-1] if cnt >= 2 and rule == "last" else at[0]
    return [g if i == j else A.zero() for i in range(K)]


def backward(A, net, fw, mode=None):
    """The AD output over the trainable params (declaration order, row-major). Parameter terms are
    summed in the documented order (sample, layer, weight before bias, entry, position)."""
    theta, xs, branch = fw["theta"], fw["xs"], fw["branch"]
    layers, lo = net["layers"], net["loss"]
    nl = len(layers)
    terms = {}

    def term(e, key, a, b):
        if e[0] == "p":
            terms.setdefault(e[1], []).append((key, a, b, e[2]))

    g = []
    for n, row in enumerate(xs[-1]):
        seed = []
        for u in range(len(row)):
            if lo["op"] == "sum":
                seed.append(A.const(*lo["one"]))
            elif lo["op"] == "dot":
                seed.append(A.val(net["targets"][n][u]))
            elif lo["op"] == "mse":
                seed.append(A.mul(fw["res"][n][u], A.const(*lo["c2"])))
            else:
                d = derivative(A, lo["abs"], fw["res"][n][u], branch[(nl, n, u)], mode, (nl, n, u))
                seed.append(A.mul(d, A.const(*lo["inv"])) if lo["reduction"] == "mean" else d)
        g.append(seed)
    for li in range(nl - 1, -1, -1):
        L = layers[li]
        op = L["op"]
        x = xs[li]
        if op == "linear":
            W = [entry_value(A, e, theta) for e in L["weight"]]
            m, o_n = L["in"], L["out"]
            for n in range(len(x)):
                for i in range(o_n):
                    for j in range(m):
                        term(L["weight"][i * m + j], (n, li, 0, i * m + j, 0), g[n][i], x[n][j])
                    if L["bias"] is not None:
                        term(L["bias"][i], (n, li, 1, i, 0), g[n][i], None)
            if li == 0:
                break
            g = [[A.terms([(W[i * m + j], gn[i], 1) for i in range(o_n)]) for j in range(m)] for gn in g]
        elif op == "conv2d":
            W = [entry_value(A, e, theta) for e in L["weight"]]
            m, o_n, cols = L["ckk"], L["out"], L["cols"]
            P = len(cols)
            for n in range(len(x)):
                for o in range(o_n):
                    for k in range(m):
                        for p, col in enumerate(cols):
                            term(L["weight"][o * m + k], (n, li, 0, o * m + k, p), g[n][o * P + p], x[n][col[k]] if col[k] >= 0 else A.zero())
                    if L["bias"] is not None:
                        for p in range(P):
                            term(L["bias"][o], (n, li, 1, o, p), g[n][o * P + p], None)
            if li == 0:
                break
            new = []
            for gn in g:
                acc = [[] for _ in range(L["in_size"])]
                for p, col in enumerate(cols):
                    for k, c in enumerate(col):
                        if c >= 0:
                            acc[c].append((A.terms([(W[o * m + k], gn[o * P + p], 1) for o in range(o_n)]), None, 1))
                new.append([A.terms(t) if t else A.zero() for t in acc])
            g = new
        elif op in ("maxpool1d", "maxpool2d", "avgpool2d"):
            new = []
            for n, gn in enumerate(g):
                acc = [[] for _ in range(L["in_size"])]
                for w, idx in enumerate(L["windows"]):
                    if op == "avgpool2d":
                        T = [A.div(gn[w], A.const(*L["k"]))] * len(idx)
                    else:
                        side = side_of(mode, (li, n, w))
                        if isinstance(side, int) and not isinstance(side, bool):
                            side = list(idx).index(side)  # flat input position -> window position
                        T = pool_cotangents(A, gn[w], branch[(li, n, w)], len(idx), L["rule"], side, L.get("beta"))
                    for i, t in zip(idx, T):
                        acc[i].append((t, None, 1))
                new.append([A.terms(t) if t else A.zero() for t in acc])
            g = new
        elif op != "flatten":
            g = [[A.mul(gv, derivative(A, L, xv, branch[(li, n, u)], mode, (li, n, u))) for u, (gv, xv) in enumerate(zip(gn, x[n]))] for n, gn in enumerate(g)]
    out = []
    for off in net["grad_index"]:
        ts = sorted(terms.get(off, []), key=lambda t: t[0])
        out.append(A.terms([(a, b, s) for _, a, b, s in ts]))
    return out


def ties_of(fw):
    """Sorted [layer, sample, unit] of the units on a kink and the max-pool windows with two or more
    maximal entries (layer = number of layers: the l1 residuals)."""
    out = []
    for key, b in fw["branch"].items():
        if b is not None and ((isinstance(b[0], bool) and sum(b) >= 2) or (not isinstance(b[0], bool) and b[1] >= 0)):
            out.append(list(key))
    return sorted(out)



# the objects whose source the generated file embeds, in this order
ENGINE = (Exact, Spec, evaluate, locate, activate, side_of, derivative, window_max, entry_value, forward, pool_cotangents, backward, ties_of)
