"""Diagnostics rendered for people (rustc style) and for tools (JSON)."""

from __future__ import annotations

import json
import unicodedata

from .diagnostics import Diagnostic
from .source import SourceFile

MAX_LINE = 160  # longer source lines are cut to a window around the span


def render_human(diags: list[Diagnostic], sources: dict[str, SourceFile], color: bool = False) -> str:
    return "".join(render_one(d, sources.get(d.span.file), color) for d in diags)


def _paint(text: str, code: str, color: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if color else text


def render_one(d: Diagnostic, source: SourceFile | None, color: bool = False) -> str:
    sev_color = "1;31" if d.severity == "error" else "1;33"
    head = _paint(f"{d.severity}[{d.code}]", sev_color, color) + _paint(f": {_safe(d.message)}", "1", color)
    span = d.span
    gutter = len(str(span.end_line if span.end_line >= span.line else span.line))
    pad = " " * gutter
    bar = _paint("|", "1;34", color)
    out = [head, f"{pad}{_paint('-->', '1;34', color)} {span.file}:{span.line}:{span.col}"]
    text = source.line_text(span.line) if source else ""
    if source is not None and 1 <= span.line <= len(source.lines):
        first, last = (span.col - 1, (span.end_col - 1 if span.end_line == span.line else len(text.rstrip())))
        first = min(first, len(text))
        last = max(last, first + 1)
        # A very long line is shown as a window around the span.
        lo = 0 if len(text) <= MAX_LINE else max(0, first - 40)
        hi = len(text) if len(text) <= MAX_LINE else min(len(text), lo + MAX_LINE)
        prefix, suffix = ("…" if lo > 0 else ""), ("…" if hi < len(text) else "")
        window = text[lo:hi]
        shown = prefix + _printable(window) + suffix
        start = len(prefix) + _display_width(text[lo:first])
        stop = len(prefix) + _display_width(text[lo : min(last, hi)])
        carets = "^" * max(1, stop - start)
        out.append(f"{pad} {bar}")
        out.append(f"{_paint(str(span.line).rjust(gutter), '1;34', color)} {bar} {shown}")
        mark = " " * start + _paint(carets, sev_color, color)
        out.append(f"{pad} {bar} {mark}" + (f" {_safe(d.label)}" if d.label else ""))
        out.append(f"{pad} {bar}")
    for note in d.notes:
        out.append(f"{pad} = note: {_safe(note)}")
    if d.help:
        out.append(f"{pad} = help: {_safe(d.help)}")
    return "\n".join(out) + "\n\n"


def _safe(text: str) -> str:
    """Messages quote user strings: control characters are shown escaped, never sent to the terminal."""
    return "".join(
        f"\\u{{{ord(ch):X}}}" if (ord(ch) < 32 and ch != "\n") or 127 <= ord(ch) < 160 or ch in _BIDI else ch
        for ch in text
    )


def _printable(text: str) -> str:
    # Tabs become one space (so carets line up) and control characters become U+FFFD,
    # so a hostile spec cannot drive the terminal.
    return "".join(
        " " if ch == "\t" else ("\ufffd" if ord(ch) < 32 or 127 <= ord(ch) < 160 or ch in _BIDI else ch) for ch in text
    )


# Bidirectional overrides would reorder what the terminal shows (CVE-2021-42574).
_BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def _display_width(text: str) -> int:
    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def summary_line(diags: list[Diagnostic]) -> str:
    errors = sum(d.severity == "error" for d in diags)
    warnings = len(diags) - errors
    parts = []
    if errors:
        parts.append(f"{errors} error{'s' if errors != 1 else ''}")
    if warnings:
        parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    return ", ".join(parts)


def finding_json(d: Diagnostic, profile: str | None = None) -> dict:
    """One finding for tools: the diagnostic and the profile it was found in (None: the base spec)."""
    return {**d.to_json(), "profile": profile}


def render_json(diags: list[Diagnostic], profile: str | None = None) -> str:
    """The findings of one check (of the base spec, or with `profile` applied) as a JSON array."""
    return json.dumps([finding_json(d, profile) for d in diags], indent=2, ensure_ascii=False) + "\n"


def usage_json(message: str, file: str | None = None, code: str = "usage") -> dict:
    """A misused command (code "usage"), or a compiler failure ("internal"), in the
    findings' shape, with no position."""
    return {
        "code": code,
        "severity": "error",
        "message": message,
        "file": file,
        "line": None,
        "column": None,
        "end_line": None,
        "end_column": None,
        "label": "",
        "help": "",
        "notes": [],
        "fixes": [],
        "profile": None,
    }


def render_usage_json(message: str) -> str:
    return json.dumps([usage_json(message)], indent=2, ensure_ascii=False) + "\n"
