"""monitoring/: SLO recording and alerting rules, their promtool tests, a Grafana dashboard.

Generated only when the spec has a `serve` block. `slo_rules.rule_groups(plan)` is
the one source of the rules: monitoring/alerts.yaml and k8s/prometheusrule.yaml render the
same groups. slo_tests.py writes the promtool cases (alerts.test.yaml, and the day-long
ones in alerts.slow.test.yaml).

The server's own metrics (checked against a running Triton 2.51 and TF Serving's
source: tensorflow_serving/servables/tensorflow/util.cc, model_servers/http_server.cc):

* Triton: counters `nv_inference_request_success{model,version}` and
  `nv_inference_request_failure{model,version,reason}` (reason REJECTED, CANCELED,
  BACKEND, OTHER; created at 0 when the model loads). Triton 2.51 has no request
  latency histogram (its only histogram is the first-response one of decoupled
  models); its p99 is the summary `nv_inference_request_summary_us{quantile="0.99"}`
  that `--metrics-config=summary_latencies=true` turns on (the Deployment passes it),
  a one-minute window per pod. A summary is no event ratio: the latency alert on it is
  a ticket, on the pods' p99s weighted by their traffic, with a minimum of traffic.
* TF Serving: counter `:tensorflow:serving:request_count{model_name,status}` (every
  request, the kubelet's model-status probes included) and histogram
  `:tensorflow:serving:request_latency{model_name,API,entrypoint}` in microseconds
  (successful requests only; buckets 10 x 1.8^k), both on the REST port at
  /monitoring/prometheus/metrics when monitoring.config enables Prometheus. The SLIs
  count requests to the model APIs (API predict, classify, regress) from the histogram
  and failures from request_count, so probes never dilute a ratio.

What counts as an error: server-side failures only. Triton: every failure reason but
CANCELED (the client gave up); TF Serving: UNKNOWN, DEADLINE_EXCEEDED,
RESOURCE_EXHAUSTED, ABORTED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS (the
codes gRPC maps from 5xx); INVALID_ARGUMENT, NOT_FOUND and the like are the client's.
Requests every server rejects before they reach the model (malformed input) are
counted by neither server.

Alerts follow the multiwindow, multi-burn-rate recipe of the Google SRE workbook
("Alerting on SLOs", table 5-8), per SLO with budget B: page when the bad-event ratio
exceeds 14.4 B over 1h and 5m or 6 B over 6h and 30m; ticket when it exceeds 3 B over
1d and 2h or B over 3d and 6h; never on fewer than 10 bad events in the long window.
Availability's B is serve.sla.error_rate (the IR defaults it to 1 - availability);
latency's (TF Serving) is 1%: 99% of answered requests within the SLA's p99, counted
at the histogram's first bucket bound at or above it (the annotation states it). A
page also fires when the job has no target up for 5 minutes, and a ticket when it is
up without requests for 45. Every selector names the namespace, the scrape job (the
Service) and the model.

Spec strings reach PromQL only as string literals (Go-escaped, built here), never in
alert labels or annotations: Prometheus expands `{{ }}` there as Go templates, so
annotations name the namespace, job and model through `$labels`.
"""

import hashlib
from typing import NamedTuple

from . import Artifact, BuildContext
from .k8s_common import ServingPlan, serving_plan
from .slo_rules import ERROR_RATIO, P99, REQUESTS, Group, duration, matchers, own_matchers, percent, rule_groups
from .slo_tests import rule_tests

# --- context types -----------------------------------------------------------------


class RulesContext(NamedTuple):
    groups: list[Group]


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
            "Requests per second to the model (5m rate), answered and failed; probes excluded.",
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
    fast_tests, slow_tests = rule_tests(plan)
    return [
        Artifact("monitoring/alerts.yaml", "monitoring/alerts.yaml.j2", RulesContext(rule_groups(plan))),
        Artifact("monitoring/alerts.test.yaml", "monitoring/alerts.test.yaml.j2", fast_tests),
        Artifact("monitoring/alerts.slow.test.yaml", "monitoring/alerts.test.yaml.j2", slow_tests),
        Artifact("monitoring/dashboard.json", "monitoring/dashboard.json.j2", dashboard(plan)),
    ]
