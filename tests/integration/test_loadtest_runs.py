"""`llmc loadtest` against a real local Triton (the nvidia-pytriton wheel's tritonserver)
serving a gated translator run made the quick way (tests/support/serving_runs.py):

* a short load at the SLA's rate writes report.md, results.json and the two plots, with
  numbers that add up (every request scheduled is answered, refused, timed out or
  dropped; p50 <= p95 <= p99 <= max; the achieved rate close to the offered one), and
  the exit status and last line agree with the verdict;
* an overload of five times the measured capacity for 10 s: the excess is refused at
  once by the bounded queue (503 "queue full", in a small part of the p99), what the
  queue lets in is answered within twice the SLA's p99 as Triton measures it, after a
  wait in its queue within the queue's timeout (no backlog), and the server is healthy and answers single requests as before
  afterwards. The server runs on one core and the load generator on the other.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
from typing import NamedTuple

import pytest
from support.serving_runs import BIN, cores_apart, env, leftovers, translator_run

pytest.importorskip("pytriton")
pytest.importorskip("sacrebleu")
pytest.importorskip("matplotlib")
pytest.importorskip("tritonclient.http.aio")

from llmc.runtime.serving import loadgen, loadreport
from llmc.runtime.serving.session import free_port, served

PROBE_RPS = 1000.0  # more than one Python-backend instance answers on these cores
OVERLOAD_FACTOR = 5.0
OVERLOAD_SECONDS = 10.0
# Long enough that more answers stop at the end of a date, as the served model's do, rather than
# running on to max_len (a batch of 16 took 110 ms after 40 steps, 80 ms after 300).
TRAINED_STEPS = 300
# This model is the teacher's size, not the served student's: a batch of 16 took 90 ms on the one
# core the server gets, a large part of the 200 ms p99 that accepted requests wait up to. Batches
# of 8 keep a batch well inside it, as the student's are.
SMALLER_BATCHES = "  serve.batching.max_batch_size = 8\n"


@pytest.fixture(scope="module")
def translator(tmp_path_factory):
    root = tmp_path_factory.mktemp("loadtest")
    return root, translator_run(root, steps=TRAINED_STEPS, extra=SMALLER_BATCHES)


def test_a_short_load_test_writes_a_report_whose_numbers_add_up(translator):
    root, spec = translator
    proc = subprocess.run(
        [str(BIN / "llmc"), "loadtest", str(spec), "--profile", "local", "--runs-dir", str(root / "runs")]
        + ["--duration", "4", "--no-sweep"],
        cwd=root,
        env=env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    out = proc.stdout
    print(out)
    assert proc.returncode in (0, 3), out + proc.stderr
    (folder,) = (root / "runs" / "translator-local" / "loadtests").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["latency.png", "rates.png", "report.md", "results.json"]
    results = json.loads((folder / "results.json").read_text())
    main, sla = results["main"], results["sla"]
    assert main["rate_rps"] == sla["throughput_rps"] and main["duration_s"] == 4
    assert main["scheduled"] == main["answered"] + sum(main["errors"].values()) + main["dropped"]
    assert main["scheduled"] == main["sent"] + main["dropped"]
    lat = main["latency_s"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    span = max(4.0, main["achieved_rps"] and main["answered"] / main["achieved_rps"])
    assert 4.0 <= span < 4.0 + 2 * results["limits"]["request_timeout"]  # the answers' span: the run, drained
    # 20 req/s is a small part of what the server clears: close to everything is answered in time,
    # even on 2 cores shared with other work (where a stall of the whole machine costs a few).
    assert main["achieved_rps"] >= 0.75 * main["offered_rps"], main
    assert results["unloaded"]["count"] == 30 and 0 < results["unloaded"]["median_s"] < 1
    assert results["sweep"] is None and results["healthy_after"] is True
    assert results["device"] == "cpu" and results["estimate"]["request_latency_s"] > 0

    passed = results["verdict"]["passed"]
    assert passed == all(c["ok"] for c in results["verdict"]["clauses"])
    assert proc.returncode == (0 if passed else 3)
    last = out.strip().splitlines()[-1]
    assert last == loadreport.verdict_line(results)
    assert last.startswith("translator: SLA met" if passed else "translator: SLA missed: ")
    header = next(line for line in out.splitlines() if line.startswith("metric "))
    assert header.split() == ["metric", "value", "bound", "verdict"]
    assert f"report in {folder}" in out and "Traceback" not in proc.stderr
    assert "serve.device `cpu`" in (folder / "report.md").read_text()
    assert leftovers([str(root / "runs" / "translator-local" / "serve")]) == []


# Sender lag p99 above which the client's own latencies hold its starvation (as in the Prometheus test).
STARVED_CLIENT_S = 0.1


def test_five_times_the_measured_capacity_is_refused_at_once_and_the_server_recovers(translator, capsys):
    root, spec = translator
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("needs 2 cores: one for the server, one for the load")
    # The server on one core and the load generator on the other, so that the overload measures
    # the server, not their fight over the cores.
    with (
        cores_apart() as to_client_core,
        served("translator-local", root / "runs", "llmc run", free_port(), free_port(), 120.0, "loadtest") as live,
    ):
        to_client_core()
        o = overload(live, spec)
    s, p99 = o.summary, o.p99
    with capsys.disabled():
        print(
            f"\ncapacity {o.capacity:.0f} req/s; overload {o.rate:.0f} req/s for {OVERLOAD_SECONDS:g} s: "
            f"{s['scheduled']} scheduled, {json.dumps({k: s[k] for k in ('answered', 'errors', 'dropped')})}"
        )
        print(
            f"answered p99 {s['latency_s']['p99']}, refused {s['refused_latency_s']} "
            f"(queue full: p50 from the send {o.refused_p50_from_send:.4f} s), "
            f"sender lag p99 {s['sender_lag_p99_s']}, Triton {o.stats}"
        )
        print(f"Triton's p99 over the last minute: {o.server_p99:.3f} s (twice the SLA's p99: {2 * o.p99:g} s)")
        print(f"single requests: median {loadgen.median(o.before)} before, {loadgen.median(o.after)} after")
    assert s["sent"] >= 0.9 * o.rate * OVERLOAD_SECONDS, s  # the load was offered
    # Five times: most is refused, and a large part of it at once ("queue full"; the rest waited in
    # the bounded queue and was "timed out in queue": 45% and 33% of 7,272 in one CI run, 38% and 40%
    # of 7,291 in another, on a busier machine). Without the bounded queue nothing is "queue full" ...
    refused_at_once, refused_later = s["errors"][loadgen.QUEUE_FULL], s["errors"][loadgen.QUEUE_TIMEOUT]
    assert refused_at_once + refused_later > 0.5 * s["scheduled"], s["errors"]
    assert refused_at_once > 0.25 * (refused_at_once + refused_later), s["errors"]
    assert s["errors"][loadgen.OTHER] == s["errors"][loadgen.CLIENT_TIMEOUT] == 0, s["error_examples"]
    # ... at once, by the bounded queue: "queue full" in a small part of the p99 from the moment it
    # was sent (a request that got in and waited past the p99 is refused then, "timed out in
    # queue"). A client starved of its core (sender lag p99 above STARVED_CLIENT_S; CI once saw
    # 0.72 s, and 0.113 s for this p50) reads every answer late: then "at once" is still before
    # the p99, the queue's timeout, which every refusal after waiting takes at least ...
    at_once = p99 / 4 if s["sender_lag_p99_s"] <= STARVED_CLIENT_S else p99
    assert o.refused_p50_from_send < at_once, (o.refused_p50_from_send, s["refused_latency_s"], s["sender_lag_p99_s"])
    # ... while it keeps serving, and what it let in waits in a bounded queue, not a backlog that
    # grows with the overload: Triton's mean wait in its queue for the requests it answered is
    # within the queue's timeout (the SLA's p99; without the queue policy it was seconds) ...
    assert s["answered"] >= 0.5 * o.capacity * OVERLOAD_SECONDS, s
    assert o.stats["queue_s"] <= p99, o.stats
    # ... and, as the server measures it (Triton's own p99 over the last minute, the series the SLO's
    # latency alert watches), within twice the SLA's p99. The client's own p99 is printed, not held
    # to it: one core of Python sending five times what the server clears falls behind its
    # schedule (its lag is in that number), and Triton 2.51's batcher can stall for its idle wait
    # when an instance frees a moment after it looked (docs/serving.md, "Why two instances").
    assert o.server_p99 <= 2 * p99, (o.server_p99, o.stats)
    # ... and afterwards it is healthy and answers single requests as before.
    assert o.healthy
    assert statistics.median(o.after) < 3 * statistics.median(o.before) + 0.05


class Overload(NamedTuple):
    capacity: float
    refused_p50_from_send: float
    rate: float
    summary: dict
    stats: dict
    server_p99: float
    before: list[float]
    after: list[float]
    healthy: bool
    p99: float


def overload(live, spec) -> Overload:
    """Single requests; the capacity: what the server answers per second when offered more than
    it can take (at least the highest rate at which the p99 holds, so five times it is at least
    five times that); five times it for OVERLOAD_SECONDS; Triton's p99; single requests again."""
    url, model = live.server.url, live.model_name
    paths = loadgen.data_paths(live.run.bundle / "model.json", spec.parent)
    examples = loadgen.request_examples(live.handler, live.meta["model"], paths)
    p99 = float(live.plan["sla"]["p99_latency_s"])
    before, _ = loadgen.unloaded(url, model, examples, 10)
    probe = loadgen.run_load(url, model, examples, PROBE_RPS, 3.0, loadgen.limits_for(PROBE_RPS, 3.0, p99), seed=2)
    capacity = sum(1 for shot in probe.shots if shot.outcome == loadgen.OK) / 3.0
    rate = OVERLOAD_FACTOR * capacity
    limits = loadgen.limits_for(rate, OVERLOAD_SECONDS, p99)
    load = loadgen.run_load(url, model, examples, rate, OVERLOAD_SECONDS, limits, seed=1)
    summary = loadreport.summarize(load.shots, rate, OVERLOAD_SECONDS)
    sent = [s.done - s.sent for s in load.shots if s.outcome == loadgen.QUEUE_FULL and s.done and s.sent is not None]
    refused = loadreport.percentile(sent, 50) or 0.0
    server_p99 = triton_p99(live.server.metrics_port, model)
    after, _ = loadgen.unloaded(url, model, examples, 10)
    ready = live.server.ready()
    return Overload(capacity, refused, rate, summary, load.stats, server_p99, before, after, ready, p99)


def triton_p99(metrics_port: int, model: str) -> float:
    """Triton's own p99 request duration (seconds) over its summary's window, from /metrics."""
    import re
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    pattern = rf'^nv_inference_request_summary_us{{[^}}]*model="{re.escape(model)}"[^}}]*quantile="0.99"[^}}]*}} (\S+)$'
    (value,) = re.findall(pattern, text, flags=re.MULTILINE)
    return float(value) / 1e6
