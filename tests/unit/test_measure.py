"""Whether a compress step pays (runtime/steps/measure.py), on hand-made numbers: the
verdicts and warnings of a row, the served model against the models it was made
from, timing in turns, and the rows as evaluate prints them and the run record
carries them (metrics.steps_table, records.compress_rows). The same code on real
models: tests/integration/test_measure_runs.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmc.runtime import metrics, records
from llmc.runtime.data import Split
from llmc.runtime.steps import measure


def model(fmt: str, nbytes: int, p50_1: float | None, p50_max: float | None = None, params: int = 1000) -> dict:
    """A described model: milliseconds in, the row's seconds out (p99 = 1.2 x p50)."""
    latency = {}
    for key, value in (("batch_1", p50_1), ("max_batch", p50_max)):
        if value is not None:
            latency[key] = {"p50_s": value / 1e3, "p99_s": 1.2 * value / 1e3, "runs": 15}
    return {"model": f"/out/{fmt}", "format": fmt, "bytes": nbytes, "params": params, "latency": latency}


# The issue's numbers: int8 is 2.0x smaller than the fp32 ONNX export but slower.
FP32 = model("onnxruntime", 570_847, 2.69, 10.1, params=125_579)
INT8 = model("onnxruntime", 284_291, 3.40, 10.8, params=125_579)


def test_a_step_slower_than_its_input_beyond_the_margin_warns_with_both_latencies():
    slow = model("onnxruntime", 284_291, 3.40, 11.5, params=125_579)  # +13.9% at batch 16
    row = measure.make_row("quantize", FP32, slow, 16)
    assert row["verdict"] == "slower" and row["compared_at"] == "max_batch"
    assert row["change"] == {"bytes": pytest.approx(0.498, abs=1e-3), "params": 1.0, "p50": pytest.approx(1.1386)}
    warning = row["warning"]
    assert warning.startswith("step quantize does not pay")
    assert "at batch 1: p50 3.40 ms vs 2.69 ms (+26%) and at batch 16: p50 11.50 ms vs 10.10 ms (+14%)" in warning
    assert "2.0x smaller on disk (570,847 -> 284,291 bytes)" in warning
    assert "the served one, inherit the cost" in warning


def test_the_issues_int8_model_is_slower_at_batch_1_though_within_the_margin_at_batch_16():
    row = measure.make_row("quantize", FP32, INT8, 16)  # +26% at batch 1, +6.9% at batch 16
    assert row["verdict"] == "slower" and row["slower_at"] == ["batch_1"]
    assert "at batch 1: p50 3.40 ms vs 2.69 ms (+26%), beyond the 10% margin" in row["warning"]
    assert "batch 16" not in row["warning"]


def test_within_the_margin_at_every_batch_size_is_the_same_and_does_not_warn():
    close = model("onnxruntime", 284_291, 2.85, 10.8)  # +6% and +7%: timing noise here
    row = measure.make_row("quantize", FP32, close, 16)
    assert row["verdict"] == "same" and row["warning"] is None and row["slower_at"] == []
    assert measure.make_row("quantize", close, FP32, 16)["verdict"] == "same"


def test_a_difference_that_one_round_of_timing_does_not_show_is_noise():
    before = model("onnxruntime", 100, 1.0, 10.0)
    after = model("onnxruntime", 100, 1.0, 12.0)  # +20% pooled at batch 16
    before["latency"]["max_batch"]["rounds"] = [0.010, 0.010]
    after["latency"]["max_batch"]["rounds"] = [0.0135, 0.0105]  # +35%, then +5%
    assert measure.slower_at(before, after) == [] and measure.make_row("q", before, after, 16)["verdict"] == "same"
    after["latency"]["max_batch"]["rounds"] = [0.0125, 0.0115]  # +25%, then +15%: both rounds show it
    assert measure.slower_at(before, after) == ["max_batch"]
    # Rows timed apart (the served check's first look) compare their pooled p50s only.
    after["latency"]["max_batch"]["rounds"] = [0.0135, 0.0105]
    assert measure.slower_at(before, after, rounds=False) == ["max_batch"]


def test_a_faster_step_is_faster_and_the_margin_is_ten_percent():
    fast = model("onnxruntime", 284_291, 2.0, 8.0)
    assert measure.make_row("quantize", FP32, fast, 16)["verdict"] == "faster"
    assert measure.MARGIN == 0.10
    assert measure.slower(1.101, 1.0) and not measure.slower(1.099, 1.0)


def test_without_a_max_batch_the_rows_compare_at_batch_1():
    before, after = model("torch", 100, 1.0), model("torch", 100, 1.5)
    row = measure.make_row("distill", before, after, None)
    assert row["max_batch"] is None and row["compared_at"] == "batch_1"
    assert row["verdict"] == "slower" and "at batch 1: p50 1.50 ms vs 1.00 ms (+50%)" in row["warning"]
    assert measure.batch_sizes(None) == {"batch_1": 1} and measure.batch_sizes(1) == {"batch_1": 1}
    assert measure.batch_sizes(64) == {"batch_1": 1, "max_batch": 64}


def test_a_model_that_could_not_be_timed_has_no_verdict():
    untimed: dict = {"model": "/out/plan", "format": None, "bytes": 10, "params": None, "latency": {}}
    row = measure.make_row("build_engine", FP32, untimed, 16)
    assert row["verdict"] == "not timed" and row["warning"] is None and row["change"]["p50"] is None
    assert "not timed" in measure.row_line(row)


def test_a_measured_only_model_says_it_is_not_served():
    tflite = model("tflite", 64_312, 0.05, 2.0)
    row = measure.make_row("quantize", model("savedmodel", 454_804, 0.27, 0.53), tflite, 64, served=False)
    assert row["verdict"] == "slower" and "it is measured only, not served" in row["warning"]
    assert "7.1x smaller" in row["warning"]


def rows_of(*steps: tuple[str, dict, dict, bool]) -> list[dict]:
    return [measure.make_row(name, before, after, 16, served) for name, before, after, served in steps]


def test_the_served_model_is_checked_against_every_model_it_was_made_from():
    trained = model("torch", 448_418, 9.0, 20.5)
    export = model("onnxruntime", 570_847, 1.1, 5.5)
    quantize = model("onnxruntime", 323_393, 1.7, 6.7)
    engine = model("onnxruntime", 284_307, 1.6, 6.8)
    for name, m in (("export", export), ("quantize", quantize), ("build_engine", engine)):
        m["model"] = f"/out/{name}"
    rows = rows_of(
        ("export", trained, export, True),
        ("quantize", export, quantize, True),
        ("build_engine", quantize, engine, True),
    )
    chain = measure.served_chain(rows)
    assert [label for label, _ in chain] == ["trained", "export", "quantize"]
    found = measure.fastest_ancestor(engine, chain)
    assert found is not None
    label, fastest = found
    assert label == "export" and fastest == export  # 1.6 vs 1.1 ms at batch 1: the largest slowdown
    text = measure.served_warning(label, engine, export, measure.slower_at(export, engine), 16)
    assert "the served model (onnxruntime, /out/build_engine) is slower than the export step's model" in text
    assert "at batch 1: p50 1.60 ms vs 1.10 ms (+45%) and at batch 16: p50 6.80 ms vs 5.50 ms (+24%)" in text
    assert "2.0x smaller" in text


def test_the_served_check_takes_each_models_fastest_time_in_the_rows():
    """export's ONNX model is timed beside torch (as export's output) and beside int8 (as
    quantize's input): the lower p50 is what the served model is held against."""
    trained = model("torch", 448_418, 9.6, 22.5)
    beside_torch = model("onnxruntime", 570_847, 1.8, 9.6)
    beside_int8 = model("onnxruntime", 570_847, 1.3, 5.9)
    quantize = model("onnxruntime", 323_393, 1.7, 6.8)
    engine = model("onnxruntime", 284_307, 1.7, 6.8)
    beside_int8["model"] = beside_torch["model"] = "/out/export"
    quantize["model"] = "/out/quantize"
    rows = rows_of(
        ("export", trained, beside_torch, True),
        ("quantize", beside_int8, quantize, True),
        ("build_engine", quantize, engine, True),
    )
    chain = dict(measure.served_chain(rows))
    assert measure.p50(chain["export"], "max_batch") == pytest.approx(0.0059)
    assert measure.p50(chain["export"], "batch_1") == pytest.approx(0.0013)
    found = measure.fastest_ancestor(engine, list(chain.items()))
    assert found is not None and found[0] == "export"


def test_a_served_model_as_fast_as_its_ancestors_or_a_faster_unserved_one_is_not_flagged():
    saved = model("savedmodel", 454_804, 0.27, 0.53)
    tflite = model("tflite", 64_312, 0.05, 0.30)  # faster, but TF Serving cannot serve it
    rows = rows_of(
        ("export", saved, saved, True), ("quantize", saved, tflite, False), ("build_engine", saved, saved, True)
    )
    assert [label for label, _ in measure.served_chain(rows)] == ["trained", "export"]
    assert measure.fastest_ancestor(saved, measure.served_chain(rows)) is None
    # Nothing suspect: the check returns without timing anything again.
    checked = measure.check_served(rows, measure.Settings(16, None), None)
    assert checked is not None and (checked["slower_than"], checked["warning"]) == (None, None)
    # ... but the user is told that the measured-only model was faster.
    (note,) = checked["notes"]
    assert note.startswith("the served model is slower than step quantize's model (tflite, measured, not served)")
    assert "at batch 1: p50 0.27 ms vs 0.05 ms (+440%) and at batch 16: p50 0.53 ms vs 0.30 ms (+77%)" in note


def test_time_in_turns_alternates_the_models_and_keeps_to_its_budget():
    calls: list[str] = []
    times = measure.time_in_turns([lambda: calls.append("a"), lambda: calls.append("b")], runs=5, budget_s=60)
    assert calls == ["a", "b"] + ["a", "b", "b", "a"] * 2 + ["a", "b"]  # a warm-up each, then 5 turns, in turn
    assert [len(t) for t in times] == [5, 5] and all(s >= 0 for t in times for s in t)
    calls.clear()
    times = measure.time_in_turns([lambda: calls.append("a")], runs=15, budget_s=0.0, min_runs=3)
    assert len(times[0]) == 3  # past the budget after the minimum


def test_latency_entries_are_percentiles_of_the_runs():
    entry = measure.latency_entry([0.001, 0.002, 0.003, 0.004])
    assert entry == {"p50_s": pytest.approx(0.0025), "p99_s": pytest.approx(0.00397), "runs": 4}


def test_sample_batches_repeat_rows_when_the_split_is_shorter_than_the_batch():
    split = Split(
        {"features": np.arange(6, dtype=np.float32).reshape(3, 2), "label": np.arange(3)}, "features", None, "x"
    )
    out = measure.sample_batches(split, {"batch_1": 1, "max_batch": 5})
    assert out["batch_1"]["features"].tolist() == [[0.0, 1.0]]
    assert out["max_batch"]["label"].tolist() == [0, 1, 2, 0, 1]


# --- the rows as evaluate prints them and run.json carries them ---------------------------------------


def test_the_steps_table_puts_the_trained_model_first_and_marks_what_is_not_served():
    trained = model("savedmodel", 454_820, 0.30, 0.50, params=50_826)
    tflite = model("tflite", 64_312, 0.05, 0.70, params=50_826)
    rows = rows_of(("quantize", trained, tflite, False), ("build_engine", trained, trained, True))
    steps = [
        {"step": "quantize", "metrics": {"accuracy": 0.97}, "passed": True, "note": None},
        {"step": "build_engine", "metrics": {"accuracy": 0.85}, "passed": False, "note": None},
    ]
    text = metrics.steps_table(rows, steps, ["accuracy"], {"accuracy": 0.98})
    lines = text.splitlines()
    assert lines[0].split() == [
        "step", "format", "size", "params", "batch", "1", "p50", "/", "p99", "batch", "16", "p50", "/", "p99",
        "accuracy", "vs", "input", "gates",
    ]  # fmt: skip
    assert lines[2].split()[:4] == ["(trained)", "savedmodel", "454.82", "kB"] and lines[2].endswith("baseline")
    assert "0.9800" in lines[2] and "0.30 / 0.36 ms" in lines[2]
    assert lines[3].startswith("quantize (not served)") and "slower" in lines[3] and lines[3].endswith("pass")
    assert lines[4].startswith("build_engine") and "0.8500" in lines[4] and lines[4].endswith("FAIL")


def test_the_run_record_carries_each_row_with_the_metrics_evaluate_gave_its_model(tmp_path):
    rows = rows_of(("export", FP32, FP32, True), ("quantize", FP32, INT8, True))
    (tmp_path / "compress").mkdir()
    (tmp_path / "evaluate").mkdir()
    summary = {"steps": ["export", "quantize"], "rows": rows, "warnings": ["w"], "served": None}
    (tmp_path / "compress" / "report.json").write_text(json.dumps(summary))
    before = records.compress_rows(tmp_path)
    assert before is not None and [r["metrics"] for r in before["rows"]] == [None, None]  # no evaluate yet
    scored = [
        {"step": "export", "model": FP32["model"], "metrics": {"bleu": 85.2}, "passed": True},
        {"step": "quantize", "model": "/elsewhere", "metrics": {"bleu": 12.0}, "passed": False},  # another run's
    ]
    (tmp_path / "evaluate" / "metrics.json").write_text(json.dumps({"steps": scored}))
    out = records.compress_rows(tmp_path)
    assert out is not None and out["warnings"] == ["w"]
    assert [(r["step"], r["metrics"], r["gates_passed"]) for r in out["rows"]] == [
        ("export", {"bleu": 85.2}, True),
        ("quantize", None, None),
    ]
    assert out["rows"][1]["output"]["bytes"] == 284_291 and out["rows"][1]["verdict"] == "slower"
    (tmp_path / "compress" / "report.json").write_text("{not json")
    assert records.compress_rows(tmp_path) is None
