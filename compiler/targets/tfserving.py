"""serve/models.config and serve/batching.config for TF Serving (platform "tf-serving").

    tensorflow_model_server --model_config_file=serve/models.config \\
        --enable_batching --batching_parameters_file=serve/batching.config

models.config is a ModelServerConfig text proto: one model, named by
`serving_names.serving_name`, loaded from `/models/<name>` (the runtime or the pod
puts the exported SavedModel at `/models/<name>/<version>/`), platform "tensorflow",
serving the newest version only.

batching.config is a BatchingParameters text proto (tensorflow_serving/servables/
tensorflow/session_bundle_config.proto; each field an Int64Value wrapper, written
`field { value: N }`):

* max_batch_size: serve.batching.max_batch_size.
* batch_timeout_micros: serve.batching.timeout in microseconds.
* num_batch_threads: batches processed at once. TF Serving's batching guide sets
  it to the CPU cores of the server; that is serve.resources.cpu (whole cores,
  at least 1) when the spec gives it. Otherwise it is what the load needs: by
  Little's law a replica has lambda_r * S(b) / b batches in service, lambda_r =
  throughput / replicas, b the batch a request rides in and S(b) its service time
  (the plan's sizing, docs/estimates.md "Replicas"), rounded up, plus one thread
  so the next batch starts while one finishes (the scheduler forms a batch only
  when a thread is free).
* max_enqueued_batches: ceil(lambda_r * p99 / b), at least num_batch_threads.
  lambda_r * p99 requests reach a replica within one p99 window (throughput x p99,
  Little's law), and at the planned load they ride in batches of b. A request that
  finds more than that queued would wait past the p99 anyway: TF Serving turns it
  away at once (UNAVAILABLE) so the client can retry another replica, instead of
  building a backlog. The guide's floor for online serving is num_batch_threads.
* allowed_batch_sizes, only when the served model is TF-TRT (compress.engine =
  "tensorrt"): the powers of two up to max_batch_size, and max_batch_size. Batches
  are padded up to the next allowed size, so TF-TRT sees a handful of batch
  shapes and builds that many engines instead of one per batch size met in
  production (an engine build at serving time is a latency spike).

Without the plan's sizing (a device the catalog lacks) lambda_r is the whole
throughput and b = max_batch_size, S(b) unknown: two threads.
"""

import math
from typing import NamedTuple

from ..limits import INT64_MAX, require
from ..plan import microseconds
from . import Artifact, BuildContext
from .serving_names import serving_name


class ModelsContext(NamedTuple):
    name: str
    base_path: str
    platform: str  # model_platform
    versions: int  # model_version_policy: latest { num_versions }


class BatchingContext(NamedTuple):
    max_batch_size: int
    batch_timeout_micros: int
    num_batch_threads: int
    max_enqueued_batches: int
    allowed_batch_sizes: list[int]  # empty: any size up to max_batch_size
    # What the numbers were derived from, for the file's comment.
    per_replica_rps: float
    p99_ms: float
    planned_batch: float
    threads_from: str


def artifacts(ctx: BuildContext) -> list[Artifact]:
    ir = ctx.ir
    if ir.serve is None or ir.serve.platform != "tf-serving":
        return []
    return [
        Artifact("serve/models.config", "tfserving/models.config.j2", models_context(ctx)),
        Artifact("serve/batching.config", "tfserving/batching.config.j2", batching_context(ctx)),
    ]


def models_context(ctx: BuildContext) -> ModelsContext:
    name = serving_name(ctx.ir.model.name)
    return ModelsContext(name=name, base_path=f"/models/{name}", platform="tensorflow", versions=1)


def batching_context(ctx: BuildContext) -> BatchingContext:
    ir = ctx.ir
    serve = ir.serve
    load = ctx.facts.batching  # plan.batching_load: checks/serving.py bounds the same numbers
    assert serve is not None and load is not None  # artifacts() runs only with a serve block
    max_batch = serve.batching.max_batch_size
    p99 = serve.sla.p99_latency
    rate, batch, threads_from = load.rate, load.batch, load.threads_from
    return BatchingContext(
        max_batch_size=require(max_batch, 1, INT64_MAX, "max_batch_size"),
        batch_timeout_micros=require(microseconds(serve.batching.timeout), 0, INT64_MAX, "batch_timeout_micros"),
        num_batch_threads=require(_whole(load.threads), 1, INT64_MAX, "num_batch_threads"),
        max_enqueued_batches=require(_whole(load.enqueued), 1, INT64_MAX, "max_enqueued_batches"),
        allowed_batch_sizes=list(ctx.facts.tf_trt_batch_sizes),
        per_replica_rps=round(rate, 6),
        p99_ms=round(p99 * 1e3, 6),
        planned_batch=round(batch, 6),
        threads_from=threads_from,
    )


def _whole(x: float) -> int | float:
    return int(x) if math.isfinite(x) else x
