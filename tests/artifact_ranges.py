"""Every number of a generated bundle against the range its reader accepts.

An oracle independent of the compiler (its own table of bounds, written from the
readers' own definitions), for the tests: `violations(files)` takes a bundle's
{path: text} and returns one line per number out of range.

* Kubernetes (k8s/*.yaml): counts are int32 (replicas, minReplicas, maxReplicas,
  slotsPerWorker, backoffLimit, probe fields, ...), ports 1-65535, uids int64, every
  other integer at most int64; resource quantities (cpu, memory, nvidia.com/gpu,
  storage, sizeLimit) at most 2^63-1 of their base unit, cpu at most 2^63-1
  millicores, none of them zero or negative (resource.Quantity caps larger ones
  silently).
* Prometheus (monitoring/*.yaml, k8s/prometheusrule.yaml): `for`, `interval`,
  `eval_time` and every range window `[...]` a duration as Prometheus parses it
  (model.ParseDuration: whole numbers of y w d h m s ms, largest unit first, no
  fractions, no sign); numbers in expressions and test series finite.
* Triton (config.pbtxt): max_batch_size, preferred_batch_size and count int32,
  num_versions uint32, dims int64, max_queue_delay_microseconds uint64.
* TF Serving (batching.config: every `field { value: N }` an Int64Value;
  allowed_batch_sizes int64; models.config num_versions uint32).
* JSON (dashboard.json, model.json): finite numbers only.
"""

from __future__ import annotations

import json
import math
import re
from fractions import Fraction

import yaml

INT32 = (-(2**31), 2**31 - 1)
UINT32 = (0, 2**32 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT64 = (0, 2**64 - 1)
PORT = (1, 65535)
QUANTITY_MAX = 2**63 - 1

K8S_INT32 = {
    "replicas": (0, INT32[1]),
    "minReplicas": (1, INT32[1]),
    "maxReplicas": (1, INT32[1]),
    "slotsPerWorker": (1, INT32[1]),
    "backoffLimit": (0, INT32[1]),
    "parallelism": (0, INT32[1]),
    "completions": (0, INT32[1]),
    "periodSeconds": (1, INT32[1]),
    "timeoutSeconds": (1, INT32[1]),
    "failureThreshold": (1, INT32[1]),
    "successThreshold": (1, INT32[1]),
    "initialDelaySeconds": (0, INT32[1]),
    "averageUtilization": (1, INT32[1]),
    "stabilizationWindowSeconds": (0, 3600),
    "maxSkew": (1, INT32[1]),
    "maxUnavailable": (0, INT32[1]),
    "minAvailable": (0, INT32[1]),
}
K8S_PORTS = {"containerPort", "port", "targetPort"}
K8S_INT64 = {
    "runAsUser": (0, INT64[1]),
    "runAsGroup": (0, INT64[1]),
    "fsGroup": (0, INT64[1]),
    "terminationGracePeriodSeconds": (0, INT64[1]),
    "activeDeadlineSeconds": (1, INT64[1]),
}
QUANTITY_KEYS = {"cpu", "memory", "nvidia.com/gpu", "storage", "sizeLimit", "ephemeral-storage"}

# resource.Quantity: a decimal number, then a binary or decimal SI suffix or an exponent.
_QUANTITY = re.compile(
    r"(?P<num>[0-9]+(\.[0-9]*)?|\.[0-9]+)(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?"
)
_SUFFIX: dict[str, int | Fraction] = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
}
# Prometheus' model.ParseDuration.
_PROM_DURATION = re.compile(r"(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?")
_PROM_UNIT_MS = {
    "y": 365 * 86400_000,
    "w": 7 * 86400_000,
    "d": 86400_000,
    "h": 3600_000,
    "m": 60_000,
    "s": 1000,
    "ms": 1,
}
_RANGE = re.compile(r"\[([^\]]*)\]")
_NUMBER_TOKEN = re.compile(r"(?<![\w.:])(?:[0-9]+\.?[0-9]*(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)(?![\w.])")
_NOT_FINITE = re.compile(r"(?<![\w$])(?:[+-]?inf(?:inity)?|nan)(?!\w)", re.IGNORECASE)


def violations(files: dict[str, str]) -> list[str]:
    out: list[str] = []
    for path, text in sorted(files.items()):
        name = path.rsplit("/", 1)[-1]
        if path.endswith((".yaml", ".yml")):
            for doc in yaml.safe_load_all(text):
                if path.startswith("monitoring/") or (isinstance(doc, dict) and doc.get("kind") == "PrometheusRule"):
                    _prometheus(path, doc, out)
                if path.startswith("k8s/"):
                    _kubernetes(path, doc, [], out)
        elif name == "config.pbtxt":
            _text_proto(
                path,
                text,
                {
                    "max_batch_size": INT32,
                    "preferred_batch_size": INT32,
                    "count": INT32,
                    "num_versions": UINT32,
                    "dims": INT64,
                    "max_queue_delay_microseconds": UINT64,
                    "default_timeout_microseconds": UINT64,
                    "max_queue_size": UINT32,
                },
                INT64,
                out,
            )
        elif name == "batching.config":
            _text_proto(path, text, {}, INT64, out)
        elif name == "models.config":
            _text_proto(path, text, {"num_versions": UINT32}, INT64, out)
        elif path.endswith(".json"):

            def non_finite(constant: str, path: str = path) -> None:
                out.append(f"{path}: {constant} is not a finite number")

            json.loads(text, parse_constant=non_finite)
    return out


# --- Kubernetes ------------------------------------------------------------------------


def _kubernetes(path: str, node, keys: list, out: list[str]) -> None:
    where = f"{path}: {'.'.join(map(str, keys))}"
    if isinstance(node, dict):
        for key, value in node.items():
            if (key in QUANTITY_KEYS and keys[-1:] in (["requests"], ["limits"])) or key in ("sizeLimit", "storage"):
                _quantity(f"{where}.{key}", key, value, out)
            else:
                _kubernetes(path, value, keys + [key], out)
        return
    if isinstance(node, list):
        for i, item in enumerate(node):
            _kubernetes(path, item, keys + [i], out)
        return
    if isinstance(node, float) and not math.isfinite(node):
        out.append(f"{where} = {node}: not a finite number")
    if type(node) is not int:
        return
    key = next((k for k in reversed(keys) if isinstance(k, str)), "")
    if key in K8S_INT32:
        low, high = K8S_INT32[key]
    elif key in K8S_PORTS:
        low, high = PORT
    elif key in K8S_INT64:
        low, high = K8S_INT64[key]
    else:
        low, high = INT64
    if not low <= node <= high:
        out.append(f"{where} = {node}: outside [{low}, {high}]")


def quantity_value(text: str) -> Fraction | None:
    """A resource.Quantity string as a number of its base unit, or None when it does not parse."""
    m = _QUANTITY.fullmatch(str(text))
    if not m:
        return None
    suffix = m.group("suffix") or ""
    if suffix not in _SUFFIX:  # an exponent: 1e3
        return Fraction(m.group("num")) * Fraction(10) ** int(suffix[1:])
    return Fraction(m.group("num")) * _SUFFIX[suffix]


def _quantity(where: str, key: str, value, out: list[str]) -> None:
    number = quantity_value(value) if isinstance(value, str) else value
    if number is None or isinstance(number, bool) or not isinstance(number, (int, float, Fraction)):
        out.append(f"{where} = {value!r}: not a Kubernetes quantity")
        return
    if number <= 0:
        out.append(f"{where} = {value!r}: not positive")
    if number > QUANTITY_MAX:
        out.append(f"{where} = {value!r}: above 2^63-1, which a quantity caps silently")
    if key == "cpu" and number * 1000 > QUANTITY_MAX:
        out.append(f"{where} = {value!r}: above 2^63-1 millicores")
    if key == "nvidia.com/gpu" and number != int(number):
        out.append(f"{where} = {value!r}: GPUs are whole")


# --- Prometheus ------------------------------------------------------------------------


def prometheus_duration_ms(text: str) -> int | None:
    """A Prometheus duration in milliseconds, or None when Prometheus rejects it."""
    m = _PROM_DURATION.fullmatch(str(text))
    if not m or not text:
        return None
    total = 0
    for unit, group in zip(("y", "w", "d", "h", "m", "s", "ms"), (2, 4, 6, 8, 10, 12, 14)):
        if m.group(group):
            total += int(m.group(group)) * _PROM_UNIT_MS[unit]
    return total if total <= INT64[1] // 10**6 else None  # time.Duration: int64 nanoseconds


def _duration(where: str, text, out: list[str], positive: bool) -> None:
    ms = prometheus_duration_ms(text) if isinstance(text, str) else None
    if ms is None:
        out.append(f"{where} = {text!r}: not a Prometheus duration")
    elif positive and ms == 0:
        out.append(f"{where} = {text!r}: must be above zero")


def _expression(where: str, expr: str, out: list[str]) -> None:
    stripped = re.sub(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", "''", expr)  # no numbers inside strings
    for window in _RANGE.findall(stripped):
        _duration(f"{where} range window", window, out, positive=True)
    for token in _NOT_FINITE.findall(stripped):
        out.append(f"{where}: {token!r} is not a finite threshold")
    for token in _NUMBER_TOKEN.findall(re.sub(r"\[[^\]]*\]", "", stripped)):
        if not math.isfinite(float(token)):
            out.append(f"{where}: {token} is not a finite number")


def _prometheus(path: str, doc, out: list[str]) -> None:
    if not isinstance(doc, dict):
        return
    spec = doc.get("spec", doc) if doc.get("kind") == "PrometheusRule" else doc
    for group in spec.get("groups") or []:
        where = f"{path}: group {group.get('name')}"
        if "interval" in group:
            _duration(f"{where} interval", group["interval"], out, positive=True)
        for rule in group.get("rules") or []:
            name = rule.get("record") or rule.get("alert")
            _expression(f"{where} rule {name} expr", str(rule.get("expr", "")), out)
            if "for" in rule:
                _duration(f"{where} rule {name} for", rule["for"], out, positive=False)
    # promtool test files
    if "evaluation_interval" in doc:
        _duration(f"{path}: evaluation_interval", doc["evaluation_interval"], out, positive=True)
    for test in doc.get("tests") or []:
        where = f"{path}: test {test.get('name')!r}"
        if "interval" in test:
            _duration(f"{where} interval", test["interval"], out, positive=True)
        for series in test.get("input_series") or []:
            values = str(series.get("values", ""))
            for token in re.findall(r"[^\s+x-]+", values.replace("_", " ")):
                try:
                    number = float(token)
                except ValueError:
                    continue
                if not math.isfinite(number):
                    out.append(f"{where} series {series.get('series')}: {token} is not a finite number")
        for check in (test.get("alert_rule_test") or []) + (test.get("promql_expr_test") or []):
            _duration(f"{where} eval_time", check.get("eval_time"), out, positive=False)
            if "expr" in check:
                _expression(f"{where} promql_expr_test", str(check["expr"]), out)
            for sample in check.get("exp_samples") or []:
                value = sample.get("value")
                if isinstance(value, float) and not math.isfinite(value):
                    out.append(f"{where} exp_samples value {value}: not a finite number")


# --- text protos -----------------------------------------------------------------------

_PROTO_FIELD = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?::\s*(.+?)|\{\s*value:\s*(.+?)\s*\})\s*$")


def _text_proto(path: str, text: str, bounds: dict, default: tuple[int, int], out: list[str]) -> None:
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        m = _PROTO_FIELD.match(line)
        if not m:
            continue
        field, raw = m.group(1), (m.group(2) if m.group(2) is not None else m.group(3))
        if raw.startswith(('"', "'")) or re.fullmatch(r"[A-Z_][A-Z0-9_]*", raw):  # a string or an enum
            continue
        values = json.loads(raw) if raw.startswith("[") else [raw]
        for value in values:
            if isinstance(value, str) and not re.fullmatch(r"-?[0-9]+", value):
                out.append(f"{path}: {field} = {value}: not an integer")
                continue
            number = int(value)
            low, high = bounds.get(field, default)
            if not low <= number <= high:
                out.append(f"{path}: {field} = {number}: outside [{low}, {high}]")
