"""The typed syntax tree of a .llm file. Every node keeps its span.

Nodes are NamedTuples: immutable, and the cheapest objects Python makes (a spec
has hundreds of them).

Expressions are kept unevaluated here; `compose` merges files and profiles and
`expressions` turns expressions into values.
"""

from typing import NamedTuple

from .source import Span

# --- expressions ---------------------------------------------------------------


class Number(NamedTuple):
    value: int | float
    text: str  # as written (`1_000`, `3e-4`), so `fmt` keeps the author's form
    span: Span


class Quantity(NamedTuple):
    value: int | float  # in the unit's normal form (seconds, bytes, 0..1, rps)
    kind: str  # "duration" | "size" | "fraction" | "rate"
    unit: str  # as written, for messages and for `fmt`
    text: str  # the literal as written
    span: Span


class String(NamedTuple):
    value: str
    raw: str  # with quotes and escapes, as written (fmt keeps it)
    span: Span


class Bool(NamedTuple):
    value: bool
    span: Span


class ListExpr(NamedTuple):
    items: tuple["Expr", ...]
    span: Span


class Call(NamedTuple):
    name: str
    args: tuple["Expr", ...]
    span: Span
    name_span: Span


class Ref(NamedTuple):
    path: tuple[str, ...]
    span: Span

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


class Unary(NamedTuple):
    op: str  # "-"
    operand: "Expr"
    span: Span


class Binary(NamedTuple):
    op: str  # + - * / // %
    left: "Expr"
    right: "Expr"
    span: Span
    op_span: Span


Expr = Number | Quantity | String | Bool | ListExpr | Call | Ref | Unary | Binary

# --- statements ------------------------------------------------------------------


class Attribute(NamedTuple):
    path: tuple[str, ...]  # one name, or a dotted path in `space` and `profile`
    value: Expr
    span: Span  # the whole `key = value`
    key_span: Span

    @property
    def key(self) -> str:
        return ".".join(self.path)


class Block(NamedTuple):
    name: str
    label: str | None
    items: list["Attribute | Block"]
    span: Span  # from the name to the closing brace
    name_span: Span
    label_span: Span | None = None
    label_quoted: bool = False  # `optimizer "adamw"` vs `model translator`
    close_span: Span | None = None  # the closing brace, for comments before it


class Let(NamedTuple):
    name: str
    value: Expr
    span: Span
    name_span: Span


class Extends(NamedTuple):
    path: String
    span: Span


class Profile(NamedTuple):
    name: str
    overrides: list[Attribute]
    span: Span
    name_span: Span
    close_span: Span | None = None


Statement = Extends | Let | Block | Attribute | Profile


class Comment(NamedTuple):
    text: str  # including the leading '#'
    span: Span


class File(NamedTuple):
    path: str
    statements: list[Statement]
    comments: list[Comment]
