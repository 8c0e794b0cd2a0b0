"""`llmc fix`: the fixes the diagnostics carry, applied, with comments and layout kept."""

from __future__ import annotations

import json
import shutil

from helpers import ROOT, run_cli

from llmc.compiler.driver import check_spec

CASES = ROOT / "tests" / "diagnostics"


def _copy(tmp_path, case: str):
    target = tmp_path / "spec.llm"
    shutil.copy(CASES / f"{case}.llm", target)
    return target


def test_fix_applies_the_fixes_of_several_mistakes_and_keeps_the_rest_of_the_file(tmp_path):
    spec = _copy(tmp_path, "E206_three_mistakes_in_three_blocks")
    before = spec.read_text(encoding="utf-8")
    code, out, err = run_cli("fix", "--dry-run", str(spec))
    assert code == 0, err
    assert spec.read_text(encoding="utf-8") == before  # --dry-run writes nothing
    assert '-  precision   = "bf61"' in out and '+  precision   = "bf16"' in out
    assert "-    data   = 3" in out and "+    data   = 4" in out
    assert "-  max_evls = 48" in out and "+  max_evals = 48" in out
    assert "would fix 4 of 4 findings; 0 left" in err
    code, out, err = run_cli("fix", str(spec))
    assert code == 0, err
    after = spec.read_text(encoding="utf-8")
    assert check_spec(str(spec)).ok
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]
    assert len(changed) == 3, changed  # three lines, the rest (comments included) as written
    assert "Traceback" not in err


def test_fix_proposes_the_joint_layout_that_fits_a_13b_model(tmp_path):
    # tensor = 2 alone breaks data x tensor = 32 and still needs more than 80 GB: the
    # checked proposal changes both fields, and the fixed spec checks clean.
    spec = _copy(tmp_path, "E306_13b_joint_layout_h100")
    (diag,) = check_spec(str(spec)).diagnostics
    assert diag.code == "E306"
    assert diag.help.startswith("set `tensor = 4` and `data = 8` (checked")
    code, _, err = run_cli("fix", str(spec))
    assert code == 0, err
    text = spec.read_text(encoding="utf-8")
    assert "    data   = 8\n    tensor = 4\n" in text
    assert check_spec(str(spec)).ok


def test_when_no_number_works_the_help_says_what_would(tmp_path):
    # A 13B model on 4 x 16 GB: no layout of the spec's devices fits; the help says so
    # and names a device on which the spec's own layout fits.
    spec = _copy(tmp_path, "E306_13b_joint_layout_h100")
    spec.write_text(
        spec.read_text(encoding="utf-8")
        .replace('"H100-80GB"', '"V100-16GB"')
        .replace("hosts          = 4", "hosts          = 1")
        .replace("slots_per_host = 8", "slots_per_host = 4")
        .replace("data   = 32", "data   = 4")
        .replace('precision   = "bf16"', 'precision   = "fp16"'),
        encoding="utf-8",
    )
    errors = [d for d in check_spec(str(spec)).diagnostics if d.code == "E306"]
    assert errors and not errors[0].fix
    assert errors[0].help.startswith("no change of tensor, data, micro_batch, precision or activation checkpointing")
    assert "a device with more memory such as" in errors[0].help
    code, _, err = run_cli("fix", str(spec))
    assert code == 1 and "0 of 1 finding" in err  # nothing to apply: the error remains, said as check says it


def test_check_json_carries_the_fixes_as_edits(tmp_path):
    spec = _copy(tmp_path, "E306_13b_joint_layout_h100")
    code, out, _ = run_cli("check", "--format", "json", str(spec))
    assert code == 1
    (finding,) = json.loads(out)
    lines = spec.read_text(encoding="utf-8").split("\n")
    edits = {
        (e["line"], lines[e["line"] - 1][e["column"] - 1 : e["end_column"] - 1], e["replacement"])
        for e in finding["fixes"]
    }
    assert {(text, new) for _, text, new in edits} == {("32", "8"), ("1", "4")}


def test_fix_misuse_and_unreadable_specs(tmp_path):
    code, _, err = run_cli("fix", str(tmp_path / "missing.llm"))
    assert code == 2 and "no such file" in err
    bad = tmp_path / "bad.llm"
    bad.write_bytes((CASES / "E306_13b_joint_layout_h100.llm").read_bytes().replace(b"layers", b"lay\xffers"))
    code, out, err = run_cli("fix", str(bad))
    assert code == 1 and "Traceback" not in err + out
