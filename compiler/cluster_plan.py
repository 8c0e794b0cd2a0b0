"""What the bundle asks of a cluster: plan.py's facts about pods, sized once here.

Serving replicas (the HPA's bounds), each serving pod's cores and memory and its
/models volume, each stage pod's cores, memory and GPUs, the artifacts volume, and TF
Serving's batching load. derive_facts (plan.py) fills them into the facts; k8s/ writes
them and checks/deploy.py bounds them. Import them from plan.py, like the rest of the
facts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from . import estimate
from .catalog import is_gpu
from .limits import MAX_REPLICAS

if TYPE_CHECKING:  # pragma: no cover - types only
    from .plan import Facts
    from .schema import Serve, Spec


class ReplicaPlan(NamedTuple):
    """The HorizontalPodAutoscaler's bounds (replica_plan has the rule)."""

    min: int
    max: int
    needed: int  # sizing.replicas (1 when unknown)
    min_derived: bool
    max_derived: bool


class ServingResources(NamedTuple):
    """What one serving replica asks for (serving_resources has the rule)."""

    cpu_cores: float
    memory_bytes: float  # an int; math.inf when beyond any float (E802 reports it)
    gpus: int
    cpu_derived: bool
    memory_derived: bool
    model_bytes: int  # the served weights
    params: int
    models_volume_bytes: float  # the pod's /models volume; an int or math.inf


class PodSize(NamedTuple):
    """What one stage pod running `slots` processes asks for (pod_size has the rule)."""

    slots: int
    cores: int
    memory_bytes: float  # an int; math.inf when beyond any float (E802 reports it)
    gpus: int  # slots on a GPU device, else 0
    device: str  # the catalog device it runs on (its nodes are selected for it)


class BatchingLoad(NamedTuple):
    """The numbers behind TF Serving's num_batch_threads and max_enqueued_batches; the
    two counts are floats here so that the checks can compare them with the fields' ranges."""

    rate: float  # requests per second one replica receives at the SLA's throughput
    batch: float  # the planned batch
    threads: float
    threads_from: str
    enqueued: float


GIB = 1 << 30
MIB = 1 << 20
CPU_SLICE_CORES = 16  # catalog.py's `cpu` device: a 16-core server slice
CORES_PER_GPU = 4  # data loading, the server's front end, Horovod's background thread
CORES_PER_CPU_SLOT = 2  # a training process on `cpu`: its step and its data loading
CPU_SERVING_HEADROOM = 2.0  # cpu serving: twice the cores the planned load keeps busy
SHM_PER_SLOT = GIB  # memory-backed /dev/shm per training process (NCCL, data loaders)
# Availability at or above this needs two replicas, so that one pod restart is not an outage (E703).
HIGH_AVAILABILITY = 0.999


def min_replicas_for(availability: float) -> int:
    """The fewest replicas an availability allows: 2 at or above 99.9%, else 1."""
    return 2 if availability >= HIGH_AVAILABILITY else 1


def bounded(compute: Callable[[], float]) -> float:
    """A size as computed, or inf when it is beyond any float (it is then beyond every range)."""
    try:
        value = compute()
    except (OverflowError, ValueError):
        return math.inf
    return value if isinstance(value, int) or math.isfinite(value) else math.inf


def _round_up(value: float, step: int) -> int:
    # Whole-number arithmetic: a float quotient of a large byte count would round.
    return -(-math.ceil(value) // step) * step


def _process_memory(memory: estimate.MemoryEstimate | None, gpu: bool) -> int:
    """Host memory of one training process.

    1 GiB for the interpreter, framework and CUDA context, plus what the process holds
    in host RAM: on a GPU a host copy of its weights and optimizer state (checkpoints),
    on the CPU the whole training estimate; times 1.5 for allocator slack and data
    batches, rounded up to a GiB, at least 8 GiB per GPU (data loading) or 2 GiB.
    """
    held = 0.0
    if memory is not None:
        held = (memory.weights + memory.optimizer) if gpu else memory.total
    need = _round_up(1.5 * (GIB + held), GIB)
    return max(need, 8 * GIB if gpu else 2 * GIB)


def pod_memory_bytes(memory: estimate.MemoryEstimate | None, device: str, slots: int) -> int:
    return slots * (_process_memory(memory, is_gpu(device)) + SHM_PER_SLOT)


def pod_cores(device: str, slots: int) -> int:
    return slots * (CORES_PER_GPU if is_gpu(device) else CORES_PER_CPU_SLOT)


def pod_size(memory: estimate.MemoryEstimate | None, device: str, slots: int) -> PodSize:
    return PodSize(
        slots,
        pod_cores(device, slots),
        bounded(lambda: pod_memory_bytes(memory, device, slots)),
        slots if is_gpu(device) else 0,
        device,
    )


# The compress stage's steps in the language's order (compress/<step>.py each).
COMPRESS_ORDER = ("distill", "prune", "export", "quantize", "build_engine")
# The engine that readies the served model when the spec names none (no compress block).
DEFAULT_ENGINE = "onnxruntime"


def compress_steps(ir: Spec) -> tuple[str, ...]:
    """The compress stage's steps: those the compress block sets, plus export and
    build_engine, which ready the model for its server. A spec that serves without a
    compress block gets these two alone: its served model is the trained one, exported,
    because neither Triton nor TF Serving loads training's torch checkpoint and
    something must fill serve/. () when the spec neither compresses nor serves."""
    comp = ir.compress
    if comp is None:
        return ("export", "build_engine") if ir.serve is not None else ()
    return tuple(s for s in COMPRESS_ORDER if s in ("export", "build_engine") or getattr(comp, s) is not None)


def compress_engine(ir: Spec) -> str:
    """What build_engine builds with: compress.engine, else DEFAULT_ENGINE."""
    return ir.compress.engine if ir.compress is not None else DEFAULT_ENGINE


def stage_devices(ir: Spec) -> dict[str, tuple[str, int]]:
    """(device, slots) of each stage pod: train and search on one training host's
    slots, compress on the serving GPU when the engine is TensorRT (its plans run only
    on the GPU they were built on), evaluate where the model will serve (latency gates)."""
    train_device = ir.train.cluster.device if ir.train is not None else "cpu"
    host_slots = ir.train.cluster.slots_per_host if ir.train is not None else 1
    out: dict[str, tuple[str, int]] = {}
    if ir.train is not None:
        out["train"] = (train_device, host_slots)
    if compress_steps(ir):
        tensorrt_served = compress_engine(ir) == "tensorrt" and ir.serve is not None
        out["compress"] = (ir.serve.device if tensorrt_served and ir.serve is not None else train_device, 1)
    if ir.evaluate is not None:
        out["evaluate"] = (ir.serve.device if ir.serve is not None else train_device, 1)
    if ir.search is not None:
        out["search"] = (train_device, host_slots)
    return out


def stage_pods(ir: Spec, facts: Facts) -> dict[str, PodSize]:
    return {stage: pod_size(facts.memory, device, slots) for stage, (device, slots) in stage_devices(ir).items()}


def _served_size(facts: Facts) -> tuple[int, int]:
    """(parameters, bytes of weights) of the served model."""
    served = facts.served
    params = served.params if served is not None else 0
    precision = served.precision if served is not None else "fp32"
    return params, params * int(estimate.BYTES_PER_PARAM.get(precision, 4.0))


def serving_memory_bytes(serve: Serve, facts: Facts) -> int:
    """serve.resources.memory, or 1 GiB (2 GiB with a GPU: CUDA context and pinned
    buffers) + twice the served weights (the file being read and the loaded model; TF
    Serving's own estimate is 1.2x the files), rounded up to 256 MiB."""
    if serve.resources.memory is not None:
        return int(serve.resources.memory)
    base = 2 * GIB if is_gpu(serve.device) else GIB
    return _round_up(base + 2 * _served_size(facts)[1], 256 * MIB)


def models_volume_bytes(params: int) -> int:
    """The serving pod's /models emptyDir: twice the model's fp32 weights (a SavedModel
    keeps fp32 variables beside TF-TRT engines) plus a GiB."""
    return _round_up(2 * 4 * params + GIB, GIB)


def _cpu_serving_cores(sizing: estimate.Sizing | None) -> int:
    if sizing is None or not sizing.feasible or not math.isfinite(sizing.utilisation):
        return CPU_SLICE_CORES
    busy = CPU_SLICE_CORES * sizing.utilisation
    return min(CPU_SLICE_CORES, max(2, math.ceil(round(CPU_SERVING_HEADROOM * busy, 6))))


def serving_resources(ir: Spec, facts: Facts) -> ServingResources:
    """Per replica: serve.resources when given, else derived.

    cpu: 4 cores per GPU (HTTP/gRPC front end, dynamic batcher, (de)serialisation). On
    `cpu` the latency and replica estimates model a replica as the catalog's 16-core
    slice; at the planned load it keeps `utilisation` of it busy, so a replica gets
    twice those cores, at least 2 and at most the 16 (a compute-bound model serves a
    lone request slower on fewer cores than the estimate says: serve.resources.cpu = 16
    matches it exactly). memory: serving_memory_bytes.
    """
    serve = ir.serve
    assert serve is not None
    gpu = is_gpu(serve.device)
    params, model_bytes = _served_size(facts)
    res = serve.resources
    if res.cpu is not None:
        cpu, cpu_derived = float(res.cpu), False
    else:
        cpu, cpu_derived = float(CORES_PER_GPU if gpu else _cpu_serving_cores(facts.sizing)), True
    return ServingResources(
        cpu,
        bounded(lambda: serving_memory_bytes(serve, facts)),
        1 if gpu else 0,
        cpu_derived,
        res.memory is None,
        model_bytes,
        params,
        bounded(lambda: models_volume_bytes(params)),
    )


def replica_plan(ir: Spec, facts: Facts) -> ReplicaPlan:
    """HPA bounds: replicas.min/max when given, else derived from facts.sizing.

    needed = facts.sizing.replicas (the fewest replicas that hold the SLA's throughput
    at its p99); min = max(needed, min_replicas_for(availability)); max = 3 x min
    (headroom for bursts above the SLA's throughput and for a zone's worth of pods),
    and never below needed or min, nor above the 2^31-1 an HPA counts (needed itself
    stays below: E706). Values the spec writes are kept as written (E802 bounds them).
    """
    serve = ir.serve
    assert serve is not None
    sizing = facts.sizing
    needed = 1
    if sizing is not None and sizing.feasible and math.isfinite(sizing.replicas):
        needed = max(1, int(sizing.replicas))
    rmin, rmax = serve.replicas.min, serve.replicas.max
    min_derived, max_derived = rmin is None, rmax is None
    if rmin is None:
        rmin = max(needed, min_replicas_for(serve.sla.availability))
        if rmax is not None:
            rmin = min(rmin, rmax)  # the checks report an SLA that max cannot hold (E702)
    if rmax is None:
        # 3 x min, but never more than an HPA can count (needed <= MAX_REPLICAS: E706).
        rmax = min(max(3 * rmin, needed), MAX_REPLICAS)
    rmax = max(rmax, rmin)
    return ReplicaPlan(rmin, rmax, needed, min_derived, max_derived)


def storage_bytes(ir: Spec, facts: Facts) -> int:
    """The artifacts volume: (checkpoints kept + the final model + one) checkpoints of
    fp32 weights and optimizer state, twice over (compressed models, search trials),
    rounded up to a GiB, at least 10 GiB."""
    params = facts.params or 0
    optimizer: float = 8  # an int, as the byte counts: a float product of a large count would round
    memory = facts.memory
    if memory is not None and memory.bytes_per_param:
        optimizer = memory.bytes_per_param[2]
    keep = ir.train.checkpoint.keep if ir.train is not None else 1
    need = 2 * (keep + 2) * params * (4 + optimizer)
    return max(10 * GIB, _round_up(need, GIB))


def batching_load(ir: Spec, facts: Facts) -> BatchingLoad:
    """TF Serving's batching threads and queue (targets/tfserving.py's docstring has the rule)."""
    serve = ir.serve
    assert serve is not None
    sizing = facts.sizing
    max_batch = serve.batching.max_batch_size
    p99 = serve.sla.p99_latency
    service: float | None
    if sizing is not None and sizing.feasible:
        replicas = max(1, int(sizing.replicas))
        batch = max(1.0, min(float(max_batch), float(sizing.batch_size)))
        service = sizing.batch_service_s
    else:
        replicas, batch, service = 1, float(max_batch), None
    rate = serve.sla.throughput / replicas
    if serve.resources.cpu is not None:
        threads = float(max(1, int(serve.resources.cpu)))
        threads_from = "serve.resources.cpu"
    elif service is not None:
        threads = _ceil(rate * service / batch - 1e-9) + 1
        threads_from = "batches in service by Little's law, plus one"
    else:
        threads = 2.0
        threads_from = "no sizing for this device: two"
    enqueued = max(threads, _ceil(rate * p99 / batch - 1e-9))
    return BatchingLoad(rate, batch, threads, threads_from, enqueued)


def _ceil(x: float) -> float:
    return float(math.ceil(x)) if math.isfinite(x) else x


def power_of_two_sizes(max_batch: int, smallest: int) -> list[int]:
    """smallest, 2*smallest, ... below max_batch, then max_batch itself (increasing, ending at max)."""
    sizes = []
    size = smallest
    while size < max_batch:
        sizes.append(size)
        size *= 2
    sizes.append(max_batch)
    return sizes


def microseconds(seconds: float) -> int:
    """A duration in whole microseconds (0.005 s -> 5000, not 5000.000000000001)."""
    return round(seconds * 1e6)


class ServingQueue(NamedTuple):
    """How one replica's dynamic batcher is fed: the batch shapes it prefers, how long
    it waits to fill one, and how much it holds before refusing (serving_queue has the rule)."""

    max_batch_size: int
    preferred_batch_sizes: tuple[int, ...]
    max_queue_delay_us: int
    timeout_us: int  # the SLA's p99: a request still queued then has missed it, and is rejected
    max_queue_size: int


MAX_QUEUE_SIZE = 2**31 - 1  # what every server's queue-size field takes


def serving_queue(ir: Spec, facts: Facts) -> ServingQueue:
    """Preferred batches: the powers of two from 2 up to max_batch_size, and max_batch_size
    (a lone request must not make a batch of its own at once, so 1 is left out). The
    queue holds what one replica clears within the SLA's p99 at its estimated capacity,
    and at least one full batch: a request queued behind more would miss the p99
    anyway, so refusing it at once is the better answer."""
    serve = ir.serve
    assert serve is not None  # derive_facts plans it only with a serve block
    max_batch = serve.batching.max_batch_size
    p99 = serve.sla.p99_latency
    sizing = facts.sizing
    capacity = sizing.replica_capacity_rps if sizing is not None else 0.0
    cleared = capacity * p99 if math.isfinite(capacity) else float(MAX_QUEUE_SIZE)
    return ServingQueue(
        max_batch_size=max_batch,
        preferred_batch_sizes=tuple(power_of_two_sizes(max_batch, smallest=2)) if max_batch > 1 else (),
        max_queue_delay_us=microseconds(serve.batching.timeout),
        timeout_us=microseconds(p99),
        max_queue_size=int(min(MAX_QUEUE_SIZE, max(max_batch, math.floor(cleared)))),
    )


def tf_trt_batch_sizes(ir: Spec) -> tuple[int, ...]:
    """TF Serving pads batches up to these, so TF-TRT builds an engine per size instead of
    one per batch size met: the powers of two up to max_batch_size, and max_batch_size."""
    serve = ir.serve
    if serve is None or serve.platform != "tf-serving" or ir.compress is None or ir.compress.engine != "tensorrt":
        return ()
    return tuple(power_of_two_sizes(serve.batching.max_batch_size, smallest=1))
