"""`llmc loadtest`'s pure parts: the Poisson schedule, the percentiles timed from the
scheduled send (the coordinated-omission correction) on synthetic runs, Triton's 503
texts, the verdict rule, the capacity sweep's next rate, the report's table and files,
the requests built from the golden bundles' data, and the command line's checks. The
load on a real server is tests/integration/test_loadtest_runs.py's."""

from __future__ import annotations

import itertools
import json
import math

import pytest
from helpers import ROOT, run_cli

from llmc.runtime.serving import loadgen, loadreport
from llmc.runtime.serving.handlers import handler_for
from llmc.runtime.serving.loadgen import (
    CLIENT_TIMEOUT,
    DROPPED,
    OK,
    OTHER,
    QUEUE_FULL,
    QUEUE_TIMEOUT,
    Shot,
    classify,
    limits_for,
    poisson_schedule,
)
from llmc.runtime.serving.loadreport import capacity, holds, next_rate, percentile, summarize, verdict

GOLDEN = ROOT / "tests" / "golden"
SLA = {"p99_latency_s": 0.2, "throughput_rps": 20.0, "availability": 0.999, "error_rate": 0.001}


# --- arrivals ----------------------------------------------------------------------------------------


def test_the_schedule_is_poisson_at_the_rate_seeded_and_bounded():
    times = poisson_schedule(100.0, 60.0, seed=1, cap=100_000)
    assert times == sorted(times) and times[0] >= 0 and times[-1] < 60.0
    assert abs(len(times) - 6000) < 4 * math.sqrt(6000)  # Poisson: sd = sqrt(mean)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    mean = sum(gaps) / len(gaps)
    assert mean == pytest.approx(0.01, rel=0.05)
    sd = math.sqrt(sum((g - mean) ** 2 for g in gaps) / len(gaps))
    assert sd == pytest.approx(mean, rel=0.1)  # exponential gaps: sd = mean
    assert poisson_schedule(100.0, 60.0, seed=1, cap=100_000) == times
    assert poisson_schedule(100.0, 60.0, seed=2, cap=100_000) != times
    assert len(poisson_schedule(1000.0, 60.0, seed=1, cap=500)) == 500


def test_the_limits_bound_a_run():
    limits = limits_for(20.0, 20.0, 0.2)
    assert limits.max_requests == 600 and limits.request_timeout == 2.0
    assert limits_for(5000.0, 600.0, 0.2).max_requests == loadgen.MAX_REQUESTS
    assert limits_for(20.0, 1.0, 0.5).request_timeout == 5.0


def test_triton_queue_refusals_are_told_apart():
    assert classify("503", "Request for unknown model... Exceeds maximum queue size") == QUEUE_FULL
    assert classify("503", "Request timeout expired") == QUEUE_TIMEOUT
    assert classify("400", "Request timeout expired") == OTHER
    assert classify("500", "failed to parse the request JSON buffer") == OTHER
    assert classify(None, "") == OTHER


# --- latency from the scheduled send -------------------------------------------------------------------


def test_percentiles_are_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99 and percentile(values, 100) == 100
    assert percentile([3.0], 99) == 3.0 and percentile([], 50) is None
    assert percentile([1, 2], 50) == 1 and percentile([1, 2], 51) == 2


def stalled_run(rate: float = 100.0, seconds: float = 10.0, stall_at: float = 5.0, stall: float = 1.0) -> list[Shot]:
    """Every request answered 5 ms after it is sent, but the sender stalled for `stall`
    seconds at `stall_at`: what was due meanwhile went out when it woke."""
    shots = []
    for i in range(int(rate * seconds)):
        scheduled = i / rate
        sent = stall_at + stall if stall_at <= scheduled < stall_at + stall else scheduled
        shots.append(Shot(scheduled, sent, sent + 0.005, OK))
    return shots


def test_latency_counts_from_the_scheduled_send_so_a_stall_is_not_hidden():
    shots = stalled_run()
    corrected = summarize(shots, 100.0, 10.0)["latency_s"]
    uncorrected = [s.done - s.sent for s in shots if s.done is not None and s.sent is not None]
    assert percentile(uncorrected, 99) == pytest.approx(0.005)  # timed from the send: the stall vanishes
    # 100 of the 1000 requests waited 5 ms to 1 s: the p99 is near the stall's length.
    assert corrected["p99"] == pytest.approx(0.005 + 1.0 - 0.09, abs=0.011)
    assert corrected["max"] == pytest.approx(1.005)
    assert corrected["p50"] == pytest.approx(0.005)
    assert summarize(shots, 100.0, 10.0)["sender_lag_p99_s"] > 0.8


def test_a_run_adds_up_and_counts_each_outcome():
    shots = [Shot(i * 0.1, i * 0.1, i * 0.1 + 0.02, OK) for i in range(90)]
    shots += [
        Shot(9.0 + i * 0.01, 9.0 + i * 0.01, 9.0 + i * 0.01 + 0.001, QUEUE_FULL, "503: Exceeds") for i in range(4)
    ]
    shots += [Shot(9.5, 9.5, 9.7, QUEUE_TIMEOUT, "503: Request timeout expired")]
    shots += [Shot(9.6, 9.6, 11.6, CLIENT_TIMEOUT, "no answer within 2 s")]
    shots += [Shot(9.7, None, None, DROPPED, "cap")] * 3
    shots += [Shot(9.8, 9.8, 9.81, OTHER, "500: boom")]
    s = summarize(shots, 10.0, 10.0)
    assert s["scheduled"] == 100 == s["answered"] + sum(s["errors"].values()) + s["dropped"]
    assert s["errors"] == {QUEUE_FULL: 4, QUEUE_TIMEOUT: 1, CLIENT_TIMEOUT: 1, OTHER: 1}
    assert s["dropped"] == 3 and s["sent"] == 97
    assert s["error_share"] == pytest.approx(0.10)
    assert s["offered_rps"] == 10.0
    assert s["achieved_rps"] == pytest.approx(90 / 10.0)  # every answer was in by the end of the load
    lat = s["latency_s"]
    assert lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"] == pytest.approx(0.02)
    assert s["refused_latency_s"]["max"] == pytest.approx(0.2)
    assert s["error_examples"][OTHER] == "500: boom"


# --- the verdict -------------------------------------------------------------------------------------


def run_of(rate: float, latency: float, errors: int = 0, seconds: float = 10.0, answered_share: float = 1.0):
    n = int(rate * seconds)
    shots = [Shot(i / rate, i / rate, i / rate + latency, OK) for i in range(n - errors)]
    shots += [Shot(seconds - 0.01, seconds - 0.01, seconds, QUEUE_TIMEOUT)] * errors
    if answered_share < 1.0:  # a backlog: the answers of the run's second half came later and later
        stretch = 1 / answered_share
        shots = [s._replace(done=max(s.done or 0.0, s.scheduled * stretch)) if s.outcome == OK else s for s in shots]
    return summarize(shots, rate, seconds)


def clauses(summary) -> dict[str, bool]:
    return {c.name: c.ok for c in verdict(summary, SLA)}


def test_the_verdict_passes_when_every_clause_holds():
    assert clauses(run_of(20.0, 0.05)) == {
        "offered rate": True,
        "achieved rate": True,
        "latency p99": True,
        "errors": True,
    }


def test_each_clause_can_fail_on_its_own():
    assert clauses(run_of(10.0, 0.05))["offered rate"] is False  # below the SLA's throughput: not shown
    assert clauses(run_of(20.0, 0.25))["latency p99"] is False
    assert clauses(run_of(20.0, 0.199))["latency p99"] is True
    assert clauses(run_of(20.0, 0.05, errors=1, seconds=100))["errors"] is True  # 1 in 2000 is 0.05%
    # 2000 requests at a 0.1% budget: 5 errors happen often enough (p = 0.05), 6 do not.
    assert clauses(run_of(20.0, 0.05, errors=5, seconds=100))["errors"] is True
    assert clauses(run_of(20.0, 0.05, errors=6, seconds=100))["errors"] is False
    late = run_of(20.0, 0.05, answered_share=0.9)
    assert clauses(late)["achieved rate"] is False and clauses(late)["errors"] is True
    # One straggler in a short step is the p99's business, not a server that fell behind.
    step = [Shot(i / 80, i / 80, i / 80 + 0.01, OK) for i in range(240)]  # 80 req/s for 3 s
    step[235] = step[235]._replace(done=3.5)  # one answer half a second late, at the end
    s = summarize(step, 80.0, 3.0)
    assert s["achieved_rps"] == pytest.approx(80.0) and s["latency_s"]["max"] > 0.5


def test_the_error_allowance_is_what_the_budget_explains_at_95_percent():
    from llmc.runtime.serving.loadreport import error_allowance

    # 386 requests at 0.1% (the translator's 20 s at 20 req/s): P(0) = 0.68, P(<=1) = 0.94,
    # P(<=2) = 0.993. One refusal is no evidence against the SLA; three are.
    assert error_allowance(386, 0.001) == 2
    assert clauses(run_of(20.0, 0.05, errors=1, seconds=19.3))["errors"] is True
    assert clauses(run_of(20.0, 0.05, errors=3, seconds=19.3))["errors"] is False
    # Long loads converge on the rate itself; no budget allows nothing.
    assert 20 <= error_allowance(20000, 0.001) <= 30
    assert error_allowance(20000, 0.05) == pytest.approx(1000, rel=0.06)
    assert error_allowance(500, 0.0) == 0 and error_allowance(0, 0.01) == 0


def test_a_sweep_step_holds_on_latency_errors_and_keeping_up_alone():
    assert holds(run_of(10.0, 0.05), SLA)  # a rate below the SLA's is a fine sweep step
    assert not holds(run_of(80.0, 0.3), SLA)
    assert not holds(run_of(80.0, 0.05, errors=5), SLA)


def test_nothing_answered_fails():
    shots = [Shot(0.1 * i, 0.1 * i, 0.1 * i + 0.2, QUEUE_TIMEOUT) for i in range(200)]
    s = summarize(shots, 20.0, 10.0)
    assert s["latency_s"]["p99"] is None and s["achieved_rps"] == 0
    assert not any(c.ok for c in verdict(s, SLA)[1:])


# --- the sweep ---------------------------------------------------------------------------------------


def sweep(capacity_rps: float, start: float = 20.0, steps: int = 8, bisections: int = 2) -> list[tuple[float, bool]]:
    history: list[tuple[float, bool]] = []
    while (rate := next_rate(history, start, steps, bisections, 4000.0)) is not None:
        history.append((rate, rate <= capacity_rps))
    return history


def test_the_sweep_doubles_until_the_sla_breaks_then_bisects():
    assert [r for r, _ in sweep(100.0)] == [20, 40, 80, 160, 120, 100]
    assert capacity(sweep(100.0)) == 100
    assert [r for r, _ in sweep(130.0)] == [20, 40, 80, 160, 120, 140]
    assert capacity(sweep(130.0)) == 120


def test_the_sweep_halves_when_the_first_rate_already_breaks():
    history = sweep(7.0)
    assert [r for r, _ in history] == [20, 10, 5, 7.5, 6.25]
    assert capacity(history) == 6.25


def test_the_sweep_is_bounded_in_steps_and_rate():
    assert len(sweep(1e9, steps=5)) == 5
    assert [r for r, _ in sweep(1e9, start=1000.0)] == [1000, 2000, 4000]  # no step above the maximum
    assert capacity([(20.0, False)]) is None
    assert next_rate([(20.0, True), (40.0, False)], 20.0, 8, 0, 4000.0) is None  # no bisection asked


# --- the report --------------------------------------------------------------------------------------


def results_of(main, sweep_steps=None):
    return {
        "name": "translator-local",
        "model": "translator",
        "run": "20260101T000000Z",
        "served_model": "/x/model",
        "started_utc": "2026-01-01T00:00:00Z",
        "seed": 0,
        "device": "cpu",
        "machine": "2 cores of a test",
        "sla": SLA,
        "batching": {"max_batch_size": 16, "preferred_batch_sizes": [2, 4, 8, 16], "max_queue_delay_us": 5000},
        "queue": {"timeout_us": 200000, "max_queue_size": 752},
        "estimate": {"request_latency_s": 0.00424, "replica_capacity_rps": 3763.54, "replicas": 1},
        "unloaded": {"count": 30, "median_s": 0.0106, "p90_s": 0.012, "latencies_s": [], "triton": {}},
        "main": {**main, "holds": holds(main, SLA)},
        "sweep": {"step_s": 3.0, "steps": sweep_steps or [], "capacity_rps": 160.0} if sweep_steps else None,
    }


def test_the_table_has_the_run_tables_layout_and_the_estimates_beside_the_measurements():
    text = loadreport.table(results_of(run_of(20.0, 0.05), [{**run_of(40.0, 0.06), "holds": True}]))
    lines = text.splitlines()
    assert lines[0].split() == ["metric", "value", "bound", "verdict"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert any(line.startswith("latency p99") and line.endswith("pass") for line in lines)
    unloaded = next(line for line in lines if line.startswith("unloaded latency"))
    assert (
        "10.6 ms" in unloaded and "estimate 9.2 ms on cpu (with the window)" in unloaded and unloaded.endswith("x1.15")
    )
    capacity_line = next(line for line in lines if line.startswith("capacity per replica"))
    assert "160.0 req/s" in capacity_line and "3763.5 req/s on cpu" in capacity_line
    assert capacity_line.endswith("x0.0425")
    assert "not measured (--no-sweep)" in loadreport.table(results_of(run_of(20.0, 0.05)))


def test_the_verdict_line_names_what_was_missed():
    assert loadreport.verdict_line(results_of(run_of(20.0, 0.05))) == "translator: SLA met (4 of 4 clauses hold)"
    missed = loadreport.verdict_line(results_of(run_of(20.0, 0.3)))
    assert missed.startswith("translator: SLA missed: latency p99 300.0 ms (bound <= 200.0 ms)")


def test_the_report_is_written_whole_under_a_timestamp(tmp_path):
    pytest.importorskip("matplotlib")
    main = run_of(20.0, 0.05)
    steps = [{**main, "holds": True}, {**run_of(40.0, 0.3), "holds": False}]
    shots = [Shot(i / 20, i / 20, i / 20 + 0.05, OK) for i in range(200)]
    folder = loadreport.write_report(tmp_path / "loadtests", results_of(main, steps[1:]), shots, steps)
    again = loadreport.write_report(tmp_path / "loadtests", results_of(main, steps[1:]), shots, steps)
    assert folder != again and folder.parent == again.parent == tmp_path / "loadtests"
    assert sorted(p.name for p in folder.iterdir()) == ["latency.png", "rates.png", "report.md", "results.json"]
    assert (folder / "latency.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((folder / "results.json").read_text())["main"]["scheduled"] == 200
    report = (folder / "report.md").read_text()
    assert "serve.device `cpu`" in report and "| 40.0 |" in report and "SLA met" in report
    assert not [p for p in (tmp_path / "loadtests").iterdir() if p.name.startswith(".")]  # no temporary left


# --- the requests, from the spec's data ----------------------------------------------------------------


@pytest.mark.parametrize(("bundle", "name"), [("translator-local", "text"), ("classifier-local", "features")])
def test_the_requests_are_the_models_own_data(bundle, name):
    model_json = GOLDEN / bundle / "model.json"
    paths = loadgen.data_paths(model_json, ROOT / "specs")
    assert [p.rsplit("/", 1)[-1].split(".")[0] for p in paths] == ["valid", "test"]
    cfg = json.loads(model_json.read_text())["model"]
    handler = handler_for({"model": cfg})
    examples = loadgen.request_examples(handler, cfg, paths, limit=50)
    assert len(examples) == 50 and all(list(e) == [name] for e in examples)
    first = examples[0][name]
    assert first.shape[0] == 1
    if name == "text":
        assert first[0, 0].decode() and len({e[name][0, 0] for e in examples}) > 40
    else:
        assert first.shape == (1, 64)


def test_no_usable_data_is_one_clear_error(tmp_path):
    cfg = json.loads((GOLDEN / "translator-local" / "model.json").read_text())["model"]
    with pytest.raises(loadgen.LoadError, match="makes a valid request"):
        loadgen.request_examples(handler_for({"model": cfg}), cfg, [str(tmp_path / "nope.tsv")])


# --- the command line --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--rate", "0"], "--rate must be a positive number"),
        (["--rate", "-3"], "--rate must be a positive number"),
        (["--rate", "nan"], "--rate must be a positive number"),
        (["--duration", "0"], "--duration must be more than 0 and at most 600"),
        (["--duration", "601"], "--duration must be more than 0 and at most 600"),
        (["--http-port", "70000"], "--http-port must be a port number"),
        (["--http-port", "9000", "--metrics-port", "9000"], "both 9000"),
    ],
)
def test_misuse_is_exit_2_with_one_line(flags, message, tmp_path):
    code, _out, err = run_cli("loadtest", str(ROOT / "specs" / "translator.llm"), "--profile", "local", *flags)
    assert code == 2 and message in err and "Traceback" not in err


def test_nothing_to_serve_is_exit_1_naming_the_run_that_makes_one(tmp_path):
    code, _out, err = run_cli(
        "loadtest", str(ROOT / "specs" / "translator.llm"), "--profile", "local", "--runs-dir", str(tmp_path)
    )
    assert code == 1 and err.startswith("error: no run of translator-local under "), err
    assert "llmc run" in err and "Traceback" not in err
