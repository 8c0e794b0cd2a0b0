"""k8s/: every Kubernetes manifest of the spec, and a kustomization.yaml listing them.

`kubectl apply -k k8s/` creates:

* always: a ServiceAccount (deploy.service_account, or named after the model) and a
  PersistentVolumeClaim `<name>-artifacts` (ReadWriteMany) that every stage writes its
  outputs to (`/artifacts/outputs`, `$LLMC_OUTPUT` of train.py and the other scripts);
* `train`: an MPIJob (kubeflow.org/v2beta1): one launcher running the bundle's own
  train/launch.sh (horovodrun, -np hosts x slots) over the hostfile mpi-operator
  writes (HOROVOD_HOSTFILE), `cluster.hosts` workers with `slots_per_host` slots (and
  as many `nvidia.com/gpu`) each;
* `compress`, `evaluate`, `search`: one Job each (compress on the serving GPU when
  the engine is TensorRT, evaluate on the serving device, search on one training
  host's slots);
* `serve`: Deployment (TF Serving or Triton), Service, HorizontalPodAutoscaler,
  PodDisruptionBudget, ConfigMap with the serving configs of serve/, NetworkPolicy,
  ServiceMonitor and a PrometheusRule carrying monitoring/alerts.yaml's groups.

Choices (README.md in the bundle's k8s/ says the same to users):

* The bundle is baked into deploy.image at /opt/llmc/bundle, not mounted from a
  ConfigMap: a ConfigMap holds 1 MiB, has flat keys (no train/, compress/ folders)
  and kustomize refuses files outside k8s/; the training image needs Horovod and
  the frameworks anyway, and the lock file in it says which bundle it carries.
* The stage workloads (MPIJob, Jobs) are created suspended: Kubernetes has no
  ordering between objects, and a re-applied kustomization must never retrain by
  itself. The runtime (or `kubectl patch ... suspend=false`) resumes train, then
  compress, evaluate and search, each after the previous one succeeded.
* Serving pods copy the exported model from the artifacts volume
  (`outputs/serve/<model>/`) into an emptyDir `/models` in an init container of the
  server's own image, with the serving configs from the ConfigMap; the server reads
  /models (Triton's repository, TF Serving's base_path `/models/<model>`) and
  /config read-only.
* Everything runs as uid 1000, non-root, no privilege escalation, all capabilities
  dropped (the MPI worker adds back NET_BIND_SERVICE, the one capability the
  restricted Pod Security Standard allows: mpi-operator's base images setcap sshd,
  and a binary with file capabilities does not exec when they are outside the
  bounding set), read-only root filesystem with an emptyDir /tmp, seccomp
  RuntimeDefault, no service account token, requests = limits on every container.

Sizing rules are in `_training_memory`, `serving_resources` and `replica_plan`.
"""

import hashlib
import math
import re
from typing import NamedTuple

from ..limits import INT32_MAX, MAX_REPLICAS, MILLICORES_MAX, QUANTITY_MAX, require
from . import Artifact, BuildContext
from .serving_names import serving_name

# --- fixed choices -----------------------------------------------------------------

# Triton 24.10 is Triton 2.51.0, the server whose metrics monitoring/ was checked
# against (the nvidia-pytriton wheel ships the same tritonserver 2.51). The -py3
# image runs on CPU nodes too.
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"
TF_SERVING_VERSION = "2.18.0"
TF_SERVING_IMAGE = "tensorflow/serving:" + TF_SERVING_VERSION
TF_SERVING_GPU_IMAGE = "tensorflow/serving:" + TF_SERVING_VERSION + "-gpu"

UID = 1000  # mpi-operator's `mpiuser`, Triton's `triton-server`; TF Serving runs as any uid
BUNDLE_DIR = "/opt/llmc/bundle"
ARTIFACTS_DIR = "/artifacts"
OUTPUT_DIR = ARTIFACTS_DIR + "/outputs"
MODELS_DIR = "/models"
CONFIG_DIR = "/config"
SSH_DIR = "/home/mpiuser/.ssh"  # mpi-operator mounts the job's SSH key pair here
HOSTFILE = "/etc/mpi/hostfile"  # written by mpi-operator: `<worker>.<svc>.<ns>.svc slots=N`
TF_SERVING_METRICS_PATH = "/monitoring/prometheus/metrics"

GIB = 1 << 30
MIB = 1 << 20
CPU_SLICE_CORES = 16  # catalog.py's `cpu` device: a 16-core server slice
CORES_PER_GPU = 4  # data loading, the server's front end, Horovod's background thread
CORES_PER_CPU_SLOT = 2  # a training process on `cpu`: its step and its data loading
CPU_SERVING_HEADROOM = 2.0  # cpu serving: twice the cores the planned load keeps busy
SHM_PER_SLOT = GIB  # memory-backed /dev/shm per training process (NCCL, data loaders)
HPA_CPU_UTILIZATION = 60

BYTES_PER_PARAM = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}


# --- context types -----------------------------------------------------------------


class KV(NamedTuple):
    key: str
    value: str


class Meta(NamedTuple):
    name: str
    namespace: str
    labels: list[KV]
    annotations: list[KV]


class EnvVar(NamedTuple):
    name: str
    value: str


class ContainerPort(NamedTuple):
    name: str
    port: int


class Resources(NamedTuple):
    """Requests and limits (equal: Guaranteed QoS); gpus > 0 adds nvidia.com/gpu."""

    cpu: str
    memory: str
    gpus: int


class Mount(NamedTuple):
    volume: str
    path: str
    read_only: bool
    sub_path: str | None = None


class Volume(NamedTuple):
    name: str
    kind: str  # "emptyDir" | "memory" (emptyDir in RAM) | "pvc" | "configMap"
    size_limit: str | None = None
    source: str | None = None  # the claim or ConfigMap name
    read_only: bool = False


class Probe(NamedTuple):
    path: str
    port: str
    period_s: int
    timeout_s: int
    failure_threshold: int


class Container(NamedTuple):
    name: str
    image: str
    command: list[str]
    args: list[str]
    working_dir: str | None
    env: list[EnvVar]
    ports: list[ContainerPort]
    resources: Resources
    mounts: list[Mount]
    startup: Probe | None = None
    readiness: Probe | None = None
    liveness: Probe | None = None
    add_capabilities: tuple[str, ...] = ()


class Pod(NamedTuple):
    labels: list[KV]
    annotations: list[KV]
    service_account: str
    uid: int
    restart_policy: str | None
    init_containers: list[Container]
    containers: list[Container]
    volumes: list[Volume]
    gpu: bool  # tolerate the nvidia.com/gpu taint
    spread: list[KV]  # spread replicas over nodes and zones by these selector labels; [] for none
    termination_grace_s: int | None = None


class ReplicaPlan(NamedTuple):
    min: int
    max: int
    needed: int  # facts.sizing.replicas (1 when unknown)
    min_derived: bool
    max_derived: bool


class ServingResources(NamedTuple):
    cpu: str
    memory: str
    gpus: int
    cpu_derived: bool
    memory_derived: bool
    model_bytes: int
    params: int


class ServingPlan(NamedTuple):
    """What k8s/ and monitoring/ both need to know about the served model (one source of truth)."""

    name: str  # Kubernetes name of the Deployment, Service, HPA, ...
    model: str  # serving_names.serving_name: the model's directory, URL and metrics label
    namespace: str
    platform: str  # "triton" | "tf-serving"
    device: str
    gpu: bool
    image: str
    http_port: int
    grpc_port: int
    metrics_port: int
    metrics_port_name: str
    metrics_path: str
    replicas: ReplicaPlan
    resources: ServingResources
    p99_s: float
    throughput_rps: float
    availability: float
    error_budget: float


class ServicePort(NamedTuple):
    name: str
    port: int
    target: str


class KustomizationContext(NamedTuple):
    namespace: str
    labels: list[KV]
    resources: list[str]


class MetaContext(NamedTuple):
    meta: Meta


class PvcContext(NamedTuple):
    meta: Meta
    storage: str


class MpiJobContext(NamedTuple):
    meta: Meta
    workers: int
    slots_per_worker: int
    backoff_limit: int
    launcher: Pod
    worker: Pod


class JobContext(NamedTuple):
    meta: Meta
    backoff_limit: int
    pod: Pod


class ConfigMapContext(NamedTuple):
    meta: Meta
    data: list[KV]


class DeploymentContext(NamedTuple):
    meta: Meta
    selector: list[KV]
    pod: Pod


class ServiceContext(NamedTuple):
    meta: Meta
    selector: list[KV]
    ports: list[ServicePort]


class HpaContext(NamedTuple):
    meta: Meta
    target: str
    min_replicas: int
    max_replicas: int
    cpu_utilization: int


class PdbContext(NamedTuple):
    meta: Meta
    selector: list[KV]
    max_unavailable: int


class NetworkPolicyContext(NamedTuple):
    meta: Meta
    selector: list[KV]
    ports: list[str]


class ServiceMonitorContext(NamedTuple):
    meta: Meta
    selector: list[KV]
    port: str
    path: str
    interval: str


class PrometheusRuleContext(NamedTuple):
    meta: Meta
    groups: list  # monitoring.Group


class MonitoringConfigContext(NamedTuple):
    path: str


class ReadmeContext(NamedTuple):
    model: str
    namespace: str
    image: str
    bundle_dir: str
    output_dir: str
    stages: list[KV]  # (kind/name, what it runs)
    serving: ServingPlan | None
    sizing: list[KV]  # (what, how much and where it comes from)
    files: list[str]


# --- names and labels --------------------------------------------------------------

_NOT_DNS = re.compile(r"[^a-z0-9-]+")


def k8s_name(text: str, limit: int = 40) -> str:
    """A DNS-1035 label from a model name (leaves room for `-train-launcher` within 63)."""
    name = re.sub(r"-{2,}", "-", _NOT_DNS.sub("-", text.lower())).strip("-")[:limit].strip("-")
    if not name or not name[0].isalpha():
        name = ("m-" + name)[:limit].strip("-")
    return name


class Names(NamedTuple):
    base: str
    namespace: str
    image: str
    service_account: str
    common_labels: list[KV]  # deploy.labels first, then app.kubernetes.io/* (which win)


def names(ctx: BuildContext) -> Names:
    ir = ctx.ir
    base = k8s_name(ir.model.name)
    deploy = ir.deploy
    namespace = deploy.namespace if deploy is not None else "default"
    image = (deploy.image if deploy is not None and deploy.image else f"{ir.model.name}:latest")
    account = deploy.service_account if deploy is not None and deploy.service_account else base
    own = {"app.kubernetes.io/name": base, "app.kubernetes.io/instance": base,
           "app.kubernetes.io/part-of": "llmc", "app.kubernetes.io/managed-by": "llmc"}
    user = {k: v for k, v in sorted((deploy.labels if deploy is not None else {}).items()) if k not in own}
    labels = [KV(k, v) for k, v in user.items()] + [KV(k, v) for k, v in own.items()]
    return Names(base, namespace, image, account, labels)


def _labels(n: Names, component: str) -> list[KV]:
    return n.common_labels + [KV("app.kubernetes.io/component", component)]


def _selector(n: Names, component: str) -> list[KV]:
    return [KV("app.kubernetes.io/name", n.base), KV("app.kubernetes.io/instance", n.base),
            KV("app.kubernetes.io/component", component)]


def _meta(n: Names, name: str, component: str) -> Meta:
    # No spec hash here: llmc.lock.json has it, and in a Job's pod template any change
    # (a comment in the spec) would make the next `kubectl apply` fail (immutable).
    return Meta(name, n.namespace, _labels(n, component), [])


# --- quantities --------------------------------------------------------------------


def _round_up(value: float, step: int) -> int:
    # Whole-number arithmetic: a float quotient of a large byte count would round.
    return -(-math.ceil(value) // step) * step


def memory_quantity(nbytes: int) -> str:
    require(nbytes, 1, QUANTITY_MAX, "a memory quantity in bytes")
    if nbytes % GIB == 0:
        return f"{nbytes // GIB}Gi"
    if nbytes % MIB == 0:
        return f"{nbytes // MIB}Mi"
    if nbytes % 10**6 == 0:
        return f"{nbytes // 10**6}M"
    return str(nbytes)


def millicores(cores: float) -> int:
    """Cores as Kubernetes keeps them: whole millicores, rounded up, at least 1m (as the
    API server itself rounds 0.1m up to 1m)."""
    return max(1, math.ceil(round(cores * 1000, 6)))


def cpu_quantity(cores: float) -> str:
    milli = require(millicores(cores), 1, MILLICORES_MAX, "a cpu quantity in millicores")
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def is_gpu(device: str) -> bool:
    return device != "cpu"


# --- sizing ------------------------------------------------------------------------


def _training_memory(facts, gpu: bool) -> int:
    """Host memory of one training process.

    1 GiB for the interpreter, framework and CUDA context, plus what the process holds
    in host RAM: on a GPU a host copy of its weights and optimizer state (checkpoints),
    on the CPU the whole training estimate of plan.py; times 1.5 for allocator slack and
    data batches, rounded up to a GiB, at least 8 GiB per GPU (data loading) or 2 GiB.
    """
    memory = facts.memory if facts is not None else None
    held = 0.0
    if memory is not None:
        held = (memory.weights + memory.optimizer) if gpu else memory.total
    need = _round_up(1.5 * (GIB + held), GIB)
    return max(need, 8 * GIB if gpu else 2 * GIB)


def _slot_cores(gpu: bool) -> int:
    return CORES_PER_GPU if gpu else CORES_PER_CPU_SLOT


def stage_memory_bytes(facts, device: str, slots: int) -> int:
    return slots * (_training_memory(facts, is_gpu(device)) + SHM_PER_SLOT)


def stage_cores(device: str, slots: int) -> int:
    return slots * _slot_cores(is_gpu(device))


def stage_resources(facts, device: str, slots: int) -> Resources:
    gpu = is_gpu(device)
    return Resources(cpu_quantity(stage_cores(device, slots)), memory_quantity(stage_memory_bytes(facts, device, slots)),
                     require(slots, 1, QUANTITY_MAX, "nvidia.com/gpu") if gpu else 0)


def serving_resources(ir, facts) -> ServingResources:
    """Per replica: serve.resources when given, else derived.

    cpu: 4 cores per GPU (HTTP/gRPC front end, dynamic batcher, (de)serialisation). On
    `cpu` the latency and replica estimates model a replica as the catalog's 16-core
    slice; at the planned load it keeps `utilisation` of it busy, so a replica gets
    twice those cores, at least 2 and at most the 16 (a compute-bound model serves a
    lone request slower on fewer cores than the estimate says: serve.resources.cpu = 16
    matches it exactly). memory: 1 GiB (2 GiB with a GPU: CUDA context and pinned
    buffers) + twice the served weights (the file being read and the loaded model; TF
    Serving's own estimate is 1.2x the files), rounded up to 256 MiB.
    """
    serve = ir.serve
    gpu = is_gpu(serve.device)
    params, model_bytes = _served_size(facts)
    res = serve.resources
    if res.cpu is not None:
        cpu, cpu_derived = cpu_quantity(res.cpu), False
    else:
        cpu, cpu_derived = cpu_quantity(CORES_PER_GPU if gpu else _cpu_serving_cores(facts)), True
    memory_derived = res.memory is None
    memory = memory_quantity(serving_memory_bytes(ir, facts))
    return ServingResources(cpu, memory, 1 if gpu else 0, cpu_derived, memory_derived, model_bytes, params)


def _served_size(facts) -> tuple[int, int]:
    """(parameters, bytes of weights) of the served model."""
    served = facts.served if facts is not None else None
    params = served.params if served is not None else 0
    precision = served.precision if served is not None else "fp32"
    return params, int(params * BYTES_PER_PARAM.get(precision, 4))


def serving_memory_bytes(ir, facts) -> int:
    """serve.resources.memory, or the derived request (serving_resources)."""
    if ir.serve.resources.memory is not None:
        return int(ir.serve.resources.memory)
    base = 2 * GIB if is_gpu(ir.serve.device) else GIB
    return _round_up(base + 2 * _served_size(facts)[1], 256 * MIB)


def models_volume_bytes(params: int) -> int:
    """The serving pod's /models emptyDir: twice the model's fp32 weights (a SavedModel
    keeps fp32 variables beside TF-TRT engines) plus a GiB."""
    return _round_up(2 * 4 * params + GIB, GIB)


def _cpu_serving_cores(facts) -> int:
    sizing = facts.sizing if facts is not None else None
    if sizing is None or not sizing.feasible or not math.isfinite(sizing.utilisation):
        return CPU_SLICE_CORES
    busy = CPU_SLICE_CORES * sizing.utilisation
    return min(CPU_SLICE_CORES, max(2, math.ceil(round(CPU_SERVING_HEADROOM * busy, 6))))


def replica_plan(ir, facts) -> ReplicaPlan:
    """HPA bounds: replicas.min/max when given, else derived from facts.sizing.

    needed = facts.sizing.replicas (the fewest replicas that hold the SLA's throughput
    at its p99); min = max(needed, 2 when availability >= 99.9% else 1) so that one
    pod restart is not an outage; max = 3 x min (headroom for bursts above the SLA's
    throughput and for a zone's worth of pods), and never below needed or min, nor
    above the 2^31-1 an HPA counts (needed itself stays below: E706).
    """
    serve = ir.serve
    sizing = facts.sizing if facts is not None else None
    needed = 1
    if sizing is not None and sizing.feasible and math.isfinite(sizing.replicas):
        needed = max(1, int(sizing.replicas))
    floor = 2 if serve.sla.availability >= 0.999 else 1
    rmin, rmax = serve.replicas.min, serve.replicas.max
    min_derived, max_derived = rmin is None, rmax is None
    if rmin is None:
        rmin = max(needed, floor)
        if rmax is not None:
            rmin = min(rmin, rmax)  # the checks report an SLA that max cannot hold (E702)
    if rmax is None:
        # 3 x min, but never more than an HPA can count (needed <= MAX_REPLICAS: E706).
        rmax = min(max(3 * rmin, needed), MAX_REPLICAS)
    rmax = max(rmax, rmin)
    require(rmin, 1, INT32_MAX, "minReplicas")
    require(rmax, 1, INT32_MAX, "maxReplicas")
    return ReplicaPlan(rmin, rmax, needed, min_derived, max_derived)


def serving_plan(ctx: BuildContext) -> ServingPlan | None:
    ir = ctx.ir
    serve = ir.serve
    if serve is None:
        return None
    n = names(ctx)
    gpu = is_gpu(serve.device)
    sla = serve.sla
    # Rounded to clear float noise (1 - 0.999 = 0.0010000000000000009), not so far that
    # a budget of 13 nines becomes 0.
    budget = sla.error_rate if sla.error_rate is not None else round(1 - sla.availability, 15)
    if serve.platform == "tf-serving":
        image = TF_SERVING_GPU_IMAGE if gpu else TF_SERVING_IMAGE
        http, grpc, metrics, metrics_name, path = 8501, 8500, 8501, "http", TF_SERVING_METRICS_PATH
    else:
        image = TRITON_IMAGE
        http, grpc, metrics, metrics_name, path = 8000, 8001, 8002, "metrics", "/metrics"
    return ServingPlan(n.base, serving_name(ir.model.name), n.namespace, serve.platform or "triton", serve.device,
                       gpu, image, http, grpc, metrics, metrics_name, path, replica_plan(ir, ctx.facts),
                       serving_resources(ir, ctx.facts), sla.p99_latency, sla.throughput, sla.availability, budget)


def _storage(ir, facts) -> str:
    return memory_quantity(storage_bytes(ir, facts))


def storage_bytes(ir, facts) -> int:
    """The artifacts volume: (checkpoints kept + the final model + one) checkpoints of
    fp32 weights and optimizer state, twice over (compressed models, search trials),
    rounded up to a GiB, at least 10 GiB."""
    params = facts.params if facts is not None and facts.params else 0
    optimizer = 8
    memory = facts.memory if facts is not None else None
    if memory is not None and memory.bytes_per_param:
        optimizer = memory.bytes_per_param[2]
    keep = ir.train.checkpoint.keep if ir.train is not None else 1
    need = 2 * (keep + 2) * params * (4 + optimizer)
    return max(10 * GIB, _round_up(need, GIB))


# --- pods --------------------------------------------------------------------------

# The root filesystem is read-only: caches go to the /tmp emptyDir.
_ENV = (
    EnvVar("LLMC_OUTPUT", OUTPUT_DIR),
    EnvVar("XDG_CACHE_HOME", "/tmp/.cache"),
    EnvVar("PYTHONDONTWRITEBYTECODE", "1"),
    EnvVar("PYTHONUNBUFFERED", "1"),
)


def _stage_env() -> list[EnvVar]:
    return list(_ENV)


def _tmp_volumes(shm: int = 0) -> tuple[list[Volume], list[Mount]]:
    volumes = [Volume("tmp", "emptyDir", memory_quantity(GIB))]
    mounts = [Mount("tmp", "/tmp", False)]
    if shm:
        volumes.append(Volume("shm", "memory", memory_quantity(shm)))
        mounts.append(Mount("shm", "/dev/shm", False))
    return volumes, mounts


def _artifacts_volume(n: Names, read_only: bool = False) -> Volume:
    return Volume("artifacts", "pvc", source=f"{n.base}-artifacts", read_only=read_only)


def _stage_pod(ctx: BuildContext, n: Names, component: str, command: list[str], device: str, slots: int,
               restart_policy: str | None) -> Pod:
    gpu = is_gpu(device)
    volumes, mounts = _tmp_volumes(slots * SHM_PER_SLOT)
    volumes.append(_artifacts_volume(n))
    mounts.append(Mount("artifacts", ARTIFACTS_DIR, False))
    container = Container(component, n.image, command, [], BUNDLE_DIR, _stage_env(), [],
                          stage_resources(ctx.facts, device, slots), mounts)
    return Pod(_labels(n, component), [], n.service_account, UID, restart_policy, [], [container], volumes, gpu, [])


def _mpijob(ctx: BuildContext, n: Names) -> MpiJobContext:
    train = ctx.ir.train
    cluster = train.cluster
    slots = cluster.slots_per_host
    # train/launch.sh itself (one source of truth for horovodrun's flags: --gloo on CPU,
    # -np hosts x slots), over the hostfile mpi-operator writes for the workers.
    launch = ["bash", f"{BUNDLE_DIR}/train/launch.sh", "--output", OUTPUT_DIR]
    env = _stage_env() + [EnvVar("HOROVOD_HOSTFILE", HOSTFILE)]
    volumes, mounts = _tmp_volumes()
    launcher = Pod(_labels(n, "train"), [], n.service_account, UID, None, [],
                   [Container("launcher", n.image, launch, [], BUNDLE_DIR, env, [], Resources("1", "2Gi", 0), mounts)],
                   volumes, False, [])
    sshd = ["/usr/sbin/sshd", "-De", "-f", "/home/mpiuser/.sshd_config", "-o", "PidFile=/tmp/sshd.pid"]
    worker = _stage_pod(ctx, n, "train", sshd, cluster.device, slots, None)
    worker_container = worker.containers[0]._replace(name="worker", add_capabilities=("NET_BIND_SERVICE",),
                                                     working_dir=None)
    worker = worker._replace(containers=[worker_container])
    return MpiJobContext(_meta(n, f"{n.base}-train", "train"), require(cluster.hosts, 1, INT32_MAX, "MPIJob workers"),
                         require(slots, 1, INT32_MAX, "slotsPerWorker"), 3, launcher, worker)


def _compress_device(ir) -> str:
    # TensorRT plans only run on the GPU model they were built on: build on the serving device.
    if ir.compress.engine == "tensorrt" and ir.serve is not None:
        return ir.serve.device
    return ir.train.cluster.device if ir.train is not None else "cpu"


def _evaluate_device(ir) -> str:
    # Latency gates are measured where the model will serve.
    if ir.serve is not None:
        return ir.serve.device
    return ir.train.cluster.device if ir.train is not None else "cpu"


def _compress_scripts(ctx: BuildContext) -> list[str]:
    from . import compress

    return [f"compress/{step}.py" for step in compress.pipeline(ctx.ir.compress)]


_RUN_IN_ORDER = 'set -eu\nfor script in "$@"; do\n  echo "llmc: $script" >&2\n  python3 "$script"\ndone\n'


def _jobs(ctx: BuildContext, n: Names) -> list[tuple[str, JobContext]]:
    ir = ctx.ir
    out = []
    if ir.compress is not None:
        command = ["/bin/sh", "-c", _RUN_IN_ORDER, "compress"] + _compress_scripts(ctx)
        pod = _stage_pod(ctx, n, "compress", command, _compress_device(ir), 1, "Never")
        out.append(("job-compress.yaml", JobContext(_meta(n, f"{n.base}-compress", "compress"), 2, pod)))
    if ir.evaluate is not None:
        pod = _stage_pod(ctx, n, "evaluate", ["python3", "evaluate/evaluate.py"], _evaluate_device(ir), 1, "Never")
        out.append(("job-evaluate.yaml", JobContext(_meta(n, f"{n.base}-evaluate", "evaluate"), 2, pod)))
    if ir.search is not None:
        # Trials run one after another (the local backend), each through train/launch.sh
        # inside this pod, which has one host's slots: a multi-host layout runs on
        # those slots (HOROVOD_NP) instead of failing for want of hosts.
        cluster = ir.train.cluster if ir.train is not None else None
        device = cluster.device if cluster is not None else "cpu"
        slots = cluster.slots_per_host if cluster is not None else 1
        pod = _stage_pod(ctx, n, "search", ["python3", "search/search.py"], device, slots, "Never")
        if cluster is not None and cluster.hosts > 1:
            (c,) = pod.containers
            pod = pod._replace(containers=[c._replace(env=c.env + [EnvVar("HOROVOD_NP", str(slots))])])
        out.append(("job-search.yaml", JobContext(_meta(n, f"{n.base}-search", "search"), 1, pod)))
    return out


# --- serving -----------------------------------------------------------------------


def serving_config_files(ctx: BuildContext, plan: ServingPlan) -> list[KV]:
    """The serve/ files the serving target generates, rendered, keyed by file name,
    plus TF Serving's monitoring.config (Prometheus on the REST port)."""
    from ..render import render
    from . import tfserving, triton

    module = tfserving if plan.platform == "tf-serving" else triton
    files: dict[str, str] = {}
    for artifact in module.artifacts(ctx):
        if not artifact.path.startswith("serve/"):
            continue
        key = artifact.path.rsplit("/", 1)[-1]
        if key in files:
            raise AssertionError(f"two serving files are named {key}: the ConfigMap needs unique names")
        files[key] = render(artifact.template, artifact.context)
    if plan.platform == "tf-serving" and "monitoring.config" not in files:
        files["monitoring.config"] = render("k8s/monitoring.config.j2", MonitoringConfigContext(TF_SERVING_METRICS_PATH))
    return [KV(k, files[k]) for k in sorted(files)]


_COPY_MODEL = (
    'set -eu\n'
    'src="$1"; dst="$2"; model="$3"; shift 3\n'
    'if [ ! -d "$src/$model" ]; then\n'
    '  echo "llmc: no exported model at $src/$model: run the train and compress stages first" >&2\n'
    '  exit 1\n'
    'fi\n'
    'mkdir -p "$dst/$model"\n'
    'cp -R "$src/$model/." "$dst/$model/"\n'
    'for file in "$@"; do cp "' + CONFIG_DIR + '/$file" "$dst/$model/$file"; done\n'
)


def _server_args(plan: ServingPlan) -> list[str]:
    if plan.platform == "tf-serving":
        return [f"--port={plan.grpc_port}", f"--rest_api_port={plan.http_port}",
                f"--model_config_file={CONFIG_DIR}/models.config",
                "--enable_batching=true", f"--batching_parameters_file={CONFIG_DIR}/batching.config",
                f"--monitoring_config_file={CONFIG_DIR}/monitoring.config"]
    return [f"--model-repository={MODELS_DIR}", f"--http-port={plan.http_port}", f"--grpc-port={plan.grpc_port}",
            f"--metrics-port={plan.metrics_port}", "--allow-metrics=true",
            f"--allow-gpu-metrics={'true' if plan.gpu else 'false'}",
            # Triton 2.51 has no request-latency histogram (only decoupled models' first
            # response one): the p99 comes from the summary this enables.
            "--metrics-config=summary_latencies=true",
            "--disable-auto-complete-config", "--exit-on-error=true", "--strict-readiness=true"]


def _probes(plan: ServingPlan) -> tuple[Probe, Probe, Probe]:
    if plan.platform == "tf-serving":
        ready = live = f"/v1/models/{plan.model}"
    else:
        ready, live = "/v2/health/ready", "/v2/health/live"
    # Startup allows 10 minutes to load the model before liveness takes over.
    return (Probe(live, "http", 5, 3, 120), Probe(ready, "http", 5, 3, 3), Probe(live, "http", 10, 5, 3))


def _deployment(ctx: BuildContext, n: Names, plan: ServingPlan, config: list[KV]) -> DeploymentContext:
    res = plan.resources
    resources = Resources(res.cpu, res.memory, res.gpus)
    models_size = memory_quantity(models_volume_bytes(plan.resources.params))
    volumes = [Volume("tmp", "emptyDir", memory_quantity(GIB)),
               Volume("models", "emptyDir", models_size),
               Volume("config", "configMap", source=f"{n.base}-serving"),
               _artifacts_volume(n, read_only=True)]
    model_files = [kv.key for kv in config if kv.key.endswith(".pbtxt")] if plan.platform == "triton" else []
    init = Container("model-repository", plan.image, ["/bin/sh", "-c", _COPY_MODEL, "model-repository",
                                                      f"{OUTPUT_DIR}/serve", MODELS_DIR, plan.model] + model_files,
                     [], None, [], [], Resources("1", "1Gi", 0),
                     [Mount("artifacts", ARTIFACTS_DIR, True), Mount("models", MODELS_DIR, False),
                      Mount("config", CONFIG_DIR, True), Mount("tmp", "/tmp", False)])
    ports = [ContainerPort("http", plan.http_port), ContainerPort("grpc", plan.grpc_port)]
    if plan.metrics_port != plan.http_port:
        ports.append(ContainerPort("metrics", plan.metrics_port))
    startup, ready, live = _probes(plan)
    command = ["tensorflow_model_server"] if plan.platform == "tf-serving" else ["tritonserver"]
    server = Container("server", plan.image, command, _server_args(plan), None, [], ports, resources,
                       [Mount("models", MODELS_DIR, True), Mount("config", CONFIG_DIR, True),
                        Mount("tmp", "/tmp", False)],
                       startup, ready, live)
    config_hash = hashlib.sha256("".join(f"{kv.key}\0{kv.value}\0" for kv in config).encode()).hexdigest()
    pod = Pod(_labels(n, "server"), [KV("llmc/serving-config-sha256", config_hash)], n.service_account, UID, None,
              [init], [server], volumes, plan.gpu, _selector(n, "server"), 45)
    return DeploymentContext(_meta(n, n.base, "server"), _selector(n, "server"), pod)


# --- artifacts ---------------------------------------------------------------------


def artifacts(ctx: BuildContext) -> list[Artifact]:
    ir = ctx.ir
    if all(getattr(ir, block) is None for block in ("train", "compress", "evaluate", "search", "serve")):
        return []
    n = names(ctx)
    out: list[Artifact] = []

    def add(path: str, template: str, context) -> None:
        out.append(Artifact(f"k8s/{path}", f"k8s/{template}", context))

    add("serviceaccount.yaml", "serviceaccount.yaml.j2",
        MetaContext(Meta(n.service_account, n.namespace, _labels(n, "workloads"), [])))
    add("pvc.yaml", "pvc.yaml.j2", PvcContext(_meta(n, f"{n.base}-artifacts", "artifacts"), _storage(ir, ctx.facts)))
    plan = serving_plan(ctx)
    if plan is not None:
        from .monitoring import rule_groups

        config = serving_config_files(ctx, plan)
        selector = _selector(n, "server")
        add("configmap.yaml", "configmap.yaml.j2", ConfigMapContext(_meta(n, f"{n.base}-serving", "server"), config))
        add("deployment.yaml", "deployment.yaml.j2", _deployment(ctx, n, plan, config))
        ports = [ServicePort("http", plan.http_port, "http"), ServicePort("grpc", plan.grpc_port, "grpc")]
        if plan.metrics_port != plan.http_port:
            ports.append(ServicePort("metrics", plan.metrics_port, "metrics"))
        add("service.yaml", "service.yaml.j2", ServiceContext(_meta(n, n.base, "server"), selector, ports))
        add("hpa.yaml", "hpa.yaml.j2", HpaContext(_meta(n, n.base, "server"), n.base, plan.replicas.min,
                                                   plan.replicas.max, HPA_CPU_UTILIZATION))
        add("pdb.yaml", "pdb.yaml.j2", PdbContext(_meta(n, n.base, "server"), selector, 1))
        add("networkpolicy.yaml", "networkpolicy.yaml.j2",
            NetworkPolicyContext(_meta(n, n.base, "server"), selector, [p.name for p in ports]))
        add("servicemonitor.yaml", "servicemonitor.yaml.j2",
            ServiceMonitorContext(_meta(n, n.base, "server"), selector, plan.metrics_port_name, plan.metrics_path,
                                  "15s"))
        add("prometheusrule.yaml", "prometheusrule.yaml.j2",
            PrometheusRuleContext(_meta(n, f"{n.base}-slo", "server"), rule_groups(plan)))
    stages = []
    if ir.train is not None:
        mpi = _mpijob(ctx, n)
        add("mpijob.yaml", "mpijob.yaml.j2", mpi)
        stages.append(KV(f"MPIJob/{mpi.meta.name}", " ".join(mpi.launcher.containers[0].command)))
    for path, job in _jobs(ctx, n):
        add(path, "job.yaml.j2", job)
        command = job.pod.containers[0].command
        what = ("python3 on each of " + (", ".join(command[4:]) or "the compress scripts") + ", in order"
                if command[0] == "/bin/sh" else " ".join(command))
        stages.append(KV(f"Job/{job.meta.name}", what))
    resources = [a.path.split("/", 1)[1] for a in out]
    out.insert(0, Artifact("k8s/kustomization.yaml", "k8s/kustomization.yaml.j2",
                           KustomizationContext(n.namespace, n.common_labels, resources)))
    add("README.md", "README.md.j2", ReadmeContext(ir.model.name, n.namespace, n.image, BUNDLE_DIR, OUTPUT_DIR,
                                                   stages, plan, _sizing_notes(ctx, plan), resources))
    return out


def _sizing_notes(ctx: BuildContext, plan: ServingPlan | None) -> list[KV]:
    """Where each request and bound comes from, for the README."""
    ir, notes = ctx.ir, []
    if plan is not None:
        r, res = plan.replicas, plan.resources
        bounds = ("serve.replicas" if not (r.min_derived or r.max_derived) else
                  f"min = max(needed {r.needed}, {2 if plan.availability >= 0.999 else 1} for availability "
                  f"{plan.availability * 100:.4g}%) and max = 3 x min where the spec leaves them out")
        notes.append(KV("serving replicas", f"{r.min} to {r.max} ({bounds}); the HPA scales on "
                                            f"{HPA_CPU_UTILIZATION}% CPU"))
        cpu_rule = ("serve.resources.cpu" if not res.cpu_derived else
                    f"{CORES_PER_GPU} cores per GPU" if plan.gpu else
                    "twice the share of the catalog's 16-core cpu slice the planned load keeps busy, 2 to 16")
        mem_rule = ("serve.resources.memory" if not res.memory_derived else
                    f"{'2 GiB' if plan.gpu else '1 GiB'} + twice the served weights "
                    f"({res.model_bytes / 1e6:.3g} MB), rounded up to 256 MiB")
        notes.append(KV("serving CPU", f"{res.cpu} ({cpu_rule})"))
        notes.append(KV("serving memory", f"{res.memory} ({mem_rule})"))
    if ir.train is not None:
        c = ir.train.cluster
        res = stage_resources(ctx.facts, c.device, c.slots_per_host)
        gpu = f", {res.gpus} GPU" if res.gpus else ""
        per_core = f"{CORES_PER_GPU} per GPU" if is_gpu(c.device) else f"{CORES_PER_CPU_SLOT} per cpu slot"
        notes.append(KV("training worker", f"{res.cpu} CPU, {res.memory}{gpu} per host ({per_core}; memory: 1.5 x "
                                           "(1 GiB + the host copy of weights and optimizer state, or the whole "
                                           "estimate on cpu) per slot, at least 8 GiB per GPU or 2 GiB, plus 1 GiB "
                                           "of /dev/shm per slot)"))
    notes.append(KV("artifacts volume", f"{_storage(ir, ctx.facts)} (twice (checkpoints kept + 2) fp32 checkpoints "
                                        "of weights and optimizer state, at least 10 GiB)"))
    return notes
