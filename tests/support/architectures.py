"""Small Transformer model blocks with the architecture options, shared by the torch
and TensorFlow zoo tests (docs/transformer-options.md)."""

from __future__ import annotations

from typing import Any

import numpy as np

from llmc.runtime.tokenizer import BOS, EOS, PAD

TASKS = {"encoder-decoder": "translation", "encoder": "classification", "decoder": "language-modeling"}


def cfg_of(
    kind="decoder", layers=2, d_model=32, heads=4, d_ff=48, vocab=260, max_len=16, classes=None, dropout=0.0, **options
):
    """A model block as model.json carries it (dropout off unless given), with `options` in
    the transformer."""
    return {
        "task": TASKS[kind],
        "transformer": {
            "kind": kind,
            "layers": layers,
            "d_model": d_model,
            "heads": heads,
            "d_ff": d_ff,
            "vocab": vocab,
            "max_len": max_len,
            "dropout": dropout,
            "classes": classes,
            **options,
        },
    }


# A Llama-style decoder block: SwiGLU, RoPE, RMSNorm, 2 key/value heads of 4, no biases, untied.
LLAMA: dict[str, Any] = {
    "ffn": "swiglu",
    "positions": "rope",
    "norm": "rmsnorm",
    "kv_heads": 2,
    "qkv_bias": False,
    "out_bias": False,
    "ffn_bias": False,
    "tie_embeddings": False,
}
# An encoder-decoder with GeGLU, multi-query attention, post-norm and another RoPE base.
GQA_TRANSLATOR: dict[str, Any] = {
    "ffn": "geglu",
    "positions": "rope",
    "kv_heads": 1,
    "norm_position": "post",
    "rope_base": 500.0,
}


def llama_cfg(**overrides):
    return cfg_of("decoder", **{**LLAMA, **overrides})


def gqa_translator_cfg(**overrides):
    return cfg_of("encoder-decoder", **{**GQA_TRANSLATOR, **overrides})


def random_ids(rows, cols, lengths, seed=0, dtype: Any = np.int64) -> np.ndarray:
    """Byte ids (no specials) for each row's first `lengths[i]` positions, PAD after."""
    rng = np.random.default_rng(seed)
    ids = np.full((rows, cols), PAD, dtype=dtype)
    for i, n in enumerate(lengths):
        ids[i, :n] = rng.integers(4, 256, n)
    return ids


def batch_arrays(cfg: dict, seed=0, dtype: Any = np.int64) -> dict:
    """A small data.py-like batch for the model block's kind, rows of different lengths."""
    kind = cfg["transformer"]["kind"]
    ids = random_ids(3, 9, [9, 6, 4], seed, dtype)
    if kind == "encoder-decoder":
        tgt = random_ids(3, 7, [7, 7, 5], seed + 1, dtype)
        tgt[:, 0] = BOS
        tgt[2, 4] = EOS
        return {"source": ids, "target": tgt}
    if kind == "encoder":
        return {"text": ids, "label": np.arange(3, dtype=dtype) % (cfg["transformer"]["classes"] or 2)}
    return {"tokens": ids, "loss_mask": (ids[:, 1:] != PAD).astype(np.float32)}
