"""Semantic checks (docs/language.md, "Checks and the order of phases"), one module per concern.

Each module has `check(ctx)` and reports to `ctx.diags`; none raises on a user's
mistake and none stops at the first problem.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .context import CheckContext, part

if TYPE_CHECKING:  # pragma: no cover - types only
    from ..reads import Reads


def run_all(ctx: CheckContext, reads: Reads | None = None) -> None:
    """Every check. With `reads` (the type checker rejected fields), each check reads
    through it and its findings that read a rejected field are dropped (reads.py)."""
    from . import architecture, compress, data, deploy, devices, layout, memory, metrics, search, serving

    ctx = ctx._replace(reads=reads)
    # search runs last: its E603 reports only what a value adds to the other checks' findings.
    for module in (data, architecture, layout, devices, memory, compress, metrics, serving, deploy, search):
        part(ctx, module.check, ctx)


__all__ = ["CheckContext", "part", "run_all"]
