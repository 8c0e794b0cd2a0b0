"""Request latency (docs/estimates.md, "Latency"): a roofline of each pass, compute
bound, memory bound or bound by kernel launches, for a Transformer or an MLP."""

import math
from typing import NamedTuple

from .numeric import _clean, _div, _num, _prod, format_bytes, format_seconds
from .params import (
    DEFAULT,
    KINDS,
    Options,
    decoder_layer_params,
    encoder_layer_params,
    kv_width,
    layernorm_params,
    mlp_params,
)

# Serving efficiency factors and overheads (docs/estimates.md, "Latency").
COMPUTE_EFFICIENCY = 0.5  # achieved / peak dense ops for inference-sized GEMMs, attention, norms
BANDWIDTH_EFFICIENCY = 0.7  # achieved / peak DRAM bandwidth for weight streaming (GEMV-like)
REQUEST_OVERHEAD_S = 1e-3  # per request (or batch): HTTP/gRPC, (de)serialisation, scheduling
LAYER_LAUNCH_S = 20e-6  # per layer per forward pass: floor set by kernel launches (4-8 fused kernels)
STEP_SYNC_S = 30e-6  # per generated token: read the token back to the host, launch the next step

# Bytes a weight takes at each precision (plan.py sizes served models and volumes with it).
BYTES_PER_PARAM = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "int8": 1.0}


def request_lengths(
    kind: str, max_len: int, input_tokens: int | None = None, output_tokens: int | None = None
) -> tuple[int, int]:
    """(input tokens, generated tokens) of the request the latency estimate plans the p99 for.

    The spec's `serve.request` states them (the request at the tail of the traffic);
    what it leaves out is the worst case, the longest request the model accepts:
    encoder-decoder reads max_len source tokens and writes max_len target tokens (both
    position tables are max_len long); an encoder classifies max_len tokens and
    generates none; a decoder-only model generates up to its position table, max_len - 1
    tokens after a 1-token prompt (generation, not the prompt, dominates its latency),
    or max_len - input_tokens after a stated prompt.
    """
    n = max(1, max_len)
    if kind == "encoder-decoder":
        return input_tokens or n, output_tokens or n
    if kind == "encoder":
        return input_tokens or n, 0
    if kind == "decoder":
        prompt = input_tokens or 1
        return prompt, output_tokens or max(1, n - prompt)
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
    steps: float  # generated tokens (0 for classification): an int, or math.inf
    per_step_s: float  # one decoder step at the mean context length, incl. host sync
    bound: str  # "compute" | "memory" | "launch": what bounds the larger part
    prefill_bound: str
    step_bound: str
    batch: float  # an int, or math.inf
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
    heads=1,
    options: Options = DEFAULT,
    compute_efficiency=COMPUTE_EFFICIENCY,
    bandwidth_efficiency=BANDWIDTH_EFFICIENCY,
    request_overhead_s=REQUEST_OVERHEAD_S,
    layer_launch_s=LAYER_LAUNCH_S,
    step_sync_s=STEP_SYNC_S,
    row_overhead_s=0.0,
    row_launch_s=0.0,
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

    With the architecture `options` (docs/estimates.md, "Architecture options") the
    layers are counted as params.py counts them, and the KV cache holds kv_heads heads:
    2 x layers x context x kv_heads x d_model / heads values per sequence.

    Devices whose framework work grows with the batch (catalog.Device, the `cpu` entry)
    add `row_launch_s` per row to each layer's launch floor and `row_overhead_s` per row
    to the request overhead; both are 0 by default.
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
    layer_pass = _clean(_num(layer_launch_s) + _prod(B, row_launch_s))  # one layer's launch floor, this batch

    o = options
    enc_layer = _num(encoder_layer_params(d, f, heads, o))
    plain_layer = enc_layer
    kvw = _num(kv_width(d_model, heads, o))  # the K (and V) width: the KV cache's per token and layer
    cross_kv = 2 * (d * kvw + (kvw if o.qkv_bias else 0))  # cross-attention K and V projections
    dec_layer = _num(decoder_layer_params(d, f, heads, o))
    ln = _num(layernorm_params(d, o))
    out_proj = _prod(V, d)  # tied output projection, per generated token

    if kind == "encoder-decoder":
        # Prefill: the encoder over s tokens, then every decoder layer's K/V of the encoder output.
        w_pre = _clean(_prod(L, enc_layer) + ln + _prod(L, cross_kv))
        flops_pre = _clean(_prod(2, B, s, w_pre) + _prod(4, B, L, s, s, d))
        kv_write = _prod(2, L, s, kvw, kvb, B)
        bytes_pre = _clean(w_pre * bpp + kv_write)
        launch_pre = _prod(2, L, layer_pass)
        # A step reads the decoder layers except cross K/V (done once), the final LN and the output projection.
        w_step = _clean(_prod(L, dec_layer - cross_kv) + ln + out_proj)
        ctx_self = (n + 1) / 2  # mean self-attention context over the steps
        ctx_cross = s
        launch_step = _prod(L, layer_pass)
    elif kind == "encoder":
        w_pre = _clean(_prod(L, enc_layer) + ln + (_prod(d, classes) + _num(classes) if classes else 0.0))
        flops_pre = _clean(_prod(2, B, s, w_pre) + _prod(4, B, L, s, s, d))
        bytes_pre = _clean(w_pre * bpp)
        launch_pre = _prod(L, layer_pass)
        w_step = ctx_self = ctx_cross = launch_step = 0.0
    else:  # decoder-only
        w_layers = _clean(_prod(L, plain_layer) + ln)
        flops_pre = _clean(_prod(2, B, s, w_layers) + _prod(4, B, L, s, s, d) + _prod(2, B, out_proj))
        bytes_pre = _clean((w_layers + out_proj) * bpp + _prod(2, L, s, kvw, kvb, B))
        launch_pre = _prod(L, layer_pass)
        w_step = _clean(w_layers + out_proj)
        ctx_self = s + (n + 1) / 2
        ctx_cross = 0.0
        launch_step = _prod(L, layer_pass)

    prefill_s, prefill_bound = _roofline(flops_pre, bytes_pre, ops, bw, launch_pre)

    if n > 0:
        ctx = _clean(ctx_self + ctx_cross)
        step_flops = _clean(_prod(2, B, w_step) + _prod(4, B, L, ctx, d))
        step_bytes = _clean(w_step * bpp + _prod(2, B, L, ctx, kvw, kvb))
        t_step, step_bound = _roofline(step_flops, step_bytes, ops, bw, launch_step)
        per_step = _clean(t_step + _num(step_sync_s))
        decode_s = _prod(n, per_step)
    else:
        step_flops = step_bytes = per_step = decode_s = 0.0
        step_bound = "none"

    overhead = _clean(_num(request_overhead_s) + _prod(B, row_overhead_s))
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
    row_overhead_s=0.0,
    row_launch_s=0.0,
) -> LatencyEstimate:
    """Roofline latency of one MLP request: 2 x params x batch ops, weights read once
    (the row terms as in `request_latency`)."""
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
    layer_pass = _clean(_num(layer_launch_s) + _prod(B, row_launch_s))
    t, bound = _roofline(flops, nbytes, ops, bw, _prod(len(pc.per_layer), layer_pass))
    overhead = _clean(_num(request_overhead_s) + _prod(B, row_overhead_s))
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


class ServingMemory(NamedTuple):
    """Device memory of one serving device: its model instances' weights and the
    key/value caches of the batches they run at once."""

    weights: float  # bytes of the served weights, per instance
    kv_cache: float  # bytes of one batch's key/value cache at the request's full context
    batch: float  # an int, or math.inf
    context: float  # tokens each sequence's cache holds (prompt or source, and the generated ones)
    instances: int
    total: float
    device_memory: float
    fits: bool

    def explain(self) -> str:
        cache = (
            f"{format_bytes(self.kv_cache)} for {self.batch} request{'s' if self.batch != 1 else ''} "
            f"of {_count(self.context)} tokens + weights {format_bytes(self.weights)}"
        )
        if self.instances != 1:
            cache = f"{self.instances} instances x ({cache})"
        free = 1.0 - self.total / self.device_memory if self.device_memory else 0.0
        verdict = f"{free:.0%} free" if self.fits else "does not fit"
        return f"{cache} = {format_bytes(self.total)} of {format_bytes(self.device_memory)} ({verdict})"


def _count(x: float) -> str:
    return "inf" if math.isinf(x) else f"{int(x):,}"


def serving_memory(
    kind,
    layers,
    d_model,
    heads,
    params,
    precision,
    input_tokens,
    output_tokens,
    batch,
    device_memory_bytes,
    *,
    options: Options = DEFAULT,
    instances=1,
) -> ServingMemory:
    """The served weights at `precision` and the key/value cache of `batch` requests
    of `input_tokens` + `output_tokens` tokens, for each of `instances` model instances
    (docs/estimates.md, "Serving memory"). The cache holds K and V of kv_heads heads,
    16-bit (fp32 when serving fp32), for every layer that attends to earlier tokens: the
    decoder's self-attention over the prompt and the generated tokens, and an
    encoder-decoder's cross-attention over the source. An encoder keeps no cache. The
    activations of one pass are transient and left out."""
    if precision not in BYTES_PER_PARAM:
        raise ValueError(f"unknown serving precision {precision!r}")
    weights = _prod(_num(params), BYTES_PER_PARAM[precision])
    context = 0.0 if kind == "encoder" else max(1.0, _num(input_tokens)) + max(0.0, _num(output_tokens))
    kvb = 4.0 if precision == "fp32" else 2.0
    B = max(1.0, _num(batch))
    kv = _prod(2, _num(layers), context, _num(kv_width(d_model, heads, options)), kvb, B)
    n = max(1, int(instances))
    total = _clean(_prod(n, weights + kv))
    memory = _num(device_memory_bytes)
    return ServingMemory(
        weights=weights,
        kv_cache=kv,
        batch=B if math.isinf(B) else int(B),
        context=context,
        instances=n,
        total=total,
        device_memory=memory,
        fits=bool(total <= memory),
    )
