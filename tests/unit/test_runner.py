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
    StageOutput,
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


# What horovodrun --gloo prints when both ranks stop on the same bad file (abridged).
_FAILED_JOB = [
    "[1]<stderr>:train.py: error: /data/train.tsv:3: 1 fields, the header has 2",
    "[0]<stderr>:train.py: error: /data/train.tsv:3: 1 fields, the header has 2",
    "Process 0 exit with status code 2.",
    "Terminating remaining workers after failure of Process 0.",
    "Process 1 exit with status code 2.",
    "[1]<stderr>:Terminated",
    "Traceback (most recent call last):",
    '  File "/venv/bin/horovodrun", line 6, in <module>',
    "RuntimeError: Horovod detected that one or more processes exited with non-zero status, thus causing the "
    "job to be terminated. The first process to do so was:",
    "Process name: 0",
    "Exit code: 2",
]


def test_a_rank_error_every_rank_prints_is_shown_once_and_horovodruns_report_goes_to_the_log(tmp_path):
    shown: list[str] = []
    log = tmp_path / "train.log"
    with open(log, "w") as f:
        out = StageOutput(shown.append, f, log)
        for line in ["[0]<stdout>:train.py: 2 processes", *_FAILED_JOB]:
            out.line(line)
        assert out.finish(1) == 2  # the rank's status, not horovodrun's 1
    assert shown == ["[rank 0] train.py: 2 processes", "train.py: error: /data/train.tsv:3: 1 fields, the header has 2"]
    assert log.read_text().splitlines() == ["[0]<stdout>:train.py: 2 processes", *_FAILED_JOB]


def test_a_rank_that_crashes_keeps_its_traceback_and_is_named(tmp_path):
    shown: list[str] = []
    crash = [
        "[0]<stderr>:Traceback (most recent call last):",
        "[0]<stderr>:ZeroDivisionError: division by zero",
        "Process 0 exit with status code 1.",
        *_FAILED_JOB[6:],
    ]
    with open(tmp_path / "train.log", "w") as f:
        out = StageOutput(shown.append, f, tmp_path / "train.log")
        for line in crash:
            out.line(line)
        assert out.finish(1) == 1
    assert shown == [
        "[rank 0] Traceback (most recent call last):",
        "[rank 0] ZeroDivisionError: division by zero",
        f"horovodrun: process 0 exited with status 1; its report is in {tmp_path / 'train.log'}",
    ]


def test_without_a_log_file_nothing_is_hidden():
    shown: list[str] = []
    out = StageOutput(shown.append, None, None)
    for line in _FAILED_JOB:
        out.line(line)
    assert out.finish(1) == 1
    assert shown[0] == "train.py: error: /data/train.tsv:3: 1 fields, the header has 2"
    assert shown[1:] == [rank_prefixed(line) for line in _FAILED_JOB[2:]]


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
