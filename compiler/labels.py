"""A spec's local data files read as runtime/data.py reads them: lines, records and labels.

`TextLines` and `read_records` are the runtime's reading, streamed (one line at a
time, nothing kept): data_check.py checks every record with them (`llmc check
--data`, and `llmc run` before it starts), and this module counts the labels of the
training file for the type checker (E203's help: how many classes the data needs) and
checks/data.py (E205: fewer classes than labels). Only a local file of at most
MAX_LABEL_FILE_BYTES is counted; one that is remote, larger, unreadable or malformed
counts as unknown (None), so a spec check never fails on the data's bytes.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import re
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from .check_cache import consulted
from .schema import FORMAT_BY_EXTENSION

MAX_LABEL_FILE_BYTES = 64 << 20
# Data paths with these prefixes are remote: never read here.
URI_SCHEMES = ("s3://", "gs://", "gcs://", "hdfs://", "http://", "https://", "file://", "abfs://", "az://")

# How the runtime's csv module reads each format: TSV without quoting (a `"` in a
# sentence is text), CSV strictly (a file that ends inside a quoted field is an error,
# not a field that swallowed the rest of the file).
DIALECTS: dict[str, dict[str, Any]] = {
    "tsv": {"delimiter": "\t", "quoting": csv.QUOTE_NONE},
    "csv": {"strict": True},
}
# One line of text as a file opened with newline="" yields it: up to \n, \r\n or a lone \r.
_LINE = re.compile(r"[^\r\n]*(?:\r\n?|\n)|[^\r\n]+")


class BadByte(NamedTuple):
    """The first byte of a file that is not UTF-8."""

    line: int
    column: int  # 1-based, in characters of the line as shown (the bad byte as U+FFFD)
    offset: int  # from the start of the file
    byte: int


class TextLines:
    """A data file's lines, decoded as UTF-8 one at a time and split as a file opened
    with newline="" splits them (at \\n, \\r\\n or a lone \\r, the ending kept); a
    leading byte-order mark is dropped. A byte that is not UTF-8 reads as U+FFFD and the
    first is kept in `bad` (the runtime stops there)."""

    def __init__(self, binary: Iterable[bytes]):
        self._binary = binary
        self.number = 0  # lines read so far
        self.ended = True  # the last line read ends with a line break (only a file's last line may not)
        self.bad: BadByte | None = None
        self.recent: list[tuple[int, str]] = []  # (number, text) of the lines read since it was last cleared

    def __iter__(self) -> Iterator[str]:
        offset = 0
        for raw in self._binary:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                text = raw.decode("utf-8", errors="replace")
                if self.bad is None:
                    self.bad = self._bad_byte(raw, exc.start, offset)
            if offset == 0 and text.startswith("\ufeff"):
                text = text[1:]
            offset += len(raw)
            for piece in _LINE.findall(text) if "\r" in text else (text,):
                self.number += 1
                self.ended = piece.endswith(("\n", "\r"))
                self.recent.append((self.number, piece))
                yield piece

    def _bad_byte(self, raw: bytes, start: int, offset: int) -> BadByte:
        before = raw[:start].decode("utf-8")  # valid: `start` is the first bad byte
        if offset == 0:
            before = before.removeprefix("\ufeff")
        pieces = _LINE.findall(before) if "\r" in before else [before]
        # A lone \r before the byte ends a line of its own.
        complete = [p for p in pieces if p.endswith(("\r", "\n"))]
        column = len(before) - sum(len(p) for p in complete) + 1
        return BadByte(self.number + 1 + len(complete), column, offset + start, raw[start])


class Record(NamedTuple):
    """One header, row or malformed line of a data file, as the runtime reads it."""

    kind: str  # "header" | "row" (CSV and TSV: a list of fields; JSON lines: a dict) | "malformed"
    line: int  # the line it starts on
    values: Any  # the fields; for "malformed", what is wrong
    text: str  # its first line, without the line break
    ended: bool  # its last line ends with a line break (False: the file's last line, cut short?)
    cut: bool = False  # malformed because the file ends inside it (an open quote, an unfinished JSON value)


def read_records(lines: TextLines, fmt: str) -> Iterator[Record]:
    """The records of a data file, as runtime/data.py reads them: blank lines are skipped;
    for CSV and TSV the first record is the header. A CSV error ends the records (the
    runtime stops there); a malformed JSON line does not."""
    if fmt == "jsonl":
        for text in lines:
            lines.recent.clear()
            if not text.strip():
                continue
            shown = text.rstrip("\r\n")
            try:
                row = json.loads(text)
            except (ValueError, RecursionError) as exc:
                yield Record("malformed", lines.number, f"not JSON: {exc}", shown, lines.ended, not lines.ended)
                continue
            if not isinstance(row, dict):
                yield Record("malformed", lines.number, f"{json_kind(row)}, not a JSON object", shown, lines.ended)
                continue
            yield Record("row", lines.number, row, shown, lines.ended)
        return
    reader = csv.reader(lines, **DIALECTS.get(fmt, DIALECTS["csv"]))
    header = False
    while True:
        lines.recent.clear()
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            line, text = lines.recent[0] if lines.recent else (lines.number + 1, "")
            cut = str(exc) == "unexpected end of data"
            reason = "the file ends inside a quoted field" if cut else str(exc)
            yield Record("malformed", line, reason, text.rstrip("\r\n"), lines.ended, cut)
            return
        if not values:
            continue
        line, text = lines.recent[0]
        yield Record("row" if header else "header", line, values, text.rstrip("\r\n"), lines.ended)
        header = True


def json_kind(value: object) -> str:
    """What a JSON value is, in JSON's words: "an array", "a string", "null"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return "a number"
    return "a string" if isinstance(value, str) else "an array"


class LabelCount(NamedTuple):
    distinct: int  # distinct label values
    needed: int  # the classes the runtime needs: the largest id + 1 for integer labels, else `distinct`
    integer: bool

    def describe(self) -> str:
        noun = "label" if self.distinct == 1 else "labels"
        if self.integer and self.needed != self.distinct:
            return f"{self.distinct} {noun} with ids up to {self.needed - 1}"
        return f"{self.distinct} {noun}"


def classes_needed(main_dir: str, model: dict) -> LabelCount | None:
    """The labels of a model's local training data (checked spec data), or None."""
    data = model.get("data") or {}
    train = data.get("train")
    if not isinstance(train, str):
        return None
    return count_labels(os.path.join(main_dir, train), data.get("format"), data.get("label") or "label")


def count_labels(path: str, fmt: str | None, column: str) -> LabelCount | None:
    """Labels in `column` of a local data file, counted as runtime/data.py numbers them."""
    if not path or path.startswith(URI_SCHEMES):
        return None
    consulted.add(path)  # a kept answer of `llmc check` depends on it (check_cache.py)
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    fmt = fmt or FORMAT_BY_EXTENSION.get(os.path.splitext(path)[1].lower())
    if fmt is None or not os.path.isfile(path) or st.st_size > MAX_LABEL_FILE_BYTES:
        return None
    # Keyed by the file's size and time, so an edited file is read again (a search check reads it per variant).
    return _count_labels(os.path.abspath(path), fmt, column, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _count_labels(path: str, fmt: str, column: str, size: int, mtime_ns: int) -> LabelCount | None:
    try:
        values = _column_values(path, fmt, column)
    except (OSError, ValueError):
        return None
    if not values:
        return None
    maybe_ids = [as_int(v) for v in values]
    ids = [i for i in maybe_ids if i is not None]
    if len(ids) == len(maybe_ids):
        if min(ids) < 0 or max(ids) >= 1 << 31:
            return None  # not class ids the runtime accepts: it reports them
        return LabelCount(len(set(ids)), max(ids) + 1, True)
    distinct = len({str(v) for v in values})
    return LabelCount(distinct, distinct, False)


def _column_values(path: str, fmt: str, column: str) -> list | None:
    """Every value of `column`, or None when a record is malformed or lacks it."""
    values: list = []
    at, width = -1, 0
    with open(path, "rb") as f:
        for record in read_records(TextLines(f), fmt):
            if record.kind == "malformed":
                return None
            if fmt == "jsonl":
                if column not in record.values:
                    return None
                values.append(record.values[column])
            elif record.kind == "header":
                if column not in record.values:
                    return None
                at, width = record.values.index(column), len(record.values)
            elif len(record.values) != width:
                return None
            else:
                values.append(record.values[at])
    return values


def as_int(v: object) -> int | None:
    """A label as runtime/data.py reads it: an integer, or a number that is whole; else None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return int(f) if f.is_integer() else None
