"""A Katib trial's command line (search/katib-experiment.yaml), run by a real `sh` as
a trial's pod runs it: after Katib's substitution and its webhook's wrapping
(tests/support/katib.py), in a bundle whose train/launch.sh and evaluate/evaluate.py
are stand-ins that honour their contracts (docs/bundle.md), with the real
`python3 -m llmc.runtime.katib_trial`. The cluster's paths (/artifacts/outputs,
/var/log/katib) are moved under a temporary folder.

The fast checks of the same part are in tests/unit/test_target_katib.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, build_spec, spec_variant
from support.katib import primary_line, trial_job

# train/launch.sh's contract: --set PATH=JSON..., --output DIR, --metrics FILE whose
# last line is {"final": true, ...}. This one records its arguments, and fails when
# FAIL_TRAINING is set.
LAUNCH = """#!/usr/bin/env bash
set -eu
printf '%s\\n' "$@" > "$ARGS_FILE"
[ -z "${FAIL_TRAINING:-}" ] || exit 3
while [ $# -gt 0 ]; do
  case "$1" in
    --output) out="$2"; shift 2 ;;
    --metrics) metrics="$2"; shift 2 ;;
    *) shift ;;
  esac
done
mkdir -p "$out/model"
printf '%s\\n' '{"epoch": 1, "valid_loss": 2.5}' '{"final": true, "valid_loss": 1.25}' > "$metrics"
"""
# evaluate.py's contract: --json FILE with metrics.<name>; exits 1 like a failed gate.
EVALUATE = """import json, sys
args = sys.argv[1:]
assert args[args.index("--split") + 1] == "valid"
with open(args[args.index("--json") + 1], "w") as f:
    json.dump({"passed": False, "metrics": {"accuracy": 0.8125}}, f)
sys.exit(1)
"""


def experiment(tmp_path: Path, name: str, edit=None) -> dict:
    spec = spec_variant(tmp_path, name, edit) if edit else ROOT / "specs" / f"{name}.llm"
    out = build_spec(spec, tmp_path / "bundle")
    doc: dict = yaml.safe_load((out / "search" / "katib-experiment.yaml").read_text(encoding="utf-8"))
    return doc


def run_trial(tmp_path: Path, doc: dict, assignment: dict[str, str], fail: bool = False):
    """(process, the trial's folder, Katib's metrics folder, the training's arguments file)."""
    bundle, outputs, katib = tmp_path / "fake-bundle", tmp_path / "outputs", tmp_path / "katib"
    (bundle / "train").mkdir(parents=True)
    (bundle / "evaluate").mkdir()
    (bundle / "train" / "launch.sh").write_text(LAUNCH, encoding="utf-8")
    (bundle / "evaluate" / "evaluate.py").write_text(EVALUATE, encoding="utf-8")
    katib.mkdir()  # Katib mounts an emptyDir there
    line = primary_line(doc, trial_job(doc, assignment, "trial-1"))
    # Kubernetes turns `$$` into `$` in a command; the cluster's folders move here.
    line = line.replace("$$", "$").replace("/artifacts/outputs", str(outputs)).replace("/var/log/katib", str(katib))
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # python3: this one, with llmc
        "ARGS_FILE": str(tmp_path / "args.txt"),
        **({"FAIL_TRAINING": "1"} if fail else {}),
    }
    proc = subprocess.run(["sh", "-c", line], cwd=bundle, env=env, capture_output=True, text=True, timeout=120)
    return proc, outputs / "search" / "trials" / "trial-1", katib, tmp_path / "args.txt"


def collected(katib: Path, metric: str) -> list[str]:
    """The values Katib's JSON file collector takes from the metrics file: strings only."""
    lines = (katib / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [r[metric] for r in map(json.loads, lines) if isinstance(r.get(metric), str)]


def test_a_trial_trains_with_its_values_and_reports_the_final_loss(tmp_path):
    doc = experiment(tmp_path, "translator")
    assignment = {"model-transformer-dropout": "0.15", "train-batch_size": "512", "train-optimizer-lr": "1.2e-05"}
    proc, trial, katib, args = run_trial(tmp_path, doc, assignment)
    assert proc.returncode == 0, proc.stderr
    assert args.read_text(encoding="utf-8").splitlines() == [
        "--set",
        "model.transformer.dropout=0.15",
        "--set",
        "train.batch_size=512",
        "--set",
        "train.optimizer.lr=1.2e-05",
        "--output",
        str(trial),
        "--metrics",
        f"{trial}/metrics.jsonl",
    ]
    assert collected(katib, "valid_loss") == ["1.25"]
    (pid_file,) = katib.glob("*.pid")  # Katib's mark that the training container completed
    assert pid_file.read_text().strip() == "completed"


def test_a_metric_is_evaluated_even_when_a_gate_fails(tmp_path):
    doc = experiment(tmp_path, "classifier", lambda text: text.replace('backend   = "spark"', 'backend   = "katib"'))
    assignment = {
        p["name"]: (p["feasibleSpace"].get("list") or [p["feasibleSpace"]["min"]])[0] for p in doc["spec"]["parameters"]
    }
    proc, trial, katib, _ = run_trial(tmp_path, doc, assignment)
    assert proc.returncode == 0, proc.stderr
    assert collected(katib, "accuracy") == ["0.8125"]
    assert json.loads((trial / "evaluate.json").read_text())["metrics"]["accuracy"] == 0.8125


def test_a_failed_training_fails_the_trial_and_reports_nothing(tmp_path):
    doc = experiment(tmp_path, "translator")
    assignment = {"model-transformer-dropout": "0.15", "train-batch_size": "512", "train-optimizer-lr": "1.2e-05"}
    proc, _, katib, _ = run_trial(tmp_path, doc, assignment, fail=True)
    assert proc.returncode == 3
    assert not (katib / "metrics.jsonl").exists() and not list(katib.glob("*.pid"))


@pytest.mark.parametrize("value", ["fp16", "none"])
def test_an_enum_value_reaches_training_as_a_json_string(tmp_path, value):
    space = '  space {\n    train.gradient_compression = choice("none", "fp16")\n  }'
    doc = experiment(
        tmp_path, "translator", lambda text: re.sub(r"  space \{.*?\n  \}", space, text, count=1, flags=re.S)
    )
    proc, _, _, args = run_trial(tmp_path, doc, {"train-gradient_compression": value})
    assert proc.returncode == 0, proc.stderr
    assert f'train.gradient_compression="{value}"' in args.read_text(encoding="utf-8").splitlines()
