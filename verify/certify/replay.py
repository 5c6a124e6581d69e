"""The checker's own exact model of a network: its activation table and the forward tangent pass.

Part of the independent checker (``checker.py``, which explains the method): the activation table
is written here again on purpose (kinks, one-sided derivatives, values), a second, independent
statement of the library's derived data; ``Model.tangent(d, choice)`` re-evaluates the network
exactly, sample by sample, with a forward tangent pass. Like the checker, it imports neither Z3 nor
the decision code nor the semantics.

``Model.jacobian(choice)`` is the same pass with linear forms as tangents (``_Lin``: the direction d
as P symbolic columns). With every tie's choice fixed (no "auto"), each step of the tangent pass is
linear in d - a product by an exact rational, a sum, a max-pool entry picked by the choice - so the
form arriving at the loss is the gradient, and the form arriving at a tie is its input functional:
one pass instead of one numeric pass per parameter. With ``inject``, each tie's output tangent also
gets a free column delta_k; the pass stays linear in (d, delta), so the loss form's coefficient of
delta_k is the sensitivity s_k of f to that tie's output, and switching that one tie from derivative
c to c' changes the gradient by exactly (c' - c) s_k a_k, a_k its input functional (the same pass
with delta_k = (c' - c) a_k.d). Networks with fixed-point layers or a cross-entropy loss use the
numeric passes (one per unit vector).
"""

from __future__ import annotations

import numpy as np
from gmpy2 import mpq

from .forms import CheckFailed, Enc, _exp_enclosure, _Lin, _relu


class _Basis:
    """The direction d as P symbolic columns, d[j] = the form e_j, made on first use (a parameter
    no layer reads costs nothing)."""

    def __init__(self, atoms, P):
        self.atoms, self.P = atoms, P

    def __len__(self):
        return self.P

    def __getitem__(self, j):
        if not 0 <= j < self.P:
            raise IndexError(j)
        return _Lin(self.atoms, {int(j): mpq(1)})


class _ByDirection(Exception):
    """A choice that depends on the direction ("auto", "symbolic"): no linear-form pass."""


# ----------------------------------------------------------------------------------------------
# the activation table (independent of the sympy library)

H = mpq(1, 2)


def _table(op, prm):
    """(kinks, [(left, right) derivative per kink], value(x), derivative(x) off the kinks)."""
    if op == "relu":
        return [mpq(0)], [(mpq(0), mpq(1))], lambda x: x if x > 0 else mpq(0), lambda x: mpq(1) if x > 0 else mpq(0)
    if op == "leaky_relu":
        s = prm["negative_slope"]
        if s == 1:
            return [], [], lambda x: x, lambda x: mpq(1)
        return [mpq(0)], [(s, mpq(1))], lambda x: x if x > 0 else s * x, lambda x: mpq(1) if x > 0 else s
    if op in ("hardtanh", "relu6"):
        lo, hi = (prm["min_val"], prm["max_val"]) if op == "hardtanh" else (mpq(0), mpq(6))
        return (
            [lo, hi],
            [(mpq(0), mpq(1)), (mpq(1), mpq(0))],
            lambda x: lo if x < lo else hi if x > hi else x,
            lambda x: mpq(1) if lo < x < hi else mpq(0),
        )
    if op == "hardsigmoid":
        return (
            [mpq(-3), mpq(3)],
            [(mpq(0), mpq(1, 6)), (mpq(1, 6), mpq(0))],
            lambda x: mpq(0) if x <= -3 else mpq(1) if x >= 3 else x / 6 + H,
            lambda x: mpq(1, 6) if -3 < x < 3 else mpq(0),
        )
    if op == "hardswish":
        return (
            [mpq(-3), mpq(3)],
            [(mpq(0), mpq(-1, 2)), (mpq(3, 2), mpq(1))],
            lambda x: mpq(0) if x <= -3 else x if x >= 3 else x * (x + 3) / 6,
            lambda x: mpq(0) if x < -3 else mpq(1) if x > 3 else (2 * x + 3) / 6,
        )
    if op == "abs":
        return [mpq(0)], [(mpq(-1), mpq(1))], lambda x: abs(x), lambda x: mpq(1) if x > 0 else mpq(-1)
    if op == "identity":
        return [], [], lambda x: x, lambda x: mpq(1)
    raise CheckFailed(f"the checker does not handle op {op!r} (transcendental ops have no rational certificate)")


def _proxies(net, conv):
    """Per elementwise layer (and "loss"): proxy values (dtype-rounded), from the convention."""
    out = {}

    def resolve(entries, derivs, where):
        if len(entries) != len(derivs):
            if not derivs:
                return []
            raise CheckFailed(f"{where}: {len(entries)} kink derivatives for {len(derivs)} kinks")
        vals = []
        for k, e in enumerate(entries):
            if e in ("left", "right"):
                q = derivs[k][0 if e == "left" else 1]
                vals.append(mpq(net.fmt.round_rational(q)))
            else:
                from ..encodings.formats import parse_value

                vals.append(mpq(parse_value(e, net.fmt, "nearest")[0]))
        return vals

    for L in net.layers:
        if L.act is not None:
            op = L.act.name if L.op == "fixed_point" else L.op
            kinks, derivs, _, _ = _table(op, _params(L))
            entries = L.kink_derivatives if L.kink_derivatives is not None else (conv.get(op) or [])
            if L.kink_derivatives is None and len(entries) != len(kinks) and not kinks:
                entries = []
            out[L.index] = resolve(entries, derivs, f"layer {L.index}")
    if net.loss.op == "l1":
        entries = net.loss.kink_derivatives or conv.get("l1") or [0]
        out["loss"] = resolve(entries, [(mpq(-1), mpq(1))], "loss")
    return out


def _params(L):
    return {k: mpq(v) for k, v in (L.act.params.items() if L.act is not None else [])}


def _ties_break(net, conv):
    """Per max-pool layer: "first" | "last" | "split" or the rational beta of J_beta
    (``{"beta": B}``, B read here again from its token in the network's dtype, exactly)."""
    from ..encodings.formats import InvalidValue, parse_value

    out = {}
    for L in net.layers:
        if L.op in ("maxpool1d", "maxpool2d"):
            rule = L.tie_break or conv.get(L.op) or "first"
            if isinstance(rule, dict):
                try:
                    rule = mpq(parse_value(rule["beta"], net.fmt, "exact")[0])
                except (InvalidValue, KeyError, TypeError) as exc:
                    raise CheckFailed(f"layer {L.index}: tie_break beta: {exc}") from None
            elif rule not in ("first", "last", "split"):
                raise CheckFailed(f"layer {L.index}: unknown tie_break {rule!r}")
            out[L.index] = rule
    return out


# ----------------------------------------------------------------------------------------------
# exact forward + tangent, one sample at a time


def _q(a):
    out = np.empty(np.shape(a), dtype=object)
    for i, v in enumerate(np.asarray(a, dtype=np.float64).reshape(-1).tolist()):
        out.reshape(-1)[i] = mpq(v)
    return out


def _solve(M, rhs):
    """Exact Gaussian elimination; None if M is singular (the checker's own, on purpose)."""
    n = len(M)
    a = [[mpq(v) for v in row] + [mpq(r)] for row, r in zip(M, rhs)]
    for c in range(n):
        p = next((r for r in range(c, n) if a[r][c] != 0), None)
        if p is None:
            return None
        a[c], a[p] = a[p], a[c]
        for r in range(n):
            if r != c and a[r][c] != 0:
                f = a[r][c] / a[c][c]
                a[r] = [x - f * y for x, y in zip(a[r], a[c])]
    return [a[i][n] / a[i][i] for i in range(n)]


class Model:
    def __init__(self, net, conv, fixed_points=None, layers=None):
        self.fixed_points = fixed_points or {}  # fixed-point layer -> claimed z* per sample (checked)
        self.layers = layers or {}  # op -> the checker's model of a block (e.g. vin_check.layer)
        self.net = net
        self.conv = conv
        self.proxy = _proxies(net, conv)
        self.tie_break = _ties_break(net, conv)
        self.trainable = np.zeros(net.theta.size, dtype=bool)
        self.trainable[net.trainable_index] = True
        self.gpos = np.full(net.theta.size, -1, dtype=np.int64)
        self.gpos[net.trainable_index] = np.arange(net.n_grad)
        self.W = {}
        for L in net.layers:
            if L.weight is not None:
                self.W[L.index] = (_q(L.weight.values(net.theta)), _q(L.bias.values(net.theta)) if L.bias is not None else None)
        self.inputs = _q(net.inputs)
        self.targets = _q(net.targets) if net.targets is not None and net.targets.dtype.kind == "f" else None
        self.count = int(np.prod(net.out_shape)) * net.batch
        self.P = net.n_grad
        # linear-form passes (``jacobian``): not through fixed points (fixed-point layers, iterated
        # value-iteration blocks: exact solves of the numeric tangent) nor a cross-entropy loss
        self.forms = net.loss.op != "cross_entropy" and not any(L.op == "fixed_point" or (L.op == "value_iteration" and L.vi.method == "iterate") for L in net.layers)
        self._atoms = None  # the atom table of the running linear-form pass, else None
        self._inject = None  # tie key -> its delta column in an ``inject`` pass
        self._basis = None
        self._jac = {}

    def dref(self, ref, d):
        """Tangent of a weight/bias tensor along direction d (over trainable params)."""
        out = np.empty(ref.src.shape, dtype=object)
        for e, (s, sg) in enumerate(zip(ref.src.tolist(), ref.sign.tolist())):
            out[e] = (d[self.gpos[s]] * int(sg)) if s >= 0 and self.trainable[s] else mpq(0)
        return out.reshape(ref.shape)

    def dW(self, d):
        """Per layer with weights: the tangents of (W, b) - and of U for a fixed-point layer."""
        out = {}
        for L in self.net.layers:
            if L.weight is not None:
                out[L.index] = (self.dref(L.weight, d), self.dref(L.bias, d) if L.bias is not None else None)
                if L.op == "fixed_point":
                    out[L.index] += (self.dref(L.fp.input_weight, d),)
        return out

    def tangent(self, d, choice, dW=None):
        """(f, f'(w; d) under ``choice``, records {tie key: input tangent(s)}, ties found)."""
        net = self.net
        dW = self.dW(d) if dW is None else dW
        f = mpq(0)
        df = Enc(mpq(0), mpq(0)) if net.loss.op == "cross_entropy" else mpq(0)
        rec, ties = {}, []
        for n in range(net.batch):
            x = self.inputs[n].copy()
            t = np.empty(x.shape, dtype=object)
            t.fill(mpq(0))
            for L in net.layers:
                x, t = self._layer(L, n, x, t, dW, choice, rec, ties)
            fn, dfn = self._loss(n, x.reshape(-1), t.reshape(-1), choice, rec, ties)
            f += fn
            df += dfn
        if net.loss.reduction == "mean" and net.loss.op in ("mse", "l1"):
            f, df = f / self.count, df / self.count
        if net.loss.reduction == "mean" and net.loss.op == "cross_entropy":
            df = df.scale(mpq(1, net.batch))  # f (the loss value) is not used by any check
        return f, df, rec, ties

    def _layer(self, L, n, x, t, dW, choice, rec, ties):
        op = L.op
        if op == "linear":
            W, b = self.W[L.index]
            Wd, bd = dW[L.index]
            y = W.dot(x)
            ty = self._mv(W, t) + self._mv(Wd, x)
            if b is not None:
                y, ty = y + b, ty + bd
            return y, ty
        if op == "conv2d":
            W, b = self.W[L.index]
            Wd, bd = dW[L.index]
            C, Hh, Ww = L.in_shape
            (ph, pw), (sh, sw) = L.padding, L.stride
            xp = np.empty((C, Hh + 2 * ph, Ww + 2 * pw), dtype=object)
            xp.fill(mpq(0))
            tp = xp.copy()
            xp[:, ph : ph + Hh, pw : pw + Ww] = x
            tp[:, ph : ph + Hh, pw : pw + Ww] = t
            O, _, kh, kw = W.shape
            Ho, Wo = L.out_shape[1:]
            y = np.empty((O, Ho, Wo), dtype=object)
            ty = np.empty((O, Ho, Wo), dtype=object)
            for i in range(Ho):
                for j in range(Wo):
                    px = xp[:, i * sh : i * sh + kh, j * sw : j * sw + kw].reshape(-1)
                    pt = tp[:, i * sh : i * sh + kh, j * sw : j * sw + kw].reshape(-1)
                    y[:, i, j] = W.reshape(O, -1).dot(px)
                    ty[:, i, j] = self._mv(W.reshape(O, -1), pt) + self._mv(Wd.reshape(O, -1), px)
            if b is not None:
                y = y + b[:, None, None]
                ty = ty + bd[:, None, None]
            return y, ty
        if op in ("maxpool1d", "maxpool2d", "avgpool2d"):
            return self._pool(L, n, x, t, choice, rec, ties)
        if op == "flatten":
            return x.reshape(-1), t.reshape(-1)
        if op == "fixed_point":
            return self._fixed_point(L, n, x, t, dW, choice, rec, ties)
        if op in self.layers:
            return self.layers[op](self, L, n, x, t, dW, choice, rec, ties)
        kinks, derivs, val, der = _table(op, _params(L))
        y = np.empty(x.shape, dtype=object)
        ty = np.empty(x.shape, dtype=object)
        for u, (xv, tv) in enumerate(zip(x.reshape(-1), t.reshape(-1))):
            y.reshape(-1)[u] = val(xv)
            k = next((k for k, at in enumerate(kinks) if xv == at), None)
            if k is None:
                ty.reshape(-1)[u] = der(xv) * tv
                continue
            key = (L.index, n, u)
            ties.append((key, "act", str(kinks[k])))
            rec[key] = tv
            c = choice(key)
            if c == "proxy":
                dv = self.proxy[L.index][k]
            elif c == "auto" and self._atoms is not None:  # columnwise: column j is the pass along e_j
                ty.reshape(-1)[u] = self._columns(tv, lambda v, k=k: (derivs[k][0] if v < 0 else derivs[k][1]) * v)
                continue
            elif c == "auto":
                dv = derivs[k][0] if tv < 0 else derivs[k][1]  # at tv == 0 both give 0
            elif c == "symbolic":
                l, r = derivs[k]
                ty.reshape(-1)[u] = l * tv + (r - l) * _relu(tv)
                continue
            elif c in ("left", "right"):
                dv = derivs[k][0 if c == "left" else 1]
            else:
                raise CheckFailed(f"tie {key}: invalid choice {c!r}")
            ty.reshape(-1)[u] = self._mark(key, dv * tv)
        return y, ty

    def _windows(self, L):
        if L.op == "maxpool1d":
            shp = L.in_shape if len(L.in_shape) == 2 else (1,) + L.in_shape
            C, Lin = shp
            (k,), (s,) = L.kernel, L.stride
            Lout = (Lin - k) // s + 1
            return [[c * Lin + o * s + j for j in range(k)] for c in range(C) for o in range(Lout)]
        C, Hh, Ww = L.in_shape
        (kh, kw), (sh, sw) = L.kernel, L.stride
        Ho, Wo = L.out_shape[1:]
        return [[c * Hh * Ww + (y * sh + i) * Ww + (x * sw + j) for i in range(kh) for j in range(kw)] for c in range(C) for y in range(Ho) for x in range(Wo)]

    def _pool(self, L, n, x, t, choice, rec, ties):
        xf, tf = x.reshape(-1), t.reshape(-1)
        ys, tys = [], []
        for w, win in enumerate(self._windows(L)):
            vals = [xf[i] for i in win]
            tans = [tf[i] for i in win]
            if L.op == "avgpool2d":
                ys.append(sum(vals, mpq(0)) / len(win))
                tys.append(sum(tans, mpq(0)) / len(win))
                continue
            m = max(vals)
            tied = [p for p, v in enumerate(vals) if v == m]
            ys.append(m)
            if len(tied) == 1:
                tys.append(tans[tied[0]])
                continue
            key = (L.index, n, w)
            ties.append((key, "max", tuple(win[p] for p in tied)))
            rec[key] = {p: tans[p] for p in tied}
            c = choice(key)
            if self._inject is not None:
                c = self._pool_choice(key, c, L, rec)
                tys.append(self._mark(key, tans[c]))
                continue
            if c == "proxy":
                c = self.tie_break[L.index]
                if c == "split":
                    tys.append(sum((tans[p] for p in tied), mpq(0)) / len(tied))
                    continue
                if not isinstance(c, str):  # J_beta = beta*J_split + (1-beta)*J_first
                    tys.append(c * sum((tans[p] for p in tied), mpq(0)) / len(tied) + (1 - c) * tans[tied[0]])
                    continue
            if c == "auto" and self._atoms is not None:  # columnwise maximum
                cols = [self._cols(tans[p]) for p in tied]
                keys = set().union(*cols)
                tys.append(_Lin(self._atoms, {j: max(cl.get(j, mpq(0)) for cl in cols) for j in keys}))
            elif c == "auto":
                tys.append(max(tans[p] for p in tied))
            elif c == "symbolic":
                m = tans[tied[0]]
                for p in tied[1:]:
                    m = m + _relu(tans[p] - m)
                tys.append(m)
            elif c == "first":
                tys.append(tans[tied[0]])
            elif c in ("last",):
                tys.append(tans[tied[-1]])
            elif c == "left":
                tys.append(tans[tied[0]])
            elif c == "right":
                tys.append(tans[tied[-1]])
            elif isinstance(c, int) and c in tied:
                tys.append(tans[c])
            else:
                raise CheckFailed(f"tie {key}: invalid choice {c!r}")
        shape = L.out_shape
        return np.array(ys, dtype=object).reshape(shape), np.array(tys, dtype=object).reshape(shape)

    def _loss(self, n, out, tout, choice, rec, ties):
        op = self.net.loss.op
        if op == "sum":
            return sum(out, mpq(0)), sum(tout, mpq(0))
        if op == "cross_entropy":
            # d/d out of -log softmax(out)[y] is softmax(out) - onehot(y): enclosed, times exact tangents
            es = [_exp_enclosure(o - out[0]) for o in out]
            S = sum((e for e in es[1:]), es[0])
            y = int(self.net.targets[n])
            df = Enc(mpq(0), mpq(0))
            for k, (e, tv) in enumerate(zip(es, tout)):
                if tv == 0:
                    continue
                p = Enc(e.lo / S.hi, e.hi / S.lo)
                if k == y:
                    p = p + mpq(-1)
                df = df + p.scale(tv)
            return mpq(0), df
        tg = self.targets[n].reshape(-1)
        if op == "dot":
            return sum(a * b for a, b in zip(tg, out)), sum(a * b for a, b in zip(tg, tout))
        r = [o - y for o, y in zip(out, tg)]
        if op == "mse":
            return sum(v * v for v in r), sum(2 * v * tv for v, tv in zip(r, tout))
        f = sum(abs(v) for v in r)
        df = mpq(0)
        for u, (v, tv) in enumerate(zip(r, tout)):
            if v != 0:
                df += (1 if v > 0 else -1) * tv
                continue
            key = (len(self.net.layers), n, u)
            ties.append((key, "l1", "0"))
            rec[key] = tv
            c = choice(key)
            if c == "symbolic":
                df += -1 * tv + 2 * _relu(tv)
                continue
            if c == "auto" and self._atoms is not None:  # columnwise |tv|
                df += self._columns(tv, lambda v: -v if v < 0 else v)
                continue
            dv = self.proxy["loss"][0] if c == "proxy" else (mpq(-1) if (c == "left" or (c == "auto" and tv < 0)) else mpq(1))
            df += self._mark(key, dv * tv)
        return f, df

    def unit(self, i):
        d = [mpq(0)] * self.P
        d[i] = mpq(1)
        return d

    def linear_map(self, choice, per_direction=False):
        """The gradient of the pattern ``choice`` (f'(w; e_i) for every i). ``per_direction``: one
        numeric pass per unit vector (needed when a choice depends on the direction: "auto")."""
        if not (per_direction or not self.forms):
            try:
                return self.jacobian(choice)[0]
            except _ByDirection:
                pass
        return [self.tangent(self.unit(i), choice)[1] for i in range(self.P)]

    def _mv(self, A, b):
        """A @ b (exact). In a linear-form pass each row's form is accumulated in one dict (numpy's
        dot would copy a growing form at every term)."""
        if self._atoms is None:
            return A.dot(b)
        out = np.empty(A.shape[0], dtype=object)
        b = list(b)
        for r, row in enumerate(A.tolist()):
            acc = {}
            for a, v in zip(row, b):
                if isinstance(v, _Lin):
                    if isinstance(a, _Lin):
                        raise CheckFailed("symbolic tangent: a product of two tangents")
                    coef = v.coef
                    if a == 0:
                        continue
                elif isinstance(a, _Lin):
                    coef, a = a.coef, v
                    if a == 0:
                        continue
                elif a * v != 0:
                    raise CheckFailed("symbolic tangent: a constant term appeared in a tangent")
                else:
                    continue
                for col, x in coef.items():
                    acc[col] = acc.get(col, 0) + a * x
            out[r] = _Lin(self._atoms, acc)
        return out

    def _cols(self, tv):
        """A tangent's columns {j: value} in a linear-form pass (the number 0: none)."""
        if isinstance(tv, _Lin):
            return tv.coef
        if tv != 0:
            raise CheckFailed("symbolic tangent: a constant term appeared in a tangent")
        return {}

    def _columns(self, tv, fn):
        """The form whose column j is fn(column j of tv) (fn(0) = 0): a direction-dependent rule
        ("auto") applied to every unit-vector pass at once."""
        if self._inject is not None:
            raise CheckFailed("internal: a direction-dependent choice in a sensitivity pass")
        return _Lin(self._atoms, {j: fn(v) for j, v in self._cols(tv).items()})

    def _mark(self, key, tv):
        """In an ``inject`` pass: a tie's output tangent plus its own free column delta_k."""
        if self._inject is None:
            return tv
        col = self._inject.setdefault(key, self.P + len(self._inject))
        return _Lin(self._atoms, {col: mpq(1)}) + tv

    def _pool_choice(self, key, c, L, rec):
        """The window position (among ``rec[key]``'s) a fixed max-pool choice picks (``inject``)."""
        tied = sorted(rec[key])
        c = self.tie_break[L.index] if c == "proxy" else c
        if c in ("first", "left"):
            return tied[0]
        if c in ("last", "right"):
            return tied[-1]
        if isinstance(c, int) and not isinstance(c, bool) and c in tied:
            return c
        raise CheckFailed(f"tie {key}: choice {c!r} is not one entry (a sensitivity pass needs one)")

    def jacobian(self, choice, inject=False):
        """(gradient, {tie key: input functional (a list of P rationals), or {window position:
        functional} at a max-pool tie}, ties, {tie key: sensitivity s_k} with ``inject``) of the
        pattern ``choice`` (fixed choices: no "auto" or "symbolic"), by one linear-form pass (see
        the module docstring). Cached per pattern (the choices at the ties found)."""
        if not self.forms:
            if inject:
                raise CheckFailed("internal: no sensitivity pass for this network")
            g = self.linear_map(choice, per_direction=True)
            ties = self.tangent([mpq(0)] * self.P, choice)[3]
            cols = [self.tangent(self.unit(i), choice)[2] for i in range(self.P)]
            rec = {}
            for key, _, _ in ties:
                r0 = cols[0][key] if cols else None
                rec[key] = {p: [c[key][p] for c in cols] for p in r0} if isinstance(r0, dict) else [c[key] for c in cols]
            if not cols:
                rec = {key: ({p: [] for p in v} if isinstance(v, dict) else []) for key, v in self.tangent([], choice)[2].items()}
            return g, rec, ties, None
        if self._basis is None:
            atoms = {"P": self.P}
            d = _Basis(atoms, self.P)
            self._basis = (atoms, d, self.dW(d))
        atoms, d, dW = self._basis

        def fixed(key):
            c = choice(key)
            if c == "symbolic" or (c == "auto" and inject):
                raise _ByDirection(c)
            return c

        self._atoms, self._inject = atoms, ({} if inject else None)
        try:
            _, df, rec, ties = self.tangent(d, fixed, dW)
            cols = self._inject
        finally:
            self._atoms, self._inject = None, None
        P = self.P

        def vec(x):
            if isinstance(x, _Lin):
                return [mpq(x.coef.get(j, 0)) for j in range(P)]
            if x != 0:
                raise CheckFailed("symbolic tangent: a constant term appeared in a tangent")
            return [mpq(0)] * P

        out = {k: ({p: vec(v) for p, v in r.items()} if isinstance(r, dict) else vec(r)) for k, r in rec.items()}
        sens = None
        if inject:
            coef = df.coef if isinstance(df, _Lin) else {}
            sens = {k: mpq(coef.get(c, 0)) for k, c in cols.items()}
        return vec(df), out, ties, sens

    def functionals(self, prefix):
        """``jacobian``'s tie functionals with the ties of ``prefix`` as given and every other tie
        "left" (cached per prefix)."""
        return self._functionals_before(prefix, None)

    def functional(self, key, prefix):
        """The functional(s) of one tie under ``prefix``: only the choices at ties of earlier
        layers can change what arrives at the tie's layer (in an unrolled value-iteration block,
        also the choices at its earlier steps), so the pass is cached per those."""
        return self._functionals_before(prefix, key[0], key)[key]

    def _functionals_before(self, prefix, layer, key=None):
        if layer is not None:
            L = self.net.layers[layer] if layer < len(self.net.layers) else None
            if L is not None and L.op == "value_iteration":
                S = int(np.prod(L.out_shape))
                it = L.vi.method == "iterate"  # at a fixed point every tie of the sample is coupled
                prefix = {k: c for k, c in prefix.items() if k[0] < layer or (k[0] == layer and k[1] == key[1] and (it or k[2] // S < key[2] // S))}
            else:
                prefix = {k: c for k, c in prefix.items() if k[0] < layer}
        k = tuple(sorted(prefix.items(), key=lambda kv: kv[0]))
        if k not in self._jac:
            try:
                self._jac[k] = self.jacobian(lambda key: prefix.get(key, "left"))[1]
            except _ByDirection as exc:
                raise CheckFailed(f"a pattern's choice is {exc}, not a side or an entry") from None
        return self._jac[k]

    def one_sided(self, key, kind, extra):
        """(left, right) derivative at an elementwise or l1 tie."""
        if kind == "l1":
            return mpq(-1), mpq(1)
        L = self.net.layers[key[0]]
        kinks, derivs, _, _ = _table(L.act.name if L.op == "fixed_point" else L.op, _params(L))
        return derivs[next(i for i, at in enumerate(kinks) if str(at) == extra)]

    def _fixed_point(self, L, n, x, t, dW, choice, rec, ties):
        """The claimed fixed point z* (checked: z* = act(W z* + U x + b) exactly) and its tangent:
        (I - D W) dz = D r, r = dW z* + dU x + db + U t, with D the slopes at a* (a tie by its
        choice; "auto": the pattern whose pre-activation tangents have its signs)."""
        W, b = self.W[L.index]
        Wd, bd, Ud = dW[L.index]
        U = _q(L.fp.input_weight.values(self.net.theta))
        claimed = self.fixed_points.get(L.index)
        if claimed is None or n >= len(claimed):
            raise CheckFailed(f"layer {L.index}: the certificate claims no fixed point for sample {n}")
        z = np.array([mpq(v) for v in claimed[n]], dtype=object)
        kinks, derivs, val, der = _table(L.act.name, _params(L))
        a = W.dot(z) + U.dot(x) + (b if b is not None else mpq(0))
        if any(val(av) != zv for av, zv in zip(a, z)):
            raise CheckFailed(f"layer {L.index} sample {n}: the claimed z* is not a fixed point of z -> act(W z + U x + b)")
        r = Wd.dot(z) + Ud.dot(x) + U.dot(t) + (bd if bd is not None else mpq(0))
        m = len(z)
        slopes, tied, auto = [], [], []
        for u in range(m):
            k = next((k for k, at in enumerate(kinks) if a[u] == at), None)
            if k is None:
                slopes.append(der(a[u]))
                continue
            key = (L.index, n, u)
            ties.append((key, "act", str(kinks[k])))
            tied.append((u, key, k))
            c = choice(key)
            if c == "proxy":
                slopes.append(self.proxy[L.index][k])
            elif c in ("left", "right"):
                slopes.append(derivs[k][0 if c == "left" else 1])
            elif c == "auto":
                slopes.append(None)
                auto.append((u, k))
            else:
                raise CheckFailed(f"tie {key}: invalid choice {c!r}")
        Wl = W.tolist()
        for mask in range(2 ** len(auto)):
            D = list(slopes)
            for j, (u, k) in enumerate(auto):
                D[u] = derivs[k][(mask >> j) & 1]
            dz = _solve([[(1 if i == j else 0) - D[i] * Wl[i][j] for j in range(m)] for i in range(m)], [D[i] * r[i] for i in range(m)])
            if dz is None:
                raise CheckFailed(f"layer {L.index} sample {n}: I - D W is singular: no implicit derivative")
            da = W.dot(np.array(dz, dtype=object)) + r
            if all((da[u] <= 0) if not (mask >> j) & 1 else (da[u] >= 0) for j, (u, k) in enumerate(auto)):
                break
        else:
            raise CheckFailed(f"layer {L.index} sample {n}: no one-sided pattern is consistent with the direction")
        for u, key, k in tied:
            rec[key] = da[u]
        return z, np.array(dz, dtype=object)
