"""The horovod target: model.json, train/train.py and train/launch.sh as generated.

Fast checks of what the templates fill in (the e2e tests run the scripts for real):
model.json holds the IR with bundle-relative data paths and derived defaults written
out; train.py carries the layout decisions as literals; launch.sh builds the
horovodrun command from the spec's cluster and the environment's hosts.

The tests of this part that run real processes (tools, frameworks, servers) are in
tests/integration/test_horovod_target_runs.py.
"""

from __future__ import annotations

import ast
import json

import pytest
from helpers import ROOT
from support.horovod import bundle, literals


def test_model_json_is_the_ir_with_spec_relative_paths():
    doc = json.loads(bundle("translator", "local")["model.json"])
    assert set(doc) == {"framework", "parallel", "model", "train"}
    assert doc["framework"] == "torch" and doc["parallel"] == {"data": 2, "tensor": 1, "pipeline": 1}
    data = doc["model"]["data"]
    # As the IR holds it: relative to the spec's folder, whatever the output directory.
    assert data["train"] == "../examples/data/dates/train.tsv"
    assert (ROOT / "specs" / data["train"]).resolve() == ROOT / "examples/data/dates/train.tsv"
    assert doc["model"]["transformer"]["d_ff"] == 256 and doc["model"]["transformer"]["kind"] == "encoder-decoder"
    assert doc["train"]["micro_batch"] == 32 and doc["train"]["checkpoint"]["every"] == 1800.0
    full = json.loads(bundle("translator")["model.json"])
    assert full["model"]["data"]["train"] == "s3://llmc-data/en-de/train.tsv"  # URIs pass through


def test_train_scripts_carry_the_layout_decisions():
    torch_script = bundle("translator")["train/train.py"]
    values = literals(torch_script)
    assert values["TENSOR_PARALLEL"] == 2 and values["GPU_CLUSTER"] is True
    assert values["ARCHITECTURE"] == "encoder-decoder" and values["MODEL_NAME"] == "translator"
    assert "llmc.runtime.training.torch_loop import train" in torch_script
    local = bundle("translator", "local")["train/train.py"]
    assert literals(local)["GPU_CLUSTER"] is False and literals(local)["TENSOR_PARALLEL"] == 1
    tf_script = bundle("classifier", "local")["train/train.py"]
    assert literals(tf_script)["ARCHITECTURE"] == "mlp"
    assert "llmc.runtime.training.tf_loop import train" in tf_script and "torch" not in tf_script.split('"""', 2)[2]


@pytest.mark.parametrize("spec, profile", [("translator", None), ("translator", "local"), ("classifier", "local")])
def test_train_scripts_are_thin(spec, profile):
    """A generated train.py is a docstring, the build's constants and a short main that
    calls the runtime: no class, no other function, under 80 lines."""
    source = bundle(spec, profile)["train/train.py"]
    assert len(source.splitlines()) < 80
    tree = ast.parse(source)
    defined = [
        node
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))
    ]
    assert [node.name for node in defined if not isinstance(node, ast.Lambda)] == ["main"] and len(defined) == 1
    (main,) = defined
    assert main.end_lineno is not None and main.end_lineno - main.lineno < 8
    # The constants a spec change shows in `llmc plan`, and nothing computed.
    assert set(literals(source)) == {"MODEL_NAME", "ARCHITECTURE", "TENSOR_PARALLEL", "GPU_CLUSTER"}
    compile(source, "train.py", "exec")
