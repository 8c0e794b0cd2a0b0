"""The pre-commit hooks (.pre-commit-hooks.yaml) as pre-commit runs them: each hook's
`entry` with the staged files its `files` pattern matches, through the installed `llmc`
console script. They pass on the repository's own specs and fail on a broken one."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import ROOT

HOOKS = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
SPECS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "specs").glob("*.llm"))
LLMC = Path(sys.executable).parent / "llmc"  # the console script pip installs, as a hook's environment has


def hook(hook_id: str) -> dict:
    [found] = [h for h in HOOKS if h["id"] == hook_id]
    return found


def run_hook(hook_id: str, files: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    entry = shlex.split(hook(hook_id)["entry"])
    assert entry[0] == "llmc"
    return subprocess.run(
        [str(LLMC), *entry[1:], *files], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_hooks_are_well_formed_and_select_spec_files():
    assert [h["id"] for h in HOOKS] == ["llmc-fmt", "llmc-check"]
    for h in HOOKS:
        assert {"id", "name", "entry", "language", "files"} <= set(h) and h["language"] == "python"
        pattern = re.compile(h["files"])
        assert all(pattern.search(s) for s in SPECS)
        assert not pattern.search("README.md") and not pattern.search("specs/translator.llm.orig")
    assert LLMC.is_file(), "the llmc console script is not installed beside this python"


@pytest.mark.parametrize("hook_id", ["llmc-fmt", "llmc-check"])
def test_each_hook_passes_on_the_repositorys_specs(hook_id):
    proc = run_hook(hook_id, SPECS)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_fmt_hook_fails_on_an_unformatted_spec_and_changes_nothing(tmp_path):
    spec = tmp_path / "s.llm"
    text = (ROOT / "specs" / "translator.llm").read_text().replace("  task      = ", "  task = ")
    spec.write_text(text)
    proc = run_hook("llmc-fmt", [spec.name], cwd=tmp_path)
    assert proc.returncode == 1 and "not formatted" in proc.stderr and "+  task      = " in proc.stdout
    assert spec.read_text() == text


def test_the_check_hook_fails_on_a_spec_with_an_error_in_a_profile(tmp_path):
    spec = tmp_path / "s.llm"
    text = (
        (ROOT / "specs" / "classifier.llm")
        .read_text()
        .replace("train.batch_size              = 64", "train.batch_size              = 63")
    )
    assert text != (ROOT / "specs" / "classifier.llm").read_text()
    spec.write_text(text)
    proc = run_hook("llmc-check", [spec.name], cwd=tmp_path)
    assert proc.returncode == 1 and "error[E305]" in proc.stderr and "profile `local`" in proc.stderr
