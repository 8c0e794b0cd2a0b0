"""The bundle's Alertmanager snippet (monitoring/alertmanager.yaml) in a real Alertmanager
(Debian's `prometheus-alertmanager`, with amtool; bin/setup installs both): amtool accepts
the file, and a live Alertmanager on 127.0.0.1 given the generated alerts' own labels
holds back a ticket while a page of the same SLO of the same server fires, and only then:
the ticket of the other SLO, and the same ticket of a second server of the model (a
canary, another `job`), still notify. A deliberately broken rule (its `equal` without
`slo`) inhibits the other SLO's ticket too, which the test catches.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from helpers import ROOT
from helpers import build_spec as build
from support.prometheus import stop
from support.serving_runs import free_port

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
AMTOOL = shutil.which("amtool")
pytestmark = pytest.mark.skipif(
    not (ALERTMANAGER and AMTOOL), reason="needs Alertmanager and amtool (bin/setup installs them)"
)


@contextmanager
def alertmanager(config: Path, folder: Path) -> Iterator[str]:
    """Alertmanager on 127.0.0.1:<free port>, clustering off, its data under `folder`."""
    url = f"http://127.0.0.1:{free_port()}"
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "alertmanager.log"
    assert ALERTMANAGER
    with log.open("wb") as out:
        process = subprocess.Popen(
            [ALERTMANAGER, f"--config.file={config}", f"--web.listen-address={url.removeprefix('http://')}"]
            + ["--cluster.listen-address=", f"--storage.path={folder / 'data'}", "--log.level=warn"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=2).read()
                break
            except OSError:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, f"Alertmanager not ready: {log.read_text()}"
                time.sleep(0.2)
        yield url
    finally:
        stop(process)


def generated_labels(bundle: Path) -> dict[str, dict[str, str]]:
    """Each alert's labels as Prometheus sends them: the rule's, and the namespace, job and
    model of the series it fires on."""
    plan = json.loads((bundle / "serving.json").read_text())
    monitor = yaml.safe_load((bundle / "k8s" / "servicemonitor.yaml").read_text())
    scope = {"namespace": monitor["metadata"]["namespace"], "job": monitor["metadata"]["name"], "model": plan["model"]}
    groups = yaml.safe_load((bundle / "monitoring" / "alerts.yaml").read_text())["groups"]
    return {
        r["alert"]: {"alertname": r["alert"], **scope, **r["labels"]}
        for g in groups
        for r in g["rules"]
        if "alert" in r
    }


def inhibited(url: str, alerts: list[dict[str, str]]) -> dict[tuple[str, str], bool]:
    """Post the alerts (firing), then read back which Alertmanager inhibits, by (alertname, job)."""
    body = json.dumps([{"labels": labels} for labels in alerts]).encode()
    request = urllib.request.Request(f"{url}/api/v2/alerts", body, {"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=10).read()
    deadline = time.monotonic() + 20
    while True:
        got = json.loads(urllib.request.urlopen(f"{url}/api/v2/alerts", timeout=10).read())
        if len(got) == len(alerts) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(got) == len(alerts), got
    return {(a["labels"]["alertname"], a["labels"]["job"]): bool(a["status"]["inhibitedBy"]) for a in got}


def test_a_page_holds_back_the_ticket_of_its_own_slo_and_server_only(tmp_path):
    bundle = build(ROOT / "specs" / "translator.llm", tmp_path / "bundle")
    snippet = bundle / "monitoring" / "alertmanager.yaml"
    assert AMTOOL
    checked = subprocess.run([AMTOOL, "check-config", str(snippet)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    labels = generated_labels(bundle)
    page, ticket, latency = (
        labels["LlmcErrorBudgetFastBurn"],
        labels["LlmcErrorBudgetSlowBurn"],
        labels["LlmcLatencyP99AboveSla"],
    )
    assert (page["severity"], ticket["severity"], latency["severity"]) == ("page", "ticket", "ticket")
    canary = dict(ticket, job=ticket["job"] + "-canary")
    job = page["job"]
    alerts = [page, ticket, latency, canary]

    with alertmanager(snippet, tmp_path / "am") as url:
        got = inhibited(url, alerts)
    assert got == {
        ("LlmcErrorBudgetFastBurn", job): False,
        ("LlmcErrorBudgetSlowBurn", job): True,  # same SLO, same server: held back
        ("LlmcLatencyP99AboveSla", job): False,  # another SLO
        ("LlmcErrorBudgetSlowBurn", job + "-canary"): False,  # another server of the model
    }

    # The test has teeth: without `slo` in `equal`, the latency ticket is held back too.
    broken = yaml.safe_load(snippet.read_text())
    broken["inhibit_rules"][0]["equal"].remove("slo")
    wrong = tmp_path / "broken.yaml"
    wrong.write_text(yaml.safe_dump(broken))
    with alertmanager(wrong, tmp_path / "am-broken") as url:
        assert inhibited(url, alerts)[("LlmcLatencyP99AboveSla", job)] is True
