"""serve/model_repository/<name>/config.pbtxt for Triton (platform "triton").

A Triton ModelConfig text proto. The runtime (or the serving pod) puts the
exported model beside it, at `<name>/1/<file>`; nothing else is generated.

* name: `serving_names.serving_name` of the model; Triton requires it to equal the
  model's directory name.
* platform, by what the compress stage produces:
  compress.engine "onnxruntime", torch      -> "onnxruntime_onnx"      (1/model.onnx)
  compress.engine "onnxruntime", tensorflow -> "tensorflow_savedmodel" (1/model.savedmodel/):
                                               no ONNX without tf2onnx, the SavedModel is served
  compress.engine "tensorrt", torch         -> "tensorrt_plan"         (1/model.plan)
  compress.engine "tensorrt", tensorflow    -> "tensorflow_savedmodel" (1/model.savedmodel/):
                                               TF-TRT writes a SavedModel with TensorRT ops
  no compress block: as engine "onnxruntime" (the compress stage then only exports the
  trained model and readies it: plan.compress_steps)
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

Generation on TensorRT (serving_names.engine_parts: a torch encoder-decoder or
decoder under compress.engine "tensorrt"): TensorRT does not build the ONNX Loop of
greedy decoding, so the repository holds three models (two for a decoder-only one):

  <name>/config.pbtxt, <name>/1/model.py   the Python backend (BLS): the contract above,
                                           the dynamic batcher, the greedy loop in numpy
                                           calling the engines (templates/triton/greedy_model.py.j2)
  <name>_encoder/config.pbtxt              tensorrt_plan: input_ids [-1] -> memory [-1, d_model],
                                           memory_mask [-1] (TYPE_BOOL)
  <name>_decoder/config.pbtxt              tensorrt_plan, one greedy step: decoder_input_ids [-1]
                                           (, memory, memory_mask), last [1] -> next_ids [1]

The engines' dims are -1 where the engine's profile is dynamic (the lengths); they
have no dynamic batcher (the loop sends them whole batches) and one KIND_GPU instance
each; the loop's model has one KIND_CPU instance (it computes only argmaxes).
"""

from typing import NamedTuple

from ..catalog import is_gpu
from ..limits import INT32_MAX, INT64_MAX, UINT64_MAX, require
from . import Artifact, BuildContext
from .serving_names import engine_model_name, engine_parts, serving_name, triton_platform

DATA_TYPES = ("TYPE_FP32", "TYPE_INT64", "TYPE_BOOL")
KINDS = ("KIND_CPU", "KIND_GPU")
# runtime/tokenizer.py's special ids (every tokenizer's): the greedy loop starts from
# BOS, stops at EOS and pads with PAD, as the exported graph does.
PAD, BOS, EOS = 256, 257, 258


class Tensor(NamedTuple):
    name: str
    data_type: str  # one of DATA_TYPES: a proto enum identifier, never from the spec
    dims: list[int]


class TritonContext(NamedTuple):
    name: str
    platform: str | None  # None: a Python-backend model (backend: "python")
    max_batch_size: int
    inputs: list[Tensor]
    outputs: list[Tensor]
    preferred_batch_sizes: list[int]
    max_queue_delay_microseconds: int
    instance_kind: str  # one of KINDS
    instance_count: int
    versions: int  # version_policy: latest { num_versions }
    about: list[str]  # the header comment's lines: what goes beside this file (safe names only)


class GreedyContext(NamedTuple):
    """templates/triton/greedy_model.py.j2: the greedy loop around the engines."""

    name: str  # this model (serving_name)
    encoder: str | None  # the encoder engine's Triton model; None for a decoder-only model
    decoder: str
    max_len: int
    pad: int
    bos: int
    eos: int


def artifacts(ctx: BuildContext) -> list[Artifact]:
    ir = ctx.ir
    if ir.serve is None or ir.serve.platform != "triton":
        return []
    context = triton_context(ctx)
    root = f"serve/model_repository/{context.name}"
    parts = engine_parts(ir)
    if not parts:
        return [Artifact(f"{root}/config.pbtxt", "triton/config.pbtxt.j2", context)]
    out = [
        Artifact(f"{root}/config.pbtxt", "triton/config.pbtxt.j2", context),
        Artifact(f"{root}/1/model.py", "triton/greedy_model.py.j2", greedy_context(ctx)),
    ]
    for part in parts:
        engine = engine_context(ctx, part)
        out.append(Artifact(f"serve/model_repository/{engine.name}/config.pbtxt", "triton/config.pbtxt.j2", engine))
    return out


def _served_arch(ctx: BuildContext):
    served = ctx.facts.served
    return served.arch if served is not None else ctx.ir.model.transformer


def greedy_context(ctx: BuildContext) -> GreedyContext:
    name = serving_name(ctx.ir.model.name)
    parts = engine_parts(ctx.ir)
    arch = _served_arch(ctx)
    return GreedyContext(
        name=name,
        encoder=engine_model_name(name, "encoder") if "encoder" in parts else None,
        decoder=engine_model_name(name, "decoder"),
        max_len=require(arch.max_len, 1, INT32_MAX, "max_len"),
        pad=PAD,
        bos=BOS,
        eos=EOS,
    )


def engine_tensors(ir, arch, part: str) -> tuple[list[Tensor], list[Tensor]]:
    """The I/O of one engine: export's graph (runtime/frameworks/torch_onnx.py), the
    batch dimension left out, -1 for its dynamic lengths."""
    memory = [Tensor("memory", "TYPE_FP32", [-1, arch.d_model]), Tensor("memory_mask", "TYPE_BOOL", [-1])]
    if part == "encoder":
        return [Tensor("input_ids", "TYPE_INT64", [-1])], memory
    inputs = [Tensor("decoder_input_ids", "TYPE_INT64", [-1])]
    if "encoder" in engine_parts(ir):
        inputs += memory
    # One greedy step (runtime/steps/trt_check.py's decoder_step): the argmax at each
    # row's last position, not the logits of every position.
    return inputs + [Tensor("last", "TYPE_INT64", [1])], [Tensor("next_ids", "TYPE_INT64", [1])]


def engine_context(ctx: BuildContext, part: str) -> TritonContext:
    ir = ctx.ir
    queue = ctx.facts.serving_queue
    assert queue is not None  # planned with the serve block
    inputs, outputs = engine_tensors(ir, _served_arch(ctx), part)
    _check_tensors(inputs + outputs, dynamic=True)
    name = engine_model_name(serving_name(ir.model.name), part)
    return TritonContext(
        name=name,
        platform="tensorrt_plan",
        max_batch_size=require(queue.max_batch_size, 1, INT32_MAX, "max_batch_size"),
        inputs=inputs,
        outputs=outputs,
        preferred_batch_sizes=[],  # no batcher: the greedy loop sends whole batches
        max_queue_delay_microseconds=0,
        instance_kind="KIND_GPU",
        instance_count=1,
        versions=1,
        about=[
            f"The {part} engine (1/model.plan) is one of the models {serving_name(ir.model.name)}'s greedy loop",
            f"calls; its tensors are those of the exported {part}.onnx graph"
            + (" made one greedy step." if part == "decoder" else "."),
        ],
    )


def _check_tensors(tensors: list[Tensor], dynamic: bool = False) -> None:
    for t in tensors:
        assert t.data_type in DATA_TYPES, t
        for d in t.dims:
            if not (dynamic and d == -1):
                require(d, 1, INT64_MAX, f"{t.name} dims")


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
    _check_tensors(inputs + outputs)
    loop = bool(engine_parts(ir))
    if loop:
        kind = "KIND_CPU"  # the loop's own work is argmaxes; the engines run on the GPU
    assert kind in KINDS
    about = [
        "The exported model goes to 1/ beside this file; its inputs and outputs follow the",
        "serving I/O contract of docs/bundle.md.",
    ]
    if loop:
        about = [
            "The greedy loop (1/model.py, Triton's Python backend) calls the TensorRT engines",
            f"{' and '.join(engine_model_name(serving_name(ir.model.name), p) for p in engine_parts(ir))}; its inputs "
            "and outputs",
            "follow the serving I/O contract of docs/bundle.md.",
        ]
    return TritonContext(
        name=serving_name(ir.model.name),
        platform=None if loop else triton_platform(ir),
        max_batch_size=require(max_batch, 1, INT32_MAX, "max_batch_size"),
        inputs=inputs,
        outputs=outputs,
        preferred_batch_sizes=list(queue.preferred_batch_sizes),
        max_queue_delay_microseconds=require(queue.max_queue_delay_us, 0, UINT64_MAX, "max_queue_delay_microseconds"),
        instance_kind=kind,
        instance_count=1,
        versions=1,
        about=about,
    )
