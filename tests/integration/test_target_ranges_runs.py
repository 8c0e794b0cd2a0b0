"""Every number a target writes is in its reader's range (issue 9, part C).

The oracle is tests/artifact_ranges.py (its own table of bounds); these tests prove
that it catches what it should, that the bundles of the real specs pass it, and that
specs at extreme values either fail `llmc check` with E706/E802 at the value behind
the number, or build a bundle whose every number is in range. Help lines that
propose a value are applied and checked again.

This file holds the tests of this part that run real processes (tools, frameworks,
servers); the fast checks of the same part are in tests/unit/test_target_ranges.py.
"""

from __future__ import annotations

import pytest
from artifact_ranges import violations
from support.ranges import build, check, with_overrides

# --- the oracle ------------------------------------------------------------------------


# --- extreme spec values ---------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"serve.sla.error_rate": "0"},  # used to divide by zero in the promtool tests' traffic
        {"serve.sla.availability": "0.9999999999999"},  # its budget used to round to 0
        {"serve.sla.error_rate": "1e-300"},
    ],
)
def test_extreme_error_budgets_build_rules_that_promtool_passes(tmp_path, overrides):
    import shutil
    import subprocess

    files = build(check(with_overrides("classifier", overrides)))
    assert violations(files) == []
    for name in ("alerts.yaml", "alerts.test.yaml"):
        (tmp_path / name).write_text(files[f"monitoring/{name}"], encoding="utf-8")
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not on PATH (apt-get install prometheus)"
    proc = subprocess.run(
        [promtool, "test", "rules", "alerts.test.yaml"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
