"""CLI conventions: --version, -h, placeholders instead of type columns, exit codes in every
command's help, usage errors as one line with a hint, -o/--output for file outputs, exact values
with a decimal approximation beside them and never cut in the middle."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "proofs" / "examples"
COMMANDS = [["verify"], ["check"], ["search"], ["count"], ["export-test"], ["import"], ["export"], ["survey"], ["conventions", "probe"]]


def kc(*args, columns=80):
    env = dict(os.environ, COLUMNS=str(columns), TERM="dumb")
    return subprocess.run([sys.executable, "-c", "from kinkcheck.cli import main; main()", *map(str, args)], capture_output=True, text=True, env=env, cwd=ROOT)


def test_version():
    from kinkcheck import __version__

    r = kc("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"kinkcheck {__version__}"


@pytest.mark.parametrize("cmd", COMMANDS, ids=" ".join)
def test_help_has_placeholders_and_exit_codes(cmd):
    r = kc(*cmd, "-h")
    assert r.returncode == 0, r.stderr
    assert r.stdout == kc(*cmd, "--help").stdout
    assert "<bool>" not in r.stdout and "<str>" not in r.stdout and "<list" not in r.stdout
    assert "Exit codes:" in r.stdout


def test_usage_errors_are_one_line_with_a_hint():
    for args, hint in ((["verify"], "kinkcheck verify -h"), (["verify", "x.json", "--bogus"], "kinkcheck verify -h"), (["nosuch"], "kinkcheck -h")):
        r = kc(*args)
        assert r.returncode == 2 and r.stdout == ""
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("kinkcheck: ") and f"(see '{hint}')" in r.stderr


def test_search_writes_with_dash_o_and_keeps_out(tmp_path):
    net = EXAMPLES / "relu_minus_relu.json"
    for flag in ("-o", "--output", "--out"):
        out = tmp_path / f"cex{flag.strip('-')}.json"
        r = kc("search", net, "--find", "float-tie", "--box", "w=0:1", "-q", flag, out)
        assert r.returncode == 1, r.stderr
        assert json.loads(out.read_text())["params"]["w"]["value"] == "0x0p+0"


def test_exact_values_have_a_decimal_beside_them_and_are_never_cut():
    r = kc("verify", EXAMPLES / "deq_tie_invertible.json", columns=50)
    assert r.returncode == 1
    assert "16/9 (~1.77777777778)" in r.stdout and "4/3 (~1.33333333333)" in r.stdout
    wide = kc("verify", EXAMPLES / "deq_tie_invertible.json", columns=200)
    assert "16/9 (~1.77777777778)" in wide.stdout
    # every rational of the JSON report appears whole in the narrow text output
    rep = json.loads(kc("verify", EXAMPLES / "deq_tie_invertible.json", "--json").stdout)
    for q in rep["ad"]:
        assert re.search(rf"(?<![\d/]){re.escape(q)}(?![\d/])", r.stdout), q


def test_rounding_shows_the_rounded_values(tmp_path):
    f = tmp_path / "net.json"
    f.write_text(json.dumps({
        "kinkcheck": 1, "dtype": "float32",
        "params": {"W": {"shape": [2, 1], "values": [[0.1], ["1/3"]]}},
        "inputs": {"shape": [1, 1], "values": [[1]]},
        "layers": [{"op": "linear", "weight": "W"}, {"op": "relu"}],
        "loss": {"op": "sum"},
    }))
    r = kc("verify", f, "--rounding", "nearest")
    assert r.returncode == 0, r.stderr
    # 0.1 and 1/3 rounded to nearest float32: 0x1.99999ap-4 and 0x1.555556p-2
    assert "rounded (nearest): params.W[0,0] -> 0x1.99999ap-4" in r.stdout
    assert "rounded (nearest): params.W[1,0] -> 0x1.555556p-2" in r.stdout
