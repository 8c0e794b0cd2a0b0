"""The sizes plan.py derives are the ones the bundle writes and the checks bound.

Every derived default and sizing number is computed once, in plan.derive_facts; the
targets only format it. These tests read the built manifests and configs back and
compare them with the facts, so a target that derived a number again (and drifted)
fails here.
"""

from __future__ import annotations

import math

import pytest
import yaml
from helpers import ROOT

from llmc.compiler import catalog, plan
from llmc.compiler.bundle import build_files
from llmc.compiler.driver import check_spec
from llmc.compiler.targets.k8s_common import cpu_quantity, memory_quantity


def _checked(spec: str, profile: str | None = None):
    result = check_spec(str(ROOT / "specs" / f"{spec}.llm"), profile=profile)
    assert result.ok, result.diagnostics
    assert result.facts is not None
    return result


def _manifests(files: dict[str, str]) -> dict[str, dict]:
    return {
        path: next(yaml.safe_load_all(text))
        for path, text in files.items()
        if path.startswith("k8s/") and path.endswith(".yaml")
    }


@pytest.mark.parametrize("spec", ["translator", "classifier"])
def test_the_manifests_hold_the_planned_sizes(spec):
    result = _checked(spec)
    facts = result.facts
    manifests = _manifests(build_files(result).files)
    hpa = manifests["k8s/hpa.yaml"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (facts.replicas.min, facts.replicas.max)
    server = next(
        c for c in manifests["k8s/deployment.yaml"]["spec"]["template"]["spec"]["containers"] if c["name"] == "server"
    )
    assert server["resources"]["requests"]["cpu"] == cpu_quantity(facts.serving_resources.cpu_cores)
    assert server["resources"]["requests"]["memory"] == memory_quantity(facts.serving_resources.memory_bytes)
    assert manifests["k8s/pvc.yaml"]["spec"]["resources"]["requests"]["storage"] == memory_quantity(facts.storage_bytes)
    worker = manifests["k8s/mpijob.yaml"]["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
    train = facts.stage_pods["train"]
    assert worker["resources"]["limits"]["memory"] == memory_quantity(train.memory_bytes)
    assert worker["resources"]["limits"]["cpu"] == cpu_quantity(train.cores)
    assert worker["resources"]["limits"].get("nvidia.com/gpu", 0) == train.gpus


def test_each_stage_pod_runs_where_the_plan_says():
    ir = _checked("translator").ir
    devices = plan.stage_devices(ir)
    # TensorRT plans run only on the GPU they were built on: compress builds on the serving device.
    assert devices["compress"] == (ir.serve.device, 1)
    assert devices["evaluate"] == (ir.serve.device, 1)
    assert devices["train"] == devices["search"] == (ir.train.cluster.device, ir.train.cluster.slots_per_host)


def test_the_compress_stage_has_the_spec_steps_or_only_readies_a_served_model():
    ir = _checked("translator").ir
    assert plan.compress_steps(ir) == ("distill", "prune", "export", "quantize", "build_engine")
    # Served without a compress block: export and build_engine alone (something must fill
    # serve/), with onnxruntime, on the training device (no TensorRT plan to pin to a GPU).
    served = ir.model_copy(update={"compress": None})
    assert plan.compress_steps(served) == ("export", "build_engine")
    assert plan.compress_engine(served) == "onnxruntime"
    assert plan.stage_devices(served)["compress"] == (ir.train.cluster.device, 1)
    # Neither compressed nor served: no compress stage at all.
    bare = served.model_copy(update={"serve": None})
    assert plan.compress_steps(bare) == () and "compress" not in plan.stage_devices(bare)
    assert plan.compress_steps(ir.model_copy(update={"serve": None}))[-1] == "build_engine"


def test_tf_trt_batch_sizes_are_planned_and_written():
    result = _checked("classifier")  # tf-serving, engine = "tensorrt", max_batch_size = 64
    assert result.facts.tf_trt_batch_sizes == (1, 2, 4, 8, 16, 32, 64)
    config = build_files(result).files["serve/batching.config"]
    written = tuple(int(line.split(":")[1]) for line in config.splitlines() if line.startswith("allowed_batch_sizes"))
    assert written == result.facts.tf_trt_batch_sizes
    translator = _checked("translator")  # triton: no TF-TRT
    assert translator.facts.tf_trt_batch_sizes == ()


def test_the_students_d_ff_defaults_to_four_times_its_d_model():
    facts = _checked("translator").facts  # the student sets d_model = 256 and no d_ff
    assert facts.student is not None
    assert (facts.student.d_model, facts.student.d_ff) == (256, 1024)
    local = _checked("translator", "local").facts  # the local profile sets d_ff = 128
    assert (local.student.d_model, local.student.d_ff) == (64, 128)


@pytest.mark.parametrize("availability, floor", [(0.999, 2), (0.9999, 2), (0.99899, 1), (0.99, 1)])
def test_high_availability_needs_two_replicas(availability, floor):
    assert plan.min_replicas_for(availability) == floor


def test_bounded_turns_overflow_into_infinity():
    assert plan.bounded(lambda: 7) == 7
    assert plan.bounded(lambda: math.ceil(math.inf)) == math.inf
    assert plan.bounded(lambda: float("nan")) == math.inf


def test_one_spelling_of_a_gpu():
    assert not catalog.is_gpu("cpu")
    assert all(catalog.is_gpu(name) for name in catalog.names() if name != "cpu")
