"""Property-based fuzzing: no input, however malformed, ends in a traceback.

Mutations of the real specs (deleted, inserted, duplicated and swapped spans,
truncation, hostile characters, huge numbers, unknown units, invalid UTF-8) go
through the whole front end and the renderers. Whatever parses must also format
idempotently. CI runs at least 2000 examples (LLMC_FUZZ_EXAMPLES raises it).

The real specs with numeric fields set to extreme values (0, 1, 2^31, 2^63, 1e200,
1e-300, 1us, 1e9h, ...) must either fail the check or build a bundle whose every
number is in its reader's range (tests/artifact_ranges.py). They build whole
bundles, so they run fewer examples (LLMC_FUZZ_RANGE_EXAMPLES, default 600).
"""

from __future__ import annotations

import os
import re

from artifact_ranges import violations
from helpers import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmc.compiler.bundle import build_files
from llmc.compiler.diagnostic_output import render_human, render_json
from llmc.compiler.diagnostics import Collector
from llmc.compiler.driver import check_spec
from llmc.compiler.fmt import FormatError, format_text
from llmc.compiler.source import Span, decode_source

SEEDS = [(ROOT / "specs" / name).read_bytes() for name in ("translator.llm", "classifier.llm")]
EXAMPLES = int(os.environ.get("LLMC_FUZZ_EXAMPLES", "2000"))

FRAGMENTS = [
    b"{",
    b"}",
    b"[",
    b"]",
    b"(",
    b")",
    b"=",
    b'"',
    b"\\",
    b"#",
    b"\n",
    b".",
    b",",
    b"-",
    b"*",
    b"/",
    b"//",
    b"%",
    b"let",
    b"extends",
    b"profile",
    b"true",
    b"1e999",
    b"9" * 400,
    b"0.000000001",
    b"1__0",
    b"5parsecs",
    b"30m",
    b"1GiB",
    b"99.9%",
    b"400rps",
    b"\xff\xfe",
    b"\x00",
    "é\u202e\U0001f600".encode(),
    b'"\\u{110000}"',
    b"choice(",
    b"uniform(1, 2)",
    b"model.transformer.d_model",
    b"a.b.c.d",
    b'metric "x" {',
    b"\t",
    b"\r\n",
    b'extends "missing.llm"\n',
    b"let x = x\n",
    b"1 / 0",
    b"(((((",
    b"-" * 50,
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


RANGE_EXAMPLES = int(os.environ.get("LLMC_FUZZ_RANGE_EXAMPLES", "600"))

INTS = ["0", "1", "2", "3", "2147483647", "2147483648", "4294967296", "9223372036854775807", "9223372036854775808"]
FLOATS = ["0", "1e-300", "0.5", "1", "1e12", "1e200"]
DURATIONS = ["0s", "1us", "1e-300s", "1ms", "80ms", "1s", "2147483648s", "1e9h", "1e200s"]
RATES = ["1e-300rps", "0.001rps", "1rps", "400rps", "2147483647rps", "2147483648rps", "1e12rps", "1e200rps"]
FRACTIONS = ["0", "1e-300", "0.5", "0.999", "99.9999999999%", "0.9999999999999", "1"]
SIZES = ["1B", "1GiB", "1e300B", "9223372036854775807B", "9223372036854775807KB"]

COMMON_FIELDS = {
    "serve.sla.throughput": RATES,
    "serve.sla.p99_latency": DURATIONS,
    "serve.sla.availability": FRACTIONS,
    "serve.sla.error_rate": FRACTIONS,
    "serve.replicas.min": INTS,
    "serve.replicas.max": INTS,
    "serve.batching.max_batch_size": INTS,
    "serve.batching.timeout": DURATIONS,
    "serve.resources.cpu": FLOATS + ["2147483648", "9223372036854775"],
    "serve.resources.memory": SIZES,
    "serve.device": ['"cpu"', '"T4"', '"A100-80GB"'],
    "serve.platform": ['"triton"', '"tf-serving"'],
    "train.batch_size": INTS,
    "train.epochs": INTS,
    "train.optimizer.lr": FLOATS,
    "train.cluster.hosts": INTS,
    "train.cluster.slots_per_host": INTS,
    "train.checkpoint.keep": INTS,
    "train.checkpoint.every": DURATIONS,
    "compress.quantize.samples": INTS,
    "search.max_evals": INTS,
    "search.parallel": INTS,
}
TRANSFORMER_FIELDS = {f"model.transformer.{name}": INTS for name in ("layers", "d_model", "heads", "vocab", "max_len")}
TRANSFORMER_FIELDS.update(
    {
        "train.micro_batch": INTS,
        "compress.distill.student.d_model": INTS,
        "compress.distill.student.layers": INTS,
        "compress.distill.epochs": INTS,
    }
)
MLP_FIELDS = {"model.mlp.inputs": INTS, "model.mlp.classes": INTS, "model.mlp.hidden": [f"[{v}]" for v in INTS]}
RANGE_SEEDS = [("translator", {**COMMON_FIELDS, **TRANSFORMER_FIELDS}), ("classifier", {**COMMON_FIELDS, **MLP_FIELDS})]


@st.composite
def extreme_spec(draw) -> tuple[str, str]:
    """(spec text, profile): a real spec whose profile `extreme` sets 1-4 numeric fields
    to extreme values; half the time over the `local` profile's values."""
    name, fields = draw(st.sampled_from(RANGE_SEEDS))
    paths = draw(st.lists(st.sampled_from(sorted(fields)), min_size=1, max_size=4, unique=True))
    overrides = {path: draw(st.sampled_from(fields[path])) for path in paths}
    text = (ROOT / "specs" / f"{name}.llm").read_text(encoding="utf-8")
    if draw(st.booleans()):  # replicas derived from the SLA instead of given
        text = re.sub(r"\n  replicas \{[^}]*\}\n", "\n", text, count=1)
    if draw(st.booleans()):
        # Over the local profile: its lines for these paths go, the rest stay.
        text = "".join(
            line
            for line in text.splitlines(keepends=True)
            if not any(line.strip().startswith(f"{path} ") for path in overrides)
        )
        text = text.rstrip()
        assert text.endswith("}")
        body = "".join(f"  {path} = {value}\n" for path, value in overrides.items())
        return text[:-1] + body + "}\n", "local"
    body = "".join(f"  {path} = {value}\n" for path, value in overrides.items())
    return text + f"\nprofile extreme {{\n{body}}}\n", "extreme"


@settings(max_examples=RANGE_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(extreme_spec())
def test_extreme_values_fail_the_check_or_build_in_range(spec):
    text, profile = spec
    result = check_spec(str(ROOT / "specs" / "extreme.llm"), profile=profile, text=text)
    render_human(result.diagnostics, result.sources)
    if not result.ok:
        assert any(d.severity == "error" for d in result.diagnostics)
        return
    files = build_files(result).files
    found = violations(files)
    assert not found, found


def test_collector_sorts_by_position():
    c = Collector()
    for line, col in ((3, 1), (1, 5), (1, 2)):  # reported out of order, as phases do
        c.error("E202", Span("x.llm", line, col, line, col + 1), f"at {line}:{col}")
    assert [(d.span.line, d.span.col) for d in c.sorted()] == [(1, 2), (1, 5), (3, 1)]
    # The driver's result is sorted the same way: two errors, on lines 2 and 3.
    result = check_spec("x.llm", text="model m {\n  task = 1\n  framework = 2\n}\n")
    lines = [d.span.line for d in result.diagnostics if d.severity == "error"]
    assert {2, 3} <= set(lines) and lines == sorted(lines)
