"""What every check reads: the IR, where each of its values was written, the planned
facts, and the collector it reports to. Its own module so that the checks import it
without importing the package that runs them."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # pragma: no cover - types only; typecheck.py imports checks/data.py
    from ..diagnostics import Collector, Diagnostic
    from ..expressions import Value
    from ..plan import Facts
    from ..reads import Reads
    from ..schema import Spec
    from ..typecheck import SpanIndex


class CheckContext(NamedTuple):
    ir: Spec
    spans: SpanIndex
    facts: Facts
    diags: Collector
    distributions: dict[str, Value]  # search.space as written, for E601-E603
    # Checks the spec again with one field changed; returns the errors (E603 uses it).
    variant: Callable[[str, object], list[Diagnostic]] | None = None
    # The fields read so far, when the type checker rejected some (reads.py); else None.
    reads: Reads | None = None


def part(ctx: CheckContext, check: Callable[..., None], *args: Any) -> None:
    """Run a part of a check that stands on its own: after type errors, what it reads
    does not taint the findings of the parts after it, and its failure on a rejected
    value ends only this part."""
    if ctx.reads is None:
        check(*args)
        return
    from ..reads import run_guarded

    run_guarded(lambda: check(*args), ctx.reads)


def propose(ctx: CheckContext, make: Callable[..., list], *args: Any) -> list:
    """The changes `make` proposes for a finding. After type errors, what it reads does
    not taint the finding (it may read more than the finding did), and a proposal that
    read a rejected field is not made."""
    if ctx.reads is None:
        return make(*args)
    from ..reads import ON_A_MISSING_VALUE

    with ctx.reads.fresh():
        try:
            made = make(*args)
        except ON_A_MISSING_VALUE:
            return []
        return [] if ctx.reads.tainted() else made
