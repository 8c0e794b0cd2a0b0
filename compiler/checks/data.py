"""The model against its data and tokenizer: E203 (an encoder without `classes`, reached
by a search variant), E205 (fewer classes than the training data has labels), E214
(a tokenizer that is neither a known name nor an existing model file; a folder is not
one), E215 (a vocabulary smaller than the byte tokenizer's ids) and W201 (one larger:
rows no input reaches).

A tokenizer file's vocabulary is not checked here: reading a SentencePiece model needs
its library, which the compiler does not import; the runtime checks `vocab` against
the model's pieces when a run starts (runtime/tokenizer.py).

The training data is read only when it is a local file of at most MAX_LABEL_FILE_BYTES;
a file that is remote, larger, unreadable or malformed is not judged here (the runtime
reports it), so a check never fails on the data's bytes.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
from typing import NamedTuple

from ..diagnostics import Fix
from ..estimate import format_count
from ..schema import TOKENIZER_NAMES
from ..suggest import closest
from . import CheckContext

# What `tokenizer = "bytes"` produces (runtime/tokenizer.py VOCAB_SIZE; the compiler does not
# import the runtime, a test keeps the two equal): ids 0-255 for the bytes, then PAD, BOS, EOS, SEP.
BYTE_VOCAB = 260
TOKENIZERS = TOKENIZER_NAMES  # the names the runtime implements
# Kinds of tokenizer that live in a model file: written bare, they name no file.
FILE_KINDS = ("sentencepiece", "bpe", "wordpiece", "unigram", "tiktoken")
MAX_LABEL_FILE_BYTES = 64 << 20
_URI_SCHEMES = ("s3://", "gs://", "gcs://", "hdfs://", "http://", "https://", "file://", "abfs://", "az://")
_FORMAT_BY_EXTENSION = {".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv"}


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
    if not path or path.startswith(_URI_SCHEMES):
        return None
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    fmt = fmt or _FORMAT_BY_EXTENSION.get(os.path.splitext(path)[1].lower())
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
    ids = [_as_int(v) for v in values]
    if all(i is not None for i in ids):
        if min(ids) < 0 or max(ids) >= 1 << 31:
            return None  # not class ids the runtime accepts: it reports them
        return LabelCount(len(set(ids)), max(ids) + 1, True)
    distinct = len({str(v) for v in values})
    return LabelCount(distinct, distinct, False)


def _column_values(text: str, fmt: str, column: str) -> list | None:
    if text.startswith("\ufeff"):
        text = text[1:]
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
    reader = (csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE) if fmt == "tsv"
              else csv.reader(io.StringIO(text, newline="")))
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


def check(ctx: CheckContext) -> None:
    _classes(ctx)
    _tokenizer(ctx)


def _classes(ctx: CheckContext) -> None:
    model = ctx.ir.model
    arch, mlp = model.transformer, model.mlp
    if arch is not None:
        if model.task != "classification" and arch.kind != "encoder":
            return
        if arch.classes is None:
            # The spec itself got this from the type checker; a search variant gets it here.
            ctx.diags.error("E203", ctx.spans.key("model.transformer"), "a classifier needs `classes`",
                            label="`classes` is required here: the output layer has one logit per class",
                            help="add `classes = N`, the number of labels (class ids 0..N-1)")
            return
        path, classes = "model.transformer.classes", arch.classes
    elif mlp is not None:
        path, classes = "model.mlp.classes", mlp.classes
    else:
        return
    data = model.data
    found = count_labels(os.path.join(ctx.spans.main_dir, data.train), data.format, data.label or "label")
    if found is not None and classes < found.needed:
        ctx.diags.error("E205", ctx.spans.attribute(path), f"`classes = {classes}` is fewer than the training data's labels",
                        label=f"the training data has {found.describe()}",
                        help=f"set classes = {found.needed}")


def _tokenizer(ctx: CheckContext) -> None:
    model = ctx.ir.model
    name = model.data.tokenizer
    path = "model.data.tokenizer"
    if name not in TOKENIZERS and not name.startswith(_URI_SCHEMES):
        # The type checker made the path relative to the main spec's folder, as it does data paths.
        file = name if os.path.isabs(name) else os.path.join(ctx.spans.main_dir, name)
        if not name.strip() or not os.path.exists(file):
            _unknown_tokenizer(ctx, name, file)
            return
        if os.path.isdir(file):  # the runtime reads one SentencePiece model file
            ctx.diags.error("E214", ctx.spans.value(path), f'tokenizer "{name}" is a folder',
                            label="the runtime reads a SentencePiece model file (.model), not a folder",
                            help="name the .model file in it")
            return
    arch = model.transformer
    if name == "bytes" and arch is not None and arch.vocab < BYTE_VOCAB:
        ctx.diags.error("E215", ctx.spans.attribute("model.transformer.vocab"),
                        "vocab too small for the byte tokenizer",
                        label=f"vocab = {arch.vocab}, but the byte tokenizer produces {BYTE_VOCAB} ids "
                              f"(256 bytes + PAD, BOS, EOS, SEP)",
                        help=f"set vocab = {BYTE_VOCAB}")
    elif name == "bytes" and arch is not None and arch.vocab > BYTE_VOCAB:
        # The embedding is tied to the output projection (estimate.py): each unused row costs d_model parameters once.
        rows = arch.vocab - BYTE_VOCAB
        written = ctx.spans.values.get("model.transformer.vocab")
        ctx.diags.warning("W201", ctx.spans.attribute("model.transformer.vocab"),
                          "vocab larger than the byte tokenizer produces",
                          label=f"vocab = {arch.vocab}, but the byte tokenizer produces {BYTE_VOCAB} ids: "
                                f"{rows:,} embedding rows x d_model {arch.d_model} = "
                                f"{format_count(rows * arch.d_model)} parameters are never used",
                          help=f"set vocab = {BYTE_VOCAB}, or name a tokenizer file whose vocabulary has "
                               f"{arch.vocab} ids (a SentencePiece model of {arch.vocab - 4:,} pieces)",
                          fix=(Fix(written, str(BYTE_VOCAB)),) if written is not None else ())


def _unknown_tokenizer(ctx: CheckContext, name: str, file: str) -> None:
    span = ctx.spans.value("model.data.tokenizer")
    known = ", ".join(f'"{t}"' for t in TOKENIZERS)
    if not name.strip():
        ctx.diags.error("E214", span, "empty tokenizer name", label=f"known tokenizer names: {known}",
                        help='write `tokenizer = "bytes"` or the path of a tokenizer file')
        return
    bare = "/" not in name and "\\" not in name and "." not in name
    if bare and name.lower() in FILE_KINDS:
        ctx.diags.error("E214", span, f'tokenizer "{name}" names a kind of tokenizer, not its file',
                        label=f'no file "{name}" exists; known tokenizer names: {known}',
                        help=f'write the path of the {name} model file, or `tokenizer = "bytes"`')
        return
    guess = closest(name, TOKENIZERS) if bare else None
    if guess:
        ctx.diags.error("E214", span, f'unknown tokenizer "{name}"',
                        label=f"not a tokenizer name ({known}) nor a file",
                        help=f'did you mean "{guess}"?')
        return
    shown = os.path.normpath(file).replace(os.sep, "/")
    ctx.diags.error("E214", span, f'tokenizer file "{name}" does not exist',
                    label=f"not a tokenizer name ({known}) nor a file",
                    help=f"the file {shown} does not exist: give the path of an existing tokenizer file "
                         f'(relative to the spec that names it), or use `tokenizer = "bytes"`')
