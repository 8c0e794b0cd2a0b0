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

from typing import NamedTuple

from . import Artifact, BuildContext
from .k8s_common import ServingPlan, serving_plan
from .slo_rules import (
    ATTAINMENT,
    BUDGET_REMAINING,
    BURN_POLICIES,
    BURN_RATE,
    ERROR_RATIO,
    ERRORS,
    OBJECTIVE,
    P99,
    REQUESTS,
    RUNBOOK,
    AdapterRule,
    AlertText,
    Group,
    Rule,
    dashboard_uid,
    dashboard_url,
    duration,
    matchers,
    own_matchers,
    percent,
    requests_metric,
    rule_groups,
    slo_matchers,
    slos,
    source_of,
)
from .slo_tests import rule_tests

# --- context types -----------------------------------------------------------------


class RulesContext(NamedTuple):
    groups: list[Group]


class Target(NamedTuple):
    expr: str
    legend: str


class Threshold(NamedTuple):
    color: str
    value: float | None  # None: the base colour, below every other step


class Panel(NamedTuple):
    id: int
    kind: str  # "timeseries" | "stat"
    title: str
    description: str
    unit: str
    targets: list[Target]
    thresholds: list[Threshold]
    line: bool  # draw the thresholds as lines (a timeseries' target)
    x: int
    y: int
    w: int
    h: int


class AlertQuery(NamedTuple):
    expr: str


class DashboardContext(NamedTuple):
    uid: str
    title: str
    tags: list[str]
    alerts: AlertQuery  # the annotation query: the SLO's alerts, when they fire
    panels: list[Panel]


# --- dashboard ---------------------------------------------------------------------

BASE = Threshold("green", None)


def dashboard(plan: ServingPlan) -> DashboardContext:
    own = own_matchers(plan)
    ns = ("namespace", "=", plan.namespace)
    deployment = matchers([ns, ("deployment", "=", plan.name)])
    hpa = matchers([ns, ("horizontalpodautoscaler", "=", plan.name)])
    slo_list = slos(plan)
    panels: list[Panel] = []

    def add(kind, title, description, unit, targets, thresholds, w, h, line=False):
        """Left to right on Grafana's 24-column grid, a new row when the width is used."""
        x, y = 0, 0
        if panels:
            last = panels[-1]
            x, y = last.x + last.w, last.y
            if x + w > 24:
                x, y = 0, y + max(p.h for p in panels if p.y == y)
        panels.append(Panel(len(panels) + 1, kind, title, description, unit, targets, thresholds, line, x, y, w, h))

    def graph(title: str, description: str, unit: str, targets: list[Target], line_at: float | None) -> None:
        """A half-width time series, with a red line at `line_at`."""
        steps = [BASE] + ([Threshold("red", line_at)] if line_at is not None else [])
        add("timeseries", title, description, unit, targets, steps, 12, 8, line=line_at is not None)

    # Row 1: each SLO over its 30-day period (Sloth's view).
    for slo in slo_list:
        sel = slo_matchers(plan, slo.name)
        objective = 1 - slo.budget
        add(
            "stat",
            f"{slo.name.capitalize()}: attainment over 30 days",
            f"1 - bad events / all events over the last 30 days ({ATTAINMENT}), beside the objective "
            f"({percent(objective)}); red below it. As far back as Prometheus keeps data: 30 days "
            "needs a retention of 30d.",
            "percentunit",
            [Target(f"{ATTAINMENT}{sel}", "attained"), Target(f"{OBJECTIVE}{sel}", "objective")],
            [Threshold("red", None), Threshold("green", objective)],
            6,
            5,
        )
        add(
            "stat",
            f"{slo.name.capitalize()}: error budget remaining",
            f"1 - (bad-event ratio over 30 days) / the error budget ({percent(slo.budget)}), "
            f"{BUDGET_REMAINING}: 100% untouched, 0 spent, below 0 the SLO is missed for the period.",
            "percentunit",
            [Target(f"{BUDGET_REMAINING}{sel}", "remaining")],
            [Threshold("red", None), Threshold("orange", 0.0), Threshold("green", 0.25)],
            6,
            5,
        )
    fastest = BURN_POLICIES[0].branches[0]
    graph(
        "Burn rate",
        f"Each SLO's bad-event ratio over 5m and 1h divided by its error budget ({BURN_RATE.format(w='5m')}, "
        f"{BURN_RATE.format(w='1h')}): "
        f"1 spends a 30-day budget in 30 days. The line is the page's {fastest.rate:g}x "
        f"(over {fastest.long} and {fastest.short}; also 6x over 6h and 30m; tickets at 3x and 1x).",
        "short",
        [
            Target(f"{BURN_RATE.format(w=w)}{slo_matchers(plan, slo.name)}", f"{slo.name} {w}")
            for slo in slo_list
            if slo.budget > 0
            for w in ("5m", "1h")
        ],
        fastest.rate,
    )
    capacity = (
        [
            Target(
                f"kube_deployment_status_replicas_available{deployment} * {plan.replica_capacity_rps:.6g}",
                "capacity of the available replicas",
            )
        ]
        if plan.replica_capacity_rps is not None
        else []
    )
    capacity_words = (
        f"; the available replicas times one replica's planned capacity ({plan.replica_capacity_rps:.4g} req/s "
        "in full batches, the plan's estimate)"
        if plan.replica_capacity_rps is not None
        else ""
    )
    graph(
        "Request rate against planned capacity",
        f"Requests per second to the model (5m rate; probes excluded) and the server-side errors among them"
        f"{capacity_words}. The line is the SLA's {plan.throughput_rps:g} req/s.",
        "reqps",
        [
            Target(f"{REQUESTS.format(w='5m')}{own}", "requests/s"),
            Target(f"{ERRORS.format(w='5m')}{own}", "server errors/s"),
        ]
        + capacity,
        plan.throughput_rps,
    )
    graph(
        "Error ratio",
        f"Server-side errors over requests (5m and 1h); the line is the {percent(plan.error_budget)} error budget.",
        "percentunit",
        [Target(f"{ERROR_RATIO.format(w='5m')}{own}", "5m"), Target(f"{ERROR_RATIO.format(w='1h')}{own}", "1h")],
        plan.error_budget,
    )
    p99_source = (
        "from TF Serving's latency histogram (model APIs)"
        if plan.platform == "tf-serving"
        else "the pods' one-minute summaries, weighted by their requests"
    )
    graph(
        "p99 latency against target",
        f"p99 request latency, {p99_source}; the line is the SLA's {duration(plan.p99_s)}.",
        "s",
        [Target(f"{P99}{own}", "p99")],
        plan.p99_s,
    )
    if plan.platform == "tf-serving":
        queue = matchers([ns, ("job", "=", plan.name)])
        queued = (
            f"sum by (namespace, job) (rate(:tensorflow:serving:batching_session:queuing_latency_sum{queue}[5m]))"
            f" / sum by (namespace, job) (rate(:tensorflow:serving:batching_session:queuing_latency_count{queue}[5m]))"
            " / 1e6"
        )
        queue_words = "Mean time a request waits in TF Serving's batching queue (5m)"
    else:
        model = matchers([ns, ("job", "=", plan.name), ("model", "=", plan.model)])
        queued = (
            f"sum by (namespace, job) (rate(nv_inference_queue_duration_us{model}[5m]))"
            f" / sum by (namespace, job) (rate(nv_inference_request_success{model}[5m])) / 1e6"
        )
        queue_words = "Mean time a successful request waited in Triton's queue (5m)"
    graph(
        "Queue time",
        f"{queue_words}, against the SLA's p99 of {duration(plan.p99_s)}: a queue that grows toward it "
        "is the first sign of too few replicas.",
        "s",
        [Target(queued, "mean queue time")],
        plan.p99_s,
    )
    graph(
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
    )
    alerts = AlertQuery(f"ALERTS{matchers([ns, ('job', '=', plan.name), ('alertstate', '=', 'firing')])}")
    return DashboardContext(
        dashboard_uid(plan), f"{plan.model} ({plan.namespace}) - llmc", ["llmc", plan.platform], alerts, panels
    )


# --- runbook and Alertmanager ------------------------------------------------------


class RunbookAlert(NamedTuple):
    name: str
    severity: str
    summary: str
    meaning: str
    checks: list[str]
    commands: list[str]


class RunbookContext(NamedTuple):
    model: str
    namespace: str
    job: str
    dashboard: str
    alerts: list[RunbookAlert]
    inhibition: str  # the Alertmanager file's name


def _runbook_entry(plan: ServingPlan, rule: Rule) -> RunbookAlert:
    labels = {kv.key: kv.value for kv in rule.labels}
    notes = {kv.key: kv.value for kv in rule.annotations}
    summary, meaning = (
        AlertText(notes[key]).expand(plan.namespace, plan.name, plan.model) for key in ("summary", "description")
    )
    ns, name = plan.namespace, plan.name
    pods = f"kubectl -n {ns} get pods -l app.kubernetes.io/instance={name},app.kubernetes.io/component=server -o wide"
    common = [pods, f"kubectl -n {ns} describe deployment {name}"]
    logs = f"kubectl -n {ns} logs deployment/{name} --tail=200"
    metrics = [
        f"kubectl -n {ns} port-forward service/{name} {plan.metrics_port} &",
        f"curl -s localhost:{plan.metrics_port}{plan.metrics_path} | head -50",
    ]
    name_ = rule.alert or ""
    if name_ == "LlmcServerDown":
        checks = [
            "Are there pods, and are they Running and Ready? A crash loop shows in the restarts and the last state.",
            "Does Prometheus scrape the job? Its targets page lists the ServiceMonitor; a missing one means the "
            "ServiceMonitor is not selected (its labels against the Prometheus' serviceMonitorSelector).",
            "Did the model load? The server's log names the model repository and any load error.",
        ]
        commands = common + [logs, f"kubectl -n {ns} get servicemonitor {name} -o yaml"] + metrics
    elif name_ == "LlmcNoTraffic":
        checks = [
            "Does the Service have endpoints, and does the ingress or gateway route to it?",
            "Did the clients move to another Service or namespace (a canary, a new release)?",
        ]
        commands = [f"kubectl -n {ns} get endpoints {name}", f"kubectl -n {ns} get ingress,service"] + metrics
    elif "Latency" in name_:
        checks = [
            "Is the traffic above the SLA's rate? Compare the request rate with the planned capacity on the dashboard.",
            "Are replicas at the HPA's maximum, or pending (no node with the device)?",
            "Is the queue time growing? Then add replicas; if not, a slow model version or a noisy node.",
        ]
        commands = common + [f"kubectl -n {ns} get hpa {name}", f"kubectl -n {ns} top pods"]
    else:
        checks = [
            "Which errors? The server's log, and the error ratio per pod on the dashboard: one pod or all?",
            "Did a release just happen? Roll back with `kubectl rollout undo` if the errors began with it.",
            "Are requests refused by a full queue (overload)? Then see the latency checks: more replicas.",
        ]
        commands = common + [logs, f"kubectl -n {ns} rollout history deployment/{name}"]
    return RunbookAlert(name_, labels.get("severity", ""), summary, meaning, checks, commands)


def runbook(plan: ServingPlan) -> RunbookContext:
    alerts = [_runbook_entry(plan, r) for g in rule_groups(plan) for r in g.rules if r.alert]
    return RunbookContext(plan.model, plan.namespace, plan.name, dashboard_url(plan), alerts, INHIBITION)


INHIBITION = "monitoring/alertmanager.yaml"
ADAPTER = "monitoring/prometheus-adapter.yaml"


class AdapterContext(NamedTuple):
    rule: AdapterRule


class InhibitionContext(NamedTuple):
    page: str
    ticket: str
    equal: list[str]


def inhibition() -> InhibitionContext:
    # A page and a ticket for the same SLO of the same server: the page says it all.
    return InhibitionContext("page", "ticket", ["namespace", "job", "model", "slo"])


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
        Artifact(RUNBOOK, "monitoring/runbook.md.j2", runbook(plan)),
        Artifact(INHIBITION, "monitoring/alertmanager.yaml.j2", inhibition()),
    ] + (
        [
            Artifact(
                ADAPTER,
                "monitoring/prometheus-adapter.yaml.j2",
                AdapterContext(source_of(plan).adapter_rule(requests_metric(plan))),
            )
        ]
        if plan.scale_on == "requests"
        else []
    )
