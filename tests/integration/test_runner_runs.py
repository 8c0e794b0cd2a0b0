"""The runtime's mechanics on a small real bundle: stages run in order as real
processes, skip when their inputs are unchanged, stop at a failure, fail early on
missing data, and leave a record. (Training itself is tested in tests/e2e.)

This file holds the tests of this part that run real processes (tools, frameworks,
servers); the fast checks of the same part are in tests/unit/test_runner.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from support.runner import SCRIPT, write_bundle

from llmc.runtime import records
from llmc.runtime.runner import (
    Bundle,
    Stage,
    is_start_up_noise,
    run_command,
    run_stages,
)


def _stage(bundle: Bundle, work: Path) -> Stage:
    import sys

    out = work / "evaluate"
    return Stage(
        "evaluate", [[sys.executable, str(bundle.root / "evaluate/evaluate.py"), str(out)]], "evaluate", str(out)
    )


def test_a_stage_runs_then_is_skipped_until_its_inputs_change(tmp_path):
    data_root = tmp_path / "spec"
    (data_root / "data").mkdir(parents=True)
    (data_root / "data/train.tsv").write_text("source\ttarget\na\tb\n")
    bundle = write_bundle(tmp_path / "bundle", SCRIPT)
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
    bundle = write_bundle(tmp_path / "bundle", "import sys\nprint('gate failed')\nsys.exit(3)\n")
    work = tmp_path / "work"
    results = run_stages(bundle, [_stage(bundle, work)], work, tmp_path, force=False, only=None, log=lambda _: None)
    assert [(r.status, r.exit_code) for r in results] == [("failed", 3)]
    # A failure is not a success to skip next time.
    results = run_stages(bundle, [_stage(bundle, work)], work, tmp_path, force=False, only=None, log=lambda _: None)
    assert results[0].status == "failed"


def test_records_are_written_and_listed(tmp_path):
    bundle = write_bundle(tmp_path / "bundle", SCRIPT)
    work = tmp_path / "work"
    results = run_stages(bundle, [_stage(bundle, work)], work, tmp_path, force=False, only=None, log=lambda _: None)
    record = records.new_record(tmp_path / "runs", "demo")
    records.finish_record(record, bundle.root, work, {"spec": "demo", "profile": "local"}, results)
    info = json.loads((record / "run.json").read_text())
    assert info["status"] == "ok" and info["stages"][0]["name"] == "evaluate"
    assert (record / "llmc.lock.json").is_file()
    listing = records.format_records(records.list_records(tmp_path / "runs"))
    assert "demo/" in listing and "evaluate ok" in listing
    # `llmc runs demo` lists demo's runs under every profile; `llmc runs other` none of them.
    local = records.new_record(tmp_path / "runs", "demo-local")
    records.finish_record(local, bundle.root, work, {"spec": "demo-local", "profile": "local"}, results)
    assert [name.split("/")[0] for name, _ in records.list_records(tmp_path / "runs", "demo")] == ["demo", "demo-local"]
    assert records.list_records(tmp_path / "runs", "other") == []


def test_a_bundle_named_by_a_relative_path_runs_from_its_own_folder(tmp_path, monkeypatch):
    # Stages run with the bundle as their working directory: `llmc run` from the
    # project root with the default build/<spec> must still find the scripts.
    write_bundle(tmp_path / "build" / "demo", SCRIPT)
    monkeypatch.chdir(tmp_path)
    bundle = Bundle("build/demo")
    assert bundle.root == tmp_path / "build" / "demo"
    work = tmp_path / "work"
    results = run_stages(bundle, [_stage(bundle, work)], work, tmp_path, force=False, only=None, log=lambda _: None)
    assert [r.status for r in results] == ["ok"]


def test_framework_start_up_lines_are_dropped_and_the_stage_output_kept(tmp_path, monkeypatch):
    # What TensorFlow 2.21 prints before absl is initialised, whatever TF_CPP_MIN_LOG_LEVEL says.
    banner = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1795909578.138839    6816 port.cc:153] oneDNN custom operations are on.",
        "[1,0]<stderr>:I0000 00:00:1795909846.869983    7425 cpu_feature_guard.cc:227] This TensorFlow binary",
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the "
        "appropriate compiler flags.",
    ]
    kept = ["[1,0]<stderr>:train.py: done", "W0000 00:00:1795909578.1 6816 x.cc:1] a real warning", "I said hello"]
    script = tmp_path / "noisy.py"
    script.write_text("for line in %r:\n    print(line)\n" % (banner + kept))
    import sys

    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    lines: list[str] = []
    assert run_command([sys.executable, str(script)], cwd=tmp_path, log=lines.append) == 0
    assert lines == ["[rank 0] train.py: done", kept[1], kept[2]]
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")  # the user asked for everything
    lines.clear()
    run_command([sys.executable, str(script)], cwd=tmp_path, log=lines.append)
    assert len(lines) == len(banner + kept)
    assert not is_start_up_noise("train.py: I0000 is not at the start")
