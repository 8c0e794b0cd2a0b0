"""`llmc search apply`: the best values written into the spec as a minimal edit.

The results files here are written by hand in the format runtime/search.py writes
(tests/integration/test_search_trains_runs.py applies a real search's results).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import ROOT, run_cli

from llmc.compiler import ast
from llmc.compiler.driver import check_spec
from llmc.compiler.fields import walk_schema
from llmc.compiler.source import Span
from llmc.compiler.spec_edits import literal, number_text

SPACE = {
    "train.batch_size": {"kind": "choice", "args": [64, 128]},
    "train.optimizer.lr": {"kind": "loguniform", "args": [0.0005, 0.005]},
    "model.transformer.dropout": {"kind": "uniform", "args": [0.0, 0.3]},
}
BEST = {"train.batch_size": 128, "train.optimizer.lr": 0.0012345678, "model.transformer.dropout": 0.0712345}


def spec_copy(tmp_path: Path) -> Path:
    """specs/translator.llm in tmp_path, its data paths made absolute (the text is the same otherwise)."""
    text = (ROOT / "specs" / "translator.llm").read_text().replace('"../examples/', f'"{ROOT}/examples/')
    path = tmp_path / "translator.llm"
    path.write_text(text)
    return path


def results(tmp_path: Path, profile: str | None = "local", best=BEST, spec="translator.llm", **extra) -> Path:
    data = {
        "spec": spec,
        "profile": profile,
        "model": "translator",
        "objective": "valid_loss",
        "direction": "minimize",
        "algorithm": "tpe",
        "backend": "local",
        "space": SPACE,
        "best": None if best is None else {"tid": 2, "params": best, "objective": 0.4, "trial_dir": "t/2"},
        "trials": [],
        **extra,
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    return path


def apply(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    return run_cli("search", "apply", *args, cwd=tmp_path)


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    old, new = before.splitlines(), after.splitlines()
    return [line for line in old if line not in new], [line for line in new if line not in old]


# --- values in the spec's own style ---------------------------------------------------------


def number(text: str) -> ast.Number:
    return ast.Number(float(text), text, Span("s", 1, 1, 1, 1))


def quantity(text: str, unit: str, kind: str, value: float) -> ast.Quantity:
    return ast.Quantity(value, kind, unit, text, Span("s", 1, 1, 1, 1))


@pytest.mark.parametrize(
    ("value", "digits", "exponent", "text"),
    [
        (0.0012345678, 3, True, "1.23e-3"),
        (0.0012, 3, True, "1.2e-3"),
        (0.001, 3, True, "1e-3"),
        (0.0712345, 3, False, "0.0712"),
        (0.25, 3, False, "0.25"),
        (12.0, 3, False, "12.0"),
        (123456.0, 3, False, "123456.0"),
        (0.0, 3, False, "0.0"),
    ],
)
def test_numbers_are_written_with_three_significant_digits_in_either_notation(value, digits, exponent, text):
    assert number_text(value, digits, exponent) == text


def field(path: str):
    ft, _, problem = walk_schema(tuple(path.split(".")))
    assert ft is not None and not problem
    return ft


def test_a_value_follows_the_notation_of_the_literal_it_replaces():
    lr = field("train.optimizer.lr")
    loguniform = SPACE["train.optimizer.lr"]
    assert literal(0.0012345678, lr, number("3e-4"), loguniform) == "1.23e-3"
    assert literal(0.0012345678, lr, number("0.0003"), loguniform) == "0.00123"


def test_a_duration_keeps_the_unit_it_was_written_in():
    every = field("train.checkpoint.every")
    minutes = quantity("30m", "m", "duration", 1800.0)
    assert literal(2730.0, every, minutes, {"kind": "uniform", "args": [600.0, 3600.0]}) == "45.5m"
    timeout = field("serve.batching.timeout")
    ms = quantity("5ms", "ms", "duration", 0.005)
    assert literal(0.0031234, timeout, ms, {"kind": "uniform", "args": [0.001, 0.01]}) == "3.12ms"


def test_a_fraction_is_written_in_percent():
    sparsity = field("compress.prune.sparsity")
    assert literal(0.4123, sparsity, quantity("30%", "%", "fraction", 0.3), {"kind": "uniform"}) == "41.2%"


def test_integers_choices_and_strings_are_written_exactly():
    assert literal(128, field("train.batch_size"), number("64"), {"kind": "choice"}) == "128"
    assert literal(100000, field("train.batch_size"), number("1_000"), {"kind": "choice"}) == "100_000"
    assert literal("fp16", field("train.precision"), None, {"kind": "choice"}) == '"fp16"'
    assert literal(0.15, field("model.transformer.dropout"), number("0.1"), {"kind": "quniform"}) == "0.15"


def test_rounding_never_leaves_the_searched_range():
    dropout = field("model.transformer.dropout")
    # 0.29996 to 3 digits is 0.3, the upper bound: inside.
    assert literal(0.29996, dropout, number("0.1"), {"kind": "uniform", "args": [0.0, 0.3]}) == "0.3"
    # 0.0012341 to 3 digits is 1.23e-3, below the lower bound 1.234e-3: a fourth digit is kept.
    lr = field("train.optimizer.lr")
    assert literal(0.0012341, lr, number("3e-4"), {"kind": "loguniform", "args": [0.001234, 0.005]}) == "1.234e-3"


# --- where the values go --------------------------------------------------------------------


def test_apply_replaces_the_profiles_overrides_and_adds_the_missing_one(tmp_path):
    spec = spec_copy(tmp_path)
    before = spec.read_text()
    code, out, err = apply(tmp_path, "translator.llm", "--profile", "local", "--from", str(results(tmp_path)))
    assert code == 0, err
    after = spec.read_text()
    removed, added = changed_lines(before, after)
    assert [line.split("=")[0].strip() for line in removed] == ["train.batch_size", "train.optimizer.lr"]
    assert [" ".join(line.split()) for line in added] == [
        "model.transformer.dropout = 0.0712",
        "train.batch_size = 128",
        "train.optimizer.lr = 1.23e-3",
    ]
    # The new override sits with the other model.transformer overrides.
    lines = after.splitlines()
    assert lines[lines.index(added[0]) - 1].strip().startswith("model.transformer.max_len")
    assert out.startswith("--- a/translator.llm\n+++ b/translator.llm\n") and "+  train.batch_size" in out
    result = check_spec(str(spec), "local")
    assert result.ok and result.ir.train.batch_size == 128 and result.ir.train.optimizer.lr == 1.23e-3
    assert result.ir.model.transformer.dropout == 0.0712
    base = check_spec(str(spec))
    assert base.ir.train.batch_size == 512  # the base spec is untouched
    assert run_cli("fmt", "--check", str(spec))[0] == 0


def test_apply_without_a_profile_edits_the_blocks_in_place(tmp_path):
    spec = spec_copy(tmp_path)
    before = spec.read_text()
    code, _, err = apply(tmp_path, "translator.llm", "--from", str(results(tmp_path, profile=None)))
    assert code == 0, err
    removed, added = changed_lines(before, spec.read_text())
    assert [" ".join(line.split()) for line in removed] == ["dropout = 0.1", "batch_size = 512", "lr = 3e-4"]
    assert [" ".join(line.split()) for line in added] == ["dropout = 0.0712", "batch_size = 128", "lr = 1.23e-3"]


def test_a_profile_only_the_base_defines_is_added_to_the_child(tmp_path):
    spec_copy(tmp_path)
    child = tmp_path / "child.llm"
    child.write_text('extends "translator.llm"\n')
    code, _, err = apply(
        tmp_path, "child.llm", "--profile", "local", "--from", str(results(tmp_path, spec="child.llm"))
    )
    assert code == 0, err
    text = child.read_text()
    assert text.startswith('extends "translator.llm"\n\nprofile local {\n') and text.endswith("}\n")
    assert check_spec(str(child), "local").ir.train.batch_size == 128


def test_dry_run_prints_the_diff_and_writes_nothing(tmp_path):
    spec = spec_copy(tmp_path)
    before = spec.read_text()
    code, out, err = apply(
        tmp_path, "translator.llm", "--profile", "local", "--from", str(results(tmp_path)), "--dry-run"
    )
    assert code == 0 and "+  train.batch_size" in out and "nothing written" in err
    assert spec.read_text() == before


def test_the_newest_run_record_is_applied_by_default(tmp_path):
    spec = spec_copy(tmp_path)
    older, newer = (tmp_path / "runs" / "translator-local" / n for n in ("20261201T000000Z", "20261202T000000Z"))
    for folder, size in ((older, 64), (newer, 128)):
        folder.mkdir(parents=True)
        results(tmp_path, best={**BEST, "train.batch_size": size}).rename(folder / "search-results.json")
    code, _, err = apply(tmp_path, "translator.llm", "--profile", "local")
    assert code == 0, err
    assert "runs/translator-local/20261202T000000Z/search-results.json" in err
    assert check_spec(str(spec), "local").ir.train.batch_size == 128


# --- refusals ---------------------------------------------------------------------------------


def test_no_results_is_a_clear_error_naming_the_command_that_makes_them(tmp_path):
    spec_copy(tmp_path)
    code, _, err = apply(tmp_path, "translator.llm", "--profile", "local")
    assert code == 1
    assert "llmc run translator.llm --profile local --stage search" in err and "Traceback" not in err


def test_results_of_another_profile_or_spec_are_refused(tmp_path):
    spec = spec_copy(tmp_path)
    before = spec.read_text()
    code, _, err = apply(tmp_path, "translator.llm", "--from", str(results(tmp_path, profile="local")))
    assert code == 2 and "--profile local" in err
    code, _, err = apply(
        tmp_path, "translator.llm", "--profile", "local", "--from", str(results(tmp_path, spec="x.llm"))
    )
    assert code == 2 and "not of translator.llm" in err
    assert spec.read_text() == before


def test_a_search_whose_trials_all_failed_has_nothing_to_apply(tmp_path):
    spec_copy(tmp_path)
    code, _, err = apply(tmp_path, "translator.llm", "--profile", "local", "--from", str(results(tmp_path, best=None)))
    assert code == 1 and "no trial succeeded" in err


def test_a_value_that_breaks_the_spec_is_refused_and_nothing_is_written(tmp_path):
    spec = spec_copy(tmp_path)
    before = spec.read_text()
    hostile = {**BEST, "train.batch_size": 96}  # not a multiple of data 2 x micro_batch 32
    code, out, err = apply(
        tmp_path, "translator.llm", "--profile", "local", "--from", str(results(tmp_path, best=hostile))
    )
    assert code == 1 and "E305" in err and "nothing written" in err and out == ""
    assert spec.read_text() == before


def test_a_corrupt_results_file_is_an_error_not_a_traceback(tmp_path):
    spec_copy(tmp_path)
    bad = tmp_path / "results.json"
    bad.write_text('{"trials": [')
    code, _, err = apply(tmp_path, "translator.llm", "--profile", "local", "--from", str(bad))
    assert code == 1 and "not a search's results" in err and "Traceback" not in err


def test_misuse_exits_2(tmp_path):
    spec_copy(tmp_path)
    assert apply(tmp_path, "missing.llm")[0] == 2
    assert apply(tmp_path, "translator.llm", "--profile", "nope")[0] == 2
    assert apply(tmp_path, "translator.llm", "--from", str(tmp_path / "nowhere"))[0] == 2
    assert run_cli("search", cwd=tmp_path)[0] == 2  # an action is required
