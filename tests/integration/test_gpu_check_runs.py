"""bin/gpu-check without a GPU: its dry run builds every configuration's spec through
the compiler and its model through the torch zoo, trains and serves the shrunken
model on the CPU and prints the table, from a plain copy of the checkout (no
installed package), with no Horovod, TensorFlow or ONNX imported; an out-of-memory
configuration is reported and the next one runs. The real run needs a GPU
(docs/estimates.md, "Checking on a GPU")."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT

pytest.importorskip("torch")

SCRIPT = ROOT / "bin" / "gpu-check"
NAMES = (
    "classifier-36m",
    "translator-61m",
    "decoder-110m",
    "decoder-336m-ckpt",
    "decoder-1b",
    "decoder-1b-ckpt",
)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(LLMC_NO_REEXEC="1", LLMC_THREADS="1", OMP_NUM_THREADS="1", NO_COLOR="1")
    return env


def _copy_checkout(dest: Path) -> Path:
    """bin/gpu-check, compiler/ and runtime/: what a GPU machine's copy needs."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("compiler", "runtime"):
        shutil.copytree(ROOT / folder, dest / folder, ignore=ignore)
    (dest / "bin").mkdir()
    shutil.copy2(SCRIPT, dest / "bin" / "gpu-check")
    return dest


def test_dry_run_from_a_plain_copy_reports_every_configuration(tmp_path):
    copy = _copy_checkout(tmp_path / "llmc")
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "bin/gpu-check", "--dry-run", "--simulate-oom", "decoder-1b"],
        cwd=copy,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    took = time.perf_counter() - start
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert f"llmc from {copy}" in out  # the copy's compiler and zoo, not the installed package
    assert "warning: imported" not in out
    rows = {line.split(" | ")[0].lstrip("| "): line for line in out.splitlines() if line.startswith("| ")}
    assert set(NAMES) <= set(rows), out
    for name in NAMES:
        cells = [c.strip() for c in rows[name].strip("|").split("|")]
        assert cells[2].endswith("MB") or cells[2].endswith("kB"), rows[name]  # the compiler's estimate
        if name == "decoder-1b":
            assert cells[8].startswith("out of memory"), rows[name]
        else:
            assert cells[6] != "-" and cells[7] != "-", rows[name]  # a request was timed
            assert "training step 1/1" in out
    # Progress, one configuration after another, and the out-of-memory one did not stop the run.
    assert out.index("[5/6] decoder-1b:") < out.index("out of memory") < out.index("[6/6] decoder-1b-ckpt:")
    assert took < 60, f"the dry run took {took:.0f} s"


def test_print_command_runs_the_copy_with_its_dependencies_on_the_path():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--print-command", "--remote-root", "/srv/llmc", "--only", "decoder-1b"],
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    line = proc.stdout.strip()
    assert line.startswith("cd /srv/llmc && PYTHONPATH=deps")
    assert line.endswith("python3 bin/gpu-check --only decoder-1b")
    assert "LLMC_NO_REEXEC=1" in line


def test_an_unknown_configuration_is_a_usage_error():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--only", "decoder-7b"], env=_env(), capture_output=True, text=True
    )
    assert proc.returncode == 2 and "unknown configuration decoder-7b" in proc.stderr


def _script_module():
    loader = importlib.machinery.SourceFileLoader("gpu_check", str(SCRIPT))
    spec = importlib.util.spec_from_loader("gpu_check", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up
    try:
        loader.exec_module(module)
    finally:
        del sys.modules["gpu_check"]
    return module


def test_torch_names_of_gpus_map_to_catalog_entries(monkeypatch):
    monkeypatch.setenv("LLMC_NO_REEXEC", "1")
    from llmc.compiler import catalog

    gpu_check = _script_module()
    gb = 1024**3
    cases = {
        ("NVIDIA H200", 141 * 10**9): "H200-141GB",
        ("NVIDIA H100 80GB HBM3", 80 * gb): "H100-80GB",
        ("NVIDIA A100-SXM4-40GB", 40 * gb): "A100-40GB",
        ("NVIDIA A100-SXM4-80GB", 80 * gb): "A100-80GB",
        ("NVIDIA A10", 24 * gb): "A10",
        ("Tesla T4", 15 * gb): "T4",
        ("Tesla V100-SXM2-32GB", 32 * gb): "V100-32GB",
        ("NVIDIA GeForce RTX 4090", 24 * gb): None,
    }
    for (name, memory), expected in cases.items():
        assert gpu_check.catalog_device(name, memory, catalog) == expected, name
