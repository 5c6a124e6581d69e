"""The zone picture: the float and the exact value of a kink's argument on a random plane of
ulp perturbations of the parameters feeding one tie (``zone_plane``), which event to draw, and
the plot.
"""

from __future__ import annotations

from ..encodings.errors import InputError
from .models import _pool_k, _torch


def _step_ulps(vals, n):
    """vals (numpy float array) moved by n[k] ulps each (n integer array; nextafter steps)."""
    import numpy as np

    v = vals.copy()
    rem = n.copy()
    inf = np.array(np.inf, dtype=v.dtype)
    while np.any(rem != 0):
        up, dn = rem > 0, rem < 0
        v = np.where(up, np.nextafter(v, inf), np.where(dn, np.nextafter(v, -inf), v))
        rem = rem - up.astype(rem.dtype) + dn.astype(rem.dtype)
    return v


def zone_plane(model, xb, layer: int, sample: int, unit: int, *, grid: int = 41, seed: int = 0) -> dict:
    """The zone around one float tie of ``model`` on the minibatch ``xb``, on a random 2-D plane of
    integer-ulp perturbations of the parameters that feed it directly (the Linear row / Conv2d
    filter and bias): grid point (i, j) moves each such parameter k by i*a_k + j*b_k ulps (a, b
    random in {-1, 0, 1}; i, j in [-(grid-1)/2, (grid-1)/2]; nextafter steps, so every point is a
    machine number).

    The quantity is the kink's argument: a ReLU's input (``model[layer]`` a ReLU after a Linear, or
    after the first Conv2d -> MaxPool2d), or, for a max-pool tie (``model[layer]`` the MaxPool2d
    right after the first Conv2d), the gap between the window's first two tied entries. ``float``:
    as PyTorch computes it (the same module calls on the same minibatch shape as in training);
    ``exact``: in rationals (gmpy2) from the exact inputs of that layer. Returns the magnitudes
    (floats, for the picture), the exact zero sets of both, and the exact values."""
    import gmpy2
    import numpy as np

    torch = _torch()
    nn = torch.nn
    mods = list(model)
    op = "relu" if type(mods[layer]) is nn.ReLU else "maxpool2d" if type(mods[layer]) is nn.MaxPool2d else None
    if op == "relu" and layer >= 1 and type(mods[layer - 1]) is nn.Linear:
        plin, pool = layer - 1, None
    elif type(mods[0]) is nn.Conv2d and type(mods[1]) is nn.MaxPool2d and (op, layer) in (("relu", 2), ("maxpool2d", 1)):
        plin, pool = 0, _pool_k(mods[1])
    else:
        raise InputError(f"layer {layer}: the zone picture supports a ReLU after a Linear or after the first Conv2d -> MaxPool2d, and the first MaxPool2d after a Conv2d")
    pm = mods[plin]
    np_dt = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}.get(pm.weight.dtype)
    if np_dt is None:
        raise InputError(f"the zone picture supports float16/32/64, not {pm.weight.dtype}")
    with torch.no_grad():
        h = xb
        for m in mods[:plin]:
            h = m(h)
    # exact inputs of the parameter layer for this sample: the exact forward of the (MLP) prefix
    hx = [gmpy2.mpq(float(v)) for v in xb[sample].reshape(-1).tolist()]
    for m in mods[:plin]:
        if type(m) is nn.Linear:
            W = [[gmpy2.mpq(float(v)) for v in row] for row in m.weight.detach().double().tolist()]
            b = [gmpy2.mpq(float(v)) for v in m.bias.detach().double().tolist()]
            hx = [sum((w * x for w, x in zip(row, hx)), gmpy2.mpq(0)) + bb for row, bb in zip(W, b)]
        elif type(m) is nn.ReLU:
            hx = [v if v > 0 else gmpy2.mpq(0) for v in hx]
        else:  # pragma: no cover - MLP prefixes only
            raise InputError(f"zone picture: unsupported layer {type(m).__name__} before the tie")
    if pool is None:
        ch, fan = unit, pm.weight.shape[1]
        where = [None]
        patches = [list(range(fan))]
    else:
        C, H, W_ = xb.shape[1:]
        kh, kw = pm.weight.shape[2:]
        Ho, Wo = (H - kh + 1) // pool, (W_ - kw + 1) // pool
        ch, rest = divmod(unit, Ho * Wo)
        oy, ox = divmod(rest, Wo)
        where = [(oy * pool + dy, ox * pool + dx) for dy in range(pool) for dx in range(pool)]
        patches = [[c * H * W_ + (y0 + i) * W_ + (x0 + j) for c in range(C) for i in range(kh) for j in range(kw)] for y0, x0 in where]

    def entries_float():
        z = pm(h)
        if pool is None:
            return [float(z[sample, ch])]
        return [float(z[sample, ch, y0, x0]) for y0, x0 in where]

    pair = None
    if op == "maxpool2d":
        with torch.no_grad():
            e0 = entries_float()
        tied = [k for k, v in enumerate(e0) if v == max(e0)]
        if len(tied) < 2:
            raise InputError(f"layer {layer} sample {sample} unit {unit}: no max-pool tie there")
        pair = tied[:2]

    def quantity(ent):
        return ent[pair[0]] - ent[pair[1]] if pair else max(ent)

    w0 = pm.weight.detach()[ch].reshape(-1).double().numpy().astype(np_dt)
    b0 = np.array([float(pm.bias.detach()[ch])], dtype=np_dt)
    vals = np.concatenate([w0, b0])
    rng = np.random.default_rng(seed)
    a = rng.integers(-1, 2, size=vals.size)
    c2 = rng.integers(-1, 2, size=vals.size)
    r = (grid - 1) // 2
    ticks = list(range(-r, r + 1))
    ii, jj = np.meshgrid(np.array(ticks), np.array(ticks), indexing="ij")
    offs = ii.reshape(-1, 1) * a[None, :] + jj.reshape(-1, 1) * c2[None, :]
    V = _step_ulps(np.broadcast_to(vals, offs.shape).copy(), offs).reshape(grid, grid, -1)
    qf = [[None] * grid for _ in range(grid)]
    qx = [[None] * grid for _ in range(grid)]
    wsave, bsave = pm.weight.detach().clone(), pm.bias.detach().clone()
    try:
        for gi in range(grid):
            for gj in range(grid):
                v = V[gi, gj]
                with torch.no_grad():
                    pm.weight[ch] = torch.tensor(v[:-1].astype(np.float64)).reshape(pm.weight.shape[1:]).to(pm.weight.dtype)
                    pm.bias[ch] = float(v[-1])
                    qf[gi][gj] = quantity([gmpy2.mpq(e) for e in entries_float()])  # exact difference of floats
                wq = [gmpy2.mpq(float(t)) for t in v]
                qx[gi][gj] = quantity([sum((wq[k] * hx[p] for k, p in enumerate(ps)), gmpy2.mpq(0)) + wq[-1] for ps in patches])
    finally:
        with torch.no_grad():
            pm.weight.copy_(wsave)
            pm.bias.copy_(bsave)
    return {
        "op": op, "layer": layer, "sample": sample, "unit": unit, "pair": pair, "ticks": ticks,
        "dtype": str(pm.weight.dtype).replace("torch.", ""),
        "float": qf, "exact": qx,
        "float_abs": np.array([[abs(float(v)) for v in row] for row in qf]),
        "exact_abs": np.array([[abs(float(v)) for v in row] for row in qx]),
        "float_zero": np.array([[v == 0 for v in row] for row in qf]),
        "exact_zero": np.array([[v == 0 for v in row] for row in qx]),
    }


def _zone_supported(arch, layer, op):
    if op == "relu":
        return arch == "mlp" or layer == 2
    return arch == "cnn" and op == "maxpool2d" and layer == 1


def _pick_zone_event(result):
    """The first classified event (float16/32/64) with a tie the zone picture supports, ReLU ties
    first."""
    arch = result.config["arch"]
    for want in ("relu", "maxpool2d"):
        for r in result.runs:
            if r["dtype"] == "bfloat16":
                continue
            steps = {c["step"] for c in r["classified"]}
            for ev in r["event_list"]:
                if ev["step"] not in steps:
                    continue
                for layer, op, n, u in ev["ties"]:
                    if op == want and _zone_supported(arch, layer, op):
                        return r, ev, (layer, n, u)
    return None


def _plot_zone(z, path, title):
    import matplotlib.pyplot as plt
    import numpy as np

    what = "gap between the two tied max-pool entries" if z["op"] == "maxpool2d" else "pre-activation (ReLU input)"
    zf, zx = z["float_abs"], z["exact_abs"]
    pos = np.concatenate([zf[zf > 0], zx[zx > 0]])
    lo, hi = (np.log10(pos.min()), np.log10(pos.max())) if pos.size else (-1, 0)
    t = np.array(z["ticks"])
    r = int(t[-1])
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 5.0), sharey=True)
    fig.subplots_adjust(bottom=0.2, top=0.82)
    im = None
    for ax, vals, name in ((axes[0], zf, f"{z['dtype']}, computed by PyTorch"), (axes[1], zx, "exact")):
        img = np.where(vals > 0, np.log10(np.where(vals > 0, vals, 1)), np.nan)
        im = ax.imshow(img, origin="lower", extent=(-r - 0.5, r + 0.5, -r - 0.5, r + 0.5), vmin=lo, vmax=hi, cmap="viridis")
        ii, jj = np.nonzero(z["float_zero"])
        ax.scatter(t[jj], t[ii], s=10, c="red", marker="s", label="float zero set (PyTorch's value is 0)")
        ii, jj = np.nonzero(z["exact_zero"])
        ax.scatter(t[jj], t[ii], s=40, facecolors="none", edgecolors="black", marker="o", label="exact zero set (the real tie)")
        ax.set_title(f"|{what}|\n{name}", fontsize=9)
        ax.set_xlabel("direction 2 (grid step: 0 or 1 ulp per parameter)")
    axes[0].set_ylabel("direction 1 (grid step: 0 or 1 ulp per parameter)")
    fig.colorbar(im, ax=axes, label="log10 |value| (blank: exactly 0)", shrink=0.85)
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=100)
    plt.close(fig)
