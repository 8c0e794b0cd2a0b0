"""`llmc fmt`: one canonical layout for .llm files.

The layout: two-space indentation; one statement per line; `=` aligned within a
run of consecutive attributes; one blank line between top-level blocks; at most
one blank line kept where the author left some; blank lines at the start and end of
a block removed; operators spaced, parentheses only where precedence needs them;
numbers, quantities and strings exactly as written; every comment kept. A list or
call holding comments is written one line per source line of its items, each
comment beside the item it follows (or above the item it precedes); a comment
inside any other multi-line value moves above its attribute. Formatting twice gives
the same text, and the formatted file parses to the same tree.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import ast
from .diagnostics import Collector
from .parse import parse
from .source import SourceError, SourceFile, read_source

INDENT = "  "
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "//": 2, "%": 2}


class FormatError(Exception):
    """The file has syntax errors; fmt never rewrites what it cannot parse."""

    def __init__(self, diags: Collector, source: SourceFile):
        super().__init__(source.path)
        self.diags = diags
        self.source = source


def format_text(text: str, path: str = "<spec>") -> str:
    source = SourceFile(path, text)
    diags = Collector()
    tree = parse(source, diags)
    if tree is None or diags.has_errors:
        raise FormatError(diags, source)
    return _Formatter(source, tree).run()


# --- expressions ------------------------------------------------------------------


def expr_text(e: ast.Expr, parent_prec: int = 0, right_side: bool = False) -> str:
    if isinstance(e, (ast.Number, ast.Quantity)):
        return e.text
    if isinstance(e, ast.String):
        return e.raw
    if isinstance(e, ast.Bool):
        return "true" if e.value else "false"
    if isinstance(e, ast.ListExpr):
        return "[" + ", ".join(expr_text(i) for i in e.items) + "]"
    if isinstance(e, ast.Call):
        return f"{e.name}(" + ", ".join(expr_text(a) for a in e.args) + ")"
    if isinstance(e, ast.Ref):
        return e.dotted
    if isinstance(e, ast.Unary):
        inner = expr_text(e.operand, 3)
        return f"-{inner}" if not inner.startswith("-") else f"-({inner})"
    prec = _PRECEDENCE[e.op]
    text = f"{expr_text(e.left, prec)} {e.op} {expr_text(e.right, prec, right_side=True)}"
    # Left-associative: a right operand of equal precedence keeps its parentheses.
    if prec < parent_prec or (right_side and prec == parent_prec):
        return f"({text})"
    return text


def string_literal(value: str) -> str:
    out = ['"']
    for ch in value:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\u{{{ord(ch):X}}}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


# --- statements -------------------------------------------------------------------


@dataclass
class _Slots:
    """The comments that belong around one statement."""

    leading: list[ast.Comment] = field(default_factory=list)
    trailing: ast.Comment | None = None
    header: ast.Comment | None = None  # after a block's `{`


class _Formatter:
    def __init__(self, source: SourceFile, tree: ast.File):
        self.source = source
        self.tree = tree
        self.slots: dict[int, _Slots] = {}
        self.dangling: dict[int, list[ast.Comment]] = {}  # container id -> comments before its `}`
        self.in_value: dict[int, list[ast.Comment]] = {}  # attribute or let id -> comments inside its list
        self.lines: list[str] = []
        self._assign_comments()

    # Comments are attached to the statement they precede (or follow on its line).
    def _assign_comments(self) -> None:
        for c in self.tree.comments:
            self._place(c, self.tree, self.tree.statements, None)

    def _place(self, c: ast.Comment, container, items: list, container_span) -> None:
        prev = None
        for item in items:
            sp = item.span
            if (sp.line, sp.col) <= (c.span.line, c.span.col) <= (sp.end_line, sp.end_col):
                inner = _children(item)
                header_line = sp.line
                if inner is not None:
                    if c.span.line == header_line and (not inner or c.span.line < inner[0].span.line):
                        self._slot(item).header = c
                        return
                    self._place(c, item, inner, sp)
                    return
                value = getattr(item, "value", None)
                if isinstance(value, (ast.ListExpr, ast.Call)) and _contains(value.span, c.span):
                    self.in_value.setdefault(id(item), []).append(c)  # kept beside its item
                else:
                    self._slot(item).leading.append(c)  # inside another multi-line value: move above it
                return
            if (c.span.line, c.span.col) < (sp.line, sp.col):
                if prev is not None and prev.span.end_line == c.span.line:
                    self._slot(prev).trailing = c
                else:
                    self._slot(item).leading.append(c)
                return
            prev = item
        if prev is not None and prev.span.end_line == c.span.line:
            self._slot(prev).trailing = c
            return
        self.dangling.setdefault(id(container), []).append(c)

    def _slot(self, item) -> _Slots:
        return self.slots.setdefault(id(item), _Slots())

    def run(self) -> str:
        self._items(self.tree.statements, 0, top=True)
        for c in self.dangling.get(id(self.tree), []):
            if self.lines and self.lines[-1] != "" and self._blank_before(c.span.line):
                self.lines.append("")
            self.lines.append(c.text.rstrip())
        while self.lines and self.lines[-1] == "":
            self.lines.pop()
        return "\n".join(self.lines) + "\n" if self.lines else ""

    def _blank_before(self, line: int) -> bool:
        return line >= 2 and self.source.line_text(line - 1).strip() == ""

    def _first_line(self, item) -> int:
        slots = self.slots.get(id(item))
        if slots and slots.leading:
            return min(c.span.line for c in slots.leading)
        return item.span.line

    def _items(self, items: list, depth: int, top: bool = False) -> None:
        pad = INDENT * depth
        # At the top level a blank line separates statements, so no run forms there.
        runs = [] if top else _attribute_runs(items, self)
        width = {id(a): w for run in runs for a, w in run}
        prev = None
        for item in items:
            if prev is not None:
                if (top and not (isinstance(prev, ast.Let) and isinstance(item, ast.Let))) or self._gap(prev, item):
                    self.lines.append("")
            slots = self.slots.get(id(item), _Slots())
            for c in slots.leading:
                self.lines.append(pad + c.text.rstrip())
            tail = f"  {slots.trailing.text.rstrip()}" if slots.trailing else ""
            if isinstance(item, ast.Block):
                self._block(item, depth, slots, tail)
            elif isinstance(item, ast.Profile):
                self._container(f"profile {item.name}", item, item.overrides, depth, slots, tail)
            elif commented := self.in_value.get(id(item)):
                head = (
                    f"let {item.name}"
                    if isinstance(item, ast.Let)
                    else item.key.ljust(width.get(id(item), len(item.key)))
                )
                self._commented_list(f"{pad}{head} = ", item.value, commented, depth, tail)
            elif isinstance(item, ast.Let):
                self.lines.append(f"{pad}let {item.name} = {expr_text(item.value)}{tail}")
            elif isinstance(item, ast.Extends):
                self.lines.append(f"{pad}extends {item.path.raw}{tail}")
            else:
                key = item.key.ljust(width.get(id(item), len(item.key)))
                self.lines.append(f"{pad}{key} = {expr_text(item.value)}{tail}")
            prev = item

    def _commented_list(self, head: str, value, comments: list[ast.Comment], depth: int, tail: str) -> None:
        """A list or call with comments inside: one line per source line of its items
        (items that shared a line still do), each comment kept beside the items it
        follows on their line, or above the items it precedes."""
        items = value.items if isinstance(value, ast.ListExpr) else value.args
        opener, closer = ("[", "]") if isinstance(value, ast.ListExpr) else (f"{value.name}(", ")")
        groups: list[list] = []
        for item in items:
            if groups and groups[-1][-1].span.end_line == item.span.line:
                groups[-1].append(item)
            else:
                groups.append([item])
        header: ast.Comment | None = None
        leading: dict[int, list[ast.Comment]] = {}
        trailing: dict[int, ast.Comment] = {}
        dangling: list[ast.Comment] = []
        for c in comments:
            at = (c.span.line, c.span.col)
            before = [i for i, g in enumerate(groups) if (g[-1].span.end_line, g[-1].span.end_col) <= at]
            inside = next((i for i, g in enumerate(groups) if any(_contains(it.span, c.span) for it in g)), None)
            if inside is not None:
                leading.setdefault(inside, []).append(c)  # within an item's own multi-line value
            elif before and groups[before[-1]][-1].span.end_line == c.span.line:
                trailing[before[-1]] = c
            elif c.span.line == value.span.line:
                header = c  # after the opening bracket, on its line
            elif len(before) < len(groups):
                leading.setdefault(len(before), []).append(c)
            else:
                dangling.append(c)
        pad, inner = INDENT * depth, INDENT * (depth + 1)
        self.lines.append(f"{head}{opener}" + (f"  {header.text.rstrip()}" if header else ""))
        for i, group in enumerate(groups):
            for c in leading.get(i, []):
                self.lines.append(inner + c.text.rstrip())
            after = f"  {trailing[i].text.rstrip()}" if i in trailing else ""
            self.lines.append(inner + ", ".join(expr_text(it) for it in group) + "," + after)
        for c in dangling:
            self.lines.append(inner + c.text.rstrip())
        self.lines.append(f"{pad}{closer}{tail}")

    def _gap(self, prev, item) -> bool:
        """Whether the author left a blank line between two statements."""
        start = self._first_line(item)
        end = prev.span.end_line
        return any(self.source.line_text(n).strip() == "" for n in range(end + 1, start))

    def _block(self, block: ast.Block, depth: int, slots: _Slots, tail: str) -> None:
        head = block.name
        if block.label is not None:
            head += " " + (string_literal(block.label) if block.label_quoted else block.label)
        self._container(head, block, block.items, depth, slots, tail)

    def _container(self, head: str, node, items: list, depth: int, slots: _Slots, tail: str) -> None:
        pad = INDENT * depth
        header = f"  {slots.header.text.rstrip()}" if slots.header else ""
        dangling = self.dangling.get(id(node), [])
        if not items and not dangling and not header:
            self.lines.append(f"{pad}{head} {{}}{tail}")
            return
        self.lines.append(f"{pad}{head} {{{header}")
        self._items(items, depth + 1)
        for c in dangling:
            if items and self._blank_before(c.span.line) and self.lines[-1] != "":
                self.lines.append("")
            self.lines.append(INDENT * (depth + 1) + c.text.rstrip())
        self.lines.append(f"{pad}}}{tail}")


def _contains(outer, inner) -> bool:
    return (outer.line, outer.col) <= (inner.line, inner.col) and (inner.end_line, inner.end_col) <= (
        outer.end_line,
        outer.end_col,
    )


def _children(item) -> list | None:
    if isinstance(item, ast.Block):
        return item.items
    if isinstance(item, ast.Profile):
        return item.overrides
    return None


def _attribute_runs(items: list, fmt: _Formatter) -> list[list[tuple[object, int]]]:
    """Consecutive attributes align their `=`; a run ends at a blank line or a block."""
    runs: list[list] = []
    current: list = []
    prev = None
    for item in items:
        is_attr = isinstance(item, ast.Attribute)
        if not is_attr or (prev is not None and fmt._gap(prev, item)):
            if current:
                runs.append(current)
            current = []
        if is_attr:
            current.append(item)
        prev = item
    if current:
        runs.append(current)
    return [[(a, max(len(x.key) for x in run)) for a in run] for run in runs]


# --- the command ------------------------------------------------------------------


def spec_files(paths: list[str]) -> list[str]:
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            out.extend(sorted(str(f) for f in Path(p).rglob("*.llm")))
        else:
            out.append(p)
    return out


def run_fmt(args) -> int:
    """Format (or with --check, check) every file. With --format json, one record per
    file goes into the JSON array: {"file", "status", "diagnostics"}, the status being
    "formatted" (already canonical), "reformatted" (rewritten), "unformatted" (--check:
    would be rewritten) or "failed" (does not parse, or cannot be read)."""
    from .diagnostic_output import finding_json, render_human, usage_json

    records = getattr(args, "json_findings", None)

    def record(path: str, status: str, diagnostics=()) -> None:
        if records is not None:
            records.append({"file": path, "status": status, "diagnostics": list(diagnostics)})

    files = spec_files(args.specs)
    if not files:
        sys.stderr.write("error: no .llm files found\n")
        if records is not None:
            records.append(usage_json("no .llm files found"))
        return 2
    status = 0
    for path in files:
        try:
            source = read_source(path)
        except SourceError as exc:
            sys.stderr.write(f"error: {exc}\n")
            record(path, "failed", [usage_json(str(exc), file=path)])
            return 2
        try:
            formatted = format_text(source.text, source.path)
        except FormatError as exc:
            found = exc.diags.sorted()
            if records is None:
                sys.stderr.write(render_human(found, {source.path: exc.source}))
            record(path, "failed", [finding_json(d) for d in found])
            status = max(status, 1)
            continue
        if formatted == source.text:
            record(path, "formatted")
            continue
        if args.check:
            sys.stderr.write(f"{path}: not formatted\n")
            if args.diff:
                sys.stdout.writelines(
                    difflib.unified_diff(
                        source.text.splitlines(True), formatted.splitlines(True), f"a/{path}", f"b/{path}"
                    )
                )
            record(path, "unformatted")
            status = max(status, 1)
        else:
            write_text_atomically(path, formatted)
            sys.stderr.write(f"formatted {path}\n")
            record(path, "reformatted")
    return status


def write_text_atomically(path: str, text: str) -> None:
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".llmc-fmt-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        with contextlib.suppress(OSError):
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
