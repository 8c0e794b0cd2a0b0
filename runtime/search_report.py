"""A finished search's report: every trial in a table, and the objective plotted
against the trial number and against each searched value.

It reads only the search's results.json data (runtime/search.py writes it), and
imports neither Hyperopt nor matplotlib at module level, so the run record
(records.py) can name the files without loading either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .records import SEARCH_REPORT

# What a search leaves in its output folder; the run record copies each as search-<name>.
REPORT_FILES = SEARCH_REPORT
# A failure reason longer than this is cut in the table (results.json keeps it whole).
_REASON_CHARS = 80


def format_value(value: Any) -> str:
    """A sampled value as the table shows it: floats with 4 significant digits."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def report_markdown(results: Mapping[str, Any]) -> str:
    """report.md: the best point, then one row per trial (values, objective, status, time)."""
    trials: Sequence[Mapping[str, Any]] = results.get("trials", [])
    paths = sorted(results.get("space", {}))
    objective = results["objective"]
    best = results.get("best")
    lines = [f"# Search: {results['model']}", ""]
    ok = sum(1 for t in trials if t.get("status") == "ok")
    seconds = sum(float(t.get("seconds") or 0.0) for t in trials)
    lines.append(
        f"{len(trials)} trials ({ok} ok, {len(trials) - ok} failed), {results['algorithm']} on the "
        f"{results['backend']} backend, {results['direction']} {objective}; {seconds:.0f} s of trials in all."
    )
    lines.append("")
    if best is None:
        lines.append("No trial succeeded: the failures are below.")
    else:
        point = ", ".join(f"`{p} = {format_value(best['params'][p])}`" for p in sorted(best["params"]))
        lines.append(f"Best: {objective} = {best['objective']:.6g} (trial {best['tid']}) with {point}.")
        lines.append("`llmc search apply SPEC` writes these values into the spec.")
    lines += ["", "| trial | " + " | ".join(paths) + f" | {objective} | status | seconds |"]
    lines.append("| ---: | " + " | ".join("---:" for _ in paths) + " | ---: | --- | ---: |")
    best_tid = best["tid"] if best else None
    for t in trials:
        params = t.get("params") or {}
        values = [format_value(params[p]) if p in params else "" for p in paths]
        value = t.get("objective")
        shown = f"{value:.6g}" if isinstance(value, (int, float)) else ""
        if t.get("status") == "ok":
            status = "ok, best" if t["tid"] == best_tid else "ok"
        else:
            reason = str(t.get("failure") or "failed")
            status = "failed: " + (reason if len(reason) <= _REASON_CHARS else reason[: _REASON_CHARS - 1] + "…")
            status = status.replace("|", "\\|")
        secs = t.get("seconds")
        lines.append(
            f"| {t['tid']} | "
            + " | ".join(values)
            + f" | {shown} | {status} | {'' if secs is None else f'{secs:.1f}'} |"
        )
    lines += ["", "![the objective against the trial and each searched value](objective.png)", ""]
    return "\n".join(lines)


def plot_search(results: Mapping[str, Any], path: Path) -> None:
    """objective.png: the objective against the trial number, then against each searched
    value (a log axis for loguniform, one column per option for choice); failed trials
    are red crosses along the bottom of the first panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trials: Sequence[Mapping[str, Any]] = results.get("trials", [])
    space: Mapping[str, Mapping[str, Any]] = results.get("space", {})
    paths = sorted(space)
    objective = results["objective"]
    ok = [t for t in trials if t.get("status") == "ok" and isinstance(t.get("objective"), (int, float))]
    failed = [t for t in trials if t.get("status") != "ok"]
    panels = 1 + len(paths)
    fig, axes = plt.subplots(1, panels, figsize=(4 * panels, 3.6), squeeze=False)
    first = axes[0][0]
    first.plot([t["tid"] for t in ok], [t["objective"] for t in ok], "o", color="tab:blue", label="trial")
    best_so_far: list[float] = []
    for t in ok:
        better = min if results["direction"] == "minimize" else max
        best_so_far.append(t["objective"] if not best_so_far else better(best_so_far[-1], t["objective"]))
    if ok:
        first.step([t["tid"] for t in ok], best_so_far, where="post", color="tab:green", label="best so far")
    if failed:
        bottom = min((t["objective"] for t in ok), default=0.0)
        first.plot([t["tid"] for t in failed], [bottom] * len(failed), "x", color="tab:red", label="failed")
    first.set_xlabel("trial")
    first.set_ylabel(objective)
    first.legend(fontsize="small")
    for ax, p in zip(axes[0][1:], paths, strict=True):
        kind = space[p].get("kind")
        xs = [t["params"][p] for t in ok if p in (t.get("params") or {})]
        ys = [t["objective"] for t in ok if p in (t.get("params") or {})]
        if kind == "choice":
            options = [str(o) for o in space[p].get("args", [])]
            labels = [str(x) for x in xs]
            positions = [options.index(x) if x in options else len(options) for x in labels]
            ax.set_xticks(range(len(options)), options)
            ax.plot(positions, ys, "o", color="tab:blue")
        else:
            ax.plot(xs, ys, "o", color="tab:blue")
            if kind == "loguniform" and all(isinstance(x, (int, float)) and x > 0 for x in xs):
                ax.set_xscale("log")
        ax.set_xlabel(p)
        ax.set_ylabel(objective)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
