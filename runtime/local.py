"""`llmc run`: the bundle's stages on this machine (or submitted to Kubernetes).

Reads only the built bundle; records every run under runs/<spec>/<timestamp>/ (with
each stage's whole output, <stage>.log).
Exit status: 0 every stage passed or was up to date, 1 a stage failed (its own exit
status is shown; a failed gate, a missed SLA), 2 the run could not start (no bundle,
no cluster, no such stage), 130 Ctrl-C.
"""

import json
import signal
import sys
from pathlib import Path

from rich.console import Console

from . import records
from .progress import MetricsWatcher
from .runner import Bundle, RunError, StageResult, plan_stages, preflight, run_stages


def run(
    bundle_dir: str,
    *,
    name: str,
    data_root: Path,
    runs_root: Path,
    stage: str | None,
    target: str,
    np: int | None,
    force: bool,
    profile: str | None,
    endpoint: str | None = None,
) -> int:
    console = Console(stderr=False, highlight=False)
    # Stages run in the bundle's folder: every path handed to them must be absolute.
    data_root, runs_root = data_root.resolve(), runs_root.resolve()
    try:
        bundle = Bundle(bundle_dir)
        if target == "local":
            preflight(bundle, data_root)
    except RunError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.status
    work = runs_root / name / "work"
    try:  # the stages replace folders under work/: only in a folder llmc made, checked before anything starts
        records.check_runs_folder(runs_root, name)
    except records.RunsFolderRefused as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    if target == "kfp":
        return _on_kubeflow(bundle, name=name, with_search=stage == "search", endpoint=endpoint)
    if target == "k8s":
        return _on_cluster(
            bundle, console, name=name, runs_root=runs_root, work=work, stage=stage, force=force, profile=profile
        )
    stages = plan_stages(bundle, work, data_root, np, with_search=stage == "search")
    if not stages:
        sys.stderr.write("error: the bundle has no stage to run\n")
        return 2
    if stage is not None and stage not in [s.name for s in stages]:
        need = {"serve": "a serve block and an evaluate block"}.get(stage, f"a {stage} block")
        sys.stderr.write(f"error: the bundle has no {stage} stage (the spec needs {need})\n")
        return 2
    if not _claimed(runs_root, name):
        return 2
    record = records.new_record(runs_root, name)
    interactive = console.is_terminal
    # SIGTERM (a CI job cancelled, `kill`) stops the stage's processes as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    with MetricsWatcher(work / "train" / "metrics.jsonl", console, interactive) as watcher:
        try:
            results = run_stages(bundle, stages, work, data_root, force, stage, log=watcher.log, logs=record)
        except KeyboardInterrupt:
            results = [StageResult("run", "interrupted", 0.0, 130)]
    return _finish(console, record, bundle, work, {"spec": name, "profile": profile, "target": target}, results)


def _on_cluster(bundle, console, *, name, runs_root, work, stage, force, profile) -> int:
    from .cluster import ClusterError, submit

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        results = submit(bundle, console, only=stage, with_search=stage == "search", force=force)
    except ClusterError as exc:  # nothing was touched, or the cluster refused midway
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except KeyboardInterrupt:  # while applying: what was applied stays (server-side apply is idempotent)
        sys.stderr.write(
            "interrupted; what was applied stays in the cluster, and `llmc run --target k8s` picks up from there\n"
        )
        return 130
    if not _claimed(runs_root, name):
        return 2
    record = records.new_record(runs_root, name)
    return _finish(console, record, bundle, work, {"spec": name, "profile": profile, "target": "k8s"}, results)


def _on_kubeflow(bundle, *, name: str, with_search: bool, endpoint: str | None) -> int:
    """The bundle's pipeline/pipeline.yaml, submitted as one Kubeflow Pipelines run."""
    from .pipeline import SubmitError, submit

    assert endpoint  # the CLI refuses --target kfp without one
    try:
        url = submit(str(bundle.root), endpoint, with_search=with_search, run_name=name, experiment=f"llmc-{name}")
    except SubmitError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    print(f"submitted {name} to Kubeflow Pipelines: {url}")
    return 0


def _claimed(runs_root: Path, name: str) -> bool:
    """Create (or adopt) runs/<name>/ as llmc's; False, said on stderr, when it cannot be."""
    try:
        records.claim_runs_folder(runs_root, name)
    except records.RunsFolderRefused as exc:
        sys.stderr.write(f"error: {exc}\n")
        return False
    return True


def _finish(console, record: Path, bundle, work: Path, info: dict, results: list) -> int:
    records.finish_record(record, bundle.root, work, {**info, "bundle": str(bundle.root)}, results)
    verdict = serving_verdict(work, results)
    if verdict:
        console.print(verdict, markup=False, highlight=False)
    console.print(f"run recorded in {record}", highlight=False)
    if any(r.status == "interrupted" for r in results):
        return 130
    return 1 if any(r.status == "failed" for r in results) else 0


def serving_verdict(work: Path, results: list) -> str | None:
    """The summary line of a serve stage that ran in this run: its verdict against the
    SLA (the last line of the load test, from work/serve/results.json), or None."""
    ran = [r for r in results if r.name == "serve" and r.status in ("ok", "failed")]
    if not ran:
        return None
    try:
        line = json.loads((work / "serve" / "results.json").read_text(encoding="utf-8"))["verdict"]["line"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"==> serve {ran[0].status}: no load-test report (see the stage's output above)"
    return f"==> serve {ran[0].status}: {line}"


def _interrupt(signum, frame):
    raise KeyboardInterrupt
