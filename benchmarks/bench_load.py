"""Benchmark: loading the 784-256-256-10 float32 MLP (batch 32, mse) of bench_verify.py from a
network file whose tensors live in a sidecar .npz, against ``np.load`` of the same .npz (every
array read), measured in the same run, interleaved; also the all-JSON file and the default
``kinkcheck import`` layout (tensors of more than 4096 values in the sidecar).

    python benchmarks/bench_load.py [--repeat 41] [--memory]

Prints medians (and minima) and ratios; ``--memory`` also measures the peak memory allocated by
``load`` + ``verify`` in a fresh process (tracemalloc, which sees numpy's arrays), against the
parameters + activations (float64 bytes).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_verify import interleaved, make_doc  # noqa: E402


def write_files(d: Path):
    import kinkcheck
    from kinkcheck.encodings import tensorfiles as TF

    doc, _ = make_doc()
    net = kinkcheck.load(doc)
    (d / "inline.json").write_text(json.dumps(doc))
    for tag, lim in (("all", 0), ("default", TF.INLINE_MAX)):
        out, arrays = TF.externalize(doc, net, f"{tag}.npz", inline_max=lim)
        TF.write_npz(d / f"{tag}.npz", arrays)
        (d / f"{tag}.json").write_text(json.dumps(out))
    return net


MEM_CHILD = """
import sys, tracemalloc
sys.path.insert(0, {root!r})
import kinkcheck
from kinkcheck.encodings import kernels
kernels.set_mode("numpy")
kinkcheck.verify(kinkcheck.load({path!r}))  # warm caches of the imports (activations, conventions)
tracemalloc.start()
net = kinkcheck.load({path!r})
kinkcheck.verify(net)
print(tracemalloc.get_traced_memory()[1])
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=41)
    ap.add_argument("--memory", action="store_true")
    args = ap.parse_args(argv)
    import kinkcheck

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        net = write_files(d)

        def npl(name):
            def f():
                with np.load(d / name, allow_pickle=False) as z:
                    return {k: z[k] for k in z.files}

            return f

        (t_np, m_np), (t_all, m_all), (t_def, m_def) = interleaved(
            [npl("all.npz"), lambda: kinkcheck.load(d / "all.json"), lambda: kinkcheck.load(d / "default.json")],
            args.repeat,
        )
        # the all-JSON load apart (it allocates ~10^6 objects, which would slow what follows it)
        (t_json, m_json), (t_np2, m_np2) = interleaved([lambda: kinkcheck.load(d / "inline.json"), npl("all.npz")], 3, warmup=1)
        print("network: 784-256-256-10 float32 MLP, batch 32, mse (269,322 parameters, 25,088 inputs)")
        print(f"np.load of the sidecar (base)         : {t_np * 1e3:8.2f} ms (min {m_np * 1e3:.2f})")
        print(f"load, every tensor in the sidecar     : {t_all * 1e3:8.2f} ms  ratio {t_all / t_np:6.2f}x (min ratio {m_all / m_np:.2f}x)")
        print(f"load, import's default (> 4096 values): {t_def * 1e3:8.2f} ms  ratio {t_def / t_np:6.2f}x (min ratio {m_def / m_np:.2f}x)")
        print(f"load, everything inline (JSON)        : {t_json * 1e3:8.2f} ms  ratio {t_json / t_np2:6.2f}x (min ratio {m_json / m_np2:.2f}x)")
        if args.memory:
            root = str(Path(__file__).resolve().parent.parent)
            out = subprocess.run([sys.executable, "-c", MEM_CHILD.format(root=root, path=str(d / "all.json"))], capture_output=True, text=True, check=True).stdout.split()
            peak = int(out[-1])
            params = net.theta.size * 8
            acts = (sum(net.batch * int(np.prod(L.out_shape)) for L in net.layers) + net.inputs.size) * 8
            print(
                f"peak memory allocated by load + verify (tracemalloc, numpy arrays included): {peak / 2**20:.1f} MiB;"
                f" parameters + activations {(params + acts) / 2**20:.2f} MiB (float64): {peak / (params + acts):.1f}x"
            )


if __name__ == "__main__":
    main()
