"""The SLO rules of a served model, as Prometheus rule groups (not a target: TARGETS
does not list it). monitoring/alerts.yaml and k8s/prometheusrule.yaml render the
same groups; monitoring.py's docstring explains the metrics and the alerting recipe.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from .k8s_common import KV, ServingPlan

WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
# (severity, alert name, [(burn rate, long window, short window)]): SRE workbook table 5-8.
BURN_ALERTS = (
    ("page", "LlmcErrorBudgetFastBurn", ((14.4, "1h", "5m"), (6.0, "6h", "30m"))),
    ("ticket", "LlmcErrorBudgetSlowBurn", ((3.0, "1d", "2h"), (1.0, "3d", "6h"))),
)
LATENCY_ALERT = "LlmcLatencyP99AboveSla"
LATENCY_FOR = "10m"
TFS_SERVER_ERRORS = "UNKNOWN|DEADLINE_EXCEEDED|RESOURCE_EXHAUSTED|ABORTED|UNIMPLEMENTED|INTERNAL|UNAVAILABLE|DATA_LOSS"

REQUESTS = "namespace_model:llmc_requests:rate{w}"
ERRORS = "namespace_model:llmc_request_errors:rate{w}"
ERROR_RATIO = "namespace_model:llmc_request_errors:ratio_rate{w}"
P99 = "namespace_model:llmc_request_latency_seconds:p99"


class Rule(NamedTuple):
    record: str | None
    alert: str | None
    expr: str
    for_: str | None
    labels: list[KV]
    annotations: list[KV]


class Group(NamedTuple):
    name: str
    interval: str
    rules: list[Rule]


# --- PromQL ------------------------------------------------------------------------


_PROMQL_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_PROMQL_SPECIAL = re.compile(r"[\\'\x00-\x1f\x7f]")


def promql_string(value: str) -> str:
    """A single-quoted PromQL string literal (Go escapes), so that rules embedded in
    YAML double-quoted scalars read without backslashes."""
    return "'" + _PROMQL_SPECIAL.sub(_promql_escape, value) + "'"


def _promql_escape(match: re.Match) -> str:
    ch = match.group()
    return _PROMQL_ESCAPES.get(ch) or f"\\x{ord(ch):02x}"


def matchers(pairs) -> str:
    return "{" + ", ".join(f"{name}{op}{promql_string(value)}" for name, op, value in pairs) + "}"


def number(value: float) -> str:
    return repr(round(float(value), 12))


def percent(value: float) -> str:
    return f"{value * 100:.4g}%"


def duration(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:g}ms" if ms < 1000 else f"{seconds:g}s"


class Source(NamedTuple):
    """The server's metrics for one platform: PromQL builders over a window."""

    platform: str
    namespace: str
    model: str

    def _own(self, extra=()) -> str:
        label = "model_name" if self.platform == "tf-serving" else "model"
        return matchers([("namespace", "=", self.namespace), (label, "=", self.model)] + list(extra))

    def _sum_rate(self, metric: str, window: str, extra=()) -> str:
        return f"sum by (namespace) (rate({metric}{self._own(extra)}[{window}]))"

    def requests(self, window: str) -> str:
        if self.platform == "tf-serving":
            return self._sum_rate(":tensorflow:serving:request_count", window)
        success = self._sum_rate("nv_inference_request_success", window)
        failures = self._sum_rate("nv_inference_request_failure", window)
        return f"{success} + ({failures} or ({success} * 0))"

    def errors(self, window: str) -> str:
        """Server-side failures, or 0 while requests flow without any failure series."""
        if self.platform == "tf-serving":
            failed = self._sum_rate(":tensorflow:serving:request_count", window, [("status", "=~", TFS_SERVER_ERRORS)])
            return f"{failed} or ({self.requests(window)} * 0)"
        failed = self._sum_rate("nv_inference_request_failure", window, [("reason", "!=", "CANCELED")])
        return f"{failed} or ({self._sum_rate('nv_inference_request_success', window)} * 0)"

    def p99_seconds(self) -> str:
        if self.platform == "tf-serving":
            return (
                "histogram_quantile(0.99, sum by (namespace, le) "
                f"(rate(:tensorflow:serving:request_latency_bucket{self._own()}[5m]))) / 1e6"
            )
        return f"max by (namespace) (nv_inference_request_summary_us{self._own([('quantile', '=', '0.99')])}) / 1e6"


def source_of(plan: ServingPlan) -> Source:
    return Source(plan.platform, plan.namespace, plan.model)


def own_matchers(plan: ServingPlan) -> str:
    return matchers([("namespace", "=", plan.namespace), ("model", "=", plan.model)])


_LABEL_REF = re.compile(r"\{\{ \$labels\.(namespace|model) \}\}")


class AlertText(NamedTuple):
    """An annotation as a Prometheus template (only $labels) and as promtool expands it."""

    template: str

    def expand(self, namespace: str, model: str) -> str:
        values = {"namespace": namespace, "model": model}
        return _LABEL_REF.sub(lambda m: values[m.group(1)], self.template)


def burn_text(plan: ServingPlan, severity: str, pairs) -> tuple[AlertText, AlertText]:
    budget = plan.error_budget
    windows = " or ".join(f"{rate:g}x over {long} and {short}" for rate, long, short in pairs)
    fastest = max(rate for rate, _, _ in pairs)
    days = 30 / fastest
    summary = AlertText(
        f"{{{{ $labels.model }}}} in {{{{ $labels.namespace }}}} is burning its error budget ({windows})"
    )
    thresholds = " / ".join(percent(rate * budget) for rate, _, _ in pairs)
    detail = AlertText(
        f"The server-side error ratio is above {thresholds}"
        f" ({windows} the {percent(budget)} error budget, availability SLO "
        f"{percent(plan.availability)}): at {fastest:g}x a 30-day budget lasts {days:.3g} days. "
        f"Severity {severity}."
    )
    return summary, detail


def latency_text(plan: ServingPlan) -> tuple[AlertText, AlertText]:
    summary = AlertText(
        f"{{{{ $labels.model }}}} in {{{{ $labels.namespace }}}} has a p99 latency above its {duration(plan.p99_s)} SLA"
    )
    detail = AlertText(
        f"The p99 request latency has stayed above {duration(plan.p99_s)} for {LATENCY_FOR} "
        f"(SLA: {plan.throughput_rps:g} req/s at p99 {duration(plan.p99_s)}; the plan needs "
        f"{plan.replicas.needed} replica{'' if plan.replicas.needed == 1 else 's'}, "
        f"the HPA runs {plan.replicas.min}-{plan.replicas.max})."
    )
    return summary, detail


def rule_groups(plan: ServingPlan) -> list[Group]:
    src = source_of(plan)
    own = own_matchers(plan)
    model = [KV("model", plan.model)]
    recording: list[Rule] = []
    for w in WINDOWS:
        recording.append(Rule(REQUESTS.format(w=w), None, src.requests(w), None, model, []))
        recording.append(Rule(ERRORS.format(w=w), None, src.errors(w), None, model, []))
        recording.append(
            Rule(
                ERROR_RATIO.format(w=w),
                None,
                f"{ERRORS.format(w=w)}{own} / {REQUESTS.format(w=w)}{own}",
                None,
                model,
                [],
            )
        )
    recording.append(Rule(P99, None, src.p99_seconds(), None, model, []))
    alerts: list[Rule] = []
    for severity, name, pairs in BURN_ALERTS:
        terms = []
        for rate, long, short in pairs:
            threshold = number(rate * plan.error_budget)
            terms.append(
                f"({ERROR_RATIO.format(w=long)}{own} > {threshold}"
                f" and {ERROR_RATIO.format(w=short)}{own} > {threshold})"
            )
        summary, detail = burn_text(plan, severity, pairs)
        alerts.append(
            Rule(
                None,
                name,
                " or ".join(terms),
                None,
                [KV("severity", severity), KV("slo", "availability")],
                [KV("summary", summary.template), KV("description", detail.template)],
            )
        )
    summary, detail = latency_text(plan)
    alerts.append(
        Rule(
            None,
            LATENCY_ALERT,
            f"{P99}{own} > {number(plan.p99_s)}",
            LATENCY_FOR,
            [KV("severity", "page"), KV("slo", "latency")],
            [KV("summary", summary.template), KV("description", detail.template)],
        )
    )
    prefix = f"llmc.{plan.name}"
    return [Group(f"{prefix}.recording", "30s", recording), Group(f"{prefix}.alerts", "30s", alerts)]
