"""A help that proposes text proposes text that works.

Diagnostics whose help proposes exact text carry it as a structured fix
(`Diagnostic.fix`: spans and replacements). Each common mistake below is written
into a clean spec; the test checks that the expected diagnostic carries a fix, that
the help quotes what the fix writes, applies the fix, checks the spec again and
requires it clean: the diagnostic is gone and no other error took its place.

The same is done for every case in tests/diagnostics/: each fix a case's
diagnostics carry is applied and re-checked, and a syntax or schema diagnostic
(E101-E107, E201-E213) whose help proposes a value must carry the fix. (The later checks'
helps, "set data = 4" and the like in E3xx-E8xx, carry no structured fix yet.)
"""

from __future__ import annotations

import json
import re
import shlex
from collections import Counter
from pathlib import Path

import pytest
from helpers import ROOT, run_cli

from llmc.compiler.diagnostics import Diagnostic, Fix
from llmc.compiler.driver import check_spec

BASE = """\
model digits {
  task = "classification"

  mlp {
    inputs  = 64
    hidden  = [128]
    classes = 10
  }

  data {
    train = "data/digits/train.csv"
    valid = "data/digits/valid.csv"
    test  = "data/digits/test.csv"
  }
}

train {
  cluster {
    device = "A100-80GB"
  }
  precision  = "fp16"
  batch_size = 256
  epochs     = 10
  optimizer "adam" {
    lr = 1e-3
  }
  checkpoint {
    every = 30m
  }
}

serve {
  device = "T4"
  sla {
    p99_latency  = 50ms
    throughput   = 100rps
    availability = 99.9%
  }
  replicas {
    min = 2
    max = 4
  }
  resources {
    cpu    = 2
    memory = 4GB
  }
}

deploy {
  namespace = "ml-digits"
  image     = "registry.example.com/digits:1.0"
}
"""

# (what BASE says, the mistake written instead, the code it must produce)
MISTAKES = [
    pytest.param("p99_latency  = 50ms", "p99_latency  = 300 ms", "E104", id="space-before-unit"),
    pytest.param("availability = 99.9%", "availability = 99.9 %", "E104", id="space-before-percent"),
    pytest.param(
        "availability = 99.9%\n  }",
        "availability = 99.9 %  # three nines\n  }",
        "E104",
        id="space-before-percent-then-comment",
    ),
    pytest.param("every = 30m", "every = 30 min", "E104", id="space-before-unit-alias"),
    pytest.param("every = 30m", "every = 30min", "E104", id="unit-alias"),
    pytest.param("memory = 4GB", "memory = 4Gi", "E104", id="kubernetes-gibibytes"),
    pytest.param("memory = 4GB", "memory = 4G", "E104", id="kubernetes-gigabytes"),
    pytest.param("p99_latency  = 50ms", "p99_latency  = 50000µs", "E101", id="micro-sign"),
    pytest.param('precision  = "fp16"', "precision  = bf16", "E210", id="unquoted-enum-value"),
    pytest.param('precision  = "fp16"', "precision  = bf61", "E210", id="unquoted-misspelt-enum-value"),
    pytest.param('task = "classification"', "task = classification", "E210", id="unquoted-task"),
    pytest.param('device = "T4"\n  sla', "device = T4\n  sla", "E210", id="unquoted-string"),
    pytest.param("precision  =", "activation_checkpointing = True\n  precision  =", "E210", id="capitalised-true"),
    pytest.param("availability = 99.9%", "availability = 99.9", "E205", id="percent-without-sign"),
    pytest.param("cpu    = 2", 'cpu    = "500m"', "E204", id="quoted-millicores"),
    pytest.param("cpu    = 2", "cpu    = 500m", "E207", id="millicores"),
    pytest.param("cpu    = 2", 'cpu    = "2"', "E204", id="quoted-cores"),
    pytest.param("memory = 4GB", 'memory = "4Gi"', "E204", id="quoted-kubernetes-size"),
    pytest.param("p99_latency  = 50ms", 'p99_latency  = "300ms"', "E204", id="quoted-duration"),
    pytest.param("p99_latency  = 50ms", "p99_latency  = 50", "E207", id="bare-number-for-duration"),
    pytest.param("epochs     = 10", "epochs     = 10.0", "E204", id="float-for-integer"),
    pytest.param('namespace = "ml-digits"', "namespace = 5", "E204", id="number-for-string"),
    pytest.param('precision  = "fp16"', 'precision  = "bf61"', "E206", id="misspelt-enum-value"),
    pytest.param("batch_size = 256", "batch_sise = 256", "E202", id="misspelt-field"),
    pytest.param("  batch_size = 256", "  // the global batch\n  batch_size = 256", "E103", id="slash-comment-line"),
    pytest.param("batch_size = 256", "batch_size = 256 // across all ranks", "E103", id="slash-comment-after-value"),
    pytest.param("batch_size = 256", "batch_size = 256 // global", "E210", id="slash-comment-of-one-word"),
    pytest.param(
        'task = "classification"', 'task = "classification"  // what it learns', "E103", id="slash-comment-before-block"
    ),
    # `// the task` then `mlp {` parses (as `... // the` and a block `task mlp {`): lowering finds it
    pytest.param(
        'task = "classification"',
        'task = "classification"  // the task',
        "E103",
        id="slash-comment-words-parse-as-a-block",
    ),
    pytest.param("batch_size = 256", "batch_size = 1,024", "E105", id="thousands-comma"),
    pytest.param("hidden  = [128]", "hidden  = [1,024]", "E105", id="thousands-comma-in-list"),
    pytest.param("batch_size = 256", "batch_size = 1__024", "E105", id="double-underscore"),
    pytest.param("hidden  = [128]", "hidden  = 128, 64", "E103", id="list-without-brackets"),
    pytest.param("lr = 1e-3", "lr = .5", "E105", id="no-leading-zero"),
    pytest.param("lr = 1e-3", "lr = 1.", "E105", id="nothing-after-point"),
    pytest.param('task = "classification"', 'task: "classification"', "E101", id="colon-for-equals"),
    pytest.param("inputs  = 64", "inputs  64", "E103", id="missing-equals"),
    pytest.param("inputs  = 64", "inputs  = 64;", "E101", id="semicolon"),
    pytest.param('task = "classification"', "task = 'classification'", "E101", id="single-quotes"),
    pytest.param('task = "classification"', "task = \u201cclassification\u201d", "E101", id="typographic-quotes"),
]

# The text a help proposes: "write `300ms`", "did you mean the string "bf16"?".
_PROPOSAL = re.compile(r'\b(?:write|did you mean(?: the string)?) (`[^`]+`|"[^"]+")')


def apply_fixes(text: str, fixes: tuple[Fix, ...]) -> str:
    """The text with each fix's span replaced (spans: 1-based lines and columns, end exclusive)."""
    starts = [0]
    for line in text.split("\n"):
        starts.append(starts[-1] + len(line) + 1)

    def offset(line: int, col: int) -> int:
        return starts[line - 1] + col - 1

    edits = sorted(
        ((offset(f.span.line, f.span.col), offset(f.span.end_line, f.span.end_col), f.replacement) for f in fixes),
        reverse=True,
    )
    for start, end, replacement in edits:
        text = text[:start] + replacement + text[end:]
    return text


def errors(diags: list[Diagnostic]) -> list[Diagnostic]:
    return [d for d in diags if d.severity == "error"]


def shown(diags: list[Diagnostic]) -> str:
    return "\n".join(f"{d.code} {d.span.line}:{d.span.col} {d.message} | {d.help}" for d in diags)


def test_base_spec_is_clean(tmp_path):
    spec = tmp_path / "spec.llm"
    spec.write_text(BASE, encoding="utf-8")
    assert not errors(check_spec(str(spec)).diagnostics)


def check_fix_applies(spec: Path, text: str, code: str) -> str:
    """Check `text` as `spec`; the first `code` diagnostic's fix, applied, must leave
    the spec clean. Returns the fixed text."""
    spec.write_text(text, encoding="utf-8")
    before = errors(check_spec(str(spec)).diagnostics)
    found = [d for d in before if d.code == code]
    assert found, f"expected {code}, got:\n{shown(before)}"
    diag = found[0]
    assert diag.fix, f"{code} proposes no fix: {diag}"
    assert all(f.span.file == diag.span.file for f in diag.fix)
    fixed = apply_fixes(text, diag.fix)
    assert fixed != text
    proposal = _PROPOSAL.search(diag.help)
    if proposal is not None and "..." not in proposal.group(1):
        quoted = proposal.group(1)
        literal = quoted.strip("`")
        assert literal in fixed, f"the help proposes {quoted}, the fix writes something else:\n{fixed}"
    spec.write_text(fixed, encoding="utf-8")
    after = errors(check_spec(str(spec)).diagnostics)
    assert not after, f"after applying the fix of `{diag.help}`:\n{shown(after)}"
    return fixed


@pytest.mark.parametrize("right, wrong, code", MISTAKES)
def test_the_fix_a_help_proposes_makes_the_spec_clean(tmp_path, right, wrong, code):
    assert right in BASE
    check_fix_applies(tmp_path / "spec.llm", BASE.replace(right, wrong, 1), code)


def test_space_before_unit_is_read_as_the_unit_and_the_file_goes_on(tmp_path):
    # The error is at `300 ms` itself (not at the next line), and a later syntax
    # mistake in the same file is still reported: the parse did not stop.
    text = BASE.replace("p99_latency  = 50ms", "p99_latency  = 300 ms").replace("cpu    = 2", "cpu    = 30min")
    spec = tmp_path / "spec.llm"
    spec.write_text(text, encoding="utf-8")
    found = errors(check_spec(str(spec)).diagnostics)
    assert [(d.code, d.span.line, d.span.col, d.span.end_col) for d in found] == [
        ("E104", 35, 20, 26),
        ("E104", 44, 14, 19),
    ], shown(found)
    assert "`300ms`" in found[0].help


def test_modulo_and_statements_after_a_number_are_not_units(tmp_path):
    # `10 % 7` is the modulo operator; `inputs = 64 classes = 10` is two statements
    # on a line, not a unit: neither is read as a number with a spaced unit.
    spec = tmp_path / "spec.llm"
    spec.write_text(BASE.replace("classes = 10", "classes = 17 % 7"), encoding="utf-8")
    assert not errors(check_spec(str(spec)).diagnostics)
    spec.write_text(
        BASE.replace("    classes = 10\n", "").replace("inputs  = 64", "inputs  = 64 d = 10"), encoding="utf-8"
    )
    found = errors(check_spec(str(spec)).diagnostics)
    assert [d.message for d in found] == ["expected a new line before this statement"], shown(found)


def test_division_is_not_taken_for_a_comment(tmp_path):
    # `512 // 2` and `width // heads` are integer division: no comment hint, and the spec is clean.
    spec = tmp_path / "spec.llm"
    spec.write_text(BASE.replace("batch_size = 256", "batch_size = 512 // 2"), encoding="utf-8")
    assert not errors(check_spec(str(spec)).diagnostics)
    spec.write_text(
        "let width = 512\nlet two = 2\n" + BASE.replace("batch_size = 256", "batch_size = width // two"),
        encoding="utf-8",
    )
    assert not errors(check_spec(str(spec)).diagnostics)
    # A misspelt name on the right of `//` is a misspelt name, not a comment.
    spec.write_text("let two = 2\n" + BASE.replace("batch_size = 256", "batch_size = 512 // tow"), encoding="utf-8")
    found = errors(check_spec(str(spec)).diagnostics)
    assert [(d.code, d.help) for d in found] == [("E210", "did you mean `two`?")], shown(found)


def test_renamed_block_in_an_extending_spec_explains_the_replacement(tmp_path):
    (tmp_path / "base.llm").write_text(BASE, encoding="utf-8")
    child = (
        'extends "base.llm"\n\nmodel "xlator" {\n  task = "classification"\n'
        "  mlp {\n    inputs  = 64\n    hidden  = [256]\n    classes = 10\n  }\n}\n"
    )
    spec = tmp_path / "child.llm"
    spec.write_text(child, encoding="utf-8")
    found = errors(check_spec(str(spec)).diagnostics)
    assert [d.code for d in found] == ["E203"], shown(found)
    note = " ".join(found[0].notes)
    assert 'replaces the whole `model "digits"` block' in note and "base.llm:1" in note
    assert 'keep its label: write `model "digits" { ... }`' in found[0].help
    fixed = check_fix_applies(spec, child, "E203")
    assert 'model "digits" {' in fixed


def test_replaced_block_without_missing_fields_has_no_note(tmp_path):
    # A new label that sets everything itself is a legitimate replacement: no E203.
    (tmp_path / "base.llm").write_text(BASE, encoding="utf-8")
    spec = tmp_path / "child.llm"
    model = BASE[BASE.index("model digits") : BASE.index("train {")].replace("model digits", 'model "xlator"')
    spec.write_text('extends "base.llm"\n\n' + model, encoding="utf-8")
    assert not errors(check_spec(str(spec)).diagnostics)


def test_json_output_carries_the_fix(tmp_path):
    spec = tmp_path / "spec.llm"
    spec.write_text(BASE.replace("p99_latency  = 50ms", "p99_latency  = 300 ms"), encoding="utf-8")
    code, out, _ = run_cli("check", "--format", "json", str(spec))
    assert code == 1
    found = [d for d in json.loads(out) if d["code"] == "E104"]
    assert found and found[0]["fixes"] == [
        {"file": str(spec), "line": 35, "column": 20, "end_line": 35, "end_column": 26, "replacement": "300ms"}
    ]


# --- every diagnostics case ---

CASES = ROOT / "tests" / "diagnostics"
SPECS = sorted(CASES.glob("*.llm"))


# The syntax and schema codes, whose helps propose text only with a fix.
SYNTAX_AND_SCHEMA_CODES = {f"E10{i}" for i in range(1, 8)} | {f"E2{i:02}" for i in range(1, 14)}


def _profile(spec: Path) -> str | None:
    first = spec.read_text(encoding="utf-8", errors="replace").split("\n", 1)[0]
    m = re.match(r"#\s*args:\s*(.*)", first)
    args = shlex.split(m.group(1)) if m else []
    return args[args.index("--profile") + 1] if "--profile" in args else None


@pytest.mark.parametrize("spec", SPECS, ids=[s.stem for s in SPECS])
def test_fixes_of_the_diagnostics_cases_apply(spec: Path, monkeypatch):
    rel = spec.relative_to(ROOT).as_posix()
    profile = _profile(spec)
    raw = spec.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        pytest.skip("not UTF-8: nothing to edit")
    monkeypatch.chdir(ROOT)  # cases name their files relative to the repository root
    before = check_spec(rel, profile=profile).diagnostics
    counts = Counter(d.code for d in before)
    for diag in before:
        proposal = _PROPOSAL.search(diag.help)
        if diag.code in SYNTAX_AND_SCHEMA_CODES and proposal is not None and "..." not in proposal.group(1):
            assert diag.fix, f"{diag.code}'s help proposes {proposal.group(1)} but carries no fix"
        if _VERIFIED.match(diag.help):  # a checked proposal: the fix is what it says
            assert diag.fix, f"{diag.code}'s help proposes a checked change but carries no fix"
            for value in re.findall(r"`[\w.]+ = ([^`]+)`", diag.help):
                assert any(value == f.replacement.strip() or value in f.replacement for f in diag.fix), (
                    value,
                    diag.fix,
                )
        if not diag.fix or any(f.span.file != rel for f in diag.fix):
            continue
        after = Counter(d.code for d in check_spec(rel, profile=profile, text=apply_fixes(text, diag.fix)).diagnostics)
        assert after[diag.code] < counts[diag.code], f"the fix of {diag.code} ({diag.help}) did not remove it"
        # A checked proposal adds no finding at all; a syntax or schema fix no error (a warning
        # about the value it writes may surface: the rejected value hid it).
        more = {
            code for code, n in after.items() if n > counts[code] and (_VERIFIED.match(diag.help) or code[0] == "E")
        }
        assert not more, f"the fix of {diag.code} ({diag.help}) brought new findings: {sorted(more)}"


# The help of a proposal the driver checked (proposals.py).
_VERIFIED = re.compile(r"set `[^`]+`.* \(checked: ")


def test_the_cases_of_the_later_checks_carry_checked_fixes(monkeypatch):
    """Not vacuous: most cases of the layout, memory, search and serving checks carry one."""
    monkeypatch.chdir(ROOT)
    later = [s for s in SPECS if s.stem[:2] in ("E3", "E6", "E7", "W3")]
    fixed = [
        s.stem
        for s in later
        if any(
            _VERIFIED.match(d.help) and d.fix
            for d in check_spec(s.relative_to(ROOT).as_posix(), _profile(s)).diagnostics
        )
    ]
    assert len(fixed) >= 15, fixed
