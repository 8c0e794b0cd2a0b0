"""Serving: E701-E706, W701, and E802 for the serving configs' numbers.

E701/E702/E706 use the latency and replica estimates of plan.py (docs/estimates.md).
E802 compares the numbers serve/ would hold (Triton's config.pbtxt, TF Serving's
batching.config) with their fields' ranges (limits.py), at the spec value behind each.
"""

from __future__ import annotations

from ..expressions import format_quantity
from ..limits import INT32_MAX, INT64_MAX, MAX_REPLICAS, UINT64_MAX
from ..plan import highest_throughput, min_replicas_for
from .context import CheckContext

# The batch wait is spent before any compute; it must leave most of the p99 budget
# to queueing and service. "Well below" is taken as at most a quarter of the p99.
TIMEOUT_SHARE = 0.25


def check(ctx: CheckContext) -> None:
    serve, spans, diags = ctx.ir.serve, ctx.spans, ctx.diags
    if serve is None:
        return
    framework = ctx.ir.model.framework
    if serve.platform == "tf-serving" and framework != "tensorflow":
        diags.error(
            "E704",
            spans.attribute("serve.platform") if spans.has("serve.platform") else spans.key("serve"),
            f"TF Serving cannot serve a {framework} model",
            label='platform = "tf-serving"',
            help='use platform = "triton" for torch models',
        )
    sla = serve.sla
    timeout, p99 = serve.batching.timeout, sla.p99_latency
    if timeout > TIMEOUT_SHARE * p99:
        diags.error(
            "E705",
            spans.attribute("serve.batching.timeout")
            if spans.has("serve.batching.timeout")
            else spans.key("serve.batching"),
            "batching timeout is not well below the p99 latency",
            label=f"waiting up to {format_quantity('duration', timeout)} for a batch leaves "
            f"{format_quantity('duration', max(0.0, p99 - timeout))} of the {format_quantity('duration', p99)} p99",
            help=f"keep timeout at or below a quarter of p99_latency: {_duration_at_most(TIMEOUT_SHARE * p99)}",
        )
    replicas_min, replicas_max = serve.replicas.min, serve.replicas.max
    floor = min_replicas_for(sla.availability)  # 2 at 99.9% and above; the messages say so
    if floor > 1 and replicas_max is not None and replicas_max < floor and replicas_min is None:
        diags.error(
            "E703",
            spans.attribute("serve.replicas.max"),
            f"availability {format_quantity('fraction', sla.availability)} needs at least two replicas",
            label=f"max = {replicas_max} allows only one",
            help="set replicas.max = 2 or more",
        )
    if floor > 1 and replicas_min is not None and replicas_min < floor:
        diags.error(
            "E703",
            spans.attribute("serve.replicas.min"),
            f"availability {format_quantity('fraction', sla.availability)} needs at least two replicas",
            label=f"min = {replicas_min}: one pod restart is an outage",
            help="set replicas.min = 2 or more (spread over nodes by the generated PodDisruptionBudget)",
        )
    if serve.replicas.min is not None and serve.replicas.max is not None and serve.replicas.min > serve.replicas.max:
        diags.error(
            "E205",
            spans.attribute("serve.replicas.min"),
            "replicas.min is above replicas.max",
            label=f"min {serve.replicas.min} > max {serve.replicas.max}",
        )
    _feasibility(ctx)
    _config_ranges(ctx)


def _feasibility(ctx: CheckContext) -> None:
    facts, serve, spans, diags = ctx.facts, ctx.ir.serve, ctx.spans, ctx.diags
    lat, sizing = facts.latency, facts.sizing
    if lat is None or sizing is None or serve is None:
        return
    p99 = serve.sla.p99_latency
    if lat.total_s > p99:
        diags.error(
            "E701",
            spans.attribute("serve.sla.p99_latency"),
            "SLA infeasible: one request alone exceeds the p99 latency",
            label=f"estimated {format_quantity('duration', lat.total_s)} for one request on {serve.device} "
            f"> p99 {format_quantity('duration', p99)}",
            notes=(lat.explain(),),
            help="serve on a faster device, compress the model (distill, int8), shorten max_len, or relax p99_latency",
        )
        return
    rmax = serve.replicas.max
    if not sizing.feasible and sizing.limit == "replicas":
        diags.error(
            "E706",
            spans.attribute("serve.sla.throughput"),
            "the SLA needs more replicas than a deployment can run",
            label=f"{format_quantity('rate', serve.sla.throughput)} is {sizing.offered_load:.4g} replicas' "
            f"worth of work on {serve.device}; a Deployment counts at most {MAX_REPLICAS}",
            notes=(sizing.explain(),),
            help=_lower_throughput_help(ctx),
        )
        return
    if not sizing.feasible:
        diags.error(
            "E702",
            spans.attribute("serve.sla.throughput"),
            "no number of replicas holds the SLA",
            label=f"{format_quantity('rate', serve.sla.throughput)} at p99 {format_quantity('duration', p99)} "
            f"cannot be met on {serve.device} even without queueing",
            notes=(sizing.explain(),),
            help="raise max_batch_size or lower batching.timeout, serve on a faster device, or relax p99_latency",
        )
        return
    needed = int(sizing.replicas)
    if rmax is not None and needed > rmax:
        diags.error(
            "E702",
            spans.attribute("serve.replicas.max"),
            "the SLA needs more replicas than replicas.max allows",
            label=f"{needed} replicas needed for {format_quantity('rate', serve.sla.throughput)} at p99 "
            f"{format_quantity('duration', p99)}, but max = {rmax}",
            notes=(sizing.explain(),),
            help=f"raise replicas.max to {needed}, raise max_batch_size, or serve on a faster device",
        )
    rmin = serve.replicas.min
    if rmin is not None and needed and rmin > 4 * max(needed, 2):
        diags.warning(
            "W701",
            spans.attribute("serve.replicas.min"),
            "replicas.min is far above what the SLA needs",
            label=f"min = {rmin}, the estimate needs {needed}",
            help=f"lower replicas.min to about {max(needed, 2)} unless traffic is spikier than the SLA says",
        )


def _lower_throughput_help(ctx: CheckContext) -> str:
    best = highest_throughput(ctx.ir, ctx.facts)
    ways = "raise max_batch_size, serve on a faster device, or split the traffic over several deployments"
    if best is None:
        return ways
    return f"lower throughput to {best} or less; or {ways}"


def _config_ranges(ctx: CheckContext) -> None:
    """E802: a number serve/ would hold outside its field's range (limits.py)."""
    serve = ctx.ir.serve
    assert serve is not None  # check() returns first without a serve block
    triton = serve.platform != "tf-serving"
    target = "Triton's config.pbtxt" if triton else "TF Serving's batching.config"
    max_batch, batch_max = serve.batching.max_batch_size, (INT32_MAX if triton else INT64_MAX)
    if max_batch > batch_max:
        _out_of_range(
            ctx,
            "serve.batching.max_batch_size",
            f"max_batch_size is too large for {target}",
            f"max_batch_size = {max_batch}, above the largest it takes, {batch_max}",
            f"set max_batch_size = {batch_max} or less",
        )
    micros, micros_max = serve.batching.timeout * 1e6, (UINT64_MAX if triton else INT64_MAX)
    if not micros <= micros_max:
        field = "max_queue_delay_microseconds" if triton else "batch_timeout_micros"
        _out_of_range(
            ctx,
            "serve.batching.timeout",
            f"the batching timeout is too long for {target}",
            f"{field} = {micros:.4g}, above the largest it takes, {micros_max}",
            f"set timeout = {_duration_at_most(min(TIMEOUT_SHARE * serve.sla.p99_latency, 1.0))} "
            "(at most a quarter of p99_latency)",
        )
    sizing = ctx.facts.sizing
    if not triton and sizing is not None and sizing.feasible:  # else E701/E702/E706 already stop the build
        load = ctx.facts.batching
        assert load is not None  # planned for every serve block
        if not load.threads <= INT64_MAX:
            _out_of_range(
                ctx,
                "serve.resources.cpu",
                f"num_batch_threads is too large for {target}",
                f"num_batch_threads = {load.threads:.4g} (one per core), above the largest it takes, {INT64_MAX}",
                "set resources.cpu to the cores a replica really has, e.g. resources.cpu = 16",
            )
        if not load.enqueued <= INT64_MAX:
            _out_of_range(
                ctx,
                "serve.sla.p99_latency",
                f"max_enqueued_batches is too large for {target}",
                f"max_enqueued_batches = {load.enqueued:.4g} (the batches one replica receives within "
                f"the p99), above the largest it takes, {INT64_MAX}",
                "set p99_latency = 1h or less",
            )


def _out_of_range(ctx: CheckContext, path: str, message: str, label: str, help: str) -> None:
    span = ctx.spans.attribute(path) if ctx.spans.has(path) else ctx.spans.key(path)
    ctx.diags.error("E802", span, message, label=label, help=help)


def _duration_at_most(seconds: float) -> str:
    """A spec duration no longer than `seconds` as the parser reads it back: four
    significant digits, rounded down (a help line's value must pass the check it fixes)."""
    from decimal import Decimal

    from ..units import UNITS

    for unit in ("d", "h", "m", "s", "ms", "us"):
        factor = UNITS[unit][1]
        if seconds >= factor or unit == "us":
            break
    value = Decimal(repr(seconds)) / factor
    if value <= 0:
        return "0s"
    step = Decimal(1).scaleb(value.adjusted() - 3)  # the fourth significant digit
    digits = (value / step).to_integral_value(rounding="ROUND_FLOOR")
    while digits > 0 and float(digits * step * factor) > seconds:
        digits -= 1
    return f"{(digits * step).normalize():f}{unit}"
