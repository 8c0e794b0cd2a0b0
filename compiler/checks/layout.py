"""The parallel layout: E301-E305, E308 and W302."""

from __future__ import annotations

import math

from ..diagnostics import Changes
from .context import CheckContext, part, propose


def check(ctx: CheckContext) -> None:
    # Each part reads only what it needs, so a rejected field hides only its own parts.
    for each in (_heads, _cover, _model_parallel, _batch, _pipeline):
        part(ctx, each, ctx)


def _heads(ctx: CheckContext) -> None:
    arch, spans, diags = ctx.ir.model.transformer, ctx.spans, ctx.diags
    if arch is not None and arch.d_model % arch.heads:
        diags.error(
            "E304",
            spans.attribute("model.transformer.heads"),
            "d_model not divisible by heads",
            label=f"d_model = {arch.d_model} is not a multiple of heads = {arch.heads}",
            help=f"heads must divide d_model: {_divisors(arch.d_model, limit=64)}",
            proposals=[(("model.transformer.heads", h),) for h in _divisors_near(arch.d_model, arch.heads)],
        )


def _cover(ctx: CheckContext) -> None:
    train, spans, diags = ctx.ir.train, ctx.spans, ctx.diags
    if train is None:
        return
    cluster, par = train.cluster, train.parallel
    slots = cluster.hosts * cluster.slots_per_host
    tensor, pipeline = par.tensor, par.pipeline
    data = par.data
    if data is None:
        # `data` was left to fill the cluster, but tensor x pipeline does not divide it.
        diags.error(
            "E301",
            spans.attribute("train.parallel.tensor"),
            "parallel layout does not cover the cluster",
            label=f"tensor × pipeline = {tensor} × {pipeline} = {tensor * pipeline} does not divide "
            f"the cluster's {_count(cluster.hosts, 'host')} × {_count(cluster.slots_per_host, 'slot')} = {slots}",
            help=_fits_help(slots, tensor, pipeline),
            proposals=propose(ctx, _regroup, ctx),
        )
    elif data * tensor * pipeline != slots:
        diags.error(
            "E301",
            spans.attribute("train.parallel.data"),
            "parallel layout does not cover the cluster",
            label=f"data × tensor × pipeline = {data} × {tensor} × {pipeline} = {data * tensor * pipeline}, "
            f"but the cluster has {_count(cluster.hosts, 'host')} × {_count(cluster.slots_per_host, 'slot')} = {slots}",
            help=_cover_help(slots),
            proposals=propose(ctx, _cover_proposals, ctx, slots, data, tensor, pipeline),
        )

    if data is not None and data * tensor * pipeline == slots:
        _tensor_across_hosts(ctx)


def _model_parallel(ctx: CheckContext) -> None:
    train, model, spans, diags = ctx.ir.train, ctx.ir.model, ctx.spans, ctx.diags
    if train is None:
        return
    tensor, pipeline = train.parallel.tensor, train.parallel.pipeline
    arch = model.transformer
    if arch is not None:
        if arch.heads % tensor:
            diags.error(
                "E302",
                spans.attribute("train.parallel.tensor"),
                "heads not divisible by tensor parallelism",
                label=f"{arch.heads} heads cannot be split evenly over tensor = {tensor}",
                help=f"set tensor to a divisor of {arch.heads}: {_divisors(arch.heads)}",
                proposals=propose(ctx, _regroup, ctx),
            )
        if arch.layers % pipeline:
            diags.error(
                "E303",
                spans.attribute("train.parallel.pipeline"),
                "layers not divisible by pipeline parallelism",
                label=f"{arch.layers} layers cannot be split evenly into {pipeline} pipeline stages",
                help=f"set pipeline to a divisor of {arch.layers}: {_divisors(arch.layers)}",
                proposals=propose(ctx, _regroup, ctx),
            )
        d_ff = arch.d_ff
        assert d_ff is not None  # schema.derive_defaults fills it (4 * d_model)
        if d_ff % tensor and arch.heads % tensor == 0:
            diags.error(
                "E302",
                spans.attribute("model.transformer.d_ff"),
                "d_ff not divisible by tensor parallelism",
                label=f"the feed-forward width {arch.d_ff} cannot be split evenly over tensor = {tensor}",
                help="make d_ff a multiple of the tensor-parallel size",
                proposals=[(("model.transformer.d_ff", d),) for d in _multiples_near(d_ff, tensor)]
                + propose(ctx, _regroup, ctx),
            )
        if tensor > 1 and model.framework == "tensorflow":
            diags.error(
                "E308",
                spans.attribute("train.parallel.tensor"),
                "tensor parallelism is only implemented for torch models",
                label=f'tensor = {tensor} with framework = "tensorflow"',
                help='set tensor = 1 (TensorFlow models train data-parallel) or use framework = "torch"',
            )
    elif tensor > 1 or pipeline > 1:
        diags.error(
            "E308",
            spans.attribute("train.parallel.tensor" if tensor > 1 else "train.parallel.pipeline"),
            "model parallelism is only implemented for Transformers",
            label="an mlp trains data-parallel only",
            help="set tensor = 1 and pipeline = 1",
        )


def _batch(ctx: CheckContext) -> None:
    train, spans, diags = ctx.ir.train, ctx.spans, ctx.diags
    if train is None:
        return
    data, micro = train.parallel.data, train.micro_batch
    if data is not None and micro is None:
        diags.error(
            "E305",
            spans.attribute("train.batch_size"),
            "batch size not divisible by data parallelism",
            label=f"batch_size = {train.batch_size} cannot be split over data = {data} replicas",
            help=f"make batch_size a multiple of {data}",
            proposals=[(("train.batch_size", b),) for b in _multiples_near(train.batch_size, data)],
        )
    elif data is not None and micro is not None and train.batch_size % (data * micro):
        step = data * micro
        diags.error(
            "E305",
            spans.attribute("train.batch_size"),
            "batch size not divisible by data parallelism times micro-batch",
            label=f"batch_size = {train.batch_size} is not a multiple of data × micro_batch = "
            f"{data} × {micro} = {step}",
            help=_batch_help(train.batch_size, data, micro),
            proposals=propose(ctx, _batch_proposals, ctx, train.batch_size, data, micro),
        )


def _pipeline(ctx: CheckContext) -> None:
    train = ctx.ir.train
    if train is None:
        return
    pipeline = train.parallel.pipeline
    if pipeline > 1:
        ctx.diags.error(
            "E308",
            ctx.spans.attribute("train.parallel.pipeline"),
            "pipeline parallelism is not available on horovod",
            label=f"pipeline = {pipeline}",
            help="Horovod has no pipeline schedule: use pipeline = 1 and raise tensor or data parallelism",
            proposals=propose(ctx, _regroup, ctx),
        )


def _tensor_across_hosts(ctx) -> None:
    """W302: a tensor-parallel group must sit inside one host. Its all-reduces run twice
    per layer, forward and backward, so over the network they stall every step; Megatron
    places the tensor group on one node for this reason. Ranks are numbered host by host
    and a tensor group takes consecutive ranks, so a group stays on one host exactly when
    tensor divides slots_per_host."""
    train = ctx.ir.train
    cluster, tensor = train.cluster, train.parallel.tensor
    per_host = cluster.slots_per_host
    if cluster.hosts == 1 or tensor == 1 or per_host % tensor == 0:
        return
    if tensor > per_host:
        label = (
            f"a tensor group of {tensor} ranks spans {-(-tensor // per_host)} hosts of {per_host} slots: "
            f"its all-reduces cross the network in every layer"
        )
    else:
        label = f"tensor = {tensor} does not divide slots_per_host = {per_host}: some tensor groups straddle two hosts"
    ctx.diags.warning(
        "W302",
        ctx.spans.attribute("train.parallel.tensor"),
        "tensor-parallel group spans hosts",
        label=label,
        help=_tensor_help(per_host),
        proposals=propose(ctx, _regroup, ctx),
    )


def _tensor_help(per_host: int) -> str:
    """The help when no proposed layout checked clean: the rule, not a value."""
    return f"keep each tensor group on one host: make tensor a divisor of slots_per_host = {per_host}"


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _batch_help(batch: int, data: int, micro: int) -> str:
    """The help when no proposed value checked clean: the rule, not a value."""
    text = f"make batch_size a multiple of data × micro_batch = {data * micro}"
    if batch % data == 0:
        text += f", or micro_batch a divisor of batch_size / data = {batch // data}"
    return text


def _largest_divisor_up_to(n: int, bound: int, tries: int = 10_000) -> int:
    """The largest divisor of `n` that is at most `bound`, looked for among the `tries`
    values below `bound`; past them, gcd(n, bound), a divisor that may be smaller (a
    check must stay fast when both numbers are near 2^63)."""
    for m in range(min(bound, n), max(min(bound, n) - tries, 0), -1):
        if n % m == 0:
            return m
    return math.gcd(n, bound)


def _divisors(n: int, limit: int = 1 << 30) -> str:
    small = [d for d in range(1, min(n, 4096) + 1) if n % d == 0 and d <= limit]
    return ", ".join(map(str, small[:12])) + (", ..." if len(small) > 12 else "")


def _fits_help(slots: int, tensor: int, pipeline: int) -> str:
    return f"choose tensor × pipeline dividing {slots}, or set parallel.data explicitly and resize the cluster"


def _cover_help(slots: int) -> str:
    """The help when no proposed layout checked clean: the rule, not a value."""
    return f"make data × tensor × pipeline equal the cluster's {slots} slots, or resize the cluster"


# --- proposals (checked by the driver before a help shows one: proposals.py) ---

# The largest tensor-parallel group proposed: one host's GPUs (8 today; 64 leaves room).
MAX_TENSOR = 64


def _regroup(ctx: CheckContext) -> list[Changes]:
    """Layouts of the same devices that the model splits evenly: pipeline 1 (Horovod has
    no pipeline schedule) and a tensor group inside one host, nearest the spec's tensor
    first; `data` (and `micro_batch`, when written) follow where the spec writes them."""
    train, arch = ctx.ir.train, ctx.ir.model.transformer
    if train is None:
        return []
    per_host, tensor = train.cluster.slots_per_host, train.parallel.tensor
    slots = train.cluster.hosts * per_host
    options = [
        t
        for t in range(1, min(per_host, MAX_TENSOR) + 1)
        if per_host % t == 0 and (arch is None or (arch.heads % t == 0 and (arch.d_ff or 4 * arch.d_model) % t == 0))
    ]
    if arch is None:
        options = [1]
    out: list[Changes] = []
    for t in sorted(options, key=lambda t: (abs(t - tensor), t)):
        data = slots // t
        change: Changes = ()
        if t != tensor:
            change += (("train.parallel.tensor", t),)
        if train.parallel.pipeline != 1:
            change += (("train.parallel.pipeline", 1),)
        if ctx.spans.has("train.parallel.data") and data != train.parallel.data:
            change += (("train.parallel.data", data),)
        micro = train.micro_batch
        if ctx.spans.has("train.micro_batch") and micro and train.batch_size % (data * micro):
            if train.batch_size % data == 0:
                change += (("train.micro_batch", _largest_divisor_up_to(train.batch_size // data, micro)),)
            else:  # no micro-batch splits this batch over `data` replicas: the nearest batch that does
                change += (("train.batch_size", _multiples_near(train.batch_size, data * micro)[0]),)
        if change:
            out.append(change)
    return out


def _cover_proposals(ctx: CheckContext, slots: int, data: int, tensor: int, pipeline: int) -> list[Changes]:
    """One field first (data, tensor, or the hosts the layout asks for), then joint layouts."""
    out: list[Changes] = []
    if slots % (tensor * pipeline) == 0:
        out.append((("train.parallel.data", slots // (tensor * pipeline)),))
    if slots % (data * pipeline) == 0:
        out.append((("train.parallel.tensor", slots // (data * pipeline)),))
    train = ctx.ir.train
    assert train is not None
    wanted = data * tensor * pipeline
    if wanted % train.cluster.slots_per_host == 0:
        out.append((("train.cluster.hosts", wanted // train.cluster.slots_per_host),))
    return out + _regroup(ctx)


def _batch_proposals(ctx: CheckContext, batch: int, data: int, micro: int) -> list[Changes]:
    """The data that covers the cluster when the spec's does not (E301 then says the same),
    the nearest batch sizes, a micro-batch that divides."""
    train = ctx.ir.train
    assert train is not None
    out: list[Changes] = []
    slots = train.cluster.hosts * train.cluster.slots_per_host
    covering = slots // (train.parallel.tensor * train.parallel.pipeline)
    if covering != data and covering * train.parallel.tensor * train.parallel.pipeline == slots:
        if batch % (covering * micro) == 0:
            out.append((("train.parallel.data", covering),))
    out += [(("train.batch_size", b),) for b in _multiples_near(batch, data * micro)]
    if batch % data == 0:
        out.insert(len(out) - 1, (("train.micro_batch", _largest_divisor_up_to(batch // data, micro)),))
    return out


def _multiples_near(x: int, step: int) -> list[int]:
    """The multiples of `step` next to `x`, the nearer first (the lower on a tie)."""
    low = x // step * step
    high = low + step
    out = sorted((m for m in (low, high) if m >= step), key=lambda m: (abs(m - x), m))
    return out


def _divisors_near(n: int, x: int, count: int = 4) -> list[int]:
    """The divisors of `n` nearest `x` (the lower on a tie), at most `count`."""
    small = [d for d in range(1, min(n, 4096) + 1) if n % d == 0]
    return sorted(small, key=lambda d: (abs(d - x), d))[:count]
