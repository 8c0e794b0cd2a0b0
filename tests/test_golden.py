"""Golden files: every artifact of the real specs, byte for byte.

tests/golden/<spec>[-<profile>]/<artifact> holds what `llmc build` must write. A
changed, missing or extra file fails; `pytest --update-golden` rewrites the folder
(review the diff before committing).
"""

from __future__ import annotations

import shutil

import pytest
from helpers import ROOT

from llmc.compiler.bundle import build_files
from llmc.compiler.driver import check_spec

CASES = [("translator", None), ("translator", "local"), ("classifier", None), ("classifier", "local")]


@pytest.mark.parametrize("spec,profile", CASES, ids=[f"{s}-{p}" if p else s for s, p in CASES])
def test_golden(spec, profile, update_golden, monkeypatch):
    monkeypatch.chdir(ROOT)
    result = check_spec(f"specs/{spec}.llm", profile=profile)
    assert result.ok, result.diagnostics
    files = build_files(result).files
    golden = ROOT / "tests" / "golden" / (f"{spec}-{profile}" if profile else spec)
    if update_golden:
        if golden.exists():
            shutil.rmtree(golden)
        for rel, text in files.items():
            path = golden / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        return
    assert golden.is_dir(), f"no golden files for {golden.name}: run pytest --update-golden and review them"
    expected = {p.relative_to(golden).as_posix(): p for p in golden.rglob("*") if p.is_file()}
    missing = sorted(set(files) - set(expected))
    extra = sorted(set(expected) - set(files))
    assert not missing, f"artifacts without a golden file (pytest --update-golden): {missing}"
    assert not extra, f"golden files the build no longer writes: {extra}"
    for rel, text in sorted(files.items()):
        assert text == expected[rel].read_text(encoding="utf-8"), f"{golden.name}/{rel} differs from its golden file"
