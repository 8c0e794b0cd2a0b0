"""Serving: E701-E705 and W701.

E701/E702 use the latency and replica estimates of plan.py (docs/estimates.md).
"""

from __future__ import annotations

from ..evaluate import format_quantity
from . import CheckContext

# The batch wait is spent before any compute; it must leave most of the p99 budget
# to queueing and service. "Well below" is taken as at most a quarter of the p99.
TIMEOUT_SHARE = 0.25


def check(ctx: CheckContext) -> None:
    serve, spans, diags = ctx.ir.serve, ctx.spans, ctx.diags
    if serve is None:
        return
    framework = ctx.ir.model.framework
    if serve.platform == "tf-serving" and framework != "tensorflow":
        diags.error("E704", spans.attribute("serve.platform") if spans.has("serve.platform") else spans.key("serve"),
                    f"TF Serving cannot serve a {framework} model",
                    label='platform = "tf-serving"', help='use platform = "triton" for torch models')
    sla = serve.sla
    timeout, p99 = serve.batching.timeout, sla.p99_latency
    if timeout > TIMEOUT_SHARE * p99:
        diags.error("E705", spans.attribute("serve.batching.timeout") if spans.has("serve.batching.timeout") else spans.key("serve.batching"),
                    "batching timeout is not well below the p99 latency",
                    label=f"waiting up to {format_quantity('duration', timeout)} for a batch leaves "
                          f"{format_quantity('duration', max(0.0, p99 - timeout))} of the {format_quantity('duration', p99)} p99",
                    help=f"keep timeout at or below a quarter of p99_latency: {format_quantity('duration', TIMEOUT_SHARE * p99)}")
    replicas_min, replicas_max = serve.replicas.min, serve.replicas.max
    if sla.availability >= 0.999 and replicas_max is not None and replicas_max < 2 and replicas_min is None:
        diags.error("E703", spans.attribute("serve.replicas.max"), f"availability {format_quantity('fraction', sla.availability)} needs at least two replicas",
                    label=f"max = {replicas_max} allows only one",
                    help="set replicas.max = 2 or more")
    if sla.availability >= 0.999 and replicas_min is not None and replicas_min < 2:
        diags.error("E703", spans.attribute("serve.replicas.min"), f"availability {format_quantity('fraction', sla.availability)} needs at least two replicas",
                    label=f"min = {replicas_min}: one pod restart is an outage",
                    help="set replicas.min = 2 or more (spread over nodes by the generated PodDisruptionBudget)")
    if serve.replicas.min is not None and serve.replicas.max is not None and serve.replicas.min > serve.replicas.max:
        diags.error("E205", spans.attribute("serve.replicas.min"), "replicas.min is above replicas.max",
                    label=f"min {serve.replicas.min} > max {serve.replicas.max}")
    _feasibility(ctx)


def _feasibility(ctx: CheckContext) -> None:
    facts, serve, spans, diags = ctx.facts, ctx.ir.serve, ctx.spans, ctx.diags
    lat, sizing = facts.latency, facts.sizing
    if lat is None or sizing is None:
        return
    p99 = serve.sla.p99_latency
    if lat.total_s > p99:
        diags.error("E701", spans.attribute("serve.sla.p99_latency"), "SLA infeasible: one request alone exceeds the p99 latency",
                    label=f"estimated {format_quantity('duration', lat.total_s)} for one request on {serve.device} "
                          f"> p99 {format_quantity('duration', p99)}",
                    notes=(lat.explain(),),
                    help="serve on a faster device, compress the model (distill, int8), shorten max_len, or relax p99_latency")
        return
    rmax = serve.replicas.max
    if not sizing.feasible:
        diags.error("E702", spans.attribute("serve.sla.throughput"), "no number of replicas holds the SLA",
                    label=f"{format_quantity('rate', serve.sla.throughput)} at p99 {format_quantity('duration', p99)} "
                          f"cannot be met on {serve.device} even without queueing",
                    notes=(sizing.explain(),),
                    help="raise max_batch_size or lower batching.timeout, serve on a faster device, or relax p99_latency")
        return
    needed = int(sizing.replicas)
    if rmax is not None and needed > rmax:
        diags.error("E702", spans.attribute("serve.replicas.max"), "the SLA needs more replicas than replicas.max allows",
                    label=f"{needed} replicas needed for {format_quantity('rate', serve.sla.throughput)} at p99 "
                          f"{format_quantity('duration', p99)}, but max = {rmax}",
                    notes=(sizing.explain(),),
                    help=f"raise replicas.max to {needed}, raise max_batch_size, or serve on a faster device")
    rmin = serve.replicas.min
    if rmin is not None and needed and rmin > 4 * max(needed, 2):
        diags.warning("W701", spans.attribute("serve.replicas.min"), "replicas.min is far above what the SLA needs",
                      label=f"min = {rmin}, the estimate needs {needed}",
                      help=f"lower replicas.min to about {max(needed, 2)} unless traffic is spikier than the SLA says")
