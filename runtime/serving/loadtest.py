"""`llmc loadtest SPEC [--profile P] [--rate R] [--duration D] [--no-sweep]`: serve the
gated model as `llmc serve` does (on free ports unless told), then measure it:

1. the unloaded latency: UNLOADED single requests one after the other (the median);
2. the load: open-loop Poisson arrivals at the rate (default the SLA's throughput)
   for the duration (default 20 s), judged against the SLA (loadreport.verdict);
3. the capacity sweep (unless --no-sweep): steps of SWEEP_STEP_S seconds, doubling
   the rate from the load's while the SLA's p99 and error rate hold, then bisecting
   (at most SWEEP_STEPS steps, SWEEP_BUDGET_S seconds); the measured capacity is the
   highest rate that held.

The table is printed; report.md, results.json, latency.png and rates.png go to
runs/<spec>[-<profile>]/loadtests/<UTC timestamp>/ (written whole, then renamed).

Exit status: 0 the SLA held; 3 the SLA was missed (the report is written and the
last line names the clauses missed); 1 nothing to serve, a port in use, a server that
failed, or no usable request in the data; 130 interrupted (Ctrl-C, SIGTERM). Misuse
(exit 2) is caught by the CLI before this runs.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from . import loadgen, loadreport
from .session import ServeFailed, free_port, say, served

EXIT_OK, EXIT_FAILED, EXIT_MISSED, EXIT_INTERRUPTED = 0, 1, 3, 130
UNLOADED = 30  # single requests timed before the load
SWEEP_STEP_S = 3.0
SWEEP_STEPS = 7  # besides the load itself
SWEEP_BISECTIONS = 2
SWEEP_BUDGET_S = 25.0
SWEEP_MAX_RPS = 4000.0


def loadtest(
    *,
    name: str,
    runs_root: Path,
    rerun: str,
    data_root: Path,
    rate: float | None,
    duration: float,
    sweep: bool,
    seed: int,
    http_port: int,
    metrics_port: int,
    ready_timeout: float,
) -> int:
    """Load-test runs/<name>'s gated model; returns the exit status (module docstring)."""
    http_port = http_port or free_port()
    metrics_port = metrics_port or free_port()
    while metrics_port == http_port:
        metrics_port = free_port()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        with served(name, runs_root, rerun, http_port, metrics_port, ready_timeout, "loadtest") as live:
            results, shots, steps = _measure(live, data_root, rate, duration, sweep, seed)
            results["healthy_after"] = live.server.ready()
    except (ServeFailed, loadgen.LoadError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        sys.stderr.write("loadtest: interrupted; no report written\n")
        return EXIT_INTERRUPTED
    results.update(name=name, started_utc=started, seed=seed)
    clauses = loadreport.verdict(results["main"], results["sla"])
    results["verdict"] = {"passed": all(c.ok for c in clauses), "clauses": [c._asdict() for c in clauses]}
    print()
    print(loadreport.table(results))
    print()
    try:
        folder = loadreport.write_report(runs_root.resolve() / name / "loadtests", results, shots, steps)
    except OSError as exc:
        sys.stderr.write(f"error: cannot write the report: {exc.strerror or exc}\n")
        return EXIT_FAILED
    say(f"loadtest: report in {folder} (report.md, results.json, latency.png, rates.png)")
    say(loadreport.verdict_line(results))
    return EXIT_OK if results["verdict"]["passed"] else EXIT_MISSED


def _measure(live, data_root: Path, rate: float | None, duration: float, sweep: bool, seed: int) -> tuple:
    plan = live.plan
    sla, estimate, device = plan["sla"], plan.get("estimate") or {}, str(plan.get("device"))
    p99 = float(sla["p99_latency_s"])
    paths = loadgen.data_paths(live.run.bundle / "model.json", data_root)
    examples = loadgen.request_examples(live.handler, live.meta["model"], paths)
    url, model = live.server.url, live.model_name
    say(f"loadtest: {len(examples)} distinct requests from {', '.join(paths)}")

    single, triton = loadgen.unloaded(url, model, examples, UNLOADED)
    median = loadgen.median(single)
    say(
        f"loadtest: unloaded: median {loadreport.ms(median)} of {len(single)} single requests "
        f"(estimate {loadreport.ms(estimate.get('request_latency_s'))} on {device})"
    )
    rate = float(rate if rate is not None else sla["throughput_rps"])
    say(f"loadtest: {rate:g} req/s for {duration:g} s (open loop, Poisson arrivals)")
    load = loadgen.run_load(url, model, examples, rate, duration, loadgen.limits_for(rate, duration, p99), seed)
    main = {**loadreport.summarize(load.shots, rate, duration), "triton": load.stats}
    main["holds"] = loadreport.holds(main, sla)
    say(f"loadtest: {_step_line(main)}")
    steps = [main]
    history = [(rate, bool(main["holds"]))]
    sweep_started = time.monotonic()
    while sweep:
        step_rate = loadreport.next_rate(history, rate, 1 + SWEEP_STEPS, SWEEP_BISECTIONS, SWEEP_MAX_RPS)
        if step_rate is None or time.monotonic() - sweep_started + SWEEP_STEP_S > SWEEP_BUDGET_S:
            break
        limits = loadgen.limits_for(step_rate, SWEEP_STEP_S, p99)
        step_load = loadgen.run_load(url, model, examples, step_rate, SWEEP_STEP_S, limits, seed + len(history))
        step = {**loadreport.summarize(step_load.shots, step_rate, SWEEP_STEP_S), "triton": step_load.stats}
        step["holds"] = loadreport.holds(step, sla)
        steps.append(step)
        history.append((step_rate, bool(step["holds"])))
        say(f"loadtest: sweep: {_step_line(step)}")
    results: dict[str, Any] = {
        "model": model,
        "run": live.run.record.name,
        "served_model": str(live.run.model),
        "device": device,
        "machine": machine(),
        "sla": sla,
        "batching": plan.get("batching"),
        "queue": plan.get("queue"),
        "estimate": estimate,
        "unloaded": {
            "count": len(single),
            "median_s": median,
            "p90_s": loadreport.percentile(single, 90),
            "latencies_s": single,
            "triton": triton,
        },
        "limits": load.limits._asdict(),
        "main": main,
        "sweep": {
            "step_s": SWEEP_STEP_S,
            "steps": steps[1:],
            "capacity_rps": loadreport.capacity(history),
        }
        if sweep
        else None,
    }
    return results, load.shots, steps


def _step_line(s: dict[str, Any]) -> str:
    lat = s["latency_s"]
    failed = s["scheduled"] - s["answered"]
    return (
        f"{s['rate_rps']:.1f} req/s: {s['answered']} of {s['scheduled']} answered at {s['achieved_rps']:.1f} req/s, "
        f"p50 {loadreport.ms(lat['p50'])}, p99 {loadreport.ms(lat['p99'])}, {failed} errors"
        f"{'' if s['holds'] else ' (SLA missed)'}"
    )


def machine() -> str:
    """This machine's processor, as the report names it."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{len(os.sched_getaffinity(0))} cores of {model}"
