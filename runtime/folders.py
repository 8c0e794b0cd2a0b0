"""Model folders and data paths: what every stage (compress, evaluate, the checks)
agrees on about where a model is and what it holds.

Model folders:

    torch          model.pt + llmc.json                     (zoo_torch.save_model)
    tensorflow     SavedModel + model.weights.h5 + llmc.json (zoo_tf.save_model)
    onnx           model.onnx + llmc.json; for generation also encoder.onnx and
                   decoder.onnx (runtime/onnx_graphs.py)
    tflite         model.tflite + llmc.json                 (TensorFlow quantization)
    tensorrt       model.plan + llmc.json                   (TensorRT engine); for generation
                   on Triton encoder.plan and decoder.plan instead

`llmc.json` always carries the model block (`"model"`), the label names and
`"format"`; ONNX folders add `"onnx"` (the graphs' names and I/O). A TensorFlow
quantize folder holds model.tflite beside the SavedModel; the SavedModel stays the
served model (`model_format` prefers it), model.tflite is measured by pointing
evaluate at the file.

$LLMC_THREADS caps the CPU threads of torch, onnxruntime and TensorFlow (unset:
their defaults). Set it where cores are shared: spinning thread pools on busy
cores made a 40-step training run here ten times slower than one thread.

No framework is imported at module level: this module is read by TensorFlow and
torch bundles alike.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config import ConfigError, threads_setting
from .data import URI_SCHEMES, DataError, Split, load_split, read_rows
from .tokenizer import PAD

META = "llmc.json"


class StepError(Exception):
    """A step cannot run (a missing model, an impossible setting): the user's to fix.
    Reported as `<script>: error: ...` with exit status 2, never a traceback."""


class NeedsTensorRT(StepError):
    """TensorRT (or TF-TRT) is not installed on this machine."""


# --- where things are ------------------------------------------------------------------------------


def default_data_root() -> str:
    return os.environ.get("LLMC_DATA_ROOT") or os.getcwd()


def resolve_data(path: str | None, data_root: str | os.PathLike[str] | None) -> str | None:
    """A spec path (relative to the spec's folder, docs/bundle.md) made usable here:
    URIs and absolute paths as they are, the rest joined to --data-root."""
    if not path or path.startswith(URI_SCHEMES) or os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(os.fspath(data_root or default_data_root()), path))


def outputs_root() -> Path:
    """Where the stages write when not told: $LLMC_OUTPUT (the k8s Jobs set it), else
    outputs/ (train.py's default). Under it: model/ (train), compress/, serve/, evaluate/."""
    return Path(os.environ.get("LLMC_OUTPUT") or "outputs")


def default_served_model() -> Path:
    """The model a stage run bare (a k8s Job) evaluates or serves: the compress stage's
    model under outputs_root() when there is one, else train's."""
    compressed = outputs_root() / "compress" / "model"
    return compressed if compressed.exists() else outputs_root() / "model"


# --- threads -----------------------------------------------------------------------------------------


def cpu_threads() -> int | None:
    """config.threads_setting for the compress steps and the backends: a bad value is a StepError."""
    try:
        return threads_setting()
    except ConfigError as exc:
        raise StepError(str(exc)) from None


def configure_threads(fmt: str) -> None:
    """Apply $LLMC_THREADS to the framework of a model format, before it runs anything.
    Only that framework is imported: a TensorFlow bundle never loads torch."""
    n = cpu_threads()
    if n is None:
        return
    if fmt == "torch":
        import torch

        torch.set_num_threads(n)
        with contextlib.suppress(RuntimeError):  # only allowed before the first parallel work
            torch.set_num_interop_threads(n)
    elif fmt in ("tensorflow", "tflite"):
        import tensorflow as tf

        with contextlib.suppress(RuntimeError):  # only allowed before TensorFlow's runtime starts
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(n)


# --- model folders -------------------------------------------------------------------------------------


def read_meta(directory: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(directory) / META
    if not path.is_file():
        raise StepError(f"{directory}: no {META} (not a model folder written by llmc)")
    with open(path, encoding="utf-8") as f:
        meta: dict[str, Any] = json.load(f)
    return meta


def write_meta(directory: str | os.PathLike[str], meta: dict[str, Any]) -> None:
    with open(Path(directory) / META, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")


def model_format(path: str | os.PathLike[str]) -> str:
    """ "torch" | "tensorflow" | "onnx" | "tflite" | "tensorrt" for a model folder (or
    file); StepError when there is no model there. The served format wins when a
    folder holds several (an engine over ONNX over the framework's own)."""
    p = Path(path)
    if p.is_file():
        by_suffix = {".pt": "torch", ".onnx": "onnx", ".tflite": "tflite", ".plan": "tensorrt"}
        if p.suffix in by_suffix:
            return by_suffix[p.suffix]
        raise StepError(f"{path}: not a model file (expected .pt, .onnx, .tflite or .plan)")
    if not p.is_dir():
        raise StepError(f"no model at {path}")
    # A TensorFlow folder may hold model.tflite beside the SavedModel (quantize): the
    # SavedModel is what TF Serving serves; point at model.tflite itself to measure it.
    for name, fmt in (
        ("model.plan", "tensorrt"),
        ("decoder.plan", "tensorrt"),  # generation on Triton: encoder.plan and decoder.plan (steps/engines.py)
        ("model.onnx", "onnx"),
        ("saved_model.pb", "tensorflow"),
        ("model.tflite", "tflite"),
        ("model.pt", "torch"),
    ):
        if (p / name).is_file():
            return fmt
    raise StepError(f"no model in {path} (expected model.pt, a SavedModel, model.onnx, model.tflite or model.plan)")


SERVED_FILE = {"torch": "model.pt", "onnx": "model.onnx", "tflite": "model.tflite", "tensorrt": "model.plan"}


def model_files(path: str | os.PathLike[str]) -> list[Path]:
    """The files that make up the served model (what model_size counts)."""
    p = Path(path)
    if p.is_file():
        return [p]
    fmt = model_format(p)
    if fmt == "tensorflow":
        return [p / "saved_model.pb", p / "variables"] + ([p / "assets"] if (p / "assets").exists() else [])
    if fmt == "tensorrt":
        return sorted(p.glob("*.plan"))
    return [p / SERVED_FILE[fmt]]


def files_size(paths: Sequence[str | os.PathLike[str]]) -> int:
    """Bytes of the files, folders counted recursively."""
    total = 0
    for item in paths:
        p = os.fspath(item)
        if os.path.isdir(p):
            for root, _, files in os.walk(p):
                total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
        elif os.path.isfile(p):
            total += os.path.getsize(p)
    return total


def size_of(paths: Iterable[str | os.PathLike[str]]) -> int:
    return files_size(list(paths))


def gzip_size(path: str | os.PathLike[str]) -> int:
    """Bytes after gzip -6: zeroed weights only shrink a file once it is compressed."""
    total = 0
    for f in [Path(path)] if Path(path).is_file() else sorted(Path(path).rglob("*")):
        if f.is_file():
            with open(f, "rb") as fh:
                total += len(gzip.compress(fh.read(), 6))
    return total


def architecture(model_cfg: dict[str, Any]) -> str:
    """ "mlp" | "encoder" | "encoder-decoder" | "decoder"."""
    return "mlp" if model_cfg.get("mlp") is not None else str(model_cfg["transformer"]["kind"])


def generates(model_cfg: dict[str, Any]) -> bool:
    return architecture(model_cfg) in ("encoder-decoder", "decoder")


# --- splits ---------------------------------------------------------------------------------------


def check_data_file(path: str | None) -> str:
    """`path` itself, once it names a file (or a URI): a missing one is the user's to fix."""
    if not path:
        raise StepError("the spec names no file for this split")
    if not path.startswith(URI_SCHEMES) and not os.path.isfile(path):
        raise DataError(
            f"{path}: no such file (the spec's relative data paths are resolved against --data-root, "
            f"default $LLMC_DATA_ROOT or the working directory)"
        )
    return path


def load_rows(
    model_cfg: dict[str, Any], path: str | None, label_names: list[str] | None = None, limit: int | None = None
) -> Split:
    """A data.py Split of `path` for this model, cut to the first `limit` examples."""
    split = load_split(model_cfg, check_data_file(path), label_names=label_names)
    if limit is not None and limit < len(split):
        # Split defines __len__, which NamedTuple._replace trips over: build it anew.
        split = type(split)(
            {k: v[:limit] for k, v in split.arrays.items()}, split.framing, split.label_names, split.path
        )
    return split


def references(model_cfg: dict[str, Any], path: str, limit: int | None = None) -> list[str]:
    """The target column's strings as written (not truncated to max_len)."""
    data = model_cfg["data"]
    _, rows = read_rows(path, data.get("format"))
    col = data.get("target") or "target"
    rows = rows[:limit] if limit is not None else rows
    return [str(r.get(col, "")) for r in rows]


def prompts_np(tokens: np.ndarray, loss_mask: np.ndarray) -> np.ndarray:
    """zoo_torch.prompts in numpy: each row's BOS + source + SEP, PAD on the right."""
    starts = (loss_mask > 0).argmax(1)
    width = int(starts.max()) + 1
    out = np.full((tokens.shape[0], width), PAD, dtype=np.int64)
    for i, s in enumerate(starts.tolist()):
        out[i, : s + 1] = tokens[i, : s + 1]
    return out
