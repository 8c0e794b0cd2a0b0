"""The tfserving and triton targets: every generated text proto is parsed with the
serving platform's own message (google.protobuf.text_format rejects an unknown or
misspelt field), and its values are the spec's.

* models.config: tensorflow_serving.config.model_server_config_pb2.ModelServerConfig
  (the tensorflow-serving-api wheel).
* batching.config: tensorflow_serving's BatchingParameters. The wheel does not ship
  tensorflow_serving/servables/ (no session_bundle_config_pb2), so when that module
  is absent the message is rebuilt here from the upstream .proto (below, field for
  field) and parsed by the same protobuf text parser.
* config.pbtxt: Triton's ModelConfig, tritonclient.grpc.model_config_pb2 (the
  tritonclient wheel, generated from Triton's model_config.proto).

This file holds the tests of this part that run real processes (tools, frameworks,
servers); the fast checks of the same part are in tests/unit/test_target_serving.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

text_format = pytest.importorskip("google.protobuf.text_format")
model_server_config_pb2 = pytest.importorskip("tensorflow_serving.config.model_server_config_pb2")
model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")

from support.serving import built as built  # noqa: E402  (a fixture: pytest finds it imported here)
from support.serving import parse, relative_files, spec_path  # noqa: E402

from llmc.compiler.driver import check_spec  # noqa: E402

# --- Triton -----------------------------------------------------------------------


@pytest.mark.parametrize("profile", [None, "local"])
def test_triton_config_parses_with_tritons_model_config(built, profile):
    out = built("translator", profile)
    ir = check_spec(str(spec_path("translator")), profile).ir
    files = relative_files(out)
    assert "serve/model_repository/translator/config.pbtxt" in files
    assert not {"serve/models.config", "serve/batching.config"} & files
    # Only TensorRT generation has a file in 1/: the greedy loop around the engines.
    loop = {p for p in files if p.startswith("serve/model_repository/translator/1")}
    assert loop == (set() if profile == "local" else {"serve/model_repository/translator/1/model.py"})

    config = parse((out / "serve/model_repository/translator/config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.name == "translator"  # Triton requires the directory's name
    assert config.max_batch_size == ir.serve.batching.max_batch_size == 16
    max_len = ir.model.transformer.max_len  # the student keeps the teacher's max_len
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        ("input_ids", model_config_pb2.TYPE_INT64, [max_len])
    ]
    assert [(o.name, o.data_type, list(o.dims)) for o in config.output] == [
        ("output_ids", model_config_pb2.TYPE_INT64, [max_len])
    ]
    batching = config.dynamic_batching
    assert list(batching.preferred_batch_size) == [2, 4, 8, 16]
    assert batching.max_queue_delay_microseconds == round(ir.serve.batching.timeout * 1e6) == 5000
    (group,) = config.instance_group
    assert group.count == 1
    if profile == "local":  # cpu, onnxruntime
        assert config.platform == "onnxruntime_onnx"
        assert group.kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    else:  # T4, tensorrt: the greedy loop in the Python backend, the engines beside it
        assert config.backend == "python" and not config.platform
        assert group.kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
        for part in ("encoder", "decoder"):
            engine = parse(
                (out / f"serve/model_repository/translator_{part}/config.pbtxt").read_text(),
                model_config_pb2.ModelConfig(),
            )
            assert engine.platform == "tensorrt_plan" and engine.max_batch_size == 16
            assert not engine.HasField("dynamic_batching")  # the loop sends whole batches
            assert [g.kind for g in engine.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_GPU]
    assert config.version_policy.latest.num_versions == 1


# --- hostile strings --------------------------------------------------------------


# --- a real Triton server ---------------------------------------------------------

TRITON_MODEL_PY = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            ids = pb_utils.get_input_tensor_by_name(request, "input_ids").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("output_ids", ids[:, ::-1].astype(np.int64))]))
        return responses
"""


def _pytriton_server():
    import importlib.util
    import sys

    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    binary, stub = (
        root / "bin" / "tritonserver",
        root / "python_backend_stubs" / version / "triton_python_backend_stub",
    )
    libs = root.parent.parent / "nvidia_pytriton.libs"
    if not (binary.is_file() and stub.is_file() and (root / "backends" / "python").is_dir()):
        return None
    return root, binary, stub, libs


def test_a_real_triton_server_loads_the_cpu_config(built, tmp_path):
    """Triton 2.51 (the nvidia-pytriton wheel, Python backend only) loads the generated
    config with only `platform` swapped for the Python backend, and batches requests
    with the contract's tensors."""
    import json
    import os
    import shutil
    import socket
    import subprocess
    import sys
    import sysconfig
    import time
    import urllib.request

    found = _pytriton_server()
    if found is None:
        pytest.skip("the nvidia-pytriton wheel's tritonserver is not installed")
    root, binary, stub, libs = found
    out = built("translator", "local")
    text = (out / "serve/model_repository/translator/config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in text
    repo = tmp_path / "repo" / "translator"
    (repo / "1").mkdir(parents=True)
    (repo / "config.pbtxt").write_text(text.replace('platform: "onnxruntime_onnx"', 'backend: "python"'))
    (repo / "1" / "model.py").write_text(TRITON_MODEL_PY)
    backends = tmp_path / "backends"
    shutil.copytree(root / "backends" / "python", backends / "python")
    shutil.copy2(stub, backends / "python" / stub.name)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        LD_LIBRARY_PATH=os.pathsep.join(
            filter(None, [sysconfig.get_config_var("LIBDIR"), str(libs), os.environ.get("LD_LIBRARY_PATH")])
        ),
    )
    shm_prefix = f"llmc_test_{os.getpid()}_{port}_"  # the Python backend's shared memory, removed below
    log = open(tmp_path / "triton.log", "w")  # noqa: SIM115 (the server writes it until the finally below)
    proc = subprocess.Popen(
        [
            str(binary),
            f"--model-repository={tmp_path / 'repo'}",
            f"--backend-directory={backends}",
            "--http-address=127.0.0.1",
            f"--http-port={port}",
            "--allow-grpc=false",
            "--allow-metrics=false",
            "--exit-on-error=true",
            "--exit-timeout-secs=1",
            "--disable-auto-complete-config",
            f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}/v2"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/models/translator/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "triton.log").read_text()[-3000:]
            time.sleep(0.2)
        with urllib.request.urlopen(f"{base}/models/translator/config", timeout=5) as r:
            loaded = json.load(r)
        assert loaded["max_batch_size"] == 16
        assert loaded["dynamic_batching"]["preferred_batch_size"] == [2, 4, 8, 16]
        assert int(loaded["dynamic_batching"]["max_queue_delay_microseconds"]) == 5000
        assert loaded["instance_group"][0]["kind"] == "KIND_CPU"
        ids = list(range(64))
        body = {"inputs": [{"name": "input_ids", "shape": [2, 64], "datatype": "INT64", "data": ids + ids}]}
        request = urllib.request.Request(
            f"{base}/models/translator/infer", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            (output,) = json.load(r)["outputs"]
        assert output["name"] == "output_ids" and output["shape"] == [2, 64] and output["data"][:2] == [63, 62]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        for region in Path("/dev/shm").glob(shm_prefix + "*"):
            region.unlink(missing_ok=True)
