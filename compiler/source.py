"""Source files and spans: where in which file a piece of a spec came from."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple


class Span(NamedTuple):
    """A half-open region of a source file, with 1-based lines and columns.

    `end_col` is exclusive, so a one-character token at column 5 is (5, 6).
    (A NamedTuple: spans are made for every node, and a tuple is made fastest.)
    """

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def to(self, other: "Span") -> "Span":
        """The span from the start of self to the end of other (same file)."""
        return Span(self.file, self.line, self.col, other.end_line, other.end_col)

    @property
    def sort_key(self) -> tuple[str, int, int]:
        return (self.file, self.line, self.col)


@dataclass
class SourceFile:
    """The text of one spec file and a cache of its lines for rendering."""

    path: str  # as the user named it (kept relative so messages are short)
    text: str
    # Offset of the first byte that is not UTF-8, if any; the parser reports it as E101.
    bad_byte_offset: int | None = None
    _lines: list[str] | None = field(default=None, repr=False)

    @property
    def lines(self) -> list[str]:
        if self._lines is None:
            self._lines = self.text.split("\n")
        return self._lines

    def line_text(self, line: int) -> str:
        lines = self.lines
        return lines[line - 1].rstrip("\r") if 1 <= line <= len(lines) else ""

    def start_span(self) -> Span:
        return Span(self.path, 1, 1, 1, 1)


class SourceError(Exception):
    """A spec file could not be read (missing, a directory, not UTF-8)."""


def read_source(path: str | Path) -> SourceFile:
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise SourceError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise SourceError(f"is a directory: {path}") from None
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror}") from None
    return decode_source(str(path), data)


def decode_source(path: str, data: bytes) -> SourceFile:
    try:
        text = data.decode("utf-8")
        bad = None
    except UnicodeDecodeError as exc:
        # Keep the text readable for the diagnostic; the parse stops at the bad byte.
        bad = len(data[: exc.start].decode("utf-8", errors="replace"))
        text = data.decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
        bad = None if bad is None else bad - 1
    return SourceFile(path, text, bad_byte_offset=bad)
