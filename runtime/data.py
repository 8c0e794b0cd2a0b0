"""Reading a spec's data: TSV, JSONL and CSV files -> padded numpy arrays -> batches.

Framework-free (numpy only), so torch and TensorFlow training, evaluation and
compression read the data the same way. `load_split(model_cfg, path)` returns a
`Split`: a few equally long arrays, framed for the model:

  encoder-decoder    source [N, L]    token ids of the source column, PAD-padded
  (translation,      target [N, L+1]  BOS + target ids + EOS; the decoder reads
   summarization)                     target[:, :-1] and predicts target[:, 1:]
  decoder            tokens [N, L+1]  BOS + text + EOS (language modeling), or
                                      BOS + source + SEP + target + EOS when the task has
                                      source/target columns (a prompt)
                     loss_mask [N, L] 1 where tokens[:, 1:] is predicted: every real token
                                      for text, only the target and its EOS for a prompt
  encoder            text [N, L], label [N]  (classification)
  mlp                features [N, inputs] float32, label [N]

Ids come from the tokenizer `data.tokenizer` names (tokenizer.py: bytes or a
SentencePiece model; PAD, BOS, EOS and SEP are the same ids for both).
L is the model's max_len (the learned positional tables have max_len rows); longer
inputs are truncated. Labels: when every train label is an integer they are used as
class ids as they are; otherwise the sorted distinct train labels are numbered and
their names travel with the model (`Split.label_names`).

Reading is strict and says where: a byte that is not UTF-8, a row with more or fewer
fields than the header, a CSV quoting error, a line that is not a JSON object, an
empty split, a missing column, a feature that is not a number or a label outside the
classes is a DataError naming the file and line (`train.tsv:3: 1 fields, the header
has 2`), never an exception from deep inside a decoder. The compiler reads files the
same way before a run starts (compiler/data_check.py, `llmc check --data`);
tests/unit/test_data_check.py feeds both the same broken files and requires they agree.

Order and sharding, as torch's DistributedSampler does it: `epoch_order(n, seed,
epoch)` is one permutation shared by every rank (seeded by seed and epoch, so a
resumed run sees the same order), and `shard(order, rank, size)` gives each
data-parallel rank every size-th example after padding the order by wrapping around,
so every rank has the same number of batches and no rank waits on a collective the
others never call. Tensor-parallel ranks of one replica share a data-parallel rank
and therefore read the same batches.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterable, Iterator
from typing import IO, Any, NamedTuple

import numpy as np

from .tokenizer import BOS, EOS, PAD, SEP, TokenizerError, get_tokenizer

FORMAT_BY_EXTENSION = {".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv"}
URI_SCHEMES = ("s3://", "gs://", "gcs://", "hdfs://", "http://", "https://", "az://", "abfs://")


class DataError(ValueError):
    """The data does not match the spec (a missing column, a bad value): the user's to fix."""


class Split(NamedTuple):
    arrays: dict  # name -> np.ndarray, all with the same first dimension
    framing: str  # "pairs" | "tokens" | "classify" | "features"
    label_names: list | None  # class names when the labels were strings; None when integer ids
    path: str

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))


# --- reading files -------------------------------------------------------------------


def detect_format(path: str, fmt: str | None = None) -> str:
    if fmt:
        return fmt
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMAT_BY_EXTENSION:
        raise DataError(f"{path}: cannot tell the format from the extension; set data.format")
    return FORMAT_BY_EXTENSION[ext]


def open_binary(path: str) -> IO[bytes]:
    """A local file, or a URI through fsspec when it is installed (s3://, gs://, ...)."""
    if path.startswith(URI_SCHEMES):
        try:
            import fsspec
        except ImportError:
            raise DataError(
                f"{path}: reading a URI needs fsspec (and its s3fs/gcsfs driver); "
                f"or copy the data locally and pass --set model.data.<split>=PATH"
            ) from None
        try:
            return fsspec.open(path, "rb").open()
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read: {exc}") from None
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: a folder, not a data file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None


# One line as a text file opened with newline="" yields it: up to \n, \r\n or a lone \r.
_LINE = re.compile(r"[^\r\n]*(?:\r\n?|\n)|[^\r\n]+")
# TSV is read without quoting (a `"` in a sentence is text, not a delimiter); CSV
# strictly, so a file that ends inside a quoted field is an error, not one last field
# that swallowed the rest of the file.
_DIALECTS: dict[str, dict[str, Any]] = {"tsv": {"delimiter": "\t", "quoting": csv.QUOTE_NONE}, "csv": {"strict": True}}
_CUT = "the file ends mid-row (cut short?): "


class _Lines:
    """A data file's lines, decoded as UTF-8 one at a time, so that a byte that is not
    UTF-8 is a DataError naming its line and byte offset. Split as a file opened with
    newline="" splits them (\n, \r\n or a lone \r, kept); a byte-order mark is dropped."""

    def __init__(self, binary: Iterable[bytes], path: str):
        self._binary = binary
        self.path = path
        self.number = 0  # lines read so far
        self.ended = True  # the last line read ends with a line break (only a file's last line may not)

    def __iter__(self) -> Iterator[str]:
        offset = 0
        try:
            for raw in self._binary:
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DataError(self._not_utf8(raw, exc.start, offset)) from None
                if offset == 0:
                    text = text.removeprefix("\ufeff")
                offset += len(raw)
                for piece in _LINE.findall(text) if "\r" in text else (text,):
                    self.number += 1
                    self.ended = piece.endswith(("\n", "\r"))
                    yield piece
        except OSError as exc:
            raise DataError(f"{self.path}: cannot read: {exc.strerror or exc}") from None

    def _not_utf8(self, raw: bytes, start: int, offset: int) -> str:
        before = raw[:start].decode("utf-8")
        if offset == 0:
            before = before.removeprefix("\ufeff")
        complete = [p for p in _LINE.findall(before) if p.endswith(("\r", "\n"))]
        line = self.number + 1 + len(complete)
        column = len(before) - sum(len(p) for p in complete) + 1
        return (
            f"{self.path}:{line}: not UTF-8: byte 0x{raw[start]:02x} at byte offset {offset + start} "
            f"(column {column}); save the file as UTF-8"
        )


class Table(NamedTuple):
    columns: list[str]  # in file order (JSON lines: in order of first use)
    rows: list[dict]
    lines: list[int]  # the line each row starts on
    header_line: int = 0  # CSV and TSV: the header's line (JSON lines have none)


def read_rows(path: str, fmt: str | None = None) -> tuple[list[str], list[dict]]:
    """(column names in file order, rows as dicts of strings/values)."""
    table = read_table(path, fmt)
    return table.columns, table.rows


def read_table(path: str, fmt: str | None = None) -> Table:
    """The rows of a data file and the line each starts on; blank lines are skipped."""
    fmt = detect_format(path, fmt)
    with open_binary(path) as f:
        lines = _Lines(f, path)
        return _read_jsonl(lines, path) if fmt == "jsonl" else _read_delimited(lines, path, fmt)


def _read_jsonl(lines: _Lines, path: str) -> Table:
    columns: list[str] = []
    rows: list[dict] = []
    starts: list[int] = []
    for text in lines:
        if not text.strip():
            continue
        cut = _CUT if not lines.ended else ""
        try:
            row = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise DataError(f"{path}:{lines.number}: {cut}not JSON: {exc}") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{lines.number}: {_json_kind(row)}, not a JSON object (one object per line)")
        for k in row:
            if k not in columns:
                columns.append(k)
        rows.append(row)
        starts.append(lines.number)
    return Table(columns, rows, starts)


def _read_delimited(lines: _Lines, path: str, fmt: str) -> Table:
    reader = csv.reader(lines, **_DIALECTS.get(fmt, _DIALECTS["csv"]))
    header: list[str] | None = None
    header_line = 0
    rows: list[dict] = []
    starts: list[int] = []
    read = 0  # lines the reader has taken
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            if str(exc) == "unexpected end of data":
                raise DataError(f"{path}:{read + 1}: {_CUT}the file ends inside a quoted field") from None
            raise DataError(f"{path}:{read + 1}: malformed row: {exc}") from None
        start, read = read + 1, reader.line_num
        if not values:
            continue
        if header is None:
            header, header_line = values, start
            continue
        if len(values) != len(header):
            cut = _CUT if not lines.ended else ""
            raise DataError(f"{path}:{start}: {cut}{len(values)} fields, the header has {len(header)}")
        rows.append(dict(zip(header, values)))
        starts.append(start)
    if header is None:
        raise DataError(f"{path}: empty file (expected a header line)")
    return Table(header, rows, starts, header_line)


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return "a number"
    return "a string" if isinstance(value, str) else "an array"


# --- framing ---------------------------------------------------------------------------


def framing_for(model_cfg: dict) -> str:
    """How a model reads its examples (see the module docstring)."""
    if model_cfg.get("mlp") is not None:
        return "features"
    kind = model_cfg["transformer"]["kind"]
    task = model_cfg["task"]
    if kind == "encoder-decoder":
        if task not in ("translation", "summarization"):
            raise DataError(f"an encoder-decoder model needs source/target data; task {task!r} has none")
        return "pairs"
    if kind == "decoder":
        if task == "classification":
            raise DataError('a decoder-only model cannot be trained for classification; use kind = "encoder"')
        return "tokens"
    if task != "classification":
        raise DataError(f'an encoder-only model classifies; task {task!r} needs kind "encoder-decoder" or "decoder"')
    return "classify"


def _column(table: Table, data: dict, key: str, default: str, path: str) -> str:
    """The name of the column `data.<key>` names, once every row has it."""
    name = data.get(key) or default
    if table.header_line and name not in table.columns:
        has = ", ".join(map(repr, table.columns))
        raise DataError(f"{path}:{table.header_line}: no column {name!r} (data.{key}); the header has {has}")
    _every_row_has(table, [name], path)
    return name


def _every_row_has(table: Table, names: list[str], path: str) -> None:
    """JSON lines rows may leave keys out; the runtime reads each of `names` from every row."""
    for row, line in zip(table.rows, table.lines, strict=True):
        for name in names:
            if name not in row:
                raise DataError(f"{path}:{line}: no {name!r} in this row")


def _pad(seqs: list[list[int]], width: int) -> np.ndarray:
    out = np.full((len(seqs), width), PAD, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


def load_split(model_cfg: dict, path: str, label_names: list | None = None) -> Split:
    """Read one split for `model_cfg` (model.json's "model" block).

    For classification, pass the train split's `label_names` when loading valid/test so
    that all splits number classes alike.
    """
    data = model_cfg["data"]
    table = read_table(path, data.get("format"))
    rows = table.rows
    if not rows:
        raise DataError(f"{path}: no examples (the file holds no row but its header)")
    framing = framing_for(model_cfg)
    if framing == "features":
        return _features(model_cfg["mlp"], data, table, path, label_names)
    arch = model_cfg["transformer"]
    try:
        tok = get_tokenizer(data.get("tokenizer", "bytes"), arch["vocab"])
    except TokenizerError as exc:
        raise DataError(str(exc)) from None
    L = arch["max_len"]
    if framing == "pairs":
        src_col = _column(table, data, "source", "source", path)
        tgt_col = _column(table, data, "target", "target", path)
        src = [tok.encode(str(r[src_col]))[:L] for r in rows]
        tgt = [[BOS] + tok.encode(str(r[tgt_col]))[: L - 1] + [EOS] for r in rows]
        return Split({"source": _pad(src, L), "target": _pad(tgt, L + 1)}, framing, None, path)
    if framing == "tokens":
        if model_cfg["task"] in ("translation", "summarization"):
            src_col = _column(table, data, "source", "source", path)
            tgt_col = _column(table, data, "target", "target", path)
            seqs, masks = [], []
            for r in rows:
                t = tok.encode(str(r[tgt_col]))[: L // 2] + [EOS]
                s = tok.encode(str(r[src_col]))[: max(0, L - 1 - len(t))]  # the target keeps at least half
                seq = [BOS] + s + [SEP] + t
                seqs.append(seq[: L + 1])
                # Position i predicts seq[i + 1]: only the target (after SEP) and its EOS count.
                first = len(s) + 1  # the index of SEP: it predicts the first target token
                masks.append([0] * first + [1] * (len(seq[: L + 1]) - 1 - first))
            mask = np.zeros((len(rows), L), dtype=np.float32)
            for i, m in enumerate(masks):
                mask[i, : len(m)] = m
            return Split({"tokens": _pad(seqs, L + 1), "loss_mask": mask}, framing, None, path)
        text_col = _column(table, data, "text", "text", path)
        seqs = [([BOS] + tok.encode(str(r[text_col])) + [EOS])[: L + 1] for r in rows]
        tokens = _pad(seqs, L + 1)
        mask = (tokens[:, 1:] != PAD).astype(np.float32)
        return Split({"tokens": tokens, "loss_mask": mask}, framing, None, path)
    text_col = _column(table, data, "text", "text", path)
    label_col = _column(table, data, "label", "label", path)
    classes = arch.get("classes") or 2
    labels, names = _labels([r[label_col] for r in rows], table.lines, classes, path, label_names)
    text = _pad([tok.encode(str(r[text_col]))[:L] for r in rows], L)
    return Split({"text": text, "label": labels}, framing, names, path)


def _features(mlp: dict, data: dict, table: Table, path: str, label_names) -> Split:
    label_col = _column(table, data, "label", "label", path)
    rows = table.rows
    feature_cols = [c for c in table.columns if c != label_col]
    if len(feature_cols) != mlp["inputs"]:
        where = f"{path}:{table.header_line}" if table.header_line else path
        raise DataError(
            f"{where}: {len(feature_cols)} feature columns (every column but {label_col!r}), "
            f"but the mlp has inputs = {mlp['inputs']}"
        )
    _every_row_has(table, feature_cols, path)
    features = np.empty((len(rows), len(feature_cols)), dtype=np.float32)
    for i, (r, line) in enumerate(zip(rows, table.lines, strict=True)):
        try:
            features[i] = [float(r[c]) for c in feature_cols]
        except (TypeError, ValueError, OverflowError):
            bad = next(c for c in feature_cols if not _is_number(r[c]))
            raise DataError(f"{path}:{line}: feature {bad!r} is {r[bad]!r}, not a number") from None
    labels, names = _labels([r[label_col] for r in rows], table.lines, mlp["classes"], path, label_names)
    return Split({"features": features, "label": labels}, "features", names, path)


def _is_number(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError, OverflowError):
        return False


def _as_int(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return int(f) if f.is_integer() else None


def _labels(
    values: list, lines: list[int], classes: int, path: str, names: list | None
) -> tuple[np.ndarray, list | None]:
    if names is None:
        ints = [_as_int(v) for v in values]
        if all(i is not None for i in ints):
            for i, line in zip(ints, lines, strict=True):
                assert i is not None
                if not 0 <= i < classes:
                    raise DataError(
                        f"{path}:{line}: label {i} is outside 0..{classes - 1} (the model has {classes} classes)"
                    )
            return np.asarray(ints, dtype=np.int64), None
        names = sorted({str(v) for v in values})
        if len(names) > classes:
            seen: set[str] = set()
            for v, line in zip(values, lines, strict=True):
                seen.add(str(v))
                if len(seen) > classes:
                    raise DataError(
                        f"{path}:{line}: label {str(v)!r} is label number {classes + 1}: {len(names)} distinct "
                        f"labels, but the model has {classes} classes"
                    )
    index = {n: i for i, n in enumerate(names)}
    out = np.empty(len(values), dtype=np.int64)
    for i, (v, line) in enumerate(zip(values, lines, strict=True)):
        key = str(v)
        if key not in index:
            raise DataError(f"{path}:{line}: label {key!r} does not occur in the train split")
        out[i] = index[key]
    return out, names


# --- order, shards, batches --------------------------------------------------------------


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The example order of one epoch: identical on every rank, different every epoch."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch]).permutation(n)


def shard(order: np.ndarray, rank: int, size: int, pad: bool = True) -> np.ndarray:
    """This data-parallel rank's share. With `pad`, the order is wrapped around to a
    multiple of `size` first (DistributedSampler), so every rank gets the same count;
    without, every example is used exactly once (for evaluation)."""
    if pad and len(order) % size:
        extra = size - len(order) % size
        order = np.concatenate([order, np.resize(order, extra)])
    return order[rank::size]


def batches(
    split: Split, indices: np.ndarray, batch_size: int, drop_last: bool = True, trim: bool = True
) -> Iterator[dict]:
    """Batches of `split` in `indices` order. `trim` cuts trailing all-PAD columns (a
    batch of 20-byte dates does not pay for max_len = 64); pass False where a fixed
    shape is wanted (a traced TensorFlow function)."""
    stop = len(indices) - (len(indices) % batch_size if drop_last else 0)
    for start in range(0, stop, batch_size):
        idx = indices[start : start + batch_size]
        batch = {k: v[idx] for k, v in split.arrays.items()}
        yield trim_batch(batch) if trim else batch


def trim_batch(batch: dict) -> dict:
    for key in ("source", "text"):
        if key in batch:
            batch[key] = batch[key][:, : max(1, _used(batch[key]))]
    for key in ("target", "tokens"):
        if key in batch:
            n = max(2, _used(batch[key]))
            batch[key] = batch[key][:, :n]
            if "loss_mask" in batch:
                batch["loss_mask"] = batch["loss_mask"][:, : n - 1]
    return batch


def _used(ids: np.ndarray) -> int:
    """Columns up to the last non-PAD one."""
    cols = np.nonzero((ids != PAD).any(axis=0))[0]
    return int(cols[-1]) + 1 if len(cols) else 0


def micro_batches_per_rank(n: int, data_parallel: int, micro_batch: int) -> int:
    """Micro-batches each data-parallel rank runs in one epoch (the last partial one dropped)."""
    per_rank = -(-n // data_parallel)
    return per_rank // micro_batch
