"""The hyperopt target and the search driver (llmc.runtime.search).

search/search.py is thin (its spec's constants and a main calling the runtime); the
runtime builds the spec's space as real Hyperopt expressions whose samples stay
inside the spec's bounds with the right types; each driver function is tested
directly; and the generated script runs a real 4-trial search against a tiny
training script that honours the train.py contract (docs/bundle.md).

This file holds the tests of this part that run real processes (tools, frameworks,
servers); the fast checks of the same part are in tests/unit/test_target_search.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

hyperopt = pytest.importorskip("hyperopt")
import numpy as np  # noqa: E402  (hyperopt depends on it)
from support.search import built as built  # noqa: E402  (a fixture: pytest finds it imported here)
from support.search import config_of, fake_bundle  # noqa: E402

from llmc.runtime import search as driver  # noqa: E402

# Honours the train.py contract: --set PATH=JSON, --output DIR, --metrics FILE with a
# final line. Fails (exit 3) in trials/1 so that a failed trial is exercised.
FAKE_TRAIN = r"""
import argparse, json, math, pathlib, sys
p = argparse.ArgumentParser()
p.add_argument("--set", action="append", default=[])
p.add_argument("--output", required=True)
p.add_argument("--metrics", required=True)
p.add_argument("--data-root")
a = p.parse_args()
values = {k: json.loads(v) for k, v in (s.split("=", 1) for s in a.set)}
out = pathlib.Path(a.output)
(out / "model").mkdir(parents=True, exist_ok=True)
(out / "args.json").write_text(json.dumps({"argv": sys.argv[1:], "values": values}))
if out.name == "1":
    sys.exit(3)
lr = values["train.optimizer.lr"]
loss = (math.log10(lr) + 4.0) ** 2 + sum(v for k, v in values.items() if k.endswith("dropout"))
with open(a.metrics, "w") as f:
    f.write(json.dumps({"step": 1, "epoch": 0, "loss": 9.0, "lr": lr, "throughput": 1.0}) + "\n")
    f.write(json.dumps({"final": True, "valid_loss": loss, "steps": 1}) + "\n")
"""

# Honours the evaluate.py contract search.py defines: --model DIR --split valid --json FILE,
# FILE holding {"metrics": {NAME: value}}; exits 1 like a failed gate, which must not matter.
FAKE_EVALUATE = r"""
import argparse, json, pathlib, sys
p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--split", required=True)
p.add_argument("--json", required=True)
p.add_argument("--data-root", required=True)
a = p.parse_args()
assert a.split == "valid", a.split
trial = pathlib.Path(a.model).parent
values = json.loads((trial / "args.json").read_text())["values"]
accuracy = 1.0 - abs(values["model.mlp.dropout"] - 0.2)
pathlib.Path(a.json).write_text(json.dumps({"metrics": {"accuracy": accuracy, "f1": 0.5}, "gates": {"accuracy": False}}))
sys.exit(1)
"""


# --- the generated script --------------------------------------------------------


def run_search(script: Path, workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(script), "--max-evals", "4", "--output", str(workdir), *extra],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_four_trial_search_with_a_real_training_script(built, tmp_path):
    out = built("translator", "local")
    train = tmp_path / "fake_train.py"
    train.write_text(FAKE_TRAIN, encoding="utf-8")
    work = tmp_path / "work"
    proc = run_search(
        out / "search" / "search.py", work, "--train-cmd", f"{sys.executable} {train}", "--data-root", str(tmp_path)
    )
    results = json.loads((work / "results.json").read_text())
    assert len(results["trials"]) == 4, proc.stderr
    ok = [t for t in results["trials"] if t["status"] == "ok"]
    failed = [t for t in results["trials"] if t["status"] == "fail"]
    # The fake training exits 3 in trials/1: a failed trial, not a crash.
    assert [Path(t["trial_dir"]).name for t in failed] == ["1"] and len(ok) == 3
    assert "exited 3" in failed[0]["failure"] and failed[0]["loss"] is None
    for t in results["trials"]:
        trial_dir = Path(t["trial_dir"])
        assert trial_dir.parent == work / "trials"
        args = json.loads((trial_dir / "args.json").read_text())
        assert args["values"] == t["params"]
        argv = args["argv"]
        assert argv[argv.index("--output") + 1] == str(trial_dir)
        assert argv[argv.index("--metrics") + 1] == str(trial_dir / "metrics.jsonl")
        assert argv[argv.index("--data-root") + 1] == str(tmp_path)
        assert [a for a in argv if a == "--set"] == ["--set"] * 3
        assert type(t["params"]["train.batch_size"]) is int
    assert proc.returncode == 0, proc.stderr
    best = min(ok, key=lambda t: t["loss"])
    assert results["best"]["params"] == best["params"] and results["best"]["objective"] == best["objective"]
    assert results["objective"] == "valid_loss" and results["direction"] == "minimize"
    assert (results["model"], results["spec"], results["algorithm"]) == ("translator", "translator.llm", "tpe")
    assert (results["backend"], results["max_evals"]) == ("local", 4)
    printed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert printed["best"] == best["params"] and printed["value"] == best["objective"]
    assert "search: trial 1 failed: training exited 3" in proc.stderr
    assert (
        f"search: best valid_loss = {best['objective']:.6g} (trial {Path(best['trial_dir']).name}); "
        f"results in {work / 'results.json'}" in proc.stderr
    )


def test_metric_objective_is_read_from_evaluate_and_maximized(built, tmp_path):
    out = built("classifier", "local")
    train, evaluate = tmp_path / "fake_train.py", tmp_path / "fake_evaluate.py"
    train.write_text(FAKE_TRAIN.replace('if out.name == "1":', "if False:"), encoding="utf-8")
    evaluate.write_text(FAKE_EVALUATE, encoding="utf-8")
    work = tmp_path / "work"
    proc = run_search(
        out / "search" / "search.py",
        work,
        "--train-cmd",
        f"{sys.executable} {train}",
        "--eval-cmd",
        f"{sys.executable} {evaluate}",
        "--data-root",
        str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads((work / "results.json").read_text())
    trials = results["trials"]
    assert len(trials) == 4 and all(t["status"] == "ok" for t in trials)
    for t in trials:
        assert t["objective"] == pytest.approx(1.0 - abs(t["params"]["model.mlp.dropout"] - 0.2))
        assert t["loss"] == -t["objective"]  # maximize: Hyperopt minimizes the negation
    assert results["best"]["objective"] == max(t["objective"] for t in trials)


# --- the driver, directly ----------------------------------------------------------


def options_of(output: Path, **changes) -> driver.SearchOptions:
    base = {
        "output": output,
        "local": False,
        "train_cmd": None,
        "eval_cmd": None,
        "trial_timeout": None,
        "data_root": None,
    }
    return driver.SearchOptions(**{**base, **changes})


def test_training_launchers(tmp_path, monkeypatch):
    bundle = fake_bundle(tmp_path / "b")
    run = driver.SearchRun(config_of(), bundle, options_of(tmp_path / "out"))
    trial = tmp_path / "trials" / "0"
    params = {"train.optimizer.lr": 0.001, "train.batch_size": 512, "model.transformer.dropout": 0.1}
    cmd = driver.train_command(run, params, trial)
    assert cmd[:2] == ["bash", str(bundle / "train" / "launch.sh")]
    assert cmd[2:] == [
        "--set",
        "model.transformer.dropout=0.1",
        "--set",
        "train.batch_size=512",
        "--set",
        "train.optimizer.lr=0.001",
        "--output",
        str(trial),
        "--metrics",
        str(trial / "metrics.jsonl"),
    ]
    local_run = driver.SearchRun(run.config, bundle, options_of(tmp_path / "out", local=True, data_root="/data"))
    local = driver.train_command(local_run, params, trial)
    assert local[:2] == [sys.executable, str(bundle / "train" / "train.py")]
    assert local[-2:] == ["--data-root", "/data"]
    custom_run = driver.SearchRun(run.config, bundle, options_of(tmp_path / "out", train_cmd="python -u 'my train.py'"))
    assert driver.train_command(custom_run, {}, trial)[:3] == ["python", "-u", "my train.py"]
    monkeypatch.setenv("LLMC_OUTPUT", str(tmp_path / "outputs"))
    assert driver.parse_args(config_of(), []).output == str(tmp_path / "outputs" / "search")
    monkeypatch.delenv("LLMC_OUTPUT")
    args = driver.parse_args(config_of(), [])
    assert (args.output, args.max_evals, args.parallel, args.backend, args.seed) == ("search", 3, 2, "local", 0)


@pytest.mark.parametrize(
    "text,message",
    [
        (None, "no metrics file"),
        ("\n", "is empty"),
        ('{"step": 1}\nnot json\n', "is not JSON"),
        ('{"step": 1, "loss": 2.0}\n', "training did not finish"),
    ],
)
def test_final_metrics_refuses_an_unfinished_run(tmp_path, text, message):
    path = tmp_path / "metrics.jsonl"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(driver.TrialFailed, match=message):
        driver.final_metrics(path)


def test_a_trial_past_its_timeout_is_killed_and_fails(tmp_path):
    script = tmp_path / "slow.py"
    script.write_text(
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
        "time.sleep(30)\n"
    )
    with pytest.raises(driver.TrialFailed, match="timed out"):
        driver.run_logged([sys.executable, str(script)], tmp_path / "slow.log", 0.5)
    assert (tmp_path / "slow.log").read_text().startswith("$ ")


def fake_script(path: Path, body: str) -> str:
    path.write_text(body, encoding="utf-8")
    return f"{sys.executable} {path}"


def test_run_trial_records_success_and_failure(tmp_path, capsys):
    train = fake_script(tmp_path / "train.py", FAKE_TRAIN)
    run = driver.SearchRun(config_of(), fake_bundle(tmp_path / "b"), options_of(tmp_path / "out", train_cmd=train))
    sampled = {"train.optimizer.lr": np.float64(1e-4), "train.batch_size": 32.0}
    ok = driver.run_trial(run, sampled)
    assert ok["status"] == "ok" and ok["loss"] == ok["objective"] == pytest.approx(0.0)
    assert ok["params"] == {"train.optimizer.lr": 1e-4, "train.batch_size": 32}
    assert ok["trial_dir"] == str(tmp_path / "out" / "trials" / "0")
    failed = driver.run_trial(run, sampled)  # the fake training fails in trials/1
    assert failed["status"] == "fail" and failed["loss"] is None
    assert failed["failure"].startswith("training exited 3 (log: ")
    err = capsys.readouterr().err
    assert 'search: trial 0: valid_loss = 0 with {"train.optimizer.lr": 0.0001, "train.batch_size": 32}' in err
    assert "search: trial 1 failed: training exited 3" in err


def test_a_metric_objective_comes_from_evaluate_and_is_negated(tmp_path):
    train = fake_script(tmp_path / "train.py", FAKE_TRAIN.replace('if out.name == "1":', "if False:"))
    evaluate = fake_script(tmp_path / "evaluate.py", FAKE_EVALUATE)
    config = config_of(
        objective="accuracy",
        direction="maximize",
        space={
            "model.mlp.dropout": driver.Distribution("uniform", [0.0, 0.5], "float"),
            "train.optimizer.lr": driver.Distribution("uniform", [0.001, 0.01], "float"),
        },
    )
    options = options_of(tmp_path / "out", train_cmd=train, eval_cmd=evaluate, data_root=str(tmp_path))
    result = driver.run_trial(
        driver.SearchRun(config, fake_bundle(tmp_path / "b"), options),
        {"model.mlp.dropout": 0.3, "train.optimizer.lr": 0.001},
    )
    assert result["status"] == "ok"
    assert result["objective"] == pytest.approx(0.9) and result["loss"] == -result["objective"]


def test_evaluation_failures_fail_the_trial(tmp_path):
    bundle = fake_bundle(tmp_path / "b")
    trial = tmp_path / "trial"
    trial.mkdir()
    run = driver.SearchRun(config_of(objective="bleu"), bundle, options_of(tmp_path / "out"))
    with pytest.raises(driver.TrialFailed, match=r"needs .*evaluate.py, which this bundle lacks"):
        driver.evaluate_metric(run, trial)
    silent = fake_script(tmp_path / "silent.py", "import sys; sys.exit(1)")
    run = driver.SearchRun(run.config, bundle, options_of(tmp_path / "out", eval_cmd=silent))
    with pytest.raises(driver.TrialFailed, match="evaluation exited 1 without writing"):
        driver.evaluate_metric(run, trial)
    other = fake_script(
        tmp_path / "other.py",
        "import sys, json\n"
        "open(sys.argv[sys.argv.index('--json') + 1], 'w').write(json.dumps({'metrics': {'ter': 1}}))",
    )
    run = driver.SearchRun(run.config, bundle, options_of(tmp_path / "out", eval_cmd=other))
    with pytest.raises(driver.TrialFailed, match=r"has no metrics.bleu"):
        driver.evaluate_metric(run, trial)


def test_a_search_whose_trials_all_fail_exits_1(tmp_path, capsys):
    bundle = fake_bundle(tmp_path / "b")
    failing = fake_script(tmp_path / "train.py", "import sys; sys.exit(5)")
    work = tmp_path / "work"
    status = driver.run_search(config_of(max_evals=2), bundle, ["--output", str(work), "--train-cmd", failing])
    assert status == 1
    results = json.loads((work / "results.json").read_text())
    assert results["best"] is None and [t["status"] for t in results["trials"]] == ["fail", "fail"]
    assert results["spec"] == "specs/my model.llm" and results["max_evals"] == 2
    captured = capsys.readouterr()
    assert captured.out == "" and f"search: all 2 trials failed; see {work / 'results.json'}" in captured.err
    assert not (work / "results.json.tmp").exists()


def test_early_stop_ends_the_search(tmp_path):
    bundle = fake_bundle(tmp_path / "b")
    # Every trial has the same loss: after the first, none is a new best.
    flat = fake_script(
        tmp_path / "train.py",
        "import sys, json\n"
        "open(sys.argv[sys.argv.index('--metrics') + 1], 'w').write(json.dumps("
        "{'final': True, 'valid_loss': 1.0}))",
    )
    work = tmp_path / "work"
    status = driver.run_search(
        config_of(max_evals=10, early_stop=2), bundle, ["--output", str(work), "--train-cmd", flat]
    )
    assert status == 0
    assert len(json.loads((work / "results.json").read_text())["trials"]) == 3
