"""The k8s target: every manifest validated by real validators, for the real specs.

Core kinds go through kubernetes-validate (Kubernetes 1.30 schemas, strict: an
unknown field or kind fails); MPIJob, PrometheusRule and ServiceMonitor through
jsonschema against the upstream CRDs in tests/crds/, made strict the same way
(an unknown field would be pruned silently by the API server); the kustomization
through `kubectl kustomize` when kubectl is installed.

This file holds the tests of this part that run real processes (tools, frameworks,
servers); the fast checks of the same part are in tests/unit/test_target_k8s.py.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml
from helpers import checked as check
from support.k8s import LOADER, documents, of_kind
from support.k8s import built as built  # a fixture: pytest finds it imported here

# --- the real specs ----------------------------------------------------------------


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_builds(built):
    _, _, bundle = built
    proc = subprocess.run(["kubectl", "kustomize", str(bundle / "k8s")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rendered = sorted((d["kind"], d["metadata"]["name"]) for d in yaml.load_all(proc.stdout, Loader=LOADER))
    assert rendered == sorted((d["kind"], d["metadata"]["name"]) for _, d in documents(bundle))


def test_server_images_ports_probes_and_gpu(built):
    spec, profile, bundle = built
    ir = check(spec, profile).ir
    (deployment,) = of_kind(bundle, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (server,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    if ir.serve.platform == "triton":
        assert server["image"] == "nvcr.io/nvidia/tritonserver:24.10-py3"
        assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
        assert server["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
        assert server["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
        assert "--metrics-config=summary_latencies=true" in server["args"]
    else:
        gpu = "-gpu" if ir.serve.device != "cpu" else ""
        assert server["image"] == f"tensorflow/serving:2.18.0{gpu}"
        assert ports == {"http": 8501, "grpc": 8500}
        path = f"/v1/models/{ir.model.name}"
        assert server["readinessProbe"]["httpGet"] == {"path": path, "port": "http"}
        assert server["livenessProbe"]["httpGet"] == {"path": path, "port": "http"}
        assert "--monitoring_config_file=/config/monitoring.config" in server["args"]
    assert ":" in server["image"] and not server["image"].endswith(":latest")
    assert "replicas" not in deployment["spec"]  # the HPA owns it
    gpus = server["resources"]["limits"].get("nvidia.com/gpu")
    assert gpus == (1 if ir.serve.device != "cpu" else None)
    assert server["resources"]["requests"].get("nvidia.com/gpu") == gpus
    # Selectors line up: Service, PDB, NetworkPolicy, ServiceMonitor and the pods.
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert of_kind(bundle, "Service")[0]["spec"]["selector"] == selector
    assert of_kind(bundle, "PodDisruptionBudget")[0]["spec"]["selector"]["matchLabels"] == selector
    (server_policy,) = [
        p for p in of_kind(bundle, "NetworkPolicy") if p["metadata"]["name"] == deployment["metadata"]["name"]
    ]
    assert server_policy["spec"]["podSelector"]["matchLabels"] == selector
    assert of_kind(bundle, "ServiceMonitor")[0]["spec"]["selector"]["matchLabels"] == selector


# --- variants of the specs ---------------------------------------------------------
