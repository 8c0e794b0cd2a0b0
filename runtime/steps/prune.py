"""The prune step, through the model's framework adapter (torch and TensorFlow alike).

magnitude: every prunable layer masked to the same sparsity (the smallest |w|) and
fine-tuned with the masks held. Zeroed weights keep a file's size until it is
compressed and dense kernels do not skip them: the report gives the gzip size too.

structured: the lowest-scoring attention heads and FFN channels (an MLP's hidden
units) are removed from every layer, with the rows and columns that read or write
them, then the smaller model is fine-tuned; its model block records the new shape
(`heads`, `d_ff`, `head_dim`; an MLP's `hidden`), so export and quantize see smaller
tensors.

Either way the report gives the bytes of the model files and the parameters before
and after; its row (common.Step.publish, measure.py) times the pruned model beside its
input at batch 1 and at the spec's max batch, as for every step.
"""

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
    """`method` "magnitude" (masks: the smallest |w| of each layer) or "structured"
    (whole heads, channels and hidden units removed); the quality before, right after
    pruning and after fine-tuning goes in the report, with the size and parameters of
    the model before and after."""
    if not 0.0 < sparsity < 1.0:
        raise StepError(f"sparsity {sparsity} is not between 0 and 1")
    if method not in ("magnitude", "structured"):
        raise StepError(f'unknown pruning method {method!r}: "magnitude" or "structured"')
    step.needs(tuple(ADAPTERS), "a torch or TensorFlow model")
    fw = adapter_for(step.format)
    assert fw is not None  # step.needs checked the format
    model, meta = fw.load(step.input)
    cfg, names = meta["model"], meta.get("label_names")
    valid = load_rows(cfg, step.data(valid_path), names, step.limit)
    before = fw.validate(model, valid)
    params_before = fw.count_params(model)
    try:
        pruning = fw.prune(model, cfg, method, sparsity)
    except ValueError as exc:  # a layout the shrinking cannot keep (zoo_*.shrink)
        raise StepError(f"{method} pruning: {exc}") from exc
    model, cfg = pruning.model, pruning.model_cfg
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
            after_step=pruning.after_step,
            say=step.say,
        )
    pruning.finish()
    after = fw.validate(model, valid)
    extra = {k: v for k, v in meta.items() if k not in fw.META_REWRITTEN}
    fw.save(step.work, model, cfg, names, **{**extra, "pruned": {"method": method, "sparsity": sparsity}})
    achieved = pruning.sparsity()
    params_after = fw.count_params(model)
    src, dst = model_files(step.input), model_files(step.work)
    size = {"before": size_of(src), "after": size_of(dst)}
    if method == "structured":
        step.say(
            f"structured: {achieved:.1%} of the weights of {pruning.layers} layers removed: "
            f"{params_before:,} -> {params_after:,} parameters, {size['before']:,} -> {size['after']:,} bytes"
        )
    else:
        step.say(f"{method}: {achieved:.1%} of the weights of {pruning.layers} layers are zero")
    report: dict[str, Any] = {
        "method": method,
        "requested_sparsity": sparsity,
        "sparsity": round(achieved, 6),
        "overall_sparsity": round(fw.overall_sparsity(model), 6),
        "layers": pruning.layers,
        "finetune_epochs": finetune_epochs,
        "finetune_steps": steps,
        "params": {"before": params_before, "after": params_after},
        "bytes": size,
        "gzip_bytes": {"before": sum(gzip_size(p) for p in src), "after": sum(gzip_size(p) for p in dst)},
        "quality": {"before": before, "pruned": pruned, "after": after},
    }
    if method == "structured":
        report["shape"] = _shape(cfg)
    return report


def _shape(model_cfg: dict[str, Any]) -> dict[str, Any]:
    if model_cfg.get("mlp") is not None:
        return {"hidden": model_cfg["mlp"]["hidden"]}
    a = model_cfg["transformer"]
    return {"heads": a["heads"], "head_dim": a["head_dim"], "d_ff": a["d_ff"]}


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
