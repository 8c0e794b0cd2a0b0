"""What the served model reads and answers, framework-free (numpy and the tokenizer):
the request tensors checked and turned into a backends.py batch, and the model's
output turned into response tensors. triton_model.py runs it inside Triton; the
tensors are (batch dimension first, as Triton's max_batch_size > 0 adds it):

    generation (translation, summarization; an encoder-decoder):
        in   text      TYPE_STRING [1]         UTF-8 text, at most max_len tokens
        out  output    TYPE_STRING [1]         the greedy generation, detokenized
    continuation (a decoder: language modeling, or a task with a source and a target):
        in   text      TYPE_STRING [1]         the prompt, BOS + text (+ SEP for a source) < max_len tokens
        out  output    TYPE_STRING [1]         the greedy continuation, detokenized
    classification (an MLP; a Transformer encoder):
        in   features  TYPE_FP32   [inputs]    (MLP)   or  text TYPE_STRING [1] (encoder)
        out  label     TYPE_STRING [1]         the most probable class's name
             probabilities TYPE_FP32 [classes] softmax of the logits, in label order

A request the model cannot answer raises RequestError with a message for the caller
(Triton returns it with HTTP 400); the other requests of the batch are answered.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..folders import architecture
from ..tokenizer import BOS, PAD, SEP, get_tokenizer
from .settings import Tensor


class RequestError(ValueError):
    """A request the model cannot answer: the message is the caller's to read."""


class Handler:
    """One served model: its tensors, and a batch of requests in, their answers out."""

    inputs: list[Tensor]
    outputs: list[Tensor]

    def rows(self, tensors: dict[str, np.ndarray]) -> list[Any]:
        """One request's tensors as its rows (one per batch entry); RequestError when bad."""
        raise NotImplementedError

    def answer(self, rows: Sequence[Any]) -> dict[str, np.ndarray]:
        """The output tensors of `rows` (all the batch's requests), batch dimension first."""
        raise NotImplementedError


class Unservable(ValueError):
    """A model llmc serve has no contract for (an encoder that does not classify)."""


def handler_for(meta: dict[str, Any], backend: Any = None) -> Handler:
    """The Handler of a model folder's llmc.json; `backend` (a backends.Backend) runs
    the requests, and may be left out where only the tensors are wanted."""
    cfg = meta["model"]
    arch = architecture(cfg)
    if arch == "mlp":
        return FeatureClassifier(meta, backend)
    if arch == "encoder-decoder":
        return TextGenerator(meta, backend)
    if arch == "decoder":
        return TextContinuer(meta, backend)
    if arch == "encoder" and cfg.get("task") == "classification":
        return TextClassifier(meta, backend)
    raise Unservable(f"llmc serve has no request contract for a {arch} model ({cfg.get('task')}) yet")


def _texts(tensors: dict[str, np.ndarray], name: str) -> list[str]:
    """The UTF-8 strings of a [B, 1] BYTES input."""
    array = tensors[name]
    if array.ndim != 2 or array.shape[1:] != (1,) or array.shape[0] < 1:
        raise RequestError(f"input {name!r}: expected shape [batch, 1], got {list(array.shape)}")
    texts = []
    for item in array[:, 0]:
        raw = item if isinstance(item, bytes) else str(item).encode("utf-8", "surrogatepass")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RequestError(
                f"input {name!r}: not valid UTF-8 (byte {exc.start}: {raw[exc.start : exc.start + 1]!r})"
            ) from None
        if not text.strip():
            raise RequestError(f"input {name!r}: the text is empty")
        texts.append(text)
    return texts


class _TextInput(Handler):
    def __init__(self, meta: dict[str, Any], backend: Any):
        self.backend = backend
        cfg = meta["model"]
        self.max_len = int(cfg["transformer"]["max_len"])
        self.tokenizer = get_tokenizer(cfg["data"].get("tokenizer") or "bytes", int(cfg["transformer"]["vocab"]))

    def rows(self, tensors: dict[str, np.ndarray]) -> list[Any]:
        out = []
        for text in _texts(tensors, "text"):
            ids = self.tokenizer.encode(text)
            if len(ids) > self.max_len:
                raise RequestError(
                    f"input 'text': {len(ids)} tokens ({len(text)} characters); the model reads at most {self.max_len}"
                )
            out.append(ids)
        return out

    def ids(self, rows: Sequence[list[int]]) -> np.ndarray:
        """The rows PAD-padded to max_len, as data.py frames a source or a text."""
        out = np.full((len(rows), self.max_len), PAD, dtype=np.int64)
        for i, ids in enumerate(rows):
            out[i, : len(ids)] = ids
        return out


class TextGenerator(_TextInput):
    def __init__(self, meta: dict[str, Any], backend: Any):
        super().__init__(meta, backend)
        self.inputs = [Tensor("text", "TYPE_STRING", [1])]
        self.outputs = [Tensor("output", "TYPE_STRING", [1])]

    def answer(self, rows: Sequence[Any]) -> dict[str, np.ndarray]:
        return self.texts_of(self.backend.generate({"source": self.ids(rows)}))

    def texts_of(self, generated: Any) -> dict[str, np.ndarray]:
        texts = self.tokenizer.decode_batch(np.asarray(generated).tolist())
        return {"output": np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_)}


class TextContinuer(TextGenerator):
    """A decoder continues its prompt as it was trained: BOS + text for language modeling
    (it writes the rest of the text), BOS + source + SEP for a task with a source and a
    target (it writes the target). The prompt leaves room for one token at least."""

    def __init__(self, meta: dict[str, Any], backend: Any):
        super().__init__(meta, backend)
        self.separated = meta["model"].get("task") != "language-modeling"

    def rows(self, tensors: dict[str, np.ndarray]) -> list[Any]:
        out = []
        for text in _texts(tensors, "text"):
            ids = [BOS, *self.tokenizer.encode(text)] + ([SEP] if self.separated else [])
            if len(ids) >= self.max_len:
                room = self.max_len - 1 - (2 if self.separated else 1)
                raise RequestError(
                    f"input 'text': {len(ids) - 1 - int(self.separated)} tokens ({len(text)} characters); "
                    f"the model continues prompts of at most {room}"
                )
            out.append(ids)
        return out

    def answer(self, rows: Sequence[Any]) -> dict[str, np.ndarray]:
        prompts = np.full((len(rows), max(len(r) for r in rows)), PAD, dtype=np.int64)
        for i, ids in enumerate(rows):
            prompts[i, : len(ids)] = ids
        return self.texts_of(self.backend.generate({"prompt": prompts}))


def _labelled(logits: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    logits = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities = (shifted / shifted.sum(-1, keepdims=True)).astype(np.float32)
    labels = [[str(names[i]).encode("utf-8")] for i in probabilities.argmax(-1).tolist()]
    return {"label": np.array(labels, dtype=np.object_), "probabilities": probabilities}


def label_names(meta: dict[str, Any], classes: int) -> list[str]:
    """The classes' names in the order of the logits (their ids when the labels were ids)."""
    names = meta.get("label_names")
    return [str(n) for n in names] if names else [str(i) for i in range(classes)]


class FeatureClassifier(Handler):
    def __init__(self, meta: dict[str, Any], backend: Any):
        self.backend = backend
        mlp = meta["model"]["mlp"]
        self.width, classes = int(mlp["inputs"]), int(mlp["classes"])
        self.names = label_names(meta, classes)
        self.inputs = [Tensor("features", "TYPE_FP32", [self.width])]
        self.outputs = [Tensor("label", "TYPE_STRING", [1]), Tensor("probabilities", "TYPE_FP32", [classes])]

    def rows(self, tensors: dict[str, np.ndarray]) -> list[Any]:
        x = np.asarray(tensors["features"])
        if x.ndim != 2 or x.shape[1] != self.width or x.shape[0] < 1:
            raise RequestError(f"input 'features': expected shape [batch, {self.width}], got {list(x.shape)}")
        if not np.all(np.isfinite(x)):
            raise RequestError("input 'features': every value must be a finite number")
        return list(x.astype(np.float32))

    def answer(self, rows: Sequence[Any]) -> dict[str, np.ndarray]:
        return _labelled(self.backend.classify({"features": np.stack(rows)}), self.names)


class TextClassifier(_TextInput):
    def __init__(self, meta: dict[str, Any], backend: Any):
        super().__init__(meta, backend)
        classes = int(meta["model"]["transformer"].get("classes") or 2)
        self.names = label_names(meta, classes)
        self.inputs = [Tensor("text", "TYPE_STRING", [1])]
        self.outputs = [Tensor("label", "TYPE_STRING", [1]), Tensor("probabilities", "TYPE_FP32", [classes])]

    def answer(self, rows: Sequence[Any]) -> dict[str, np.ndarray]:
        return _labelled(self.backend.classify({"text": self.ids(rows)}), self.names)
