"""The horovod target's generated files, for test_horovod_target.py and
test_horovod_target_runs.py."""

from __future__ import annotations

import ast
import contextlib
import os

from helpers import ROOT

from llmc.compiler.bundle import build_files
from llmc.compiler.driver import check_spec


def bundle(spec: str, profile: str | None = None) -> dict[str, str]:
    old = os.getcwd()
    os.chdir(ROOT)
    try:
        result = check_spec(f"specs/{spec}.llm", profile=profile)
        assert result.ok, result.diagnostics
        return build_files(result).files
    finally:
        os.chdir(old)


def literals(source: str) -> dict:
    """Module-level NAME = literal assignments of a generated script."""
    out = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            with contextlib.suppress(ValueError):
                out[node.targets[0].id] = ast.literal_eval(node.value)
    return out
