"""The installed environment holds what the project's generated artifacts rely on.

bin/setup builds Horovod from source (with PyTorch, TensorFlow and Gloo) and installs
promtool, tensorflow-serving-api, pyspark and nvidia-pytriton. These tests run the real
tools in subprocesses, so the test process itself never imports torch or TensorFlow.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

BIN = Path(sys.executable).parent
HOROVODRUN = BIN / "horovodrun"
QUIET_ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"}


def run(args, timeout=120, **kw):
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=QUIET_ENV,
        stdin=subprocess.DEVNULL,
        **kw,
    )


def run_python(code: str, timeout=120):
    return run([sys.executable, "-c", textwrap.dedent(code)], timeout=timeout)


def test_horovod_built_with_torch_tensorflow_and_gloo():
    # What `horovodrun --check-build` reports (bin/setup checks that output), at a
    # fraction of its cost: it imports TensorFlow and torch in ~10 subprocesses.
    assert HOROVODRUN.exists(), f"{HOROVODRUN} missing: run bin/setup"
    proc = run_python(
        """
        import torch
        import horovod.torch as hvd_torch
        import horovod.tensorflow as hvd_tf
        assert torch.version.cuda is None, f"torch {torch.__version__} is a CUDA build"
        for name, hvd in (("horovod.torch", hvd_torch), ("horovod.tensorflow", hvd_tf)):
            assert hvd.gloo_built(), f"{name}: not built with Gloo"
            assert not hvd.nccl_built(), f"{name}: a CPU build should have no NCCL"
        print("torch", torch.__version__)
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["torch", "2.13.0+cpu"], proc.stdout


ALLREDUCE_SCRIPT = """
import torch
import horovod.torch as hvd

hvd.init()
rank, size = hvd.rank(), hvd.size()
assert size == 2, size
# rank r contributes [r+1, 10*(r+1)]: the sum over 2 ranks is [3, 30].
total = hvd.allreduce(torch.tensor([rank + 1.0, 10.0 * (rank + 1)]), op=hvd.Sum, name="t")
assert torch.equal(total, torch.tensor([3.0, 30.0])), total
avg = hvd.allreduce(torch.tensor([float(rank)]), name="avg")  # default op: Average
assert torch.allclose(avg, torch.tensor([0.5])), avg
print(f"RANK{rank}-OK", flush=True)
"""


def test_horovodrun_gloo_two_ranks_allreduce_torch(tmp_path):
    script = tmp_path / "allreduce.py"
    script.write_text(ALLREDUCE_SCRIPT)
    proc = run(
        [HOROVODRUN, "--gloo", "-np", "2", "-H", "localhost:2", sys.executable, script], timeout=60, cwd=tmp_path
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "RANK0-OK" in out and "RANK1-OK" in out, out[-4000:]


def test_promtool_checks_a_rule_file(tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool not on PATH: run bin/setup (Debian package prometheus)"
    version = run([promtool, "--version"])
    assert version.returncode == 0 and "promtool" in version.stdout + version.stderr
    rules = tmp_path / "rules.yml"
    rules.write_text(
        textwrap.dedent(
            """\
            groups:
              - name: llmc
                rules:
                  - alert: HighLatency
                    expr: histogram_quantile(0.99, rate(latency_seconds_bucket[5m])) > 0.5
                    for: 5m
            """
        )
    )
    ok = run([promtool, "check", "rules", rules])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    rules.write_text("groups:\n  - name: bad\n    rules:\n      - alert: X\n        expr: rate(\n")
    bad = run([promtool, "check", "rules", rules])
    assert bad.returncode != 0, "promtool accepted an invalid expression"


def test_serving_packages_present():
    proc = run_python(
        """
        from google.protobuf import text_format
        from tensorflow_serving.config import model_server_config_pb2 as cfg
        conf = text_format.Parse(
            'model_config_list { config { name: "m" base_path: "/models/m" model_platform: "tensorflow" } }',
            cfg.ModelServerConfig(),
        )
        assert conf.model_config_list.config[0].name == "m"
        try:
            text_format.Parse('model_config_list { config { nmae: "m" } }', cfg.ModelServerConfig())
        except text_format.ParseError:
            pass
        else:
            raise AssertionError("misspelt field accepted")
        import pathlib, pyspark, pytriton
        server = pathlib.Path(pytriton.__file__).parent / "tritonserver" / "bin" / "tritonserver"
        assert server.is_file(), f"{server} missing"
        print("ok")
        """
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
