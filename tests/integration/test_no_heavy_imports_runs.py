"""The compiler imports no ML framework and no Kubernetes client: statically (no
import statement names them) and at run time (a full `llmc check` loads none).

This file holds the tests of this part that run real processes (tools, frameworks,
servers); the fast checks of the same part are in tests/unit/test_no_heavy_imports.py.
"""

from __future__ import annotations

import subprocess
import sys

from helpers import ROOT
from support.imports import FORBIDDEN


def test_check_loads_no_framework_at_run_time():
    code = (
        "import sys\n"
        "from llmc.compiler.cli import main\n"
        "status = main(['check', '--quiet', 'specs/translator.llm', 'specs/classifier.llm'])\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(status, loaded)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0 []"
