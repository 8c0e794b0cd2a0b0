"""Progress of a running stage: steps, loss, throughput and ETA from its metrics file.

The training script appends JSON lines to its metrics file (docs/bundle.md); a
watcher thread follows that file and shows the newest step. On a terminal this is
a rich progress bar under the streamed output; elsewhere, a plain line every few
seconds. The ETA is the steps left at the rate measured since this run's first step
(a resumed run starts late: its earlier steps took no time in this run).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


class MetricsWatcher:
    def __init__(self, path: Path, console, interactive: bool):
        self.path = path
        self.console = console
        self.interactive = interactive
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._progress: Progress | None = None  # rich is imported only on a terminal
        self._task: TaskID | None = None
        self.last: dict = {}
        self.total: int | None = None
        self.finished = False
        self._first: tuple[int, float] | None = None  # (step, monotonic time) this run first saw

    def __enter__(self):
        if self.interactive:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                TextColumn("{task.description}"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("starting", total=None)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=2)
        if self._progress is not None:
            self._progress.stop()
        return False

    def log(self, line: str) -> None:
        # soft_wrap: a stage's line stays one line in a log or a pipe (rich would cut it at 80 columns).
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def _follow(self) -> None:
        offset = 0
        last_plain = 0.0
        shown_step = None  # a plain line is printed only when training has moved on
        while not self._stop.is_set():
            if self.path.is_file():
                with open(self.path, "rb") as f:
                    f.seek(offset)
                    chunk = f.read()
                complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits
                offset += len(complete)
                for line in complete.decode("utf-8", errors="replace").splitlines():
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    self._read(record)
                if self.last and not self.finished and self.last.get("step") != shown_step:
                    if self.interactive or time.monotonic() - last_plain > 10:
                        self._show()
                        shown_step = self.last.get("step")
                        last_plain = time.monotonic()
            self._stop.wait(0.5)

    def _read(self, record: dict) -> None:
        if record.get("start"):
            self.total = int(record["total_steps"])
            self.finished, self._first = False, None
        elif record.get("final"):
            self.finished = True
        elif "step" in record:
            self.last = record
            if self._first is None:
                self._first = (int(record["step"]), time.monotonic())

    def eta_seconds(self) -> float | None:
        if not self.total or self._first is None or "step" not in self.last:
            return None
        first_step, first_time = self._first
        done = int(self.last["step"]) - first_step
        if done <= 0:
            return None
        return (self.total - int(self.last["step"])) * (time.monotonic() - first_time) / done

    def describe(self) -> str:
        r = self.last
        parts = [f"step {r.get('step')}" + (f"/{self.total}" if self.total else "")]
        if "loss" in r:
            parts.append(f"loss {float(r['loss']):.4f}")
        if "throughput" in r:
            parts.append(f"{float(r['throughput']):.0f} samples/s")
        eta = self.eta_seconds()
        if eta is not None and self._progress is None:  # rich's bar shows its own ETA
            parts.append(f"ETA {int(eta) // 60}:{int(eta) % 60:02d}")
        return "  ".join(parts)

    def _show(self) -> None:
        if self._progress is not None and self._task is not None:  # __enter__ sets both
            self._progress.update(
                self._task, description=self.describe(), total=self.total, completed=int(self.last.get("step", 0))
            )
        else:
            self.log(f"    progress: {self.describe()}")
