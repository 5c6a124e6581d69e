"""The survey (issue 6, first part): a small Protocol-1 run on load_digits, classified exactly,
deterministic whatever the number of worker processes. Skips without torch/scikit-learn."""

import json
import subprocess
import sys

import pytest

pytest.importorskip("torch", reason="PyTorch is not installed")
pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install 'kinkcheck[survey]')")

from kinkcheck.survey import SurveyConfig, survey, write  # noqa: E402

CFG = SurveyConfig(widths=(256,), depths=(1,), dtypes=("float16", "float64"), inits=2, max_batches=30, max_classified=1)


def strip(res):
    return [{k: v for k, v in r.items() if not k.startswith("time")} for r in res.runs]


def test_survey_is_deterministic_and_consistent(tmp_path):
    a = survey(CFG, workers=1)
    b = survey(CFG, workers=2)
    assert strip(a) == strip(b)
    for r in a.runs:
        assert r["in_zone"] == (r["events"] > 0)
        assert len(r["classified"]) == min(r["events"], CFG.max_classified)
        for c in r["classified"]:
            assert c["kind"] in ("real tie", "float-only")
            assert (c["kind"] == "real tie") == (c["real_ties"] > 0)
    table = a.table()
    assert sum(row["inits"] for row in table) == len(a.runs) == 4
    write(a, tmp_path)
    assert "| float16 | 1 | 256 |" in (tmp_path / "summary.md").read_text()
    assert json.loads((tmp_path / "results.json").read_text())["runs"]


def test_cli_survey_rejects_bad_options(tmp_path):
    r = subprocess.run([sys.executable, "-c", "from kinkcheck.cli import main; main()", "survey", "--dtypes", "float8", "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 2 and "float8" in r.stderr
