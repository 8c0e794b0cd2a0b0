"""`llmc deploy`: the serving objects applied, what changed said, the rollout followed.

No Kubernetes API server can run on the machines that test llmc, so the deploy runs
against `FakeCluster` (tests/support/cluster.py), an in-memory stand-in for the
client calls with the real bundles' manifests: server-side apply keeps the server's
and the controllers' fields, a dry run stores nothing, and a Deployment's rollout
advances one step per read (or sticks, or is never observed). The manifests
themselves are checked against the real schemas in test_target_k8s.py.

The tests of this part that run real processes are in
tests/integration/test_deploy_runs.py.
"""

from __future__ import annotations

import copy
import re
import shutil
from typing import Any

from helpers import ROOT, run_cli, spec_variant
from support.cluster import CORE_SERVING_KINDS, FakeCluster, deploy_to, run, with_volume
from support.cluster import bundle as bundle  # a fixture: pytest finds it imported here

from llmc.runtime.cluster import read_manifests
from llmc.runtime.deploy import changed_paths, comparable, rollout_state, serving_objects

SERVING = [
    "ServiceAccount/translator",
    "ConfigMap/translator-serving",
    "Service/translator",
    "PodDisruptionBudget/translator",
    "ServiceMonitor/translator",
    "PrometheusRule/translator-slo",
    "NetworkPolicy/translator-default-deny",
    "NetworkPolicy/translator-dns",
    "NetworkPolicy/translator-train",
    "NetworkPolicy/translator-search-trials",  # its Katib trials reach Katib
    "NetworkPolicy/translator",
    "Deployment/translator",
    "HorizontalPodAutoscaler/translator",
]
SERVER_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"


def applies(cluster: FakeCluster) -> list[str]:
    return [c.split(" ", 1)[1] for c in cluster.calls if c.startswith(("apply ", "dry-run apply "))]


def with_new_server_image(bundle, tmp_path):
    """The bundle as a newer llmc would build it, with another Triton release."""
    other = tmp_path / "bundle"
    shutil.copytree(bundle.root, other)
    deployment = other / "k8s" / "deployment.yaml"
    deployment.write_text(deployment.read_text().replace(SERVER_IMAGE, "nvcr.io/nvidia/tritonserver:24.12-py3"))
    return other


def test_the_serving_objects_are_all_but_the_workloads_and_the_volume_and_the_server_comes_last(bundle):
    serving, volumes = serving_objects(read_manifests(bundle.root / "k8s"))
    assert [f"{d['kind']}/{d['metadata']['name']}" for d in serving] == SERVING
    # The volume holds the trained model: checked to exist, never applied.
    assert [d["metadata"]["name"] for d in volumes] == ["translator-artifacts"]


def test_a_first_deploy_creates_the_serving_objects_and_follows_the_rollout_to_the_end(bundle, capsys):
    cluster = with_volume(bundle, FakeCluster())
    code, lines, err = deploy_to(bundle.root, cluster, capsys)
    assert code == 0, err
    assert applies(cluster) == SERVING  # no MPIJob, no Job, no PersistentVolumeClaim
    assert lines[0] == "==> deploy Deployment/translator to namespace ml-translation (kube context fake-context)"
    assert lines[1 : 1 + len(SERVING)] == [f"{name} created" for name in SERVING]
    assert lines[1 + len(SERVING)] == "13 serving objects: 13 created, 0 unchanged"
    assert lines[2 + len(SERVING) :] == [
        "    Deployment/translator: waiting for the controller to observe the new spec",
        "    Deployment/translator: 1 of 2 new replicas updated",
        "    Deployment/translator: 1 of 2 updated replicas available",
        "==> Deployment/translator rolled out: 2 of 2 replicas available, revision 1",
    ]
    assert err == ""


def test_a_second_deploy_of_the_same_bundle_changes_nothing_and_finds_it_rolled_out(bundle, capsys):
    cluster = with_volume(bundle, FakeCluster())
    deploy_to(bundle.root, cluster, capsys)
    before = copy.deepcopy(cluster.objects)
    code, lines, err = deploy_to(bundle.root, cluster, capsys)
    assert code == 0, err
    assert lines[1:] == [f"{name} unchanged" for name in SERVING] + [
        "13 serving objects: 13 unchanged",
        "==> Deployment/translator unchanged and already rolled out: 2 of 2 replicas available, revision 1",
    ]
    assert cluster.objects == before  # not even a resourceVersion moved


def test_a_new_server_image_is_configured_with_the_fields_that_changed_and_rolled_out(bundle, tmp_path, capsys):
    cluster = with_volume(bundle, FakeCluster())
    deploy_to(bundle.root, cluster, capsys)
    code, lines, err = deploy_to(with_new_server_image(bundle, tmp_path), cluster, capsys)
    assert code == 0, err
    assert (
        "Deployment/translator configured: spec.template.spec.initContainers[0].image, "
        "spec.template.spec.containers[0].image"
    ) in lines
    assert "13 serving objects: 1 configured, 12 unchanged" in lines
    # The old replicas serve until the new ones are available (maxUnavailable 0).
    assert "    Deployment/translator: 1 old replica pending termination" in lines
    assert lines[-1] == "==> Deployment/translator rolled out: 2 of 2 replicas available, revision 2"
    stored = cluster.objects[("Deployment", "translator")]
    assert stored["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":24.12-py3")
    assert stored["metadata"]["generation"] == 2


def test_a_changed_serving_config_reconfigures_the_configmap_and_rolls_the_pods(bundle, tmp_path, capsys):
    cluster = with_volume(bundle, FakeCluster())
    deploy_to(bundle.root, cluster, capsys)
    spec = spec_variant(tmp_path, "translator", lambda t: t.replace("max_batch_size = 16", "max_batch_size = 8"))
    code, _out, err = run_cli("build", str(spec), "-o", str(tmp_path / "smaller-batches"), "-q")
    assert code == 0, err
    code, lines, err = deploy_to(tmp_path / "smaller-batches", cluster, capsys)
    assert code == 0, err
    # max_batch_size is in the greedy loop's config and in both engines' (TensorRT generation).
    assert (
        'ConfigMap/translator-serving configured: data["config.pbtxt"], data["translator_decoder-config.pbtxt"], '
        'data["translator_encoder-config.pbtxt"]'
    ) in lines
    # The pod template carries the config's hash, so that new pods read the new config.
    assert (
        'Deployment/translator configured: spec.template.metadata.annotations["llmc/serving-config-sha256"]'
    ) in lines
    # Smaller batches lower one replica's planned capacity: the autoscaler's per-pod target follows.
    assert "HorizontalPodAutoscaler/translator configured: spec.metrics[0].pods.target.averageValue" in lines
    assert "13 serving objects: 3 configured, 10 unchanged" in lines
    assert lines[-1].startswith("==> Deployment/translator rolled out")


def test_a_dry_run_reports_what_would_change_and_changes_nothing(bundle, tmp_path, capsys):
    cluster = with_volume(bundle, FakeCluster())
    code, lines, err = deploy_to(bundle.root, cluster, capsys, dry_run=True)
    assert code == 0, err
    assert list(cluster.objects) == [("PersistentVolumeClaim", "translator-artifacts")]
    assert lines[0].endswith(": server-side dry run, nothing will be changed")
    assert "Deployment/translator would be created" in lines
    assert (
        lines[-1] == "dry run: 13 serving objects: 13 would be created, 0 unchanged; nothing was changed in the cluster"
    )

    deploy_to(bundle.root, cluster, capsys)
    before = copy.deepcopy(cluster.objects)
    cluster.calls.clear()
    code, lines, err = deploy_to(with_new_server_image(bundle, tmp_path), cluster, capsys, dry_run=True)
    assert code == 0, err
    assert cluster.objects == before
    assert all(c.startswith(("get ", "dry-run apply ")) for c in cluster.calls), cluster.calls
    # Each object is read once, for the comparison: no rollout is followed.
    assert cluster.calls.count("get Deployment/translator") == 1
    assert (
        "Deployment/translator would be configured: spec.template.spec.initContainers[0].image, "
        "spec.template.spec.containers[0].image"
    ) in lines
    assert lines[-1] == (
        "dry run: 13 serving objects: 1 would be configured, 12 unchanged; nothing was changed in the cluster"
    )


def test_a_refusal_midway_stops_the_deploy_before_the_server_rolls_out(bundle, capsys):
    cluster = with_volume(bundle, FakeCluster(refuse={"Service/translator": 403}))
    code, lines, err = deploy_to(bundle.root, cluster, capsys)
    assert code == 1
    assert applies(cluster) == SERVING[:3]  # the refused one was tried, nothing after it
    assert ("Deployment", "translator") not in cluster.objects
    assert lines[-1] == "2 serving objects: 2 created, 0 unchanged"
    assert err == (
        'error: the cluster refused to apply Service/translator: 403 Forbidden: services "translator" is '
        'forbidden: User "ci" cannot patch resource "services" in API group "" in the namespace "ml-translation"\n'
        "  = note: the objects before it were applied and stay; not applied: Service/translator, "
        "PodDisruptionBudget/translator, ServiceMonitor/translator, PrometheusRule/translator-slo, "
        "NetworkPolicy/translator-default-deny, NetworkPolicy/translator-dns, NetworkPolicy/translator-train, "
        "NetworkPolicy/translator-search-trials, NetworkPolicy/translator, Deployment/translator, "
        "HorizontalPodAutoscaler/translator\n"
    )
    # A dry run meets the same refusal (the server's dry run runs its authorization).
    cluster.calls.clear()
    code, _lines, err = deploy_to(bundle.root, cluster, capsys, dry_run=True)
    assert code == 1 and "nothing was changed; not applied: Service/translator" in err


def test_a_stuck_rollout_fails_with_the_deployments_own_message(bundle, capsys):
    cluster = with_volume(bundle, FakeCluster(rollout="stuck"))
    code, lines, err = deploy_to(bundle.root, cluster, capsys)
    assert code == 1
    assert lines[-1] == "    Deployment/translator: 1 of 2 new replicas updated"
    assert err == (
        'error: the rollout of Deployment/translator failed: ReplicaSet "translator-6c9d8f7b5" has timed out '
        "progressing.\n"
        "  = help: see why with `kubectl -n ml-translation describe deployment/translator`; roll back with "
        "`kubectl -n ml-translation rollout undo deployment/translator`\n"
    )


def test_a_rollout_nothing_reports_on_is_given_up_after_the_timeout(bundle, capsys):
    def clock_from_zero(step: float):
        ticks = iter(range(0, 100_000, int(step)))
        return lambda: next(ticks)

    cluster = with_volume(bundle, FakeCluster(rollout="unobserved"))
    code, lines, err = deploy_to(bundle.root, cluster, capsys, timeout=30, clock=clock_from_zero(10))
    assert code == 1
    assert lines[-1] == "    Deployment/translator: waiting for the controller to observe the new spec"
    assert err == (
        "error: the rollout of Deployment/translator made no progress for 30s (waiting for the controller to "
        "observe the new spec); it continues in the cluster: follow it with "
        "`kubectl -n ml-translation rollout status deployment/translator`\n"
    )
    # Without --timeout, the Deployment's progressDeadlineSeconds (the API server's default, 600).
    cluster = with_volume(bundle, FakeCluster(rollout="unobserved"))
    code, _lines, err = deploy_to(bundle.root, cluster, capsys, clock=clock_from_zero(60))
    assert code == 1 and "made no progress for 600s" in err


def test_ctrl_c_while_following_leaves_the_rollout_running_in_the_cluster(bundle, capsys):
    def interrupt(seconds):
        raise KeyboardInterrupt

    cluster = with_volume(bundle, FakeCluster())
    code, _lines, err = deploy_to(bundle.root, cluster, capsys, sleep=interrupt)
    assert code == 130
    assert err == (
        "interrupted; the rollout continues in the cluster: follow it with "
        "`kubectl -n ml-translation rollout status deployment/translator`\n"
    )
    assert ("Deployment", "translator") in cluster.objects


def test_after_llmc_run_a_deploy_finds_everything_in_place_and_follows_the_rollout_run_started(bundle, capsys):
    cluster = FakeCluster()
    run(bundle, cluster)  # `llmc run --target k8s`: applies the Deployment after evaluate, follows no rollout
    code, lines, err = deploy_to(bundle.root, cluster, capsys)
    assert code == 0, err
    assert "13 serving objects: 13 unchanged" in lines
    assert "Deployment/translator is unchanged, and an earlier rollout is still under way" in lines
    assert lines[-1] == "==> Deployment/translator rolled out: 2 of 2 replicas available, revision 1"


def test_nothing_is_applied_without_the_namespace_a_served_kind_or_the_trained_models_volume(bundle, capsys):
    cluster = with_volume(bundle, FakeCluster(namespaces=()))
    code, _lines, err = deploy_to(bundle.root, cluster, capsys)
    assert code == 2 and "namespace 'ml-translation' does not exist" in err and applies(cluster) == []

    cluster = with_volume(bundle, FakeCluster(served={"Deployment", "Service", "ConfigMap", "PersistentVolumeClaim"}))
    code, _lines, err = deploy_to(bundle.root, cluster, capsys)
    assert code == 2 and applies(cluster) == []
    assert "does not serve autoscaling/v2 HorizontalPodAutoscaler" in err

    cluster = FakeCluster()
    code, _lines, err = deploy_to(bundle.root, cluster, capsys)
    assert code == 2 and applies(cluster) == []
    assert err == (
        "error: PersistentVolumeClaim/translator-artifacts does not exist in namespace 'ml-translation': it holds "
        "the trained model the server copies at start; `llmc run SPEC --target k8s` makes it and trains the model "
        "onto it\n"
    )


def test_the_monitoring_kinds_are_skipped_with_a_warning_when_the_cluster_lacks_them(bundle, capsys):
    cluster = with_volume(bundle, FakeCluster(served=CORE_SERVING_KINDS))
    code, lines, err = deploy_to(bundle.root, cluster, capsys)
    assert code == 0, err
    assert "ServiceMonitor/translator" not in applies(cluster)
    assert any(
        line.startswith("warning: the cluster does not serve monitoring.coreos.com/v1 ServiceMonitor") for line in lines
    )
    assert "PrometheusRule/translator-slo skipped (the cluster does not serve its kind)" in lines
    assert "13 serving objects: 11 created, 0 unchanged, 2 skipped" in lines


def test_a_spec_without_a_serve_block_has_nothing_to_deploy_exit_2(tmp_path):
    spec = spec_variant(tmp_path, "translator", lambda t: re.sub(r"\nserve \{.*?\n\}", "", t, flags=re.S))
    code, _out, err = run_cli("deploy", str(spec), "-o", str(tmp_path / "bundle"))
    assert code == 2
    assert err == "error: the bundle has no serving Deployment to deploy; the spec needs a serve block\n"


def test_deploy_misuse_is_exit_2():
    spec = str(ROOT / "specs" / "translator.llm")
    for bad in ("0", "-5", "nan", "inf"):
        code, _out, err = run_cli("deploy", spec, "--timeout", bad)
        assert code == 2 and "--timeout must be a positive number of seconds" in err, (bad, err)
    code, _out, err = run_cli("deploy", spec, "--stage", "train")
    assert code == 2 and "unrecognized arguments: --stage train" in err
    code, _out, err = run_cli("deploy", spec, "--profile", "nosuch")
    assert code == 2 and "has no profile `nosuch`" in err


def test_what_changed_is_named_by_path_the_servers_bookkeeping_left_out():
    live: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "t",
            "labels": {"app.kubernetes.io/name": "t"},
            "resourceVersion": "7",
            "generation": 3,
            "uid": "u",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "managedFields": [{"manager": "llmc"}],
        },
        "spec": {"template": {"spec": {"containers": [{"name": "s", "image": "a:1", "args": ["--x"]}]}}},
        "status": {"replicas": 2},
    }
    applied = copy.deepcopy(live)
    applied["metadata"].update(resourceVersion="8", generation=4, managedFields=[{"manager": "other"}])
    applied["status"] = {"replicas": 3}
    assert changed_paths(comparable(live), comparable(applied)) == []
    applied["metadata"]["labels"]["app.kubernetes.io/version"] = "2"
    containers = applied["spec"]["template"]["spec"]["containers"]
    containers[0]["image"] = "a:2"
    containers[0]["args"].append("--y")  # a list that grew: one change, the list
    del containers[0]["name"]  # a field removed
    assert changed_paths(comparable(live), comparable(applied)) == [
        'metadata.labels["app.kubernetes.io/version"]',
        "spec.template.spec.containers[0].image",
        "spec.template.spec.containers[0].args",
        "spec.template.spec.containers[0].name",
    ]


def test_rollout_states_as_kubectl_rollout_status_decides():
    def deployment(generation=2, observed=2, replicas=3, total=3, updated=3, available=3, **extra):
        return {
            "metadata": {"generation": generation, "annotations": {"deployment.kubernetes.io/revision": "5"}},
            "spec": {"replicas": replicas, **extra},
            "status": {
                "observedGeneration": observed,
                "replicas": total,
                "updatedReplicas": updated,
                "availableReplicas": available,
            },
        }

    assert rollout_state(deployment()) == ("done", "3 of 3 replicas available, revision 5")
    assert rollout_state(deployment(observed=1, updated=0))[1] == "waiting for the controller to observe the new spec"
    assert rollout_state(deployment(total=4, updated=2, available=3)) == ("waiting", "2 of 3 new replicas updated")
    assert rollout_state(deployment(total=4)) == ("waiting", "1 old replica pending termination")
    assert rollout_state(deployment(available=2)) == ("waiting", "2 of 3 updated replicas available")
    assert rollout_state(deployment(paused=True, updated=1))[0] == "failed"
    stuck = deployment(updated=1)
    stuck["status"]["conditions"] = [
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "timed out"}
    ]
    assert rollout_state(stuck) == ("failed", "timed out")
