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
from helpers import ROOT

from llmc.compiler.bundle import build_files
from llmc.compiler.driver import check_spec


def spec_text(name: str) -> str:
    return (ROOT / "specs" / f"{name}.llm").read_text(encoding="utf-8")


def with_overrides(name: str, overrides: dict[str, str]) -> str:
    """specs/NAME.llm with a profile `ranges` that sets each path to its value."""
    body = "".join(f"  {path} = {value}\n" for path, value in overrides.items())
    return spec_text(name) + f"\nprofile ranges {{\n{body}}}\n"


def check(text: str, profile: str | None = "ranges"):
    # Beside the real specs, so that their relative data paths resolve the same.
    return check_spec(str(ROOT / "specs" / "ranges.llm"), profile=profile, text=text)


def errors(result) -> list:
    return [d for d in result.diagnostics if d.severity == "error"]


def build(result) -> dict[str, str]:
    assert result.ok, [(d.code, d.message, d.label) for d in errors(result)]
    return build_files(result).files


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
