"""llmc.runtime.training, directly: what makes a resumed run end as an uninterrupted one.

The loop's bookkeeping (which micro-batch after a resume, when a checkpoint is due),
random state saved and restored (Python, numpy, torch), metrics cut back at the
resume step, and orphaned temporary checkpoints removed. The e2e test
(tests/e2e/test_train_local.py) kills real Horovod runs and compares the models.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest

from llmc.runtime import checkpoints as ck
from llmc.runtime.config import batch_layout
from llmc.runtime.data import Split
from llmc.runtime.training.common import (
    Batch,
    BuildConstants,
    LoopSettings,
    MetricsLog,
    Progress,
    StepPlan,
    host_random_state,
    own_random_state,
    plan_steps,
    restore_host_random_state,
    train_loop,
    truncate_metrics,
)


def draws() -> tuple[float, float, float]:
    return (random.random(), float(np.random.rand()), float(np.random.normal()))  # normal() caches a gaussian


def test_host_random_state_round_trips_as_plain_data():
    random.seed(3)
    np.random.seed(3)
    np.random.normal()  # leaves a cached gaussian, which is part of the state
    state = json.loads(json.dumps(host_random_state()))  # survives JSON (the TF checkpoint stores it so)
    expected = draws()
    random.seed(99)
    np.random.seed(99)
    assert draws() != expected
    restore_host_random_state(state)
    assert draws() == expected


def test_torch_random_state_restores_dropout_masks():
    torch_loop = pytest.importorskip("llmc.runtime.training.torch_loop")
    import torch

    torch.manual_seed(1)
    dropout = torch.nn.Dropout(0.5)
    dropout(torch.ones(64))
    state = torch_loop.random_state()
    expected = (dropout(torch.ones(64)), random.random(), np.random.rand())
    torch.manual_seed(1)  # what every start does: without the saved state, masks repeat from step 1
    assert not torch.equal(dropout(torch.ones(64)), expected[0])
    torch_loop.restore_random_state(state)
    again = (dropout(torch.ones(64)), random.random(), np.random.rand())
    assert torch.equal(again[0], expected[0]) and again[1:] == expected[1:]


def test_own_random_state_needs_the_same_world_size():
    said: list[str] = []
    states = [{"rank": 0}, {"rank": 1}]
    assert own_random_state(states, 1, 2, said.append) == {"rank": 1}
    assert own_random_state(None, 0, 2, said.append) is None and not said
    assert own_random_state(states, 0, 4, said.append) is None
    assert said and "2 processes" in said[0] and "this run has 4" in said[0]


def test_orphaned_temporary_checkpoints_are_removed(tmp_path):
    ck.atomic_write(ck.checkpoint_path(tmp_path, 10, "pt"), lambda p: p.write_bytes(b"whole"))
    orphan = tmp_path / ".ckpt-00000020.pt.tmp-999999999"  # a process killed mid-write
    mine = tmp_path / f".ckpt-00000030.pt.tmp-{os.getpid()}"  # being written now
    other = tmp_path / "notes.tmp-1"
    for p in (orphan, mine, other):
        p.write_bytes(b"half")
    assert ck.remove_orphans(tmp_path) == [orphan]
    assert mine.exists() and other.exists() and (tmp_path / "ckpt-00000010.pt").exists()
    assert ck.remove_orphans(tmp_path / "absent") == []
    # Retention cleans up too.
    orphan.write_bytes(b"half")
    ck.prune_checkpoints(tmp_path, "pt", keep=1)
    assert not orphan.exists() and (tmp_path / "ckpt-00000010.pt").exists()


def test_metrics_are_cut_back_to_the_resume_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    records = [
        {"start": True, "from_step": 0, "total_steps": 30},
        {"step": 1},
        {"step": 10},
        {"step": 20},
        {"start": True, "from_step": 10, "total_steps": 30},
        {"step": 20},
        {"step": 30},
        {"final": True, "steps": 30},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"step": 4')  # a line cut by the kill
    truncate_metrics(path, 20)
    assert [json.loads(line) for line in path.read_text().splitlines()] == records[:6]
    truncate_metrics(path, 10)
    assert [json.loads(line) for line in path.read_text().splitlines()] == records[:3]
    # A resumed log appends its start marker after what was kept; a fresh one starts over.
    log = MetricsLog(path, resume_step=1)
    log.write({"start": True, "from_step": 1, "total_steps": 30})
    log.close()
    assert [json.loads(line) for line in path.read_text().splitlines()] == [
        records[0],
        records[1],
        {"start": True, "from_step": 1, "total_steps": 30},
    ]
    MetricsLog(path, resume_step=None).close()
    assert path.read_text() == ""
    MetricsLog(None, resume_step=3).write({"step": 1})  # other ranks write nothing
    truncate_metrics(tmp_path / "absent.jsonl", 3)
    assert not (tmp_path / "absent.jsonl").exists()


class RecordingHooks:
    """Records which examples each micro-batch held and where checkpoints were taken."""

    def __init__(self) -> None:
        self.seen: list[tuple[list[int], float | None]] = []
        self.saved: list[Progress] = []

    def micro_step(self, batch: Batch, lr: float | None) -> None:
        self.seen.append((batch["x"][:, 0].astype(int).tolist(), lr))

    def window_loss(self, micro_batches: int) -> float:
        return float(micro_batches)

    def save_checkpoint(self, progress: Progress) -> None:
        self.saved.append(dict(progress))


def loop_settings(max_steps: int | None) -> tuple[Split, LoopSettings]:
    split = Split({"x": np.arange(40, dtype=np.float32).reshape(40, 1)}, "features", None, "memory")
    train = {"batch_size": 8, "micro_batch": 2, "epochs": 3, "optimizer": {"lr": 1.0}, "schedule": None}
    layout = batch_layout(train, 2, 1)  # 2 replicas x micro-batch 2 x accumulation 2
    plan = plan_steps(train, len(split), layout, max_steps, print)
    return split, LoopSettings(layout, plan, seed=5, dp_rank=1, log_every=2, trim=False)


def test_a_resumed_loop_sees_what_an_uninterrupted_one_does(tmp_path):
    split, settings = loop_settings(None)
    assert settings.layout.accumulation == 2 and settings.plan.steps_per_epoch == 5 and settings.plan.last_step == 15
    whole = RecordingHooks()
    last = train_loop(
        whole,
        split,
        settings,
        {"step": 0, "epoch": 0, "micro": 0},
        MetricsLog(tmp_path / "whole.jsonl", None),
        ck.Policy(3),
        None,
    )
    assert last == 15 and [p["step"] for p in whole.saved] == [3, 6, 9, 12, 15]
    assert whole.saved[1] == {"step": 6, "epoch": 1, "micro": 2}  # mid-epoch: the micro-batch to continue at
    assert whole.saved[-1] == {"step": 15, "epoch": 3, "micro": 0}
    lines = [json.loads(line) for line in (tmp_path / "whole.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 4, 6, 8, 10, 12, 14, 15]

    # Stopped at step 7 (its checkpoint says step 6), then resumed from that checkpoint.
    _, first_settings = loop_settings(7)
    first = RecordingHooks()
    train_loop(
        first, split, first_settings, {"step": 0, "epoch": 0, "micro": 0}, MetricsLog(None, None), ck.Policy(3), None
    )
    resumed = RecordingHooks()
    train_loop(resumed, split, settings, first.saved[1], MetricsLog(None, None), ck.Policy(3), None)
    micro_per_step = settings.layout.accumulation
    assert first.seen[: 6 * micro_per_step] + resumed.seen == whole.seen


def test_step_plan_and_constants():
    _, settings = loop_settings(4)
    assert isinstance(settings.plan, StepPlan) and settings.plan.last_step == 4 and settings.plan.planned == 15
    with pytest.raises(SystemExit, match="fewer than one global batch"):
        plan_steps(
            {"batch_size": 64, "epochs": 1, "optimizer": {"lr": 1.0}},
            10,
            batch_layout({"batch_size": 64}, 2, 1),
            None,
            print,
        )
    constants = BuildConstants("m", "encoder", 1, False, "/b/train/train.py")
    assert constants.model_json == Path("/b/model.json") and constants.reports_accuracy
    assert not BuildConstants("m", "decoder", 1, False, "/b/train/train.py").reports_accuracy


RUNTIME = Path(__file__).resolve().parents[2] / "runtime"


def imported_packages(module: str) -> set[str]:
    """Top-level packages that `llmc.runtime.<module>` imports, following its imports of
    other runtime modules (any import anywhere in a file counts, lazy ones too)."""
    import ast

    seen: set[str] = set()
    outside: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = RUNTIME.joinpath(*name.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        package = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level:
                base = package[: len(package) - node.level + 1]
                prefix = ".".join([*base, node.module] if node.module else base)
                targets = [prefix] if node.module else [f"{prefix}.{a.name}".lstrip(".") for a in node.names]
                todo.extend(
                    t
                    for t in targets
                    if RUNTIME.joinpath(*t.split(".")).with_suffix(".py").exists()
                    or RUNTIME.joinpath(*t.split(".")).is_dir()
                )
                continue
            elif isinstance(node, ast.ImportFrom):
                targets = [node.module or ""]
            else:
                continue
            for target in targets:
                if target.startswith("llmc.runtime."):
                    todo.append(target.removeprefix("llmc.runtime."))
                else:
                    outside.add(target.split(".")[0])
    return outside


def test_tensorflow_training_never_imports_torch():
    assert "torch" in imported_packages("training.torch_loop")  # the walk sees what it should
    tf_side = imported_packages("training.tf_loop")
    assert "tensorflow" in tf_side and "torch" not in tf_side
    shared = imported_packages("training.common")
    assert not shared & {"torch", "tensorflow", "keras", "horovod"}


def test_a_time_based_checkpoint_is_decided_at_metrics_lines_by_rank_0(tmp_path):
    """Saving is collective, so every rank must take the same decision: rank 0's, asked
    only at the steps where a metrics line makes the ranks meet anyway."""
    split, settings = loop_settings(None)  # metrics lines at steps 1, 2, 4, 6, ...
    clock = [0.0]
    asked: list[int] = []
    hooks = RecordingHooks()
    original = hooks.micro_step

    def tick(batch: Batch, lr: float | None) -> None:
        original(batch, lr)
        clock[0] += 1.0 if lr is not None else 0.0  # one second per optimizer step

    hooks.micro_step = tick  # type: ignore[method-assign]

    def agree(flag: bool) -> bool:
        asked.append(len(asked))
        return flag

    policy = ck.Policy(2.5, clock=lambda: clock[0])
    train_loop(hooks, split, settings, {"step": 0, "epoch": 0, "micro": 0}, MetricsLog(None, None), policy, agree)
    assert len(asked) == 9  # steps 1, 2, 4, ..., 14 and 15 (the last), not all 15
    # Due after 2.5 s, taken at the next metrics line; the last step always saves.
    assert [p["step"] for p in hooks.saved] == [4, 8, 12, 15]
