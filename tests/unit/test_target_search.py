"""The hyperopt target and the search driver (llmc.runtime.search).

search/search.py is thin (its spec's constants and a main calling the runtime); the
runtime builds the spec's space as real Hyperopt expressions whose samples stay
inside the spec's bounds with the right types; each driver function is tested
directly; and the generated script runs a real 4-trial search against a tiny
training script that honours the train.py contract (docs/bundle.md).

The tests of this part that run real processes (tools, frameworks, servers) are in
tests/integration/test_target_search_runs.py.
"""

from __future__ import annotations

import ast
import importlib.util
import math
import py_compile
import re
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
from helpers import ROOT, build_spec

hyperopt = pytest.importorskip("hyperopt")
import numpy as np  # noqa: E402  (hyperopt depends on it)
from hyperopt.pyll.stochastic import sample  # noqa: E402
from support.search import ALL_KINDS_SPACE, config_of, fake_bundle  # noqa: E402
from support.search import built as built  # noqa: E402  (a fixture: pytest finds it imported here)

from llmc.compiler.driver import check_spec  # noqa: E402
from llmc.runtime import search as driver  # noqa: E402
from llmc.runtime.config import read_lock  # noqa: E402

SPECS = [("translator", None), ("translator", "local"), ("classifier", None), ("classifier", "local")]


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
    # A katib search's script runs the space here, with Hyperopt's Trials (its Experiment: test_target_katib.py).
    script_backend = "local" if s.backend == "katib" else s.backend
    assert (config.max_evals, config.parallel, config.backend) == (s.max_evals, s.parallel, script_backend)
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
    # On Spark: Katib, the translator's backend, has no anneal (E606).
    text = text.replace('algorithm = "tpe"', 'algorithm = "anneal"\n  early_stop = 3')
    text = text.replace('backend   = "katib"', 'backend   = "spark"')
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


# --- the driver, directly ----------------------------------------------------------


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


@pytest.mark.parametrize("argv", [["--max-evals", "0"], ["--parallel", "0"], ["--backend", "ray"]])
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        driver.parse_args(config_of(), argv)
    assert exc.value.code == 2


def test_final_metrics_reads_the_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"start": true}\n{"final": true, "valid_loss": 0.25}\n\n', encoding="utf-8")
    assert driver.final_metrics(path) == {"final": True, "valid_loss": 0.25}


@pytest.mark.parametrize("value", [True, None, "0.5", float("nan"), float("inf")])
def test_finite_number_refuses_anything_else(value):
    with pytest.raises(driver.TrialFailed, match="not a finite number"):
        driver.finite_number(value, "x")


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
    best = driver.best_record(records)
    assert best is not None and best["tid"] == 1  # a tie goes to the earlier trial
    assert driver.best_record(records[:1]) is None


def test_backends(tmp_path, monkeypatch):
    bundle = fake_bundle(tmp_path / "b")
    assert isinstance(driver.make_trials("local", 4, "TEST_MONGO_URL", bundle), hyperopt.Trials)
    # The real SparkTrials on a real local Spark: tests/integration/test_search_trains_runs.py.
    monkeypatch.setattr(driver, "spark_session", lambda parallel: f"local[{parallel}]")
    monkeypatch.setattr(
        hyperopt, "SparkTrials", lambda parallelism, spark_session: ("spark", parallelism, spark_session)
    )
    assert driver.make_trials("spark", 4, "TEST_MONGO_URL", bundle) == ("spark", 4, "local[4]")
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


# --- progress, the report, and a profile's space ---------------------------------------------


class _Trials:
    """The part of a Hyperopt trials object the progress report reads."""

    def __init__(self, results):
        self.trials = [{"tid": i, "result": r} for i, r in enumerate(results)]


def _ok(loss, n):
    return {"status": "ok", "loss": loss, "objective": loss, "trial_dir": f"trials/{n}"}


def test_progress_says_trials_done_the_best_so_far_and_an_eta_once_per_finished_trial():
    lines: list[str] = []
    now = [100.0]
    report = driver.ProgressReport(config_of(), 4, None, clock=lambda: now[0], say=lines.append)
    now[0] = 130.0  # 30 s for the first trial
    assert report(_Trials([_ok(2.0, 0), {"status": "new"}])) == (False, [])
    report(_Trials([_ok(2.0, 0), {"status": "running"}]))  # a poll with nothing new: no line
    now[0] = 160.0
    report(_Trials([_ok(2.0, 0), {"status": "fail", "loss": None, "failure": "x", "trial_dir": "trials/1"}]))
    now[0] = 190.0
    report(_Trials([_ok(2.0, 0), {"status": "fail", "loss": None}, _ok(0.5, 2), _ok(0.7, 3)]))
    assert lines == [
        "search: 1/4 trials done; best valid_loss 2 (trial 0); ETA 1 min 30 s",
        "search: 2/4 trials done (1 failed); best valid_loss 2 (trial 0); ETA 1 min 00 s",
        "search: 4/4 trials done (1 failed); best valid_loss 0.5 (trial 2)",
    ]


def test_progress_hands_the_decision_to_the_early_stop_rule():
    report = driver.ProgressReport(config_of(), 4, driver.no_progress(1), say=lambda line: None)
    assert report(_Trials([_ok(1.0, 0), _ok(2.0, 1)]))[0] is True
    assert report(_Trials([_ok(1.0, 0), _ok(0.5, 1)]))[0] is False


def test_the_report_table_has_a_row_per_trial_with_its_values_status_and_time():
    from llmc.runtime.search_report import report_markdown

    results = {
        "model": "m",
        "objective": "valid_loss",
        "direction": "minimize",
        "algorithm": "tpe",
        "backend": "local",
        "space": {
            "train.batch_size": {"kind": "choice", "args": [16, 32]},
            "train.optimizer.lr": {"kind": "loguniform"},
        },
        "best": {"tid": 1, "params": {"train.batch_size": 32, "train.optimizer.lr": 0.00123456}, "objective": 0.25},
        "trials": [
            {
                "tid": 0,
                "status": "fail",
                "params": {"train.batch_size": 16},
                "failure": "training exited 1 | oops",
                "seconds": 3.0,
            },
            {
                "tid": 1,
                "status": "ok",
                "params": {"train.batch_size": 32, "train.optimizer.lr": 0.00123456},
                "objective": 0.25,
                "seconds": 12.34,
            },
        ],
    }
    table = report_markdown(results)
    assert "| trial | train.batch_size | train.optimizer.lr | valid_loss | status | seconds |" in table
    assert "| 0 | 16 |  |  | failed: training exited 1 \\| oops | 3.0 |" in table
    assert "| 1 | 32 | 0.001235 | 0.25 | ok, best | 12.3 |" in table
    assert "Best: valid_loss = 0.25 (trial 1)" in table and "1 failed" in table


def test_a_profile_narrows_the_space_and_keeps_the_rest(tmp_path):
    spec = tmp_path / "t.llm"
    spec.write_text(
        f'extends "{ROOT}/specs/translator.llm"\n\nprofile local {{\n'
        "  search.space.train.batch_size = choice(128)\n"
        "  search.space.train.epochs     = randint(1, 3)\n}\n"
    )
    result = check_spec(str(spec), profile="local")
    assert result.ok, [d.message for d in result.diagnostics]
    space = result.ir.search.space
    assert space["train.batch_size"].args == [128]
    assert space["train.epochs"].kind == "randint"
    assert space["model.transformer.dropout"].args == [0.0, 0.3]  # the base's, untouched
    assert check_spec(str(spec)).ir.search.space["train.batch_size"].args == [256, 512, 1024]


def test_a_profiles_searched_value_that_breaks_its_layout_is_e603_at_the_profile_line(tmp_path):
    spec = tmp_path / "t.llm"
    spec.write_text(
        f'extends "{ROOT}/specs/translator.llm"\n\nprofile local {{\n  search.space.train.batch_size = choice(32, 64)\n}}\n'
    )
    result = check_spec(str(spec), profile="local")
    [d] = [d for d in result.diagnostics if d.severity == "error"]
    assert d.code == "E603" and d.span.file.endswith("t.llm") and d.span.line == 4 and "E305" in d.message
