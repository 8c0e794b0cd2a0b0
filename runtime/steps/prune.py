"""The prune step, through the model's framework adapter (torch and TensorFlow alike).

magnitude: every prunable layer masked to the same sparsity (the smallest |w|) and
fine-tuned with the masks held. Zeroed weights keep a file's size until it is
compressed and dense kernels do not skip them: the report gives the gzip size too.

structured: the lowest-scoring attention heads and FFN channels (an MLP's hidden
units) are removed from every layer, with the rows and columns that read or write
them, then the smaller model is fine-tuned; its model block records the new shape
(`heads`, `d_ff`, `head_dim`; an MLP's `hidden`), so export and quantize see smaller
tensors.

Either way the report gives what was measured before and after: the bytes of the
model files, the parameters, and the latency of a forward pass at batch 1 and at
LATENCY_BATCH (medians of a few runs on the same valid examples).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from statistics import median
from typing import Any

import numpy as np

from ..data import Split, batches
from ..folders import StepError, gzip_size, load_rows, model_files, size_of
from ..frameworks import ADAPTERS, Framework, TrainSettings, adapter_for
from .common import Step, step_arguments

LATENCY_BATCH = 16  # the local profiles' serving batch (serve.batching.max_batch_size of the translator)
LATENCY_RUNS = 7  # the median of these, after one warm-up run
LATENCY_BUDGET_S = 1.0  # per model and batch size: fewer runs when a forward pass is slow


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
    pruning and after fine-tuning goes in the report, with the measured size and
    latency of the model before and after."""
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
    latency_before = forward_latency(fw, model, valid)
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
    latency_after = forward_latency(fw, model, valid)
    src, dst = model_files(step.input), model_files(step.work)
    size = {"before": size_of(src), "after": size_of(dst)}
    if method == "structured":
        step.say(
            f"structured: {achieved:.1%} of the weights of {pruning.layers} layers removed: "
            f"{params_before:,} -> {params_after:,} parameters, {size['before']:,} -> {size['after']:,} bytes"
        )
    else:
        step.say(f"{method}: {achieved:.1%} of the weights of {pruning.layers} layers are zero")
    step.say(
        "forward pass "
        + ", ".join(
            f"batch {b}: {latency_before[b]:.2f} -> {latency_after[b]:.2f} ms"
            for b in latency_before
            if b in latency_after
        )
    )
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
        "latency_ms": {
            "what": f"{step.format} forward pass (teacher-forced for generation), "
            f"median of up to {LATENCY_RUNS} runs on the first valid examples",
            "before": {str(b): v for b, v in latency_before.items()},
            "after": {str(b): v for b, v in latency_after.items()},
        },
        "quality": {"before": before, "pruned": pruned, "after": after},
    }
    if method == "structured":
        report["shape"] = _shape(cfg)
    return report


def forward_latency(fw: Framework, model: Any, split: Split) -> dict[int, float]:
    """Milliseconds of one forward pass, by batch size (1 and LATENCY_BATCH, as far as
    the split has rows): the median of LATENCY_RUNS runs on the split's first rows
    after a warm-up, fewer when LATENCY_BUDGET_S runs out."""
    out: dict[int, float] = {}
    for size in sorted({1, min(LATENCY_BATCH, len(split))}):
        if size < 1:
            continue
        batch = next(batches(split, np.arange(size), size, drop_last=False))
        fw.infer(model, batch)  # warm-up: lazy initialisation and tracing are not the pass
        times: list[float] = []
        deadline = time.perf_counter() + LATENCY_BUDGET_S
        while len(times) < LATENCY_RUNS and (len(times) < 3 or time.perf_counter() < deadline):
            t0 = time.perf_counter()
            fw.infer(model, batch)
            times.append((time.perf_counter() - t0) * 1000.0)
        out[size] = round(median(times), 3)
    return out


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
