"""The hyperopt target: search/search.py compiles, builds the spec's space with real
Hyperopt expressions whose samples stay inside the spec's bounds with the right
types, and runs a real 4-trial search against a tiny training script that honours
the train.py contract (docs/bundle.md)."""

from __future__ import annotations

import importlib.util
import json
import math
import py_compile
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers import ROOT, BundleCache, build_spec

hyperopt = pytest.importorskip("hyperopt")
import numpy as np  # noqa: E402  (hyperopt depends on it)
from hyperopt.pyll.stochastic import sample  # noqa: E402

from llmc.compiler.driver import check_spec  # noqa: E402

SPECS = [("translator", None), ("translator", "local"), ("classifier", None), ("classifier", "local")]

# Every kind of distribution, on fields of every cast (int, float, str, a union's float).
ALL_KINDS_SPACE = """  space {
    train.optimizer.lr           = loguniform(1e-5, 1e-3)
    model.transformer.dropout    = uniform(0.0, 0.3)
    train.batch_size             = choice(256, 512, 1024)
    train.schedule.warmup        = quniform(1000, 8000, 500)
    train.checkpoint.keep        = randint(1, 5)
    compress.prune.sparsity      = normal(0.3, 0.05)
    train.gradient_compression   = choice("none", "fp16")
    train.checkpoint.every       = choice(10m, 20m)
  }"""

# Honours the train.py contract: --set PATH=JSON, --output DIR, --metrics FILE with a
# final line. Fails (exit 3) in trials/1 so that a failed trial is exercised.
FAKE_TRAIN = r'''
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
'''

# Honours the evaluate.py contract search.py defines: --model DIR --split valid --json FILE,
# FILE holding {"metrics": {NAME: value}}; exits 1 like a failed gate, which must not matter.
FAKE_EVALUATE = r'''
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
'''


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The bundle of a checked-in spec, built once per module (tests only read it)."""
    return BundleCache(tmp_path_factory)


def load(path: Path, name: str):
    py_compile.compile(str(path), doraise=True)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def spec_path(name: str) -> Path:
    return ROOT / "specs" / f"{name}.llm"


def assert_space_matches(module, space_ir: dict, rng_seed: int = 0, n: int = 200) -> None:
    """Samples of module.space() lie in the spec's bounds and cast to the field's type."""
    rng = np.random.default_rng(rng_seed)
    expr = module.space()
    assert set(expr) == set(space_ir)
    for _ in range(n):
        point = sample(expr, rng=rng)
        for path, dist in space_ir.items():
            raw = point[path]
            value = module.cast(module.CASTS[path], raw)
            args = dist.args
            if dist.kind in ("uniform", "loguniform"):
                assert args[0] <= value <= args[1], (path, value)
                assert type(value) is float
            elif dist.kind == "quniform":
                low, high, q = args
                assert round(low / q) * q <= value <= round(high / q) * q, (path, value)
                assert value % q == 0, (path, value)
            elif dist.kind == "randint":
                assert args[0] <= value < args[1], (path, value)
                assert type(value) is int
            elif dist.kind == "choice":
                assert value in args, (path, value)
                assert type(value) is type(args[0]), (path, value)
            elif dist.kind == "normal":
                assert type(value) is float and math.isfinite(value)
            else:
                raise AssertionError(dist.kind)


@pytest.mark.parametrize("name,profile", SPECS)
def test_search_space_samples_inside_the_spec(built, name, profile):
    out = built(name, profile)
    module = load(out / "search" / "search.py", f"search_{name}_{profile}")
    ir = check_spec(str(spec_path(name)), profile).ir
    s = ir.search
    assert (module.MAX_EVALS, module.PARALLEL, module.BACKEND) == (s.max_evals, s.parallel, s.backend)
    assert (module.OBJECTIVE, module.DIRECTION, module.MAXIMIZE) == (s.objective, s.direction, s.direction == "maximize")
    assert module.ALGORITHM == s.algorithm and module.SUGGEST is hyperopt.tpe.suggest
    assert module.CASTS["train.batch_size"] == "int" and module.CASTS["train.optimizer.lr"] == "float"
    assert_space_matches(module, s.space)
    assert (out / "search" / "search.py").stat().st_mode & 0o111


def test_every_distribution_kind(tmp_path):
    text = spec_path("translator").read_text(encoding="utf-8")
    text = re.sub(r"  space \{.*?\n  \}", ALL_KINDS_SPACE, text, count=1, flags=re.S)
    text = text.replace('algorithm = "tpe"', 'algorithm = "anneal"\n  early_stop = 3\n  backend = "spark"')
    spec = tmp_path / "all.llm"
    spec.write_text(text, encoding="utf-8")
    out = build_spec(spec, tmp_path / "b")
    source = (out / "search" / "search.py").read_text(encoding="utf-8")
    # loguniform's bounds are values in the spec: the script takes their logarithms.
    assert "hp.loguniform('train.optimizer.lr', math.log(1e-05), math.log(0.001))" in source
    assert "hp.randint('train.checkpoint.keep', 1, 5)" in source
    module = load(out / "search" / "search.py", "search_all_kinds")
    assert module.SUGGEST is hyperopt.anneal.suggest and module.EARLY_STOP == 3 and module.BACKEND == "spark"
    assert module.CASTS == {
        "train.optimizer.lr": "float", "model.transformer.dropout": "float", "train.batch_size": "int",
        "train.schedule.warmup": "int", "train.checkpoint.keep": "int", "compress.prune.sparsity": "float",
        "train.gradient_compression": "str", "train.checkpoint.every": "float",
    }
    ir = check_spec(str(spec)).ir
    assert_space_matches(module, ir.search.space)
    # quniform draws floats (64.0); an int field gets an int.
    assert module.cast("int", 1500.0) == 1500 and type(module.cast("int", 1500.0)) is int


def test_random_algorithm_and_maximize(tmp_path):
    text = spec_path("classifier").read_text(encoding="utf-8").replace('algorithm = "tpe"', 'algorithm = "random"')
    spec = tmp_path / "c.llm"
    spec.write_text(text, encoding="utf-8")
    module = load(build_spec(spec, tmp_path / "b") / "search" / "search.py", "search_random")
    assert module.SUGGEST is hyperopt.rand.suggest
    assert module.MAXIMIZE is True and module.OBJECTIVE_IS_LOSS is False


def test_early_stop_counts_failures_and_ignores_running_trials(built):
    module = load(built("translator", "local") / "search" / "search.py", "search_stop")
    ok, fail = hyperopt.STATUS_OK, hyperopt.STATUS_FAIL

    def trials(*results):
        return SimpleNamespace(trials=[{"tid": i, "result": r} for i, r in enumerate(results)])

    stop = module.no_progress(2)
    assert stop(trials({"status": ok, "loss": 1.0}, {"status": ok, "loss": 2.0}))[0] is False
    assert stop(trials({"status": ok, "loss": 1.0}, {"status": ok, "loss": 2.0}, {"status": fail, "loss": None}))[0] is True
    assert stop(trials({"status": ok, "loss": 1.0}, {"status": ok, "loss": 2.0}, {"status": ok, "loss": 0.5}))[0] is False
    assert stop(trials({"status": ok, "loss": 1.0}, {"status": ok, "loss": 2.0}, {"status": "new"}))[0] is False


def test_mongo_backend_needs_its_url(built, tmp_path, monkeypatch):
    module = load(built("translator", "local") / "search" / "search.py", "search_mongo")
    monkeypatch.delenv("LLMC_MONGO_URL", raising=False)
    with pytest.raises(SystemExit) as exc:
        module.main(["--backend", "mongo", "--output", str(tmp_path)])
    assert "LLMC_MONGO_URL" in str(exc.value.code)


def run_search(script: Path, workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), "--max-evals", "4", "--output", str(workdir), *extra],
                          capture_output=True, text=True, timeout=60)


def test_four_trial_search_with_a_real_training_script(built, tmp_path):
    out = built("translator", "local")
    train = tmp_path / "fake_train.py"
    train.write_text(FAKE_TRAIN, encoding="utf-8")
    work = tmp_path / "work"
    proc = run_search(out / "search" / "search.py", work, "--train-cmd", f"{sys.executable} {train}",
                      "--data-root", str(tmp_path))
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
    printed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert printed["best"] == best["params"] and printed["value"] == best["objective"]


def test_metric_objective_is_read_from_evaluate_and_maximized(built, tmp_path):
    out = built("classifier", "local")
    train, evaluate = tmp_path / "fake_train.py", tmp_path / "fake_evaluate.py"
    train.write_text(FAKE_TRAIN.replace('if out.name == "1":', "if False:"), encoding="utf-8")
    evaluate.write_text(FAKE_EVALUATE, encoding="utf-8")
    work = tmp_path / "work"
    proc = run_search(out / "search" / "search.py", work, "--train-cmd", f"{sys.executable} {train}",
                      "--eval-cmd", f"{sys.executable} {evaluate}", "--data-root", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    results = json.loads((work / "results.json").read_text())
    trials = results["trials"]
    assert len(trials) == 4 and all(t["status"] == "ok" for t in trials)
    for t in trials:
        assert t["objective"] == pytest.approx(1.0 - abs(t["params"]["model.mlp.dropout"] - 0.2))
        assert t["loss"] == -t["objective"]  # maximize: Hyperopt minimizes the negation
    assert results["best"]["objective"] == max(t["objective"] for t in trials)


def test_strings_with_quotes_and_newlines_stay_data(tmp_path):
    name = 'tr"a\\ns\'\'\'"""\nlator {{ x }}'
    escaped = name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    text = spec_path("translator").read_text(encoding="utf-8").replace("model translator {", f'model "{escaped}" {{', 1)
    spec = tmp_path / "odd name.llm"
    spec.write_text(text, encoding="utf-8")
    module = load(build_spec(spec, tmp_path / "b") / "search" / "search.py", "search_injection")
    assert module.MODEL == name and module.built_from()["spec"] == "odd name.llm"
    digest = json.loads((tmp_path / "b" / "llmc.lock.json").read_text())["spec_sha256"]
    assert module.experiment_key() == f"odd name-{digest[:12]}"


def test_training_launchers(built, tmp_path, monkeypatch):
    out = built("translator", None)
    module = load(out / "search" / "search.py", "search_launchers")
    opts = {"train_cmd": None, "local": False, "data_root": None}
    trial = tmp_path / "trials" / "0"
    params = {"train.optimizer.lr": 0.001, "train.batch_size": 512, "model.transformer.dropout": 0.1}
    cmd = module.train_command(params, trial, opts)
    assert cmd[:2] == ["bash", str((out / "train" / "launch.sh").resolve())]
    assert cmd[2:] == ["--set", "model.transformer.dropout=0.1", "--set", "train.batch_size=512",
                       "--set", "train.optimizer.lr=0.001", "--output", str(trial), "--metrics", str(trial / "metrics.jsonl")]
    local = module.train_command(params, trial, dict(opts, local=True, data_root="/data"))
    assert local[:2] == [sys.executable, str((out / "train" / "train.py").resolve())]
    assert local[-2:] == ["--data-root", "/data"]
    monkeypatch.setenv("LLMC_OUTPUT", str(tmp_path / "outputs"))
    assert module.parse_args([]).output == str(tmp_path / "outputs" / "search")
    monkeypatch.delenv("LLMC_OUTPUT")
    assert module.parse_args([]).output == "search"


def test_a_trial_past_its_timeout_is_killed_and_fails(built, tmp_path):
    module = load(built("translator", "local") / "search" / "search.py", "search_timeout")
    script = tmp_path / "slow.py"
    script.write_text("import subprocess, sys, time\n"
                      "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
                      "time.sleep(30)\n")
    with pytest.raises(module.TrialFailed, match="timed out"):
        module.run_logged([sys.executable, str(script)], tmp_path / "slow.log", 0.5)
    assert (tmp_path / "slow.log").read_text().startswith("$ ")
