"""One small adapter per framework, so the compress steps are written once.

`adapter_for(format)` returns the module for a model format ("torch" ->
frameworks/torch.py, "tensorflow" -> frameworks/tf.py), imported only then: a
TensorFlow bundle never imports torch, nor a torch bundle TensorFlow. Each adapter
module provides what `Framework` lists; the steps (runtime/steps/) call nothing else
framework-specific.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol, cast

import numpy as np

from ..data import Split, batches

# A loss over one batch of the framework's tensors: (model, batch) -> scalar loss.
LossFn = Callable[[Any, dict[str, Any]], Any]


class TrainSettings(NamedTuple):
    """How the compress steps train (distillation, fine-tuning after pruning): the
    spec's optimizer at a constant rate, the spec's global batch on one process."""

    optimizer: dict[str, Any]  # a model.json optimizer block
    batch_size: int
    seed: int = 0


class Pruning(Protocol):
    """A model's prunable layers pruned (`Framework.prune`): masks for magnitude, whole
    units removed for structured (a smaller copy of the model)."""

    layers: int  # how many layers are pruned
    model: Any  # the model to fine-tune and save: the one given, or its smaller copy
    model_cfg: dict[str, Any]  # the model block `model` is built from

    def after_step(self) -> None:
        """Keep the pruned weights at zero after an optimizer step."""

    def finish(self) -> None:
        """Make the masks permanent: the zeros become the weights."""

    def sparsity(self) -> float:
        """The fraction of the pruned layers' weights that are zero (magnitude) or
        removed (structured)."""


class Shrinking(Protocol):
    """What structured pruning needs of a framework's zoo (zoo_torch, zoo_tf)."""

    def unit_scores(self, model: Any) -> dict[str, Any]: ...

    def units_to_keep(self, scores: dict[str, Any], sparsity: float) -> dict[str, Any]: ...

    def shrink(self, model: Any, model_cfg: dict[str, Any], keep: dict[str, Any]) -> tuple[Any, dict[str, Any]]: ...


class Structured:
    """Structured pruning, for either framework: the lowest-scoring units (attention
    heads, FFN channels, an MLP's hidden units) removed from every layer with the
    matching rows and columns downstream (the zoo's unit_scores, units_to_keep and
    shrink), so `model` is a smaller copy with smaller tensors and `model_cfg` the block
    it is built from. Nothing to hold while fine-tuning: the removed units do not exist."""

    def __init__(
        self,
        zoo: Shrinking,
        prunable_weights: Callable[[Any], tuple[int, int]],
        model: Any,
        model_cfg: dict[str, Any],
        amount: float,
    ):
        _, before = prunable_weights(model)
        keep = zoo.units_to_keep(zoo.unit_scores(model), amount)
        self.model, self.model_cfg = zoo.shrink(model, model_cfg, keep)
        self.layers, after = prunable_weights(self.model)
        self.removed = 1.0 - after / max(before, 1)

    def after_step(self) -> None:
        """Nothing: the removed units are gone."""

    def finish(self) -> None:
        """Nothing: the model is already its final shape."""

    def sparsity(self) -> float:
        return self.removed


class Framework(Protocol):
    """What frameworks/torch.py and frameworks/tf.py provide (as module functions)."""

    # llmc.json keys a step does not copy into the model it writes (save writes them anew).
    META_REWRITTEN: tuple[str, ...]

    def load(self, path: Path) -> tuple[Any, dict[str, Any]]: ...

    def build(self, model_cfg: dict[str, Any], seed: int) -> Any: ...

    def save(
        self, directory: Path, model: Any, model_cfg: dict[str, Any], label_names: list[str] | None, **extra: Any
    ) -> None: ...

    def count_params(self, model: Any) -> int: ...

    def distill_loss(self, teacher: Any, temperature: float, alpha: float) -> LossFn: ...

    def task_loss(self, model: Any, batch: dict[str, Any]) -> Any: ...

    def train(
        self,
        model: Any,
        split: Split,
        settings: TrainSettings,
        epochs: int,
        loss_fn: LossFn,
        max_steps: int | None = None,
        after_step: Callable[[], None] | None = None,
        say: Callable[[str], None] = print,
    ) -> int: ...

    def validate(self, model: Any, split: Split, batch_size: int = 64) -> dict[str, float]: ...

    def prune(self, model: Any, model_cfg: dict[str, Any], method: str, sparsity: float) -> Pruning: ...

    def overall_sparsity(self, model: Any) -> float: ...


ADAPTERS = {"torch": "torch", "tensorflow": "tf"}


def adapter_for(fmt: str) -> Framework | None:
    """The adapter of a trained model's format, or None for the formats no framework
    trains (onnx, tflite, tensorrt)."""
    name = ADAPTERS.get(fmt)
    if name is None:
        return None
    return cast(Framework, importlib.import_module(f"{__name__}.{name}"))


def validate_split(
    split: Split, batch_size: int, loss_of: Callable[[dict[str, np.ndarray]], tuple[Any, Any, Any]]
) -> dict[str, float]:
    """Sum `loss_of(batch) -> (loss sum, count, correct or None)` over a split: mean
    loss, and accuracy for classifiers. Shared by both adapters' `validate`."""
    loss = count = correct = 0.0
    classify = False
    for batch in batches(split, np.arange(len(split)), batch_size, drop_last=False):
        s, c, k = loss_of(batch)
        loss, count = loss + float(s), count + float(c)
        if k is not None:
            classify, correct = True, correct + float(k)
    out = {"valid_loss": round(loss / max(count, 1.0), 6)}
    if classify:
        out["valid_accuracy"] = round(correct / max(count, 1.0), 6)
    return out
