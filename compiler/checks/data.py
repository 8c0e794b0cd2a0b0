"""The model against its data and tokenizer: E203 (an encoder without `classes`, reached
by a search variant), E205 (fewer classes than the training data has labels), E214
(a tokenizer that is neither a known name nor an existing model file; a folder is not
one), E215 (a vocabulary smaller than the byte tokenizer's ids) and W201 (one larger:
rows no input reaches).

A tokenizer file's vocabulary is not checked here: reading a SentencePiece model needs
its library, which the compiler does not import; the runtime checks `vocab` against
the model's pieces when a run starts (runtime/tokenizer.py).

The training data's labels are counted by labels.py (a local file of at most
MAX_LABEL_FILE_BYTES; a file that is remote, larger, unreadable or malformed is not
judged here: the runtime reports it), so a check never fails on the data's bytes.
"""

from __future__ import annotations

import os

from ..check_cache import consulted
from ..diagnostics import Fix
from ..estimate import format_count
from ..labels import URI_SCHEMES, count_labels
from ..schema import TOKENIZER_NAMES
from ..suggest import closest
from .context import CheckContext

# What `tokenizer = "bytes"` produces (runtime/tokenizer.py VOCAB_SIZE; the compiler does not
# import the runtime, a test keeps the two equal): ids 0-255 for the bytes, then PAD, BOS, EOS, SEP.
BYTE_VOCAB = 260
TOKENIZERS = TOKENIZER_NAMES  # the names the runtime implements
# Kinds of tokenizer that live in a model file: written bare, they name no file.
FILE_KINDS = ("sentencepiece", "bpe", "wordpiece", "unigram", "tiktoken")


def check(ctx: CheckContext) -> None:
    _classes(ctx)
    _tokenizer(ctx)


def _classes(ctx: CheckContext) -> None:
    model = ctx.ir.model
    arch, mlp = model.transformer, model.mlp
    if arch is not None:
        if model.task != "classification" and arch.kind != "encoder":
            return
        if arch.classes is None:
            # The spec itself got this from the type checker; a search variant gets it here.
            ctx.diags.error(
                "E203",
                ctx.spans.key("model.transformer"),
                "a classifier needs `classes`",
                label="`classes` is required here: the output layer has one logit per class",
                help="add `classes = N`, the number of labels (class ids 0..N-1)",
            )
            return
        path, classes = "model.transformer.classes", arch.classes
    elif mlp is not None:
        path, classes = "model.mlp.classes", mlp.classes
    else:
        return
    data = model.data
    found = count_labels(os.path.join(ctx.spans.main_dir, data.train), data.format, data.label or "label")
    if found is not None and classes < found.needed:
        ctx.diags.error(
            "E205",
            ctx.spans.attribute(path),
            f"`classes = {classes}` is fewer than the training data's labels",
            label=f"the training data has {found.describe()}",
            help=f"set classes = {found.needed}",
            proposals=[((path, found.needed),)],
        )


def _tokenizer(ctx: CheckContext) -> None:
    model = ctx.ir.model
    name = model.data.tokenizer
    path = "model.data.tokenizer"
    if name not in TOKENIZERS and not name.startswith(URI_SCHEMES):
        # The type checker made the path relative to the main spec's folder, as it does data paths.
        file = name if os.path.isabs(name) else os.path.join(ctx.spans.main_dir, name)
        consulted.add(file)  # a kept answer of `llmc check` depends on it (check_cache.py)
        if not name.strip() or not os.path.exists(file):
            _unknown_tokenizer(ctx, name, file)
            return
        if os.path.isdir(file):  # the runtime reads one SentencePiece model file
            ctx.diags.error(
                "E214",
                ctx.spans.value(path),
                f'tokenizer "{name}" is a folder',
                label="the runtime reads a SentencePiece model file (.model), not a folder",
                help="name the .model file in it",
            )
            return
    arch = model.transformer
    if name == "bytes" and arch is not None and arch.vocab < BYTE_VOCAB:
        ctx.diags.error(
            "E215",
            ctx.spans.attribute("model.transformer.vocab"),
            "vocab too small for the byte tokenizer",
            label=f"vocab = {arch.vocab}, but the byte tokenizer produces {BYTE_VOCAB} ids "
            f"(256 bytes + PAD, BOS, EOS, SEP)",
            help=f"set vocab = {BYTE_VOCAB}",
            proposals=[(("model.transformer.vocab", BYTE_VOCAB),)],
        )
    elif name == "bytes" and arch is not None and arch.vocab > BYTE_VOCAB:
        # The embedding is tied to the output projection (estimate/params.py): each unused row costs d_model parameters once.
        rows = arch.vocab - BYTE_VOCAB
        written = ctx.spans.values.get("model.transformer.vocab")
        ctx.diags.warning(
            "W201",
            ctx.spans.attribute("model.transformer.vocab"),
            "vocab larger than the byte tokenizer produces",
            label=f"vocab = {arch.vocab}, but the byte tokenizer produces {BYTE_VOCAB} ids: "
            f"{rows:,} embedding rows x d_model {arch.d_model} = "
            f"{format_count(rows * arch.d_model)} parameters are never used",
            help=f"set vocab = {BYTE_VOCAB}, or name a tokenizer file whose vocabulary has "
            f"{arch.vocab} ids (a SentencePiece model of {arch.vocab - 4:,} pieces)",
            fix=(Fix(written, str(BYTE_VOCAB)),) if written is not None else (),
        )


def _unknown_tokenizer(ctx: CheckContext, name: str, file: str) -> None:
    span = ctx.spans.value("model.data.tokenizer")
    known = ", ".join(f'"{t}"' for t in TOKENIZERS)
    if not name.strip():
        ctx.diags.error(
            "E214",
            span,
            "empty tokenizer name",
            label=f"known tokenizer names: {known}",
            help='write `tokenizer = "bytes"` or the path of a tokenizer file',
        )
        return
    bare = "/" not in name and "\\" not in name and "." not in name
    if bare and name.lower() in FILE_KINDS:
        ctx.diags.error(
            "E214",
            span,
            f'tokenizer "{name}" names a kind of tokenizer, not its file',
            label=f'no file "{name}" exists; known tokenizer names: {known}',
            help=f'write the path of the {name} model file, or `tokenizer = "bytes"`',
        )
        return
    guess = closest(name, TOKENIZERS) if bare else None
    if guess:
        ctx.diags.error(
            "E214",
            span,
            f'unknown tokenizer "{name}"',
            label=f"not a tokenizer name ({known}) nor a file",
            help=f'did you mean "{guess}"?',
        )
        return
    shown = os.path.normpath(file).replace(os.sep, "/")
    ctx.diags.error(
        "E214",
        span,
        f'tokenizer file "{name}" does not exist',
        label=f"not a tokenizer name ({known}) nor a file",
        help=f"the file {shown} does not exist: give the path of an existing tokenizer file "
        f'(relative to the spec that names it), or use `tokenizer = "bytes"`',
    )
