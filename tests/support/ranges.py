"""Specs at chosen values, checked and built, for test_target_ranges.py and
test_target_ranges_runs.py."""

from __future__ import annotations

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
