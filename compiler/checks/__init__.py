"""Semantic checks (LANGUAGE.md §6), one module per concern.

Each module has `check(ctx)` and reports to `ctx.diags`; none raises on a user's
mistake and none stops at the first problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # pragma: no cover
    from ..diagnostics import Collector, Diagnostic
    from ..evaluate import Value
    from ..plan import Facts
    from ..schema import Spec
    from ..typecheck import SpanIndex


@dataclass
class CheckContext:
    ir: "Spec"
    spans: "SpanIndex"
    facts: "Facts"
    diags: "Collector"
    distributions: dict[str, "Value"]  # search.space as written, for E601-E603
    # Checks the spec again with one field changed; returns the errors (E603 uses it).
    variant: "Callable[[str, object], list[Diagnostic]] | None" = None


def run_all(ctx: CheckContext) -> None:
    from . import compression, deploy, devices, layout, memory, metrics, search, serving

    for module in (layout, devices, memory, compression, metrics, search, serving, deploy):
        module.check(ctx)
