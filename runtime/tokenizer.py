"""The byte-level tokenizer (`data.tokenizer = "bytes"`, the language's default).

Ids 0-255 are the UTF-8 bytes of the text, so every string round-trips and no
vocabulary file has to travel with a model. Four special ids follow:

    PAD = 256   padding; losses and attention ignore it
    BOS = 257   starts every decoder input (generation begins from it)
    EOS = 258   ends every target; greedy decoding stops at it
    SEP = 259   reserved (a separator for prompts); never produced by encode()

so the tokenizer needs `vocab >= 260` (VOCAB_SIZE), which is what the local profiles
declare. We chose 260 over the minimal 259 so that the id space has a spare,
documented separator instead of a hole: a model trained today can later be
fine-tuned on prompt/response pairs without resizing its embedding. A model whose
`vocab` is larger simply never sees the extra ids.

Pure Python and numpy-free, shared by the torch and TensorFlow runtimes and by the
evaluate/serve scripts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

PAD, BOS, EOS, SEP = 256, 257, 258, 259
SPECIALS = (PAD, BOS, EOS, SEP)
VOCAB_SIZE = 260


class ByteTokenizer:
    """Text <-> ids. `encode` never adds specials; callers frame sequences (data.py)."""

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


def get_tokenizer(spec: str = "bytes", vocab: int | None = None) -> ByteTokenizer:
    """The tokenizer a spec's `data.tokenizer` names, checked against the model's vocab."""
    if spec != "bytes":
        raise NotImplementedError(
            f'tokenizer {spec!r}: only the byte tokenizer ("bytes") is implemented in this runtime')
    tok = ByteTokenizer()
    if vocab is not None and vocab < tok.vocab_size:
        raise ValueError(f"the byte tokenizer needs vocab >= {tok.vocab_size} (256 bytes + PAD, BOS, EOS, SEP); "
                         f"the model has vocab = {vocab}")
    return tok
