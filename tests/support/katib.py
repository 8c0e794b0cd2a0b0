"""What Katib does with search/katib-experiment.yaml, restated from its source
(kubeflow/katib v0.19.0) for test_target_katib.py and test_katib_trial_runs.py:
the trial's Job as its generator substitutes it, and the primary container's command
as its pod webhook wraps it."""

from __future__ import annotations

import json


def trial_job(doc: dict, assignment: dict[str, str], trial: str) -> dict:
    """The trial's Job: each `${trialParameters.NAME}` of the template's JSON text
    replaced by its parameter's assigned text, or by the trial's name for
    `${trialSpec.Name}` (pkg/controller.v1beta1/experiment/manifest/generator.go)."""
    template = doc["spec"]["trialTemplate"]
    text = json.dumps(template["trialSpec"])
    for t in template["trialParameters"]:
        value = trial if t["reference"] == "${trialSpec.Name}" else assignment[t["reference"]]
        text = text.replace(f"${{trialParameters.{t['name']}}}", value)
    job: dict = json.loads(text)
    return job


def primary_line(doc: dict, job: dict) -> str:
    """The primary container's `sh -c` line as Katib's pod webhook leaves it
    (pkg/webhook/v1beta1/pod/utils.go, wrapWorkerContainer): the command's own line,
    then `&& echo completed > DIR/$$$$.pid` (DIR the metrics file's folder; Kubernetes
    turns `$$` into `$`, so the shell writes its own pid's file)."""
    name = doc["spec"]["trialTemplate"]["primaryContainerName"]
    (container,) = [c for c in job["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    assert container["command"][:2] == ["sh", "-c"] and len(container["command"]) == 3 and "args" not in container
    path = doc["spec"]["metricsCollectorSpec"]["source"]["fileSystemPath"]["path"]
    line: str = container["command"][2] + f" && echo completed > {path.rsplit('/', 1)[0]}/$$$$.pid"
    return line
