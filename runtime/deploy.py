"""`llmc deploy`: the serving half of `llmc run --target k8s` on its own.

For shipping a new server (a serving config, the server image, the autoscaler's
bounds) without retraining. In the current kube context it

1. checks before touching anything (exit 2, nothing applied): the bundle's k8s/ has
   a serving Deployment, the API server answers, the namespace exists, the cluster
   serves every kind (the Prometheus Operator's PrometheusRule and ServiceMonitor are
   optional: skipped with a warning), and the volume the server reads exists;
2. reads each serving object and applies it with server-side apply (field manager
   `llmc`, as `llmc run --target k8s` does), then prints what changed: `created`,
   `configured` with the fields that changed (`spec.template.spec.containers[0].image`,
   `data["config.pbtxt"]`), or `unchanged`, and a totals line. The comparison is
   between the object the server held just before and the one the apply returned,
   over everything but `status` and the server's bookkeeping in `metadata` (only the
   labels and annotations count): managedFields, resourceVersion, generation, uid,
   creationTimestamp. With `--dry-run` each apply is the API server's own dry run
   (`dryRun=All`: validated, admitted by the webhooks, defaulted and merged with the
   live object as for real, stored nowhere) and nothing changes. A refusal (forbidden,
   invalid) stops the deploy, exit 1; what was applied before it stays;
3. follows the Deployment's rollout as `kubectl rollout status` decides (the
   controller has observed the new generation, every replica is updated and available,
   no old one is left), printing each change of progress. It fails (exit 1) when the
   Deployment's Progressing condition says ProgressDeadlineExceeded (its own message
   is shown), when the Deployment is paused, or when the rollout shows no progress for
   `timeout` seconds (default: the Deployment's progressDeadlineSeconds, 600 unless it
   sets one). A Deployment the apply left unchanged is checked once: rolled out, or
   an earlier rollout still under way, followed the same way. Ctrl-C stops following
   (exit 130); the rollout continues in the cluster.

What is applied: every object of k8s/ but two kinds of them.
- The stage workloads (the training MPIJob; the compress, evaluate and search Jobs)
  are never applied: deploying never trains.
- The artifacts PersistentVolumeClaim is checked, not applied: it holds the trained
  model the serving pods copy at start, so it must exist already (`llmc run --target
  k8s` makes it and trains onto it). Creating it here would give an empty volume and a
  server that never becomes ready, and re-applying it could only resize storage (a
  bound claim's spec is otherwise immutable), which is no part of shipping a server.
So: ServiceAccount, ConfigMap (the serving configs), Service, PodDisruptionBudget,
ServiceMonitor, PrometheusRule and the NetworkPolicies (the bundle's default deny and
what each pod may do), in the kustomization's order, then the
Deployment and its HorizontalPodAutoscaler last, so that a refused object stops the
deploy before the server rolls out.

No record under runs/: nothing runs on this machine to record, and the cluster keeps
the Deployment's revisions (`kubectl rollout history`); the summary is printed.

Exit status: 0 deployed and rolled out (or the dry run accepted), 1 the cluster
refused an object or the rollout failed, 2 it could not start (no serving objects, no
cluster, a missing namespace, kind or volume; nothing was applied), 130 Ctrl-C.

No API server can run on the machines that build llmc: this is tested against an
in-memory stand-in of the client calls (tests/unit/test_deploy.py), the manifests
against the real schemas.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import NamedTuple

from .cluster import (
    ROLLOUT_KINDS,
    WORKLOAD_TYPES,
    ClusterError,
    bundle_manifests,
    check_cluster,
    connect,
    describe,
    printer,
)

POLL_SECONDS = 2.0
DEFAULT_PROGRESS_DEADLINE = 600  # seconds: the API server's default progressDeadlineSeconds
PATHS_SHOWN = 8  # changed fields named per object; the rest are counted
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ABSENT = object()  # a field one side of a comparison lacks


class Applied(NamedTuple):
    doc: dict
    action: str  # "created" | "configured" | "unchanged" | "skipped"
    paths: list[str]  # what changed, for "configured"


def deploy(
    bundle_root: str | Path,
    *,
    dry_run: bool = False,
    timeout: float | None = None,
    console=None,
    api=None,
    poll_seconds: float = POLL_SECONDS,
    clock=time.monotonic,
    sleep=time.sleep,
) -> int:
    """Apply the bundle's serving objects and follow the rollout; returns the exit status."""
    if console is None:
        from rich.console import Console

        console = Console(highlight=False)
    say = printer(console)
    try:
        serving, volumes = serving_objects(bundle_manifests(Path(bundle_root)))
        if api is None:
            api = connect()
        unserved = check_cluster(api, serving + volumes, console)
        for volume in volumes:
            if api.get(volume) is None:
                raise ClusterError(
                    f"{describe(volume)} does not exist in namespace {volume['metadata'].get('namespace')!r}: "
                    "it holds the trained model the server copies at start; `llmc run SPEC --target k8s` "
                    "makes it and trains the model onto it"
                )
    except ClusterError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted; nothing was applied\n")
        return 130

    deployment = next(d for d in serving if d["kind"] == "Deployment")
    context = getattr(api, "context", None)
    say(
        f"==> deploy {describe(deployment)} to namespace {deployment['metadata'].get('namespace')}"
        + (f" (kube context {context})" if context else "")
        + (": server-side dry run, nothing will be changed" if dry_run else "")
    )
    applied: list[Applied] = []
    try:
        for doc in serving:
            if (doc["apiVersion"], doc["kind"]) in unserved:
                applied.append(Applied(doc, "skipped", []))
            else:
                before = api.get(doc)
                applied.append(compare(doc, before, api.apply(doc, dry_run=dry_run)))
            say(summary_line(applied[-1], dry_run))
    except ClusterError as exc:
        say(totals_line(applied, dry_run))
        untried = ", ".join(describe(d) for d in serving[len(applied) :])
        done = "nothing was changed" if dry_run else "the objects before it were applied and stay"
        sys.stderr.write(f"error: {exc}\n  = note: {done}; not applied: {untried}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("interrupted; what was applied stays in the cluster, and `llmc deploy` again finishes it\n")
        return 130
    say(totals_line(applied, dry_run))
    if dry_run:
        return 0
    unchanged = next(a for a in applied if a.doc is deployment).action == "unchanged"
    return follow_rollout(api, deployment, unchanged, timeout, say, poll_seconds, clock, sleep)


def serving_objects(docs: list[dict]) -> tuple[list[dict], list[dict]]:
    """(the objects to apply, in order; the volumes the server reads, which must exist):
    everything but the stage workloads and the volumes, the Deployment and its
    autoscaler last. ClusterError when there is no serving Deployment."""
    serving = [
        d for d in docs if (d["apiVersion"], d["kind"]) not in WORKLOAD_TYPES and d["kind"] != "PersistentVolumeClaim"
    ]
    serving.sort(key=lambda d: d["kind"] in ROLLOUT_KINDS)  # stable: the kustomization's order otherwise
    deployments = [d for d in serving if d["kind"] == "Deployment"]
    if not deployments:
        raise ClusterError("the bundle has no serving Deployment to deploy; the spec needs a serve block")
    pod = deployments[0]["spec"]["template"]["spec"]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod.get("volumes", []) if "persistentVolumeClaim" in v}
    volumes = [d for d in docs if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] in claims]
    return serving, volumes


def compare(doc: dict, before: dict | None, after: dict) -> Applied:
    if before is None:
        return Applied(doc, "created", [])
    paths = changed_paths(comparable(before), comparable(after))
    return Applied(doc, "configured" if paths else "unchanged", paths)


def comparable(obj: dict) -> dict:
    """What an apply can change: everything but status and the server's bookkeeping."""
    meta = obj.get("metadata") or {}
    kept = {k: meta[k] for k in ("labels", "annotations") if meta.get(k)}
    return {"metadata": kept, **{k: v for k, v in obj.items() if k not in ("metadata", "status")}}


def changed_paths(before, after, path: str = "") -> list[str]:
    """The paths of the leaves that differ, `spec.template.spec.containers[0].image`;
    a list whose length changed counts as one change."""
    if isinstance(before, dict) and isinstance(after, dict):
        keys = list(after) + [k for k in before if k not in after]
        return [p for k in keys for p in changed_paths(before.get(k, _ABSENT), after.get(k, _ABSENT), _field(path, k))]
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [
            p for i, (b, a) in enumerate(zip(before, after, strict=True)) for p in changed_paths(b, a, f"{path}[{i}]")
        ]
    return [] if before == after else [path]


def _field(path: str, key: str) -> str:
    if _IDENTIFIER.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f'{path}["{key}"]'  # label and data keys: `app.kubernetes.io/name`, `config.pbtxt`


_WOULD = {"created": "would be created", "configured": "would be configured"}


def summary_line(result: Applied, dry_run: bool) -> str:
    action = _WOULD.get(result.action, result.action) if dry_run else result.action
    line = f"{describe(result.doc)} {action}" + (
        " (the cluster does not serve its kind)" if action == "skipped" else ""
    )
    if result.paths:
        more = len(result.paths) - PATHS_SHOWN
        line += ": " + ", ".join(result.paths[:PATHS_SHOWN]) + (f" and {more} more" if more > 0 else "")
    return line


def totals_line(applied: list[Applied], dry_run: bool) -> str:
    counts = []
    for action in ("created", "configured", "unchanged", "skipped"):
        n = sum(1 for a in applied if a.action == action)
        if n or action == "unchanged":
            counts.append(f"{n} {_WOULD.get(action, action) if dry_run else action}")
    text = f"{len(applied)} serving object{'s' if len(applied) != 1 else ''}: " + ", ".join(counts)
    return f"dry run: {text}; nothing was changed in the cluster" if dry_run else text


def rollout_state(obj: dict) -> tuple[str, str]:
    """("waiting" | "done" | "failed", what to say) of a Deployment as the API server
    returns it, decided as `kubectl rollout status` does."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if (status.get("observedGeneration") or 0) < (obj["metadata"].get("generation") or 0):
        return "waiting", "waiting for the controller to observe the new spec"
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    progressing = conditions.get("Progressing") or {}
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return "failed", progressing.get("message") or "the rollout exceeded its progress deadline"
    if spec.get("paused"):
        return "failed", "the Deployment is paused (kubectl rollout resume continues it)"
    wanted = spec.get("replicas")
    total, updated, available = (status.get(k) or 0 for k in ("replicas", "updatedReplicas", "availableReplicas"))
    if wanted is not None and updated < wanted:
        return "waiting", f"{updated} of {wanted} new replicas updated"
    if total > updated:
        return "waiting", f"{total - updated} old replica{'s' if total - updated != 1 else ''} pending termination"
    if available < updated:
        return "waiting", f"{available} of {updated} updated replicas available"
    revision = (obj["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision")
    return "done", f"{available} of {available} replicas available" + (f", revision {revision}" if revision else "")


def follow_rollout(api, doc: dict, unchanged: bool, timeout: float | None, say, poll_seconds, clock, sleep) -> int:
    name, namespace = describe(doc), doc["metadata"].get("namespace")
    kubectl = f"kubectl -n {namespace}"
    watch = f"{kubectl} rollout status deployment/{doc['metadata']['name']}"
    shown, last_progress = None, clock()
    try:
        while True:
            obj = api.get(doc)
            if obj is None:
                sys.stderr.write(f"error: {name} was deleted during its rollout\n")
                return 1
            state, message = rollout_state(obj)
            if state == "done":
                said = "unchanged and already rolled out" if unchanged and shown is None else "rolled out"
                say(f"==> {name} {said}: {message}")
                return 0
            if state == "failed":
                sys.stderr.write(
                    f"error: the rollout of {name} failed: {message}\n"
                    f"  = help: see why with `{kubectl} describe deployment/{doc['metadata']['name']}`; "
                    f"roll back with `{kubectl} rollout undo deployment/{doc['metadata']['name']}`\n"
                )
                return 1
            if message != shown:
                if unchanged and shown is None:
                    say(f"{name} is unchanged, and an earlier rollout is still under way")
                say(f"    {name}: {message}")
                shown, last_progress = message, clock()
            deadline = (obj.get("spec") or {}).get("progressDeadlineSeconds") or DEFAULT_PROGRESS_DEADLINE
            limit = timeout if timeout is not None else deadline
            if clock() - last_progress > limit:
                sys.stderr.write(
                    f"error: the rollout of {name} made no progress for {limit:g}s ({message}); "
                    f"it continues in the cluster: follow it with `{watch}`\n"
                )
                return 1
            sleep(poll_seconds)
    except ClusterError as exc:
        sys.stderr.write(f"error: {exc}\n  = note: the rollout continues in the cluster: `{watch}`\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"interrupted; the rollout continues in the cluster: follow it with `{watch}`\n")
        return 130
