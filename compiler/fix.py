"""`llmc fix SPEC [--dry-run]`: apply the fixes the diagnostics carry.

A diagnostic carries a fix when its help proposes exact text: a syntax or schema
mistake with one reading (`"bf61"` -> `"bf16"`), or a change a check proposed and the
driver verified against the whole spec (proposals.py). Fixes are edits of the main
file's text (spans and replacements), so comments and layout stay as written.

Fixes are applied in rounds. Each round checks the spec (the base and every profile)
and applies the fixes that do not overlap; if together they leave more errors than
before, only the first is applied (two fixes found against the same text can
disagree). The next round sees the result, so a mistake that another one hid gets
its fix then. The rounds end when no fix is left or one changes nothing. A file that
`llmc fmt` left unchanged is formatted again after the edits, so aligned `=` stay
aligned. The diff is printed; without --dry-run the file is written atomically, then
the result is checked and what remains is printed.
"""

from __future__ import annotations

import difflib

from .diagnostics import Diagnostic, Fix

MAX_ROUNDS = 8


def fixes_of(findings: list[tuple[str | None, Diagnostic]], path: str) -> list[tuple[Fix, ...]]:
    """Each finding's fix (its edits, all in the main file), in the order of the findings."""
    out: list[tuple[Fix, ...]] = []
    for _, d in findings:
        if d.fix and all(f.span.file == path for f in d.fix) and d.fix not in out:
            out.append(d.fix)
    return out


def apply_fixes(text: str, fixes: list[tuple[Fix, ...]]) -> str:
    """The text with every fix made; a fix overlapping one before it is left out."""
    from .spec_edits import Edit, Offsets, apply_edits

    offsets = Offsets(text)
    taken: list[tuple[int, int]] = []
    edits: list[Edit] = []
    for fix in fixes:
        ranges = [(offsets.start(f.span), offsets.end(f.span)) for f in fix]
        if any(_overlap(r, t) for r in ranges for t in taken):
            continue
        taken.extend(ranges)
        edits.extend(Edit(start, end, f.replacement) for (start, end), f in zip(ranges, fix, strict=True))
    return apply_edits(text, edits)


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    if a[0] == a[1] or b[0] == b[1]:  # an insertion conflicts with an edit around its point
        return b[0] <= a[0] <= b[1] or a[0] <= b[0] <= a[1]
    return a[0] < b[1] and b[0] < a[1]


def _errors(findings: list[tuple[str | None, Diagnostic]]) -> int:
    return sum(1 for _, d in findings if d.severity == "error")


def fixed_text(path: str, text: str) -> tuple[str, int]:
    """(the text with every fix applied, round after round; the findings it had before)."""
    from .driver import check_every_profile

    findings = check_every_profile(path, text=text).findings
    before = len(findings)
    for _ in range(MAX_ROUNDS):
        fixes = fixes_of(findings, path)
        if not fixes:
            break
        new = apply_fixes(text, fixes)
        after = check_every_profile(path, text=new).findings
        if len(fixes) > 1 and _errors(after) > _errors(findings):
            new = apply_fixes(text, fixes[:1])  # together they disagree: one at a time
            after = check_every_profile(path, text=new).findings
        if new == text:
            break
        text, findings = new, after
    return text, before


def fix_spec(path: str, original: str) -> tuple[str, int]:
    """(the main file's text with every fix applied, formatted again when `llmc fmt` had
    left it unchanged; the findings the spec had before)."""
    from .fmt import FormatError, format_text

    text, before = fixed_text(path, original)
    if text != original:
        try:
            if format_text(original, path) == original:
                text = format_text(text, path)
        except FormatError:
            pass  # the check of the result says what is wrong
    return text, before


def diff(path: str, old: str, new: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"a/{path}", f"b/{path}"))
