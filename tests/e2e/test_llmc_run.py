"""End to end through `llmc run`, as the README's main job runs it: build the real
specs' local profiles, train with Horovod over Gloo on this machine, compress,
evaluate, and enforce the gates. Also: Ctrl-C midway through training stops every
process, and the next `llmc run` resumes from the newest checkpoint.

Slow (minutes): `pytest -m slow tests/e2e/test_llmc_run.py`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
LLMC = BIN / "llmc"


@pytest.fixture(autouse=True)
def _needs_horovod():
    if not (BIN / "horovodrun").exists():
        pytest.skip("horovodrun is not installed (run bin/setup)")


def env() -> dict:
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONWARNINGS": "ignore",
        "COLUMNS": "200",
    }


def llmc(cwd: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LLMC), *args],
        cwd=cwd,
        env=env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def run_spec(tmp_path: Path, spec: Path, *args: str) -> subprocess.CompletedProcess:
    return llmc(tmp_path, "run", str(spec), "--profile", "local", "-o", "build/bundle", "--runs-dir", "runs", *args)


def table_rows(stdout: str) -> dict[str, list[str]]:
    """The evaluation table's rows by metric: [value, bound, verdict] (the first row of each)."""
    rows: dict[str, list[str]] = {}
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["metric", "value"])
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        cells = [c for c in line.split("  ") if c.strip()]
        rows.setdefault(cells[0].strip(), [c.strip() for c in cells[1:]])
    return rows


def test_translator_local_pipeline_passes_its_bleu_gate(tmp_path):
    proc = run_spec(tmp_path, ROOT / "specs" / "translator.llm")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    out = proc.stdout
    for stage in ("train", "compress", "evaluate"):
        assert f"==> {stage} ok in" in out
    assert "oneDNN" not in out and "absl::InitializeLog" not in out  # start-up noise is filtered

    work = tmp_path / "runs" / "translator-local" / "work"
    metrics = json.loads((work / "evaluate" / "metrics.json").read_text())
    assert metrics["passed"] is True
    values = metrics["metrics"]
    assert values["bleu"] >= 40.0, values
    rows = table_rows(out)
    assert rows["bleu"][2] == "pass" and float(rows["bleu"][0]) == pytest.approx(values["bleu"], abs=0.01)
    assert {"chrf", "ter", "rouge1", "rougeL", "latency_p50", "latency_p99"} <= set(rows)
    # The evaluated model is the compressed student served by onnxruntime, not the teacher.
    assert "compress/model (onnxruntime)" in out

    listing = llmc(tmp_path, "runs", "--runs-dir", "runs")
    assert listing.returncode == 0 and "translator-local/" in listing.stdout and "evaluate ok" in listing.stdout

    # Nothing changed: every stage is up to date, and none runs again.
    again = run_spec(tmp_path, ROOT / "specs" / "translator.llm")
    assert again.returncode == 0, again.stdout[-3000:]
    assert again.stdout.count("up to date") == 3 and "==> train ok" not in again.stdout


def test_classifier_local_pipeline_trains_tensorflow_over_horovod_and_passes_accuracy(tmp_path):
    proc = run_spec(tmp_path, ROOT / "specs" / "classifier.llm")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert "[rank 0] train.py: 2 processes: data 2" in proc.stdout
    metrics = json.loads((tmp_path / "runs" / "classifier-local" / "work" / "evaluate" / "metrics.json").read_text())
    assert metrics["passed"] is True and metrics["metrics"]["accuracy"] >= 0.9, metrics
    rows = table_rows(proc.stdout)
    assert rows["accuracy"][2] == "pass" and rows["f1"][2] == "pass"

    # The same models held to a gate they cannot pass (`--stage evaluate` reuses the
    # trained and compressed models of the run above): the run fails with the table.
    strict = tmp_path / "strict" / "classifier.llm"
    strict.parent.mkdir()
    strict.write_text(
        f'extends "{ROOT / "specs" / "classifier.llm"}"\n\n'
        "profile local {\n  evaluate.metric.accuracy.min = 0.9999\n}\n"
    )
    failed = run_spec(tmp_path, strict, "--stage", "evaluate")
    assert failed.returncode == 1, failed.stdout[-4000:]
    assert "==> train" not in failed.stdout and "==> compress" not in failed.stdout
    rows = table_rows(failed.stdout)
    assert rows["accuracy"][1] == ">= 0.9999" and rows["accuracy"][2] == "FAIL", rows
    assert "==> evaluate failed (exit 1)" in failed.stdout
    listing = llmc(tmp_path, "runs", "classifier", "--runs-dir", "runs").stdout
    assert "evaluate failed" in listing and "evaluate ok" in listing


def _train_processes(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_ctrl_c_stops_training_and_the_next_run_resumes_from_the_newest_checkpoint(tmp_path):
    spec = tmp_path / "resumable.llm"
    spec.write_text(
        f'extends "{ROOT / "specs" / "translator.llm"}"\n\n'
        "train {\n  checkpoint {\n    every = 30\n    keep  = 2\n  }\n}\n"
    )
    args = [
        str(LLMC),
        "run",
        str(spec),
        "--profile",
        "local",
        "--stage",
        "train",
        "-o",
        "build/bundle",
        "--runs-dir",
        "runs",
    ]
    work = tmp_path / "runs" / "resumable-local" / "work" / "train"
    checkpoints = work / "checkpoints"
    log = (tmp_path / "first.log").open("w")
    # A shell without job control starts background commands with SIGINT ignored, and
    # children inherit that: give llmc the default Ctrl-C, as a terminal would.
    first = subprocess.Popen(
        args,
        cwd=tmp_path,
        env=env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 300
    while not (checkpoints.is_dir() and any(checkpoints.glob("ckpt-*.pt"))):
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-4000:]
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.5)
    first.send_signal(signal.SIGINT)  # Ctrl-C: the terminal signals llmc; training runs in its own session
    assert first.wait(timeout=60) == 130, (tmp_path / "first.log").read_text()[-4000:]
    log.close()
    time.sleep(1)
    assert _train_processes(str(tmp_path / "build" / "bundle" / "train" / "train.py")) == []

    saved = sorted(int(p.stem.split("-")[1]) for p in checkpoints.glob("ckpt-*.pt"))
    lines = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    planned = lines[0]["total_steps"]
    assert saved and saved[-1] < planned and not any(line.get("final") for line in lines)

    second = subprocess.run(
        args, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL
    )
    assert second.returncode == 0, second.stdout[-4000:]
    assert f"at step {saved[-1]}" in second.stdout and "resuming from" in second.stdout
    lines = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    starts = [line for line in lines if line.get("start")]
    assert [s["from_step"] for s in starts] == [0, saved[-1]] and starts[-1]["total_steps"] == planned
    assert lines[-1]["final"] is True and lines[-1]["steps"] == planned
    steps_after = [line["step"] for line in lines[lines.index(starts[-1]) :] if "step" in line]
    assert steps_after[0] > saved[-1] and steps_after[-1] == planned
