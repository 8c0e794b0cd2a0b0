"""The load test: `llmc loadtest SPEC [--profile P] [--rate R] [--duration D] [--no-sweep]`
and the serve stage of `llmc run` (the bundle's loadtest/loadtest.py). Both serve a
gated model as `llmc serve` does, on free ports unless told, then measure it
(`measure`, which both call):

1. the unloaded latency: UNLOADED single requests one after the other (the median);
2. the load: open-loop Poisson arrivals at the rate (default the SLA's throughput)
   for the duration (default 20 s), judged against the SLA (loadreport.verdict);
3. the capacity sweep (unless --no-sweep): steps of SWEEP_STEP_S seconds, doubling
   the rate from the load's while the SLA's p99 and error rate hold, then bisecting
   (at most SWEEP_STEPS steps, SWEEP_BUDGET_S seconds); the measured capacity is the
   highest rate that held.

The table is printed, then report.md, results.json, latency.png and rates.png are
written: `llmc loadtest` serves the last gated run's model and writes them to
runs/<spec>[-<profile>]/loadtests/<UTC timestamp>/ (written whole, then renamed); the
stage serves the model its evaluate stage just passed (--model) and writes them into
its work folder (--output, work/serve/), with Triton's files in <output>/.server/.

Exit status of `llmc loadtest`: 0 the SLA held; 3 the SLA was missed (the report is
written and the last line names the clauses missed); 1 nothing to serve, a port in
use, a server that failed, or no usable request in the data; 130 interrupted (Ctrl-C,
SIGTERM). Misuse (exit 2) is caught by the CLI before this runs. The stage's
(run_stage) is the same but for a missed SLA, 1 as a failed gate's, and misuse, 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

from ..folders import StepError, default_data_root, default_served_model, outputs_root
from . import loadgen, loadreport
from .session import ServeFailed, Source, free_port, gated_source, say, serving

EXIT_OK, EXIT_FAILED, EXIT_MISSED, EXIT_INTERRUPTED = 0, 1, 3, 130
UNLOADED = 30  # single requests timed before the load
SWEEP_STEP_S = 3.0
SWEEP_STEPS = 7  # besides the load itself
SWEEP_BISECTIONS = 2
SWEEP_BUDGET_S = 25.0
SWEEP_MAX_RPS = 4000.0
MAX_DURATION_S = 600.0  # the longest load a run may ask for
DURATION_ENV = "LLMC_LOADTEST_DURATION"  # the stage's seconds of load when --duration is not given
SWEEP_ENV = "LLMC_LOADTEST_SWEEP"  # "0": the stage skips the capacity sweep


class LoadtestConfig(NamedTuple):
    """The constants of a bundle's loadtest/loadtest.py (the serve stage)."""

    model_name: str
    rate_rps: float  # the load's rate: the SLA's throughput
    duration_s: float  # seconds of load
    sweep: bool = True  # measure the capacity after the load


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
    """`llmc loadtest`: load-test runs/<name>'s gated model; returns the exit status
    (module docstring)."""
    runs_root = runs_root.resolve()
    try:
        source = gated_source(name, runs_root, rerun)
    except ServeFailed as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_FAILED
    return measure(
        source,
        name=name,
        data_root=data_root,
        report=runs_root / name / "loadtests",
        stamped=True,
        rate=rate,
        duration=duration,
        sweep=sweep,
        seed=seed,
        http_port=http_port,
        metrics_port=metrics_port,
        ready_timeout=ready_timeout,
    )


def measure(
    source: Source,
    *,
    name: str,
    data_root: Path,
    report: Path,
    stamped: bool,
    rate: float | None,
    duration: float,
    sweep: bool,
    seed: int = 0,
    http_port: int = 0,
    metrics_port: int = 0,
    ready_timeout: float = 120.0,
) -> int:
    """Serve `source` on 127.0.0.1 (free ports where 0), measure it, print the table and
    the verdict, and write the report: into a new report/<UTC timestamp>/ when
    `stamped`, else into `report` itself. Returns EXIT_OK, EXIT_MISSED, EXIT_FAILED
    or EXIT_INTERRUPTED (module docstring)."""
    http_port = http_port or free_port()
    metrics_port = metrics_port or free_port()
    while metrics_port == http_port:
        metrics_port = free_port()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        with serving(source, http_port, metrics_port, ready_timeout, "loadtest") as live:
            results, shots, steps = _measure(live, data_root, rate, duration, sweep, seed)
            results["healthy_after"] = live.server.ready()
    except (ServeFailed, loadgen.LoadError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        sys.stderr.write("loadtest: interrupted; no report written\n")
        return EXIT_INTERRUPTED
    results.update(name=name, started_utc=started, seed=seed, origin=source.origin)
    clauses = loadreport.verdict(results["main"], results["sla"])
    results["verdict"] = {"passed": all(c.ok for c in clauses), "clauses": [c._asdict() for c in clauses]}
    results["verdict"]["line"] = loadreport.verdict_line(results)
    print()
    print(loadreport.table(results))
    print()
    try:
        if stamped:
            folder = loadreport.write_report(report, results, shots, steps)
        else:
            folder = loadreport.write_report_into(report, results, shots, steps)
    except OSError as exc:
        sys.stderr.write(f"error: cannot write the report: {exc.strerror or exc}\n")
        return EXIT_FAILED
    say(f"loadtest: report in {folder} ({', '.join(loadreport.REPORT_FILES)})")
    say(results["verdict"]["line"])
    return EXIT_OK if results["verdict"]["passed"] else EXIT_MISSED


def load_misuse(rate: float | None, duration: float | None, duration_source: str = "--duration") -> str | None:
    """What is wrong with a load's rate or duration, or None: `llmc loadtest` and the
    serve stage refuse the same values with the same words."""
    if rate is not None and not (math.isfinite(rate) and rate > 0):
        return f"--rate must be a positive number of requests per second, not {rate:g}"
    if duration is not None and not (math.isfinite(duration) and 0 < duration <= MAX_DURATION_S):
        return f"{duration_source} must be more than 0 and at most {MAX_DURATION_S:g} seconds, not {duration:g}"
    return None


# --- the serve stage: the bundle's loadtest/loadtest.py -----------------------------------------------


def loadtest_arguments(description: str, config: LoadtestConfig) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model",
        help="the model folder evaluate passed (default $LLMC_OUTPUT/compress/model when it exists, else "
        "$LLMC_OUTPUT/model; $LLMC_OUTPUT defaults to outputs/)",
    )
    p.add_argument(
        "--output", help="the report goes here: report.md, results.json, latency.png, rates.png ($LLMC_OUTPUT/serve)"
    )
    p.add_argument(
        "--data-root",
        help="relative data paths are relative to this folder (default $LLMC_DATA_ROOT, else the working directory)",
    )
    p.add_argument(
        "--metrics",
        help="evaluate's metrics.json for the model: a model that failed its gates is not served "
        "(default OUTPUT/../evaluate/metrics.json when it exists)",
    )
    p.add_argument("--rate", type=float, help=f"arrivals per second (default {config.rate_rps:g}, the SLA's)")
    p.add_argument(
        "--duration",
        type=float,
        help=f"seconds of load, at most {MAX_DURATION_S:g} (default ${DURATION_ENV}, else {config.duration_s:g})",
    )
    p.add_argument("--no-sweep", action="store_true", help=f"skip the capacity sweep (also when ${SWEEP_ENV} is 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the arrival times (default 0)")
    p.add_argument("--ready-timeout", type=float, default=120.0, help="seconds to wait for the server (default 120)")
    return p


def run_stage(config: LoadtestConfig, args: argparse.Namespace, bundle: Path) -> int:
    """The serve stage: load-test args.model (the model evaluate passed) on free ports
    against the SLA of `bundle`'s serving.json, writing the report into args.output.
    0 the SLA held; 1 it was missed (as a failed gate) or nothing could be measured;
    130 interrupted; StepError (exit 2 through run_script) for bad arguments."""
    rate = config.rate_rps if args.rate is None else args.rate
    duration = _duration(args.duration, config.duration_s)
    misuse = load_misuse(rate, None)
    if misuse:
        raise StepError(misuse)
    if not args.ready_timeout > 0:
        raise StepError("--ready-timeout must be a positive number of seconds")
    output = Path(args.output) if args.output else outputs_root() / "serve"
    model = Path(args.model) if args.model else default_served_model()
    metrics_path = Path(args.metrics) if args.metrics else output.parent / "evaluate" / "metrics.json"
    metrics: dict[str, Any] = {}
    if args.metrics or metrics_path.is_file():
        try:
            metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StepError(f"cannot read evaluate's metrics {metrics_path}: {exc}") from None
        if metrics.get("passed") is not True:
            sys.stderr.write(f"error: {metrics_path} says the model failed its gates: it is not served\n")
            return EXIT_FAILED
    bundle = bundle.resolve()
    lock = json.loads((bundle / "llmc.lock.json").read_text(encoding="utf-8"))
    name = Path(str(lock.get("spec") or config.model_name)).stem + (
        f"-{lock['profile']}" if lock.get("profile") else ""
    )
    output = output.resolve()
    loadreport.remove_report(output)  # an earlier run's report must not pass for this one's
    source = Source(bundle, model.resolve(), metrics, output / ".server", "this run", "serve stage")
    sweep = config.sweep and not args.no_sweep and os.environ.get(SWEEP_ENV, "1").strip() != "0"
    code = measure(
        source,
        name=name,
        data_root=Path(args.data_root or default_data_root()).resolve(),
        report=output,
        stamped=False,
        rate=rate,
        duration=duration,
        sweep=sweep,
        seed=args.seed,
        ready_timeout=args.ready_timeout,
    )
    return EXIT_FAILED if code == EXIT_MISSED else code


def _duration(given: float | None, default: float) -> float:
    """--duration, else $LLMC_LOADTEST_DURATION, else the script's; StepError outside (0, 600]."""
    source, value = "--duration", given
    if value is None and os.environ.get(DURATION_ENV, "").strip():
        source = f"${DURATION_ENV}"
        try:
            value = float(os.environ[DURATION_ENV])
        except ValueError:
            raise StepError(f"${DURATION_ENV} must be a number of seconds, not {os.environ[DURATION_ENV]!r}") from None
    if value is None:
        return default
    misuse = load_misuse(None, value, source)
    if misuse:
        raise StepError(misuse)
    return value


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
        f"(estimate {loadreport.ms(loadreport.lone_request_estimate(estimate, live.plan['batching']))} on {device}, "
        "the batching window included)"
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
        "run": live.run.run,
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
        f"p50 {loadreport.ms(lat['p50'])}, p99 {loadreport.ms(lat['p99'])}, {failed} error{'' if failed == 1 else 's'}"
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
