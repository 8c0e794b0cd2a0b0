"""Diagnostics tests: each tests/diagnostics/<case>.llm is checked and its rendered
stderr compared with <case>.stderr. A first line `# args: --profile local` passes
extra arguments. The meta-test requires every registered code to have a case and a
docs/errors page."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from helpers import ROOT, compare_or_update, run_cli

from llmc.compiler.codes import CODES

CASES = ROOT / "tests" / "diagnostics"
SPECS = sorted(CASES.glob("*.llm"))


def _args(spec: Path) -> list[str]:
    first = spec.read_text(encoding="utf-8", errors="replace").split("\n", 1)[0]
    m = re.match(r"#\s*args:\s*(.*)", first)
    return shlex.split(m.group(1)) if m else []


@pytest.mark.parametrize("spec", SPECS, ids=[s.stem for s in SPECS])
def test_diagnostics(spec: Path, update_golden: bool):
    rel = spec.relative_to(ROOT).as_posix()
    code, _, err = run_cli("check", "--quiet", *_args(spec), rel, cwd=ROOT)
    expected_code = spec.stem.split("_")[0]
    assert f"[{expected_code}]" in err, f"{rel} should produce {expected_code}:\n{err}"
    if expected_code.startswith("E"):
        assert code == 1
    compare_or_update(spec.with_suffix(".stderr"), err, update_golden)


def test_every_code_has_a_case_and_a_page():
    produced = {s.stem.split("_")[0] for s in SPECS}
    missing_case = sorted(set(CODES) - produced)
    assert not missing_case, f"codes without a diagnostics case in tests/diagnostics/: {missing_case}"
    pages = {p.stem for p in (ROOT / "docs" / "errors").glob("*.md")}
    missing_page = sorted(set(CODES) - pages)
    assert not missing_page, f"codes without a docs/errors/<CODE>.md page: {missing_page}"


def test_every_case_is_named_after_a_registered_code():
    unknown = sorted({s.stem.split("_")[0] for s in SPECS} - set(CODES))
    assert not unknown, f"diagnostics cases named after unregistered codes: {unknown}"
