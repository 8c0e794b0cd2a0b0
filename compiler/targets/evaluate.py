"""evaluate target: evaluate/evaluate.py, the spec's metrics and quality gates.

    python evaluate/evaluate.py --model DIR [--baseline DIR] [--json FILE]
                                [--data-root DIR] [--split S] [--limit N] [--latency] [--no-steps]

The script runs any model the bundle produces (a torch model.pt, a TensorFlow
SavedModel, the compress stage's ONNX or TensorFlow Lite model) on one split, scores
it (runtime/metrics.py), checks the gates and exits 0 when all pass, 1 when one
fails, 2 on a missing model or data file. `--json` gets `{"metrics", "gates",
"passed", "steps", ...}`; the search target reads `metrics[objective]` from it.
Given the compress stage's OUT/model, it also scores every step's model on the gated
metrics (`steps`: runtime/metrics.py score_steps); only --model's gates decide.

Decided here, filled in by the template:

* the metrics computed: every quality metric of the task (compiler/checks/metrics.py
  METRICS_BY_TASK, so a search objective the spec does not gate is still there),
  perplexity for generating and language models, model_size always, and the
  latencies only when the spec gates one (they cost one single-example call per
  example; `--latency` asks for them anyway);
* the gates, in spec order, with the spec's bounds in the metric's own scale;
* the split paths as the IR holds them (relative to the main spec's folder), which
  the script resolves against --data-root, as docs/bundle.md says.
"""

from __future__ import annotations

from typing import NamedTuple

from ..metric_names import METRICS_BY_TASK
from . import Artifact, BuildContext
from .docstrings import doc_text
from .gates import Gate, gate

LATENCY = ("latency_p50", "latency_p99")


class EvaluateScript(NamedTuple):
    model_name: str
    model_doc: str  # the model's name made docstring-safe (docstrings.doc_text)
    task: str
    framework: str
    splits: dict  # "train" | "valid" | "test" -> path as the IR holds it
    default_split: str
    metrics: list[str]
    gates: list[Gate]


def artifacts(ctx: BuildContext) -> list[Artifact]:
    if ctx.ir.evaluate is None:
        return []
    return [Artifact("evaluate/evaluate.py", "evaluate/evaluate.py.j2", evaluate_script(ctx), executable=True)]


def evaluate_script(ctx: BuildContext) -> EvaluateScript:
    ir = ctx.ir
    ev = ir.evaluate
    assert ev is not None  # artifacts() runs only with an evaluate block
    task = ir.model.task
    data = ir.model.data
    gates = [gate(name, m) for name, m in ev.metric.items()]
    return EvaluateScript(
        model_name=ir.model.name,
        model_doc=doc_text(ir.model.name),
        task=task,
        framework=ir.model.framework,
        splits={"train": data.train, "valid": data.valid, "test": data.test},
        default_split=ev.split,
        metrics=computed_metrics(task, [g.metric for g in gates]),
        gates=gates,
    )


def computed_metrics(task: str, gated: list[str]) -> list[str]:
    allowed = METRICS_BY_TASK[task]
    return [m for m in allowed if m not in LATENCY or m in gated]
