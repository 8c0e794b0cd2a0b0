"""k8s/: every Kubernetes manifest of the spec, and a kustomization.yaml listing them.

`kubectl apply -k k8s/` creates:

* always: a ServiceAccount (deploy.service_account, or named after the model), a
  PersistentVolumeClaim `<name>-artifacts` (ReadWriteMany) that every stage writes its
  outputs to (`/artifacts/outputs`, `$LLMC_OUTPUT` of train.py and the other scripts),
  and the NetworkPolicies of k8s_policies.py (a default deny, then what each pod needs);
* `train`: an MPIJob (kubeflow.org/v2beta1): one launcher running the bundle's own
  train/launch.sh (horovodrun, -np hosts x slots) over the hostfile mpi-operator
  writes (HOROVOD_HOSTFILE), `cluster.hosts` workers with `slots_per_host` slots (and
  as many `nvidia.com/gpu`) each;
* `compress`, `evaluate`, `search`: one Job each (compress on the serving GPU when
  the engine is TensorRT, evaluate on the serving device, search on one training
  host's slots; on Katib, search/katib-experiment.yaml, the katib target's Experiment,
  is the search that runs `parallel` trials at once, each in a pod of its own: it is
  not listed here, since creating it starts them);
* `serve`: Deployment (TF Serving or Triton), Service, HorizontalPodAutoscaler (on
  each pod's requests per second through Prometheus Adapter, or on CPU),
  PodDisruptionBudget, ConfigMap with the serving configs of serve/, ServiceMonitor
  and a PrometheusRule carrying monitoring/alerts.yaml's groups.

Every pod that runs on the spec's GPU requires a node whose `nvidia.com/gpu.product`
is one of its device's (catalog.GPU_PRODUCTS), or deploy.node_selector's labels.

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
* Everything runs as uid 10000 (no host user), non-root, no privilege escalation, all capabilities
  dropped (even the MPI worker's: k8s/Dockerfile's sshd listens on 2222 and has no file
  capabilities; an image on mpi-operator's base images, whose sshd has them, needs
  NET_BIND_SERVICE added back), read-only root filesystem with an emptyDir /tmp, seccomp
  RuntimeDefault, no service account token, requests = limits on every container.

The sizes (replicas, each pod's cores and memory, the volumes) are plan.py's facts;
this module only writes them. The pods and the workloads that run them (MPIJob, Jobs,
Deployment) are built in k8s_workloads.py; the other objects here.
"""

from typing import NamedTuple

from ..plan import CORES_PER_CPU_SLOT, CORES_PER_GPU, min_replicas_for
from . import Artifact, BuildContext
from .k8s_common import (
    KV,
    TF_SERVING_METRICS_PATH,
    ImageBuild,
    Names,
    ServingPlan,
    config_key,
    image_build,
    memory_quantity,
    names,
    repository_models,
    serving_plan,
)
from .k8s_policies import policies
from .k8s_workloads import (
    BUNDLE_DIR,
    OUTPUT_DIR,
    UID,
    Meta,
    _deployment,
    _jobs,
    _labels,
    _meta,
    _mpijob,
    _selector,
    _stage_resources,
)
from .slo_rules import Group, requests_metric, rule_groups

HPA_CPU_UTILIZATION = 60
# The katib target's Experiment: created by the runner, never by `kubectl apply -k k8s/`.
KATIB_EXPERIMENT = "search/katib-experiment.yaml"
# The share of one replica's planned capacity (full batches, at the SLA's p99) each pod
# is kept at: the headroom absorbs a burst while a new replica starts.
HPA_CAPACITY_UTILISATION = 0.6


# --- context types -----------------------------------------------------------------


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


class ConfigMapContext(NamedTuple):
    meta: Meta
    data: list[KV]


class ServiceContext(NamedTuple):
    meta: Meta
    selector: list[KV]
    ports: list[ServicePort]


class HpaContext(NamedTuple):
    meta: Meta
    target: str
    min_replicas: int
    max_replicas: int
    metric: str | None  # the custom metric of each pod's requests/s (Prometheus Adapter); None: CPU
    average_value: str  # its target per pod, a quantity
    why: str
    cpu_utilization: int


class PdbContext(NamedTuple):
    meta: Meta
    selector: list[KV]
    max_unavailable: int


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
    uid: int
    image_build: ImageBuild | None  # k8s/Dockerfile's build and pin commands; None without a stage workload
    needs: list[str]  # what the cluster must run for these objects
    stages: list[KV]  # (kind/name, what it runs)
    serving: ServingPlan | None
    served_models: list[str]  # the repository's model folders the init container copies, served one first
    served_from: str  # the stage that fills them, in words
    sizing: list[KV]  # (what, how much and where it comes from)
    files: list[str]


# --- serving -----------------------------------------------------------------------


def _hpa(n: Names, plan: ServingPlan) -> HpaContext:
    meta = _meta(n, n.base, "server")
    bounds = (n.base, plan.replicas.min, plan.replicas.max)
    if plan.scale_on == "requests" and plan.replica_capacity_rps is not None:
        per_pod = plan.replica_capacity_rps * HPA_CAPACITY_UTILISATION
        why = (
            f"requests/s per pod, kept at {per_pod:.4g}: {HPA_CAPACITY_UTILISATION:.0%} of one replica's planned "
            f"capacity ({plan.replica_capacity_rps:.4g} req/s); served by Prometheus Adapter's rule in "
            "monitoring/prometheus-adapter.yaml"
        )
        return HpaContext(meta, *bounds, requests_metric(plan), f"{round(per_pod * 1000)}m", why, HPA_CPU_UTILIZATION)
    why = f'CPU at {HPA_CPU_UTILIZATION}% of the requests (serve.replicas.scale_on = "cpu", or no planned capacity)'
    return HpaContext(meta, *bounds, None, "", why, HPA_CPU_UTILIZATION)


def serving_config_files(ctx: BuildContext, plan: ServingPlan) -> list[KV]:
    """The serve/ files the serving target (tfserving or triton, listed before k8s)
    generates, rendered, keyed by k8s_common.config_key, plus TF Serving's monitoring.config
    (Prometheus on the REST port)."""
    from ..render import render

    files: dict[str, str] = {}
    for artifact in ctx.earlier:
        if not artifact.path.startswith("serve/"):
            continue
        key = config_key(plan.model, artifact.path)
        if key in files:
            raise AssertionError(f"two serving files are named {key}: the ConfigMap needs unique names")
        files[key] = render(artifact.template, artifact.context)
    if plan.platform == "tf-serving" and "monitoring.config" not in files:
        files["monitoring.config"] = render(
            "k8s/monitoring.config.j2", MonitoringConfigContext(TF_SERVING_METRICS_PATH)
        )
    return [KV(k, files[k]) for k in sorted(files)]


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
        add("hpa.yaml", "hpa.yaml.j2", _hpa(n, plan))
        add("pdb.yaml", "pdb.yaml.j2", PdbContext(_meta(n, n.base, "server"), selector, 1))
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
    for artifact in ctx.earlier:
        if artifact.path == KATIB_EXPERIMENT:  # the katib target's, listed before k8s
            stages.append(
                KV(
                    f"Experiment/{artifact.context.meta.name}",
                    f"the search, from {KATIB_EXPERIMENT} (not in this folder: creating it starts the trials, "
                    "each a Job of its own)",
                )
            )
    add("networkpolicy.yaml", "networkpolicy.yaml.j2", policies(ctx, n, plan))
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
            UID,
            image_build(n.image) if stages else None,
            _cluster_needs(ctx, plan),
            stages,
            plan,
            repository_models(ctx, plan.model) if plan is not None else [],
            "The compress stage"
            if ir.compress is not None
            else "The compress stage (export and build_engine only: the spec has no compress block, so the "
            "trained model is served)",
            _sizing_notes(ctx, plan),
            resources,
        ),
    )
    return out


def _cluster_needs(ctx: BuildContext, plan: ServingPlan | None) -> list[str]:
    """What the cluster must run for the objects of this bundle, for the README."""
    ir = ctx.ir
    needs = ["a storage class offering ReadWriteMany volumes (the artifacts volume)"]
    needs.append("a network plugin that enforces NetworkPolicies (Calico, Cilium, ...): without one they are ignored")
    if ir.train is not None:
        needs.append("the MPI operator (kubeflow.org/v2beta1 MPIJob)")
    if any(a.path == KATIB_EXPERIMENT for a in ctx.earlier):
        needs.append(
            "Katib v0.18 or later (kubeflow.org/v1beta1 Experiment) in the kubeflow namespace, for the search, and "
            "this namespace labelled katib.kubeflow.org/metrics-collector-injection=enabled (Katib adds its metrics "
            "collector to the trials' pods only there)"
        )
    if any(size.gpus for size in ctx.facts.stage_pods.values()) or (plan is not None and plan.gpu):
        needs.append(
            "NVIDIA's device plugin and GPU feature discovery (the nvidia.com/gpu resource and the "
            "nvidia.com/gpu.product node label; or set deploy.node_selector)"
        )
    if plan is not None:
        needs.append("the Prometheus operator (ServiceMonitor, PrometheusRule), Prometheus in the monitoring namespace")
        if plan.scale_on == "requests":
            needs.append("Prometheus Adapter with the rule of monitoring/prometheus-adapter.yaml (the HPA's metric)")
    return needs


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
