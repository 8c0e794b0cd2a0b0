"""The language's semantics, table-driven: literals and units, arithmetic, references,
lets, extends and profiles (docs/language.md)."""

from __future__ import annotations

import pytest

from llmc.compiler.driver import check_spec

BASE = """model m {{
  task = "classification"
  mlp {{
    inputs  = 4
    hidden  = [8]
    classes = 2
  }}
  data {{
    train = "a.csv"
    valid = "b.csv"
    test  = "c.csv"
  }}
}}
serve {{
  device = "cpu"
  sla {{
    p99_latency = {p99}
    throughput  = 10rps
  }}
}}
"""


def _check(text: str, **kw):
    return check_spec("spec.llm", text=text, **kw)


def _codes(result) -> list[str]:
    return [d.code for d in result.diagnostics]


@pytest.mark.parametrize(
    "expr,seconds",
    [
        ("500ms", 0.5),
        ("2 * 250ms", 0.5),
        ("1s - 500ms", 0.5),
        ("1m / 120", 0.5),
        ("(1s + 1s) / 4", 0.5),
        ("500_000us", 0.5),
        ("1h / 7200", 0.5),
        ("0.5s", 0.5),
        ("1500ms % 1s", 0.5),
    ],
)
def test_duration_arithmetic(expr, seconds):
    result = _check(BASE.format(p99=expr))
    assert result.ok, result.diagnostics
    assert result.ir.serve.sla.p99_latency == pytest.approx(seconds)


@pytest.mark.parametrize(
    "expr,code",
    [
        ("500", "E207"),  # a bare number for a duration
        ("25ms + 1GB", "E204"),  # units must match
        ("2ms * 3ms", "E204"),
        ("5parsecs", "E104"),
        ("1__0ms", "E105"),
        ("1ms / 0", "E205"),
        ('"fast"', "E204"),
        ("0ms", "E205"),  # p99 must be > 0
        ("-5ms", "E205"),
        ("1e999s", "E105"),
        ("nope", "E210"),
    ],
)
def test_bad_durations(expr, code):
    assert code in _codes(_check(BASE.format(p99=expr)))


def test_sizes_fractions_rates_normalise():
    text = (
        BASE.format(p99="80ms")
        + 'evaluate {\n  metric "accuracy" {\n    min = 90%\n  }\n  metric "model_size" {\n    max = 1.5KiB\n  }\n}\n'
    )
    result = _check(text)
    assert result.ok, result.diagnostics
    assert result.ir.evaluate.metric["accuracy"].min == pytest.approx(0.9)
    assert result.ir.evaluate.metric["model_size"].max == 1536
    assert result.ir.serve.sla.throughput == 10


def test_lets_references_and_late_binding(tmp_path):
    (tmp_path / "base.llm").write_text(
        "let width = 64\n"
        + BASE.format(p99="slow").replace("inputs  = 4", "inputs  = width")
        + "let slow = 2 * fast\nlet fast = 40ms\n"
    )
    (tmp_path / "child.llm").write_text('extends "base.llm"\nlet width = 32\n')
    result = check_spec(str(tmp_path / "child.llm"))
    assert result.ok, result.diagnostics
    assert result.ir.model.mlp.inputs == 32  # the child's `let` is seen by the base
    assert result.ir.serve.sla.p99_latency == pytest.approx(0.08)


def test_field_references_and_static_defaults():
    text = BASE.format(p99="serve.batching.timeout * 40")
    result = _check(text)
    assert result.ok, result.diagnostics
    assert result.ir.serve.sla.p99_latency == pytest.approx(0.08)  # the default timeout is 2ms


def test_reference_cycle_is_reported():
    text = BASE.format(p99="a") + "let a = b + 1ms\nlet b = a\n"
    result = _check(text)
    assert "E211" in _codes(result)


def test_strings_concatenate():
    text = 'let root = "s3://bucket/"\n' + BASE.format(p99="80ms").replace('"a.csv"', 'root + "train.csv"')
    result = _check(text)
    assert result.ir.model.data.train == "s3://bucket/train.csv"


def test_extends_merges_blocks_and_one_of_fields_replace(tmp_path):
    (tmp_path / "base.llm").write_text(
        BASE.format(p99="80ms")
        + (
            'train {\n  cluster {\n    device = "cpu"\n  }\n  batch_size = 8\n  epochs = 2\n'
            '  optimizer "adam" {\n    lr = 0.1\n    weight_decay = 0.5\n  }\n}\n'
        )
    )
    (tmp_path / "child.llm").write_text(
        'extends "base.llm"\ntrain {\n  steps = 100\n  optimizer "adam" {\n    lr = 0.01\n  }\n}\n'
    )
    result = check_spec(str(tmp_path / "child.llm"))
    assert result.ok, result.diagnostics
    train = result.ir.train
    assert (train.epochs, train.steps) == (None, 100)
    assert (train.optimizer.lr, train.optimizer.weight_decay) == (0.01, 0.5)  # merged by name and label


def test_profile_overrides_and_creates_blocks():
    text = (
        BASE.format(p99="80ms")
        + "profile fast {\n  serve.sla.p99_latency = 20ms\n  serve.batching.max_batch_size = 2\n}\n"
    )
    result = _check(text, profile="fast")
    assert result.ok, result.diagnostics
    assert result.ir.serve.sla.p99_latency == pytest.approx(0.02)
    assert result.ir.serve.batching.max_batch_size == 2
    assert _check(text).ir.serve.sla.p99_latency == pytest.approx(0.08)


@pytest.mark.parametrize(
    "text,code",
    [
        ('model m {\n  task = "translation"\n  task = "translation"\n}\n', "E106"),
        ("model m {\n}\nmodel m {\n}\n", "E208"),
        ('model m {\n  taks = "translation"\n}\n', "E202"),
        ("modle m {\n}\n", "E201"),
        ('model m {\n  task = "translate"\n}\n', "E206"),
        ('extends "nowhere.llm"\n', "E212"),
        ("let a = 1\nlet a = 2\n", "E106"),
        ('model m {\n  task = "a\\qb"\n}\n', "E107"),
        ('model m { task = "t" framework = "torch" }\n', "E103"),
    ],
)
def test_structural_errors(text, code):
    assert code in _codes(_check(text))


def test_profile_path_must_name_a_field():
    text = BASE.format(p99="80ms") + "profile p {\n  serve.sla.p99 = 1ms\n}\n"
    result = _check(text, profile="p")
    assert "E213" in _codes(result)
    d = next(d for d in result.diagnostics if d.code == "E213")
    assert "p99_latency" in d.help  # the help lists what the block has


# --- docs/language.md is the complete reference ---------------------------------------


def _reference() -> str:
    from pathlib import Path

    return (Path(__file__).resolve().parents[2] / "docs" / "language.md").read_text(encoding="utf-8")


def test_the_reference_lists_every_code_with_its_page_and_title():
    import re

    from llmc.compiler.codes import CODES

    rows = {
        m[0]: (m[1], m[2])
        for m in re.findall(r"^\| \[([EW]\d{3})\]\(errors/\1\.md\) \| (\w+) \| (.+?) \|$", _reference(), re.M)
    }
    assert rows == {c.code: (c.severity, c.title) for c in CODES.values()}


def test_the_reference_names_every_unit():
    import re

    from llmc.compiler.parse import UNITS

    table = re.search(r"^\| kind \| units \| normal form \|\n(.*?)\n\n", _reference(), re.S | re.M).group(1)
    for unit, (kind, _) in UNITS.items():
        row = next(line for line in table.split("\n") if line.startswith(f"| {kind} |"))
        assert f"`{unit}`" in row, f"unit {unit} ({kind}) is missing from the units table"


def test_the_reference_names_every_block_and_field_of_the_schema():
    from llmc.compiler.fields import fields_of
    from llmc.compiler.schema import Spec

    text = _reference()
    missing = []

    def walk(model, path):
        for name, ft in fields_of(model).items():
            if name == model.label_field:
                continue
            if f"`{name}" not in text:  # `name`, `name { }` or `name NAME { }`
                missing.append(".".join(path + (name,)))
            if ft.model is not None and ft.kind in ("block", "blocks"):
                walk(ft.model, path + (name,))

    walk(Spec, ())
    assert not missing, f"docs/language.md does not describe {missing}"
