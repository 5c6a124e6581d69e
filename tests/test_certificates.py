"""Certificates: the committed ones re-check, regenerate to the same claims, and any alteration of
the network, parameters, convention or claimed numbers makes the check fail (mutation tests)."""

import copy
import json
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

import kinkcheck

from conftest import EXAMPLES, ROOT

CERTS = sorted((ROOT / "proofs" / "certificates").glob("*.cert.json"))


def load(path):
    return json.loads(path.read_text())


def test_every_example_has_a_certificate():
    assert {p.name.replace(".cert.json", "") for p in CERTS} == {p.stem for p in EXAMPLES.glob("*.json")}


@pytest.mark.parametrize("path", CERTS, ids=lambda p: p.stem)
def test_committed_certificate_is_valid(path):
    assert kinkcheck.check_certificate(str(path))["valid"] is True


def test_regenerated_certificates_match_committed():
    r = subprocess.run([sys.executable, str(ROOT / "proofs" / "make.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("path", CERTS, ids=lambda p: p.stem)
def test_fresh_certificate_is_valid(path):
    name = path.name.replace(".cert.json", ".json")
    cert = kinkcheck.verify(str(EXAMPLES / name)).certificate()
    assert kinkcheck.check_certificate(json.loads(json.dumps(cert)))["valid"] is True


def _fails(cert):
    with pytest.raises((kinkcheck.CheckFailed, kinkcheck.InputError)):
        kinkcheck.check_certificate(cert)


def _numeric_paths(node, path=()):
    """Every path to a numeric leaf (JSON number or rational/hex string) under node."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _numeric_paths(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _numeric_paths(v, path + (i,))
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield path
    elif isinstance(node, str):
        try:
            float(kinkcheck.encodings.formats.exact(float.fromhex(node))) if node.startswith(("0x", "-0x")) else __import__("fractions").Fraction(node)
            yield path
        except (ValueError, ZeroDivisionError):
            pass


def _get(node, path):
    for p in path:
        node = node[p]
    return node


def _set(node, path, value):
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value


@pytest.mark.parametrize("path", CERTS, ids=lambda p: p.stem)
@given(data=st.data())
def test_mutating_network_or_claims_fails(path, data):
    cert = load(path)
    targets = [("network",) + p for p in _numeric_paths(cert["network"])]
    targets += [("claims",) + p for p in _numeric_paths(cert["claims"])]
    target = data.draw(st.sampled_from(targets))
    mutated = copy.deepcopy(cert)
    old = _get(mutated, target)
    if isinstance(old, str):
        new = "7/3" if old != "7/3" else "5"
    else:
        new = old + 1 if old != -1 else 2
        if isinstance(old, float):
            new = float(new)
    _set(mutated, target, new)
    _fails(mutated)


@pytest.mark.parametrize("path", CERTS, ids=lambda p: p.stem)
def test_changing_the_convention_fails(path):
    cert = load(path)
    mutated = copy.deepcopy(cert)
    mutated["convention"]["relu"] = [1] if mutated["convention"]["relu"] != [1] else [0]
    _fails(mutated)
    mutated = copy.deepcopy(cert)
    mutated["convention"]["maxpool1d"] = "last" if mutated["convention"]["maxpool1d"] != "last" else "first"
    _fails(mutated)


@pytest.mark.parametrize("flag", ["differentiable", "ad_correct", "ad_in_clarke"])
@pytest.mark.parametrize("path", CERTS, ids=lambda p: p.stem)
def test_flipping_a_verdict_fails(path, flag):
    cert = load(path)
    mutated = copy.deepcopy(cert)
    # an undecided verdict cannot be upgraded to a yes without evidence either
    mutated["claims"][flag] = True if cert["claims"][flag] is None else not cert["claims"][flag]
    _fails(mutated)


def test_verdict_claims_need_their_evidence():
    cert = load(ROOT / "proofs" / "certificates" / "maxpool_u_b.cert.json")
    # the two max-pool ties are not differentiable-relevant alone: drop an empty pattern -> incomplete
    m = copy.deepcopy(cert)
    m["evidence"]["empty"] = m["evidence"]["empty"][1:]
    _fails(m)
    # Gordan multipliers that do not cancel
    m = copy.deepcopy(cert)
    m["evidence"]["empty"][0]["multipliers"] = ["1"] + ["0"] * (len(m["evidence"]["empty"][0]["multipliers"]) - 1)
    _fails(m)
    # a witness outside its cell
    m = copy.deepcopy(cert)
    m["evidence"]["cells"][0]["witness"] = [str(-__import__("fractions").Fraction(v)) for v in m["evidence"]["cells"][0]["witness"]]
    _fails(m)
    # a separator that does not separate
    m = copy.deepcopy(cert)
    m["evidence"]["separator"] = ["0"] * len(m["evidence"]["separator"])
    _fails(m)


def test_clarke_weights_are_checked():
    cert = load(ROOT / "proofs" / "certificates" / "bias_relu_clarke.cert.json")
    m = copy.deepcopy(cert)
    w = m["evidence"]["clarke_weights"]
    m["evidence"]["clarke_weights"] = list(reversed(w)) if w != list(reversed(w)) else ["2", "-1"]
    _fails(m)


def test_cli_check_exit_codes(tmp_path):
    good = CERTS[0]
    bad = tmp_path / "bad.json"
    cert = load(good)
    cert["claims"]["ad"][0] = "12345"
    bad.write_text(json.dumps(cert))
    run = lambda p: subprocess.run([sys.executable, "-c", "from kinkcheck.cli import main; main()", "check", str(p)], capture_output=True, text=True)
    assert run(good).returncode == 0
    r = run(bad)
    assert r.returncode == 1 and "invalid" in r.stdout
    r = run(tmp_path / "missing.json")
    assert r.returncode == 2 and r.stderr.count("\n") == 1


def test_checker_imports_neither_z3_nor_the_decision_code():
    code = (
        "import sys, kinkcheck.certify.checker as c; "
        f"c.check_certificate({str(CERTS[0])!r}); "
        "bad = [m for m in sys.modules if m == 'z3' or m.startswith('z3.') or m in "
        "('kinkcheck.encodings.program', 'kinkcheck.encodings.exact', 'kinkcheck.encodings.machine', "
        "'kinkcheck.decide', 'kinkcheck.decide.cells', 'kinkcheck.decide.differentiability', 'kinkcheck.encodings.runs', 'kinkcheck.api')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
