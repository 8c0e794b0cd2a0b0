"""The compress target: the local translator bundle's five steps run as subprocesses
on a tiny torch model (distill -> prune -> export -> quantize (static int8) ->
build_engine), then a dynamic-int8 variant and the TensorFlow classifier's steps.
The checks are made here, independently of the steps' own reports: the student is
smaller, the pruned layers reach the sparsity, the ONNX graphs agree with torch on
logits and on greedy outputs, quantization shrinks the file, and the model lands in
the Triton / TF Serving layout the serve/ artifacts expect."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, run_cli, train_translator

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

SPECS = ROOT / "specs"
DATA = ROOT / "examples" / "data"
TRAINING_STEPS = ("distill", "prune")


def build(spec: Path, out: Path, profile: str | None = "local") -> Path:
    code, _, err = run_cli("build", str(spec), "-o", str(out), *(["--profile", profile] if profile else []))
    assert code == 0, err
    return out


def run(script: Path, *args: str, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    # One thread per framework: the cores here are shared (see test_target_evaluate.py).
    env = {**os.environ, "LLMC_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def run_step(bundle: Path, step: str, model: Path | None, out: Path, *extra: str, env: dict | None = None) -> dict:
    """Run one step; without `model` the script runs bare (its folders from $LLMC_OUTPUT)."""
    where = ("--model", str(model), "--output", str(out)) if model is not None else ()
    r = run(bundle / "compress" / f"{step}.py", *where, "--data-root", str(SPECS), *extra, env=env)
    assert r.returncode == 0, f"{step}: {r.stdout}\n{r.stderr}"
    return json.loads((out / step / "report.json").read_text())


def model_block(bundle: Path) -> dict:
    return json.loads((bundle / "model.json").read_text())["model"]


def ort_session(path: Path):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def valid_rows(cfg: dict, n: int = 12) -> dict:
    from llmc.runtime.data import load_split

    split = load_split(cfg, str(DATA / "dates" / "valid.tsv"))
    return {k: v[:n] for k, v in split.arrays.items()}


# --- the local translator's pipeline -------------------------------------------------------------


@pytest.fixture(scope="module")
def translator_bundle(tmp_path_factory):
    return build(SPECS / "translator.llm", tmp_path_factory.mktemp("translator") / "bundle")


@pytest.fixture(scope="module")
def teacher(translator_bundle, tmp_path_factory):
    from llmc.runtime import zoo_torch

    cfg = model_block(translator_bundle)
    out = tmp_path_factory.mktemp("teacher") / "model"
    zoo_torch.save_model(str(out), train_translator(cfg), cfg, None)
    return out


@pytest.fixture(scope="module")
def pipeline(translator_bundle, teacher, tmp_path_factory):
    """OUT after every step of the bundle, and each step's report."""
    out = tmp_path_factory.mktemp("compress") / "out"
    steps = [p.stem for p in sorted((translator_bundle / "compress").glob("*.py"))]
    assert sorted(steps) == sorted(["distill", "prune", "export", "quantize", "build_engine"])
    reports = {}
    for step in ("distill", "prune", "export", "quantize", "build_engine"):
        extra = ("--max-steps", "4", "--limit", "256") if step in TRAINING_STEPS else ()
        reports[step] = run_step(translator_bundle, step, teacher, out, *extra)
    return out, reports


def test_scripts_follow_the_pipeline_order(translator_bundle):
    text = {
        s: (translator_bundle / "compress" / f"{s}.py").read_text()
        for s in ("distill", "prune", "export", "quantize", "build_engine")
    }
    assert "PREVIOUS = None" in text["distill"]
    assert "PREVIOUS = 'distill'" in text["prune"]
    assert "PREVIOUS = 'prune'" in text["export"]
    assert "PREVIOUS = 'export'" in text["quantize"]
    assert "PREVIOUS = 'quantize'" in text["build_engine"]
    assert "STUDENT = {'layers': 1, 'd_model': 64, 'heads': 2, 'd_ff': 128}" in text["distill"]
    assert "SPARSITY = 0.3" in text["prune"] and "METHOD = 'magnitude'" in text["prune"]
    assert "METHOD = 'static'" in text["quantize"] and "SAMPLES = 128" in text["quantize"]
    assert "CALIBRATION = '../examples/data/dates/valid.tsv'" in text["quantize"]
    assert "'triton_platform': 'onnxruntime_onnx'" in text["build_engine"]
    lock = json.loads((translator_bundle / "llmc.lock.json").read_text())
    assert {f"compress/{s}.py" for s in text} <= set(lock["artifacts"])


def test_a_step_without_its_input_exits_2(translator_bundle, teacher, tmp_path):
    r = run(translator_bundle / "compress" / "quantize.py", "--model", str(teacher), "--output", str(tmp_path))
    assert r.returncode == 2
    assert "no model from the export step" in r.stderr and "run compress/export.py first" in r.stderr
    assert "Traceback" not in r.stderr
    r = run(translator_bundle / "compress" / "distill.py", "--model", str(tmp_path / "none"), "--output", str(tmp_path))
    assert r.returncode == 2 and "no model at" in r.stderr and "Traceback" not in r.stderr


def test_distill_writes_a_smaller_student(pipeline, teacher):
    from llmc.runtime import zoo_torch

    out, reports = pipeline
    student, meta = zoo_torch.load_model(out / "distill")
    arch = meta["model"]["transformer"]
    assert (arch["layers"], arch["d_model"], arch["heads"], arch["d_ff"]) == (1, 64, 2, 128)
    teacher_model, _ = zoo_torch.load_model(teacher)
    assert zoo_torch.count_params(student) < zoo_torch.count_params(teacher_model) / 2
    r = reports["distill"]
    assert r["student"]["params"] == zoo_torch.count_params(student)
    assert r["student"]["bytes"] < r["teacher"]["bytes"]
    assert r["steps"] == 4 and np.isfinite(r["student"]["valid_loss"])


def test_prune_reaches_the_requested_sparsity(pipeline):
    from torch import nn

    from llmc.runtime import zoo_torch

    out, reports = pipeline
    model, meta = zoo_torch.load_model(out / "prune")
    assert isinstance(model, zoo_torch.Transformer)
    assert meta["pruned"] == {"method": "magnitude", "sparsity": 0.3}
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears
    for m in linears:  # l1_unstructured zeroes round(0.3 x n) entries of each layer
        assert float((m.weight == 0).float().mean()) == pytest.approx(0.3, abs=2e-3)
    assert not any(name.endswith("_orig") for name, _ in model.named_parameters())  # made permanent
    r = reports["prune"]
    assert r["sparsity"] == pytest.approx(0.3, abs=2e-3)
    assert r["gzip_bytes"]["after"] < r["gzip_bytes"]["before"]


def test_export_agrees_with_torch(pipeline):
    """Teacher-forced logits from encoder.onnx + decoder.onnx, and greedy outputs from
    the served model.onnx (the loop in the graph), against the pruned torch model."""
    from llmc.runtime import zoo_torch
    from llmc.runtime.tokenizer import PAD

    out, reports = pipeline
    model, meta = zoo_torch.load_model(out / "prune")
    assert isinstance(model, zoo_torch.Transformer)
    rows = valid_rows(meta["model"])
    src, tgt = rows["source"][:, :32], rows["target"][:, :24]
    with torch.no_grad():
        want = model(torch.as_tensor(src), torch.as_tensor(tgt[:, :-1])).numpy()
        greedy = model.generate(torch.as_tensor(src)).numpy()
    export = out / "export"
    memory, mask = ort_session(export / "encoder.onnx").run(None, {"input_ids": src})
    got = ort_session(export / "decoder.onnx").run(
        ["logits"], {"decoder_input_ids": tgt[:, :-1], "memory": memory, "memory_mask": mask}
    )[0]
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) < 1e-3
    served = ort_session(export / "model.onnx")
    assert [i.name for i in served.get_inputs()] == ["input_ids"]
    assert [o.name for o in served.get_outputs()] == ["output_ids"]
    ids = served.run(None, {"input_ids": src})[0]
    max_len = meta["model"]["transformer"]["max_len"]
    assert ids.shape == (len(src), max_len)
    padded = np.full_like(ids, PAD)
    padded[:, : greedy.shape[1]] = greedy
    np.testing.assert_array_equal(ids, padded)
    # Dynamic batch and length: one row of another length gives that row's output.
    one = served.run(None, {"input_ids": src[3:4, :20]})[0]
    with torch.no_grad():
        alone = model.generate(torch.as_tensor(src[3:4, :20])).numpy()
    np.testing.assert_array_equal(one[0, : alone.shape[1]], alone[0])
    check = reports["export"]["check"]
    assert check["greedy_agreement"] == 1.0 and check["max_abs_logit_diff"] < 1e-3


def test_static_int8_quantization_shrinks_the_model(pipeline):
    out, reports = pipeline
    export, quant = out / "export", out / "quantize"
    for name in ("encoder.onnx", "decoder.onnx"):
        assert (quant / name).stat().st_size < (export / name).stat().st_size, name
    # The MatMul weights become int8; the embeddings (Gather) stay float32.
    assert (quant / "model.onnx").stat().st_size < 0.7 * (export / "model.onnx").stat().st_size
    ops = {n.op_type for n in onnx.load(str(quant / "decoder.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ
    r = reports["quantize"]
    assert r["method"] == "static" and r["calibration"]["samples"] == 128
    assert r["bytes"]["after"] < r["bytes"]["before"]
    ids = ort_session(quant / "model.onnx").run(
        None, {"input_ids": valid_rows(json.loads((quant / "llmc.json").read_text())["model"], 4)["source"]}
    )[0]
    assert ids.shape[0] == 4


def test_build_engine_fills_the_triton_repository(pipeline, translator_bundle, teacher, tmp_path):
    """SERVE/<name>/1/model.onnx and SERVE/<name>/config.pbtxt, SERVE = serve/ beside
    --output: what the k8s serving pods copy from ($LLMC_OUTPUT/serve/<name>/)."""
    out, reports = pipeline
    repo = out.parent / "serve" / "translator"
    assert (repo / "config.pbtxt").read_text() == (
        translator_bundle / "serve" / "model_repository" / "translator" / "config.pbtxt"
    ).read_text()
    assert 'platform: "onnxruntime_onnx"' in (repo / "config.pbtxt").read_text()
    served = repo / "1" / "model.onnx"
    assert served.read_bytes() == (out / "model" / "model.onnx").read_bytes()
    session = ort_session(served)
    assert session.get_inputs()[0].name == "input_ids" and session.get_outputs()[0].name == "output_ids"
    r = reports["build_engine"]
    assert r["engine"] == "onnxruntime" and r["optimization"] == "extended"
    assert r["serving"] == {"platform": "triton", "path": str(repo), "name": "translator"}
    assert sorted(p.name for p in out.parent.joinpath("serve").iterdir()) == ["translator"]
    summary = json.loads((out / "report.json").read_text())
    assert summary["steps"] == ["distill", "prune", "export", "quantize", "build_engine"]
    # A row per step, each model timed beside its input at batch 1 and the spec's max_batch_size.
    assert [row["step"] for row in summary["rows"]] == summary["steps"]
    for row in summary["rows"]:
        assert row["max_batch"] == 16 and row["verdict"] in ("faster", "same", "slower"), row
        assert row["output"]["bytes"] > 0 and row["output"]["params"] > 0
        assert row["output"]["latency"]["max_batch"]["p50_s"] > 0 and row["input"]["latency"]["batch_1"]["p50_s"] > 0
    assert summary["rows"][0]["input"]["model"] == str(teacher) and summary["served"]["model"] == str(
        out / "build_engine"
    )
    # evaluate reads the compressed model (ONNX through onnxruntime) against the torch teacher.
    metrics = tmp_path / "metrics.json"
    r = run(
        translator_bundle / "evaluate" / "evaluate.py",
        "--model",
        str(out / "model"),
        "--baseline",
        str(teacher),
        "--json",
        str(metrics),
        "--data-root",
        str(SPECS),
        "--limit",
        "8",
    )
    assert r.returncode in (0, 1), r.stderr
    doc = json.loads(metrics.read_text())
    assert doc["format"] == "onnxruntime" and doc["metrics"]["model_size"] == served.stat().st_size
    assert doc["metrics"]["perplexity"] > 1
    # ... and every step's model on the gated metrics, with the gates checked on each.
    assert [s["step"] for s in doc["steps"]] == summary["steps"]
    assert all(0 <= s["metrics"]["bleu"] <= 100 and s["gates"] for s in doc["steps"])
    assert doc["steps"][-1]["metrics"]["bleu"] == doc["metrics"]["bleu"]
    drop = next(g for g in doc["gates"] if g["bound"] == "max_drop")
    assert drop["baseline"] == doc["baseline"]["bleu"] and drop["change"] == pytest.approx(
        doc["baseline"]["bleu"] - doc["metrics"]["bleu"]
    )


# --- a spec that serves without a compress block ----------------------------------------------------


def without_compress(text: str) -> str:
    """The spec with its compress block and the profiles' compress settings taken out."""
    start = text.index("\ncompress {") + 1
    end = text.index("\n}\n", start) + 3
    kept = text[:start] + text[end:]
    return "\n".join(line for line in kept.splitlines() if not line.strip().startswith("compress.")) + "\n"


def test_a_spec_that_serves_without_compress_still_fills_the_serving_layout(teacher, tmp_path):
    """No compress block: the bundle's compress stage is export and build_engine alone,
    and they leave the trained model, as ONNX, where the Triton config and the serving
    pods' init container expect it (before, nothing wrote serve/ and Triton's config
    asked for a TorchScript model.pt that training never writes)."""
    from llmc.runtime.runner import Bundle, plan_stages

    spec = tmp_path / "specs" / "translator.llm"
    spec.parent.mkdir()
    spec.write_text(without_compress((SPECS / "translator.llm").read_text()))
    bundle = build(spec, tmp_path / "bundle")
    assert sorted(p.name for p in (bundle / "compress").iterdir()) == ["build_engine.py", "export.py"]
    assert "PREVIOUS = None" in (bundle / "compress" / "export.py").read_text()
    config = (bundle / "serve" / "model_repository" / "translator" / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in config
    job = (bundle / "k8s" / "job-compress.yaml").read_text()
    assert "compress/export.py" in job and "compress/build_engine.py" in job
    assert "no compress block" in (bundle / "k8s" / "README.md").read_text()
    # The local runner gates and serves what this stage wrote, as with a compress block.
    work = tmp_path / "work"
    stages = plan_stages(Bundle(str(bundle)), work, SPECS, None, with_search=False)
    assert [s.name for s in stages] == ["train", "compress", "evaluate", "serve"]
    assert stages[2].commands[0][stages[2].commands[0].index("--model") + 1] == str(work / "compress" / "model")

    out = tmp_path / "out"
    run_step(bundle, "export", teacher, out)
    report = run_step(bundle, "build_engine", teacher, out)
    assert report["engine"] == "onnxruntime"
    repo = out.parent / "serve" / "translator"
    assert (repo / "config.pbtxt").read_text() == config
    served = repo / "1" / "model.onnx"
    session = ort_session(served)
    assert [i.name for i in session.get_inputs()] == ["input_ids"]
    assert [o.name for o in session.get_outputs()] == ["output_ids"]
    # The served graph is the trained teacher: its greedy outputs are torch's.
    from llmc.runtime import zoo_torch
    from llmc.runtime.tokenizer import PAD

    model, meta = zoo_torch.load_model(teacher)
    assert isinstance(model, zoo_torch.Transformer)
    src = valid_rows(meta["model"])["source"][:, :32]
    (ids,) = session.run(None, {"input_ids": src})
    with torch.no_grad():
        greedy = model.generate(torch.as_tensor(src)).numpy()
    padded = np.full_like(ids, PAD)
    padded[:, : greedy.shape[1]] = greedy
    np.testing.assert_array_equal(ids, padded)


# --- dynamic int8 ------------------------------------------------------------------------------------

DYNAMIC_SPEC = """
model translator {{
  task      = "translation"
  framework = "torch"
  transformer {{
    layers  = 2
    d_model = 128
    heads   = 4
    d_ff    = 256
    vocab   = 260
    max_len = 64
  }}
  data {{
    train = "{data}/train.tsv"
    valid = "{data}/valid.tsv"
    test  = "{data}/test.tsv"
  }}
}}
compress {{
  quantize {{
    precision = "int8"
    method    = "dynamic"
  }}
  engine = "onnxruntime"
}}
"""


def test_dynamic_int8_quantization_shrinks_the_model(teacher, tmp_path):
    """Also runs the scripts bare, as the k8s Job does: $LLMC_OUTPUT/model in,
    $LLMC_OUTPUT/compress out."""
    import shutil

    spec = tmp_path / "dynamic.llm"
    spec.write_text(DYNAMIC_SPEC.format(data=(DATA / "dates").as_posix()), encoding="utf-8")
    bundle = build(spec, tmp_path / "bundle", profile=None)
    assert sorted(p.stem for p in (bundle / "compress").glob("*.py")) == ["build_engine", "export", "quantize"]
    outputs = tmp_path / "outputs"
    shutil.copytree(teacher, outputs / "model")
    out = outputs / "compress"
    env = {"LLMC_OUTPUT": str(outputs)}
    run_step(bundle, "export", None, out, env=env)
    report = run_step(bundle, "quantize", None, out, env=env)
    assert report["input"] == str(out / "export")
    fp32, int8 = out / "export" / "model.onnx", out / "quantize" / "model.onnx"
    assert int8.stat().st_size < 0.5 * fp32.stat().st_size
    ops = {n.op_type for n in onnx.load(str(out / "quantize" / "decoder.onnx")).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
    assert report["method"] == "dynamic" and report["ratio"] < 0.5
    # The teacher-forced argmax barely moves under int8 weights.
    assert report["check"]["top1_agreement"] >= 0.9


# --- TensorFlow ---------------------------------------------------------------------------------------


def blocking(tmp_path: Path, framework: str) -> dict:
    """The environment of a subprocess in which `import <framework>` fails: a
    sitecustomize on PYTHONPATH puts a finder first on sys.meta_path that refuses it."""
    site = tmp_path / f"no-{framework}"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(f"""
import sys

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name == {framework!r} or name.startswith({framework + "."!r}):
            raise ImportError("this bundle must not import {framework}")
        return None

sys.meta_path.insert(0, Refuse())
""")
    return {"PYTHONPATH": os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}


def runtime_imports(bundle: Path) -> list[str]:
    """The `from llmc.runtime... import ...` statements of the bundle's compress and
    evaluate scripts, as written."""
    import ast

    scripts = sorted((bundle / "compress").glob("*.py")) + [bundle / "evaluate" / "evaluate.py"]
    found: set[str] = set()
    for script in scripts:
        for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("llmc.runtime"):
                found.update(f"from {node.module} import {a.name}" for a in node.names)
    return sorted(found)


@pytest.mark.parametrize(
    "spec, framework, other", [("classifier", "tensorflow", "torch"), ("translator", "torch", "tensorflow")]
)
def test_a_bundle_imports_only_its_own_framework(spec, framework, other, tmp_path):
    """Every runtime import of a bundle's scripts, and the adapter its steps train with,
    load without the other framework: a TensorFlow bundle never imports torch."""
    pytest.importorskip(framework)
    bundle = build(SPECS / f"{spec}.llm", tmp_path / "bundle")
    imports = runtime_imports(bundle)
    assert "from llmc.runtime.steps import export" in imports, imports
    assert "from llmc.runtime.scripts import run_script" in imports, imports
    probe = "\n".join(
        [
            "import json, sys",
            *imports,
            "from llmc.runtime.frameworks import adapter_for",
            f"assert callable(adapter_for({framework!r}).train)",
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'tensorflow'})))",
        ]
    )
    r = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == [framework], r.stdout


@pytest.mark.slow
def test_tensorflow_classifier_steps(tmp_path):
    """prune (by hand, with fine-tuning) -> export (SavedModel) -> quantize (TensorFlow
    Lite) -> build_engine (onnxruntime: the SavedModel served as it is, in TF Serving's
    layout). The TensorFlow model is trained in a subprocess: TensorFlow and torch in
    one process fight over the cores."""
    pytest.importorskip("tensorflow")
    bundle = build(SPECS / "classifier.llm", tmp_path / "bundle")
    model = tmp_path / "model"
    trainer = tmp_path / "train_tf.py"
    trainer.write_text(f"""
import json, sys
import tensorflow as tf
from llmc.runtime import zoo_tf
from llmc.runtime.data import batches, epoch_order, load_split
cfg = json.load(open({str(bundle / "model.json")!r}))["model"]
train = load_split(cfg, {str(DATA / "digits" / "train.csv")!r})
model = zoo_tf.build_model(cfg, seed=0)
opt = zoo_tf.make_optimizer({{"name": "adam", "lr": 2e-3}})
@tf.function
def step(batch):
    with tf.GradientTape() as tape:
        loss, count, _ = zoo_tf.batch_loss(model, batch, training=True)
        loss = loss / count
    opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
for epoch in range(3):
    for batch in batches(train, epoch_order(len(train), 0, epoch), 64, trim=False):
        step(zoo_tf.to_inputs(batch))
zoo_tf.save_model({str(model)!r}, model, cfg, train.label_names)
""")
    r = run(trainer)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    # The steps run where torch cannot be imported: a TensorFlow bundle never needs it.
    no_torch = blocking(tmp_path, "torch")
    prune = run_step(bundle, "prune", model, out, env=no_torch)
    # The spec's structured 50%: half of each hidden layer's units go, with their weights.
    hidden = json.loads((bundle / "model.json").read_text())["model"]["mlp"]["hidden"]
    assert prune["method"] == "structured" and prune["finetune_steps"] > 0
    assert prune["shape"] == {"hidden": [h // 2 for h in hidden]}
    assert prune["params"]["after"] < 0.5 * prune["params"]["before"]
    assert prune["quality"]["after"]["valid_accuracy"] > 0.85
    export = run_step(bundle, "export", model, out, env=no_torch)
    assert export["check"]["max_abs_logit_diff"] < 1e-4
    quant = run_step(bundle, "quantize", model, out, env=no_torch)
    assert (out / "quantize" / "model.tflite").stat().st_size < 0.5 * quant["bytes"]["before"]
    assert quant["check"]["top1_agreement"] >= 0.9
    # The step's model is the TensorFlow Lite file: measured (timed beside the SavedModel), not served.
    row = quant["row"]
    assert row["served"] is False and row["output"]["model"] == str(out / "quantize" / "model.tflite")
    assert (row["input"]["format"], row["output"]["format"]) == ("savedmodel", "tflite")
    assert row["output"]["params"] == row["input"]["params"] > 0  # the same weights, stored as int8
    assert row["output"]["latency"]["max_batch"]["p50_s"] > 0 and row["max_batch"] == 64
    engine = run_step(bundle, "build_engine", model, out, env=no_torch)
    assert engine["engine"] == "savedmodel"
    assert engine["row"]["served"] is True and engine["row"]["output"]["format"] == "savedmodel"
    summary = json.loads((out / "report.json").read_text())
    assert [r["step"] for r in summary["rows"]] == ["prune", "export", "quantize", "build_engine"]
    assert summary["served"]["model"] == str(out / "build_engine")
    served = out.parent / "serve" / "classifier" / "1"  # TF Serving's <base_path>/<version>/
    assert (served / "saved_model.pb").is_file() and (served / "variables").is_dir()
    # The served SavedModel is the smaller model: its kernels have the pruned widths.
    from llmc.runtime import zoo_tf

    keras_model, meta = zoo_tf.load_model(str(out / "model"))
    kernels = [v.shape for v in keras_model.trainable_variables if v.path.endswith("kernel")]
    widths = [64, *(h // 2 for h in hidden), 10]  # 64 pixels in, 10 classes out
    assert [tuple(k) for k in kernels] == list(itertools.pairwise(widths))
    assert meta["model"]["mlp"]["hidden"] == [h // 2 for h in hidden]


# --- hostile strings -------------------------------------------------------------------------------

HOSTILE_SPEC = r"""
model "x\"\"\"\n{{ y }} \\N{bad} é" {
  task      = "translation"
  framework = "torch"
  transformer {
    layers  = 2
    d_model = 32
    heads   = 2
    vocab   = 260
    max_len = 32
  }
  data {
    train = "da\"\"\"ta/tr ain.tsv"
    valid = "data/va\\lid.tsv"
    test  = "data/te'st.tsv"
  }
}
compress {
  distill {
    student {
      layers = 1
    }
  }
  quantize {
    calibration = "ca\"\"\"l\\.tsv"
  }
  engine = "onnxruntime"
}
evaluate {
  metric "bleu" {
    min = 1.0
  }
}
"""


def test_hostile_strings_stay_data(tmp_path):
    """Quotes, triple quotes, backslashes, newlines and template syntax in the model name
    and paths: every script parses, its docstring and constants hold them exactly, and
    --help runs."""
    import ast

    spec = tmp_path / "hostile.llm"
    spec.write_text(HOSTILE_SPEC, encoding="utf-8")
    bundle = build(spec, tmp_path / "bundle", profile=None)
    name = 'x"""\n{{ y }} \\N{bad} é'
    scripts = sorted((bundle / "compress").glob("*.py")) + [bundle / "evaluate" / "evaluate.py"]
    assert len(scripts) == 5
    for script in scripts:
        tree = ast.parse(script.read_text(encoding="utf-8"))
        # The docstring's source escapes them; its value is the name itself.
        assert name in (ast.get_docstring(tree, clean=False) or ""), script.name
        values = {
            n.targets[0].id: n.value
            for n in tree.body
            if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)
        }
        if script.name == "quantize.py":
            assert ast.literal_eval(values["CALIBRATION"]) == 'ca"""l\\.tsv'
            assert ast.literal_eval(values["DATA"]) == {"train": 'da"""ta/tr ain.tsv', "valid": "data/va\\lid.tsv"}
        if script.name == "evaluate.py":
            config = values["CONFIG"]
            assert isinstance(config, ast.Call)
            kw = {k.arg: k.value for k in config.keywords}
            assert ast.literal_eval(kw["model_name"]) == name
            assert ast.literal_eval(kw["splits"])["test"] == "data/te'st.tsv"
    r = run(bundle / "compress" / "quantize.py", "--help")
    assert r.returncode == 0 and "quantize" in r.stdout, r.stderr
