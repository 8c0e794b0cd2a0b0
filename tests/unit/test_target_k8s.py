"""The k8s target: every manifest validated by real validators, for the real specs.

Core kinds go through kubernetes-validate (Kubernetes 1.30 schemas, strict: an
unknown field or kind fails); MPIJob, PrometheusRule and ServiceMonitor through
jsonschema against the upstream CRDs in tests/crds/, made strict the same way
(an unknown field would be pruned silently by the API server); the kustomization
through `kubectl kustomize` when kubectl is installed.

The tests of this part that run real processes (tools, frameworks, servers) are in
tests/integration/test_target_k8s_runs.py.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import ROOT
from helpers import build_spec as build
from helpers import checked as check
from helpers import spec_variant as variant
from support.k8s import LOADER, allowed, documents, of_kind, pod_templates, selects, strict_schema
from support.k8s import built as built  # a fixture: pytest finds it imported here

CRDS = ROOT / "tests" / "crds"  # copied from the operators' repositories: see its README
CRD_KINDS = {"MPIJob", "PrometheusRule", "ServiceMonitor"}
DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


# --- building ----------------------------------------------------------------------


def load(path: Path):
    return yaml.load(path.read_text(encoding="utf-8"), Loader=LOADER)


def pod_specs(doc: dict) -> list[dict]:
    if doc["kind"] in ("Deployment", "Job"):
        return [doc["spec"]["template"]["spec"]]
    if doc["kind"] == "MPIJob":
        return [r["template"]["spec"] for r in doc["spec"]["mpiReplicaSpecs"].values()]
    return []


def containers(pod: dict) -> list[dict]:
    return pod.get("initContainers", []) + pod["containers"]


@pytest.fixture(scope="module")
def crd_schemas() -> dict:
    schemas = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = load(path)
        for version in crd["spec"]["versions"]:
            key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
            schemas[key] = strict_schema(version["schema"]["openAPIV3Schema"])
    return schemas


def validate_crd(doc: dict, schemas: dict) -> None:
    import jsonschema

    key = (doc["apiVersion"], doc["kind"])
    assert key in schemas, f"no CRD schema for {key}"
    # Draft 4: what OpenAPI v3 schemas follow. The schema itself is not checked: the
    # CRDs carry Go regexes (`^(?i)...`) that Python's re rejects.
    errors = sorted(jsonschema.Draft4Validator(schemas[key]).iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


# --- the real specs ----------------------------------------------------------------


def test_every_kind_is_generated(built):
    _, _, bundle = built
    kinds = sorted(doc["kind"] for _, doc in documents(bundle) if doc["kind"] != "NetworkPolicy")
    assert kinds == sorted(
        [
            "ServiceAccount",
            "PersistentVolumeClaim",
            "ConfigMap",
            "Deployment",
            "Service",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "ServiceMonitor",
            "PrometheusRule",
            "MPIJob",
            "Job",
            "Job",
            "Job",
        ]
    )


def test_core_kinds_validate_strictly(built):
    import kubernetes_validate

    _, _, bundle = built
    for _name, doc in documents(bundle):
        if doc["kind"] in CRD_KINDS:
            continue
        # SchemaNotFoundError (an unknown kind or apiVersion) fails the test like any other.
        kubernetes_validate.validate(doc, "1.30.0", strict=True)


def test_custom_resources_validate_against_their_crds(built, crd_schemas):
    _, _, bundle = built
    seen = set()
    for _name, doc in documents(bundle):
        if doc["kind"] in CRD_KINDS:
            validate_crd(doc, crd_schemas)
            seen.add(doc["kind"])
    assert seen == CRD_KINDS


def test_strict_crd_validation_catches_a_misspelt_field(built, crd_schemas):
    _, _, bundle = built
    mpijob = copy.deepcopy(of_kind(bundle, "MPIJob")[0])
    mpijob["spec"]["slotsPerWorkr"] = 1
    with pytest.raises(AssertionError, match="slotsPerWorkr"):
        validate_crd(mpijob, crd_schemas)


def test_kustomization_lists_every_manifest_with_namespace_and_labels(built):
    spec, profile, bundle = built
    ir = check(spec, profile).ir
    kustomization = load(bundle / "k8s" / "kustomization.yaml")
    files = sorted(p.name for p in (bundle / "k8s").glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(kustomization["resources"]) == files
    assert kustomization["namespace"] == ir.deploy.namespace
    (labels,) = kustomization["labels"]
    assert labels["includeSelectors"] is False
    assert labels["pairs"]["app.kubernetes.io/name"] == ir.model.name
    assert labels["pairs"]["app.kubernetes.io/managed-by"] == "llmc"
    for _, doc in documents(bundle):
        assert doc["metadata"]["namespace"] == ir.deploy.namespace
        assert labels["pairs"].items() <= doc["metadata"]["labels"].items()


def test_names_are_dns_labels(built):
    _, _, bundle = built
    for _, doc in documents(bundle):
        name = doc["metadata"]["name"]
        assert DNS_LABEL.fullmatch(name) and len(name) <= 63, name
        for key, value in doc["metadata"]["labels"].items():
            assert LABEL_VALUE.fullmatch(value) and len(value) <= 63, (key, value)


def test_every_container_is_locked_down(built):
    _, _, bundle = built
    checked = 0
    for name, doc in documents(bundle):
        for pod in pod_specs(doc):
            assert pod["automountServiceAccountToken"] is False, name
            assert pod["securityContext"]["runAsNonRoot"] is True, name
            assert pod["securityContext"]["runAsUser"] != 0, name
            assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
            writable = {m["name"] for m in pod.get("volumes", [])}
            for c in containers(pod):
                where = f"{name}: {c['name']}"
                sc = c["securityContext"]
                assert sc["runAsNonRoot"] is True, where
                assert sc["allowPrivilegeEscalation"] is False, where
                assert sc["privileged"] is False, where
                assert sc["readOnlyRootFilesystem"] is True, where
                assert sc["capabilities"]["drop"] == ["ALL"], where
                assert "add" not in sc["capabilities"], where  # k8s/Dockerfile's sshd listens on 2222: no capability
                assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
                resources = c["resources"]
                for kind in ("cpu", "memory"):
                    assert resources["requests"][kind] and resources["limits"][kind], where
                assert resources["requests"] == resources["limits"], where
                mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
                assert "/tmp" in mounts and mounts["/tmp"]["readOnly"] is False, where
                assert all(m["name"] in writable for m in c["volumeMounts"]), where
                checked += 1
    assert checked >= 7  # init + server, launcher + worker, three stage Jobs


def test_mpijob_follows_the_layout(built):
    spec, profile, bundle = built
    cluster = check(spec, profile).ir.train.cluster
    (mpijob,) = of_kind(bundle, "MPIJob")
    replicas = mpijob["spec"]["mpiReplicaSpecs"]
    assert mpijob["spec"]["slotsPerWorker"] == cluster.slots_per_host
    assert replicas["Worker"]["replicas"] == cluster.hosts
    assert replicas["Launcher"]["replicas"] == 1
    assert mpijob["spec"]["runPolicy"]["suspend"] is True
    (launcher,) = replicas["Launcher"]["template"]["spec"]["containers"]
    # The launcher runs the bundle's own launch.sh over mpi-operator's hostfile, and that
    # script starts hosts x slots processes.
    assert launcher["command"] == ["bash", "/opt/llmc/bundle/train/launch.sh", "--output", "/artifacts/outputs"]
    assert {"name": "HOROVOD_HOSTFILE", "value": "/etc/mpi/hostfile"} in launcher["env"]
    launch = (bundle / "train" / "launch.sh").read_text(encoding="utf-8")
    assert f"SPEC_NP={cluster.hosts * cluster.slots_per_host}\n" in launch
    assert 'HOST_ARGS=(--hostfile "$HOROVOD_HOSTFILE")' in launch
    assert "nvidia.com/gpu" not in launcher["resources"]["limits"]
    (worker,) = replicas["Worker"]["template"]["spec"]["containers"]
    gpus = worker["resources"]["limits"].get("nvidia.com/gpu")
    assert gpus == (cluster.slots_per_host if cluster.device != "cpu" else None)


def test_stage_jobs_exist_for_their_blocks_and_start_suspended(built):
    _, _, bundle = built
    jobs = {doc["metadata"]["name"]: doc for doc in of_kind(bundle, "Job")}
    assert sorted(jobs) == sorted(f"{bundle_model(bundle)}-{s}" for s in ("compress", "evaluate", "search"))
    for job in jobs.values():
        assert job["spec"]["suspend"] is True
        pod = job["spec"]["template"]["spec"]
        assert pod["restartPolicy"] == "Never"
        (c,) = pod["containers"]
        assert c["workingDir"] == "/opt/llmc/bundle"
        assert {"name": "LLMC_OUTPUT", "value": "/artifacts/outputs"} in c["env"]
    assert jobs[f"{bundle_model(bundle)}-evaluate"]["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "python3",
        "evaluate/evaluate.py",
    ]


def bundle_model(bundle: Path) -> str:
    return of_kind(bundle, "Deployment")[0]["metadata"]["name"]


def test_configmap_holds_the_serving_configs(built):
    _, _, bundle = built
    (configmap,) = of_kind(bundle, "ConfigMap")
    serve = bundle / "serve"
    (deployment,) = of_kind(bundle, "Deployment")
    (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
    # The init container copies each ConfigMap key to its place in Triton's repository:
    # KEY=PATH arguments after the model folders (the keys are flat, the repository not).
    placed = dict(arg.split("=", 1) for arg in init["command"][4:] if "=" in arg)
    files = [p for p in serve.rglob("*") if p.is_file()]
    for path in files:
        rel = path.relative_to(serve)
        if rel.parts[0] == "model_repository":
            (key,) = [k for k, where in placed.items() if where == str(rel.relative_to("model_repository"))]
        else:
            key = path.name
        assert configmap["data"][key] == path.read_text(encoding="utf-8"), path
    assert len(placed) == sum(p.relative_to(serve).parts[0] == "model_repository" for p in files)
    models = [arg for arg in init["command"][6:] if "=" not in arg]  # after sh -c SCRIPT NAME SRC DST
    repository = serve / "model_repository"
    if repository.is_dir():  # Triton: every model of the repository is copied from the compress stage
        assert sorted(models) == sorted(p.name for p in repository.iterdir())
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == configmap["metadata"]["name"]


def test_network_policies_deny_all_then_allow_what_each_pod_needs(built):
    spec, profile, bundle = built
    ir = check(spec, profile).ir
    policies = of_kind(bundle, "NetworkPolicy")
    pods = {
        t["metadata"]["labels"]["app.kubernetes.io/component"]
        + ("/" + doc["kind"] if doc["kind"] == "MPIJob" else ""): t
        for _, doc in documents(bundle)
        for t in pod_templates(doc)
    }
    deny = [p for p in policies if p["metadata"]["name"].endswith("-default-deny")]
    assert len(deny) == 1 and deny[0]["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert deny[0]["spec"]["ingress"] == deny[0]["spec"]["egress"] == []
    dns = {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    for name, pod in pods.items():
        assert selects(deny[0], pod), name
        egress = allowed(policies, pod, "egress")
        assert [r for r in egress if r.get("ports") == dns["ports"]], name  # DNS
        ingress = allowed(policies, pod, "ingress")
        component = pod["metadata"]["labels"]["app.kubernetes.io/component"]
        # A katib search's Job runs search.py's trials one after another, as a local one does.
        if component in ("compress", "evaluate") or (component == "search" and ir.search.backend in ("local", "katib")):
            assert ingress == [] and egress == [r for r in egress if r.get("ports") == dns["ports"]], name
        elif component == "train":
            team = {"podSelector": {"matchLabels": {k: pod["metadata"]["labels"][k] for k in SELECTOR_KEYS}}}
            assert ingress == [{"from": [team]}] and {"to": [team]} in egress, name
        elif component == "server":
            (service,) = of_kind(bundle, "Service")
            (monitor,) = of_kind(bundle, "ServiceMonitor")
            ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
            metrics = ports.get("metrics", ports["http"])
            namespace_rule, monitoring_rule = ingress
            assert namespace_rule["from"] == [{"podSelector": {}}]
            assert {p["port"] for p in namespace_rule["ports"]} == {ports["http"], ports["grpc"]}
            assert monitoring_rule["from"][0]["namespaceSelector"] == {
                "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
            }
            assert [p["port"] for p in monitoring_rule["ports"]] == [metrics]
            assert monitor["spec"]["endpoints"][0]["port"] in ports


SELECTOR_KEYS = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component")


def test_hpa_bounds_are_the_specs_replicas(built):
    spec, profile, bundle = built
    ir = check(spec, profile).ir
    (hpa,) = of_kind(bundle, "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (ir.serve.replicas.min, ir.serve.replicas.max)
    assert hpa["spec"]["scaleTargetRef"]["name"] == of_kind(bundle, "Deployment")[0]["metadata"]["name"]
    (pdb,) = of_kind(bundle, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1


def test_prometheusrule_carries_the_alerts_yaml_groups(built):
    _, _, bundle = built
    (rule,) = of_kind(bundle, "PrometheusRule")
    alerts = load(bundle / "monitoring" / "alerts.yaml")
    assert rule["spec"]["groups"] == alerts["groups"]


# --- variants of the specs ---------------------------------------------------------


def drop_block(block: str):
    return lambda text: re.sub(rf"\n( *){block} \{{.*?\n\1\}}\n", "\n", text, count=1, flags=re.S)


def llm_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


@pytest.mark.parametrize("availability, floor", [("99.9%", 2), ("99%", 1)])
def test_derived_replicas(tmp_path, availability, floor):
    from llmc.compiler.plan import replica_plan

    def edit(text):
        text = drop_block("replicas")(text)
        return text.replace("availability = 99.9%", f"availability = {availability}")

    spec = variant(tmp_path, "translator", edit)
    result = check(spec)
    assert result.ir.serve.replicas.min is None and result.ir.serve.replicas.max is None
    needed = int(result.facts.sizing.replicas)
    bundle = build(spec, tmp_path / "bundle")
    (hpa,) = of_kind(bundle, "HorizontalPodAutoscaler")
    expected_min = max(needed, floor)
    assert hpa["spec"]["minReplicas"] == expected_min
    assert hpa["spec"]["maxReplicas"] == 3 * expected_min
    plan = replica_plan(result.ir, result.facts)
    assert (plan.min, plan.max, plan.needed) == (expected_min, 3 * expected_min, needed)


def test_without_a_deploy_block(tmp_path):
    spec = variant(tmp_path, "classifier", drop_block("deploy"))
    bundle = build(spec, tmp_path / "bundle")
    kustomization = load(bundle / "k8s" / "kustomization.yaml")
    assert kustomization["namespace"] == "default"
    images = set()
    for _, doc in documents(bundle):
        assert doc["metadata"]["namespace"] == "default"
        for pod in pod_specs(doc):
            assert pod["serviceAccountName"] == "classifier"
            images |= {c["image"] for c in pod["containers"]}
    assert "classifier:latest" in images
    assert of_kind(bundle, "ServiceAccount")[0]["metadata"]["name"] == "classifier"


def test_serve_and_train_blocks_left_out(tmp_path):
    def edit(text):
        for block in ("serve", "search", "evaluate", "compress", "train"):
            text = drop_block(block)(text)
        return text

    spec = variant(tmp_path, "translator", edit)
    bundle = build(spec, tmp_path / "bundle")
    assert not (bundle / "k8s").exists()
    assert not (bundle / "monitoring").exists()


def test_training_only(tmp_path):
    def edit(text):
        for block in ("serve", "search", "evaluate", "compress"):
            text = drop_block(block)(text)
        return text

    bundle = build(variant(tmp_path, "classifier", edit), tmp_path / "bundle")
    kinds = sorted(doc["kind"] for _, doc in documents(bundle))
    assert kinds == [
        "MPIJob",
        "NetworkPolicy",
        "NetworkPolicy",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "ServiceAccount",
    ]


HOSTILE: dict[str, Any] = {
    "namespace": "ns\" # {{ x }}: &anchor *alias\n- evil: 'q' \\ \t é",
    "image": "registry.example.com/x:1 # {{ img }}\n  - name: injected: &a *b",
    "service_account": 'sa": "x {{ y }} # z',
    "labels": {"team": "a: b # c {{ d }} &anchor *alias \"q\" 'x'\nnewline", "empty": "", "tab": "\t%!"},
    "bundle_url": "https://git.example.com/{{ $labels.job }}\" # x\n- evil: 'q'",
    "grafana_url": "javascript:alert(1)",
    "node_selector": ["gpu=a # {{ x }}\n- evil: 'q'", "no-equals-sign"],
}


def hostile_deploy() -> str:
    labels = "\n".join(f"    {k} = {llm_string(v)}" for k, v in HOSTILE["labels"].items())
    return (
        f"deploy {{\n  namespace = {llm_string(HOSTILE['namespace'])}\n"
        f"  image = {llm_string(HOSTILE['image'])}\n"
        f"  service_account = {llm_string(HOSTILE['service_account'])}\n"
        f"  bundle_url = {llm_string(HOSTILE['bundle_url'])}\n"
        f"  grafana_url = {llm_string(HOSTILE['grafana_url'])}\n"
        f"  node_selector = [{', '.join(llm_string(v) for v in HOSTILE['node_selector'])}]\n"
        f"  labels {{\n{labels}\n  }}\n}}\n"
    )


@pytest.mark.parametrize("name", ["translator", "classifier"])
def test_hostile_deploy_strings_are_rejected_at_check(tmp_path, name):
    spec = variant(
        tmp_path, name, lambda t: re.sub(r"\ndeploy \{.*?\n\}\n", lambda m: "\n" + hostile_deploy(), t, flags=re.S)
    )
    from llmc.compiler.driver import check_spec

    messages = [d.message for d in check_spec(str(spec)).diagnostics if d.code == "E801"]
    for what in (
        "is not a valid Kubernetes namespace",
        "is not a valid image reference",
        "is not a valid Kubernetes name",
        "is not a valid Kubernetes label value",
    ):
        assert any(what in m for m in messages), (what, messages)
    assert sum("is not an http(s) URL an alert can link to" in m for m in messages) == 2, messages
    assert sum("is not a node label selector" in m for m in messages) == 2, messages


@pytest.mark.parametrize("name", ["translator", "classifier"])
def test_hostile_deploy_strings_stay_data(tmp_path, name):
    # The checks reject these values (above); the templates must keep them data all the
    # same, so they are put into a checked IR directly.
    from llmc.compiler.bundle import build_files, write_bundle
    from llmc.compiler.driver import check_spec

    result = check_spec(str(ROOT / "specs" / f"{name}.llm"))  # a fresh result: it is changed below
    deploy = result.ir.deploy.model_copy(update=HOSTILE)
    result.ir = result.ir.model_copy(update={"deploy": deploy})
    bundle = tmp_path / "bundle"
    write_bundle(build_files(result), str(bundle))
    kustomization = load(bundle / "k8s" / "kustomization.yaml")
    assert kustomization["namespace"] == HOSTILE["namespace"]
    assert HOSTILE["labels"].items() <= kustomization["labels"][0]["pairs"].items()
    stage_images, accounts = set(), set()
    for file, doc in documents(bundle):
        assert doc["metadata"]["namespace"] == HOSTILE["namespace"], file
        assert HOSTILE["labels"].items() <= doc["metadata"]["labels"].items(), file
        for template in pod_templates(doc):
            assert HOSTILE["labels"].items() <= template["metadata"]["labels"].items(), file
        for pod in pod_specs(doc):
            accounts.add(pod["serviceAccountName"])
            stage_images |= {c["image"] for c in pod["containers"] if doc["kind"] != "Deployment"}
    assert stage_images == {HOSTILE["image"]}
    assert accounts == {HOSTILE["service_account"]}
    assert of_kind(bundle, "ServiceAccount")[0]["metadata"]["name"] == HOSTILE["service_account"]
    # The structure is intact: nothing was injected (the same objects as the spec's own bundle).
    plain = tmp_path / "plain"
    write_bundle(build_files(check_spec(str(ROOT / "specs" / f"{name}.llm"))), str(plain))
    assert sorted(d["kind"] for _, d in documents(bundle)) == sorted(d["kind"] for _, d in documents(plain))
    # The node selector is data too: each entry one nodeSelector pair, key and value as given.
    selectors = [pod.get("nodeSelector") for _, doc in documents(bundle) for pod in pod_specs(doc)]
    expected = {key: value for key, _, value in (e.partition("=") for e in HOSTILE["node_selector"])}
    assert expected in selectors


def test_hostile_model_name(tmp_path):
    hostile = 'en→de "v2" {{ x }}: #1'

    def edit(text):
        return text.replace("model translator {", f"model {llm_string(hostile)} {{")

    spec = variant(tmp_path, "translator", edit)
    assert check(spec).ir.model.name == hostile
    bundle = build(spec, tmp_path / "bundle")
    for file, doc in documents(bundle):
        name = doc["metadata"]["name"]
        assert DNS_LABEL.fullmatch(name) and len(name) <= 63, (file, name)
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "en-de-v2-x-1"
    # Without a deploy block the default image `<name>:latest` would be invalid: E801.
    (tmp_path / "no-deploy").mkdir()
    no_deploy = variant(tmp_path / "no-deploy", "translator", lambda t: drop_block("deploy")(edit(t)))
    from llmc.compiler.driver import check_spec

    assert "E801" in [d.code for d in check_spec(str(no_deploy)).diagnostics]
