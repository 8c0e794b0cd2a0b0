"""The numeric ranges of the fields the targets write (docs/bundle.md, "On Kubernetes").

The checks compare the numbers a spec leads to against these (E706, E802) so that
`llmc check` already says when a build would write a value its target rejects; the
targets then assume the ranges hold and `require` them (a value outside is a
compiler bug, never a user's mistake).
"""

import math

INT32_MAX = 2**31 - 1  # Kubernetes counts (replicas, slots, ...), Triton's max_batch_size
INT64_MAX = 2**63 - 1  # TF Serving's Int64Value fields, Triton's dims
UINT64_MAX = 2**64 - 1  # Triton's max_queue_delay_microseconds
# A Kubernetes resource.Quantity holds at most 2^63-1 of its base unit (larger ones are
# capped, silently); CPU is also read as millicores, so at most 2^63-1 millicores.
QUANTITY_MAX = INT64_MAX
MILLICORES_MAX = INT64_MAX
# A Deployment, its HPA and the replica sizing count replicas in an int32.
MAX_REPLICAS = INT32_MAX


def require(value, low: int, high: int, what: str) -> int:
    """`value` as a target writes it, when it is a whole number in [low, high]."""
    if type(value) is not int or not low <= value <= high:
        raise AssertionError(f"{what} = {value!r} is outside [{low}, {high}]: the checks should have reported it")
    return value


def millicores(cores: float) -> int:
    """Cores as Kubernetes keeps them: whole millicores, rounded up, at least 1m (as the
    API server itself rounds 0.1m up to 1m)."""
    return max(1, math.ceil(round(cores * 1000, 6)))
