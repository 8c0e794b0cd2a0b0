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


def activation_element_bytes(precision: str, *, cpu: bool = False, dropout=0.1) -> tuple[float, float]:
    """(bytes per activation element, bytes per dropout-mask element) for training in
    `precision` on a GPU, or on a CPU (`cpu`).

    Activations are 2 bytes in fp16/bf16 and 4 in fp32; a CPU trains in fp32 whatever
    the spec says (both runtimes do: no mixed precision without a GPU). A dropout mask
    is 1 byte on a GPU (CUDA's fused dropout keeps a bool mask, Korthikanti's
    accounting) and, on a CPU, as wide as the activation (torch's CPU dropout keeps the
    scaled mask in the input's dtype). With dropout = 0 no mask is kept at all.
    """
    e = 4.0 if cpu or precision == "fp32" else 2.0
    if _num(dropout) <= 0:
        return e, 0.0
    return e, e if cpu else 1.0


def activation_bytes_per_layer(
    seq_len,
    micro_batch,
    d_model,
    heads,
    tensor=1,
    *,
    d_ff=None,
    cross_attention=False,
    act_bytes=2.0,
    mask_bytes=1.0,
    fused_attention=False,
    gated_ffn=False,
    kv_fraction=1.0,
    kv_split=True,
    rms_norm=False,
) -> float:
    """Bytes of activations one Transformer layer of the model zoo keeps for the backward pass.

    Korthikanti et al. 2022 (arXiv:2205.05198), eq. 1 and 2, without sequence
    parallelism, term by term with e = `act_bytes` per activation and m = `mask_bytes`
    per dropout-mask element (their 16-bit accounting is e = 2, m = 1), s = seq_len,
    b = micro_batch, h = d_model, a = heads, t = tensor, f = d_ff (default 4h):

    * not split by t: both LayerNorm inputs and outputs (the QKV input and the FFN
      input) 4e, the two output dropout masks 2m;
    * split by t: Q, K, V and the O-projection input 4e; the GELU input and the second
      FFN layer's input 2e f/h; the zoo's dropout on the FFN hidden layer (Korthikanti's
      MLP has none there) m f/h;
    * the attention scores, split by t: softmax output, its dropout mask and the dropped
      probabilities, (2e + m) a s/h, or with a fused attention kernel (flash: it keeps no
      s x s matrix) only its fp32 log-sum-exp, 4a/h.

    That is s b h (10 + (8 + 5f/h)/t + 5as/(ht)) at e = 2, m = 1: Korthikanti's
    10 + 24/t + 5as/(ht) (d_ff = 4h) plus the zoo's hidden-layer mask 4/t. A
    cross-attention block adds its LayerNorm input and output and its output mask
    (2e + m), Q, K, V and the O input (4e/t) and its scores: s b h (5 + 8/t + 5as/(ht))
    at e = 2, m = 1. The encoder output its K and V read is shared by every decoder
    layer and counted once, with the encoder's extras (`training_memory`).

    The architecture options (docs/estimates.md, "Architecture options"): a gated FFN
    (SwiGLU, GeGLU; Shazeer 2020) keeps the gate's output (the activation's input), the
    activation's output, the up projection's output and their product (the down
    projection's input), 4e f/h instead of 2e f/h. Grouped-query attention with a fused
    kernel keeps K and V of kv_heads, `kv_fraction` = kv_heads / heads of their width;
    unfused attention expands them to heads first and keeps the expanded ones (2e).
    They are split by t only when `kv_split` (kv_heads divides by t; else every rank
    computes them all). RMSNorm as torch computes it (`F.rms_norm`, and the
    x * rsqrt(mean(x²) + eps) * weight of Llama's reference code) keeps its normalized
    rows for the weight's gradient besides its input, e more per norm than LayerNorm,
    whose kernel recomputes them from its input and per-row statistics (`rms_norm`).
    RoPE's rotation multiplies by fixed cos/sin tables and keeps no more than Q and K.
    """
    s, b, h, a, t = (_num(x) for x in (seq_len, micro_batch, d_model, heads, tensor))
    f = 4 * h if d_ff is None else _num(d_ff)
    e, m = _num(act_bytes), _num(mask_bytes)
    sbh = _prod(s, b, h)
    if fused_attention:
        core = _div(4 * a, h)
    else:
        core = _prod(2 * e + m, _div(a * s, h))
    # Grouped-query K and V reach a fused kernel at kv_heads width; the unfused (math)
    # attention expands them to heads before its matmuls, which keep the expanded copies.
    kv = _prod(2 * e, _num(kv_fraction)) if fused_attention else 2 * e
    attention = _div(2 * e + core + (kv if kv_split else 0.0), t) + (0.0 if kv_split else kv)
    ffn = _div(_prod((4 if gated_ffn else 2) * e + m, _div(f, h)), t)
    norm = 3 * e if rms_norm else 2 * e  # a norm's input and output (and RMSNorm's normalized rows)
    per = _clean(sbh * (2 * norm + 2 * m + attention + ffn))
    if cross_attention:
        per = _clean(per + sbh * (norm + m + attention))
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
    replicated_params: float  # K/V projection parameters kept whole on every tensor rank (0: none)
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
                f"activations with full recomputation: {self.activation_layers} layer inputs + the rest of "
                f"one layer's working set {format_bytes(self.activation_layer)} (its input is kept already) + "
                f"embeddings/output {format_bytes(self.activation_extra)}"
            )
        else:
            lines.append(
                f"activations: {self.activation_layers} layers (up to {format_bytes(self.activation_layer)} "
                f"each) + embeddings/output {format_bytes(self.activation_extra)}"
            )
        if self.replicated_params:
            lines.append(
                f"key/value projections replicated on every tensor rank (kv_heads does not divide by tensor): "
                f"{format_count(self.replicated_params)} parameters whole on each"
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
    cpu=False,
    dropout=0.1,
    fused_attention=False,
    gated_ffn=False,
    kv_fraction=1.0,
    replicated_params=0,
    rms_norm=False,
) -> MemoryEstimate:
    """Peak training memory on the most loaded device (docs/estimates.md, "Training memory").

    `params`: the model's parameter count. `layers`: Transformer layers that hold
    activations, all stacks together (2 x layers for encoder-decoder;
    `ParamCount.transformer_layers`), of which `cross_attention_layers` are decoder
    layers with cross-attention (`ParamCount.cross_attention_layers`). `vocab`: width of
    the per-token logits kept for the loss (the vocabulary for generation and language
    modeling; 0 for classification, whose b x classes logits are negligible). For an MLP
    pass layers = 0. `d_ff` None means 4 * d_model. `cpu`: the devices are CPUs, which
    train in fp32 whatever `precision` says, keep dropout masks in the activation dtype,
    and, without dropout, run a fused attention kernel. `dropout`: the model's.

    Weights, gradients and optimizer state are split tensor x pipeline ways (data
    parallelism replicates them: Horovod has no ZeRO). Activations: Korthikanti eq. 2
    per layer, term by term for the zoo's layer (see `activation_bytes_per_layer`) with
    the element sizes of `activation_element_bytes`. With a 1F1B pipeline schedule the
    first stage holds `pipeline` micro-batches of layers/pipeline layers, i.e. all
    `layers` layers' worth (Korthikanti §4.2.3), so pipelining does not shrink
    activations. With activation checkpointing every layer keeps only its s b h input,
    plus, while one layer is recomputed, the rest of that layer's working set.
    """
    if cpu:
        precision = "fp32"
    w_b, g_b, o_b = state_bytes_per_param(precision, optimizer, momentum)
    p = _num(params)
    t = max(1.0, _num(tensor))
    pp = max(1.0, _num(pipeline))
    shards = _prod(t, pp)
    weights = _div(p * w_b, shards)
    grads = _div(p * g_b, shards)
    opt = _div(p * o_b, shards)

    e, m = activation_element_bytes(precision, cpu=cpu, dropout=dropout)
    # A CPU without dropout runs torch's flash-attention kernel; with dropout, and on a
    # GPU (counted as Korthikanti does, unmeasured: see docs/estimates.md), the scores are kept.
    fused = bool(fused_attention) or (bool(cpu) and _num(dropout) <= 0)
    s, b, h = _num(seq_len), _num(micro_batch), _num(d_model)
    n_layers = max(0.0, _num(layers))
    n_cross = min(n_layers, max(0.0, _num(cross_attention_layers)))
    n_plain = n_layers - n_cross
    # `replicated_params`: the K/V projections when kv_heads does not divide by t: whole
    # on every tensor rank (and their activations too).
    replicated = _div(_prod(_num(replicated_params), t - 1.0), _prod(t, pp)) if t > 1 else 0.0
    weights, grads, opt = (_clean(x + _prod(replicated, y)) for x, y in ((weights, w_b), (grads, g_b), (opt, o_b)))
    sizes = {
        "d_ff": d_ff,
        "act_bytes": e,
        "mask_bytes": m,
        "fused_attention": fused,
        "gated_ffn": bool(gated_ffn),
        "kv_fraction": kv_fraction,
        "kv_split": not replicated_params,
        "rms_norm": bool(rms_norm),
    }
    enc_layer = activation_bytes_per_layer(s, b, h, heads, t, **sizes)
    dec_layer = activation_bytes_per_layer(s, b, h, heads, t, cross_attention=True, **sizes)
    largest = dec_layer if n_cross > 0 else (enc_layer if n_layers > 0 else 0.0)
    sbh = _prod(s, b, h)
    if activation_checkpointing:
        # Every layer's input, and while one layer is recomputed the rest of its working
        # set (its input is already among the kept ones).
        working = _clean(largest - _prod(e, sbh))
        layer_acts = _clean(_prod(n_layers, e, sbh) + max(0.0, working))
    else:
        layer_acts = _clean(_prod(n_plain, enc_layer) + _prod(n_cross, dec_layer))
    if pp > 1:
        # The first stage is the most loaded: `pipeline` micro-batches of embedding dropout masks.
        extra = _prod(pp, sbh, m)
    else:
        # Embedding dropout mask (m) + final LN input and output, the output projection's
        # (or the classifier's pooling) input (2e), and for an encoder feeding a decoder
        # its own mask, final LN input and output, which every cross-attention reads
        # (m + 2e); the logits for the loss are fp32: 4 s b v (Korthikanti §4.3).
        extra_sbh = (m + (3 if rms_norm else 2) * e) * (2.0 if n_cross > 0 else 1.0)
        extra = _clean(_prod(extra_sbh, sbh) + _prod(4, s, b, vocab))
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
        replicated_params=replicated_params,
        total=total,
        device_memory=mem,
        headroom=headroom,
        fits=bool(total <= mem),
    )
