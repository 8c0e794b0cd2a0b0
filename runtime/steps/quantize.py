"""The quantize step. ONNX (torch models): onnxruntime's int8 dynamic, int8 static
(QDQ, calibrated) or fp16, graph by graph, the greedy loop composed again around
the quantized encoder and decoder. SavedModel (TensorFlow models): TensorFlow
Lite's int8 dynamic range, full int8 with a representative dataset, or fp16
weights, written as model.tflite beside the SavedModel (which stays the served
model); INT8/FP16 serving comes from TF-TRT at build_engine."""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import TfliteBackend, compare_backends, open_model, session_options
from ..data import Split, batches
from ..folders import StepError, architecture, generates, load_rows, model_files, read_meta, size_of, write_meta
from ..onnx_graphs import compose_greedy
from .common import Step, calibration_split, check_against_input, copy_model, step_arguments

Feed = dict[str, np.ndarray]


def quantize(
    step: Step, precision: str, method: str, calibration: str | None, samples: int, valid_path: str | None = None
) -> dict[str, Any]:
    quantizer = _QUANTIZERS.get(step.format)
    if quantizer is None:
        raise StepError(f"quantize needs the exported model (ONNX or SavedModel), found {step.format} at {step.input}")
    return quantizer(step, precision, method, calibration, samples, valid_path)


class _Feeds:
    """onnxruntime's CalibrationDataReader over a list of input dicts."""

    def __init__(self, feeds: list[Feed]):
        self.feeds = feeds
        self.i = 0

    def get_next(self) -> Feed | None:
        if self.i >= len(self.feeds):
            return None
        self.i += 1
        return self.feeds[self.i - 1]

    def rewind(self) -> None:
        self.i = 0


def calibration_feeds(
    directory: Path, meta: dict[str, Any], split: Split, batch_size: int = 16
) -> dict[str, list[Feed]]:
    """Inputs for each graph of an ONNX model folder, from the calibration rows:
    the served graph's inputs for single-graph models; for generation the encoder's
    source ids and the decoder's teacher-forced prefixes with the fp32 encoder's memory
    (the activations the decoder meets while generating a reference-like output)."""
    import onnxruntime as ort

    arch = architecture(meta["model"])
    feeds: dict[str, list[Feed]] = {}
    order = np.arange(len(split))
    if arch == "mlp":
        feeds["model.onnx"] = [
            {"features": b["features"].astype(np.float32)} for b in batches(split, order, batch_size, drop_last=False)
        ]
        return feeds
    if arch == "encoder":
        feeds["model.onnx"] = [
            {"input_ids": b["text"].astype(np.int64)} for b in batches(split, order, batch_size, drop_last=False)
        ]
        return feeds
    if arch == "encoder-decoder":
        enc = ort.InferenceSession(
            str(directory / "encoder.onnx"), session_options(), providers=["CPUExecutionProvider"]
        )
        feeds["encoder.onnx"], feeds["decoder.onnx"] = [], []
        for b in batches(split, order, batch_size, drop_last=False):
            src = b["source"].astype(np.int64)
            memory, mask = enc.run(None, {"input_ids": src})
            feeds["encoder.onnx"].append({"input_ids": src})
            feeds["decoder.onnx"].append(
                {"decoder_input_ids": b["target"][:, :-1].astype(np.int64), "memory": memory, "memory_mask": mask}
            )
        return feeds
    feeds["decoder.onnx"] = [
        {"decoder_input_ids": b["tokens"][:, :-1].astype(np.int64)}
        for b in batches(split, order, batch_size, drop_last=False)
    ]
    return feeds


def quantize_graph(src: Path, dst: Path, precision: str, method: str, feeds: list[Feed] | None) -> dict[str, Any]:
    """One ONNX graph: int8 dynamic (weights int8, activations quantized per batch at run
    time: MatMulInteger), int8 static (QDQ, per-channel int8 weights, uint8 activations
    with MinMax ranges from the calibration feeds; only MatMul/Gemm are quantized, the
    ops whose int8 kernels pay, so LayerNorm, Softmax and the residual adds stay
    float), or fp16 (onnxruntime's float16 converter, float32 inputs and outputs kept)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    with warnings.catch_warnings(), _quiet_logging():
        warnings.simplefilter("ignore")
        if precision == "fp16":
            from onnxruntime.transformers.float16 import convert_float_to_float16

            model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
            onnx.save(model, str(dst))
            return {"precision": "fp16"}
        if method == "dynamic":
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=False)
            return {"precision": "int8", "method": "dynamic"}
        if not feeds:
            raise StepError("static quantization needs calibration data (compress.quantize.calibration)")
        quantize_static(
            str(src),
            str(dst),
            _Feeds(feeds),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gemm"],
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
        return {
            "precision": "int8",
            "method": "static",
            "format": "QDQ",
            "per_channel": True,
            "calibration_batches": len(feeds),
        }


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime.quantization logs "please run pre-processing" on the root logger
    try:
        yield
    finally:
        root.setLevel(level)


def _quantize_onnx(
    step: Step, precision: str, method: str, calibration: str | None, samples: int, valid_path: str | None
) -> dict[str, Any]:
    import onnx

    meta = read_meta(step.input)
    info = meta["onnx"]
    static = precision == "int8" and method == "static"
    split = calibration_split(step, meta, calibration, samples) if static else None
    feeds = calibration_feeds(step.input, meta, split) if split is not None else {}
    graphs = info.get("parts") or [info["served"]]
    details = {}
    for name in graphs:
        details[name] = quantize_graph(step.input / name, step.work / name, precision, method, feeds.get(name))
    if info.get("parts"):
        encoder = onnx.load(str(step.work / "encoder.onnx")) if "encoder.onnx" in graphs else None
        composed = compose_greedy(
            onnx.load(str(step.work / "decoder.onnx")), encoder, int(meta["model"]["transformer"]["max_len"])
        )
        onnx.save(composed, str(step.work / "model.onnx"))
    write_meta(
        step.work, {**meta, "quantized": {"precision": precision, "method": method if precision == "int8" else None}}
    )
    before, after = size_of(model_files(step.input)), size_of(model_files(step.work))
    report: dict[str, Any] = {
        "precision": precision,
        "method": method if precision == "int8" else None,
        "graphs": details,
        "bytes": {"before": before, "after": after},
        "ratio": round(after / max(before, 1), 4),
    }
    if split is not None:
        report["calibration"] = {"path": step.data(calibration), "samples": len(split)}
    step.say(f"{precision} {report['method'] or ''}: {before:,} -> {after:,} bytes")
    report["check"] = check_against_input(step, meta, valid_path)
    return report


def _quantize_tflite(
    step: Step, precision: str, method: str, calibration: str | None, samples: int, valid_path: str | None
) -> dict[str, Any]:
    """TensorFlow Lite from the SavedModel: dynamic-range int8 (weights), full int8 with a
    representative dataset of the calibration rows (float I/O kept), or fp16 weights.
    The SavedModel stays in the folder: it is what TF Serving serves; model.tflite
    measures the quantized model on CPU."""
    import tensorflow as tf

    meta = read_meta(step.input)
    copy_model(step.input, step.work)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(step.input))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    report: dict[str, Any] = {
        "precision": precision,
        "method": method if precision == "int8" else None,
        "format": "tflite",
    }
    if precision == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif method == "static":
        split = calibration_split(step, meta, calibration, samples)
        name = meta["signature"]["input"]
        arrays = split.arrays["features" if "features" in split.arrays else "text"]

        def representative() -> Iterator[Feed]:
            for i in range(len(arrays)):
                x = arrays[i : i + 1]
                yield {name: x.astype(np.float32 if x.dtype.kind == "f" else np.int32)}

        converter.representative_dataset = representative
        report["calibration"] = {"path": step.data(calibration), "samples": len(arrays)}
    # Calibration runs tf.lite.Interpreter, whose deprecation warning (six lines) says
    # nothing about this model.
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        blob = converter.convert()
    (step.work / "model.tflite").write_bytes(blob)
    saved = size_of(model_files(step.input))
    report["bytes"] = {"before": saved, "after": len(blob)}
    report["ratio"] = round(len(blob) / max(saved, 1), 4)
    report["served"] = (
        "the SavedModel beside it (TF Serving cannot serve TensorFlow Lite): model.tflite is measured and "
        "gated as this step's model, not served; int8 serving comes from TF-TRT (compress.engine tensorrt)"
    )
    path = step.data(valid_path)
    if path and Path(path).is_file() and not generates(meta["model"]):
        split = load_rows(meta["model"], path, meta.get("label_names"), limit=min(step.limit or 64, 64))
        report["check"] = compare_backends(open_model(step.input), TfliteBackend(step.work / "model.tflite"), split)
    return report


# The quantizer of each input format: the one place quantize tells ONNX from a SavedModel.
_QUANTIZERS: dict[str, Callable[[Step, str, str, str | None, int, str | None], dict[str, Any]]] = {
    "onnx": _quantize_onnx,
    "tensorflow": _quantize_tflite,
}


def main(
    doc: str | None,
    argv: Sequence[str] | None,
    name: str,
    previous: str | None,
    *,
    precision: str,
    method: str,
    calibration: str | None,
    samples: int,
    data: dict[str, str],
) -> int:
    """compress/quantize.py's main: the spec's constants in, the step run and published."""
    args = step_arguments(doc, extra=False).parse_args(argv)
    step = Step(name, previous, args)
    report = quantize(step, precision, method, calibration, samples, data["valid"])
    # TensorFlow: the step's model is model.tflite, measured and gated but not served
    # (TF Serving serves the SavedModel beside it, which build_engine copies).
    tflite = step.format == "tensorflow"
    step.publish(report, product="model.tflite" if tflite else None, served=not tflite)
    return 0
