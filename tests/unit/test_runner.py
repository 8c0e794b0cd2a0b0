"""The runtime's mechanics on a small real bundle: stages run in order as real
processes, skip when their inputs are unchanged, stop at a failure, fail early on
missing data, and leave a record. (Training itself is tested in tests/e2e.)"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from llmc.runtime import records
from llmc.runtime.runner import Bundle, RunError, Stage, preflight, rank_prefixed, run_stages


def _bundle(root: Path, evaluate_code: str, data: str = "data/train.tsv") -> Bundle:
    files = {
        "model.json": json.dumps({"model": {"data": {"train": data, "valid": data, "test": data}}}),
        "evaluate/evaluate.py": evaluate_code,
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    lock = {"artifacts": {rel: hashlib.sha256(text.encode()).hexdigest() for rel, text in files.items()}}
    (root / "llmc.lock.json").write_text(json.dumps(lock))
    return Bundle(str(root))


def _stage(bundle: Bundle, work: Path) -> Stage:
    import sys

    out = work / "evaluate"
    return Stage("evaluate", [[sys.executable, str(bundle.root / "evaluate/evaluate.py"), str(out)]], "evaluate", str(out))


SCRIPT = "import sys, pathlib\np = pathlib.Path(sys.argv[1]); p.mkdir(parents=True, exist_ok=True)\n" \
         "(p / 'count').write_text(str(len(list(p.iterdir()))))\nprint('evaluated')\n"


def test_a_stage_runs_then_is_skipped_until_its_inputs_change(tmp_path):
    data_root = tmp_path / "spec"
    (data_root / "data").mkdir(parents=True)
    (data_root / "data/train.tsv").write_text("source\ttarget\na\tb\n")
    bundle = _bundle(tmp_path / "bundle", SCRIPT)
    work = tmp_path / "work"
    lines: list[str] = []
    first = run_stages(bundle, [_stage(bundle, work)], work, data_root, force=False, only=None, log=lines.append)
    assert [r.status for r in first] == ["ok"]
    assert "evaluated" in lines
    again = run_stages(bundle, [_stage(bundle, work)], work, data_root, force=False, only=None, log=lines.append)
    assert [r.status for r in again] == ["skipped"]
    (data_root / "data/train.tsv").write_text("source\ttarget\na\tc\n")  # the data changed
    third = run_stages(bundle, [_stage(bundle, work)], work, data_root, force=False, only=None, log=lines.append)
    assert [r.status for r in third] == ["ok"]
    forced = run_stages(bundle, [_stage(bundle, work)], work, data_root, force=True, only=None, log=lines.append)
    assert [r.status for r in forced] == ["ok"]


def test_a_failing_stage_stops_the_run_with_its_exit_status(tmp_path):
    bundle = _bundle(tmp_path / "bundle", "import sys\nprint('gate failed')\nsys.exit(3)\n")
    work = tmp_path / "work"
    results = run_stages(bundle, [_stage(bundle, work)], work, tmp_path, force=False, only=None, log=lambda _: None)
    assert [(r.status, r.exit_code) for r in results] == [("failed", 3)]
    # A failure is not a success to skip next time.
    results = run_stages(bundle, [_stage(bundle, work)], work, tmp_path, force=False, only=None, log=lambda _: None)
    assert results[0].status == "failed"


def test_missing_data_fails_before_any_work_naming_the_file(tmp_path):
    bundle = _bundle(tmp_path / "bundle", SCRIPT, data="data/nope.tsv")
    with pytest.raises(RunError, match="data/nope.tsv"):
        preflight(bundle, tmp_path)


def test_uris_are_not_checked_locally(tmp_path):
    bundle = _bundle(tmp_path / "bundle", SCRIPT, data="s3://bucket/train.tsv")
    preflight(bundle, tmp_path)


def test_a_directory_without_a_lock_file_is_not_a_bundle(tmp_path):
    with pytest.raises(RunError, match="not an llmc bundle") as info:
        Bundle(str(tmp_path))
    assert info.value.status == 2


def test_rank_prefixes():
    assert rank_prefixed("[1,0]<stdout>:step 3") == "[rank 0] step 3"
    assert rank_prefixed("[1]<stderr>:oops") == "[rank 1] oops"
    assert rank_prefixed("plain") == "plain"


def test_records_are_written_and_listed(tmp_path):
    bundle = _bundle(tmp_path / "bundle", SCRIPT)
    work = tmp_path / "work"
    results = run_stages(bundle, [_stage(bundle, work)], work, tmp_path, force=False, only=None, log=lambda _: None)
    record = records.new_record(tmp_path / "runs", "demo")
    records.finish_record(record, bundle.root, work, {"spec": "demo", "profile": "local"}, results)
    info = json.loads((record / "run.json").read_text())
    assert info["status"] == "ok" and info["stages"][0]["name"] == "evaluate"
    assert (record / "llmc.lock.json").is_file()
    listing = records.format_records(records.list_records(tmp_path / "runs"))
    assert "demo/" in listing and "evaluate ok" in listing
