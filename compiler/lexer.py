"""The lexer lark's LALR parser runs with: the grammar's own terminals in one regex.

lark's built-in lexers track positions token by token in Python and cost more than
the parse itself. This one scans with a single compiled alternation of the same
terminal definitions (so grammar.lark stays the one source of truth), hands
comments to `fmt` through `comment_sink`, and reports the first character no
terminal matches as lark's own UnexpectedCharacters. It lives at module level so
that lark can pickle a reference to it into its grammar cache.
"""

import re

from lark import Token
from lark.exceptions import UnexpectedCharacters
from lark.lexer import Lexer

# Comments of the parse in progress (parsing is not reentrant).
comment_sink: list = []

_KEYWORD = re.compile(r"[A-Za-z_]\w*")
# A word or `%` after a bare number and blanks on the same line (`300 ms`, `30 %`).
_SPACED_UNIT = re.compile(r"[ \t]+([A-Za-z_][A-Za-z0-9_]*|%)")
# What may follow a spaced `%` for it to be a unit rather than the modulo operator.
_AFTER_PERCENT = re.compile(r"[ \t]*(?:[\r\n#,\]})]|$)")
# What follows a word that starts the next statement (`a = 3 b = 4`): left to the parser.
_AFTER_STATEMENT_START = re.compile(r"[ \t]*[=.{]")


def _spaced_unit_end(text: str, pos: int, end: int, unit_words) -> int:
    """The end of `NUMBER unit` when a unit follows the number at `pos` after blanks.

    `300 ms` is never valid syntax (a name cannot follow a number), so it becomes one
    NUMBER token with the blanks in it, which lowering reports as E104 and reads as
    `300ms`: the file still parses, and the error names the fix. Returns `pos` when
    no unit follows.
    """
    m = _SPACED_UNIT.match(text, pos, end)
    if m is None:
        return pos
    word, stop = m.group(1), m.end()
    if word == "%":
        return stop if _AFTER_PERCENT.match(text, stop, end) else pos
    if word not in unit_words or _AFTER_STATEMENT_START.match(text, stop, end):
        return pos
    return stop


class SpecLexer(Lexer):
    __future_interface__ = 2

    def __init__(self, conf):
        terms = sorted(conf.terminals, key=lambda t: (-t.priority, t.pattern.type != "str", -len(t.pattern.value)))
        self.keywords = {
            t.pattern.value: t.name for t in terms if t.pattern.type == "str" and _KEYWORD.fullmatch(t.pattern.value)
        }
        # Regex terminals go before the strings they could contain: NUMBER before
        # MULOP (`30%` is a fraction), NAME before the keywords (`letter` is a name;
        # a NAME equal to a keyword becomes that keyword).
        keyword_names = set(self.keywords.values())
        order = [t for t in terms if t.pattern.type == "re"]
        order += [t for t in terms if t.pattern.type == "str" and t.name not in keyword_names]
        self.regex = re.compile("|".join(f"(?P<{t.name}>{t.pattern.to_regexp()})" for t in order))
        self.ignore = frozenset(conf.ignore)
        from .units import UNIT_WORDS

        self.unit_words = UNIT_WORDS
        # Only strings and comments can hold a brace that is not one: this finds the
        # braces that are (parse._parse_in_chunks splits a file at the top-level ones).
        by_name = {t.name: t for t in terms}
        self.braces = re.compile(
            "|".join(f"(?:{by_name[n].pattern.to_regexp()})" for n in ("STRING", "COMMENT")) + "|(?P<brace>[{}])"
        )

    def lex(self, state, parser_state):
        return self.tokens(state.text.text, parser_state)

    def tokens(
        self, text: str, parser_state=None, pos: int = 0, end: int | None = None, line: int = 1, line_start: int = 0
    ):
        """The tokens of text[pos:end], which starts on `line` (whose first character
        is at offset `line_start`)."""
        match = self.regex.match
        keywords, ignore, unit_words = self.keywords, self.ignore, self.unit_words
        end = len(text) if end is None else end
        while pos < end:
            m = match(text, pos, end)
            if m is None:
                raise UnexpectedCharacters(text, pos, line, pos - line_start + 1, state=parser_state)
            kind, value = m.lastgroup, m.group()
            assert kind is not None  # every alternative of the regex is a named group
            if kind == "NAME":
                kind = keywords.get(value, "NAME")
            stop = m.end()
            if kind == "NUMBER" and stop < end and text[stop] in " \t" and value[-1].isdigit():
                spaced = _spaced_unit_end(text, stop, end, unit_words)
                if spaced != stop:
                    stop, value = spaced, text[pos:spaced]
            if kind in ignore:
                if kind == "COMMENT":
                    col = pos - line_start + 1
                    comment_sink.append(Token(kind, value, pos, line, col, line, col + (stop - pos), stop))
                else:
                    newlines = value.count("\n")
                    if newlines:
                        line += newlines
                        line_start = pos + value.rindex("\n") + 1
                pos = stop
                continue
            col = pos - line_start + 1
            yield Token(kind, value, pos, line, col, line, col + (stop - pos), stop)
            pos = stop
