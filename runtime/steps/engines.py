"""The build_engine step: the final model made ready for its server and copied where
the server reads it. onnxruntime: the graph optimised offline. TensorRT: an engine
from the fp32 ONNX (torch models) or TF-TRT on the SavedModel (TensorFlow models).
A TensorFlow model under engine "onnxruntime" is served as its SavedModel."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..backends import inputs_for_generation, pad_to, session_options
from ..data import Split, batches
from ..folders import META, NeedsTensorRT, StepError, architecture, model_files, read_meta, size_of, write_meta
from ..scripts import remove_on_failure
from ..tokenizer import PAD
from .common import Step, calibration_split, check_against_input, copy_model, replace_dir, step_arguments
from .trt_check import (
    RTX,
    add_profile,
    build_onnx,
    decoder_step,
    import_tensorrt,
    make_logger,
    parse_onnx,
    profile_ranges,
    serialize,
)

Feed = dict[str, np.ndarray]


def served_feeds(model_cfg: dict[str, Any], split: Split, batch_size: int, width: int | None) -> list[Feed]:
    """Inputs of the served graph (input_ids or features) in full batches, sequences
    padded to `width`: what a fixed-shape calibrator (TensorRT) is fed."""
    arch = architecture(model_cfg)
    out = []
    for b in batches(split, np.arange(len(split)), batch_size, drop_last=True, trim=False):
        if arch == "mlp":
            out.append({"features": b["features"].astype(np.float32)})
            continue
        ids = b["text"] if arch == "encoder" else inputs_for_generation(b)
        ids = pad_to(ids.astype(np.int64), width or ids.shape[1])[:, : width or ids.shape[1]]
        out.append({"input_ids": np.ascontiguousarray(ids)})
    return out


class Serving(NamedTuple):
    """Where the serve/ artifacts expect the model (compiler/targets/triton.py, tfserving.py)."""

    platform: str | None  # "triton" | "tf-serving" | None
    name: str  # the served model's name (serving_names.serving_name)
    triton_platform: str | None  # "onnxruntime_onnx" | "tensorrt_plan" | "tensorflow_savedmodel" | ...
    config: str | None  # the bundle's config.pbtxt, relative to the bundle
    max_batch_size: int
    gpu: bool
    # A generating model on TensorRT: its engines ("encoder", "decoder"), each the Triton
    # model <name>_<part>, with the greedy loop in <name>/1/model.py (compiler/targets/triton.py).
    parts: tuple[str, ...] = ()


def place_for_serving(step: Step, serving: Serving, bundle: Path) -> dict[str, Any] | None:
    """Copy the final model into the layout its server reads: SERVE/<name>/1/, where
    SERVE is --serve (default serve/ beside --output: $LLMC_OUTPUT/serve, from which
    the k8s serving pods' init container copies <name>/ into /models/):

    Triton:      SERVE/<name>/1/model.onnx | model.plan | model.savedmodel/, and the
                 bundle's config.pbtxt at SERVE/<name>/config.pbtxt, so
                 `tritonserver --model-repository SERVE` serves it as it is
    TF Serving:  SERVE/<name>/1/ (the SavedModel): --model_base_path=SERVE/<name>, or
                 SERVE mounted at /models (models.config's base_path is /models/<name>)
    """
    if serving.platform is None:
        return None
    target_dir = step.serve_root / serving.name
    staged = step.serve_root / f".{serving.name}.partial"
    if staged.exists():
        shutil.rmtree(staged)
    version = staged / "1"
    if serving.platform == "triton" and serving.parts:
        return _place_engines(step, serving, bundle)
    if serving.platform == "triton":
        target = {
            "onnxruntime_onnx": "model.onnx",
            "tensorrt_plan": "model.plan",
            "tensorflow_savedmodel": "model.savedmodel",
        }.get(serving.triton_platform or "")
        if target is None:
            raise StepError(f"no compressed model for Triton platform {serving.triton_platform!r}")
        version.mkdir(parents=True)
        if target == "model.savedmodel":
            _copy_savedmodel(step.work, version / target)
        else:
            shutil.copy2(step.work / target, version / target)
        if serving.config and (bundle / serving.config).is_file():
            shutil.copy2(bundle / serving.config, staged / "config.pbtxt")
    else:
        _copy_savedmodel(step.work, version)
    remove_on_failure(staged)
    replace_dir(staged, target_dir)
    return {"platform": serving.platform, "path": str(target_dir), "name": serving.name}


def _place_engines(step: Step, serving: Serving, bundle: Path) -> dict[str, Any]:
    """A generating model on TensorRT: SERVE/<name>_<part>/1/model.plan for each engine,
    and SERVE/<name>/1/model.py, the greedy loop; each with the bundle's config.pbtxt."""
    repository = bundle / "serve" / "model_repository"
    models = {serving.name: None, **{f"{serving.name}_{part}": f"{part}.plan" for part in serving.parts}}
    for model, plan in models.items():
        staged = step.serve_root / f".{model}.partial"
        if staged.exists():
            shutil.rmtree(staged)
        (staged / "1").mkdir(parents=True)
        if plan is None:
            shutil.copy2(repository / model / "1" / "model.py", staged / "1" / "model.py")
        else:
            shutil.copy2(step.work / plan, staged / "1" / "model.plan")
        shutil.copy2(repository / model / "config.pbtxt", staged / "config.pbtxt")
        remove_on_failure(staged)
        replace_dir(staged, step.serve_root / model)
    return {"platform": serving.platform, "path": str(step.serve_root), "name": serving.name, "models": list(models)}


def _copy_savedmodel(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("saved_model.pb", "fingerprint.pb"):
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
    for name in ("variables", "assets"):
        if (src / name).is_dir():
            shutil.copytree(src / name, dst / name)


def build_onnxruntime(step: Step, serving: Serving, bundle: Path, valid_path: str | None = None) -> dict[str, Any]:
    """onnxruntime: the graph optimised offline once (constant folding, node fusions,
    the quantized ops' fused kernels) and saved, so a server loads it ready. Extended
    optimizations are for the CPU the model is served on; a model served on GPU keeps
    the portable basic level (onnxruntime's advice for saved optimized models)."""
    import onnxruntime as ort

    if step.format == "tensorflow":
        return _serve_savedmodel(
            step, serving, bundle, "no ONNX for a TensorFlow model (no tf2onnx): the SavedModel is served as it is"
        )
    if step.format != "onnx":
        raise StepError(f"build_engine (onnxruntime) needs an ONNX model, found {step.format} at {step.input}")
    meta = read_meta(step.input)
    level = "basic" if serving.gpu else "extended"
    for name in [*meta["onnx"].get("parts", []), meta["onnx"]["served"]]:
        so = session_options(level)
        so.optimized_model_filepath = str(step.work / name)
        ort.InferenceSession(str(step.input / name), so, providers=["CPUExecutionProvider"])
    write_meta(step.work, {**meta, "engine": {"name": "onnxruntime", "optimization": level}})
    report: dict[str, Any] = {
        "engine": "onnxruntime",
        "optimization": level,
        "bytes": {"before": size_of(model_files(step.input)), "after": size_of(model_files(step.work))},
        "files": {p.name: p.stat().st_size for p in sorted(step.work.glob("*.onnx"))},
    }
    report["check"] = check_against_input(step, meta, valid_path)
    report["serving"] = place_for_serving(step, serving, bundle)
    return report


def _serve_savedmodel(step: Step, serving: Serving, bundle: Path, note: str) -> dict[str, Any]:
    copy_model(step.input, step.work, leave_out=("report.json", "model.tflite"))
    report: dict[str, Any] = {"engine": "savedmodel", "note": note, "bytes": {"after": size_of(model_files(step.work))}}
    report["serving"] = place_for_serving(step, serving, bundle)
    return report


# --- TensorRT ---------------------------------------------------------------------------------------


def _entropy_calibrator(trt: Any, feeds: list[Feed], cache: Path) -> Any:
    """An IInt8EntropyCalibrator2 over calibration batches (numpy dicts), with a cache
    file so a rebuild skips calibration. Device buffers through torch (CUDA)."""
    import torch

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.feeds = feeds
            self.i = 0
            self.held: list[Any] = []

        def get_batch_size(self) -> int:
            return int(next(iter(self.feeds[0].values())).shape[0]) if self.feeds else 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.i >= len(self.feeds):
                return None
            feed = self.feeds[self.i]
            self.i += 1
            self.held = [torch.from_numpy(np.ascontiguousarray(feed[n])).cuda() for n in names]
            return [int(t.data_ptr()) for t in self.held]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data: Any) -> None:
            cache.write_bytes(bytes(data))

    return Calibrator()


def engine_graphs(export_dir: Path, meta: dict[str, Any], serving: Serving, work: Path) -> dict[str, Path]:
    """The ONNX graph of each engine to build, by plan name: model.plan of the served
    graph; for a generating model on Triton (serving.parts) encoder.plan of
    encoder.onnx and decoder.plan of decoder.onnx made one greedy step (written to
    `work`), since TensorRT does not build the greedy Loop of model.onnx."""
    if not serving.parts:
        return {"model.plan": export_dir / meta["onnx"]["served"]}
    import onnx

    graphs = {}
    for part in serving.parts:
        path = export_dir / f"{part}.onnx"
        if part == "decoder":
            path = work / "decoder_step.onnx"
            onnx.save(decoder_step(onnx.load(str(export_dir / "decoder.onnx"))), str(path))
        graphs[f"{part}.plan"] = path
    return graphs


def engine_feeds(
    plan: str, meta: dict[str, Any], split: Split, top: int, width: int | None, export_dir: Path
) -> list[Feed]:
    """INT8 calibration batches for one engine, at its profile's opt shape (full batches
    of `top` rows, `width` long). The decoder step sees the reference targets'
    prefixes (teacher forcing) and the encoder's memory of the sources: the
    activations greedy decoding produces when it is right."""
    feeds = served_feeds(meta["model"], split, top, width)
    if plan in ("model.plan", "encoder.plan"):
        return feeds
    arch = architecture(meta["model"])
    encoder = None
    if arch == "encoder-decoder":
        import onnxruntime as ort

        encoder = ort.InferenceSession(str(export_dir / "encoder.onnx"), providers=["CPUExecutionProvider"])
    out = []
    for feed, b in zip(feeds, batches(split, np.arange(len(split)), top, drop_last=True, trim=False), strict=True):
        ids = b["target"][:, :-1] if "target" in b else b["tokens"][:, :-1]
        ids = pad_to(ids.astype(np.int64), width or ids.shape[1])[:, : width or ids.shape[1]]
        step: Feed = {"decoder_input_ids": np.ascontiguousarray(ids)}
        step["last"] = np.maximum((ids != PAD).sum(axis=1, keepdims=True) - 1, 0).astype(np.int64)
        if encoder is not None:
            memory, mask = encoder.run(["memory", "memory_mask"], {"input_ids": feed["input_ids"]})
            step.update(memory=memory, memory_mask=mask)
        out.append(step)
    return out


def build_tensorrt(
    step: Step,
    serving: Serving,
    bundle: Path,
    precision: str | None,
    calibration: str | None,
    samples: int,
    max_len: int | None,
    export_dir: Path,
) -> dict[str, Any]:
    """TensorRT from the fp32 ONNX that export wrote (a dynamic-quantized graph has ops
    TensorRT does not parse; TensorRT quantizes with its own calibrator instead):
    ONNX parser -> network, FP16 / INT8 builder flags (INT8 calibrated with
    IInt8EntropyCalibrator2 over the calibration rows, FP16 kept as the fallback for
    layers without INT8 kernels), one optimization profile spanning batch 1 to
    serve.batching.max_batch_size (and length 1 to max_len), serialized to model.plan,
    or, for a generating model on Triton, to encoder.plan and decoder.plan (engine_graphs).
    The parse, the profile and the build are trt_check's, which `--check` runs with
    TensorRT-RTX. TensorFlow models go through TF-TRT instead."""
    if step.format == "tensorflow" or (export_dir / "saved_model.pb").is_file():
        return build_tftrt(step, serving, bundle, precision, calibration, samples)
    trt = import_tensorrt("tensorrt")
    meta = read_meta(export_dir)
    top = max(1, serving.max_batch_size)
    split = calibration_split(step, meta, calibration, samples) if precision == "int8" else None
    plans: dict[str, Any] = {}
    for plan_name, onnx_path in engine_graphs(export_dir, meta, serving, step.work).items():
        logger = make_logger(trt)
        builder = trt.Builder(logger)
        network, _parser = parse_onnx(trt, builder, logger, onnx_path, f"TensorRT {trt.__version__}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 4 << 30)
        ranges = profile_ranges(network, top, max_len)
        profile = add_profile(builder, config, ranges)
        if precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            assert split is not None
            config.set_flag(trt.BuilderFlag.INT8)
            # With dynamic shapes TensorRT calibrates at the profile's opt shape: full
            # batches of `top` rows, padded to max_len.
            feeds = engine_feeds(plan_name, meta, split, top, max_len, export_dir)
            if not feeds:
                raise StepError(
                    f"INT8 calibration needs at least {top} calibration rows (serve.batching.max_batch_size)"
                )
            cache = step.work / plan_name.replace(".plan", ".calibration.cache")
            config.int8_calibrator = _entropy_calibrator(trt, feeds, cache)
            config.set_calibration_profile(profile)
        plan = serialize(builder, logger, network, config, onnx_path, f"TensorRT {trt.__version__}")
        (step.work / plan_name).write_bytes(plan)
        plans[plan_name] = {"onnx": onnx_path.name, "bytes": len(plan)}
    (step.work / "decoder_step.onnx").unlink(missing_ok=True)
    write_meta(
        step.work,
        {
            **meta,
            "format": "llmc-tensorrt-1",
            "engine": {"name": "tensorrt", "precision": precision or "fp32", "version": trt.__version__},
        },
    )
    report: dict[str, Any] = {
        "engine": "tensorrt",
        "version": trt.__version__,
        "precision": precision or "fp32",
        "plans": plans,
        "profile": {"batch": [1, top, top], "length": [1, max_len, max_len] if max_len else None},
    }
    report["serving"] = place_for_serving(step, serving, bundle)
    return report


def check_tensorrt(step: Step, serving: Serving, max_len: int | None, export_dir: Path) -> dict[str, Any]:
    """`build_engine.py --check`: the engines the cluster's build makes (engine_graphs),
    parsed and built with TensorRT-RTX and its default precision, without a GPU. Not
    covered: FP16/INT8 flags, the calibrator, and loading or running the engines."""
    if step.format == "tensorflow" or (export_dir / "saved_model.pb").is_file():
        raise StepError("--check builds TensorRT engines from ONNX; a TensorFlow model goes through TF-TRT")
    trt = import_tensorrt(RTX)
    meta = read_meta(export_dir)
    out = {}
    for plan_name, onnx_path in engine_graphs(export_dir, meta, serving, step.work).items():
        built = build_onnx(trt, onnx_path, serving.max_batch_size, max_len, f"TensorRT-RTX {trt.__version__}")
        out[plan_name] = {
            "onnx": onnx_path.name,
            "bytes": len(built.plan),
            "seconds": round(built.parse_s + built.build_s, 2),
            "profile": {name: list(r) for name, r in built.ranges.items()},
        }
        step.say(
            f"TensorRT-RTX {trt.__version__} built {plan_name} from {onnx_path.name} in {out[plan_name]['seconds']} s"
        )
    return {"engine": "tensorrt-rtx", "version": trt.__version__, "plans": out}


def build_tftrt(
    step: Step, serving: Serving, bundle: Path, precision: str | None, calibration: str | None, samples: int
) -> dict[str, Any]:
    """TF-TRT (tf.experimental.tensorrt.Converter) on the SavedModel: FP32/FP16/INT8,
    INT8 calibrated on the calibration rows, engines built ahead for the batch sizes
    TF Serving's allowed_batch_sizes pad to; writes a SavedModel with TensorRT ops."""
    import tensorflow as tf

    try:
        from tensorflow.python.compiler.tensorrt import trt_convert

        enabled = trt_convert._pywrap_py_utils.is_tensorrt_enabled()
    except (ImportError, AttributeError):
        enabled = False
    if not enabled:
        raise NeedsTensorRT(
            "this TensorFlow is not built with TensorRT (TF-TRT unavailable): build the engine on a "
            'GPU machine with tensorflow[and-cuda] and TensorRT, or set compress.engine = "onnxruntime"'
        )
    meta = read_meta(step.input)
    mode = {"int8": "INT8", "fp16": "FP16"}.get(precision or "", "FP32")
    converter = tf.experimental.tensorrt.Converter(
        input_saved_model_dir=str(step.input),
        precision_mode=mode,
        use_calibration=mode == "INT8",
        maximum_cached_engines=16,
    )
    name = meta["signature"]["input"]
    width = meta["model"]["mlp"]["inputs"] if meta["model"].get("mlp") else meta["model"]["transformer"]["max_len"]
    dtype = np.float32 if meta["model"].get("mlp") else np.int32
    if mode == "INT8":
        split = calibration_split(step, meta, calibration, samples)
        arrays = split.arrays[
            "features" if "features" in split.arrays else ("text" if "text" in split.arrays else "source")
        ]

        def calibration_input() -> Iterator[dict[str, Any]]:  # the signature's keyword argument, batches of 16
            for i in range(0, len(arrays), 16):
                yield {name: tf.constant(arrays[i : i + 16].astype(dtype))}

        converter.convert(calibration_input_fn=calibration_input)
    else:
        converter.convert()
    sizes = []
    size = 1
    while size < serving.max_batch_size:
        sizes.append(size)
        size *= 2
    sizes.append(max(1, serving.max_batch_size))

    def build_input() -> Iterator[dict[str, Any]]:
        for b in sizes:
            yield {name: tf.zeros((b, width), dtype)}

    converter.build(input_fn=build_input)
    converter.save(str(step.work))
    shutil.copy2(step.input / META, step.work / META)
    write_meta(step.work, {**meta, "engine": {"name": "tf-trt", "precision": mode}})
    report: dict[str, Any] = {
        "engine": "tf-trt",
        "precision": mode,
        "batch_sizes": sizes,
        "bytes": {"before": size_of(model_files(step.input)), "after": size_of(model_files(step.work))},
    }
    report["serving"] = place_for_serving(step, serving, bundle)
    return report


def main(
    doc: str | None,
    argv: Sequence[str] | None,
    name: str,
    previous: str | None,
    *,
    bundle: Path,
    engine: str,
    precision: str | None,
    calibration: str | None,
    samples: int,
    max_len: int | None,
    serving: dict[str, Any],
    data: dict[str, str],
) -> int:
    """compress/build_engine.py's main: the spec's constants in, the step run and published."""
    parser = step_arguments(doc, extra=False)
    parser.add_argument(
        "--check",
        action="store_true",
        help="no GPU needed: parse and build the TensorRT engines with TensorRT-RTX, print their report, "
        "write no engine (engine tensorrt, ONNX models only)",
    )
    args = parser.parse_args(argv)
    step = Step(name, previous, args)
    served = Serving(**{**serving, "parts": tuple(serving.get("parts", ()))})
    if args.check:
        if engine != "tensorrt":
            raise StepError(f"--check builds TensorRT engines; this bundle's engine is {engine}")
        try:
            report = check_tensorrt(step, served, max_len, step.output / "export")
        finally:
            shutil.rmtree(step.work, ignore_errors=True)
        print(json.dumps(report, indent=2))
        return 0
    if engine == "onnxruntime":
        report = build_onnxruntime(step, served, bundle, data["valid"])
    else:
        report = build_tensorrt(step, served, bundle, precision, calibration, samples, max_len, step.output / "export")
    step.publish(report)
    return 0
