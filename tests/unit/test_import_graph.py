"""The import graph of compiler/ and runtime/, read from the source with `ast`.

Every `import` and `from ... import` naming a module of the package counts, relative
or absolute (`llmc.compiler...`), at module level or inside a function (a lazy import
still ties two modules together); only imports under `if TYPE_CHECKING:` are left out,
since they never run. Within each package there is no cycle; the compiler never
imports the runtime except in cli.py, which launches it; and a code generation
target imports the IR, the facts and the renderer, never another target.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest
from helpers import ROOT


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["llmc", *parts])


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the nodes under `if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(inner) for stmt in node.body for inner in ast.walk(stmt)}
    return skipped


def imported_names(path: Path, name: str) -> set[str]:
    """Every dotted name `path` (module `name`) imports, each `from X import y` as X.y and X."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    skipped = _type_checking_only(tree)
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            out.add(source)
            out |= {f"{source}.{alias.name}" for alias in node.names}
    return out


@functools.cache
def import_graph(package: str, root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the modules of the same package it imports."""
    paths = {module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}
    return {
        name: {dep for dep in imported_names(path, name) if dep in paths and dep != name}
        for name, path in paths.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


# --- the helpers themselves: they must find what they are meant to -----------------------


def test_cycles_finds_a_cycle_and_only_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_imports_are_read_relative_absolute_lazy_and_not_under_type_checking(tmp_path):
    root = tmp_path
    (root / "compiler" / "sub").mkdir(parents=True)
    (root / "compiler" / "__init__.py").write_text("")
    (root / "compiler" / "sub" / "__init__.py").write_text("from .leaf import x\n")
    (root / "compiler" / "sub" / "leaf.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from .. import top\n"
        "if TYPE_CHECKING:\n"
        "    from ..hidden import T\n"
        "def f():\n"
        "    import llmc.compiler.lazy\n"
    )
    for name in ("top", "hidden", "lazy"):
        (root / "compiler" / f"{name}.py").write_text("")
    graph = import_graph("compiler", root)
    assert graph["llmc.compiler.sub"] == {"llmc.compiler.sub.leaf"}
    assert graph["llmc.compiler.sub.leaf"] == {"llmc.compiler", "llmc.compiler.top", "llmc.compiler.lazy"}


# --- the rules -------------------------------------------------------------------------


def test_no_import_cycle_in_the_compiler():
    assert cycles(import_graph("compiler")) == []


def test_no_import_cycle_in_the_runtime():
    assert cycles(import_graph("runtime")) == []


def test_the_compiler_imports_the_runtime_only_in_the_cli():
    importers = sorted(
        name
        for name, path in ((module_name(p), p) for p in (ROOT / "compiler").rglob("*.py"))
        if any(dep == "llmc.runtime" or dep.startswith("llmc.runtime.") for dep in imported_names(path, name))
    )
    assert importers in ([], ["llmc.compiler.cli"])


def _targets() -> list[str]:
    from llmc.compiler.targets import TARGETS

    return [f"llmc.compiler.targets.{name}" for name in TARGETS]


@pytest.mark.parametrize("target", _targets())
def test_a_target_imports_no_other_target(target):
    others = set(_targets()) - {target}
    assert import_graph("compiler")[target] & others == set()
