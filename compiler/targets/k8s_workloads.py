"""What k8s/'s workloads are made of (not a target: TARGETS does not list it).

The pods of the stages and of serving, and the workloads that run them: the MPIJob
that trains, one Job per later stage (compress, evaluate, search), and the serving
Deployment with its model-copying init container. k8s.py (the target) writes these
and every other object of k8s/; the choices they follow are in its docstring. The
katib target runs each trial of a Katib search in `search_pod`, the search Job's pod.
"""

import hashlib
from typing import NamedTuple

from ..catalog import gpu_products, is_gpu
from ..limits import INT32_MAX, QUANTITY_MAX, require
from ..plan import GIB, SHM_PER_SLOT
from . import BuildContext
from .k8s_common import (
    KV,
    REPOSITORY,
    Names,
    ServingPlan,
    config_key,
    cpu_quantity,
    memory_quantity,
    repository_models,
)

# --- fixed choices -----------------------------------------------------------------

ZONE_SPREAD_AVAILABILITY = 0.999
# k8s/Dockerfile's `mpiuser` (mpi-operator's convention), at or above 10000 so that it is
# no user of the host; Triton and TF Serving run as any uid.
UID = 10000
BUNDLE_DIR = "/opt/llmc/bundle"
ARTIFACTS_DIR = "/artifacts"
OUTPUT_DIR = ARTIFACTS_DIR + "/outputs"
MODELS_DIR = "/models"
CONFIG_DIR = "/config"
SSH_DIR = "/home/mpiuser/.ssh"  # mpi-operator mounts the job's SSH key pair here
HOSTFILE = "/etc/mpi/hostfile"  # written by mpi-operator: `<worker>.<svc>.<ns>.svc slots=N`
# The component label of a Katib trial's pod (katib.py): its NetworkPolicy is not the search Job's.
TRIAL_COMPONENT = "search-trial"


# --- context types -----------------------------------------------------------------


class Meta(NamedTuple):
    name: str
    namespace: str
    labels: list[KV]
    annotations: list[KV]


class EnvVar(NamedTuple):
    name: str
    value: str  # "" when it comes from a Secret
    secret: str | None = None  # deploy.secret_env: the Secret's name ...
    key: str | None = None  # ... and its key


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

    @property
    def pull_policy(self) -> str:
        """A digest never changes: pull it once. A tag can move: pull it every time, so
        that every pod runs what the tag names now (W802 asks for a digest)."""
        return "IfNotPresent" if "@sha256:" in self.image else "Always"


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
    node_selector: tuple[KV, ...] = ()  # deploy.node_selector, for a pod on a GPU
    gpu_products: tuple[str, ...] = ()  # else: nodes whose nvidia.com/gpu.product is one of these
    zone_spread: bool = True  # spread over zones too (with `spread`)


def placed(pod: Pod, ctx: BuildContext, device: str) -> Pod:
    """The pod on the nodes of its device: the deploy block's node selector when it has
    one, else the GPU feature discovery label of the device's products."""
    if not is_gpu(device):
        return pod
    deploy = ctx.ir.deploy
    if deploy is not None and deploy.node_selector:
        pairs = tuple(KV(key, value) for key, _, value in (e.partition("=") for e in deploy.node_selector))
        return pod._replace(node_selector=pairs)
    return pod._replace(gpu_products=gpu_products(device))


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
    notes: tuple[str, ...] = ()  # the manifest's header comment lines (fixed text and numbers: nothing to escape)


class DeploymentContext(NamedTuple):
    meta: Meta
    selector: list[KV]
    pod: Pod


# --- names and labels --------------------------------------------------------------


def _labels(n: Names, component: str) -> list[KV]:
    return n.common_labels + [KV("app.kubernetes.io/component", component)]


def _selector(n: Names, component: str) -> list[KV]:
    return [
        KV("app.kubernetes.io/name", n.base),
        KV("app.kubernetes.io/instance", n.base),
        KV("app.kubernetes.io/component", component),
    ]


def _meta(n: Names, name: str, component: str) -> Meta:
    # No spec hash here: llmc.lock.json has it, and in a Job's pod template any change
    # (a comment in the spec) would make the next `kubectl apply` fail (immutable).
    return Meta(name, n.namespace, _labels(n, component), [])


# --- pods --------------------------------------------------------------------------

# The root filesystem is read-only: caches go to the /tmp emptyDir.
_ENV = (
    EnvVar("LLMC_OUTPUT", OUTPUT_DIR),
    EnvVar("XDG_CACHE_HOME", "/tmp/.cache"),
    EnvVar("PYTHONDONTWRITEBYTECODE", "1"),
    EnvVar("PYTHONUNBUFFERED", "1"),
)


def _stage_env(ctx: BuildContext) -> list[EnvVar]:
    """Every stage's environment: llmc's own, then deploy.secret_env's, from their Secrets."""
    return list(_ENV) + secret_env(ctx)


def secret_env(ctx: BuildContext) -> list[EnvVar]:
    """deploy.secret_env (`NAME = "secret/key"`, checked by E801), in the spec's order."""
    deploy = ctx.ir.deploy
    pairs = deploy.secret_env.items() if deploy is not None else ()
    return [EnvVar(name, "", *ref.split("/", 1)) for name, ref in pairs]


def _tmp_volumes(shm: int = 0) -> tuple[list[Volume], list[Mount]]:
    volumes = [Volume("tmp", "emptyDir", memory_quantity(GIB))]
    mounts = [Mount("tmp", "/tmp", False)]
    if shm:
        volumes.append(Volume("shm", "memory", memory_quantity(shm)))
        mounts.append(Mount("shm", "/dev/shm", False))
    return volumes, mounts


def _artifacts_volume(n: Names, read_only: bool = False) -> Volume:
    return Volume("artifacts", "pvc", source=f"{n.base}-artifacts", read_only=read_only)


def _stage_resources(ctx: BuildContext, stage: str) -> Resources:
    size = ctx.facts.stage_pods[stage]  # plan.stage_devices says where each stage runs
    return Resources(
        cpu_quantity(size.cores),
        memory_quantity(size.memory_bytes),
        require(size.gpus, 1, QUANTITY_MAX, "nvidia.com/gpu") if size.gpus else 0,
    )


def _stage_pod(ctx: BuildContext, n: Names, component: str, command: list[str], restart_policy: str | None) -> Pod:
    size = ctx.facts.stage_pods[component]
    volumes, mounts = _tmp_volumes(size.slots * SHM_PER_SLOT)
    volumes.append(_artifacts_volume(n))
    mounts.append(Mount("artifacts", ARTIFACTS_DIR, False))
    container = Container(
        component, n.image, command, [], BUNDLE_DIR, _stage_env(ctx), [], _stage_resources(ctx, component), mounts
    )
    pod = Pod(
        _labels(n, component), [], n.service_account, UID, restart_policy, [], [container], volumes, size.gpus > 0, []
    )
    return placed(pod, ctx, size.device)


def _mpijob(ctx: BuildContext, n: Names) -> MpiJobContext:
    train = ctx.ir.train
    assert train is not None  # an MPIJob only with a train block
    cluster = train.cluster
    slots = cluster.slots_per_host
    # train/launch.sh itself (one source of truth for horovodrun's flags: --gloo on CPU,
    # -np hosts x slots), over the hostfile mpi-operator writes for the workers.
    launch = ["bash", f"{BUNDLE_DIR}/train/launch.sh", "--output", OUTPUT_DIR]
    env = _stage_env(ctx) + [EnvVar("HOROVOD_HOSTFILE", HOSTFILE)]
    volumes, mounts = _tmp_volumes()
    launcher = Pod(
        _labels(n, "train"),
        [],
        n.service_account,
        UID,
        None,
        [],
        [Container("launcher", n.image, launch, [], BUNDLE_DIR, env, [], Resources("1", "2Gi", 0), mounts)],
        volumes,
        False,
        [],
    )
    sshd = ["/usr/sbin/sshd", "-De", "-f", "/home/mpiuser/.sshd_config", "-o", "PidFile=/tmp/sshd.pid"]
    worker = _stage_pod(ctx, n, "train", sshd, None)
    worker_container = worker.containers[0]._replace(name="worker", working_dir=None)
    worker = worker._replace(containers=[worker_container])
    return MpiJobContext(
        _meta(n, f"{n.base}-train", "train"),
        require(cluster.hosts, 1, INT32_MAX, "MPIJob workers"),
        require(slots, 1, INT32_MAX, "slotsPerWorker"),
        3,
        launcher,
        worker,
    )


def _compress_scripts(ctx: BuildContext) -> list[str]:
    # The compress target's scripts, in the order it lists them: the pipeline's.
    return [a.path for a in ctx.earlier if a.path.startswith("compress/") and a.executable]


_RUN_IN_ORDER = 'set -eu\nfor script in "$@"; do\n  echo "llmc: $script" >&2\n  python3 "$script"\ndone\n'


def _jobs(ctx: BuildContext, n: Names) -> list[tuple[str, JobContext]]:
    ir = ctx.ir
    out = []
    if ctx.facts.compress_steps:
        command = ["/bin/sh", "-c", _RUN_IN_ORDER, "compress"] + _compress_scripts(ctx)
        pod = _stage_pod(ctx, n, "compress", command, "Never")
        out.append(("job-compress.yaml", JobContext(_meta(n, f"{n.base}-compress", "compress"), 2, pod)))
    if ir.evaluate is not None:
        pod = _stage_pod(ctx, n, "evaluate", ["python3", "evaluate/evaluate.py"], "Never")
        out.append(("job-evaluate.yaml", JobContext(_meta(n, f"{n.base}-evaluate", "evaluate"), 2, pod)))
    if ir.search is not None:
        # The local backend runs trials one after another in this pod, as does a katib
        # search's search.py (its Experiment, search/katib-experiment.yaml, runs them
        # in pods of their own).
        pod = search_pod(ctx, n, ["python3", "search/search.py"])
        notes: tuple[str, ...] = ()
        if ir.search.backend == "spark":
            # Empty: a local Spark in this pod, `parallel` trials sharing its slots.
            pod = _with_env(pod, [EnvVar("LLMC_SPARK_MASTER", "")])
            notes = (
                f"Trials run {ir.search.parallel} at a time with SparkTrials: set LLMC_SPARK_MASTER to your",
                "Spark cluster (spark://host:7077) to run them on its executors, which must mount the",
                "bundle and the artifacts volume at the same paths; left empty, a local Spark in this pod",
                "runs them on its slots.",
            )
        job = JobContext(_meta(n, f"{n.base}-search", "search"), 1, pod, notes)
        out.append(("job-search.yaml", job))
    return out


def search_pod(ctx: BuildContext, n: Names, command: list[str]) -> Pod:
    """The pod a search's trials train in: the search Job's, or each Katib trial's
    (katib.py). Each trial runs train/launch.sh in it, with one training host's slots:
    a multi-host layout runs on those slots (HOROVOD_NP) instead of failing for want
    of hosts."""
    train = ctx.ir.train
    pod = _stage_pod(ctx, n, "search", command, "Never")
    if train is not None and train.cluster.hosts > 1:
        pod = _with_env(pod, [EnvVar("HOROVOD_NP", str(train.cluster.slots_per_host))])
    return pod


def _with_env(pod: Pod, env: list[EnvVar]) -> Pod:
    """The one-container pod with `env` added to its container's environment."""
    (c,) = pod.containers
    return pod._replace(containers=[c._replace(env=c.env + env)])


# Arguments: SRC DST, then each model folder the compress stage wrote under SRC (the
# served one first; Triton's repository may hold the engines of a generating model
# beside it), then KEY=PATH for each ConfigMap file, copied to DST/PATH so that a
# changed serving config ships without recompressing.
_COPY_MODEL = (
    "set -eu\n"
    'src="$1"; dst="$2"; shift 2\n'
    'for arg in "$@"; do\n'
    '  case "$arg" in\n'
    "    *=*)\n"
    '      path="${arg#*=}"\n'
    '      mkdir -p "$(dirname "$dst/$path")"\n'
    '      cp "' + CONFIG_DIR + '/${arg%%=*}" "$dst/$path" ;;\n'
    "    *)\n"
    '      if [ ! -d "$src/$arg" ]; then\n'
    '        echo "llmc: no exported model at $src/$arg: run the train and compress stages first" >&2\n'
    "        exit 1\n"
    "      fi\n"
    '      mkdir -p "$dst/$arg"\n'
    '      cp -R "$src/$arg/." "$dst/$arg/" ;;\n'
    "  esac\n"
    "done\n"
)


def _server_args(plan: ServingPlan) -> list[str]:
    if plan.platform == "tf-serving":
        return [
            f"--port={plan.grpc_port}",
            f"--rest_api_port={plan.http_port}",
            f"--model_config_file={CONFIG_DIR}/models.config",
            "--enable_batching=true",
            f"--batching_parameters_file={CONFIG_DIR}/batching.config",
            f"--monitoring_config_file={CONFIG_DIR}/monitoring.config",
        ]
    return [
        f"--model-repository={MODELS_DIR}",
        f"--http-port={plan.http_port}",
        f"--grpc-port={plan.grpc_port}",
        f"--metrics-port={plan.metrics_port}",
        "--allow-metrics=true",
        f"--allow-gpu-metrics={'true' if plan.gpu else 'false'}",
        # Triton 2.51 has no request-latency histogram (only decoupled models' first
        # response one): the p99 comes from the summary this enables.
        "--metrics-config=summary_latencies=true",
        "--disable-auto-complete-config",
        "--exit-on-error=true",
        "--strict-readiness=true",
    ]


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
    assert ctx.facts.serving_resources is not None  # serving_plan reads it too
    models_size = memory_quantity(ctx.facts.serving_resources.models_volume_bytes)
    volumes = [
        Volume("tmp", "emptyDir", memory_quantity(GIB)),
        Volume("models", "emptyDir", models_size),
        Volume("config", "configMap", source=f"{n.base}-serving"),
        _artifacts_volume(n, read_only=True),
    ]
    models, model_files = [plan.model], []
    if plan.platform == "triton":
        models = repository_models(ctx, plan.model)
        paths = {config_key(plan.model, a.path): a.path[len(REPOSITORY) :] for a in ctx.earlier}
        model_files = [f"{kv.key}={paths[kv.key]}" for kv in config if kv.key in paths]
    init = Container(
        "model-repository",
        plan.image,
        ["/bin/sh", "-c", _COPY_MODEL, "model-repository", f"{OUTPUT_DIR}/serve", MODELS_DIR, *models, *model_files],
        [],
        None,
        [],
        [],
        Resources("1", "1Gi", 0),
        [
            Mount("artifacts", ARTIFACTS_DIR, True),
            Mount("models", MODELS_DIR, False),
            Mount("config", CONFIG_DIR, True),
            Mount("tmp", "/tmp", False),
        ],
    )
    ports = [ContainerPort("http", plan.http_port), ContainerPort("grpc", plan.grpc_port)]
    if plan.metrics_port != plan.http_port:
        ports.append(ContainerPort("metrics", plan.metrics_port))
    startup, ready, live = _probes(plan)
    command = ["tensorflow_model_server"] if plan.platform == "tf-serving" else ["tritonserver"]
    server = Container(
        "server",
        plan.image,
        command,
        _server_args(plan),
        None,
        [],
        ports,
        resources,
        [Mount("models", MODELS_DIR, True), Mount("config", CONFIG_DIR, True), Mount("tmp", "/tmp", False)],
        startup,
        ready,
        live,
    )
    config_hash = hashlib.sha256("".join(f"{kv.key}\0{kv.value}\0" for kv in config).encode()).hexdigest()
    pod = Pod(
        _labels(n, "server"),
        [KV("llmc/serving-config-sha256", config_hash)],
        n.service_account,
        UID,
        None,
        [init],
        [server],
        volumes,
        plan.gpu,
        _selector(n, "server"),
        45,
        # Across zones too when the SLO asks for three nines or more: a zone's outage is
        # then a bigger share of the budget than a node's.
        zone_spread=plan.availability >= ZONE_SPREAD_AVAILABILITY,
    )
    pod = placed(pod, ctx, plan.device)
    return DeploymentContext(_meta(n, n.base, "server"), _selector(n, "server"), pod)
