"""Benchmark: ``kinkcheck.verify`` on a 784-256-256-10 float32 MLP (random weights, batch 32, mse)
against a plain numpy float64 forward+backward of the same network, measured in the same run.

    python benchmarks/bench_verify.py [--repeat 31] [--values] [--kernels auto|numba|numpy]

The two are measured interleaved (baseline, verify, baseline, verify, ...) after a warm-up, with
one BLAS thread on both sides (threadpoolctl when installed, plus the environment variables), and
the medians and their ratio are printed: these machines are shared and noisy, compare ratios,
never absolute seconds. ``--values`` also computes the exact and machine AD outputs, and times
the machine AD output of every parameter (machine forward + backward) against the same baseline, and
the exact half of ``--values`` (exact forward + exact AD of every parameter as rationals, then with
their report strings) and the whole command ``kinkcheck verify FILE --values --json`` in a fresh
process, each with its own baseline measured interleaved with it (medians and ratio of the minima).
Measured (shared machine, noisy; before -> after the scaled-integer exact path): exact half
759x -> 371x, with strings 966x -> 466x, whole command 1,848x -> 1,347x (minima 1,663x -> 1,263x). ``--kernels``
picks the machine kernels (kinkcheck.encodings.kernels; default: the library's own choice, which
switches to the compiled kernels during the warm-up when numba is installed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# one BLAS thread for both sides: on a shared 2-core machine multi-threaded BLAS spin-waits and the
# baseline varies by 100x between runs
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

sys.path.append(str(Path(__file__).resolve().parent.parent))


def make_doc(sizes=(784, 256, 256, 10), batch=32, seed=0):
    rng = np.random.default_rng(seed)
    params, layers = {}, []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        W = (rng.standard_normal((b, a)) / np.sqrt(a)).astype(np.float32)
        bias = (0.1 * rng.standard_normal(b)).astype(np.float32)
        params[f"W{i}"] = {"shape": [b, a], "values": W.astype(np.float64).tolist()}
        params[f"b{i}"] = {"shape": [b], "values": bias.astype(np.float64).tolist()}
        layers.append({"op": "linear", "weight": f"W{i}", "bias": f"b{i}"})
        if i < len(sizes) - 2:
            layers.append({"op": "relu"})
    X = rng.random((batch, sizes[0])).astype(np.float32)
    Y = rng.standard_normal((batch, sizes[-1])).astype(np.float32)
    doc = {
        "kinkcheck": 1,
        "dtype": "float32",
        "params": params,
        "inputs": {"shape": list(X.shape), "values": X.astype(np.float64).tolist()},
        "targets": {"shape": list(Y.shape), "values": Y.astype(np.float64).tolist()},
        "layers": layers,
        "loss": {"op": "mse"},
    }
    return doc, (params, X, Y)


def numpy_baseline(Ws, bs, X, Y):
    """float64 forward + backward of the MLP with relu and mse (mean)."""
    hs = [X]
    pre = []
    h = X
    for i, (W, b) in enumerate(zip(Ws, bs)):
        z = h @ W.T + b
        pre.append(z)
        h = np.maximum(z, 0) if i < len(Ws) - 1 else z
        hs.append(h)
    r = h - Y
    loss = np.mean(r * r)
    g = 2 * r / r.size
    grads = []
    for i in reversed(range(len(Ws))):
        if i < len(Ws) - 1:
            g = g * (pre[i] > 0)
        grads.append((g.T @ hs[i], g.sum(0)))
        g = g @ Ws[i]
    return loss, grads


def best(fn, repeat):
    ts = []
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return min(ts), out


def interleaved(fns, repeat, warmup=5):
    """Median time of each function, measured round-robin (so load changes hit all alike)."""
    for _ in range(warmup):
        for f in fns:
            f()
    ts = [[] for _ in fns]
    for _ in range(repeat):
        for k, f in enumerate(fns):
            t = time.perf_counter()
            f()
            ts[k].append(time.perf_counter() - t)
    return [(float(np.median(t)), min(t)) for t in ts]


def single_threaded_blas():
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=1)
    except ImportError:  # the environment variables above still apply
        import contextlib

        return contextlib.nullcontext()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=31)
    ap.add_argument("--values", action="store_true")
    ap.add_argument("--kernels", choices=("auto", "numba", "numpy"), default=None)
    args = ap.parse_args(argv)
    import kinkcheck

    try:
        from kinkcheck.encodings import kernels
    except ImportError:  # a kinkcheck from before the kernels (for before/after comparisons)
        kernels = None
    if args.kernels and kernels is not None:
        kernels.set_mode(args.kernels)
    doc, (params, X, Y) = make_doc()
    Ws = [np.array(params[f"W{i}"]["values"]) for i in range(3)]
    bs = [np.array(params[f"b{i}"]["values"]) for i in range(3)]
    X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
    t_load, net = best(lambda: kinkcheck.load(doc), 1)
    with single_threaded_blas():
        rep = kinkcheck.verify(net, values=args.values or None)
        n_verify = min(args.repeat, 3) if args.values else args.repeat  # --values: seconds per call (exact AD)
        (t_np, m_np), (t_kc, m_kc) = interleaved(
            [lambda: numpy_baseline(Ws, bs, X64, Y64), lambda: kinkcheck.verify(net, values=args.values or None)], n_verify, warmup=1 if args.values else 5
        )
    values_rows = []
    if args.values:
        # the machine AD output of every parameter (machine forward + spec-order backward), the
        # computation behind --values' machine_ad, against the same baseline, interleaved
        from kinkcheck.encodings import program as P
        from kinkcheck.encodings.machine import MachineArith

        proxies = P.resolve_proxies(net, net.convention)

        def machine_ad():
            MA = MachineArith(net.fmt)
            return P.backward(net, MA, P.forward(net, MA), proxies)

        with single_threaded_blas():
            (b2, mb2), (t_mad, m_mad) = interleaved([lambda: numpy_baseline(Ws, bs, X64, Y64), machine_ad], args.repeat)
        values_rows.append(("machine AD of every parameter (fwd+bwd)", t_mad, m_mad, b2, mb2))
        from kinkcheck.encodings import fmt as _fmt

        out_ad_arr = machine_ad()
        hexes = (lambda: _fmt.hexf_all(net.fmt, out_ad_arr)) if hasattr(_fmt, "hexf_all") else (lambda: [net.fmt.to_hex(float(v)) for v in out_ad_arr])
        t_str, _ = best(hexes, 3)
        values_rows.append(("  + hex strings of the output", t_mad + t_str, m_mad + t_str, b2, mb2))
        # the exact half: exact forward + exact AD as rationals, and their report strings
        from kinkcheck.encodings.exact import ExactArith

        def exact_ad():
            fw = P.forward(net, ExactArith())
            return P.backward(net, fw.A, fw, proxies)

        def exact_ad_strings():
            from kinkcheck.encodings import fmt

            ad = exact_ad()
            return fmt.rat_all(ad) if hasattr(fmt, "rat_all") else [fmt.rat(v) for v in ad]

        with single_threaded_blas():
            (b3, mb3), (t_ead, m_ead), (t_eads, m_eads) = interleaved(
                [lambda: numpy_baseline(Ws, bs, X64, Y64), exact_ad, exact_ad_strings], n_verify, warmup=1
            )
        values_rows.append(("exact fwd + AD of every parameter (mpq)", t_ead, m_ead, b3, mb3))
        values_rows.append(("  + their p/q strings", t_eads, m_eads, b3, mb3))
        # the whole command in a fresh process: start-up, JSON load, verify, JSON report
        import json
        import subprocess
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "P1.json")
            with open(path, "w") as f:
                json.dump(doc, f)
            cmd = [sys.executable, "-c", "import sys; from kinkcheck.cli import main; sys.argv[0] = 'kinkcheck'; main()", "verify", path, "--values", "--json"]

            def command():
                subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)

            with single_threaded_blas():
                (b4, mb4), (t_cmd, m_cmd) = interleaved([lambda: numpy_baseline(Ws, bs, X64, Y64), command], n_verify, warmup=1)
        values_rows.append(("full command: verify FILE --values --json", t_cmd, m_cmd, b4, mb4))
    path = "numba" if kernels is not None and kernels.mode() != "numpy" and "numba" in sys.modules else "numpy"
    print(f"network: 784-256-256-10 float32 MLP, batch 32, mse; real ties {len(rep.real_ties)}, float ties {len(rep.float_ties)}")
    print(f"load (parse + validate, JSON) : {t_load:9.4f} s (not in the ratio)")
    print(f"numpy float64 fwd+bwd (base)  : {t_np * 1e3:9.3f} ms (median of {n_verify}, interleaved; min {m_np * 1e3:.3f})")
    print(f"kinkcheck verify{' --values' if args.values else '         '}      : {t_kc * 1e3:9.3f} ms (machine kernels: {path}; min {m_kc * 1e3:.3f})")
    print(f"ratio verify / baseline       : {t_kc / t_np:9.2f}x (ratio of the minima {m_kc / m_np:.2f}x)")
    if args.values:
        print("--values: the verify line above includes the exact AD output (rationals) and the hex strings")
        for label, t, m, b, mb in values_rows:
            print(f"{label:42s}: {t * 1e3:9.3f} ms, ratio {t / b:8.2f}x to the baseline measured with it ({b * 1e3:.3f} ms; ratio of the minima {m / mb:.2f}x)")
    return t_kc / t_np


if __name__ == "__main__":
    main()
