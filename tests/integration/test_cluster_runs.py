"""`llmc run --target k8s`.

Without a cluster (always, here) it fails at once, exit 2, touching nothing. No
Kubernetes API server can run on the machines that test llmc, so the
orchestration (what is applied when, resuming the suspended stages in order,
following them, logs on failure, rollout only after evaluate) runs against
`FakeCluster`, an in-memory stand-in for the six calls runtime/cluster.py makes,
with the real bundles' manifests and status objects shaped as the API returns them.
The manifests themselves are checked against the real schemas in test_target_k8s.py.

This file holds the tests of this part that run real processes (tools, frameworks,
servers); the fast checks of the same part are in tests/unit/test_cluster.py.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import ROOT
from support.cluster import Console, FakeCluster, no_cluster_env, run
from support.cluster import bundle as bundle  # a fixture: pytest finds it imported here

from llmc.runtime.cluster import (
    ClusterError,
    submit,
)


def test_without_a_cluster_llmc_run_fails_at_once_with_exit_2(tmp_path):
    env = no_cluster_env(tmp_path)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "llmc.compiler.cli",
            "run",
            str(ROOT / "specs" / "translator.llm"),
            "--target",
            "k8s",
            "-o",
            str(tmp_path / "bundle"),
            "--runs-dir",
            str(tmp_path / "runs"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "error: no Kubernetes cluster configured" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()  # nothing ran, nothing to record


def test_an_earlier_workload_that_will_not_go_stops_the_run(bundle):
    class Stuck(FakeCluster):
        def delete(self, doc):  # a finalizer keeps it
            self.calls.append(f"delete {doc['kind']}/{doc['metadata']['name']}")

    cluster = Stuck()
    run(bundle, cluster)
    clock = iter(range(0, 10_000, 60))
    with pytest.raises(ClusterError, match="MPIJob/translator-train still exists 300s after it was deleted"):
        submit(
            bundle, Console(), api=cluster, force=True, poll_seconds=0, sleep=lambda s: None, clock=lambda: next(clock)
        )
