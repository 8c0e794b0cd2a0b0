"""The derived facts as `llmc check` prints them."""

from __future__ import annotations


def facts_text(result) -> str:
    return f"{result.path}: ok\n"
