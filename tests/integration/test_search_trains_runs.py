"""A real search of the translator's local profile, and `llmc search apply` on its answer.

Every trial is a real training run of the spec (the bundle's own train/train.py) with
the sampled values applied. The trials are made short through a profile, as a user
would: a spec that extends specs/translator.llm and trains one epoch in its `local`
profile. One search runs on the local backend through `llmc run --stage search`,
then `llmc search apply` writes its best point into that profile; another runs the
same bundle's search.py on a real local Spark (SparkTrials, 2 trials at a time).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

pytest.importorskip("hyperopt")
pytest.importorskip("torch")

STEPS_PER_EPOCH = {64: 62, 128: 31}  # 4,000 training examples of the dates data
SPACE = {"train.batch_size": (64, 128), "train.optimizer.lr": (5e-4, 5e-3)}  # the local profile's narrowed space
# One epoch (31 or 62 steps) and a warm-up shorter than that; `llmc fmt` leaves it as it is.
CHILD = """\
# The translator's local profile with one-epoch trials: a search test, not a model.
extends "{base}"

profile local {{
  train.epochs          = 1
  train.schedule.warmup = 20
}}
"""


def llmc(*args: str, cwd: Path, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "bin" / "llmc"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """`llmc run child.llm --profile local --stage search` in a fresh folder: (folder, process)."""
    folder = tmp_path_factory.mktemp("search")
    (folder / "child.llm").write_text(CHILD.format(base=ROOT / "specs" / "translator.llm"), encoding="utf-8")
    proc = llmc("run", "child.llm", "--profile", "local", "--stage", "search", cwd=folder)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return folder, proc


def results_of(folder: Path) -> dict:
    return json.loads((folder / "runs" / "child-local" / "work" / "search" / "results.json").read_text())


def test_every_trial_is_a_real_training_run_of_the_spec_with_the_sampled_values(searched):
    folder, _ = searched
    results = results_of(folder)
    trials = results["trials"]
    assert len(trials) == 4 and all(t["status"] == "ok" for t in trials), trials
    for t in trials:
        params = t["params"]
        assert params["train.batch_size"] in SPACE["train.batch_size"]
        low, high = SPACE["train.optimizer.lr"]
        assert low <= params["train.optimizer.lr"] <= high
        assert 0.0 <= params["model.transformer.dropout"] <= 0.3  # the base spec's own range
        trial = Path(t["trial_dir"])
        log = (trial / "train.log").read_text()
        steps = STEPS_PER_EPOCH[params["train.batch_size"]]  # one epoch: the profile made the trials short
        assert f"global batch {params['train.batch_size']} " in log, log[-2000:]
        assert f"train.py: done: {steps} steps" in log, log[-2000:]
        final = json.loads((trial / "metrics.jsonl").read_text().splitlines()[-1])
        assert final["final"] is True
        assert t["objective"] == pytest.approx(final["valid_loss"]) and t["loss"] == t["objective"]
        assert (trial / "model" / "model.pt").is_file()
        assert t["seconds"] > 0
    best = min(trials, key=lambda t: t["loss"])
    assert results["best"]["tid"] == best["tid"] and results["best"]["params"] == best["params"]
    assert results["profile"] == "local" and results["backend"] == "local"


def test_progress_shows_trials_done_the_best_so_far_and_an_eta(searched):
    _, proc = searched
    out = proc.stdout + proc.stderr
    for done in range(1, 5):
        assert re.search(rf"search: {done}/4 trials done; best valid_loss [\d.]+ \(trial \d\)", out), out[-3000:]
    assert re.search(r"search: 3/4 trials done; .*; ETA (\d+ min )?\d+ s$", out, re.M)
    assert re.search(r"search: trial \d: valid_loss = [\d.]+ with \{.*\} in [\d.]+ s$", out, re.M)  # one line each
    assert not re.search(r"4/4 trials done.*ETA", out)  # nothing left to wait for


def test_the_run_record_has_the_table_and_the_plot(searched):
    folder, _ = searched
    [record] = [p for p in (folder / "runs" / "child-local").iterdir() if p.name != "work" and p.is_dir()]
    table = (record / "search-report.md").read_text()
    results = json.loads((record / "search-results.json").read_text())
    for t in results["trials"]:
        assert re.search(rf"^\| {t['tid']} \| .* \| {t['objective']:.6g} \| ok(, best)? \| [\d.]+ \|$", table, re.M)
    assert table.count("ok, best") == 1
    png = (record / "search-objective.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_search_apply_writes_the_best_values_into_the_searched_profile(searched):
    from llmc.compiler.driver import check_spec

    folder, _ = searched
    spec = folder / "child.llm"
    before_text = spec.read_text()
    before = check_spec(str(spec), "local").ir.model_dump()
    proc = llmc("search", "apply", "child.llm", "--profile", "local", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    after_text = spec.read_text()
    assert proc.stdout.startswith("--- a/child.llm\n+++ b/child.llm\n")  # the diff
    # Only lines were added, inside the profile, one per searched value (fmt may realign the `=`).
    old_lines = [" ".join(line.split()) for line in before_text.splitlines()]
    new_lines = [" ".join(line.split()) for line in after_text.splitlines()]
    added = [line for line in new_lines if line not in old_lines]
    assert [line for line in old_lines if line not in new_lines] == []
    assert sorted(line.split(" = ")[0] for line in added) == [
        "model.transformer.dropout",
        "train.batch_size",
        "train.optimizer.lr",
    ], added
    assert new_lines[-1] == "}"
    best = results_of(folder)["best"]["params"]
    after_check = check_spec(str(spec), "local")
    assert after_check.ok, [d.message for d in after_check.diagnostics]
    after = after_check.ir.model_dump()
    # The IR differs from the original only in the searched values, which are the best point's.
    assert after["train"]["batch_size"] == best["train.batch_size"]
    assert after["train"]["optimizer"]["lr"] == pytest.approx(best["train.optimizer.lr"], rel=5e-3)
    assert after["model"]["transformer"]["dropout"] == pytest.approx(best["model.transformer.dropout"], rel=5e-3)
    for key in ("train", "model"):
        del before[key], after[key]
    assert before == after
    assert llmc("fmt", "--check", "child.llm", cwd=folder).returncode == 0
    # The spec already says the best point: a second apply changes nothing.
    again = llmc("search", "apply", "child.llm", "--profile", "local", cwd=folder)
    assert again.returncode == 0 and "already has the best values" in again.stderr
    assert spec.read_text() == after_text


def test_spark_trials_run_two_at_a_time_on_a_local_spark(searched, tmp_path):
    pytest.importorskip("pyspark")
    folder, _ = searched
    bundle = folder / "build" / "child-local"
    out = tmp_path / "spark"
    proc = subprocess.run(
        [
            sys.executable,
            str(bundle / "search" / "search.py"),
            "--local",
            "--backend",
            "spark",
            "--parallel",
            "2",
            "--output",
            str(out),
            "--data-root",
            str(folder),
        ],
        cwd=bundle,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "starting Spark (local[2] on 127.0.0.1)" in proc.stderr
    results = json.loads((out / "results.json").read_text())
    trials = results["trials"]
    assert results["backend"] == "spark" and results["parallel"] == 2
    assert len(trials) == 4 and all(t["status"] == "ok" for t in trials), trials
    spans = sorted((t["started_at"], t["started_at"] + t["seconds"]) for t in trials)
    overlapping = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    assert overlapping == 2, spans  # two at a time, never more
    for t in trials:
        assert (Path(t["trial_dir"]) / "model" / "model.pt").is_file()
