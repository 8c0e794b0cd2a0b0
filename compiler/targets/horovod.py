"""horovod target: model.json, train/train.py and train/launch.sh (docs/bundle.md).

Division of labour:

* model.json carries every setting a run may override (`--set`, the search's trials):
  the spec's `model` and `train` blocks, `framework` and `parallel`. The training
  script reads it at run time, so one reviewed file holds the numbers.
* train.py hands the build's decisions to the runtime's training loop for the
  spec's framework (llmc.runtime.training: torch_loop or tf_loop). The template
  fills in only what a run cannot change without relaunching: the tensor
  parallelism (it decides the process sets), whether the cluster has GPUs, and the
  model's name for logs. Everything else is read from model.json.
* No script names its spec file, profile or digest: they read them from
  llmc.lock.json at run time. Renaming a spec, or changing a number, changes
  model.json and the lock file, never the scripts' text (which is also what lets
  a build verify an unchanged script from its memo).
* launch.sh runs `horovodrun` for the spec's cluster: -np hosts x slots, -H from the
  hosts the environment names, `--gloo` on CPU.

All decisions are made here and handed to the templates as small typed tuples; the
templates only loop and fill in, every value through an escaping filter.
"""

from __future__ import annotations

from typing import NamedTuple

from .. import catalog
from . import Artifact, BuildContext


class ModelJson(NamedTuple):
    document: dict  # written with |json_block


# The runtime module with each framework's training loop.
TRAINING_LOOPS = {"torch": "llmc.runtime.training.torch_loop", "tensorflow": "llmc.runtime.training.tf_loop"}


class TrainScript(NamedTuple):
    framework: str  # "torch" | "tensorflow": which loop, and the docstring that explains it
    loop_module: str  # the runtime module holding that loop
    model_name: str
    architecture: str  # "encoder-decoder" | "encoder" | "decoder" | "mlp": what the final metrics report
    tensor: int  # tensor-parallel group size: decides the process sets (1 for an MLP)
    gpu: bool  # the spec's cluster device is a GPU: use CUDA and the spec's precision when present


class LaunchScript(NamedTuple):
    model_name: str
    hosts: int
    slots_per_host: int
    processes: int
    gloo: bool  # --gloo: CPU clusters have no MPI/NCCL path worth using
    layout: str  # the layout as `llmc check` prints it, for the script's header


def artifacts(ctx: BuildContext) -> list[Artifact]:
    ir = ctx.ir
    if ir.train is None:
        return []
    return [
        Artifact("model.json", "horovod/model.json.j2", ModelJson(model_document(ctx))),
        Artifact("train/train.py", "horovod/train.py.j2", train_script(ctx)),
        Artifact("train/launch.sh", "horovod/launch.sh.j2", launch_script(ctx), executable=True),
    ]


# --- model.json --------------------------------------------------------------------------


def model_document(ctx: BuildContext) -> dict:
    """model.json: the IR's model and train blocks, with data paths made relative to the
    bundle and the defaults the compiler derived written out."""
    ir = ctx.ir
    assert ir.train is not None  # artifacts() builds it only with a train block
    model = ir.model.model_dump(mode="json")
    train = ir.train.model_dump(mode="json")
    # Data paths stay as the IR holds them (relative to the spec's folder); scripts
    # resolve them against --data-root (docs/bundle.md).
    return {"framework": ir.model.framework, "parallel": train["parallel"], "model": model, "train": train}


# --- train.py and launch.sh ------------------------------------------------------------------


def train_script(ctx: BuildContext) -> TrainScript:
    ir = ctx.ir
    t = ir.train
    assert t is not None  # artifacts() builds it only with a train block
    arch = ir.model.transformer
    kind = arch.kind if arch is not None else "mlp"
    assert kind is not None  # schema.derive_defaults fills a Transformer's kind from the task
    framework = ir.model.framework
    return TrainScript(
        framework=framework,
        loop_module=TRAINING_LOOPS[framework],
        model_name=ir.model.name,
        architecture=kind,
        tensor=t.parallel.tensor if arch is not None else 1,
        gpu=catalog.is_gpu(t.cluster.device),
    )


def launch_script(ctx: BuildContext) -> LaunchScript:
    ir = ctx.ir
    t = ir.train
    assert t is not None  # artifacts() builds it only with a train block
    c, p = t.cluster, t.parallel
    processes = c.hosts * c.slots_per_host
    layout = (
        f"{c.hosts} x {c.slots_per_host} = {processes} processes on {c.device}: "
        f"data {p.data} x tensor {p.tensor} x pipeline {p.pipeline}"
    )
    return LaunchScript(ir.model.name, c.hosts, c.slots_per_host, processes, not catalog.is_gpu(c.device), layout)
