"""`llmc serve`'s pure parts: the serving numbers read from built bundles (the golden
ones), config.pbtxt's text from numbers, which run's model is served, and the request
handling of runtime/serving/handlers.py on a stand-in model. The server itself runs in
tests/integration/test_serve_runs.py."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, run_cli

from llmc.runtime.serving.handlers import (
    FeatureClassifier,
    RequestError,
    TextGenerator,
    Unservable,
    handler_for,
)
from llmc.runtime.serving.runs import NoServedModel, find_gated_run
from llmc.runtime.serving.settings import Batching, SettingsError, Tensor, config_text, read_batching
from llmc.runtime.tokenizer import BOS, EOS, PAD, SEP

GOLDEN = ROOT / "tests" / "golden"
RERUN = "llmc run specs/translator.llm --profile local"


# --- the numbers, from the bundle ----------------------------------------------------------------


def test_the_numbers_are_the_bundles_serving_plan():
    b = read_batching(GOLDEN / "translator-local")
    assert (b.max_batch_size, b.preferred_batch_sizes, b.max_queue_delay_microseconds) == (16, [2, 4, 8, 16], 5000)
    assert b.timeout_microseconds == 200_000  # serve.sla.p99_latency = 200ms in the local profile
    plan = json.loads((GOLDEN / "translator-local" / "serving.json").read_text())
    assert b.max_queue_size == plan["queue"]["max_queue_size"] >= 16
    assert read_batching(GOLDEN / "translator").timeout_microseconds == 80_000
    # The cluster's Triton config and the local server batch alike: both read the plan.
    config = (GOLDEN / "translator" / "serve" / "model_repository" / "translator" / "config.pbtxt").read_text()
    assert [int(n) for n in re.findall(r"preferred_batch_size: (\d+)", config)] == b.preferred_batch_sizes
    c = read_batching(GOLDEN / "classifier-local")
    assert (c.max_batch_size, c.preferred_batch_sizes, c.max_queue_delay_microseconds) == (
        64,
        [2, 4, 8, 16, 32, 64],
        2000,
    )
    assert c.timeout_microseconds == 100_000  # serve.sla.p99_latency = 100ms in the local profile


@pytest.mark.parametrize(
    "edit, message",
    [
        (None, "serving.json is missing: the spec needs a serve block"),
        (lambda plan: "{not json", "cannot read"),
        (lambda plan: "[]", "not a JSON object"),
        (lambda plan: json.dumps({**plan, "queue": {}}), "a serving number is missing or wrong"),
        (lambda plan: json.dumps({**plan, "batching": {**plan["batching"], "max_batch_size": 0}}), "not a positive"),
        (lambda plan: json.dumps({**plan, "batching": {**plan["batching"], "max_batch_size": 1.5}}), "not a positive"),
        (lambda plan: json.dumps({**plan, "queue": {**plan["queue"], "timeout_us": True}}), "not a positive"),
    ],
)
def test_a_bundle_without_a_sound_serving_plan_is_refused(tmp_path, edit, message):
    plan = json.loads((GOLDEN / "translator-local" / "serving.json").read_text())
    if edit is not None:
        (tmp_path / "serving.json").write_text(edit(plan))
    with pytest.raises(SettingsError, match=re.escape(message)):
        read_batching(tmp_path)


def test_config_text_is_the_python_backend_with_batching_and_the_queue_policy():
    batching = Batching(16, [2, 4, 8, 16], 5000, 200_000, 64, "x")
    text = config_text(
        "translator",
        [Tensor("text", "TYPE_STRING", [1])],
        [Tensor("output", "TYPE_STRING", [1])],
        batching,
        {"model_path": '/runs/a "b"/model'},
    )
    assert text.splitlines()[1:] == [
        'name: "translator"',
        'backend: "python"',
        "max_batch_size: 16",
        "input {",
        '  name: "text"',
        "  data_type: TYPE_STRING",
        "  dims: [1]",
        "}",
        "output {",
        '  name: "output"',
        "  data_type: TYPE_STRING",
        "  dims: [1]",
        "}",
        "dynamic_batching {",
        "  preferred_batch_size: 2",
        "  preferred_batch_size: 4",
        "  preferred_batch_size: 8",
        "  preferred_batch_size: 16",
        "  max_queue_delay_microseconds: 5000",
        "  default_queue_policy {",
        "    timeout_action: REJECT",
        "    default_timeout_microseconds: 200000",
        "    allow_timeout_override: false",
        "    max_queue_size: 64",
        "  }",
        "}",
        "instance_group {",
        "  kind: KIND_CPU",
        "  count: 2",
        "}",
        "parameters {",
        '  key: "model_path"',
        '  value: { string_value: "/runs/a \\"b\\"/model" }',
        "}",
    ]


def test_config_text_parses_as_tritons_model_config():
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    from google.protobuf import text_format

    batching = read_batching(GOLDEN / "classifier-local")
    text = config_text(
        "classifier",
        [Tensor("features", "TYPE_FP32", [64])],
        [Tensor("label", "TYPE_STRING", [1]), Tensor("probabilities", "TYPE_FP32", [10])],
        batching,
        {"model_path": "/m"},
    )
    config = text_format.Parse(text, model_config_pb2.ModelConfig())
    policy = config.dynamic_batching.default_queue_policy
    assert config.backend == "python" and config.max_batch_size == 64
    assert policy.timeout_action == model_config_pb2.ModelQueuePolicy.REJECT
    assert policy.default_timeout_microseconds == 100_000 and policy.max_queue_size == batching.max_queue_size
    assert config.parameters["model_path"].string_value == "/m"


# --- which run ------------------------------------------------------------------------------------


def _model(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "llmc.json").write_text("{}")
    (folder / "model.onnx").write_bytes(b"onnx")
    return folder


def _run(root: Path, stamp: str, status: str = "ok", stages=("train", "compress", "evaluate"), passed=True):
    """A run record of translator-local, and (for a run that evaluated) evaluate's metrics."""
    spec = root / "translator-local"
    bundle = root / "bundle"
    bundle.mkdir(exist_ok=True)
    (bundle / "llmc.lock.json").write_text("{}")
    record = spec / stamp
    record.mkdir(parents=True)
    results = [{"name": s, "status": "ok", "seconds": 1.0, "exit_code": 0} for s in stages]
    if status != "ok":
        results[-1]["status"] = status
    info = {"spec": "translator-local", "profile": "local", "target": "local", "bundle": str(bundle)}
    (record / "run.json").write_text(json.dumps({**info, "stages": results, "status": status}))
    model = spec / "work" / "compress" / "model"
    if "evaluate" in stages:
        metrics = spec / "work" / "evaluate" / "metrics.json"
        metrics.parent.mkdir(parents=True, exist_ok=True)
        metrics.write_text(json.dumps({"model": str(model), "passed": passed, "gates": []}))
        later = time.time() + 5  # evaluate ran after the model was written
        os.utime(metrics, (later, later))
    return model


def test_no_run_names_the_command_that_makes_one(tmp_path):
    with pytest.raises(NoServedModel, match=f"no run of translator-local under {tmp_path} yet: `{RERUN}`"):
        find_gated_run(tmp_path, "translator-local", RERUN)


def test_the_last_successful_run_and_the_model_evaluate_passed_are_served(tmp_path):
    model = _model(tmp_path / "translator-local" / "work" / "compress" / "model")
    _run(tmp_path, "20260101T000000Z")
    _run(tmp_path, "20260102T000000Z", stages=("train",))  # a later `--stage train` run gates nothing
    run = find_gated_run(tmp_path, "translator-local", RERUN)
    assert run.record.name == "20260101T000000Z" and run.model == model and run.bundle == tmp_path / "bundle"


def test_a_failed_run_alone_is_not_served_and_the_message_says_where_it_ended(tmp_path):
    _model(tmp_path / "translator-local" / "work" / "compress" / "model")
    _run(tmp_path, "20260101T000000Z", status="failed", stages=("train", "compress"))
    with pytest.raises(NoServedModel, match="the last, 20260101T000000Z, ended failed at compress"):
        find_gated_run(tmp_path, "translator-local", RERUN)


def test_a_model_that_failed_its_gates_last_is_not_served(tmp_path):
    _model(tmp_path / "translator-local" / "work" / "compress" / "model")
    _run(tmp_path, "20260101T000000Z")
    _run(tmp_path, "20260102T000000Z", status="failed", passed=False)
    with pytest.raises(NoServedModel, match=f"failed the spec's gates.*`{RERUN}`"):
        find_gated_run(tmp_path, "translator-local", RERUN)


def test_a_model_rewritten_after_evaluate_is_not_served(tmp_path):
    model = _model(tmp_path / "translator-local" / "work" / "compress" / "model")
    _run(tmp_path, "20260101T000000Z")
    later = time.time() + 60
    os.utime(model / "model.onnx", (later, later))  # a later compress rewrote it, then stopped
    with pytest.raises(NoServedModel, match="changed after evaluate passed it"):
        find_gated_run(tmp_path, "translator-local", RERUN)


def test_records_sort_by_time_with_their_suffixes(tmp_path):
    _model(tmp_path / "translator-local" / "work" / "compress" / "model")
    _run(tmp_path, "20260101T000000Z-10")
    _run(tmp_path, "20260101T000000Z-9", status="failed", stages=("train",))
    assert find_gated_run(tmp_path, "translator-local", RERUN).record.name == "20260101T000000Z-10"


# --- requests ----------------------------------------------------------------------------------------


TRANSLATOR = {
    "model": {
        "name": "translator",
        "task": "translation",
        "mlp": None,
        "transformer": {"kind": "encoder-decoder", "max_len": 8, "vocab": 260},
        "data": {"tokenizer": "bytes"},
    }
}
CLASSIFIER = {"model": {"name": "classifier", "task": "classification", "mlp": {"inputs": 3, "classes": 2}}}


class StandIn:
    """A backends.Backend stand-in: generation echoes the source, classification sums."""

    def generate(self, batch):
        return batch["source"]

    def classify(self, batch):
        x = batch["features"]
        return np.stack([x.sum(1), -x.sum(1)], 1)


def _text(*texts) -> dict:
    return {"text": np.array([[t] for t in texts], dtype=np.object_)}


def test_the_generator_reads_utf8_text_and_answers_text():
    h = handler_for(TRANSLATOR, StandIn())
    assert isinstance(h, TextGenerator)
    assert h.inputs == [Tensor("text", "TYPE_STRING", [1])] and h.outputs == [Tensor("output", "TYPE_STRING", [1])]
    rows = h.rows(_text("März".encode(), b"ab"))
    out = h.answer(rows)["output"]
    assert out.shape == (2, 1) and [x.decode() for x in out[:, 0]] == ["März", "ab"]


@pytest.mark.parametrize(
    "value, message",
    [
        (b"", "the text is empty"),
        (b"   ", "the text is empty"),
        (b"123456789", "9 tokens .* at most 8"),
        (b"ab\xff", "not valid UTF-8 .byte 2"),
    ],
)
def test_the_generator_refuses_text_it_cannot_read(value, message):
    with pytest.raises(RequestError, match=message):
        handler_for(TRANSLATOR).rows(_text(value))


def test_the_generator_refuses_a_shape_without_one_text_per_row():
    with pytest.raises(RequestError, match=r"expected shape \[batch, 1\], got \[1, 2\]"):
        handler_for(TRANSLATOR).rows({"text": np.array([[b"a", b"b"]], dtype=np.object_)})


def test_the_classifier_answers_labels_and_probabilities_that_sum_to_one():
    h = handler_for({**CLASSIFIER, "label_names": ["cat", "dog"]}, StandIn())
    assert isinstance(h, FeatureClassifier)
    out = h.answer(h.rows({"features": np.array([[1, 1, 1], [-1, 0, 0]], dtype=np.float32)}))
    assert [x.decode() for x in out["label"][:, 0]] == ["cat", "dog"]
    assert out["probabilities"].dtype == np.float32 and np.allclose(out["probabilities"].sum(1), 1)
    plain = handler_for(CLASSIFIER)
    assert isinstance(plain, FeatureClassifier) and plain.names == ["0", "1"]  # integer labels: their ids


@pytest.mark.parametrize(
    "features, message",
    [(np.ones((1, 2), np.float32), r"\[batch, 3\], got \[1, 2\]"), (np.array([[1, np.nan, 0]], np.float32), "finite")],
)
def test_the_classifier_refuses_features_it_cannot_read(features, message):
    with pytest.raises(RequestError, match=message):
        handler_for(CLASSIFIER).rows({"features": features})


def _decoder(task: str) -> dict:
    return {
        "model": {**TRANSLATOR["model"], "task": task, "transformer": {"kind": "decoder", "max_len": 8, "vocab": 260}}
    }


class Continues:
    """A decoder backend stand-in: records the prompts and continues each with "!" + EOS."""

    def generate(self, batch):
        self.prompts = batch["prompt"]
        return np.array([[ord("!"), EOS]] * len(batch["prompt"]))


def test_a_language_model_continues_its_prompt():
    backend = Continues()
    h = handler_for(_decoder("language-modeling"), backend)
    assert h.inputs == [Tensor("text", "TYPE_STRING", [1])] and h.outputs == [Tensor("output", "TYPE_STRING", [1])]
    out = h.answer(h.rows(_text(b"ab", "M\u00e4".encode())))["output"]
    assert [x.decode() for x in out[:, 0]] == ["!", "!"]
    # BOS + the text's bytes, PAD on the right: what training framed.
    assert backend.prompts.tolist() == [[BOS, ord("a"), ord("b"), PAD], [BOS, ord("M"), 0xC3, 0xA4]]
    # Room for one token at least: BOS + 7 bytes fill max_len 8.
    h.rows(_text(b"abcdef"))
    with pytest.raises(RequestError, match=r"7 tokens .* at most 6"):
        h.rows(_text(b"abcdefg"))


def test_a_decoder_trained_on_a_source_and_a_target_writes_the_target_after_sep():
    backend = Continues()
    h = handler_for(_decoder("translation"), backend)
    h.answer(h.rows(_text(b"ab")))
    assert backend.prompts.tolist() == [[BOS, ord("a"), ord("b"), SEP]]
    with pytest.raises(RequestError, match=r"6 tokens .* at most 5"):
        h.rows(_text(b"abcdef"))


def test_an_encoder_that_does_not_classify_has_no_contract():
    meta = {"model": {**TRANSLATOR["model"], "transformer": {"kind": "encoder", "max_len": 8, "vocab": 260}}}
    with pytest.raises(Unservable, match="encoder"):
        handler_for(meta)


# --- the command line --------------------------------------------------------------------------------


def test_serve_without_a_run_is_exit_1_naming_the_run_that_makes_one(tmp_path):
    code, out, err = run_cli(
        "serve", "specs/translator.llm", "--profile", "local", "--runs-dir", str(tmp_path), cwd=ROOT
    )
    assert code == 1 and out == ""
    assert err == (
        f"error: no run of translator-local under {tmp_path} yet: "
        f"`llmc run specs/translator.llm --profile local --runs-dir {tmp_path}` trains, compresses and evaluates one\n"
    )


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--http-port", "9000", "--metrics-port", "9000"], "--http-port and --metrics-port are both 9000"),
        (["--http-port", "0"], "--http-port must be a port number from 1 to 65535, not 0"),
        (["--metrics-port", "70000"], "--metrics-port must be a port number"),
        (["--ready-timeout", "0"], "--ready-timeout must be a positive number"),
    ],
)
def test_serve_misuse_is_exit_2(flags, message):
    code, _, err = run_cli("serve", "specs/translator.llm", *flags, cwd=ROOT)
    assert code == 2 and message in err


def test_serve_with_an_unknown_profile_is_exit_2():
    code, _, err = run_cli("serve", "specs/translator.llm", "--profile", "nope", cwd=ROOT)
    assert code == 2 and "has no profile `nope`" in err
