"""E306: training must fit in device memory; W301: less than 10% headroom.

The estimate (weights, gradients, optimizer state, activations per device) is
computed once in plan.py from published formulas; see docs/estimates.md.
"""

from __future__ import annotations

from ..expressions import format_quantity
from .context import CheckContext

HEADROOM_WARNING = 0.10


def check(ctx: CheckContext) -> None:
    mem, train = ctx.facts.memory, ctx.ir.train
    if mem is None or train is None:
        return
    device = train.cluster.device
    span = ctx.spans.attribute("train.cluster.device")
    need, have = _size(mem.total), _size(mem.device_memory)
    if not mem.fits:
        ctx.diags.error(
            "E306",
            span,
            "training does not fit in device memory",
            label=f"needs {need} per device; each {device} has {have}",
            notes=(mem.breakdown(),),
            help=_help(ctx),
        )
    elif mem.headroom < HEADROOM_WARNING:
        ctx.diags.warning(
            "W301",
            span,
            f"memory headroom under {HEADROOM_WARNING:.0%}",
            label=f"{need} of {have} per device ({mem.headroom:.1%} free)",
            notes=(mem.breakdown(),),
            help="allocator fragmentation and framework buffers need room: " + _help(ctx),
        )


def _size(n: float) -> str:
    return format_quantity("size", n) if n < 1e300 else "unboundedly much"


def _help(ctx: CheckContext) -> str:
    train, arch = ctx.ir.train, ctx.ir.model.transformer
    assert train is not None  # E306 is about a training layout
    ideas = []
    if arch is not None:
        slots = train.cluster.hosts * train.cluster.slots_per_host
        t = train.parallel.tensor
        bigger = [x for x in (2, 4, 8) if x > t and arch.heads % x == 0 and slots % x == 0]
        if bigger:
            ideas.append(f"raise tensor to {bigger[0]}")
        if not train.activation_checkpointing:
            ideas.append("set activation_checkpointing = true")
    if train.micro_batch and train.micro_batch > 1:
        ideas.append("lower micro_batch")
    if train.precision == "fp32":
        ideas.append('train in "bf16"')
    ideas.append("use a device with more memory")
    return ", ".join(ideas[:-1]) + (", or " if len(ideas) > 1 else "") + ideas[-1]
