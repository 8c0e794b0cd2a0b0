"""The horovod target: model.json, train/train.py and train/launch.sh as generated.

Fast checks of what the templates fill in (the e2e tests run the scripts for real):
model.json holds the IR with bundle-relative data paths and derived defaults written
out; train.py carries the layout decisions as literals; launch.sh builds the
horovodrun command from the spec's cluster and the environment's hosts.

This file holds the tests of this part that run real processes (tools, frameworks,
servers); the fast checks of the same part are in tests/unit/test_horovod_target.py.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from support.horovod import bundle, literals


def launch(text: str, tmp_path, **env) -> subprocess.CompletedProcess:
    script = tmp_path / "launch.sh"
    script.write_text(text)
    script.chmod(0o755)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HOROVOD_", "LLMC_"))}
    return subprocess.run(
        [str(script), "--max-steps", "5"],
        capture_output=True,
        text=True,
        env={**clean, "HOROVODRUN": "echo", "PYTHON": "py", **env},
    )


def test_launch_sh_for_a_two_host_gpu_cluster(tmp_path):
    text = bundle("translator")["train/launch.sh"]
    proc = launch(text, tmp_path)
    assert proc.returncode == 2 and "LLMC_HOSTS" in proc.stderr  # two hosts, none named
    proc = launch(text, tmp_path, LLMC_HOSTS="node-a node-b")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [
        "-np",
        "8",
        "-H",
        "node-a:4,node-b:4",
        "py",
        str(tmp_path / "train.py"),
        "--max-steps",
        "5",
    ]  # no --gloo on GPUs
    assert launch(text, tmp_path, LLMC_HOSTS="node-a").returncode == 2
    proc = launch(text, tmp_path, HOROVOD_HOSTFILE="/etc/mpi/hostfile")
    assert "--hostfile /etc/mpi/hostfile" in proc.stdout


def test_launch_sh_locally_on_cpu(tmp_path):
    text = bundle("classifier", "local")["train/launch.sh"]
    proc = launch(text, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[:6] == ["-np", "2", "-H", "localhost:2", "--gloo", "py"]
    proc = launch(text, tmp_path, HOROVOD_NP="1")
    assert proc.stdout.split()[:4] == ["-np", "1", "-H", "localhost:1"]
    proc = launch(text, tmp_path, HOROVOD_HOSTS="h1:2,h2:2", HOROVOD_NP="4")
    assert proc.stdout.split()[:4] == ["-np", "4", "-H", "h1:2,h2:2"]


@pytest.mark.parametrize("name", ['model"; rm -rf / #', "a\nb", "{{ x }}", "it's"])
def test_values_stay_data(name):
    """A hostile model name is a string literal in Python and one word in the shell."""
    from llmc.compiler.render import render
    from llmc.compiler.targets.horovod import LaunchScript, TrainScript

    py = render("horovod/train.py.j2", TrainScript("torch", "llmc.runtime.training.torch_loop", name, "mlp", 1, False))
    assert literals(py)["MODEL_NAME"] == name
    sh = render("horovod/launch.sh.j2", LaunchScript(name, 1, 2, 2, True, name))
    assert subprocess.run(["bash", "-n"], input=sh, text=True).returncode == 0
    # The shell reads back exactly the name, as one word.
    assignment = sh.split("\nMODEL=", 1)[1].split("\nLAYOUT=", 1)[0]
    echoed = subprocess.run(["bash", "-c", f'MODEL={assignment}\nprintf %s "$MODEL"'], capture_output=True, text=True)
    assert echoed.stdout == name
