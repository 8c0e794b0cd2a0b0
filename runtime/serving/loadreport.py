"""What a load test measured, judged against the SLA of the bundle's serving.json, and
written down: the statistics of a run, the verdict, the capacity sweep's next rate,
the table, report.md, results.json and the two plots. Pure but for `write_report`
(files) and the plots (matplotlib, imported there, Agg backend).

The verdict (docs/serving.md, "Load test") passes when every clause holds:

    offered rate   the rate asked for >= the SLA's throughput_rps
    achieved rate  answers per second >= 95% of the offered rate (requests scheduled
                   over the duration): the server kept up. Answers are counted over the
                   duration or, when they ran on after it, until 99% of them were in:
                   the slowest 1% are the p99 clause's business, and one straggler must
                   not halve a 3-second sweep step's rate, while a backlog still shows
    latency p99    the p99 of the answered requests, timed from their scheduled send,
                   <= the SLA's p99_latency_s
    errors         refused + client timeouts + other + dropped by the client, at most
                   what the SLA's error_rate explains: the 95th percentile of
                   Binomial(requests scheduled, error_rate), see error_allowance

A sweep step "holds" on the last three alone; the measured capacity is the highest
rate at which a step held.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ..metrics import aligned
from ..records import SERVE_REPORT
from .loadgen import DROPPED, OK, OUTCOMES, REFUSED, Shot
from .settings import INSTANCES

KEPT_UP = 0.95  # achieved / offered at least this: the server kept up with the arrivals
ERRORS_CONFIDENCE = 0.95  # error counts the budget gives at least this often are within it


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile: the smallest value at or above q% of them."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(shots: Sequence[Shot], rate: float, duration: float) -> dict[str, Any]:
    """The numbers of one run: counts by outcome, offered and achieved rates, latency
    percentiles of the answered requests and of the refused ones (from the scheduled
    time), and how late the sender was."""
    counts = dict.fromkeys(OUTCOMES, 0)
    examples: dict[str, str] = {}
    for s in shots:
        counts[s.outcome] += 1
        if s.outcome != OK and s.message:
            examples.setdefault(s.outcome, s.message[:300])
    ok = [s.latency for s in shots if s.outcome == OK and s.latency is not None]
    refused = [s.latency for s in shots if s.outcome in REFUSED and s.latency is not None]
    lags = [s.sent - s.scheduled for s in shots if s.sent is not None]
    answered_by = percentile([s.done for s in shots if s.outcome == OK and s.done is not None], 99)
    span = max(duration, answered_by or 0.0)
    scheduled = len(shots)
    failed = scheduled - counts[OK]
    return {
        "rate_rps": rate,
        "duration_s": duration,
        "scheduled": scheduled,
        "sent": sum(1 for s in shots if s.sent is not None),
        "answered": counts[OK],
        "errors": {kind: counts[kind] for kind in OUTCOMES if kind not in (OK, DROPPED)},
        "dropped": counts[DROPPED],
        "error_share": failed / scheduled if scheduled else 0.0,
        "error_examples": examples,
        "offered_rps": scheduled / duration,
        "achieved_rps": counts[OK] / span if span > 0 else 0.0,
        "latency_s": _quantiles(ok),
        "refused_latency_s": _quantiles(refused),
        "sender_lag_p99_s": percentile(lags, 99),
    }


def _quantiles(values: Sequence[float]) -> dict[str, float | None]:
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
    }


class Clause(NamedTuple):
    name: str
    value: str
    bound: str
    ok: bool


def verdict(summary: dict[str, Any], sla: dict[str, Any]) -> list[Clause]:
    """The SLA's clauses on one run (module docstring)."""
    p99, bound = summary["latency_s"]["p99"], float(sla["p99_latency_s"])
    offered, achieved = summary["offered_rps"], summary["achieved_rps"]
    share, allowed = summary["error_share"], float(sla["error_rate"])
    wanted = float(sla["throughput_rps"])
    failed = summary["scheduled"] - summary["answered"]
    allowance = error_allowance(summary["scheduled"], allowed)
    return [
        Clause(
            "offered rate",
            f"{summary['rate_rps']:g} req/s",
            f">= {wanted:g} req/s (the SLA's)",
            summary["rate_rps"] >= wanted,
        ),
        Clause(
            "achieved rate", f"{achieved:.1f} req/s", f">= {KEPT_UP:.0%} of {offered:.1f} offered", _kept_up(summary)
        ),
        Clause("latency p99", ms(p99), f"<= {ms(bound)}", p99 is not None and p99 <= bound),
        Clause(
            "errors",
            f"{failed} of {summary['scheduled']} ({share:.2%})",
            f"<= {allowance} (what a {allowed:.2%} rate gives at {ERRORS_CONFIDENCE:.0%})",
            failed <= allowance,
        ),
    ]


def error_allowance(requests: int, budget: float) -> int:
    """The most errors `requests` requests may show within an error budget: the 95th
    percentile of Binomial(requests, budget). A short load cannot tell a 0.1% error rate
    from 0.26% (1 error in 386 requests happens 32% of the time at 0.1%), so only a
    count the budget would give less than 5% of the time misses the SLA."""
    if requests <= 0 or budget <= 0:
        return 0
    if budget >= 1:
        return requests
    log_p, log_q = math.log(budget), math.log1p(-budget)
    total, k = 0.0, 0
    while k < requests:
        total += math.exp(
            math.lgamma(requests + 1)
            - math.lgamma(k + 1)
            - math.lgamma(requests - k + 1)
            + k * log_p
            + (requests - k) * log_q
        )
        if total >= ERRORS_CONFIDENCE:
            return k
        k += 1
    return requests


def lone_request_estimate(estimate: dict[str, Any], batching: dict[str, Any]) -> float | None:
    """The compiler's estimate of what a lone request waits: its service time
    (serving.json's request_latency_s) plus the batcher's whole window, which a lone
    request always waits when the plan's preferred batches start at 2 (as they do)."""
    service = estimate.get("request_latency_s")
    if service is None:
        return None
    sizes = batching.get("preferred_batch_sizes") or []
    window = float(batching.get("max_queue_delay_us") or 0) / 1e6 if sizes and min(sizes) > 1 else 0.0
    return float(service) + window


def _kept_up(summary: dict[str, Any]) -> bool:
    return bool(summary["achieved_rps"] >= KEPT_UP * summary["offered_rps"])


def holds(summary: dict[str, Any], sla: dict[str, Any]) -> bool:
    """A sweep step holds: the SLA's p99 and error rate met, and the server kept up."""
    return all(c.ok for c in verdict(summary, sla)[1:])


def next_rate(
    history: Sequence[tuple[float, bool]], start: float, max_steps: int, bisections: int, max_rate: float
) -> float | None:
    """The sweep's next rate after the steps `history` ((rate, held) in order), or None
    when it is done: start at `start`; double while every step held (up to `max_rate`);
    halve while none has; once a held rate is below a broken one, bisect between the
    highest held and the lowest broken above it `bisections` times; at most `max_steps`."""
    if not history:
        return start
    if len(history) >= max_steps:
        return None
    held = [r for r, ok in history if ok]
    good = max(held) if held else None
    broken = [r for r, ok in history if not ok and (good is None or r > good)]
    bad = min(broken) if broken else None
    if bad is None:
        assert good is not None
        return 2 * good if 2 * good <= max_rate else None
    if good is None:
        return bad / 2 if bad / 2 >= 0.5 else None
    if _bisected(history) >= bisections or bad / good < 1.1:
        return None
    return (good + bad) / 2


def _bisected(history: Sequence[tuple[float, bool]]) -> int:
    """Steps taken since a held rate first lay below a broken one."""
    for i in range(len(history)):
        prefix = history[: i + 1]
        lows = [r for r, ok in prefix if ok]
        if lows and any(not ok and r > max(lows) for r, ok in prefix):
            return len(history) - i - 1
    return 0


def capacity(history: Sequence[tuple[float, bool]]) -> float | None:
    """The highest rate at which a step held."""
    held = [r for r, ok in history if ok]
    return max(held) if held else None


def ratio(measured: float | None, estimated: float | None) -> float | None:
    if measured is None or not estimated:
        return None
    return measured / estimated


# --- text ------------------------------------------------------------------------------------------


def ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1e3:.1f} ms"


def rps(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} req/s"


def times(value: float | None) -> str:
    return "n/a" if value is None else f"x{value:.3g}"


def table(results: dict[str, Any]) -> str:
    """metric | value | bound | verdict, as `llmc run` prints its metrics."""
    main, sla = results["main"], results["sla"]
    rows = [("metric", "value", "bound", "verdict")]
    clauses = {c.name: c for c in verdict(main, sla)}
    rows.append(_clause_row(clauses["offered rate"]))
    rows.append(_clause_row(clauses["achieved rate"]))
    lat = main["latency_s"]
    rows += [("latency p50", ms(lat["p50"]), "-", "-"), ("latency p95", ms(lat["p95"]), "-", "-")]
    rows.append(_clause_row(clauses["latency p99"]))
    rows.append(("latency max", ms(lat["max"]), "-", "-"))
    rows.append(("sender lag p99", ms(main["sender_lag_p99_s"]), "-", "-"))
    rows.append(_clause_row(clauses["errors"]))
    for kind, count in main["errors"].items():
        rows.append((f"  {kind}", str(count), "-", "-"))
    rows.append((f"  {DROPPED}", str(main["dropped"]), "-", "-"))
    if main["refused_latency_s"]["max"] is not None:
        rows.append(("refused: latency p99", ms(main["refused_latency_s"]["p99"]), "-", "-"))
    est, device = results["estimate"], results["device"]
    single = results["unloaded"]
    lone = lone_request_estimate(est, results["batching"])
    rows.append(
        (
            "unloaded latency (median)",
            ms(single["median_s"]),
            f"estimate {ms(lone)} on {device} (with the window)",
            times(ratio(single["median_s"], lone)),
        )
    )
    sweep = results.get("sweep")
    measured = sweep["capacity_rps"] if sweep else None
    rows.append(
        (
            "capacity per replica",
            rps(measured) if sweep else "not measured (--no-sweep)",
            f"estimate {rps(est.get('replica_capacity_rps'))} on {device}",
            times(ratio(measured, est.get("replica_capacity_rps"))),
        )
    )
    return aligned(rows)


def _clause_row(c: Clause) -> tuple[str, str, str, str]:
    return (c.name, c.value, c.bound, "pass" if c.ok else "FAIL")


def verdict_line(results: dict[str, Any]) -> str:
    clauses = verdict(results["main"], results["sla"])
    missed = [f"{c.name} {c.value} (bound {c.bound})" for c in clauses if not c.ok]
    name = results["model"]
    if not missed:
        return f"{name}: SLA met ({len(clauses)} of {len(clauses)} clauses hold)"
    return f"{name}: SLA missed: {'; '.join(missed)}"


def _not_answered(failed: Any) -> str:
    return f"; {failed} more not answered" if failed else ""


def markdown(results: dict[str, Any]) -> str:
    main, sla, est = results["main"], results["sla"], results["estimate"]
    single = results["unloaded"]
    origin = results.get("origin") or f"run {results['run']} of {results['name']}"
    lines = [
        f"# Load test of {results['name']} ({results['model']})",
        "",
        f"{results['started_utc']}: {origin}, model {results['served_model']}, "
        f"on Triton at 127.0.0.1 ({INSTANCES} model instances, CPU).",
        f"Open-loop Poisson arrivals at {main['rate_rps']:g} req/s for {main['duration_s']:g} s "
        f"(seed {results['seed']}); latency is timed from each request's scheduled send "
        "(coordinated-omission corrected). SLA from serving.json: "
        f"p99 {ms(sla['p99_latency_s'])}, {sla['throughput_rps']:g} req/s, error rate {sla['error_rate']:.2%}.",
        "",
        "```",
        table(results),
        "",
        verdict_line(results),
        "```",
        "",
        f"The compiler's estimates are for serve.device `{results['device']}` (serving.json); the measurements "
        f"are this machine's CPU ({results['machine']}), with the load generator on the same cores as the server.",
        f"The unloaded latency is the median of {single['count']} single requests sent one after the other "
        f"(p90 {ms(single['p90_s'])}{_not_answered(single['triton'].get('failed'))}); it includes the batcher's wait of "
        f"{results['batching']['max_queue_delay_us'] / 1000:g} ms for company "
        f"(Triton's own split: queue {ms(single['triton'].get('queue_s'))}, "
        f"compute {ms(single['triton'].get('compute_s'))}).",
    ]
    triton = main.get("triton") or {}
    if triton.get("mean_batch"):
        lines.append(
            f"Under the load Triton ran {triton['executions']:.0f} batches of {triton['mean_batch']:.2f} requests "
            f"on average (queue {ms(triton.get('queue_s'))}, compute {ms(triton.get('compute_s'))} per request)."
        )
    if main["error_examples"]:
        lines += ["", "First error of each kind:", ""]
        lines += [f"- {kind}: `{text}`" for kind, text in main["error_examples"].items()]
    sweep = results.get("sweep")
    if sweep:
        lines += [
            "",
            f"## Capacity sweep ({len(sweep['steps'])} steps of {sweep['step_s']:g} s)",
            "",
            "| offered | achieved | p50 | p99 | errors | holds |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for s in sweep["steps"]:
            lines.append(
                f"| {s['offered_rps']:.1f} | {s['achieved_rps']:.1f} | {ms(s['latency_s']['p50'])} | "
                f"{ms(s['latency_s']['p99'])} | {s['scheduled'] - s['answered']} | {'yes' if s['holds'] else 'no'} |"
            )
        lines += [
            "",
            f"Measured capacity: {rps(sweep['capacity_rps'])} (the highest rate at which p99 <= "
            f"{ms(sla['p99_latency_s'])}, the errors within a {sla['error_rate']:.2%} budget and the server "
            "kept up); "
            f"estimated per replica: {rps(est.get('replica_capacity_rps'))} on {results['device']} "
            f"({times(ratio(sweep['capacity_rps'], est.get('replica_capacity_rps')))}).",
        ]
    lines += [
        "",
        "## Verdict rule",
        "",
        f"Pass when the rate asked for is at least the SLA's throughput, the achieved rate is at least "
        f"{KEPT_UP:.0%} of the offered rate (requests scheduled / duration), the p99 of the answered requests "
        "is at most the SLA's p99, and the errors (refused, client timeouts, other, dropped by the client) "
        f"are at most what the SLA's error rate explains: the {ERRORS_CONFIDENCE:.0%} percentile of "
        "Binomial(requests scheduled, error rate), since a short load cannot tell a rate at the budget from "
        "one a little above it.",
        "",
        "![latency histogram](latency.png)",
        "",
        "![latency versus rate](rates.png)",
        "",
    ]
    return "\n".join(lines)


# --- plots and files ---------------------------------------------------------------------------------


def plot_latency(shots: Sequence[Shot], sla_p99: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [s.latency * 1e3 for s in shots if s.outcome == OK and s.latency is not None]
    refused = [s.latency * 1e3 for s in shots if s.outcome in REFUSED and s.latency is not None]
    fig, ax = plt.subplots(figsize=(7, 4))
    top = max(ok + refused + [sla_p99 * 1e3]) * 1.05
    bins = [top * i / 60 for i in range(61)]
    if ok:
        ax.hist(ok, bins=bins, label=f"answered ({len(ok)})", color="tab:blue")
    if refused:
        ax.hist(refused, bins=bins, label=f"refused ({len(refused)})", color="tab:red", alpha=0.7)
    for q, style in ((50, ":"), (99, "--")):
        value = percentile(ok, q)
        if value is not None:
            ax.axvline(value, color="tab:blue", linestyle=style, label=f"p{q} {value:.1f} ms")
    ax.axvline(sla_p99 * 1e3, color="black", label=f"SLA p99 {sla_p99 * 1e3:g} ms")
    ax.set_xlabel("latency from the scheduled send (ms)")
    ax.set_ylabel("requests")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_rates(steps: Sequence[dict[str, Any]], sla_p99: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ordered = sorted(steps, key=lambda s: s["offered_rps"])
    x = [s["offered_rps"] for s in ordered]
    for key, style in (("p50", "o:"), ("p99", "o-")):
        y = [(s["latency_s"][key] or math.nan) * 1e3 for s in ordered]
        ax.plot(x, y, style, label=key)
    broken = [s for s in ordered if not s["holds"]]
    if broken:
        ax.plot(
            [s["offered_rps"] for s in broken],
            [(s["latency_s"]["p99"] or sla_p99) * 1e3 for s in broken],
            "x",
            color="tab:red",
            markersize=10,
            label="SLA missed",
        )
    ax.axhline(sla_p99 * 1e3, color="black", label=f"SLA p99 {sla_p99 * 1e3:g} ms")
    ax.set_xlabel("offered rate (req/s)")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


REPORT_FILES = SERVE_REPORT  # the run record copies the same files


def write_report(parent: Path, results: dict[str, Any], shots: Sequence[Shot], steps: Sequence[dict]) -> Path:
    """parent/<UTC timestamp>/ with REPORT_FILES, written into a temporary folder first
    and renamed into place."""
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    tmp = parent / f".{stamp}.{os.getpid()}.tmp"
    tmp.mkdir()
    _write_files(tmp, results, shots, steps)
    for n in range(1000):
        final = parent / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            os.rename(tmp, final)  # fails on an existing non-empty folder: the next name
            return final
        except OSError:
            if not final.exists():
                raise
    raise OSError(f"cannot name a report folder under {parent}")


def write_report_into(folder: Path, results: dict[str, Any], shots: Sequence[Shot], steps: Sequence[dict]) -> Path:
    """REPORT_FILES in `folder` itself (the serve stage's work folder, which holds other
    things too): written into a temporary folder beside them, then each renamed into place."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".report.{os.getpid()}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        _write_files(tmp, results, shots, steps)
        for name in REPORT_FILES:
            os.replace(tmp / name, folder / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def remove_report(folder: Path) -> None:
    """Remove REPORT_FILES from `folder` (a stage's report of an earlier run must not pass
    for this run's when this one writes none)."""
    for name in REPORT_FILES:
        (folder / name).unlink(missing_ok=True)


def _write_files(folder: Path, results: dict[str, Any], shots: Sequence[Shot], steps: Sequence[dict]) -> None:
    (folder / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (folder / "report.md").write_text(markdown(results), encoding="utf-8")
    plot_latency(shots, float(results["sla"]["p99_latency_s"]), folder / "latency.png")
    plot_rates(steps, float(results["sla"]["p99_latency_s"]), folder / "rates.png")
