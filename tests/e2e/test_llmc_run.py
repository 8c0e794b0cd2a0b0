"""End to end through `llmc run`, as the README's main job runs it: build the real
specs' local profiles, train with Horovod over Gloo on this machine, compress,
evaluate, enforce the gates, and serve the gated model on a local Triton under the
SLA's load (the serve stage: 5 s of load here, $LLMC_LOADTEST_DURATION, and the
capacity sweep only for the translator). A missed SLA fails the serve stage. Also:
Ctrl-C midway through training stops every process, and the next `llmc run` resumes
from the newest checkpoint.

Slow (minutes): `pytest -m slow tests/e2e/test_llmc_run.py`.
"""

from __future__ import annotations

import json
import os
import re
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


def env(**extra: str) -> dict:
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONWARNINGS": "ignore",
        "COLUMNS": "200",
        # The serve stage: 5 s of load instead of 20, no capacity sweep unless a test asks.
        "LLMC_LOADTEST_DURATION": "5",
        "LLMC_LOADTEST_SWEEP": "0",
        **extra,
    }


def llmc(cwd: Path, *args: str, timeout: int = 900, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LLMC), *args],
        cwd=cwd,
        env=env(**(extra or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def run_spec(tmp_path: Path, spec: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    """`llmc run SPEC --profile local` in tmp_path; `extra` is added to the environment."""
    common = ["--profile", "local", "-o", "build/bundle", "--runs-dir", "runs"]
    return llmc(tmp_path, "run", str(spec), *common, *args, extra=extra)


def serve_rows(stdout: str) -> dict[str, list[str]]:
    """The load test's table (the second metric table of a run): rows by metric."""
    lines = stdout.splitlines()
    start = [i for i, line in enumerate(lines) if line.split()[:2] == ["metric", "value"]][-1]
    return table_rows("\n".join(lines[start:]))


def served_run(tmp_path: Path, spec: Path, **extra: str) -> tuple[subprocess.CompletedProcess, str]:
    """The whole pipeline, the serve stage last, and the serve stage's output. A stall of these 2 shared
    cores now and then holds a request in Triton's queue past the p99 (docs/serving.md);
    the verdict's errors clause allows what the 0.1% budget explains in ~100 requests
    (one), so a single stall does not fail the run."""
    proc = run_spec(tmp_path, spec, **extra)
    out = proc.stdout
    for stage in ("train", "compress", "evaluate"):
        assert f"==> {stage} ok in" in out, out[-6000:] + proc.stderr[-3000:]
    assert "==> serve\n" in out and out.index("==> evaluate ok") < out.index("==> serve\n"), out[-3000:]
    served = proc
    if proc.returncode != 0 and LATENCY_ONLY_MISS.search(out):
        # The load lasts 5 s (about 235 requests at the classifier's 50 req/s), so its p99 is
        # the third slowest request: one stall of the shared cores holds the two or three
        # requests then in flight past it. The serve stage is run once more; a server that
        # is really too slow misses again.
        served = run_spec(tmp_path, spec, "--stage", "serve", **extra)
        out = served.stdout
    assert served.returncode == 0, out[-6000:] + served.stderr[-3000:]
    return proc, out


# The serve verdict when the latency clause alone failed.
LATENCY_ONLY_MISS = re.compile(r"^==> serve failed: \S+: SLA missed: latency p99 [^,;]*$", re.M)


def assert_served_within_the_sla(tmp_path: Path, out: str, name: str, model: str) -> dict:
    """The serve stage passed: its table and verdict are in the output, its report is in
    work/serve/ and in the run's record."""
    assert "==> serve ok in" in out, out[-6000:]
    work = tmp_path / "runs" / name / "work"
    results = json.loads((work / "serve" / "results.json").read_text())
    assert results["verdict"]["passed"] is True and results["main"]["duration_s"] == 5
    assert results["verdict"]["line"] == f"{model}: SLA met (4 of 4 clauses hold)"
    rows = serve_rows(out)
    assert rows["latency p99"][2] == "pass" and rows["errors"][2] == "pass", rows
    assert f"==> serve ok: {model}: SLA met (4 of 4 clauses hold)" in out
    for report in ("report.md", "results.json", "latency.png", "rates.png"):
        assert (work / "serve" / report).is_file()
    record = max(p for p in (tmp_path / "runs" / name).iterdir() if p.name[:1].isdigit())
    assert (record / "serve-report.md").is_file() and (record / "serve-results.json").is_file()
    assert (record / "serve-latency.png").is_file() and (record / "serve-rates.png").is_file()
    stages = json.loads((record / "run.json").read_text())["stages"]
    assert [s["name"] for s in stages] in (["train", "compress", "evaluate", "serve"], ["serve"])
    return results


def assert_every_step_passes_its_gates(metrics: dict, steps: list[str]) -> None:
    """Each compress step's model (distill's student, the pruned, exported and quantized
    models: not only the served one) was scored on the gated metrics and passed the gates."""
    scored = metrics["steps"]
    assert [s["step"] for s in scored] == steps, scored
    for step in scored:
        assert step["passed"] is True and step["note"] is None, step
        assert step["gates"] and all(g["passed"] for g in step["gates"]), step


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


def test_translator_local_pipeline_passes_its_bleu_gate_and_its_sla(tmp_path):
    proc, served_out = served_run(tmp_path, ROOT / "specs" / "translator.llm", LLMC_LOADTEST_SWEEP="1")
    out = proc.stdout
    assert "oneDNN" not in out and "absl::InitializeLog" not in out  # start-up noise is filtered

    work = tmp_path / "runs" / "translator-local" / "work"
    metrics = json.loads((work / "evaluate" / "metrics.json").read_text())
    assert metrics["passed"] is True
    assert_every_step_passes_its_gates(metrics, ["distill", "prune", "export", "quantize", "build_engine"])
    values = metrics["metrics"]
    assert values["bleu"] >= 40.0, values
    rows = table_rows(out)
    assert rows["bleu"][2] == "pass" and float(rows["bleu"][0]) == pytest.approx(values["bleu"], abs=0.01)
    assert {"chrf", "ter", "rouge1", "rougeL", "latency_p50", "latency_p99"} <= set(rows)
    # The evaluated model is the compressed student served by onnxruntime, not the teacher.
    assert "compress/model (onnxruntime)" in out

    # The serve stage: the compressed model on a local Triton, measured at the SLA's rate, and the sweep.
    served = assert_served_within_the_sla(tmp_path, served_out, "translator-local", "translator")
    assert served["served_model"] == str(work / "compress" / "model")
    assert served["sweep"] is not None and served["sweep"]["steps"], served["sweep"]

    listing = llmc(tmp_path, "runs", "--runs-dir", "runs")
    assert listing.returncode == 0 and "translator-local/" in listing.stdout and "evaluate ok" in listing.stdout
    assert "serve ok" in listing.stdout

    # Nothing changed: every stage is up to date, and none runs again.
    again = run_spec(tmp_path, ROOT / "specs" / "translator.llm")
    assert again.returncode == 0, again.stdout[-3000:]
    assert again.stdout.count("up to date") == 4 and "==> train ok" not in again.stdout
    assert "==> serve: up to date" in again.stdout

    # An SLA this machine cannot meet (a p99 of 7 ms: the compiler's estimate allows it, one
    # request through Triton's Python backend here takes longer): `--stage serve` reuses the
    # models above and fails as a failed gate does, exit 1, the verdict naming the clause.
    strict = tmp_path / "strict" / "translator.llm"
    strict.parent.mkdir()
    strict.write_text(
        f'extends "{ROOT / "specs" / "translator.llm"}"\n\n'
        "profile local {\n  serve.sla.p99_latency = 7ms\n  serve.batching.timeout = 1ms\n}\n"
    )
    missed = run_spec(tmp_path, strict, "--stage", "serve")
    assert missed.returncode == 1, missed.stdout[-4000:] + missed.stderr[-2000:]
    assert "==> train" not in missed.stdout and "==> evaluate" not in missed.stdout
    assert "==> serve failed (exit 1)" in missed.stdout
    rows = serve_rows(missed.stdout)
    assert rows["latency p99"][1] == "<= 7.0 ms", rows
    failed = [metric for metric, cells in rows.items() if cells[2] == "FAIL"]
    assert failed, rows  # the p99, and the requests Triton refused after 7 ms in its queue
    (verdict,) = [line for line in missed.stdout.splitlines() if line.startswith("translator: SLA missed: ")]
    assert all(f"{metric} " in verdict for metric in failed), (verdict, failed)
    assert f"==> serve failed: {verdict}" in missed.stdout
    results = json.loads((work / "serve" / "results.json").read_text())
    assert results["verdict"]["passed"] is False and results["sla"]["p99_latency_s"] == 0.007
    listing = llmc(tmp_path, "runs", "translator", "--runs-dir", "runs").stdout
    assert "serve failed" in listing and "serve ok" in listing


def test_classifier_local_pipeline_trains_tensorflow_over_horovod_and_passes_accuracy(tmp_path):
    proc, served_out = served_run(tmp_path, ROOT / "specs" / "classifier.llm")
    assert "[rank 0] train.py: 2 processes: data 2" in proc.stdout
    metrics = json.loads((tmp_path / "runs" / "classifier-local" / "work" / "evaluate" / "metrics.json").read_text())
    assert metrics["passed"] is True and metrics["metrics"]["accuracy"] >= 0.9, metrics
    assert_every_step_passes_its_gates(metrics, ["prune", "export", "quantize", "build_engine"])
    rows = table_rows(proc.stdout)
    assert rows["accuracy"][2] == "pass" and rows["f1"][2] == "pass"
    served = assert_served_within_the_sla(tmp_path, served_out, "classifier-local", "classifier")
    assert served["sweep"] is None  # LLMC_LOADTEST_SWEEP=0

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
