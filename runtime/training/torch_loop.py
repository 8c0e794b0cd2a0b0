"""Horovod training of a torch model (the generated train.py of a torch spec).

Per step every data-parallel replica runs `accumulation` micro-batches of
`micro_batch` examples (global batch = data x micro_batch x accumulation, as the spec
says); Horovod's DistributedOptimizer averages the gradients over the replicas with
the spec's gradient compression, then the optimizer steps at the schedule's rate.

The spec's `lr` is the rate for its GLOBAL batch, so it is not multiplied by the
number of workers as Horovod's examples do: the same spec trains the same way on 2 or
64 processes, and a searched lr means the same at every layout.

Tensor parallelism: ranks d*T .. d*T+T-1 form tensor group d (consecutive ranks share
a host when T divides its slots, keeping the per-layer all-reduces on the fast
links); ranks t, t+T, t+2T, ... form data group t, over which gradients are averaged.

Checkpoints (`train.checkpoint`): whole-model weights, optimizer state and every
rank's random state, written atomically by rank 0 every `every` (a duration:
wall-clock seconds; an int: optimizer steps) and at the end, the `keep` newest kept.
A restarted run resumes from the newest: every rank loads it (the output directory
must be shared between hosts) and continues at the same micro-batch of the same
epoch with the same random state.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import horovod.torch as hvd
import torch

from .. import checkpoints as ck
from ..config import batch_layout, bundle_identity, load_config
from ..data import load_split
from ..tensor_parallel import (
    NO_TP,
    TensorParallel,
    full_optimizer_state,
    full_state_dict,
    load_full_optimizer_state,
    load_full_state_dict,
)
from ..zoo_torch import batch_loss, build_model, make_optimizer, save_model, to_tensors
from .common import (
    Batch,
    BuildConstants,
    LoopSettings,
    MetricsLog,
    Progress,
    RandomState,
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


def init_horovod(tensor: int) -> tuple[TensorParallel, Any, int]:
    """hvd.init; with tensor parallelism, one process set per tensor group and one per
    data group. Returns this rank's tensor-parallel group, its data-parallel process
    set and that set's first rank (the root its replicas broadcast from)."""
    if tensor == 1:
        hvd.init()
        return NO_TP, hvd.global_process_set, 0
    # Static process sets must be known at init, so the world size comes from the
    # launcher's environment.
    size = int(os.environ.get("HOROVOD_SIZE") or os.environ.get("OMPI_COMM_WORLD_SIZE") or 0)
    if size == 0 or size % tensor:
        raise SystemExit(
            f"train.py: error: {size or 'an unknown number of'} processes cannot be split into "
            f"tensor-parallel groups of {tensor}; start it with train/launch.sh"
        )
    everyone = list(range(size))
    tensor_ranks = [list(range(d * tensor, (d + 1) * tensor)) for d in range(size // tensor)]
    data_ranks = [list(range(t, size, tensor)) for t in range(tensor)]
    # A group holding every rank is the global set (Horovod does not register it twice).
    sets = {tuple(r): hvd.ProcessSet(r) for r in tensor_ranks + data_ranks if r != everyone}
    hvd.init(process_sets=list(sets.values()))
    rank = hvd.rank()
    tensor_group = tensor_ranks[rank // tensor]
    data_group = data_ranks[rank % tensor]
    tp_set = sets.get(tuple(tensor_group), hvd.global_process_set)
    dp_set = sets.get(tuple(data_group), hvd.global_process_set)
    return TensorParallel(tensor, rank % tensor, tp_set), dp_set, data_group[0]


def random_state() -> RandomState:
    """This process's random state: Python's, numpy's and torch's (CPU and CUDA)."""
    state = host_random_state()
    state["torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_random_state(state: RandomState) -> None:
    restore_host_random_state(state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class TorchSteps:
    """The framework half of the loop (common.StepHooks) for a torch model."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: Any,
        device: torch.device,
        amp_dtype: torch.dtype | None,
        accumulation: int,
        rank: int,
        tensor: int,
        folder: Path,
        keep: int,
    ) -> None:
        self.model, self.optimizer, self.device = model, optimizer, device
        self.amp_dtype, self.accumulation = amp_dtype, accumulation
        self.scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
        self.rank, self.tensor, self.folder, self.keep = rank, tensor, folder, keep
        self._window = torch.zeros((), dtype=torch.float64, device=device)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        return torch.autocast("cuda", dtype=self.amp_dtype) if self.amp_dtype else contextlib.nullcontext()

    def micro_step(self, batch: Batch, lr: float | None) -> None:
        with self.autocast():
            loss_sum, count, _ = batch_loss(self.model, to_tensors(batch, self.device))
        loss = loss_sum / count.clamp_min(1)
        scaled = loss / self.accumulation  # the optimizer sees the mean over the global batch
        (self.scaler.scale(scaled) if self.scaler else scaled).backward()
        self._window += loss.detach().double()
        if lr is None:
            return
        optimizer = self.optimizer
        for group in optimizer.param_groups:
            group["lr"] = lr
        if self.scaler is not None:
            optimizer.synchronize()
            self.scaler.unscale_(optimizer)
            with optimizer.skip_synchronize():
                self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad()  # torch 2: grads set to None (Horovod allows no arguments here)

    def window_loss(self, micro_batches: int) -> float:
        # Averaged over every replica (tensor-parallel ranks hold the same loss).
        seen = torch.tensor(float(micro_batches), dtype=torch.float64, device=self.device)
        totals = hvd.allreduce(torch.stack([self._window, seen]), op=hvd.Sum, name="metrics.loss").cpu()
        self._window.zero_()
        return float(totals[0] / totals[1])

    def save_checkpoint(self, progress: Progress) -> None:
        states = hvd.allgather_object(random_state(), name="checkpoint.random")
        if self.tensor == 1 and self.rank != 0:
            return
        # With tensor parallelism every rank takes part in gathering the shards.
        state = {
            "model": full_state_dict(self.model),
            "optimizer": full_optimizer_state(self.model, self.optimizer),
            "progress": progress,
            "random": states,
        }
        if self.rank == 0:
            path = ck.checkpoint_path(self.folder, progress["step"], "pt")
            ck.atomic_write(path, lambda tmp: torch.save(state, tmp))
            ck.prune_checkpoints(self.folder, "pt", self.keep)

    def batch_totals(self, batch: Batch) -> tuple[float, float, float | None]:
        with self.autocast():
            loss_sum, count, correct = batch_loss(self.model, to_tensors(batch, self.device))
        return float(loss_sum), float(count), float(correct) if correct is not None else None


def train(constants: BuildConstants, argv: list[str] | None = None) -> int:
    args = parse_args(constants.model_name, argv)
    started = time.perf_counter()
    cfg = load_config(constants.model_json, args.set, data_root=args.data_root)
    model_cfg, train_cfg = cfg["model"], cfg["train"]
    tensor = constants.tensor_parallel
    tp, dp_set, dp_root = init_horovod(tensor)
    rank, size = hvd.rank(), hvd.size()
    torch.set_num_threads(cores_per_process(hvd.local_size()))
    layout = batch_layout(train_cfg, size, tensor)
    dp_rank = rank // tensor
    seed = int(train_cfg["seed"])
    say = speaker(rank)

    use_cuda = constants.gpu_cluster and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(hvd.local_rank())
    device = torch.device("cuda" if use_cuda else "cpu")
    # Mixed precision where the device has it; CPUs train in fp32 (bf16 autocast on a
    # CPU is slower than fp32 on most of them, and fp16 has no CPU kernels).
    precision = train_cfg["precision"] if use_cuda else "fp32"
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if train_cfg["precision"] != precision:
        say(f"no GPU here: training in fp32 instead of {train_cfg['precision']}")

    train_split = load_split(model_cfg, model_cfg["data"]["train"])
    valid_split = load_split(model_cfg, model_cfg["data"]["valid"], label_names=train_split.label_names)

    model = build_model(model_cfg, tp=tp, seed=seed).to(device)
    if train_cfg.get("activation_checkpointing"):
        for stack in (getattr(model, "encoder", None), getattr(model, "decoder", None)):
            if stack is not None:
                stack.checkpoint_activations = True
    # Dropout masks must agree across a tensor-parallel group: seed by data-parallel rank.
    torch.manual_seed(seed + dp_rank)

    compression = {"none": hvd.Compression.none, "fp16": hvd.Compression.fp16}[train_cfg["gradient_compression"]]
    optimizer = hvd.DistributedOptimizer(
        make_optimizer(model, train_cfg["optimizer"]),
        named_parameters=model.named_parameters(),
        compression=compression,
        backward_passes_per_step=layout.accumulation,
        op=hvd.Average,
        process_set=dp_set,
    )

    output = Path(args.output)
    folder = checkpoint_folder(train_cfg, output)
    newest = newest_checkpoint(folder, "pt", rank, hvd.broadcast_object)
    progress: Progress = {"step": 0, "epoch": 0, "micro": 0}
    if newest:
        saved = torch.load(newest, map_location="cpu", weights_only=True)
        load_full_state_dict(model, saved["model"])
        load_full_optimizer_state(model, optimizer, saved["optimizer"])
        progress = saved["progress"]
        state = own_random_state(saved.get("random"), rank, size, say)
        if state is not None:
            restore_random_state(state)
        else:  # an older checkpoint or another world size: at least not the masks of step 1 again
            torch.manual_seed(seed + dp_rank + 1_000_003 * progress["step"])
        say(f"resuming from {newest} at step {progress['step']}")

    if tensor > 1:
        # Replicas of one tensor-parallel shard start identical: broadcast it within the
        # data-parallel group (hvd.broadcast_parameters would send rank 0's shard to
        # every rank). Optimizer state is loaded from the same whole checkpoint by every
        # rank, and a fresh optimizer has none.
        for name, tensor_value in sorted(model.state_dict().items()):
            hvd.broadcast_(tensor_value, root_rank=dp_root, name=f"broadcast.{name}", process_set=dp_set)
    else:
        hvd.broadcast_parameters(model.state_dict(), root_rank=0)
        if newest:
            # Only a resumed optimizer has state. On a fresh one, Horovod would create it with
            # a zero-gradient step, which applies AdamW's weight decay and advances Adam's
            # step count; every rank constructs the same fresh optimizer anyway.
            hvd.broadcast_optimizer_state(optimizer, root_rank=0)

    plan = plan_steps(train_cfg, len(train_split), layout, args.max_steps, say)
    say(layout_line(size, layout, plan, progress, with_tensor=True))
    metrics_path = Path(args.metrics) if args.metrics else output / "metrics.jsonl"
    metrics = MetricsLog(metrics_path if rank == 0 else None, progress["step"] if newest else None)
    # Where this run starts and ends, for progress and ETA (a resumed run starts late).
    metrics.write({"start": True, "from_step": progress["step"], "total_steps": plan.last_step})

    steps = TorchSteps(
        model,
        optimizer,
        device,
        amp_dtype,
        layout.accumulation,
        rank,
        tensor,
        folder,
        int(train_cfg["checkpoint"]["keep"]),
    )
    settings = LoopSettings(layout, plan, seed, dp_rank, args.log_every, trim=True)
    policy = ck.Policy(train_cfg["checkpoint"]["every"])
    # Saving is collective (random states are gathered), so a time-based decision is rank 0's.
    agree = None if size == 1 else (lambda flag: bool(hvd.broadcast_object(flag, root_rank=0, name="checkpoint.due")))
    model.train()
    step = train_loop(steps, train_split, settings, progress, metrics, policy, agree)

    # Final validation over the whole valid split: each data-parallel replica takes its
    # share, and the sums are added over the replicas.
    model.eval()
    with torch.no_grad():
        mine = validation_totals(valid_split, settings, steps.batch_totals)
    totals = hvd.allreduce(torch.from_numpy(mine), op=hvd.Sum, name="valid.totals", process_set=dp_set).numpy()
    final = final_record(totals, step, plan, constants, started)

    if tensor > 1 or rank == 0:
        save_model(
            output / "model" if rank == 0 else None,
            model,
            model_cfg,
            train_split.label_names,
            framework="torch",
            **bundle_identity(constants.bundle),
            steps=step,
            valid_loss=final["valid_loss"],
        )
    metrics.write(final)
    say(f"done: {step} steps, valid loss {final['valid_loss']:.4f}; model in {output / 'model'}")
    metrics.close()
    # Nobody leaves while another rank may still be in a collective (a rank's exit
    # shuts Horovod down for all of them).
    hvd.barrier()
    return 0
