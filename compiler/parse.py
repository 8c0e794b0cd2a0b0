"""Text to syntax tree (lark, LALR) and syntax tree to the typed AST (lowering).

Syntax errors (E101-E105, E107) are reported to the collector (syntax_errors.py words
those lark raises). A lexing or parsing
error stops the parse of that file (what follows cannot be trusted); errors found
while lowering (bad units, numbers, escapes, statements sharing a line) are all
reported.
"""

from __future__ import annotations

import itertools
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING

from . import ast
from .diagnostics import Collector, Fix
from .source import SourceFile, Span
from .syntax_errors import (
    line_col,
    report_bad_character,
    report_slash_comment,
    report_unexpected_token,
    slash_comment,
    tok_span,
)
from .units import UNITS, unit_guess, unit_help

_GRAMMAR = Path(__file__).with_name("grammar.lark")
_parser = None
if TYPE_CHECKING:  # pragma: no cover - types only
    import lark

    Token: type[lark.Token]
else:
    Token = None  # lark.Token, bound when the parser is built (lark is imported lazily)

# Integers beyond this are refused (E105): every count in a spec is far smaller, and
# it keeps arithmetic and float conversion of user numbers safe.
MAX_INT = 2**63 - 1
# Deeper expressions are refused (E103) so that no later phase can run out of stack.
MAX_DEPTH = 200
MAX_FLOAT = 1e300

_NUMBER_RE = re.compile(
    r"(?P<num>[0-9][0-9_]*(?:\.[0-9][0-9_]*)?(?:[eE][+-]?[0-9][0-9_]*)?)(?P<unit>[A-Za-z%][A-Za-z0-9]*)?$"
)
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}
_UNICODE_ESCAPE = re.compile(r"u\{([0-9A-Fa-f]{1,6})\}")


def _import_lark():
    """Import lark without the third-party `regex` module.

    lark prefers `regex` when it is installed (the runtime's NLP packages bring it),
    which costs ~15 ms of start-up that our grammar does not need; the stdlib `re`
    handles it. `regex` stays importable for everyone else afterwards.
    """
    import sys

    blocked = "regex" not in sys.modules
    if blocked:
        sys.modules["regex"] = None  # type: ignore[assignment]  # None there makes `import regex` raise ImportError inside lark
    try:
        import lark
    finally:
        if blocked:
            del sys.modules["regex"]
    return lark


def _get_parser():
    global _parser, Token
    if _parser is None:
        lark = _import_lark()
        from .lexer import SpecLexer

        Lark, Token = lark.Lark, lark.Token
        _parser = Lark(
            _GRAMMAR.read_text(),
            parser="lalr",
            lexer=SpecLexer,
            maybe_placeholders=False,
            cache=True,  # the LALR tables, in the temp folder, keyed by grammar and lark version
        )
    return _parser


def parse(source: SourceFile, diags: Collector) -> ast.File | None:
    """Parse one file. Returns None when a syntax error stops the parse."""
    _get_parser()
    from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

    text = source.text
    if source.bad_byte_offset is not None:
        line, col = line_col(text, source.bad_byte_offset)
        diags.error(
            "E101",
            Span(source.path, line, col, line, col + 1),
            "file is not valid UTF-8",
            label="this byte is not UTF-8",
            help="save the spec as UTF-8 text",
        )
        return None
    comments: list = []
    try:
        chunked = _parse_in_chunks(text)
        if chunked is not None:
            trees, comments = chunked
        else:
            trees = _parse_with_comments(text, comments).children
    except UnexpectedCharacters as exc:
        report_bad_character(source, exc, diags)
        return None
    except UnexpectedToken as exc:
        report_unexpected_token(source, exc, diags)
        return None
    except UnexpectedInput:  # UnexpectedEOF and anything lark adds later
        line, col = line_col(text, len(text))
        diags.error("E103", Span(source.path, line, col, line, col + 1), "unexpected end of file")
        return None
    except RecursionError:
        diags.error(
            "E103", source.start_span(), "expression nested too deeply", help="split the expression with `let` bindings"
        )
        return None
    try:
        lowering = _Lowering(source, diags)
        return lowering.file([lowering.statement(t) for t in trees], [_comment(source.path, c) for c in comments])
    except _TooDeep as exc:
        span = exc.span
        diags.error(
            "E103",
            Span(span.file, span.line, span.col, span.line, span.col + 1),
            f"expression nested more than {MAX_DEPTH} levels deep",
            help="split the expression with `let` bindings",
        )
        return None
    except RecursionError:
        diags.error(
            "E103", source.start_span(), "expression nested too deeply", help="split the expression with `let` bindings"
        )
        return None


# Top-level chunks parsed before: (statement trees, comment tokens) by the chunk's
# line, column and text (see _parse_in_chunks).
_CHUNKS: dict[tuple[int, int, str], tuple[tuple, tuple]] = {}
_CHUNKS_MAX = 4096


def _parse_in_chunks(text: str) -> tuple[list, list] | None:
    """(top-level statement trees, comment tokens) of a file that parses, reusing the
    chunks parsed before; None when it does not parse (the full parse then reports why).

    A top-level `}` always ends the block or profile it closes, so a file splits after
    each one into chunks of whole statements, and the grammar (`start: _item*`)
    parses the file exactly when it parses every chunk. Trees and tokens carry lines
    and columns, not the file's name, so a chunk with the same text starting at the
    same place has the same trees in any file: building many variants of one spec, or
    checking a spec again as it is edited, lexes and parses only the chunks that
    changed. Lowering (where the file's name enters) runs on every tree.
    """
    parser = _get_parser()
    from lark.exceptions import LarkError

    from .lexer import SpecLexer, comment_sink

    lexer = getattr(parser.parser, "lexer", None)
    if not isinstance(lexer, SpecLexer):
        return None
    statements: list = []
    comments: list = []
    line, line_start = 1, 0
    try:
        for start, end in _top_level_chunks(lexer, text):
            key = (line, start - line_start, text[start:end])
            chunk = _CHUNKS.get(key)
            if chunk is None:
                comment_sink.clear()
                tokens = list(lexer.tokens(text, None, start, end, line, line_start))
                trees = ()
                if tokens:
                    interactive = parser.parse_interactive()
                    feed = interactive.parser_state.feed_token  # what feed_token calls, one frame less
                    for tok in tokens:
                        feed(tok)
                    trees = tuple(interactive.feed_eof(tokens[-1]).children)
                chunk = trees, tuple(comment_sink)
                if len(_CHUNKS) >= _CHUNKS_MAX:
                    _CHUNKS.clear()
                _CHUNKS[key] = chunk
            statements.extend(chunk[0])
            comments.extend(chunk[1])
            newlines = text.count("\n", start, end)
            if newlines:
                line += newlines
                line_start = text.rindex("\n", start, end) + 1
    except (LarkError, RecursionError):
        return None
    finally:
        comment_sink.clear()
    return statements, comments


def _top_level_chunks(lexer, text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of the text up to and including each top-level `}`, then
    of the rest."""
    chunks, start, depth = [], 0, 0
    for m in lexer.braces.finditer(text):
        brace = m["brace"]
        if brace == "{":
            depth += 1
        elif brace == "}":
            depth -= 1
            if depth == 0:
                chunks.append((start, m.end()))
                start = m.end()
    if start < len(text):
        chunks.append((start, len(text)))
    return chunks


def _parse_with_comments(text: str, comments: list) -> lark.Tree:
    parser = _get_parser()
    from .lexer import comment_sink

    comment_sink.clear()
    try:
        return parser.parse(text)
    finally:
        comments.extend(comment_sink)
        comment_sink.clear()


def _comment(path: str, tok) -> ast.Comment:
    return ast.Comment(str(tok), tok_span(path, tok))


class _TooDeep(Exception):
    def __init__(self, span: Span):
        self.span = span


class _Lowering:
    """Turns the lark tree into `ast` nodes, checking literals as it goes.

    Spans come from the tokens at a node's two ends (the grammar keeps braces,
    brackets, keywords and operators as named tokens for this).
    """

    def __init__(self, source: SourceFile, diags: Collector):
        self.source = source
        self.path = source.path
        self.diags = diags

    def span(self, node) -> Span:
        first, last = node, node
        while not isinstance(first, Token):
            first = first.children[0]
        while not isinstance(last, Token):
            last = last.children[-1]
        line, col, end_line, end_col = first.line, first.column, last.end_line, last.end_column
        # SpecLexer gives every token its position (lark types them optional)
        assert line is not None and col is not None and end_line is not None and end_col is not None
        return Span(self.path, line, col, end_line, end_col)

    def tspan(self, tok) -> Span:
        return tok_span(self.path, tok)

    def file(self, statements: list, comments: list[ast.Comment]) -> ast.File:
        self.one_per_line(statements)
        for i, st in enumerate(statements):
            if isinstance(st, ast.Extends) and i != 0:
                self.diags.error(
                    "E212",
                    st.span,
                    "`extends` must be the first statement of the file",
                    help="move it to the top, before any `let`, block or profile",
                )
        return ast.File(self.path, statements, comments)

    def one_per_line(self, items: list) -> None:
        for prev, cur in itertools.pairwise(items):
            if cur.span.line == prev.span.end_line:
                # `a = 4 // the task` then a block: the comment's words became statements.
                slash = slash_comment(self.source, cur.span.line)
                if slash is not None and slash.line == cur.span.line:
                    report_slash_comment(self.diags, slash)
                    continue
                self.diags.error(
                    "E103",
                    _head_span(cur),
                    "expected a new line before this statement",
                    label="starts on the same line as the previous one",
                    help="put each attribute and block on a line of its own",
                )

    def statement(self, node):
        kind = node.data
        if kind == "extends":
            return ast.Extends(self.string(node.children[1]), self.span(node))
        if kind == "let":
            _, name, value = node.children
            return ast.Let(str(name), self.expr(value), self.span(node), self.tspan(name))
        if kind == "profile":
            _, name, _, *overrides, close = node.children
            attrs = [self.attribute(o) for o in overrides]
            self.one_per_line(attrs)
            return ast.Profile(str(name), attrs, self.span(node), self.tspan(name), self.tspan(close))
        if kind == "block":
            return self.block(node)
        return self.attribute(node)

    def block(self, node) -> ast.Block:
        name, *rest = node.children
        close = rest.pop()
        label = label_span = None
        quoted = False
        if getattr(rest[0], "data", None) == "label":
            tok = rest.pop(0).children[0]
            label_span = self.tspan(tok)
            if tok.type == "STRING":
                label, quoted = self.string(tok).value, True
            else:
                label = str(tok)
        rest.pop(0)  # the opening brace
        items = [self.block(c) if c.data == "block" else self.attribute(c) for c in rest]
        self.one_per_line(items)
        return ast.Block(
            str(name), label, items, self.span(node), self.tspan(name), label_span, quoted, self.tspan(close)
        )

    def attribute(self, node) -> ast.Attribute:
        dotted, value = node.children
        return ast.Attribute(self.names(dotted), self.expr(value), self.span(node), self.span(dotted))

    def names(self, dotted) -> tuple[str, ...]:
        return tuple(str(t) for t in dotted.children)

    # --- expressions ---

    def expr(self, node, depth: int = 0) -> ast.Expr:
        if depth > MAX_DEPTH:
            raise _TooDeep(self.span(node))
        return self._expr(node, depth + 1)

    def _expr(self, node, depth: int) -> ast.Expr:
        if isinstance(node, Token):  # literals are bare tokens (see grammar.lark)
            if node.type == "NUMBER":
                return self.number(node)
            if node.type == "STRING":
                return self.string(node)
            return ast.Bool(node.type == "TRUE", self.tspan(node))
        kind = node.data
        children = node.children
        if kind == "list":
            items = tuple(self.expr(c, depth) for c in children[1:-1])
            self.thousands_in_list(items)
            return ast.ListExpr(items, self.span(node))
        if kind == "call":
            name = children[0]
            args = tuple(self.expr(a, depth) for a in children[2:-1])
            return ast.Call(str(name), args, self.span(node), self.tspan(name))
        if kind == "dotted":
            return ast.Ref(self.names(node), self.span(node))
        if kind == "paren":
            return self.expr(children[1], depth)._replace(span=self.span(node))
        if kind == "neg":
            sign, operand = children
            if str(sign) == "+":
                self.diags.error(
                    "E103",
                    self.tspan(sign),
                    "unexpected `+`",
                    label="there is no unary plus",
                    help="write the number without `+`",
                )
            inner = self.expr(operand, depth)
            return inner if str(sign) == "+" else ast.Unary("-", inner, self.span(node))
        left, op, right = children
        lhs, rhs = self.expr(left, depth), self.expr(right, depth)
        return ast.Binary(str(op), lhs, rhs, self.span(node), self.tspan(op))

    def thousands_in_list(self, items: tuple) -> None:
        """`[1,000]` is the list [1, 0]: a 3-digit item with a leading zero glued to the
        number before it by a bare `,` was meant as a thousands separator."""
        for prev, cur in itertools.pairwise(items):
            if not (isinstance(prev, ast.Number) and isinstance(cur, ast.Number)):
                continue
            a, b = prev.span, cur.span
            if (
                b.line == a.end_line
                and b.col == a.end_col + 1
                and len(cur.text) == 3
                and cur.text.startswith("0")
                and cur.text.isdigit()
                and prev.text.isdigit()
            ):
                span = a.to(b)
                grouped = f"{prev.text}_{cur.text}"
                self.diags.error(
                    "E105",
                    span,
                    f"`,` in the number `{prev.text},{cur.text}`",
                    label="`,` separates list items, not digits",
                    help=f"group digits with `_`: write `{grouped}`",
                    fix=[Fix(span, grouped)],
                )

    def number(self, tok) -> ast.Number | ast.Quantity:
        text = str(tok)
        span = self.tspan(tok)
        if text.isdigit():  # the common case: a plain integer
            if len(text) <= 18:
                return ast.Number(int(text), text, span)
        known = _PLAIN_NUMBERS.get(text)
        if known is not None:
            return known._replace(span=span)
        reported = len(self.diags.diagnostics)
        node = self._number(text, span)
        if len(self.diags.diagnostics) == reported and len(_PLAIN_NUMBERS) < 4096:
            _PLAIN_NUMBERS[text] = node
        return node

    def _number(self, text: str, span: Span) -> ast.Number | ast.Quantity:
        if " " in text or "\t" in text:
            return self._spaced_number(text, span)
        m = _NUMBER_RE.match(text)
        num, unit = (m.group("num"), m.group("unit")) if m else (text, None)
        problem = _underscore_problem(num) if "_" in num else ""
        if problem:
            # The digits as written, with an underscore only where one sits between two digits.
            grouped = re.sub(r"_+", "_", num)
            grouped = re.sub(r"(?<![0-9])_|_(?![0-9])", "", grouped) + (unit or "")
            self.diags.error(
                "E105",
                span,
                f"malformed number `{text}`",
                label=problem,
                help=f"group digits with single underscores between them: write `{grouped}`",
                fix=[Fix(span, grouped)],
            )
            return ast.Number(0, text, span)
        clean = num.replace("_", "")
        try:
            exact = Decimal(clean)
        except InvalidOperation:  # pragma: no cover - the regex admits only valid decimals
            exact = Decimal(0)
        is_int = not any(c in clean for c in ".eE")
        if unit is None:
            value = self.checked(exact, is_int, text, span)
            return ast.Number(value, text, span)
        if unit not in UNITS:
            guess = unit_guess(unit)
            self.diags.error(
                "E104",
                span,
                f"unknown unit `{unit}`",
                label=f"`{unit}` is not a unit",
                help=unit_help(unit, guess and num + guess),
                fix=[Fix(span, num + guess)] if guess else (),
            )
            return ast.Number(0, text, span)
        kind, factor = UNITS[unit]
        scaled = exact * factor
        if kind == "size":
            if scaled != scaled.to_integral_value():
                self.diags.error(
                    "E105", span, f"`{text}` is not a whole number of bytes", help="sizes are counted in whole bytes"
                )
                return ast.Quantity(0, kind, unit, text, span)
            value = self.checked(scaled, True, text, span)
        else:
            value = self.checked(scaled, False, text, span)
        return ast.Quantity(value, kind, unit, text, span)

    def _spaced_number(self, text: str, span: Span) -> ast.Number | ast.Quantity:
        """`300 ms` (the lexer keeps a unit that follows a number after blanks in its
        token): E104, and the value of `300ms` so that the rest of the file is read."""
        glued = "".join(text.split())
        reported = len(self.diags.diagnostics)
        node = self._number(glued, span)
        if len(self.diags.diagnostics) == reported:  # a known unit: the space is the only problem
            self.diags.error(
                "E104",
                span,
                f"space between the number and its unit in `{text}`",
                label="a unit is written right after its number",
                help=f"write `{glued}`",
                fix=[Fix(span, glued)],
            )
            node = node._replace(text=glued)
        return node

    def checked(self, exact: Decimal, is_int: bool, text: str, span: Span) -> int | float:
        if abs(exact) > (MAX_INT if is_int else Decimal(MAX_FLOAT)):
            self.diags.error(
                "E105", span, f"number `{text[:30]}` is too large", label="out of the range a spec can use"
            )
            return 0
        return int(exact) if is_int else float(exact)

    def string(self, tok) -> ast.String:
        raw = str(tok)
        span = self.tspan(tok)
        body = raw[1:-1]
        if "\\" not in body:  # no escapes: the text is the value
            return ast.String(body, raw, span)
        out: list[str] = []
        i = 0
        while i < len(body):
            ch = body[i]
            if ch != "\\":
                out.append(ch)
                i += 1
                continue
            nxt = body[i + 1] if i + 1 < len(body) else ""
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
                continue
            m = _UNICODE_ESCAPE.match(body, i + 1)
            if m and int(m.group(1), 16) <= 0x10FFFF and not 0xD800 <= int(m.group(1), 16) <= 0xDFFF:
                out.append(chr(int(m.group(1), 16)))
                i = m.end()
                continue
            col = span.col + 1 + i
            width = (m.end() - i) if m else 2
            self.diags.error(
                "E107",
                Span(self.path, span.line, col, span.line, col + width),
                f"invalid escape `{body[i : i + width]}` in string",
                label="not an escape the language knows",
                help='escapes are \\" \\\\ \\n \\t and \\u{1F600} (a Unicode scalar value)',
            )
            i += width
        return ast.String("".join(out), raw, span)


# Number literals lowered without a problem, by their text (each use takes its own
# span). A spec repeats its numbers, and so do specs.
_PLAIN_NUMBERS: dict[str, ast.Number | ast.Quantity] = {}


def _head_span(node) -> Span:
    if isinstance(node, ast.Attribute):
        return node.key_span
    if isinstance(node, ast.Block):
        return node.name_span
    return node.span


def _underscore_problem(num: str) -> str:
    if "__" in num:
        return "two underscores in a row"
    for i, ch in enumerate(num):
        if ch == "_" and (i + 1 == len(num) or not num[i + 1].isdigit() or not num[i - 1].isdigit()):
            return "an underscore must sit between two digits"
    return ""
