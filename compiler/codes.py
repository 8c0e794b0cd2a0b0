"""The one registry of diagnostic codes.

Every code the compiler can emit is listed here with its severity and a one-line
title. Each code has a page in docs/errors/<CODE>.md (shown by `llmc explain`) and
at least one diagnostics test in tests/diagnostics/; a meta-test enforces both.
"""

from typing import NamedTuple


class Code(NamedTuple):
    code: str
    severity: str  # "error" or "warning"
    title: str


_TABLE = [
    # syntax
    ("E101", "error", "unexpected character"),
    ("E102", "error", "unterminated string"),
    ("E103", "error", "unexpected token"),
    ("E104", "error", "unknown unit"),
    ("E105", "error", "malformed number"),
    ("E106", "error", "attribute set twice"),
    ("E107", "error", "invalid escape in string"),
    # schema and composition
    ("E201", "error", "unknown block"),
    ("E202", "error", "unknown field"),
    ("E203", "error", "missing required field"),
    ("E204", "error", "wrong type"),
    ("E205", "error", "value out of range"),
    ("E206", "error", "unknown enum value"),
    ("E207", "error", "wrong unit kind"),
    ("E208", "error", "duplicate block"),
    ("E209", "error", "conflicting fields (exactly one allowed)"),
    ("E210", "error", "unknown reference"),
    ("E211", "error", "reference cycle"),
    ("E212", "error", "extends failed"),
    ("E213", "error", "bad profile path"),
    ("E214", "error", "unknown tokenizer"),
    ("E215", "error", "vocab smaller than the byte tokenizer's ids"),
    # layout and devices
    ("E301", "error", "parallel layout does not cover the cluster"),
    ("E302", "error", "heads not divisible by tensor parallelism"),
    ("E303", "error", "layers not divisible by pipeline parallelism"),
    ("E304", "error", "d_model not divisible by heads"),
    ("E305", "error", "batch size not divisible by data parallelism times micro-batch"),
    ("E306", "error", "training does not fit in device memory"),
    ("E307", "error", "precision unsupported by the device"),
    ("E308", "error", "feature unsupported by the training backend"),
    ("E309", "error", "unknown device"),
    ("E310", "error", "rotary positions need an even head dimension"),
    ("E311", "error", "heads not divisible by kv_heads"),
    # compression
    ("E401", "error", "static int8 quantization without calibration data"),
    ("E402", "error", "student is not smaller than the teacher"),
    ("E403", "error", "engine unavailable for the serve device or quantization method"),
    ("E404", "error", "sparsity outside (0, 1)"),
    # evaluation
    ("E501", "error", "metric not defined for the task"),
    ("E502", "error", "metric bound min above max"),
    # search
    ("E601", "error", "unknown search path"),
    ("E602", "error", "distribution does not fit the field's type"),
    ("E603", "error", "distribution can produce a value the field rejects"),
    ("E604", "error", "unknown search objective"),
    ("E605", "error", "search direction contradicts the objective"),
    ("E606", "error", "search algorithm the backend does not run"),
    ("E607", "error", "search space the backend cannot express"),
    # serving
    ("E701", "error", "SLA infeasible: single-request latency exceeds p99"),
    ("E702", "error", "replicas needed for the SLA exceed replicas.max"),
    ("E703", "error", "high availability needs at least two replicas"),
    ("E704", "error", "serving platform cannot serve the framework"),
    ("E705", "error", "batching timeout not well below the p99 latency"),
    ("E706", "error", "SLA needs more replicas than a deployment can run"),
    ("E707", "error", "the planned request does not fit the model"),
    ("E708", "error", "the served model and its key/value cache do not fit the serving device"),
    # deployment
    ("E801", "error", "a deploy value Kubernetes would reject"),
    ("E802", "error", "a generated value outside its target's range"),
    # data files (`llmc check --data`, and `llmc run` before it starts)
    ("E901", "error", "data file missing"),
    ("E902", "error", "data file not UTF-8"),
    ("E903", "error", "row with the wrong number of fields"),
    ("E904", "error", "label outside the model's classes"),
    ("E905", "error", "feature that is not a number"),
    ("E906", "error", "empty data split"),
    ("E907", "error", "data file cut short"),
    ("E908", "error", "column the model reads is missing"),
    ("E909", "error", "malformed row"),
    # warnings
    ("W201", "warning", "vocab larger than the tokenizer produces"),
    ("W301", "warning", "memory headroom under 10%"),
    ("W302", "warning", "tensor-parallel group spans hosts"),
    ("W303", "warning", "key/value heads replicated over the tensor-parallel group"),
    ("W304", "warning", "rope_base without rotary positions"),
    ("W601", "warning", "parallel trials on a backend that runs one at a time"),
    ("W602", "warning", "search setting the backend ignores"),
    ("W701", "warning", "replicas.min far above what the SLA needs"),
    ("W801", "warning", "no deploy block: default namespace and image"),
    ("W802", "warning", "image referenced by tag, not by digest"),
    ("W901", "warning", "rows longer than max_len"),
]

CODES: dict[str, Code] = {code: Code(code, severity, title) for code, severity, title in _TABLE}


def lookup(code: str) -> Code | None:
    return CODES.get(code.upper())
