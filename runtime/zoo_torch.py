"""The torch model zoo: the Transformer and the MLP of compiler/estimate/, exactly.

The architecture is the one estimate.py's docstring defines, so the parameter count
the compiler prints (and sizes memory with) is the count of the model that trains;
tests/integration/test_zoo.py asserts it for several configurations:

* pre-LN blocks x + SelfAttn(LN(x)) [+ CrossAttn(LN(x), memory)] + FFN(LN(x)), a final
  LayerNorm per stack; the decoder's self-attention is causal;
* ONE token embedding shared by the encoder, the decoder and the output projection
  (logits = h E^T, no output bias);
* learned positional embeddings, one max_len x d_model table per stack;
* Q, K, V, O projections and both FFN layers with biases; GELU in the FFN;
* kinds: "encoder-decoder" (translation, summarization), "encoder" (classification:
  a head d_model x classes on the mean of the encoder output over real tokens),
  "decoder" (causal language model, no cross-attention).

That is the default. The model block's architecture options (DEFAULT_OPTIONS; a block
without them builds exactly the model above) change it:

* `ffn` "swiglu" / "geglu": gated FFN down(act(gate(x)) * up(x)), SiLU / exact GELU;
* `positions` "rope" (rotary Q and K in self-attention, NeoX/Llama rotate_half
  layout, `rope_base`; cross-attention rotates neither its queries nor the memory's
  keys) or "none": no positional tables;
* `norm` "rmsnorm" (weight only, eps 1e-5 like the LayerNorms); `norm_position`
  "post": x = N(x + Sub(x)), the final norm per stack kept;
* `kv_heads`: grouped-query attention, K and V kv_heads x head_dim wide, in every
  attention block (cross-attention too);
* `qkv_bias`, `out_bias`, `ffn_bias` false: those projections without biases (the
  classifier head keeps its bias);
* `tie_embeddings` false: an output matrix vocab x d_model (no bias) of its own, for
  the kinds that decode (an encoder has no output projection).

Parameters per layer (d = d_model, f = d_ff, hd = head_dim, H = heads, kv = kv_heads):
each attention block H hd d (+ H hd) for Q, 2 kv hd d (+ 2 kv hd) for K, V, H hd d
(+ d) for O; the FFN 2 d f (+ f + d), gated 3 d f (+ 2 f + d); 2 d per LayerNorm, d
per RMSNorm, 2 norms a layer (3 with cross-attention) and one final norm per stack.

Structured pruning (`unit_scores`, `units_to_keep`, `shrink`) removes whole heads and
FFN channels (an MLP's hidden units; under grouped-query attention, whole groups: a
key/value head with its query heads) and rebuilds the model smaller; the model block
then records `head_dim` beside the kept `heads` and `d_ff` (d_model is no longer
heads x head_dim). A block without `head_dim` builds exactly as before.

With `tp = TensorParallel(size, rank, process_set)` the attention heads and the FFN
width are split over a tensor-parallel group: tensor_parallel.py holds the layers,
Megatron's f and g, and the conversion between the sharded and the whole state; the
names callers use with this module's models are imported here too.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .arch_options import DEFAULT_OPTIONS, FFNS, NORM_EPS, check_options
from .tensor_parallel import (
    NO_TP,
    ColumnParallelLinear,
    RowParallelLinear,
    TensorParallel,
    column_linear,
    copy_to_tensor_parallel,
    full_state_dict,
    load_full_state_dict,
    name_tensor_parallel_ops,
    row_linear,
)

# The rest of the sharded-state API, re-exported for scripts that take the zoo under one name.
from .tensor_parallel import full_optimizer_state as full_optimizer_state
from .tensor_parallel import gather_shards as gather_shards
from .tensor_parallel import load_full_optimizer_state as load_full_optimizer_state
from .tensor_parallel import shard_dims as shard_dims
from .tokenizer import BOS, EOS, PAD

INIT_STD = 0.02  # GPT-2's initialisation; residual projections are scaled by 1/sqrt(2 x layers)
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}

# --- the Transformer ---------------------------------------------------------------------


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight: d parameters, no bias, computed in float32."""

    def __init__(self, d_model: int, eps: float = NORM_EPS):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x):
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return h.to(x.dtype) * self.weight


def make_norm(norm: str, d_model: int) -> Any:  # Any: callers reach .weight (and a LayerNorm's .bias)
    return RMSNorm(d_model) if norm == "rmsnorm" else nn.LayerNorm(d_model, eps=NORM_EPS)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def rope_angles(positions: torch.Tensor, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) [T, head_dim] of the rotary embedding at `positions` [T] (float32):
    pair i of the head dimension (i and i + head_dim/2, the NeoX/Llama layout) turns by
    position x base^(-2i/head_dim)."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim))
    angles = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat([angles, angles], dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [..., T, head_dim] by the angles of `rope_angles` (a rotation: norms kept)."""
    return x * cos.to(x.dtype) + rotate_half(x) * sin.to(x.dtype)


class Attention(nn.Module):
    """Multi-head attention, self or cross, heads split over tp.

    Q and O are heads x head_dim wide; K and V kv_heads x head_dim (grouped-query
    attention: each group of heads / kv_heads query heads shares one K/V head; None is
    kv_heads = heads, plain multi-head attention, 4 (d^2 + d) parameters with biases).
    K/V heads are split over tp when kv_heads is a multiple of tp.size, otherwise each
    rank computes all of them (see tensor_parallel.py). `rope_base` rotates Q and K by
    their positions (self-attention only)."""

    def __init__(
        self,
        d_model: int,
        heads: int,
        dropout: float,
        tp: TensorParallel,
        head_dim: int | None = None,
        kv_heads: int | None = None,
        qkv_bias: bool = True,
        out_bias: bool = True,
        rope_base: float | None = None,
    ):
        super().__init__()
        if head_dim is None:  # a structurally pruned model keeps its head_dim with fewer heads
            if d_model % heads:
                raise ValueError(f"d_model = {d_model} is not a multiple of heads = {heads}")
            head_dim = d_model // heads
        if heads % tp.size:
            raise ValueError(f"{heads} heads cannot be split over tensor = {tp.size}")
        kv_heads = heads if kv_heads is None else int(kv_heads)
        if kv_heads < 1 or heads % kv_heads:
            raise ValueError(f"heads = {heads} is not a multiple of kv_heads = {kv_heads}")
        if rope_base is not None and head_dim % 2:
            raise ValueError(f"rotary positions need an even head_dim, not {head_dim}")
        self.tp, self.dropout, self.rope_base = tp, dropout, rope_base
        self.heads, self.kv_heads = heads, kv_heads
        self.local_heads, self.head_dim = heads // tp.size, head_dim
        self.kv_split = kv_heads % tp.size == 0  # always true with tp.size == 1
        self.local_kv_heads = kv_heads // tp.size if self.kv_split else kv_heads
        inner, kv_inner = heads * head_dim, kv_heads * head_dim
        self.q = column_linear(d_model, inner, tp, qkv_bias)
        if self.kv_split:
            self.k = column_linear(d_model, kv_inner, tp, qkv_bias)
            self.v = column_linear(d_model, kv_inner, tp, qkv_bias)
        else:  # replicated: every rank holds (and computes) all K/V heads
            self.k = nn.Linear(d_model, kv_inner, bias=qkv_bias)
            self.v = nn.Linear(d_model, kv_inner, bias=qkv_bias)
        self.o = row_linear(inner, d_model, tp, out_bias)
        # The K/V head (among this rank's) each local query head reads; None: one each.
        group = heads // kv_heads
        first_q = tp.rank * self.local_heads
        first_kv = tp.rank * self.local_kv_heads if self.kv_split else 0
        index = [(first_q + j) // group - first_kv for j in range(self.local_heads)]
        self.kv_index: torch.Tensor | None
        if index == list(range(self.local_kv_heads)):
            self.kv_index = None
        else:
            self.register_buffer("kv_index", torch.tensor(index, dtype=torch.long), persistent=False)
        # In training, the K/V heads this rank reads (a contiguous range) go to the attention
        # kernel unexpanded (enable_gqa) when each reads an equal run of query heads: a fused
        # kernel then keeps them at kv_heads width for the backward pass, not expanded to
        # heads (docs/estimates.md). The TorchScript ONNX exporter has no enable_gqa, so
        # evaluation and export expand them with kv_index: the same numbers.
        needed = index[-1] - index[0] + 1
        uniform = self.local_heads % needed == 0 and index == [
            index[0] + j // (self.local_heads // needed) for j in range(self.local_heads)
        ]
        self.kv_range: tuple[int, int] | None = (index[0], needed) if uniform and self.kv_index is not None else None
        self.tp_name = "attn"

    def _split(self, x, heads):
        b, s, _ = x.shape
        return x.view(b, s, heads, self.head_dim).transpose(1, 2)

    def forward(self, x, memory=None, key_mask=None, causal=False):
        """x [B, T, d]; memory [B, S, d] for cross-attention; key_mask [B, S] True where
        a key is a real token (None: every key is)."""
        source = x if memory is None else memory
        x = copy_to_tensor_parallel(x, self.tp, self.tp_name + ".x")
        if self.kv_split:
            kv = x if memory is None else copy_to_tensor_parallel(memory, self.tp, self.tp_name + ".memory")
            k, v = self.k(kv), self.v(kv)
        else:  # f after the replicated projections: their gradients are summed over the group
            k = copy_to_tensor_parallel(self.k(source), self.tp, self.tp_name + ".k")
            v = copy_to_tensor_parallel(self.v(source), self.tp, self.tp_name + ".v")
        q = self._split(self.q(x), self.local_heads)
        k, v = self._split(k, self.local_kv_heads), self._split(v, self.local_kv_heads)
        if self.rope_base is not None and memory is None:
            positions = torch.arange(q.shape[2], device=q.device)
            cos, sin = rope_angles(positions, self.head_dim, self.rope_base)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        grouped = self.training and self.kv_range is not None
        if self.training and self.kv_range is not None:
            first, count = self.kv_range
            k, v = k.narrow(1, first, count), v.narrow(1, first, count)
        elif self.kv_index is not None:
            k, v = k.index_select(1, self.kv_index), v.index_select(1, self.kv_index)
        mask = None if key_mask is None else key_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=causal and mask is None,
            dropout_p=self.dropout if self.training else 0.0,
            enable_gqa=grouped,
        )
        b, _, t, _ = out.shape
        return self.o(out.transpose(1, 2).reshape(b, t, self.local_heads * self.head_dim))


class FeedForward(nn.Module):
    """The FFN: "gelu" d -> d_ff -> d (fc1, fc2) with GELU; "swiglu" / "geglu":
    down(act(gate(x)) * up(x)) with SiLU / GELU (exact, as "gelu"); biases unless `bias`
    is false; d_ff split over tp (fc1, gate, up by columns; fc2, down by rows)."""

    def __init__(self, d_model: int, d_ff: int, dropout: float, tp: TensorParallel, kind: str = "gelu", bias=True):
        super().__init__()
        if kind not in FFNS:
            raise ValueError(f"unknown ffn {kind!r}; expected one of {', '.join(FFNS)}")
        self.tp, self.kind, self.d_ff = tp, kind, d_ff
        self.gated = kind != "gelu"
        if self.gated:
            self.gate = column_linear(d_model, d_ff, tp, bias)
            self.up = column_linear(d_model, d_ff, tp, bias)
            self.down = row_linear(d_ff, d_model, tp, bias)
        else:
            self.fc1 = column_linear(d_model, d_ff, tp, bias)
            self.fc2 = row_linear(d_ff, d_model, tp, bias)
        self.drop = nn.Dropout(dropout)
        self.tp_name = "ffn"

    def forward(self, x):
        x = copy_to_tensor_parallel(x, self.tp, self.tp_name + ".x")
        if not self.gated:
            return self.fc2(self.drop(F.gelu(self.fc1(x))))
        gate = F.silu(self.gate(x)) if self.kind == "swiglu" else F.gelu(self.gate(x))
        return self.down(self.drop(gate * self.up(x)))


class Layer(nn.Module):
    """One layer: self-attention [+ cross-attention] + FFN, each with a residual.
    Pre-norm (today's default): x + Sub(N(x)); post-norm: N(x + Sub(x))."""

    def __init__(self, d_model, heads, d_ff, dropout, tp, cross: bool, head_dim=None, options=None):
        super().__init__()
        o = {**DEFAULT_OPTIONS, **(options or {})}
        attn = {
            "kv_heads": o["kv_heads"],
            "qkv_bias": o["qkv_bias"],
            "out_bias": o["out_bias"],
        }
        rope = float(o["rope_base"]) if o["positions"] == "rope" else None
        self.ln1 = make_norm(o["norm"], d_model)
        self.self_attn = Attention(d_model, heads, dropout, tp, head_dim, rope_base=rope, **attn)
        if cross:  # no rotation in cross-attention: neither the queries nor the memory's keys
            self.ln_cross = make_norm(o["norm"], d_model)
            self.cross_attn = Attention(d_model, heads, dropout, tp, head_dim, **attn)
        self.ln2 = make_norm(o["norm"], d_model)
        self.ffn = FeedForward(d_model, d_ff, dropout, tp, o["ffn"], o["ffn_bias"])
        self.drop = nn.Dropout(dropout)
        self.cross = cross
        self.pre_norm = o["norm_position"] == "pre"

    def forward(self, x, key_mask=None, causal=False, memory=None, memory_mask=None):
        if not self.pre_norm:
            x = self.ln1(x + self.drop(self.self_attn(x, key_mask=key_mask, causal=causal)))
            if self.cross:
                x = self.ln_cross(x + self.drop(self.cross_attn(x, memory=memory, key_mask=memory_mask)))
            return self.ln2(x + self.drop(self.ffn(x)))
        x = x + self.drop(self.self_attn(self.ln1(x), key_mask=key_mask, causal=causal))
        if self.cross:
            x = x + self.drop(self.cross_attn(self.ln_cross(x), memory=memory, key_mask=memory_mask))
        return x + self.drop(self.ffn(self.ln2(x)))


class Stack(nn.Module):
    """[Positional table +] layers + final norm; the token embedding is the model's."""

    def __init__(
        self, layers, d_model, heads, d_ff, max_len, dropout, tp, cross: bool, causal: bool, head_dim=None, options=None
    ):
        super().__init__()
        o = {**DEFAULT_OPTIONS, **(options or {})}
        self.pos = nn.Embedding(max_len, d_model) if o["positions"] == "learned" else None
        self.layers = nn.ModuleList(Layer(d_model, heads, d_ff, dropout, tp, cross, head_dim, o) for _ in range(layers))
        self.norm = make_norm(o["norm"], d_model)
        self.drop = nn.Dropout(dropout)
        self.causal, self.max_len = causal, max_len
        self.checkpoint_activations = False

    def forward(self, x, key_mask=None, memory=None, memory_mask=None):
        t = x.shape[1]
        if t > self.max_len:
            raise ValueError(f"sequence of {t} tokens is longer than max_len = {self.max_len}")
        h = self.drop(x if self.pos is None else x + self.pos.weight[:t])
        for layer in self.layers:
            if self.checkpoint_activations and self.training:
                # Recompute the layer in backward instead of keeping its activations
                # (train.activation_checkpointing); dropout masks are replayed exactly.
                h = torch.utils.checkpoint.checkpoint(
                    layer, h, key_mask, self.causal, memory, memory_mask, use_reentrant=False
                )
            else:
                h = layer(h, key_mask, self.causal, memory, memory_mask)
        return self.norm(h)


class Transformer(nn.Module):
    def __init__(
        self,
        kind: str,
        layers: int,
        d_model: int,
        heads: int,
        vocab: int,
        d_ff: int | None = None,
        max_len: int = 512,
        dropout: float = 0.1,
        classes: int | None = None,
        tp: TensorParallel = NO_TP,
        head_dim: int | None = None,
        **options,
    ):
        """`options`: the architecture options of DEFAULT_OPTIONS (ffn, positions,
        rope_base, norm, norm_position, kv_heads, qkv_bias, out_bias, ffn_bias,
        tie_embeddings); those not given keep today's model."""
        super().__init__()
        if kind not in ("encoder-decoder", "encoder", "decoder"):
            raise ValueError(f"unknown transformer kind {kind!r}")
        unknown = set(options) - set(DEFAULT_OPTIONS)
        if unknown:
            raise TypeError(f"unknown transformer options {sorted(unknown)}")
        o = check_options(options)
        d_ff = 4 * d_model if d_ff is None else d_ff
        if d_ff % tp.size:
            raise ValueError(f"d_ff = {d_ff} cannot be split over tensor = {tp.size}")
        self.kind, self.vocab, self.max_len, self.tp = kind, vocab, max_len, tp
        self.options = o
        self.tok = nn.Embedding(vocab, d_model)
        args = (layers, d_model, heads, d_ff, max_len, dropout, tp)
        if kind in ("encoder-decoder", "encoder"):
            self.encoder = Stack(*args, cross=False, causal=False, head_dim=head_dim, options=o)
        if kind in ("encoder-decoder", "decoder"):
            self.decoder = Stack(*args, cross=kind == "encoder-decoder", causal=True, head_dim=head_dim, options=o)
        if kind == "encoder":
            self.head = nn.Linear(d_model, classes or 2)
        # An untied output projection (no bias, replicated over tp); an encoder has none.
        self.output = None if o["tie_embeddings"] or kind == "encoder" else nn.Linear(d_model, vocab, bias=False)
        name_tensor_parallel_ops(self)

    # Encoder-decoder: forward(source, target_in); encoder: forward(text); decoder: forward(tokens_in).
    def forward(self, ids, target_in=None):
        if self.kind == "encoder-decoder":
            memory, mask = self.encode(ids)
            return self.decode(target_in, memory, mask)
        if self.kind == "encoder":
            memory, mask = self.encode(ids)
            m = mask.unsqueeze(-1).to(memory.dtype)
            pooled = (memory * m).sum(1) / m.sum(1).clamp_min(1.0)  # the mean over real tokens
            return self.head(pooled)
        return self.decode(ids)

    def encode(self, ids):
        mask = ids != PAD
        mask[:, 0] = True  # an empty input still has one key to attend to (no all -inf row)
        return self.encoder(self.tok(ids), key_mask=mask), mask

    def decode(self, ids, memory=None, memory_mask=None):
        h = self.decoder(self.tok(ids), memory=memory, memory_mask=memory_mask)
        if self.output is not None:
            return self.output(h)
        return F.linear(h, self.tok.weight)  # tied output projection, no bias

    @torch.no_grad()
    def generate(self, ids, max_new_tokens: int | None = None) -> torch.Tensor:
        """Greedy decoding, batched; stops when every row has produced EOS.

        encoder-decoder: `ids` are source ids [B, S]; decoding starts from BOS.
        decoder: `ids` are prompts [B, P], PAD on the right (e.g. BOS + source + SEP); each
        row continues from its own last token.
        Returns the generated ids [B, n] (EOS included, PAD after it).
        """
        if self.kind == "encoder":
            raise ValueError("an encoder (classification) model does not generate")
        was_training = self.training
        self.eval()
        try:
            return self._greedy(ids, max_new_tokens)
        finally:
            self.train(was_training)

    def _greedy(self, ids, max_new_tokens):
        b = ids.shape[0]
        device = ids.device
        if self.kind == "encoder-decoder":
            memory, mask = self.encode(ids)
            buf = torch.full((b, 1), BOS, dtype=torch.long, device=device)
            lengths = torch.ones(b, dtype=torch.long, device=device)
        else:
            buf = ids.clone()
            buf[(ids != PAD).sum(1) == 0, 0] = BOS  # an empty prompt starts from BOS
            lengths = (buf != PAD).sum(1)
            memory = mask = None
        start = lengths.clone()
        limit = self.max_len - int(lengths.max()) + 1  # inputs stay within the positional table
        steps = limit if max_new_tokens is None else min(limit, max_new_tokens)
        done = torch.zeros(b, dtype=torch.bool, device=device)
        rows = torch.arange(b, device=device)
        for _ in range(max(0, steps)):
            width = int(lengths.max())
            logits = self.decode(buf[:, :width], memory, mask)
            nxt = logits[rows, lengths - 1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)
            if buf.shape[1] <= width:
                buf = torch.cat([buf, torch.full((b, 1), PAD, dtype=torch.long, device=device)], 1)
            buf[rows, lengths] = nxt
            lengths = lengths + (~done).long()
            done = done | (nxt == EOS)
            if bool(done.all()):
                break
        n = int((lengths - start).max()) if b else 0
        out = torch.full((b, n), PAD, dtype=torch.long, device=device)
        for i in range(b):
            k = int(lengths[i] - start[i])
            out[i, :k] = buf[i, int(start[i]) : int(lengths[i])]
        return out


# --- the MLP --------------------------------------------------------------------------


class MLP(nn.Module):
    """inputs -> hidden... -> classes: Linear, activation, dropout; logits out."""

    def __init__(self, inputs: int, hidden: list[int], classes: int, activation: str = "relu", dropout: float = 0.0):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}")
        widths = [inputs, *hidden]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            layers += [nn.Linear(a, b), ACTIVATIONS[activation](), nn.Dropout(dropout)]
        layers.append(nn.Linear(widths[-1], classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


# --- building, initialising, loss -----------------------------------------------------------


def build_model(model_cfg: dict, tp: TensorParallel = NO_TP, seed: int | None = 0) -> nn.Module:
    """The model of a model.json "model" block, initialised from `seed`.

    With tensor parallelism the whole model is initialised first and this rank takes
    its shards, so the weights do not depend on the tensor size (and a tensor = 2 run
    starts exactly where a tensor = 1 run with the same seed does).
    """
    if model_cfg.get("mlp") is not None:
        m = model_cfg["mlp"]
        mlp = MLP(m["inputs"], list(m["hidden"]), m["classes"], m.get("activation", "relu"), m.get("dropout", 0.0))
        if seed is not None:
            init_weights(mlp, seed)
        return mlp
    a = model_cfg["transformer"]
    kwargs = {
        "kind": a["kind"],
        "layers": a["layers"],
        "d_model": a["d_model"],
        "heads": a["heads"],
        "vocab": a["vocab"],
        "d_ff": a.get("d_ff"),
        "max_len": a.get("max_len", 512),
        "dropout": a.get("dropout", 0.1),
        "classes": a.get("classes"),
        "head_dim": a.get("head_dim"),  # set by structured pruning only
        # The architecture options; a block without them (an older bundle) builds today's model.
        **{name: a.get(name, default) for name, default in DEFAULT_OPTIONS.items()},
    }
    if tp.size == 1:
        model = Transformer(**kwargs)
        if seed is not None:
            init_weights(model, seed)
        return model
    whole = Transformer(**kwargs)
    init_weights(whole, seed or 0)
    model = Transformer(**kwargs, tp=tp)
    load_full_state_dict(model, whole.state_dict())
    return model


def init_weights(model: nn.Module, seed: int) -> None:
    """Deterministic initialisation from `seed`, in module order.

    Transformer (GPT-2): weights and embeddings N(0, 0.02), the residual output
    projections (attention O, FFN fc2 / down) N(0, 0.02 / sqrt(2 x layers)) so the
    residual stream does not grow with depth, zero biases, unit LayerNorms and RMSNorms. MLP: nn.Linear's own
    uniform(+-1/sqrt(fan_in)) weights, which suit a shallow ReLU/tanh net, zero biases.
    """
    g = torch.Generator().manual_seed(int(seed))
    layers = max(1, sum(1 for m in model.modules() if isinstance(m, Layer)))
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
            elif isinstance(module, RMSNorm):
                module.weight.fill_(1.0)
            elif isinstance(module, nn.Embedding):
                module.weight.normal_(0.0, INIT_STD, generator=g)
            elif isinstance(module, (nn.Linear, ColumnParallelLinear, RowParallelLinear)):
                if isinstance(model, MLP):
                    bound = 1.0 / math.sqrt(module.weight.shape[1])
                    module.weight.uniform_(-bound, bound, generator=g)
                else:
                    residual = name.endswith((".o", ".fc2", ".down"))
                    std = INIT_STD / math.sqrt(2 * layers) if residual else INIT_STD
                    module.weight.normal_(0.0, std, generator=g)
                if module.bias is not None:
                    module.bias.zero_()


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def to_tensors(batch: dict, device="cpu") -> dict:
    return {
        k: torch.as_tensor(v, device=device) if isinstance(v, np.ndarray) else v.to(device) for k, v in batch.items()
    }


def batch_loss(model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(sum of the losses, number of predictions, number correct or None) for a batch of
    data.py arrays. Sums, not means, so that evaluation over shards and ranks is exact."""
    if "features" in batch or "label" in batch:
        x = batch["features"] if "features" in batch else batch["text"]
        logits = model(x)
        y = batch["label"]
        loss = F.cross_entropy(logits.float(), y, reduction="sum")
        return loss, torch.tensor(float(y.shape[0])), (logits.argmax(-1) == y).sum()
    if "source" in batch:
        tgt = batch["target"]
        logits = model(batch["source"], tgt[:, :-1])
        labels = tgt[:, 1:]
        loss = F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=PAD, reduction="sum"
        )
        return loss, (labels != PAD).sum().float(), None
    tokens, mask = batch["tokens"], batch["loss_mask"]
    logits = model(tokens[:, :-1])
    per = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1), reduction="none")
    return (per * mask.reshape(-1)).sum(), mask.sum(), None


def prompts(batch: dict) -> torch.Tensor:
    """Decoder-only generation: each row's BOS + source + SEP, PAD on the right."""
    tokens, mask = batch["tokens"], batch["loss_mask"]
    starts = (mask > 0).float().argmax(1)  # the SEP position predicts the first target token
    width = int(starts.max()) + 1
    out = torch.full((tokens.shape[0], width), PAD, dtype=torch.long, device=tokens.device)
    for i, s in enumerate(starts.tolist()):
        out[i, : s + 1] = tokens[i, : s + 1]
    return out


def make_optimizer(model: nn.Module, opt: dict) -> torch.optim.Optimizer:
    """adam / adamw / sgd from a model.json optimizer block. Weight decay applies to
    matrices and embeddings only, not to biases and LayerNorms (their decay only
    fights the normalisation)."""
    decay = [p for _, p in model.named_parameters() if p.dim() >= 2]
    rest = [p for _, p in model.named_parameters() if p.dim() < 2]
    wd = float(opt.get("weight_decay", 0.0))
    groups = [{"params": decay, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}]
    lr = float(opt["lr"])
    name = opt["name"]
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=tuple(opt.get("betas", (0.9, 0.999))))
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(opt.get("betas", (0.9, 0.999))))
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=float(opt.get("momentum", 0.0)))
    raise ValueError(f"unknown optimizer {name!r}")


# --- structured pruning: fewer heads and channels, smaller tensors ------------------------------


def _norms(w: torch.Tensor, dim: int) -> torch.Tensor:
    return w.detach().float().norm(dim=dim)


def _with_bias(state: dict, linear: str) -> torch.Tensor:
    """A linear layer's weight rows with their biases appended (the weight alone without)."""
    bias = state.get(f"{linear}.bias")
    weight = state[f"{linear}.weight"]
    return weight if bias is None else torch.cat([weight, bias[:, None]], 1)


def _head_rows(heads: torch.Tensor, head_dim: int) -> torch.Tensor:
    """The weight rows of the given heads, in order."""
    return (heads[:, None] * head_dim + torch.arange(head_dim)).reshape(-1)


def unit_scores(model: nn.Module) -> dict[str, torch.Tensor]:
    """The importance of each removable unit, by module name: per attention head (per
    key/value head with its query heads under grouped-query attention), per
    FFN channel, per hidden unit of an MLP. A unit's score is the L2 norm of what writes
    it times the L2 norm of what reads it (the V rows or the fc1 row, with their biases,
    and the O or fc2 columns): a unit with small weights on either side adds little to the
    residual stream or the next layer (a head's output is a mix of its V rows read by
    its O columns; Q and K only choose the mix). Whole models only (tensor = 1)."""
    if getattr(model, "tp", NO_TP).size != 1:
        raise ValueError("structured pruning needs the whole model (tensor = 1)")
    scores: dict[str, torch.Tensor] = {}
    w = model.state_dict()
    for name, m in model.named_modules():
        if isinstance(m, Attention):
            # The unit is a key/value head with the group of query heads that reads it (one
            # query head without grouped-query attention): the group's O columns are contiguous.
            values = _with_bias(w, f"{name}.v").reshape(m.kv_heads, -1)
            scores[name] = _norms(values, 1) * _norms(w[f"{name}.o.weight"].t().reshape(m.kv_heads, -1), 1)
        elif isinstance(m, FeedForward):
            if m.gated:  # a channel writes act(gate) x up: both must be large
                written = _norms(_with_bias(w, f"{name}.gate"), 1) * _norms(_with_bias(w, f"{name}.up"), 1)
                scores[name] = written * _norms(w[f"{name}.down.weight"], 0)
            else:
                scores[name] = _norms(_with_bias(w, f"{name}.fc1"), 1) * _norms(w[f"{name}.fc2.weight"], 0)
    if isinstance(model, MLP):
        linears = [(n, m) for n, m in model.net.named_children() if isinstance(m, nn.Linear)]
        for (name, m), (_, nxt) in itertools.pairwise(linears):
            written = _norms(torch.cat([m.weight, m.bias[:, None]], 1), 1)
            scores[f"net.{name}"] = written * _norms(nxt.weight, 0)
    return scores


def units_to_keep(scores: dict[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    """Per module, the indices (ascending) of the units that stay: round(sparsity x n)
    of the lowest-scoring are removed, one at least is kept. Each module loses the same
    share, so every attention block of a Transformer keeps the same number of heads."""
    keep = {}
    for name, s in scores.items():
        n = s.numel()
        drop = min(round(sparsity * n), n - 1)
        order = torch.argsort(s, descending=True, stable=True)
        keep[name] = torch.sort(order[: n - drop]).values
    return keep


def shrink(model: nn.Module, model_cfg: dict, keep: dict[str, torch.Tensor]) -> tuple[nn.Module, dict]:
    """A smaller copy of `model` with only the units `keep` names (module name -> the
    indices kept; a module not named keeps all): Q, K, V rows and O columns of the kept
    heads, fc1 rows and fc2 columns of the kept FFN channels, an MLP's hidden units
    with the next layer's matching input columns. Returns the copy (in eval mode) and
    the model block it is built from: `heads` and `d_ff` become the kept counts and
    `head_dim` is recorded (d_model is no longer heads x head_dim); an MLP's `hidden`
    its kept widths."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    cfg = copy.deepcopy(model_cfg)
    modules = dict(model.named_modules())

    def kept(name: str, n: int) -> torch.Tensor:
        return keep[name] if name in keep else torch.arange(n)

    if isinstance(model, MLP):
        linears = [f"net.{n}" for n, m in model.net.named_children() if isinstance(m, nn.Linear)]
        widths = []
        for name, nxt in itertools.pairwise(linears):
            idx = kept(name, modules[name].weight.shape[0])
            state[f"{name}.weight"], state[f"{name}.bias"] = state[f"{name}.weight"][idx], state[f"{name}.bias"][idx]
            state[f"{nxt}.weight"] = state[f"{nxt}.weight"][:, idx]
            widths.append(len(idx))
        cfg["mlp"]["hidden"] = widths
    else:
        heads, kv_heads, d_ff = set(), set(), set()
        for name, m in modules.items():
            if isinstance(m, Attention):
                groups = kept(name, m.kv_heads)  # key/value heads, each with its query heads
                per_group = m.heads // m.kv_heads
                query_heads = (groups[:, None] * per_group + torch.arange(per_group)).reshape(-1)
                rows = _head_rows(query_heads, m.head_dim)
                kv_rows = _head_rows(groups, m.head_dim)
                for proj, kept_rows in (("q", rows), ("k", kv_rows), ("v", kv_rows)):
                    for key in (f"{name}.{proj}.weight", f"{name}.{proj}.bias"):
                        if key in state:
                            state[key] = state[key][kept_rows]
                state[f"{name}.o.weight"] = state[f"{name}.o.weight"][:, rows]
                heads.add(len(query_heads))
                kv_heads.add(len(groups))
                head_dim = m.head_dim
            elif isinstance(m, FeedForward):
                idx = kept(name, m.d_ff)
                ins: tuple[str, ...] = ("gate", "up")
                out = "down"
                if not m.gated:
                    ins, out = ("fc1",), "fc2"
                for key in (f"{name}.{lin}.{p}" for lin in ins for p in ("weight", "bias")):
                    if key in state:
                        state[key] = state[key][idx]
                state[f"{name}.{out}.weight"] = state[f"{name}.{out}.weight"][:, idx]
                d_ff.add(len(idx))
        if len(heads) > 1 or len(kv_heads) > 1 or len(d_ff) > 1:
            raise ValueError(f"every layer must keep as many heads and channels (heads {heads}, d_ff {d_ff})")
        a = cfg["transformer"]
        a["heads"], a["d_ff"], a["head_dim"] = heads.pop(), d_ff.pop(), head_dim
        if a.get("kv_heads") is not None:
            a["kv_heads"] = kv_heads.pop()
    small = build_model(cfg, seed=None)
    small.load_state_dict(state)
    small.eval()
    return small, cfg


# --- the exported model -------------------------------------------------------------------

MODEL_FORMAT = "llmc-torch-1"


def save_model(directory, model: nn.Module, model_cfg: dict, label_names: list | None = None, **extra) -> None:
    """Write the whole model to `directory`: model.pt (weights and what rebuilds them)
    and llmc.json (the same metadata, readable without torch). Call it on every rank of
    a tensor-parallel group (gathering the shards is a collective); the rank that
    writes passes the directory, the others None."""
    state = full_state_dict(model)
    if directory is None:
        return
    os.makedirs(directory, exist_ok=True)
    meta = {"format": MODEL_FORMAT, "model": model_cfg, "label_names": label_names, **extra}
    torch.save({**meta, "state_dict": state}, os.path.join(directory, "model.pt"))
    with open(os.path.join(directory, "llmc.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")


def load_model(path, map_location="cpu", tp: TensorParallel = NO_TP) -> tuple[nn.Module, dict]:
    """(model in eval mode, its metadata) from a model.pt or the directory holding it."""
    if os.path.isdir(path):
        path = os.path.join(path, "model.pt")
    saved = torch.load(path, map_location=map_location, weights_only=True)
    if saved.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path}: not an llmc torch model (format {saved.get('format')!r})")
    model = build_model(saved["model"], tp=tp, seed=None)
    load_full_state_dict(model, saved["state_dict"])
    model.eval()
    return model, {k: v for k, v in saved.items() if k != "state_dict"}
