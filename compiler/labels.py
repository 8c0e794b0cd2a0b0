"""The labels of a spec's local training data, counted as runtime/data.py numbers them.

The type checker (E203's help: how many classes the data needs) and checks/data.py
(E205: fewer classes than labels) read it. Only a local file of at most
MAX_LABEL_FILE_BYTES is read; one that is remote, larger, unreadable or malformed
counts as unknown (None), so a check never fails on the data's bytes.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
from typing import NamedTuple

from .schema import FORMAT_BY_EXTENSION

MAX_LABEL_FILE_BYTES = 64 << 20
# Data paths with these prefixes are remote: never read here.
URI_SCHEMES = ("s3://", "gs://", "gcs://", "hdfs://", "http://", "https://", "file://", "abfs://", "az://")


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
        with open(path, "rb") as f:
            text = f.read(MAX_LABEL_FILE_BYTES + 1).decode("utf-8", errors="replace")
        values = _column_values(text, fmt, column)
    except (OSError, csv.Error, ValueError, RecursionError):
        return None
    if not values:
        return None
    maybe_ids = [_as_int(v) for v in values]
    ids = [i for i in maybe_ids if i is not None]
    if len(ids) == len(maybe_ids):
        if min(ids) < 0 or max(ids) >= 1 << 31:
            return None  # not class ids the runtime accepts: it reports them
        return LabelCount(len(set(ids)), max(ids) + 1, True)
    distinct = len({str(v) for v in values})
    return LabelCount(distinct, distinct, False)


def _column_values(text: str, fmt: str, column: str) -> list | None:
    text = text.removeprefix("\ufeff")
    if fmt == "jsonl":
        values = []
        for line in text.splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row, dict) or column not in row:
                return None
            values.append(row[column])
        return values
    reader = (
        csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
        if fmt == "tsv"
        else csv.reader(io.StringIO(text, newline=""))
    )
    header = next(reader, None)
    if not header or column not in header:
        return None
    at = header.index(column)
    values = []
    for row in reader:
        if not row:
            continue
        if len(row) != len(header):
            return None
        values.append(row[at])
    return values


def _as_int(v) -> int | None:
    # As runtime/data.py reads a label: an integer, or a number that is whole.
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return int(f) if f.is_integer() else None
