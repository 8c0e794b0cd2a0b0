"""What torch and TensorFlow training share: arguments, the step plan, the loop over
epochs and micro-batches, metrics lines, checkpoint bookkeeping and random state.

The contract (flags, printed lines, metrics.jsonl, checkpoints) is docs/bundle.md's.
A framework supplies a `StepHooks`: one micro-batch's forward and backward (and the
optimizer step on the last micro-batch of a step), the mean loss of the window over
every replica, and a checkpoint save. Everything that decides *which* example is
seen when, and when a line or a checkpoint is written, is here, once.

Exact resume: a checkpoint holds every rank's random state (Python's, numpy's and
the framework's), so a run killed after a checkpoint and resumed draws the same
dropout masks as a run that was never interrupted. metrics.jsonl is cut back to the
resume step, so a reader sees each step once.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

from .. import checkpoints as ck
from ..config import BatchLayout, threads_setting
from ..data import Split, batches, epoch_order, micro_batches_per_rank, shard
from ..schedule import schedule_fn

Progress = dict[str, int]  # {"step", "epoch", "micro"}: where a resumed run continues
Batch = dict[str, np.ndarray]
RandomState = dict[str, Any]


@dataclass(frozen=True)
class BuildConstants:
    """What the build decided, as the generated train.py states it."""

    model_name: str
    architecture: str  # "encoder-decoder" | "encoder" | "decoder" | "mlp"
    tensor_parallel: int  # decides the process sets, so fixed per build
    gpu_cluster: bool  # the spec's cluster has GPUs: use them (and the spec's precision) when present
    script: str  # the generated train.py; its bundle is the folder above

    @property
    def bundle(self) -> Path:
        return Path(self.script).resolve().parent.parent

    @property
    def model_json(self) -> Path:
        return self.bundle / "model.json"

    @property
    def reports_accuracy(self) -> bool:
        return self.architecture in ("mlp", "encoder")


def parse_args(model_name: str, argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=f"Horovod training of {model_name}.")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override one model.json field for this run (value: JSON)",
    )
    p.add_argument(
        "--output",
        default=os.environ.get("LLMC_OUTPUT", "outputs"),
        help="checkpoints, the final model and metrics go here (default $LLMC_OUTPUT or outputs/)",
    )
    p.add_argument("--metrics", help="metrics JSON lines (default OUTPUT/metrics.jsonl)")
    p.add_argument(
        "--data-root",
        default=os.environ.get("LLMC_DATA_ROOT"),
        help="the spec's relative data paths are relative to this folder (default: the working directory)",
    )
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps in all (smoke tests, trials)")
    p.add_argument("--log-every", type=int, default=10, help="optimizer steps between metrics lines (default 10)")
    return p.parse_args(argv)


def speaker(rank: int) -> Callable[[str], None]:
    """`say(text)`: one `train.py: ` line on stderr, from rank 0 only."""

    def say(text: str) -> None:
        if rank == 0:
            print(f"train.py: {text}", file=sys.stderr, flush=True)

    return say


def cores_per_process(local_size: int) -> int:
    """$LLMC_THREADS when set (parallel search trials share a machine through it), else
    this host's cores shared between its processes: oversubscribed intra-op threads make
    every rank slower than one thread each would."""
    threads = threads_setting()
    if threads is not None:
        return threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // local_size)


def checkpoint_folder(train: dict[str, Any], output: Path) -> Path:
    folder = str(train["checkpoint"].get("dir") or "checkpoints")
    if "://" in folder:
        raise SystemExit(f"train.py: error: checkpoint.dir {folder!r}: mount the storage and give a path")
    return Path(folder) if os.path.isabs(folder) else output / folder


def newest_checkpoint(folder: Path, suffix: str, rank: int, broadcast_object: Callable[..., Any]) -> Path | None:
    """Rank 0 cleans up after a killed run and picks the checkpoint, so every rank
    resumes from the same one."""
    newest = None
    if rank == 0:
        ck.remove_orphans(folder)
        newest = ck.latest_checkpoint(folder, suffix)
    chosen = broadcast_object(str(newest) if newest else None, root_rank=0, name="resume.path")
    return Path(chosen) if chosen else None


# --- the step plan ---------------------------------------------------------------------


@dataclass(frozen=True)
class StepPlan:
    steps_per_epoch: int
    planned: int  # the spec's run, which the schedule spans
    last_step: int  # this run stops here (--max-steps)
    lr_at: Callable[[int], float]


def plan_steps(
    train: dict[str, Any], examples: int, layout: BatchLayout, max_steps: int | None, say: Callable[[str], None]
) -> StepPlan:
    micro_per_epoch = micro_batches_per_rank(examples, layout.data, layout.micro_batch)
    steps_per_epoch = micro_per_epoch // layout.accumulation
    if steps_per_epoch == 0:
        raise SystemExit(
            f"train.py: error: the train split has {examples} examples, "
            f"fewer than one global batch of {layout.batch_size}"
        )
    planned = int(train["steps"]) if train.get("steps") else int(train["epochs"]) * steps_per_epoch
    last_step = min(planned, max_steps) if max_steps else planned
    warmup = int((train.get("schedule") or {}).get("warmup", 0))
    if warmup >= planned:
        say(
            f"warning: schedule warmup ({warmup} steps) is not shorter than the run ({planned} steps): "
            f"the learning rate never reaches {train['optimizer']['lr']}"
        )
    return StepPlan(steps_per_epoch, planned, last_step, schedule_fn(train, planned))


def layout_line(size: int, layout: BatchLayout, plan: StepPlan, progress: Progress, with_tensor: bool) -> str:
    tensor = f" x tensor {layout.tensor}" if with_tensor else ""
    return (
        f"{size} processes: data {layout.data}{tensor}; global batch {layout.batch_size} = "
        f"{layout.data} x micro-batch {layout.micro_batch} x accumulation {layout.accumulation}; "
        f"{plan.steps_per_epoch} steps per epoch; steps {progress['step']} -> {plan.last_step} of {plan.planned}"
    )


# --- metrics.jsonl -----------------------------------------------------------------------


def truncate_metrics(path: Path, resume_step: int) -> None:
    """Cut a killed run's metrics at the checkpoint a run resumes from: its lines after
    that step (and a finished run's final line) are about to be written again."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            record = json.loads(line)
        except ValueError:
            break  # a line cut short by the kill, and everything after it
        if record.get("final") or int(record.get("step", 0)) > resume_step:
            break
        kept.append(line if line.endswith("\n") else line + "\n")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text("".join(kept), encoding="utf-8")
    os.replace(tmp, path)


class MetricsLog:
    """Rank 0's metrics JSON lines (docs/bundle.md); other ranks write nothing."""

    def __init__(self, path: Path | None, resume_step: int | None) -> None:
        self._file: IO[str] | None = None
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            truncate_metrics(path, resume_step)
        # Open for the whole run, closed by close(): lines are flushed as they are written.
        self._file = open(path, "a" if resume_step is not None else "w", encoding="utf-8")  # noqa: SIM115

    def write(self, record: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


# --- random state --------------------------------------------------------------------------


def host_random_state() -> RandomState:
    """Python's and numpy's global random state, as plain data (lists and numbers)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "python": [version, list(internal), gauss],
        "numpy": [str(name), [int(k) for k in keys], int(pos), int(has_gauss), float(cached)],
    }


def restore_host_random_state(state: RandomState) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def own_random_state(
    saved: list[RandomState] | None, rank: int, size: int, say: Callable[[str], None]
) -> RandomState | None:
    """This rank's state from a checkpoint's list of every rank's, when the run has as
    many processes as the one that saved it (else its data shards differ anyway)."""
    if not saved:
        return None
    if len(saved) != size:
        say(
            f"the checkpoint holds the random state of {len(saved)} processes, this run has {size}: "
            f"dropout continues from fresh seeds"
        )
        return None
    return saved[rank]


# --- the loop -------------------------------------------------------------------------------


class StepHooks(Protocol):
    def micro_step(self, batch: Batch, lr: float | None) -> None:
        """Forward and backward on one micro-batch; with `lr`, the last micro-batch of an
        optimizer step: step the optimizer at that rate."""

    def window_loss(self, micro_batches: int) -> float:
        """The mean loss over every replica of the micro-batches since the last call."""

    def save_checkpoint(self, progress: Progress) -> None:
        """Called on every rank (random states are gathered); rank 0 writes."""


@dataclass(frozen=True)
class LoopSettings:
    layout: BatchLayout
    plan: StepPlan
    seed: int
    dp_rank: int
    log_every: int
    trim: bool  # trim padding columns (torch); TensorFlow keeps fixed shapes so its step traces once


def train_loop(
    hooks: StepHooks,
    split: Split,
    settings: LoopSettings,
    progress: Progress,
    metrics: MetricsLog,
    policy: ck.Policy,
    agree: Callable[[bool], bool] | None,
) -> int:
    """Optimizer steps from `progress` to the plan's last step; returns the last step."""
    layout, plan = settings.layout, settings.plan
    micro_per_epoch = plan.steps_per_epoch * layout.accumulation
    step, epoch, skip = progress["step"], progress["epoch"], progress["micro"]
    window_micro, window_steps, window_start = 0, 0, time.perf_counter()
    last_saved = step

    def save(at: Progress) -> None:
        hooks.save_checkpoint(at)
        policy.saved()

    while step < plan.last_step:
        order = shard(epoch_order(len(split), settings.seed, epoch), settings.dp_rank, layout.data)
        stream = itertools.islice(batches(split, order, layout.micro_batch, trim=settings.trim), micro_per_epoch)
        finished_epoch = True
        for micro, batch in enumerate(stream):
            if micro < skip:
                continue  # resumed mid-epoch: these micro-batches were trained on already
            last_micro = (micro + 1) % layout.accumulation == 0
            lr = plan.lr_at(step) if last_micro else None
            hooks.micro_step(batch, lr)
            window_micro += 1
            if lr is None:
                continue
            step += 1
            window_steps += 1
            logged = step == 1 or step % settings.log_every == 0 or step == plan.last_step
            if logged:
                loss = hooks.window_loss(window_micro)
                elapsed = time.perf_counter() - window_start
                metrics.write(
                    {
                        "step": step,
                        "epoch": round(step / plan.steps_per_epoch, 4),
                        "loss": loss,
                        "lr": lr,
                        "throughput": round(window_steps * layout.batch_size / max(elapsed, 1e-9), 2),
                    }
                )
                window_micro, window_steps, window_start = 0, 0, time.perf_counter()
            at_end = micro + 1 == micro_per_epoch
            # A time-based decision is shared by every rank (saving is collective), so it is
            # taken where the ranks meet anyway: at a metrics line, at most log_every steps late.
            due = policy.due(step, agree) if policy.by_steps or logged else False
            if due or step == plan.last_step:
                save({"step": step, "epoch": epoch + 1 if at_end else epoch, "micro": 0 if at_end else micro + 1})
                last_saved = step
            if step >= plan.last_step:
                finished_epoch = at_end
                break
        if finished_epoch:
            epoch += 1
            skip = 0
        else:
            break
    if last_saved != step:
        save({"step": step, "epoch": epoch, "micro": 0})
    return step


def validation_totals(
    split: Split, settings: LoopSettings, batch_totals: Callable[[Batch], tuple[float, float, float | None]]
) -> np.ndarray:
    """Loss sum, token or example count and correct count of this replica's share of
    the whole split (no example twice); the caller adds them over the replicas."""
    totals = np.zeros(3, dtype=np.float64)
    mine = shard(
        epoch_order(len(split), settings.seed, 0, shuffle=False), settings.dp_rank, settings.layout.data, pad=False
    )
    for batch in batches(split, mine, settings.layout.micro_batch, drop_last=False, trim=settings.trim):
        loss_sum, count, correct = batch_totals(batch)
        totals += [loss_sum, count, correct if correct is not None else 0.0]
    return totals


def final_record(
    totals: np.ndarray, step: int, plan: StepPlan, constants: BuildConstants, started: float
) -> dict[str, Any]:
    final: dict[str, Any] = {
        "final": True,
        "valid_loss": float(totals[0] / totals[1]),
        "steps": step,
        "epoch": round(step / plan.steps_per_epoch, 4),
    }
    if constants.reports_accuracy:
        final["valid_accuracy"] = float(totals[2] / totals[1])
    final["seconds"] = round(time.perf_counter() - started, 2)
    return final
