"""Parameter counts: the Transformer of the package docstring, exactly as the runtime's
model zoo builds it, and the MLP."""

from typing import NamedTuple

from .numeric import format_count

KINDS = ("encoder-decoder", "encoder", "decoder")


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
