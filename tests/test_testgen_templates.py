"""The generated test files' templates are real files: ruff and pytest check them as they are,
their placeholder data is a real export, and the exporter fills every section and only those."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kinkcheck.testgen import render as R
from kinkcheck.testgen.export import export_test

from conftest import EXAMPLES

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "verify" / "testgen" / "templates"
NAMES = ["test_cex_numpy.py", "test_cex_torch.py"]
RUFF = pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed (pip install 'kinkcheck[test]')")


def constants(text: str) -> dict:
    """Module-level NAME = literal assignments of a file (ast, without running it)."""
    out = {}
    for t in ast.parse(text).body:
        if isinstance(t, ast.Assign) and isinstance(t.targets[0], ast.Name) and t.targets[0].id.isupper():
            try:
                out[t.targets[0].id] = ast.literal_eval(t.value)
            except ValueError:  # DT = np.float32, F = torch.nn.functional
                pass
    return out


def test_templates_are_the_package_data():
    assert sorted(p.name for p in TEMPLATES.glob("*.py")) == NAMES
    for name in NAMES:
        assert R.template(name) == (TEMPLATES / name).read_text()
    conf = (ROOT / "pyproject.toml").read_text()  # (no tomllib on Python 3.10)
    assert '"kinkcheck.testgen" = ["templates/*.py"]' in conf.split("[tool.setuptools.package-data]")[1].split("\n[")[0]


@RUFF
def test_templates_pass_ruff():
    # the project's rules (also part of tests/test_lint.py) and ruff's defaults, which the
    # generated files are checked against
    for args in (["--no-cache"], ["--no-cache", "--isolated"]):
        r = subprocess.run(["ruff", "check", *args, str(TEMPLATES)], cwd=ROOT, capture_output=True, text=True, check=False)
        assert r.returncode == 0, r.stdout + r.stderr


def test_templates_run_as_they_are(tmp_path):
    """Copied unchanged, each template is a passing pytest file: the placeholder data runs."""
    pytest.importorskip("torch")
    for name in NAMES:
        shutil.copy(TEMPLATES / name, tmp_path / name)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *NAMES], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    # numpy: 3 tests; torch: 4 always and all 6 optional ones (relu_minus_relu keeps every section)
    assert "13 passed" in r.stdout and "skipped" not in r.stdout, r.stdout[-500:]


@pytest.mark.parametrize("framework", ["numpy", "torch"])
def test_placeholder_data_is_the_export_of_relu_minus_relu(framework):
    name = f"test_cex_{framework}.py"
    section = R.sections(R.template(name))
    text = export_test(str(EXAMPLES / "relu_minus_relu.json"), framework)
    assert "kinkcheck:" not in text  # no marker line reaches the generated file
    want = constants(text)
    data = constants(section["data"])
    assert data and data == {k: want[k] for k in data}
    names = R.assigned(section["data"])
    assert [t.targets[0].id for t in ast.parse(text).body if isinstance(t, ast.Assign) and t.targets[0].id in names] == names
    if framework == "numpy":
        fields = constants(section["fields"])
        assert set(fields) == {"SOURCE", "DTYPE", "SAME"}
        assert f"from {fields['SOURCE']}." in text and f"numpy {fields['DTYPE']} scalar" in text and f"is {fields['SAME']}" in text
        assert "DT = np.float32" in section["data"] and "DT = np.float32" in text
    else:  # every optional test of the template is kept for this counterexample
        tests = [ln[4:].split("(")[0] for ln in R.template(name).splitlines() if ln.startswith("def test_")]
        assert len(tests) == 10 and all(f"def {t}(" in text for t in tests)


def test_render_refuses_sections_it_does_not_fill():
    data = {k: "None" for k in R.assigned(R.sections(R.template("test_cex_numpy.py"))["data"])}
    fields = {"SOURCE": "SAME DTYPE.json", "DTYPE": "float64", "SAME": "True"}
    text = R.render("test_cex_numpy.py", data=data, fields=fields)
    assert "from SAME DTYPE.json." in text and "numpy float64 scalar" in text and "is True" in text and "SOURCE" not in text
    with pytest.raises(ValueError, match="sections"):
        R.render("test_cex_numpy.py", data=data)  # the fields left unfilled
    with pytest.raises(ValueError, match="sections"):
        R.render("test_cex_numpy.py", data=data, fields=fields, keep={"if_choice": True})  # no such section
    with pytest.raises(ValueError, match="data"):
        R.render("test_cex_numpy.py", data=dict(list(data.items())[1:]), fields=fields)  # DT missing
    with pytest.raises(ValueError, match="fields"):
        R.render("test_cex_numpy.py", data=data, fields={**fields, "EXTRA": "1"})


def test_optional_sections_are_kept_or_dropped():
    src = R.template("test_cex_torch.py")
    sec = R.sections(src)
    data = {k: "None" for k in R.assigned(sec["data"])}
    opts = sorted(k for k in sec if k.startswith("if_"))
    assert opts == ["if_builtin", "if_choice", "if_gradient", "if_torch_ad", "if_torch_choice", "if_torch_units"]
    base = dict(data=data, text={"docstring": '"""doc"""\n', "engine": "ENGINE = 1\n"})
    every = R.render("test_cex_torch.py", **base, keep=dict.fromkeys(opts, True))
    none = R.render("test_cex_torch.py", **base, keep=dict.fromkeys(opts, False))
    assert "kinkcheck:" not in every + none and every.startswith('"""doc"""\n') and "ENGINE = 1\n" in every
    assert "def test_choice_sensitivity(" in every and "def test_choice_sensitivity(" not in none
    assert "def test_spec_machine_run_bit_for_bit(" in none
    assert all(sec[k] in every and sec[k] not in none for k in opts)
