"""The Transformer model block's architecture options (docs/transformer-options.md),
framework-free: both zoos (zoo_torch.py, zoo_tf.py) read them from here, so the
TensorFlow side never imports torch and the two accept exactly the same blocks."""

from __future__ import annotations

FFNS = ("gelu", "swiglu", "geglu")
POSITIONS = ("learned", "rope", "none")
NORMS = ("layernorm", "rmsnorm")
NORM_POSITIONS = ("pre", "post")
NORM_EPS = 1e-5  # torch's nn.LayerNorm default, for both norms in both zoos

# The options and their defaults: the 2018 Transformer every earlier spec meant.
DEFAULT_OPTIONS = {
    "ffn": "gelu",
    "positions": "learned",
    "rope_base": 10000.0,
    "norm": "layernorm",
    "norm_position": "pre",
    "kv_heads": None,
    "qkv_bias": True,
    "out_bias": True,
    "ffn_bias": True,
    "tie_embeddings": True,
}


def check_options(options: dict) -> dict:
    """The options with their defaults filled in; ValueError on an unknown value. None
    keeps an option's default, except kv_heads, whose None is a value (as many as heads)."""
    o = {**DEFAULT_OPTIONS, **{k: v for k, v in options.items() if v is not None or k == "kv_heads"}}
    for name, allowed in (("ffn", FFNS), ("positions", POSITIONS), ("norm", NORMS), ("norm_position", NORM_POSITIONS)):
        if o[name] not in allowed:
            raise ValueError(f"unknown {name} {o[name]!r}; expected one of {', '.join(allowed)}")
    return o
