"""Parameter counts: the Transformer of the package docstring, exactly as the runtime's
model zoo builds it, and the MLP."""

from typing import NamedTuple

from .numeric import format_count

KINDS = ("encoder-decoder", "encoder", "decoder")


class Options(NamedTuple):
    """The architecture options of the transformer block (docs/language.md, "Architecture
    options"); the defaults are the 2018 Transformer of the module docstring."""

    ffn: str = "gelu"  # "gelu": two matrices; "swiglu" / "geglu": gate, up and down
    positions: str = "learned"  # "learned" | "rope" | "none"
    norm: str = "layernorm"  # "layernorm" (weight and bias) | "rmsnorm" (weight)
    kv_heads: int | None = None  # key/value heads; None: as many as the query heads
    qkv_bias: bool = True
    out_bias: bool = True
    ffn_bias: bool = True
    tie_embeddings: bool = True

    @property
    def gated(self) -> bool:
        return self.ffn in ("swiglu", "geglu")


DEFAULT = Options()


def kv_width(d_model, heads, options: Options = DEFAULT):
    """Width of the key (and of the value) projection: kv_heads x the head dimension."""
    if options.kv_heads is None or not heads:
        return d_model
    return options.kv_heads * (d_model // heads)


def attention_params(d_model, heads=1, options: Options = DEFAULT):
    """Q and O d x d, K and V d x kv_width (grouped-query attention), each with a bias
    when the options say so (Q, K, V by qkv_bias; O by out_bias)."""
    kv = kv_width(d_model, heads, options)
    weights = 2 * d_model * d_model + 2 * d_model * kv
    biases = (d_model + 2 * kv if options.qkv_bias else 0) + (d_model if options.out_bias else 0)
    return weights + biases


def ffn_params(d_model, d_ff, options: Options = DEFAULT):
    """GELU: d x d_ff, then d_ff x d. Gated (SwiGLU, GeGLU): gate and up d x d_ff, down
    d_ff x d (Shazeer 2020). With biases when ffn_bias."""
    if options.gated:
        return 3 * d_model * d_ff + (2 * d_ff + d_model if options.ffn_bias else 0)
    return 2 * d_model * d_ff + (d_ff + d_model if options.ffn_bias else 0)


def layernorm_params(d_model, options: Options = DEFAULT):
    """LayerNorm: a weight and a bias per channel; RMSNorm: a weight (Zhang & Sennrich 2019)."""
    return d_model if options.norm == "rmsnorm" else 2 * d_model


def encoder_layer_params(d_model, d_ff, heads=1, options: Options = DEFAULT):
    """Self-attention + FFN + 2 norms (also a decoder layer without cross-attention)."""
    return (
        attention_params(d_model, heads, options)
        + ffn_params(d_model, d_ff, options)
        + 2 * layernorm_params(d_model, options)
    )


def decoder_layer_params(d_model, d_ff, heads=1, options: Options = DEFAULT):
    """Self-attention + cross-attention + FFN + 3 norms."""
    return (
        2 * attention_params(d_model, heads, options)
        + ffn_params(d_model, d_ff, options)
        + 3 * layernorm_params(d_model, options)
    )


class ParamCount(NamedTuple):
    """A Transformer's parameters, by part. All counts are numbers of parameters."""

    kind: str
    layers: int  # per stack, as written in the spec
    d_model: int
    d_ff: int
    vocab: int
    max_len: int
    classes: int | None
    token_embedding: int  # vocab x d_model, shared (and tied, unless `output` is not 0)
    positional: int  # max_len x d_model per stack, all stacks (0 without learned positions)
    encoder_layer: int  # one encoder layer; 0 if there is no encoder
    decoder_layer: int  # one decoder layer (with cross-attention for encoder-decoder)
    encoder_layers: int
    decoder_layers: int
    final_norms: int  # one final LayerNorm per stack
    head: int  # classification head; 0 when the output projection is tied
    total: int
    output: int = 0  # the output projection vocab x d_model when not tied to the embedding
    options: Options = DEFAULT

    @property
    def encoder(self):
        return self.encoder_layers * self.encoder_layer

    @property
    def decoder(self):
        return self.decoder_layers * self.decoder_layer

    @property
    def embeddings(self):
        return self.token_embedding + self.positional + self.output

    @property
    def transformer_layers(self):
        """Layers holding activations in training (encoder + decoder)."""
        return self.encoder_layers + self.decoder_layers

    @property
    def cross_attention_layers(self):
        return self.decoder_layers if self.kind == "encoder-decoder" else 0

    def explain(self) -> str:
        tied = "shared, tied" if not self.output else "input only"
        parts = [f"token embedding {format_count(self.token_embedding)} ({tied})"]
        if self.output:
            parts.append(f"output projection {format_count(self.output)}")
        if self.positional:
            parts.append(f"positional {format_count(self.positional)}")
        if self.encoder_layers:
            parts.append(f"encoder {self.encoder_layers} x {format_count(self.encoder_layer)}")
        if self.decoder_layers:
            cross = " with cross-attention" if self.kind == "encoder-decoder" else ""
            parts.append(f"decoder {self.decoder_layers} x {format_count(self.decoder_layer)}{cross}")
        norms = "RMSNorms" if self.options.norm == "rmsnorm" else "LayerNorms"
        parts.append(f"final {norms} {format_count(self.final_norms)}")
        if self.head:
            parts.append(f"classifier {format_count(self.head)}")
        return " + ".join(parts) + f" = {format_count(self.total)} parameters"


def transformer_params(
    kind, layers, d_model, heads, d_ff, vocab, max_len, classes=None, options: Options = DEFAULT
) -> ParamCount:
    """Parameters of the Transformer defined in this module's docstring, with the
    architecture `options`.

    `d_ff` None means 4 * d_model (the language's default). `heads` changes the count
    only with grouped-query attention (the key/value width is kv_heads x d_model /
    heads). kind "encoder" needs `classes`; an unknown kind or a missing `classes`
    raises ValueError. An untied output projection (vocab x d_model, no bias) belongs to
    the kinds that generate tokens; a classifier's head is its own.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown transformer kind {kind!r}; expected one of {', '.join(KINDS)}")
    d = d_model
    f = 4 * d if d_ff is None else d_ff
    tok = vocab * d
    enc_l = dec_l = 0
    enc_n = dec_n = 0
    head = 0
    o = options
    if kind == "encoder-decoder":
        enc_l, dec_l = encoder_layer_params(d, f, heads, o), decoder_layer_params(d, f, heads, o)
        enc_n = dec_n = layers
        stacks = 2
    elif kind == "encoder":
        if classes is None:
            raise ValueError("an encoder (classification) model needs `classes`")
        enc_l, enc_n = encoder_layer_params(d, f, heads, o), layers
        stacks = 1
        head = d * classes + classes
    else:  # decoder-only: no cross-attention
        dec_l, dec_n = encoder_layer_params(d, f, heads, o), layers
        stacks = 1
    pos = stacks * max_len * d if o.positions == "learned" else 0
    norms = stacks * layernorm_params(d, o)
    output = vocab * d if not o.tie_embeddings and kind != "encoder" else 0
    total = tok + output + pos + enc_n * enc_l + dec_n * dec_l + norms + head
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
        output=output,
        options=o,
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
