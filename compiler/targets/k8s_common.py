"""What k8s/ and monitoring/ share (not a target: TARGETS does not list it).

Kubernetes names and labels, Kubernetes quantities, and the serving plan: the
served model's names, image, ports and SLA, with the replicas and resources that
plan.py sized. k8s/ writes the Deployment, Service and HPA from it; monitoring/
writes the alert rules about the same pods, so the two never disagree.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

from ..catalog import is_gpu
from ..limits import INT32_MAX, MILLICORES_MAX, QUANTITY_MAX, millicores, require
from ..plan import GIB, MIB, ReplicaPlan
from . import BuildContext
from .serving_names import serving_name

# Triton 24.10 is Triton 2.51.0, the server whose metrics monitoring/ was checked
# against (the nvidia-pytriton wheel ships the same tritonserver 2.51). The -py3
# image runs on CPU nodes too.
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"
TF_SERVING_VERSION = "2.18.0"
TF_SERVING_IMAGE = "tensorflow/serving:" + TF_SERVING_VERSION
TF_SERVING_GPU_IMAGE = "tensorflow/serving:" + TF_SERVING_VERSION + "-gpu"
TF_SERVING_METRICS_PATH = "/monitoring/prometheus/metrics"


class KV(NamedTuple):
    key: str
    value: str


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
    image = deploy.image if deploy is not None and deploy.image else f"{ir.model.name}:latest"
    account = deploy.service_account if deploy is not None and deploy.service_account else base
    own = {
        "app.kubernetes.io/name": base,
        "app.kubernetes.io/instance": base,
        "app.kubernetes.io/part-of": "llmc",
        "app.kubernetes.io/managed-by": "llmc",
    }
    user = {k: v for k, v in sorted((deploy.labels if deploy is not None else {}).items()) if k not in own}
    labels = [KV(k, v) for k, v in user.items()] + [KV(k, v) for k, v in own.items()]
    return Names(base, namespace, image, account, labels)


# An image reference as the deploy check accepts it (no spaces, quotes or newlines).
_REFERENCE = re.compile(r"[a-z0-9][a-z0-9._/:@-]*")


class ImageBuild(NamedTuple):
    """How the stage image is built and pinned: k8s/Dockerfile's header and the READMEs."""

    tag: str  # deploy.image without its digest (docker refuses a tag with one); IMAGE when unsafe to print
    build: str  # the command, from the bundle's root
    inspect: str  # prints the digest to pin deploy.image to


def image_build(image: str) -> ImageBuild:
    tag = image.split("@", 1)[0] if _REFERENCE.fullmatch(image) else "IMAGE"
    return ImageBuild(
        tag,
        f"docker buildx build --build-context llmc=PATH/TO/llmc -f k8s/Dockerfile -t {tag} --push .",
        f"docker buildx imagetools inspect {tag}",
    )


# --- quantities --------------------------------------------------------------------


def memory_quantity(nbytes: float) -> str:
    """Bytes as a Kubernetes quantity; the checks (E802) keep them in range."""
    whole = require(nbytes, 1, QUANTITY_MAX, "a memory quantity in bytes")
    if whole % GIB == 0:
        return f"{whole // GIB}Gi"
    if whole % MIB == 0:
        return f"{whole // MIB}Mi"
    if whole % 10**6 == 0:
        return f"{whole // 10**6}M"
    return str(whole)


def cpu_quantity(cores: float) -> str:
    milli = require(millicores(cores), 1, MILLICORES_MAX, "a cpu quantity in millicores")
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


# --- the serving plan --------------------------------------------------------------


class ServingQuantities(NamedTuple):
    """plan.ServingResources as the manifests write them."""

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
    resources: ServingQuantities
    p99_s: float
    throughput_rps: float
    availability: float
    error_budget: float
    team: str | None  # deploy.labels.team: the alerts' `team` label, for routing
    replica_capacity_rps: float | None  # one replica's planned capacity at the SLA (None: unknown)
    bundle_url: str | None  # deploy.bundle_url: where the alerts' runbook links point
    grafana_url: str | None  # deploy.grafana_url: where the alerts' dashboard links point
    scale_on: str  # serve.replicas.scale_on: "requests" (when the capacity is known) or "cpu"


def serving_plan(ctx: BuildContext) -> ServingPlan | None:
    ir = ctx.ir
    serve = ir.serve
    facts = ctx.facts
    if serve is None or facts.replicas is None or facts.serving_resources is None:
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
    replicas = facts.replicas
    require(replicas.min, 1, INT32_MAX, "minReplicas")
    require(replicas.max, 1, INT32_MAX, "maxReplicas")
    res = facts.serving_resources
    resources = ServingQuantities(
        cpu_quantity(res.cpu_cores),
        memory_quantity(res.memory_bytes),
        res.gpus,
        res.cpu_derived,
        res.memory_derived,
        res.model_bytes,
        res.params,
    )
    sizing = facts.sizing
    capacity = (
        sizing.replica_capacity_rps if sizing is not None and math.isfinite(sizing.replica_capacity_rps) else None
    )
    return ServingPlan(
        n.base,
        serving_name(ir.model.name),
        n.namespace,
        serve.platform or "triton",
        serve.device,
        gpu,
        image,
        http,
        grpc,
        metrics,
        metrics_name,
        path,
        replicas,
        resources,
        sla.p99_latency,
        sla.throughput,
        sla.availability,
        budget,
        (ir.deploy.labels.get("team") if ir.deploy is not None else None) or None,
        capacity,
        ir.deploy.bundle_url if ir.deploy is not None else None,
        ir.deploy.grafana_url if ir.deploy is not None else None,
        # Without a finite planned capacity there is no per-pod rate to aim at.
        serve.replicas.scale_on if capacity is not None else "cpu",
    )


REPOSITORY = "serve/model_repository/"


def config_key(model: str, path: str) -> str:
    """The ConfigMap key of a serve/ file (keys are flat). A Triton repository file of
    the served model keeps its path there with "-" for "/" (`config.pbtxt`,
    `1-model.py`); another model's is prefixed with that model's name
    (`translator_encoder-config.pbtxt`); any other file keeps its name."""
    if not path.startswith(REPOSITORY):
        return path.rsplit("/", 1)[-1]
    owner, _, inner = path[len(REPOSITORY) :].partition("/")
    key = inner.replace("/", "-")
    return key if owner == model else f"{owner}-{key}"


def repository_models(ctx: BuildContext, model: str) -> list[str]:
    """The Triton models of the bundle's repository, the served one first: the folders
    the compress stage writes under serve/ and the serving pod copies."""
    owners = {a.path[len(REPOSITORY) :].split("/", 1)[0] for a in ctx.earlier if a.path.startswith(REPOSITORY)}
    return [model] + sorted(owners - {model})
