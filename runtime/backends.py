"""Opening any model the stages write for inference (evaluate, the export and
quantize checks), and comparing two of them.

`open_model(path)` picks the backend of the folder's format: torch, the SavedModel
(TF Serving's signature) or the Keras model, onnxruntime, TensorFlow Lite. Each
framework is imported when its backend is built, never at module level.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .data import Split
from .folders import (
    NeedsTensorRT,
    configure_threads,
    cpu_threads,
    generates,
    model_files,
    model_format,
    prompts_np,
    read_meta,
)
from .tokenizer import PAD

Batch = dict[str, np.ndarray]
T = TypeVar("T")


class Backend:
    """A model ready to run on data.py batches (numpy arrays)."""

    name = "model"
    meta: dict[str, Any]
    path: Path

    @property
    def model_cfg(self) -> dict[str, Any]:
        cfg: dict[str, Any] = self.meta["model"]
        return cfg

    @property
    def generates(self) -> bool:
        return generates(self.model_cfg)

    @property
    def label_names(self) -> list[str] | None:
        return self.meta.get("label_names")

    def files(self) -> list[Path]:
        return model_files(self.path)

    def classify(self, batch: Batch) -> np.ndarray:  # logits [B, classes]
        raise NotImplementedError(f"{self.name}: cannot classify")

    def generate(self, batch: Batch) -> np.ndarray:  # ids [B, n]
        raise NotImplementedError(f"{self.name}: cannot generate")

    def logits(self, batch: Batch) -> np.ndarray | None:
        """Logits at the predicted positions (as the adapters' `logits` select them), or None."""
        return self.classify(batch) if not self.generates else None

    def nll(self, batch: Batch) -> tuple[float, float] | None:
        """(summed negative log-likelihood, predicted tokens), or None when the format cannot say."""
        return None


def inputs_for_generation(batch: Batch) -> np.ndarray:
    """What greedy decoding starts from: the source ids of an encoder-decoder, a
    decoder's prompts as served ("prompt"), or the prompts of a decoder's data batch."""
    if "prompt" in batch:
        return batch["prompt"]
    if "source" in batch:
        return batch["source"]
    return prompts_np(batch["tokens"], batch["loss_mask"])


def _positions(batch: Batch) -> tuple[np.ndarray, np.ndarray]:
    """(labels, mask) of the predicted positions of a generation batch."""
    if "source" in batch:
        labels = batch["target"][:, 1:]
        return labels, labels != PAD
    return batch["tokens"][:, 1:], batch["loss_mask"] > 0


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, path: Path):
        import torch

        from .frameworks import torch as adapter

        self.torch = torch
        self.adapter = adapter
        self.path = path
        self.model: Any
        self.model, self.meta = adapter.load(path)

    def _t(self, a: np.ndarray) -> Any:
        return self.torch.as_tensor(a)

    def classify(self, batch: Batch) -> np.ndarray:
        x = batch["features"] if "features" in batch else batch["text"]
        with self.torch.no_grad():
            out: np.ndarray = self.model(self._t(x)).float().numpy()
        return out

    def generate(self, batch: Batch) -> np.ndarray:
        with self.torch.no_grad():
            out: np.ndarray = self.model.generate(self._t(inputs_for_generation(batch))).numpy()
        return out

    def logits(self, batch: Batch) -> np.ndarray | None:
        if not self.generates:
            return self.classify(batch)
        with self.torch.no_grad():
            logits, _ = self.adapter.logits(self.model, {k: self._t(v) for k, v in batch.items()})
        out: np.ndarray = logits.float().numpy()
        return out

    def nll(self, batch: Batch) -> tuple[float, float] | None:
        from .zoo_torch import batch_loss

        with self.torch.no_grad():
            s, c, _ = batch_loss(self.model, {k: self._t(v) for k, v in batch.items()})
        return float(s), float(c)


class SavedModelBackend(Backend):
    """The SavedModel's serving_default signature (what TF Serving runs); the Keras
    weights beside it for logits and perplexity."""

    name = "savedmodel"

    def __init__(self, path: Path):
        import tensorflow as tf

        self.tf = tf
        self.path = path
        self.meta = read_meta(path)
        self.signature = tf.saved_model.load(str(path)).signatures["serving_default"]
        self.input = (self.meta.get("signature") or {}).get("input") or next(
            iter(self.signature.structured_input_signature[1])
        )
        self._keras: Any = None

    def keras(self) -> Any:
        if self._keras is None:
            if not (self.path / "model.weights.h5").is_file():
                return None
            from .frameworks import tf as adapter

            self._keras, _ = adapter.load(self.path)
        return self._keras

    def classify(self, batch: Batch) -> np.ndarray:
        x = batch["features"] if "features" in batch else batch["text"]
        dtype = self.tf.float32 if x.dtype.kind == "f" else self.tf.int32
        out: np.ndarray = self.signature(**{self.input: self.tf.constant(x, dtype)})["logits"].numpy()
        return out

    def generate(self, batch: Batch) -> np.ndarray:
        x = inputs_for_generation(batch)
        return self.signature(**{self.input: self.tf.constant(x, self.tf.int32)})["tokens"].numpy().astype(np.int64)

    def logits(self, batch: Batch) -> np.ndarray | None:
        if not self.generates:
            return self.classify(batch)
        model = self.keras()
        if model is None:
            return None
        from .frameworks import tf as adapter
        from .zoo_tf import to_inputs

        logits, _ = adapter.logits(model, to_inputs(batch))
        out: np.ndarray = logits.numpy()
        return out

    def nll(self, batch: Batch) -> tuple[float, float] | None:
        model = self.keras()
        if model is None:
            return None
        from .zoo_tf import batch_loss, to_inputs

        s, c, _ = batch_loss(model, to_inputs(batch))
        return float(s), float(c)


class KerasBackend(SavedModelBackend):
    """The Keras model itself (export's reference for the SavedModel)."""

    name = "keras"

    def __init__(self, path: Path):  # no super().__init__: the SavedModel is not loaded
        import tensorflow as tf

        from .frameworks import tf as adapter

        self.tf = tf
        self.path = path
        self.meta = read_meta(path)
        self._keras, _ = adapter.load(path)

    def classify(self, batch: Batch) -> np.ndarray:
        from .zoo_tf import to_inputs

        key = "features" if "features" in batch else "text"
        out: np.ndarray = self.tf.cast(
            self._keras(to_inputs({key: batch[key]}), training=False), self.tf.float32
        ).numpy()
        return out

    def generate(self, batch: Batch) -> np.ndarray:
        x = inputs_for_generation(batch)
        return self._keras.generate(self.tf.constant(x, self.tf.int32)).numpy().astype(np.int64)


def session_options(level: str | None = None) -> Any:
    """onnxruntime's SessionOptions: quiet, $LLMC_THREADS applied, and an optional
    graph optimization level ("disable" | "basic" | "extended" | "all")."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3  # errors only: the initializer de-duplication notices are noise
    threads = cpu_threads()
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    if level is not None:
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[level]
    return so


class OnnxBackend(Backend):
    name = "onnxruntime"

    def __init__(self, path: Path):
        import onnxruntime as ort

        self.path = path
        self.meta = read_meta(path)
        info = self.meta.get("onnx") or {"served": "model.onnx"}
        so = session_options()
        providers = ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path / info["served"]), so, providers=providers)
        self.parts = {}
        for part in info.get("parts", []):
            self.parts[part] = ort.InferenceSession(str(path / part), so, providers=providers)

    def classify(self, batch: Batch) -> np.ndarray:
        if "features" in batch:
            out: np.ndarray = self.session.run(["logits"], {"features": batch["features"].astype(np.float32)})[0]
        else:
            out = self.session.run(["logits"], {"input_ids": batch["text"].astype(np.int64)})[0]
        return out

    def generate(self, batch: Batch) -> np.ndarray:
        ids = inputs_for_generation(batch).astype(np.int64)
        out = self.session.run(["output_ids"], {"input_ids": ids})[0]
        return _trim_pad(out)

    def _full_logits(self, batch: Batch) -> np.ndarray | None:
        if "decoder.onnx" not in self.parts:
            return None
        if "source" in batch:
            memory, mask = self.parts["encoder.onnx"].run(None, {"input_ids": batch["source"].astype(np.int64)})
            feed = {
                "decoder_input_ids": batch["target"][:, :-1].astype(np.int64),
                "memory": memory,
                "memory_mask": mask,
            }
        else:
            feed = {"decoder_input_ids": batch["tokens"][:, :-1].astype(np.int64)}
        out: np.ndarray = self.parts["decoder.onnx"].run(["logits"], feed)[0]
        return out

    def logits(self, batch: Batch) -> np.ndarray | None:
        if not self.generates:
            return self.classify(batch)
        full = self._full_logits(batch)
        if full is None:
            return None
        _, mask = _positions(batch)
        return full[mask]

    def nll(self, batch: Batch) -> tuple[float, float] | None:
        full = self._full_logits(batch)
        if full is None:
            return None
        labels, mask = _positions(batch)
        logp = full - _logsumexp(full)
        picked = np.take_along_axis(logp, labels[..., None].astype(np.int64), -1)[..., 0]
        return float(-(picked * mask).sum()), float(mask.sum())


def _logsumexp(x: np.ndarray) -> np.ndarray:
    m = x.max(-1, keepdims=True)
    out: np.ndarray = m + np.log(np.exp(x - m).sum(-1, keepdims=True))
    return out


def _trim_pad(ids: np.ndarray) -> np.ndarray:
    """Drop trailing all-PAD columns (zoo_torch returns the longest row's width)."""
    cols = np.nonzero((ids != PAD).any(0))[0]
    return ids[:, : int(cols[-1]) + 1] if len(cols) else ids[:, :0]


class TfliteBackend(Backend):
    name = "tflite"

    def __init__(self, path: Path):
        import tensorflow as tf

        self.path = path
        self.meta = read_meta(path if path.is_dir() else path.parent)
        model = path / "model.tflite" if path.is_dir() else path
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.interpreter = tf.lite.Interpreter(model_path=str(model), num_threads=cpu_threads())
        self.runner = self.interpreter.get_signature_runner("serving_default")
        self.input = (self.meta.get("signature") or {}).get("input") or "features"

    def files(self) -> list[Path]:
        return [self.path / "model.tflite" if self.path.is_dir() else self.path]

    def classify(self, batch: Batch) -> np.ndarray:
        x = batch["features"] if "features" in batch else batch["text"]
        x = x.astype(np.float32 if x.dtype.kind == "f" else np.int32)
        # The converted signature has batch 1 fixed in places: run one row at a time.
        return np.concatenate([self.runner(**{self.input: x[i : i + 1]})["logits"] for i in range(len(x))])

    def generate(self, batch: Batch) -> np.ndarray:
        raise NotImplementedError("generation with a TensorFlow Lite model is not supported; evaluate the SavedModel")


def open_model(path: str | os.PathLike[str], prefer: str | None = None) -> Backend:
    """The model at `path` (a folder or a model file), ready to run."""
    p = Path(path)
    fmt = model_format(p)
    configure_threads(fmt)
    if fmt == "tensorrt":
        raise NeedsTensorRT(
            f"{path} is a TensorRT engine: evaluate it on a machine with TensorRT and a GPU, "
            f"or evaluate the ONNX model export wrote"
        )
    if p.is_file():
        if fmt == "tflite":
            return TfliteBackend(p)
        p = p.parent
    if fmt == "torch":
        return TorchBackend(p)
    if fmt == "onnx":
        return OnnxBackend(p)
    if fmt == "tflite":
        return TfliteBackend(p)
    return KerasBackend(p) if prefer == "keras" else SavedModelBackend(p)


# --- comparing two models ----------------------------------------------------------------------------


def compare_backends(reference: Backend, candidate: Backend, split: Split) -> dict[str, Any]:
    """How closely `candidate` reproduces `reference` on a few examples: max |logit
    difference| (teacher-forced for generation), top-1 agreement, and for generation
    the fraction of identical greedy outputs; plus each one's time for the batch."""
    out: dict[str, Any] = {"examples": len(split), "reference": reference.name, "candidate": candidate.name}
    batch = split.arrays
    ref_logits, cand_logits = reference.logits(batch), candidate.logits(batch)
    if ref_logits is not None and cand_logits is not None:
        out["max_abs_logit_diff"] = float(np.max(np.abs(ref_logits - cand_logits)))
        out["top1_agreement"] = float(np.mean(ref_logits.argmax(-1) == cand_logits.argmax(-1)))
    if reference.generates:
        a, ta = _timed(lambda: reference.generate(batch))
        b, tb = _timed(lambda: candidate.generate(batch))
        width = max(a.shape[1], b.shape[1])
        a, b = pad_to(a, width), pad_to(b, width)
        out["greedy_agreement"] = float(np.mean(np.all(a == b, axis=1)))
    else:
        _, ta = _timed(lambda: reference.classify(batch))
        _, tb = _timed(lambda: candidate.classify(batch))
    out["seconds"] = {"reference": round(ta, 4), "candidate": round(tb, 4)}
    return out


def agreement_text(check: dict[str, Any]) -> str:
    """compare_backends' report in a line: how far apart the two models are, and their times."""
    parts = [f"max |logit difference| {check['max_abs_logit_diff']:.2g}"]
    for key, name in (("top1_agreement", "top-1"), ("greedy_agreement", "greedy decoding")):
        if key in check:
            parts.append(f"{name} agreement {check[key]:.0%}")
    seconds = check.get("seconds") or {}
    if seconds:
        parts.append(
            " vs ".join(
                f"{check[role]} {seconds[role] * 1e3:.1f} ms" for role in ("reference", "candidate") if role in seconds
            )
        )
    return ", ".join(parts)


def _timed(fn: Callable[[], T]) -> tuple[T, float]:
    fn()  # warm-up (first-call allocations, lazy initialisation)
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def pad_to(a: np.ndarray, width: int) -> np.ndarray:
    if a.shape[1] >= width:
        return a
    return np.concatenate([a, np.full((a.shape[0], width - a.shape[1]), PAD, a.dtype)], 1)
