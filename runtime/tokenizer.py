"""Tokenizers: text <-> ids. `data.tokenizer` is "bytes" (the language's default) or
a SentencePiece model file (`spm.model`, or a URI such as `s3://bucket/spm.model`).

Every tokenizer frames sequences with the same four special ids:

    PAD = 256   padding; losses and attention ignore it
    BOS = 257   starts every decoder input (generation begins from it)
    EOS = 258   ends every target; greedy decoding stops at it
    SEP = 259   separates a prompt's source from its target (decoder-only models)

They are fixed rather than per tokenizer because the torch and TensorFlow models,
the compression scripts and the exported serving graphs compare ids with them as
constants; a tokenizer lays its own ids out around them.

The byte tokenizer: ids 0-255 are the UTF-8 bytes of the text, so every string
round-trips and no vocabulary file has to travel with a model. It produces
VOCAB_SIZE = 260 ids, so a model reading it needs `vocab = 260`: fewer is an error
(the compiler's E215, ValueError here), more leaves embedding rows no input ever
reaches (the compiler's W201). We chose 260 over the minimal 259 so that the id
space has a documented separator instead of a hole.

A SentencePiece model with N pieces: piece ids 0-255 keep their ids, piece ids from
256 up move up by four (piece 256 is id 260), so the specials sit at 256-259 as
above; the tokenizer produces N + 4 ids (260 when N < 256), and the model's `vocab`
must equal that (TokenizerError otherwise). The model file's own control pieces
(`<s>`, `</s>`, `<pad>`; pad is often disabled) are not used for framing: encode()
never produces them. Unknown text becomes the model's `<unk>` piece. The compiler
cannot open a model file (it imports no tokenizer library), so this count is checked
here, when a run starts.

A relative tokenizer path is relative to the spec's folder, like the data files
(runtime/config.py resolves it against --data-root); URIs are read through fsspec, as
data URIs are.

encode() never adds specials; callers frame sequences (data.py). Every tokenizer has
the same interface: encode, decode, decode_batch, pad_id, bos_id, eos_id, sep_id,
vocab_size, name.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Sequence

PAD, BOS, EOS, SEP = 256, 257, 258, 259
SPECIALS = (PAD, BOS, EOS, SEP)
VOCAB_SIZE = 260
NAMES = ("bytes",)  # tokenizers named rather than read from a file
URI_SCHEMES = ("s3://", "gs://", "gcs://", "hdfs://", "http://", "https://", "az://", "abfs://", "file://")


class TokenizerError(ValueError):
    """The tokenizer cannot be used with this model (a missing or unreadable file, a
    vocabulary that does not match): the user's to fix, reported without a traceback."""


class ByteTokenizer:
    """Text <-> UTF-8 bytes."""

    name = "bytes"
    pad_id, bos_id, eos_id, sep_id = PAD, BOS, EOS, SEP
    vocab_size = VOCAB_SIZE

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Iterable[int]) -> str:
        """Bytes up to the first EOS; PAD, BOS and SEP are skipped. Invalid UTF-8
        (a model can emit any byte sequence) becomes U+FFFD instead of failing."""
        out = bytearray()
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if 0 <= i < 256:
                out.append(i)
        return out.decode("utf-8", errors="replace")

    def decode_batch(self, rows: Iterable[Sequence[int]]) -> list[str]:
        return [self.decode(r) for r in rows]


class SentencePieceTokenizer:
    """A SentencePiece model's pieces laid out around the fixed specials (module docstring)."""

    pad_id, bos_id, eos_id, sep_id = PAD, BOS, EOS, SEP

    def __init__(self, processor, name: str):
        self._sp = processor
        self.name = name
        self.pieces = processor.get_piece_size()
        self.vocab_size = max(self.pieces, 256) + len(SPECIALS)

    def encode(self, text: str) -> list[int]:
        return [i if i < PAD else i + len(SPECIALS) for i in self._sp.encode(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """Pieces up to the first EOS; the other specials and ids that name no piece
        (a model can emit any id below its vocab) are skipped."""
        pieces = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i >= SEP + 1:
                i -= len(SPECIALS)
            elif i >= PAD:
                continue
            if 0 <= i < self.pieces:
                pieces.append(i)
        return self._sp.decode(pieces)

    def decode_batch(self, rows: Iterable[Sequence[int]]) -> list[str]:
        return [self.decode(r) for r in rows]


def get_tokenizer(spec: str = "bytes", vocab: int | None = None) -> ByteTokenizer | SentencePieceTokenizer:
    """The tokenizer a spec's `data.tokenizer` names (a name or a usable path: see
    runtime/config.py), checked against the model's vocab."""
    if spec == "bytes":
        byte_tok = ByteTokenizer()
        if vocab is not None and vocab < byte_tok.vocab_size:
            raise TokenizerError(
                f"the byte tokenizer needs vocab >= {byte_tok.vocab_size} (256 bytes + PAD, BOS, EOS, SEP); "
                f"the model has vocab = {vocab}"
            )
        return byte_tok
    tok = SentencePieceTokenizer(_processor(spec, *_file_key(spec)), spec)
    if vocab is not None and vocab != tok.vocab_size:
        counted = (
            f"{tok.pieces} pieces + PAD, BOS, EOS, SEP"
            if tok.pieces >= 256
            else f"{tok.pieces} pieces in ids 0-255 + PAD, BOS, EOS, SEP"
        )
        raise TokenizerError(
            f"tokenizer {spec}: it produces {tok.vocab_size} ids ({counted}), but the model has "
            f"vocab = {vocab}: set vocab = {tok.vocab_size}, or use a SentencePiece model "
            f"with {vocab - len(SPECIALS)} pieces"
        )
    return tok


def _file_key(path: str) -> tuple:
    # A local file is read again when it changes (a search trial may retrain it); a URI once per process.
    if path.startswith(URI_SCHEMES):
        return ()
    try:
        st = os.stat(path)
    except OSError:
        return ()
    return (st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _processor(path: str, *_key):
    if not path.strip():
        raise TokenizerError('empty tokenizer name: use "bytes" or the path of a SentencePiece model file')
    try:
        import sentencepiece
    except ImportError:
        raise TokenizerError(
            f"tokenizer {path}: reading a SentencePiece model needs the sentencepiece package "
            f"(pip install sentencepiece)"
        ) from None
    data = _read_bytes(path)
    processor = sentencepiece.SentencePieceProcessor()
    try:
        processor.LoadFromSerializedProto(data)
    except (RuntimeError, OSError, TypeError, ValueError):
        raise TokenizerError(
            f"tokenizer {path}: not a SentencePiece model file; "
            f'the runtime reads "bytes" or a SentencePiece .model file'
        ) from None
    return processor


def _read_bytes(path: str) -> bytes:
    if path.startswith(URI_SCHEMES):
        try:
            import fsspec
        except ImportError:
            raise TokenizerError(
                f"tokenizer {path}: reading a URI needs fsspec (and its s3fs/gcsfs driver); "
                f"or copy the file locally and pass --set model.data.tokenizer=PATH"
            ) from None
        try:
            with fsspec.open(path, "rb") as f:
                return f.read()
        except (OSError, ValueError) as exc:
            raise TokenizerError(f"tokenizer {path}: cannot be read: {exc}") from None
    if os.path.isdir(path):
        raise TokenizerError(f"tokenizer {path}: is a folder; name the SentencePiece .model file in it")
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise TokenizerError(
            f"tokenizer {path}: no such file (a relative path is relative to the spec's folder)"
        ) from None
    except OSError as exc:
        raise TokenizerError(f"tokenizer {path}: cannot be read: {exc.strerror or exc}") from None
