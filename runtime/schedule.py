"""Learning-rate schedules (`train.schedule` in docs/language.md), as pure functions of the step.

Training sets the optimizer's learning rate from `lr_at(step)` before every optimizer
step, in torch and TensorFlow alike, so a resumed run continues the same curve and
the metrics log the rate that was really used. `step` counts optimizer steps from 0.

* warmup: the rate rises linearly from lr / warmup to lr over the first `warmup`
  steps (never 0, which would waste the first step).
* constant: lr after warmup.
* linear: from lr at the end of warmup down to min_lr at the last step.
* cosine: min_lr + (lr - min_lr) (1 + cos(pi t)) / 2, t going 0 -> 1 after warmup.
* inverse-sqrt (Vaswani et al. 2017; fairseq): lr sqrt(w / step) after warmup w, so
  it is continuous at the end of warmup; with no warmup lr / sqrt(step + 1).

Every schedule is floored at min_lr after warmup.
"""

from __future__ import annotations

import math

SCHEDULES = ("constant", "linear", "cosine", "inverse-sqrt")


def lr_at(
    step: int, lr: float, name: str = "constant", warmup: int = 0, total_steps: int = 1, min_lr: float = 0.0
) -> float:
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; expected one of {', '.join(SCHEDULES)}")
    step = max(0, int(step))
    warmup = max(0, int(warmup))
    if step < warmup:
        return lr * (step + 1) / warmup
    if name == "constant":
        value = lr
    elif name == "inverse-sqrt":
        value = lr * math.sqrt(warmup / step) if warmup else lr / math.sqrt(step + 1)
    else:
        span = max(1, int(total_steps) - warmup)
        t = min(1.0, (step - warmup) / span)
        if name == "linear":
            value = lr + (min_lr - lr) * t
        else:
            value = min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))
    return max(value, min_lr)


def schedule_fn(train: dict, total_steps: int):
    """`step -> lr` for a model.json `train` block."""
    s = train.get("schedule") or {"name": "constant"}
    lr = float(train["optimizer"]["lr"])
    name, warmup, min_lr = s["name"], int(s.get("warmup", 0)), float(s.get("min_lr", 0.0))
    return lambda step: lr_at(step, lr, name, warmup, total_steps, min_lr)
