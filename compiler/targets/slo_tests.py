"""monitoring/alerts.test.yaml and alerts.slow.test.yaml: promtool cases that prove the
SLO rules (slo_rules.py) behave as the policy says, and fail when a rule is wrong.

Each case is a timeline of phases (traffic a minute, the share of server errors and of
slow requests, the server up, down or gone), hours or days long, which this module
turns into the servers' own counters and, independently of the PromQL, into the
alerts that must fire: `Model` evaluates the policy (the burn-rate table, the guards,
`for:`) over the same samples with Prometheus's own rate() arithmetic. promtool then
evaluates the real rules over the same series and compares.

What the cases prove, for every SLO (availability; latency where TF Serving has a
histogram) and every window pair:

* thresholds: a burn at 0.9x the branch's threshold is silent, at 1.1x it fires;
* windows: a burst that only the short window sees and a burn only the long window
  still sees are both silent (an `or` for an `and`, or a wrong window, fires);
* guards: 9 bad events in the long window are silent, 11 fire (MIN_BAD_EVENTS = 10);
* `for:`: silence is checked after the `for:` of every alert with one has elapsed,
  and a blip shorter than it stays silent;
* the server gone (series stop), down (up == 0), idle (no traffic), a second job of the
  same model failing, and recovery.

The day-long cases are in alerts.slow.test.yaml, evaluated hourly: promtool evaluates
every rule at every step up to the last eval_time, and the 1d and 3d windows need
days of series.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from .k8s_common import KV, ServingPlan
from .slo_rules import (
    ATTAINMENT,
    BUDGET,
    BUDGET_REMAINING,
    BURN_POLICIES,
    BURN_RATE,
    MIN_BAD_EVENTS,
    NO_TRAFFIC,
    NO_TRAFFIC_FOR,
    NO_TRAFFIC_WINDOW,
    OBJECTIVE,
    P99_ALERT,
    P99_FOR,
    P99_MIN_PER_MINUTE,
    PERIOD,
    PERIOD_ERRORS,
    SERVER_DOWN,
    SERVER_DOWN_FOR,
    TFS_BUCKETS_US,
    AlertText,
    Branch,
    Slo,
    burn_text,
    burn_threshold,
    down_text,
    duration,
    latency_target,
    links,
    matchers,
    no_traffic_text,
    number,
    p99_text,
    rule_groups,
    slo_matchers,
    slos,
    tfs_bucket_label,
    window_seconds,
)

FAST_EVAL_MINUTES = 5
SLOW_EVAL_MINUTES = 60
CLIENT_SHARE = 0.01  # of every phase's requests: the client's mistakes, never an SLO error
PROBES_PER_MINUTE = 6  # the kubelet's model-status GETs (TF Serving counts them)
LOOKBACK_MINUTES = 5  # Prometheus's lookback for an instant vector
OTHER_JOB_SUFFIX = "-canary"


def minutes(window: str) -> int:
    return window_seconds(window) // 60


def clock(total: int) -> str:
    """A promtool duration for `total` minutes."""
    if total % 1440 == 0 and total:
        return f"{total // 1440}d"
    if total % 60 == 0 and total:
        return f"{total // 60}h"
    return f"{total}m"


# --- context types -----------------------------------------------------------------


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


class ExprCheck(NamedTuple):
    """A promql_expr_test: `expr` (true as 1 within a tolerance) at `eval_time`."""

    eval_time: str
    expr: str
    labels: str  # the result's labels, as promtool writes them


class TestCase(NamedTuple):
    name: str
    interval: str
    series: list[Series]
    alerts: list[AlertCheck]
    exprs: tuple[ExprCheck, ...] = ()


class RuleTestsContext(NamedTuple):
    rule_file: str
    evaluation_interval: str
    group_order: list[str]  # promtool evaluates groups in map order unless told
    tests: list[TestCase]


# --- timelines -----------------------------------------------------------------------


class Phase(NamedTuple):
    minutes: int
    per_minute: int  # requests to the model a minute (client errors included)
    errors: float = 0.0  # share failing on the server
    slow: float = 0.0  # share of answered requests above the latency target
    p99: float = 0.5  # Triton's summary p99, in units of the SLA's
    state: str = "up"  # "up"; "down": scraped, up == 0, nothing else; "gone": no samples at all
    client: float = CLIENT_SHARE  # share failing through the client
    bad: int | None = None  # exact server errors over the phase (guard cases), instead of `errors`
    slow_count: int | None = None  # exact slow requests over the phase
    near: float = 0.0  # share of answered requests in the latency target's own bucket (under it, not slow)


class Step(NamedTuple):
    """The counts of one sample interval (ending at its sample)."""

    state: str
    requests: int
    errors: int
    client: int
    slow: int
    p99: float
    near: int  # answered, not slow, in the target's bucket (above the bound below it)


def _spread(total: int, steps: int, index: int) -> int:
    """`total` events over `steps` intervals, the remainder in the last ones."""
    base, extra = divmod(total, steps)
    return base + (1 if index >= steps - extra else 0)


class Timeline:
    """Samples every `step` minutes from 0; the interval ending at sample i belongs to
    the phase running then (sample 0 is the start, every counter at 0)."""

    def __init__(self, phases: list[Phase], step: int):
        self.step = step
        self.steps: list[Step] = []
        for phase in phases:
            count = phase.minutes // step
            assert count * step == phase.minutes and count > 0, (phase, step)
            for i in range(count):
                requests = phase.per_minute * step if phase.state == "up" else 0
                errors = _spread(phase.bad, count, i) if phase.bad is not None else round(requests * phase.errors)
                # A loose budget asks for shares near 1: the counts stay a partition.
                errors = min(errors, requests)
                client = min(round(requests * phase.client), requests - errors)
                answered = requests - errors - client
                assert answered >= 0, phase
                slow = (
                    _spread(phase.slow_count, count, i)
                    if phase.slow_count is not None
                    else round(answered * phase.slow)
                )
                slow = min(slow, answered)
                near = min(round(answered * phase.near), answered - slow)
                self.steps.append(Step(phase.state, requests, errors, client, slow, phase.p99, near))
        self.end = len(self.steps) * step

    def scraped(self, i: int) -> bool:
        """Whether sample i exists for the server's own series (i = 0 is the first scrape)."""
        return i == 0 or self.steps[i - 1].state == "up"

    def up(self, i: int) -> int | None:
        if i == 0:
            return 1
        state = self.steps[i - 1].state
        return None if state == "gone" else int(state == "up")

    def derived(self, fn) -> list[float | None]:
        """Cumulative sums of fn(step) at every sample, None where not scraped."""
        out: list[float | None] = []
        total = 0
        for i in range(len(self.steps) + 1):
            if i:
                total += fn(self.steps[i - 1])
            out.append(float(total) if self.scraped(i) else None)
        return out

    def gauge(self, fn) -> list[float | None]:
        return [
            (fn(self.steps[i - 1]) if i else fn(self.steps[0])) if self.scraped(i) else None
            for i in range(len(self.steps) + 1)
        ]


# --- Prometheus's arithmetic ---------------------------------------------------------


def increase(values: Sequence[float | None], step: int, at: int, window: int) -> float | None:
    """rate(x[window]) x window at minute `at`, as Prometheus 2.x extrapolates it over the
    samples in [at - window, at]; None with fewer than two samples."""
    start = at - window
    points = [(i * step, v) for i, v in enumerate(values) if v is not None and start <= i * step <= at]
    if len(points) < 2:
        return None
    (first_t, first_v), (last_t, last_v) = points[0], points[-1]
    delta = last_v - first_v
    sampled = float(last_t - first_t)
    to_start, to_end = float(first_t - start), float(at - last_t)
    if delta > 0 and first_v >= 0:
        to_start = min(to_start, sampled * first_v / delta)
    average = sampled / (len(points) - 1)
    extrapolated = sampled
    extrapolated += to_start if to_start < average * 1.1 else average / 2
    extrapolated += to_end if to_end < average * 1.1 else average / 2
    return delta * extrapolated / sampled


def latest(values: Sequence[float | None], step: int, at: int) -> float | None:
    """An instant vector's value at minute `at`: the newest sample within the lookback."""
    for i in range(min(len(values) - 1, at // step), -1, -1):
        if values[i] is not None:
            age = at - i * step
            assert age != LOOKBACK_MINUTES, "a check sits on the lookback's edge: move it"
            return values[i] if age < LOOKBACK_MINUTES else None
    return None


# --- the policy, evaluated without PromQL --------------------------------------------


class _Pod(NamedTuple):
    """One server's samples, as the model reads them."""

    requests: list[float | None]  # requests counted by the SLIs: answered and failed; never a probe
    errors: list[float | None]
    answered: list[float | None]
    slow: list[float | None]
    up: list[float | None]
    p99: list[float | None]  # seconds


def _pod(plan: ServingPlan, s: Timeline) -> _Pod:
    return _Pod(
        s.derived(lambda st: st.requests),
        s.derived(lambda st: st.errors),
        s.derived(lambda st: st.requests - st.errors - st.client),
        s.derived(lambda st: st.slow),
        [s.up(i) for i in range(len(s.steps) + 1)],
        s.gauge(lambda st: st.p99 * plan.p99_s),
    )


def _fields(slo: Slo) -> tuple[str, str]:
    """The _Pod fields of an SLO's events: (all, bad)."""
    return ("requests", "errors") if slo.name == "availability" else ("answered", "slow")


class Model:
    """The alerts' conditions over the timelines of one job's pods, for the SLOs of `plan`."""

    def __init__(self, plan: ServingPlan, timelines: list[Timeline]):
        self.plan = plan
        self.step = timelines[0].step
        self.pods = [_pod(plan, t) for t in timelines]

    def _sum(self, field: str, at: int, window: int) -> float | None:
        """sum by (namespace, job) (rate(x[window])) x window: None without any series."""
        found = [increase(getattr(pod, field), self.step, at, window) for pod in self.pods]
        present = [v for v in found if v is not None]
        return sum(present) if present else None

    def ratio(self, slo: Slo, at: int, window: str) -> float | None:
        total, bad = _fields(slo)
        t, b = self._sum(total, at, minutes(window)), self._sum(bad, at, minutes(window))
        if t is None or b is None or t == 0:
            return None
        return b / t

    def period_ratio(self, slo: Slo, at: int, eval_minutes: int) -> float:
        """The SLO view's 30-day ratio at minute `at`: the recorded 5m rates of bad and of
        all events, summed over every evaluation so far (a missing rate records 0)."""
        total, bad = _fields(slo)
        ticks = range(max(0, at - minutes(PERIOD)), at + 1, eval_minutes)
        t = sum(self._sum(total, tick, 5) or 0.0 for tick in ticks)
        b = sum(self._sum(bad, tick, 5) or 0.0 for tick in ticks)
        return b / t

    def bad_events(self, slo: Slo, at: int, window: str) -> float | None:
        return self._sum(_fields(slo)[1], at, minutes(window))

    def branch(self, slo: Slo, b: Branch, at: int) -> bool:
        threshold = burn_threshold(slo, b)
        long, short = self.ratio(slo, at, b.long), self.ratio(slo, at, b.short)
        events = self.bad_events(slo, at, b.long)
        return (
            long is not None
            and short is not None
            and events is not None
            and long > threshold
            and short > threshold
            and events >= MIN_BAD_EVENTS
        )

    def up(self, at: int) -> float | None:
        """max by (namespace, job) (up): None when no target has a sample."""
        values = [v for v in (latest(pod.up, self.step, at) for pod in self.pods) if v is not None]
        return max(values) if values else None

    def p99(self, at: int) -> float | None:
        """The pods' p99s weighted by their 5m rates of answered requests."""
        weighted = total = 0.0
        for pod in self.pods:
            p99 = latest(pod.p99, self.step, at)
            weight = increase(pod.answered, self.step, at, 5)
            if p99 is None or weight is None:
                continue
            weighted += p99 * weight
            total += weight
        return weighted / total if total > 0 else None

    def request_rate(self, at: int, window: str) -> float | None:
        """The recorded request rate a minute; 0 while scraped without requests."""
        inc = self._sum("requests", at, minutes(window))
        if inc is None:
            return 0.0 if self.up(at) is not None else None
        return inc / minutes(window)

    def condition(self, alert: str, at: int) -> bool:
        for slo in slos(self.plan):
            for policy in BURN_POLICIES:
                if alert == slo.alert_prefix + policy.suffix:
                    return any(self.branch(slo, b, at) for b in policy.branches)
        if alert == SERVER_DOWN:
            return self.up(at) in (None, 0)
        if alert == NO_TRAFFIC:
            rate = self.request_rate(at, NO_TRAFFIC_WINDOW)
            return self.up(at) == 1 and not (rate is not None and rate > 0)
        if alert == P99_ALERT:
            p99 = self.p99(at)
            rate = self.request_rate(at, "5m")
            return p99 is not None and p99 > self.plan.p99_s and rate is not None and rate >= P99_MIN_PER_MINUTE
        raise AssertionError(f"no model of {alert}")

    def firing(self, alert: str, at: int, eval_minutes: int) -> bool:
        """True when the condition has held at every evaluation since one at or before
        at - `for:` (Prometheus fires once a pending alert is `for:` old)."""
        hold = minutes(FOR_OF.get(alert, "0m"))
        if at - hold < 0:
            return False
        first = (at - hold) - (at - hold) % eval_minutes
        return all(self.condition(alert, tick) for tick in range(first, at + 1, eval_minutes))


FOR_OF = {SERVER_DOWN: SERVER_DOWN_FOR, NO_TRAFFIC: NO_TRAFFIC_FOR, P99_ALERT: P99_FOR}


def alert_names(plan: ServingPlan) -> list[str]:
    names = [SERVER_DOWN, NO_TRAFFIC]
    for slo in slos(plan):
        names += [slo.alert_prefix + policy.suffix for policy in BURN_POLICIES]
    if plan.platform != "tf-serving":
        names.append(P99_ALERT)
    return names


# --- series ------------------------------------------------------------------------


def compress(values: list[float | None]) -> str:
    """promtool's expanding notation: runs of a constant step as `a+bxn`, gaps as `_xn`."""
    parts: list[str] = []
    i = 0
    n = len(values)
    while i < n:
        if values[i] is None:
            j = i
            while j < n and values[j] is None:
                j += 1
            parts.append(f"_x{j - i}")
            i = j
            continue
        value = values[i]
        assert value is not None
        j = i + 1
        following = values[j] if j < n else None
        if following is not None:
            diff = following - value
            while j + 1 < n and (after := values[j + 1]) is not None and after - values[j] == diff:  # type: ignore[operator]
                j += 1
            parts.append(f"{number(value)}{'+' if diff >= 0 else '-'}{number(abs(diff))}x{j - i}")
            i = j + 1
        else:
            parts.append(number(value))
            i += 1
    return " ".join(parts)


def _name(metric: str, labels: list[tuple[str, str]]) -> str:
    return metric + matchers([(k, "=", v) for k, v in labels])


def server_series(plan: ServingPlan, timeline: Timeline, job: str, instance: str = "10.0.0.7:9000") -> list[Series]:
    """The server's own series of one job (and its `up`), as Prometheus stores them."""
    target = [("instance", instance), ("job", job), ("namespace", plan.namespace)]
    s = timeline
    out = [
        Series(
            _name("up", target),
            compress([float(v) if v is not None else None for v in (s.up(i) for i in range(len(s.steps) + 1))]),
        )
    ]
    if plan.platform == "tf-serving":
        model = [("model_name", plan.model)]
        counts = {
            "OK": s.derived(lambda st: st.requests - st.errors - st.client + PROBES_PER_MINUTE * s.step),
            "UNAVAILABLE": s.derived(lambda st: st.errors),
            "INVALID_ARGUMENT": s.derived(lambda st: st.client),
        }
        for status, values in counts.items():
            out.append(
                Series(
                    _name(":tensorflow:serving:request_count", model + [("status", status)] + target), compress(values)
                )
            )
        answered = s.derived(lambda st: st.requests - st.errors - st.client)
        fast = s.derived(lambda st: st.requests - st.errors - st.client - st.slow)
        api = [("API", "predict"), ("entrypoint", "REST")] + model
        target_le = latency_target(plan.p99_s)
        fast_le = next((tfs_bucket_label(b) for b in TFS_BUCKETS_US if b >= 0.6 * plan.p99_s * 1e6), "+Inf")
        bounds = [(fast_le, answered if target_le is None else fast), ("+Inf", answered)]
        if target_le is not None:  # else no latency SLO: beyond TF Serving's largest bucket
            index = next(k for k, b in enumerate(TFS_BUCKETS_US) if tfs_bucket_label(b) == target_le.le)
            slow_le = tfs_bucket_label(TFS_BUCKETS_US[index + 1]) if index + 1 < len(TFS_BUCKETS_US) else "+Inf"
            # The bucket under the target's holds all but the slow and the near requests.
            below = s.derived(lambda st: st.requests - st.errors - st.client - st.slow - st.near)
            below_le = tfs_bucket_label(TFS_BUCKETS_US[index - 1]) if index > 0 else None
            bounds = ([(below_le, below)] if below_le else []) + [
                (target_le.le, fast),
                (slow_le, answered),
                ("+Inf", answered),
            ]
        seen = set()
        for le, values in bounds:
            if le in seen:
                continue
            seen.add(le)
            out.append(
                Series(
                    _name(":tensorflow:serving:request_latency_bucket", api + [("le", le)] + target), compress(values)
                )
            )
        out.append(Series(_name(":tensorflow:serving:request_latency_count", api + target), compress(answered)))
        # The probes' model-status GETs: timed without an API (fast), never an SLI event.
        probes = s.derived(lambda st: PROBES_PER_MINUTE * s.step if st.state == "up" else 0)
        for le in (fast_le, "+Inf"):
            out.append(
                Series(
                    _name(
                        ":tensorflow:serving:request_latency_bucket",
                        [("entrypoint", "REST")] + model + [("le", le)] + target,
                    ),
                    compress(probes),
                )
            )
        out.append(
            Series(
                _name(":tensorflow:serving:request_latency_count", [("entrypoint", "REST")] + model + target),
                compress(probes),
            )
        )
        return out
    model = [("model", plan.model), ("version", "1")]
    out.append(
        Series(
            _name("nv_inference_request_success", model + target),
            compress(s.derived(lambda st: st.requests - st.errors - st.client)),
        )
    )
    for reason, fn in (
        ("BACKEND", lambda st: st.errors),
        ("CANCELED", lambda st: st.client),
        ("REJECTED", lambda st: 0),
        ("OTHER", lambda st: 0),
    ):
        out.append(
            Series(
                _name("nv_inference_request_failure", model + [("reason", reason)] + target), compress(s.derived(fn))
            )
        )
    out.append(
        Series(
            _name("nv_inference_request_summary_us", model + [("quantile", "0.99")] + target),
            compress(s.gauge(lambda st: round(st.p99 * plan.p99_s * 1e6, 3))),
        )
    )
    return out


# --- expectations ----------------------------------------------------------------------


def _texts(plan: ServingPlan, alert: str) -> tuple[AlertText, AlertText]:
    for slo in slos(plan):
        for policy in BURN_POLICIES:
            if alert == slo.alert_prefix + policy.suffix:
                return burn_text(slo, policy)
    return {SERVER_DOWN: down_text, NO_TRAFFIC: no_traffic_text}.get(alert, lambda: p99_text(plan))()


def _labels(plan: ServingPlan, alert: str) -> list[KV]:
    severity, slo = "ticket", "availability"
    for s in slos(plan):
        for policy in BURN_POLICIES:
            if alert == s.alert_prefix + policy.suffix:
                severity, slo = policy.severity, s.name
    if alert == SERVER_DOWN:
        severity = "page"
    if alert == P99_ALERT:
        slo = "latency"
    labels = {"job": plan.name, "model": plan.model, "namespace": plan.namespace, "severity": severity, "slo": slo}
    if plan.team:
        labels["team"] = plan.team
    return [KV(k, v) for k, v in sorted(labels.items())]


def expected_alert(plan: ServingPlan, alert: str) -> ExpectedAlert:
    summary, detail = _texts(plan, alert)
    texts = [
        KV("description", detail.expand(plan.namespace, plan.name, plan.model)),
        KV("summary", summary.expand(plan.namespace, plan.name, plan.model)),
    ]
    return ExpectedAlert(_labels(plan, alert), sorted(texts + links(plan, alert)))


class Scenario(NamedTuple):
    name: str
    phases: list[Phase]
    step: int  # minutes between samples
    checks: list[int]  # minutes at which every alert is checked
    other_job: list[Phase] | None = None  # a second job of the same model (a canary)
    second_pod: list[Phase] | None = None  # a second pod of this job


def case(plan: ServingPlan, sc: Scenario, eval_minutes: int) -> TestCase:
    timeline = Timeline(sc.phases, sc.step)
    pods = [timeline] + ([Timeline(sc.second_pod, sc.step)] if sc.second_pod is not None else [])
    model = Model(plan, pods)
    series = server_series(plan, timeline, plan.name)
    if len(pods) > 1:
        series += server_series(plan, pods[1], plan.name, "10.0.0.8:9000")
    if sc.other_job is not None:
        series += server_series(plan, Timeline(sc.other_job, sc.step), plan.name + OTHER_JOB_SUFFIX)
    checks = []
    for at in sc.checks:
        assert at % eval_minutes == 0 and at <= timeline.end, (sc.name, at)
        for alert in alert_names(plan):
            fires = model.firing(alert, at, eval_minutes)
            checks.append(AlertCheck(clock(at), alert, [expected_alert(plan, alert)] if fires else []))
    return TestCase(sc.name, clock(sc.step), series, checks)


# --- the scenarios -------------------------------------------------------------------


def base_rate(plan: ServingPlan) -> int:
    """Requests a minute in the burn cases: enough that 0.9x the tightest threshold is
    hundreds of events a sample, few enough that days of counters stay exact in float64."""
    tightest = min(s.budget for s in slos(plan) if s.budget > 0) if any(s.budget > 0 for s in slos(plan)) else 1.0
    exponent = min(max(4, math.ceil(3 - math.log10(tightest))), 11)
    return 10**exponent


# How each window pair's cases keep the policy's other pair quiet: clean history before
# them (minutes, traffic multiple), so that the other pair's long window stays low.
_HISTORY = {"1h": (300, 2), "6h": (60, 1), "1d": (2880, 8), "3d": (60, 1)}
# The next longer rate window after each short window, and after each long one.
_NEXT_WINDOW_MINUTES = {"5m": 30, "30m": 60, "2h": 360, "6h": 1440}
_NEXT_LONG_MINUTES = {"1h": 120, "6h": 1440, "1d": 4320, "3d": 4320}
# A burst that only the short window sees puts the long window at this share of the
# threshold: below it, but above a quarter of it (a threshold divided by 4 fires).
_BURST_LONG_SHARE = 0.35


def _bad(slo: Slo, share: float) -> dict:
    return {"errors": share} if slo.name == "availability" else {"slow": share}


def _bad_count(slo: Slo, count: int) -> dict:
    return {"bad": count} if slo.name == "availability" else {"slow_count": count}


def _other(b: Branch) -> Branch:
    (policy,) = [p for p in BURN_POLICIES if b in p.branches]
    (other,) = [o for o in policy.branches if o != b]
    return other


def branch_scenarios(plan: ServingPlan, slo: Slo, b: Branch, step: int, eval_minutes: int) -> list[Scenario]:
    rate = base_rate(plan)
    threshold = burn_threshold(slo, b)
    long, short = minutes(b.long), minutes(b.short)
    label = f"{slo.name} {b.rate:g}x over {b.long} and {b.short}"
    hist, mult = _HISTORY[b.long]
    history = [Phase(hist, rate * mult)]
    out = []
    if threshold > 0 and 1.1 * threshold < 1:
        # Traffic and the client's failures change within the case, so that a rate over
        # the wrong window gives a different ratio: the 0.9x burn runs at twice the
        # traffic with half of it failing through the client; the 1.1x burn has the
        # client failing just before its short window, which runs at half the traffic.
        before = min(_NEXT_WINDOW_MINUTES[b.short] - short, (long - short) // 2)
        phases = history + [
            Phase(long, 2 * rate, client=0.5, **_bad(slo, 0.9 * threshold)),
            Phase(long - short - before, rate, **_bad(slo, 1.1 * threshold)),
            Phase(before, rate, client=0.5, **_bad(slo, 1.1 * threshold)),
            Phase(short, rate // 2, **_bad(slo, 1.1 * threshold)),
        ]
        out.append(
            Scenario(f"{label}: 0.9x the threshold is silent, 1.1x fires", phases, step, [hist + long, hist + 2 * long])
        )
    burst = min(1.0, _BURST_LONG_SHARE * threshold * long / short) if threshold > 0 else 0.5
    if burst < 1:
        phases = history + [Phase(long, rate), Phase(short, rate, **_bad(slo, burst))]
        out.append(
            Scenario(f"{label}: a burst only the short window sees is silent", phases, step, [hist + long + short])
        )
    # 2.5x, so that the next longer window than the short one, holding part of the burn
    # and the tail, is still above the threshold (a rule reading it fires).
    burn = min(1.0, 2.5 * threshold) if threshold > 0 else 0.5
    tail = short + eval_minutes
    phases = history + [Phase(long, rate, **_bad(slo, burn)), Phase(tail, rate, **_bad(slo, 0.5 * threshold))]
    out.append(
        Scenario(
            f"{label}: a burn the short window sees ending (0.5x) is silent",
            phases,
            step,
            [hist + long, hist + long + tail],
        )
    )
    out.append(_guard_scenario(plan, slo, b, step, label))
    return out


def _guard_scenario(plan: ServingPlan, slo: Slo, b: Branch, step: int, label: str) -> Scenario:
    """A handful of bad events in the short window, the only traffic of the long one (both
    ratios far above the threshold): silent below the guard only. The other pair stays
    quiet: a faster pair's short window is kept clean, a slower pair's long window is
    diluted by clean traffic before."""
    other = _other(b)
    long, short = minutes(b.long), minutes(b.short)
    faster = minutes(other.long) > long
    clean_end = 0 if faster else minutes(other.short)
    busy = short - clean_end
    per_minute = math.ceil((MIN_BAD_EVENTS + 2) / busy)
    # The two bursts lie further apart than the next longer window than the long one when
    # that window would add their events up to the guard (1h read as 2h).
    next_long = _NEXT_LONG_MINUTES[b.long]
    summed = (2 * MIN_BAD_EVENTS) * long / next_long >= MIN_BAD_EVENTS
    apart = (next_long if summed else long) - short
    # Before each burst, a faster pair's case sends clean requests, enough that the slower
    # pair's long window is at most a quarter of its threshold with every bad event of
    # the case in it (it always holds other.long - 2 long minutes of them); then its own
    # long window holds only the burst's requests.
    dilutions = [minutes(other.long) - long, apart - (long - short)] if faster else [0, 0]
    needed = 4 * (2 * MIN_BAD_EVENTS + 2) / max(burn_threshold(slo, other), 1e-9)
    dilute_rate = max(1, math.ceil(needed / (minutes(other.long) - 2 * long))) if faster else 0
    phases: list[Phase] = []
    for count, dilution in zip((MIN_BAD_EVENTS - 1, MIN_BAD_EVENTS + 1), dilutions):
        if dilution:
            phases.append(Phase(dilution, dilute_rate))
        quiet = long - short if dilution or count < MIN_BAD_EVENTS else apart
        phases.append(Phase(quiet, 0))
        phases.append(Phase(busy, per_minute, **_bad_count(slo, count)))
        if clean_end:
            phases.append(Phase(clean_end, per_minute))
    end = sum(p.minutes for p in phases)
    return Scenario(
        f"{label}: {MIN_BAD_EVENTS - 1} bad events at low traffic are silent, {MIN_BAD_EVENTS + 1} fire",
        phases,
        step,
        [end - apart - short, end],
    )


def fast_scenarios(plan: ServingPlan) -> list[Scenario]:
    rate = base_rate(plan)
    out = [Scenario("healthy traffic: nothing fires", [Phase(120, rate)], 1, [60, 120])]
    for slo in slos(plan):
        for b in BURN_POLICIES[0].branches:
            out += branch_scenarios(plan, slo, b, 1 if minutes(b.short) <= 5 else 5, FAST_EVAL_MINUTES)
        if slo.name == "latency":
            target = latency_target(plan.p99_s)
            assert target is not None
            out.append(
                Scenario(
                    f"latency: a true p99 inside the target's bucket (2% of requests just under "
                    f"{duration(target.seconds)}, e.g. 12 ms on a 20 ms SLA) is silent",
                    [Phase(120, rate, near=0.02)],
                    1,
                    [60, 120],
                )
            )
            out.append(
                Scenario(
                    "latency: 20% of requests slow for an hour pages",
                    [Phase(60, rate), Phase(60, rate, slow=0.2)],
                    1,
                    [60, 120],
                )
            )
    # The server goes: its series stop (a crash loop with no pod left, or a ServiceMonitor
    # Prometheus does not select). Checked before the lookback lets go and after `for:`.
    out.append(Scenario("server gone: no data pages", [Phase(32, rate), Phase(28, 0, state="gone")], 1, [35, 50, 60]))
    out.append(
        Scenario(
            "server down (up == 0): pages after 5m", [Phase(32, rate), Phase(28, 0, state="down")], 1, [35, 45, 60]
        )
    )
    out.append(
        Scenario(
            "a 4-minute blip of up == 0 is silent",
            [Phase(33, rate), Phase(4, 0, state="down"), Phase(23, rate)],
            1,
            [35, 40, 60],
        )
    )
    out.append(
        Scenario("no traffic while up: a ticket after 30m + 15m", [Phase(30, rate), Phase(60, 0)], 1, [60, 70, 80, 90])
    )
    out.append(Scenario("1 request a minute, 2 failures: no page", [Phase(55, 1), Phase(5, 1, bad=2)], 1, [60]))
    out.append(
        Scenario(
            "a second job of the model failing: this job is quiet",
            [Phase(120, rate)],
            1,
            [60, 120],
            other_job=[Phase(30, rate), Phase(90, rate, errors=0.5)],
        )
    )
    if plan.platform != "tf-serving":
        enough, few = int(P99_MIN_PER_MINUTE * 1.1), int(P99_MIN_PER_MINUTE * 0.9)
        out.append(
            Scenario(
                "p99 0.9x the SLA is silent, 1.1x tickets after 15m",
                [Phase(30, enough, p99=0.9), Phase(30, enough, p99=1.1)],
                1,
                [30, 40, 60],
            )
        )
        # A cold pod at three times the SLA with 5% of the traffic is silent (a maximum
        # over pods would page); its busy 10 minutes a while before weigh only in a rate
        # over a longer window than 5m.
        out.append(
            Scenario(
                "a slow pod with 5% of the traffic is silent",
                [Phase(70, 2 * enough)],
                1,
                [70],
                second_pod=[Phase(40, 10), Phase(10, 10 * enough, p99=3.0), Phase(20, 10, p99=3.0)],
            )
        )
        # Traffic moves to a slow pod: the p99 weighted by the last 5 minutes tickets; one
        # weighted by a longer window would still count the fast pod's earlier traffic.
        out.append(
            Scenario(
                "half the traffic on a pod at three times the SLA tickets",
                [Phase(30, 10 * enough), Phase(30, enough)],
                1,
                [60],
                second_pod=[Phase(30, 10), Phase(30, enough, p99=3.0)],
            )
        )
        out.append(
            Scenario(
                f"p99 twice the SLA under {P99_MIN_PER_MINUTE} requests a minute is silent",
                [Phase(30, few, p99=2.0), Phase(30, enough, p99=2.0)],
                1,
                [30, 60],
            )
        )
    return out


def slow_scenarios(plan: ServingPlan) -> list[Scenario]:
    out: list[Scenario] = []
    for slo in slos(plan):
        for b in BURN_POLICIES[1].branches:
            out += branch_scenarios(plan, slo, b, 60, SLOW_EVAL_MINUTES)
    for slo in slos(plan):
        if slo.name == "latency":
            rate = base_rate(plan)
            out.append(
                Scenario(
                    "latency: 2% slow for three days tickets, never pages",
                    [Phase(4320, rate, slow=0.02)],
                    60,
                    [24 * 60, 4320],
                )
            )
    return out


def _close(expr: str, value: float) -> str:
    """1 when `expr` is `value` within float noise (Go and Python sum alike, not bit for bit)."""
    return f"abs({expr} - {number(value)}) <= bool {number(1e-9 + 1e-6 * abs(value))}"


def view_case(plan: ServingPlan) -> TestCase:
    """The SLO view's recordings: two hours at twice each SLO's budget, then two clean
    hours; the 30-day ratio, attainment and budget remaining, after each part, are the
    recorded 5m rates' sums as the model computes them."""
    rate = base_rate(plan)
    shares = {s.name: min(2 * s.budget, 0.5) for s in slos(plan)}
    burning = Phase(120, rate, errors=shares["availability"], slow=shares.get("latency", 0.0))
    timeline = Timeline([burning, Phase(120, rate)], 1)
    model = Model(plan, [timeline])
    exprs = []
    for slo in slos(plan):
        own = slo_matchers(plan, slo.name)
        labels = own  # the result keeps the series' labels; promtool reads them as a PromQL selector
        for at in (120, 240):
            ratio = model.period_ratio(slo, at, FAST_EVAL_MINUTES)
            wanted = [(PERIOD_ERRORS, ratio), (ATTAINMENT, 1 - ratio)]
            if slo.budget > 0:
                wanted += [(BUDGET_REMAINING, 1 - ratio / slo.budget)]
                burn = model.ratio(slo, at, "1h")
                assert burn is not None
                wanted += [(BURN_RATE.format(w="1h"), burn / slo.budget)]
            for series, value in wanted:
                exprs.append(ExprCheck(clock(at), _close(f"{series}{own}", value), labels))
            exprs.append(ExprCheck(clock(at), _close(f"{OBJECTIVE}{own} + {BUDGET}{own}", 1.0), labels))
    name = "slo view: two hours at twice the budget, two clean: the 30-day ratio, attainment, budget left, burn rate"
    return TestCase(name, clock(1), server_series(plan, timeline, plan.name), [], tuple(exprs))


def rule_tests(plan: ServingPlan) -> tuple[RuleTestsContext, RuleTestsContext]:
    fast = [case(plan, sc, FAST_EVAL_MINUTES) for sc in fast_scenarios(plan)] + [view_case(plan)]
    slow = [case(plan, sc, SLOW_EVAL_MINUTES) for sc in slow_scenarios(plan)]
    # The recordings first: alerts read this evaluation's ratios, as they do in a running
    # Prometheus up to the groups' intervals.
    order = [group.name for group in rule_groups(plan)]
    return (
        RuleTestsContext("alerts.yaml", clock(FAST_EVAL_MINUTES), order, fast),
        RuleTestsContext("alerts.yaml", clock(SLOW_EVAL_MINUTES), order, slow),
    )
