"""`llmc run`: the bundle's stages on this machine (or submitted to Kubernetes).

Reads only the built bundle; records every run under runs/<spec>/<timestamp>/.
Exit status: 0 every stage passed or was up to date, 1 a stage failed (its own exit
status is shown), 2 the run could not start (no bundle, no cluster), 130 Ctrl-C.
"""

import signal
import sys
from pathlib import Path

from rich.console import Console

from . import records
from .progress import MetricsWatcher
from .runner import Bundle, RunError, plan_stages, preflight, run_stages


def run(bundle_dir: str, *, name: str, data_root: Path, runs_root: Path, stage: str | None, target: str,
        np: int | None, force: bool, profile: str | None) -> int:
    console = Console(stderr=False, highlight=False)
    try:
        bundle = Bundle(bundle_dir)
        if target == "k8s":
            from .cluster import submit

            return submit(bundle, console)
        preflight(bundle, data_root)
    except RunError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.status
    work = runs_root / name / "work"
    stages = plan_stages(bundle, work, data_root, np, with_search=stage == "search")
    if not stages:
        sys.stderr.write("error: the bundle has no stage to run\n")
        return 2
    record = records.new_record(runs_root, name)
    interactive = console.is_terminal
    # SIGTERM (a CI job cancelled, `kill`) stops the stage's processes as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    with MetricsWatcher(work / "train" / "metrics.jsonl", console, interactive) as watcher:
        try:
            results = run_stages(bundle, stages, work, data_root, force, stage, log=watcher.log)
        except KeyboardInterrupt:
            results = []
    info = {"spec": name, "profile": profile, "target": target, "bundle": str(bundle.root)}
    records.finish_record(record, bundle.root, work, info, results)
    console.print(f"run recorded in {record}", highlight=False)
    if any(r.status == "interrupted" for r in results):
        return 130
    failed = [r for r in results if r.status == "failed"]
    return 1 if failed else 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt
