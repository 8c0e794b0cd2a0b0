"""Tensor parallelism for the torch zoo (Megatron-LM, Shoeybi et al. 2019) through Horovod process sets.

With `tp = TensorParallel(size, rank, process_set)` each attention block of
zoo_torch.py splits its heads and each FFN its hidden width over the `size` ranks of
one tensor-parallel group. Q, K, V and the first FFN layer are column-parallel (each
rank holds rows of W: its heads / its slice of d_ff), O and the second FFN layer are
row-parallel (each rank holds columns of W, and the partial products are summed).
Megatron's two conjugate operators join the replicated and the split regions:

    f = copy_to_tensor_parallel:     identity forward, all-reduce(sum) backward
    g = reduce_from_tensor_parallel: all-reduce(sum) forward, identity backward

They are custom autograd Functions because `hvd.allreduce`'s own backward all-reduces
the gradient again (a Sum would double it with tensor = 2). Embeddings, LayerNorms,
the row-parallel biases and the classifier head are replicated; their gradients are
identical on every rank of a group (f's backward makes the activations' gradients
whole before they reach them), so data-parallel averaging alone keeps them in step.
Grouped-query attention (kv_heads < heads) splits the K and V heads too when
kv_heads is a multiple of the tensor size (each rank's query heads read only its own
K/V heads); otherwise K and V are replicated: every rank computes all K/V heads from
the replicated input (not through f) and uses those its query heads need, and f is
applied to the K/V outputs instead, so their gradients are summed over the group and
the replicated K/V weights get the whole model's gradient on every rank. Gated FFNs
(SwiGLU, GeGLU) split gate and up by columns and down by rows; RMSNorms are
replicated like LayerNorms. A projection built without its bias has none in either
form.
With tp.size == 1 every projection is a plain nn.Linear and f, g vanish: the same
state_dict keys either way, and `full_state_dict` / `load_full_state_dict` convert
between the sharded and the whole model (checkpoints and the exported model are
always whole, so a resume or an evaluation may use another tensor size).

Dropout in the replicated regions must draw the same mask on every rank of a
tensor-parallel group, so training seeds torch with seed + data-parallel rank (the
same within a group); shards have equal shapes, so the generators stay in step.

Horovod is imported only when tp.size > 1: the zoo runs (and is tested) without it.
This module knows layers and state_dicts, never the models: zoo_torch.py imports it.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class TensorParallel(NamedTuple):
    """This rank's place in its tensor-parallel group: size, rank in the group, and the
    Horovod ProcessSet holding exactly the group's ranks (None when size is 1)."""

    size: int = 1
    rank: int = 0
    process_set: Any = None


NO_TP = TensorParallel()


# --- Megatron's f and g --------------------------------------------------------------


def _allreduce_sum(x: torch.Tensor, tp: TensorParallel, name: str) -> torch.Tensor:
    import horovod.torch as hvd

    # Horovod rejects non-contiguous tensors (an expanded gradient, a transposed view).
    return hvd.allreduce(x.contiguous(), op=hvd.Sum, name=name, process_set=tp.process_set)


class _CopyToTensorParallel(torch.autograd.Function):
    """f: the input of a column-parallel region. Every rank's slice of the next layer
    contributes a partial gradient of the (replicated) input; sum them going back."""

    @staticmethod
    def forward(ctx, x, tp, name):
        ctx.tp, ctx.name = tp, name
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return _allreduce_sum(grad, ctx.tp, ctx.name + ".f"), None, None


class _ReduceFromTensorParallel(torch.autograd.Function):
    """g: the output of a row-parallel region: sum the partial products going forward;
    the gradient of a sum is the same for every addend, so it passes back unchanged."""

    @staticmethod
    def forward(ctx, x, tp, name):
        return _allreduce_sum(x, tp, name + ".g")

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None


def copy_to_tensor_parallel(x, tp: TensorParallel, name: str):
    return x if tp.size == 1 else _CopyToTensorParallel.apply(x, tp, name)


def reduce_from_tensor_parallel(x, tp: TensorParallel, name: str):
    return x if tp.size == 1 else _ReduceFromTensorParallel.apply(x, tp, name)


class ColumnParallelLinear(nn.Module):
    """y_r = x W_r^T + b_r: this rank's rows of W (output features), input replicated."""

    shard_dims: ClassVar[dict[str, int]] = {"weight": 0, "bias": 0}

    def __init__(self, in_features: int, out_features: int, tp: TensorParallel, bias: bool = True):
        super().__init__()
        if out_features % tp.size:
            raise ValueError(f"{out_features} output features cannot be split over tensor = {tp.size}")
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features // tp.size, in_features))
        self.bias: nn.Parameter | None = nn.Parameter(torch.zeros(out_features // tp.size)) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


class RowParallelLinear(nn.Module):
    """y = g(x_r W_r^T) + b: this rank's columns of W (input features); the partial
    products are summed over the group, then the replicated bias is added once."""

    shard_dims: ClassVar[dict[str, int]] = {"weight": 1}

    def __init__(self, in_features: int, out_features: int, tp: TensorParallel, bias: bool = True):
        super().__init__()
        if in_features % tp.size:
            raise ValueError(f"{in_features} input features cannot be split over tensor = {tp.size}")
        self.in_features, self.out_features, self.tp = in_features, out_features, tp
        self.weight = nn.Parameter(torch.empty(out_features, in_features // tp.size))
        self.bias: nn.Parameter | None = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.tp_name = "row"

    def forward(self, x):
        y = reduce_from_tensor_parallel(F.linear(x, self.weight), self.tp, self.tp_name)
        return y if self.bias is None else y + self.bias


def column_linear(in_features: int, out_features: int, tp: TensorParallel, bias: bool = True) -> nn.Module:
    if tp.size == 1:
        return nn.Linear(in_features, out_features, bias=bias)
    return ColumnParallelLinear(in_features, out_features, tp, bias)


def row_linear(in_features: int, out_features: int, tp: TensorParallel, bias: bool = True) -> nn.Module:
    if tp.size == 1:
        return nn.Linear(in_features, out_features, bias=bias)
    return RowParallelLinear(in_features, out_features, tp, bias)


def name_tensor_parallel_ops(model: nn.Module) -> None:
    """Unique, rank-independent Horovod names for the f/g all-reduces (module paths)."""
    for name, module in model.named_modules():
        if hasattr(module, "tp_name"):
            module.tp_name = f"tp.{name}"


# --- whole <-> sharded state -----------------------------------------------------------------


def shard_dims(model: nn.Module) -> dict[str, int]:
    """state_dict key -> the dimension it is split along across the tensor-parallel group."""
    dims = {}
    for mname, module in model.named_modules():
        for pname, dim in getattr(module, "shard_dims", {}).items():
            if getattr(module, pname, None) is not None:  # a layer built without its bias
                dims[f"{mname}.{pname}" if mname else pname] = dim
    return dims


def gather_shards(items: list[tuple[torch.Tensor, int]], tp: TensorParallel, name: str) -> list[torch.Tensor]:
    """Whole tensors from this group's shards: (shard, dim) pairs in, one collective.

    Horovod's allgather concatenates along dim 0, in rank order within the process set,
    so a shard split along another dim is moved to the front and back.
    """
    import horovod.torch as hvd

    if not items:
        return []
    moved = [t.detach().transpose(0, dim).contiguous() for t, dim in items]
    whole = hvd.grouped_allgather(moved, name=name, process_set=tp.process_set)
    return [w.transpose(0, dim).contiguous() for w, (_, dim) in zip(whole, items)]


def _slice(t: torch.Tensor, dim: int, tp: TensorParallel) -> torch.Tensor:
    return t.chunk(tp.size, dim=dim)[tp.rank].clone()


def full_state_dict(model: nn.Module) -> dict:
    """The whole model's state_dict (a collective on the tensor-parallel group)."""
    tp = getattr(model, "tp", NO_TP)
    state = model.state_dict()
    if tp.size == 1:
        return {k: v.detach().clone() for k, v in state.items()}
    dims = shard_dims(model)
    split = [k for k in state if k in dims]
    whole = dict(zip(split, gather_shards([(state[k], dims[k]) for k in split], tp, "tp.gather.model")))
    return {k: whole[k] if k in whole else v.detach().clone() for k, v in state.items()}


def load_full_state_dict(model: nn.Module, state: dict) -> None:
    """Load a whole state_dict into a (possibly sharded) model: each rank keeps its slice."""
    tp = getattr(model, "tp", NO_TP)
    dims = shard_dims(model) if tp.size > 1 else {}
    model.load_state_dict({k: _slice(v, dims[k], tp) if k in dims else v for k, v in state.items()})


def _optimizer_keys(model: nn.Module, optimizer) -> list[str]:
    names = {id(p): n for n, p in model.named_parameters()}
    return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]


def full_optimizer_state(model: nn.Module, optimizer) -> dict:
    """The optimizer's state_dict with sharded moments gathered (a collective when tp > 1)."""
    tp = getattr(model, "tp", NO_TP)
    state = optimizer.state_dict()
    if tp.size == 1:
        return state
    dims, keys = shard_dims(model), _optimizer_keys(model, optimizer)
    params = dict(model.named_parameters())
    split = [
        (idx, name)
        for idx in sorted(state["state"])
        for name, value in sorted(state["state"][idx].items())
        if keys[idx] in dims and torch.is_tensor(value) and value.shape == params[keys[idx]].shape
    ]
    whole = gather_shards(
        [(state["state"][idx][name], dims[keys[idx]]) for idx, name in split], tp, "tp.gather.optimizer"
    )
    out = {"param_groups": state["param_groups"], "state": {idx: dict(entry) for idx, entry in state["state"].items()}}
    for (idx, name), value in zip(split, whole):
        out["state"][idx][name] = value
    return out


def load_full_optimizer_state(model: nn.Module, optimizer, state: dict) -> None:
    tp = getattr(model, "tp", NO_TP)
    if tp.size > 1:
        dims, keys = shard_dims(model), _optimizer_keys(model, optimizer)
        state = {
            "param_groups": state["param_groups"],
            "state": {
                idx: {
                    name: _slice(v, dims[keys[idx]], tp)
                    if keys[idx] in dims and torch.is_tensor(v) and v.dim() > 0
                    else v
                    for name, v in entry.items()
                }
                for idx, entry in state["state"].items()
            },
        }
    optimizer.load_state_dict(state)
