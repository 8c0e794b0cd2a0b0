"""The serve stage's script, loadtest/loadtest.py (compiler/targets/serving.py): thin
(its spec's constants and a main calling llmc.runtime.serving.loadtest), written only
for a spec with a serve block and an evaluate block, never under serve/ (the k8s
target ships serve/ in the server's ConfigMap); and the stage's pure parts in the
runtime: its arguments, the duration from $LLMC_LOADTEST_DURATION, the run's plan,
key and record, and the summary line. Serving it for real is tests/e2e's
(test_llmc_run.py) and tests/integration/test_loadtest_runs.py's.
"""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
from helpers import ROOT, BundleCache, checked

from llmc.compiler.targets import BuildContext
from llmc.compiler.targets import serving as serving_target
from llmc.runtime import local, records
from llmc.runtime.folders import StepError
from llmc.runtime.runner import Bundle, StageResult, plan_stages, stage_key
from llmc.runtime.serving import loadreport
from llmc.runtime.serving import loadtest as lt

SPECS = [("translator", None), ("translator", "local"), ("classifier", None), ("classifier", "local")]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return BundleCache(tmp_path_factory)


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name,profile", SPECS)
def test_the_script_is_constants_and_a_short_main(built, name, profile):
    """No class, no function but main, nothing imported but llmc.runtime and the standard library."""
    path = built(name, profile) / "loadtest" / "loadtest.py"
    source = path.read_text(encoding="utf-8")
    assert len(source.splitlines()) < 60 and path.stat().st_mode & 0o111
    tree = ast.parse(source)
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.ClassDef, ast.Lambda))]
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    assert [f.name for f in functions] == ["main"] and len(functions[0].body) <= 3
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imported == {"sys", "pathlib", "llmc.runtime.serving.loadtest", "llmc.runtime.scripts"}
    # The module's statements: its docstring, imports, CONFIG, main and the __main__ guard.
    kinds = [type(n).__name__ for n in tree.body]
    assert kinds == ["Expr", "Import", "ImportFrom", "ImportFrom", "Assign", "FunctionDef", "If"], kinds


@pytest.mark.parametrize("name,profile", SPECS)
def test_the_constants_are_the_specs_sla(built, name, profile):
    bundle = built(name, profile)
    config = load(bundle / "loadtest" / "loadtest.py", f"loadtest_{name}_{profile}").CONFIG
    plan = json.loads((bundle / "serving.json").read_text())
    sla = checked(ROOT / "specs" / f"{name}.llm", profile).ir.serve.sla
    assert isinstance(config, lt.LoadtestConfig)
    assert config.model_name == plan["model"] == name
    assert config.rate_rps == plan["sla"]["throughput_rps"] == sla.throughput
    assert config.duration_s == serving_target.LOAD_SECONDS == 20.0 and config.sweep is True
    doc = (bundle / "loadtest" / "loadtest.py").read_text()
    p99 = f"{sla.p99_latency * 1000:g} ms"
    assert f"p99 latency <= {p99} at {sla.throughput:g} req/s, an error budget of 0.1% of the requests" in doc
    # Not in serve/ (the k8s ConfigMap ships every serve/ file), and the lock lists it.
    lock = json.loads((bundle / "llmc.lock.json").read_text())
    assert "loadtest/loadtest.py" in lock["artifacts"]
    assert not [p for p in lock["artifacts"] if p.startswith("serve/") and "loadtest" in p]


def test_no_script_without_an_evaluate_block_or_a_serve_block():
    result = checked(ROOT / "specs" / "translator.llm", "local")
    ctx = BuildContext(result.ir, result.facts, "translator.llm", "local", "0" * 64, "0")
    paths = [a.path for a in serving_target.artifacts(ctx)]
    assert paths == ["serving.json", "loadtest/loadtest.py"]
    no_evaluate = ctx._replace(ir=result.ir.model_copy(update={"evaluate": None}))
    assert [a.path for a in serving_target.artifacts(no_evaluate)] == ["serving.json"]
    no_serve = ctx._replace(ir=result.ir.model_copy(update={"serve": None}))
    assert serving_target.artifacts(no_serve) == []


def test_the_docstring_keeps_a_hostile_model_name_data():
    result = checked(ROOT / "specs" / "translator.llm", "local")
    ir = result.ir.model_copy(update={"model": result.ir.model.model_copy(update={"name": 'en"""\\→de'})})
    script = serving_target.loadtest_script(BuildContext(ir, result.facts, "t.llm", "local", "0" * 64, "0"))
    assert '"""' not in script.model_doc and script.model_name.startswith("en-")


# --- the stage's arguments -------------------------------------------------------------------------------

CONFIG = lt.LoadtestConfig("translator", 20.0, 20.0)


def parse(*argv: str):
    return lt.loadtest_arguments("doc", CONFIG).parse_args(list(argv))


def test_the_duration_comes_from_the_flag_then_the_environment_then_the_script(monkeypatch):
    monkeypatch.delenv(lt.DURATION_ENV, raising=False)
    assert lt._duration(None, 20.0) == 20.0
    monkeypatch.setenv(lt.DURATION_ENV, "5")
    assert lt._duration(None, 20.0) == 5.0
    assert lt._duration(3.0, 20.0) == 3.0
    monkeypatch.setenv(lt.DURATION_ENV, "soon")
    with pytest.raises(StepError, match=r"\$LLMC_LOADTEST_DURATION must be a number of seconds, not 'soon'"):
        lt._duration(None, 20.0)
    monkeypatch.setenv(lt.DURATION_ENV, "601")
    with pytest.raises(StepError, match=r"\$LLMC_LOADTEST_DURATION must be more than 0 and at most 600"):
        lt._duration(None, 20.0)
    with pytest.raises(StepError, match="--duration must be more than 0"):
        lt._duration(0.0, 20.0)


def test_a_bad_rate_is_refused_before_anything_starts(tmp_path):
    with pytest.raises(StepError, match="--rate must be a positive number"):
        lt.run_stage(CONFIG, parse("--rate", "0", "--output", str(tmp_path)), tmp_path)


def test_a_model_that_failed_its_gates_is_not_served(tmp_path, capsys):
    metrics = tmp_path / "evaluate" / "metrics.json"
    metrics.parent.mkdir()
    metrics.write_text(json.dumps({"passed": False}))
    args = parse("--model", str(tmp_path / "model"), "--output", str(tmp_path / "serve"))
    assert lt.run_stage(CONFIG, args, tmp_path) == lt.EXIT_FAILED  # --metrics defaults to OUTPUT/../evaluate
    assert "failed its gates: it is not served" in capsys.readouterr().err


# --- the stage in `llmc run` --------------------------------------------------------------------------------


def test_the_serve_stage_follows_evaluate_and_is_keyed_by_its_script_and_serving_json(built, tmp_path):
    bundle = Bundle(str(built("translator", "local")))
    work = tmp_path / "work"
    stages = plan_stages(bundle, work, tmp_path, None, with_search=True)
    assert [s.name for s in stages] == ["train", "compress", "evaluate", "serve", "search"]
    serve = stages[3]
    (cmd,) = serve.commands
    assert cmd[1].endswith("loadtest/loadtest.py")
    assert cmd[cmd.index("--model") + 1] == str(work / "compress" / "model")
    assert cmd[cmd.index("--output") + 1] == str(work / "serve")
    assert cmd[cmd.index("--metrics") + 1] == str(work / "evaluate" / "metrics.json")
    assert serve.outputs == str(work / "serve" / "results.json")  # work/serve/ is compress's too
    keyed = bundle.artifact_hashes(serve.folder, serve.extra)
    assert set(keyed) == {"loadtest/loadtest.py", "serving.json", "model.json"}
    # evaluate's key feeds the serve stage's: a change upstream reruns it.
    assert stage_key(bundle, "loadtest", "a", "", serve.extra) != stage_key(bundle, "loadtest", "b", "", serve.extra)


def test_a_record_copies_the_serve_report_and_the_summary_names_the_verdict(tmp_path):
    assert records.SERVE_REPORT == loadreport.REPORT_FILES
    bundle, work, record = tmp_path / "bundle", tmp_path / "work", tmp_path / "record"
    for folder in (bundle, work / "serve", record):
        folder.mkdir(parents=True)
    (bundle / "llmc.lock.json").write_text("{}")
    line = "translator: SLA missed: latency p99 9.1 ms (bound <= 7.0 ms)"
    (work / "serve" / "results.json").write_text(json.dumps({"verdict": {"passed": False, "line": line}}))
    for name in ("report.md", "latency.png", "rates.png"):
        (work / "serve" / name).write_text(name)
    results = [StageResult("evaluate", "skipped", 0.0, 0), StageResult("serve", "failed", 9.0, 1)]
    records.finish_record(record, bundle, work, {"spec": "translator-local"}, results)
    copied = sorted(p.name for p in record.iterdir())
    assert copied == sorted(
        ["llmc.lock.json", "run.json"]
        + [f"serve-{n}" for n in ("report.md", "results.json", "latency.png", "rates.png")]
    )
    assert json.loads((record / "run.json").read_text())["status"] == "failed"
    assert local.serving_verdict(work, results) == f"==> serve failed: {line}"
    assert local.serving_verdict(work, results[:1]) is None  # no serve stage ran: nothing to say
    (work / "serve" / "results.json").unlink()
    assert "no load-test report" in str(local.serving_verdict(work, results))


def test_a_missed_sla_does_not_undo_the_gates_for_llmc_serve(tmp_path):
    from llmc.runtime.serving.runs import _passed

    stages = [{"name": s, "status": "ok"} for s in ("train", "compress", "evaluate")]
    assert _passed({"status": "failed", "stages": [*stages, {"name": "serve", "status": "failed"}]})
    assert not _passed({"status": "failed", "stages": [*stages[:2], {"name": "evaluate", "status": "failed"}]})
    assert not _passed({"status": "ok", "stages": [{"name": "serve", "status": "ok"}]})  # --stage serve gates nothing


def test_run_refuses_a_stage_the_bundle_lacks(tmp_path, capsys, monkeypatch):
    bundle = tmp_path / "bundle"
    (bundle / "evaluate").mkdir(parents=True)
    (bundle / "evaluate" / "evaluate.py").write_text("print('ok')\n")
    (bundle / "llmc.lock.json").write_text(json.dumps({"artifacts": {}, "inputs": {}}))
    code = local.run(
        str(bundle),
        name="x",
        data_root=tmp_path,
        runs_root=tmp_path / "runs",
        stage="serve",
        target="local",
        np=None,
        force=False,
        profile=None,
    )
    assert code == 2
    assert "no serve stage (the spec needs a serve block and an evaluate block)" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_the_stage_wants_no_k8s_target(capsys):
    from helpers import run_cli

    args = ["run", str(ROOT / "specs" / "translator.llm"), "--stage", "serve", "--target", "k8s"]
    code, _, err = run_cli(*args, cwd=ROOT)
    assert code == 2 and "--stage serve runs on this machine only" in err
