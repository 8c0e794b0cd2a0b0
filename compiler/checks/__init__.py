"""Semantic checks (docs/language.md, "Checks and the order of phases"), one module per concern.

Each module has `check(ctx)` and reports to `ctx.diags`; none raises on a user's
mistake and none stops at the first problem.
"""

from .context import CheckContext


def run_all(ctx: CheckContext) -> None:
    from . import compress, data, deploy, devices, layout, memory, metrics, search, serving

    # search runs last: its E603 reports only what a value adds to the other checks' findings.
    for module in (data, layout, devices, memory, compress, metrics, serving, deploy, search):
        module.check(ctx)


__all__ = ["CheckContext", "run_all"]
