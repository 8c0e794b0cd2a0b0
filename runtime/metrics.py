"""Scoring a model's outputs and checking the spec's gates (evaluate/evaluate.py).

Framework-free: the scorers import sacrebleu, rouge-score and scikit-learn when
first called, and nothing here touches torch or TensorFlow. Scales are those of the
language (compiler/checks/metrics.py), so a bound in the spec compares with a value
here as written:

    bleu, chrf, ter          sacrebleu's corpus scores, 0-100 (TER can exceed 100)
    rouge1, rouge2, rougeL   rouge-score's F-measure, averaged over examples, 0-1
    accuracy, f1             fractions 0-1; f1 is the macro average over classes
    perplexity               exp(mean token negative log-likelihood), >= 1
    latency_p50, latency_p99 seconds per single-example call
    model_size               bytes

Gates: `min` passes when value >= min, `max` when value <= max, and `max_drop`
bounds the change against the baseline model's value of the same metric on the same
examples, in the metric's own units (BLEU points, accuracy as a fraction: 1% is
0.01): a fall for metrics where higher is better (HIGHER_IS_BETTER), a rise for
the others (TER, perplexity, latency, size). A gate whose metric could not be
computed fails; a max_drop gate without a baseline is reported as skipped.

Steps: given the compress stage's OUT/model, evaluate also scores each step's model
listed in OUT/report.json on the gated metrics but the latencies (batched, untimed)
and checks the same gates on it (`score_steps`); the table of steps shows them beside
the size, parameters and latency the compress stage measured (steps/measure.py). The
exit status stays the served model's.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import NamedTuple

from .folders import files_size

# The compiler's list (compiler/checks/metrics.py); the runtime never imports the compiler.
HIGHER_IS_BETTER = ("bleu", "chrf", "rouge1", "rouge2", "rougeL", "accuracy", "f1")
GENERATION_METRICS = ("bleu", "chrf", "ter", "rouge1", "rouge2", "rougeL")
CLASSIFICATION_METRICS = ("accuracy", "f1")
LATENCY_METRICS = ("latency_p50", "latency_p99")
# How a value is shown: "score" (0-100), "fraction", "seconds", "bytes", "number".
UNITS = {
    "bleu": "score",
    "chrf": "score",
    "ter": "score",
    "rouge1": "fraction",
    "rouge2": "fraction",
    "rougeL": "fraction",
    "accuracy": "fraction",
    "f1": "fraction",
    "perplexity": "number",
    "latency_p50": "seconds",
    "latency_p99": "seconds",
    "model_size": "bytes",
}
EPSILON = 1e-9  # bounds are compared with this slack, so 0.9 passes `min = 90%`


class MetricError(ValueError):
    """Scoring cannot run (mismatched lengths, nothing to score): reported without a traceback."""


# --- scorers -----------------------------------------------------------------------------


def _pairs(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[list[str], list[str]]:
    if len(hypotheses) != len(references):
        raise MetricError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    if not hypotheses:
        raise MetricError("no examples to score")
    return [str(h) for h in hypotheses], [str(r) for r in references]


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu's corpus BLEU (13a tokenisation, exponential smoothing), 0-100."""
    import sacrebleu

    hyps, refs = _pairs(hypotheses, references)
    return float(sacrebleu.corpus_bleu(hyps, [refs]).score)


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu's corpus chrF (character 6-grams, beta 2), 0-100."""
    import sacrebleu

    hyps, refs = _pairs(hypotheses, references)
    return float(sacrebleu.corpus_chrf(hyps, [refs]).score)


def ter(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu's corpus TER (edits per reference word x 100; lower is better)."""
    import sacrebleu

    hyps, refs = _pairs(hypotheses, references)
    return float(sacrebleu.corpus_ter(hyps, [refs]).score)


def rouge(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1, ROUGE-2 and ROUGE-L F-measures over the examples (rouge-score's
    default tokeniser: lower-cased alphanumeric words, no stemming)."""
    from rouge_score import rouge_scorer

    hyps, refs = _pairs(hypotheses, references)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for h, r in zip(hyps, refs):
        scores = scorer.score(r, h)  # (target, prediction)
        for key in totals:
            totals[key] += scores[key].fmeasure
    return {k: v / len(hyps) for k, v in totals.items()}


def accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    from sklearn.metrics import accuracy_score

    if len(y_true) != len(y_pred) or not len(y_true):
        raise MetricError(f"{len(y_pred)} predictions for {len(y_true)} labels")
    return float(accuracy_score(list(y_true), list(y_pred)))


def macro_f1(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[int] | None = None) -> float:
    """F1 averaged over classes with equal weight (scikit-learn's `average="macro"`).

    `labels` fixes the classes averaged over (all the model's classes); by default the
    classes that occur in either list. A class that is never predicted scores 0.
    """
    from sklearn.metrics import f1_score

    if len(y_true) != len(y_pred) or not len(y_true):
        raise MetricError(f"{len(y_pred)} predictions for {len(y_true)} labels")
    return float(
        f1_score(
            list(y_true),
            list(y_pred),
            labels=None if labels is None else list(labels),
            average="macro",
            zero_division=0,
        )
    )


def perplexity(nll_sum: float, tokens: float) -> float:
    """exp(total negative log-likelihood / predicted tokens)."""
    if tokens <= 0:
        raise MetricError("no tokens to score")
    return float(math.exp(min(nll_sum / tokens, 700.0)))  # exp(700) ~ 1e304: finite, JSON-safe


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linearly interpolated between order statistics
    (numpy's default), so p50 of [1, 2, 3, 4] is 2.5."""
    if not len(values):
        raise MetricError("no timings")
    xs = sorted(float(v) for v in values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def latency(seconds: Sequence[float]) -> dict[str, float]:
    return {"latency_p50": percentile(seconds, 50), "latency_p99": percentile(seconds, 99)}


def generation_scores(hypotheses: Sequence[str], references: Sequence[str], names: Sequence[str]) -> dict[str, float]:
    """The generation metrics among `names`, on detokenised strings."""
    out: dict[str, float] = {}
    if "bleu" in names:
        out["bleu"] = bleu(hypotheses, references)
    if "chrf" in names:
        out["chrf"] = chrf(hypotheses, references)
    if "ter" in names:
        out["ter"] = ter(hypotheses, references)
    if any(n.startswith("rouge") for n in names):
        out.update({k: v for k, v in rouge(hypotheses, references).items() if k in names})
    return out


def classification_scores(y_true, y_pred, names: Sequence[str]) -> dict[str, float]:
    """accuracy and macro F1 among `names`; F1 averages over the classes that occur in
    the labels or the predictions (a class absent from both is not scored)."""
    out: dict[str, float] = {}
    if "accuracy" in names:
        out["accuracy"] = accuracy(y_true, y_pred)
    if "f1" in names:
        out["f1"] = macro_f1(y_true, y_pred)
    return out


# --- gates ----------------------------------------------------------------------------------


class GateSpec(NamedTuple):
    """One metric block of the spec: `metric NAME { min, max, max_drop }`."""

    metric: str
    min: float | None = None
    max: float | None = None
    max_drop: float | None = None


class Gate(NamedTuple):
    metric: str
    bound: str  # "min" | "max" | "max_drop"
    limit: float
    value: float | None  # the metric (None: could not be computed)
    baseline: float | None  # max_drop only: the baseline's value
    change: float | None  # max_drop only: the fall (higher-is-better) or rise (others)
    verdict: str  # "pass" | "FAIL" | "skipped"
    note: str

    @property
    def failed(self) -> bool:
        return self.verdict == "FAIL"

    def as_dict(self) -> dict:
        return {
            "metric": self.metric,
            "bound": self.bound,
            "limit": self.limit,
            "value": self.value,
            "baseline": self.baseline,
            "change": self.change,
            "verdict": self.verdict,
            "passed": self.verdict != "FAIL",
            "note": self.note,
        }


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def check_gates(specs: Sequence[GateSpec], metrics: dict, baseline: dict | None = None) -> list[Gate]:
    """Every bound of every gate, in spec order (min, max, max_drop within one metric)."""
    gates = []
    for spec in specs:
        value = metrics.get(spec.metric)
        have = _finite(value)
        for bound in ("min", "max"):
            limit = getattr(spec, bound)
            if limit is None:
                continue
            if not have:
                gates.append(Gate(spec.metric, bound, limit, None, None, None, "FAIL", "metric not computed"))
                continue
            ok = value >= limit - EPSILON if bound == "min" else value <= limit + EPSILON
            gates.append(Gate(spec.metric, bound, limit, value, None, None, "pass" if ok else "FAIL", ""))
        if spec.max_drop is not None:
            gates.append(_drop_gate(spec.metric, spec.max_drop, value, baseline))
    return gates


def _drop_gate(metric: str, max_drop: float, value, baseline: dict | None) -> Gate:
    if baseline is None:
        return Gate(
            metric,
            "max_drop",
            max_drop,
            value if _finite(value) else None,
            None,
            None,
            "skipped",
            "no --baseline model",
        )
    base = baseline.get(metric)
    if not _finite(value) or not _finite(base):
        which = "metric" if not _finite(value) else "baseline metric"
        return Gate(
            metric,
            "max_drop",
            max_drop,
            value if _finite(value) else None,
            base if _finite(base) else None,
            None,
            "FAIL",
            f"{which} not computed",
        )
    change = base - value if metric in HIGHER_IS_BETTER else value - base
    ok = change <= max_drop + EPSILON
    return Gate(metric, "max_drop", max_drop, value, base, change, "pass" if ok else "FAIL", "")


def passed(gates: Sequence[Gate]) -> bool:
    return not any(g.failed for g in gates)


# --- the table ---------------------------------------------------------------------------------


def format_value(metric: str, value) -> str:
    if not _finite(value):
        return "n/a"
    unit = UNITS.get(metric, "number")
    if unit == "seconds":
        return f"{value * 1e3:.2f} ms" if value < 1 else f"{value:.3f} s"
    if unit == "bytes":
        for scale, name in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
            if value >= scale:
                return f"{value / scale:.2f} {name}"
        return f"{int(value)} B"
    if unit == "fraction":
        return f"{value:.4f}"
    return f"{value:.2f}"


def _bound_text(gate: Gate) -> str:
    limit = format_value(gate.metric, gate.limit)
    if gate.bound == "min":
        return f">= {limit}"
    if gate.bound == "max":
        return f"<= {limit}"
    direction = "fall" if gate.metric in HIGHER_IS_BETTER else "rise"
    text = f"{direction} <= {limit}"
    if gate.baseline is not None:
        text += f" (baseline {format_value(gate.metric, gate.baseline)}"
        if gate.change is not None:
            sign = "-" if gate.change < 0 else ""
            text += f", {direction} {sign}{format_value(gate.metric, abs(gate.change))}"
        text += ")"
    return text


def table(metrics: dict, gates: Sequence[Gate]) -> str:
    """metric | value | bound | verdict: one row per gate bound, then each ungated metric."""
    rows = [("metric", "value", "bound", "verdict")]
    gated = set()
    for g in gates:
        gated.add(g.metric)
        verdict = g.verdict + (f" ({g.note})" if g.note else "")
        rows.append((g.metric, format_value(g.metric, g.value), _bound_text(g), verdict))
    for name in sorted(metrics):
        if name not in gated:
            rows.append((name, format_value(name, metrics[name]), "-", "-"))
    return aligned(rows)


def aligned(rows: Sequence[tuple[str, ...]]) -> str:
    """Rows of columns, the first row the header: every column but the last padded to
    its widest cell, a rule of dashes under the header (the run's metrics table, and
    `llmc loadtest`'s)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1])
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * len(r[-1]))
    return "\n".join(line.rstrip() for line in lines)


# --- running a model over a split (evaluate/evaluate.py) ---------------------------------------------


def measure(
    backend, split, refs: Sequence[str] | None, names: Sequence[str], *, timed: bool = False, batch_size: int = 32
) -> tuple[dict, list]:
    """The metrics among `names` of `backend` (backends.open_model) on `split`, plus
    model_size. Quality metrics come from batched inference, or, when `timed`, from
    the single-example calls that are timed (after two untimed warm-up calls), so the
    outputs are computed once. Returns (metrics, a few example predictions)."""
    import time

    import numpy as np

    from .data import batches
    from .tokenizer import get_tokenizer

    n = len(split)
    cfg = backend.model_cfg
    run = backend.generate if backend.generates else backend.classify
    outputs, timings = [], []
    if timed:
        singles = [next(batches(split, np.array([i]), 1, drop_last=False)) for i in range(n)]
        for b in singles[:2]:
            run(b)
        for b in singles:
            t0 = time.perf_counter()
            y = run(b)
            timings.append(time.perf_counter() - t0)
            outputs.append(y)
    else:
        outputs = [run(b) for b in batches(split, np.arange(n), batch_size, drop_last=False)]
    out: dict = {}
    examples: list = []
    if backend.generates:
        if refs is None:
            raise MetricError("a generating model is scored against references: pass the split's targets")
        tok = get_tokenizer(cfg["data"].get("tokenizer", "bytes"), cfg["transformer"]["vocab"])
        hyps = [tok.decode(row) for y in outputs for row in y]
        out.update(generation_scores(hyps, refs, [m for m in names if m in GENERATION_METRICS]))
        examples = [{"prediction": h, "reference": r} for h, r in zip(hyps[:5], refs[:5])]
    else:
        preds = np.concatenate([np.asarray(y).argmax(-1) for y in outputs])
        labels = split.arrays["label"]
        out.update(classification_scores(labels, preds, [m for m in names if m in CLASSIFICATION_METRICS]))
        examples = [{"prediction": int(p), "label": int(t)} for p, t in zip(preds[:5], labels[:5])]
    if "perplexity" in names:
        total: float | None = 0.0
        count = 0.0
        for b in batches(split, np.arange(n), batch_size, drop_last=False):
            r = backend.nll(b)
            if r is None:
                total = None
                break
            total, count = total + r[0], count + r[1]
        out["perplexity"] = perplexity(total, count) if total is not None else None
    if timings:
        out.update(latency(timings))
    out["model_size"] = files_size(backend.files())
    return out, examples


class EvaluateConfig(NamedTuple):
    """What the generated evaluate.py fills in from the spec."""

    model_name: str
    task: str
    splits: dict  # split -> the spec's path (relative to the spec's folder)
    default_split: str
    metrics: list  # computed: the task's metrics (latency only when gated)
    gates: list  # GateSpec per `metric` block, in spec order


def evaluate_arguments(description: str, default_split: str):
    import argparse

    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model",
        help="the model folder (or model file) to evaluate (default $LLMC_OUTPUT/compress/model "
        "when it exists, else $LLMC_OUTPUT/model; $LLMC_OUTPUT defaults to outputs/)",
    )
    p.add_argument(
        "--baseline",
        help="the uncompressed model: max_drop gates compare against it (default "
        "$LLMC_OUTPUT/model when --model defaults to the compressed one)",
    )
    p.add_argument(
        "--json",
        help="write {metrics, gates, passed} here (default $LLMC_OUTPUT/evaluate/metrics.json "
        "when --model is not given)",
    )
    p.add_argument(
        "--data-root",
        help="relative data paths are relative to this folder (default $LLMC_DATA_ROOT, else the working directory)",
    )
    p.add_argument(
        "--split",
        choices=("train", "valid", "test"),
        default=default_split,
        help=f"the split to score (default: the spec's, {default_split})",
    )
    p.add_argument("--limit", type=int, help="score only the first N examples")
    p.add_argument(
        "--latency", action="store_true", help="time single-example calls even when no latency gate asks for it"
    )
    p.add_argument(
        "--no-steps",
        dest="steps",
        action="store_false",
        help="do not score each compress step's model (by default, when --model is the compress stage's "
        "OUT/model, every step's model in OUT/report.json is scored on the gated metrics too)",
    )
    return p


def _default_models(args) -> None:
    """Run bare (a k8s Job): the compressed model against the trained one, both under
    $LLMC_OUTPUT, the JSON beside them."""
    from .folders import default_served_model, outputs_root

    root = outputs_root()
    model, trained = default_served_model(), root / "model"
    args.model = str(model)
    if model != trained and args.baseline is None and trained.exists():
        args.baseline = str(trained)
    if args.json is None:
        args.json = str(root / "evaluate" / "metrics.json")


def _same_path(a, b) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def run_evaluate(cfg: EvaluateConfig, args) -> int:
    """evaluate.py's body: score the model (and the baseline for max_drop), print the
    table, write the JSON, and return the exit status (0 pass, 1 a gate failed)."""
    import json
    import sys

    from .backends import open_model
    from .folders import check_data_file, load_rows, model_format, references, resolve_data

    if args.limit is not None and args.limit < 1:
        raise MetricError("--limit must be at least 1")
    if args.model is None:
        _default_models(args)
    # Fail fast, before a framework is imported, on a missing model or data file.
    model_format(args.model)
    if args.baseline:
        model_format(args.baseline)
    path = check_data_file(resolve_data(cfg.splits.get(args.split), args.data_root))
    model = open_model(args.model)
    split = load_rows(model.model_cfg, path, model.label_names, args.limit)
    refs = references(model.model_cfg, path, args.limit) if model.generates else None
    timed = args.latency or any(m in LATENCY_METRICS for m in cfg.metrics)
    names = list(cfg.metrics) + ([m for m in LATENCY_METRICS if m not in cfg.metrics] if args.latency else [])
    print(
        f"evaluate: {args.model} ({model.name}) on {len(split)} {args.split} examples from {path}",
        file=sys.stderr,
        flush=True,
    )
    values, examples = measure(model, split, refs, names, timed=timed)
    base_values = None
    drops = [g.metric for g in cfg.gates if g.max_drop is not None]
    if args.baseline and drops and _same_path(args.baseline, args.model):
        base_values = {k: values.get(k) for k in drops}  # the same model on the same examples
    elif args.baseline and drops:
        base = open_model(args.baseline)
        base_split = load_rows(base.model_cfg, path, base.label_names, args.limit)
        print(f"evaluate: baseline {args.baseline} ({base.name})", file=sys.stderr, flush=True)
        base_values, _ = measure(base, base_split, refs, drops, timed=any(m in LATENCY_METRICS for m in drops))
    gates = check_gates(cfg.gates, values, base_values)
    ok = passed(gates)
    print(table(values, gates))
    steps = None
    # Read once: its rows are the steps to score, its warnings are repeated under the table.
    summary = (_compress_report(args.model) if getattr(args, "steps", True) else None) or {}
    rows = summary.get("rows")
    if isinstance(rows, list) and rows:
        steps = score_steps(cfg, rows, path, refs, values, base_values, args.limit)
        print(f"\ncompress steps: their gated metrics on these {len(split)} examples; size, parameters and")
        print("latency p50 / p99 from the compress stage's report.json (each model timed beside its input)\n")
        print(steps_table(rows, steps, gated_quality(cfg), base_values))
        for step in steps:
            if not step["passed"]:
                failed = "; ".join(
                    f"{g['metric']} {g['bound']} {g['limit']:g}" for g in step["gates"] if not g["passed"]
                )
                print(f"note: step {step['step']}'s model fails {failed} (the gates decide on the served model only)")
        for warning in summary.get("warnings") or []:
            print(f"warning: {warning}")
    print(
        f"\n{cfg.model_name}: {'PASSED' if ok else 'FAILED'} "
        f"({sum(g.failed for g in gates)} of {len(gates)} gate bounds failed)"
    )
    if args.json:
        document = {
            "model": str(args.model),
            "format": model.name,
            "split": args.split,
            "examples": len(split),
            "metrics": values,
            "baseline": base_values,
            "gates": [g.as_dict() for g in gates],
            "passed": ok,
            "samples": examples,
            "steps": steps,
        }
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        tmp = f"{args.json}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(document, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, args.json)
    return 0 if ok else 1


# --- each compress step's model (evaluate's per-step rows) -----------------------------------------------


def _compress_report(model) -> dict | None:
    """The compress stage's OUT/report.json when `model` is its OUT/model, else None."""
    import json
    from pathlib import Path

    folder = Path(model)
    report = folder.parent / "report.json"
    if folder.name != "model" or not report.is_file():
        return None
    try:
        with open(report, encoding="utf-8") as f:
            summary = json.load(f)
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def gated_quality(cfg: EvaluateConfig) -> list[str]:
    """The gated metrics a step's model is scored on: all but the latencies, which take
    one timed call per example (the compress rows time every model instead)."""
    names: list[str] = []
    for g in cfg.gates:
        if g.metric not in LATENCY_METRICS and g.metric not in names:
            names.append(g.metric)
    return names


def score_steps(
    cfg: EvaluateConfig, rows: list[dict], path: str, refs, served_values: dict, base_values: dict | None, limit
) -> list[dict]:
    """Each step's model on the split: its gated metrics (batched, untimed) and the spec's
    gates on them (min, max, and max_drop against the same baseline as the served model).
    The last step's model is the one just scored (OUT/model is its copy)."""
    import sys

    from .backends import open_model
    from .folders import StepError, load_rows

    names = gated_quality(cfg)
    specs = [g for g in cfg.gates if g.metric in names]
    out = []
    for i, row in enumerate(rows):
        model = row["output"]["model"]
        entry: dict = {"step": row["step"], "model": model, "served": row.get("served", True), "note": None}
        if i == len(rows) - 1:
            values: dict = {k: served_values.get(k) for k in [*names, "model_size"]}
        else:
            try:
                backend = open_model(model)
                split = load_rows(backend.model_cfg, path, backend.label_names, limit)
                values, _ = measure(backend, split, refs, names)
            except (StepError, NotImplementedError) as exc:  # a TensorRT plan here; TF Lite cannot generate
                values, entry["note"] = {}, f"not scored: {exc}"
                print(f"evaluate: step {row['step']}: {entry['note']}", file=sys.stderr, flush=True)
        gates = check_gates(specs, values, base_values)
        entry.update({"metrics": values, "gates": [g.as_dict() for g in gates], "passed": passed(gates)})
        out.append(entry)
    return out


def steps_table(rows: list[dict], steps: list[dict], names: list[str], base_values: dict | None) -> str:
    """step | format | size | parameters | p50 / p99 at batch 1 and at the max batch |
    the gated metrics | the step's gates; the trained model first (the baseline)."""
    max_batch = next((r.get("max_batch") for r in rows if r.get("max_batch")), None)
    keys = ["batch_1"] + (["max_batch"] if max_batch else [])
    head = ["step", "format", "size", "params", "batch 1 p50 / p99"]
    head += [f"batch {max_batch} p50 / p99"] if max_batch else []
    lines = [(*head, *names, "vs input", "gates")]

    def cells(label: str, model: dict, values: dict, verdict: str, gates: str) -> tuple[str, ...]:
        lat = [_latency_cell(model, k) for k in keys]
        # The baseline is scored only on the max_drop metrics: "-" where it was not asked.
        metrics = [format_value(n, values[n]) if n in values else "-" for n in names]
        sizes = (str(model.get("format") or "-"), _size(model.get("bytes")), _count(model.get("params")))
        return (label, *sizes, *lat, *metrics, verdict, gates)

    lines.append(cells("(trained)", rows[0]["input"], base_values or {}, "-", "baseline"))
    for row, step in zip(rows, steps):
        gates = "pass" if step["passed"] else "FAIL"
        if step.get("note"):
            gates = "n/a"
        label = row["step"] + ("" if row.get("served", True) else " (not served)")
        lines.append(cells(label, row["output"], step["metrics"], row.get("verdict") or "-", gates))
    return aligned(lines)


def _latency_cell(model: dict, key: str) -> str:
    entry = (model.get("latency") or {}).get(key)
    return f"{entry['p50_s'] * 1e3:.2f} / {entry['p99_s'] * 1e3:.2f} ms" if entry else "-"


def _size(n) -> str:
    return format_value("model_size", n) if _finite(n) else "-"


def _count(n) -> str:
    if not _finite(n):
        return "-"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else (f"{n / 1e3:.1f}k" if n >= 1e3 else str(int(n)))
