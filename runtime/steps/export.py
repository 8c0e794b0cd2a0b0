"""The export step: the served model of the trained one. torch: the ONNX graphs
(frameworks/torch_onnx.py). TensorFlow: the SavedModel the training wrote, copied
(no ONNX: tf2onnx is not a runtime dependency). Either is checked against the model
it came from on the first valid examples."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from ..backends import agreement_text, compare_backends, open_model
from ..folders import StepError, load_rows, model_files, read_meta, size_of, write_meta
from ..onnx_graphs import OPSET
from .common import Step, copy_model, step_arguments


def export(step: Step, valid_path: str | None) -> dict[str, Any]:
    exporter = _EXPORTERS.get(step.format)
    if exporter is None:
        raise StepError(f"export needs a torch or TensorFlow model, found {step.format} at {step.input}")
    return exporter(step, valid_path)


def _export_onnx(step: Step, valid_path: str | None) -> dict[str, Any]:
    from ..frameworks import torch as adapter
    from ..frameworks.torch_onnx import export_onnx

    model, meta = adapter.load(step.input)
    cfg = meta["model"]
    t0 = time.perf_counter()
    info = export_onnx(model, cfg, step.work)
    seconds = time.perf_counter() - t0
    write_meta(
        step.work,
        {**{k: v for k, v in meta.items() if k != "format"}, "format": "llmc-onnx-1", "onnx": {**info, "opset": OPSET}},
    )
    report: dict[str, Any] = {
        "format": "onnx",
        "opset": OPSET,
        "export_seconds": round(seconds, 2),
        "files": {p.name: p.stat().st_size for p in sorted(step.work.glob("*.onnx"))},
        "bytes": {"before": size_of(model_files(step.input)), "after": size_of(model_files(step.work))},
    }
    if valid_path:
        split = load_rows(cfg, step.data(valid_path), meta.get("label_names"), limit=min(step.limit or 32, 32))
        report["check"] = compare_backends(open_model(step.input), open_model(step.work), split)
        step.say(f"ONNX vs torch on {len(split)} valid examples: {agreement_text(report['check'])}")
    return report


def _export_savedmodel(step: Step, valid_path: str | None) -> dict[str, Any]:
    """TensorFlow: the served model is the SavedModel (serving_default); it is copied and
    checked against the Keras model."""
    copy_model(step.input, step.work)
    meta = read_meta(step.work)
    report: dict[str, Any] = {
        "format": "savedmodel",
        "onnx": "not written (no tf2onnx); the SavedModel is the served model",
        "bytes": {"before": size_of(model_files(step.input)), "after": size_of(model_files(step.work))},
    }
    if valid_path:
        split = load_rows(
            meta["model"], step.data(valid_path), meta.get("label_names"), limit=min(step.limit or 32, 32)
        )
        report["check"] = compare_backends(open_model(step.input, prefer="keras"), open_model(step.work), split)
        step.say(f"SavedModel vs Keras on {len(split)} valid examples: {agreement_text(report['check'])}")
    return report


# The exporter of each trained format: the one place export tells torch from TensorFlow.
_EXPORTERS: dict[str, Callable[[Step, str | None], dict[str, Any]]] = {
    "torch": _export_onnx,
    "tensorflow": _export_savedmodel,
}


def main(doc: str | None, argv: Sequence[str] | None, name: str, previous: str | None, *, data: dict[str, str]) -> int:
    """compress/export.py's main: the spec's constants in, the step run and published."""
    args = step_arguments(doc, extra=False).parse_args(argv)
    step = Step(name, previous, args)
    step.publish(export(step, data["valid"]))
    return 0
