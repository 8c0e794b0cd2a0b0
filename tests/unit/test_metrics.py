"""runtime/metrics.py: each scorer against a value computed by hand (the arithmetic is
in the comments), the gates' min / max / max_drop semantics, and the verdict table."""

from __future__ import annotations

import math

import pytest

from llmc.runtime import metrics as M

pytest.importorskip("sacrebleu")
pytest.importorskip("rouge_score")
pytest.importorskip("sklearn")


# --- sacrebleu ----------------------------------------------------------------------------------


def test_bleu_of_a_two_sentence_corpus():
    hyps = ["the cat is on the mat", "there is a cat"]
    refs = ["the cat sat on the mat", "there is a cat here"]
    # Corpus n-gram precisions: 1-grams 9/10, 2-grams 6/8, 3-grams 3/6, 4-grams 1/4;
    # hypothesis 10 words, reference 11: brevity penalty exp(1 - 11/10).
    expected = 100 * math.exp(1 - 11 / 10) * (0.9 * 0.75 * 0.5 * 0.25) ** 0.25
    assert M.bleu(hyps, refs) == pytest.approx(expected, abs=1e-6)  # 48.77


def test_bleu_smooths_a_missing_4gram():
    # 1-3-grams 3/4, 2/3, 1/2 and no 4-gram match: sacrebleu's default "exp" smoothing
    # counts the first zero precision as 1 / (2 x 1), lengths are equal (no penalty).
    expected = 100 * (0.75 * (2 / 3) * 0.5 * 0.5) ** 0.25
    assert M.bleu(["a b c d"], ["a b c e"]) == pytest.approx(expected, abs=1e-6)  # 59.46


def test_identical_corpora_score_perfectly():
    corpus = ["1950-01-06", "1972-02-25"]
    assert M.bleu(corpus, corpus) == pytest.approx(100.0)
    assert M.chrf(corpus, corpus) == pytest.approx(100.0)
    assert M.ter(corpus, corpus) == pytest.approx(0.0)


def test_ter_counts_edits_per_reference_word():
    assert M.ter(["a b c d"], ["a b c e"]) == pytest.approx(25.0)  # one substitution in 4 words


def test_rouge_f_measures():
    scores = M.rouge(["the cat"], ["the cat sat"])
    assert scores["rouge1"] == pytest.approx(0.8)  # P 2/2, R 2/3
    assert scores["rouge2"] == pytest.approx(2 / 3)  # P 1/1, R 1/2
    assert scores["rougeL"] == pytest.approx(0.8)  # LCS 2


def test_scorers_reject_mismatched_lengths():
    with pytest.raises(M.MetricError):
        M.bleu(["a"], ["a", "b"])
    with pytest.raises(M.MetricError):
        M.accuracy([], [])


# --- classification ----------------------------------------------------------------------------


def test_accuracy_and_macro_f1():
    y_true, y_pred = [0, 1, 2, 2], [0, 2, 2, 2]
    assert M.accuracy(y_true, y_pred) == pytest.approx(0.75)
    # class 0: F1 1; class 1: never predicted, F1 0; class 2: P 2/3, R 1, F1 0.8.
    assert M.macro_f1(y_true, y_pred) == pytest.approx((1 + 0 + 0.8) / 3)
    assert M.classification_scores(y_true, y_pred, ["accuracy", "f1"]) == pytest.approx({"accuracy": 0.75, "f1": 0.6})


def test_perplexity_and_percentiles():
    assert M.perplexity(3 * math.log(2), 3) == pytest.approx(2.0)
    assert M.percentile([1, 2, 3, 4], 50) == pytest.approx(2.5)
    assert M.percentile([4, 1, 3, 2], 99) == pytest.approx(3.97)  # 3 + 0.97 x (4 - 3)
    assert M.latency([0.01]) == {"latency_p50": 0.01, "latency_p99": 0.01}


def test_files_size_counts_folders(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"x" * 10)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.bin").write_bytes(b"y" * 5)
    assert M.files_size([tmp_path]) == 15
    assert M.files_size([tmp_path / "a.bin", tmp_path / "missing"]) == 10


# --- gates --------------------------------------------------------------------------------------


def verdicts(gates):
    return [(g.metric, g.bound, g.verdict) for g in gates]


def test_min_and_max_bounds():
    specs = [M.GateSpec("accuracy", min=0.9), M.GateSpec("latency_p99", max=0.010), M.GateSpec("bleu", min=30.0)]
    gates = M.check_gates(specs, {"accuracy": 0.9, "latency_p99": 0.012, "bleu": 31.5})
    # 0.9 >= 0.9 passes exactly at the bound.
    assert verdicts(gates) == [("accuracy", "min", "pass"), ("latency_p99", "max", "FAIL"), ("bleu", "min", "pass")]
    assert not M.passed(gates)


def test_max_drop_is_a_fall_for_higher_is_better_metrics():
    specs = [M.GateSpec("bleu", max_drop=1.0), M.GateSpec("accuracy", max_drop=0.01)]
    base = {"bleu": 30.0, "accuracy": 0.95}
    ok = M.check_gates(specs, {"bleu": 29.2, "accuracy": 0.945}, base)
    assert verdicts(ok) == [("bleu", "max_drop", "pass"), ("accuracy", "max_drop", "pass")]
    assert ok[0].change == pytest.approx(0.8)
    bad = M.check_gates(specs, {"bleu": 28.5, "accuracy": 0.93}, base)
    assert verdicts(bad) == [("bleu", "max_drop", "FAIL"), ("accuracy", "max_drop", "FAIL")]
    # An improvement is a negative fall: it passes.
    better = M.check_gates(specs, {"bleu": 35.0, "accuracy": 0.99}, base)
    assert M.passed(better) and better[0].change == pytest.approx(-5.0)


def test_max_drop_is_a_rise_for_the_other_metrics():
    specs = [
        M.GateSpec("ter", max_drop=2.0),
        M.GateSpec("latency_p99", max_drop=0.005),
        M.GateSpec("perplexity", max_drop=0.5),
    ]
    base = {"ter": 50.0, "latency_p99": 0.020, "perplexity": 3.0}
    gates = M.check_gates(specs, {"ter": 51.0, "latency_p99": 0.030, "perplexity": 2.0}, base)
    assert verdicts(gates) == [
        ("ter", "max_drop", "pass"),
        ("latency_p99", "max_drop", "FAIL"),
        ("perplexity", "max_drop", "pass"),
    ]
    assert gates[1].change == pytest.approx(0.010)


def test_max_drop_without_baseline_is_skipped_and_missing_metrics_fail():
    specs = [M.GateSpec("bleu", min=10.0, max_drop=1.0), M.GateSpec("perplexity", max=5.0)]
    gates = M.check_gates(specs, {"bleu": 12.0, "perplexity": None})
    assert verdicts(gates) == [("bleu", "min", "pass"), ("bleu", "max_drop", "skipped"), ("perplexity", "max", "FAIL")]
    assert gates[2].note == "metric not computed"
    # A skipped gate does not fail the run; the missing metric does.
    assert not M.passed(gates)
    assert M.passed(gates[:2])
    missing_base = M.check_gates([M.GateSpec("bleu", max_drop=1.0)], {"bleu": 12.0}, {"chrf": 40.0})
    assert verdicts(missing_base) == [("bleu", "max_drop", "FAIL")]


def test_gate_json_shape():
    gate = M.check_gates([M.GateSpec("accuracy", min=0.9)], {"accuracy": 0.8})[0]
    assert gate.as_dict() == {
        "metric": "accuracy",
        "bound": "min",
        "limit": 0.9,
        "value": 0.8,
        "baseline": None,
        "change": None,
        "verdict": "FAIL",
        "passed": False,
        "note": "",
    }


# --- the table -----------------------------------------------------------------------------------


def test_verdict_table():
    values = {"accuracy": 0.9815, "f1": 0.97, "latency_p99": 0.0123, "model_size": 453_648}
    specs = [M.GateSpec("accuracy", min=0.9, max_drop=0.01), M.GateSpec("latency_p99", max=0.010)]
    gates = M.check_gates(specs, values, {"accuracy": 0.99})
    lines = M.table(values, gates).splitlines()
    assert lines[0].split() == ["metric", "value", "bound", "verdict"]
    assert set(lines[1]) <= {"-", " "}
    rows = [" ".join(line.split()) for line in lines[2:]]
    assert rows == [
        "accuracy 0.9815 >= 0.9000 pass",
        "accuracy 0.9815 fall <= 0.0100 (baseline 0.9900, fall 0.0085) pass",
        "latency_p99 12.30 ms <= 10.00 ms FAIL",
        "f1 0.9700 - -",
        "model_size 453.65 kB - -",
    ]
    # Columns line up: every row's value starts where the header's does.
    col = lines[0].index("value")
    assert all(line[col - 2 : col] == "  " for line in lines[2:])


def test_table_shows_missing_values_and_notes():
    gates = M.check_gates([M.GateSpec("bleu", max_drop=1.0)], {"bleu": 20.0})
    text = M.table({"bleu": 20.0, "perplexity": None}, gates)
    assert "skipped (no --baseline model)" in text
    assert "perplexity  n/a" in text


def test_value_formats():
    assert M.format_value("latency_p50", 0.0042) == "4.20 ms"
    assert M.format_value("latency_p50", 1.5) == "1.500 s"
    assert M.format_value("model_size", 14_000_000) == "14.00 MB"
    assert M.format_value("model_size", 512) == "512 B"
    assert M.format_value("bleu", 26.456) == "26.46"
    assert M.format_value("rouge1", 0.5) == "0.5000"
    assert M.format_value("bleu", float("nan")) == "n/a"
