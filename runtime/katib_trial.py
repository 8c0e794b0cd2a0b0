"""The last step of a Katib trial (search/katib-experiment.yaml): the objective, read
as search/search.py reads a trial's, written where Katib's metrics collector reads it.

    python3 -m llmc.runtime.katib_trial --objective NAME --metrics TRIAL/metrics.jsonl
        [--evaluation TRIAL/evaluate.json] --out FILE

The trial's command runs it after training (and, for a metric objective, after
`evaluate/evaluate.py --split valid --json TRIAL/evaluate.json`, whose exit status is
not used: a failed gate has still measured the metric). The objective is, as in
llmc.runtime.search, the final line of the training's metrics (`{"final": true,
"valid_loss": ...}`), or `metrics.<NAME>` of the evaluation's report when
--evaluation is given.

Why a step of its own: Katib's File collector in JSON format (kubeflow/katib
pkg/metricscollector/v1beta1/file-metricscollector) reads one JSON object per line and
takes a metric only when its value is a string (`{"valid_loss": "1.93"}`); the training's
metrics file holds numbers. FILE gets one line, the objective as a string and an
RFC 3339 `timestamp`. Exit status 1, with the reason on stderr, when training did not
finish or the objective is missing or not finite: the trial's Job then fails, and
Katib counts a failed trial.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from .search import TrialFailed, final_metrics, finite_number, reported_metric


def objective_value(objective: str, metrics: Path, evaluation: Path | None) -> float:
    """The trial's objective: from the evaluation's report when there is one, else from
    the training's final metrics line (which must be there either way)."""
    final = final_metrics(metrics)
    if evaluation is not None:
        return reported_metric(evaluation, objective)
    return finite_number(final.get(objective), f"the final {objective}")


def observation(objective: str, value: float, now: datetime) -> str:
    """One line of Katib's JSON metrics format: the value as a string, with a timestamp."""
    return json.dumps({objective: repr(value), "timestamp": now.isoformat()}) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a Katib trial's objective for Katib's metrics collector.")
    parser.add_argument("--objective", required=True, help="the spec's search.objective")
    parser.add_argument("--metrics", required=True, type=Path, help="the training's metrics.jsonl")
    parser.add_argument(
        "--evaluation", type=Path, default=None, help="evaluate.py's --json report (a metric objective)"
    )
    parser.add_argument("--out", required=True, type=Path, help="the file Katib's metrics collector reads")
    args = parser.parse_args(argv)
    try:
        value = objective_value(args.objective, args.metrics, args.evaluation)
    except TrialFailed as exc:
        print(f"katib trial: {exc}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(observation(args.objective, value, datetime.now(UTC)), encoding="utf-8")
    print(f"katib trial: {args.objective} = {value:.6g}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
