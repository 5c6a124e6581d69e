"""The generated test files' templates: loaded from ``templates/``, filled, ruff-formatted.

Each template (``templates/test_cex_numpy.py``, ``templates/test_cex_torch.py``) is a real Python
module and a working pytest file: its placeholder data is the export of
``proofs/examples/relu_minus_relu.json``, so ruff and pytest check it as it is
(tests/test_export.py). The exporter fills it through SECTIONS, regions between two marker lines
at the start of a line::

    # >>> kinkcheck:NAME - what the exporter does with it
    ...
    # <<< kinkcheck:NAME

Every section is one of:

- ``data``: assignments ``NAME = value``, replaced by the counterexample's constants (the same
  names in the same order, checked);
- ``fields``: assignments of names the exporter writes in place of every whole-word use of the name
  elsewhere in the template (docstring included), the section itself dropped (numpy: ``SOURCE``,
  ``DTYPE``, ``SAME``);
- a TEXT section (``docstring``, ``engine``): replaced by text the exporter gives;
- an OPTIONAL section (``if_choice``, ...): kept (marker lines dropped) or dropped whole.

The exporter must name every section of the template and no other (a renamed marker fails loudly),
and the marker lines never reach the generated file.
"""

from __future__ import annotations

import ast
import re
from functools import lru_cache
from importlib import resources

_SECTION = re.compile(r"^# >>> kinkcheck:(\w+)\b[^\n]*\n(.*?)^# <<< kinkcheck:\1\n", re.S | re.M)


@lru_cache(maxsize=None)
def template(name: str) -> str:
    """The text of ``templates/NAME`` (package data of kinkcheck.testgen)."""
    return resources.files(__package__).joinpath("templates", name).read_text(encoding="utf-8")


def sections(text: str) -> dict:
    """Section name -> its lines (without the marker lines)."""
    return {m.group(1): m.group(2) for m in _SECTION.finditer(text)}


def assigned(body: str) -> list:
    """The names a section assigns, in order."""
    return [t.targets[0].id for t in ast.parse(body).body if isinstance(t, ast.Assign)]


def render(name: str, *, data: dict, fields: dict | None = None, text: dict | None = None, keep: dict | None = None) -> str:
    """Template ``name`` filled: ``data`` NAME -> source text of the value; ``fields`` NAME -> text
    written in place of the name; ``text`` section -> its replacement; ``keep`` section -> bool."""
    src = template(name)
    found = sections(src)
    fields, text, keep = fields or {}, text or {}, keep or {}
    given = ["data", *(["fields"] if fields else []), *text, *keep]
    if sorted(given) != sorted(found):
        raise ValueError(f"template {name}: sections {sorted(found)}, the exporter fills {sorted(given)}")
    if assigned(found["data"]) != list(data):
        raise ValueError(f"template {name}: data {assigned(found['data'])}, the exporter writes {list(data)}")
    if fields and sorted(assigned(found["fields"])) != sorted(fields):
        raise ValueError(f"template {name}: fields {assigned(found['fields'])}, the exporter writes {sorted(fields)}")

    names = re.compile(r"\b(" + "|".join(map(re.escape, fields)) + r")\b") if fields else None

    def own(part):  # the template's own text, fields written in (one pass: a value is not re-read)
        return names.sub(lambda m: fields[m.group(1)], part) if names else part

    out, at = [], 0
    for m in _SECTION.finditer(src):
        out.append(own(src[at : m.start()]))
        at, key = m.end(), m.group(1)
        if key == "data":
            out.append("".join(f"{k} = {v}\n" for k, v in data.items()))
        elif key in text:
            out.append(text[key])
        elif key in keep and keep[key]:
            out.append(own(m.group(2)))
    out.append(own(src[at:]))
    return "".join(out)


def ruff_format(text: str) -> str:
    """ruff format the generated code when ruff is installed (the [test] extra has it)."""
    import shutil
    import subprocess

    ruff = shutil.which("ruff")
    if not ruff:
        return text
    r = subprocess.run([ruff, "format", "--isolated", "-"], input=text, capture_output=True, text=True, check=False)
    return r.stdout if r.returncode == 0 and r.stdout else text
