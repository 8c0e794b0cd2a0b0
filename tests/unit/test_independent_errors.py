"""One mistake does not hide the others, and hides exactly its own cascades.

A value the type checker rejects is left out of the checked data; the later checks
still run, and a finding is kept only when its check read no rejected field
(compiler/reads.py). Two properties, tested adversarially:

- independence: three unrelated mistakes in three blocks are reported together;
- no cascade: a wrongly typed value written into any one field of a clean spec adds
  that field's own error and nothing else. Every later finding must also be a finding
  of the spec with the field's value as written: a finding that reads the field would
  be about a default the user never wrote.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import ROOT

from llmc.compiler.driver import check_spec
from llmc.compiler.schema import DERIVED_DEFAULT_SOURCES, derive_defaults

TRANSLATOR = (ROOT / "specs" / "translator.llm").read_text(encoding="utf-8")
BASE = TRANSLATOR[: TRANSLATOR.index("\nprofile local")] + "\n"


def _codes(text: str, tmp_path: Path, name: str = "spec.llm") -> list[str]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return [d.code for d in check_spec(str(path)).diagnostics if d.severity == "error"]


def test_three_unrelated_mistakes_in_three_blocks_are_reported_together(tmp_path):
    text = (
        BASE.replace('precision   = "bf16"', 'precision   = "bf61"')  # train: an unknown enum value
        .replace("    data   = 4\n", "    data   = 3\n")  # parallel: a layout that does not cover the cluster
        .replace("max_evals = 48", "max_evls = 48")  # search: a misspelt key
    )
    codes = _codes(text, tmp_path)
    assert {"E206", "E301", "E202"} <= set(codes), codes
    # the memory check reads the precision: it is not run on a precision the user did not write
    assert "E306" not in codes and "W301" not in codes


def test_a_rejected_field_hides_the_checks_that_read_it_and_only_those(tmp_path):
    # heads = "8" is rejected (E204). E304 (d_model % heads) and E302 (heads % tensor)
    # read heads: not said. The layout's E301 does not: said.
    text = BASE.replace("    heads   = 8\n", '    heads   = "8"\n').replace("    data   = 4\n", "    data   = 3\n")
    codes = _codes(text, tmp_path)
    assert "E204" in codes and "E301" in codes, codes
    assert "E304" not in codes and "E302" not in codes, codes


def test_a_derived_default_of_a_rejected_field_is_rejected_too(tmp_path):
    # d_ff is derived from d_model when not written; d_model = "512" is rejected, so the
    # checks that read d_ff (memory, latency) are not run on 4 x the default d_model.
    text = BASE.replace("    d_model = width\n", '    d_model = "512"\n').replace("    d_ff    = 4 * width\n", "")
    found = check_spec(str(_write(tmp_path, text)))
    errors = [d for d in found.diagnostics if d.severity == "error"]
    assert [d.code for d in errors] == ["E204"], [(d.code, d.message) for d in errors]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.llm"
    path.write_text(text, encoding="utf-8")
    return path


_SYNTAX = ("E1", "E2")  # their cases stop before the checks


def _findings(result) -> set[tuple[str, int, str]]:
    return {(d.code, d.span.line, d.message) for d in result.diagnostics}


# The repository's specs, and every diagnostics case of a later check (E3xx-E8xx, W...):
# those have findings of their own, which a wrong value elsewhere must neither hide
# nor add to.
SPECS = ["specs/translator.llm", "specs/classifier.llm"] + sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / "tests" / "diagnostics").glob("*.llm") if p.name[:2] not in _SYNTAX
)


@pytest.mark.parametrize("spec", SPECS)
def test_a_wrong_value_in_any_field_adds_its_own_error_and_no_cascade(spec, tmp_path):
    source = ROOT / spec
    original = check_spec(str(source))
    assert original.spans is not None
    lines = source.read_text(encoding="utf-8").split("\n")
    said = _findings(original)
    tried = 0
    for path, span in sorted(original.spans.values.items()):
        kind = original.spans.kinds.get(path)
        if kind is None or span.file != str(source) or span.line != span.end_line:
            continue  # a block's label, or a value written in another file or over lines
        wrong = "42" if kind == "str" else '"oops"'
        line = lines[span.line - 1]
        broken = lines[: span.line - 1] + [line[: span.col - 1] + wrong + line[span.end_col - 1 :]] + lines[span.line :]
        target = source.parent / f".independent-{source.name}"
        target.write_text("\n".join(broken), encoding="utf-8")
        try:
            result = check_spec(str(target))
        finally:
            target.unlink()
        own = [d for d in result.diagnostics if d.span.line == span.line and d.severity == "error"]
        assert own, f"{spec}: {path} = {wrong} was not rejected"
        others = {f for f in _findings(result) if f[1] != span.line}
        cascades = others - said
        assert not cascades, f"{spec}: {path} = {wrong} added findings that read it: {sorted(cascades)}"
        tried += 1
    assert tried >= 5, tried  # the spec's fields were tried, not skipped


def test_every_derived_default_names_its_sources():
    """Each derived default changes when one of its named sources changes, and each
    default derive_defaults fills is in the table."""
    data = {
        "model": {
            "name": "m",
            "task": "translation",
            "framework": "torch",
            "transformer": {"d_model": 64},
            "data": {"train": "a.tsv"},
        },
        "train": {"cluster": {"hosts": 2, "slots_per_host": 2}, "parallel": {"tensor": 1}, "batch_size": 64},
        "serve": {"sla": {"availability": 0.999}},
        "search": {"objective": "valid_loss"},
        "deploy": {},
    }
    filled = derive_defaults(_deep(data))
    derived = _leaves(filled) - _leaves(data)
    assert derived <= set(DERIVED_DEFAULT_SOURCES), derived - set(DERIVED_DEFAULT_SOURCES)


def _leaves(data: dict, path: str = "") -> set[str]:
    out: set[str] = set()
    for key, value in data.items():
        sub = f"{path}.{key}" if path else key
        out |= _leaves(value, sub) if isinstance(value, dict) else {sub}
    return out


def _deep(data):
    return {k: _deep(v) for k, v in data.items()} if isinstance(data, dict) else data
