"""Gated runs to serve, made the quick way, for test_serve_runs.py and
test_loadtest_runs.py: what an `llmc run` of the local profiles leaves, with the models
trained in-process for a few steps (as tests/integration/test_target_evaluate.py trains
them), the translator exported to ONNX as the export step does, the bundle's own
evaluate.py run on them (a spec variant with gates the short training passes), and the
run recorded with runtime/records.py. The whole pipeline through `llmc run` is
tests/e2e/test_llmc_run.py's.

Nothing here runs at import: the frameworks are imported and the processes started
by the functions that need them, which only integration tests call.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from helpers import ROOT, run_cli, train_translator

BIN = Path(sys.executable).parent

# Gates a few training steps pass; everything else is the local profile's.
LOOSE = {
    "translator": "  evaluate.metric.bleu.min = 0.0\n  evaluate.metric.chrf.min = 0.0\n",
    "classifier": "  evaluate.metric.accuracy.min = 0.5\n  evaluate.metric.f1.min = 0.5\n"
    "  evaluate.metric.latency_p99.max = 10s\n",
}


def env() -> dict:
    """The environment the served processes run in (one thread each: the cores are shared)."""
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "LLMC_THREADS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONWARNINGS": "ignore",
    }


def variant(folder: Path, name: str, extra: str = "") -> Path:
    """specs/<name>.llm extended with gates a short training passes (and `extra` overrides)."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / f"{name}.llm"
    spec.write_text(f'extends "{ROOT / "specs" / f"{name}.llm"}"\n\nprofile local {{\n{LOOSE[name]}{extra}}}\n')
    return spec


def build(root: Path, spec: Path) -> Path:
    bundle = root / "build" / spec.stem
    code, _, err = run_cli("build", str(spec), "--profile", "local", "-o", str(bundle), "-q")
    assert code == 0, err
    return bundle


def record_run(root: Path, spec: Path, bundle: Path, model: Path) -> None:
    """evaluate.py on `model` (its real gates, a few examples), then the run's record."""
    import subprocess

    from llmc.runtime import records
    from llmc.runtime.runner import StageResult

    name = f"{spec.stem}-local"
    work = root / "runs" / name / "work"
    proc = subprocess.run(
        [sys.executable, str(bundle / "evaluate" / "evaluate.py"), "--model", str(model)]
        + ["--json", str(work / "evaluate" / "metrics.json"), "--data-root", str(spec.parent), "--limit", "16"],
        capture_output=True,
        text=True,
        env=env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records.claim_runs_folder(root / "runs", name)
    record = records.new_record(root / "runs", name)
    stages = [StageResult(stage, "ok", 1.0, 0) for stage in ("train", "compress", "evaluate")]
    info = {"spec": name, "profile": "local", "target": "local", "bundle": str(bundle)}
    records.finish_record(record, bundle, work, info, stages)


def translator_run(root: Path, steps: int = 40, extra: str = "") -> Path:
    """A gated run of the translator's local profile (with `extra` overrides) under root/runs/,
    its model trained for `steps` steps; returns its spec."""
    import torch

    from llmc.runtime import zoo_torch
    from llmc.runtime.folders import write_meta
    from llmc.runtime.frameworks.torch_onnx import export_onnx
    from llmc.runtime.onnx_graphs import OPSET

    spec = variant(root / "specs", "translator", extra)
    bundle = build(root, spec)
    cfg = json.loads((bundle / "model.json").read_text())["model"]
    work = root / "runs" / "translator-local" / "work"
    model = train_translator(cfg, steps=steps)
    zoo_torch.save_model(str(work / "train" / "model"), model, cfg, None)
    served_model = work / "compress" / "model"  # as export writes it: the ONNX graphs and llmc.json
    served_model.mkdir(parents=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        info = export_onnx(model, cfg, served_model)
    finally:
        torch.set_num_threads(threads)
    meta = json.loads((work / "train" / "model" / "llmc.json").read_text())
    write_meta(
        served_model,
        {**{k: v for k, v in meta.items() if k != "format"}, "format": "llmc-onnx-1", "onnx": {**info, "opset": OPSET}},
    )
    record_run(root, spec, bundle, served_model)
    return spec


def classifier_run(root: Path) -> Path:
    """A gated run of the classifier's local profile under root/runs/; returns its spec."""
    from support.models import train_tf_classifier

    spec = variant(root / "specs", "classifier")
    bundle = build(root, spec)
    model = root / "runs" / "classifier-local" / "work" / "compress" / "model"
    train_tf_classifier(bundle, model, epochs=2)
    record_run(root, spec, bundle, model)
    return spec


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def leftovers(marks: list[str]) -> list[str]:
    """Processes whose command line holds one of `marks`, and /dev/shm entries named by them."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if any(m in cmdline for m in marks):
                found.append(f"pid {entry.name}: {cmdline[:200]}")
    shm = Path("/dev/shm")
    found += [str(p) for p in shm.iterdir() if any(p.name.startswith(m) for m in marks)] if shm.is_dir() else []
    return found


@contextlib.contextmanager
def cores_apart() -> Iterator[Callable[[], None]]:
    """Processes started in this block run on the first core (they inherit the caller's); the
    function it yields moves the caller, the load generator, to the second core. All cores
    again after. On 2 cores a server at full tilt otherwise starves the client, whose lateness
    then counts in what it measures."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        yield lambda: None
        return
    os.sched_setaffinity(0, {cores[0]})
    try:
        yield lambda: os.sched_setaffinity(0, {cores[1]})
    finally:
        os.sched_setaffinity(0, cores)
