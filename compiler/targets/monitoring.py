"""monitoring/: SLO recording and alerting rules, their promtool tests, a Grafana dashboard.

Generated only when the spec has a `serve` block. `slo_rules.rule_groups(plan)` is
the one source of the rules: monitoring/alerts.yaml and k8s/prometheusrule.yaml render the
same groups.

The server's own metrics (checked against a running Triton 2.51 and TF Serving's
source, tensorflow_serving/servables/tensorflow/util.cc):

* Triton: counters `nv_inference_request_success{model,version}` and
  `nv_inference_request_failure{model,version,reason}` (reason REJECTED, CANCELED,
  BACKEND, OTHER; created at 0 when the model loads). Triton 2.51 has no request
  latency histogram (its only histogram is the first-response one of decoupled
  models), so the p99 is the summary `nv_inference_request_summary_us{quantile="0.99"}`
  that `--metrics-config=summary_latencies=true` turns on (the Deployment passes it);
  a summary cannot be aggregated across pods, so the slowest pod's p99 is taken (an
  upper bound of the service's p99).
* TF Serving: counter `:tensorflow:serving:request_count{model_name,status}` (status
  is the canonical code name, "OK" on success) and histogram
  `:tensorflow:serving:request_latency_bucket{model_name,API,entrypoint,le}` in
  microseconds, both on the REST port at /monitoring/prometheus/metrics when
  monitoring.config enables Prometheus.

What counts as an error: server-side failures only. Triton: every failure reason but
CANCELED (the client gave up); TF Serving: UNKNOWN, DEADLINE_EXCEEDED,
RESOURCE_EXHAUSTED, ABORTED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS (the
codes gRPC maps from 5xx); INVALID_ARGUMENT, NOT_FOUND and the like are the client's.
Requests every server rejects before they reach the model (malformed input) are
counted by neither server.

Alerts follow the multiwindow, multi-burn-rate recipe of the Google SRE workbook
("Alerting on SLOs", table 5-8), with error budget B = serve.sla.error_rate (the
IR defaults it to 1 - availability): page when the error ratio exceeds 14.4 B over
1h and 5m or 6 B over 6h and 30m; ticket when it exceeds 3 B over 1d and 2h or B
over 3d and 6h. A burn rate whose threshold is 1 or more (B >= 1/14.4, ...) cannot
fire: such a loose SLO has no fast-burn page. The p99 latency alert fires when the
p99 stays above serve.sla.p99_latency for 10 minutes.

Spec strings reach PromQL only as string literals (Go-escaped, built here), never in
alert labels or annotations: Prometheus expands `{{ }}` there as Go templates, so
annotations name the namespace and model through `$labels`.
"""

import hashlib
import math
from typing import NamedTuple

from . import Artifact, BuildContext
from .k8s_common import KV, ServingPlan, serving_plan
from .slo_rules import (
    BURN_ALERTS,
    ERROR_RATIO,
    LATENCY_ALERT,
    P99,
    REQUESTS,
    AlertText,
    Group,
    burn_text,
    duration,
    latency_text,
    matchers,
    number,
    own_matchers,
    percent,
    rule_groups,
)

# --- context types -----------------------------------------------------------------


class RulesContext(NamedTuple):
    groups: list[Group]


class Series(NamedTuple):
    series: str
    values: str


class ExpectedAlert(NamedTuple):
    labels: list[KV]
    annotations: list[KV]


class AlertCheck(NamedTuple):
    eval_time: str
    alertname: str
    expected: list[ExpectedAlert]


class SampleCheck(NamedTuple):
    eval_time: str
    expr: str
    labels: str
    value: float


class TestCase(NamedTuple):
    name: str
    series: list[Series]
    alerts: list[AlertCheck]
    samples: list[SampleCheck]


class RuleTestsContext(NamedTuple):
    rule_file: str
    tests: list[TestCase]


class Target(NamedTuple):
    expr: str
    legend: str


class Panel(NamedTuple):
    id: int
    title: str
    description: str
    unit: str
    targets: list[Target]
    threshold: float | None
    x: int
    y: int
    w: int
    h: int


class DashboardContext(NamedTuple):
    uid: str
    title: str
    tags: list[str]
    panels: list[Panel]


# --- promtool tests ----------------------------------------------------------------

PER_MINUTE = 6000  # requests per minute in the test series (100 req/s), at least
MAX_PER_MINUTE_EXPONENT = 14  # at most 10^14 a minute: 15 minutes of them stay below 2^53


def _series_name(metric: str, labels: list[tuple[str, str]]) -> str:
    return metric + matchers([(k, "=", v) for k, v in labels])


def _counter(per_minute: int, minutes: int) -> str:
    return f"0+{per_minute}x{minutes}"


def _traffic(plan: ServingPlan, total: int, errors: int, client_errors: int, minutes: int) -> list[Series]:
    """Counters for `total` requests a minute, `errors` of them failing on the server
    and `client_errors` failing through the client (which must not count)."""
    ok = total - errors - client_errors
    ns = ("namespace", plan.namespace)
    if plan.platform == "tf-serving":
        labels = [("model_name", plan.model), ns]
        return [
            Series(
                _series_name(":tensorflow:serving:request_count", labels + [("status", status)]),
                _counter(count, minutes),
            )
            for status, count in (("OK", ok), ("UNAVAILABLE", errors), ("INVALID_ARGUMENT", client_errors))
        ]
    labels = [("model", plan.model), ns, ("version", "1")]
    out = [Series(_series_name("nv_inference_request_success", labels), _counter(ok, minutes))]
    for reason, count in (("BACKEND", errors), ("CANCELED", client_errors), ("REJECTED", 0), ("OTHER", 0)):
        out.append(
            Series(
                _series_name("nv_inference_request_failure", labels + [("reason", reason)]), _counter(count, minutes)
            )
        )
    return out


def _latency(plan: ServingPlan, factor: float, minutes: int) -> list[Series]:
    """Latency series whose p99 is `factor`-ish times the SLA (below 1: within it)."""
    sla_us = plan.p99_s * 1e6
    ns = ("namespace", plan.namespace)
    if plan.platform == "tf-serving":
        # Two finite buckets around the SLA: every request in the first gives a p99 of
        # 0.99 x 0.5 SLA; every request in the second 0.5 SLA + 0.99 x 1.5 SLA.
        labels = [("API", "predict"), ("entrypoint", "REST"), ("model_name", plan.model), ns]
        low, high = number(0.5 * sla_us), number(2 * sla_us)
        slow = factor > 1
        return [
            Series(
                _series_name(":tensorflow:serving:request_latency_bucket", labels + [("le", le)]),
                _counter(count, minutes),
            )
            for le, count in ((low, 0 if slow else PER_MINUTE), (high, PER_MINUTE), ("+Inf", PER_MINUTE))
        ]
    labels = [("model", plan.model), ns, ("quantile", "0.99"), ("version", "1")]
    return [Series(_series_name("nv_inference_request_summary_us", labels), f"{number(factor * sla_us)}x{minutes}")]


def _expected(plan: ServingPlan, severity: str, slo: str, texts: tuple[AlertText, AlertText]) -> ExpectedAlert:
    summary, detail = texts
    return ExpectedAlert(
        [KV("model", plan.model), KV("namespace", plan.namespace), KV("severity", severity), KV("slo", slo)],
        [
            KV("description", detail.expand(plan.namespace, plan.model)),
            KV("summary", summary.expand(plan.namespace, plan.model)),
        ],
    )


def _burn_fires(ratio: float, budget: float, pairs) -> bool:
    return any(ratio > rate * budget for rate, _, _ in pairs)


def _checks(plan: ServingPlan, at: str, ratio: float, latency_fires: bool) -> list[AlertCheck]:
    out = []
    for severity, name, pairs in BURN_ALERTS:
        fires = _burn_fires(ratio, plan.error_budget, pairs)
        expected = [_expected(plan, severity, "availability", burn_text(plan, severity, pairs))] if fires else []
        out.append(AlertCheck(at, name, expected))
    expected = [_expected(plan, "page", "latency", latency_text(plan))] if latency_fires else []
    out.append(AlertCheck(at, LATENCY_ALERT, expected))
    return out


def _errors_for(ratio: float, total: int) -> int:
    return max(1, min(total, round(ratio * total)))


def rule_tests(plan: ServingPlan) -> RuleTestsContext:
    budget = plan.error_budget
    minutes = 15  # promtool evaluates every rule every minute up to the last eval_time: keep it short
    own_labels = matchers([("model", "=", plan.model), ("namespace", "=", plan.namespace)])
    # Enough requests a minute that 4.5x a tight budget (99.999%) is still a whole number,
    # but few enough that promtool's float64 counters stay exact (15 minutes of them
    # below 2^53). A budget of 0 (error_rate = 0: any server error burns it) needs none.
    exponent = math.ceil(3 - math.log10(budget)) if budget > 0 else 0
    total = max(PER_MINUTE, 10 ** min(exponent, MAX_PER_MINUTE_EXPONENT))
    client = total // 100  # 1% client errors in every case: never an SLO error
    tests = []
    # Healthy: no server errors, p99 at half the SLA. Nothing fires; the error ratio is 0.
    ratio_5m = ERROR_RATIO.format(w="5m")
    tests.append(
        TestCase(
            "healthy traffic: nothing fires",
            _traffic(plan, total, 0, client, minutes) + _latency(plan, 0.5, minutes),
            _checks(plan, "5m", 0.0, False),
            [SampleCheck("5m", ratio_5m, ratio_5m + own_labels, 0.0)],
        )
    )
    # Fast burn: half the requests fail (all of them when the budget is that loose).
    fast = 0.5 if 14.4 * budget < 0.5 else 1.0
    errors = _errors_for(fast, total)
    ratio = errors / total
    tests.append(
        TestCase(
            "fast burn: page (and ticket) fire",
            _traffic(plan, total, errors, 0, minutes) + _latency(plan, 0.5, minutes),
            _checks(plan, "5m", ratio, False),
            [],
        )
    )
    # Slow burn: 4.5x the budget, above the ticket's 3x, below the page's 6x.
    errors = _errors_for(4.5 * budget, total)
    ratio = errors / total
    tests.append(
        TestCase(
            "slow burn: ticket fires, page does not",
            _traffic(plan, total, errors, 0, minutes) + _latency(plan, 0.5, minutes),
            _checks(plan, "5m", ratio, False),
            [],
        )
    )
    # Slow responses: p99 at twice the SLA, no errors. Pending for 10 minutes, then firing.
    slow_series = _traffic(plan, total, 0, 0, minutes) + _latency(plan, 2.0, minutes)
    tests.append(
        TestCase(
            "p99 above the SLA: latency alert fires after 10 minutes",
            slow_series,
            _checks(plan, "5m", 0.0, False) + _checks(plan, "12m", 0.0, True),
            [],
        )
    )
    return RuleTestsContext("alerts.yaml", tests)


# --- dashboard ---------------------------------------------------------------------


def dashboard(plan: ServingPlan) -> DashboardContext:
    own = own_matchers(plan)
    ns = ("namespace", "=", plan.namespace)
    deployment = matchers([ns, ("deployment", "=", plan.name)])
    hpa = matchers([ns, ("horizontalpodautoscaler", "=", plan.name)])
    panels = [
        Panel(
            1,
            "Request rate",
            "Requests per second (5m rate), successes and failures.",
            "reqps",
            [Target(f"{REQUESTS.format(w='5m')}{own}", "requests/s")],
            None,
            0,
            0,
            12,
            8,
        ),
        Panel(
            2,
            "Error ratio",
            f"Server-side error ratio; the line is the {percent(plan.error_budget)} error budget.",
            "percentunit",
            [Target(f"{ERROR_RATIO.format(w='5m')}{own}", "5m"), Target(f"{ERROR_RATIO.format(w='1h')}{own}", "1h")],
            plan.error_budget,
            12,
            0,
            12,
            8,
        ),
        Panel(
            3,
            "p99 latency",
            f"p99 request latency; the line is the {duration(plan.p99_s)} SLA.",
            "s",
            [Target(f"{P99}{own}", "p99")],
            plan.p99_s,
            0,
            8,
            12,
            8,
        ),
        Panel(
            4,
            "Replicas",
            f"Available and desired replicas; the HPA runs {plan.replicas.min} to {plan.replicas.max}.",
            "short",
            [
                Target(f"kube_deployment_status_replicas_available{deployment}", "available"),
                Target(f"kube_horizontalpodautoscaler_status_desired_replicas{hpa}", "desired"),
                Target(f"kube_horizontalpodautoscaler_spec_min_replicas{hpa}", "min"),
                Target(f"kube_horizontalpodautoscaler_spec_max_replicas{hpa}", "max"),
            ],
            None,
            12,
            8,
            12,
            8,
        ),
    ]
    digest = hashlib.sha256(plan.namespace.encode()).hexdigest()[:8]
    uid = f"llmc-{plan.name[:26]}-{digest}"
    return DashboardContext(uid, f"{plan.model} ({plan.namespace}) - llmc", ["llmc", plan.platform], panels)


# --- artifacts ---------------------------------------------------------------------


def artifacts(ctx: BuildContext) -> list[Artifact]:
    plan = serving_plan(ctx)
    if plan is None:
        return []
    return [
        Artifact("monitoring/alerts.yaml", "monitoring/alerts.yaml.j2", RulesContext(rule_groups(plan))),
        Artifact("monitoring/alerts.test.yaml", "monitoring/alerts.test.yaml.j2", rule_tests(plan)),
        Artifact("monitoring/dashboard.json", "monitoring/dashboard.json.j2", dashboard(plan)),
    ]
