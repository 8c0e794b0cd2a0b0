"""The long explanations of diagnostic codes, read from docs/errors/<CODE>.md."""

from __future__ import annotations

from importlib import resources


def explanation(code: str) -> str:
    try:
        return resources.files("llmc.docs").joinpath("errors", f"{code}.md").read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError):
        from .codes import CODES

        c = CODES[code]
        return f"{c.code}: {c.title}\n\n(no long explanation is installed for this code)\n"
