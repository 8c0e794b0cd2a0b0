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


class SpecLexer(Lexer):
    __future_interface__ = 2

    def __init__(self, conf):
        terms = sorted(conf.terminals, key=lambda t: (-t.priority, t.pattern.type != "str", -len(t.pattern.value)))
        self.keywords = {t.pattern.value: t.name for t in terms
                         if t.pattern.type == "str" and _KEYWORD.fullmatch(t.pattern.value)}
        # Regex terminals go before the strings they could contain: NUMBER before
        # MULOP (`30%` is a fraction), NAME before the keywords (`letter` is a name;
        # a NAME equal to a keyword becomes that keyword).
        keyword_names = set(self.keywords.values())
        order = [t for t in terms if t.pattern.type == "re"]
        order += [t for t in terms if t.pattern.type == "str" and t.name not in keyword_names]
        self.regex = re.compile("|".join(f"(?P<{t.name}>{t.pattern.to_regexp()})" for t in order))
        self.ignore = frozenset(conf.ignore)
        # Only strings and comments can hold a brace that is not one: this finds the
        # braces that are (parse._parse_in_chunks splits a file at the top-level ones).
        by_name = {t.name: t for t in terms}
        self.braces = re.compile("|".join(f"(?:{by_name[n].pattern.to_regexp()})" for n in ("STRING", "COMMENT"))
                                 + "|(?P<brace>[{}])")

    def lex(self, state, parser_state):
        return self.tokens(state.text.text, parser_state)

    def tokens(self, text: str, parser_state=None, pos: int = 0, end: int | None = None, line: int = 1,
               line_start: int = 0):
        """The tokens of text[pos:end], which starts on `line` (whose first character
        is at offset `line_start`)."""
        match = self.regex.match
        keywords, ignore = self.keywords, self.ignore
        end = len(text) if end is None else end
        while pos < end:
            m = match(text, pos, end)
            if m is None:
                raise UnexpectedCharacters(text, pos, line, pos - line_start + 1, state=parser_state)
            kind, value = m.lastgroup, m.group()
            if kind == "NAME":
                kind = keywords.get(value, "NAME")
            stop = m.end()
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
