"""An in-memory cluster and a built bundle for `llmc run --target k8s` and `llmc
deploy`, for test_cluster.py, test_deploy.py and test_cluster_runs.py: `FakeCluster`
stands in for the calls runtime/cluster.py makes, with objects and status shaped as
the API returns them: server-side apply keeps the server's and the controllers'
fields, a dry run stores nothing, and a Deployment's controller advances its rollout
one step per read."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
from helpers import ROOT, run_cli

from llmc.runtime.cluster import _refused, describe, submit
from llmc.runtime.deploy import deploy
from llmc.runtime.runner import Bundle

# metadata the API server writes, kept across applies
SERVER_METADATA = ("uid", "creationTimestamp", "generation", "resourceVersion", "managedFields")
REVISION = "deployment.kubernetes.io/revision"  # the Deployment controller's annotation


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Bundle:
    out = tmp_path_factory.mktemp("k8s") / "bundle"
    code, _, err = run_cli("build", str(ROOT / "specs" / "translator.llm"), "-o", str(out), "-q")
    assert code == 0, err
    return Bundle(str(out))


# The kinds of the bundles' serving objects that any cluster serves (no operator needed).
CORE_SERVING_KINDS = frozenset(
    {
        "ServiceAccount",
        "PersistentVolumeClaim",
        "ConfigMap",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Deployment",
        "HorizontalPodAutoscaler",
    }
)


def no_cluster_env(home: Path) -> dict[str, str]:
    """The environment of a process with no Kubernetes cluster configured: a missing
    kubeconfig, an empty home, and not inside a pod."""
    env = {**os.environ, "KUBECONFIG": str(home / "missing-kubeconfig"), "HOME": str(home)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    return env


class Console:
    def __init__(self):
        self.lines: list[str] = []

    def print(self, text, **_):
        self.lines.extend(str(text).splitlines())


def succeeded(obj: dict) -> dict:
    kind = "Succeeded" if obj["kind"] == "MPIJob" else "Complete"
    return {
        "conditions": [
            {"type": "Running" if kind == "Succeeded" else "SuccessCriteriaMet", "status": "True"},
            {"type": kind, "status": "True"},
        ]
    }


class FakeCluster:
    """Objects by (kind, name). A resumed workload is running on the next read and
    then finishes as `outcomes` says (default: succeeds).

    A Deployment whose spec an apply changed is rolled out over the next reads, as
    `rollout` says: "progresses" (not yet observed; one new replica; all new, the old
    terminating or becoming available; done), "stuck" (one new replica that never
    becomes available, then ProgressDeadlineExceeded), or "unobserved" (no controller:
    its status never changes). `refuse` maps "Kind/name" to the HTTP status the API
    server answers an apply of it with."""

    def __init__(
        self, served=None, namespaces=("ml-translation",), outcomes=None, rollout="progresses", refuse=None, replicas=2
    ):
        self.objects: dict[tuple[str, str], dict] = {}
        self.calls: list[str] = []
        self.served = served
        self.namespaces = set(namespaces)
        self.outcomes = outcomes or {}
        self.rollout = rollout
        self.refuse = refuse or {}
        self.replicas = replicas  # what the autoscaler sets a new Deployment to (its minReplicas)
        self.context = "fake-context"
        self._reads: dict[tuple[str, str], int] = {}
        self._writes = 0
        self._old_available: dict[str, int] = {}  # the replicas of a Deployment's previous revision

    def serves(self, api_version, kind):
        return self.served is None or kind in self.served

    def namespace_exists(self, name):
        return name in self.namespaces

    def get(self, doc):
        self.calls.append(f"get {describe(doc)}")
        key = (doc["kind"], doc["metadata"]["name"])
        obj = self.objects.get(key)
        if obj is None:
            return None
        if obj.get("_resumed"):
            n = self._reads[key] = self._reads.get(key, 0) + 1
            if n == 1:
                obj["status"] = {"active": 1, "conditions": [{"type": "Running", "status": "True"}]}
            elif n == 2:
                obj["status"] = self.outcomes.get(doc["metadata"]["name"], succeeded)(obj)
        if doc["kind"] == "Deployment" and key in self._reads:
            self._reads[key] += 1
            self._advance_rollout(obj, self._reads[key])
        return copy.deepcopy({k: v for k, v in obj.items() if k != "_resumed"})

    def _advance_rollout(self, obj: dict, step: int) -> None:
        wanted, generation = obj["spec"]["replicas"], obj["metadata"]["generation"]
        old = self._old_available.get(obj["metadata"]["name"], 0)
        if self.rollout == "unobserved" or step == 1:
            return
        annotations = obj["metadata"].setdefault("annotations", {})
        if (obj.get("status") or {}).get("observedGeneration") != generation:  # a new ReplicaSet, a new revision
            annotations[REVISION] = str(int(annotations.get(REVISION, "0")) + 1)
        progressing = {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}
        if self.rollout == "stuck" or step == 2:
            counts = (old + 1, 1, old)
            if self.rollout == "stuck" and step >= 4:
                progressing = {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": f'ReplicaSet "{obj["metadata"]["name"]}-6c9d8f7b5" has timed out progressing.',
                }
        elif step == 3:  # every replica new; an old one terminating, or the last new one starting
            counts = (wanted + 1, wanted, wanted) if old else (wanted, wanted, wanted - 1)
        else:
            counts = (wanted, wanted, wanted)
            progressing = {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}
        replicas, updated, available = counts
        obj["status"] = {
            "observedGeneration": generation,
            "replicas": replicas,
            "updatedReplicas": updated,
            "availableReplicas": available,
            "readyReplicas": available,
            "conditions": [{"type": "Available", "status": "True"}, progressing],
        }

    def apply(self, doc, dry_run=False):
        self.calls.append(f"{'dry-run apply' if dry_run else 'apply'} {describe(doc)}")
        if describe(doc) in self.refuse:
            refuse(describe(doc), doc, self.refuse[describe(doc)])
        key = (doc["kind"], doc["metadata"]["name"])
        live = self.objects.get(key)
        assert live is None or doc["kind"] not in ("Job", "MPIJob"), "a Job is immutable"
        stored = copy.deepcopy(doc)
        meta = stored["metadata"]
        if live is None:
            meta.update(uid=f"uid-{len(self.objects)}", creationTimestamp="2026-01-02T03:04:05Z", generation=1)
            meta["managedFields"] = [{"manager": "llmc", "operation": "Apply"}]
        else:  # server-side apply merges: the server's fields, and those other managers own, stay
            meta.update({k: live["metadata"][k] for k in SERVER_METADATA if k in live["metadata"]})
            revision = (live["metadata"].get("annotations") or {}).get(REVISION)
            if revision:
                meta.setdefault("annotations", {})[REVISION] = revision
            if "status" in live:
                stored["status"] = copy.deepcopy(live["status"])
        rolls = False
        if doc["kind"] == "Deployment":
            spec = stored["spec"]
            spec.setdefault("replicas", live["spec"]["replicas"] if live else self.replicas)  # the autoscaler's
            spec.setdefault("progressDeadlineSeconds", 600)  # the API server's default
            rolls = live is None or spec != live["spec"]
            if live is not None and rolls:
                meta["generation"] += 1
        if live is None or _content(stored) != _content(live):
            self._writes += 1
            meta["resourceVersion"] = str(1000 + self._writes)
        if not dry_run:
            self.objects[key] = stored
            if rolls:  # the controller starts rolling out the new spec
                self._reads[key] = 0
                self._old_available[doc["metadata"]["name"]] = (
                    (live.get("status") or {}).get("availableReplicas", 0) if live else 0
                )
        return copy.deepcopy(stored)

    def patch(self, doc, patch):
        self.calls.append(f"resume {doc['kind']}/{doc['metadata']['name']}")
        obj = self.objects[(doc["kind"], doc["metadata"]["name"])]
        spec = obj["spec"]["runPolicy"] if doc["kind"] == "MPIJob" else obj["spec"]
        patched = patch["spec"]["runPolicy"] if doc["kind"] == "MPIJob" else patch["spec"]
        spec.update(patched)
        obj["_resumed"] = True

    def delete(self, doc):
        self.calls.append(f"delete {doc['kind']}/{doc['metadata']['name']}")
        key = (doc["kind"], doc["metadata"]["name"])
        self.objects.pop(key)
        self._reads.pop(key, None)

    def logs(self, namespace, selector, tail):
        self.calls.append(f"logs {selector}")
        return [(selector.split("=")[1] + "-abcde", "metric  value  bound  verdict\nbleu  31.2  >= 26.0  pass\n")]


def _content(obj: dict) -> dict:
    out = copy.deepcopy({k: v for k, v in obj.items() if k != "_resumed"})
    out["metadata"].pop("resourceVersion", None)
    return out


def refuse(what: str, doc: dict, status: int) -> None:
    """Raise what KubeApi raises for the API server's refusal of an apply."""
    from kubernetes.client.exceptions import ApiException

    reasons = {403: "Forbidden", 422: "Unprocessable Entity", 409: "Conflict"}
    refusal = ApiException(status=status, reason=reasons.get(status, "Error"))
    resource = doc["kind"].lower() + "s"
    refusal.body = json.dumps(
        {
            "kind": "Status",
            "message": f'{resource} "{doc["metadata"]["name"]}" is forbidden: User "ci" cannot patch resource '
            f'"{resource}" in API group "" in the namespace "{doc["metadata"].get("namespace")}"',
        }
    )
    with _refused("apply", doc):
        raise refusal


def with_volume(bundle, cluster: FakeCluster) -> FakeCluster:
    """The cluster as a training run leaves it for a deploy: the artifacts volume exists."""
    from llmc.runtime.cluster import read_manifests

    pvc = next(d for d in read_manifests(bundle.root / "k8s") if d["kind"] == "PersistentVolumeClaim")
    cluster.apply(pvc)
    cluster.calls.clear()
    return cluster


def deploy_to(bundle_root, cluster, capsys, **kwargs) -> tuple[int, list[str], str]:
    """`llmc deploy` of a built bundle against the fake: (exit status, lines printed, stderr)."""
    console = Console()
    kwargs.setdefault("sleep", lambda s: None)
    code = deploy(bundle_root, api=cluster, console=console, poll_seconds=0, **kwargs)
    return code, console.lines, capsys.readouterr().err


def run(bundle, cluster, **kwargs):
    console = Console()
    results = submit(bundle, console, api=cluster, poll_seconds=0, sleep=lambda s: None, **kwargs)
    return results, console.lines
