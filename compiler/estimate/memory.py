"""Training memory of the most loaded device (docs/estimates.md, "Training memory"):
weights, gradients and optimizer state per parameter (ZeRO's accounting), and
activations per layer (Korthikanti et al. 2022)."""

import math
from typing import NamedTuple

from .numeric import _INF, _clean, _div, _num, _prod, format_bytes, format_count


def state_bytes_per_param(precision: str, optimizer: str, momentum: float = 0.0) -> tuple[float, float, float]:
    """(weights, gradients, optimizer state) bytes per parameter.

    Mixed precision (fp16/bf16) keeps 16-bit weights and gradients and an fp32 master
    copy in the optimizer state (ZeRO, Rajbhandari et al. 2020, §3.1): Adam(W)
    2 + 2 + (4 master + 4 m + 4 v) = 16; fp32 Adam 4 + 4 + 8 = 16. SGD with momentum:
    fp32 4 + 4 + 4, mixed 2 + 2 + (4 master + 4 momentum); SGD without momentum:
    fp32 4 + 4 + 0, mixed 2 + 2 + 4 master.
    """
    if precision not in ("fp32", "fp16", "bf16"):
        raise ValueError(f"unknown training precision {precision!r}")
    if optimizer not in ("adam", "adamw", "sgd"):
        raise ValueError(f"unknown optimizer {optimizer!r}")
    mixed = precision != "fp32"
    w = g = 2.0 if mixed else 4.0
    master = 4.0 if mixed else 0.0
    states = 8.0 if optimizer in ("adam", "adamw") else 4.0 if _num(momentum) > 0 else 0.0
    return w, g, master + states


def activation_bytes_per_layer(
    seq_len, micro_batch, d_model, heads, tensor=1, *, d_ff=None, cross_attention=False
) -> float:
    """Bytes of 16-bit activations one Transformer layer keeps for the backward pass.

    Korthikanti et al. 2022 (arXiv:2205.05198), eq. 1 and 2, without sequence
    parallelism: s b h (10 + 24/t + 5 a s / (h t)), which is s b h (34 + 5 a s / h) at
    t = 1. The 24 is 8 (attention) + 16 (MLP with d_ff = 4h); for another d_ff the MLP
    part is 4 d_ff / h, so in general s b h (10 + (8 + 4 d_ff/h)/t + 5 a s/(h t)).
    A cross-attention block adds its LayerNorm input (2), query input (2), dropout mask
    (1), Q K^T (4), V (2), projection input (2) and the score terms: s b h (5 + 8/t
    + 5 a s/(h t)), i.e. 13 s b h + 5 a s^2 b at t = 1 (the encoder output it reads is
    shared by every decoder layer and counted once, not per layer).
    """
    s, b, h, a, t = (_num(x) for x in (seq_len, micro_batch, d_model, heads, tensor))
    f = 4 * h if d_ff is None else _num(d_ff)
    sbh = _prod(s, b, h)
    score = _div(5 * a * s, h * t)
    per = _clean(sbh * (10 + _div(8 + _div(4 * f, h), t) + score))
    if cross_attention:
        per = _clean(per + sbh * (5 + _div(8, t) + score))
    return per


class MemoryEstimate(NamedTuple):
    """Training memory of the most loaded device, in bytes."""

    params: float
    shards: float  # tensor x pipeline: how many ways weights and states are split (an int, or math.inf)
    precision: str
    optimizer_name: str
    bytes_per_param: tuple  # (weights, gradients, optimizer) per parameter
    weights: float
    gradients: float
    optimizer: float
    activations: float
    activation_layer: float  # one full layer (the larger kind), activation-precision scaled
    activation_layers: float  # layers whose activations the device holds at once (an int, or math.inf)
    activation_extra: float  # embedding dropout, final LN, output layer input, fp32 logits
    activation_checkpointing: bool
    total: float
    device_memory: float
    headroom: float  # (device - total) / device; negative when it does not fit
    fits: bool

    def breakdown(self) -> str:
        return (
            f"weights {format_bytes(self.weights)} + gradients {format_bytes(self.gradients)} + "
            f"optimizer {format_bytes(self.optimizer)} + activations {format_bytes(self.activations)} = "
            f"{format_bytes(self.total)} of {format_bytes(self.device_memory)}"
        )

    def explain(self) -> str:
        w, g, o = self.bytes_per_param
        lines = [
            f"{format_count(self.params)} parameters / {self.shards} model-parallel "
            f"{'shard' if self.shards == 1 else 'shards'}, "
            f"{self.precision} with {self.optimizer_name}: {w:g} + {g:g} + {o:g} = {w + g + o:g} bytes per parameter"
        ]
        if self.activation_checkpointing:
            lines.append(
                f"activations with full recomputation: {self.activation_layers} layer inputs + one layer's "
                f"working set {format_bytes(self.activation_layer)} + embeddings/output "
                f"{format_bytes(self.activation_extra)}"
            )
        else:
            lines.append(
                f"activations: {self.activation_layers} layers (up to {format_bytes(self.activation_layer)} "
                f"each) + embeddings/output {format_bytes(self.activation_extra)}"
            )
        lines.append(self.breakdown())
        return "\n".join(lines)


def training_memory(
    params,
    layers,
    d_model,
    heads,
    seq_len,
    micro_batch,
    precision,
    optimizer,
    momentum,
    tensor,
    pipeline,
    activation_checkpointing,
    device_memory_bytes,
    *,
    cross_attention_layers=0,
    vocab=0,
    d_ff=None,
) -> MemoryEstimate:
    """Peak training memory on the most loaded device (docs/estimates.md, "Training memory").

    `params`: the model's parameter count. `layers`: Transformer layers that hold
    activations, all stacks together (2 x layers for encoder-decoder;
    `ParamCount.transformer_layers`), of which `cross_attention_layers` are decoder
    layers with cross-attention (`ParamCount.cross_attention_layers`). `vocab`: width of
    the per-token logits kept for the loss (the vocabulary for generation and language
    modeling; 0 for classification, whose b x classes logits are negligible). For an MLP
    pass layers = 0. `d_ff` None means 4 * d_model.

    Weights, gradients and optimizer state are split tensor x pipeline ways (data
    parallelism replicates them: Horovod has no ZeRO). Activations: Korthikanti eq. 2
    per layer (see `activation_bytes_per_layer`), x2 for fp32 training. With a 1F1B
    pipeline schedule the first stage holds `pipeline` micro-batches of layers/pipeline
    layers, i.e. all `layers` layers' worth (Korthikanti §4.2.3), so pipelining does not
    shrink activations. With activation checkpointing every layer keeps only its 2 s b h
    input, plus one layer's full working set while it is recomputed.
    """
    w_b, g_b, o_b = state_bytes_per_param(precision, optimizer, momentum)
    p = _num(params)
    t = max(1.0, _num(tensor))
    pp = max(1.0, _num(pipeline))
    shards = _prod(t, pp)
    weights = _div(p * w_b, shards)
    grads = _div(p * g_b, shards)
    opt = _div(p * o_b, shards)

    scale = 2.0 if precision == "fp32" else 1.0
    s, b, h = _num(seq_len), _num(micro_batch), _num(d_model)
    n_layers = max(0.0, _num(layers))
    n_cross = min(n_layers, max(0.0, _num(cross_attention_layers)))
    n_plain = n_layers - n_cross
    enc_layer = scale * activation_bytes_per_layer(s, b, h, heads, t, d_ff=d_ff)
    dec_layer = scale * activation_bytes_per_layer(s, b, h, heads, t, d_ff=d_ff, cross_attention=True)
    largest = dec_layer if n_cross > 0 else (enc_layer if n_layers > 0 else 0.0)
    sbh = _prod(s, b, h)
    if activation_checkpointing:
        layer_acts = _clean(_prod(n_layers, 2 * scale, sbh) + largest)
    else:
        layer_acts = _clean(_prod(n_plain, enc_layer) + _prod(n_cross, dec_layer))
    if pp > 1:
        # The first stage is the most loaded: `pipeline` micro-batches of embedding dropout masks.
        extra = _prod(pp, sbh, scale)
    else:
        # Embedding dropout mask (s b h) + final LN input (2 s b h) + output projection input
        # (2 s b h), and for an encoder feeding a decoder its own dropout mask and final LN input
        # (3 s b h); the logits for the loss are fp32: 4 s b v (Korthikanti §4.3).
        extra_sbh = 5.0 + (3.0 if n_cross > 0 else 0.0)
        extra = _clean(_prod(extra_sbh, scale, sbh) + _prod(4, s, b, vocab))
    acts = _clean(layer_acts + extra)

    total = _clean(weights + grads + opt + acts)
    mem = _num(device_memory_bytes)
    headroom = _clean(1.0 - _div(total, mem)) if not math.isinf(total) else -_INF
    return MemoryEstimate(
        params=p,
        shards=int(shards) if not math.isinf(shards) else shards,
        precision=precision,
        optimizer_name=optimizer,
        bytes_per_param=(w_b, g_b, o_b),
        weights=weights,
        gradients=grads,
        optimizer=opt,
        activations=acts,
        activation_layer=largest,
        activation_layers=n_layers if math.isinf(n_layers) else int(n_layers),
        activation_extra=extra,
        activation_checkpointing=bool(activation_checkpointing),
        total=total,
        device_memory=mem,
        headroom=headroom,
        fits=bool(total <= mem),
    )
