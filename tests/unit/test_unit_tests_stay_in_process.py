"""tests/unit holds in-process tests only: no subprocess, no ML framework, no server.

Those belong in tests/integration (real tools, frameworks and servers) or tests/e2e
(whole pipelines), so that `bin/test tests/unit` stays a quick loop. Read from the
source with `ast`: an import, an `importorskip` or a call that starts a process fails.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent
# Modules whose import means a process, a framework or a server.
OUT_OF_PROCESS = {"subprocess", "multiprocessing", "pty", "torch", "tensorflow", "onnxruntime", "horovod", "pyspark"}
PROCESS_CALLS = {"system", "popen", "spawnv", "spawnl", "execv", "execvp", "fork"}


def findings(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.stmt | ast.expr):
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "importorskip" and node.args and isinstance(node.args[0], ast.Constant):
                names = [str(node.args[0].value)]
            elif (
                node.func.attr in PROCESS_CALLS and isinstance(node.func.value, ast.Name) and node.func.value.id == "os"
            ):
                found.append(f"line {node.lineno}: os.{node.func.attr}()")
        found += [f"line {node.lineno}: {name}" for name in names if name.split(".")[0] in OUT_OF_PROCESS]
    return found


@pytest.mark.parametrize("path", sorted(UNIT.glob("test_*.py")), ids=lambda p: p.name)
def test_a_unit_test_module_stays_in_process(path):
    assert findings(path.read_text(encoding="utf-8")) == [], f"{path.name}: move these tests to tests/integration"


@pytest.mark.parametrize(
    "source",
    [
        "import subprocess",
        "from subprocess import run",
        "import torch.nn as nn",
        "def f():\n    from tensorflow import keras",
        "ort = pytest.importorskip('onnxruntime')",
        "os.system('ls')",
    ],
)
def test_the_rule_catches_each_way_out(source):
    assert findings(source)


def test_the_rule_lets_in_process_code_through():
    assert findings("import json\nfrom llmc.compiler import cli\nos.path.join('a')\nimport subprocessing_notes") == []
