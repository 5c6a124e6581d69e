# >>> kinkcheck:docstring - replaced by the exporter's account of the counterexample and of what each run asserts
"""The torch test file's template: ``kinkcheck export-test CEX.json --framework torch`` fills it.

Its placeholder data is the export of proofs/examples/relu_minus_relu.json (float32, f(w) =
relu(w) - relu(-w) at w = 0), so this module is itself a passing test file. Three runs of the
network: exact (fractions.Fraction), the spec's machine run (bit for bit), and the torch way
(torch.nn.functional and autograd), of which only what no summation order can change is asserted.
"""
# <<< kinkcheck:docstring

import math
from fractions import Fraction

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional


# >>> kinkcheck:data - replaced by the counterexample's constants (placeholder: proofs/examples/relu_minus_relu.json)
NET = {
    "dtype": "float32",
    "params": [{"name": "w", "shape": [], "offset": 0, "size": 1, "trainable": True}],
    "theta": ["0x0p+0"],
    "grad_index": [0],
    "in_shape": [1],
    "inputs": [["0x1p+0"]],
    "targets": None,
    "out_shape": [1],
    "layers": [
        {
            "op": "linear",
            "in_size": 1,
            "in_shape": [1],
            "out_shape": [2],
            "out": 2,
            "in": 1,
            "weight": [["p", 0, 1], ["p", 0, -1]],
            "weight_param": None,
            "bias": None,
            "bias_param": None,
        },
        {
            "op": "relu",
            "in_size": 2,
            "in_shape": [2],
            "out_shape": [2],
            "kinks": ["0x0p+0"],
            "pieces": [
                {"value": ["c", "0", "0x0p+0"], "deriv": ["c", "0", "0x0p+0"]},
                {"value": ["x"], "deriv": ["c", "1", "0x1p+0"]},
            ],
            "proxies": [["0", "0x0p+0"]],
            "left": [["0", "0x0p+0"]],
            "right": [["1", "0x1p+0"]],
            "builtin": True,
        },
        {
            "op": "linear",
            "in_size": 2,
            "in_shape": [2],
            "out_shape": [1],
            "out": 1,
            "in": 2,
            "weight": [["c", "0x1p+0"], ["c", "-0x1p+0"]],
            "weight_param": None,
            "bias": None,
            "bias_param": None,
        },
    ],
    "loss": {
        "op": "sum",
        "reduction": "mean",
        "count": ["1", "0x1p+0"],
        "one": ["1", "0x1p+0"],
    },
}
FLOAT_TIES = [[1, 0, 0], [1, 0, 1]]
REAL_TIES = [[1, 0, 0], [1, 0, 1]]
BRANCH_MISMATCH = []
MACHINE_AD = ["0x0p+0"]
EXACT_AD = ["0"]
GRADIENT = ["1"]
AD_CORRECT = False
MISMATCH = []
ALL_AT_ONCE = True
CHOICE_CAUSES = [[1, 0, 0, "right"], [1, 0, 1, "right"]]
CHOICE_WITNESS = [[1, 0, 0, "right"]]
TORCH_UNITS = [[1, 0, 0, ["=", "0x0p+0"]], [1, 0, 1, ["=", "0x0p+0"]]]
TORCH_WINDOWS = []
TORCH_TIES = [[1, 0, 0], [1, 0, 1]]
TORCH_GRAD = [["=", "0x0p+0"]]
TORCH_DIFFERS = []
TORCH_LEFT = [["=", "0x0p+0"]]
TORCH_RIGHT = [["=", "0x1p+1"]]
TORCH_CHOICE = [0]
TORCH_BUILTIN = [1]
# <<< kinkcheck:data

# >>> kinkcheck:engine - replaced by the source of kinkcheck.testgen.engine.ENGINE (stdlib only: the generated file needs no kinkcheck)
from kinkcheck.testgen.engine import Exact, Spec, backward, forward, ties_of

# <<< kinkcheck:engine

DT = getattr(torch, NET["dtype"])


def rnd(v):
    """A binary64 value rounded to nearest-even into the dtype (torch's conversion)."""
    return torch.tensor(v, dtype=torch.float64).to(DT).item()


def tensor(hexes, shape):
    return torch.tensor([float.fromhex(h) for h in hexes], dtype=torch.float64).to(DT).reshape(shape)


def build():
    """Leaf tensors of the params (exact values) and a function giving one flat entry."""
    leaves, where = {}, {}
    for p in NET["params"]:
        t = tensor(NET["theta"][p["offset"] : p["offset"] + p["size"]], p["shape"])
        leaves[p["name"]] = t.requires_grad_(p["trainable"])
        for k in range(p["size"]):
            where[p["offset"] + k] = (p["name"], k)

    def entry(e):
        if e[0] == "c":
            return torch.tensor(float.fromhex(e[1]), dtype=DT)
        name, k = where[e[1]]
        v = leaves[name].reshape(-1)[k]
        return -v if e[2] < 0 else v

    def weight(entries, direct, shape):
        if direct is not None:
            return leaves[direct].reshape(shape)
        return torch.stack([entry(e) for e in entries]).reshape(shape)

    return leaves, weight


class Kinked(torch.autograd.Function):
    """torch's own activation, forward and backward, except at inputs exactly on a kink, where the
    gradient is g * d for the given derivative d (a proxy choice)."""

    @staticmethod
    def forward(ctx, x, fn, kinks, derivs):
        ctx.save_for_backward(x)
        ctx.fn, ctx.kinks, ctx.derivs = fn, kinks, derivs
        return fn(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            xx = x.detach().requires_grad_()
            (gx,) = torch.autograd.grad(ctx.fn(xx), xx, g)
        for k, d in zip(ctx.kinks, ctx.derivs):
            gx = torch.where(x == k, g * torch.tensor(d, dtype=DT), gx)
        return gx, None, None, None


class Pool(torch.autograd.Function):
    """Max over index windows; the gradient goes to the first or last maximal entry or is split,
    or (rule = (beta, 1 - beta), J_beta) s = (beta*g)/count to every tied entry and s + (1-beta)*g
    to the first."""

    @staticmethod
    def forward(ctx, x, idx, rule):
        win = x[:, idx]
        m = win.max(dim=-1).values
        ctx.save_for_backward(win == m.unsqueeze(-1))
        ctx.idx, ctx.rule, ctx.size = idx, rule, x.shape[1]
        return m

    @staticmethod
    def backward(ctx, g):
        (eq,) = ctx.saved_tensors
        K = eq.shape[-1]
        cnt = eq.sum(-1, keepdim=True)
        if ctx.rule == "split":
            T = torch.where(eq, g.unsqueeze(-1) / cnt.clamp(min=1).to(g.dtype), torch.zeros((), dtype=g.dtype))
        elif isinstance(ctx.rule, tuple):
            beta, c = ctx.rule
            pos = torch.arange(K).expand_as(eq)
            first = torch.where(eq, K - pos, -1).argmax(-1, keepdim=True)
            s = (g * beta).unsqueeze(-1) / cnt.to(g.dtype)
            F1 = torch.zeros(eq.shape, dtype=torch.bool).scatter(-1, first, True)
            tie = cnt >= 2
            T = torch.where(eq & tie, torch.where(F1, s + (g * c).unsqueeze(-1), s), torch.zeros((), dtype=g.dtype))
            T = torch.where(F1 & ~tie, g.unsqueeze(-1), T)
        else:
            pos = torch.arange(K).expand_as(eq)
            key = torch.where(eq, pos if ctx.rule == "last" else K - pos, -1)
            T = torch.zeros(eq.shape, dtype=g.dtype).scatter(-1, key.argmax(-1, keepdim=True), g.unsqueeze(-1))
        gin = torch.zeros(g.shape[0], ctx.size, dtype=g.dtype)
        return gin.index_add(1, ctx.idx.reshape(-1), T.reshape(g.shape[0], -1)), None, None


def builtin(L):
    op = L["op"]
    if op == "relu":
        return F.relu
    if op == "leaky_relu":
        return lambda x: F.leaky_relu(x, float.fromhex(L["negative_slope"]))
    if op in ("hardtanh", "relu6"):
        return lambda x: F.hardtanh(x, float.fromhex(L["min_val"]), float.fromhex(L["max_val"]))
    if op == "hardsigmoid":
        return F.hardsigmoid
    if op == "hardswish":
        return F.hardswish
    if op == "abs":
        return torch.abs
    return lambda x: x


def activation(L, x, mode):
    fn = builtin(L)
    if not L["kinks"] or (mode is None and L["builtin"]):
        return fn(x)
    derivs = [float.fromhex(h) for _, h in L["proxies" if mode is None else mode]]
    return Kinked.apply(x, fn, [float.fromhex(k) for k in L["kinks"]], derivs)


def torch_run(mode=None):
    """The network the torch way: torch.nn.functional ops and autograd. mode None: the file's
    convention (torch's own backward where it is that convention, Kinked/Pool where not);
    "left" / "right": every kink's one-sided derivative, max-pool first / last maximal entry.
    Returns ({layer: input tensor, "residual": out - target}, gradient as a list of floats)."""
    leaves, weight = build()
    N = len(NET["inputs"])
    x = tensor([h for row in NET["inputs"] for h in row], [N] + NET["in_shape"])
    seen = {}
    for li, L in enumerate(NET["layers"]):
        seen[li] = x
        op = L["op"]
        if op in ("linear", "conv2d"):
            W = weight(L["weight"], L["weight_param"], [L["out"], -1])
            b = weight(L["bias"], L["bias_param"], [-1]) if L["bias"] is not None else None
        if op == "linear":
            x = F.linear(x, W, b)
        elif op == "conv2d":
            # unfold + one matrix product: the sums are the spec's dot products (no Winograd/FFT)
            y = W @ F.unfold(x, L["kernel"], padding=L["padding"], stride=L["stride"])
            x = (y if b is None else y + b.reshape(-1, 1)).reshape([N] + L["out_shape"])
        elif op in ("maxpool1d", "maxpool2d") and (mode is not None or L["rule"] != "first"):
            rule = L["rule"] if mode is None else ("first" if mode == "left" else "last")
            if rule == "beta":
                rule = tuple(float.fromhex(h) for _, h in L["beta"])
            x = Pool.apply(x.reshape(N, -1), torch.tensor(L["windows"]), rule).reshape([N] + L["out_shape"])
        elif op == "maxpool2d":
            x = F.max_pool2d(x, L["kernel"], L["stride"])
        elif op == "maxpool1d":
            x = F.max_pool1d(x.reshape(N, -1, L["in_shape"][-1]), L["kernel"][0], L["stride"][0]).reshape([N] + L["out_shape"])
        elif op == "avgpool2d":
            x = F.avg_pool2d(x, L["kernel"], L["stride"])
        elif op == "flatten":
            x = x.reshape(N, -1)
        else:
            x = activation(L, x, mode)
    out = x.reshape(N, -1)
    lo = NET["loss"]
    T = tensor([h for row in NET["targets"] for h in row], [N, -1]) if NET["targets"] is not None else None
    if lo["op"] == "sum":
        loss = out.sum()
    elif lo["op"] == "dot":
        loss = (T * out).sum()
    elif lo["op"] == "mse":
        seen["residual"] = out - T
        loss = F.mse_loss(out, T, reduction=lo["reduction"])
    else:
        seen["residual"] = out - T
        if mode is None and lo["abs"]["builtin"]:
            loss = F.l1_loss(out, T, reduction=lo["reduction"])
        else:
            a = activation(lo["abs"], out - T, mode)
            loss = a.mean() if lo["reduction"] == "mean" else a.sum()
    if loss.requires_grad:
        loss.backward()
    grad = []
    for p in NET["params"]:
        if p["trainable"]:
            t = leaves[p["name"]]
            grad += t.grad.reshape(-1).tolist() if t.grad is not None else [0.0] * p["size"]
    return seen, grad


def unit_value(seen, layer, sample, unit):
    if layer == len(NET["layers"]):
        return seen["residual"][sample].reshape(-1)[unit].item()
    return seen[layer][sample].reshape(-1)[unit].item()


def check(value, prediction):
    """A prediction is ["=", hex] (every summation order gives this float) or ["in", lo, hi] (every
    order gives a value in [lo, hi], exact rationals)."""
    if prediction[0] == "=":
        return value == float.fromhex(prediction[1])
    return Fraction(prediction[1]) <= Fraction(value) <= Fraction(prediction[2])


def same(a, b):
    """Equal as numbers (-0 == +0, NaN == NaN)."""
    return all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b))

def test_exact_run_real_ties_and_ad_output():
    A = Exact()
    fw = forward(A, NET)
    assert ties_of(fw) == REAL_TIES
    assert backward(A, NET, fw) == [Fraction(q) for q in EXACT_AD]


def test_spec_machine_run_bit_for_bit():
    A = Spec(rnd)
    fw = forward(A, NET)
    assert ties_of(fw) == FLOAT_TIES
    assert [v.hex() for v in backward(A, NET, fw)] == [float.fromhex(h).hex() for h in MACHINE_AD]


def test_branch_mismatch():
    """Units whose branch (piece, kink, maximal entries) differs between the float and exact runs."""
    fs, fe = forward(Spec(rnd), NET), forward(Exact(), NET)
    assert sorted(list(k) for k in fs["branch"] if fs["branch"][k] != fe["branch"][k]) == BRANCH_MISMATCH


def test_float_ad_versus_exact_ad():
    """Entries where the float AD output is not the exact one: [entry, ulp of the float, distance in ulps]."""
    A, E = Spec(rnd), Exact()
    machine, exact = backward(A, NET, forward(A, NET)), backward(E, NET, forward(E, NET))
    found = []
    for i, (m, e) in enumerate(zip(machine, exact)):
        if math.isfinite(m) and Fraction(m) != e:
            ulp = [u for j, u, _ in MISMATCH if j == i]
            found.append([i, ulp[0] if ulp else None, str(abs(Fraction(m) - e) / Fraction(float.fromhex(ulp[0]))) if ulp else None])
    assert found == MISMATCH


# >>> kinkcheck:if_choice - kept when the float AD output is choice-sensitive
def test_choice_sensitivity():
    """The float AD output changes when the float ties of CHOICE_WITNESS take the listed options
    ([layer, sample, unit, option]: "left" / "right" one-sided derivative, or the flat input
    position of the tied max-pool entry that takes the gradient; the other ties keep the file's
    proxies), and when each tie of CHOICE_CAUSES takes its option alone. ALL_AT_ONCE: every float tie
    on its left versus its right one-sided derivative (max-pool: first versus last maximal entry)."""
    A = Spec(rnd)
    fw = forward(A, NET)
    base = backward(A, NET, fw)
    assert (not same(backward(A, NET, fw, "left"), backward(A, NET, fw, "right"))) is ALL_AT_ONCE
    for *key, option in CHOICE_CAUSES:
        assert not same(backward(A, NET, fw, {tuple(key): option}), base)
    assert not same(backward(A, NET, fw, {tuple(key): option for *key, option in CHOICE_WITNESS}), base)
# <<< kinkcheck:if_choice


# >>> kinkcheck:if_gradient - kept when kinkcheck decided the gradient
def test_exact_ad_versus_gradient():
    """f is differentiable at w with the gradient GRADIENT (kinkcheck's exact decision)."""
    A = Exact()
    ad = backward(A, NET, forward(A, NET))
    assert (ad == [Fraction(q) for q in GRADIENT]) is AD_CORRECT
# <<< kinkcheck:if_gradient


# >>> kinkcheck:if_builtin - kept when a layer relies on torch's own derivative at a kink
def test_torch_convention_at_kinks():
    """torch's own backward at the kinks is the convention this file assumes (torch 2.13 CPU)."""
    for li in TORCH_BUILTIN:
        L = NET["loss"]["abs"] if li == len(NET["layers"]) else NET["layers"][li]
        if L["op"] in ("maxpool1d", "maxpool2d"):
            x = torch.tensor([[[1.0, 1.0]]], dtype=DT, requires_grad=True)
            F.max_pool1d(x, 2).sum().backward()
            assert x.grad.tolist() == [[[1.0, 0.0]]], "max-pool ties no longer go to the first entry"
            continue
        for k, (_, d) in zip(L["kinks"], L["proxies"]):
            x = torch.tensor([float.fromhex(k)], dtype=DT, requires_grad=True)
            (F.l1_loss(x, x.detach(), reduction="sum") if li == len(NET["layers"]) else builtin(L)(x)).sum().backward()
            assert x.grad.item() == float.fromhex(d), f"{L['op']}'({float.fromhex(k)}) is not {float.fromhex(d)}"
# <<< kinkcheck:if_builtin


# >>> kinkcheck:if_torch_units - kept when torch's values entering a tie unit are known
def test_torch_tie_units():
    """The values entering the tie units in torch's run: exactly where every summation order gives
    the same float, else within bounds valid for every order (the ties of TORCH_TIES follow)."""
    seen, _ = torch_run()
    for layer, sample, unit, prediction in TORCH_UNITS:
        assert check(unit_value(seen, layer, sample, unit), prediction), (layer, sample, unit)
    for layer, sample, w, idx, predictions in TORCH_WINDOWS:
        vals = [seen[layer][sample].reshape(-1)[i].item() for i in idx]
        assert all(check(v, p) for v, p in zip(vals, predictions)), (layer, sample, w)
    for layer, sample, unit in TORCH_TIES:
        if layer < len(NET["layers"]) and NET["layers"][layer]["op"] in ("maxpool1d", "maxpool2d"):
            vals = [seen[layer][sample].reshape(-1)[i].item() for i in NET["layers"][layer]["windows"][unit]]
            assert vals.count(max(vals)) >= 2
        else:
            kinks = NET["loss"]["abs"]["kinks"] if layer == len(NET["layers"]) else NET["layers"][layer]["kinks"]
            assert unit_value(seen, layer, sample, unit) in [float.fromhex(k) for k in kinks]
# <<< kinkcheck:if_torch_units


# >>> kinkcheck:if_torch_ad - kept when some entry of torch's AD output is known
def test_torch_ad_output():
    """torch's AD output: each entry of TORCH_GRAD exactly or within bounds valid for every
    summation order (None: not asserted); entries TORCH_DIFFERS differ from the exact AD output."""
    _, grad = torch_run()
    for i, prediction in enumerate(TORCH_GRAD):
        if prediction is not None:
            assert check(grad[i], prediction), i
    for i in TORCH_DIFFERS:
        assert Fraction(grad[i]) != Fraction(EXACT_AD[i])
# <<< kinkcheck:if_torch_ad


# >>> kinkcheck:if_torch_choice - kept when torch's run is choice-sensitive in every order
def test_torch_choice_sensitivity():
    """torch's run with every kink's left versus right one-sided derivative (Kinked / Pool): the
    entries TORCH_CHOICE differ in every summation order."""
    _, left = torch_run("left")
    _, right = torch_run("right")
    for i, (a, b) in enumerate(zip(TORCH_LEFT, TORCH_RIGHT)):
        assert a is None or check(left[i], a), i
        assert b is None or check(right[i], b), i
    assert all(left[i] != right[i] for i in TORCH_CHOICE)
# <<< kinkcheck:if_torch_choice
