"""Diagnostics and the collector every phase reports to.

Phases never raise on a user's mistake: they call `collector.error(...)` and go on,
so that one run reports every problem. The driver stops after composition when the
collector holds errors; after type errors the checks still run, on the fields the type
checker accepted (reads.py).
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from .codes import CODES
from .source import Span


class Fix(NamedTuple):
    """A machine-applicable edit: replace the text at `span` with `replacement`.

    A diagnostic carries one when its help proposes exact text; applying every edit
    of the diagnostic makes that diagnostic go away (tests/unit/test_help_applies.py).
    """

    span: Span
    replacement: str

    def to_json(self) -> dict:
        s = self.span
        return {
            "file": s.file,
            "line": s.line,
            "column": s.col,
            "end_line": s.end_line,
            "end_column": s.end_col,
            "replacement": self.replacement,
        }


# A change a help may propose: (field path, value) pairs, set together. The driver checks
# each proposal against the spec before the help shows it (proposals.py).
Changes = tuple[tuple[str, object], ...]


class Diagnostic(NamedTuple):
    code: str
    severity: str
    message: str
    span: Span
    label: str = ""  # printed beside the carets
    help: str = ""  # printed as `= help: ...`
    notes: tuple[str, ...] = ()  # printed as `= note: ...` (e.g. a memory breakdown)
    fix: tuple[Fix, ...] = ()  # the edits the help proposes, when it proposes exact text
    # Candidate changes, best first, not yet checked; the help shows the first that
    # clears this finding and adds none (proposals.py), `help` stays when none does.
    proposals: tuple[Changes, ...] = ()

    @property
    def sort_key(self) -> tuple:
        return (*self.span.sort_key, self.code)

    def to_json(self) -> dict:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "file": self.span.file,
            "line": self.span.line,
            "column": self.span.col,
            "end_line": self.span.end_line,
            "end_column": self.span.end_col,
            "label": self.label,
            "help": self.help,
            "notes": list(self.notes),
            "fixes": [f.to_json() for f in self.fix],
        }


@dataclass
class Collector:
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def report(
        self,
        code: str,
        span: Span,
        message: str,
        *,
        label: str = "",
        help: str = "",
        notes: Iterable[str] = (),
        fix: Iterable[Fix] = (),
        proposals: Iterable[Changes] = (),
    ) -> None:
        severity = CODES[code].severity  # a KeyError here is a compiler bug: unregistered code
        diag = Diagnostic(code, severity, message, span, label, help, tuple(notes), tuple(fix), tuple(proposals))
        if diag not in self.diagnostics:  # the same fact reached by two paths is said once
            self.diagnostics.append(diag)

    # `error` and `warning` read better at call sites; the registry decides the severity.
    error = report
    warning = report

    @property
    def has_errors(self) -> bool:
        return any(d.severity == "error" for d in self.diagnostics)

    def sorted(self) -> list[Diagnostic]:
        return sorted(self.diagnostics, key=lambda d: d.sort_key)

    def extend(self, other: "Collector") -> None:
        for d in other.diagnostics:
            if d not in self.diagnostics:
                self.diagnostics.append(d)
