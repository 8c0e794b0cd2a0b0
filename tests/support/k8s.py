"""The real specs' k8s/ manifests, built and parsed, for test_target_k8s.py and
test_target_k8s_runs.py."""

from __future__ import annotations

import functools
from pathlib import Path

import yaml

from support.bundles import LOADER
from support.bundles import built as built  # a fixture: re-exported for the k8s tests


@functools.cache
def _documents(bundle: str) -> tuple[tuple[str, dict], ...]:
    out = []
    for path in sorted((Path(bundle) / "k8s").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.load_all(path.read_text(encoding="utf-8"), Loader=LOADER):
            out.append((path.name, doc))
    return tuple(out)


def documents(bundle: Path) -> list[tuple[str, dict]]:
    """(file name, document) for every manifest of k8s/ but the kustomization (parsed
    once per bundle: treat them as read-only)."""
    return list(_documents(str(bundle)))


def pod_templates(doc: dict) -> list[dict]:
    """The pod templates of a workload (Deployment, Job, the MPIJob's launcher and workers)."""
    if doc["kind"] in ("Deployment", "Job"):
        return [doc["spec"]["template"]]
    if doc["kind"] == "MPIJob":
        return [r["template"] for r in doc["spec"]["mpiReplicaSpecs"].values()]
    return []


def of_kind(bundle: Path, kind: str) -> list[dict]:
    return [doc for _, doc in documents(bundle) if doc["kind"] == kind]


def strict_schema(schema):
    """A CRD's (or an API's) schema with unknown fields rejected wherever it lists the fields."""
    if isinstance(schema, dict):
        out = {k: strict_schema(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict_schema(v) for v in schema]
    return schema


def selects(policy: dict, pod: dict) -> bool:
    """Whether a NetworkPolicy's podSelector selects the pod (template)."""
    wanted = policy["spec"]["podSelector"].get("matchLabels", {})
    return all(pod["metadata"]["labels"].get(k) == v for k, v in wanted.items())


def allowed(policies: list[dict], pod: dict, direction: str) -> list[dict]:
    """The rules of `direction` that the policies selecting `pod` allow."""
    return [rule for p in policies if selects(p, pod) for rule in p["spec"].get(direction, [])]
