"""The torch adapter (frameworks/__init__.py's `Framework`): load, build and save a
zoo_torch model, its logits and losses, the training loop of the compress steps and
pruning: magnitude masks (torch.nn.utils.prune) or structured (zoo_torch.shrink: whole
heads, channels and hidden units removed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune as tprune

from .. import zoo_torch
from ..data import Split, batches, epoch_order
from ..tokenizer import PAD
from . import LossFn, Structured, TrainSettings, validate_split

META_REWRITTEN = ("format", "model", "label_names")


def load(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    return zoo_torch.load_model(path)


def build(model_cfg: dict[str, Any], seed: int) -> nn.Module:
    return zoo_torch.build_model(model_cfg, seed=seed)


def save(
    directory: Path, model: nn.Module, model_cfg: dict[str, Any], label_names: list[str] | None, **extra: Any
) -> None:
    zoo_torch.save_model(directory, model, model_cfg, label_names, **extra)


def count_params(model: nn.Module) -> int:
    return zoo_torch.count_params(model)


def logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits [N, C], labels [N]) over the predicted positions of a batch of tensors:
    one row per example for classifiers, one per real target token otherwise."""
    if "label" in batch:
        x = batch["features"] if "features" in batch else batch["text"]
        return model(x), batch["label"]
    if "source" in batch:
        tgt = batch["target"]
        out, labels = model(batch["source"], tgt[:, :-1]), tgt[:, 1:]
        keep = labels != PAD
    else:
        tokens = batch["tokens"]
        out, labels = model(tokens[:, :-1]), tokens[:, 1:]
        keep = batch["loss_mask"] > 0
    return out[keep], labels[keep]


def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, temperature: float, alpha: float
) -> torch.Tensor:
    """alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * CE(student, labels),
    averaged over the predicted positions (Hinton et al. 2015: the T^2 keeps the soft
    term's gradients on the scale of the hard one's as T changes)."""
    t = float(temperature)
    s_log = F.log_softmax(student_logits.float() / t, -1)
    t_log = F.log_softmax(teacher_logits.float() / t, -1)
    kl = F.kl_div(s_log, t_log, log_target=True, reduction="none").sum(-1)
    ce = F.cross_entropy(student_logits.float(), labels, reduction="none")
    return (alpha * t * t * kl + (1.0 - alpha) * ce).mean()


def distill_loss(teacher: nn.Module, temperature: float, alpha: float) -> LossFn:
    """The student's loss against a frozen teacher."""
    for p in teacher.parameters():
        p.requires_grad_(False)

    def loss_fn(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        student_logits, labels = logits(model, batch)
        with torch.no_grad():
            teacher_logits, _ = logits(teacher, batch)
        return kd_loss(student_logits, teacher_logits, labels, temperature, alpha)

    return loss_fn


def task_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The training loss (mean over the predicted positions): fine-tuning after pruning."""
    total, count, _ = zoo_torch.batch_loss(model, batch)
    return total / count.clamp_min(1)


def train(
    model: nn.Module,
    split: Split,
    settings: TrainSettings,
    epochs: int,
    loss_fn: LossFn,
    max_steps: int | None = None,
    after_step: Callable[[], None] | None = None,
    say: Callable[[str], None] = print,
) -> int:
    """Epochs over `split` with `loss_fn(model, batch) -> loss`; returns the steps taken."""
    torch.manual_seed(settings.seed)
    optimizer = zoo_torch.make_optimizer(model, settings.optimizer)
    batch_size = max(1, min(settings.batch_size, len(split)))
    step = 0
    model.train()
    for epoch in range(epochs):
        total, n = 0.0, 0
        for batch in batches(split, epoch_order(len(split), settings.seed, epoch), batch_size):
            loss = loss_fn(model, zoo_torch.to_tensors(batch))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if after_step is not None:
                after_step()
            total, n, step = total + float(loss.detach()), n + 1, step + 1
            if max_steps is not None and step >= max_steps:
                break
        say(f"epoch {epoch + 1}/{epochs}: mean loss {total / max(n, 1):.4f} over {n} steps")
        if max_steps is not None and step >= max_steps:
            break
    model.eval()
    return step


def validate(model: nn.Module, split: Split, batch_size: int = 64) -> dict[str, float]:
    """Mean loss (and accuracy for classifiers) over a split: a cheap quality proxy."""
    model.eval()
    with torch.no_grad():
        return validate_split(split, batch_size, lambda batch: zoo_torch.batch_loss(model, zoo_torch.to_tensors(batch)))


def prunable(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """(name, nn.Linear) of every linear layer but the output layer (the classifier
    head / the MLP's last layer: pruning it removes classes, not redundancy). The tied
    embedding and the LayerNorms are not pruned."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    output = {"head"}
    if hasattr(model, "net"):  # the MLP: its last Linear
        output.add(linears[-1][0])
    return [(n, m) for n, m in linears if n not in output]


class TorchPruning:
    """Magnitude pruning: torch.nn.utils.prune.l1_unstructured per layer (the smallest
    |w|). The masks stay in place while fine-tuning (torch applies them in the forward
    pass); `finish` is prune.remove. The tensors keep their size."""

    def __init__(self, model: nn.Module, model_cfg: dict[str, Any], amount: float):
        self.model, self.model_cfg = model, model_cfg
        self.modules = [m for _, m in prunable(model)]
        self.layers = len(self.modules)
        for m in self.modules:
            tprune.l1_unstructured(m, "weight", amount=amount)

    def after_step(self) -> None:
        """Nothing: the forward pass multiplies by the mask."""

    def finish(self) -> None:
        for m in self.modules:
            tprune.remove(m, "weight")

    def sparsity(self) -> float:
        zeros = total = 0
        for m in self.modules:
            w = m.weight.detach()
            zeros += int((w == 0).sum())
            total += w.numel()
        return zeros / max(total, 1)


def _prunable_weights(model: nn.Module) -> tuple[int, int]:
    """(how many prunable layers, how many weights they hold)."""
    layers = prunable(model)
    return len(layers), sum(m.weight.numel() for _, m in layers)


def prune(model: nn.Module, model_cfg: dict[str, Any], method: str, sparsity: float) -> TorchPruning | Structured:
    if method == "structured":
        return Structured(zoo_torch, _prunable_weights, model, model_cfg, sparsity)
    return TorchPruning(model, model_cfg, sparsity)


def overall_sparsity(model: nn.Module) -> float:
    zeros = total = 0
    for p in model.parameters():
        zeros += int((p.detach() == 0).sum())
        total += p.numel()
    return zeros / max(total, 1)
