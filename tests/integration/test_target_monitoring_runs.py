"""The monitoring target: rules checked and unit-tested by promtool itself, for the
real specs and for variants (explicit error budget, hostile namespace).

This file holds the tests of this part that run real processes (tools, frameworks,
servers); the fast checks of the same part are in tests/unit/test_target_monitoring.py.
That the generated cases catch wrong rules is tests/integration/test_rule_mutations_runs.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import ROOT
from helpers import build_spec as build
from helpers import checked as check
from helpers import spec_variant as variant
from support.bundles import LOADER, load, rules
from support.bundles import built as built  # a fixture: pytest finds it imported here

PROMTOOL = shutil.which("promtool")


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # Not skipped when missing: promtool is how monitoring/ is proven (Debian: prometheus).
    assert PROMTOOL, "promtool is not on PATH (apt-get install prometheus)"
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


# --- promtool ----------------------------------------------------------------------


def test_promtool_check_rules(built):
    _, _, bundle = built
    proc = promtool("check", "rules", "alerts.yaml", cwd=bundle / "monitoring")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_test_rules(built):
    _, _, bundle = built
    proc = promtool("test", "rules", "alerts.test.yaml", "alerts.slow.test.yaml", cwd=bundle / "monitoring")
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- what the rules say ------------------------------------------------------------


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
    for command in (("check", "rules", "alerts.yaml"), ("test", "rules", "alerts.test.yaml", "alerts.slow.test.yaml")):
        proc = promtool(*command, cwd=bundle / "monitoring")
        assert proc.returncode == 0, proc.stdout + proc.stderr


HOSTILE_NAMESPACE = "ns\" # {{ x }}: &anchor *alias\n- evil: 'q' \\ \t é {{ $labels.model }}"


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
    for command in (("check", "rules", "alerts.yaml"), ("test", "rules", "alerts.test.yaml", "alerts.slow.test.yaml")):
        proc = promtool(*command, cwd=bundle / "monitoring")
        assert proc.returncode == 0, proc.stdout + proc.stderr
    tests = load(bundle / "monitoring" / "alerts.test.yaml")["tests"]
    fired = [a for case in tests for c in case["alert_rule_test"] for a in c["exp_alerts"]]
    assert fired and all(a["exp_labels"]["namespace"] == HOSTILE_NAMESPACE for a in fired)
    # The PrometheusRule in k8s/ carries the very same groups.
    (rule,) = list(yaml.load_all((bundle / "k8s" / "prometheusrule.yaml").read_text(encoding="utf-8"), Loader=LOADER))
    assert rule["spec"]["groups"] == load(bundle / "monitoring" / "alerts.yaml")["groups"]
