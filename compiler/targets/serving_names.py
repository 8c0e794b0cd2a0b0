"""What the serving targets share (not a target: TARGETS does not list it).

`serving_name`: the name a served model goes by, in tfserving, triton and k8s. A
model's name in the spec is any string (`model "en→de \"v2\"" { ... }` is legal),
but the serving platforms use it as a directory name (Triton's model repository,
TF Serving's base_path) and in URLs (`/v1/models/<name>`, `/v2/models/<name>`). A
name made only of letters, digits, `_`, `.` and `-` (not starting with `.` or `-`)
is used as it is; any other is replaced by a slug of its safe characters plus the
first 8 hex digits of its SHA-256, so that two different names never share a
directory.

`microseconds` and `power_of_two_sizes`: the batching numbers both platforms take.
"""

import hashlib
import re

_SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


def serving_name(model_name: str) -> str:
    if _SAFE.fullmatch(model_name):
        return model_name
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", model_name).strip(".-")[:48].rstrip(".-")
    digest = hashlib.sha256(model_name.encode("utf-8")).hexdigest()[:8]
    return f"{slug}-{digest}" if slug else f"model-{digest}"


def microseconds(seconds: float) -> int:
    """A duration in whole microseconds (0.005 s -> 5000, not 5000.000000000001)."""
    return int(round(seconds * 1e6))


def power_of_two_sizes(max_batch: int, smallest: int) -> list[int]:
    """smallest, 2*smallest, ... below max_batch, then max_batch itself (increasing, ending at max)."""
    sizes = []
    size = smallest
    while size < max_batch:
        sizes.append(size)
        size *= 2
    sizes.append(max_batch)
    return sizes
