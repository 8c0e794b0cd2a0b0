"""The pipeline target: pipeline/pipeline.py's constants and the pipeline.yaml that
kfp's compiler made of them at build time, read as data: the stages the spec has,
wired in order; each step where and as the same stage's k8s/ workload runs; the cache
keys of the local runner; the deploy gated on evaluate and never cached.

kfp's own loader, its compiler's round trip and kfp.local runs are in
tests/integration/test_pipeline_runs.py."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, BundleCache
from helpers import build_spec as build
from helpers import spec_variant as variant
from support.k8s import documents, pod_templates

from llmc.runtime.runner import folder_hashes, key_of

SPECS = [("translator", None), ("translator", "local"), ("classifier", None), ("classifier", "local")]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return BundleCache(tmp_path_factory)


def compiled(bundle: Path) -> tuple[dict, dict]:
    """(the pipeline spec, its Kubernetes platform spec)."""
    spec, platform = yaml.safe_load_all((bundle / "pipeline" / "pipeline.yaml").read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def constants(bundle: Path) -> dict:
    tree = ast.parse((bundle / "pipeline" / "pipeline.py").read_text())
    (assign,) = [n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "PIPELINE"]  # type: ignore[attr-defined]
    return ast.literal_eval(assign.value)


def tasks(spec: dict) -> dict:
    """Every task, the conditional ones too, by name."""
    out = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        out.update((component.get("dag") or {}).get("tasks") or {})
    return {name: task for name, task in out.items() if not name.startswith("condition")}


@pytest.mark.parametrize("name,profile", SPECS)
def test_the_pipeline_has_the_specs_stages_in_order(built, name, profile):
    bundle = built(name, profile)
    spec, _ = compiled(bundle)
    found = tasks(spec)
    assert set(found) == {"train", "compress", "evaluate", "deploy", "search"}
    after = {name: set(task.get("dependentTasks", [])) for name, task in found.items()}
    assert after == {
        "train": set(),
        "compress": {"train"},
        "evaluate": {"train", "compress"},
        "deploy": {"compress", "evaluate"},  # a model that fails its gates is never rolled out
        "search": set(),
    }
    # Artifacts pass from step to step: evaluate gates compress's model against train's.
    gated = found["evaluate"]["inputs"]["artifacts"]
    assert gated["gated"]["taskOutputArtifact"] == {"outputArtifactKey": "compressed", "producerTask": "compress"}
    assert gated["baseline"]["taskOutputArtifact"] == {"outputArtifactKey": "model", "producerTask": "train"}
    assert found["deploy"]["inputs"]["artifacts"]["serving"]["taskOutputArtifact"]["producerTask"] == "compress"
    # The search runs only when asked, and deploy never comes from the cache.
    (condition,) = [t for n, t in spec["root"]["dag"]["tasks"].items() if n.startswith("condition")]
    assert condition["triggerPolicy"]["condition"].endswith("['pipelinechannel--with_search'] == true")
    assert found["deploy"]["cachingOptions"] == {}
    assert all(found[s]["cachingOptions"] == {"enableCache": True} for s in ("train", "compress", "evaluate"))
    defaults = {k: v.get("defaultValue") for k, v in spec["root"]["inputDefinitions"]["parameters"].items()}
    assert defaults == {
        "bundle": "/opt/llmc/bundle",
        "data_root": "/opt/llmc/bundle",
        "launcher": "mpijob",
        "with_search": False,
        "apply": True,
    }


@pytest.mark.parametrize("name,profile", SPECS)
def test_each_step_runs_where_and_as_its_k8s_workload_does(built, name, profile):
    bundle = built(name, profile)
    spec, platform = compiled(bundle)
    pods = {}
    for _, doc in documents(bundle):
        for template in pod_templates(doc):
            pods[template["metadata"]["labels"]["app.kubernetes.io/component"], doc["kind"]] = template["spec"]
    image = constants(bundle)["image"]
    for stage in ("compress", "evaluate", "search"):
        executor = spec["deploymentSpec"]["executors"][f"exec-{stage}"]["container"]
        pod = pods[stage, "Job"]
        (container,) = pod["containers"]
        assert executor["image"] == container["image"] == image
        limits = container["resources"]["limits"]
        assert executor["resources"]["resourceCpuLimit"] == executor["resources"]["resourceCpuRequest"] == limits["cpu"]
        assert executor["resources"]["resourceMemoryLimit"] == limits["memory"]
        gpus = int(limits.get("nvidia.com/gpu", 0))
        assert int(executor["resources"].get("accelerator", {}).get("resourceCount", 0)) == gpus
        k8s = platform[f"exec-{stage}"]
        affinity = pod.get("affinity", {}).get("nodeAffinity")
        if affinity:  # the GPU products, as the Job's pod requires them
            (term,) = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            (wanted,) = term["matchExpressions"]
            (got,) = k8s["nodeAffinity"]
            assert got == {"matchExpressions": [wanted]}  # no weight: required, not preferred
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in k8s["tolerations"]
        else:
            assert "nodeAffinity" not in k8s and "tolerations" not in k8s
        assert k8s["securityContext"] == {"runAsUser": "10000", "runAsGroup": "10000", "runAsNonRoot": True}
        assert k8s["imagePullPolicy"] == container["imagePullPolicy"]
    # train launches the MPIJob (its workers hold the GPUs) and deploy calls the API server:
    # small pods, with the artifacts volume the MPIJob writes and the serving pods read.
    for stage in ("train", "deploy"):
        assert "accelerator" not in spec["deploymentSpec"]["executors"][f"exec-{stage}"]["container"]["resources"]
        (mount,) = platform[f"exec-{stage}"]["pvcMount"]
        assert (mount["constant"], mount["mountPath"]) == (f"{constants(bundle)['name']}-artifacts", "/artifacts")


def test_a_gpu_stage_selects_its_gpu(built):
    """The translator's evaluate runs on its serving T4: the step requires T4 nodes."""
    _, platform = compiled(built("translator"))
    (term,) = platform["exec-evaluate"]["nodeAffinity"]
    assert term == {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In", "values": ["Tesla-T4"]}]}


def test_cache_keys_are_the_local_runners_and_follow_the_scripts(built, tmp_path):
    """Each step's stage_key is the key of its bundle folder's files (and model.json), as
    the local runner computes it from the lock; a change to one stage's script changes
    that stage's key and no other."""
    bundle = built("translator", "local")
    lock = json.loads((bundle / "llmc.lock.json").read_text())
    spec, _ = compiled(bundle)
    found = tasks(spec)

    def keys(spec: dict) -> dict:
        return {
            s: t["inputs"]["parameters"]["stage_key"]["runtimeValue"]["constant"]
            for s, t in tasks(spec).items()
            if "stage_key" in t["inputs"]["parameters"]
        }

    before = keys(spec)
    assert before == {s: key_of(folder_hashes(lock["artifacts"], s)) for s in found if s != "deploy"}
    gate = "evaluate.metric.bleu.min         = 40.0"
    changed = variant(tmp_path, "translator", lambda t: t.replace(gate, gate.replace("40.0", "41.0")))
    after = keys(compiled(build(changed, tmp_path / "b", "local"))[0])
    assert {s for s in before if before[s] != after[s]} == {"evaluate"}


UNTRAINED = """
model translator {
  task      = "translation"
  framework = "torch"
  transformer {
    layers  = 2
    d_model = 64
    heads   = 2
    vocab   = 260
    max_len = 32
  }
  data {
    train = "train.tsv"
    valid = "valid.tsv"
    test  = "test.tsv"
  }
}
compress {
  quantize {
    precision = "int8"
    method    = "dynamic"
  }
  engine = "onnxruntime"
}
"""


def test_no_pipeline_without_training(tmp_path):
    """Every stage of a pipeline starts from the trained model: no train block, no pipeline."""
    spec = tmp_path / "untrained.llm"
    spec.write_text(UNTRAINED)
    bundle = build(spec, tmp_path / "bundle")
    assert (bundle / "compress").is_dir() and not (bundle / "pipeline").exists()


def test_the_script_is_constants_and_a_short_main(built):
    source = (built("classifier") / "pipeline" / "pipeline.py").read_text()
    tree = ast.parse(source)
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    assert [f.name for f in functions] == ["main"] and len(functions[0].body) <= 3
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported == {"llmc.runtime.pipeline", "llmc.runtime.scripts"}
    assert (ROOT / "runtime" / "kfp_components.py").is_file()
