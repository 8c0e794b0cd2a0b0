"""What each step of a bundle's Kubeflow pipeline does (kfp_components.py calls these).

Every step runs the bundle's own scripts, the commands the local runner runs
(runner.py), with its folders swapped for the step's Kubeflow artifacts:

    train     {model}/model, {model}/metrics.jsonl: the trained model and the training's
              metrics; the final line's numbers are logged as Kubeflow metrics
    compress  {compressed}: the compress stage's folder (model/ is the served model);
              {serving}: the serving layout build_engine writes (Triton's repository
              or TF Serving's base path)
    evaluate  {verdict}: evaluate.py's JSON; every metric, each gate's margin and
              `passed` logged as Kubeflow metrics. A failed gate raises: the run fails
              and deploy never starts.
    search    {results}: search.py's folder (results.json, each trial's model); for a
              Katib search, the Experiment created, followed to its end and deleted
              when the step is cancelled, with its outcome in results.json (the best
              trial's parameters and objective)
    deploy    copies {serving} onto the artifacts volume (where the serving pods' init
              container copies from) and applies the bundle's serving objects, as
              `llmc deploy` does; with apply false it writes the objects it would apply
              to {applied} and touches no cluster (the pipeline's local form).

Training on a cluster (launcher "mpijob") creates the bundle's MPIJob, follows it to
success or failure with its pods' logs (runtime/cluster.py, as `llmc run --target k8s`
does), and deletes it when the step is cancelled (Kubeflow sends SIGTERM); the
trained model is on the artifacts volume the step mounts. Launcher "local" runs
Horovod over Gloo in the step's own process tree, as `llmc run` does.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .cluster import KATIB_EXPERIMENT
from .runner import Bundle, compress_commands, evaluate_command, search_command, train_command

LAUNCHERS = ("mpijob", "local")
ARTIFACTS_DIR = Path("/artifacts")  # the artifacts volume, as k8s/ mounts it (k8s_workloads.ARTIFACTS_DIR)
OUTPUT_DIR = ARTIFACTS_DIR / "outputs"


class StepFailed(RuntimeError):
    """A step's script failed; the message is the line Kubeflow shows for the task."""


def call(command: list[str]) -> int:
    """Run one of the bundle's commands with its output on the step's log; its exit status."""
    print("==> " + " ".join(command), flush=True)
    return subprocess.call(command)


def run(command: list[str], what: str) -> None:
    code = call(command)
    if code != 0:
        raise StepFailed(f"{what} exited with status {code}")


def train(bundle_dir: str, data_root: str, launcher: str, model: Any, metrics: Any) -> None:
    bundle = Bundle(bundle_dir)
    if launcher == "local":
        work = Path(model.path + ".work")
        run(train_command(bundle, work, Path(data_root)), "train/train.py")
    elif launcher == "mpijob":
        train_on_cluster(bundle)
        work = OUTPUT_DIR  # the MPIJob's launcher runs train/launch.sh --output $LLMC_OUTPUT
    else:
        raise StepFailed(f"launcher {launcher!r}: expected one of {', '.join(LAUNCHERS)}")
    out = Path(model.path)
    _copy(work / "model", out / "model")
    shutil.copy2(work / "metrics.jsonl", out / "metrics.jsonl")
    final = _final_line(out / "metrics.jsonl")
    for name, value in sorted(final.items()):
        if name != "final" and _number(value):
            metrics.log_metric(name, float(value))
    if launcher == "local":
        shutil.rmtree(work, ignore_errors=True)


def train_on_cluster(bundle: Bundle, api=None, poll_seconds: float = 10.0, sleep=time.sleep) -> None:
    """The bundle's MPIJob, created and followed; deleted if the step is cancelled."""
    from .cluster import Workload, connect, read_manifests, run_workload, stage_keys

    (doc,) = [d for d in read_manifests(bundle.root / "k8s") if d.get("kind") == "MPIJob"]
    api = api if api is not None else connect()
    workload = Workload("train", doc)
    with deleted_when_cancelled(api, doc, "train"):
        # `llmc run --target k8s`'s key: an MPIJob either of them finished with these inputs is kept.
        key = stage_keys(bundle, [workload])["train"]
        result = run_workload(api, workload, key, False, print, poll_seconds, time.monotonic, sleep)
    if result.status not in ("ok", "skipped"):
        raise StepFailed(f"the training MPIJob {result.status}")


@contextlib.contextmanager
def deleted_when_cancelled(api, doc: dict, stage: str) -> Iterator[None]:
    """While inside, Kubeflow's SIGTERM (the run cancelled) deletes `doc` and ends the step."""
    from .cluster import describe

    def cancelled(signum, frame):
        print(f"==> {stage} cancelled: deleting {describe(doc)}", flush=True)
        api.delete(doc)
        sys.exit(143)

    previous = signal.signal(signal.SIGTERM, cancelled)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def compress(bundle_dir: str, data_root: str, trained: Any, compressed: Any, serving: Any) -> None:
    bundle = Bundle(bundle_dir)
    commands = compress_commands(
        bundle, Path(trained.path) / "model", Path(compressed.path), Path(data_root), Path(serving.path)
    )
    for command in commands:
        run(command, Path(command[1]).relative_to(bundle.root).as_posix())


def evaluate(bundle_dir: str, data_root: str, gated: Any, baseline: Any, metrics: Any, verdict: Any) -> None:
    bundle = Bundle(bundle_dir)
    out = Path(verdict.path)
    code = call(
        evaluate_command(bundle, Path(gated.path) / "model", Path(baseline.path) / "model", out, Path(data_root))
    )
    if not out.is_file():
        raise StepFailed(f"evaluate/evaluate.py exited with status {code} and wrote no verdict")
    document = json.loads(out.read_text(encoding="utf-8"))
    for name, value in sorted((document.get("metrics") or {}).items()):
        if _number(value):
            metrics.log_metric(name, float(value))
    failed = [g for g in document.get("gates") or [] if not g.get("passed")]
    metrics.log_metric("gates_passed", 0.0 if failed else 1.0)
    if failed or code != 0:
        bounds = "; ".join(f"{g['metric']} {g['value']} against {g['bound']} {g['limit']}" for g in failed)
        raise StepFailed(f"evaluate: the model fails its gates: {bounds or f'exit status {code}'}")


def search(bundle_dir: str, data_root: str, results: Any) -> None:
    bundle = Bundle(bundle_dir)
    experiment = bundle.root / KATIB_EXPERIMENT
    if experiment.is_file():  # search.backend = "katib": the trials are Katib's
        search_on_katib(experiment, Path(results.path))
    else:
        run(search_command(bundle, Path(results.path), Path(data_root)), "search/search.py")


def search_on_katib(
    path: Path, out: Path, api=None, poll_seconds: float = 30.0, clock=time.monotonic, sleep=time.sleep
) -> dict:
    """The bundle's Katib Experiment, run to its end (cluster.run_experiment); its outcome
    in OUT/results.json. Cancelling the step deletes it."""
    import yaml

    from .cluster import connect, run_experiment

    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    api = api if api is not None else connect()
    with deleted_when_cancelled(api, doc, "search"):
        outcome = run_experiment(api, doc, _say, poll_seconds, clock, sleep)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(outcome, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if outcome["state"] == "failed":
        raise StepFailed(f"the Katib search failed: {outcome['detail'] or 'no reason given'}")
    return outcome


def _say(line: str) -> None:
    print(line, flush=True)


def deploy(bundle_dir: str, apply: bool, serving: Any, applied: Any) -> None:
    from .cluster import bundle_manifests, describe
    from .deploy import deploy as apply_serving
    from .deploy import serving_objects

    bundle = Bundle(bundle_dir)
    objects, volumes = serving_objects(bundle_manifests(bundle.root))
    listed = [describe(d) for d in volumes + objects]
    if not apply:
        Path(applied.path).write_text("\n".join(listed) + "\n", encoding="utf-8")
        print(f"==> deploy: apply is false: {len(listed)} objects not applied (listed in {applied.path})")
        return
    _copy(Path(serving.path), OUTPUT_DIR / "serve")
    code = apply_serving(bundle.root)
    if code != 0:
        raise StepFailed(f"deploy: the serving rollout failed (exit status {code})")
    Path(applied.path).write_text("\n".join(listed) + "\n", encoding="utf-8")


def _copy(src: Path, dst: Path) -> None:
    """Replace dst by a copy of src, never leaving half of it: a copy beside it, then a rename."""
    if not src.is_dir():
        raise StepFailed(f"no {src}: the step before this one did not write it")
    staged = dst.with_name(f".{dst.name}.partial")
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(src, staged)
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(staged, dst)


def _final_line(path: Path) -> dict:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    last = json.loads(lines[-1]) if lines else {}
    if not isinstance(last, dict) or last.get("final") is not True:
        raise StepFailed(f"training did not finish: the last line of {path} is not its final one")
    return last


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
