"""Property-based fuzzing: no input, however malformed, ends in a traceback.

Mutations of the real specs (deleted, inserted, duplicated and swapped spans,
truncation, hostile characters, huge numbers, unknown units, invalid UTF-8) go
through the whole front end and the renderers. Whatever parses must also format
idempotently. CI runs at least 2000 examples (LLMC_FUZZ_EXAMPLES raises it).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import ROOT
from llmc.compiler.diagnostics import Collector
from llmc.compiler.driver import check_spec
from llmc.compiler.fmt import FormatError, format_text
from llmc.compiler.diagnostic_output import render_human, render_json
from llmc.compiler.source import decode_source

SEEDS = [(ROOT / "specs" / name).read_bytes() for name in ("translator.llm", "classifier.llm")]
EXAMPLES = int(os.environ.get("LLMC_FUZZ_EXAMPLES", "2000"))

FRAGMENTS = [
    b"{", b"}", b"[", b"]", b"(", b")", b"=", b'"', b"\\", b"#", b"\n", b".", b",", b"-", b"*", b"/", b"//", b"%",
    b"let", b"extends", b"profile", b"true", b"1e999", b"9" * 400, b"0.000000001", b"1__0", b"5parsecs",
    b"30m", b"1GiB", b"99.9%", b"400rps", b"\xff\xfe", b"\x00", "é\u202e\U0001F600".encode(), b'"\\u{110000}"',
    b"choice(", b"uniform(1, 2)", b"model.transformer.d_model", b"a.b.c.d", b"metric \"x\" {", b"\t", b"\r\n",
    b'extends "missing.llm"\n', b"let x = x\n", b"1 / 0", b"(((((", b"-" * 50,
]


@st.composite
def mutated_spec(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["delete", "insert", "duplicate", "truncate", "swap", "random"]))
        n = len(data)
        i = draw(st.integers(0, max(0, n - 1)))
        j = min(n, i + draw(st.integers(0, 40)))
        if op == "delete":
            del data[i:j]
        elif op == "insert":
            data[i:i] = draw(st.sampled_from(FRAGMENTS))
        elif op == "duplicate":
            data[i:i] = data[i:j]
        elif op == "truncate":
            del data[i:]
        elif op == "swap":
            k = draw(st.integers(0, max(0, n - 1)))
            data[i:j], data[k:k] = b"", data[i:j]
        else:
            data[i:i] = draw(st.binary(max_size=12))
    return bytes(data)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutated_spec(), st.sampled_from([None, "local"]))
def test_no_input_ends_in_a_traceback(tmp_path_factory, blob: bytes, profile):
    directory = tmp_path_factory.getbasetemp()
    path = directory / "fuzz.llm"
    path.write_bytes(blob)
    try:
        result = check_spec(str(path), profile=profile)
    except Exception as exc:  # only the two documented misuse errors may escape
        assert type(exc).__name__ == "UnknownProfile", f"{type(exc).__name__}: {exc}"
        return
    render_human(result.diagnostics, result.sources)
    render_json(result.diagnostics)
    for d in result.diagnostics:
        assert d.span.line >= 1 and d.span.col >= 1
    source = decode_source(str(path), blob)
    if source.bad_byte_offset is None:
        try:
            once = format_text(source.text)
        except FormatError:
            return
        assert format_text(once) == once


def test_collector_sorts_by_position():
    c = Collector()
    result = check_spec("x.llm", text='model m {\n  task = 1\n  framework = 2\n}\n')
    lines = [d.span.line for d in result.diagnostics]
    assert lines == sorted(lines)
    assert not c.diagnostics
