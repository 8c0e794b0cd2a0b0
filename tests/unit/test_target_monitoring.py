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

ALERTS = {"LlmcErrorBudgetFastBurn", "LlmcErrorBudgetSlowBurn", "LlmcLatencyP99AboveSla"}


# --- promtool ----------------------------------------------------------------------


def test_every_alert_is_tested_firing_and_silent(built):
    _, _, bundle = built
    tests = load(bundle / "monitoring" / "alerts.test.yaml")["tests"]
    fired: set[str] = set()
    silent: set[str] = set()
    for case in tests:
        for check_ in case["alert_rule_test"]:
            (fired if check_["exp_alerts"] else silent).add(check_["alertname"])
    assert fired == ALERTS and silent == ALERTS


# --- what the rules say ------------------------------------------------------------


def test_rules_read_the_servers_own_metrics(built):
    spec, profile, bundle = built
    ir = check(spec, profile).ir
    exprs = " ".join(r["expr"] for r in rules(bundle).values())
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
    assert f"namespace='{ir.deploy.namespace}'" in exprs


def test_burn_rate_windows_and_thresholds(built):
    spec, profile, bundle = built
    sla = check(spec, profile).ir.serve.sla
    budget = sla.error_rate
    assert budget == pytest.approx(1 - sla.availability)
    by_name = rules(bundle)
    expected: dict[str, tuple[str, list[tuple[float, str, str]]]] = {
        "LlmcErrorBudgetFastBurn": ("page", [(14.4, "1h", "5m"), (6, "6h", "30m")]),
        "LlmcErrorBudgetSlowBurn": ("ticket", [(3, "1d", "2h"), (1, "3d", "6h")]),
    }
    for alert, (severity, pairs) in expected.items():
        rule = by_name[alert]
        assert rule["labels"] == {"severity": severity, "slo": "availability"}
        for rate, long, short in pairs:
            threshold = repr(round(rate * budget, 12))
            for window in (long, short):
                pattern = (
                    r"namespace_model:llmc_request_errors:ratio_rate"
                    + window
                    + r"\{[^}]*\} > "
                    + re.escape(threshold)
                    + r"( |\))"
                )
                assert re.search(pattern, rule["expr"]), (alert, window, threshold, rule["expr"])
    for window in ("5m", "30m", "1h", "2h", "6h", "1d", "3d"):
        assert f"namespace_model:llmc_request_errors:ratio_rate{window}" in by_name
        assert f"namespace_model:llmc_requests:rate{window}" in by_name


def test_latency_alert_against_the_sla(built):
    spec, profile, bundle = built
    sla = check(spec, profile).ir.serve.sla
    rule = rules(bundle)["LlmcLatencyP99AboveSla"]
    assert rule["expr"].endswith(f" > {round(sla.p99_latency, 12)!r}")
    assert rule["for"] == "10m"


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
                assert template in ("{{ $labels.namespace }}", "{{ $labels.model }}")


def test_dashboard(built):
    spec, profile, bundle = built
    ir = check(spec, profile).ir
    dashboard = load(bundle / "monitoring" / "dashboard.json")  # JSON is YAML
    titles = [p["title"] for p in dashboard["panels"]]
    assert titles == ["Request rate", "Error ratio", "p99 latency", "Replicas"]
    by_title = {p["title"]: p for p in dashboard["panels"]}
    steps = by_title["p99 latency"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1]["value"] == pytest.approx(ir.serve.sla.p99_latency)
    steps = by_title["Error ratio"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1]["value"] == pytest.approx(ir.serve.sla.error_rate)
    recorded = set(rules(bundle))
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for metric in re.findall(r"namespace_model:[a-z_:0-9]+", target["expr"]):
                assert metric in recorded, metric
    replicas = " ".join(t["expr"] for t in by_title["Replicas"]["targets"])
    assert "kube_deployment_status_replicas_available" in replicas
    assert "kube_horizontalpodautoscaler_status_desired_replicas" in replicas
    assert len(dashboard["uid"]) <= 40


# --- variants ----------------------------------------------------------------------


def test_no_serve_block_no_monitoring(tmp_path):
    spec = variant(tmp_path, "classifier", lambda t: re.sub(r"\nserve \{.*?\n\}\n", "\n", t, count=1, flags=re.S))
    bundle = build(spec, tmp_path / "bundle")
    assert not (bundle / "monitoring").exists()
    assert not (bundle / "k8s" / "prometheusrule.yaml").exists()
    assert not (bundle / "k8s" / "deployment.yaml").exists()
