"""An in-memory cluster and a built bundle for `llmc run --target k8s`, for
test_cluster.py and test_cluster_runs.py: `FakeCluster` stands in for the six calls
runtime/cluster.py makes, with status objects shaped as the API returns them."""

from __future__ import annotations

import copy

import pytest
from helpers import ROOT, run_cli

from llmc.runtime.cluster import submit
from llmc.runtime.runner import Bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Bundle:
    out = tmp_path_factory.mktemp("k8s") / "bundle"
    code, _, err = run_cli("build", str(ROOT / "specs" / "translator.llm"), "-o", str(out), "-q")
    assert code == 0, err
    return Bundle(str(out))


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
    then finishes as `outcomes` says (default: succeeds)."""

    def __init__(self, served=None, namespaces=("ml-translation",), outcomes=None):
        self.objects: dict[tuple[str, str], dict] = {}
        self.calls: list[str] = []
        self.served = served
        self.namespaces = set(namespaces)
        self.outcomes = outcomes or {}
        self._reads: dict[tuple[str, str], int] = {}

    def serves(self, api_version, kind):
        return self.served is None or kind in self.served

    def namespace_exists(self, name):
        return name in self.namespaces

    def get(self, doc):
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
        return copy.deepcopy({k: v for k, v in obj.items() if k != "_resumed"})

    def apply(self, doc):
        self.calls.append(f"apply {doc['kind']}/{doc['metadata']['name']}")
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in self.objects or doc["kind"] not in ("Job", "MPIJob"), "a Job is immutable"
        self.objects[key] = copy.deepcopy(doc)

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


def run(bundle, cluster, **kwargs):
    console = Console()
    results = submit(bundle, console, api=cluster, poll_seconds=0, sleep=lambda s: None, **kwargs)
    return results, console.lines
