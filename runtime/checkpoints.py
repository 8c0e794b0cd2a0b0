"""Checkpoint files: names, the newest one, retention, and when the next one is due.

Checkpoints are `ckpt-<step, 8 digits>.<suffix>` in one folder, written by rank 0
through a temporary file and an atomic rename, so a crash mid-write never leaves a
half checkpoint that a resume would pick. `keep` newest are kept. A temporary file
that a kill mid-write left behind (`.ckpt-*.tmp-<pid>`) is removed by the next
run's cleanup (`remove_orphans`, also called by `prune_checkpoints`).

`train.checkpoint.every` is either a duration (a float number of wall-clock seconds,
`30m` in the spec) or an int number of optimizer steps. Wall-clock time differs from
rank to rank, so a time-based decision is made by rank 0 and shared (see
`Policy.due`'s `agree` argument) whenever saving needs every rank (tensor-parallel
shards are gathered first).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path

_NAME = re.compile(r"^ckpt-(\d{8,})\.(.+)$")
_TEMPORARY = re.compile(r"^\.ckpt-\d{8,}\..+\.tmp-(\d+)$")


def checkpoint_path(folder: str | os.PathLike, step: int, suffix: str) -> Path:
    return Path(folder) / f"ckpt-{step:08d}.{suffix}"


def list_checkpoints(folder: str | os.PathLike, suffix: str) -> list[tuple[int, Path]]:
    """(step, path) of the complete checkpoints in `folder`, oldest first."""
    root = Path(folder)
    if not root.is_dir():
        return []
    found: list[tuple[int, Path]] = []
    for p in root.iterdir():
        m = _NAME.match(p.name)
        if m and m.group(2) == suffix:
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(folder: str | os.PathLike, suffix: str) -> Path | None:
    found = list_checkpoints(folder, suffix)
    return found[-1][1] if found else None


def prune_checkpoints(folder: str | os.PathLike, suffix: str, keep: int) -> list[Path]:
    """Delete all but the `keep` newest; returns what was deleted."""
    found = list_checkpoints(folder, suffix)
    doomed = [p for _, p in found[: max(0, len(found) - keep)]]
    for p in doomed:
        p.unlink(missing_ok=True)
    remove_orphans(folder)
    return doomed


def remove_orphans(folder: str | os.PathLike) -> list[Path]:
    """Delete temporary checkpoint files other processes left (killed mid-write);
    this process's own, possibly being written, stay. Returns what was deleted."""
    root = Path(folder)
    if not root.is_dir():
        return []
    mine = str(os.getpid())
    doomed = []
    for p in root.iterdir():
        m = _TEMPORARY.match(p.name)
        if m and m.group(1) != mine:
            p.unlink(missing_ok=True)
            doomed.append(p)
    return sorted(doomed)


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """`write(tmp_path)` then rename into place (same folder, so the rename is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class Policy:
    """When checkpoints are due: every N optimizer steps (int) or every S seconds (float)."""

    # An int is a number of optimizer steps, a float seconds: the union says so.
    def __init__(self, every: int | float, clock: Callable[[], float] = time.monotonic) -> None:
        self.by_steps = isinstance(every, int) and not isinstance(every, bool)
        self.every = every
        self.clock = clock
        self.last = clock()

    def due(self, step: int, agree: Callable[[bool], bool] | None = None) -> bool:
        """Whether to save after optimizer step `step` (counted from 1). With a duration,
        `agree(flag) -> flag` makes every rank take rank 0's decision."""
        if self.by_steps:
            return step % self.every == 0
        flag = self.clock() - self.last >= self.every
        if agree is not None:
            flag = bool(agree(flag))
        return flag

    def saved(self) -> None:
        self.last = self.clock()
