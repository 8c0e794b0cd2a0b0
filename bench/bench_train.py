"""Training throughput of the generated train.py against a hand-written Horovod loop.

    .venv/bin/python bench/bench_train.py [--pairs N] [--steps N] [--warm N]

Builds specs/translator.llm's local profile, then runs, alternately, on the same
processes layout (horovodrun --gloo, 2 processes):
  - the generated train/train.py (--max-steps STEPS --log-every 10), whose metrics
    lines give the time of every 10 steps after the first WARM;
  - bench/horovod_loop.py, a minimal hand-written loop on the same model and batches,
    timed over the same steps.
Both report the seconds of every window of 10 steps after the first WARM. This
machine's cores are shared, so a window now and then runs slow for reasons of its
own: the figure compares the median window of each, pooled over all runs (samples
per second); bound: at least 0.95. Exits 1 when it is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from bench_check import CHILD_ENV, report  # noqa: E402

SPEC = ROOT / "specs" / "translator.llm"
LOG_EVERY = 10
NP = 2


def horovodrun(command: list[str]) -> subprocess.CompletedProcess:
    launcher = str(Path(sys.executable).parent / "horovodrun")
    env = {**CHILD_ENV, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [launcher, "--gloo", "-np", str(NP), "-H", f"localhost:{NP}", sys.executable, *command],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        sys.exit(f"bench_train.py: {' '.join(command[:1])} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc


def generated_windows(bundle: Path, out: Path, steps: int, warm: int, batch: int) -> list[float]:
    """Seconds of each LOG_EVERY steps after `warm`, from the windows train.py logs."""
    shutil.rmtree(out, ignore_errors=True)  # a checkpoint left there would be resumed from
    metrics = out / "metrics.jsonl"
    horovodrun(
        [
            str(bundle / "train" / "train.py"),
            "--output",
            str(out),
            "--metrics",
            str(metrics),
            "--max-steps",
            str(steps),
            "--log-every",
            str(LOG_EVERY),
            "--data-root",
            str(SPEC.parent),
            "--set",
            "train.checkpoint.every=100000",
        ]
    )
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    windows = [
        LOG_EVERY * batch / r["throughput"]
        for r in records
        if "step" in r and warm < r["step"] <= steps and r["step"] % LOG_EVERY == 0
    ]
    if not windows:
        sys.exit(f"bench_train.py: train.py logged no steps after {warm}: {records}")
    return windows


def handwritten_windows(bundle: Path, steps: int, warm: int) -> list[float]:
    proc = horovodrun(
        [
            str(ROOT / "bench" / "horovod_loop.py"),
            str(bundle / "model.json"),
            "--data-root",
            str(SPEC.parent),
            "--steps",
            str(steps),
            "--warm",
            str(warm),
            "--window",
            str(LOG_EVERY),
        ]
    )
    line = next(line for line in proc.stdout.splitlines() if '"windows"' in line)
    return json.loads(line[line.index("{") :])["windows"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--steps", type=int, default=60, help="steps per run (the first epoch has 62)")
    ap.add_argument("--warm", type=int, default=10)
    args = ap.parse_args()
    if args.warm % LOG_EVERY or args.steps % LOG_EVERY or args.steps <= args.warm:
        ap.error(f"--warm and --steps must be multiples of {LOG_EVERY}, warm < steps")
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "llmc.compiler.cli",
                "build",
                "-q",
                str(SPEC),
                "--profile",
                "local",
                "-o",
                str(bundle),
            ],
            check=True,
            env=CHILD_ENV,
        )
        batch = json.loads((bundle / "model.json").read_text())["train"]["batch_size"]
        generated, handwritten = [], []
        for i in range(args.pairs):
            handwritten += handwritten_windows(bundle, args.steps, args.warm)
            generated += generated_windows(bundle, Path(tmp) / "out", args.steps, args.warm, batch)
            print(
                f"  pair {i + 1}: median so far: generated {LOG_EVERY * batch / median(generated):.0f}, "
                f"hand-written {LOG_EVERY * batch / median(handwritten):.0f} samples/s",
                flush=True,
            )
    ratio = median(handwritten) / median(generated)  # a throughput ratio: samples per second
    ok = report(
        "generated train.py / hand-written Horovod loop (throughput)",
        ratio,
        0.95,
        f"{LOG_EVERY * batch / median(generated):.0f} vs {LOG_EVERY * batch / median(handwritten):.0f} "
        f"samples/s, median of {len(generated)} and {len(handwritten)} windows of {LOG_EVERY} steps, "
        f"translator local, {NP} processes",
        at_least=True,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
