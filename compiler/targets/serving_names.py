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

"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

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
    """The model format Triton serves (config.pbtxt's `platform`): what compress builds, else the trained model's."""
    comp, framework = ir.compress, ir.model.framework
    if comp is not None:
        if comp.engine == "onnxruntime":
            return "onnxruntime_onnx"
        return "tensorflow_savedmodel" if framework == "tensorflow" else "tensorrt_plan"
    return "tensorflow_savedmodel" if framework == "tensorflow" else "pytorch_libtorch"
