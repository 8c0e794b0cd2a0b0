"""Evaluation gates: E501 metric not defined for the task, E502 min above max,
and each bound in the metric's own scale and unit (E205, E207)."""

from __future__ import annotations

from ..evaluate import format_quantity
from . import CheckContext

GENERATION = ("bleu", "chrf", "ter", "rouge1", "rouge2", "rougeL", "perplexity")
COMMON = ("latency_p50", "latency_p99", "model_size")
METRICS_BY_TASK = {
    "translation": GENERATION + COMMON,
    "summarization": GENERATION + COMMON,
    "classification": ("accuracy", "f1") + COMMON,
    "language-modeling": ("perplexity",) + COMMON,
}
# The kind of value each metric's bounds take, and the range of its reference scale.
BOUND_KIND = {
    "bleu": ("number", 0, 100), "chrf": ("number", 0, 100), "ter": ("number", 0, None),
    "rouge1": ("fraction", 0, 1), "rouge2": ("fraction", 0, 1), "rougeL": ("fraction", 0, 1),
    "accuracy": ("fraction", 0, 1), "f1": ("fraction", 0, 1), "perplexity": ("number", 1, None),
    "latency_p50": ("duration", 0, None), "latency_p99": ("duration", 0, None), "model_size": ("size", 0, None),
}
# Metrics where a larger value is better; max_drop bounds a fall for these and a rise for the rest,
# and a search maximizes these and minimizes the rest (losses, perplexity, TER, latency, size).
# The one list the compiler keeps; runtime/metrics.py has its copy (a test keeps them equal).
HIGHER_IS_BETTER = ("bleu", "chrf", "rouge1", "rouge2", "rougeL", "accuracy", "f1")


def direction_of(objective: str) -> str:
    """The search direction an objective is optimised in: scores up, losses and costs down."""
    return "maximize" if objective in HIGHER_IS_BETTER else "minimize"
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
            ctx.diags.error("E501", ctx.spans.value(f"{base}.name"), f"metric `{name}` is not defined for {task}",
                            label=f"a {task} model is not scored with {name}",
                            help="metrics for " + task + ": " + ", ".join(allowed))
            continue
        kind, lo, hi = BOUND_KIND[name]
        for bound in ("min", "max", "max_drop"):
            value = getattr(metric, bound)
            if value is None:
                continue
            path = f"{base}.{bound}"
            written = ctx.spans.kinds.get(path, "number")
            if not _kind_fits(kind, written):
                ctx.diags.error("E207", ctx.spans.value(path), f"`{name}` bounds are {_SCALE_WORDS[kind]}",
                                label=f"this is {_a(written)}", help=_scale_help(name, kind))
                continue
            if value < lo or (hi is not None and value > hi):
                ctx.diags.error("E205", ctx.spans.value(path), f"`{name}` {bound} {_show(kind, value)} is outside its scale",
                                label=f"{name} ranges over {lo}..{hi if hi is not None else '∞'}",
                                help=_scale_help(name, kind))
        if metric.min is not None and metric.max is not None and metric.min > metric.max:
            ctx.diags.error("E502", ctx.spans.attribute(f"{base}.min"), f"`{name}` min is above its max",
                            label=f"min {_show(kind, metric.min)} > max {_show(kind, metric.max)} (line {ctx.spans.value(base + '.max').line})",
                            help="no model can pass this gate: lower min or raise max")


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
