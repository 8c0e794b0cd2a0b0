"""Derived facts: parameter counts, training memory, request latency, replica sizing.

Pure functions of plain numbers (no IR, no ML framework, stdlib only), each returning
a small frozen dataclass with the result and the intermediate values needed to explain
it. They are total on positive inputs: huge values give huge or infinite results, never
ZeroDivisionError or OverflowError; an unknown *name* (kind, precision, optimizer) is a
caller bug and raises ValueError. docs/estimates.md explains every formula and its
source for platform engineers; this docstring is the contract for code.

One module per concern, all imported from here (`estimate.training_memory(...)`):
`params.py` the parameter counts, `memory.py` training memory, `latency.py` the
roofline request latency, `sizing.py` replicas (Erlang C), and `numeric.py` the guards
that keep them total and the formats that print them.

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

from .latency import (
    BANDWIDTH_EFFICIENCY,
    BYTES_PER_PARAM,
    COMPUTE_EFFICIENCY,
    LAYER_LAUNCH_S,
    REQUEST_OVERHEAD_S,
    STEP_SYNC_S,
    LatencyEstimate,
    ServingMemory,
    mlp_latency,
    request_latency,
    request_lengths,
    serving_memory,
)
from .memory import (
    MemoryEstimate,
    activation_bytes_per_layer,
    activation_element_bytes,
    state_bytes_per_param,
    training_memory,
)
from .numeric import format_bytes, format_count, format_seconds
from .params import (
    KINDS,
    MlpParamCount,
    Options,
    ParamCount,
    attention_params,
    decoder_layer_params,
    encoder_layer_params,
    ffn_params,
    kv_width,
    layernorm_params,
    mlp_params,
    transformer_params,
)
from .sizing import EXACT_ERLANG_LOAD, MARGINAL_BATCH_COST, Sizing, erlang_c, replicas_needed

__all__ = [
    "BANDWIDTH_EFFICIENCY",
    "BYTES_PER_PARAM",
    "COMPUTE_EFFICIENCY",
    "EXACT_ERLANG_LOAD",
    "KINDS",
    "LAYER_LAUNCH_S",
    "MARGINAL_BATCH_COST",
    "REQUEST_OVERHEAD_S",
    "STEP_SYNC_S",
    "LatencyEstimate",
    "MemoryEstimate",
    "MlpParamCount",
    "Options",
    "ParamCount",
    "ServingMemory",
    "Sizing",
    "activation_bytes_per_layer",
    "activation_element_bytes",
    "attention_params",
    "decoder_layer_params",
    "encoder_layer_params",
    "erlang_c",
    "ffn_params",
    "format_bytes",
    "format_count",
    "format_seconds",
    "kv_width",
    "layernorm_params",
    "mlp_latency",
    "mlp_params",
    "replicas_needed",
    "request_latency",
    "request_lengths",
    "serving_memory",
    "state_bytes_per_param",
    "training_memory",
    "transformer_params",
]
