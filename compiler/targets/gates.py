"""A metric's quality gate as the generated files state it (not a target: TARGETS does
not list it). evaluate/evaluate.py's docstring and report.md read the same text."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from ..expressions import format_quantity
from ..metric_names import HIGHER_IS_BETTER

if TYPE_CHECKING:  # pragma: no cover - types only
    from ..schema import Metric

UNIT_KIND = {"latency_p50": "duration", "latency_p99": "duration", "model_size": "size"}


class Gate(NamedTuple):
    metric: str
    min: float | None
    max: float | None
    max_drop: float | None
    text: str  # for the script's docstring: `bleu >= 26, fall <= 1 vs the baseline`


def _show(metric: str, value: float) -> str:
    return format_quantity(UNIT_KIND.get(metric, "number"), value)


def gate(name: str, metric: Metric) -> Gate:
    """A metric's bounds, and how they read (`bleu >= 26, bleu fall <= 1 vs the baseline`)."""
    parts = []
    if metric.min is not None:
        parts.append(f"{name} >= {_show(name, metric.min)}")
    if metric.max is not None:
        parts.append(f"{name} <= {_show(name, metric.max)}")
    if metric.max_drop is not None:
        direction = "fall" if name in HIGHER_IS_BETTER else "rise"
        parts.append(f"{name} {direction} <= {_show(name, metric.max_drop)} vs the baseline")
    return Gate(name, metric.min, metric.max, metric.max_drop, ", ".join(parts) or f"{name} (reported, no bound)")
