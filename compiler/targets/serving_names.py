"""What the serving targets share (not a target: TARGETS does not list it).

`serving_name`: the name a served model goes by, in tfserving, triton and k8s. A
model's name in the spec is any string (`model "en→de \"v2\"" { ... }` is legal),
but the serving platforms use it as a directory name (Triton's model repository,
TF Serving's base_path) and in URLs (`/v1/models/<name>`, `/v2/models/<name>`). A
name made only of letters, digits, `_`, `.` and `-` (not starting with `.` or `-`)
is used as it is; any other is replaced by a slug of its safe characters plus the
first 8 hex digits of its SHA-256, so that two different names never share a
directory.

`triton_platform`: the model format Triton serves (config.pbtxt and compress read it).

`engine_parts`: the TensorRT engines a generating model is served as on Triton. TensorRT
does not build the greedy loop export composes around the decoder (an ONNX Loop whose
body is the whole decoder: TensorRT-RTX's builder fails on it), so such a model is
served as one plan per graph export writes (encoder.plan and decoder.plan, each its own
Triton model `<name>_<part>`), and the loop runs in a Python-backend model `<name>`
that calls them (BLS). docs/serving.md ("TensorRT on the cluster") has the reasons.

"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

from ..plan import compress_engine

if TYPE_CHECKING:  # pragma: no cover - types only
    from ..schema import Spec

_SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


def serving_name(model_name: str) -> str:
    if _SAFE.fullmatch(model_name):
        return model_name
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", model_name).strip(".-")[:48].rstrip(".-")
    digest = hashlib.sha256(model_name.encode("utf-8")).hexdigest()[:8]
    return f"{slug}-{digest}" if slug else f"model-{digest}"


def triton_platform(ir: Spec) -> str:
    """The model format Triton serves (config.pbtxt's `platform`): what the compress
    stage's build_engine makes (plan.compress_steps: a spec that serves always has one)."""
    if ir.model.framework == "tensorflow":  # no ONNX without tf2onnx: the SavedModel (TF-TRT's under tensorrt)
        return "tensorflow_savedmodel"
    return "onnxruntime_onnx" if compress_engine(ir) == "onnxruntime" else "tensorrt_plan"


def engine_parts(ir: Spec) -> tuple[str, ...]:
    """("encoder", "decoder") for an encoder-decoder, ("decoder",) for a decoder-only
    model, served as TensorRT engines on Triton with the greedy loop beside them; ()
    when the served model is one graph (any other platform, engine or task)."""
    arch, serve, comp = ir.model.transformer, ir.serve, ir.compress
    if (
        arch is None
        or ir.model.task == "classification"
        or serve is None
        or serve.platform != "triton"
        or triton_platform(ir) != "tensorrt_plan"
    ):
        return ()
    assert comp is not None  # tensorrt_plan comes only from a compress block
    return ("encoder", "decoder") if arch.kind == "encoder-decoder" else ("decoder",)


def engine_model_name(name: str, part: str) -> str:
    """The Triton model of one engine of a generating model (`engine_parts`)."""
    return f"{name}_{part}"
