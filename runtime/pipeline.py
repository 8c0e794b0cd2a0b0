"""A bundle's Kubeflow pipeline: built from pipeline/pipeline.py's settings, compiled
by kfp's compiler to pipeline/pipeline.yaml, run by kfp.local on this machine or
submitted to a Kubeflow Pipelines endpoint.

The generated pipeline/pipeline.py holds only what the spec decides (`PIPELINE`: the
image, each step's resources and nodes, which stages the spec has) and calls `main`.
The graph, one task per stage (kfp_components.py, each running the bundle's scripts
through kfp_steps.py):

    train -> compress -> evaluate -> deploy        search (with_search), beside them

Pipeline parameters, with their cluster defaults: `bundle` and `data_root` (the bundle
inside the image), `launcher` ("mpijob": training is the bundle's MPIJob; "local":
Horovod in the step's own process), `with_search` (false), `apply` (true: deploy
applies the serving objects; false lists them). Each cached task takes the key of
its bundle folder (runner.folder_hashes over the lock's hashes, as the local runner
keys its stages), so a changed script reruns its stage and the stages after it;
deploy is never cached.

`llmc build` compiles pipeline.yaml through `serve_compiles` (a process of this
module that the compiler starts once and feeds every pipeline it builds: kfp is
imported once, and never by the compiler itself).
"""

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .runner import folder_hashes, key_of

CACHED_STAGES = ("train", "compress", "evaluate", "search")


def cache_keys(artifacts: dict[str, str]) -> dict[str, str]:
    """Each cached step's `stage_key` input from the lock's artifact hashes: its folder's
    key without upstream or data (Kubeflow chains the steps through their artifacts), not
    cluster.stage_keys' chained key of a workload."""
    return {stage: key_of(folder_hashes(artifacts, stage)) for stage in CACHED_STAGES}


def build(settings: dict[str, Any], keys: dict[str, str]):
    """The kfp pipeline (a GraphComponent) of one bundle."""
    from kfp import dsl

    from . import kfp_components

    stages = settings["stages"]
    image = settings["image"]

    def op(name: str):
        return dsl.component(getattr(kfp_components, name), base_image=image, install_kfp_package=False)

    def configured(task, stage: str):
        return _configure(task, settings, stages[stage])

    @dsl.pipeline(name=settings["name"], description=settings["description"])
    def pipeline(
        bundle: str = settings["bundle_dir"],
        data_root: str = settings["bundle_dir"],
        launcher: str = "mpijob",
        with_search: bool = False,
        apply: bool = True,
    ):
        trained = gated = serving = verdict = None
        if "train" in stages:
            task = op("train")(bundle=bundle, data_root=data_root, launcher=launcher, stage_key=keys["train"])
            trained = gated = configured(task, "train").outputs["model"]
        if "compress" in stages:
            task = op("compress")(bundle=bundle, data_root=data_root, stage_key=keys["compress"], trained=trained)
            configured(task, "compress")
            gated, serving = task.outputs["compressed"], task.outputs["serving"]
        if "evaluate" in stages:
            verdict = op("evaluate")(
                bundle=bundle, data_root=data_root, stage_key=keys["evaluate"], gated=gated, baseline=trained
            )
            configured(verdict, "evaluate")
        if "deploy" in stages:
            task = op("deploy")(bundle=bundle, apply=apply, serving=serving)
            configured(task, "deploy").set_caching_options(False)
            if verdict is not None:
                task.after(verdict)  # a model that fails its gates is never rolled out
        if "search" in stages:
            with dsl.If(with_search == True, name="with-search"):  # noqa: E712 (a pipeline expression)
                task = op("search")(bundle=bundle, data_root=data_root, stage_key=keys["search"])
                configured(task, "search")

    return pipeline


def _configure(task, settings: dict[str, Any], stage: dict[str, Any]):
    """A task's name, resources, nodes, user, environment and volume (kfp-kubernetes)."""
    from kfp import kubernetes

    resources = stage["resources"]
    task.set_display_name(stage["display_name"])
    task.set_cpu_request(resources["cpu"]).set_cpu_limit(resources["cpu"])
    task.set_memory_request(resources["memory"]).set_memory_limit(resources["memory"])
    if resources["gpus"]:
        task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(resources["gpus"])
    for key, value in settings["env"]:
        task.set_env_variable(key, value)
    for secret, keys in settings["secret_env"].items():
        kubernetes.use_secret_as_env(task, secret_name=secret, secret_key_to_env=keys)
    uid = settings["uid"]
    kubernetes.set_security_context(task, run_as_user=uid, run_as_group=uid, run_as_non_root=True)
    kubernetes.set_image_pull_policy(task, settings["pull_policy"])
    placement = stage["placement"]
    if placement["node_selector"]:
        for key, value in placement["node_selector"]:
            kubernetes.add_node_selector(task, label_key=key, label_value=value)
    if placement["gpu_products"]:
        match = [{"key": "nvidia.com/gpu.product", "operator": "In", "values": placement["gpu_products"]}]
        kubernetes.add_node_affinity(task, match_expressions=match)
    if placement["tolerate_gpu"]:
        kubernetes.add_toleration(task, key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
    if stage["artifacts_volume"]:
        kubernetes.mount_pvc(task, pvc_name=settings["artifacts_claim"], mount_path=settings["artifacts_dir"])
    return task


def compile_text(settings: dict[str, Any], keys: dict[str, str]) -> str:
    """pipeline.yaml's text, as kfp's compiler writes it."""
    from kfp import compiler

    with tempfile.TemporaryDirectory(prefix="llmc-pipeline-") as tmp:
        path = os.path.join(tmp, "pipeline.yaml")
        compiler.Compiler().compile(build(settings, keys), path)
        return Path(path).read_text(encoding="utf-8")


def serve_compiles(stdin=None, stdout=None) -> int:
    """Compile the pipelines the compiler sends, one JSON request per line
    ({"source": pipeline.py's text, "artifacts": the lock's hashes}), answering each
    with one JSON line: {"yaml": text}, {"error": message} (a bug) or {"missing": why}
    (kfp is not installed)."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    try:
        # Imported now, while the compiler checks and renders (without kfp, every request
        # is answered "missing").
        import kfp.compiler
        import kfp.kubernetes  # noqa: F401

        from . import kfp_components  # noqa: F401

        missing = None
    except ImportError as exc:
        missing = f"kfp is not installed ({exc}): pip install 'llmc[runtime]'"
    for line in stdin:
        if missing:
            stdout.write(json.dumps({"missing": missing}) + "\n")
            stdout.flush()
            continue
        try:
            request = json.loads(line)
            settings = settings_of(request["source"])
            answer = {"yaml": compile_text(settings, cache_keys(request["artifacts"]))}
        except Exception as exc:  # any failure is the compiler's to report, with its message
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        stdout.write(json.dumps(answer) + "\n")
        stdout.flush()
    return 0


def settings_of(source: str) -> dict[str, Any]:
    """PIPELINE from pipeline/pipeline.py's text (only its constants run: main() is not called)."""
    namespace: dict[str, Any] = {"__name__": "llmc_pipeline"}
    exec(compile(source, "pipeline/pipeline.py", "exec"), namespace)
    return namespace["PIPELINE"]


# --- the generated script's command line ------------------------------------------------------


def arguments(description: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--compile",
        metavar="FILE",
        nargs="?",
        const="",
        help="write the pipeline's YAML (default: pipeline/pipeline.yaml)",
    )
    what.add_argument("--local", action="store_true", help="run pipeline/pipeline.yaml on this machine with kfp.local")
    p.add_argument(
        "--data-root",
        default=None,
        help="--local: relative data paths are relative to this folder (default: the working directory)",
    )
    p.add_argument(
        "--work",
        default=None,
        help="--local: kfp.local's pipeline root (default: runs/kfp under the working directory)",
    )
    p.add_argument("--search", action="store_true", help="--local: run the search stage too")
    return p


def main(description: str | None, argv: Sequence[str] | None, settings: dict[str, Any], script: str) -> int:
    args = arguments(description).parse_args(argv)
    bundle = Path(script).resolve().parent.parent
    lock = json.loads((bundle / "llmc.lock.json").read_text(encoding="utf-8"))
    compiled = bundle / "pipeline" / "pipeline.yaml"
    if args.compile is not None:
        out = Path(args.compile) if args.compile else compiled
        text = compile_text(settings, cache_keys(lock["artifacts"]))
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
        print(f"wrote {out}")
        return 0
    return run_local(compiled, bundle, Path(args.data_root or "."), Path(args.work or "runs/kfp"), args.search)


def run_local(compiled: Path, bundle: Path, data_root: Path, work: Path, with_search: bool) -> int:
    """pipeline.yaml as kfp's loader reads it, run by kfp.local's SubprocessRunner in this
    Python (the runtime is installed here): training on this machine, deploy listing
    what it would apply. Exit 0 when every task succeeded, 1 when one failed."""
    from kfp import components, local

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(work.resolve()))
    pipeline = components.load_component_from_file(str(compiled))
    try:
        pipeline(
            bundle=str(bundle),
            data_root=str(data_root.resolve()),
            launcher="local",
            with_search=with_search,
            apply=False,
        )
    except RuntimeError as exc:  # kfp.local's word for a failed task
        print(f"pipeline failed: {exc}", file=sys.stderr)
        return 1
    return 0


# --- llmc run --target kfp -----------------------------------------------------------------------

ENDPOINT_ENV = "KF_PIPELINES_ENDPOINT"  # kfp.Client's own variable for the endpoint


class SubmitError(Exception):
    """The pipeline could not be submitted (exit 2): the message says why."""


def submit(bundle_dir: str, endpoint: str, *, with_search: bool, run_name: str, experiment: str) -> str:
    """Submit the bundle's compiled pipeline to a Kubeflow Pipelines endpoint as one
    run with the cluster defaults; returns the run's URL in the Kubeflow UI."""
    compiled = Path(bundle_dir) / "pipeline" / "pipeline.yaml"
    if not compiled.is_file():
        raise SubmitError(f"{compiled} does not exist: install kfp (pip install 'llmc[runtime]') and rebuild")
    try:
        import kfp
    except ImportError as exc:
        raise SubmitError(f"the kfp client is not installed ({exc}): pip install 'llmc[runtime]'") from None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP v2": llmc's pipeline is v2
        try:
            client = kfp.Client(host=endpoint)
            run = client.create_run_from_pipeline_package(
                str(compiled),
                arguments={"with_search": with_search},
                run_name=run_name,
                experiment_name=experiment,
            )
        except Exception as exc:  # the endpoint refused, or is not there: its words, and no traceback
            raise SubmitError(f"Kubeflow Pipelines at {endpoint} did not take the run: {exc}") from None
    return f"{endpoint.rstrip('/')}/#/runs/details/{run.run_id}"


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve-compiles"]:
        sys.exit(serve_compiles())
    sys.exit(f"usage: python -m llmc.runtime.pipeline --serve-compiles (run by llmc build); got {sys.argv[1:]}")
