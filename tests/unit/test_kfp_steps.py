"""The pipeline's search step on Katib (kfp_steps.search_on_katib), against an in-memory
stand-in of the three API calls it makes: an earlier Experiment of that name is
deleted and gone before the new one is created, the new one is followed to its end,
its outcome (the best trial) is written, and a failed one fails the step with Katib's
reason. No Katib runs on the machines that build llmc."""

from __future__ import annotations

import copy
import json

import pytest
import yaml
from helpers import BundleCache

from llmc.runtime import kfp_steps


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return BundleCache(tmp_path_factory)


BEST = {
    "bestTrialName": "translator-search-7",
    "parameterAssignments": [{"name": "train-optimizer-lr", "value": "0.0003"}],
    "observation": {"metrics": [{"name": "valid_loss", "latest": "1.82", "min": "1.82", "max": "2.9"}]},
}


class Katib:
    """Experiments by name; a created one runs for `running` reads, then ends as `outcome` says."""

    def __init__(self, outcome: str = "Succeeded", running: int = 2, earlier: dict | None = None):
        self.objects: dict[str, dict] = {}
        self.calls: list[str] = []
        self.outcome, self.running = outcome, running
        self._reads = 0
        self._deleting = 0
        if earlier is not None:
            self.objects[earlier["metadata"]["name"]] = copy.deepcopy(earlier)

    def get(self, doc):
        name = doc["metadata"]["name"]
        self.calls.append(f"get {name}")
        if self._deleting:  # a foreground delete takes a read to finish
            self._deleting -= 1
            if not self._deleting:
                self.objects.pop(name, None)
            return copy.deepcopy(self.objects.get(name))
        obj = self.objects.get(name)
        if obj is None or obj.get("_earlier"):
            return copy.deepcopy(obj)
        self._reads += 1
        if self._reads > self.running:
            reason = "ExperimentGoalReached" if self.outcome == "Succeeded" else "ExperimentMaxFailedTrialsReached"
            obj["status"] = {
                "conditions": [
                    {"type": "Running", "status": "False"},
                    {"type": self.outcome, "status": "True", "reason": reason},
                ],
                "trials": 48,
                "trialsSucceeded": 48 if self.outcome == "Succeeded" else 0,
                "trialsFailed": 0 if self.outcome == "Succeeded" else 48,
                "currentOptimalTrial": BEST if self.outcome == "Succeeded" else {},
            }
        else:
            obj["status"] = {"conditions": [{"type": "Running", "status": "True"}], "trials": self._reads}
        return copy.deepcopy(obj)

    def apply(self, doc):
        self.calls.append(f"apply {doc['metadata']['name']}")
        assert doc["metadata"]["name"] not in self.objects, "an Experiment is created afresh"
        self.objects[doc["metadata"]["name"]] = copy.deepcopy(doc)

    def delete(self, doc):
        self.calls.append(f"delete {doc['metadata']['name']}")
        self._deleting = 2


def follow(api, experiment, out):
    return kfp_steps.search_on_katib(experiment, out, api=api, poll_seconds=0, clock=lambda: 0.0, sleep=lambda s: None)


def test_the_experiment_is_created_followed_and_its_best_trial_kept(built, tmp_path, capsys):
    experiment = built("translator") / "search" / "katib-experiment.yaml"
    doc = yaml.safe_load(experiment.read_text())
    earlier = {**doc, "_earlier": True}
    api = Katib(earlier=earlier)
    outcome = follow(api, experiment, tmp_path / "out")
    # The earlier one went first and was gone before the new one was created.
    assert api.calls.index("delete translator-search") < api.calls.index("apply translator-search")
    assert api.calls[api.calls.index("apply translator-search") - 1] == "get translator-search"
    assert outcome["state"] == "succeeded" and outcome["best"] == BEST
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert written == outcome and written["trials"]["trialsSucceeded"] == 48
    printed = capsys.readouterr().out
    assert "Experiment/translator-search: running" in printed
    assert "Experiment/translator-search: succeeded (ExperimentGoalReached)" in printed


def test_a_failed_experiment_fails_the_step_with_katibs_reason(built, tmp_path):
    experiment = built("translator") / "search" / "katib-experiment.yaml"
    with pytest.raises(kfp_steps.StepFailed, match="ExperimentMaxFailedTrialsReached"):
        follow(Katib(outcome="Failed"), experiment, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "results.json").read_text())["state"] == "failed"


def test_an_experiment_deleted_by_someone_else_fails_the_step(built, tmp_path):
    experiment = built("translator") / "search" / "katib-experiment.yaml"

    class Vanishing(Katib):
        def get(self, doc):
            obj = super().get(doc)
            if self._reads == 1:
                self.objects.clear()
            return obj

    with pytest.raises(kfp_steps.StepFailed, match="deleted by someone else"):
        follow(Vanishing(), experiment, tmp_path / "out")


def test_a_local_search_runs_search_py_not_katib(built):
    """Only a katib search has an Experiment: the local profile's search stays search.py."""
    assert not (built("translator", "local") / kfp_steps.KATIB_EXPERIMENT).exists()
    assert (built("translator") / kfp_steps.KATIB_EXPERIMENT).is_file()


# --- training as the bundle's MPIJob ------------------------------------------------------------------


def failed(obj: dict) -> dict:
    return {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}


def test_the_train_step_creates_resumes_and_follows_the_mpijob(built, capsys):
    from support.cluster import FakeCluster

    from llmc.runtime.runner import Bundle

    cluster = FakeCluster()
    kfp_steps.train_on_cluster(Bundle(str(built("translator"))), api=cluster, poll_seconds=0, sleep=lambda s: None)
    assert cluster.calls[:3] == [
        "get MPIJob/translator-train",
        "apply MPIJob/translator-train",
        "resume MPIJob/translator-train",
    ]
    assert "MPIJob/translator-train: succeeded" in capsys.readouterr().out
    doc = cluster.objects["MPIJob", "translator-train"]
    # Keyed as `llmc run --target k8s` keys it: an MPIJob either one finished is kept by the other.
    from llmc.runtime.cluster import Workload, stage_keys

    expected = stage_keys(Bundle(str(built("translator"))), [Workload("train", doc)])["train"]
    assert doc["metadata"]["annotations"]["llmc.dev/inputs"] == expected

    failing = FakeCluster(outcomes={"translator-train": failed})
    with pytest.raises(kfp_steps.StepFailed, match="the training MPIJob failed"):
        kfp_steps.train_on_cluster(Bundle(str(built("translator"))), api=failing, poll_seconds=0, sleep=lambda s: None)


def test_a_cancelled_train_step_deletes_its_mpijob(built):
    """Kubeflow cancels a run with SIGTERM to the step: the MPIJob it created goes with it,
    and the step's own SIGTERM handler is put back afterwards."""
    import os
    import signal

    from support.cluster import FakeCluster

    from llmc.runtime.runner import Bundle

    class Cancelled(FakeCluster):
        def get(self, doc):
            if any(c.startswith("resume") for c in self.calls):
                os.kill(os.getpid(), signal.SIGTERM)  # Kubeflow's cancel, while the step follows the job
            return super().get(doc)

    cluster = Cancelled()
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped:
        kfp_steps.train_on_cluster(Bundle(str(built("translator"))), api=cluster, poll_seconds=0, sleep=lambda s: None)
    assert stopped.value.code == 143
    assert "delete MPIJob/translator-train" in cluster.calls and ("MPIJob", "translator-train") not in cluster.objects
    assert signal.getsignal(signal.SIGTERM) == before


def test_the_train_step_passes_on_the_model_the_mpijob_wrote(built, tmp_path, monkeypatch):
    """On a cluster the MPIJob's launcher runs train/launch.sh --output $LLMC_OUTPUT: the
    step takes the model and the metrics from there (the artifacts volume) into its
    `model` artifact, and logs the final line's numbers."""
    outputs = tmp_path / "artifacts" / "outputs"
    (outputs / "model").mkdir(parents=True)
    (outputs / "model" / "model.pt").write_bytes(b"weights")
    lines = [{"start": True}, {"step": 1, "loss": 3.0}, {"final": True, "valid_loss": 1.25, "steps": 62}]
    (outputs / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    monkeypatch.setattr(kfp_steps, "OUTPUT_DIR", outputs)
    trained: list[str] = []
    monkeypatch.setattr(kfp_steps, "train_on_cluster", lambda bundle: trained.append(str(bundle.root)))

    class Artifact:
        def __init__(self, path):
            self.path = str(path)
            self.logged: dict = {}

        def log_metric(self, name, value):
            self.logged[name] = value

    model, metrics = Artifact(tmp_path / "kfp" / "model"), Artifact(tmp_path / "kfp" / "metrics")
    kfp_steps.train(str(built("translator")), "/opt/llmc/bundle", "mpijob", model, metrics)
    assert trained and (tmp_path / "kfp" / "model" / "model" / "model.pt").read_bytes() == b"weights"
    assert (tmp_path / "kfp" / "model" / "metrics.jsonl").read_text() == (outputs / "metrics.jsonl").read_text()
    assert metrics.logged == {"valid_loss": 1.25, "steps": 62.0}
    with pytest.raises(kfp_steps.StepFailed, match="launcher 'ssh'"):
        kfp_steps.train(str(built("translator")), "/opt/llmc/bundle", "ssh", model, metrics)
