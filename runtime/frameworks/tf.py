"""The TensorFlow adapter (frameworks/__init__.py's `Framework`): load, build and
save a zoo_tf model, its logits and losses, the training loop of the compress steps
and pruning: magnitude masks (by hand: tensorflow-model-optimization is not installed)
or structured (zoo_tf.shrink: whole units removed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from .. import zoo_tf
from ..data import Split, batches, epoch_order
from ..tokenizer import PAD
from . import LossFn, Structured, TrainSettings, validate_split

# zoo_tf.save_model writes the serving signature anew.
META_REWRITTEN = ("format", "model", "label_names", "signature")


def load(path: Path) -> tuple[Any, dict[str, Any]]:
    return zoo_tf.load_model(str(path))


def build(model_cfg: dict[str, Any], seed: int) -> Any:
    return zoo_tf.build_model(model_cfg, seed=seed)


def save(directory: Path, model: Any, model_cfg: dict[str, Any], label_names: list[str] | None, **extra: Any) -> None:
    zoo_tf.save_model(str(directory), model, model_cfg, label_names, **extra)


def count_params(model: Any) -> int:
    return zoo_tf.count_params(model)


def logits(model: Any, batch: dict[str, Any], training: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
    """zoo_tf's inputs and the (logits [N, C], labels [N]) over predicted positions."""
    if "label" in batch:
        x = {"features": batch["features"]} if "features" in batch else {"text": batch["text"]}
        return tf.cast(model(x, training=training), tf.float32), batch["label"]
    if "source" in batch:
        tgt = batch["target"]
        out = model({"source": batch["source"], "target": tgt[:, :-1]}, training=training)
        labels = tgt[:, 1:]
        keep = tf.not_equal(labels, PAD)
    else:
        tokens = batch["tokens"]
        out = model({"tokens": tokens[:, :-1]}, training=training)
        labels = tokens[:, 1:]
        keep = batch["loss_mask"] > 0
    return tf.boolean_mask(tf.cast(out, tf.float32), keep), tf.boolean_mask(labels, keep)


def kd_loss(
    student_logits: tf.Tensor, teacher_logits: tf.Tensor, labels: tf.Tensor, temperature: float, alpha: float
) -> tf.Tensor:
    """frameworks/torch.py's kd_loss in TensorFlow."""
    t = float(temperature)
    s_log = tf.nn.log_softmax(student_logits / t, -1)
    t_log = tf.nn.log_softmax(teacher_logits / t, -1)
    kl = tf.reduce_sum(tf.exp(t_log) * (t_log - s_log), -1)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=student_logits)
    return tf.reduce_mean(alpha * t * t * kl + (1.0 - alpha) * ce)


def distill_loss(teacher: Any, temperature: float, alpha: float) -> LossFn:
    """The student's loss against the teacher (no gradient flows into it)."""

    def loss_fn(model: Any, batch: dict[str, Any]) -> tf.Tensor:
        student_logits, labels = logits(model, batch, training=True)
        teacher_logits, _ = logits(teacher, batch, training=False)
        return kd_loss(student_logits, tf.stop_gradient(teacher_logits), labels, temperature, alpha)

    return loss_fn


def task_loss(model: Any, batch: dict[str, Any]) -> tf.Tensor:
    """The training loss (mean over the predicted positions): fine-tuning after pruning."""
    total, count, _ = zoo_tf.batch_loss(model, batch, training=True)
    return total / count


def train(
    model: Any,
    split: Split,
    settings: TrainSettings,
    epochs: int,
    loss_fn: LossFn,
    max_steps: int | None = None,
    after_step: Callable[[], None] | None = None,
    say: Callable[[str], None] = print,
) -> int:
    """Epochs over `split` with `loss_fn(model, batch) -> loss`; returns the steps taken."""
    optimizer = zoo_tf.make_optimizer(settings.optimizer)
    batch_size = max(1, min(settings.batch_size, len(split)))
    variables = model.trainable_variables

    @tf.function(reduce_retracing=True)
    def train_step(batch: dict[str, Any]) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = loss_fn(model, batch)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    step = 0
    for epoch in range(epochs):
        total, n = 0.0, 0
        # Untrimmed batches: one shape, one trace.
        for batch in batches(split, epoch_order(len(split), settings.seed, epoch), batch_size, trim=False):
            loss = train_step(zoo_tf.to_inputs(batch))
            if after_step is not None:
                after_step()
            total, n, step = total + float(loss), n + 1, step + 1
            if max_steps is not None and step >= max_steps:
                break
        say(f"epoch {epoch + 1}/{epochs}: mean loss {total / max(n, 1):.4f} over {n} steps")
        if max_steps is not None and step >= max_steps:
            break
    return step


def validate(model: Any, split: Split, batch_size: int = 64) -> dict[str, float]:
    """Mean loss (and accuracy for classifiers) over a split: a cheap quality proxy."""
    return validate_split(split, batch_size, lambda batch: zoo_tf.batch_loss(model, zoo_tf.to_inputs(batch)))


def prunable(model: Any) -> list[Any]:
    """The 2-D Dense kernels but the output layer's (`logits` / `head`), as torch's prunable."""
    out = []
    for v in model.trainable_variables:
        parts = v.path.split("/")
        if parts[-1] == "kernel" and len(v.shape) == 2 and parts[-2] not in ("logits", "head"):
            out.append(v)
    return out


def masks(kernels: list[Any], method: str, sparsity: float) -> list[np.ndarray]:
    """Per layer, magnitude zeroes the `sparsity` fraction of kernel entries with the
    smallest |w| (ties broken by position, so exactly round(sparsity x size) entries);
    structured zeroes whole output units, the kernel columns (Keras kernels are
    [in, out]) with the smallest L2 norm. tensorflow-model-optimization's
    prune_low_magnitude does the same with a schedule; it is not installed."""
    out = []
    for v in kernels:
        w = v.numpy()
        if method == "structured":
            norms = np.linalg.norm(w, axis=0)
            k = round(sparsity * w.shape[1])
            mask = np.ones_like(w)
            mask[:, np.argsort(norms, kind="stable")[:k]] = 0.0
        else:
            k = round(sparsity * w.size)
            flat = np.ones(w.size, dtype=w.dtype)
            flat[np.argsort(np.abs(w).ravel(), kind="stable")[:k]] = 0.0
            mask = flat.reshape(w.shape)
        out.append(mask)
    return out


class TfPruning:
    """Magnitude pruning: masks multiplied into the kernels now and after every
    optimizer step, so the pruned weights stay zero while fine-tuning."""

    def __init__(self, model: Any, model_cfg: dict[str, Any], method: str, amount: float):
        self.model, self.model_cfg = model, model_cfg
        self.kernels = prunable(model)
        self.layers = len(self.kernels)
        self.masks = masks(self.kernels, method, amount)
        self.after_step()

    def after_step(self) -> None:
        for v, m in zip(self.kernels, self.masks):
            v.assign(v * m)

    def finish(self) -> None:
        """Nothing: the kernels hold the zeros already."""

    def sparsity(self) -> float:
        zeros = sum(int((v.numpy() == 0).sum()) for v in self.kernels)
        total = sum(int(np.prod(v.shape)) for v in self.kernels)
        return zeros / max(total, 1)


def _prunable_weights(model: Any) -> tuple[int, int]:
    """(how many prunable layers, how many weights they hold)."""
    layers = prunable(model)
    return len(layers), sum(int(np.prod(v.shape)) for v in layers)


def prune(model: Any, model_cfg: dict[str, Any], method: str, sparsity: float) -> TfPruning | Structured:
    if method == "structured":
        return Structured(zoo_tf, _prunable_weights, model, model_cfg, sparsity)
    return TfPruning(model, model_cfg, method, sparsity)


def overall_sparsity(model: Any) -> float:
    zeros = sum(int((v.numpy() == 0).sum()) for v in model.weights)
    total = sum(int(np.prod(v.shape)) for v in model.weights)
    return zeros / max(total, 1)
