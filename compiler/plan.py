"""Derived facts: computed once from the IR, shown by `llmc check` and `report.md`,
used by the checks (E306, E402, E701-E706, E802) and by the targets, which read them
and never derive a default or a size again.

The formulas live in estimate/ (pure functions of numbers, documented in
docs/estimates.md); this module decides which numbers of the spec feed them, and
cluster_plan.py sizes what the bundle asks of a cluster: serving replicas, each pod's
cores and memory, the artifacts volume, TF Serving's batching load.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

from . import catalog, estimate
from .catalog import is_gpu
from .cluster_plan import (
    CORES_PER_CPU_SLOT,
    CORES_PER_GPU,
    GIB,
    MIB,
    SHM_PER_SLOT,
    BatchingLoad,
    PodSize,
    ReplicaPlan,
    ServingQueue,
    ServingResources,
    batching_load,
    bounded,
    compress_engine,
    compress_steps,
    microseconds,
    min_replicas_for,
    pod_cores,
    pod_memory_bytes,
    power_of_two_sizes,
    replica_plan,
    serving_queue,
    serving_resources,
    stage_devices,
    stage_pods,
    storage_bytes,
    tf_trt_batch_sizes,
)
from .limits import MAX_REPLICAS

if TYPE_CHECKING:  # pragma: no cover - types only
    from .schema import Mlp, Spec, Transformer

    Arch = Transformer | Mlp

# The facts, and the sizes of pods, replicas and volumes (cluster_plan.py's): plan is
# where the rest of the compiler asks for any of them.
__all__ = [
    "CORES_PER_CPU_SLOT",
    "CORES_PER_GPU",
    "GIB",
    "MIB",
    "SHM_PER_SLOT",
    "BatchingLoad",
    "Facts",
    "PodSize",
    "ReplicaPlan",
    "ServedModel",
    "ServingQueue",
    "ServingResources",
    "batching_load",
    "bounded",
    "compress_engine",
    "compress_steps",
    "derive_facts",
    "highest_throughput",
    "microseconds",
    "min_replicas_for",
    "pod_cores",
    "pod_memory_bytes",
    "power_of_two_sizes",
    "replica_plan",
    "serving_queue",
    "serving_resources",
    "stage_devices",
    "storage_bytes",
]


class ServedModel(NamedTuple):
    """The model the serving stage runs: the student when distilled, at the quantized precision."""

    what: str  # "teacher" | "student"
    params: int
    precision: str  # fp32 | fp16 | int8
    arch: Arch  # with the student's fields applied


class Facts(NamedTuple):
    params: int | None = None
    param_count: estimate.ParamCount | estimate.MlpParamCount | None = None
    student_params: int | None = None
    layout: str | None = None
    memory: estimate.MemoryEstimate | None = None
    served: ServedModel | None = None
    latency: estimate.LatencyEstimate | None = None
    serving_memory: estimate.ServingMemory | None = None  # a served Transformer on a catalog device
    sizing: estimate.Sizing | None = None
    student: Arch | None = None  # the distilled student, its derived defaults (d_ff) applied
    replicas: ReplicaPlan | None = None  # with a serve block
    serving_resources: ServingResources | None = None  # with a serve block
    batching: BatchingLoad | None = None  # with a serve block
    serving_queue: ServingQueue | None = None  # with a serve block
    request_tokens: tuple[int, int] | None = None  # (input, generated) of the planned request; a Transformer's
    tf_trt_batch_sizes: tuple[int, ...] = ()  # the batch shapes TF-TRT builds engines for (tf-serving + tensorrt)
    compress_steps: tuple[str, ...] = ()  # the compress stage's steps (cluster_plan.compress_steps)
    stage_pods: Mapping[
        str, PodSize
    ] = {}  # per stage that runs on a cluster: train (one host), compress, evaluate, search
    storage_bytes: float = 0  # the artifacts volume; an int or math.inf


def derive_facts(ir: Spec) -> Facts:
    values: dict[str, Any] = {}
    known = _Known(values)
    for name, step in FACT_STEPS:
        values[name] = step(ir, known)
    return Facts(**{k: v for k, v in values.items() if not k.startswith("_")})


class _Known:
    """The facts derived so far, as attributes (the later steps read the earlier ones)."""

    def __init__(self, values: dict[str, Any]):
        self._values = values

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None


# Each fact as one step from the IR and the facts before it, in order. A step is its own
# function so that, when the type checker rejected a field, the fields each fact was
# derived from are known (reads.py): a check that reads the fact reads them.
FACT_STEPS: tuple[tuple[str, Any], ...] = (
    ("param_count", lambda ir, f: _count(ir.model.transformer, ir.model.mlp)),
    ("params", lambda ir, f: f.param_count.total),
    ("_student_pair", lambda ir, f: _student_arch(ir)),
    ("_student_count", lambda ir, f: _count(*f._student_pair) if f._student_pair is not None else None),
    ("student_params", lambda ir, f: f._student_count.total if f._student_count is not None else None),
    ("student", lambda ir, f: (f._student_pair[0] or f._student_pair[1]) if f._student_pair is not None else None),
    ("layout", lambda ir, f: _layout(ir)),
    ("memory", lambda ir, f: _memory(ir, f.param_count)),
    ("served", lambda ir, f: _served(ir, f.param_count, f._student_pair, f._student_count)),
    ("_serving", lambda ir, f: _serving(ir, f.served)),
    ("latency", lambda ir, f: f._serving[0]),
    ("sizing", lambda ir, f: f._serving[1]),
    ("replicas", lambda ir, f: replica_plan(ir, f) if ir.serve is not None else None),
    ("serving_resources", lambda ir, f: serving_resources(ir, f) if ir.serve is not None else None),
    ("batching", lambda ir, f: batching_load(ir, f) if ir.serve is not None else None),
    ("serving_queue", lambda ir, f: serving_queue(ir, f) if ir.serve is not None else None),
    ("request_tokens", lambda ir, f: request_tokens(ir, f.served) if ir.serve is not None else None),
    ("serving_memory", lambda ir, f: _serving_memory(ir, f.served, f.request_tokens)),
    ("tf_trt_batch_sizes", lambda ir, f: tf_trt_batch_sizes(ir) if ir.serve is not None else ()),
    ("compress_steps", lambda ir, f: compress_steps(ir)),
    ("stage_pods", lambda ir, f: stage_pods(ir, f)),
    ("storage_bytes", lambda ir, f: bounded(lambda: storage_bytes(ir, f))),
)


def _count(arch, mlp):
    if arch is not None:
        return estimate.transformer_params(
            arch.kind,
            arch.layers,
            arch.d_model,
            arch.heads,
            arch.d_ff,
            arch.vocab,
            arch.max_len,
            _head_classes(arch),
            arch_options(arch),
        )
    return estimate.mlp_params(mlp.inputs, mlp.hidden, mlp.classes)


def arch_options(arch) -> estimate.Options:
    """The architecture options of a transformer block, for the estimates."""
    return estimate.Options(
        ffn=arch.ffn,
        positions=arch.positions,
        norm=arch.norm,
        kv_heads=arch.kv_heads,
        qkv_bias=arch.qkv_bias,
        out_bias=arch.out_bias,
        ffn_bias=arch.ffn_bias,
        tie_embeddings=arch.tie_embeddings,
    )


def _head_classes(arch) -> int | None:
    # `classes` has no default: the type checker requires it of every encoder (E203). Only a
    # search variant (a `choice` of `kind`) reaches here without it; its head is counted
    # empty and checks/data.py reports the missing field for that variant.
    if arch.kind == "encoder" and arch.classes is None:
        return 0
    return arch.classes


def _student_arch(ir):
    """(transformer, mlp) of the distilled student, or None without distillation."""
    comp = ir.compress
    if comp is None or comp.distill is None:
        return None
    student = comp.distill.student
    arch, mlp = ir.model.transformer, ir.model.mlp
    if arch is not None:
        changes = {
            k: getattr(student, k) for k in ("layers", "d_model", "heads", "d_ff") if getattr(student, k) is not None
        }
        if "d_model" in changes and "d_ff" not in changes:
            changes["d_ff"] = 4 * changes["d_model"]
        return arch.model_copy(update=changes), None
    if student.hidden is not None:
        return None, mlp.model_copy(update={"hidden": student.hidden})
    return None, mlp


def _layout(ir) -> str | None:
    train = ir.train
    if train is None:
        return None
    c, p = train.cluster, train.parallel
    slots = c.hosts * c.slots_per_host
    data = p.data if p.data is not None else "?"
    return (
        f"{c.hosts} host{'s' if c.hosts != 1 else ''} × {c.slots_per_host} slot{'s' if c.slots_per_host != 1 else ''}"
        f" = {slots} × {c.device}: data {data} × tensor {p.tensor} × pipeline {p.pipeline}"
    )


def training_memory_of(ir: Spec, count) -> estimate.MemoryEstimate | None:
    """The training memory estimate of `ir` (a variant of the spec, in the memory check's
    proposals), given its parameter count."""
    return _memory(ir, count)


def _memory(ir, count):
    train = ir.train
    if train is None:
        return None
    device = catalog.get(train.cluster.device)
    if device is None:
        return None
    arch = ir.model.transformer
    micro = train.micro_batch or 1
    opt = train.optimizer
    common = (train.precision, opt.name, opt.momentum)
    if arch is None:
        return _training_memory(
            count.total,
            0,
            max(ir.model.mlp.hidden or [1]),
            1,
            1,
            micro,
            *common,
            1,
            1,
            train.activation_checkpointing,
            device.memory_bytes,
            cpu=not catalog.is_gpu(device.name),
            dropout=ir.model.mlp.dropout,
        )
    generates = arch.kind in ("encoder-decoder", "decoder")
    return _training_memory(
        count.total,
        count.transformer_layers,
        arch.d_model,
        arch.heads,
        arch.max_len,
        micro,
        *common,
        train.parallel.tensor,
        train.parallel.pipeline,
        train.activation_checkpointing,
        device.memory_bytes,
        cross_attention_layers=count.cross_attention_layers,
        vocab=arch.vocab if generates else 0,
        d_ff=arch.d_ff,
        cpu=not catalog.is_gpu(device.name),
        dropout=arch.dropout,
        fused_attention=train.fused_attention,
        gated_ffn=count.options.gated,
        kv_fraction=(arch.kv_heads or arch.heads) / arch.heads,
        replicated_params=replicated_kv_params(arch, count, train.parallel.tensor),
        rms_norm=arch.norm == "rmsnorm",
    )


def replicated_kv_params(arch, count, tensor: int) -> int:
    """The key/value projection parameters every tensor rank holds whole: all of them
    when kv_heads does not divide by the tensor-parallel size (else none)."""
    kv_heads = arch.kv_heads or arch.heads
    if tensor <= 1 or kv_heads % tensor == 0:
        return 0
    width = estimate.kv_width(arch.d_model, arch.heads, count.options)
    per_block = 2 * (arch.d_model * width + (width if arch.qkv_bias else 0))
    blocks = count.transformer_layers + count.cross_attention_layers  # self-attention, and cross-attention
    return blocks * per_block


# The estimates are pure functions of numbers; the search checks ask for the same
# ones again and again (one variant per `choice` value), so they are memoised.
_training_memory = lru_cache(maxsize=256)(estimate.training_memory)


def _served(ir, count, student_arch, student_count) -> ServedModel | None:
    serve = ir.serve
    if serve is None:
        return None
    comp = ir.compress
    if comp is not None and comp.quantize is not None:
        precision = comp.quantize.precision
    elif is_gpu(serve.device) and ir.train is not None and ir.train.precision in ("fp16", "bf16"):
        precision = "fp16"
    else:
        precision = "fp32"
    if student_arch is not None:
        arch = student_arch[0] or student_arch[1]
        return ServedModel("student", student_count.total, precision, arch)
    return ServedModel("teacher", count.total, precision, ir.model.transformer or ir.model.mlp)


def _peak(device, precision: str) -> float:
    return {"fp32": device.fp32_flops, "fp16": device.fp16_flops, "bf16": device.bf16_flops, "int8": device.int8_ops}[
        precision
    ] or device.fp32_flops


def _serving(ir, served: ServedModel | None):
    if served is None:
        return None, None
    return _serving_estimate(*_serving_inputs(ir, served))


def _serving_memory(
    ir: Spec, served: ServedModel | None, lengths: tuple[int, int] | None
) -> estimate.ServingMemory | None:
    """The serving device's memory: the served weights and the key/value cache of a full
    batch of the planned requests (`lengths`, the request_tokens fact), per model instance."""
    arch: Any = served.arch if served is not None else None
    device = catalog.get(ir.serve.device) if ir.serve is not None else None
    if served is None or lengths is None or device is None or ir.serve is None:
        return None
    return estimate.serving_memory(
        arch.kind,
        arch.layers,
        arch.d_model,
        arch.heads,
        served.params,
        served.precision,
        *lengths,
        ir.serve.batching.max_batch_size,
        device.memory_bytes,
        options=arch_options(arch),
        instances=device.serving_instances,
    )


def request_tokens(ir: Spec, served: ServedModel | None) -> tuple[int, int] | None:
    """(input, generated) tokens of the request the p99 is planned for: serve.request, its
    defaults the longest the served Transformer takes (estimate.request_lengths); None
    for an MLP, whose request is one feature vector."""
    arch: Any = served.arch if served is not None else None
    if ir.serve is None or arch is None or not hasattr(arch, "kind"):
        return None
    request = ir.serve.request
    return estimate.request_lengths(arch.kind, arch.max_len, request.input_tokens, request.output_tokens)


def _serving_inputs(ir: Spec, served: ServedModel) -> tuple:
    serve = ir.serve
    assert serve is not None  # a served model comes from a serve block
    arch: Any = served.arch  # Transformer or Mlp: told apart by `kind`
    shape: tuple
    if hasattr(arch, "kind"):
        lengths = request_tokens(ir, served)
        shape = (
            "transformer",
            arch.kind,
            arch.layers,
            arch.d_model,
            arch.d_ff,
            arch.vocab,
            lengths,
            arch.classes,
            arch.heads,
            arch_options(arch),
        )
    else:
        shape = ("mlp", arch.inputs, tuple(arch.hidden), arch.classes)
    return (
        shape,
        served.precision,
        serve.device,
        serve.sla.throughput,
        serve.sla.p99_latency,
        serve.batching.max_batch_size,
        serve.batching.timeout,
    )


def highest_throughput(ir, facts: Facts) -> str | None:
    """The highest throughput, as a spec value (`2.14e15rps`), that MAX_REPLICAS replicas
    hold at the spec's p99, rounded down to three significant digits; None when none does.

    For E706's help: the sizing is feasible at that value (it falls as throughput rises,
    docs/estimates.md "Replicas"), which the bisection below relies on and re-checks.
    """
    served = facts.served
    if served is None:
        return None
    inputs = list(_serving_inputs(ir, served))

    def holds(rps: float) -> bool:
        inputs[3] = rps
        sizing = _serving_estimate(*inputs)[1]
        return sizing is not None and sizing.feasible

    low, high = 0.0, float(ir.serve.sla.throughput)
    for _ in range(80):  # bisection on the exponent, then the mantissa
        mid = math.sqrt(low * high) if low > 0 else high * 1e-6
        if holds(mid):
            low = mid
        else:
            high = mid
        if low > 0 and high / low < 1 + 1e-4:
            break
    if low <= 0:
        return None
    exponent = math.floor(math.log10(low)) - 2
    mantissa = math.floor(low / 10.0**exponent)
    while mantissa > 0 and not holds(mantissa * 10.0**exponent):
        mantissa -= 1
    if mantissa <= 0:
        return None
    from decimal import Decimal

    value = Decimal(mantissa).scaleb(exponent)
    power = exponent + 2  # of the leading digit
    if -3 <= power < 6:
        return f"{value.normalize():f}rps"
    return f"{Decimal(mantissa).scaleb(-2).normalize():f}e{power}rps"


@lru_cache(maxsize=256)
def _serving_estimate(
    shape: tuple, precision: str, device_name: str, throughput: float, p99: float, max_batch: int, timeout: float
):
    device = catalog.get(device_name)
    if device is None:
        return None, None
    peak, bandwidth = _peak(device, precision), device.bandwidth_bytes_per_s
    overheads = {
        "request_overhead_s": device.request_overhead_s,
        "row_overhead_s": device.row_overhead_s,
        "layer_launch_s": device.layer_launch_s,
        "row_launch_s": device.row_launch_s,
    }
    # Text in and out: each request is also tokenized and its answer decoded.
    text_overheads = {**overheads, "row_overhead_s": device.row_overhead_s + device.text_row_overhead_s}

    @cache
    def latency(batch: int):
        if shape[0] == "transformer":
            _, kind, layers, d_model, d_ff, vocab, (src, out), classes, heads, options = shape
            return estimate.request_latency(
                kind,
                layers,
                d_model,
                d_ff,
                vocab,
                src,
                out,
                precision,
                peak,
                bandwidth,
                classes=classes,
                batch=batch,
                heads=heads,
                options=options,
                step_sync_s=device.step_sync_s,
                **text_overheads,
            )
        _, inputs, hidden, classes = shape
        return estimate.mlp_latency(inputs, list(hidden), classes, precision, peak, bandwidth, batch=batch, **overheads)

    one = latency(1)
    sizing = estimate.replicas_needed(
        throughput,
        one.total_s,
        p99,
        max_batch,
        timeout,
        batch_service_time=lambda b: latency(max(1, int(b))).total_s,
        max_replicas=MAX_REPLICAS,
        instances=device.serving_instances,
    )
    return one, sizing
