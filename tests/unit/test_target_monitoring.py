"""The monitoring target: rules checked and unit-tested by promtool itself, for the
real specs and for variants (explicit error budget, hostile namespace).

The tests of this part that run real processes (tools, frameworks, servers) are in
tests/integration/test_target_monitoring_runs.py.
"""

from __future__ import annotations

import re

import pytest
from helpers import build_spec as build
from helpers import checked as check
from helpers import spec_variant as variant
from support.bundles import built as built  # a fixture: pytest finds it imported here
from support.bundles import load, rules

TRITON_ALERTS = {
    "LlmcServerDown",
    "LlmcNoTraffic",
    "LlmcErrorBudgetFastBurn",
    "LlmcErrorBudgetSlowBurn",
    "LlmcLatencyP99AboveSla",
}
TFS_ALERTS = TRITON_ALERTS - {"LlmcLatencyP99AboveSla"} | {"LlmcLatencyBudgetFastBurn", "LlmcLatencyBudgetSlowBurn"}
POLICY: dict[str, tuple[str, list[tuple[float, str, str]]]] = {
    "FastBurn": ("page", [(14.4, "1h", "5m"), (6, "6h", "30m")]),
    "SlowBurn": ("ticket", [(3, "1d", "2h"), (1, "3d", "6h")]),
}


def rule_tests(bundle):
    folder = bundle / "monitoring"
    return load(folder / "alerts.test.yaml")["tests"] + load(folder / "alerts.slow.test.yaml")["tests"]


# --- promtool ----------------------------------------------------------------------


def test_every_alert_is_tested_firing_and_silent(built):
    spec, profile, bundle = built
    expected = TFS_ALERTS if check(spec, profile).ir.serve.platform == "tf-serving" else TRITON_ALERTS
    assert {r["alert"] for r in rules(bundle).values() if "alert" in r} == expected
    fired: set[str] = set()
    silent: set[str] = set()
    for case in rule_tests(bundle):
        for check_ in case["alert_rule_test"]:
            (fired if check_["exp_alerts"] else silent).add(check_["alertname"])
    assert fired == expected and silent == expected


def test_rule_tests_run_hours_and_days_with_changing_rates(built):
    _, _, bundle = built
    folder = bundle / "monitoring"
    fast, slow = load(folder / "alerts.test.yaml"), load(folder / "alerts.slow.test.yaml")
    assert fast["evaluation_interval"] == "5m" and slow["evaluation_interval"] == "1h"
    names = [g["name"] for g in load(folder / "alerts.yaml")["groups"]]
    assert fast["group_eval_order"] == slow["group_eval_order"] == names
    longest = max(
        len(check_["eval_time"]) and _minutes(check_["eval_time"])
        for case in slow["tests"]
        for check_ in case["alert_rule_test"]
    )
    assert longest >= 6 * 1440  # 0.9x then 1.1x of the 3-day window
    # Rates change within a case: several distinct per-sample increments in one series.
    steps = set()
    for case in fast["tests"] + slow["tests"]:
        for s in case["input_series"]:
            steps |= set(re.findall(r"\+(\d+(?:\.\d+)?)x", s["values"]))
    assert len(steps) > 10


def _minutes(text: str) -> int:
    return int(text[:-1]) * {"m": 1, "h": 60, "d": 1440}[text[-1]]


# --- what the rules say ------------------------------------------------------------


def test_rules_read_the_servers_own_metrics_scoped_to_the_job(built):
    spec, profile, bundle = built
    ir = check(spec, profile).ir
    by_name = rules(bundle)
    exprs = " ".join(r["expr"] for r in by_name.values())
    if ir.serve.platform == "triton":
        for metric in (
            "nv_inference_request_success",
            "nv_inference_request_failure",
            "nv_inference_request_summary_us",
        ):
            assert metric in exprs
        assert "reason!='CANCELED'" in exprs
        assert ":tensorflow:" not in exprs
    else:
        for metric in (":tensorflow:serving:request_count", ":tensorflow:serving:request_latency_bucket"):
            assert metric in exprs
        assert "status=~" in exprs
        assert "nv_inference" not in exprs
        # Probes never count: answered requests come from the model APIs' histogram only.
        for selector in re.findall(r":tensorflow:serving:request_latency_(?:bucket|count)\{[^}]*\}", exprs):
            assert "API=~'predict|classify|regress|Predict|Classify|Regress'" in selector, selector
        for selector in re.findall(r":tensorflow:serving:request_count\{[^}]*\}", exprs):
            assert "status" in selector, selector
    # Every raw selector names the namespace and the Service's scrape job.
    job = f"job='{rules_job(bundle)}'"
    for selector in re.findall(r"(?<![:\w])(?:nv_inference_[a-z_]+|:tensorflow:[a-z_:]+|up)\{[^}]*\}", exprs):
        assert f"namespace='{ir.deploy.namespace}'" in selector and job in selector, selector
    for selector in re.findall(r"namespace_job:[a-z_:0-9]+\{[^}]*\}", exprs):
        assert job in selector, selector


def rules_job(bundle) -> str:
    return load(bundle / "k8s" / "service.yaml")["metadata"]["name"]


def test_burn_rate_windows_thresholds_and_guards(built):
    spec, profile, bundle = built
    ir = check(spec, profile).ir
    sla = ir.serve.sla
    budget = sla.error_rate
    assert budget == pytest.approx(1 - sla.availability)
    by_name = rules(bundle)
    slos = [("LlmcErrorBudget", "request_errors", budget)]
    if ir.serve.platform == "tf-serving":
        slos.append(("LlmcLatencyBudget", "requests_slow", 0.01))
    for prefix, metric, slo_budget in slos:
        for suffix, (severity, pairs) in POLICY.items():
            rule = by_name[prefix + suffix]
            assert rule["labels"]["severity"] == severity
            assert "for" not in rule
            terms = rule["expr"].split(" or ")
            assert len(terms) == len(pairs)
            for term, (rate, long, short) in zip(terms, pairs):
                threshold = re.escape(repr(round(rate * slo_budget, 12)))
                for window in (long, short):
                    pattern = rf"namespace_job:llmc_{metric}:ratio_rate{window}\{{[^}}]*\}} > {threshold}( |\))"
                    assert re.search(pattern, term), (prefix + suffix, window, term)
                seconds = _minutes(long) * 60
                assert re.search(rf"namespace_job:llmc_{metric}:rate{long}\{{[^}}]*\}} \* {seconds} >= 10\)", term)
    groups = load(bundle / "monitoring" / "alerts.yaml")["groups"]
    intervals = {g["name"].rsplit(".", 1)[1]: g["interval"] for g in groups}
    assert intervals == {"sli": "30s", "sli-slow": "5m", "alerts": "30s"}
    slow = [r["record"] for g in groups if g["name"].endswith("sli-slow") for r in g["rules"]]
    assert slow and all(name.endswith(("rate1d", "rate3d", "rate30d")) for name in slow)


def test_latency_slo_against_the_sla(built):
    spec, profile, bundle = built
    ir = check(spec, profile).ir
    by_name = rules(bundle)
    if ir.serve.platform == "triton":
        rule = by_name["LlmcLatencyP99AboveSla"]
        assert f" > {round(ir.serve.sla.p99_latency, 12)!r} and " in rule["expr"]
        assert rule["expr"].endswith(" * 60 >= 100")
        assert rule["for"] == "15m" and rule["labels"]["severity"] == "ticket"
        return
    # TF Serving: slow = above the first bucket bound at or above the SLA's p99.
    bounds = [10 * 1.8**k for k in range(33)]
    bound = min(b for b in bounds if b >= ir.serve.sla.p99_latency * 1e6)
    le = f"{bound:.6g}"
    slow = by_name["namespace_job:llmc_requests_slow:rate5m"]["expr"]
    assert f"le='{le}'" in slow
    description = by_name["LlmcLatencyBudgetFastBurn"]["annotations"]["description"]
    assert f"le={le} µs" in description


def test_tf_serving_bucket_bounds_are_its_own():
    """TF Serving writes bounds with absl::StrCat (six significant digits): 20 ms is in
    the (11568.3, 20823] µs bucket, whose label is 20823."""
    from llmc.compiler.targets.slo_rules import latency_target, tfs_bucket_label

    assert tfs_bucket_label(10 * 1.8**12) == "11568.3"
    assert latency_target(0.020) == ("20823", pytest.approx(0.0208230, rel=1e-5))
    assert latency_target(0.0115683).le == "11568.3"
    assert latency_target(3600.0) is None


def test_the_policy_model_matches_prometheus_rate_arithmetic():
    """slo_tests.increase is Prometheus 2.x's extrapolatedRate over a closed range."""
    from llmc.compiler.targets.slo_tests import increase

    counter = [float(10 * i) for i in range(61)]  # 10 a minute, one sample a minute
    assert increase(counter, 1, 60, 60) == pytest.approx(600)
    assert increase(counter, 1, 30, 60) == pytest.approx(300)  # from 0: no extrapolation below zero
    assert increase(counter, 1, 60, 5) == pytest.approx(50)
    assert increase(counter[:2] + [None] * 59, 1, 60, 5) is None  # fewer than two samples
    gap = counter[:31] + [None] * 20 + counter[51:]
    assert increase(gap, 1, 60, 30) == pytest.approx(300)  # the gap's edges are samples
    assert increase(gap, 1, 60, 25) == pytest.approx((600 - 510) * (9 + 0.5) / 9)  # half a step beyond


def test_annotations_use_labels_not_spec_strings(built):
    """Prometheus expands {{ }} in labels and annotations: spec strings never go there."""
    spec, profile, bundle = built
    ir = check(spec, profile).ir
    for rule in rules(bundle).values():
        if "alert" not in rule:
            continue
        for text in list(rule["annotations"].values()) + list(rule["labels"].values()):
            assert ir.deploy.namespace not in text
            for template in re.findall(r"\{\{.*?\}\}", text):
                assert template in ("{{ $labels.namespace }}", "{{ $labels.model }}", "{{ $labels.job }}")


def test_dashboard(built):
    spec, profile, bundle = built
    ir = check(spec, profile).ir
    tf = ir.serve.platform == "tf-serving"
    dashboard = load(bundle / "monitoring" / "dashboard.json")  # JSON is YAML
    by_title = {p["title"]: p for p in dashboard["panels"]}
    slos = ["Availability"] + (["Latency"] if tf else [])
    expected = [f"{s}: {what}" for s in slos for what in ("attainment over 30 days", "error budget remaining")]
    expected += ["Burn rate", "Request rate against planned capacity", "Error ratio", "p99 latency against target"]
    assert list(by_title) == expected + ["Queue time", "Replicas"]
    assert {by_title[t]["type"] for t in expected[: 2 * len(slos)]} == {"stat"}

    def line(title):
        return by_title[title]["fieldConfig"]["defaults"]["thresholds"]["steps"][-1]["value"]

    assert line("p99 latency against target") == pytest.approx(ir.serve.sla.p99_latency)
    assert line("Queue time") == pytest.approx(ir.serve.sla.p99_latency)
    assert line("Error ratio") == pytest.approx(ir.serve.sla.error_rate)
    assert line("Request rate against planned capacity") == pytest.approx(ir.serve.sla.throughput)
    assert line("Burn rate") == 14.4
    assert line("Availability: attainment over 30 days") == pytest.approx(ir.serve.sla.availability)
    recorded = set(rules(bundle))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        exprs = " ".join(t["expr"] for t in panel["targets"])
        for metric in re.findall(r"namespace_job(?:_slo)?:[a-z_:0-9]+", exprs):
            assert metric in recorded, metric
        # The description names the series the panel plots, and no other.
        named = set(re.findall(r"namespace_job(?:_slo)?:[a-z_:0-9]*[a-z0-9]", panel["description"]))
        assert named <= set(re.findall(r"namespace_job(?:_slo)?:[a-z_:0-9]+", exprs)), panel["title"]
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24
        mine = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
    # Successes and failures, as the description says: the requests and the errors among them.
    rate = by_title["Request rate against planned capacity"]
    assert [t["legendFormat"] for t in rate["targets"]][:2] == ["requests/s", "server errors/s"]
    assert "kube_deployment_status_replicas_available" in rate["targets"][-1]["expr"]
    queue = by_title["Queue time"]["targets"][0]["expr"]
    assert ("queuing_latency" in queue) if tf else ("nv_inference_queue_duration_us" in queue)
    replicas = " ".join(t["expr"] for t in by_title["Replicas"]["targets"])
    assert "kube_deployment_status_replicas_available" in replicas
    assert "kube_horizontalpodautoscaler_status_desired_replicas" in replicas
    (annotation,) = dashboard["annotations"]["list"]
    assert annotation["expr"] == (
        f"ALERTS{{namespace='{ir.deploy.namespace}', job='{ir.model.name}', alertstate='firing'}}"
    )
    assert len(dashboard["uid"]) <= 40


def test_alerts_link_their_runbook_section_and_the_dashboard(built):
    spec, profile, bundle = built
    ir = check(spec, profile).ir
    runbook = (bundle / "monitoring" / "runbook.md").read_text()
    anchors = {h.strip().lower() for h in re.findall(r"^## (\S+)$", runbook, flags=re.M)}
    uid = load(bundle / "monitoring" / "dashboard.json")["uid"]
    alerts = [r for r in rules(bundle).values() if "alert" in r]
    assert anchors == {r["alert"].lower() for r in alerts}
    base = f"{ir.deploy.bundle_url}/" if ir.deploy.bundle_url else ""
    grafana = ir.deploy.grafana_url or ""
    for rule in alerts:
        notes = rule["annotations"]
        assert notes["runbook_url"] == f"{base}monitoring/runbook.md#{rule['alert'].lower()}"
        assert notes["dashboard"] == f"{grafana}/d/{uid}"
        section = runbook.split(f"## {rule['alert']}\n", 1)[1].split("\n## ", 1)[0]
        assert f"Severity **{rule['labels']['severity']}**" in section
        assert "```sh\nkubectl -n " + ir.deploy.namespace in section


# --- variants ----------------------------------------------------------------------


def test_no_serve_block_no_monitoring(tmp_path):
    spec = variant(tmp_path, "classifier", lambda t: re.sub(r"\nserve \{.*?\n\}\n", "\n", t, count=1, flags=re.S))
    bundle = build(spec, tmp_path / "bundle")
    assert not (bundle / "monitoring").exists()
    assert not (bundle / "k8s" / "prometheusrule.yaml").exists()
    assert not (bundle / "k8s" / "deployment.yaml").exists()
