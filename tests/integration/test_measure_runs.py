"""Whether a compress step pays, on real models (runtime/steps/measure.py through
Step.publish, and evaluate's per-step scores): a tiny torch MLP over the digits,
distilled into a much wider student (deliberately slower), exported to ONNX and
"served" as that ONNX model. The rows exist with positive sizes, parameters and
latencies, the slower step and the slower served model are warned about, and
evaluate scores every step's model and checks its gates; the run record carries
both. The hand-made numbers: tests/unit/test_measure.py."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest
from helpers import ROOT, build_spec

from llmc.runtime import records
from llmc.runtime.frameworks import TrainSettings
from llmc.runtime.steps.measure import Settings

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("sklearn")

DIGITS = ROOT / "examples" / "data" / "digits"
SETTINGS = TrainSettings(optimizer={"name": "adam", "lr": 1e-3}, batch_size=16, seed=0)
TIMING = Settings(max_batch=64, valid="valid.csv")  # the classifier spec's max_batch_size


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One thread for torch and onnxruntime ($LLMC_THREADS, as the step scripts' tests run
    them): on shared, busy cores torch's thread pool makes a small model's time swing
    tenfold, and these tests compare times."""
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMC_THREADS", "1")
        torch.set_num_threads(1)
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The classifier spec's MLP (64 -> 256 -> 128 -> 10) in torch, a few Adam steps on the digits."""
    from llmc.runtime import zoo_torch
    from llmc.runtime.data import load_split
    from llmc.runtime.frameworks import adapter_for

    root = tmp_path_factory.mktemp("measure")
    bundle = build_spec(ROOT / "specs" / "classifier.llm", root / "bundle", profile="local")
    cfg = json.loads((bundle / "model.json").read_text())["model"]
    model = zoo_torch.build_model(cfg, seed=0)
    train = load_split(cfg, str(DIGITS / "train.csv"))
    fw = adapter_for("torch")
    fw.train(model, train, SETTINGS, 1, fw.task_loss, 40)
    zoo_torch.save_model(root / "work" / "train" / "model", model, cfg, train.label_names)
    return root / "work"


def step_for(name: str, work: Path, previous: str | None):
    from llmc.runtime.steps.common import Step

    args = argparse.Namespace(
        model=str(work / "train" / "model"),
        output=str(work / "compress"),
        serve=None,
        data_root=str(DIGITS),
        max_steps=2,
        limit=64,
    )
    step = Step(name, previous, args)
    step.measuring = TIMING
    return step


@pytest.fixture(scope="module")
def compressed(trained):
    """distill (a 1024-1024 student: slower than its 256-128 teacher) -> export -> a last
    step that serves export's model as it is."""
    from llmc.runtime.steps.common import copy_model
    from llmc.runtime.steps.distill import distill
    from llmc.runtime.steps.export import export

    work = trained
    shutil.rmtree(work / "compress", ignore_errors=True)
    step = step_for("distill", work, None)
    step.publish(distill(step, {"hidden": [1024, 1024]}, 2.0, 0.5, 1, SETTINGS, "train.csv", "valid.csv"))
    step = step_for("export", work, "distill")
    step.publish(export(step, "valid.csv"))
    step = step_for("build_engine", work, "export")
    copy_model(step.input, step.work)
    step.publish({"engine": "none: export's model served as it is"})
    return work


def test_each_step_has_a_row_with_sizes_parameters_and_latencies(compressed):
    summary = json.loads((compressed / "compress" / "report.json").read_text())
    rows = summary["rows"]
    assert [r["step"] for r in rows] == ["distill", "export", "build_engine"]
    for row in rows:
        assert row["max_batch"] == 64
        for side in ("input", "output"):
            desc = row[side]
            assert desc["bytes"] > 0 and desc["params"] > 0, (row["step"], side)
            for key in ("batch_1", "max_batch"):
                entry = desc["latency"][key]
                assert 0 < entry["p50_s"] <= entry["p99_s"] and entry["runs"] >= 3, (row["step"], side, key)
    distill, export, _ = rows
    assert (distill["input"]["format"], distill["output"]["format"], export["output"]["format"]) == (
        "torch",
        "torch",
        "onnxruntime",
    )
    # (64*256 + 256) + (256*128 + 128) + (128*10 + 10), and the student's (64 + 1) * 1024 + 1025 * 1024 + 1025 * 10.
    assert distill["input"]["params"] == 50_826 and distill["output"]["params"] == 1_126_410
    assert export["output"]["params"] == 1_126_410  # ONNX stores the same weights
    step_report = json.loads((compressed / "compress" / "distill" / "report.json").read_text())
    assert step_report["row"] == distill


def test_a_slower_step_and_a_slower_served_model_are_warned_about(compressed):
    summary = json.loads((compressed / "compress" / "report.json").read_text())
    distill = summary["rows"][0]
    assert distill["verdict"] == "slower", distill  # 20x the multiply-adds at batch 64
    assert distill["warning"].startswith("step distill does not pay") and "batch 64" in distill["warning"]
    served = summary["served"]
    assert served["slower_than"] == "trained" and "timed again" in served["warning"]
    assert "slower than the trained model it was made from" in served["warning"]
    assert summary["warnings"] == [distill["warning"], served["warning"]]


def test_evaluate_scores_each_step_and_the_record_carries_the_rows(compressed, capsys):
    from llmc.runtime.metrics import EvaluateConfig, GateSpec, evaluate_arguments, run_evaluate

    cfg = EvaluateConfig(
        model_name="classifier",
        task="classification",
        splits={"test": "test.csv"},
        default_split="test",
        metrics=["accuracy", "f1"],
        gates=[GateSpec("accuracy", min=0.5, max_drop=0.9), GateSpec("f1", min=0.999)],
    )
    verdict = compressed / "evaluate" / "metrics.json"
    args = evaluate_arguments("evaluate", "test").parse_args(
        [
            "--model",
            str(compressed / "compress" / "model"),
            "--baseline",
            str(compressed / "train" / "model"),
            "--json",
            str(verdict),
            "--data-root",
            str(DIGITS),
        ]
    )
    assert run_evaluate(cfg, args) == 1  # f1 >= 0.999 fails on the served model
    out = capsys.readouterr().out
    assert "compress steps:" in out and "(trained)" in out and "warning: step distill does not pay" in out
    document = json.loads(verdict.read_text())
    steps = document["steps"]
    assert [s["step"] for s in steps] == ["distill", "export", "build_engine"]
    for s in steps:
        assert 0 <= s["metrics"]["accuracy"] <= 1 and s["metrics"]["model_size"] > 0
        assert [(g["metric"], g["bound"]) for g in s["gates"]] == [
            ("accuracy", "min"),
            ("accuracy", "max_drop"),
            ("f1", "min"),
        ]
        assert s["passed"] is False  # f1 >= 0.999 fails everywhere
        assert s["gates"][1]["baseline"] == document["baseline"]["accuracy"]
    # export's ONNX model gives the torch student's answers; the last step is the served model.
    assert steps[1]["metrics"]["accuracy"] == pytest.approx(steps[0]["metrics"]["accuracy"], abs=0.01)
    assert steps[2]["metrics"]["accuracy"] == document["metrics"]["accuracy"]
    record = compressed.parent / "record"
    record.mkdir()
    (compressed.parent / "bundle-root").mkdir(exist_ok=True)
    (compressed.parent / "bundle-root" / "llmc.lock.json").write_text("{}")
    records.finish_record(record, compressed.parent / "bundle-root", compressed, {"profile": "local"}, [])
    run = json.loads((record / "run.json").read_text())
    rows = run["compress"]["rows"]
    assert [r["step"] for r in rows] == ["distill", "export", "build_engine"]
    assert [r["metrics"]["accuracy"] for r in rows] == [s["metrics"]["accuracy"] for s in steps]
    assert rows[0]["output"]["latency"]["max_batch"]["p50_s"] > 0 and rows[0]["gates_passed"] is False
    assert (record / "compress-report.json").is_file()


def test_a_model_this_machine_cannot_run_is_a_row_without_latencies(trained, tmp_path):
    """A TensorRT plan (no TensorRT here): sized, not timed, and the row says why."""
    from llmc.runtime.folders import write_meta
    from llmc.runtime.steps import measure

    plan = tmp_path / "engine"
    plan.mkdir()
    (plan / "model.plan").write_bytes(b"\0" * 1234)
    write_meta(plan, {"format": "llmc-tensorrt-1", "model": {}})
    before, after = measure.measure_models([trained / "train" / "model", plan], TIMING, str(DIGITS))
    assert after["bytes"] == 1234 and after["latency"] == {} and "TensorRT" in after["note"]
    assert before["params"] == 50_826 and before["latency"]["max_batch"]["p50_s"] > 0  # timed alone
    row = measure.make_row("build_engine", before, after, 64)
    assert row["verdict"] == "not timed" and row["warning"] is None
