"""ONNX export of a torch zoo model (torch only: TensorFlow models are served as
their SavedModel, tf2onnx not being a runtime dependency).

The legacy TorchScript exporter (`dynamo=False`, opset 17) exports the forward pass
with a dynamic batch (and sequence) axis. The served graph follows Triton's I/O
contract (compiler/targets/triton.py):

    mlp                    features float32 [B, inputs]   -> logits float32 [B, classes]
    encoder (classifier)   input_ids int64 [B, T]         -> logits float32 [B, classes]
    encoder-decoder,       input_ids int64 [B, T]         -> output_ids int64 [B, max_len]
    decoder

For generation the plain encoder and decoder graphs are written, and the greedy loop
is composed around them (runtime/onnx_graphs.py).
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from ..folders import architecture
from ..onnx_graphs import OPSET, compose_greedy
from ..tokenizer import BOS


class Classifier(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model: Any = model  # a zoo_torch model: encode and decode are its own

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(x)


class Encoder(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model: Any = model

    def forward(self, input_ids: torch.Tensor) -> Any:
        memory, mask = self.model.encode(input_ids)
        return memory, mask


class CrossDecoder(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model: Any = model

    def forward(self, decoder_input_ids: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> Any:
        return self.model.decode(decoder_input_ids, memory, memory_mask)


class Decoder(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model: Any = model

    def forward(self, decoder_input_ids: torch.Tensor) -> Any:
        return self.model.decode(decoder_input_ids)


def _export(
    module: nn.Module,
    args: tuple[Any, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
) -> None:
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,
            opset_version=OPSET,
            do_constant_folding=True,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
        )


def export_onnx(model: nn.Module, model_cfg: dict[str, Any], directory: Path) -> dict[str, Any]:
    """Write the ONNX graphs of a torch zoo model to `directory` (see the module
    docstring); returns the `"onnx"` entry of llmc.json."""
    model.eval()
    arch = architecture(model_cfg)
    directory.mkdir(parents=True, exist_ok=True)
    batch_axes = {0: "batch"}
    seq_axes = {0: "batch", 1: "length"}
    with torch.no_grad():
        if arch == "mlp":
            x = torch.zeros(2, model_cfg["mlp"]["inputs"])
            _export(
                Classifier(model),
                (x,),
                directory / "model.onnx",
                ["features"],
                ["logits"],
                {"features": batch_axes, "logits": batch_axes},
            )
            return {"served": "model.onnx", "inputs": ["features"], "outputs": ["logits"]}
        ids = _example_ids(model_cfg)
        if arch == "encoder":
            _export(
                Classifier(model),
                (ids,),
                directory / "model.onnx",
                ["input_ids"],
                ["logits"],
                {"input_ids": seq_axes, "logits": batch_axes},
            )
            return {"served": "model.onnx", "inputs": ["input_ids"], "outputs": ["logits"]}
        encoder = None
        prefix = ids[:, :3].clone()
        prefix[:, 0] = BOS
        if arch == "encoder-decoder":
            _export(
                Encoder(model),
                (ids,),
                directory / "encoder.onnx",
                ["input_ids"],
                ["memory", "memory_mask"],
                {"input_ids": seq_axes, "memory": seq_axes, "memory_mask": seq_axes},
            )
            memory, mask = model.encode(ids)  # type: ignore[operator]
            _export(
                CrossDecoder(model),
                (prefix, memory, mask),
                directory / "decoder.onnx",
                ["decoder_input_ids", "memory", "memory_mask"],
                ["logits"],
                {
                    "decoder_input_ids": {0: "batch", 1: "target_length"},
                    "memory": seq_axes,
                    "memory_mask": seq_axes,
                    "logits": {0: "batch", 1: "target_length"},
                },
            )
            encoder = onnx.load(str(directory / "encoder.onnx"))
        else:
            _export(
                Decoder(model),
                (prefix,),
                directory / "decoder.onnx",
                ["decoder_input_ids"],
                ["logits"],
                {"decoder_input_ids": {0: "batch", 1: "target_length"}, "logits": {0: "batch", 1: "target_length"}},
            )
    decoder = onnx.load(str(directory / "decoder.onnx"))
    composed = compose_greedy(decoder, encoder, int(model_cfg["transformer"]["max_len"]))
    onnx.save(composed, str(directory / "model.onnx"))
    parts = ["encoder.onnx", "decoder.onnx"] if encoder is not None else ["decoder.onnx"]
    return {"served": "model.onnx", "inputs": ["input_ids"], "outputs": ["output_ids"], "parts": parts}


def _example_ids(model_cfg: dict[str, Any]) -> torch.Tensor:
    max_len = int(model_cfg["transformer"]["max_len"])
    g = torch.Generator().manual_seed(0)
    return torch.randint(32, 127, (2, max(2, min(8, max_len))), generator=g)
