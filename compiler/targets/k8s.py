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

The sizes (replicas, each pod's cores and memory, the volumes) are plan.py's facts;
this module only writes them.
"""

import hashlib
from typing import NamedTuple

from ..limits import INT32_MAX, QUANTITY_MAX, require
from ..plan import CORES_PER_CPU_SLOT, CORES_PER_GPU, GIB, SHM_PER_SLOT, min_replicas_for
from . import Artifact, BuildContext
from .k8s_common import (
    KV,
    TF_SERVING_METRICS_PATH,
    Names,
    ServingPlan,
    cpu_quantity,
    memory_quantity,
    names,
    serving_plan,
)
from .slo_rules import Group, rule_groups

# --- fixed choices -----------------------------------------------------------------

UID = 1000  # mpi-operator's `mpiuser`, Triton's `triton-server`; TF Serving runs as any uid
BUNDLE_DIR = "/opt/llmc/bundle"
ARTIFACTS_DIR = "/artifacts"
OUTPUT_DIR = ARTIFACTS_DIR + "/outputs"
MODELS_DIR = "/models"
CONFIG_DIR = "/config"
SSH_DIR = "/home/mpiuser/.ssh"  # mpi-operator mounts the job's SSH key pair here
HOSTFILE = "/etc/mpi/hostfile"  # written by mpi-operator: `<worker>.<svc>.<ns>.svc slots=N`
HPA_CPU_UTILIZATION = 60

# --- context types -----------------------------------------------------------------


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
    groups: list[Group]  # slo_rules.rule_groups


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
        component, n.image, command, [], BUNDLE_DIR, _stage_env(), [], _stage_resources(ctx, component), mounts
    )
    return Pod(
        _labels(n, component), [], n.service_account, UID, restart_policy, [], [container], volumes, size.gpus > 0, []
    )


def _mpijob(ctx: BuildContext, n: Names) -> MpiJobContext:
    train = ctx.ir.train
    assert train is not None  # an MPIJob only with a train block
    cluster = train.cluster
    slots = cluster.slots_per_host
    # train/launch.sh itself (one source of truth for horovodrun's flags: --gloo on CPU,
    # -np hosts x slots), over the hostfile mpi-operator writes for the workers.
    launch = ["bash", f"{BUNDLE_DIR}/train/launch.sh", "--output", OUTPUT_DIR]
    env = _stage_env() + [EnvVar("HOROVOD_HOSTFILE", HOSTFILE)]
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
    worker_container = worker.containers[0]._replace(
        name="worker", add_capabilities=("NET_BIND_SERVICE",), working_dir=None
    )
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
    if ir.compress is not None:
        command = ["/bin/sh", "-c", _RUN_IN_ORDER, "compress"] + _compress_scripts(ctx)
        pod = _stage_pod(ctx, n, "compress", command, "Never")
        out.append(("job-compress.yaml", JobContext(_meta(n, f"{n.base}-compress", "compress"), 2, pod)))
    if ir.evaluate is not None:
        pod = _stage_pod(ctx, n, "evaluate", ["python3", "evaluate/evaluate.py"], "Never")
        out.append(("job-evaluate.yaml", JobContext(_meta(n, f"{n.base}-evaluate", "evaluate"), 2, pod)))
    if ir.search is not None:
        # Trials run one after another (the local backend), each through train/launch.sh
        # inside this pod, which has one host's slots: a multi-host layout runs on
        # those slots (HOROVOD_NP) instead of failing for want of hosts.
        cluster = ir.train.cluster if ir.train is not None else None
        pod = _stage_pod(ctx, n, "search", ["python3", "search/search.py"], "Never")
        if cluster is not None and cluster.hosts > 1:
            (c,) = pod.containers
            np_env = EnvVar("HOROVOD_NP", str(cluster.slots_per_host))
            pod = pod._replace(containers=[c._replace(env=c.env + [np_env])])
        out.append(("job-search.yaml", JobContext(_meta(n, f"{n.base}-search", "search"), 1, pod)))
    return out


# --- serving -----------------------------------------------------------------------


def serving_config_files(ctx: BuildContext, plan: ServingPlan) -> list[KV]:
    """The serve/ files the serving target (tfserving or triton, listed before k8s)
    generates, rendered, keyed by file name, plus TF Serving's monitoring.config
    (Prometheus on the REST port)."""
    from ..render import render

    files: dict[str, str] = {}
    for artifact in ctx.earlier:
        if not artifact.path.startswith("serve/"):
            continue
        key = artifact.path.rsplit("/", 1)[-1]
        if key in files:
            raise AssertionError(f"two serving files are named {key}: the ConfigMap needs unique names")
        files[key] = render(artifact.template, artifact.context)
    if plan.platform == "tf-serving" and "monitoring.config" not in files:
        files["monitoring.config"] = render(
            "k8s/monitoring.config.j2", MonitoringConfigContext(TF_SERVING_METRICS_PATH)
        )
    return [KV(k, files[k]) for k in sorted(files)]


_COPY_MODEL = (
    "set -eu\n"
    'src="$1"; dst="$2"; model="$3"; shift 3\n'
    'if [ ! -d "$src/$model" ]; then\n'
    '  echo "llmc: no exported model at $src/$model: run the train and compress stages first" >&2\n'
    "  exit 1\n"
    "fi\n"
    'mkdir -p "$dst/$model"\n'
    'cp -R "$src/$model/." "$dst/$model/"\n'
    'for file in "$@"; do cp "' + CONFIG_DIR + '/$file" "$dst/$model/$file"; done\n'
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
    model_files = [kv.key for kv in config if kv.key.endswith(".pbtxt")] if plan.platform == "triton" else []
    init = Container(
        "model-repository",
        plan.image,
        ["/bin/sh", "-c", _COPY_MODEL, "model-repository", f"{OUTPUT_DIR}/serve", MODELS_DIR, plan.model] + model_files,
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
    )
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

    add(
        "serviceaccount.yaml",
        "serviceaccount.yaml.j2",
        MetaContext(Meta(n.service_account, n.namespace, _labels(n, "workloads"), [])),
    )
    add(
        "pvc.yaml",
        "pvc.yaml.j2",
        PvcContext(_meta(n, f"{n.base}-artifacts", "artifacts"), memory_quantity(ctx.facts.storage_bytes)),
    )
    plan = serving_plan(ctx)
    if plan is not None:
        config = serving_config_files(ctx, plan)
        selector = _selector(n, "server")
        add("configmap.yaml", "configmap.yaml.j2", ConfigMapContext(_meta(n, f"{n.base}-serving", "server"), config))
        add("deployment.yaml", "deployment.yaml.j2", _deployment(ctx, n, plan, config))
        ports = [ServicePort("http", plan.http_port, "http"), ServicePort("grpc", plan.grpc_port, "grpc")]
        if plan.metrics_port != plan.http_port:
            ports.append(ServicePort("metrics", plan.metrics_port, "metrics"))
        add("service.yaml", "service.yaml.j2", ServiceContext(_meta(n, n.base, "server"), selector, ports))
        add(
            "hpa.yaml",
            "hpa.yaml.j2",
            HpaContext(_meta(n, n.base, "server"), n.base, plan.replicas.min, plan.replicas.max, HPA_CPU_UTILIZATION),
        )
        add("pdb.yaml", "pdb.yaml.j2", PdbContext(_meta(n, n.base, "server"), selector, 1))
        add(
            "networkpolicy.yaml",
            "networkpolicy.yaml.j2",
            NetworkPolicyContext(_meta(n, n.base, "server"), selector, [p.name for p in ports]),
        )
        add(
            "servicemonitor.yaml",
            "servicemonitor.yaml.j2",
            ServiceMonitorContext(
                _meta(n, n.base, "server"), selector, plan.metrics_port_name, plan.metrics_path, "15s"
            ),
        )
        add(
            "prometheusrule.yaml",
            "prometheusrule.yaml.j2",
            PrometheusRuleContext(_meta(n, f"{n.base}-slo", "server"), rule_groups(plan)),
        )
    stages = []
    if ir.train is not None:
        mpi = _mpijob(ctx, n)
        add("mpijob.yaml", "mpijob.yaml.j2", mpi)
        stages.append(KV(f"MPIJob/{mpi.meta.name}", " ".join(mpi.launcher.containers[0].command)))
    for path, job in _jobs(ctx, n):
        add(path, "job.yaml.j2", job)
        command = job.pod.containers[0].command
        what = (
            "python3 on each of " + (", ".join(command[4:]) or "the compress scripts") + ", in order"
            if command[0] == "/bin/sh"
            else " ".join(command)
        )
        stages.append(KV(f"Job/{job.meta.name}", what))
    resources = [a.path.split("/", 1)[1] for a in out]
    out.insert(
        0,
        Artifact(
            "k8s/kustomization.yaml",
            "k8s/kustomization.yaml.j2",
            KustomizationContext(n.namespace, n.common_labels, resources),
        ),
    )
    add(
        "README.md",
        "README.md.j2",
        ReadmeContext(
            ir.model.name,
            n.namespace,
            n.image,
            BUNDLE_DIR,
            OUTPUT_DIR,
            stages,
            plan,
            _sizing_notes(ctx, plan),
            resources,
        ),
    )
    return out


def _sizing_notes(ctx: BuildContext, plan: ServingPlan | None) -> list[KV]:
    """Where each request and bound comes from, for the README."""
    ir, notes = ctx.ir, []
    if plan is not None:
        r, res = plan.replicas, plan.resources
        bounds = (
            "serve.replicas"
            if not (r.min_derived or r.max_derived)
            else f"min = max(needed {r.needed}, {min_replicas_for(plan.availability)} for availability "
            f"{plan.availability * 100:.4g}%) and max = 3 x min where the spec leaves them out"
        )
        notes.append(
            KV("serving replicas", f"{r.min} to {r.max} ({bounds}); the HPA scales on {HPA_CPU_UTILIZATION}% CPU")
        )
        cpu_rule = (
            "serve.resources.cpu"
            if not res.cpu_derived
            else f"{CORES_PER_GPU} cores per GPU"
            if plan.gpu
            else "twice the share of the catalog's 16-core cpu slice the planned load keeps busy, 2 to 16"
        )
        mem_rule = (
            "serve.resources.memory"
            if not res.memory_derived
            else f"{'2 GiB' if plan.gpu else '1 GiB'} + twice the served weights "
            f"({res.model_bytes / 1e6:.3g} MB), rounded up to 256 MiB"
        )
        notes.append(KV("serving CPU", f"{res.cpu} ({cpu_rule})"))
        notes.append(KV("serving memory", f"{res.memory} ({mem_rule})"))
    if ir.train is not None:
        worker = _stage_resources(ctx, "train")
        gpu = f", {worker.gpus} GPU" if worker.gpus else ""
        per_core = f"{CORES_PER_GPU} per GPU" if worker.gpus else f"{CORES_PER_CPU_SLOT} per cpu slot"
        notes.append(
            KV(
                "training worker",
                f"{worker.cpu} CPU, {worker.memory}{gpu} per host ({per_core}; memory: 1.5 x "
                "(1 GiB + the host copy of weights and optimizer state, or the whole "
                "estimate on cpu) per slot, at least 8 GiB per GPU or 2 GiB, plus 1 GiB "
                "of /dev/shm per slot)",
            )
        )
    storage = memory_quantity(ctx.facts.storage_bytes)
    notes.append(
        KV(
            "artifacts volume",
            f"{storage} (twice (checkpoints kept + 2) fp32 checkpoints "
            "of weights and optimizer state, at least 10 GiB)",
        )
    )
    return notes
