"""The typed syntax tree of a .llm file. Every node keeps its span.

Expressions are kept unevaluated here; `compose` merges files and profiles and
`evaluate` turns expressions into values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from .source import Span

# --- expressions ---------------------------------------------------------------


@dataclass(frozen=True)
class Number:
    value: int | float
    text: str  # as written (`1_000`, `3e-4`), so `fmt` keeps the author's form
    span: Span


@dataclass(frozen=True)
class Quantity:
    value: int | float  # in the unit's normal form (seconds, bytes, 0..1, rps)
    kind: str  # "duration" | "size" | "fraction" | "rate"
    unit: str  # as written, for messages and for `fmt`
    text: str  # the literal as written
    span: Span


@dataclass(frozen=True)
class String:
    value: str
    raw: str  # with quotes and escapes, as written (fmt keeps it)
    span: Span


@dataclass(frozen=True)
class Bool:
    value: bool
    span: Span


@dataclass(frozen=True)
class ListExpr:
    items: tuple["Expr", ...]
    span: Span


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple["Expr", ...]
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Ref:
    path: tuple[str, ...]
    span: Span

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class Unary:
    op: str  # "-"
    operand: "Expr"
    span: Span


@dataclass(frozen=True)
class Binary:
    op: str  # + - * / // %
    left: "Expr"
    right: "Expr"
    span: Span
    op_span: Span


Expr = Union[Number, Quantity, String, Bool, ListExpr, Call, Ref, Unary, Binary]

# --- statements ------------------------------------------------------------------


@dataclass
class Attribute:
    path: tuple[str, ...]  # one name, or a dotted path in `space` and `profile`
    value: Expr
    span: Span  # the whole `key = value`
    key_span: Span

    @property
    def key(self) -> str:
        return ".".join(self.path)


@dataclass
class Block:
    name: str
    label: str | None
    items: list["Attribute | Block"]
    span: Span  # from the name to the closing brace
    name_span: Span
    label_span: Span | None = None
    label_quoted: bool = False  # `optimizer "adamw"` vs `model translator`
    close_span: Span | None = None  # the closing brace, for comments before it


@dataclass
class Let:
    name: str
    value: Expr
    span: Span
    name_span: Span


@dataclass
class Extends:
    path: String
    span: Span


@dataclass
class Profile:
    name: str
    overrides: list[Attribute]
    span: Span
    name_span: Span
    close_span: Span | None = None


Statement = Union[Extends, Let, Block, Attribute, Profile]


@dataclass(frozen=True)
class Comment:
    text: str  # including the leading '#'
    span: Span


@dataclass
class File:
    path: str
    statements: list[Statement]
    comments: list[Comment] = field(default_factory=list)
