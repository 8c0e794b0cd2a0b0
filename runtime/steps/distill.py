"""The distill step: a smaller student trained on the teacher's softened outputs,
through the model's framework adapter (torch and TensorFlow alike)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from ..folders import StepError, load_rows, model_files, size_of
from ..frameworks import ADAPTERS, TrainSettings, adapter_for
from .common import Step, step_arguments


def student_config(model_cfg: dict[str, Any], student: dict[str, Any]) -> dict[str, Any]:
    """The teacher's model block with the spec's student fields applied (d_ff defaults to
    4 x the student's d_model when d_model changes and d_ff is not given)."""
    cfg = copy.deepcopy(model_cfg)
    if cfg.get("mlp") is not None:
        if student.get("hidden"):
            cfg["mlp"]["hidden"] = list(student["hidden"])
        return cfg
    arch = cfg["transformer"]
    changes = {k: student[k] for k in ("layers", "d_model", "heads", "d_ff") if student.get(k) is not None}
    if "d_model" in changes and "d_ff" not in changes:
        changes["d_ff"] = 4 * changes["d_model"]
    arch.update(changes)
    if arch["d_model"] % arch["heads"]:
        raise StepError(f"student d_model = {arch['d_model']} is not a multiple of heads = {arch['heads']}")
    return cfg


def distill(
    step: Step,
    student: dict[str, Any],
    temperature: float,
    alpha: float,
    epochs: int,
    settings: TrainSettings,
    train_path: str,
    valid_path: str,
) -> dict[str, Any]:
    """Train the student `epochs` times over the train split on
    alpha * T^2 * KL(teacher || student at temperature T) + (1 - alpha) * CE, and
    report both models' size and validation loss."""
    step.needs(tuple(ADAPTERS), "the trained torch or TensorFlow model")
    fw = adapter_for(step.format)
    assert fw is not None  # step.needs checked the format
    teacher, meta = fw.load(step.input)
    cfg = student_config(meta["model"], student)
    names = meta.get("label_names")
    train = load_rows(cfg, step.data(train_path), names, step.limit)
    valid = load_rows(cfg, step.data(valid_path), names, step.limit)
    model = fw.build(cfg, settings.seed)
    step.say(
        f"teacher {fw.count_params(teacher):,} parameters -> student {fw.count_params(model):,}; "
        f"T = {temperature}, alpha = {alpha}, {epochs} epochs on {len(train)} examples"
    )
    loss_fn = fw.distill_loss(teacher, temperature, alpha)
    steps = fw.train(model, train, settings, epochs, loss_fn, step.max_steps, say=step.say)
    extra = {k: v for k, v in meta.items() if k not in fw.META_REWRITTEN}
    fw.save(step.work, model, cfg, names, **{**extra, "distilled_from": str(step.input)})
    return {
        "teacher": {
            "params": fw.count_params(teacher),
            "bytes": size_of(model_files(step.input)),
            **fw.validate(teacher, valid),
        },
        "student": {
            "params": fw.count_params(model),
            "bytes": size_of(model_files(step.work)),
            **fw.validate(model, valid),
        },
        "temperature": temperature,
        "alpha": alpha,
        "epochs": epochs,
        "steps": steps,
    }


def main(
    doc: str | None,
    argv: Sequence[str] | None,
    name: str,
    previous: str | None,
    *,
    student: dict[str, Any],
    temperature: float,
    alpha: float,
    epochs: int,
    train: dict[str, Any],
    data: dict[str, str],
) -> int:
    """compress/distill.py's main: the spec's constants in, the step run and published."""
    args = step_arguments(doc).parse_args(argv)
    step = Step(name, previous, args)
    step.publish(
        distill(step, student, temperature, alpha, epochs, TrainSettings(**train), data["train"], data["valid"])
    )
    return 0
