"""report.md: the derived facts and what each stage of the bundle will do."""

from pathlib import PurePath
from typing import NamedTuple

from ..facts_text import fact_lines
from . import Artifact, BuildContext
from .gates import gate


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
        )
    ]


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
    if ir.compress is not None:
        c = ir.compress
        steps = [name for name in ("distill", "prune") if getattr(c, name) is not None] + ["export"]
        if c.quantize is not None:
            steps.append(f"quantize ({c.quantize.precision}, {c.quantize.method})")
        engine = "TF-TRT" if c.engine == "tensorrt" and ir.model.framework == "tensorflow" else c.engine
        out.append(Stage("compress", " → ".join(steps + [f"build ({engine})"])))
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
