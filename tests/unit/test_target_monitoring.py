"""The monitoring target: rules checked and unit-tested by promtool itself, for the
real specs and for variants (explicit error budget, hostile namespace)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import ROOT
from helpers import build_spec as build
from helpers import checked as check
from helpers import spec_variant as variant

BUILDS = [("translator", None), ("translator", "local"), ("classifier", None), ("classifier", "local")]
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
ALERTS = {"LlmcErrorBudgetFastBurn", "LlmcErrorBudgetSlowBurn", "LlmcLatencyP99AboveSla"}
PROMTOOL = shutil.which("promtool")


def load(path: Path):
    return yaml.load(path.read_text(encoding="utf-8"), Loader=LOADER)


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # Not skipped when missing: promtool is how monitoring/ is proven (Debian: prometheus).
    assert PROMTOOL, "promtool is not on PATH (apt-get install prometheus)"
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module", params=BUILDS, ids=lambda b: f"{b[0]}-{b[1] or 'default'}")
def built(request, tmp_path_factory):
    name, profile = request.param
    spec = ROOT / "specs" / f"{name}.llm"
    out = build(spec, tmp_path_factory.mktemp(f"{name}-{profile or 'default'}") / "bundle", profile)
    return spec, profile, out


@pytest.fixture(scope="module")
def translator_bundle(tmp_path_factory) -> Path:
    return build(ROOT / "specs" / "translator.llm", tmp_path_factory.mktemp("translator") / "bundle")


def rules(bundle: Path) -> dict[str, dict]:
    groups = load(bundle / "monitoring" / "alerts.yaml")["groups"]
    return {r.get("record") or r["alert"]: r for g in groups for r in g["rules"]}


# --- promtool ----------------------------------------------------------------------


def test_promtool_check_rules(built):
    _, _, bundle = built
    proc = promtool("check", "rules", "alerts.yaml", cwd=bundle / "monitoring")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_test_rules(built):
    _, _, bundle = built
    proc = promtool("test", "rules", "alerts.test.yaml", cwd=bundle / "monitoring")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_is_tested_firing_and_silent(built):
    _, _, bundle = built
    tests = load(bundle / "monitoring" / "alerts.test.yaml")["tests"]
    fired, silent = set(), set()
    for case in tests:
        for check_ in case["alert_rule_test"]:
            (fired if check_["exp_alerts"] else silent).add(check_["alertname"])
    assert fired == ALERTS and silent == ALERTS


END = r"(?=[ )])"  # a threshold ends the comparison


@pytest.mark.parametrize(
    "alert, edits",
    [
        # The page never fires (both window pairs): the fast-burn case catches it.
        ("LlmcErrorBudgetFastBurn", [(r"> 0\.0144" + END, "> 0.9"), (r"> 0\.006" + END, "> 0.9")]),
        # The page's 6x floor lowered to 4x: the slow-burn case (4.5x) must not page.
        ("LlmcErrorBudgetFastBurn", [(r"> 0\.006" + END, "> 0.004")]),
        # The ticket never fires (both window pairs).
        ("LlmcErrorBudgetSlowBurn", [(r"> 0\.003" + END, "> 0.9"), (r"> 0\.001" + END, "> 0.9")]),
        # The latency threshold tripled: twice the SLA no longer fires.
        ("LlmcLatencyP99AboveSla", [(r"(llmc_request_latency_seconds:p99\{[^}]*\} > )0\.08", r"\g<1>0.24")]),
    ],
    ids=["page-never", "page-at-4x", "ticket-never", "latency-3x"],
)
def test_the_rule_tests_have_teeth(tmp_path, translator_bundle, alert, edits):
    """A broken threshold makes `promtool test rules` fail: the tests pin the alerts.
    (Which window pair of an alert fires is pinned by test_burn_rate_windows_and_thresholds:
    telling the pairs apart by behaviour needs six hours of series, too slow here.)"""
    shutil.copytree(translator_bundle / "monitoring", tmp_path / "monitoring")
    path = tmp_path / "monitoring" / "alerts.yaml"
    text = path.read_text(encoding="utf-8")
    for old, new in edits:
        text, count = re.subn(old, new, text)
        assert count >= 1, old
    path.write_text(text, encoding="utf-8")
    assert promtool("check", "rules", "alerts.yaml", cwd=path.parent).returncode == 0
    proc = promtool("test", "rules", "alerts.test.yaml", cwd=path.parent)
    assert proc.returncode != 0
    assert f"alertname: {alert}" in proc.stdout + proc.stderr


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
    expected = {
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


def test_explicit_error_rate_is_the_budget(tmp_path):
    spec = variant(
        tmp_path,
        "classifier",
        lambda t: t.replace("availability = 99.9%", "availability = 99.9%\n    error_rate   = 0.5%"),
    )
    assert check(spec).ir.serve.sla.error_rate == pytest.approx(0.005)
    bundle = build(spec, tmp_path / "bundle")
    expr = rules(bundle)["LlmcErrorBudgetFastBurn"]["expr"]
    assert "> 0.072 " in expr and "> 0.03 " in expr  # 14.4 and 6 x 0.5%
    for command in (("check", "rules", "alerts.yaml"), ("test", "rules", "alerts.test.yaml")):
        proc = promtool(*command, cwd=bundle / "monitoring")
        assert proc.returncode == 0, proc.stdout + proc.stderr


HOSTILE_NAMESPACE = "ns\" # {{ x }}: &anchor *alias\n- evil: 'q' \\ \t é {{ $labels.model }}"


def llm_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


@pytest.mark.parametrize("name", ["translator", "classifier"])
def test_hostile_namespace_stays_a_promql_string(tmp_path, name):
    """The namespace reaches PromQL only as an escaped string literal: promtool parses
    every rule and the unit tests still select exactly the namespace's series."""
    # `llmc check` rejects such a namespace (E801); the rules must keep it data all the
    # same, so it is put into a checked IR directly.
    from llmc.compiler.bundle import build_files, write_bundle
    from llmc.compiler.driver import check_spec

    result = check_spec(str(ROOT / "specs" / f"{name}.llm"))
    result.ir = result.ir.model_copy(
        update={"deploy": result.ir.deploy.model_copy(update={"namespace": HOSTILE_NAMESPACE})}
    )
    bundle = tmp_path / "bundle"
    write_bundle(build_files(result), str(bundle))
    for command in (("check", "rules", "alerts.yaml"), ("test", "rules", "alerts.test.yaml")):
        proc = promtool(*command, cwd=bundle / "monitoring")
        assert proc.returncode == 0, proc.stdout + proc.stderr
    tests = load(bundle / "monitoring" / "alerts.test.yaml")["tests"]
    fired = [a for case in tests for c in case["alert_rule_test"] for a in c["exp_alerts"]]
    assert fired and all(a["exp_labels"]["namespace"] == HOSTILE_NAMESPACE for a in fired)
    # The PrometheusRule in k8s/ carries the very same groups.
    (rule,) = list(yaml.load_all((bundle / "k8s" / "prometheusrule.yaml").read_text(encoding="utf-8"), Loader=LOADER))
    assert rule["spec"]["groups"] == load(bundle / "monitoring" / "alerts.yaml")["groups"]


def test_no_serve_block_no_monitoring(tmp_path):
    spec = variant(tmp_path, "classifier", lambda t: re.sub(r"\nserve \{.*?\n\}\n", "\n", t, count=1, flags=re.S))
    bundle = build(spec, tmp_path / "bundle")
    assert not (bundle / "monitoring").exists()
    assert not (bundle / "k8s" / "prometheusrule.yaml").exists()
    assert not (bundle / "k8s" / "deployment.yaml").exists()
