"""Horovod training of a TensorFlow model (the generated train.py of a TensorFlow spec).

A custom loop with `hvd.DistributedGradientTape` (Keras 3 models, TensorFlow
backend): horovod.tensorflow.keras predates Keras 3. Per step every data-parallel
replica runs `accumulation` micro-batches of `micro_batch` examples (global batch =
data x micro_batch x accumulation, as the spec says); the gradients are averaged over
the replicas with the spec's gradient compression: by the tape when there is one
micro-batch per step, else by one grouped all-reduce of the locally accumulated
gradients (the same collective the tape issues). The spec's `lr` is the rate for its
global batch (not multiplied by the number of workers; see torch_loop).

Checkpoints (`train.checkpoint`): model weights, optimizer variables and random state
(the Keras seed generators' state, and every rank's Python and numpy state) in one
.npz, written atomically by rank 0 every `every` and at the end, the `keep` newest
kept. A restarted run resumes from the newest (every rank loads it: the output
directory must be shared between hosts). The final model is a SavedModel in
OUTPUT/model (see llmc.runtime.zoo_tf).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import horovod.tensorflow as hvd
import keras
import numpy as np
import tensorflow as tf

from .. import checkpoints as ck
from ..config import batch_layout, bundle_identity, load_config
from ..data import load_split
from ..zoo_tf import batch_loss, build_model, make_optimizer, save_model, to_inputs
from .common import (
    Batch,
    BuildConstants,
    LoopSettings,
    MetricsLog,
    Progress,
    checkpoint_folder,
    cores_per_process,
    final_record,
    host_random_state,
    layout_line,
    newest_checkpoint,
    own_random_state,
    parse_args,
    plan_steps,
    restore_host_random_state,
    speaker,
    train_loop,
    validation_totals,
)


def random_variables(model: Any) -> list[Any]:
    """The model's variables that are not weights: the Keras seed generators' state,
    which decides the dropout masks (Keras draws them with stateless ops)."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


class TfSteps:
    """The framework half of the loop (common.StepHooks) for a Keras model."""

    def __init__(
        self,
        model: Any,
        optimizer: Any,
        compression: Any,
        accumulation: int,
        loss_scaling: bool,
        rank: int,
        folder: Path,
        keep: int,
    ) -> None:
        self.model, self.optimizer, self.rank, self.folder, self.keep = (model, optimizer, rank, folder, keep)
        self._window = 0.0
        variables = model.trainable_variables
        # Horovod's tape keys gradients by tf.Variable.ref(): hand it the tf.Variables that
        # Keras 3 variables wrap (the tape watches those when the model reads them).
        tf_variables = [v.value for v in variables]

        def local_loss(batch: Any, training: bool) -> Any:
            loss_sum, count, _ = batch_loss(model, batch, training=training)
            return loss_sum / tf.maximum(count, 1.0)

        @tf.function(reduce_retracing=True)
        def train_step(batch: Any) -> Any:
            with tf.GradientTape() as tape:
                loss = local_loss(batch, True)
                scaled = optimizer.scale_loss(loss) if loss_scaling else loss
            tape = hvd.DistributedGradientTape(tape, compression=compression, op=hvd.Average)
            grads = tape.gradient(scaled, tf_variables)
            optimizer.apply(grads, variables)
            return loss

        accumulated = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables] if accumulation > 1 else []

        @tf.function(reduce_retracing=True)
        def accumulate_step(batch: Any) -> Any:
            with tf.GradientTape() as tape:
                loss = local_loss(batch, True)
                scaled = optimizer.scale_loss(loss) if loss_scaling else loss
            for acc, grad in zip(accumulated, tape.gradient(scaled, tf_variables)):
                acc.assign_add(grad / accumulation)
            return loss

        @tf.function
        def apply_accumulated() -> None:
            grads = hvd.grouped_allreduce(
                [acc.read_value() for acc in accumulated], op=hvd.Average, compression=compression
            )
            optimizer.apply(grads, variables)
            for acc in accumulated:
                acc.assign(tf.zeros_like(acc))

        self._accumulation = accumulation
        self._train_step, self._accumulate_step, self._apply_accumulated = (
            train_step,
            accumulate_step,
            apply_accumulated,
        )

    def micro_step(self, batch: Batch, lr: float | None) -> None:
        if lr is not None:
            self.optimizer.learning_rate = lr  # assigns the optimizer's rate variable
        if self._accumulation == 1:
            loss = self._train_step(to_inputs(batch))
        else:
            loss = self._accumulate_step(to_inputs(batch))
            if lr is not None:
                self._apply_accumulated()
        self._window += float(loss)

    def window_loss(self, micro_batches: int) -> float:
        totals = hvd.allreduce(
            tf.constant([self._window, float(micro_batches)], tf.float64), op=hvd.Sum, name="metrics.loss"
        ).numpy()
        self._window = 0.0
        return float(totals[0] / totals[1])

    def save_checkpoint(self, progress: Progress) -> None:
        states = hvd.allgather_object(host_random_state(), name="checkpoint.random")
        if self.rank != 0:
            return
        arrays = {f"model/{i}": w for i, w in enumerate(self.model.get_weights())}
        arrays.update({f"optimizer/{i}": np.asarray(v.numpy()) for i, v in enumerate(self.optimizer.variables)})
        arrays.update({f"random/{i}": np.asarray(v.numpy()) for i, v in enumerate(random_variables(self.model))})
        arrays["progress"] = np.asarray(json.dumps(progress))
        arrays["host_random"] = np.asarray(json.dumps(states))

        def write(tmp: Path) -> None:
            buffer = io.BytesIO()
            np.savez(buffer, **arrays)
            tmp.write_bytes(buffer.getvalue())

        ck.atomic_write(ck.checkpoint_path(self.folder, progress["step"], "npz"), write)
        ck.prune_checkpoints(self.folder, "npz", self.keep)

    def batch_totals(self, batch: Batch) -> tuple[float, float, float | None]:
        loss_sum, count, correct = batch_loss(self.model, to_inputs(batch), training=False)
        return float(loss_sum), float(count), float(correct) if correct is not None else None


def configure_devices(gpu_cluster: bool) -> bool:
    """Threads shared between this host's processes; one GPU per process when the spec's
    cluster has GPUs and this host does. Returns whether a GPU is used."""
    tf.config.threading.set_intra_op_parallelism_threads(cores_per_process(hvd.local_size()))
    tf.config.threading.set_inter_op_parallelism_threads(1)
    gpus = tf.config.list_physical_devices("GPU") if gpu_cluster else []
    if gpus:
        gpu = gpus[hvd.local_rank() % len(gpus)]
        tf.config.experimental.set_memory_growth(gpu, True)
        tf.config.set_visible_devices(gpu, "GPU")
    else:
        tf.config.set_visible_devices([], "GPU")
    return bool(gpus)


def train(constants: BuildConstants, argv: list[str] | None = None) -> int:
    args = parse_args(constants.model_name, argv)
    started = time.perf_counter()
    if constants.tensor_parallel > 1:
        raise SystemExit(
            "train.py: error: tensor parallelism is implemented for torch models only; "
            "set train.parallel.tensor = 1 for a TensorFlow model"
        )
    cfg = load_config(constants.model_json, args.set, data_root=args.data_root)
    model_cfg, train_cfg = cfg["model"], cfg["train"]
    hvd.init()
    rank, size = hvd.rank(), hvd.size()
    has_gpu = configure_devices(constants.gpu_cluster)
    layout = batch_layout(train_cfg, size, 1)
    seed = int(train_cfg["seed"])
    say = speaker(rank)

    # Mixed precision where the device has it; CPUs train in fp32.
    precision = train_cfg["precision"] if has_gpu else "fp32"
    if precision != train_cfg["precision"]:
        say(f"no GPU here: training in fp32 instead of {train_cfg['precision']}")
    if precision != "fp32":
        keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bf16" else "mixed_float16")

    train_split = load_split(model_cfg, model_cfg["data"]["train"])
    valid_split = load_split(model_cfg, model_cfg["data"]["valid"], label_names=train_split.label_names)

    model = build_model(model_cfg, seed=seed)
    optimizer = make_optimizer(train_cfg["optimizer"])
    if precision == "fp16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    compression = {"none": hvd.Compression.none, "fp16": hvd.Compression.fp16}[train_cfg["gradient_compression"]]

    output = Path(args.output)
    folder = checkpoint_folder(train_cfg, output)
    newest = newest_checkpoint(folder, "npz", rank, hvd.broadcast_object)
    progress: Progress = {"step": 0, "epoch": 0, "micro": 0}
    if newest:
        with np.load(newest) as saved:
            model.set_weights([saved[f"model/{i}"] for i in range(len(model.weights))])
            for i, variable in enumerate(optimizer.variables):
                variable.assign(saved[f"optimizer/{i}"])
            for i, variable in enumerate(random_variables(model)):
                if f"random/{i}" in saved:
                    variable.assign(saved[f"random/{i}"])
            progress = json.loads(str(saved["progress"]))
            states = json.loads(str(saved["host_random"])) if "host_random" in saved else None
        state = own_random_state(states, rank, size, say)
        if state is not None:
            restore_host_random_state(state)
        say(f"resuming from {newest} at step {progress['step']}")
    # Every replica starts from rank 0's weights, optimizer state and seed generators.
    hvd.broadcast_variables([v.value for v in model.variables], root_rank=0)
    hvd.broadcast_variables([v.value for v in optimizer.variables], root_rank=0)

    plan = plan_steps(train_cfg, len(train_split), layout, args.max_steps, say)
    say(layout_line(size, layout, plan, progress, with_tensor=False))
    metrics_path = Path(args.metrics) if args.metrics else output / "metrics.jsonl"
    metrics = MetricsLog(metrics_path if rank == 0 else None, progress["step"] if newest else None)
    # Where this run starts and ends, for progress and ETA (a resumed run starts late).
    metrics.write({"start": True, "from_step": progress["step"], "total_steps": plan.last_step})

    steps = TfSteps(
        model,
        optimizer,
        compression,
        layout.accumulation,
        precision == "fp16",
        rank,
        folder,
        int(train_cfg["checkpoint"]["keep"]),
    )
    # Transformers see fixed-shape batches (no trimming), so the step traces once.
    settings = LoopSettings(layout, plan, seed, rank, args.log_every, trim=False)
    policy = ck.Policy(train_cfg["checkpoint"]["every"])
    # Saving is collective (random states are gathered), so a time-based decision is rank 0's.
    agree = None if size == 1 else (lambda flag: bool(hvd.broadcast_object(flag, root_rank=0, name="checkpoint.due")))
    step = train_loop(steps, train_split, settings, progress, metrics, policy, agree)

    mine = validation_totals(valid_split, settings, steps.batch_totals)
    totals = hvd.allreduce(tf.constant(mine, tf.float64), op=hvd.Sum, name="valid.totals").numpy()
    final = final_record(totals, step, plan, constants, started)

    if rank == 0:
        # Written beside, then swapped in: a failed export never leaves half a model.
        target = output / "model"
        staging = output / ".model.partial"
        shutil.rmtree(staging, ignore_errors=True)
        save_model(
            str(staging),
            model,
            model_cfg,
            train_split.label_names,
            framework="tensorflow",
            **bundle_identity(constants.bundle),
            steps=step,
            valid_loss=final["valid_loss"],
        )
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    metrics.write(final)
    say(f"done: {step} steps, valid loss {final['valid_loss']:.4f}; model in {output / 'model'}")
    metrics.close()
    return 0
