"""Direct tests of the compress stage's runtime (runtime/folders.py, scripts.py,
backends.py, frameworks/, steps/), in this process: the generated scripts that call
it are run end to end in test_target_compress.py."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, build_spec

from llmc.runtime import folders
from llmc.runtime.backends import agreement_text, pad_to
from llmc.runtime.folders import StepError
from llmc.runtime.frameworks import ADAPTERS, TrainSettings, adapter_for, validate_split
from llmc.runtime.scripts import remove_on_failure, run_script
from llmc.runtime.tokenizer import PAD

DIGITS = ROOT / "examples" / "data" / "digits"


# --- folders ---------------------------------------------------------------------------------------------


def test_model_format_prefers_the_served_model(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"")
    (tmp_path / "model.tflite").write_bytes(b"")
    assert folders.model_format(tmp_path) == "tensorflow"  # the SavedModel is what TF Serving serves
    (tmp_path / "model.onnx").write_bytes(b"")
    assert folders.model_format(tmp_path) == "onnx"
    assert folders.model_format(tmp_path / "model.tflite") == "tflite"
    assert folders.model_files(tmp_path) == [tmp_path / "model.onnx"]
    with pytest.raises(StepError, match="no model at"):
        folders.model_format(tmp_path / "missing")
    with pytest.raises(StepError, match="not a model file"):
        (tmp_path / "notes.txt").write_text("x")
        folders.model_format(tmp_path / "notes.txt")


def test_data_paths_resolve_against_the_data_root(tmp_path):
    assert folders.resolve_data("data/a.csv", tmp_path) == str(tmp_path / "data" / "a.csv")
    assert folders.resolve_data("gs://b/a.csv", tmp_path) == "gs://b/a.csv"
    assert folders.resolve_data("/abs/a.csv", tmp_path) == "/abs/a.csv"
    assert folders.resolve_data(None, tmp_path) is None


def test_threads_setting_is_checked(monkeypatch):
    monkeypatch.setenv("LLMC_THREADS", "2")
    assert folders.cpu_threads() == 2
    monkeypatch.setenv("LLMC_THREADS", "zero")
    with pytest.raises(StepError, match="LLMC_THREADS"):
        folders.cpu_threads()
    monkeypatch.delenv("LLMC_THREADS")
    assert folders.cpu_threads() is None


def test_sizes_count_folders_and_gzip_shrinks_zeros(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "w.bin").write_bytes(bytes(4096))
    (tmp_path / "a.bin").write_bytes(b"12345")
    assert folders.size_of([tmp_path]) == 4101
    assert folders.gzip_size(tmp_path / "sub" / "w.bin") < 100


# --- scripts ---------------------------------------------------------------------------------------------


def test_run_script_reports_user_errors_in_one_line_and_removes_partial_folders(tmp_path, capsys):
    partial = tmp_path / ".distill.partial"
    partial.mkdir()

    def main(argv):
        remove_on_failure(partial)
        raise StepError("no model here")

    assert run_script(main, []) == 2
    assert "error: no model here" in capsys.readouterr().err
    assert not partial.exists()


@pytest.mark.parametrize(
    "exc, status, text",
    [(ImportError("no module named x"), 2, "runtime dependency is missing"), (KeyboardInterrupt(), 130, "interrupted")],
)
def test_run_script_exit_statuses(exc, status, text, capsys):
    def main(argv):
        raise exc

    assert run_script(main, []) == status
    assert text in capsys.readouterr().err


def test_run_script_passes_the_status_through():
    assert run_script(lambda argv: None, []) == 0
    assert run_script(lambda argv: 1, []) == 1


# --- frameworks ------------------------------------------------------------------------------------------


def test_only_trained_formats_have_an_adapter():
    assert set(ADAPTERS) == {"torch", "tensorflow"}
    for fmt in ("onnx", "tflite", "tensorrt"):
        assert adapter_for(fmt) is None


def test_validate_split_averages_over_examples():
    from llmc.runtime.data import Split

    split = Split({"features": np.zeros((5, 2), np.float32), "label": np.arange(5)}, "features", None, "x")
    calls = []

    def loss_of(batch):
        calls.append(len(batch["label"]))
        n = len(batch["label"])
        return 2.0 * n, n, n - 1  # loss 2 per example, one wrong per batch

    out = validate_split(split, 2, loss_of)
    assert calls == [2, 2, 1]
    assert out == {"valid_loss": 2.0, "valid_accuracy": round(2 / 5, 6)}


# --- steps: one distill and one prune for both frameworks --------------------------------------------------


def test_student_config_defaults_d_ff_and_checks_heads():
    from llmc.runtime.steps.distill import student_config

    teacher = {"transformer": {"layers": 4, "d_model": 64, "heads": 4, "d_ff": 256}}
    student = student_config(teacher, {"layers": 2, "d_model": 32})
    assert student["transformer"] == {"layers": 2, "d_model": 32, "heads": 4, "d_ff": 128}
    assert teacher["transformer"]["d_model"] == 64  # the teacher's block is not changed
    assert student_config(teacher, {"d_model": 32, "d_ff": 50})["transformer"]["d_ff"] == 50
    with pytest.raises(StepError, match="not a multiple of heads"):
        student_config(teacher, {"d_model": 30})
    assert student_config({"mlp": {"hidden": [8]}}, {"hidden": [4]}) == {"mlp": {"hidden": [4]}}


@pytest.fixture(scope="module")
def torch_mlp(tmp_path_factory):
    """A small torch MLP over the digits (the classifier spec's model block)."""
    torch = pytest.importorskip("torch")
    from llmc.runtime import zoo_torch

    root = tmp_path_factory.mktemp("mlp")
    bundle = build_spec(ROOT / "specs" / "classifier.llm", root / "bundle", profile="local")
    cfg = json.loads((bundle / "model.json").read_text())["model"]
    torch.manual_seed(0)
    model = zoo_torch.build_model(cfg, seed=0)
    from llmc.runtime.data import load_split

    names = load_split(cfg, str(DIGITS / "train.csv")).label_names
    zoo_torch.save_model(root / "model", model, cfg, names)
    return root / "model"


def step_for(name: str, model: Path, out: Path, previous: str | None = None):
    from llmc.runtime.steps.common import Step

    args = argparse.Namespace(
        model=str(model), output=str(out), serve=None, data_root=str(DIGITS), max_steps=3, limit=64
    )
    return Step(name, previous, args)


SETTINGS = TrainSettings(optimizer={"name": "adam", "lr": 1e-3}, batch_size=16, seed=0)


def test_prune_torch_reaches_the_sparsity_and_publishes(torch_mlp, tmp_path):
    from llmc.runtime.steps.prune import prune

    step = step_for("prune", torch_mlp, tmp_path / "out")
    report = prune(step, "magnitude", 0.5, 1, SETTINGS, "train.csv", "valid.csv")
    assert report["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert report["layers"] == 2  # the MLP's two hidden layers; the output layer is kept
    assert report["finetune_steps"] == 3  # --max-steps
    assert 0 < report["overall_sparsity"] < report["sparsity"]
    step.publish(report)
    assert folders.model_format(tmp_path / "out" / "model") == "torch"
    summary = json.loads((tmp_path / "out" / "report.json").read_text())
    assert summary["steps"] == ["prune"] and summary["prune"]["method"] == "magnitude"


def test_distill_torch_trains_a_smaller_student(torch_mlp, tmp_path):
    from llmc.runtime.steps.distill import distill

    step = step_for("distill", torch_mlp, tmp_path / "out")
    report = distill(step, {"hidden": [32]}, 2.0, 0.5, 1, SETTINGS, "train.csv", "valid.csv")
    assert report["student"]["params"] < report["teacher"]["params"]
    assert report["steps"] == 3
    meta = folders.read_meta(step.work)
    assert meta["model"]["mlp"]["hidden"] == [32] and meta["distilled_from"] == str(torch_mlp)


def test_steps_refuse_a_model_they_cannot_read(torch_mlp, tmp_path):
    from llmc.runtime.steps.distill import distill
    from llmc.runtime.steps.quantize import quantize

    step = step_for("quantize", torch_mlp, tmp_path / "out")
    with pytest.raises(StepError, match=r"quantize needs the exported model .* found torch"):
        quantize(step, "int8", "dynamic", None, 8)
    onnx_folder = tmp_path / "onnx"
    onnx_folder.mkdir()
    (onnx_folder / "model.onnx").write_bytes(b"")
    step = step_for("distill", onnx_folder, tmp_path / "out")
    with pytest.raises(StepError, match="distill needs the trained torch or TensorFlow model, found onnx"):
        distill(step, {}, 2.0, 0.5, 1, SETTINGS, "train.csv", "valid.csv")


def test_tensorflow_masks_zero_exactly_the_requested_share():
    pytest.importorskip("tensorflow")
    from llmc.runtime.frameworks import tf as adapter

    class Kernel:
        def __init__(self, w):
            self.w = w

        def numpy(self):
            return self.w

    w = np.arange(1, 13, dtype=np.float32).reshape(3, 4)  # columns' norms grow left to right
    (magnitude,) = adapter.masks([Kernel(w)], "magnitude", 0.25)
    assert magnitude.sum() == 9 and (magnitude.ravel()[:3] == 0).all()  # the three smallest |w|
    (structured,) = adapter.masks([Kernel(w)], "structured", 0.5)
    assert (structured[:, :2] == 0).all() and (structured[:, 2:] == 1).all()  # whole output units


# --- backends ------------------------------------------------------------------------------------------------


def test_agreement_text_and_padding():
    check = {
        "max_abs_logit_diff": 1.5e-6,
        "top1_agreement": 1.0,
        "reference": "torch",
        "candidate": "onnxruntime",
        "seconds": {"reference": 0.002, "candidate": 0.001},
    }
    assert (
        agreement_text(check)
        == "max |logit difference| 1.5e-06, top-1 agreement 100%, torch 2.0 ms vs onnxruntime 1.0 ms"
    )
    padded = pad_to(np.ones((2, 2), np.int64), 4)
    assert padded.shape == (2, 4) and (padded[:, 2:] == PAD).all() and (padded[:, :2] == 1).all()
