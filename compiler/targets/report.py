"""report.md: the derived facts and what each stage of the bundle will do; facts.json:
the headline facts for programs, and for `llmc plan`, which compares the previous
build's with the next one's; README.md: the bundle's "start here" (each folder, the
stages' order, and the commands that build the image, apply it and follow it).

facts.json holds `facts`, each headline fact as one short line of text (`devices`,
`layout`, `memory`, `latency`, ...: only those that apply to the spec), and `numbers`,
the same facts as numbers (estimates to 6 significant digits). It names neither the
spec nor its profile: renaming a spec changes only the lock file, report.md and README.md.
"""

import math
from pathlib import PurePath
from typing import NamedTuple

from ..estimate import format_bytes, format_count
from ..expressions import format_quantity
from ..facts_text import fact_lines
from ..plan import compress_engine, compress_steps
from . import Artifact, BuildContext
from .gates import gate
from .k8s_common import ImageBuild, image_build, names

FACTS_JSON = "facts.json"


class Stage(NamedTuple):
    name: str
    what: str


class ReportContext(NamedTuple):
    title: str
    spec: str
    profile: str | None
    facts: list  # (name, text) pairs, as `llmc check` prints them
    stages: list[Stage]


def artifacts(ctx: BuildContext) -> list[Artifact]:
    ir = ctx.ir
    facts = fact_lines(_Result(ir, ctx.facts))
    return [
        Artifact(
            "report.md",
            "report/report.md.j2",
            ReportContext(ir.model.name, _spec_name(ctx), ctx.profile, facts, stages(ir)),
        ),
        Artifact(FACTS_JSON, "report/facts.json.j2", FactsJson(facts_document(ir, ctx.facts))),
        Artifact("README.md", "report/README.md.j2", readme(ctx)),
    ]


# What each top-level folder of a bundle is for, in the order the README lists them.
FOLDERS = {
    "train": "train.py (Horovod) and launch.sh (horovodrun for the spec's layout)",
    "compress": "the compress steps (distill, prune, export, quantize, build the engine), in order",
    "evaluate": "evaluate.py: the metrics and the spec's gates; exits non-zero when a gate fails",
    "search": "search.py: Hyperopt over the spec's space",
    "serve": "the serving configuration (Triton's model repository, or TF Serving's)",
    "loadtest": "loadtest.py: the gated model on a local Triton under the SLA's load",
    "k8s": "the Kubernetes manifests (kubectl apply -k), their README and the image's Dockerfile",
    "pipeline": "the Kubeflow pipeline: pipeline.yaml (compiled by kfp; upload it, or llmc run --target kfp) "
    "and pipeline.py (recompiles it, or runs it here with kfp.local)",
    "monitoring": "SLO rules and their promtool tests, the Grafana dashboard, the runbook, Alertmanager and "
    "Prometheus Adapter snippets",
}


class ReadmeContext(NamedTuple):
    title: str
    spec: str
    profile: str | None
    folders: list[Stage]  # (folder, what it holds), for the folders this bundle has
    stages: list[str]  # the pipeline's stages, in the order they run
    search: bool
    instance: str  # the objects' app.kubernetes.io/instance
    namespace: str
    image: ImageBuild
    k8s: bool
    dockerfile: bool
    pipeline: bool  # pipeline/pipeline.py: the Kubeflow pipeline


def readme(ctx: BuildContext) -> ReadmeContext:
    ir = ctx.ir
    present = {a.path.split("/", 1)[0] for a in ctx.earlier if "/" in a.path}
    folders = [Stage(name, what) for name, what in FOLDERS.items() if name in present]
    n = names(ctx)
    return ReadmeContext(
        ir.model.name,
        _spec_name(ctx),
        ctx.profile,
        folders,
        # The runtime's order: search runs on its own (`llmc run --stage search`).
        [s.name for s in stages(ir) if s.name != "search"],
        ir.search is not None,
        n.base,
        n.namespace,
        image_build(n.image),
        "k8s" in present,
        any(a.path == "k8s/Dockerfile" for a in ctx.earlier),
        "pipeline" in present,
    )


class FactsJson(NamedTuple):
    document: dict  # written with |json_block


def facts_document(ir, facts) -> dict:
    """facts.json: {"facts": {name: text}, "numbers": {name: number}}, in the order
    `llmc check` shows the facts; a fact that does not apply to the spec is left out."""
    text: dict[str, str] = {}
    numbers: dict[str, float | int] = {}
    text["model"] = dict(fact_lines(_Result(ir, None)))["model"]
    if facts.params is not None:
        text["parameters"] = format_count(facts.params)
        numbers["parameters"] = facts.params
    if facts.student_params is not None:
        text["student"] = f"{format_count(facts.student_params)} parameters"
        numbers["student_parameters"] = facts.student_params
    train = ir.train
    if train is not None:
        c, p = train.cluster, train.parallel
        slots = c.hosts * c.slots_per_host
        text["devices"] = (
            f"{c.hosts} host{'s' if c.hosts != 1 else ''} × {c.slots_per_host} "
            f"slot{'s' if c.slots_per_host != 1 else ''} = {slots} × {c.device}"
        )
        numbers["devices"] = slots
        data = p.data if p.data is not None else "?"
        text["layout"] = f"data {data} × tensor {p.tensor} × pipeline {p.pipeline}"
    if facts.memory is not None:
        m = facts.memory
        text["memory"] = (
            f"{format_bytes(m.total)} of {format_bytes(m.device_memory)} per device ({m.headroom:.0%} free)"
        )
        _number(numbers, "memory_per_device_bytes", m.total, whole=True)
    if facts.served is not None and facts.latency is not None:
        s = facts.served
        text["serving"] = f"{s.what} ({format_count(s.params)}, {s.precision}) on {ir.serve.device}"
        text["latency"] = f"{format_quantity('duration', facts.latency.total_s)} per request"
        _number(numbers, "latency_s", facts.latency.total_s)
    if facts.sizing is not None:
        sizing, sla = facts.sizing, ir.serve.sla
        target = f"{format_quantity('rate', sla.throughput)} at p99 {format_quantity('duration', sla.p99_latency)}"
        if sizing.feasible:
            predicted = format_quantity("duration", sizing.predicted_s)
            text["replicas"] = f"{int(sizing.replicas)} for {target} (predicted p99 {predicted})"
            numbers["replicas"] = int(sizing.replicas)
            _number(numbers, "predicted_p99_s", sizing.predicted_s)
        else:
            text["replicas"] = f"none suffice for {target}"
    return {"facts": text, "numbers": numbers}


def _number(numbers: dict, name: str, value: float, whole: bool = False) -> None:
    """A finite estimate, to 6 significant digits (a stable diff) or a whole number."""
    if math.isfinite(value):
        numbers[name] = round(value) if whole else float(f"{value:.6g}")


class _Result(NamedTuple):
    ir: object
    facts: object


def _spec_name(ctx: BuildContext) -> str:
    return PurePath(ctx.spec_path).name


def stages(ir) -> list[Stage]:
    out = []
    if ir.train is not None:
        t = ir.train
        length = f"{t.epochs} epochs" if t.epochs else f"{t.steps} steps"
        out.append(
            Stage(
                "train",
                f"Horovod, {t.cluster.hosts * t.cluster.slots_per_host} processes, {t.precision}, "
                f"global batch {t.batch_size}, {length}, {t.optimizer.name} lr {t.optimizer.lr:g}, "
                f"checkpoints kept: {t.checkpoint.keep}",
            )
        )
    if compress_steps(ir):
        c = ir.compress
        steps = [step for step in compress_steps(ir) if step not in ("quantize", "build_engine")]
        if c is not None and c.quantize is not None:
            steps.append(f"quantize ({c.quantize.precision}, {c.quantize.method})")
        engine = compress_engine(ir)
        engine = "TF-TRT" if engine == "tensorrt" and ir.model.framework == "tensorflow" else engine
        unasked = " (no compress block: the trained model, readied for its server)" if c is None else ""
        out.append(Stage("compress", " → ".join(steps + [f"build ({engine})"]) + unasked))
    if ir.evaluate is not None:
        gates = "; ".join(gate(name, m).text for name, m in sorted(ir.evaluate.metric.items())) or "no gates"
        out.append(Stage("evaluate", f"on the {ir.evaluate.split} split: {gates}"))
    if ir.search is not None:
        s = ir.search
        out.append(
            Stage(
                "search",
                f"Hyperopt {s.algorithm}, {s.max_evals} trials ({s.parallel} in parallel, {s.backend}), "
                f"{s.direction} {s.objective} over {', '.join(sorted(s.space))}",
            )
        )
    if ir.serve is not None:
        sv = ir.serve
        what = f"{sv.platform} on {sv.device}, batches up to {sv.batching.max_batch_size}"
        if ir.evaluate is not None:
            what += (
                f"; `llmc run` load-tests the gated model on a local Triton at {sv.sla.throughput:g} req/s "
                f"against the SLA (loadtest/loadtest.py)"
            )
        out.append(Stage("serve", what))
    return out
