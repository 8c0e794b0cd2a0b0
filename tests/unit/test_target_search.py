"""The hyperopt target and the search driver (llmc.runtime.search).

search/search.py is thin (its spec's constants and a main calling the runtime); the
runtime builds the spec's space as real Hyperopt expressions whose samples stay
inside the spec's bounds with the right types; each driver function is tested
directly; and the generated script runs a real 4-trial search against a tiny
training script that honours the train.py contract (docs/bundle.md)."""

from __future__ import annotations

import ast
import importlib.util
import json
import math
import py_compile
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
from helpers import ROOT, BundleCache, build_spec

hyperopt = pytest.importorskip("hyperopt")
import numpy as np  # noqa: E402  (hyperopt depends on it)
from hyperopt.pyll.stochastic import sample  # noqa: E402

from llmc.compiler.driver import check_spec  # noqa: E402
from llmc.runtime import search as driver  # noqa: E402
from llmc.runtime.config import read_lock  # noqa: E402

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


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The bundle of a checked-in spec, built once per module (tests only read it)."""
    return BundleCache(tmp_path_factory)


def load(path: Path, name: str) -> ModuleType:
    py_compile.compile(str(path), doraise=True)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def spec_path(name: str) -> Path:
    return ROOT / "specs" / f"{name}.llm"


def assert_space_matches(config: driver.SearchConfig, space_ir: dict, rng_seed: int = 0, n: int = 200) -> None:
    """Samples of the runtime's Hyperopt space lie in the spec's bounds and cast to the field's type."""
    rng = np.random.default_rng(rng_seed)
    expr = driver.hyperopt_space(config.space)
    assert set(expr) == set(space_ir)
    for _ in range(n):
        point = sample(expr, rng=rng)
        for path, dist in space_ir.items():
            raw = point[path]
            value = driver.cast(config.space[path].cast, raw)
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


def casts(config: driver.SearchConfig) -> dict[str, str]:
    return {path: dist.cast for path, dist in config.space.items()}


# --- the generated script --------------------------------------------------------


@pytest.mark.parametrize("name,profile", SPECS)
def test_search_space_samples_inside_the_spec(built, name, profile):
    out = built(name, profile)
    config = load(out / "search" / "search.py", f"search_{name}_{profile}").CONFIG
    ir = check_spec(str(spec_path(name)), profile).ir
    s = ir.search
    assert (config.max_evals, config.parallel, config.backend) == (s.max_evals, s.parallel, s.backend)
    assert (config.objective, config.direction, config.maximize) == (
        s.objective,
        s.direction,
        s.direction == "maximize",
    )
    assert config.algorithm == s.algorithm and config.suggest is hyperopt.tpe.suggest
    assert config.seed == ir.train.seed and config.mongo_url_env == "LLMC_MONGO_URL"
    assert casts(config)["train.batch_size"] == "int" and casts(config)["train.optimizer.lr"] == "float"
    assert_space_matches(config, s.space)
    assert (out / "search" / "search.py").stat().st_mode & 0o111


@pytest.mark.parametrize("name,profile", SPECS)
def test_the_script_is_constants_and_a_short_main(built, name, profile):
    """No class, no function but main, nothing imported but llmc.runtime and the standard library."""
    source = (built(name, profile) / "search" / "search.py").read_text(encoding="utf-8")
    assert len(source.splitlines()) < 80
    tree = ast.parse(source)
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.ClassDef, ast.Lambda))]
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    assert [f.name for f in functions] == ["main"] and len(functions[0].body) <= 3
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imported == {"sys", "pathlib", "llmc.runtime.search"}


def test_every_distribution_kind(tmp_path):
    text = spec_path("translator").read_text(encoding="utf-8")
    text = re.sub(r"  space \{.*?\n  \}", ALL_KINDS_SPACE, text, count=1, flags=re.S)
    text = text.replace('algorithm = "tpe"', 'algorithm = "anneal"\n  early_stop = 3\n  backend = "spark"')
    spec = tmp_path / "all.llm"
    spec.write_text(text, encoding="utf-8")
    out = build_spec(spec, tmp_path / "b")
    source = (out / "search" / "search.py").read_text(encoding="utf-8")
    # The spec's values as it wrote them: the runtime takes loguniform's logarithms.
    assert "'train.optimizer.lr': Distribution('loguniform', [1e-05, 0.001], 'float')," in source
    assert "'train.checkpoint.keep': Distribution('randint', [1, 5], 'int')," in source
    config = load(out / "search" / "search.py", "search_all_kinds").CONFIG
    assert config.suggest is hyperopt.anneal.suggest and config.early_stop == 3 and config.backend == "spark"
    assert casts(config) == {
        "train.optimizer.lr": "float",
        "model.transformer.dropout": "float",
        "train.batch_size": "int",
        "train.schedule.warmup": "int",
        "train.checkpoint.keep": "int",
        "compress.prune.sparsity": "float",
        "train.gradient_compression": "str",
        "train.checkpoint.every": "float",
    }
    ir = check_spec(str(spec)).ir
    assert_space_matches(config, ir.search.space)


def test_random_algorithm_and_maximize(tmp_path):
    text = spec_path("classifier").read_text(encoding="utf-8").replace('algorithm = "tpe"', 'algorithm = "random"')
    spec = tmp_path / "c.llm"
    spec.write_text(text, encoding="utf-8")
    config = load(build_spec(spec, tmp_path / "b") / "search" / "search.py", "search_random").CONFIG
    assert config.suggest is hyperopt.rand.suggest
    assert config.maximize is True and config.objective_is_loss is False


def test_strings_with_quotes_and_newlines_stay_data(tmp_path):
    name = 'tr"a\\ns\'\'\'"""\nlator {{ x }}'
    escaped = name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    text = spec_path("translator").read_text(encoding="utf-8").replace("model translator {", f'model "{escaped}" {{', 1)
    spec = tmp_path / "odd name.llm"
    spec.write_text(text, encoding="utf-8")
    bundle = build_spec(spec, tmp_path / "b")
    module = load(bundle / "search" / "search.py", "search_injection")
    assert module.CONFIG.model == name
    lock = read_lock(bundle)
    assert lock["spec"] == "odd name.llm"
    assert driver.experiment_key(lock) == f"odd name-{lock['spec_sha256'][:12]}"


def test_mongo_backend_needs_its_url(built, tmp_path, monkeypatch):
    module = load(built("translator", "local") / "search" / "search.py", "search_mongo")
    monkeypatch.delenv("LLMC_MONGO_URL", raising=False)
    with pytest.raises(SystemExit) as exc:
        module.main(["--backend", "mongo", "--output", str(tmp_path)])
    assert "LLMC_MONGO_URL" in str(exc.value.code)


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


def config_of(**changes) -> driver.SearchConfig:
    base = {
        "model": "m",
        "algorithm": "tpe",
        "max_evals": 3,
        "parallel": 2,
        "backend": "local",
        "early_stop": None,
        "objective": "valid_loss",
        "direction": "minimize",
        "seed": 0,
        "mongo_url_env": "TEST_MONGO_URL",
        "space": {
            "train.optimizer.lr": driver.Distribution("loguniform", [1e-4, 1e-2], "float"),
            "train.batch_size": driver.Distribution("choice", [16, 32], "int"),
        },
    }
    return driver.SearchConfig(**{**base, **changes})


def fake_bundle(path: Path, profile: str | None = "local") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    lock = {"spec": "specs/my model.llm", "profile": profile, "spec_sha256": "ab" * 32}
    (path / "llmc.lock.json").write_text(json.dumps(lock), encoding="utf-8")
    return path


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


def test_each_distribution_becomes_its_hyperopt_expression():
    rng = np.random.default_rng(1)
    cases = {
        "uniform": (driver.Distribution("uniform", [2.0, 3.0], "float"), lambda v: 2.0 <= v <= 3.0),
        # the spec's bounds are values: without the logarithms samples would be near e^0.001
        "loguniform": (driver.Distribution("loguniform", [1e-3, 1e-2], "float"), lambda v: 1e-3 <= v <= 1e-2),
        "quniform": (driver.Distribution("quniform", [10, 20, 5], "int"), lambda v: v in (10.0, 15.0, 20.0)),
        "randint": (driver.Distribution("randint", [3, 5], "int"), lambda v: v in (3, 4)),
        "normal": (driver.Distribution("normal", [100.0, 0.001], "float"), lambda v: abs(v - 100.0) < 1),
        "choice": (driver.Distribution("choice", ["a", "b"], "str"), lambda v: v in ("a", "b")),
    }
    for kind, (dist, inside) in cases.items():
        expr = driver.hyperopt_expression(kind, dist)
        values = {sample(expr, rng=rng) for _ in range(100)}
        assert all(inside(v) for v in values), (kind, values)
        assert len(values) > 1, kind
    with pytest.raises(ValueError, match="unknown distribution 'gamma'"):
        driver.hyperopt_expression("x", driver.Distribution("gamma", [1, 2], "float"))


def test_cast_gives_the_fields_plain_type():
    # quniform draws floats (64.0) and randint numpy integers; an int field gets an int.
    assert driver.cast("int", 1500.0) == 1500 and type(driver.cast("int", 1500.0)) is int
    assert driver.cast("int", np.int64(7)) == 7 and type(driver.cast("int", np.int64(7))) is int
    assert type(driver.cast("float", np.float64(0.5))) is float
    assert driver.cast("bool", np.bool_(True)) is True
    assert driver.cast("str", "fp16") == "fp16"


def test_config_derives_direction_source_and_algorithm():
    assert config_of().maximize is False and config_of(direction="maximize").maximize is True
    assert config_of().objective_is_loss is True and config_of(objective="bleu").objective_is_loss is False
    assert config_of(algorithm="anneal").suggest is hyperopt.anneal.suggest


def test_experiment_key_names_spec_profile_and_content(tmp_path):
    lock = read_lock(fake_bundle(tmp_path / "b"))
    assert driver.experiment_key(lock) == "my model-local-" + "ab" * 6
    assert driver.experiment_key(dict(lock, profile=None)) == "my model-" + "ab" * 6


def test_new_trial_dir_takes_the_smallest_free_number(tmp_path):
    root = tmp_path / "trials"
    assert driver.new_trial_dir(root) == root / "0"
    (root / "2").mkdir()  # left by a parallel trial: counting alone would pick 2
    assert driver.new_trial_dir(root) == root / "3"
    assert sorted(p.name for p in root.iterdir()) == ["0", "2", "3"]


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


@pytest.mark.parametrize("argv", [["--max-evals", "0"], ["--parallel", "0"], ["--backend", "ray"]])
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        driver.parse_args(config_of(), argv)
    assert exc.value.code == 2


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


def test_final_metrics_reads_the_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"start": true}\n{"final": true, "valid_loss": 0.25}\n\n', encoding="utf-8")
    assert driver.final_metrics(path) == {"final": True, "valid_loss": 0.25}


@pytest.mark.parametrize("value", [True, None, "0.5", float("nan"), float("inf")])
def test_finite_number_refuses_anything_else(value):
    with pytest.raises(driver.TrialFailed, match="not a finite number"):
        driver.finite_number(value, "x")


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


def test_early_stop_counts_failures_and_ignores_running_trials():
    ok, fail = hyperopt.STATUS_OK, hyperopt.STATUS_FAIL

    def trials(*results):
        return SimpleNamespace(trials=[{"tid": i, "result": r} for i, r in enumerate(results)])

    stop = driver.no_progress(2)
    assert stop(trials({"status": ok, "loss": 1.0}, {"status": ok, "loss": 2.0}))[0] is False
    assert (
        stop(trials({"status": ok, "loss": 1.0}, {"status": ok, "loss": 2.0}, {"status": fail, "loss": None}))[0]
        is True
    )
    assert (
        stop(trials({"status": ok, "loss": 1.0}, {"status": ok, "loss": 2.0}, {"status": ok, "loss": 0.5}))[0] is False
    )
    assert stop(trials({"status": ok, "loss": 1.0}, {"status": ok, "loss": 2.0}, {"status": "new"}))[0] is False


def test_records_are_in_tid_order_and_the_best_is_the_lowest_loss():
    trials = SimpleNamespace(
        trials=[
            {"tid": 2, "result": {"status": "ok", "loss": 0.5, "objective": 0.5}},
            {"tid": 0, "result": {"status": "fail", "loss": None, "failure": "x"}},
            {"tid": 1, "result": {"status": "ok", "loss": 0.5, "objective": 0.5}},
        ]
    )
    records = driver.trial_records(trials)
    assert [r["tid"] for r in records] == [0, 1, 2]
    assert records[0] == {"tid": 0, "status": "fail", "loss": None, "failure": "x"}
    assert driver.best_record(records)["tid"] == 1  # a tie goes to the earlier trial
    assert driver.best_record(records[:1]) is None


def test_backends(tmp_path, monkeypatch):
    bundle = fake_bundle(tmp_path / "b")
    assert isinstance(driver.make_trials("local", 4, "TEST_MONGO_URL", bundle), hyperopt.Trials)
    monkeypatch.setattr(hyperopt, "SparkTrials", lambda parallelism: ("spark", parallelism))
    assert driver.make_trials("spark", 4, "TEST_MONGO_URL", bundle) == ("spark", 4)
    monkeypatch.delenv("TEST_MONGO_URL", raising=False)
    with pytest.raises(SystemExit, match=r"\$TEST_MONGO_URL"):
        driver.make_trials("mongo", 4, "TEST_MONGO_URL", bundle)
    monkeypatch.setenv("TEST_MONGO_URL", "mongo://db:27017/hyperopt/jobs")
    monkeypatch.setitem(sys.modules, "pymongo", None)  # an import of it fails
    with pytest.raises(SystemExit, match="needs pymongo"):
        driver.make_trials("mongo", 4, "TEST_MONGO_URL", bundle)
    monkeypatch.setitem(sys.modules, "pymongo", SimpleNamespace())
    fake_mongoexp = SimpleNamespace(MongoTrials=lambda url, exp_key: ("mongo", url, exp_key))
    monkeypatch.setitem(sys.modules, "hyperopt.mongoexp", fake_mongoexp)
    assert driver.make_trials("mongo", 4, "TEST_MONGO_URL", bundle) == (
        "mongo",
        "mongo://db:27017/hyperopt/jobs",
        "my model-local-" + "ab" * 6,
    )


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
