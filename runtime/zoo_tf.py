"""The TensorFlow model zoo (Keras 3 layers and Models, TensorFlow backend).

The same architectures as zoo_torch.py, to the letter of compiler/estimate/'s
docstring (pre-LN, one tied token embedding, a learned positional table per stack,
biases everywhere, a final LayerNorm per stack; kinds encoder-decoder, encoder with a
classification head on the masked mean of the encoder output, and decoder; and the
MLP), so `model.count_params()` equals `transformer_params(...)` / `mlp_params(...)`
(tests/integration/test_zoo.py). Tensor parallelism is torch-only: TensorFlow models train
data-parallel with `hvd.DistributedGradientTape`.

That is the default. The model block's architecture options (DEFAULT_OPTIONS, the same
names, values and checks as zoo_torch's; a block without them builds exactly the model
above, with the same weight names) change it as they change the torch model:

* `ffn` "swiglu" / "geglu": gated FFN down(act(gate(x)) * up(x)), SiLU / exact GELU
  (Dense layers `gate`, `up`, `down` in place of `fc1`, `fc2`);
* `positions` "rope" (rotary Q and K in self-attention, NeoX/Llama rotate_half layout,
  `rope_base`; cross-attention rotates neither its queries nor the memory's keys) or
  "none": no positional tables (no `pos` weight);
* `norm` "rmsnorm" (weight `scale` only, eps 1e-5, computed in float32);
  `norm_position` "post": x = N(x + Sub(x)), the final norm per stack kept;
* `kv_heads`: grouped-query attention, K and V kv_heads x head_dim wide in every
  attention block (cross-attention too); query head i reads K/V head
  i // (heads / kv_heads), without copying K and V per query head;
* `qkv_bias`, `out_bias`, `ffn_bias` false: those Dense layers without biases (the
  classifier head keeps its bias);
* `tie_embeddings` false: an output Dense layer `output` (d_model x vocab kernel, no
  bias) of its own, for the kinds that decode (an encoder has no output projection).

Structured pruning (`unit_scores`, `units_to_keep`, `shrink`) is zoo_torch's: whole
heads (under grouped-query attention, whole groups: a key/value head with its query
heads), FFN channels (gated: gate and up columns with the down rows) and hidden units
removed, `head_dim` recorded in the model block (and the kept `kv_heads`).

Inputs are dicts of int32/float32 tensors named as data.py names its arrays:
{"source", "target"} (target = BOS + ... : the decoder input), {"text"}, {"tokens"},
{"features"}. `build_model` calls the model once so every weight exists (Keras
creates weights lazily) before broadcasting or restoring them.

The exported SavedModel (`save_model`) has a `serving_default` signature that TF
Serving and the evaluate stage call:

    mlp          features float32 [batch, inputs]  -> logits, probabilities [batch, classes]
    encoder      text int32 [batch, length]         -> logits, probabilities [batch, classes]
    enc-decoder  source int32 [batch, length]       -> tokens int32 [batch, max_len] (greedy, PAD after EOS)
    decoder      tokens int32 [batch, length]       -> tokens int32 [batch, max_len] (the prompt's continuation)

next to `model.weights.h5` (Keras weights, for `load_model`: pruning and distillation
need the Keras model, not the SavedModel) and `llmc.json` (the model block and label
names).
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from .arch_options import DEFAULT_OPTIONS, FFNS, NORM_EPS, check_options
from .tokenizer import BOS, EOS, PAD

INIT_STD = 0.02
NEG_INF = -1e9  # masked attention scores (softmax runs in float32)


def _normal(std):
    return keras.initializers.RandomNormal(0.0, std)


class RMSNorm(layers.Layer):
    """x / sqrt(mean(x^2) + eps) * scale: d parameters, no bias, computed in float32
    (under mixed precision too, as zoo_torch.RMSNorm)."""

    def __init__(self, epsilon=NORM_EPS, **kw):
        super().__init__(**kw)
        self.epsilon = epsilon

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="scale")
        super().build(input_shape)

    def call(self, x):
        h = tf.cast(x, tf.float32)
        h = h * tf.math.rsqrt(tf.reduce_mean(tf.square(h), -1, keepdims=True) + self.epsilon)
        return tf.cast(h, x.dtype) * tf.cast(self.scale, x.dtype)


def make_norm(norm: str, name: str):
    if norm == "rmsnorm":
        return RMSNorm(name=name)
    return layers.LayerNormalization(epsilon=NORM_EPS, name=name)


def rotate_half(x):
    x1, x2 = tf.split(x, 2, axis=-1)
    return tf.concat([-x2, x1], -1)


def rope_angles(positions, head_dim: int, base: float):
    """(cos, sin) [T, head_dim] of the rotary embedding at `positions` [T] (float32):
    pair i of the head dimension (i and i + head_dim/2, the NeoX/Llama layout) turns by
    position x base^(-2i/head_dim), as zoo_torch.rope_angles."""
    inv_freq = 1.0 / tf.pow(tf.constant(float(base), tf.float32), tf.range(0, head_dim, 2, dtype=tf.float32) / head_dim)
    angles = tf.cast(positions, tf.float32)[:, None] * inv_freq[None, :]
    emb = tf.concat([angles, angles], -1)
    return tf.cos(emb), tf.sin(emb)


def apply_rope(x, cos, sin):
    """Rotate x [..., T, head_dim] by the angles of `rope_angles` (a rotation: norms kept)."""
    return x * tf.cast(cos, x.dtype) + rotate_half(x) * tf.cast(sin, x.dtype)


class Attention(layers.Layer):
    """Q, K, V, O projections (with biases: 4 (d^2 + d) parameters).

    Q and O are heads x head_dim wide; K and V kv_heads x head_dim (grouped-query
    attention: each group of heads / kv_heads query heads shares one K/V head; None is
    kv_heads = heads). `rope_base` rotates Q and K by their positions (self-attention
    only)."""

    def __init__(
        self,
        d_model,
        heads,
        dropout,
        out_std=INIT_STD,
        head_dim=None,
        kv_heads=None,
        qkv_bias=True,
        out_bias=True,
        rope_base=None,
        **kw,
    ):
        super().__init__(**kw)
        if head_dim is None:  # a structurally pruned model keeps its head_dim with fewer heads
            if d_model % heads:
                raise ValueError(f"d_model = {d_model} is not a multiple of heads = {heads}")
            head_dim = d_model // heads
        kv_heads = heads if kv_heads is None else int(kv_heads)
        if kv_heads < 1 or heads % kv_heads:
            raise ValueError(f"heads = {heads} is not a multiple of kv_heads = {kv_heads}")
        if rope_base is not None and head_dim % 2:
            raise ValueError(f"rotary positions need an even head_dim, not {head_dim}")
        self.heads, self.kv_heads, self.head_dim, self.rope_base = heads, kv_heads, head_dim, rope_base
        inner, kv_inner = heads * head_dim, kv_heads * head_dim
        self.q = layers.Dense(inner, use_bias=qkv_bias, kernel_initializer=_normal(INIT_STD), name="q")
        self.k = layers.Dense(kv_inner, use_bias=qkv_bias, kernel_initializer=_normal(INIT_STD), name="k")
        self.v = layers.Dense(kv_inner, use_bias=qkv_bias, kernel_initializer=_normal(INIT_STD), name="v")
        self.o = layers.Dense(d_model, use_bias=out_bias, kernel_initializer=_normal(out_std), name="o")
        self.drop = layers.Dropout(dropout)

    def build(self, input_shape):
        # Explicit builds: without them Keras traces every call symbolically to find the
        # sublayers' shapes, which costs seconds per model.
        d = input_shape[-1]
        for dense in (self.q, self.k, self.v):
            dense.build((None, d))
        self.o.build((None, self.heads * self.head_dim))
        super().build(input_shape)

    def _split(self, x, heads):
        b, t = tf.shape(x)[0], tf.shape(x)[1]
        return tf.transpose(tf.reshape(x, (b, t, heads, self.head_dim)), (0, 2, 1, 3))

    def call(self, x, memory=None, key_mask=None, causal=False, training=None):
        kv = x if memory is None else memory
        q = self._split(self.q(x), self.heads)
        k, v = self._split(self.k(kv), self.kv_heads), self._split(self.v(kv), self.kv_heads)
        if self.rope_base is not None and memory is None:
            cos, sin = rope_angles(tf.range(tf.shape(q)[2]), self.head_dim, self.rope_base)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        b, t, s = tf.shape(q)[0], tf.shape(q)[2], tf.shape(k)[2]
        group = self.heads // self.kv_heads
        if group > 1:
            # Each K/V head meets the queries of its group stacked along the time axis
            # ([B, kv, group x T, hd]; the query heads of a group are adjacent), so K and V
            # are not copied once per query head.
            q = tf.reshape(q, (b, self.kv_heads, group * t, self.head_dim))
        scores = tf.matmul(tf.cast(q, tf.float32), tf.cast(k, tf.float32), transpose_b=True) / math.sqrt(self.head_dim)
        if group > 1:
            scores = tf.reshape(scores, (b, self.heads, t, s))
        if key_mask is not None:
            scores = tf.where(key_mask[:, None, None, :], scores, NEG_INF)
        if causal:
            allowed = tf.cast(tf.linalg.band_part(tf.ones((s, s)), -1, 0), tf.bool)
            scores = tf.where(allowed[None, None], scores, NEG_INF)
        p = self.drop(tf.nn.softmax(scores, axis=-1), training=training)
        if group > 1:
            p = tf.reshape(p, (b, self.kv_heads, group * t, s))
        out = tf.matmul(tf.cast(p, v.dtype), v)
        if group > 1:
            out = tf.reshape(out, (b, self.heads, t, self.head_dim))
        return self.o(tf.reshape(tf.transpose(out, (0, 2, 1, 3)), (b, t, self.heads * self.head_dim)))


class Layer(layers.Layer):
    """One layer: self-attention [+ cross-attention] + FFN, each with a residual.
    Pre-norm (the default): x + Sub(N x); post-norm: N(x + Sub x). The FFN is "gelu"
    (fc1, fc2) or gated, "swiglu" / "geglu": down(act(gate x) * up x)."""

    def __init__(self, d_model, heads, d_ff, dropout, cross, out_std, head_dim=None, options=None, **kw):
        super().__init__(**kw)
        o = {**DEFAULT_OPTIONS, **(options or {})}
        if o["ffn"] not in FFNS:
            raise ValueError(f"unknown ffn {o['ffn']!r}; expected one of {', '.join(FFNS)}")
        attn = {"kv_heads": o["kv_heads"], "qkv_bias": o["qkv_bias"], "out_bias": o["out_bias"]}
        rope = float(o["rope_base"]) if o["positions"] == "rope" else None
        self.cross, self.d_ff, self.ffn = cross, d_ff, o["ffn"]
        self.gated, self.pre_norm = o["ffn"] != "gelu", o["norm_position"] == "pre"
        self.ln1 = make_norm(o["norm"], "ln1")
        self.self_attn = Attention(d_model, heads, dropout, out_std, head_dim, rope_base=rope, name="self_attn", **attn)
        if cross:  # no rotation in cross-attention: neither the queries nor the memory's keys
            self.ln_cross = make_norm(o["norm"], "ln_cross")
            self.cross_attn = Attention(d_model, heads, dropout, out_std, head_dim, name="cross_attn", **attn)
        self.ln2 = make_norm(o["norm"], "ln2")
        bias = o["ffn_bias"]
        if self.gated:
            self.gate = layers.Dense(d_ff, use_bias=bias, kernel_initializer=_normal(INIT_STD), name="gate")
            self.up = layers.Dense(d_ff, use_bias=bias, kernel_initializer=_normal(INIT_STD), name="up")
            self.down = layers.Dense(d_model, use_bias=bias, kernel_initializer=_normal(out_std), name="down")
        else:
            self.fc1 = layers.Dense(d_ff, use_bias=bias, kernel_initializer=_normal(INIT_STD), name="fc1")
            self.fc2 = layers.Dense(d_model, use_bias=bias, kernel_initializer=_normal(out_std), name="fc2")
        self.drop = layers.Dropout(dropout)
        self.ffn_drop = layers.Dropout(dropout)

    def build(self, input_shape):
        d = input_shape[-1]
        norms = [self.ln1, self.ln2] + ([self.ln_cross] if self.cross else [])
        for part in norms + [self.self_attn] + ([self.cross_attn] if self.cross else []):
            part.build((None, None, d))
        ins, out = ([self.gate, self.up], self.down) if self.gated else ([self.fc1], self.fc2)
        for dense in ins:
            dense.build((None, d))
        out.build((None, self.d_ff))
        super().build(input_shape)

    def _feed_forward(self, x, training):
        if self.gated:
            gate = self.gate(x)
            gate = tf.nn.silu(gate) if self.ffn == "swiglu" else tf.nn.gelu(gate, approximate=False)
            return self.down(self.ffn_drop(gate * self.up(x), training=training))
        h = self.ffn_drop(tf.nn.gelu(self.fc1(x), approximate=False), training=training)
        return self.fc2(h)

    def call(self, x, key_mask=None, causal=False, memory=None, memory_mask=None, training=None):
        if not self.pre_norm:
            x = self.ln1(
                x + self.drop(self.self_attn(x, key_mask=key_mask, causal=causal, training=training), training=training)
            )
            if self.cross:
                cross = self.cross_attn(x, memory=memory, key_mask=memory_mask, training=training)
                x = self.ln_cross(x + self.drop(cross, training=training))
            return self.ln2(x + self.drop(self._feed_forward(x, training), training=training))
        x = x + self.drop(
            self.self_attn(self.ln1(x), key_mask=key_mask, causal=causal, training=training), training=training
        )
        if self.cross:
            x = x + self.drop(
                self.cross_attn(self.ln_cross(x), memory=memory, key_mask=memory_mask, training=training),
                training=training,
            )
        return x + self.drop(self._feed_forward(self.ln2(x), training), training=training)


class Stack(layers.Layer):
    """[A learned positional table,] the layers and a final norm (post-norm too)."""

    def __init__(
        self, layers_, d_model, heads, d_ff, max_len, dropout, cross, causal, head_dim=None, options=None, **kw
    ):
        super().__init__(**kw)
        o = {**DEFAULT_OPTIONS, **(options or {})}
        out_std = INIT_STD / math.sqrt(2 * layers_)
        self.max_len, self.d_model, self.causal = max_len, d_model, causal
        self.learned_positions = o["positions"] == "learned"
        self.blocks = [
            Layer(d_model, heads, d_ff, dropout, cross, out_std, head_dim, o, name=f"layer_{i}") for i in range(layers_)
        ]
        self.norm = make_norm(o["norm"], "norm")
        self.drop = layers.Dropout(dropout)

    def build(self, input_shape):
        if self.learned_positions:
            self.pos = self.add_weight(shape=(self.max_len, self.d_model), initializer=_normal(INIT_STD), name="pos")
        for block in self.blocks:
            block.build((None, None, self.d_model))
        self.norm.build((None, None, self.d_model))
        super().build(input_shape)

    def call(self, x, key_mask=None, memory=None, memory_mask=None, training=None):
        if self.learned_positions:
            x = x + self.pos[: tf.shape(x)[1]][None]
        h = self.drop(x, training=training)
        for block in self.blocks:
            h = block(
                h, key_mask=key_mask, causal=self.causal, memory=memory, memory_mask=memory_mask, training=training
            )
        return self.norm(h)


class Transformer(keras.Model):
    """`options` (keyword arguments): the architecture options of DEFAULT_OPTIONS (ffn,
    positions, rope_base, norm, norm_position, kv_heads, qkv_bias, out_bias, ffn_bias,
    tie_embeddings); those not given keep today's model. Other keyword arguments are
    keras.Model's (`name`)."""

    def __init__(
        self,
        kind,
        layers,
        d_model,
        heads,
        vocab,
        d_ff=None,
        max_len=512,
        dropout=0.1,
        classes=None,
        head_dim=None,
        **kw,
    ):
        options = {name: kw.pop(name) for name in list(kw) if name in DEFAULT_OPTIONS}
        super().__init__(**kw)
        if kind not in ("encoder-decoder", "encoder", "decoder"):
            raise ValueError(f"unknown transformer kind {kind!r}")
        o = check_options(options)
        d_ff = 4 * d_model if d_ff is None else d_ff
        self.kind, self.vocab, self.max_len = kind, vocab, max_len
        self.options = o
        self.tok = keras.layers.Embedding(vocab, d_model, embeddings_initializer=_normal(INIT_STD), name="tok")
        args = (layers, d_model, heads, d_ff, max_len, dropout)
        if kind in ("encoder-decoder", "encoder"):
            self.encoder = Stack(*args, cross=False, causal=False, head_dim=head_dim, options=o, name="encoder")
        if kind in ("encoder-decoder", "decoder"):
            cross = kind == "encoder-decoder"
            self.decoder = Stack(*args, cross=cross, causal=True, head_dim=head_dim, options=o, name="decoder")
        if kind == "encoder":
            self.head = keras.layers.Dense(classes or 2, kernel_initializer=_normal(INIT_STD), name="head")
        # An untied output projection (no bias); an encoder has none. (`output` is a
        # keras.Model property, hence the attribute's other name.)
        self.untied_output = None
        if not o["tie_embeddings"] and kind != "encoder":
            self.untied_output = keras.layers.Dense(
                vocab, use_bias=False, kernel_initializer=_normal(INIT_STD), name="output"
            )

    def build(self, input_shape=None):
        self.tok.build((None, None))
        d = self.tok.output_dim
        for stack in (getattr(self, "encoder", None), getattr(self, "decoder", None)):
            if stack is not None:
                stack.build((None, None, d))
        if self.kind == "encoder":
            self.head.build((None, d))
        if self.untied_output is not None:
            self.untied_output.build((None, d))
        super().build(input_shape)

    def call(self, inputs, training=None):
        if self.kind == "encoder-decoder":
            memory, mask = self.encode(inputs["source"], training)
            return self.decode(inputs["target"], memory, mask, training)
        if self.kind == "encoder":
            memory, mask = self.encode(inputs["text"], training)
            m = tf.cast(mask, memory.dtype)[..., None]
            pooled = tf.reduce_sum(memory * m, 1) / tf.maximum(tf.reduce_sum(m, 1), 1.0)
            return self.head(pooled)
        return self.decode(inputs["tokens"], training=training)

    def encode(self, ids, training=None):
        mask = tf.not_equal(ids, PAD)
        first = tf.one_hot(tf.zeros(tf.shape(ids)[0], tf.int32), tf.shape(ids)[1], on_value=True, off_value=False)
        mask = tf.logical_or(mask, first)  # an empty input keeps one key (no all -inf row)
        return self.encoder(self.tok(ids), key_mask=mask, training=training), mask

    def decode(self, ids, memory=None, memory_mask=None, training=None):
        h = self.decoder(self.tok(ids), memory=memory, memory_mask=memory_mask, training=training)
        if self.untied_output is not None:
            return self.untied_output(h)
        return tf.matmul(h, tf.cast(self.tok.embeddings, h.dtype), transpose_b=True)  # tied, no bias

    def generate(self, ids, max_new_tokens=None):
        """Greedy decoding, batched, stopping at EOS; same contract as the torch zoo.

        A fixed [batch, max_len] buffer is decoded in full at every step (the causal
        mask keeps later PADs from changing earlier positions), so the loop has static
        shapes and traces into a SavedModel signature. Returns [batch, max_len] ids of
        the generated continuation (EOS included, PAD after it).
        """
        if self.kind == "encoder":
            raise ValueError("an encoder (classification) model does not generate")
        # One traced function (autograph turns the loop into a while_loop), whether called
        # eagerly or while another function is traced (a SavedModel signature).
        fn = self.__dict__.get("_greedy_fn")
        if fn is None:
            fn = tf.function(
                self._greedy, input_signature=[tf.TensorSpec((None, None), tf.int32), tf.TensorSpec((), tf.int32)]
            )
            self.__dict__["_greedy_fn"] = fn
        steps = self.max_len if max_new_tokens is None else max_new_tokens
        return fn(tf.cast(ids, tf.int32), tf.cast(steps, tf.int32))

    def _greedy(self, ids, max_new_tokens):
        b = tf.shape(ids)[0]
        L = self.max_len
        if self.kind == "encoder-decoder":
            memory, mask = self.encode(ids, False)
            start = tf.ones((b,), tf.int32)
            buf = tf.concat([tf.fill((b, 1), BOS), tf.fill((b, L - 1), PAD)], 1)
        else:
            memory = mask = None
            ids = ids[:, :L]
            start = tf.maximum(tf.reduce_sum(tf.cast(tf.not_equal(ids, PAD), tf.int32), 1), 1)
            ids = tf.where(tf.logical_and(tf.equal(tf.range(tf.shape(ids)[1])[None], 0), tf.equal(ids, PAD)), BOS, ids)
            buf = tf.concat([ids, tf.fill((b, L - tf.shape(ids)[1]), PAD)], 1)
        steps = tf.minimum(L - tf.reduce_max(start) + 1, max_new_tokens)
        out = tf.fill((b, L), PAD)
        lengths = start
        done = tf.zeros((b,), tf.bool)
        rows = tf.range(b)
        for i in tf.range(steps):
            logits = self.decode(buf, memory, mask, False)
            nxt = tf.argmax(tf.gather_nd(logits, tf.stack([rows, lengths - 1], 1)), -1, output_type=tf.int32)
            nxt = tf.where(done, PAD, nxt)
            write = tf.logical_not(done)
            # Write the token at each unfinished row's next position (the last one is never fed back).
            at = tf.stack([rows, tf.minimum(lengths, L - 1)], 1)
            buf = tf.tensor_scatter_nd_update(
                buf, at, tf.where(tf.logical_and(write, lengths < L), nxt, tf.gather_nd(buf, at))
            )
            out = tf.tensor_scatter_nd_update(out, tf.stack([rows, tf.fill((b,), i)], 1), nxt)
            lengths = lengths + tf.cast(write, tf.int32)
            done = tf.logical_or(done, tf.equal(nxt, EOS))
            if tf.reduce_all(done):
                break
        return out


class MLP(keras.Model):
    """inputs -> hidden... -> classes: Dense, activation, dropout; logits out."""

    def __init__(self, inputs, hidden, classes, activation="relu", dropout=0.0, **kw):
        super().__init__(**kw)
        if activation not in ("relu", "gelu", "tanh"):
            raise ValueError(f"unknown activation {activation!r}")
        self.inputs_, self.activation = inputs, activation
        self.hidden = [keras.layers.Dense(w, name=f"dense_{i}") for i, w in enumerate(hidden)]
        self.drops = [keras.layers.Dropout(dropout) for _ in hidden]
        self.out = keras.layers.Dense(classes, name="logits")

    def build(self, input_shape=None):
        width = self.inputs_
        for dense in self.hidden:
            dense.build((None, width))
            width = dense.units
        self.out.build((None, width))
        super().build(input_shape)

    def call(self, inputs, training=None):
        x = inputs["features"] if isinstance(inputs, dict) else inputs
        act = {"relu": tf.nn.relu, "gelu": lambda v: tf.nn.gelu(v, approximate=False), "tanh": tf.tanh}[self.activation]
        for dense, drop in zip(self.hidden, self.drops):
            x = drop(act(dense(x)), training=training)
        return self.out(x)


def build_model(model_cfg: dict, seed: int | None = 0):
    """The model of a model.json "model" block, built (weights created) from `seed`."""
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    if model_cfg.get("mlp") is not None:
        m = model_cfg["mlp"]
        model = MLP(m["inputs"], list(m["hidden"]), m["classes"], m.get("activation", "relu"), m.get("dropout", 0.0))
        model({"features": tf.zeros((1, m["inputs"]))})
        return model
    a = model_cfg["transformer"]
    model = Transformer(
        a["kind"],
        a["layers"],
        a["d_model"],
        a["heads"],
        a["vocab"],
        a.get("d_ff"),
        a.get("max_len", 512),
        a.get("dropout", 0.1),
        a.get("classes"),
        a.get("head_dim"),  # set by structured pruning only
        # The architecture options; a block without them (an older bundle) builds today's model.
        **{name: a.get(name, default) for name, default in DEFAULT_OPTIONS.items()},
    )
    model(example_inputs(model))
    return model


def example_inputs(model) -> dict:
    ids = tf.fill((1, 2), BOS)
    return {"encoder-decoder": {"source": ids, "target": ids}, "encoder": {"text": ids}, "decoder": {"tokens": ids}}[
        model.kind
    ]


def count_params(model) -> int:
    return int(sum(int(np.prod(v.shape)) for v in model.weights))


def to_inputs(batch: dict) -> dict:
    """data.py arrays -> model inputs (int32 ids: TF's fast path for gathers)."""
    out = {}
    for k, v in batch.items():
        v = np.asarray(v) if not isinstance(v, tf.Tensor) else v
        out[k] = (
            tf.cast(v, tf.int32) if k in ("source", "target", "text", "tokens", "label") else tf.cast(v, tf.float32)
        )
    return out


def batch_loss(model, batch: dict, training: bool = False):
    """(sum of the losses, number of predictions, number correct or None), as zoo_torch."""
    if "label" in batch:
        x = {"features": batch["features"]} if "features" in batch else {"text": batch["text"]}
        logits = tf.cast(model(x, training=training), tf.float32)
        y = batch["label"]
        loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y), tf.float32))
        return loss, tf.cast(tf.shape(y)[0], tf.float32), correct
    if "source" in batch:
        tgt = batch["target"]
        logits = tf.cast(model({"source": batch["source"], "target": tgt[:, :-1]}, training=training), tf.float32)
        labels = tgt[:, 1:]
        mask = tf.cast(tf.not_equal(labels, PAD), tf.float32)
    else:
        tokens = batch["tokens"]
        logits = tf.cast(model({"tokens": tokens[:, :-1]}, training=training), tf.float32)
        labels, mask = tokens[:, 1:], batch["loss_mask"]
    per = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return tf.reduce_sum(per * mask), tf.reduce_sum(mask), None


def make_optimizer(opt: dict):
    """adam / adamw / sgd from a model.json optimizer block (the rate is set every step)."""
    lr = float(opt["lr"])
    b1, b2 = opt.get("betas") or (0.9, 0.999)
    name = opt["name"]
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=lr, beta_1=b1, beta_2=b2)
    if name == "adamw":
        return keras.optimizers.AdamW(
            learning_rate=lr, beta_1=b1, beta_2=b2, weight_decay=float(opt.get("weight_decay", 0.0))
        )
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=float(opt.get("momentum", 0.0)))
    raise ValueError(f"unknown optimizer {name!r}")


# --- structured pruning: fewer heads and channels, smaller tensors ------------------------------


def _weights(model) -> dict[str, np.ndarray]:
    """Each weight by its path below the model's own name (Keras numbers the names of
    later instances: transformer_1/...)."""
    return {v.path.split("/", 1)[1]: v.numpy() for v in model.weights}


def _norms(w: np.ndarray, axis: int) -> np.ndarray:
    return np.linalg.norm(w.astype(np.float64), axis=axis)


def _with_bias(w: dict[str, np.ndarray], dense: str) -> np.ndarray:
    """A Dense layer's kernel [in, out] with its bias appended as a last row (the
    kernel alone without)."""
    bias = w.get(f"{dense}/bias")
    return w[f"{dense}/kernel"] if bias is None else np.concatenate([w[f"{dense}/kernel"], bias[None]])


def _head_columns(heads: np.ndarray, head_dim: int) -> np.ndarray:
    """The kernel columns (the bias entries) of the given heads, in order."""
    return (np.asarray(heads)[:, None] * head_dim + np.arange(head_dim)).reshape(-1)


def _layers(model):
    """(path, Layer) of every layer of a Transformer's stacks, paths as `_weights` has them."""
    for stack in (getattr(model, "encoder", None), getattr(model, "decoder", None)):
        if stack is not None:
            for block in stack.blocks:
                yield f"{stack.name}/{block.name}", block


def _attentions(path: str, block):
    """(path, Attention) of a layer's attention blocks."""
    yield f"{path}/self_attn", block.self_attn
    if block.cross:
        yield f"{path}/cross_attn", block.cross_attn


def _ffn_denses(block) -> tuple[tuple[str, ...], str]:
    """The names of a layer's FFN Dense layers: those that write its channels, the one that reads them."""
    return (("gate", "up"), "down") if block.gated else (("fc1",), "fc2")


def unit_scores(model) -> dict[str, np.ndarray]:
    """zoo_torch.unit_scores for these models (Keras kernels are [in, out]), keyed by
    the path of the attention block (per key/value head with its query heads under
    grouped-query attention), the layer holding the FFN (per channel; gated: the gate
    and up norms multiplied, as a channel writes act(gate) x up), or the MLP's hidden
    Dense layer."""
    w = _weights(model)
    scores = {}
    if isinstance(model, MLP):
        names = [d.name for d in model.hidden] + [model.out.name]
        for name, nxt in itertools.pairwise(names):
            written = _norms(np.concatenate([w[f"{name}/kernel"], w[f"{name}/bias"][None]]), 0)
            scores[name] = written * _norms(w[f"{nxt}/kernel"], 1)
        return scores
    for path, block in _layers(model):
        for attn_path, attn in _attentions(path, block):
            # A group's V columns and O rows are contiguous (its query heads are adjacent).
            values = _with_bias(w, f"{attn_path}/v")  # [in (+ 1), kv_heads x head_dim]
            groups = attn.kv_heads
            per_group = values.reshape(values.shape[0], groups, -1).transpose(1, 0, 2).reshape(groups, -1)
            scores[attn_path] = _norms(per_group, 1) * _norms(w[f"{attn_path}/o/kernel"].reshape(groups, -1), 1)
        writers, reader = _ffn_denses(block)
        written = np.prod([_norms(_with_bias(w, f"{path}/{name}"), 0) for name in writers], axis=0)
        scores[path] = written * _norms(w[f"{path}/{reader}/kernel"], 1)
    return scores


def units_to_keep(scores: dict[str, np.ndarray], sparsity: float) -> dict[str, np.ndarray]:
    """zoo_torch.units_to_keep: per block, the indices (ascending) of the units that
    stay; round(sparsity x n) of the lowest-scoring go, one at least is kept."""
    keep = {}
    for name, s in scores.items():
        n = s.size
        drop = min(round(sparsity * n), n - 1)
        keep[name] = np.sort(np.argsort(-s, kind="stable")[: n - drop])
    return keep


def shrink(model, model_cfg: dict, keep: dict[str, np.ndarray]):
    """zoo_torch.shrink: a smaller copy holding only the kept units (Q kernel columns
    and O kernel rows of the kept query heads, K and V columns of the kept key/value
    heads: under grouped-query attention a unit is a K/V head with its query heads; fc1
    columns and fc2 rows, or gate and up columns and down rows; a hidden Dense layer's
    columns and the next layer's rows) and the model block it is built from (`heads`,
    `d_ff` and `head_dim`, `kv_heads` when the block sets it; an MLP's `hidden`)."""
    w = _weights(model)
    cfg = copy.deepcopy(model_cfg)
    if isinstance(model, MLP):
        names = [d.name for d in model.hidden] + [model.out.name]
        widths = []
        for name, nxt in itertools.pairwise(names):
            idx = keep.get(name, np.arange(w[f"{name}/bias"].size))
            w[f"{name}/kernel"], w[f"{name}/bias"] = w[f"{name}/kernel"][:, idx], w[f"{name}/bias"][idx]
            w[f"{nxt}/kernel"] = w[f"{nxt}/kernel"][idx]
            widths.append(len(idx))
        cfg["mlp"]["hidden"] = widths
    else:
        heads, kv_heads, d_ff, head_dim = set(), set(), set(), None
        for path, block in _layers(model):
            for attn_path, attn in _attentions(path, block):
                groups = np.asarray(keep.get(attn_path, np.arange(attn.kv_heads)))
                per_group = attn.heads // attn.kv_heads
                query_heads = (groups[:, None] * per_group + np.arange(per_group)).reshape(-1)
                head_dim = attn.head_dim
                cols, kv_cols = _head_columns(query_heads, head_dim), _head_columns(groups, head_dim)
                for proj, kept in (("q", cols), ("k", kv_cols), ("v", kv_cols)):
                    w[f"{attn_path}/{proj}/kernel"] = w[f"{attn_path}/{proj}/kernel"][:, kept]
                    if f"{attn_path}/{proj}/bias" in w:
                        w[f"{attn_path}/{proj}/bias"] = w[f"{attn_path}/{proj}/bias"][kept]
                w[f"{attn_path}/o/kernel"] = w[f"{attn_path}/o/kernel"][cols]
                heads.add(len(query_heads))
                kv_heads.add(len(groups))
            writers, reader = _ffn_denses(block)
            idx = np.asarray(keep.get(path, np.arange(block.d_ff)))
            for name in writers:
                w[f"{path}/{name}/kernel"] = w[f"{path}/{name}/kernel"][:, idx]
                if f"{path}/{name}/bias" in w:
                    w[f"{path}/{name}/bias"] = w[f"{path}/{name}/bias"][idx]
            w[f"{path}/{reader}/kernel"] = w[f"{path}/{reader}/kernel"][idx]
            d_ff.add(len(idx))
        if len(heads) > 1 or len(kv_heads) > 1 or len(d_ff) > 1:
            raise ValueError(f"every layer must keep as many heads and channels (heads {heads}, d_ff {d_ff})")
        a = cfg["transformer"]
        a["heads"], a["d_ff"], a["head_dim"] = heads.pop(), d_ff.pop(), head_dim
        if a.get("kv_heads") is not None:
            a["kv_heads"] = kv_heads.pop()
    small = build_model(cfg, seed=0)
    for v in small.weights:
        v.assign(w[v.path.split("/", 1)[1]])
    return small, cfg


# --- export and reload ---------------------------------------------------------------------

MODEL_FORMAT = "llmc-tensorflow-1"


def serving_signature(model_cfg: dict) -> tuple[str, tf.TensorSpec]:
    if model_cfg.get("mlp") is not None:
        return "features", tf.TensorSpec((None, model_cfg["mlp"]["inputs"]), tf.float32, name="features")
    kind = model_cfg["transformer"]["kind"]
    name = {"encoder-decoder": "source", "encoder": "text", "decoder": "tokens"}[kind]
    return name, tf.TensorSpec((None, None), tf.int32, name=name)


def save_model(directory, model, model_cfg: dict, label_names=None, **extra) -> None:
    """SavedModel + Keras weights + llmc.json in `directory` (see the module docstring)."""
    name, spec = serving_signature(model_cfg)
    classify = model_cfg.get("mlp") is not None or model_cfg["transformer"]["kind"] == "encoder"

    def serve(x):
        if classify:
            logits = tf.cast(model({name: x}, training=False), tf.float32)
            return {"logits": logits, "probabilities": tf.nn.softmax(logits, -1)}
        return {"tokens": model.generate(x)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serving_default", fn=serve, input_signature=[spec])
    archive.write_out(str(directory), verbose=False)
    model.save_weights(os.path.join(directory, "model.weights.h5"))
    meta = {
        "format": MODEL_FORMAT,
        "model": model_cfg,
        "label_names": label_names,
        "signature": {"input": name, "outputs": ["logits", "probabilities"] if classify else ["tokens"]},
        **extra,
    }
    with open(os.path.join(directory, "llmc.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")


def load_model(directory):
    """(Keras model, llmc.json) from a directory written by save_model."""
    with open(os.path.join(directory, "llmc.json"), encoding="utf-8") as f:
        meta = json.load(f)
    if meta.get("format") != MODEL_FORMAT:
        raise ValueError(f"{directory}: not an llmc TensorFlow model (format {meta.get('format')!r})")
    # Seeded although load_weights replaces the weights: the seed also starts the dropout layers'
    # random streams, so that fine-tuning a loaded model (prune, distill) is the same each run.
    model = build_model(meta["model"], seed=0)
    model.load_weights(os.path.join(directory, "model.weights.h5"))
    return model, meta
