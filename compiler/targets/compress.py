"""compress target: compress/distill.py, prune.py, export.py, quantize.py, build_engine.py.

Only the steps the spec asks for are generated, plus export and build_engine
whenever there is a compress block, in the language's order:

    distill -> prune -> export -> quantize -> build_engine

A spec that serves without a compress block gets export and build_engine alone
(engine "onnxruntime", full precision): its served model is the trained one, made
servable and copied where the server reads it (plan.compress_steps says why).

Every step takes `--model DIR --output OUT [--data-root DIR]` (the runner passes the
same two folders to each; run bare, as the k8s Job does, they default to
$LLMC_OUTPUT/model and $LLMC_OUTPUT/compress). A step reads what the step before it in THIS pipeline
wrote (`OUT/<previous>/`; the first step reads `--model`, the trained model), so a
re-run of the stage starts from the trained model again, and writes `OUT/<step>/`
(its model and report.json), a copy at `OUT/model/` (what evaluate reads) and the
stage summary `OUT/report.json`. The library behind the scripts is
runtime/steps/ (one module per step; runtime/folders.py describes the model
folders, runtime/frameworks/torch_onnx.py the ONNX export).

Decided here, filled in by the templates:

* each step's previous step (the chain above, without the steps the spec omits);
* the spec's settings of each step; the student's fields as written (d_ff defaults
  to 4 x the student's d_model, as plan.py counts it);
* how the steps that train (distill, prune's fine-tuning) train: the spec's
  optimizer at a constant rate and its global batch on one process, its seed;
* the data paths, as the IR holds them (relative to the main spec's folder), which
  the scripts resolve against --data-root;
* where the serve/ artifacts expect the model: build_engine copies it to
  SERVE/<name>/1/ (SERVE: serve/ beside the --output folder, i.e. $LLMC_OUTPUT/serve,
  which the k8s serving pods' init container copies into /models/): Triton's
  `model.onnx | model.plan | model.savedmodel` with the bundle's config.pbtxt at
  SERVE/<name>/config.pbtxt, or TF Serving's SavedModel (models.config's base_path
  is /models/<name>);
* the batch the report times each step's model at, besides batch 1: the spec's
  serve.batching.max_batch_size (runtime/steps/measure.py; none without a serve block);
* the engine: "onnxruntime" optimises the ONNX graph offline; "tensorrt" builds a
  TensorRT plan (torch, through ONNX) or converts with TF-TRT (TensorFlow), where
  TensorRT is installed, and exits 2 with a message where it is not.
"""

from __future__ import annotations

from typing import NamedTuple

from ..catalog import is_gpu
from ..plan import compress_engine
from . import Artifact, BuildContext
from .docstrings import doc_text, wrapped
from .serving_names import engine_parts, serving_name, triton_platform

DEFAULT_OPTIMIZER = {"name": "adam", "lr": 1e-3, "weight_decay": 0.0, "betas": [0.9, 0.999], "momentum": 0.0}


class StepScript(NamedTuple):
    step: str  # one of plan.COMPRESS_ORDER
    number: int  # this step's place in the pipeline, from 1
    previous: str | None  # the step whose output this one reads; None: --model
    pipeline: list[str]  # every step of this bundle, in order (for the docstring)
    model_name: str  # these three docstring-safe (doc_text)
    framework: str  # "torch" | "tensorflow"
    summary: list[str]  # what this step does with the spec's settings, wrapped for the docstring
    about: list[str]  # the pipeline and this step's folders, wrapped for the docstring
    details: list[str]  # build_engine: the engine and the serving layout, wrapped (paragraphs split by "")
    settings: dict  # the keyword arguments of the step's library function
    train: dict | None  # TrainSettings fields, for the steps that train
    data: dict  # "train" / "valid" -> the spec's paths
    max_batch: int | None  # serve.batching.max_batch_size (None: no serve block): each model is timed at it


def artifacts(ctx: BuildContext) -> list[Artifact]:
    steps = list(ctx.facts.compress_steps)
    return [
        Artifact(f"compress/{step}.py", f"compress/{step}.py.j2", step_script(ctx, steps, i), executable=True)
        for i, step in enumerate(steps)
    ]


def step_script(ctx: BuildContext, steps: list[str], index: int) -> StepScript:
    ir = ctx.ir
    step = steps[index]
    settings, summary, trains = _settings(ctx, step)
    return StepScript(
        step=step,
        number=index + 1,
        previous=steps[index - 1] if index else None,
        pipeline=steps,
        model_name=doc_text(ir.model.name),
        framework=ir.model.framework,
        summary=[doc_text(line) for line in wrapped(f"This step: {summary}.")],
        about=list(wrapped(_about(steps, index))),
        details=_engine_details(ctx, settings) if step == "build_engine" else [],
        settings=settings,
        train=_train_settings(ir) if trains else None,
        data={"train": ir.model.data.train, "valid": ir.model.data.valid},
        max_batch=ir.serve.batching.max_batch_size if ir.serve is not None else None,
    )


def _about(steps: list[str], index: int) -> str:
    step = steps[index]
    reads = f"OUT/{steps[index - 1]}/ (the {steps[index - 1]} step's model)" if index else "--model"
    return (
        f"Pipeline: {' -> '.join(steps)}. Every step gets the same --model (the trained model, train's "
        f"OUTPUT/model; default $LLMC_OUTPUT/model) and --output folder OUT (default $LLMC_OUTPUT/compress; "
        f"$LLMC_OUTPUT defaults to outputs/). This one reads {reads} and writes OUT/{step}/ (its model and "
        f"report.json), a copy at OUT/model/ (what evaluate/evaluate.py reads) and the stage summary "
        f"OUT/report.json, whose row for this step gives its model's size, parameters and latency beside "
        f"its input's and warns when it is slower. Relative data paths are relative to --data-root "
        f"(default $LLMC_DATA_ROOT, else the working directory). The library behind it is llmc/runtime/steps/."
    )


def _engine_details(ctx: BuildContext, settings: dict) -> list[str]:
    ir = ctx.ir
    s = settings
    serving = s["serving"]
    precision = (s["precision"] or "fp32").upper()
    top = serving["max_batch_size"]
    if s["engine"] == "onnxruntime":
        level = (
            "basic, portable to the GPU it is served on" if serving["gpu"] else "extended, for the CPU it is served on"
        )
        engine = (
            f"onnxruntime: each ONNX graph is loaded once with graph optimizations ({level}) and saved "
            f"optimized, so a server loads it ready."
        )
        if ir.model.framework == "tensorflow":
            engine = (
                "onnxruntime: llmc writes no ONNX for TensorFlow models (tf2onnx is not one of its "
                "runtime dependencies), so the SavedModel is served as it is."
            )
    elif ir.model.framework == "torch":
        calib = (
            f" (an IInt8EntropyCalibrator2 over the first {s['samples']} calibration rows, FP16 as the fallback)"
            if s["precision"] == "int8"
            else ""
        )
        length = f", length 1 to {s['max_len']}" if s["max_len"] else ""
        plans = "a serialized plan (model.plan)"
        if serving.get("parts"):
            plans = (
                "serialized plans, one per graph (encoder.plan, decoder.plan: the decoder made one greedy "
                "step; TensorRT does not build the greedy loop of model.onnx, which Triton runs in model.py)"
                if "encoder" in serving["parts"]
                else "a serialized plan of the decoder made one greedy step (decoder.plan; TensorRT does not "
                "build the greedy loop of model.onnx, which Triton runs in model.py)"
            )
        engine = (
            f"TensorRT: the fp32 ONNX model export wrote goes through TensorRT's ONNX parser into "
            f"{plans} with {precision} precision{calib} and one optimization profile "
            f"from batch 1 to {top}{length}. It needs TensorRT and a GPU: without them it exits 2 and says so; "
            f"--check parses and builds the same engines with TensorRT-RTX, which needs no GPU."
        )
    else:
        calib = f" calibrated on the first {s['samples']} calibration rows" if s["precision"] == "int8" else ""
        engine = (
            f"TF-TRT (tf.experimental.tensorrt.Converter) on the SavedModel, {precision}{calib}, engines "
            f"built ahead for batch sizes up to {top}. It needs a TensorFlow built with TensorRT and a GPU: "
            f"without them it exits 2 and says so."
        )
    lines = list(wrapped(engine))
    name = serving["name"]
    if serving["platform"] == "triton" and serving.get("parts"):
        engines = ", ".join(f"SERVE/{name}_{part}/" for part in serving["parts"])
        layout = (
            f"Serving layout: {engines} each hold an engine (1/model.plan) and SERVE/{name}/ the greedy loop "
            f"(1/model.py, Triton's Python backend), each with its config.pbtxt from this bundle's "
            f"serve/model_repository/, so `tritonserver --model-repository SERVE` serves them. SERVE is --serve, "
            f"by default serve/ beside --output ($LLMC_OUTPUT/serve, which the k8s serving pods copy from)."
        )
    elif serving["platform"] == "triton":
        layout = (
            f"Serving layout: SERVE/{name}/1/ holds the model and SERVE/{name}/config.pbtxt is this "
            f"bundle's serve/model_repository/{name}/config.pbtxt, so `tritonserver --model-repository "
            f"SERVE` serves it. SERVE is --serve, by default serve/ beside --output ($LLMC_OUTPUT/serve, "
            f"which the k8s serving pods copy from)."
        )
    elif serving["platform"] == "tf-serving":
        layout = (
            f"Serving layout: SERVE/{name}/1/ holds the SavedModel: `--model_base_path=SERVE/{name}`, or "
            f"SERVE mounted at /models (serve/models.config's base_path is /models/{name}). SERVE is "
            f"--serve, by default serve/ beside --output ($LLMC_OUTPUT/serve, which the k8s serving pods "
            f"copy from)."
        )
    else:
        return lines
    return lines + [""] + list(wrapped(layout))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _train_settings(ir) -> dict:
    t = ir.train
    if t is None:
        return {"optimizer": dict(DEFAULT_OPTIMIZER), "batch_size": 32, "seed": 0}
    opt = t.optimizer.model_dump(mode="json")
    return {"optimizer": opt, "batch_size": t.batch_size, "seed": t.seed}


def _settings(ctx: BuildContext, step: str) -> tuple[dict, str, bool]:
    ir = ctx.ir
    c = ir.compress
    if step == "distill":
        assert c is not None and c.distill is not None  # compress_steps lists a step the spec sets
        d = c.distill
        student = {k: v for k, v in d.student.model_dump(mode="json").items() if v is not None}
        if ir.model.transformer is not None and "d_model" in student and "d_ff" not in student:
            student["d_ff"] = 4 * student["d_model"]
        fields = ", ".join(f"{k} {v}" for k, v in student.items()) or "the teacher's architecture"
        return (
            {"student": student, "temperature": d.temperature, "alpha": d.alpha, "epochs": d.epochs},
            f"a student ({fields}) learns from the teacher: alpha {d.alpha:g} x T^2 x KL at T = "
            f"{d.temperature:g} + {1 - d.alpha:g} x cross-entropy, {_plural(d.epochs, 'epoch')}",
            True,
        )
    if step == "prune":
        assert c is not None and c.prune is not None  # compress_steps lists a step the spec sets
        p = c.prune
        kind = "magnitude (smallest |w|)" if p.method == "magnitude" else "structured (whole units by L2 norm)"
        return (
            {"method": p.method, "sparsity": p.sparsity, "finetune_epochs": p.finetune_epochs},
            f"{kind} pruning to {p.sparsity:.0%} sparsity, then {_plural(p.finetune_epochs, 'fine-tuning epoch')}",
            True,
        )
    if step == "export":
        what = (
            "ONNX (opset 17, dynamic batch; generation as a greedy loop in the graph)"
            if ir.model.framework == "torch"
            else "the TensorFlow SavedModel (serving_default)"
        )
        return {}, f"writes {what}", False
    if step == "quantize":
        assert c is not None and c.quantize is not None  # compress_steps lists a step the spec sets
        q = c.quantize
        how = f"{q.method} int8" if q.precision == "int8" else "fp16"
        calib = (
            f", calibrated on the first {q.samples} rows of {q.calibration}"
            if (q.precision == "int8" and q.method == "static" and q.calibration)
            else ""
        )
        tool = "onnxruntime" if ir.model.framework == "torch" else "TensorFlow Lite"
        return (
            {"precision": q.precision, "method": q.method, "calibration": q.calibration, "samples": q.samples},
            f"{how} quantization with {tool}{calib}",
            False,
        )
    return _engine_settings(ctx)


def _engine_settings(ctx: BuildContext) -> tuple[dict, str, bool]:
    ir = ctx.ir
    q = ir.compress.quantize if ir.compress is not None else None
    engine = compress_engine(ir)
    serve = ir.serve
    name = serving_name(ir.model.name)
    platform = serve.platform if serve is not None else None
    config = f"serve/model_repository/{name}/config.pbtxt" if platform == "triton" else None
    serving: dict = {
        "platform": platform,
        "name": name,
        "triton_platform": triton_platform(ir) if platform == "triton" else None,
        "config": config,
        "max_batch_size": serve.batching.max_batch_size if serve is not None else 1,
        "gpu": serve is not None and is_gpu(serve.device),
    }
    parts = engine_parts(ir)
    if parts:  # generation on TensorRT: one engine per graph, the loop in Triton (triton.py)
        serving["parts"] = list(parts)
    arch = ir.model.transformer
    settings = {
        "engine": engine,
        "precision": q.precision if q is not None else None,
        "calibration": q.calibration if q is not None else None,
        "samples": q.samples if q is not None else 512,
        "max_len": arch.max_len if arch is not None else None,
        "serving": serving,
    }
    if engine == "onnxruntime":
        what = "onnxruntime: the graph optimised offline and saved"
    elif ir.model.framework == "tensorflow":
        what = f"TF-TRT ({(q.precision if q else 'fp32').upper()}) where TensorRT is installed"
    else:
        what = f"a TensorRT plan ({(q.precision if q else 'fp32').upper()}) where TensorRT is installed"
    where = {"triton": "Triton", "tf-serving": "TF Serving"}
    if platform in where:
        what += f"; the model copied to SERVE/{name}/1/ for {where[platform]}"
    return settings, what, False
