"""ONNX graph surgery: the greedy decoding loop composed around plain graphs.

For generation the greedy loop runs inside the served graph: export writes the
encoder (`encoder.onnx`: input_ids -> memory, memory_mask) and the decoder
(`decoder.onnx`: decoder_input_ids[, memory, memory_mask] -> logits [B, T, vocab])
as plain graphs, then `compose_greedy` joins them into `model.onnx`: the encoder
once, then an ONNX Loop whose body runs the decoder on the prefix generated so far
and appends each row's argmax, exactly as zoo_torch's `generate` does (BOS first,
stop when every row has produced EOS, PAD after it, at most max_len tokens). We
compose the graphs by hand rather than script the loop with TorchScript because
onnxruntime's static quantizer neither calibrates nor quantizes inside a Loop's
body: the two plain graphs are quantized (and calibrated) on their own, and the loop
is composed again around the quantized graphs. The plain graphs also give the
teacher-forced logits, which evaluate uses for perplexity and the tests for the
torch/ONNX comparison.

onnx is imported inside the functions: this module holds no framework.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from .folders import StepError
from .tokenizer import BOS, EOS, PAD

OPSET = 17


def compose_greedy(decoder: Any, encoder: Any, max_len: int, pad: int = PAD, bos: int = BOS, eos: int = EOS) -> Any:
    """One ONNX model `input_ids [B, T] -> output_ids [B, max_len]`: greedy decoding
    around a decoder graph (`decoder_input_ids[, memory, memory_mask] -> logits`),
    after an encoder graph (`input_ids -> memory, memory_mask`) when there is one.

    The loop state is a [B, max_len + 1] buffer of ids, each row's length and whether
    it is done. Each iteration runs the decoder on the buffer's first max(length)
    columns, takes each row's logits at its last position (the causal decoder's output
    there does not depend on the PADs after it), writes the argmax at the row's
    length (PAD for finished rows) and stops once every row has produced EOS. An
    encoder-decoder starts every row from BOS; a decoder-only model from its prompt
    (an empty one from BOS). The output is each row's continuation, EOS included,
    PAD after it, max_len wide: what zoo_torch's `generate` returns, padded.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnx.compose import add_prefix_graph

    L1 = max_len + 1
    dec = add_prefix_graph(decoder.graph, "dec/")
    enc = add_prefix_graph(encoder.graph, "enc/") if encoder is not None else None
    for g in (dec, enc):
        if g is not None and any(
            a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in g.node for a in n.attribute
        ):
            raise StepError("cannot compose a graph that already holds subgraphs")

    def const(name: str, value: Any, dtype: Any = np.int64) -> Any:
        return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)

    inits = [
        const("g/pad", pad),
        const("g/bos", bos),
        const("g/eos", eos),
        const("g/one", 1),
        const("g/zero1", [0]),
        const("g/one1", [1]),
        const("g/L1", [L1]),
        const("g/max_len", max_len),
        const("g/L1_scalar", L1),
        const("g/positions", np.arange(L1)[None]),
        const("g/steps", np.arange(max_len)[None]),
        const("g/true", True, np.bool_),
    ]
    N = helper.make_node
    nodes = [N("Shape", ["input_ids"], ["g/shape"]), N("Slice", ["g/shape", "g/zero1", "g/one1"], ["g/batch"])]
    if enc is not None:
        nodes.append(N("Identity", ["input_ids"], ["enc/input_ids"]))
        nodes.extend(enc.node)
        inits.extend(enc.initializer)
        nodes += [
            N("Concat", ["g/batch", "g/L1"], ["g/buf_shape"], axis=0),
            N(
                "ConstantOfShape",
                ["g/buf_shape"],
                ["g/buf_pad"],
                value=numpy_helper.from_array(np.array([pad], np.int64)),
            ),
            N("Equal", ["g/positions", "g/zero1"], ["g/is_first"]),
            N("Where", ["g/is_first", "g/bos", "g/buf_pad"], ["g/buf0"]),
            N("ConstantOfShape", ["g/batch"], ["g/start"], value=numpy_helper.from_array(np.array([1], np.int64))),
        ]
    else:
        inits += [const("g/max_len1", [max_len]), const("g/pads_head", [0, 0, 0])]
        nodes += [
            N("Slice", ["input_ids", "g/zero1", "g/max_len1", "g/one1"], ["g/ids"]),
            N("Shape", ["g/ids"], ["g/ids_shape"]),
            N("Slice", ["g/ids_shape", "g/one1", "g/L1", "g/zero1"], ["g/ids_len"]),
            N("Sub", ["g/L1", "g/ids_len"], ["g/pad_len"]),
            N("Concat", ["g/pads_head", "g/pad_len"], ["g/pads"], axis=0),
            N("Pad", ["g/ids", "g/pads", "g/pad"], ["g/buf_raw"], mode="constant"),
            N("Equal", ["g/positions", "g/zero1"], ["g/is_first"]),
            N("Equal", ["g/buf_raw", "g/pad"], ["g/is_pad"]),
            N("And", ["g/is_first", "g/is_pad"], ["g/empty"]),
            N("Where", ["g/empty", "g/bos", "g/buf_raw"], ["g/buf0"]),
            N("Equal", ["g/buf0", "g/pad"], ["g/is_pad0"]),
            N("Not", ["g/is_pad0"], ["g/real0"]),
            N("Cast", ["g/real0"], ["g/real0_i"], to=TensorProto.INT64),
            N("ReduceSum", ["g/real0_i", "g/one1"], ["g/start"], keepdims=0),
        ]
    nodes += [
        N("ConstantOfShape", ["g/batch"], ["g/done0"], value=numpy_helper.from_array(np.array([False]))),
        N("ReduceMax", ["g/start"], ["g/start_max"], keepdims=0),
        N("Sub", ["g/L1_scalar", "g/start_max"], ["g/trips"]),
    ]

    # The loop body: the decoder on the prefix, then one greedy token per row.
    body = [
        N("ReduceMax", ["b/len"], ["b/width"], keepdims=1),
        N("Slice", ["b/buf", "g/zero1", "b/width", "g/one1"], ["b/prefix"]),
        N("Identity", ["b/prefix"], ["dec/decoder_input_ids"]),
    ]
    if enc is not None:
        body += [N("Identity", ["enc/memory"], ["dec/memory"]), N("Identity", ["enc/memory_mask"], ["dec/memory_mask"])]
    body += list(dec.node)
    body += [
        N("Sub", ["b/len", "g/one"], ["b/last"]),
        N("Unsqueeze", ["b/last", "g/one1"], ["b/last_2d"]),
        N("GatherND", ["dec/logits", "b/last_2d"], ["b/last_logits"], batch_dims=1),
        N("ArgMax", ["b/last_logits"], ["b/argmax"], axis=1, keepdims=0),
        N("Where", ["b/done", "g/pad", "b/argmax"], ["b/next"]),
        N("Unsqueeze", ["b/len", "g/one1"], ["b/len_2d"]),
        N("Equal", ["g/positions", "b/len_2d"], ["b/at"]),
        N("Unsqueeze", ["b/next", "g/one1"], ["b/next_2d"]),
        N("Where", ["b/at", "b/next_2d", "b/buf"], ["b/buf_out"]),
        N("Not", ["b/done"], ["b/running"]),
        N("Cast", ["b/running"], ["b/running_i"], to=TensorProto.INT64),
        N("Add", ["b/len", "b/running_i"], ["b/len_out"]),
        N("Equal", ["b/next", "g/eos"], ["b/is_eos"]),
        N("Or", ["b/done", "b/is_eos"], ["b/done_out"]),
        N("Cast", ["b/done_out"], ["b/done_i"], to=TensorProto.INT64),
        N("ReduceMin", ["b/done_i"], ["b/all_done"], keepdims=0),
        N("Equal", ["b/all_done", "g/one"], ["b/finished"]),
        N("Not", ["b/finished"], ["b/cond_out"]),
    ]
    V = helper.make_tensor_value_info
    body_graph = helper.make_graph(
        body,
        "greedy_step",
        [
            V("b/iter", TensorProto.INT64, []),
            V("b/cond", TensorProto.BOOL, []),
            V("b/buf", TensorProto.INT64, ["batch", L1]),
            V("b/len", TensorProto.INT64, ["batch"]),
            V("b/done", TensorProto.BOOL, ["batch"]),
        ],
        [
            V("b/cond_out", TensorProto.BOOL, []),
            V("b/buf_out", TensorProto.INT64, ["batch", L1]),
            V("b/len_out", TensorProto.INT64, ["batch"]),
            V("b/done_out", TensorProto.BOOL, ["batch"]),
        ],
    )
    nodes += [
        N("Loop", ["g/trips", "g/true", "g/buf0", "g/start", "g/done0"], ["g/buf", "g/len", "g/done"], body=body_graph),
        N("Unsqueeze", ["g/start", "g/one1"], ["g/start_2d"]),
        N("Add", ["g/start_2d", "g/steps"], ["g/take"]),
        N("Min", ["g/take", "g/max_len"], ["g/take_in"]),
        N("GatherElements", ["g/buf", "g/take_in"], ["g/continuation"], axis=1),
        N("Greater", ["g/take", "g/max_len"], ["g/beyond"]),
        N("Where", ["g/beyond", "g/pad", "g/continuation"], ["output_ids"]),
    ]
    inits.extend(dec.initializer)  # the body reads the decoder's weights from the outer scope
    nodes, inits = _dedupe_initializers(nodes, inits)
    graph = helper.make_graph(
        nodes,
        "greedy",
        [V("input_ids", TensorProto.INT64, ["batch", "length"])],
        [V("output_ids", TensorProto.INT64, ["batch", max_len])],
        initializer=inits,
    )
    opsets: dict[str, int] = {}
    for m in (decoder, encoder):
        if m is not None:
            for o in m.opset_import:
                opsets[o.domain] = max(opsets.get(o.domain, 0), o.version)
    opsets[""] = max(opsets.get("", OPSET), OPSET)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets.items())], producer_name="llmc"
    )
    model.ir_version = decoder.ir_version
    onnx.checker.check_model(model)
    return model


def _dedupe_initializers(nodes: list[Any], inits: list[Any]) -> tuple[list[Any], list[Any]]:
    """Keep one copy of identical initializers (the tied embedding the encoder and the
    decoder graphs each carry, equal biases), renaming their uses, subgraphs included."""
    from onnx import numpy_helper

    seen: dict[tuple[Any, ...], str] = {}
    rename: dict[str, str] = {}
    kept = []
    for t in inits:
        a = numpy_helper.to_array(t)
        key = (t.data_type, tuple(t.dims), hashlib.sha256(a.tobytes()).hexdigest())
        if key in seen:
            rename[t.name] = seen[key]
        else:
            seen[key] = t.name
            kept.append(t)

    def fix(node_list: Any) -> None:
        for n in node_list:
            for i, name in enumerate(n.input):
                if name in rename:
                    n.input[i] = rename[name]
            for a in n.attribute:
                if a.g is not None and len(a.g.node):
                    fix(a.g.node)

    fix(nodes)
    return nodes, kept
