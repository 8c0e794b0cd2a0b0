"""`llmc fmt`: canonical, idempotent, comment-preserving and meaning-preserving."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import ROOT, run_cli

from llmc.compiler.diagnostics import Collector
from llmc.compiler.fmt import FormatError, format_text
from llmc.compiler.parse import parse
from llmc.compiler.source import SourceFile

ALL_SPECS = sorted((ROOT / "specs").glob("*.llm")) + sorted((ROOT / "tests" / "diagnostics").glob("*.llm"))


def _shape(node):
    """A node with its spans (and literal spellings kept by fmt) stripped: its meaning."""
    if isinstance(node, tuple) and hasattr(node, "_fields"):
        return (type(node).__name__,) + tuple(
            _shape(getattr(node, f))
            for f in node._fields
            if f not in ("span", "key_span", "name_span", "label_span", "close_span", "op_span", "comments", "path")
            or (f == "path" and not isinstance(getattr(node, f), str))
        )
    if isinstance(node, (list, tuple)):
        return tuple(_shape(n) for n in node)
    return node


def _parse(text: str):
    diags = Collector()
    tree = parse(SourceFile("x.llm", text), diags)
    return tree, diags


@pytest.mark.parametrize("spec", ALL_SPECS, ids=[p.name for p in ALL_SPECS])
def test_fmt_is_idempotent_and_keeps_meaning_and_comments(spec: Path):
    text = spec.read_text(encoding="utf-8", errors="replace")
    try:
        once = format_text(text)
    except FormatError:
        return  # a syntax-error case: fmt refuses it (tested below)
    assert format_text(once) == once
    before, _ = _parse(text)
    after, diags = _parse(once)
    assert not diags.has_errors
    assert _shape(before.statements) == _shape(after.statements)
    assert [c.text.rstrip() for c in before.comments] == [c.text.rstrip() for c in after.comments]


def test_canonical_layout():
    messy = (
        '# spec\nlet   w=512\nmodel  m {task="translation"\n'
        "  transformer {\n\n\n    layers=2 # two\n    d_model = w*2\n  heads = (w/64)\n  }\n"
        '  metric "b" { min = 1 }\n}\n\n\n\nserve{}\n'
    )
    assert format_text(messy) == (
        '# spec\nlet w = 512\n\nmodel m {\n  task = "translation"\n'
        "  transformer {\n    layers  = 2  # two\n    d_model = w * 2\n    heads   = w / 64\n  }\n"
        '  metric "b" {\n    min = 1\n  }\n}\n\nserve {}\n'
    )


def test_parentheses_only_where_precedence_needs_them():
    text = "let a = (1 + 2) * 3 - (4 - 5) + (6 * 7) - -(8)\n"
    assert format_text(text) == "let a = (1 + 2) * 3 - (4 - 5) + 6 * 7 - -8\n"


def test_specs_are_formatted():
    code, _, err = run_cli("fmt", "--check", "specs/", cwd=ROOT)
    assert code == 0, err


def test_fmt_check_reports_and_fmt_rewrites(tmp_path):
    spec = tmp_path / "a.llm"
    spec.write_text("let   x=1\n")
    code, _, err = run_cli("fmt", "--check", str(spec))
    assert code == 1 and "not formatted" in err
    assert spec.read_text() == "let   x=1\n"
    code, _, _ = run_cli("fmt", str(spec))
    assert code == 0 and spec.read_text() == "let x = 1\n"


def test_fmt_refuses_a_file_with_syntax_errors(tmp_path):
    spec = tmp_path / "bad.llm"
    spec.write_text("model m {\n")
    code, _, err = run_cli("fmt", str(spec))
    assert code == 1 and "E103" in err
    assert spec.read_text() == "model m {\n"


def test_a_comment_on_a_list_item_stays_beside_it():
    text = (
        "evaluate {\n"
        '  tags = ["a",   # first\n'
        '    "b", "c",  # second and third\n'
        "    # before the last\n"
        '    "d"\n'
        "  ]  # after the list\n"
        "}\n"
    )
    once = format_text(text)
    assert once == (
        "evaluate {\n"
        "  tags = [\n"
        '    "a",  # first\n'
        '    "b", "c",  # second and third\n'
        "    # before the last\n"
        '    "d",\n'
        "  ]  # after the list\n"
        "}\n"
    )
    assert format_text(once) == once
    before, after = _parse(text)[0], _parse(once)[0]
    assert _shape(before.statements) == _shape(after.statements)


def test_comments_in_lists_and_calls_at_every_position():
    text = (
        "let xs = [  # the opening line\n"
        "  1,\n"
        "  [2, 3],  # nested\n"
        "  # at the end\n"
        "]\n"
        "search {\n"
        "  space {\n"
        "    train.optimizer.lr = loguniform(1e-5,  # low\n"
        "                                    1e-2)  # high\n"
        "    model.mlp.hidden = choice([64,\n"
        "                               # inside an inner list: above its item\n"
        "                               128], [256])\n"
        "  }\n"
        "}\n"
    )
    once = format_text(text)
    assert once == (
        "let xs = [  # the opening line\n"
        "  1,\n"
        "  [2, 3],  # nested\n"
        "  # at the end\n"
        "]\n"
        "\n"
        "search {\n"
        "  space {\n"
        "    train.optimizer.lr = loguniform(\n"
        "      1e-5,  # low\n"
        "      1e-2,\n"
        "    )  # high\n"
        "    model.mlp.hidden   = choice(\n"
        "      # inside an inner list: above its item\n"
        "      [64, 128], [256],\n"
        "    )\n"
        "  }\n"
        "}\n"
    )
    assert format_text(once) == once
    before, after = _parse(text)[0], _parse(once)[0]
    assert _shape(before.statements) == _shape(after.statements)
    assert [c.text for c in before.comments] == [c.text for c in after.comments]


def test_a_list_without_comments_still_joins_one_line():
    assert format_text("let xs = [\n  1,\n  2,\n]\n") == "let xs = [1, 2]\n"
    assert format_text("let xs = [\n]  # empty\n") == "let xs = []  # empty\n"
    assert format_text("let xs = [\n  # nothing yet\n]\n") == "let xs = [\n  # nothing yet\n]\n"


def test_trailing_comments_after_attributes_and_closing_braces_stay():
    text = 'train {  # the block\n  epochs = 3  # the attribute\n  optimizer "adam" {\n    lr = 1e-3\n  }  # the inner block\n}  # the outer block\n'
    assert format_text(text) == text
