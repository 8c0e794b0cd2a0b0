"""The prune step: every prunable layer masked to the same sparsity, fine-tuned with
the masks held, through the model's framework adapter (torch and TensorFlow alike).
Zeroed weights keep a file's size until it is compressed: the report gives the gzip
size too."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..folders import StepError, gzip_size, load_rows, model_files, size_of
from ..frameworks import ADAPTERS, TrainSettings, adapter_for
from .common import Step, step_arguments


def prune(
    step: Step,
    method: str,
    sparsity: float,
    finetune_epochs: int,
    settings: TrainSettings,
    train_path: str,
    valid_path: str,
) -> dict[str, Any]:
    """`method` "magnitude" (the smallest |w| of each layer) or "structured" (whole
    output units by L2 norm); the quality before, right after pruning and after
    fine-tuning goes in the report."""
    if not 0.0 < sparsity < 1.0:
        raise StepError(f"sparsity {sparsity} is not between 0 and 1")
    step.needs(tuple(ADAPTERS), "a torch or TensorFlow model")
    fw = adapter_for(step.format)
    assert fw is not None  # step.needs checked the format
    model, meta = fw.load(step.input)
    cfg, names = meta["model"], meta.get("label_names")
    valid = load_rows(cfg, step.data(valid_path), names, step.limit)
    before = fw.validate(model, valid)
    masks = fw.prune(model, method, sparsity)
    pruned = fw.validate(model, valid)
    steps = 0
    if finetune_epochs:
        train = load_rows(cfg, step.data(train_path), names, step.limit)
        steps = fw.train(
            model,
            train,
            settings,
            finetune_epochs,
            fw.task_loss,
            step.max_steps,
            after_step=masks.after_step,
            say=step.say,
        )
    masks.finish()
    after = fw.validate(model, valid)
    extra = {k: v for k, v in meta.items() if k not in fw.META_REWRITTEN}
    fw.save(step.work, model, cfg, names, **{**extra, "pruned": {"method": method, "sparsity": sparsity}})
    achieved = masks.sparsity()
    step.say(f"{method}: {achieved:.1%} of the weights of {masks.layers} layers are zero")
    src, dst = model_files(step.input), model_files(step.work)
    return {
        "method": method,
        "requested_sparsity": sparsity,
        "sparsity": round(achieved, 6),
        "overall_sparsity": round(fw.overall_sparsity(model), 6),
        "layers": masks.layers,
        "finetune_epochs": finetune_epochs,
        "finetune_steps": steps,
        "bytes": {"before": size_of(src), "after": size_of(dst)},
        "gzip_bytes": {"before": sum(gzip_size(p) for p in src), "after": sum(gzip_size(p) for p in dst)},
        "quality": {"before": before, "pruned": pruned, "after": after},
    }


def main(
    doc: str | None,
    argv: Sequence[str] | None,
    name: str,
    previous: str | None,
    *,
    method: str,
    sparsity: float,
    finetune_epochs: int,
    train: dict[str, Any],
    data: dict[str, str],
) -> int:
    """compress/prune.py's main: the spec's constants in, the step run and published."""
    args = step_arguments(doc).parse_args(argv)
    step = Step(name, previous, args)
    step.publish(prune(step, method, sparsity, finetune_epochs, TrainSettings(**train), data["train"], data["valid"]))
    return 0
