"""The data files a spec names, read as the runtime will read them: `llmc check --data`,
and the check `llmc run` makes before it writes or starts anything.

Each local train, valid and test file of the model's data block is read once,
streamed (labels.py's `TextLines` and `read_records`, the runtime's reading), and
every problem the runtime would stop on is a diagnostic at the file and line:

  E901  the file is missing (or a folder, or unreadable): at the spec's path
  E902  a byte that is not UTF-8 (its line, column and byte offset)
  E903  a row with more or fewer fields than the header
  E904  a label outside the model's classes
  E905  a feature (an mlp's input column) that is not a number
  E906  an empty split: no bytes, blank lines only, or a header and no rows
  E907  a file cut short: its last line, without a line break, is an incomplete row
  E908  a column the model reads is missing (or an mlp's feature columns are not its inputs)
  E909  a malformed row: a CSV quoting error, a JSON line that is not a JSON object
  W901  rows longer than max_len (with the byte tokenizer): the runtime truncates them

Remote files (labels.URI_SCHEMES) are skipped: they are read where training runs. A
file stops being read after MAX_PROBLEMS errors, and the last says so. The runtime
stops at its first problem; tests/unit/test_data_check.py feeds the same broken files
to both and requires they agree.

The train file's labels decide how the other splits' labels are read (class ids, or
names numbered in sorted order), as the runtime decides; when E205 already says the
spec's `classes` is too small for them, the train file's labels are not reported again.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any, NamedTuple

from .codes import CODES
from .diagnostics import Collector, Diagnostic
from .labels import URI_SCHEMES, Record, TextLines, as_int, count_labels, read_records
from .schema import FORMAT_BY_EXTENSION
from .source import SourceFile, Span
from .suggest import closest

if TYPE_CHECKING:  # pragma: no cover - types only
    from .driver import CheckResult

SPLITS = ("train", "valid", "test")
DATA_CODES = ("E901", "E902", "E903", "E904", "E905", "E906", "E907", "E908", "E909", "W901")
MAX_PROBLEMS = 10  # errors per file; then it is not read further
_SHOWN_NAMES = 8  # label names listed in a finding


class Needs(NamedTuple):
    """What the runtime reads from a model's data files (runtime/data.py load_split)."""

    fmt: str
    framing: str | None  # "pairs" | "tokens" | "classify" | "features"; None: the model cannot be framed
    columns: tuple[tuple[str, str], ...]  # (column, the data field that names it) the model reads
    label: str | None  # the label column (classify, features)
    classes: int
    inputs: int | None  # an mlp's feature columns
    max_len: int | None  # with the byte tokenizer, whose lengths are bytes; None: lengths not checked
    prompt: bool  # a decoder reading source and target (runtime/data.py frames them as a prompt)


class Labels(NamedTuple):
    """How the train split's labels are read: class ids, or names (numbered in sorted order)."""

    ids: bool
    names: frozenset[str]


class Problem(NamedTuple):
    code: str
    line: int
    col: int
    end_col: int
    message: str
    label: str = ""
    help: str = ""
    notes: tuple[str, ...] = ()


class FileCheck(NamedTuple):
    problems: tuple[Problem, ...]
    excerpt: dict[int, str]  # line -> text, for the lines the problems point at
    labels: Labels | None  # the train split's, when they are fit to read the other splits by


class DataReport(NamedTuple):
    findings: list[tuple[str | None, Diagnostic]]  # (profile or None, diagnostic)
    sources: dict[str, SourceFile]  # the lines of the data files the findings point at

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for _, d in self.findings)


class DataExcerpt(SourceFile):
    """The lines of a data file that findings point at, for the renderer: a data file
    may be far larger than anything worth holding in memory."""

    def __init__(self, path: str, excerpt: dict[int, str]):
        super().__init__(path, "")
        self.excerpt = excerpt  # line -> text

    @property
    def lines(self) -> list[str]:
        return _Lines(max(self.excerpt, default=0))

    def line_text(self, line: int) -> str:
        return self.excerpt.get(line, "")


class _Lines(list[str]):
    """Stands for the lines of a file where only their number is read (render_one's bounds check)."""

    def __init__(self, count: int):
        super().__init__()
        self._count = count

    def __len__(self) -> int:
        return self._count


# --- a spec's data files -------------------------------------------------------------------


def check_data(results: list[tuple[str | None, CheckResult]], splits: tuple[str, ...] = SPLITS) -> DataReport:
    """The data files of each checked spec (the base spec and its profiles, with the
    profile's name); a finding already made for an earlier one is not said again. A
    result without an IR (its spec has errors the type checker found) is skipped."""
    findings: list[tuple[str | None, Diagnostic]] = []
    sources: dict[str, SourceFile] = {}
    said: set[tuple[str, Span, str]] = set()
    for profile, result in results:
        if result.ir is None or result.spans is None:
            continue
        for d in _check_result(result, splits, sources):
            if (d.code, d.span, d.message) not in said:
                said.add((d.code, d.span, d.message))
                findings.append((profile, d))
    return DataReport(findings, sources)


def _check_result(result: CheckResult, splits: tuple[str, ...], sources: dict[str, SourceFile]) -> list[Diagnostic]:
    assert result.ir is not None and result.spans is not None
    model, spans = result.ir.model, result.spans
    data = model.data
    needs = needs_of(model)
    # One check per file, whichever splits name it (train's reading when train does).
    files: dict[str, tuple[str, list[str]]] = {}
    for split in SPLITS:
        path = getattr(data, split, None)
        if split not in splits or not isinstance(path, str) or not path.strip() or path.startswith(URI_SCHEMES):
            continue
        shown = os.path.normpath(os.path.join(spans.main_dir, path))
        files.setdefault(os.path.abspath(shown), (shown, []))[1].append(split)
    diags = Collector()
    train_labels: Labels | None = None
    for full, (shown, named_by) in sorted(files.items(), key=lambda f: SPLITS.index(f[1][1][0])):
        fields = [f"model.data.{s}" for s in named_by]
        written = spans.value(fields[0])
        where = f"{written.file}:{written.line}"
        names = " and ".join(f"`{f}`" for f in fields)
        note = f"{names} name{'s' if len(fields) == 1 else ''} this file ({where})"
        missing = _missing(full, shown)
        if missing is not None:
            diags.error("E901", written, missing[0], label=missing[1], help=missing[2])
            continue
        role = "train" if "train" in named_by else "eval"
        if role == "train" and needs.label is not None:
            counted = count_labels(full, needs.fmt, needs.label)
            if counted is not None and counted.needed > needs.classes:
                role = "train-unlabelled"  # E205 says the spec's `classes` is too small for them
        try:
            st = os.stat(full)
            checked = check_file(full, needs, role, train_labels, st.st_size, st.st_mtime_ns)
        except OSError as exc:  # gone or unreadable since it was looked at
            diags.error("E901", written, f"cannot read data file {shown}", label=exc.strerror or str(exc))
            continue
        if role == "train":
            train_labels = checked.labels
        for p in checked.problems:
            span = Span(shown, p.line, p.col, p.line, p.end_col)
            diags.report(p.code, span, p.message, label=p.label, help=p.help, notes=(*p.notes, note))
        if checked.problems and checked.excerpt:
            before = sources.get(shown)
            shown_before = before.excerpt if isinstance(before, DataExcerpt) else {}
            sources[shown] = DataExcerpt(shown, {**shown_before, **checked.excerpt})
    return diags.sorted()


def _missing(full: str, shown: str) -> tuple[str, str, str] | None:
    """(message, label, help) when the file cannot be read; None when it can."""
    if os.path.isdir(full):
        return f"data file {shown} is a folder", "a data file is one TSV, CSV or JSON lines file", "name the file"
    if not os.path.isfile(full):
        folder = os.path.dirname(full)
        try:
            near = sorted(n for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n)))
        except OSError:
            near = []
        guess = closest(os.path.basename(full), near)
        help = f"did you mean {guess}? ({os.path.join(os.path.dirname(shown), guess)})" if guess else ""
        return (
            f"data file {shown} does not exist",
            "no such file (a relative path is relative to the spec that writes it)",
            help or "give the path of the file, relative to the spec that names it",
        )
    try:
        with open(full, "rb"):
            pass
    except OSError as exc:
        return f"cannot read data file {shown}", exc.strerror or str(exc), "make the file readable"
    return None


def needs_of(model: Any) -> Needs:
    """What the runtime reads from this model's data (the IR's `model`), as runtime/data.py's
    framing_for and load_split decide it."""
    data = model.data
    fmt = data.format or FORMAT_BY_EXTENSION.get(os.path.splitext(data.train or "")[1].lower()) or "tsv"

    def column(key: str) -> tuple[str, str]:
        return (getattr(data, key, None) or key, key)

    mlp, arch = model.mlp, model.transformer
    if mlp is not None:
        label = column("label")
        return Needs(fmt, "features", (label,), label[0], mlp.classes, mlp.inputs, None, False)
    kind, task = arch.kind, model.task
    pairs = task in ("translation", "summarization")
    framing: str | None
    if kind == "encoder-decoder":
        framing = "pairs" if pairs else None
    elif kind == "decoder":
        framing = "tokens" if task != "classification" else None
    else:
        framing = "classify" if task == "classification" else None
    max_len = arch.max_len if data.tokenizer == "bytes" and framing is not None else None
    if framing == "classify":
        label = column("label")
        return Needs(fmt, framing, (column("text"), label), label[0], arch.classes or 2, None, max_len, False)
    columns = (column("source"), column("target")) if pairs else (column("text"),)
    return Needs(fmt, framing, columns if framing else (), None, 0, None, max_len, framing == "tokens" and pairs)


# --- one file ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def check_file(
    path: str, needs: Needs, role: str, train: Labels | None, size: int = -1, mtime_ns: int = -1
) -> FileCheck:
    """The problems of one local data file (`role`: "train"; "eval" for valid and test,
    whose labels are read by the train split's `train`; "train-unlabelled" for a train
    file whose labels E205 reports). `size` and `mtime_ns` key the cache: an edited file
    is read again."""
    reading = _Reading(needs, role, train)
    with open(path, "rb") as f:
        lines = TextLines(f)
        reading.read(lines)
    return reading.result(lines, size if size >= 0 else os.path.getsize(path))


class _Reading:
    def __init__(self, needs: Needs, role: str, train: Labels | None):
        self.needs = needs
        self.role = role
        self.train = train
        self.problems: list[Problem] = []
        self.excerpt: dict[int, str] = {}
        self.header: list[str] | None = None
        self.header_line = 0
        self.columns_missing = False  # the header lacks a column the model reads: rows are checked for shape only
        self.rows = 0
        self.stopped = False  # after MAX_PROBLEMS: the file was not read to its end
        self.bad_said = False  # E902 is said once, at the first byte that is not UTF-8
        self.feature_columns: list[str] = []  # in file order (JSON lines: in order of first use)
        self.first_row: tuple[int, str] | None = None
        # Labels: pending until the whole file has been read (are they all class ids?).
        self.all_ids = True
        self.out_of_range: list[tuple[int, int, int, str, int]] = []  # (line, col, end, text, id)
        self.out_of_range_count = 0
        self.largest_id = -1
        self.distinct: dict[str, int] = {}  # label -> first line, up to classes + 1 of them
        self.too_many: tuple[int, int, int, str, str] | None = None  # the label beyond `classes`
        # Lengths, in bytes (the byte tokenizer's tokens).
        self.long_rows = 0
        self.first_long: tuple[int, int, int, str, str, int] | None = None  # (line, col, end, text, column, bytes)
        self.max_len_needed = 0

    # -- reading

    def read(self, lines: TextLines) -> None:
        for record in read_records(lines, self.needs.fmt):
            if self.stopped:
                break
            if record.kind == "malformed":
                self._malformed(record)
            elif record.kind == "header":
                self._header(record)
            else:
                self._row(record)
            if lines.bad is not None and not self.bad_said:
                self._bad_byte(lines)

    def _problem(self, code: str, line: int, col: int, end_col: int, text: str, message: str, **more: Any) -> None:
        if self.stopped:
            return
        self.problems.append(Problem(code, line, col, max(end_col, col + 1), message, **more))
        self.excerpt[line] = text
        if sum(p.code != "W901" for p in self.problems) >= MAX_PROBLEMS:
            self.stopped = True

    def _whole(self, code: str, record: Record, message: str, **more: Any) -> None:
        self._whole_line(code, record.line, record.text, message, **more)

    def _whole_line(self, code: str, line: int, text: str, message: str, **more: Any) -> None:
        """A problem spanning the whole line `text` (the line numbered `line`)."""
        self._problem(code, line, 1, len(text) + 1, text, message, **more)

    def _bad_byte(self, lines: TextLines) -> None:
        bad = lines.bad
        assert bad is not None
        self.bad_said = True
        text = next((t for n, t in lines.recent if n == bad.line), "").rstrip("\r\n")
        self._problem(
            "E902",
            bad.line,
            bad.column,
            bad.column + 1,
            text,
            f"not UTF-8: byte 0x{bad.byte:02x} at byte offset {bad.offset}",
            label="this byte is not UTF-8 (shown as \ufffd)",
            help="save the file as UTF-8 (from Latin-1, say: iconv -f latin1 -t utf-8)",
        )

    def _malformed(self, record: Record) -> None:
        if record.cut:
            self._whole(
                "E907",
                record,
                f"the file ends mid-row: {record.values}",
                label="the last line is incomplete and has no line break",
                help="the file was cut short: copy it again, or delete its incomplete last line",
            )
            return
        what = "JSON line" if self.needs.fmt == "jsonl" else "row"
        self._whole(
            "E909",
            record,
            f"malformed {what}: {record.values}",
            label="the runtime cannot read this line",
            help="each line of a JSON lines file is one JSON object"
            if self.needs.fmt == "jsonl"
            else 'quote a field that holds a comma, a quote or a line break ("a, b"), doubling its quotes ("")',
        )

    def _header(self, record: Record) -> None:
        header: list[str] = record.values
        self.header, self.header_line = header, record.line
        self.excerpt.setdefault(record.line, record.text)
        needs = self.needs
        missing = [(c, f) for c, f in needs.columns if c not in header]
        self.columns_missing = bool(missing)
        for col, field in missing:
            self._missing_column(record, col, field, header)
        if needs.framing == "features" and not missing:
            self.feature_columns = [c for c in header if c != needs.label]
            if len(self.feature_columns) != needs.inputs:
                self._feature_count(record, len(self.feature_columns))

    def _missing_column(self, record: Record, col: str, field: str, header: list[str]) -> None:
        guess = closest(col, header)
        notes: tuple[str, ...] = ()
        if header and all(as_int(h) is not None or _is_number(h) for h in header):
            notes = ("the first line holds numbers, not column names: is the header line missing?",)
        self._whole(
            "E908",
            record,
            f"no column `{col}` (data.{field})",
            label=f"the header names {_listed(header)}",
            help=f'did you mean `{guess}`? set `{field} = "{guess}"` in the data block, or rename the column'
            if guess
            else f'name the column the model reads in the data block (`{field} = "..."`), or add it to the file',
            notes=notes,
        )

    def _feature_count(self, record: Record, found: int) -> None:
        self._whole(
            "E908",
            record,
            f"{found} feature columns, but the mlp has inputs = {self.needs.inputs}",
            label=f"every column but `{self.needs.label}` is a feature: {found} here",
            help=f"set inputs = {found}, or remove the columns the model should not read",
        )

    def _row(self, record: Record) -> None:
        self.rows += 1
        if self.first_row is None:
            self.first_row = (record.line, record.text)
        if isinstance(record.values, dict):
            self._json_row(record)
            return
        header = self.header or []
        if len(record.values) != len(header):
            self._field_count(record, len(record.values), len(header))
            return
        if self.columns_missing:
            return
        row = dict(zip(header, record.values))
        positions = _positions(record.text, self.needs.fmt)
        self._values(record, row, lambda name: _span(positions, header.index(name), record.text))

    def _json_row(self, record: Record) -> None:
        row: dict = record.values
        needs = self.needs
        missing = [(c, f) for c, f in needs.columns if c not in row]
        if needs.framing == "features" and not missing:
            # Every key but the label is a feature, in order of first use; each row needs each.
            new = [k for k in row if k != needs.label and k not in self.feature_columns]
            if new and self.rows > 1 and self.first_row is not None:
                self._whole_line(
                    "E908",
                    *self.first_row,
                    f"no `{new[0]}` in this row",
                    label=f"every key but `{needs.label}` is a feature; `{new[0]}` first appears on line {record.line}",
                    help="give every row the same keys",
                )
            self.feature_columns += new
            missing += [(k, "features") for k in self.feature_columns if k not in row]
        if missing:
            col, field = missing[0]
            self._whole(
                "E908",
                record,
                f"no `{col}` in this row",
                label=f"the row has {_listed(list(row))}",
                help=f"every row needs `{col}` (data.{field})"
                if field != "features"
                else "give every row the same keys",
            )
            return
        self._values(record, row, lambda name: _json_span(record.text, name))

    def _field_count(self, record: Record, found: int, expected: int) -> None:
        sep = "tabs" if self.needs.fmt == "tsv" else "commas"
        if not record.ended:
            self._whole(
                "E907",
                record,
                f"the file ends mid-row: {found} fields, the header has {expected}",
                label="the last line is incomplete and has no line break",
                help="the file was cut short: copy it again, or delete its incomplete last line",
            )
            return
        if found > expected:
            why = (
                "a field holds a tab, which a TSV field cannot"
                if self.needs.fmt == "tsv"
                else 'a field holds a comma: quote it ("a, b")'
            )
        else:
            why = "a field is missing" + (" (or a tab was typed as spaces)" if self.needs.fmt == "tsv" else "")
        self._whole(
            "E903",
            record,
            f"{found} fields, the header has {expected}",
            label=f"{found} fields separated by {sep}",
            help=f"{why}: give every row the header's {expected} fields",
        )

    def _values(self, record: Record, row: dict, span_of: Any) -> None:
        needs = self.needs
        if needs.framing == "features":
            for name in self.feature_columns:
                value = row.get(name)
                if not _is_number(value):
                    col, end = span_of(name)
                    self._problem(
                        "E905",
                        record.line,
                        col,
                        end,
                        record.text,
                        f"feature `{name}` is {_quoted(value)}, not a number",
                        label="not a number",
                        help=f"every column but `{needs.label}` is a numeric feature: write a number here",
                    )
                    break
        if needs.label is not None and self.role != "train-unlabelled":
            self._label(record, row[needs.label], span_of(needs.label))
        if needs.max_len is not None:
            self._length(record, row, span_of)

    # -- labels

    def _label(self, record: Record, value: object, span: tuple[int, int]) -> None:
        classes = self.needs.classes
        if self.role == "eval":
            if self.train is None:
                return  # the train split's labels are unknown: nothing to read these by
            if not self.train.ids:
                if str(value) not in self.train.names:
                    self._problem(
                        "E904",
                        record.line,
                        *span,
                        record.text,
                        f"label {_quoted(str(value))} does not occur in the train split",
                        label=f"the train split's labels: {_listed(sorted(self.train.names))}",
                        help="fix the label, or add examples of it to the train split",
                    )
                return
        # As the runtime reads the train split (and a split whose train labels are ids):
        # ids when every label is one, else names numbered in sorted order.
        ident = as_int(value)
        if ident is None:
            self.all_ids = False
        elif not 0 <= ident < classes:
            self.out_of_range_count += 1
            if len(self.out_of_range) < MAX_PROBLEMS:
                self.out_of_range.append((record.line, *span, record.text, ident))
        if ident is not None:
            self.largest_id = max(self.largest_id, ident)
        key = str(value)
        if key not in self.distinct and len(self.distinct) <= classes:
            self.distinct[key] = record.line
            if len(self.distinct) == classes + 1:
                self.too_many = (record.line, *span, record.text, key)

    def _labels_at_end(self) -> Labels | None:
        classes = self.needs.classes
        if self.rows == 0 or self.role == "train-unlabelled" or self.needs.label is None:
            return None
        if self.role == "eval" and (self.train is None or not self.train.ids):
            return None  # unknown, or names: each label was judged as it was read
        if self.all_ids:
            for line, col, end, text, ident in self.out_of_range:
                self._problem(
                    "E904",
                    line,
                    col,
                    end,
                    text,
                    f"label {ident} is outside the model's classes 0..{classes - 1}",
                    label=f"`classes = {classes}`: class ids run from 0 to {classes - 1}",
                    help="class ids are never negative: fix the label"
                    if ident < 0
                    else f"fix the label, or set classes = {self.largest_id + 1} (the largest id + 1)"
                    + (f" and give the train split examples of class {ident}" if self.role == "eval" else ""),
                )
            return None if self.out_of_range else Labels(True, frozenset())
        if self.too_many is not None:
            line, col, end, text, key = self.too_many
            self._problem(
                "E904",
                line,
                col,
                end,
                text,
                f"label {_quoted(key)} is label number {classes + 1}, but the model has {classes} classes",
                label=f"more than {classes} distinct labels: {_listed(list(self.distinct))}",
                help="set `classes` to the number of distinct labels, or fix the labels",
            )
            return None
        return Labels(False, frozenset(self.distinct))

    # -- lengths

    def _length(self, record: Record, row: dict, span_of: Any) -> None:
        needs = self.needs
        L = needs.max_len
        assert L is not None
        size = {name: len(str(row[name]).encode("utf-8")) for name, _ in needs.columns if name in row}
        if needs.framing == "pairs":
            src, tgt = (size[c] for c, _ in needs.columns)
            needed = max(src, tgt + 1)
        elif needs.prompt:
            src, tgt = (size[c] for c, _ in needs.columns)
            needed = max(2 * tgt, src + tgt + 2)
        elif needs.framing == "tokens":
            needed = size[needs.columns[0][0]] + 1
        else:
            needed = size[needs.columns[0][0]]
        self.max_len_needed = max(self.max_len_needed, needed)
        if needed > L:
            self.long_rows += 1
            if self.first_long is None:
                name = max(size, key=lambda n: size[n])
                self.first_long = (record.line, *span_of(name), record.text, name, size[name])

    # -- the end

    def result(self, lines: TextLines, size: int) -> FileCheck:
        if lines.bad is not None and not self.bad_said:
            self._bad_byte(lines)
        complete = not self.stopped
        labels = self._labels_at_end() if complete else None
        if any(CODES[p.code].severity == "error" for p in self.problems):
            labels = None  # the runtime stops on this file: its labels are no rule for the others
        needs = self.needs
        if complete and needs.framing == "features" and needs.fmt == "jsonl" and self.first_row is not None:
            found = len(self.feature_columns)
            if found != needs.inputs and not any(p.code == "E908" for p in self.problems):
                self._whole_line(
                    "E908",
                    *self.first_row,
                    f"{found} feature keys, but the mlp has inputs = {needs.inputs}",
                    label=f"every key but `{needs.label}` is a feature: {found} in the file",
                    help=f"set inputs = {found}, or remove the keys the model should not read",
                )
        malformed = any(p.code in ("E907", "E909") for p in self.problems)
        if complete and self.rows == 0 and not malformed and self.header is None:
            # Nothing but blank lines, or nothing at all: no line to show.
            self.problems.append(
                Problem(
                    "E906",
                    1,
                    1,
                    2,
                    "empty data file" + (" (zero bytes)" if size == 0 else ": blank lines only"),
                    label="no header line and no examples",
                    help="a split needs a header line and at least one example: was the file written completely?",
                )
            )
        elif complete and self.rows == 0 and not malformed:
            line = self.header_line or 1
            self._problem(
                "E906",
                line,
                1,
                len(self.excerpt.get(line, "")) + 1,
                self.excerpt.get(line, ""),
                "no examples: the file holds its header line and nothing else",
                label="the header line, then no rows",
                help="a split needs at least one example: was the file written completely?",
            )
        if self.first_long is not None and self.needs.max_len is not None:
            line, col, end, text, name, length = self.first_long
            read = f"the {self.rows} read" if self.stopped else f"{self.rows}"
            self.problems.append(
                Problem(
                    "W901",
                    line,
                    col,
                    max(end, col + 1),
                    f"{self.long_rows} of {read} rows are longer than max_len = {self.needs.max_len} tokens",
                    label=f"the first: `{name}` is {length} bytes (the byte tokenizer's tokens)",
                    help=f"the runtime cuts them to max_len; set max_len = {self.max_len_needed} to keep "
                    f"the longest whole, or shorten them",
                )
            )
            self.excerpt[line] = text
        if self.stopped:
            last = self.problems.index(next(p for p in reversed(self.problems) if p.code != "W901"))
            stop = self.problems[last]
            self.problems[last] = stop._replace(
                notes=(
                    *stop.notes,
                    f"stopped reading the file after {MAX_PROBLEMS} problems: fix these and check again",
                )
            )
        return FileCheck(tuple(self.problems), dict(self.excerpt), labels)


# --- helpers -------------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    # As runtime/data.py reads a feature: float() of it (a JSON true is 1.0).
    try:
        float(value)  # type: ignore[arg-type]
        return True
    except (TypeError, ValueError, OverflowError):
        return False


def _quoted(value: object) -> str:
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "null" if value is None else str(value)


def _listed(names: list[str]) -> str:
    shown = ", ".join(f"`{n}`" for n in names[:_SHOWN_NAMES])
    more = len(names) - _SHOWN_NAMES
    return (shown + (f" and {more} more" if more > 0 else "")) or "nothing"


def _positions(text: str, fmt: str) -> list[tuple[int, int]] | None:
    """(column, end column) of each field of a one-line row, or None when quoting hides them."""
    sep = "\t" if fmt == "tsv" else ","
    if fmt == "csv" and '"' in text:
        return None
    out, col = [], 1
    for field in text.split(sep):
        out.append((col, col + len(field)))
        col += len(field) + 1
    return out


def _span(positions: list[tuple[int, int]] | None, index: int, text: str) -> tuple[int, int]:
    if positions is None or index >= len(positions):
        return 1, len(text) + 1
    col, end = positions[index]
    return col, max(end, col + 1)


def _json_span(text: str, key: str) -> tuple[int, int]:
    import json

    at = text.find(json.dumps(key, ensure_ascii=False))
    if at < 0:
        return 1, len(text) + 1
    return at + 1, at + 1 + len(json.dumps(key, ensure_ascii=False))
