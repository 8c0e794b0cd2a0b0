"""The parser reuses the statements of top-level chunks it has parsed before; the
result is always what a parse from scratch gives."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import ROOT

from llmc.compiler import parse as parse_mod
from llmc.compiler.diagnostics import Collector
from llmc.compiler.source import SourceFile

SPECS = sorted((ROOT / "specs").glob("*.llm")) + sorted((ROOT / "examples").rglob("*.llm"))


def _from_scratch(source: SourceFile):
    """The full parse, as a file the chunk path declines takes."""
    diags = Collector()
    saved = parse_mod._parse_in_chunks
    parse_mod._parse_in_chunks = lambda text: None
    try:
        return parse_mod.parse(source, diags), [d.code for d in diags.diagnostics]
    finally:
        parse_mod._parse_in_chunks = saved


def _chunked(source: SourceFile):
    diags = Collector()
    assert parse_mod._parse_in_chunks(source.text) is not None
    return parse_mod.parse(source, diags), [d.code for d in diags.diagnostics]


@pytest.mark.parametrize("spec", SPECS, ids=[p.name for p in SPECS])
def test_chunked_parse_equals_the_full_parse(spec: Path):
    text = spec.read_text(encoding="utf-8")
    # The spec as it is, with a line inserted above it (every span moves), with a
    # number changed inside, and as it is again (all from the cache).
    for variant in (text, "\n" + text, text.replace("= 1", "= 7", 1), text):
        source = SourceFile(str(spec), variant)
        assert _chunked(source) == _from_scratch(source)
    # The same text in another file: the trees are reused, the spans name that file.
    other = SourceFile("elsewhere/other.llm", text)
    tree, _ = _chunked(other)
    assert tree == _from_scratch(other)[0] and tree.statements[0].span.file == "elsewhere/other.llm"


def test_files_with_errors_get_the_full_parse_diagnostics():
    good = (ROOT / "specs" / "translator.llm").read_text(encoding="utf-8")
    for broken, code in [
        (good + "\n}\n", "E103"),
        (good.replace("{", "{ {", 1), "E103"),
        (good + "\nx = 50parsecs\n", "E104"),
        (good + "\na = 1 b = 2\n", "E103"),
    ]:
        source = SourceFile("spec.llm", broken)
        tree, codes = _from_scratch(source)
        assert code in codes
        diags = Collector()
        assert parse_mod.parse(source, diags) == tree and [d.code for d in diags.diagnostics] == codes


def test_a_changed_block_is_the_only_chunk_parsed_again():
    text = (ROOT / "specs" / "translator.llm").read_text(encoding="utf-8")
    parse_mod._CHUNKS.clear()
    assert parse_mod._parse_in_chunks(text) is not None
    before = dict(parse_mod._CHUNKS)
    changed = text.replace("epochs      = 20", "epochs      = 21", 1)
    assert changed != text and parse_mod._parse_in_chunks(changed) is not None
    new = [key for key in parse_mod._CHUNKS if key not in before]
    assert len(new) == 1 and new[0][2].lstrip().startswith("train {")
