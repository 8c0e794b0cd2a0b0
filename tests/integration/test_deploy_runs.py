"""`llmc deploy` as a process.

Without a cluster (always, here) it fails at once, exit 2, applying nothing and
recording nothing. No Kubernetes API server can run on the machines that test llmc:
what the deploy applies, the summary of what changed and the rollout it follows are
tested against an in-memory stand-in in tests/unit/test_deploy.py, the fast checks of
this part.
"""

from __future__ import annotations

import subprocess
import sys

from helpers import ROOT
from support.cluster import no_cluster_env


def test_without_a_cluster_llmc_deploy_fails_at_once_with_exit_2(tmp_path):
    env = no_cluster_env(tmp_path)
    for dry_run in ([], ["--dry-run"]):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "llmc.compiler.cli",
                "deploy",
                str(ROOT / "specs" / "translator.llm"),
                "-o",
                str(tmp_path / "bundle"),
                *dry_run,
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("error: no Kubernetes cluster configured: "), proc.stderr
        assert "Traceback" not in proc.stderr and proc.stdout == ""
        assert (tmp_path / "bundle" / "k8s" / "deployment.yaml").is_file()  # built, as `llmc run` builds
        assert not (tmp_path / "runs").exists()  # nothing ran, nothing to record
