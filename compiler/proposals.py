"""Verified suggestions: a help that proposes values proposes values that work.

A check that can say how to clear its finding lists candidate changes, best first
(fewest fields, then smallest moves): `Diagnostic.proposals`. After the checks, the
driver tries them here in order. Each is written into the main file's text as
`llmc fix` would write it (spec_edits.field_edits: the value's own literal replaced,
or a line added to its block or profile), and the whole spec is checked again. A
candidate is taken when, in that check, the finding's code occurs fewer times and no
code (error or warning) occurs more often: it clears the finding and adds none.

The taken candidate becomes the help (`set tensor = 4 and data = 8`) and the
machine-applicable fix (the same edits, as spans and replacements). When none is
taken, the check's own help stays: it says that no change of the spec's numbers
works, and what would.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from functools import cache

from .diagnostics import Changes, Diagnostic, Fix
from .source import SourceFile, Span

# Candidates tried per finding: each is a full check of the spec, so the checks put
# the likely ones first and filter with their own arithmetic.
MAX_TRIED = 12


def resolve(
    diagnostics: list[Diagnostic],
    source: SourceFile,
    profile: str | None,
    recheck: Callable[[str], list[Diagnostic]],
) -> list[Diagnostic]:
    """The diagnostics with each one's proposals tried: the first that works becomes
    its help and fix; the proposals are dropped either way. `recheck(text)` checks
    the main file with `text` in place of its own."""
    if not any(d.proposals for d in diagnostics):
        return diagnostics
    before = Counter(d.code for d in diagnostics)
    return [_resolved(d, before, source, profile, recheck) if d.proposals else d for d in diagnostics]


def _resolved(
    d: Diagnostic,
    before: Counter[str],
    source: SourceFile,
    profile: str | None,
    recheck: Callable[[str], list[Diagnostic]],
) -> Diagnostic:
    from .spec_edits import EditError, Offsets, apply_edits, field_edits

    for changes in d.proposals[:MAX_TRIED]:
        try:
            edits, written = field_edits(source, profile, dict(changes), {})
        except EditError:
            continue  # a block the main file lacks needs a label: not an edit this can make
        after = Counter(x.code for x in recheck(apply_edits(source.text, edits)))
        if after[d.code] < before[d.code] and all(n <= before[code] for code, n in after.items()):
            offsets = Offsets(source.text)
            fix = tuple(Fix(_span(source.path, offsets, e.start, e.end), e.text) for e in edits)
            help = f"set {_and([f'`{_short(path, changes)} = {written[path]}`' for path, _ in changes])}"
            where = f" in profile `{profile}`" if profile is not None else ""
            return d._replace(
                help=f"{help}{where} (checked: that clears this and adds no other finding)",
                fix=fix,
                proposals=(),
            )
    return d._replace(proposals=())


def _short(path: str, changes: Changes) -> str:
    """A field's name, with its block's (`replicas.min`) when another block of the language
    has a field of that name, or its whole path when another change shares that name."""
    parts = path.split(".")
    same = [p for p, _ in changes if p.rpartition(".")[2] == parts[-1]]
    if len(same) > 1:
        return path
    return ".".join(parts[-2:]) if _shared_names().get(parts[-1], 0) > 1 and len(parts) > 1 else parts[-1]


@cache
def _shared_names() -> dict[str, int]:
    """How many fields of the language have each name."""
    from .fields import iter_scalar_paths

    return dict(Counter(path[-1] for path, _ in iter_scalar_paths()))


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _span(file: str, offsets, start: int, end: int) -> Span:
    line, col = _position(offsets, start)
    end_line, end_col = _position(offsets, end)
    return Span(file, line, col, end_line, end_col)


def _position(offsets, offset: int) -> tuple[int, int]:
    """(line, column), 1-based, of a character offset (an insertion point at the end included)."""
    from bisect import bisect_right

    line = bisect_right(offsets.starts, offset)
    return line, offset - offsets.starts[line - 1] + 1
