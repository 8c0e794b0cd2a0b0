""" "Did you mean" suggestions: the closest known name by edit distance (fields.bare_word
uses it for the literal a bare word was meant to be)."""

from __future__ import annotations

from collections.abc import Iterable


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
