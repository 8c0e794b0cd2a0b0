"""The SLO rules of a served model, as Prometheus rule groups (not a target: TARGETS
does not list it). monitoring/alerts.yaml and k8s/prometheusrule.yaml render the
same groups; monitoring.py's docstring explains the metrics and the alerting recipe,
slo_tests.py proves the rules with promtool cases. The same knowledge of the server's
series writes Prometheus Adapter's rule for the HPA's metric (Source.adapter_rule).

Every selector names the server's scrape job (the Service's name, which the
ServiceMonitor gives as `job`) besides the namespace and the model, so a canary or a
second server of the same model in the namespace is a different SLO.
"""

from __future__ import annotations

import hashlib
import re
from typing import NamedTuple

from .k8s_common import KV, ServingPlan

# The SLIs' rate windows: the fast group evaluates every 30 s; the two longest windows
# feed tickets only and are recomputed every 5 minutes (a 3-day rate every 30 s costs
# Prometheus for nothing).
FAST_WINDOWS = ("5m", "30m", "1h", "2h", "6h")
SLOW_WINDOWS = ("1d", "3d")
WINDOWS = FAST_WINDOWS + SLOW_WINDOWS
FAST_INTERVAL = "30s"
SLOW_INTERVAL = "5m"
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}


def window_seconds(window: str) -> int:
    return int(window[:-1]) * _UNIT_SECONDS[window[-1]]


class Branch(NamedTuple):
    """One window pair of a burn-rate alert: fire when the bad-event ratio exceeds
    `rate` x the budget over both windows."""

    rate: float
    long: str
    short: str


class BurnPolicy(NamedTuple):
    severity: str
    suffix: str  # of the alert's name
    branches: tuple[Branch, ...]


# The Google SRE workbook's multiwindow, multi-burn-rate table ("Alerting on SLOs", 5-8).
BURN_POLICIES = (
    BurnPolicy("page", "FastBurn", (Branch(14.4, "1h", "5m"), Branch(6.0, "6h", "30m"))),
    BurnPolicy("ticket", "SlowBurn", (Branch(3.0, "1d", "2h"), Branch(1.0, "3d", "6h"))),
)
# No burn-rate alert fires on fewer bad events than this in its long window: at a few
# requests an hour two failures are a 14.4x burn, and nobody should be woken for them.
MIN_BAD_EVENTS = 10

SERVER_DOWN = "LlmcServerDown"
SERVER_DOWN_FOR = "5m"
NO_TRAFFIC = "LlmcNoTraffic"
NO_TRAFFIC_WINDOW = "30m"
NO_TRAFFIC_FOR = "15m"
# Triton exports no latency histogram: its p99 is a one-minute summary per pod, which is
# no event ratio. Its alert is a ticket, and only on enough requests that the p99 is not
# just the slowest one.
P99_ALERT = "LlmcLatencyP99AboveSla"
P99_FOR = "15m"
P99_MIN_PER_MINUTE = 100

TFS_SERVER_ERRORS = "UNKNOWN|DEADLINE_EXCEEDED|RESOURCE_EXHAUSTED|ABORTED|UNIMPLEMENTED|INTERNAL|UNAVAILABLE|DATA_LOSS"
# TF Serving's APIs that run the model (REST lower case, gRPC capitalised); the kubelet's
# probes (model status) record no API.
TFS_MODEL_APIS = "predict|classify|regress|Predict|Classify|Regress"
# TF Serving's latency histogram: monitoring::Buckets::Exponential(10, 1.8, 33), in µs.
TFS_BUCKETS_US = tuple(10 * 1.8**k for k in range(33))

REQUESTS = "namespace_job:llmc_requests:rate{w}"
ERRORS = "namespace_job:llmc_request_errors:rate{w}"
ERROR_RATIO = "namespace_job:llmc_request_errors:ratio_rate{w}"
ANSWERED = "namespace_job:llmc_requests_answered:rate{w}"
SLOW = "namespace_job:llmc_requests_slow:rate{w}"
SLOW_RATIO = "namespace_job:llmc_requests_slow:ratio_rate{w}"
P99 = "namespace_job:llmc_request_latency_seconds:p99"
# The SLO view (Sloth's objective, budget, burn-rate and period series), one series per
# SLO with its `slo` label: what the dashboard's budget panels read.
OBJECTIVE = "namespace_job_slo:llmc_objective:ratio"
BUDGET = "namespace_job_slo:llmc_error_budget:ratio"
BURN_RATE = "namespace_job_slo:llmc_burn_rate:ratio_rate{w}"
BURN_RATE_WINDOWS = ("5m", "1h")
PERIOD = "30d"
PERIOD_ERRORS = "namespace_job_slo:llmc_errors:ratio_rate30d"
ATTAINMENT = "namespace_job_slo:llmc_attainment:ratio_rate30d"
BUDGET_REMAINING = "namespace_job_slo:llmc_error_budget_remaining:ratio_rate30d"


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


def significant(value: float) -> str:
    """A divisor: to 15 significant digits, so that a budget of 1e-300 stays one (number()
    rounds to 12 decimal places, fine for a threshold, 0 for it)."""
    return f"{float(value):.15g}"


def percent(value: float) -> str:
    return f"{value * 100:.4g}%"


def duration(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.4g}ms" if ms < 1000 else f"{seconds:.4g}s"


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def tfs_bucket_label(bound_us: float) -> str:
    """A bucket bound as TF Serving writes its `le` label (absl::StrCat of a double:
    six significant digits, as C's %g)."""
    return f"{bound_us:.6g}"


class LatencyTarget(NamedTuple):
    """The bound the latency SLI counts against: TF Serving's first bucket bound at or
    above the SLA's p99 (a histogram counts only below its bounds)."""

    le: str  # the `le` label value
    seconds: float  # the bound, in seconds


def latency_target(p99_s: float) -> LatencyTarget | None:
    target_us = p99_s * 1e6
    for bound in TFS_BUCKETS_US:
        if bound >= target_us * (1 - 1e-12):
            return LatencyTarget(tfs_bucket_label(bound), bound / 1e6)
    return None  # beyond TF Serving's largest finite bucket (about 24 minutes)


class AdapterRule(NamedTuple):
    """One rule of Prometheus Adapter's configuration (its `rules:` list)."""

    series: str  # seriesQuery: the series that make the metric exist, per pod
    matches: str  # name.matches: the series name it renames
    metric: str  # name.as: the custom metric's name
    query: str  # metricsQuery, with the adapter's <<.GroupBy>> and <<.LabelMatchers>>


class Source(NamedTuple):
    """The server's metrics for one platform: PromQL builders over a window, every
    selector scoped to the namespace, the scrape job and the model."""

    platform: str
    namespace: str
    job: str
    model: str

    @property
    def scope(self) -> list[tuple[str, str, str]]:
        return [("namespace", "=", self.namespace), ("job", "=", self.job)]

    def _own(self, extra=()) -> str:
        label = "model_name" if self.platform == "tf-serving" else "model"
        return matchers(self.scope + [(label, "=", self.model)] + list(extra))

    def _sum_rate(self, metric: str, window: str, extra=()) -> str:
        return f"sum by (namespace, job) (rate({metric}{self._own(extra)}[{window}]))"

    def up(self) -> str:
        return f"up{matchers(self.scope)}"

    def zero(self) -> str:
        """0 while the server is scraped: the fallback of a sum whose series does not
        exist yet (TF Serving creates a status's series at its first request)."""
        return f"sum by (namespace, job) ({self.up()}) * 0"

    def _tfs_answered(self, window: str) -> str:
        api = [("API", "=~", TFS_MODEL_APIS)]
        return self._sum_rate(":tensorflow:serving:request_latency_count", window, api)

    def requests(self, window: str, answered: str) -> str:
        """Requests to the model, answered or failed; never a probe. `answered` is the
        recorded series of answered requests over the window (TF Serving)."""
        if self.platform == "tf-serving":
            # request_count counts the probes' model-status GETs too: answered requests
            # come from the latency histogram (model APIs only), failures from request_count.
            failed = self._sum_rate(":tensorflow:serving:request_count", window, [("status", "!=", "OK")])
            return f"{answered} + ignoring(model) ({failed} or {self.zero()})"
        # Successes and failures in one selector: one window for the whole count.
        both = matchers(
            [("__name__", "=~", "nv_inference_request_success|nv_inference_request_failure")]
            + self.scope
            + [("model", "=", self.model)]
        )
        return f"sum by (namespace, job) (rate({both}[{window}])) or {self.zero()}"

    def errors(self, window: str) -> str:
        """Server-side failures, or 0 while requests flow without any failure series."""
        if self.platform == "tf-serving":
            failed = self._sum_rate(":tensorflow:serving:request_count", window, [("status", "=~", TFS_SERVER_ERRORS)])
            return f"{failed} or {self.zero()}"
        failed = self._sum_rate("nv_inference_request_failure", window, [("reason", "!=", "CANCELED")])
        return f"{failed} or {self.zero()}"

    def answered(self, window: str) -> str:
        """TF Serving: requests answered by a model API (its histogram times successes only)."""
        return f"{self._tfs_answered(window)} or {self.zero()}"

    def slow(self, window: str, target: LatencyTarget, answered: str) -> str:
        """Answered requests above the target: the recorded `answered` less the bucket's."""
        api = [("API", "=~", TFS_MODEL_APIS)]
        fast = self._sum_rate(":tensorflow:serving:request_latency_bucket", window, api + [("le", "=", target.le)])
        return f"{answered} - ignoring(model) {fast}"

    def adapter_rule(self, metric: str) -> AdapterRule:
        """Prometheus Adapter's rule serving `metric`: each pod's requests per second to
        the model (answered and failed, never a probe), over 2 minutes. The adapter fills
        <<.LabelMatchers>> with the pod and namespace the HPA asks for."""
        own = self._own()[1:-1]
        if self.platform == "tf-serving":
            api = f"API=~{promql_string(TFS_MODEL_APIS)}"
            answered = f":tensorflow:serving:request_latency_count{{{own}, {api}, <<.LabelMatchers>>}}"
            failed = f":tensorflow:serving:request_count{{{own}, status!='OK', <<.LabelMatchers>>}}"
            series = f":tensorflow:serving:request_latency_count{{{own}, pod!=''}}"
            query = (
                f"sum by (<<.GroupBy>>) (rate({answered}[2m]))"
                f" + sum by (<<.GroupBy>>) (rate({failed}[2m])) or sum by (<<.GroupBy>>) (rate({answered}[2m]))"
            )
            seed = ":tensorflow:serving:request_latency_count"
        else:
            names = "nv_inference_request_success|nv_inference_request_failure"
            both = f"{{__name__=~{promql_string(names)}, {own}, <<.LabelMatchers>>}}"
            series = f"nv_inference_request_success{{{own}, pod!=''}}"
            query = f"sum by (<<.GroupBy>>) (rate({both}[2m]))"
            seed = "nv_inference_request_success"
        return AdapterRule(series, f"^{re.escape(seed)}$", metric, query)

    def p99_seconds(self) -> str:
        if self.platform == "tf-serving":
            api = [("API", "=~", TFS_MODEL_APIS)]
            return (
                "histogram_quantile(0.99, sum by (namespace, job, le) "
                f"(rate(:tensorflow:serving:request_latency_bucket{self._own(api)}[5m]))) / 1e6"
            )
        # Each pod's one-minute p99 weighted by its request rate: a cold or newly scaled
        # pod counts for its share of the traffic, not as the whole service (a maximum
        # would page on it). NaN (a pod without requests in the minute) is left out.
        p99 = f"(nv_inference_request_summary_us{self._own([('quantile', '=', '0.99')])} >= 0)"
        rate = f"rate(nv_inference_request_success{self._own()}[5m])"
        return (
            f"sum by (namespace, job) ({p99} * ignoring(quantile) {rate})"
            f" / sum by (namespace, job) ({rate} and ignoring(quantile) {p99}) / 1e6"
        )


def requests_metric(plan: ServingPlan) -> str:
    """The custom metric the HPA scales on and Prometheus Adapter serves: one per server."""
    return "llmc_" + re.sub(r"[^a-zA-Z0-9_]", "_", plan.name) + "_requests_per_second"


def source_of(plan: ServingPlan) -> Source:
    return Source(plan.platform, plan.namespace, plan.name, plan.model)


def dashboard_uid(plan: ServingPlan) -> str:
    """The Grafana dashboard's uid (at most 40 characters): the alerts link to it."""
    digest = hashlib.sha256(plan.namespace.encode()).hexdigest()[:8]
    return f"llmc-{plan.name[:26]}-{digest}"


def dashboard_url(plan: ServingPlan) -> str:
    """The dashboard on deploy.grafana_url's Grafana, or its path on any Grafana."""
    grafana = plan.grafana_url.rstrip("/") if plan.grafana_url else ""
    return f"{grafana}/d/{dashboard_uid(plan)}"


RUNBOOK = "monitoring/runbook.md"


def links(plan: ServingPlan, alert: str) -> list[KV]:
    """An alert's runbook (its section of the bundle's runbook) and dashboard, absolute
    where the deploy block says where the bundle and Grafana are, else relative."""
    base = f"{plan.bundle_url.rstrip('/')}/" if plan.bundle_url else ""
    return [
        KV("dashboard", dashboard_url(plan)),
        KV("runbook_url", f"{base}{RUNBOOK}#{alert.lower()}"),
    ]


def _own_pairs(plan: ServingPlan) -> list[tuple[str, str, str]]:
    return [("namespace", "=", plan.namespace), ("job", "=", plan.name), ("model", "=", plan.model)]


def own_matchers(plan: ServingPlan) -> str:
    """The recorded series of this SLO (every recording rule keeps namespace and job and
    adds the model)."""
    return matchers(_own_pairs(plan))


def slo_matchers(plan: ServingPlan, slo: str) -> str:
    """The SLO view's series of one SLO (own_matchers and its `slo` label)."""
    return matchers(_own_pairs(plan) + [("slo", "=", slo)])


# --- the SLOs ------------------------------------------------------------------------


class Slo(NamedTuple):
    """One event-ratio SLO: bad events over all events, recorded per window."""

    name: str  # the `slo` label
    alert_prefix: str
    total: str  # recorded rate of all events (a template over {w})
    bad: str  # recorded rate of bad events
    ratio: str  # recorded bad / total
    budget: float  # the allowed ratio of bad events
    bad_words: str  # what a bad event is, in an alert's words
    objective: str  # the SLO in words


def slos(plan: ServingPlan) -> list[Slo]:
    out = [
        Slo(
            "availability",
            "LlmcErrorBudget",
            REQUESTS,
            ERRORS,
            ERROR_RATIO,
            plan.error_budget,
            "server-side errors",
            f"availability {percent(plan.availability)}, error budget {percent(plan.error_budget)}",
        )
    ]
    target = latency_target(plan.p99_s) if plan.platform == "tf-serving" else None
    if target is not None:
        out.append(
            Slo(
                "latency",
                "LlmcLatencyBudget",
                ANSWERED,
                SLOW,
                SLOW_RATIO,
                0.01,  # a p99 target: 99% of requests within it
                f"requests slower than {duration(target.seconds)}",
                f"99% of answered requests within {duration(target.seconds)} (the SLA's p99 "
                f"{duration(plan.p99_s)}, rounded up to TF Serving's bucket bound le={target.le} µs)",
            )
        )
    return out


_LABEL_REF = re.compile(r"\{\{ \$labels\.(namespace|model|job) \}\}")
WHO = "{{ $labels.model }} ({{ $labels.job }} in {{ $labels.namespace }})"


class AlertText(NamedTuple):
    """An annotation as a Prometheus template (only $labels) and as promtool expands it."""

    template: str

    def expand(self, namespace: str, job: str, model: str) -> str:
        values = {"namespace": namespace, "model": model, "job": job}
        return _LABEL_REF.sub(lambda m: values[m.group(1)], self.template)


def burn_threshold(slo: Slo, branch: Branch) -> float:
    return branch.rate * slo.budget


def burn_text(slo: Slo, policy: BurnPolicy) -> tuple[AlertText, AlertText]:
    windows = " or ".join(f"{b.rate:g}x over {b.long} and {b.short}" for b in policy.branches)
    fastest = max(b.rate for b in policy.branches)
    summary = AlertText(f"{WHO} is burning its {slo.name} error budget ({windows})")
    thresholds = " / ".join(percent(burn_threshold(slo, b)) for b in policy.branches)
    lasts = f"at {fastest:g}x a 30-day budget lasts {30 / fastest:.3g} days" if slo.budget > 0 else "any is too many"
    detail = AlertText(
        f"The ratio of {slo.bad_words} is above {thresholds} ({windows} the budget; SLO: {slo.objective}), "
        f"with at least {MIN_BAD_EVENTS} of them in the long window: {lasts}. Severity {policy.severity}."
    )
    return summary, detail


def p99_text(plan: ServingPlan) -> tuple[AlertText, AlertText]:
    summary = AlertText(f"{WHO} has a p99 latency above its {duration(plan.p99_s)} SLA")
    detail = AlertText(
        f"The request-weighted p99 of the pods' one-minute latency summaries has stayed above "
        f"{duration(plan.p99_s)} for {P99_FOR}, at {P99_MIN_PER_MINUTE} requests a minute or more "
        f"(SLA: {plan.throughput_rps:g} req/s at p99 {duration(plan.p99_s)}; the plan needs "
        f"{plural(plan.replicas.needed, 'replica')}, the HPA runs {plan.replicas.min}-{plan.replicas.max}). "
        "Triton exports no latency histogram, so this is a ticket, not a burn-rate page."
    )
    return summary, detail


# The up-based alerts read `up`, which has no model label (their `model` label is added
# by the rule, after the annotations are expanded).
JOB = "{{ $labels.job }} in {{ $labels.namespace }}"


def down_text() -> tuple[AlertText, AlertText]:
    return (
        AlertText(f"{JOB}: no server answers Prometheus's scrapes"),
        AlertText(
            f"Every target of the job is down, or there is none (no pod, or Prometheus does not select "
            f"the ServiceMonitor), for {SERVER_DOWN_FOR}: the SLO alerts cannot see anything while this lasts."
        ),
    )


def no_traffic_text() -> tuple[AlertText, AlertText]:
    return (
        AlertText(f"{JOB} is up but receives no requests"),
        AlertText(
            f"The server answers its scrapes but counted no request to the model over {NO_TRAFFIC_WINDOW}, "
            f"for {NO_TRAFFIC_FOR} more: check the Service, the ingress and the clients."
        ),
    )


def alert_labels(plan: ServingPlan, severity: str, slo: str) -> list[KV]:
    team = [KV("team", plan.team)] if plan.team else []
    return [KV("severity", severity), KV("slo", slo)] + team


def _annotations(plan: ServingPlan, alert: str, texts: tuple[AlertText, AlertText]) -> list[KV]:
    summary, detail = texts
    return [KV("summary", summary.template), KV("description", detail.template)] + links(plan, alert)


def _recording(src: Source, plan: ServingPlan, windows: tuple[str, ...], slo_list: list[Slo]) -> list[Rule]:
    model = [KV("model", plan.model)]
    own = own_matchers(plan)
    target = latency_target(plan.p99_s)
    rules: list[Rule] = []
    for w in windows:
        answered = f"{ANSWERED.format(w=w)}{own}"
        if plan.platform == "tf-serving":
            # Recorded first and read by the rules after it: both SLOs count answered requests.
            rules.append(Rule(ANSWERED.format(w=w), None, src.answered(w), None, model, []))
        for slo in slo_list:
            if slo.name == "availability":
                rules.append(Rule(slo.total.format(w=w), None, src.requests(w, answered), None, model, []))
                bad = src.errors(w)
            else:
                assert target is not None and slo.total == ANSWERED
                bad = src.slow(w, target, answered)
            rules.append(Rule(slo.bad.format(w=w), None, bad, None, model, []))
            ratio = f"{slo.bad.format(w=w)}{own} / {slo.total.format(w=w)}{own}"
            rules.append(Rule(slo.ratio.format(w=w), None, ratio, None, model, []))
    return rules


def _slo_view(plan: ServingPlan, slo_list: list[Slo]) -> tuple[list[Rule], list[Rule]]:
    """The SLO view's recordings, as Sloth writes them: the objective and the budget as
    constants, the burn rate over 5m and 1h (fast group), and over the 30-day period the
    bad-event ratio, the attainment and the budget remaining (slow group). The period's
    ratio weighs the recorded 5m rates alike, so it is bad events over all events for as
    far back as Prometheus keeps them (30 days needs a retention of 30d)."""
    own = own_matchers(plan)
    fast: list[Rule] = []
    slow: list[Rule] = []
    for slo in slo_list:
        label = [KV("model", plan.model), KV("slo", slo.name)]
        constant = [KV("namespace", plan.namespace), KV("job", plan.name)] + label
        mine = slo_matchers(plan, slo.name)
        fast.append(Rule(OBJECTIVE, None, f"vector({number(1 - slo.budget)})", None, constant, []))
        fast.append(Rule(BUDGET, None, f"vector({significant(slo.budget)})", None, constant, []))
        bad = f"sum_over_time({slo.bad.format(w='5m')}{own}[{PERIOD}])"
        total = f"sum_over_time({slo.total.format(w='5m')}{own}[{PERIOD}])"
        slow.append(Rule(PERIOD_ERRORS, None, f"{bad} / {total}", None, label, []))
        slow.append(Rule(ATTAINMENT, None, f"1 - {PERIOD_ERRORS}{mine}", None, label, []))
        if slo.budget <= 0:
            continue  # no budget to burn: the ratio is the whole story
        for w in BURN_RATE_WINDOWS:
            burn = f"{slo.ratio.format(w=w)}{own} / {significant(slo.budget)}"
            fast.append(Rule(BURN_RATE.format(w=w), None, burn, None, label, []))
        remaining = f"1 - {PERIOD_ERRORS}{mine} / {significant(slo.budget)}"
        slow.append(Rule(BUDGET_REMAINING, None, remaining, None, label, []))
    return fast, slow


def burn_expr(slo: Slo, policy: BurnPolicy, own: str) -> str:
    terms = []
    for b in policy.branches:
        threshold = number(burn_threshold(slo, b))
        terms.append(
            f"({slo.ratio.format(w=b.long)}{own} > {threshold}"
            f" and {slo.ratio.format(w=b.short)}{own} > {threshold}"
            f" and {slo.bad.format(w=b.long)}{own} * {window_seconds(b.long)} >= {MIN_BAD_EVENTS})"
        )
    return " or ".join(terms)


def rule_groups(plan: ServingPlan) -> list[Group]:
    src = source_of(plan)
    own = own_matchers(plan)
    slo_list = slos(plan)
    model = [KV("model", plan.model)]
    fast = _recording(src, plan, FAST_WINDOWS, slo_list)
    fast.append(Rule(P99, None, src.p99_seconds(), None, model, []))
    slow = _recording(src, plan, SLOW_WINDOWS, slo_list)
    view_fast, view_slow = _slo_view(plan, slo_list)
    fast += view_fast
    slow += view_slow
    alerts: list[Rule] = []
    up = src.up()
    alerts.append(
        Rule(
            None,
            SERVER_DOWN,
            f"max by (namespace, job) ({up}) == 0 or absent({up})",
            SERVER_DOWN_FOR,
            model + alert_labels(plan, "page", "availability"),
            _annotations(plan, SERVER_DOWN, down_text()),
        )
    )
    alerts.append(
        Rule(
            None,
            NO_TRAFFIC,
            f"max by (namespace, job) ({up}) == 1 unless on (namespace, job) "
            f"{REQUESTS.format(w=NO_TRAFFIC_WINDOW)}{own} > 0",
            NO_TRAFFIC_FOR,
            model + alert_labels(plan, "ticket", "availability"),
            _annotations(plan, NO_TRAFFIC, no_traffic_text()),
        )
    )
    for slo in slo_list:
        for policy in BURN_POLICIES:
            alerts.append(
                Rule(
                    None,
                    slo.alert_prefix + policy.suffix,
                    burn_expr(slo, policy, own),
                    None,
                    alert_labels(plan, policy.severity, slo.name),
                    _annotations(plan, slo.alert_prefix + policy.suffix, burn_text(slo, policy)),
                )
            )
    if plan.platform != "tf-serving":
        alerts.append(
            Rule(
                None,
                P99_ALERT,
                f"{P99}{own} > {number(plan.p99_s)} and {REQUESTS.format(w='5m')}{own} * 60 >= {P99_MIN_PER_MINUTE}",
                P99_FOR,
                alert_labels(plan, "ticket", "latency"),
                _annotations(plan, P99_ALERT, p99_text(plan)),
            )
        )
    prefix = f"llmc.{plan.name}"
    return [
        Group(f"{prefix}.sli", FAST_INTERVAL, fast),
        Group(f"{prefix}.sli-slow", SLOW_INTERVAL, slow),
        Group(f"{prefix}.alerts", FAST_INTERVAL, alerts),
    ]
