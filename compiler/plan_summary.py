"""What `llmc plan` says first: the facts and the objects a build would change.

`summarize` compares the files in the output directory (the previous build) with the
files a build would write, and says

* which headline facts change, old -> new: facts.json (targets/report.py) on both
  sides; a previous bundle without one (an older llmc built it) or no previous
  bundle at all is said so;
* what changes in each file, one line per field, old -> new: Kubernetes objects in
  the YAML files matched by kind and metadata.name, other YAML documents and JSON
  files by position, each walked to dotted paths (lists of mappings matched by their
  `name`, `alert`, `record` or `title` where every item has a different one); in
  other text files, a changed line `KEY = VALUE`, `KEY=VALUE` or `KEY: VALUE` whose
  key is on one line only on each side, and a count of the other lines changed;
  the lock file's sha256 lines, and any other sha256 replaced by another (the cache
  keys of pipeline.yaml), are counted, not listed;
* the unified diff of each file.

`human` writes it for a reviewer: the facts, the fields, then the diff of only the
files whose changes those lines do not state exactly (a long value is cut to the
words around what differs, what is cut being the same on both sides); the lock
file, facts.json and a removed file never need one. `as_json` keeps everything, the
whole diff included, for CI. PyYAML is imported here, on the plan path only.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator
from typing import Any, NamedTuple

LOCK = "llmc.lock.json"  # bundle.LOCK (not imported: this module must not load the targets)
FACTS = "facts.json"  # targets/report.FACTS_JSON

_ABSENT: Any = object()  # a field one side does not have
_ID_KEYS = ("name", "alert", "record", "title")  # what names an item of a list of mappings
_FIELDS_SHOWN = 8  # field lines shown per file; the rest are counted
_VALUE_WIDTH = 48  # a longer value is cut to the words around what differs
_CONTEXT = 16  # characters kept on each side of a difference (about)
_SHOWN_MAX = 120  # a value cut to its differences and still longer is cut here (inexactly)


class FactChange(NamedTuple):
    name: str
    old: str | None  # None: the previous build does not state it
    new: str | None  # None: this build does not


class FieldChange(NamedTuple):
    path: str  # dotted, `containers[server].env[LLMC_OUTPUT].value`; a text file's key
    old: Any  # _ABSENT when added
    new: Any  # _ABSENT when removed
    text: bool = False  # a text file's line: the values are the text after the key, shown as they are


class ObjectChange(NamedTuple):
    name: str | None  # `MPIJob translator-train`, `document 2`; None: the file as a whole
    status: str  # changed | added | removed
    fields: tuple[FieldChange, ...] = ()


class FileChange(NamedTuple):
    path: str
    status: str  # changed | added | removed
    objects: tuple[ObjectChange, ...]
    lines_changed: int  # lines the fields do not account for
    hashes_changed: int  # sha256 values replaced: the lock file's, a pipeline's cache keys
    diff: str  # the file's unified diff


class PlanSummary(NamedTuple):
    output: str
    previous: str  # "bundle": it has facts.json; "no facts": an older build; "none": nothing there
    facts: tuple[FactChange, ...]  # without a previous facts.json: this build's facts, old None
    files: tuple[FileChange, ...]  # in path order, the lock file last

    @property
    def changed(self) -> bool:
        return bool(self.files)


def summarize(old: dict[str, str], new: dict[str, str], output: str) -> PlanSummary:
    """Compare `old` (path -> text of the files in the output directory) with `new`
    (what a build would write)."""
    files = [
        _file_change(path, old.get(path), new.get(path))
        for path in sorted(set(old) | set(new), key=lambda p: (p == LOCK, p))
        if old.get(path) != new.get(path)
    ]
    previous = "bundle" if FACTS in old else ("no facts" if old else "none")
    return PlanSummary(output, previous, tuple(_fact_changes(old.get(FACTS), new.get(FACTS))), tuple(files))


def full_diff(summary: PlanSummary) -> str:
    """Every file's unified diff, the lock file's included (what `llmc plan` used to print)."""
    return "".join(f.diff for f in sorted(summary.files, key=lambda f: f.path))


# --- facts -------------------------------------------------------------------------------


def _facts_of(text: str | None) -> dict[str, str] | None:
    if text is None:
        return None
    try:
        facts = json.loads(text).get("facts")
    except (ValueError, AttributeError):
        return None
    return {str(k): str(v) for k, v in facts.items()} if isinstance(facts, dict) else None


def _fact_changes(old_text: str | None, new_text: str | None) -> Iterator[FactChange]:
    old, new = _facts_of(old_text), _facts_of(new_text) or {}
    if old is None:  # unknown: this build's facts, for the reader to judge
        yield from (FactChange(name, None, text) for name, text in new.items())
        return
    for name in [*new, *(n for n in old if n not in new)]:
        if old.get(name) != new.get(name):
            yield FactChange(name, old.get(name), new.get(name))


# --- files -------------------------------------------------------------------------------


def _file_change(path: str, before: str | None, after: str | None) -> FileChange:
    status = "added" if before is None else "removed" if after is None else "changed"
    diff = "".join(
        difflib.unified_diff(
            (before or "").splitlines(True),
            (after or "").splitlines(True),
            f"a/{path}" if before is not None else "/dev/null",
            f"b/{path}" if after is not None else "/dev/null",
        )
    )
    if before is None or after is None:
        text = before if before is not None else after or ""
        loaded = _loaded(path, text)
        names = list(_named(loaded)) if loaded is not None else []
        objects = tuple(ObjectChange(name, status) for name in names if name is not None)
        return FileChange(path, status, objects, _count_lines(text), 0, diff)
    if path == LOCK:
        lock = _lock_change(before, after)
        if lock is not None:
            return lock._replace(diff=diff)
    structured = _structured(path, before, after)
    comments = _comments_changed(before, after) if structured is not None else 0
    if structured or comments:  # else the same data, laid out anew: compared as text
        objects, hashes = _hashes_counted(structured or ())
        return FileChange(path, status, objects, comments, hashes, diff)
    fields, lines = _text_fields(before, after)
    objects = (ObjectChange(None, "changed", tuple(fields)),) if fields else ()
    return FileChange(path, status, objects, lines, 0, diff)


def _count_lines(text: str) -> int:
    return len(text.splitlines())


def _structured(path: str, before: str, after: str) -> tuple[ObjectChange, ...] | None:
    """The objects of a YAML or JSON file that change, or None when it is neither (or
    one side does not load: a file edited by hand is compared as text)."""
    old, new = _loaded(path, before), _loaded(path, after)
    if old is None or new is None:
        return None
    return _documents(old, new)


def _comments_changed(before: str, after: str) -> int:
    """How many of a YAML file's comment lines change (what loading it leaves out)."""
    a, b = ([line for line in text.splitlines() if line.lstrip().startswith("#")] for text in (before, after))
    return _changed_lines(a, b)


def _changed_lines(a: list[str], b: list[str]) -> int:
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in ops if tag != "equal")


def _loaded(path: str, text: str) -> list | None:
    """The documents of a JSON or YAML file (empty ones left out); None for another
    kind of file, or one that does not load."""
    if path.endswith(".json"):
        try:
            return [json.loads(text)]
        except ValueError:
            return None
    if path.endswith((".yaml", ".yml")):
        import yaml

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        try:
            return [d for d in yaml.load_all(text, Loader=loader) if d is not None]
        except yaml.YAMLError:
            return None
    return None


def _documents(old: list, new: list) -> tuple[ObjectChange, ...]:
    before, after = _named(old), _named(new)
    out = []
    for key in [*after, *(k for k in before if k not in after)]:
        if key not in before:
            out.append(ObjectChange(key, "added"))
        elif key not in after:
            out.append(ObjectChange(key, "removed"))
        else:
            fields = tuple(_walk(before[key], after[key], ""))
            if fields:
                out.append(ObjectChange(key, "changed", fields))
    return tuple(out)


def _named(documents: list) -> dict[str | None, Any]:
    """Each document by its kind and metadata.name (a Kubernetes object), else by its
    position (`document 2`), or None for a file's only document."""
    out: dict[str | None, Any] = {}
    for i, doc in enumerate(documents, start=1):
        key: str | None = None
        if isinstance(doc, dict) and isinstance(doc.get("metadata"), dict) and doc.get("kind"):
            name = doc["metadata"].get("name")
            key = f"{doc['kind']} {name}" if name is not None else str(doc["kind"])
        elif len(documents) > 1:
            key = f"document {i}"
        if key in out:
            key = f"{key} (document {i})"
        out[key] = doc
    return out


def _walk(old: Any, new: Any, path: str) -> Iterator[FieldChange]:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*new, *(k for k in old if k not in new)]:
            yield from _walk(old.get(key, _ABSENT), new.get(key, _ABSENT), _child(path, key))
        return
    if isinstance(old, list) and isinstance(new, list):
        id_key = _id_key(old, new)
        if id_key is not None:
            before = {item[id_key]: item for item in old}
            after = {item[id_key]: item for item in new}
            for ident in [*after, *(k for k in before if k not in after)]:
                yield from _walk(before.get(ident, _ABSENT), after.get(ident, _ABSENT), f"{path}[{ident}]")
            return
        if len(old) == len(new) and all(isinstance(x, dict) for x in old + new):
            for i, (a, b) in enumerate(zip(old, new)):
                yield from _walk(a, b, f"{path}[{i}]")
            return
    if not _same(old, new):
        yield FieldChange(path, old, new)


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same type (YAML's 1, 1.0, true and "1" differ)."""
    return type(a) is type(b) and a == b


def _child(path: str, key: Any) -> str:
    key = str(key)
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key, ensure_ascii=False)}]"


def _id_key(old: list, new: list) -> str | None:
    """The key that names every mapping in both lists, a different scalar for each."""
    items = old + new
    if not items or not all(isinstance(x, dict) for x in items):
        return None
    for key in _ID_KEYS:
        for side in (old, new):
            names = [x.get(key) for x in side]
            if not all(isinstance(n, (str, int)) and not isinstance(n, bool) for n in names):
                break
            if len(set(names)) != len(names):
                break
        else:
            return key
    return None


_HASH = re.compile(r"[0-9a-f]{64}")


def _is_hash_change(field: FieldChange) -> bool:
    """A sha256 replaced by another: derived from what changed (a pipeline's cache keys)."""
    return all(isinstance(v, str) and _HASH.fullmatch(v) for v in (field.old, field.new))


def _hashes_counted(objects: tuple[ObjectChange, ...]) -> tuple[tuple[ObjectChange, ...], int]:
    """The objects without their sha256 fields, and how many there were: a reviewer
    reads the change the hashes follow from, not the hashes."""
    kept, hashes = [], 0
    for o in objects:
        fields = tuple(f for f in o.fields if not _is_hash_change(f))
        hashes += len(o.fields) - len(fields)
        if fields or o.status != "changed":
            kept.append(o._replace(fields=fields))
    return tuple(kept), hashes


def _lock_change(before: str, after: str) -> FileChange | None:
    """The lock file: its sha256 values counted, its other fields listed."""
    try:
        old, new = json.loads(before), json.loads(after)
    except ValueError:
        return None
    hashes, fields = 0, []
    for f in _walk(old, new, ""):
        if any(isinstance(v, str) and _HASH.fullmatch(v) for v in (f.old, f.new)):
            hashes += 1
        else:
            fields.append(f)
    if not (hashes or fields):
        return None  # the same lock, laid out anew: compared as text
    objects = (ObjectChange(None, "changed", tuple(fields)),) if fields else ()
    return FileChange(LOCK, "changed", objects, 0, hashes, "")


_ASSIGNMENT = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*(?:=|:)\s*(.*?)\s*$")


def _text_fields(before: str, after: str) -> tuple[list[FieldChange], int]:
    """The changed `KEY = VALUE` lines of a text file as fields, and how many other
    lines changed. A key counts only when it is on one line on each side."""
    a, b = before.splitlines(), after.splitlines()
    keys_a, keys_b = _keys(a), _keys(b)
    fields: list[FieldChange] = []
    other = 0
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        olds = {k: v for k, v in (_assignment(line) for line in a[i1:i2]) if k and keys_a.get(k) == 1}
        news = {k: v for k, v in (_assignment(line) for line in b[j1:j2]) if k and keys_b.get(k) == 1}
        paired = [k for k in news if k in olds and olds[k] != news[k]]
        fields.extend(FieldChange(k, olds[k], news[k], text=True) for k in paired)
        other += max(i2 - i1 - len(paired), j2 - j1 - len(paired))
    return fields, other


def _assignment(line: str) -> tuple[str | None, str]:
    m = _ASSIGNMENT.fullmatch(line)
    return (m.group(1), m.group(2)) if m else (None, "")


def _keys(lines: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in lines:
        key, _ = _assignment(line)
        if key:
            counts[key] = counts.get(key, 0) + 1
    return counts


# --- for people ----------------------------------------------------------------------------


class _Shown(NamedTuple):
    text: str
    exact: bool  # the change is stated in full (what was cut is the same on both sides)


def human(summary: PlanSummary, facts: bool = True) -> str:
    """The summary, then the diff of each file it does not state exactly."""
    out: list[str] = []
    if facts:
        out.extend(_fact_lines(summary))
    out.append("changes:")
    needs_diff = []
    facts_above = facts and summary.previous == "bundle" and bool(summary.facts)
    for f in summary.files:
        if f.path == FACTS and f.status == "changed" and facts_above:
            out.append(f"  {FACTS}: the facts above")
            continue
        lines, exact = _file_lines(f)
        out.extend(f"  {line}" for line in lines)
        if not exact:
            needs_diff.append(f)
    if needs_diff:
        out.append("diff of the files not spelled out above (`--format json` has every file's):")
        out.extend(line.rstrip("\n") for f in needs_diff for line in f.diff.splitlines())
    n = len(summary.files)
    out.append(f"{summary.output}: {n} file{'s' if n != 1 else ''} would change")
    return "\n".join(out) + "\n"


def _fact_lines(summary: PlanSummary) -> list[str]:
    if summary.previous != "bundle":
        why = (
            f"no previous build in {summary.output}"
            if summary.previous == "none"
            else f"the previous build's are unknown (its bundle has no {FACTS}: an older llmc wrote it)"
        )
        return [f"facts: {why}; this build's:"] + [
            f"  {c.name:<11}{_safe(c.new or '')}" for c in summary.facts if c.new is not None
        ]
    if not summary.facts:
        return ["facts: unchanged"]
    out = ["facts (previous build → this one):"]
    for c in summary.facts:
        old, new = _pair(c.old, c.new, width=60)
        out.append(f"  {c.name:<11}{old.text} → {new.text}")
    return out


def _file_lines(f: FileChange) -> tuple[list[str], bool]:
    """The lines that state a file's changes, and whether they state them exactly."""
    if f.status != "changed":
        objects = [_safe(o.name) for o in f.objects if o.name]
        what = f" ({', '.join(objects)})" if objects else ""
        count = f"{f.lines_changed} line{'s' if f.lines_changed != 1 else ''}"
        return [f"{_safe(f.path)}: {f.status}, {count}{what}"], f.status == "removed"  # what goes needs no diff
    lines: list[str] = []
    exact = True
    for o in f.objects:
        where = f"{f.path}: {_safe(o.name)}" if o.name else f.path
        if o.status != "changed":
            lines.append(f"{where} {o.status}")
            exact = exact and o.status == "removed"
            continue
        for field in o.fields:
            text, field_exact = _field_text(field)
            lines.append(f"{where}: {text}")
            exact = exact and field_exact
    if len(lines) > _FIELDS_SHOWN:
        lines[_FIELDS_SHOWN - 1 :] = [f"{f.path}: and {len(lines) - _FIELDS_SHOWN + 1} more fields"]
        exact = False
    if f.hashes_changed:
        lines.append(f"{f.path}: {f.hashes_changed} hash{'es' if f.hashes_changed != 1 else ''} changed")
    if f.lines_changed:
        lines.append(f"{f.path}: {f.lines_changed} line{'s' if f.lines_changed != 1 else ''} changed")
        exact = False
    return lines, exact


def _field_text(field: FieldChange) -> tuple[str, bool]:
    path = _safe(field.path)
    multiline = [v for v in (field.old, field.new) if isinstance(v, str) and "\n" in v and not field.text]
    if multiline:
        a = field.old if isinstance(field.old, str) else ""
        b = field.new if isinstance(field.new, str) else ""
        changed = _changed_lines(a.splitlines(), b.splitlines())
        return f"{path}: {changed} line{'s' if changed != 1 else ''} changed", False
    old, new = (_value(v, field.text) for v in (field.old, field.new))
    shown_old, shown_new = _pair(old, new)
    return f"{path} {shown_old.text} → {shown_new.text}", shown_old.exact and shown_new.exact


def _value(value: Any, text: bool) -> str | None:
    if value is _ABSENT:
        return None
    if text:
        return str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _pair(old: str | None, new: str | None, width: int = _VALUE_WIDTH) -> tuple[_Shown, _Shown]:
    """Both values; when either is long, each is cut to the words around where they
    differ (what is cut, `…`, is the same on both sides), and further, inexactly, when
    the words that differ are too many."""
    if old is None or new is None:
        return _cut(old, width), _cut(new, width)
    if len(old) <= width and len(new) <= width:
        return _Shown(_safe(old), True), _Shown(_safe(new), True)
    a, b = _TOKEN.findall(old), _TOKEN.findall(new)
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    shown_a, shown_b = [], []
    for n, (tag, i1, i2, j1, j2) in enumerate(ops):
        if tag == "equal":
            same = _kept(a[i1:i2], head=n > 0, tail=n < len(ops) - 1)
            shown_a.append(same)
            shown_b.append(same)
        else:
            shown_a.append("".join(a[i1:i2]))
            shown_b.append("".join(b[j1:j2]))
    return _cut("".join(shown_a), _SHOWN_MAX), _cut("".join(shown_b), _SHOWN_MAX)


# Words, runs of spaces, and each other character on its own.
_TOKEN = re.compile(r"\w+|\s+|[^\w\s]")


def _kept(tokens: list[str], head: bool, tail: bool) -> str:
    """An equal run of tokens between differences: its first `_CONTEXT` characters when
    a difference comes before it (`head`), its last ones when one comes after (`tail`),
    `…` for the rest."""
    text = "".join(tokens)
    if len(text) <= _CONTEXT * (head + tail) + 12:  # too little to cut
        return text
    first = last = ""
    if head:
        first = _prefix_tokens(tokens, _CONTEXT)
    if tail:
        last = _prefix_tokens(tokens[::-1], _CONTEXT, reverse=True)
    return first + "…" + last


def _prefix_tokens(tokens: list[str], chars: int, reverse: bool = False) -> str:
    taken: list[str] = []
    size = 0
    for token in tokens:
        if size + len(token) > chars and taken:
            break
        taken.append(token)
        size += len(token)
    return "".join(taken[::-1] if reverse else taken)


def _cut(value: str | None, width: int) -> _Shown:
    if value is None:
        return _Shown("(none)", True)
    if len(value) <= width:
        return _Shown(_safe(value), True)
    return _Shown(_safe(value[:width]) + "…", False)


# Control characters and bidirectional overrides in a value are shown escaped, never
# sent to the terminal (as diagnostic_output does for messages).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _safe(text: str | None) -> str:
    return _UNSAFE.sub(lambda m: f"\\u{{{ord(m.group()):X}}}", text or "")


# --- for programs ----------------------------------------------------------------------------


def as_json(summary: PlanSummary) -> dict:
    """The plan as JSON: the changed facts, every file's changed objects and fields
    (values in full; null where a side has none), and the full diff."""
    return {
        "output": summary.output,
        "changes": summary.changed,
        "previous_build": summary.previous,
        "facts": [{"fact": c.name, "old": c.old, "new": c.new} for c in summary.facts],
        "files": [_file_json(f) for f in summary.files],
        "diff": full_diff(summary),
    }


def _file_json(f: FileChange) -> dict:
    return {
        "path": f.path,
        "status": f.status,
        "objects": [
            {"object": o.name, "status": o.status, "fields": [_field_json(x) for x in o.fields]} for o in f.objects
        ],
        "lines_changed": f.lines_changed,
        "hashes_changed": f.hashes_changed,
    }


def _field_json(f: FieldChange) -> dict:
    status = "added" if f.old is _ABSENT else "removed" if f.new is _ABSENT else "changed"
    return {
        "path": f.path,
        "status": status,
        "old": None if f.old is _ABSENT else _plain(f.old),
        "new": None if f.new is _ABSENT else _plain(f.new),
    }


def _plain(value: Any) -> Any:
    """A value JSON can hold (YAML can load dates and the like)."""
    return json.loads(json.dumps(value, default=str))
