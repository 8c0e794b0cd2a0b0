"""The monitoring rules against the real server's metrics: every series and label the
generated alerts.yaml (its recording and alerting rules), the PrometheusRule in k8s/,
the Grafana dashboard and Prometheus Adapter's rule select is one a live Triton exposes,
scraped from its /metrics while it serves requests.

What the server cannot expose is named, not skipped silently: the labels Prometheus
adds to every scraped series (`namespace`, `pod`, `job`, ...: the ServiceMonitor's
target labels), the series the rules record themselves (`namespace_model:...`), and
kube-state-metrics' `kube_*` series (the dashboard's replica panels), and `up`, which
Prometheus writes itself for every target. The classifier's
cluster platform is TF Serving, whose metrics no local server here can expose (no TF
Serving binary): its rules are proven by promtool's unit tests only
(test_target_monitoring_runs.py).
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import yaml
from support.serving_runs import env, free_port, translator_run

# Labels a Prometheus scrape adds (target and ServiceMonitor relabelling), never the server.
SCRAPE_LABELS = {"namespace", "pod", "job", "instance", "service", "container", "endpoint"}
# Series another exporter provides: kube-state-metrics (the dashboard's replica panels).
OTHER_EXPORTERS = ("kube_",)
# Series Prometheus writes itself: `up` for every scrape target (the no-data alerts read
# it), ALERTS for every pending or firing alert (the dashboard's annotations).
PROMETHEUS_SERIES = {"up", "ALERTS"}
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*'([^']*)'")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+\S+")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def selectors(bundle: Path) -> list[tuple[str, list[tuple[str, str, str]], str]]:
    """(series, [(label, op, value)], where) of every selector in the bundle's rules and dashboard."""
    found = []
    texts = {}
    alerts = yaml.safe_load((bundle / "monitoring" / "alerts.yaml").read_text())
    for group in alerts["groups"]:
        for rule in group["rules"]:
            texts[f"alerts.yaml {rule.get('record') or rule.get('alert')}"] = rule["expr"]
    (prom,) = list(yaml.safe_load_all((bundle / "k8s" / "prometheusrule.yaml").read_text()))
    assert prom["spec"]["groups"] == alerts["groups"]  # the same rules; read once
    for n, expr in enumerate(
        re.findall(r'"expr":\s*"((?:[^"\\]|\\.)*)"', (bundle / "monitoring" / "dashboard.json").read_text())
    ):
        texts[f"dashboard.json target {n}"] = json.loads(f'"{expr}"')
    adapter = bundle / "monitoring" / "prometheus-adapter.yaml"
    for rule in yaml.safe_load(adapter.read_text())["rules"] if adapter.exists() else []:
        # The adapter fills <<.LabelMatchers>> (namespace, pod) and <<.GroupBy>> itself.
        texts["prometheus-adapter.yaml seriesQuery"] = rule["seriesQuery"]
        texts["prometheus-adapter.yaml metricsQuery"] = rule["metricsQuery"]
    for where, expr in texts.items():
        for name, body in SELECTOR.findall(expr):
            pairs = MATCHER.findall(body)
            # A selector by `__name__` (Triton's requests: successes and failures in one)
            # selects each of the names it lists.
            names = (
                [name] if name else [v for label, _, value in pairs if label == "__name__" for v in value.split("|")]
            )
            assert names, (where, body)
            found += [(n, [p for p in pairs if p[0] != "__name__"], where) for n in names]
    return found


def recorded(bundle: Path) -> set[str]:
    alerts = yaml.safe_load((bundle / "monitoring" / "alerts.yaml").read_text())
    return {rule["record"] for group in alerts["groups"] for rule in group["rules"] if "record" in rule}


def scrape(url: str) -> dict[str, list[dict[str, str]]]:
    """Series name -> the label sets of its samples, from Prometheus text exposition."""
    series: dict[str, list[dict[str, str]]] = {}
    for line in urllib.request.urlopen(url, timeout=10).read().decode().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = SAMPLE.match(line)
        assert m, line
        series.setdefault(m.group(1), []).append(dict(LABEL.findall(m.group(2) or "")))
    return series


def test_every_series_and_label_the_rules_select_is_on_the_live_servers_metrics(tmp_path, monkeypatch):
    from llmc.runtime.serving.session import served

    for key, value in env().items():
        monkeypatch.setenv(key, value)
    spec = translator_run(tmp_path)
    bundle = tmp_path / "build" / spec.stem
    http, metrics = free_port(), free_port()
    with served("translator-local", tmp_path / "runs", f"llmc run {spec}", http, metrics, 60, "test") as live:
        good = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1, 1], "data": ["May 5 1999"]}]})
        bad = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1, 1], "data": [""]}]})
        # Answers, and two the model refuses (400): Triton 2.51 counts those as successes too
        # (docs/serving.md, "Monitoring"); its failure series exist from the start, by reason.
        for body in [good] * 5 + [bad] * 2:
            request = urllib.request.Request(live.infer_url, body.encode(), {"Content-Type": "application/json"})
            try:
                urllib.request.urlopen(request, timeout=30).read()
            except urllib.error.HTTPError as exc:
                assert exc.code == 400
        exposed = scrape(f"http://127.0.0.1:{metrics}/metrics")
    own = recorded(bundle)
    found = selectors(bundle)
    assert problems(found, exposed, own) == []
    checked = {
        name
        for name, _, _ in found
        if name not in own and name not in PROMETHEUS_SERIES and not name.startswith(OTHER_EXPORTERS)
    }
    # The rules' raw series: successes, failures (by reason) and the latency summary; the
    # dashboard's queue time.
    assert checked == {
        "nv_inference_request_success",
        "nv_inference_request_failure",
        "nv_inference_request_summary_us",
        "nv_inference_queue_duration_us",
    }
    assert any(s.get("model") == "translator" for s in exposed["nv_inference_request_success"])
    # The check has teeth: a misspelt series, a label the server lacks, a wrong model name.
    broken = [
        ("nv_inference_request_sucess", [("model", "=", "translator")], "misspelt"),
        ("nv_inference_request_failure", [("code", "=", "500")], "no such label"),
        ("nv_inference_request_summary_us", [("model", "=", "translater")], "wrong model"),
    ]
    assert [p.split(":")[0] for p in problems(broken, exposed, own)] == ["misspelt", "no such label", "wrong model"]


def problems(found, exposed: dict[str, list[dict[str, str]]], own: set[str]) -> list[str]:
    """What the rules select that the live server does not expose, one line each."""
    out = []
    for name, matchers, where in found:
        if name in own or name in PROMETHEUS_SERIES or name.startswith(OTHER_EXPORTERS):
            continue
        if name not in exposed:
            out.append(f"{where}: selects {name}, which Triton does not expose")
            continue
        for label, op, value in matchers:
            if label in SCRAPE_LABELS:
                continue
            values = {sample[label] for sample in exposed[name] if label in sample}
            if not values:
                out.append(f"{where}: {name} has no label {label!r} on the live server")
            elif op == "=" and value not in values:
                out.append(f"{where}: no {name}{{{label}={value!r}}}; the server has {sorted(values)}")
    return out
