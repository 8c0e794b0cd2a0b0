"""The components of a bundle's Kubeflow pipeline (pipeline.py builds it from them).

Each is a lightweight Python component: kfp copies the function's source into
pipeline/pipeline.yaml and runs it in the spec's image with kfp's executor, which
hands it its inputs and its output artifacts' paths. So each function is one import
and one call into kfp_steps, whose code ships in the image with llmc.runtime: a change
to a step's logic changes the image, never the reviewed pipeline.yaml.

`stage_key` is not read: it is there so that Kubeflow's cache, which keys a task by
its component and inputs, reruns a stage when its bundle files change (the same
hashes the local runner keys a stage by).
"""

from kfp.dsl import Artifact, Input, Metrics, Model, Output


def train(bundle: str, data_root: str, launcher: str, stage_key: str, model: Output[Model], metrics: Output[Metrics]):
    from llmc.runtime import kfp_steps

    kfp_steps.train(bundle, data_root, launcher, model, metrics)


def compress(
    bundle: str,
    data_root: str,
    stage_key: str,
    trained: Input[Model],
    compressed: Output[Model],
    serving: Output[Artifact],
):
    from llmc.runtime import kfp_steps

    kfp_steps.compress(bundle, data_root, trained, compressed, serving)


def evaluate(
    bundle: str,
    data_root: str,
    stage_key: str,
    gated: Input[Model],
    baseline: Input[Model],
    metrics: Output[Metrics],
    verdict: Output[Artifact],
):
    from llmc.runtime import kfp_steps

    kfp_steps.evaluate(bundle, data_root, gated, baseline, metrics, verdict)


def search(bundle: str, data_root: str, stage_key: str, results: Output[Artifact]):
    from llmc.runtime import kfp_steps

    kfp_steps.search(bundle, data_root, results)


def deploy(bundle: str, apply: bool, serving: Input[Artifact], applied: Output[Artifact]):
    from llmc.runtime import kfp_steps

    kfp_steps.deploy(bundle, apply, serving, applied)
