"""E306: training must fit in device memory; W301: less than 10% headroom.

The estimate (weights, gradients, optimizer state, activations per device) is
computed once in plan.py from published formulas; see docs/estimates.md.
"""

from __future__ import annotations

from .. import catalog
from ..catalog import is_gpu
from ..diagnostics import Changes
from ..expressions import format_quantity
from .context import CheckContext
from .layout import MAX_TENSOR

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
            help=_no_change_fits(ctx),
            proposals=_proposals(ctx),
        )
    elif mem.headroom < HEADROOM_WARNING:
        ctx.diags.warning(
            "W301",
            span,
            f"memory headroom under {HEADROOM_WARNING:.0%}",
            label=f"{need} of {have} per device ({mem.headroom:.1%} free)",
            notes=(mem.breakdown(),),
            help="allocator fragmentation and framework buffers need room: " + _no_change_fits(ctx),
            proposals=_proposals(ctx),
        )


def _size(n: float) -> str:
    return format_quantity("size", n) if n < 1e300 else "unboundedly much"


def _proposals(ctx: CheckContext) -> list[Changes]:
    """The changes of the spec's own numbers after which training fits with headroom,
    fewest fields first: activation checkpointing, a smaller micro-batch, bf16, a larger
    tensor-parallel group on the same devices (with `data` when the spec writes it),
    then pairs of these. Each is judged here by the memory estimate alone; the driver
    checks the survivors against every check (proposals.py)."""
    if ctx.reads is not None:
        return []  # after type errors: a variant would read every field, rejected ones too
    singles = _single_changes(ctx)
    pairs = [a + b for i, a in enumerate(singles) for b in singles[i + 1 :] if not _overlap(a, b)]
    return [c for c in singles + pairs if _fits_with(ctx, c)]


def _single_changes(ctx: CheckContext) -> list[Changes]:
    train, arch = ctx.ir.train, ctx.ir.model.transformer
    assert train is not None  # a memory finding is about a training layout
    out: list[Changes] = []
    if arch is not None and not train.activation_checkpointing:
        out.append((("train.activation_checkpointing", True),))
    micro = train.micro_batch or 1
    data = train.parallel.data
    m = micro // 2
    while m >= 1:
        if data and train.batch_size % (data * m) == 0:
            out.append((("train.micro_batch", m),))
            break  # the largest smaller micro-batch that divides: more would only slow training
        m //= 2
    device = catalog.get(train.cluster.device)
    if train.precision == "fp32" and device is not None and is_gpu(device.name):
        out.append((("train.precision", "bf16" if device.bf16 else "fp16"),))
    if arch is not None:
        per_host, pipeline = train.cluster.slots_per_host, train.parallel.pipeline
        slots = train.cluster.hosts * per_host
        writes_data = ctx.spans.has("train.parallel.data")
        for t in range(train.parallel.tensor + 1, min(per_host, MAX_TENSOR) + 1):  # in one host (W302)
            if arch.heads % t or slots % (t * pipeline) or (arch.d_ff or 4 * arch.d_model) % t:
                continue
            change: Changes = (("train.parallel.tensor", t),)
            if writes_data:
                change += (("train.parallel.data", slots // (t * pipeline)),)
            out.append(change)
    return out


def _overlap(a: Changes, b: Changes) -> bool:
    return bool({p for p, _ in a} & {p for p, _ in b})


def _fits_with(ctx: CheckContext, changes: Changes, device: str | None = None) -> bool:
    """Whether training fits with headroom after `changes` (on `device` instead of the spec's)."""
    from ..plan import training_memory_of

    train = ctx.ir.train
    assert train is not None
    if device is not None:
        train = train.model_copy(update={"cluster": train.cluster.model_copy(update={"device": device})})
    values = dict(changes)
    updated = {k.rpartition(".")[2]: v for k, v in values.items() if k.count(".") == 1}
    parallel = {k.rpartition(".")[2]: v for k, v in values.items() if k.startswith("train.parallel.")}
    if "train.parallel.tensor" in values and "train.parallel.data" not in values:
        parallel["data"] = None  # derived again from the cluster
    new_parallel = train.parallel.model_copy(update=parallel)
    data = new_parallel.data
    if data is None:
        slots = train.cluster.hosts * train.cluster.slots_per_host
        data = slots // (new_parallel.tensor * new_parallel.pipeline)
        new_parallel = new_parallel.model_copy(update={"data": data})
    if "micro_batch" not in updated and train.micro_batch is not None and not ctx.spans.has("train.micro_batch"):
        updated["micro_batch"] = train.batch_size // data  # the derived micro-batch follows data
    new_train = train.model_copy(update={**updated, "parallel": new_parallel})
    mem = training_memory_of(ctx.ir.model_copy(update={"train": new_train}), ctx.facts.param_count)
    return mem is not None and mem.fits and mem.headroom >= HEADROOM_WARNING


def _no_change_fits(ctx: CheckContext) -> str:
    """The help when no change of the spec's own numbers makes training fit: what would."""
    train = ctx.ir.train
    assert train is not None
    if ctx.reads is not None:  # after type errors no change is tried: say what to try, not that none works
        return (
            "a larger tensor group, activation checkpointing or a smaller micro_batch may fit it; once the type "
            "errors are fixed, `llmc check` proposes a change checked against the whole spec"
        )
    slots = train.cluster.hosts * train.cluster.slots_per_host
    tried = "tensor, data, micro_batch, precision or activation checkpointing"
    bigger = _bigger_device(ctx)
    device = f" such as {bigger}" if bigger else ""
    return (
        f"no change of {tried} fits it on these {slots} × {train.cluster.device}: "
        f"use a device with more memory{device}, more devices, or a smaller model (fewer layers, a smaller d_model)"
    )


def _bigger_device(ctx: CheckContext) -> str | None:
    """The catalog's GPU with the least memory on which the spec fits, as it is or with
    one of the changes the proposals consider."""
    train = ctx.ir.train
    here = catalog.get(train.cluster.device) if train is not None else None
    if train is None or here is None or ctx.reads is not None:
        return None
    singles = _single_changes(ctx)
    for device in sorted(catalog.devices(), key=lambda d: d.memory_bytes):
        if device.memory_bytes <= here.memory_bytes or not is_gpu(device.name) or device.bf16 < here.bf16:
            continue
        if any(_fits_with(ctx, change, device.name) for change in [(), *singles]):
            return device.name
    return None
