"""Edits of a spec's text that set fields to values, as a person would write them.

The edit is the smallest one that makes the spec say the value, so the diff a
reviewer reads is the values and nothing else (`llmc search apply` writes a search's
best point with it; the checks' verified proposals and `llmc fix` too):

* with a profile, each value goes into the main file's `profile P` block: an override
  of the same path has its value replaced; a new path becomes a line after the
  override sharing the longest path prefix with it (the end of the block when none
  does); a main file without `profile P` (it comes from an `extends` base) gets one
  at its end;
* without a profile, the attribute that sets the field in the main file has its value
  replaced; a field the file leaves to its default goes into its block, and unlabelled
  blocks missing on the way are written around it.

Values are written in the spec's own style: the unit of the literal they replace
(`30m` stays in minutes), exponent or decimal notation as that literal (or the
distribution's first bound) has it, continuous values with three significant digits
(more when rounding would leave the searched range); ints, strings and booleans
exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, NamedTuple

from . import ast
from .diagnostics import Collector
from .fields import FieldType, walk_schema
from .fmt import FormatError, format_text
from .parse import parse
from .source import SourceFile
from .units import UNITS

# Significant digits a continuous sampled value is written with (more when the rounded
# value would fall outside the distribution's bounds).
DIGITS = 3
CONTINUOUS = ("uniform", "loguniform", "normal")


class EditError(Exception):
    """The values cannot be written into the spec; the message says why."""


class Edit(NamedTuple):
    start: int  # character offsets into the main file's text
    end: int
    text: str


# --- values as the spec writes them ------------------------------------------------------


def _trim(number: str) -> str:
    """`1.20` -> `1.2`, `2.0` stays (a float keeps its point), `1.20e-03` -> `1.2e-3`."""
    mantissa, e, exponent = number.partition("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0")
        if mantissa.endswith("."):
            mantissa = mantissa[:-1] if e else mantissa + "0"
    if e:
        sign = "-" if exponent.startswith("-") else ""
        return f"{mantissa}e{sign}{exponent.lstrip('+-').lstrip('0') or '0'}"
    return mantissa


def number_text(value: float, digits: int, exponent: bool) -> str:
    """`value` with `digits` significant digits, in exponent (`1.23e-3`) or decimal (`0.00123`) notation."""
    if value == 0:
        return "0.0"
    if exponent:
        return _trim(f"{value:.{digits - 1}e}")
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return _trim(f"{value:.{decimals}f}") if decimals else f"{round(value):d}.0"


def reference_style(reference: ast.Expr | None) -> tuple[str | None, bool, bool]:
    """(unit, exponent notation?, digit groups?) of the literal a value replaces."""
    if isinstance(reference, ast.Unary):
        reference = reference.operand
    if isinstance(reference, ast.Quantity):
        number = reference.text[: len(reference.text) - len(reference.unit)]
        return reference.unit, "e" in number.lower(), "_" in number
    if isinstance(reference, ast.Number):
        return None, "e" in reference.text.lower(), "_" in reference.text
    return None, False, False


def default_unit(ft: FieldType) -> str | None:
    return {"duration": "s", "size": "B", "fraction": "%", "rate": "rps"}.get(ft.quantity or "")


def literal(value: Any, ft: FieldType, reference: ast.Expr | None, dist: Mapping[str, Any]) -> str:
    """The text that sets a field of type `ft` to `value` (the search's normal form) in
    the style of `reference`, the literal it replaces (or the distribution's first bound)."""
    from .fmt import string_literal

    if isinstance(value, bool) or ft.kind == "bool":
        return "true" if value else "false"
    if isinstance(value, str):
        return string_literal(value)
    unit, exponent, grouped = reference_style(reference)
    if ft.kind == "quantity":
        unit = unit or default_unit(ft)
    scale = UNITS[unit][1] if unit else Decimal(1)
    scaled = float(Decimal(repr(float(value))) / scale)
    suffix = unit or ""
    whole = (
        isinstance(value, int)
        or (ft.kind in ("int",) and float(value).is_integer())
        or (ft.kind == "quantity" and bool(suffix))  # `5ms`, not `5.0ms`: a unit's number needs no point
    )
    if whole and (scaled.is_integer() or ft.kind == "int"):
        n = round(scaled)
        return (f"{n:_}" if grouped else str(n)) + suffix
    if dist.get("kind") not in CONTINUOUS:
        return _trim(repr(scaled)) + suffix  # a choice's or q-step's value: exact
    low, high = _bounds(dist)
    for digits in range(DIGITS, 18):
        text = number_text(scaled, digits, exponent)
        written = float(Decimal(text) * scale)
        if low is None or high is None or low <= written <= high:
            return text + suffix
    return repr(scaled) + suffix


def _bounds(dist: Mapping[str, Any]) -> tuple[float | None, float | None]:
    args = dist.get("args") or []
    if dist.get("kind") in ("uniform", "loguniform") and len(args) >= 2:
        return float(args[0]), float(args[1])
    return None, None


# --- where each value goes ---------------------------------------------------------------


class Offsets:
    """Span (line, column) -> offset into the text."""

    def __init__(self, text: str):
        self.text = text
        self.starts = [0]
        for i, ch in enumerate(text):
            if ch == "\n":
                self.starts.append(i + 1)

    def at(self, line: int, col: int) -> int:
        return self.starts[line - 1] + col - 1

    def start(self, span: Any) -> int:
        return self.at(span.line, span.col)

    def end(self, span: Any) -> int:
        return self.at(span.end_line, span.end_col)

    def indent_of(self, line: int) -> str:
        start = self.starts[line - 1]
        rest = self.text[start:]
        return rest[: len(rest) - len(rest.lstrip(" \t"))]

    def line_end(self, line: int) -> int:
        """The offset just past the newline ending `line` (the text's end on its last line)."""
        return self.starts[line] if line < len(self.starts) else len(self.text)


def _common_prefix(a: Sequence[str], b: Sequence[str]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def new_profile(offsets: Offsets, profile: str, lines: Sequence[str]) -> Edit:
    """A `profile` block holding `lines`, at the end of a main file that has none of that name."""
    end = len(offsets.text)
    lead = "" if offsets.text.endswith("\n") else "\n"
    body = "".join(f"  {line}\n" for line in lines)
    return Edit(end, end, f"{lead}\nprofile {profile} {{\n{body}}}\n")


def profile_edit(offsets: Offsets, block: ast.Profile, path: str, text: str) -> Edit:
    """The edit setting `path = text` in the main file's profile block `block`."""
    line = f"{path} = {text}"
    for attr in block.overrides:
        if attr.key == path:
            return Edit(offsets.start(attr.value.span), offsets.end(attr.value.span), text)
    parts = path.split(".")
    anchor, best = None, 0
    for attr in block.overrides:  # the last of the overrides sharing the longest prefix
        shared = _common_prefix(attr.path, parts)
        if shared and shared >= best:
            anchor, best = attr, shared
    if anchor is not None:
        at = offsets.line_end(anchor.span.end_line)
        return Edit(at, at, f"{offsets.indent_of(anchor.span.line)}{line}\n")
    return _before_close(offsets, block.span, block.close_span, block.overrides, line)


def _before_close(offsets: Offsets, span: Any, close: Any, items: Sequence[Any], line: str) -> Edit:
    """A new line at the end of a block (after its last item, before its closing brace)."""
    if items:
        last = items[-1]
        at = offsets.line_end(last.span.end_line)
        return Edit(at, at, f"{offsets.indent_of(last.span.line)}{line}\n")
    close_span = close or span
    at = offsets.at(close_span.end_line, 1)
    return Edit(at, at, f"{offsets.indent_of(span.line)}  {line}\n")


def block_edit(tree: ast.File, offsets: Offsets, path: str, text: str) -> Edit:
    """The edit setting `path = text` in the main file's blocks."""
    _, consumed, _ = walk_schema(tuple(path.split(".")))
    items: Sequence[Any] = tree.statements
    holder: ast.Block | None = None
    i = 0
    segments = consumed[:-1]
    while i < len(segments):
        name = segments[i]
        label = segments[i + 1] if _is_repeatable(segments[: i + 1]) else None
        found = next(
            (b for b in items if isinstance(b, ast.Block) and b.name == name and (label is None or b.label == label)),
            None,
        )
        if found is None:
            break
        holder, items = found, found.items
        i += 2 if label is not None else 1
    field = consumed[-1]
    if i == len(segments):
        for item in items:
            if isinstance(item, ast.Attribute) and item.key == field:
                return Edit(offsets.start(item.value.span), offsets.end(item.value.span), text)
    missing = segments[i:]
    if any(_needs_label(segments[: i + k + 1]) for k in range(len(missing))):
        raise EditError(
            f"cannot place `{path}`: its block `{'.'.join(segments[: i + 1])}` is not in the main file and "
            f"needs a label; add the block, then apply again"
        )
    lines = [f"{field} = {text}"]
    for name in reversed(missing):
        lines = [f"{name} {{"] + [f"  {line}" for line in lines] + ["}"]
    if holder is None:
        end = len(offsets.text)
        lead = "" if offsets.text.endswith("\n") else "\n"
        return Edit(end, end, lead + "\n" + "\n".join(lines) + "\n")
    inner = holder.items
    indent = offsets.indent_of(inner[-1].span.line) if inner else offsets.indent_of(holder.span.line) + "  "
    body = "".join(f"{indent}{line}\n" for line in lines)
    if inner:
        at = offsets.line_end(inner[-1].span.end_line)
    else:
        close = holder.close_span or holder.span
        at = offsets.at(close.end_line, 1)
    return Edit(at, at, body)


def _is_repeatable(segments: Sequence[str]) -> bool:
    ft, _, _ = walk_schema(tuple(segments))
    return ft is not None and ft.kind == "blocks"


def _needs_label(segments: Sequence[str]) -> bool:
    """A block (unlike `cluster`) that cannot be written without its label (`optimizer "adamw"`)."""
    ft, _, _ = walk_schema(tuple(segments))
    model = getattr(ft, "block_model", None) if ft is not None else None
    return ft is not None and (ft.kind == "blocks" or getattr(model, "label_field", None) is not None)


def apply_edits(text: str, edits: Sequence[Edit]) -> str:
    """The text with every edit made (they do not overlap; insertions at one point keep their order)."""
    out = text
    ordered = sorted(enumerate(edits), key=lambda ie: (ie[1].start, ie[1].end, ie[0]), reverse=True)
    for _, edit in ordered:  # from the end, so earlier offsets stay valid
        out = out[: edit.start] + edit.text + out[edit.end :]
    return out


def edited_spec(
    source: SourceFile, profile: str | None, values: Mapping[str, Any], space: Mapping[str, Any]
) -> tuple[str, dict[str, str]]:
    """(the main file's new text, the literal written for each path)."""
    edits, written = field_edits(source, profile, values, space)
    new = apply_edits(source.text, edits)
    try:
        if format_text(source.text, source.path) == source.text:
            new = format_text(new, source.path)
    except FormatError:
        pass  # the check below reports what is wrong
    return new, written


def field_edits(
    source: SourceFile, profile: str | None, values: Mapping[str, Any], space: Mapping[str, Any]
) -> tuple[list[Edit], dict[str, str]]:
    """The edits of the main file's text that set each path to its value (in `profile`'s
    block when given), and the literal written for each path. Raises EditError."""
    from .compose import Loader, compose, lookup_entry

    diags = Collector()
    tree = parse(source, diags)
    if tree is None or diags.has_errors:
        raise EditError(f"{source.path} does not parse: `llmc check {source.path}` says why")
    composed = compose(source.path, Collector(), Loader(Collector()), profile=profile, text=source.text)
    offsets = Offsets(source.text)
    block = next((s for s in tree.statements if isinstance(s, ast.Profile) and s.name == profile), None)
    edits: list[Edit] = []
    unplaced: list[str] = []  # lines of a profile block the main file does not have yet
    written: dict[str, str] = {}
    for path in sorted(values):
        ft, _, problem = walk_schema(tuple(path.split(".")))
        if ft is None or problem:
            raise EditError(f"the path `{path}` names no field of the spec ({problem})")
        current = lookup_entry(composed.root, tuple(path.split("."))) if composed is not None else None
        reference = current.expr if current is not None else None
        if not isinstance(reference, (ast.Number, ast.Quantity, ast.Unary)):
            reference = _first_bound(composed, path)
        text = literal(values[path], ft, reference, space.get(path) or {})
        written[path] = text
        if profile is None:
            edits.append(block_edit(tree, offsets, path, text))
        elif block is None:
            unplaced.append(f"{path} = {text}")
        else:
            edits.append(profile_edit(offsets, block, path, text))
    if profile is not None and unplaced:
        edits.append(new_profile(offsets, profile, unplaced))
    return edits, written


def _first_bound(composed: Any, path: str) -> ast.Expr | None:
    """The first argument of the distribution searching `path`: the literal style to follow."""
    from .compose import lookup_entry

    if composed is None:
        return None
    entry = lookup_entry(composed.root, ("search", "space", *path.split(".")))
    expr = entry.expr if entry is not None else None
    return expr.args[0] if isinstance(expr, ast.Call) and expr.args else None
