"""Benchmark: whole-process cost of the CLI (issue 13: lazy imports).

    python benchmarks/bench_startup.py [--repeat 9]

Fresh processes, interleaved: the interpreter alone (``python -c pass``, the baseline), ``kinkcheck
--version`` and ``kinkcheck verify`` of a small relu network (proofs/examples/relu_minus_relu.json),
both through the CLI entry point. Prints medians, the ratios to the baseline, and which heavy
modules (sympy, z3, numba, torch) the verify process imported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "proofs" / "examples" / "relu_minus_relu.json"
CLI = "import sys; sys.argv = ['kinkcheck'] + sys.argv[1:]; from kinkcheck.cli import main; main()"
PROBE = (
    "import sys, json; sys.argv = ['kinkcheck', 'verify', sys.argv[1]]\n"
    "from kinkcheck.cli import main\n"
    "try:\n    main()\nexcept SystemExit:\n    pass\n"
    "sys.stderr.write(json.dumps(sorted(m for m in ('sympy', 'z3', 'numba', 'torch') if m in sys.modules)))\n"
)


def wall(cmd) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=9)
    args = ap.parse_args(argv)
    cmds = {
        "python -c pass (base)": [sys.executable, "-c", "pass"],
        "kinkcheck --version": [sys.executable, "-c", CLI, "--version"],
        "kinkcheck verify (small relu net)": [sys.executable, "-c", CLI, "verify", str(EXAMPLE)],
    }
    ts = {k: [] for k in cmds}
    for _ in range(args.repeat):
        for k, c in cmds.items():
            ts[k].append(wall(c))
    base = statistics.median(ts["python -c pass (base)"])
    for k, v in ts.items():
        m = statistics.median(v)
        print(f"{k:36s}: {m:6.3f} s median of {args.repeat} (min {min(v):.3f}); {m / base:5.1f}x the interpreter alone")
    r = subprocess.run([sys.executable, "-c", PROBE, str(EXAMPLE)], capture_output=True, text=True)
    print(f"heavy modules imported by that verify: {json.loads(r.stderr.strip().splitlines()[-1]) or 'none'}")


if __name__ == "__main__":
    main()
