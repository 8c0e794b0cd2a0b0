"""What a platform team's admission review and policy scanner check, on every spec the
project ships (specs/ and examples/, at each of their profiles): no pod without a
default-deny NetworkPolicy, no container that may run as a uid or gid under 10000 or as
root, every pod on a GPU pinned to its device's nodes, and the serving autoscaler on
the SLA's own signal."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from helpers import ROOT
from helpers import build_spec as build
from helpers import checked as check
from helpers import spec_variant as variant
from support.k8s import documents, of_kind, pod_templates

from llmc.compiler.catalog import GPU_PRODUCTS, devices, is_gpu
from llmc.compiler.checks.deploy import LLMC_ENV

SPECS = sorted((ROOT / "specs").glob("*.llm")) + sorted((ROOT / "examples").glob("*.llm"))
BUILDS = [
    (spec, profile)
    for spec in SPECS
    for profile in [None] + re.findall(r"^profile (\w+)", spec.read_text(encoding="utf-8"), flags=re.M)
]
MIN_UID = 10000


def selects(policy: dict, labels: dict) -> bool:
    wanted = policy["spec"]["podSelector"].get("matchLabels", {})
    return all(labels.get(k) == v for k, v in wanted.items())


@pytest.fixture(scope="module", params=BUILDS, ids=lambda b: f"{b[0].stem}-{b[1] or 'default'}")
def bundle(request, tmp_path_factory) -> tuple[Path, str | None, Path]:
    spec, profile = request.param
    return spec, profile, build(spec, tmp_path_factory.mktemp(spec.stem) / "bundle", profile)


def test_every_pod_has_a_default_deny_network_policy_and_runs_as_uid_10000_or_more(bundle):
    _, _, out = bundle
    docs = documents(out)
    policies = [d for _, d in docs if d["kind"] == "NetworkPolicy"]
    pods = [(f"{name} {d['kind']}", t) for name, d in docs for t in pod_templates(d)]
    for where, template in pods:
        deny = [
            p
            for p in policies
            if selects(p, template["metadata"]["labels"])
            and p["spec"]["policyTypes"] == ["Ingress", "Egress"]
            and p["spec"]["ingress"] == p["spec"]["egress"] == []
        ]
        assert deny, f"{where}: no default-deny NetworkPolicy selects this pod"
        pod = template["spec"]
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True, where
        for key in ("runAsUser", "runAsGroup", "fsGroup"):
            assert security[key] >= MIN_UID, (where, key, security[key])
        for container in pod.get("initContainers", []) + pod["containers"]:
            own = container.get("securityContext", {})
            for key in ("runAsUser", "runAsGroup"):
                assert own.get(key, MIN_UID) >= MIN_UID, (where, container["name"], key)


def test_pods_on_a_gpu_require_its_nodes_and_others_select_none(bundle):
    spec, profile, out = bundle
    ir = check(spec, profile).ir
    for _, doc in documents(out):
        for template in pod_templates(doc):
            pod = template["spec"]
            gpus = sum(int(c["resources"]["limits"].get("nvidia.com/gpu", 0)) for c in pod["containers"])
            affinity = pod.get("affinity", {}).get("nodeAffinity")
            if not gpus:
                assert affinity is None and "nodeSelector" not in pod, doc["metadata"]["name"]
                continue
            (term,) = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            (match,) = term["matchExpressions"]
            assert (match["key"], match["operator"]) == ("nvidia.com/gpu.product", "In")
            component = template["metadata"]["labels"]["app.kubernetes.io/component"]
            device = ir.serve.device if component in ("server", "evaluate") else None
            if device is not None:
                assert match["values"] == list(GPU_PRODUCTS[device]), (component, match)
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]


def test_every_gpu_of_the_catalog_has_its_products():
    assert set(GPU_PRODUCTS) == {d.name for d in devices() if is_gpu(d.name)}
    for products in GPU_PRODUCTS.values():
        assert products and all(re.fullmatch(r"[A-Za-z0-9][-A-Za-z0-9_.]*[A-Za-z0-9]", p) for p in products)


def test_a_deploy_node_selector_replaces_the_product_rule(tmp_path):
    selector = "cloud.google.com/gke-accelerator=nvidia-tesla-t4"
    spec = variant(
        tmp_path,
        "translator",
        lambda t: t.replace(
            'namespace   = "ml-translation"', f'namespace   = "ml-translation"\n  node_selector = ["{selector}"]'
        ),
    )
    out = build(spec, tmp_path / "bundle")
    (deployment,) = of_kind(out, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
    assert "affinity" not in pod


def test_the_server_scales_on_requests_per_pod_at_60_percent_of_the_planned_capacity(tmp_path):
    out = build(ROOT / "specs" / "translator.llm", tmp_path / "bundle")
    (hpa,) = of_kind(out, "HorizontalPodAutoscaler")
    (metric,) = hpa["spec"]["metrics"]
    capacity = yaml.safe_load((out / "serving.json").read_text())["estimate"]["replica_capacity_rps"]
    assert metric["type"] == "Pods"
    target = metric["pods"]["target"]
    assert target["type"] == "AverageValue"
    assert int(target["averageValue"].removesuffix("m")) / 1000 == pytest.approx(0.6 * capacity, rel=1e-3)
    (rule,) = yaml.safe_load((out / "monitoring" / "prometheus-adapter.yaml").read_text())["rules"]
    assert rule["name"]["as"] == metric["pods"]["metric"]["name"]
    assert "<<.LabelMatchers>>" in rule["metricsQuery"] and "<<.GroupBy>>" in rule["metricsQuery"]
    # A spec may fall back to CPU, for a cluster without Prometheus Adapter.
    spec = variant(
        tmp_path, "translator", lambda t: t.replace("    max = 16\n", '    max = 16\n    scale_on = "cpu"\n')
    )
    cpu = build(spec, tmp_path / "cpu")
    (hpa,) = of_kind(cpu, "HorizontalPodAutoscaler")
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert not (cpu / "monitoring" / "prometheus-adapter.yaml").exists()


def test_a_tag_warns_and_is_pulled_always_a_digest_is_pulled_once(tmp_path):
    pinned = build(ROOT / "specs" / "translator.llm", tmp_path / "pinned")
    assert "W802" not in [d.code for d in check(ROOT / "specs" / "translator.llm").diagnostics]
    tagged_spec = variant(tmp_path, "classifier", lambda t: re.sub(r"@sha256:[0-9a-f]{64}", "", t))
    assert "W802" in [d.code for d in check(tagged_spec).diagnostics]
    tagged = build(tagged_spec, tmp_path / "tagged")
    for out, policy in ((pinned, "IfNotPresent"), (tagged, "Always")):
        for _, doc in documents(out):
            for template in pod_templates(doc):
                for c in template["spec"].get("initContainers", []) + template["spec"]["containers"]:
                    if "@sha256:" in c["image"] or "registry.example.com" in c["image"]:
                        assert c["imagePullPolicy"] == policy, (c["name"], c["image"])


def test_the_bundle_readme_lists_its_folders_stages_and_commands(bundle):
    spec, profile, out = bundle
    ir = check(spec, profile).ir
    text = (out / "README.md").read_text(encoding="utf-8")
    listed = re.findall(r"^\| `([a-z0-9_]+)/` \|", text, flags=re.M)
    assert listed and set(listed) == {p.name for p in out.iterdir() if p.is_dir()}
    order = re.findall(r"^\d+\. (\w+)$", text, flags=re.M)
    expected = [s for s in ("train", "compress", "evaluate", "serve") if getattr(ir, s) is not None]
    assert order == expected
    assert ("--stage search" in text) == (ir.search is not None)
    if (out / "k8s").exists():
        assert "kubectl apply -k k8s/" in text and "--target k8s" in text
        assert ("-f k8s/Dockerfile" in text) == (out / "k8s" / "Dockerfile").exists()


def test_every_stage_pod_gets_the_secret_env_and_no_other_variable_of_its_own(bundle):
    """deploy.secret_env reaches every container that runs a stage (the MPIJob's launcher
    and workers, the Jobs, Katib's trials, the pipeline's steps) from its Secret, never
    as a value, and never the server; llmc's own variables are the ones the check
    keeps a Secret from replacing (checks/deploy.LLMC_ENV)."""
    spec, profile, out = bundle
    ir = check(spec, profile).ir
    wanted = {
        name: {"secretKeyRef": dict(zip(("name", "key"), ref.split("/", 1), strict=True))}
        for name, ref in (ir.deploy.secret_env if ir.deploy is not None else {}).items()
    }
    templates = [(d["kind"], t) for _, d in documents(out) for t in pod_templates(d)]
    experiment = out / "search" / "katib-experiment.yaml"
    if experiment.is_file():
        trial = yaml.safe_load(experiment.read_text())["spec"]["trialTemplate"]["trialSpec"]
        templates.append(("Trial", trial["spec"]["template"]))
    assert templates
    for kind, template in templates:
        for container in template["spec"]["containers"]:
            env = {e["name"]: e for e in container.get("env", [])}
            secret = {n: e["valueFrom"] for n, e in env.items() if "valueFrom" in e}
            if kind == "Deployment":
                assert not secret, container["name"]
                continue
            assert secret == wanted, (kind, container["name"])
            assert {n for n in env if n not in secret} <= LLMC_ENV, (kind, container["name"])
    if (out / "pipeline" / "pipeline.yaml").is_file():
        _, platform = yaml.safe_load_all((out / "pipeline" / "pipeline.yaml").read_text())
        for name, executor in platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].items():
            given = {
                k["envVar"]: {"secretKeyRef": {"name": s["secretName"], "key": k["secretKey"]}}
                for s in executor.get("secretAsEnv", [])
                for k in s["keyToEnv"]
            }
            assert given == wanted, name
