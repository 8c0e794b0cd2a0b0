"""The runtime's mechanics on a small real bundle: stages run in order as real
processes, skip when their inputs are unchanged, stop at a failure, fail early on
missing data, and leave a record. (Training itself is tested in tests/e2e.)

The tests of this part that run real processes (tools, frameworks, servers) are in
tests/integration/test_runner_runs.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.runner import SCRIPT, write_bundle

from llmc.runtime import progress
from llmc.runtime.runner import (
    Bundle,
    RunError,
    preflight,
    rank_prefixed,
)


def test_missing_data_fails_before_any_work_naming_the_file(tmp_path):
    bundle = write_bundle(tmp_path / "bundle", SCRIPT, data="data/nope.tsv")
    with pytest.raises(RunError, match=r"data/nope.tsv"):
        preflight(bundle, tmp_path)


def test_uris_are_not_checked_locally(tmp_path):
    bundle = write_bundle(tmp_path / "bundle", SCRIPT, data="s3://bucket/train.tsv")
    preflight(bundle, tmp_path)


def test_a_directory_without_a_lock_file_is_not_a_bundle(tmp_path):
    with pytest.raises(RunError, match="not an llmc bundle") as info:
        Bundle(str(tmp_path))
    assert info.value.status == 2


def test_rank_prefixes():
    assert rank_prefixed("[1,0]<stdout>:step 3") == "[rank 0] step 3"
    assert rank_prefixed("[1]<stderr>:oops") == "[rank 1] oops"
    assert rank_prefixed("plain") == "plain"


def test_progress_shows_steps_of_the_total_and_an_eta_from_this_runs_rate(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    watcher = progress.MetricsWatcher(Path("unused"), console=None, interactive=False)
    # A resumed run: steps before 40 were done by an earlier run and took no time in this one.
    watcher._read({"start": True, "from_step": 40, "total_steps": 100})
    watcher._read({"step": 50, "loss": 1.25, "throughput": 300.0})
    assert watcher.eta_seconds() is None  # one point is no rate yet
    clock[0] = 120.0
    watcher._read({"step": 60, "loss": 1.0, "throughput": 310.0})
    assert watcher.eta_seconds() == pytest.approx(80.0)  # 40 steps left at 2 s per step
    assert watcher.describe() == "step 60/100  loss 1.0000  310 samples/s  ETA 1:20"
    watcher._read({"final": True, "steps": 100})
    assert watcher.finished
