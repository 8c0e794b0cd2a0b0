"""pipeline target: pipeline/pipeline.py, the bundle's Kubeflow pipeline (KFP v2).

The script holds what the spec decides, as one constant `PIPELINE`, and calls
llmc.runtime.pipeline: `--compile` writes pipeline/pipeline.yaml with kfp's compiler,
`--local` runs that YAML on this machine with kfp.local. `llmc build` writes
pipeline.yaml beside it (compiler/pipeline_yaml.py: the compiler never imports kfp).

Decided here, from k8s/'s workloads (the targets before this one), so a pipeline step
runs where and as the same stage's Job would:

* the stages the spec has: train (with a train block), compress (plan.compress_steps),
  evaluate, deploy (with a serve block), search;
* each step's resources (requests = limits), nodes (the GPU products or
  deploy.node_selector) and GPU toleration: the compress, evaluate and search Jobs'
  pods; train is the MPIJob's launcher (the workers run in the MPIJob it creates), and
  deploy a small pod of its own;
* the image and its pull policy, the uid (10000), the stage environment (with
  deploy.secret_env's variables from their Secrets), and the artifacts volume for
  the steps that use it (train reads the MPIJob's model from it; deploy copies the
  serving layout onto it for the serving pods' init container).

No pipeline without a train block: every other stage starts from the trained model.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ..plan import MIB
from . import Artifact, BuildContext
from .docstrings import doc_text
from .k8s_common import cpu_quantity, memory_quantity, names
from .k8s_workloads import ARTIFACTS_DIR, BUNDLE_DIR, UID, EnvVar, JobContext, MpiJobContext, Pod

# deploy copies a model folder and calls the API server: a small pod.
DEPLOY_CPU_CORES = 0.5
DEPLOY_MEMORY_BYTES = 512 * MIB


class PipelineScript(NamedTuple):
    model_name: str  # docstring-safe
    stages: str  # "train -> compress -> ...", for the docstring
    settings: dict[str, Any]  # PIPELINE


def artifacts(ctx: BuildContext) -> list[Artifact]:
    if ctx.ir.train is None:
        return []
    pods = _stage_pods(ctx)
    n = names(ctx)
    stages = {stage: _stage(stage, pod, stage in ("train", "deploy")) for stage, pod in pods.items()}
    order = " -> ".join(s for s in ("train", "compress", "evaluate", "deploy") if s in stages)
    if "search" in stages:
        order += " (search beside them, on request)"
    settings = {
        "name": n.base,
        "description": f"llmc: {order}",
        "image": n.image,
        "pull_policy": pods["train"].containers[0].pull_policy,
        "uid": UID,
        "bundle_dir": BUNDLE_DIR,
        "artifacts_claim": f"{n.base}-artifacts",
        "artifacts_dir": ARTIFACTS_DIR,
        "env": [
            [e.name, e.value]
            for e in pods["train"].containers[0].env
            if e.secret is None and e.name != "HOROVOD_HOSTFILE"
        ],
        "secret_env": _secrets(pods["train"].containers[0].env),
        "stages": stages,
    }
    script = PipelineScript(doc_text(ctx.ir.model.name), order, settings)
    return [Artifact("pipeline/pipeline.py", "pipeline/pipeline.py.j2", script, executable=True)]


def _secrets(env: list[EnvVar]) -> dict[str, dict[str, str]]:
    """deploy.secret_env by Secret: {secret: {key: NAME}}, as kfp-kubernetes takes them."""
    out: dict[str, dict[str, str]] = {}
    for e in env:
        if e.secret is not None and e.key is not None:
            out.setdefault(e.secret, {})[e.key] = e.name
    return out


def _stage_pods(ctx: BuildContext) -> dict[str, Pod]:
    """Each stage's pod as k8s/ runs it: the Jobs' pods, the MPIJob's launcher for train."""
    by_path = {a.path: a.context for a in ctx.earlier}
    mpijob = by_path["k8s/mpijob.yaml"]
    assert isinstance(mpijob, MpiJobContext)  # k8s writes one with every train block
    pods = {"train": mpijob.launcher}
    for stage in ("compress", "evaluate", "search"):
        job = by_path.get(f"k8s/job-{stage}.yaml")
        if isinstance(job, JobContext):
            pods[stage] = job.pod
    if ctx.ir.serve is not None and "compress" in pods:
        pods["deploy"] = mpijob.launcher._replace(gpu=False, gpu_products=(), node_selector=())
    return pods


def _stage(stage: str, pod: Pod, artifacts_volume: bool) -> dict[str, Any]:
    resources = pod.containers[0].resources
    if stage == "deploy":
        resources = resources._replace(
            cpu=cpu_quantity(DEPLOY_CPU_CORES), memory=memory_quantity(DEPLOY_MEMORY_BYTES), gpus=0
        )
    return {
        "display_name": stage,
        "resources": {"cpu": resources.cpu, "memory": resources.memory, "gpus": resources.gpus},
        "placement": {
            "node_selector": [list(kv) for kv in pod.node_selector],
            "gpu_products": list(pod.gpu_products),
            "tolerate_gpu": pod.gpu,
        },
        "artifacts_volume": artifacts_volume,
    }
