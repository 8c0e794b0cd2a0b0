"""How a lexing or parsing error is reported: E101 (a character the language does not
use), E102 (an unterminated string), E103 (an unexpected token, with what was
expected and the common mistakes behind it: `//` comments, thousands separators, an
unclosed brace) and E105 (a number lark splits). parse.py meets the error; this
module words it. Errors found while lowering stay in parse.py.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .diagnostics import Collector, Fix
from .source import SourceFile, Span

# How parse errors name the tokens lark expected.
_TOKEN_WORDS = {
    "NUMBER": "a number",
    "NAME": "a name",
    "STRING": "a string",
    "ADDOP": "`+` or `-`",
    "MULOP": "an operator",
    "LBRACE": "`{`",
    "RBRACE": "`}`",
    "LSQB": "`[`",
    "RSQB": "`]`",
    "LPAR": "`(`",
    "RPAR": "`)`",
    "EQUAL": "`=`",
    "DOT": "`.`",
    "COMMA": "`,`",
    "PLUS": "`+`",
    "MINUS": "`-`",
    "STAR": "`*`",
    "SLASH": "`/`",
    "DOUBLE_SLASH": "`//`",
    "PERCENT": "`%`",
    "LET": "`let`",
    "EXTENDS": "`extends`",
    "PROFILE": "`profile`",
    "TRUE": "`true`",
    "FALSE": "`false`",
    "$END": "end of file",
}


def line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col


def report_bad_character(source: SourceFile, exc, diags: Collector) -> None:
    text = source.text
    pos = exc.pos_in_stream
    line, col = exc.line, exc.column
    char = text[pos] if pos < len(text) else ""
    if char == '"':
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        # A string that reaches the end of its line: unterminated, or a bad escape before a newline.
        rest = text[pos:end].rstrip("\r \t")
        comment = re.search(r"[ \t]+#", rest)  # `"abc  # note`: the quote most likely ends before the comment
        close = pos + (comment.start() if comment else len(rest))
        close_col = col + (close - pos)
        fix: Sequence[Fix] = (
            () if rest.endswith("\\") else (Fix(Span(source.path, line, close_col, line, close_col), '"'),)
        )
        diags.error(
            "E102",
            Span(source.path, line, col, line, col + max(1, end - pos)),
            "unterminated string",
            label="this string has no closing quote on its line",
            help='close it with `"`; strings cannot span lines (write `\\n` for a newline)',
            fix=fix,
        )
        return
    shown = char if char.isprintable() else f"U+{ord(char):04X}"
    span = Span(source.path, line, col, line, col + 1)
    number = re.search(r"[0-9][0-9_.]*$", text[max(0, pos - 40) : pos])
    micro = char in "\u00b5\u03bc" and text.startswith("s", pos + 1) and number is not None
    fix = [Fix(span, "u")] if micro else []
    if char == ":" and _KEY_BEFORE.fullmatch(text, text.rfind("\n", 0, pos) + 1, pos):
        fix = [Fix(span, "=" if text[pos - 1] in " \t" else " =")]  # `task: "x"` -> `task = "x"`
    elif char == ";":
        fix = [Fix(span, "")]
    elif char in "'\u201c\u201d\u2018\u2019":
        # `'text'` or `“text”`: both quotes become `"` when the string closes on its line
        closing = {"'": "'", "\u201c": "\u201d", "\u201d": "\u201d", "\u2018": "\u2019", "\u2019": "\u2019"}[char]
        end = text.find(closing, pos + 1, _line_end(text, pos))
        if end > pos and '"' not in text[pos + 1 : end]:
            fix = [Fix(span, '"'), Fix(Span(source.path, line, col + end - pos, line, col + end - pos + 1), '"')]
    diags.error(
        "E101",
        span,
        f"unexpected character `{shown}`",
        label="not part of the .llm language",
        help=f"microseconds are written `us`: write `{number.group()}us`"
        if micro and number is not None
        else _character_help(char),
        fix=fix,
    )


# The start of a line up to an attribute's name (`  task`), for `task: value`.
_KEY_BEFORE = re.compile(r"[ \t]*[A-Za-z_][\w.-]*[ \t]*")


def _line_end(text: str, pos: int) -> int:
    end = text.find("\n", pos)
    return len(text) if end < 0 else end


def _character_help(char: str) -> str:
    if char in ":":
        return "attributes are written `name = value`"
    if char in ";":
        return "statements end at the end of the line; remove the `;`"
    if char in "'\u2018\u2019":
        return 'strings use double quotes: "text"'
    if char in "\u201c\u201d":
        return 'use a plain double quote `"` instead of a typographic one'
    return "remove it, or put it inside a string or a comment"


def report_unexpected_token(source: SourceFile, exc, diags: Collector) -> None:
    tok = exc.token
    if _report_known_mistake(source, tok, diags):
        return
    expected = sorted(exc.expected or (), key=lambda t: (t.startswith("__"), t))
    words = [w for w in dict.fromkeys(_TOKEN_WORDS.get(t, _word_for_anonymous(t)) for t in expected) if w]
    if tok.type == "$END":
        opened = _unclosed_brace(source.text)
        if opened is not None:
            offset, header = opened
            line, col = line_col(source.text, offset)
            diags.error(
                "E103",
                Span(source.path, line, col, line, col + 1),
                f"unexpected end of file: {header} is never closed",
                label="this `{` has no matching `}`",
                help="add `}` where the block ends",
            )
            return
        line, col = line_col(source.text, len(source.text))
        span = Span(source.path, line, col, line, col + 1)
        found = "end of file"
    else:
        span = tok_span(source.path, tok)
        found = _describe_token(tok)
    label = "expected " + _one_of(words) if words else ""
    help = _token_help(tok, expected)
    fix: tuple[Fix, ...] = ()
    if (
        "EQUAL" in expected
        and tok.type in ("NUMBER", "STRING")
        and _KEY_BEFORE.fullmatch(source.line_text(tok.line), 0, tok.column - 1)
    ):
        fix = (Fix(Span(source.path, tok.line, tok.column, tok.line, tok.column), "= "),)  # `inputs 64`
    diags.error("E103", span, f"unexpected {found}", label=label, help=help, fix=fix)


def _report_known_mistake(source: SourceFile, tok, diags: Collector) -> bool:
    """Report a parse error that is a common mistake with a known fix; False if it is not one."""
    path, _text = source.path, source.text
    slash = slash_comment(source, tok.line if tok.type != "$END" else len(source.lines))
    if slash is not None:
        report_slash_comment(diags, slash)
        return True
    if tok.type == "$END":
        return False
    line_text = source.line_text(tok.line)
    at = tok.column - 1  # offset of the token in its line
    if str(tok) == ",":
        m = next((m for m in _THOUSANDS.finditer(line_text) if m.start() <= at < m.end()), None)
        if m is not None:
            grouped = m.group().replace(",", "_")
            span = Span(path, tok.line, m.start() + 1, tok.line, m.end() + 1)
            diags.error(
                "E105",
                span,
                f"`,` in the number `{m.group()}`",
                label="`,` separates list items, not digits",
                help=f"group digits with `_`: write `{grouped}`",
                fix=[Fix(span, grouped)],
            )
            return True
        value = _ATTRIBUTE_VALUE.match(line_text)
        if value is not None and value.start("value") < at < value.end("value"):
            items = value.group("value")
            span = Span(path, tok.line, value.start("value") + 1, tok.line, value.end("value") + 1)
            diags.error(
                "E103",
                tok_span(path, tok),
                "unexpected `,`",
                label="a list is written in brackets",
                help=f"write `[{items}]`",
                fix=[Fix(span, f"[{items}]")],
            )
            return True
        return False
    if str(tok) == ".":
        before = line_text[:at]
        after = re.match(r"[0-9][0-9_]*", line_text[at + 1 :])
        if after and (not before or not (before[-1].isalnum() or before[-1] in "_.")):
            # `.5`: a number starts with a digit
            digits = "0." + after.group()
            span = Span(path, tok.line, tok.column, tok.line, tok.column + 1 + after.end())
            diags.error(
                "E105",
                span,
                f"malformed number `.{after.group()}`",
                label="a number starts with a digit",
                help=f"write `{digits}`",
                fix=[Fix(span, digits)],
            )
            return True
        if after and re.search(r"[0-9][eE][+-]?[0-9_]*$", before):
            diags.error(
                "E105",
                tok_span(path, tok),
                "malformed number: the exponent has a `.`",
                label="an exponent is a whole number",
                help="write the number without a fraction in its exponent, e.g. `3e-4`",
            )
            return True
        whole = re.search(r"(?<![\w.])[0-9][0-9_]*$", before)
        if not after and whole:
            # `1.`: a fraction needs a digit after the point
            number = whole.group() + ".0"
            span = Span(path, tok.line, whole.start() + 1, tok.line, tok.column + 1)
            diags.error(
                "E105",
                span,
                f"malformed number `{whole.group()}.`",
                label="a digit must follow the point",
                help=f"write `{number}`",
                fix=[Fix(span, number)],
            )
            return True
    return False


# `1,000` (a thousands separator): digits, then groups of `,` and three digits.
_THOUSANDS = re.compile(r"(?<![\w.])[0-9]{1,3}(?:,[0-9]{3})+(?![\w.,])")
# `name = value` on one line, the value up to a comment.
_ATTRIBUTE_VALUE = re.compile(r"\s*[A-Za-z_][\w.-]*\s*=\s*(?P<value>[^#\s](?:[^#]*[^#\s])?)")


def slash_comment(source: SourceFile, last_line: int) -> Span | None:
    """The span of a `//` meant as a comment on `last_line` or the two lines before it.

    Such a `//` is integer division to the parser, so the error it causes shows up
    at a later token; this finds it. A `//` counts when it starts its line, or when
    more than one operand follows it (`4 // note` alone is valid syntax).
    """
    for line in range(max(1, last_line - 2), last_line + 1):
        text = source.line_text(line)
        col = _code_find(text, "//")
        if col < 0:
            continue
        before, after = text[:col].strip(), text[col + 2 :]
        if not before or len(re.findall(r"[^\s()]+", after)) > 1:
            return Span(source.path, line, col + 1, line, col + 3)
    return None


def report_slash_comment(diags: Collector, slash: Span) -> None:
    diags.error(
        "E103",
        slash,
        "`//` does not start a comment",
        label="`//` is integer division",
        help="comments start with `#`: write `#` instead of `//`",
        fix=[Fix(slash, "#")],
    )


def _code_find(line: str, needle: str) -> int:
    """The offset of `needle` in `line` outside strings and comments, or -1."""
    i, n = 0, len(line)
    while i < n:
        ch = line[i]
        if ch == "#":
            return -1
        if ch == '"':
            i += 1
            while i < n and line[i] != '"':
                i += 2 if line[i] == "\\" else 1
        elif line.startswith(needle, i):
            return i
        i += 1
    return -1


def _unclosed_brace(text: str) -> tuple[int, str] | None:
    """The offset of the innermost `{` left open at the end of the text, and what it opens."""
    stack: list[int] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "#":
            nl = text.find("\n", i)
            i = n if nl < 0 else nl
        elif ch == '"':
            i += 1
            while i < n and text[i] not in '"\n':
                i += 2 if text[i] == "\\" else 1
        elif ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            stack.pop()
        i += 1
    if not stack:
        return None
    at = stack[-1]
    start = text.rfind("\n", 0, at) + 1
    header = text[start:at].strip()
    words = header.split()
    return at, f"block `{' '.join(words[:2])}`" if words else "a block"


def _word_for_anonymous(name: str) -> str:
    return "" if name.startswith("__") else f"`{name.lower()}`"


def _one_of(words: list[str]) -> str:
    if len(words) == 1:
        return words[0]
    if len(words) == 2:
        return f"{words[0]} or {words[1]}"
    if len(words) <= 6:
        return "one of " + ", ".join(words[:-1]) + " or " + words[-1]
    return "one of " + ", ".join(words[:6]) + ", ..."


def _describe_token(tok) -> str:
    value = str(tok)
    if tok.type == "NUMBER":
        return f"number `{value}`"
    if tok.type == "STRING":
        return f"string {value[:40]}"
    if tok.type == "NAME":
        return f"name `{value}`"
    return f"`{value}`"


def _token_help(tok, expected: list[str]) -> str:
    if tok.type == "$END" and "RBRACE" in expected:
        return "a block is missing its closing `}`"
    if tok.type == "RBRACE" and "RBRACE" not in expected:
        return "this `}` has no matching `{`, or the line before it is incomplete"
    if "EQUAL" in expected and tok.type in ("NUMBER", "STRING"):
        return "attributes are written `name = value`"
    return ""


def tok_span(path: str, tok) -> Span:
    return Span(path, tok.line, tok.column, tok.end_line or tok.line, tok.end_column or tok.column + len(str(tok)))
