"""Derived facts: parameter counts, training memory, request latency, replica sizing.

Pure functions of plain numbers (no IR, no ML framework, stdlib only), each returning
a small frozen dataclass with the result and the intermediate values needed to explain
it. They are total on positive inputs: huge values give huge or infinite results, never
ZeroDivisionError or OverflowError; an unknown *name* (kind, precision, optimizer) is a
caller bug and raises ValueError. docs/estimates.md explains every formula and its
source for platform engineers; this docstring is the contract for code.

The Transformer (the runtime's model zoo, torch and TensorFlow, is built to match this
exactly; `transformer_params` counts it):

* Pre-LN blocks: x + SelfAttn(LN(x)), [decoder of encoder-decoder: x + CrossAttn(LN(x),
  encoder output)], then x + FFN(LN(x)); one final LayerNorm per stack. The decoder's
  self-attention is causal (masking adds no parameters).
* ONE token embedding, vocab x d_model, shared by the encoder, the decoder and the
  output projection (tied: logits = h @ E^T, no output bias).
* Learned positional embeddings, max_len x d_model, one table per stack (the encoder
  and the decoder of an encoder-decoder model each have their own).
* Attention (self or cross): Q, K, V and O projections, each d x d weights + d bias:
  4 (d^2 + d). Heads split d_model; they do not change the count.
* FFN: d x d_ff + d_ff, then d_ff x d + d (activation GELU/ReLU has no parameters).
* LayerNorm: weight and bias, 2 d.
* Encoder layer: self-attention + FFN + 2 LayerNorms.
  Decoder layer with cross-attention: self-attention + cross-attention + FFN + 3 LayerNorms.
  Decoder layer without cross-attention: same parameters as an encoder layer.
* kind "encoder-decoder" (translation, summarization): `layers` encoder layers +
  `layers` decoder layers with cross-attention, a final LayerNorm per stack, tied output.
* kind "encoder" (classification): the encoder stack + a classification head
  d x classes + classes (pooling has no parameters; nothing is tied).
* kind "decoder" (language modeling): `layers` decoder layers WITHOUT cross-attention
  + final LayerNorm + tied output projection (no extra parameters, no output bias).
"""

import math
from collections.abc import Callable
from typing import NamedTuple

KINDS = ("encoder-decoder", "encoder", "decoder")

# Serving efficiency factors and overheads (docs/estimates.md, "Latency").
COMPUTE_EFFICIENCY = 0.5  # achieved / peak dense ops for inference-sized GEMMs, attention, norms
BANDWIDTH_EFFICIENCY = 0.7  # achieved / peak DRAM bandwidth for weight streaming (GEMV-like)
REQUEST_OVERHEAD_S = 1e-3  # per request (or batch): HTTP/gRPC, (de)serialisation, scheduling
LAYER_LAUNCH_S = 20e-6  # per layer per forward pass: floor set by kernel launches (4-8 fused kernels)
STEP_SYNC_S = 30e-6  # per generated token: read the token back to the host, launch the next step
MARGINAL_BATCH_COST = 0.1  # S(B) = S(1)(1 + (B-1) f) when no batch-aware service time is given
EXACT_ERLANG_LOAD = 1e6  # above this offered load (erlangs) Erlang C uses the Halfin-Whitt approximation

_INF = math.inf
# Bytes a weight takes at each precision (plan.py sizes served models and volumes with it).
BYTES_PER_PARAM = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "int8": 1.0}


# --- numeric guards ------------------------------------------------------------------


def _num(x) -> float:
    """float(x), with ints too large for a float becoming +inf (or -inf)."""
    try:
        v = float(x)
    except OverflowError:
        return _INF if x > 0 else -_INF
    return v


def _clean(x: float) -> float:
    """NaN (from inf - inf or 0 * inf) becomes +inf: an estimate that cannot be computed is not small."""
    return _INF if x != x else x


def _div(a: float, b: float) -> float:
    a, b = _num(a), _num(b)
    if b == 0:
        return 0.0 if a == 0 else _INF
    if math.isinf(a) and math.isinf(b):
        return _INF
    return _clean(a / b)


def _prod(*xs) -> float:
    """Product that is 0 when any factor is 0 (even if another is inf)."""
    vals = [_num(x) for x in xs]
    if any(v == 0 for v in vals):
        return 0.0
    r = 1.0
    for v in vals:
        r *= v
    return _clean(r)


def _ceil_clamp(x: float, lo: int, hi: float) -> float:
    """ceil(x) clamped to [lo, hi]; inf and NaN go to hi."""
    x = _num(x)
    if x != x or x >= hi:
        return hi
    if x <= lo:
        return lo
    return max(lo, min(hi, math.ceil(x)))


def format_bytes(n: float) -> str:
    """Decimal units, as the catalog: 3.2 GB, 41.9 MB, 12.0 kB, 512 B."""
    n = _num(n)
    if n != n or math.isinf(n):
        return "inf GB"
    if n >= 1e17:
        return f"{n / 1e9:.3g} GB"
    if n >= 1e8:
        return f"{n / 1e9:.1f} GB"
    if n >= 1e5:
        return f"{n / 1e6:.1f} MB"
    if n >= 1e3:
        return f"{n / 1e3:.1f} kB"
    return f"{n:.0f} B"


def format_seconds(s: float) -> str:
    s = _num(s)
    if s != s or math.isinf(s):
        return "inf s"
    if s >= 1e6:
        return f"{s:.3g} s"
    if s >= 1.0:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} µs"


def format_count(n: float) -> str:
    n = _num(n)
    if math.isinf(n) or n != n:
        return "inf"
    if n >= 1e15:
        return f"{n:.3g}"
    if n >= 1e9:
        return f"{n / 1e9:.2f}B"
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    if n >= 1e3:
        return f"{n / 1e3:.1f}k"
    return f"{n:g}"


# --- parameter counts ----------------------------------------------------------------


def attention_params(d_model):
    """Q, K, V, O: each d x d weights + d bias."""
    return 4 * (d_model * d_model + d_model)


def ffn_params(d_model, d_ff):
    """d x d_ff + d_ff, then d_ff x d + d."""
    return 2 * d_model * d_ff + d_ff + d_model


def layernorm_params(d_model):
    return 2 * d_model


def encoder_layer_params(d_model, d_ff):
    """Self-attention + FFN + 2 LayerNorms (also a decoder layer without cross-attention)."""
    return attention_params(d_model) + ffn_params(d_model, d_ff) + 2 * layernorm_params(d_model)


def decoder_layer_params(d_model, d_ff):
    """Self-attention + cross-attention + FFN + 3 LayerNorms."""
    return 2 * attention_params(d_model) + ffn_params(d_model, d_ff) + 3 * layernorm_params(d_model)


class ParamCount(NamedTuple):
    """A Transformer's parameters, by part. All counts are numbers of parameters."""

    kind: str
    layers: int  # per stack, as written in the spec
    d_model: int
    d_ff: int
    vocab: int
    max_len: int
    classes: int | None
    token_embedding: int  # vocab x d_model, shared and tied
    positional: int  # max_len x d_model per stack, all stacks
    encoder_layer: int  # one encoder layer; 0 if there is no encoder
    decoder_layer: int  # one decoder layer (with cross-attention for encoder-decoder)
    encoder_layers: int
    decoder_layers: int
    final_norms: int  # one final LayerNorm per stack
    head: int  # classification head; 0 when the output projection is tied
    total: int

    @property
    def encoder(self):
        return self.encoder_layers * self.encoder_layer

    @property
    def decoder(self):
        return self.decoder_layers * self.decoder_layer

    @property
    def embeddings(self):
        return self.token_embedding + self.positional

    @property
    def transformer_layers(self):
        """Layers holding activations in training (encoder + decoder)."""
        return self.encoder_layers + self.decoder_layers

    @property
    def cross_attention_layers(self):
        return self.decoder_layers if self.kind == "encoder-decoder" else 0

    def explain(self) -> str:
        parts = [
            f"token embedding {format_count(self.token_embedding)} (shared, tied)",
            f"positional {format_count(self.positional)}",
        ]
        if self.encoder_layers:
            parts.append(f"encoder {self.encoder_layers} x {format_count(self.encoder_layer)}")
        if self.decoder_layers:
            cross = " with cross-attention" if self.kind == "encoder-decoder" else ""
            parts.append(f"decoder {self.decoder_layers} x {format_count(self.decoder_layer)}{cross}")
        parts.append(f"final LayerNorms {format_count(self.final_norms)}")
        if self.head:
            parts.append(f"classifier {format_count(self.head)}")
        return " + ".join(parts) + f" = {format_count(self.total)} parameters"


def transformer_params(kind, layers, d_model, heads, d_ff, vocab, max_len, classes=None) -> ParamCount:
    """Parameters of the Transformer defined in this module's docstring.

    `d_ff` None means 4 * d_model (the language's default). `heads` does not change the
    count (it is accepted so callers pass the architecture as written). kind "encoder"
    needs `classes`; an unknown kind or a missing `classes` raises ValueError.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown transformer kind {kind!r}; expected one of {', '.join(KINDS)}")
    d = d_model
    f = 4 * d if d_ff is None else d_ff
    tok = vocab * d
    enc_l = dec_l = 0
    enc_n = dec_n = 0
    head = 0
    if kind == "encoder-decoder":
        enc_l, dec_l = encoder_layer_params(d, f), decoder_layer_params(d, f)
        enc_n = dec_n = layers
        stacks = 2
    elif kind == "encoder":
        if classes is None:
            raise ValueError("an encoder (classification) model needs `classes`")
        enc_l, enc_n = encoder_layer_params(d, f), layers
        stacks = 1
        head = d * classes + classes
    else:  # decoder-only: no cross-attention
        dec_l, dec_n = encoder_layer_params(d, f), layers
        stacks = 1
    pos = stacks * max_len * d
    norms = stacks * layernorm_params(d)
    total = tok + pos + enc_n * enc_l + dec_n * dec_l + norms + head
    return ParamCount(
        kind=kind,
        layers=layers,
        d_model=d,
        d_ff=f,
        vocab=vocab,
        max_len=max_len,
        classes=classes,
        token_embedding=tok,
        positional=pos,
        encoder_layer=enc_l,
        decoder_layer=dec_l,
        encoder_layers=enc_n,
        decoder_layers=dec_n,
        final_norms=norms,
        head=head,
        total=total,
    )


class MlpParamCount(NamedTuple):
    widths: tuple  # inputs, hidden..., classes
    per_layer: tuple  # (in x out + out) for each dense layer
    total: int

    def explain(self) -> str:
        dims = " -> ".join(str(w) for w in self.widths)
        return (
            f"dense layers {dims}: "
            + " + ".join(format_count(p) for p in self.per_layer)
            + f" = {format_count(self.total)} parameters"
        )


def mlp_params(inputs, hidden, classes) -> MlpParamCount:
    """Dense layers inputs -> hidden[0] -> ... -> classes, each with weights and bias."""
    widths = (inputs, *tuple(hidden or ()), classes)
    per = tuple(widths[i] * widths[i + 1] + widths[i + 1] for i in range(len(widths) - 1))
    return MlpParamCount(widths=widths, per_layer=per, total=sum(per))


# --- training memory -----------------------------------------------------------------


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
    shards: int  # tensor x pipeline: how many ways weights and states are split
    precision: str
    optimizer_name: str
    bytes_per_param: tuple  # (weights, gradients, optimizer) per parameter
    weights: float
    gradients: float
    optimizer: float
    activations: float
    activation_layer: float  # one full layer (the larger kind), activation-precision scaled
    activation_layers: int  # layers whose activations the device holds at once
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


# --- request latency (roofline) ------------------------------------------------------


def request_lengths(kind: str, max_len: int) -> tuple[int, int]:
    """(input tokens, generated tokens) of the request the latency estimate assumes: the worst case.

    An SLA is a tail target and the spec declares no length distribution, so the
    estimate takes the longest request the model accepts: encoder-decoder reads max_len
    source tokens and writes max_len target tokens (both position tables are max_len
    long); an encoder classifies max_len tokens; a decoder-only model generates up to
    its position table, max_len - 1 tokens after a 1-token prompt (generation, not
    the prompt, dominates its latency).
    """
    n = max(1, max_len)
    if kind == "encoder-decoder":
        return n, n
    if kind == "encoder":
        return n, 0
    if kind == "decoder":
        return 1, max(1, n - 1)
    raise ValueError(f"unknown transformer kind {kind!r}")


def _roofline(flops, nbytes, ops_per_s, bytes_per_s, launch_s) -> tuple[float, str]:
    """max(compute time, memory time, launch floor) and which one bounds it."""
    tc = _div(flops, ops_per_s)
    tm = _div(nbytes, bytes_per_s)
    tl = _num(launch_s)
    if tl > tc and tl > tm:
        return tl, "launch"
    if tc >= tm:
        return tc, "compute"
    return tm, "memory"


class LatencyEstimate(NamedTuple):
    """Service time of one request (or one batch of `batch` requests) on one device."""

    total_s: float
    prefill_s: float  # encoder pass / prompt pass
    decode_s: float  # steps x per_step_s
    overhead_s: float  # fixed per-request overhead included in total_s
    steps: int  # generated tokens (0 for classification)
    per_step_s: float  # one decoder step at the mean context length, incl. host sync
    bound: str  # "compute" | "memory" | "launch": what bounds the larger part
    prefill_bound: str
    step_bound: str
    batch: int
    precision: str
    prefill_flops: float
    prefill_bytes: float
    step_flops: float
    step_bytes: float
    achieved_ops_per_s: float
    achieved_bytes_per_s: float

    def explain(self) -> str:
        out = [
            f"prefill {format_seconds(self.prefill_s)} ({self.prefill_bound}-bound: "
            f"{self.prefill_flops:.3g} ops, {format_bytes(self.prefill_bytes)} read)"
        ]
        if self.steps:
            out.append(
                f"{self.steps} decoder steps x {format_seconds(self.per_step_s)} = {format_seconds(self.decode_s)} "
                f"({self.step_bound}-bound: {format_bytes(self.step_bytes)} read per step)"
            )
        out.append(f"overhead {format_seconds(self.overhead_s)}")
        b = f" for a batch of {self.batch}" if self.batch != 1 else ""
        return " + ".join(out) + f" = {format_seconds(self.total_s)}{b} ({self.precision})"


def request_latency(
    kind,
    layers,
    d_model,
    d_ff,
    vocab,
    seq_len,
    out_len,
    precision,
    peak_ops_per_s,
    bandwidth_bytes_per_s,
    *,
    classes=None,
    batch=1,
    compute_efficiency=COMPUTE_EFFICIENCY,
    bandwidth_efficiency=BANDWIDTH_EFFICIENCY,
    request_overhead_s=REQUEST_OVERHEAD_S,
    layer_launch_s=LAYER_LAUNCH_S,
    step_sync_s=STEP_SYNC_S,
) -> LatencyEstimate:
    """Roofline latency of one request (batch 1 by default) of a Transformer (module docstring).

    `seq_len`: input tokens (source, text, or prompt); `out_len`: generated tokens
    (ignored for kind "encoder"); see `request_lengths` for the worst-case defaults.
    `precision` ("fp32" "fp16" "bf16" "int8") sets the bytes per weight (4, 2, 2, 1)
    and, through the caller's `peak_ops_per_s` (`catalog.Device.peak_ops`), the peak.
    KV cache and activations are 16-bit (fp32 when serving fp32).

    Each pass takes max(flops / (peak x compute_efficiency), bytes / (bandwidth x
    bandwidth_efficiency), layers x layer_launch_s). flops = 2 x weights touched x
    tokens + attention 4 x layers x (query tokens) x (context) x d_model. bytes = the
    weights the pass reads (once, whatever the batch) + KV cache. The prefill is the
    encoder over seq_len tokens (plus the decoder's cross-attention K/V projections)
    or the prompt pass; each decoder step reads all decoder weights, the tied output
    projection (vocab x d) and the KV cache, evaluated at the mean context length, and
    pays `step_sync_s` of host round trip. Total = prefill + steps x step + overhead.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown transformer kind {kind!r}")
    if precision not in BYTES_PER_PARAM:
        raise ValueError(f"unknown serving precision {precision!r}")
    L, d, V = _num(layers), _num(d_model), _num(vocab)
    f = 4 * d if d_ff is None else _num(d_ff)
    s = max(1.0, _num(seq_len))
    n = 0.0 if kind == "encoder" else max(0.0, _num(out_len))
    B = max(1.0, _num(batch))
    bpp = BYTES_PER_PARAM[precision]
    kvb = 4.0 if precision == "fp32" else 2.0
    ops = _clean(_num(peak_ops_per_s) * _num(compute_efficiency))
    bw = _clean(_num(bandwidth_bytes_per_s) * _num(bandwidth_efficiency))

    enc_layer = _num(encoder_layer_params(d, f))
    plain_layer = enc_layer
    cross_kv = 2 * (d * d + d)  # cross-attention K and V projections
    dec_layer = _num(decoder_layer_params(d, f))
    ln = 2 * d
    out_proj = _prod(V, d)  # tied output projection, per generated token

    if kind == "encoder-decoder":
        # Prefill: the encoder over s tokens, then every decoder layer's K/V of the encoder output.
        w_pre = _clean(_prod(L, enc_layer) + ln + _prod(L, cross_kv))
        flops_pre = _clean(_prod(2, B, s, w_pre) + _prod(4, B, L, s, s, d))
        kv_write = _prod(2, L, s, d, kvb, B)
        bytes_pre = _clean(w_pre * bpp + kv_write)
        launch_pre = _prod(2, L, layer_launch_s)
        # A step reads the decoder layers except cross K/V (done once), the final LN and the output projection.
        w_step = _clean(_prod(L, dec_layer - cross_kv) + ln + out_proj)
        ctx_self = (n + 1) / 2  # mean self-attention context over the steps
        ctx_cross = s
        launch_step = _prod(L, layer_launch_s)
    elif kind == "encoder":
        w_pre = _clean(_prod(L, enc_layer) + ln + (_prod(d, classes) + _num(classes) if classes else 0.0))
        flops_pre = _clean(_prod(2, B, s, w_pre) + _prod(4, B, L, s, s, d))
        bytes_pre = _clean(w_pre * bpp)
        launch_pre = _prod(L, layer_launch_s)
        w_step = ctx_self = ctx_cross = launch_step = 0.0
    else:  # decoder-only
        w_layers = _clean(_prod(L, plain_layer) + ln)
        flops_pre = _clean(_prod(2, B, s, w_layers) + _prod(4, B, L, s, s, d) + _prod(2, B, out_proj))
        bytes_pre = _clean((w_layers + out_proj) * bpp + _prod(2, L, s, d, kvb, B))
        launch_pre = _prod(L, layer_launch_s)
        w_step = _clean(w_layers + out_proj)
        ctx_self = s + (n + 1) / 2
        ctx_cross = 0.0
        launch_step = _prod(L, layer_launch_s)

    prefill_s, prefill_bound = _roofline(flops_pre, bytes_pre, ops, bw, launch_pre)

    if n > 0:
        ctx = _clean(ctx_self + ctx_cross)
        step_flops = _clean(_prod(2, B, w_step) + _prod(4, B, L, ctx, d))
        step_bytes = _clean(w_step * bpp + _prod(2, B, L, ctx, d, kvb))
        t_step, step_bound = _roofline(step_flops, step_bytes, ops, bw, launch_step)
        per_step = _clean(t_step + _num(step_sync_s))
        decode_s = _prod(n, per_step)
    else:
        step_flops = step_bytes = per_step = decode_s = 0.0
        step_bound = "none"

    overhead = _num(request_overhead_s)
    total = _clean(prefill_s + decode_s + overhead)
    bound = step_bound if decode_s > prefill_s else prefill_bound
    return LatencyEstimate(
        total_s=total,
        prefill_s=prefill_s,
        decode_s=decode_s,
        overhead_s=overhead,
        steps=n if math.isinf(n) else int(n),
        per_step_s=per_step,
        bound=bound,
        prefill_bound=prefill_bound,
        step_bound=step_bound,
        batch=B if math.isinf(B) else int(B),
        precision=precision,
        prefill_flops=flops_pre,
        prefill_bytes=bytes_pre,
        step_flops=step_flops,
        step_bytes=step_bytes,
        achieved_ops_per_s=ops,
        achieved_bytes_per_s=bw,
    )


def mlp_latency(
    inputs,
    hidden,
    classes,
    precision,
    peak_ops_per_s,
    bandwidth_bytes_per_s,
    *,
    batch=1,
    compute_efficiency=COMPUTE_EFFICIENCY,
    bandwidth_efficiency=BANDWIDTH_EFFICIENCY,
    request_overhead_s=REQUEST_OVERHEAD_S,
    layer_launch_s=LAYER_LAUNCH_S,
) -> LatencyEstimate:
    """Roofline latency of one MLP request: 2 x params x batch ops, weights read once."""
    if precision not in BYTES_PER_PARAM:
        raise ValueError(f"unknown serving precision {precision!r}")
    pc = mlp_params(inputs, hidden, classes)
    B = max(1.0, _num(batch))
    p = _num(pc.total)
    ops = _clean(_num(peak_ops_per_s) * _num(compute_efficiency))
    bw = _clean(_num(bandwidth_bytes_per_s) * _num(bandwidth_efficiency))
    flops = _prod(2, B, p)
    act = _prod(B, sum(_num(w) for w in pc.widths), 4.0 if precision == "fp32" else 2.0)
    nbytes = _clean(p * BYTES_PER_PARAM[precision] + act)
    t, bound = _roofline(flops, nbytes, ops, bw, _prod(len(pc.per_layer), layer_launch_s))
    overhead = _num(request_overhead_s)
    return LatencyEstimate(
        total_s=_clean(t + overhead),
        prefill_s=t,
        decode_s=0.0,
        overhead_s=overhead,
        steps=0,
        per_step_s=0.0,
        bound=bound,
        prefill_bound=bound,
        step_bound="none",
        batch=B if math.isinf(B) else int(B),
        precision=precision,
        prefill_flops=flops,
        prefill_bytes=nbytes,
        step_flops=0.0,
        step_bytes=0.0,
        achieved_ops_per_s=ops,
        achieved_bytes_per_s=bw,
    )


# --- replica sizing (Erlang C) -------------------------------------------------------


def _erlang_b_inverse(c: int, a: float) -> float:
    """1 / ErlangB(c, a) for integer c > a > 0, summed from the top so that it stops early.

    1/B = sum_{k=0..c} c! / (k! a^(c-k)) = sum_j prod_{i<j} (c - i) / a. The terms grow
    while c - i > a and then fall off like a Poisson tail, so the sum is cut when a term
    is below 1e-17 of the total (about (c - a) + 9 sqrt(a) terms), or when it passes
    1e300 (B is then 0 to double precision).
    """
    total = term = 1.0
    for i in range(c):
        term *= (c - i) / a
        total += term
        if total > 1e300:
            return _INF
        if term < 1e-17 * total:
            break
    return total


def erlang_c(servers, offered_load) -> float:
    """Probability that an arrival waits in an M/M/c queue: Erlang C(c, a), a = lambda/mu in erlangs.

    1 when a >= c (the queue grows without bound). Exact (from Erlang B,
    C = c B / (c - a (1 - B))) for offered loads up to EXACT_ERLANG_LOAD erlangs; above
    that the Halfin-Whitt approximation C = 1 / (1 + beta Phi(beta) / phi(beta)),
    beta = (c - a) / sqrt(a), which is within a few percent there. A fractional server
    count is rounded down.
    """
    c = _num(servers)
    a = _num(offered_load)
    if a != a or c != c:
        return 1.0
    if a <= 0:
        return 0.0
    if not math.isinf(c):
        c = float(math.floor(c))
    if c <= 0 or a >= c:
        return 1.0
    if math.isinf(c):
        return 0.0
    if a > EXACT_ERLANG_LOAD:
        beta = _div(c - a, math.sqrt(a))
        if beta >= 38.0:
            return 0.0
        phi = math.exp(-beta * beta / 2) / math.sqrt(2 * math.pi)
        Phi = 0.5 * (1 + math.erf(beta / math.sqrt(2)))
        return 1.0 / (1.0 + beta * Phi / phi)
    inv_b = _erlang_b_inverse(int(c), a)
    if math.isinf(inv_b):
        return 0.0
    b = 1.0 / inv_b
    return min(1.0, max(0.0, c * b / (c - a * (1 - b))))


class Sizing(NamedTuple):
    """Replicas needed to serve `arrival_rps` within the target percentile latency."""

    replicas: float  # an int when feasible; math.inf when no replica count meets the target
    feasible: bool
    arrival_rps: float
    target_s: float
    percentile: float
    batch_size: float  # the batch a request rides in at this load and replica count
    batch_service_s: float  # S(batch_size)
    replica_capacity_rps: float  # mu = max_batch_size / S(max_batch_size): a backlogged replica's rate
    utilisation: float  # lambda / (c mu)
    erlang_c: float  # probability a request finds every replica backlogged and queues
    wait_percentile_s: float  # the percentile of that queueing wait
    predicted_s: float  # predicted percentile latency: wait + batch timeout + S(batch_size)
    mean_response_s: float  # C / (c mu - lambda) + timeout + S(batch_size)
    in_system: float  # Little's law: L = lambda x mean response
    model: str
    # Why infeasible: "latency" (even unloaded a request misses the target) or
    # "replicas" (more than max_replicas would be needed); "" when feasible.
    limit: str = ""
    max_replicas: int = 2**62

    @property
    def offered_load(self) -> float:
        """lambda / mu: the replicas' worth of work the traffic brings, before any queueing."""
        return _div(self.arrival_rps, self.replica_capacity_rps)

    def explain(self) -> str:
        q = f"p{self.percentile * 100:g}"
        if not self.feasible and self.limit == "replicas":
            return (
                f"infeasible: {self.arrival_rps:.4g} req/s at {self.replica_capacity_rps:.4g} req/s per replica "
                f"(full batches) is {self.offered_load:.4g} replicas' worth of work before any queueing, "
                f"more than the {self.max_replicas} replicas that can be counted"
            )
        if not self.feasible:
            return (
                f"infeasible: even unloaded a request takes {format_seconds(self.predicted_s)} "
                f"(service {format_seconds(self.batch_service_s)} + batching window), "
                f"above the {q} target {format_seconds(self.target_s)}"
            )
        noun = "replica" if self.replicas == 1 else "replicas"
        return (
            f"{self.replicas} {noun} of {self.replica_capacity_rps:.4g} req/s each (full batches): "
            f"utilisation {self.utilisation:.1%}, P(queue) {self.erlang_c:.3f}, {q} queueing "
            f"{format_seconds(self.wait_percentile_s)} + batching window + batch of {self.batch_size:g} in "
            f"{format_seconds(self.batch_service_s)} = {q} {format_seconds(self.predicted_s)} <= "
            f"{format_seconds(self.target_s)}; {self.in_system:.3g} requests in the system on average"
        )


def replicas_needed(
    arrival_rps,
    service_time_s,
    p99_s,
    max_batch_size,
    batch_timeout_s,
    *,
    batch_service_time: Callable[[int], float] | None = None,
    marginal_batch_cost=MARGINAL_BATCH_COST,
    percentile=0.99,
    shared_queue=True,
    max_replicas: int = 2**62,
) -> Sizing:
    """Smallest replica count c whose predicted `percentile` latency is within `p99_s`.

    Model (docs/estimates.md, "Replicas"). S(B), the time to serve a batch of B, is
    `batch_service_time(B)` when given (e.g. the roofline `request_latency(...,
    batch=B).total_s`), else S(1) (1 + (B - 1) marginal_batch_cost), with S(1) =
    `service_time_s`.

    * Capacity: a backlogged replica's dynamic batcher takes full batches, so it serves
      mu = max_batch_size / S(max_batch_size) requests per second.
    * Queueing: the replicas are the c servers of an M/M/c queue (Poisson arrivals at
      lambda = `arrival_rps`, offered load a = lambda / mu). Erlang C gives the
      probability C(c, a) of having to queue, and P(W > t) = C exp(-(c mu - lambda) t),
      so the wait's percentile q is ln(C / (1 - q)) / (c mu - lambda) (0 when C <= 1 - q).
    * A request also waits up to the batching timeout for its batch to fill and then
      rides in a batch of B = min(max_batch_size, max(1, ceil(lambda / c (timeout +
      S(B))))) requests (those arriving within one window plus one batch service;
      the least fixed point), taking S(B).
    * Predicted latency = queueing wait percentile + timeout + S(B); Little's law gives
      the mean number of requests in the system, L = lambda x mean response.

    The prediction rises with lambda and falls with c, so the smallest c is found by
    bisection and replicas never fall as throughput grows. Infeasible (replicas = inf)
    when S(1) + timeout already exceeds the target: no number of replicas helps
    (limit "latency"); or when more than `max_replicas` would be needed (limit
    "replicas": a Deployment counts its replicas in an int32).

    M/M/c assumes one shared queue: a request goes to whichever replica frees up first
    (least-outstanding-requests load balancing approximates it). `shared_queue=False`
    models independent per-replica queues (random or round-robin routing, e.g. a plain
    Kubernetes Service): c separate M/M/1 queues at lambda / c, where C = lambda / (c mu)
    and the decay rate is mu - lambda / c; it needs more replicas at high utilisation.
    """
    lam = max(0.0, _num(arrival_rps))
    s1 = _num(service_time_s)
    target = _num(p99_s)
    max_b = max(1.0, _num(max_batch_size))
    if not math.isinf(max_b):
        max_b = float(math.floor(max_b))
    T = max(0.0, _num(batch_timeout_s))
    q = min(max(_num(percentile), 0.0), 1.0 - 1e-12)
    f = max(0.0, _num(marginal_batch_cost))

    def S(bs: float) -> float:
        if batch_service_time is not None:
            v = _num(batch_service_time(bs if math.isinf(bs) else int(bs)))
        else:
            v = s1 * (1.0 + _prod(bs - 1.0, f))
        return _INF if v != v else max(v, 0.0)

    queue = "M/M/c (Erlang C, one shared queue)" if shared_queue else "c x M/M/1 (independent per-replica queues)"
    model = (
        f"{queue}; a backlogged replica serves full batches of {max_b:g}; a request waits "
        f"p{q * 100:g} of the Erlang C queueing wait + the {format_seconds(T)} batching window + "
        f"its batch's service time, its batch holding the requests that arrive within one window "
        f"plus one batch service; L = lambda W (Little's law)"
    )

    s_full = S(max_b)
    mu = _div(max_b, s_full)

    def own_batch(c: float) -> float:
        lam_r = _div(lam, c)
        bs = 1.0
        for _ in range(64):
            nb = _ceil_clamp(lam_r * (T + S(bs)), 1, max_b)
            if nb <= bs:
                return bs
            bs = nb
        # Not settled after 64 rounds: bisect for the least B with g(B) <= B (g(max_b) <= max_b always).
        lo, hi = int(bs), (int(max_b) if not math.isinf(max_b) else 2**62)
        for _ in range(200):
            if hi - lo <= 1:
                break
            mid = (lo + hi) // 2
            if _ceil_clamp(lam_r * (T + S(mid)), 1, max_b) <= mid:
                hi = mid
            else:
                lo = mid
        return float(hi)

    def evaluate(c: float) -> dict:
        bs = own_batch(c)
        sb = S(bs)
        a = _div(lam, mu)
        util = _div(a, c)
        if lam == 0:
            base = _clean(T + sb)
            return {"c": c, "bs": bs, "sb": sb, "util": 0.0, "C": 0.0, "w": 0.0, "pred": base, "mean": base, "L": 0.0}
        if not (a < c) or math.isinf(sb):
            return {
                "c": c,
                "bs": bs,
                "sb": sb,
                "util": util,
                "C": 1.0,
                "w": _INF,
                "pred": _INF,
                "mean": _INF,
                "L": _INF,
            }
        if shared_queue:
            C = erlang_c(c, a)
            gap = _clean(c * mu - lam)
        else:
            C = min(1.0, util)
            gap = _clean(mu - _div(lam, c))
        if gap <= 0:
            w = mean_w = _INF
        else:
            w = _clean(math.log(C / (1 - q)) / gap) if (1 - q) < C else 0.0
            mean_w = _div(C, gap)
        pred = _clean(w + T + sb)
        mean = _clean(mean_w + T + sb)
        return {
            "c": c,
            "bs": bs,
            "sb": sb,
            "util": util,
            "C": C,
            "w": w,
            "pred": pred,
            "mean": mean,
            "L": _prod(lam, mean),
        }

    cap = max(1, int(max_replicas))

    def result(ev: dict, feasible: bool, limit: str = "") -> Sizing:
        c = ev["c"]
        return Sizing(
            replicas=(int(c) if feasible and not math.isinf(c) else _INF),
            feasible=feasible,
            arrival_rps=lam,
            target_s=target,
            percentile=q,
            batch_size=ev["bs"],
            batch_service_s=ev["sb"],
            replica_capacity_rps=mu,
            utilisation=ev["util"],
            erlang_c=ev["C"],
            wait_percentile_s=ev["w"],
            predicted_s=ev["pred"],
            mean_response_s=ev["mean"],
            in_system=ev["L"],
            model=model,
            limit=limit,
            max_replicas=cap,
        )

    # The floor: with enough replicas, batches shrink to 1 and nobody queues.
    floor = _clean(S(1.0) + T)
    if not (floor <= target):
        return result(
            {
                "c": _INF,
                "bs": 1.0,
                "sb": S(1.0),
                "util": 0.0,
                "C": 0.0,
                "w": 0.0,
                "pred": floor,
                "mean": floor,
                "L": _prod(lam, floor),
            },
            False,
            "latency",
        )

    # Stability needs c > a = lambda / mu; then double until the target holds, then bisect
    # (the prediction falls monotonically as c grows).
    a = _div(lam, mu)
    if not (a < cap):
        return result(evaluate(_INF), False, "replicas")
    lo = math.floor(a)  # lo replicas do not meet the target (unstable, or lo = 0)
    hi = max(1, lo + 1)
    ev = evaluate(hi)
    step = 1
    while not (ev["pred"] <= target):
        if hi >= cap:
            return result(ev, False, "replicas")
        lo = hi
        hi = min(cap, hi + step)
        step *= 2
        ev = evaluate(hi)
    best = ev
    for _ in range(200):
        if hi - lo <= 1:
            break
        mid = (lo + hi) // 2
        e = evaluate(mid)
        if e["pred"] <= target:
            hi, best = mid, e
        else:
            lo = mid
    return result(best, True)
