"""Benchmark: peak memory of ``kinkcheck.verify`` against the parameters + activations (issue 13).

    python benchmarks/bench_memory.py [--sizes 784,2048,2048,10] [--batch 32] [--kernels numba|numpy]

A float32 MLP (relu, mse) with its tensors in a sidecar .npz is loaded and verified in a fresh
process. Measured there, with the process's own counters:

- ``verify``: the peak resident set during ``verify`` minus the resident set just before it
  (Linux: the peak is reset through /proc/self/clear_refs and read from VmHWM), after a warm-up
  verification of a tiny network (compiled kernels and lazy imports are per-process code, not the
  network's memory);
- ``load + verify``: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` at the end minus the resident set
  after the imports (interpreter, numpy, numba - the same for any network).

Both are printed as multiples of the parameters + activations (inputs and every layer's output for
the batch) in the network's dtype (float32: 4 bytes) and in float64 (8 bytes, the working dtype of
the float64 filter). Ratios, measured in the same run; never absolute megabytes across machines.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = r"""
import json, os, resource, sys
sys.path.insert(0, {root!r})
import numpy as np
import kinkcheck
from kinkcheck.encodings import kernels
if {kernels!r}:
    kernels.set_mode({kernels!r})
if kernels.mode() != "numpy" and kernels.available():
    import numba  # noqa: F401  (imports before the baseline)
page = os.sysconf("SC_PAGE_SIZE")
# warm-up on a small network of the same kind: compiled kernels and lazy imports are loaded once
# per process (tens of MiB of code, whatever the network's size) and are not the network's memory
small = {{"kinkcheck": 1, "dtype": "float32", "params": {{"W0": {{"shape": [3, 4], "values": [[0.5] * 4] * 3}}, "b0": {{"shape": [3], "values": [0.25] * 3}},
         "W1": {{"shape": [2, 3], "values": [[0.5] * 3] * 2}}}}, "inputs": {{"shape": [2, 4], "values": [[1, 2, 3, 4], [4, 3, 2, 1]]}},
         "targets": {{"shape": [2, 2], "values": [[0, 1], [1, 0]]}}, "layers": [{{"op": "linear", "weight": "W0", "bias": "b0"}}, {{"op": "relu"}},
         {{"op": "linear", "weight": "W1"}}], "loss": {{"op": "mse"}}}}
kinkcheck.verify(kinkcheck.load(small), values=True)

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page

def hwm():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024

base = rss()
net = kinkcheck.load({path!r})
before = rss()
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    reset = True
except OSError:
    reset = False
rep = kinkcheck.verify(net)
peak_verify = hwm() if reset else None
maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({{"base": base, "before": before, "peak_verify": peak_verify, "maxrss": maxrss, "n_params": int(net.theta.size),
                  "acts": int(net.inputs.size + sum(net.batch * int(np.prod(L.out_shape)) for L in net.layers)),
                  "mode": kernels.mode(), "exit": rep.exit_code}}))
"""


def write_net(d: Path, sizes, batch, seed=0):
    rng = np.random.default_rng(seed)
    arrays, params, layers = {}, {}, []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        arrays[f"W{i}"] = (rng.standard_normal((b, a)) / np.sqrt(a)).astype(np.float32)
        arrays[f"b{i}"] = (0.1 * rng.standard_normal(b)).astype(np.float32)
        params[f"W{i}"] = {"shape": [b, a], "file": "net.npz", "key": f"W{i}"}
        params[f"b{i}"] = {"shape": [b], "file": "net.npz", "key": f"b{i}"}
        layers.append({"op": "linear", "weight": f"W{i}", "bias": f"b{i}"})
        if i < len(sizes) - 2:
            layers.append({"op": "relu"})
    arrays["X"] = rng.random((batch, sizes[0])).astype(np.float32)
    arrays["Y"] = rng.standard_normal((batch, sizes[-1])).astype(np.float32)
    np.savez(d / "net.npz", **arrays)
    doc = {"kinkcheck": 1, "dtype": "float32", "params": params,
           "inputs": {"shape": [batch, sizes[0]], "file": "net.npz", "key": "X"},
           "targets": {"shape": [batch, sizes[-1]], "file": "net.npz", "key": "Y"},
           "layers": layers, "loss": {"op": "mse"}}
    (d / "net.json").write_text(json.dumps(doc))
    return d / "net.json"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="784,2048,2048,10")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--kernels", choices=("auto", "numba", "numpy"), default=None)
    args = ap.parse_args(argv)
    sizes = [int(v) for v in args.sizes.split(",")]
    root = str(Path(__file__).resolve().parent.parent)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_net(Path(tmp), sizes, args.batch)
        res = subprocess.run([sys.executable, "-c", CHILD.format(root=root, path=str(path), kernels=args.kernels or "")], capture_output=True, text=True)
        if res.returncode != 0:
            sys.exit(res.stderr)
        m = json.loads(res.stdout.strip().splitlines()[-1])
    size32 = (m["n_params"] + m["acts"]) * 4
    size64 = (m["n_params"] + m["acts"]) * 8
    mib = 2.0**20
    print(f"network: {'-'.join(map(str, sizes))} float32 MLP, batch {args.batch}, mse; {m['n_params']:,} parameters, {m['acts']:,} activations; kernels {m['mode']}")
    print(f"parameters + activations: {size32 / mib:8.1f} MiB (float32), {size64 / mib:.1f} MiB (float64)")
    if m["peak_verify"] is not None:
        v = m["peak_verify"] - m["before"]
        print(f"verify (peak RSS - RSS before)  : {v / mib:8.1f} MiB = {v / size32:5.2f}x (float32 bytes), {v / size64:.2f}x (float64 bytes)")
    lv = m["maxrss"] - m["base"]
    print(f"load + verify (ru_maxrss - RSS after imports): {lv / mib:8.1f} MiB = {lv / size32:5.2f}x (float32 bytes), {lv / size64:.2f}x (float64 bytes)")
    return m


if __name__ == "__main__":
    main()
