"""Semantic checks (docs/language.md, "Checks and the order of phases"), one module per concern.

Each module has `check(ctx)` and reports to `ctx.diags`; none raises on a user's
mistake and none stops at the first problem.
"""

from typing import TYPE_CHECKING, Callable, NamedTuple

if TYPE_CHECKING:  # pragma: no cover
    from ..diagnostics import Collector, Diagnostic
    from ..evaluate import Value
    from ..plan import Facts
    from ..schema import Spec
    from ..typecheck import SpanIndex


class CheckContext(NamedTuple):
    ir: "Spec"
    spans: "SpanIndex"
    facts: "Facts"
    diags: "Collector"
    distributions: dict[str, "Value"]  # search.space as written, for E601-E603
    # Checks the spec again with one field changed; returns the errors (E603 uses it).
    variant: "Callable[[str, object], list[Diagnostic]] | None" = None


def run_all(ctx: CheckContext) -> None:
    from . import compression, data, deploy, devices, layout, memory, metrics, search, serving

    # search runs last: its E603 reports only what a value adds to the other checks' findings.
    for module in (data, layout, devices, memory, compression, metrics, serving, deploy, search):
        module.check(ctx)
