"""serve/model_repository/<name>/config.pbtxt for Triton (platform "triton").

A Triton ModelConfig text proto. The runtime (or the serving pod) puts the
exported model beside it, at `<name>/1/<file>`; nothing else is generated.

* name: `serving_names.serving_name` of the model; Triton requires it to equal the
  model's directory name.
* platform, by what the compress stage produces:
  compress.engine "onnxruntime"             -> "onnxruntime_onnx"      (1/model.onnx)
  compress.engine "tensorrt", torch         -> "tensorrt_plan"         (1/model.plan)
  compress.engine "tensorrt", tensorflow    -> "tensorflow_savedmodel" (1/model.savedmodel/):
                                               TF-TRT writes a SavedModel with TensorRT ops
  no compress block, tensorflow             -> "tensorflow_savedmodel" (1/model.savedmodel/)
  no compress block, torch                  -> "pytorch_libtorch"      (1/model.pt, TorchScript)
* inputs and outputs: the I/O contract below, shaped from the SERVED model (the
  distilled student when there is one). Dims exclude the batch dimension, which
  Triton adds because max_batch_size > 0.
  MLP:                           features  TYPE_FP32  [inputs]  -> logits     TYPE_FP32  [classes]
  Transformer, classification:   input_ids TYPE_INT64 [max_len] -> logits     TYPE_FP32  [classes]
  Transformer, any other task:   input_ids TYPE_INT64 [max_len] -> output_ids TYPE_INT64 [max_len]
  (token ids right-padded with the tokenizer's pad id; output_ids is the greedy
  generation, EOS then padding; the exported graph derives its attention mask from
  the pad id and runs the generation loop itself.)
* max_batch_size: serve.batching.max_batch_size.
* dynamic_batching: the plan's serving queue (plan.serving_queue): preferred_batch_size
  are the powers of two from 2 up to max_batch_size, and max_batch_size itself, the
  batch shapes a TensorRT engine is built for. 1 is left out on purpose: Triton's
  dynamic batcher sends a batch of a preferred size at once, so with 1 preferred every
  lone request would leave immediately and max_queue_delay_microseconds would never
  apply. max_queue_delay_microseconds: serve.batching.timeout in microseconds.
* instance_group: one instance, KIND_CPU when serve.device is "cpu", else KIND_GPU
  (on every GPU the server sees; a serving pod gets one). One instance per replica
  is what the plan's sizing assumes (docs/estimates.md "Replicas": each replica
  serves one full batch at a time); a second instance would need a second copy of
  the engine in GPU memory and is not modelled.
"""

from typing import NamedTuple

from ..catalog import is_gpu
from ..limits import INT32_MAX, INT64_MAX, UINT64_MAX, require
from . import Artifact, BuildContext
from .serving_names import serving_name, triton_platform

DATA_TYPES = ("TYPE_FP32", "TYPE_INT64")
KINDS = ("KIND_CPU", "KIND_GPU")


class Tensor(NamedTuple):
    name: str
    data_type: str  # one of DATA_TYPES: a proto enum identifier, never from the spec
    dims: list[int]


class TritonContext(NamedTuple):
    name: str
    platform: str
    max_batch_size: int
    inputs: list[Tensor]
    outputs: list[Tensor]
    preferred_batch_sizes: list[int]
    max_queue_delay_microseconds: int
    instance_kind: str  # one of KINDS
    instance_count: int
    versions: int  # version_policy: latest { num_versions }


def artifacts(ctx: BuildContext) -> list[Artifact]:
    ir = ctx.ir
    if ir.serve is None or ir.serve.platform != "triton":
        return []
    context = triton_context(ctx)
    return [Artifact(f"serve/model_repository/{context.name}/config.pbtxt", "triton/config.pbtxt.j2", context)]


def io_tensors(ir, served_arch) -> tuple[list[Tensor], list[Tensor]]:
    """The I/O contract (module docstring) for the model as served."""
    arch = served_arch if served_arch is not None else (ir.model.transformer or ir.model.mlp)
    if not hasattr(arch, "max_len"):  # an MLP
        return [Tensor("features", "TYPE_FP32", [arch.inputs])], [Tensor("logits", "TYPE_FP32", [arch.classes])]
    inputs = [Tensor("input_ids", "TYPE_INT64", [arch.max_len])]
    if ir.model.task == "classification":
        return inputs, [Tensor("logits", "TYPE_FP32", [arch.classes])]
    return inputs, [Tensor("output_ids", "TYPE_INT64", [arch.max_len])]


def triton_context(ctx: BuildContext) -> TritonContext:
    ir = ctx.ir
    serve = ir.serve
    assert serve is not None  # artifacts() runs only with a serve block
    served = ctx.facts.served
    inputs, outputs = io_tensors(ir, served.arch if served is not None else None)
    queue = ctx.facts.serving_queue
    assert queue is not None  # planned with the serve block
    max_batch = queue.max_batch_size
    kind = "KIND_GPU" if is_gpu(serve.device) else "KIND_CPU"
    for t in inputs + outputs:
        assert t.data_type in DATA_TYPES, t
        for d in t.dims:
            require(d, 1, INT64_MAX, f"{t.name} dims")
    assert kind in KINDS
    return TritonContext(
        name=serving_name(ir.model.name),
        platform=triton_platform(ir),
        max_batch_size=require(max_batch, 1, INT32_MAX, "max_batch_size"),
        inputs=inputs,
        outputs=outputs,
        preferred_batch_sizes=list(queue.preferred_batch_sizes),
        max_queue_delay_microseconds=require(queue.max_queue_delay_us, 0, UINT64_MAX, "max_queue_delay_microseconds"),
        instance_kind=kind,
        instance_count=1,
        versions=1,
    )
