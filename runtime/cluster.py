"""`llmc run --target k8s`: apply the bundle's manifests in the current kube context.

Without a reachable cluster it fails at once (exit 2) and touches nothing: the
connection is checked before anything is applied.
"""

import sys


def submit(bundle, console) -> int:
    try:
        from kubernetes import client, config
    except ImportError:
        sys.stderr.write("error: the kubernetes client is not installed (pip install kubernetes)\n")
        return 2
    try:
        config.load_kube_config()
    except Exception as exc:  # no kubeconfig, no current context, a bad file
        sys.stderr.write(f"error: no Kubernetes cluster configured: {exc}\n")
        return 2
    try:
        client.VersionApi().get_code(_request_timeout=5)
    except Exception as exc:  # unreachable API server, TLS or auth failure
        sys.stderr.write(f"error: the Kubernetes API server is not reachable: {exc}\n")
        return 2
    manifests = bundle.root / "k8s"
    if not manifests.is_dir():
        sys.stderr.write("error: the bundle has no k8s/ manifests\n")
        return 2
    from kubernetes import utils

    api = client.ApiClient()
    applied = 0
    for path in sorted(manifests.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        utils.create_from_yaml(api, str(path), apply=True) if _supports_apply(utils) else utils.create_from_yaml(api, str(path))
        applied += 1
    console.print(f"applied {applied} manifests from {manifests}")
    return 0


def _supports_apply(utils) -> bool:
    import inspect

    return "apply" in inspect.signature(utils.create_from_yaml).parameters
