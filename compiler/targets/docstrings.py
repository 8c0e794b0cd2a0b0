"""Text for the docstrings of generated scripts, shared by the targets that write them
(compress, evaluate): a spec string made safe inside a docstring, and paragraphs
wrapped to the scripts' width."""

from __future__ import annotations

import textwrap
from functools import lru_cache


def doc_text(value) -> str:
    """A spec string made safe inside a generated script's \"\"\"docstring\"\"\": backslashes,
    quotes, newlines and non-ASCII become escapes (the docstring shows them escaped;
    the constants below it, written with |py, hold the exact values)."""
    return str(value).encode("unicode_escape").decode("ascii").replace('"', '\\"')


@lru_cache(maxsize=256)
def wrapped(paragraph: str) -> tuple[str, ...]:
    """A docstring paragraph in lines of at most 84 characters (memoised: the same
    paragraphs recur in every build, and textwrap is a fifth of building the contexts)."""
    return tuple(textwrap.wrap(paragraph, 84))
