"""Every code block of README.md and docs/*.md runs, so the documentation cannot rot.

A fenced block is run according to its language, in document order, in a fresh temporary folder
per page (with the repository's ``proofs/`` linked in, so ``proofs/examples/...`` paths work):

* ```` ```python ````: executed; the blocks of one page share one namespace (a page may build on its
  earlier blocks). A page whose Python imports torch is skipped when torch is not installed.
* ```` ```bash ````: run command by command (``\\`` continues a line, ``#`` starts a comment), in a
  real subprocess: ``kinkcheck ARGS`` as ``python -c "from kinkcheck.cli import main; main()" ARGS``
  (what the console script runs), ``python ARGS`` with this interpreter. Nothing else (no pipes,
  ``&&``, other programs). The exit code must be the documented one: a comment ``# exit N`` on the
  command's line, 0 without one.
* ```` ```json ````: parsed; a complete network file (it has the key ``"kinkcheck"``) is written to a
  file and loaded with ``kinkcheck.load``. ``<!-- file: NAME -->`` before the block writes it to NAME
  in the page's folder (for later blocks); ``<!-- error: TEXT -->`` says the file is bad on purpose:
  loading it must raise ``kinkcheck.InputError`` with TEXT in the message.
* ```` ```text ```` and unlabelled blocks are text (output, layouts); other languages are refused.

A block that must not run (installs, long surveys, usage synopses with placeholders) carries a
visible marker on the line before it: ``<!-- not-run: REASON -->``. ``NOT_RUN`` below lists every
such block; adding a marker means adding it here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import kinkcheck

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MAIN = [sys.executable, "-c", "from kinkcheck.cli import main; main()"]
RUN_LANGS = {"python", "bash", "json"}
TEXT_LANGS = {"", "text"}

# (page, first line of the block): the blocks marked <!-- not-run: ... -->
NOT_RUN = {
    ("README.md", "pip install . && kinkcheck verify proofs/examples/relu_minus_relu.json"),
    ("README.md", "pip install torch==2.13.0 && pip install -e '.[test,bitwuzla,torch,onnx,jax,survey,nra]' && python -m pytest"),
    ("README.md", "kinkcheck verify NETWORK.json [--convention pytorch|jax|tensorflow|FILE.json] [--json] [--values] [--rounding nearest] [--time-limit S (default 60)] [--certificate OUT.json] [--report OUT.html]"),
    ("certificate.md", "{"),
    ("count.md", "kinkcheck count NETWORK.json --sweep 'PARAM[INDEX]' [--sweep 'PARAM2[INDEX]'] [--range LO:HI ...] \\"),
    ("gradcheck.md", "import torch, kinkcheck"),
    ("gradcheck.md", "m2 = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False), torch.nn.ReLU()).double()"),
    ("gradcheck.md", "torch.manual_seed(0)"),
    ("gradcheck.md", "from kinkcheck.torch import load_module"),
    ("search.md", "kinkcheck search NETWORK.json --find GOAL (--box 'NAME[i,j]=LO:HI' ... | --free 'NAME[i]',NAME,... --ulps K) \\"),
    ("survey.md", "kinkcheck survey --quick                        # MLP, Protocol 1, about 20 s on 2 cores"),
    ("survey.md", "from kinkcheck.survey import SurveyConfig, survey, write"),
    ("survey.md", "kinkcheck survey --protocol 2 --arch cnn --betas 0,1,1000,10000 --dtypes float16,float32 --widths 8 --inits 3 --epochs 10 -o beta-out"),
    ("survey.md", "import numpy as np"),
    ("survey.md", "kinkcheck survey --data mnist.npz --widths 256 --depths 3 --dtypes float16,float32,float64 \\"),
    ("tutorial.md", "pip install 'kinkcheck[torch]'"),
    ("tutorial.md", "python -m pytest -q test_cex.py"),
}

_MARKER = re.compile(r"^<!--\s*(not-run|file|error):\s*(.*?)\s*-->\s*$")


@dataclass
class Block:
    page: str
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    marker: tuple | None  # (kind, argument) of a marker on the line before the fence

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def first_line(self) -> str:
        return self.text.splitlines()[0] if self.text else ""


def blocks(path: Path) -> list[Block]:
    out = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\S*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start = i
        j = i + 1
        while j < len(lines) and lines[j].rstrip() != "```":
            j += 1
        assert j < len(lines), f"{path.name}:{start + 1}: unclosed code block"
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        mk = _MARKER.match(lines[k].strip()) if k >= 0 else None
        out.append(Block(path.name, start + 1, m.group(1), "\n".join(lines[start + 1:j]), (mk.group(1), mk.group(2)) if mk else None))
        i = j + 1
    return out


ALL = {p.name: blocks(p) for p in PAGES}


def _commands(text: str) -> list[str]:
    joined = re.sub(r"\\\n", " ", text)
    return [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def _expected_exit(command: str) -> int:
    m = re.search(r"#.*?\bexit (\d+)", command)
    return int(m.group(1)) if m else 0


def _argv(command: str, where: str) -> list[str]:
    argv = shlex.split(command, comments=True)
    for tok in argv:
        assert tok not in ("&&", "||", "|", ";", ">", "<", ">>"), f"{where}: shell operator {tok!r} in a doc command"
    if argv[0] == "kinkcheck":
        return MAIN + argv[1:]
    if argv[0] == "python":
        return [sys.executable, *argv[1:]]
    raise AssertionError(f"{where}: doc commands run kinkcheck or python, not {argv[0]!r} (or mark the block not-run)")


# ----------------------------------------------------------------------------------------------


def test_every_block_has_a_known_language():
    for page, bs in ALL.items():
        for b in bs:
            assert b.lang in RUN_LANGS | TEXT_LANGS, f"{b.where}: code block language {b.lang!r} (use python, bash, json or text)"


def test_not_run_blocks_are_the_listed_ones():
    marked = {(b.page, b.first_line) for bs in ALL.values() for b in bs if b.marker and b.marker[0] == "not-run"}
    assert marked == NOT_RUN
    for bs in ALL.values():
        for b in bs:
            if b.marker and b.marker[0] == "not-run":
                assert b.marker[1], f"{b.where}: a not-run marker needs a reason"


def test_docs_link_only_inside_the_repository():
    for p in PAGES:
        text = p.read_text(encoding="utf-8")
        assert "../shared" not in text and "shared/spec" not in text, p.name
        prose = re.sub(r"`[^`\n]*`", "", re.sub(r"(?ms)^```.*?^```", "", text))  # links outside code
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", prose):
            if re.match(r"[a-z]+://", target):
                continue
            assert (p.parent / target).resolve().exists(), f"{p.name}: link to {target} does not exist"
            assert ROOT in (p.parent / target).resolve().parents or (p.parent / target).resolve() == ROOT, target


def test_license_matches_pyproject():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "MIT"}
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n") and "Copyright (c) 2026 kinkcheck contributors" in text
    assert "THE SOFTWARE IS PROVIDED \"AS IS\"" in text


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_anchors_exist():
    for p in PAGES:
        prose = re.sub(r"`[^`\n]*`", "", re.sub(r"(?ms)^```.*?^```", "", p.read_text(encoding="utf-8")))
        for target, anchor in re.findall(r"\]\(([^)#\s]*)#([^)\s]+)\)", prose):
            page = (p.parent / target) if target else p
            text = re.sub(r"(?ms)^```.*?^```", "", page.read_text(encoding="utf-8"))
            slugs = {_slug(h) for h in re.findall(r"(?m)^#+ (.*)$", text)}
            assert anchor in slugs, f"{p.name}: #{anchor} is not a heading of {page.name}"


def _needs_torch(bs) -> bool:
    return any(b.lang == "python" and re.search(r"^\s*(import|from) torch\b", b.text, re.M) for b in bs if not b.marker)


def _runnable(page) -> list[Block]:
    return [b for b in ALL[page] if b.lang in RUN_LANGS and not (b.marker and b.marker[0] == "not-run")]


def test_pages_with_code_are_run():
    # the pages below have no runnable block (only marked or text blocks, or none); every other page is run
    assert sorted(p for p in ALL if not _runnable(p)) == ["certificate.md", "gradcheck.md", "index.md", "interop.md", "semantics.md", "survey.md"]


@pytest.mark.parametrize("page", sorted(p for p in ALL if _runnable(p)))
def test_page_blocks_run(page, tmp_path, monkeypatch):
    bs = _runnable(page)
    if _needs_torch(bs) and importlib.util.find_spec("torch") is None:
        pytest.skip(f"{page}: its Python uses torch, which is not installed")
    (tmp_path / "proofs").symlink_to(ROOT / "proofs", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    env = dict(os.environ)
    env.pop("KINKCHECK_DEBUG", None)
    ns: dict = {"__name__": f"docs_{page}"}
    for b in bs:
        if b.lang == "python":
            exec(compile(b.text, b.where, "exec"), ns)  # noqa: S102 - the documentation's own code
        elif b.lang == "bash":
            for command in _commands(b.text):
                r = subprocess.run(_argv(command, b.where), capture_output=True, text=True, timeout=300, env=env)
                want = _expected_exit(command)
                assert r.returncode == want, f"{b.where}: `{command}` exited {r.returncode}, documented {want}\n{r.stderr[-2000:]}"
                assert "Traceback" not in r.stderr, f"{b.where}: `{command}`\n{r.stderr[-2000:]}"
        else:  # json
            doc = json.loads(b.text)
            kind, arg = b.marker if b.marker else (None, None)
            name = arg if kind == "file" else f"block_{b.line}.json"
            if kind == "file" or "kinkcheck" in doc:
                (tmp_path / name).write_text(b.text)
            if kind == "error":
                with pytest.raises(kinkcheck.InputError) as info:
                    kinkcheck.load(str(tmp_path / name))
                assert arg in str(info.value), f"{b.where}: {arg!r} not in {info.value}"
            elif "kinkcheck" in doc:
                try:
                    kinkcheck.load(str(tmp_path / name))
                except kinkcheck.InputError as exc:
                    raise AssertionError(f"{b.where}: the example does not load: {exc}") from None
