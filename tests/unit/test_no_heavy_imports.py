"""The compiler imports no ML framework and no Kubernetes client: statically (no
import statement names them) and at run time (a full `llmc check` loads none).

The tests of this part that run real processes (tools, frameworks, servers) are in
tests/integration/test_no_heavy_imports_runs.py.
"""

from __future__ import annotations

import ast

from helpers import ROOT
from support.imports import FORBIDDEN


def _imported_roots(path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_no_compiler_module_imports_a_framework():
    offenders = {}
    for path in sorted((ROOT / "compiler").rglob("*.py")):
        bad = _imported_roots(path) & set(FORBIDDEN)
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert not offenders, offenders
