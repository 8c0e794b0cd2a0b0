"""`llmc run --target k8s`: run the bundle's stages in the current kube context.

The bundle's k8s/ folder holds the manifests `kubectl apply -k` would apply (each
file already carries its namespace and labels). The stage workloads (the training
MPIJob, the compress, evaluate and search Jobs) are created suspended, so that
applying the folder never starts or repeats training by itself. This module:

1. checks the cluster before touching anything: a kube context, a reachable API
   server, the namespace, and every kind the bundle needs being served (the MPI
   Operator's MPIJob; the Prometheus Operator's kinds are optional and skipped with
   a warning);
2. applies the supporting objects (ServiceAccount, PVC, ConfigMap, Service,
   NetworkPolicy, PDB, monitoring) with server-side apply;
3. for each stage in order (a `katib` search is its Experiment, created and followed
   to its end instead of the search Job), creates its workload (a finished one from an earlier
   run with the same inputs is kept and the stage skipped; otherwise it is deleted
   and created afresh: Jobs are immutable), resumes it, and follows it to success
   or failure, printing state changes; on failure, the tail of its pods' logs;
4. after evaluate passes, applies the serving Deployment and its autoscaler, so a
   model that failed its gates is never rolled out.

`llmc deploy` (deploy.py) applies the serving half alone, with the same checks and calls.

No API server can run on the machines that build llmc: the orchestration is tested
against an in-memory stand-in of the few calls below (tests/unit/test_cluster.py),
the manifests against the real schemas; the calls themselves are the kubernetes
client's dynamic API.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from .runner import ORDER, StageResult, stage_key

INPUTS_ANNOTATION = "llmc.dev/inputs"
COMPONENT_LABEL = "app.kubernetes.io/component"
# Rolled out only after evaluate passes.
ROLLOUT_KINDS = ("Deployment", "HorizontalPodAutoscaler")
# Served by an operator the cluster may lack; without it the objects are skipped.
OPTIONAL_KINDS = ("PrometheusRule", "ServiceMonitor")
# The stage workloads: created suspended, resumed one after another.
WORKLOAD_TYPES = (("kubeflow.org/v2beta1", "MPIJob"), ("batch/v1", "Job"))
LOG_TAIL_LINES = 40
DELETE_TIMEOUT = 300.0  # seconds for an earlier workload and its pods to go
KATIB_EXPERIMENT = "search/katib-experiment.yaml"  # the katib target's Experiment (search.backend = "katib")


class ClusterError(Exception):
    """The run cannot start on this cluster (exit 2) or was refused midway."""


class Workload(NamedTuple):
    stage: str
    doc: dict


class Submission(NamedTuple):
    setup: list[dict]  # applied first
    stages: list[Workload]  # created, resumed and followed one after another
    rollout: list[dict]  # applied once evaluate has passed


def bundle_manifests(bundle_root: Path) -> list[dict]:
    """The objects of the bundle's k8s/ folder; ClusterError when it has none."""
    k8s_dir = bundle_root / "k8s"
    if not (k8s_dir / "kustomization.yaml").is_file():
        raise ClusterError(f"{bundle_root} has no k8s/ manifests; the spec needs a deploy block")
    return read_manifests(k8s_dir)


def read_manifests(k8s_dir: Path) -> list[dict]:
    """Every object of the folder, in kustomization.yaml's resource order."""
    import yaml

    kustomization = yaml.safe_load((k8s_dir / "kustomization.yaml").read_text())
    docs: list[dict] = []
    for name in kustomization.get("resources", []):
        docs.extend(d for d in yaml.safe_load_all((k8s_dir / name).read_text()) if d)
    return docs


def plan_submission(docs: list[dict], only: str | None = None, with_search: bool = False) -> Submission:
    setup, workloads, rollout = [], [], []
    for doc in docs:
        stage = stage_of(doc)
        if stage is not None:
            workloads.append(Workload(stage, doc))
        elif doc["kind"] in ROLLOUT_KINDS:
            rollout.append(doc)
        else:
            setup.append(doc)
    wanted = [only] if only is not None else [s for s in ORDER if s != "search" or with_search]
    stages = sorted((w for w in workloads if w.stage in wanted), key=lambda w: ORDER.index(w.stage))
    # The server is rolled out after a whole pipeline, not after a lone stage.
    return Submission(setup, stages, rollout if only is None and any(w.stage == "evaluate" for w in stages) else [])


def stage_of(doc: dict) -> str | None:
    if (doc["apiVersion"], doc["kind"]) in WORKLOAD_TYPES:
        stage = doc["metadata"].get("labels", {}).get(COMPONENT_LABEL)
        return stage if stage in ORDER else None
    return None


def describe(doc: dict) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def printer(console) -> Callable[[str], None]:
    """Print a line as it is: no rich markup or highlighting in names and server messages."""
    return lambda text: console.print(text, markup=False, highlight=False)


def workload_state(obj: dict) -> tuple[str, str]:
    """("suspended" | "pending" | "running" | "succeeded" | "failed", detail) of a Job or
    an MPIJob as the API server returns it."""
    status = obj.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
    for kind in ("Failed", "FailureTarget"):
        if kind in conditions:
            c = conditions[kind]
            return "failed", ": ".join(x for x in (c.get("reason"), c.get("message")) if x)
    if conditions.keys() & {"Complete", "Succeeded", "SuccessCriteriaMet"}:
        return "succeeded", ""
    if obj["kind"] == "MPIJob":
        suspended = (obj.get("spec", {}).get("runPolicy") or {}).get("suspend")
        replicas = status.get("replicaStatuses") or {}
        detail = ", ".join(
            f"{role.lower()} {n} {what}"
            for role, counts in sorted(replicas.items())
            for what, n in sorted(counts.items())
            if isinstance(n, int) and n and what != "selector"
        )
    else:
        suspended = obj.get("spec", {}).get("suspend")
        counts = [f"{status[k]} {k}" for k in ("active", "ready", "failed") if status.get(k)]
        detail = ", ".join(counts)
    if suspended or "Suspended" in conditions:
        return "suspended", detail
    if "Running" in conditions or status.get("active"):
        return "running", detail
    return "pending", detail


def pod_selector(doc: dict) -> str:
    """The label selector of the pods a workload runs (for an MPIJob, the launcher and the
    workers; sorted by name, the launcher's log comes first)."""
    name = doc["metadata"]["name"]
    if doc["kind"] == "MPIJob":
        return f"training.kubeflow.org/job-name={name}"
    return f"job-name={name}"


def resume_patch(doc: dict) -> dict:
    if doc["kind"] == "MPIJob":
        return {"spec": {"runPolicy": {"suspend": False}}}
    return {"spec": {"suspend": False}}


def with_inputs(doc: dict, key: str) -> dict:
    """The workload annotated with the hash of its inputs, to recognise it next run."""
    out = json.loads(json.dumps(doc))
    out["metadata"].setdefault("annotations", {})[INPUTS_ANNOTATION] = key
    return out


def stage_keys(bundle, stages: list[Workload]) -> dict[str, str]:
    """Each stage's key as the local runner makes it, without the data: it lives in the
    cluster's storage (its paths are in model.json)."""
    keys, upstream = {}, ""
    for stage in ORDER:
        upstream = keys[stage] = stage_key(bundle, stage, upstream)[:32]
    return {w.stage: keys[w.stage] for w in stages}


def connect() -> KubeApi:
    """The current kube context's API server; ClusterError when there is none to reach."""
    try:
        return KubeApi()
    except ImportError:
        raise ClusterError("the kubernetes client is not installed (pip install kubernetes)") from None


class KubeApi:
    """The calls the runtime makes, through the kubernetes client's dynamic API."""

    def __init__(self):
        from kubernetes import client, config, dynamic

        try:
            if os.environ.get("KUBERNETES_SERVICE_HOST"):  # in a pod (a pipeline step): its service account
                config.load_incluster_config()
                self.context: str | None = "in-cluster"
            else:
                config.load_kube_config()
                self.context = config.list_kube_config_contexts()[1]["name"]
        except Exception as exc:  # no kubeconfig, no current context, a bad file
            raise ClusterError(f"no Kubernetes cluster configured: {exc}") from None
        try:
            client.VersionApi().get_code(_request_timeout=5)
        except Exception as exc:  # unreachable API server, TLS or auth failure
            raise ClusterError(f"the Kubernetes API server is not reachable: {exc}") from None
        self._client = dynamic.DynamicClient(client.ApiClient())
        self._core = client.CoreV1Api()

    def _resource(self, doc: dict):
        return self._client.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])

    def serves(self, api_version: str, kind: str) -> bool:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            self._client.resources.get(api_version=api_version, kind=kind)
            return True
        except ResourceNotFoundError:
            return False

    def namespace_exists(self, name: str) -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            self._core.read_namespace(name)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            if exc.status == 403:  # a namespace-scoped user may not read namespaces: the applies will tell
                return True
            raise ClusterError(f"cannot read namespace {name!r}: {server_message(exc)}") from None

    def get(self, doc: dict) -> dict | None:
        from kubernetes.dynamic.exceptions import NotFoundError

        with _refused("read", doc):
            try:
                return (
                    self._resource(doc)
                    .get(name=doc["metadata"]["name"], namespace=doc["metadata"].get("namespace"))
                    .to_dict()
                )
            except NotFoundError:
                return None

    def apply(self, doc: dict, dry_run: bool = False) -> dict:
        """Server-side apply; returns the object as the server stored it (with `dry_run`,
        as it would store it: validated, defaulted and merged, but not persisted)."""
        with _refused("apply", doc):
            return self._client.server_side_apply(
                self._resource(doc),
                body=doc,
                namespace=doc["metadata"].get("namespace"),
                field_manager="llmc",
                force_conflicts=True,
                dry_run="All" if dry_run else None,
            ).to_dict()

    def patch(self, doc: dict, patch: dict) -> None:
        with _refused("resume", doc):
            self._client.patch(
                self._resource(doc),
                body=patch,
                name=doc["metadata"]["name"],
                namespace=doc["metadata"].get("namespace"),
                content_type="application/merge-patch+json",
            )

    def delete(self, doc: dict) -> None:
        with _refused("delete", doc):
            self._resource(doc).delete(
                name=doc["metadata"]["name"],
                namespace=doc["metadata"].get("namespace"),
                body={"propagationPolicy": "Foreground"},
            )

    def logs(self, namespace: str, selector: str, tail: int) -> list[tuple[str, str]]:
        pods = self._core.list_namespaced_pod(namespace, label_selector=selector).items
        # A listed pod has a name; the client's model types every field optional.
        names = sorted(p.metadata.name for p in pods if p.metadata is not None and p.metadata.name)
        out = []
        for name in names:
            try:
                text = self._core.read_namespaced_pod_log(name, namespace, tail_lines=tail)
            except Exception as exc:  # a pod that never started has no log
                text = f"(no log: {exc})"
            out.append((name, text))
        return out


@contextlib.contextmanager
def _refused(action: str, doc: dict):
    """The API server's refusal (forbidden, invalid, conflict) as a ClusterError naming
    the object and the server's own reason."""
    from kubernetes.client.exceptions import ApiException
    from kubernetes.dynamic.exceptions import DynamicApiError

    try:
        yield
    except (ApiException, DynamicApiError) as exc:
        raise ClusterError(f"the cluster refused to {action} {describe(doc)}: {server_message(exc)}") from None


def server_message(exc) -> str:
    """ "403 Forbidden: <the API server's Status message>" from a client exception."""
    message = None
    with contextlib.suppress(TypeError, ValueError, AttributeError):
        message = json.loads(exc.body).get("message")
    return f"{exc.status} {exc.reason}" + (f": {message}" if message else "")


def submit(
    bundle,
    console,
    *,
    only: str | None = None,
    with_search: bool = False,
    force: bool = False,
    api=None,
    poll_seconds: float = 5.0,
    clock=time.monotonic,
    sleep=time.sleep,
) -> list[StageResult]:
    """Run the stages on the cluster; raises ClusterError when it cannot start."""
    plan = plan_submission(bundle_manifests(bundle.root), only, with_search)
    if not plan.stages:
        raise ClusterError(f"the bundle has no {only or ''} workload to run".replace("  ", " "))
    if api is None:
        api = connect()
    setup = preflight(api, plan, console)
    say = printer(console)
    experiment = bundle.root / KATIB_EXPERIMENT
    katib = experiment.is_file() and any(w.stage == "search" for w in plan.stages)
    if katib and not api.serves("kubeflow.org/v1beta1", "Experiment"):
        raise ClusterError(
            "this cluster does not serve Katib's Experiment (kubeflow.org/v1beta1): install Katib v0.18 or "
            'later, or search with search.backend = "local"'
        )

    for doc in setup:
        api.apply(doc)
    say(f"applied {len(setup)} objects to namespace {plan.stages[0].doc['metadata'].get('namespace')}")
    keys = stage_keys(bundle, plan.stages)
    results: list[StageResult] = []
    for workload in plan.stages:
        if workload.stage == "search" and katib:  # search.backend = "katib": Katib runs the trials
            result = _katib_search(api, experiment, say, poll_seconds, clock, sleep)
        else:
            result = run_workload(api, workload, keys[workload.stage], force, say, poll_seconds, clock, sleep)
        results.append(result)
        if result.status not in ("ok", "skipped"):
            return results
    for doc in plan.rollout:
        api.apply(doc)
    if plan.rollout:
        say("evaluate passed: rolled out " + ", ".join(describe(d) for d in plan.rollout))
    return results


def preflight(api, plan: Submission, console) -> list[dict]:
    """Fail before touching anything; returns the setup objects the cluster can take."""
    unserved = check_cluster(api, plan.setup + plan.rollout + [w.doc for w in plan.stages], console)
    return [d for d in plan.setup if (d["apiVersion"], d["kind"]) not in unserved]


def check_cluster(api, docs: list[dict], console) -> set[tuple[str, str]]:
    """ClusterError unless the objects' namespaces exist and the cluster serves every
    kind they need; returns the optional kinds it does not serve, said in a warning:
    their objects are to be skipped."""
    for namespace in sorted({d["metadata"]["namespace"] for d in docs if d["metadata"].get("namespace")}):
        if not api.namespace_exists(namespace):
            raise ClusterError(
                f"namespace {namespace!r} does not exist; create it first: kubectl create namespace {namespace}"
            )
    kinds = {(d["apiVersion"], d["kind"]) for d in docs}
    missing = {k for k in kinds if not api.serves(*k)}
    required = sorted(k for k in missing if k[1] not in OPTIONAL_KINDS)
    if required:
        hint = (
            " (install the MPI Operator, kubeflow/mpi-operator v0.4 or later)"
            if any(k[1] == "MPIJob" for k in required)
            else ""
        )
        raise ClusterError("the cluster does not serve " + ", ".join(f"{v} {k}" for v, k in required) + hint)
    for version, kind in sorted(missing):
        printer(console)(
            f"warning: the cluster does not serve {version} {kind} (the Prometheus Operator's); "
            f"skipping {sum(1 for d in docs if d['kind'] == kind)} object(s)"
        )
    return missing


def delete_and_wait(api, doc: dict, poll_seconds: float, clock, sleep) -> None:
    """Delete `doc` and wait until it is gone (foreground deletion: once its pods are)."""
    api.delete(doc)
    deadline = clock() + DELETE_TIMEOUT
    while api.get(doc) is not None:
        if clock() > deadline:
            raise ClusterError(
                f"{describe(doc)} still exists {DELETE_TIMEOUT:.0f}s after it was deleted "
                "(a finalizer holding it?); delete it yourself and run again"
            )
        sleep(poll_seconds)


def _katib_search(api, path: Path, say, poll_seconds: float, clock, sleep) -> StageResult:
    import yaml

    started = clock()
    outcome = run_experiment(api, yaml.safe_load(path.read_text(encoding="utf-8")), say, poll_seconds, clock, sleep)
    seconds = clock() - started
    if outcome["state"] == "failed":
        say(f"==> search failed after {seconds:.0f}s: {outcome['detail'] or 'no reason given'}")
        return StageResult("search", "failed", seconds, 1)
    best = outcome["best"] or {}
    found = ", ".join(f"{p.get('name')} = {p.get('value')}" for p in best.get("parameterAssignments") or [])
    say(
        f"==> search ok in {seconds:.0f}s: best trial {best.get('bestTrialName', '?')}"
        + (f" ({found})" if found else "")
    )
    return StageResult("search", "ok", seconds, 0)


def run_experiment(api, doc: dict, say, poll_seconds: float, clock, sleep) -> dict:
    """Create a Katib Experiment (search/katib-experiment.yaml; an earlier one of that
    name is deleted first: its trials belong to another run) and follow it to
    Succeeded or Failed. Returns its outcome: state, Katib's reason, the trial counts
    and the best trial (its parameters and objective)."""
    name = describe(doc)
    if api.get(doc) is not None:
        say(f"==> search: deleting the earlier {name}")
        delete_and_wait(api, doc, poll_seconds, clock, sleep)
    say(f"==> search: {name}")
    api.apply(doc)
    shown = None
    while True:
        obj = api.get(doc)
        state = experiment_state(obj) if obj is not None else ("failed", "deleted by someone else")
        if state != shown:
            say(f"    {name}: {state[0]}" + (f" ({state[1]})" if state[1] else ""))
            shown = state
        if state[0] in ("succeeded", "failed"):
            break
        sleep(poll_seconds)
    status = (obj or {}).get("status") or {}
    return {
        "experiment": name,
        "state": state[0],
        "detail": state[1],
        "trials": {k: status.get(k, 0) for k in ("trials", "trialsSucceeded", "trialsFailed", "trialsKilled")},
        "best": status.get("currentOptimalTrial"),
    }


def experiment_state(obj: dict) -> tuple[str, str]:
    """("running" | "succeeded" | "failed", Katib's reason) from an Experiment's conditions."""
    conditions = {c.get("type"): c for c in (obj.get("status") or {}).get("conditions") or []}
    for kind, state in (("Failed", "failed"), ("Succeeded", "succeeded")):
        condition = conditions.get(kind)
        if condition is not None and condition.get("status") == "True":
            return state, str(condition.get("reason") or condition.get("message") or "")
    return "running", ""


def run_workload(api, workload: Workload, key: str, force: bool, say, poll_seconds: float, clock, sleep) -> StageResult:
    doc = with_inputs(workload.doc, key)
    name = describe(doc)
    started = clock()
    existing = api.get(doc)
    if existing is not None:
        same = (existing["metadata"].get("annotations") or {}).get(INPUTS_ANNOTATION) == key
        if same and not force and workload_state(existing)[0] == "succeeded":
            say(f"==> {workload.stage}: {name} up to date (succeeded with these inputs); --force reruns it")
            return StageResult(workload.stage, "skipped", 0.0, 0)
        say(f"==> {workload.stage}: deleting the earlier {name}")
        delete_and_wait(api, doc, poll_seconds, clock, sleep)
    say(f"==> {workload.stage}: {name}")
    api.apply(doc)
    api.patch(doc, resume_patch(doc))
    shown = None
    try:
        while True:
            obj = api.get(doc)
            state, detail = workload_state(obj) if obj is not None else ("failed", "deleted by someone else")
            if (state, detail) != shown:
                say(f"    {name}: {state}" + (f" ({detail})" if detail else ""))
                shown = (state, detail)
            if state in ("succeeded", "failed"):
                break
            sleep(poll_seconds)
    except KeyboardInterrupt:
        say(
            f"==> {workload.stage} interrupted: {name} keeps running in the cluster; "
            f"stop it with kubectl -n {doc['metadata'].get('namespace')} delete {doc['kind'].lower()} "
            f"{doc['metadata']['name']}"
        )
        return StageResult(workload.stage, "interrupted", clock() - started, 130)
    seconds = clock() - started
    namespace = doc["metadata"].get("namespace")
    if state == "failed" or workload.stage == "evaluate":
        # A failure's cause, or evaluate's metrics table, is in the pods' logs.
        for pod, text in api.logs(namespace, pod_selector(doc), LOG_TAIL_LINES):
            say(f"--- {pod} (last {LOG_TAIL_LINES} lines) ---")
            for line in text.rstrip("\n").splitlines():
                say(line)
    if state == "failed":
        say(f"==> {workload.stage} failed after {seconds:.0f}s: {detail}")
        return StageResult(workload.stage, "failed", seconds, 1)
    say(f"==> {workload.stage} ok in {seconds:.0f}s")
    return StageResult(workload.stage, "ok", seconds, 0)
