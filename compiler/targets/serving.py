"""serving.json: the serving plan as numbers a program reads.

Every server config in the bundle (Triton's config.pbtxt, TF Serving's
batching.config, the HPA) is derived from these numbers, and `llmc serve` and the
load test read them here rather than parse those configs or derive them again:

* model, platform, device: the served model's name (serving_names.serving_name), the
  cluster's serving platform, and the device the estimates are for.
* sla: the serve block's p99 latency (s), throughput (req/s), availability and
  error budget.
* batching: max_batch_size, the preferred batch sizes and the dynamic batcher's
  wait (µs), from the plan's serving queue (plan.serving_queue).
* queue: the request timeout (the SLA's p99, in µs) after which a queued request is
  rejected, and the bound on queued requests (what one replica clears within the p99
  at its estimated capacity, at least one full batch).
* request: the tokens in and out of the request the p99 is planned for (serve.request,
  by default the longest the model takes); null for an MLP.
* estimate: the compiler's own numbers for that device, to hold against what a load
  test measures: one request's service time, one replica's capacity (req/s at full
  batches), the replicas the SLA needs and the p99 predicted with them. A number
  the estimate cannot give (no replica count meets the SLA) is null.

With an evaluate block too, loadtest/loadtest.py: the serve stage of `llmc run`,
which serves the model evaluate passed on a local Triton and load-tests it against
the SLA (llmc.runtime.serving.loadtest.run_stage). Its constants: the model's name,
the load's rate (the SLA's throughput) and duration (LOAD_SECONDS); its docstring
states the SLA it is judged against (serving.json's numbers, which the runtime reads).
Not under serve/: the k8s target ships every serve/ file in the server's ConfigMap.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from . import Artifact, BuildContext
from .docstrings import doc_text
from .serving_names import serving_name

LOAD_SECONDS = 20.0  # the serve stage's load at the SLA's rate (LLMC_LOADTEST_DURATION overrides it)


class PlanJson(NamedTuple):
    document: dict  # written with |json_block


class LoadtestScript(NamedTuple):
    model_name: str  # the served model's name (serving_names.serving_name)
    model_doc: str  # the spec's model name made docstring-safe (docstrings.doc_text)
    device: str
    rate_rps: float  # the load's rate: the SLA's throughput
    duration_s: float
    sla_text: str  # the SLA's clauses, for the docstring


def artifacts(ctx: BuildContext) -> list[Artifact]:
    if ctx.ir.serve is None:
        return []
    out = [Artifact("serving.json", "serving/serving.json.j2", PlanJson(plan_document(ctx)))]
    if ctx.ir.evaluate is not None:
        out.append(Artifact("loadtest/loadtest.py", "serving/loadtest.py.j2", loadtest_script(ctx), executable=True))
    return out


def loadtest_script(ctx: BuildContext) -> LoadtestScript:
    serve = ctx.ir.serve
    assert serve is not None  # artifacts() runs only with a serve block
    sla = serve.sla
    error_rate = sla.error_rate if sla.error_rate is not None else 1 - sla.availability
    sla_text = (
        f"p99 latency <= {_seconds(sla.p99_latency)} at {sla.throughput:g} req/s, "
        f"an error budget of {error_rate * 100:.4g}% of the requests"
    )
    return LoadtestScript(
        model_name=serving_name(ctx.ir.model.name),
        model_doc=doc_text(ctx.ir.model.name),
        device=doc_text(serve.device),
        rate_rps=float(sla.throughput),
        duration_s=LOAD_SECONDS,
        sla_text=sla_text,
    )


def _seconds(value: float) -> str:
    return f"{value * 1000:.6g} ms" if value < 1 else f"{value:.6g} s"


def _finite(value: float | None) -> float | None:
    """A finite estimate to 6 significant digits (what it is worth, and a stable diff); else None."""
    return float(f"{value:.6g}") if value is not None and math.isfinite(value) else None


def _request(tokens: tuple[int, int] | None) -> dict | None:
    if tokens is None:
        return None  # an MLP: one feature vector per request
    return {"input_tokens": tokens[0], "output_tokens": tokens[1]}


def plan_document(ctx: BuildContext) -> dict:
    ir, facts = ctx.ir, ctx.facts
    serve = ir.serve
    queue = facts.serving_queue
    assert serve is not None and queue is not None  # artifacts() runs only with a serve block
    sla = serve.sla
    latency, sizing = facts.latency, facts.sizing
    replicas = _finite(sizing.replicas) if sizing is not None and sizing.feasible else None
    return {
        "model": serving_name(ir.model.name),
        "platform": serve.platform,
        "device": serve.device,
        "sla": {
            "p99_latency_s": sla.p99_latency,
            "throughput_rps": sla.throughput,
            "availability": sla.availability,
            "error_rate": sla.error_rate,
        },
        "batching": {
            "max_batch_size": queue.max_batch_size,
            "preferred_batch_sizes": list(queue.preferred_batch_sizes),
            "max_queue_delay_us": queue.max_queue_delay_us,
        },
        "queue": {"timeout_us": queue.timeout_us, "max_queue_size": queue.max_queue_size},
        "request": _request(facts.request_tokens),
        "estimate": {
            "request_latency_s": _finite(latency.total_s) if latency is not None else None,
            "replica_capacity_rps": _finite(sizing.replica_capacity_rps) if sizing is not None else None,
            "replicas": int(replicas) if replicas is not None else None,
            "predicted_p99_s": _finite(sizing.predicted_s) if sizing is not None and sizing.feasible else None,
        },
    }
