"""The layout is the architecture: packages by question, data flowing one way, no import circles,
modules of a readable size, old import paths still working (with a DeprecationWarning) for one
release. These tests read the source (ast), so a new circle or an upward import fails here before it
can fail at run time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# the package kinkcheck lives in verify/, kinkcheck.encodings in encodings/ (pyproject.toml)
SOURCES = {"kinkcheck": ROOT / "verify", "kinkcheck.encodings": ROOT / "encodings"}

# Each group may import only the groups before it (and itself). Top-level modules are groups of
# their own. kinkcheck/__init__ and kinkcheck._moved are the facade: they name modules lazily.
ORDER = ["files", "encodings", "decide", "certify", "api", "search", "interop", "testgen", "survey", "htmlreport", "cli"]
FACADE = {"kinkcheck", "kinkcheck._moved"}
MAX_LINES = 650  # "about 600"; a longer module says why in its docstring
WHY_LONG = "Why one module:"


def modules() -> dict:
    out = {}
    for pkg, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if pkg == "kinkcheck" and parts and parts[0] == "encodings":
                continue
            out[".".join([pkg, *parts])] = path
    return out


MODULES = modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(name: str, level: int, here: str) -> str:
    if level == 0:
        return name
    base = here.split(".") if _is_package(here) else here.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def imports(name: str) -> set:
    """Every kinkcheck module that ``name`` imports, at module level or inside a function."""
    tree = ast.parse(MODULES[name].read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = _resolve(node.module or "", node.level, name)
            # the version string is the one name every layer may take from the facade
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in MODULES else mod for a in node.names if a.name != "__version__"]
        else:
            continue
        for t in targets:
            while t and t not in MODULES:
                t = t.rpartition(".")[0]
            if t and t.startswith("kinkcheck") and t != name:
                found.add(t)
    return found


GRAPH = {m: imports(m) for m in MODULES}


def group(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "kinkcheck"


def test_every_group_is_known():
    assert {group(m) for m in MODULES} - set(ORDER) - {"kinkcheck", "_moved"} == set()


def test_data_flows_one_way():
    bad = []
    for m, deps in GRAPH.items():
        if m in FACADE:
            continue
        for d in deps:
            if d == "kinkcheck":
                bad.append(f"{m} imports the facade 'kinkcheck' (import the module it needs)")
            elif ORDER.index(group(d)) > ORDER.index(group(m)):
                bad.append(f"{m} -> {d} ({group(m)} may not import {group(d)})")
    assert bad == []


def test_no_import_circles():
    # Tarjan's strongly connected components over the module graph (lazy imports included)
    index, low, stack, on, sccs = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert sccs == []


def test_the_layout_test_sees_a_circle(tmp_path):
    """The checks above can fail: a two-module circle is found."""
    global GRAPH
    saved = GRAPH
    GRAPH = {**saved, "kinkcheck.interop.probe": saved["kinkcheck.interop.probe"] | {"kinkcheck.interop.jax_probe"}, "kinkcheck.interop.jax_probe": saved["kinkcheck.interop.jax_probe"] | {"kinkcheck.interop.probe"}}
    try:
        with pytest.raises(AssertionError):
            test_no_import_circles()
        GRAPH = {**saved, "kinkcheck.decide.cells": saved["kinkcheck.decide.cells"] | {"kinkcheck.api"}}
        with pytest.raises(AssertionError):
            test_data_flows_one_way()
    finally:
        GRAPH = saved


def _closure(start: str) -> set:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        for d in GRAPH[m]:
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return seen


def test_checker_is_independent_of_the_decision_code():
    reach = _closure("kinkcheck.certify.checker")
    assert not {m for m in reach if group(m) in ("decide", "search", "api", "interop", "testgen", "survey", "cli")}
    assert not reach & {"kinkcheck.encodings.program", "kinkcheck.encodings.exact", "kinkcheck.encodings.machine", "kinkcheck.encodings.smt", "kinkcheck.encodings.runs"}
    assert "kinkcheck.certify.certificate" not in reach


def test_subpackages_say_what_they_answer_and_may_import():
    for m, path in MODULES.items():
        if path.name == "__init__.py" and m.count(".") == 1:
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
            assert len(doc) > 100, m
            if m != "kinkcheck.encodings":
                assert "May import" in doc, m


def test_modules_are_of_a_readable_size():
    long = []
    for m, path in MODULES.items():
        n = len(path.read_text().splitlines())
        if n > MAX_LINES and WHY_LONG not in (ast.get_docstring(ast.parse(path.read_text())) or ""):
            long.append(f"{m}: {n} lines")
    assert long == []


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", code], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.parametrize("old", ["cells", "checker", "differentiability", "runs", "point", "export"])
def test_old_import_paths_warn_and_give_the_same_module(old):
    from kinkcheck import _moved

    new = _moved.target(old)
    r = _run(f"import kinkcheck.{old}")
    assert r.returncode != 0 and "DeprecationWarning" in r.stderr and new in r.stderr
    r = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", f"import sys, kinkcheck.{old} as a, {new} as b; sys.exit(0 if a is b and sys.modules['kinkcheck.{old}'] is b and b.__spec__.name == '{new}' else 1)"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr


def test_public_paths_do_not_warn():
    code = "import kinkcheck, kinkcheck.torch, kinkcheck.search, kinkcheck.survey, kinkcheck.api, kinkcheck.cli; from kinkcheck.search import search; from kinkcheck.torch import from_torch, check; kinkcheck.load; kinkcheck.check_certificate"
    r = _run(code)
    assert r.returncode == 0, r.stderr
