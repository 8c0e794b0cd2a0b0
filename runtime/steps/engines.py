"""The build_engine step: the final model made ready for its server and copied where
the server reads it. onnxruntime: the graph optimised offline. TensorRT: an engine
from the fp32 ONNX (torch models) or TF-TRT on the SavedModel (TensorFlow models).
A TensorFlow model under engine "onnxruntime" is served as its SavedModel."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..backends import inputs_for_generation, pad_to, session_options
from ..data import Split, batches
from ..folders import META, NeedsTensorRT, StepError, architecture, model_files, read_meta, size_of, write_meta
from ..scripts import remove_on_failure
from .common import Step, calibration_split, check_against_input, copy_model, replace_dir, step_arguments

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
    serve.batching.max_batch_size (and length 1 to max_len), serialized to model.plan.
    TensorFlow models go through TF-TRT instead."""
    if step.format == "tensorflow" or (export_dir / "saved_model.pb").is_file():
        return build_tftrt(step, serving, bundle, precision, calibration, samples)
    try:
        import tensorrt as trt
    except ImportError:
        raise NeedsTensorRT(
            "TensorRT is not installed here (`import tensorrt` failed): build the engine on a "
            "machine with TensorRT and a GPU, e.g. the compress Job of k8s/, or set "
            'compress.engine = "onnxruntime"'
        ) from None
    meta = read_meta(export_dir)
    onnx_path = export_dir / meta["onnx"]["served"]
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise StepError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 4 << 30)
    profile = builder.create_optimization_profile()
    top = max(1, serving.max_batch_size)
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = list(tensor.shape)
        lo, opt, hi = list(dims), list(dims), list(dims)
        lo[0], opt[0], hi[0] = 1, top, top
        for d in range(1, len(dims)):
            if dims[d] < 0:  # the sequence axis
                lo[d], opt[d], hi[d] = 1, max_len or 1, max_len or 1
        profile.set_shape(tensor.name, lo, opt, hi)
    config.add_optimization_profile(profile)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        split = calibration_split(step, meta, calibration, samples)
        # With dynamic shapes TensorRT calibrates at the profile's opt shape: full
        # batches of `top` rows, padded to max_len.
        feeds = served_feeds(meta["model"], split, top, max_len)
        if not feeds:
            raise StepError(f"INT8 calibration needs at least {top} calibration rows (serve.batching.max_batch_size)")
        config.int8_calibrator = _entropy_calibrator(trt, feeds, step.work / "calibration.cache")
        config.set_calibration_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise StepError("TensorRT failed to build the engine (see its log above)")
    (step.work / "model.plan").write_bytes(bytes(plan))
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
        "bytes": {"onnx": onnx_path.stat().st_size, "plan": (step.work / "model.plan").stat().st_size},
        "profile": {"batch": [1, top, top], "length": [1, max_len, max_len] if max_len else None},
    }
    report["serving"] = place_for_serving(step, serving, bundle)
    return report


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
    args = step_arguments(doc, extra=False).parse_args(argv)
    step = Step(name, previous, args)
    served = Serving(**serving)
    if engine == "onnxruntime":
        report = build_onnxruntime(step, served, bundle, data["valid"])
    else:
        report = build_tensorrt(step, served, bundle, precision, calibration, samples, max_len, step.output / "export")
    step.publish(report)
    return 0
