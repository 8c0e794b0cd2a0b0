"""`llmc run --target k8s`.

Without a cluster (always, here) it fails at once, exit 2, touching nothing. No
Kubernetes API server can run on the machines that test llmc, so the
orchestration (what is applied when, resuming the suspended stages in order,
following them, logs on failure, rollout only after evaluate) runs against
`FakeCluster`, an in-memory stand-in for the six calls runtime/cluster.py makes,
with the real bundles' manifests and status objects shaped as the API returns them.
The manifests themselves are checked against the real schemas in test_target_k8s.py.

The tests of this part that run real processes (tools, frameworks, servers) are in
tests/integration/test_cluster_runs.py.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from support.cluster import CORE_SERVING_KINDS, FakeCluster, run
from support.cluster import bundle as bundle  # a fixture: pytest finds it imported here

from llmc.runtime.cluster import (
    INPUTS_ANNOTATION,
    ClusterError,
    plan_submission,
    pod_selector,
    read_manifests,
    workload_state,
)
from llmc.runtime.runner import Bundle


def failed(obj: dict) -> dict:
    return {
        "failed": 3,
        "conditions": [
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
            }
        ],
    }


def test_the_bundle_splits_into_setup_stages_and_rollout(bundle):
    plan = plan_submission(read_manifests(bundle.root / "k8s"))
    assert [(w.stage, w.doc["kind"]) for w in plan.stages] == [
        ("train", "MPIJob"),
        ("compress", "Job"),
        ("evaluate", "Job"),
    ]
    assert sorted(d["kind"] for d in plan.rollout) == ["Deployment", "HorizontalPodAutoscaler"]
    assert {
        "ServiceAccount",
        "PersistentVolumeClaim",
        "ConfigMap",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "PrometheusRule",
        "ServiceMonitor",
    } == {d["kind"] for d in plan.setup}
    # Every workload arrives suspended: applying never starts training by itself.
    assert plan.stages[0].doc["spec"]["runPolicy"]["suspend"] is True
    assert all(w.doc["spec"]["suspend"] is True for w in plan.stages[1:])
    searched = plan_submission(read_manifests(bundle.root / "k8s"), only="search")
    assert [w.stage for w in searched.stages] == ["search"] and searched.rollout == []


def test_stages_are_resumed_in_order_each_after_the_last_succeeded_then_the_server_rolls_out(bundle):
    cluster = FakeCluster()
    results, lines = run(bundle, cluster)
    assert [(r.name, r.status) for r in results] == [("train", "ok"), ("compress", "ok"), ("evaluate", "ok")]
    resumes = [c for c in cluster.calls if c.startswith("resume")]
    assert resumes == [
        "resume MPIJob/translator-train",
        "resume Job/translator-compress",
        "resume Job/translator-evaluate",
    ]
    calls = cluster.calls
    # Each stage is created only after the one before it succeeded; the server last.
    assert calls.index("apply Job/translator-compress") > calls.index("resume MPIJob/translator-train")
    assert calls.index("apply Deployment/translator") > calls.index("resume Job/translator-evaluate")
    assert calls.index("apply ServiceAccount/translator") < calls.index("apply MPIJob/translator-train")
    assert "    MPIJob/translator-train: running" in lines and "    Job/translator-evaluate: succeeded" in lines
    # Evaluate's metrics table comes from its pod's log.
    assert "logs job-name=translator-evaluate" in calls and "bleu  31.2  >= 26.0  pass" in lines
    annotations = cluster.objects[("MPIJob", "translator-train")]["metadata"]["annotations"]
    assert len(annotations[INPUTS_ANNOTATION]) == 32


def test_a_failed_stage_stops_the_run_shows_its_logs_and_never_rolls_out(bundle):
    cluster = FakeCluster(outcomes={"translator-compress": failed})
    results, lines = run(bundle, cluster)
    assert [(r.name, r.status) for r in results] == [("train", "ok"), ("compress", "failed")]
    assert ("Job", "translator-evaluate") not in cluster.objects
    assert ("Deployment", "translator") not in cluster.objects
    assert "logs job-name=translator-compress" in cluster.calls
    assert any(line.startswith("--- translator-compress-abcde") for line in lines)
    assert "==> compress failed after 0s: BackoffLimitExceeded: Job has reached the specified backoff limit" in lines


def test_a_rerun_keeps_what_succeeded_with_the_same_inputs_and_recreates_the_rest(bundle):
    cluster = FakeCluster(outcomes={"translator-evaluate": failed})
    run(bundle, cluster)
    cluster.outcomes = {}
    cluster.calls.clear()
    results, _lines = run(bundle, cluster)
    assert [(r.name, r.status) for r in results] == [("train", "skipped"), ("compress", "skipped"), ("evaluate", "ok")]
    assert "delete Job/translator-evaluate" in cluster.calls and "apply MPIJob/translator-train" not in cluster.calls
    # --force reruns everything: Jobs are immutable, so each is deleted and created again.
    cluster.calls.clear()
    results, _ = run(bundle, cluster, force=True)
    assert [r.status for r in results] == ["ok", "ok", "ok"]
    assert [c for c in cluster.calls if c.startswith("delete")] == [
        "delete MPIJob/translator-train",
        "delete Job/translator-compress",
        "delete Job/translator-evaluate",
    ]


def test_a_changed_bundle_reruns_its_stage(bundle, tmp_path):
    cluster = FakeCluster()
    run(bundle, cluster)
    lock = json.loads((bundle.root / "llmc.lock.json").read_text())
    changed = copy.deepcopy(lock)
    changed["artifacts"]["compress/distill.py"] = "0" * 64
    other = tmp_path / "bundle"
    (other / "k8s").parent.mkdir(parents=True, exist_ok=True)
    import shutil

    shutil.copytree(bundle.root, other, dirs_exist_ok=True)
    (other / "llmc.lock.json").write_text(json.dumps(changed))
    cluster.calls.clear()
    results, _ = run(Bundle(str(other)), cluster)
    # compress changed, and evaluate comes after it; training is kept.
    assert [(r.name, r.status) for r in results] == [("train", "skipped"), ("compress", "ok"), ("evaluate", "ok")]


def test_nothing_is_touched_when_the_namespace_or_the_mpi_operator_is_missing(bundle):
    cluster = FakeCluster(namespaces=())
    with pytest.raises(ClusterError, match="namespace 'ml-translation' does not exist"):
        run(bundle, cluster)
    assert cluster.calls == []
    cluster = FakeCluster(served=CORE_SERVING_KINDS | {"Job", "PrometheusRule", "ServiceMonitor"})
    with pytest.raises(ClusterError, match=r"does not serve kubeflow.org/v2beta1 MPIJob.*MPI Operator"):
        run(bundle, cluster)
    assert cluster.calls == []


def test_monitoring_kinds_are_optional(bundle):
    cluster = FakeCluster(served=CORE_SERVING_KINDS | {"Job", "MPIJob"})
    results, lines = run(bundle, cluster)
    assert [r.status for r in results] == ["ok", "ok", "ok"]
    assert not any("PrometheusRule" in c or "ServiceMonitor" in c for c in cluster.calls)
    assert any("does not serve monitoring.coreos.com/v1 PrometheusRule" in line for line in lines)


def test_workload_states_from_the_api_status():
    job = {"kind": "Job", "spec": {"suspend": True}}
    assert workload_state(job) == ("suspended", "")
    job = {"kind": "Job", "spec": {"suspend": False}, "status": {"active": 2, "ready": 1}}
    assert workload_state(job) == ("running", "2 active, 1 ready")
    job["status"] = {
        "succeeded": 1,
        "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}],
    }
    assert workload_state(job)[0] == "succeeded"
    job["status"] = {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}
    assert workload_state(job) == ("failed", "DeadlineExceeded")
    mpi: dict[str, Any] = {
        "kind": "MPIJob",
        "spec": {"runPolicy": {"suspend": False}},
        "status": {
            "conditions": [{"type": "Created", "status": "True"}, {"type": "Running", "status": "True"}],
            "replicaStatuses": {"Launcher": {"active": 1}, "Worker": {"active": 2}},
        },
    }
    assert workload_state(mpi) == ("running", "launcher 1 active, worker 2 active")
    mpi["status"]["conditions"].append({"type": "Running", "status": "False"})
    mpi["status"]["conditions"].append({"type": "Succeeded", "status": "True"})
    assert workload_state(mpi)[0] == "succeeded"
    assert pod_selector({"kind": "MPIJob", "metadata": {"name": "t"}}) == "training.kubeflow.org/job-name=t"
    assert pod_selector({"kind": "Job", "metadata": {"name": "t"}}) == "job-name=t"


def test_a_refusal_names_the_object_and_the_servers_reason():
    from kubernetes.client.exceptions import ApiException

    from llmc.runtime.cluster import _refused

    refusal = ApiException(status=403, reason="Forbidden")
    refusal.body = json.dumps(
        {
            "kind": "Status",
            "message": 'jobs.batch is forbidden: User "ci" cannot create '
            'resource "jobs" in API group "batch" in the namespace "ml-translation"',
        }
    )
    doc = {"kind": "Job", "metadata": {"name": "translator-compress"}}
    with pytest.raises(ClusterError) as info, _refused("apply", doc):
        raise refusal
    assert str(info.value) == (
        "the cluster refused to apply Job/translator-compress: 403 Forbidden: jobs.batch is "
        'forbidden: User "ci" cannot create resource "jobs" in API group "batch" in the '
        'namespace "ml-translation"'
    )


class WithKatib(FakeCluster):
    """The fake with Katib installed: a created Experiment runs for a read, then ends as `ends` says."""

    def __init__(self, ends: str = "Succeeded", **kwargs):
        super().__init__(**kwargs)
        self.ends = ends

    def get(self, doc):
        obj = super().get(doc)
        if obj is not None and doc["kind"] == "Experiment":
            stored = self.objects[("Experiment", doc["metadata"]["name"])]
            reads = stored["_reads"] = stored.get("_reads", 0) + 1
            condition = {
                "type": "Running" if reads < 2 else self.ends,
                "status": "True",
                "reason": f"Experiment{self.ends}",
            }
            best = {
                "bestTrialName": "translator-search-3",
                "parameterAssignments": [{"name": "train-optimizer-lr", "value": "0.0002"}],
            }
            obj["status"] = {"conditions": [condition], "currentOptimalTrial": best if reads >= 2 else {}}
        return obj


def test_a_katib_search_runs_as_its_experiment_not_the_search_job(bundle):
    """The translator searches on Katib: `--stage search` creates search/katib-experiment.yaml
    and follows it (the search Job, which would run the trials one at a time, is not
    resumed); a cluster without Katib is refused before anything is applied."""
    cluster = WithKatib()
    results, lines = run(bundle, cluster, only="search")
    assert [(r.name, r.status) for r in results] == [("search", "ok")]
    assert "apply Experiment/translator-search" in cluster.calls
    assert not any(c.startswith("resume") for c in cluster.calls)
    assert any("best trial translator-search-3 (train-optimizer-lr = 0.0002)" in line for line in lines), lines

    failing = WithKatib(ends="Failed")
    results, lines = run(bundle, failing, only="search")
    assert [(r.name, r.status, r.exit_code) for r in results] == [("search", "failed", 1)]
    assert any("search failed" in line and "ExperimentFailed" in line for line in lines), lines

    bare = FakeCluster(served=CORE_SERVING_KINDS | {"Job", "MPIJob"})  # no Katib
    with pytest.raises(ClusterError, match="does not serve Katib's Experiment"):
        run(bundle, bare, only="search")
    assert not any(c.startswith("apply") for c in bare.calls)
