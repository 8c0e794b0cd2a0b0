"""Evaluation gates: E501 metric not defined for the task, E502 min above max,
and each bound in the metric's own scale and unit (E205, E207)."""

from __future__ import annotations

from ..expressions import format_quantity
from ..metric_names import BOUND_KIND, METRICS_BY_TASK
from .context import CheckContext

_SCALE_WORDS = {
    "number": "a number",
    "fraction": "a fraction such as 0.9 or 90%",
    "duration": "a duration such as 50ms",
    "size": "a size such as 100MB",
}


def check(ctx: CheckContext) -> None:
    ev = ctx.ir.evaluate
    if ev is None:
        return
    task = ctx.ir.model.task
    allowed = METRICS_BY_TASK[task]
    for name, metric in ev.metric.items():
        base = f"evaluate.metric.{name}"
        if name not in allowed:
            ctx.diags.error(
                "E501",
                ctx.spans.value(f"{base}.name"),
                f"metric `{name}` is not defined for {task}",
                label=f"a {task} model is not scored with {name}",
                help="metrics for " + task + ": " + ", ".join(allowed),
            )
            continue
        kind, lo, hi = BOUND_KIND[name]
        for bound in ("min", "max", "max_drop"):
            value = getattr(metric, bound)
            if value is None:
                continue
            path = f"{base}.{bound}"
            written = ctx.spans.kinds.get(path, "number")
            if not _kind_fits(kind, written):
                ctx.diags.error(
                    "E207",
                    ctx.spans.value(path),
                    f"`{name}` bounds are {_SCALE_WORDS[kind]}",
                    label=f"this is {_a(written)}",
                    help=_scale_help(name, kind),
                )
                continue
            # max_drop is a change on the scale: from 0 to the scale's width.
            low, high = (0, None if hi is None else hi - lo) if bound == "max_drop" else (lo, hi)
            if value < low or (high is not None and value > high):
                what = f"a change of {name}" if bound == "max_drop" else name
                ctx.diags.error(
                    "E205",
                    ctx.spans.value(path),
                    f"`{name}` {bound} {_show(kind, value)} is outside its scale",
                    label=f"{what} ranges over {low}..{high if high is not None else '∞'}",
                    help=_scale_help(name, kind),
                )
        if metric.min is not None and metric.max is not None and metric.min > metric.max:
            ctx.diags.error(
                "E502",
                ctx.spans.attribute(f"{base}.min"),
                f"`{name}` min is above its max",
                label=f"min {_show(kind, metric.min)} > max {_show(kind, metric.max)} (line {ctx.spans.value(base + '.max').line})",
                help="no model can pass this gate: lower min or raise max",
            )


def _show(kind: str, value: float) -> str:
    return format_quantity(kind if kind in ("duration", "size") else "number", value)


def _kind_fits(kind: str, written: str) -> bool:
    if kind == "fraction":
        return written in ("number", "fraction")
    if kind == "number":
        return written == "number"
    return written == kind


def _a(kind: str) -> str:
    return {"number": "a number", "fraction": "a fraction", "duration": "a duration", "size": "a size"}.get(kind, kind)


def _scale_help(name: str, kind: str) -> str:
    if kind == "fraction":
        return f"{name} is scored as a fraction: write `0.9` or `90%`"
    if kind == "number" and name in ("bleu", "chrf"):
        return f"{name} is on sacrebleu's 0-100 scale, e.g. `26.0`"
    if kind == "duration":
        return "write a duration, e.g. `50ms`"
    if kind == "size":
        return "write a size, e.g. `100MB`"
    return f"write {_SCALE_WORDS[kind]}"
