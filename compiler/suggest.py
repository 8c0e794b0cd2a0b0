""""Did you mean" suggestions: the closest known name by edit distance, and the
literal a bare word was meant to be."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple


def distance(a: str, b: str) -> int:
    """Damerau-Levenshtein distance (optimal string alignment), case-insensitive."""
    a, b = a.lower(), b.lower()
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate nearest to `word`, if it is near enough to be a likely typo."""
    if len(word) > 64:
        return None
    best, best_d = None, None
    for cand in candidates:
        d = distance(word, cand)
        if best_d is None or d < best_d:
            best, best_d = cand, d
    if best is None or best_d is None:
        return None
    limit = max(1, min(3, len(word) // 3))
    return best if best_d <= limit else None


class BareWord(NamedTuple):
    """What a bare word written as a field's whole value most likely means."""

    replacement: str  # the literal to write instead (`"bf16"`, `true`)
    help: str
    certain: bool  # the word is exactly one of the field's values (before a `let` of a similar name)


def bare_word(field_path: str, word: str) -> BareWord | None:
    """`precision = bf16` is a reference to a name that does not exist; for a field that
    takes a string, or true or false, this is the literal it was meant to be."""
    from .fields import walk_schema

    ft, _, problem = walk_schema(tuple(field_path.split(".")))
    if problem or ft is None:
        return None
    for option in ft.options or (ft,):
        if option.kind == "bool" and word.lower() in ("true", "false"):
            return BareWord(word.lower(), f"booleans are written `{word.lower()}`", True)
        if option.kind == "enum":
            guess = word if word in option.enum else closest(word, option.enum)
            if guess is not None:
                return BareWord(f'"{guess}"', f'did you mean the string "{guess}"? strings are written in double quotes',
                                guess == word)
        if option.kind == "str":
            return BareWord(f'"{word}"', f'did you mean the string "{word}"? strings are written in double quotes',
                            False)
    return None
