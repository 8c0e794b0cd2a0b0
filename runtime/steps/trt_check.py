"""TensorRT's ONNX parser and builder, shared by the cluster's engine build and a
check that runs without a GPU.

The cluster builds with `tensorrt` (engines.build_tensorrt: FP16/INT8, the INT8
calibrator and its cache, on the GPU it serves on). TensorRT-RTX's `tensorrt_rtx`
(the `tensorrt-rtx-cu12` wheel bin/setup installs) has the same ONNX parser and
builder API and builds a serialized engine on a machine with no GPU; only loading
the engine needs one. So the parts both use are written once here over either
module: the parse (errors name each rejected node: its index, name and op), the
optimization profile (batch 1 to max_batch_size, every dynamic sequence axis 1 to
max_len) and the serialized build. `check_onnx` runs them with TensorRT-RTX: what
`build_engine.py --check` and tests/integration/test_tensorrt_rtx_runs.py run.

TensorRT-RTX differs where the check does not go: it has no FP16 or INT8 builder
flags (it is weakly typed and picks precisions when the engine is loaded), no INT8
calibrator, and needs no EXPLICIT_BATCH flag (TensorRT 10 dropped it too).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, NamedTuple

from ..folders import NeedsTensorRT, StepError

RTX = "tensorrt_rtx"
Ranges = dict[str, tuple[list[int], list[int], list[int]]]  # input name -> (min, opt, max) shape


def import_tensorrt(module: str) -> Any:
    """`tensorrt` (the cluster's) or `tensorrt_rtx` (the check's); NeedsTensorRT when absent."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        if module == RTX:
            raise NeedsTensorRT(
                "TensorRT-RTX is not installed here (`import tensorrt_rtx` failed): bin/setup installs "
                "the tensorrt-rtx-cu12 wheel"
            ) from None
        raise NeedsTensorRT(
            "TensorRT is not installed here (`import tensorrt` failed): build the engine on a machine with "
            "TensorRT and a GPU, e.g. the compress Job of k8s/, run build_engine.py --check to parse and build "
            'it with TensorRT-RTX without a GPU, or set compress.engine = "onnxruntime"'
        ) from None


def make_logger(trt: Any) -> Any:
    """A logger that keeps TensorRT's errors, so that a failed build can say why in its
    message rather than only on stderr."""

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(msg)

    return Logger()


def parser_errors(parser: Any) -> list[str]:
    """One line per parser error, naming the node (index, name, op) it rejected."""
    out = []
    for i in range(parser.num_errors):
        e = parser.get_error(i)
        node, name, op = e.node(), e.node_name(), e.node_operator()
        where = f"node {node}" + (f" {name!r}" if name else "") + (f" (op {op})" if op else "") if node >= 0 else ""
        out.append(f"{where}: {e.desc()}" if where else str(e.desc()))
    return out


def parse_onnx(trt: Any, builder: Any, logger: Any, onnx_path: Path, what: str) -> tuple[Any, Any]:
    """(network, parser) of an ONNX file; StepError naming every node the parser rejected."""
    flags = 0
    explicit = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    if explicit is not None:  # TensorRT 8 needs it; 10 and RTX are explicit-batch only
        flags = 1 << int(explicit)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = parser_errors(parser) or ["no error reported"]
        raise StepError(f"{what} cannot parse {onnx_path.name}: " + "; ".join(errors))
    return network, parser


def profile_ranges(network: Any, max_batch: int, max_len: int | None) -> Ranges:
    """The one optimization profile the cluster's Triton config asks for: batch 1 to
    max_batch_size (opt: a full batch, the batcher's preferred size) and every other
    dynamic axis, the sequence lengths, 1 to max_len. A dynamic axis with no max_len
    (an MLP has none) is an error: the engine could not be built for it."""
    top = max(1, max_batch)
    ranges: Ranges = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = list(tensor.shape)
        lo, opt, hi = list(dims), list(dims), list(dims)
        lo[0], opt[0], hi[0] = 1, top, top
        for d in range(1, len(dims)):
            if dims[d] < 0:
                if not max_len:
                    raise StepError(f"input {tensor.name!r} has a dynamic axis {d} and the model no max_len")
                lo[d], opt[d], hi[d] = 1, max_len, max_len
        ranges[tensor.name] = (lo, opt, hi)
    return ranges


def add_profile(builder: Any, config: Any, ranges: Ranges) -> Any:
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in ranges.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    return profile


def control_flow_nodes(onnx_path: Path) -> list[str]:
    """The Loop, If and Scan nodes of a graph: what TensorRT builds least reliably, named
    when a build fails without saying where."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return [f"{n.op_type} {n.name!r}" for n in model.graph.node if n.op_type in ("Loop", "If", "Scan")]


def serialize(builder: Any, logger: Any, network: Any, config: Any, onnx_path: Path, what: str) -> bytes:
    """The serialized engine; StepError with TensorRT's own errors (make_logger's) when it builds none."""
    logger.errors.clear()
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        reason = "; ".join(logger.errors[-3:]) or "no error logged"
        flow = control_flow_nodes(onnx_path)
        hint = f" (control flow in the graph: {', '.join(flow)})" if flow else ""
        raise StepError(f"{what} parsed {onnx_path.name} but built no engine{hint}: {reason}")
    return bytes(plan)


class Built(NamedTuple):
    plan: bytes
    ranges: Ranges
    parse_s: float
    build_s: float


def build_onnx(trt: Any, onnx_path: Path, max_batch: int, max_len: int | None, what: str) -> Built:
    """Parse `onnx_path` and build its serialized engine with the cluster's profile and
    the builder's defaults (TensorRT-RTX: no precision flags to set)."""
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    t0 = time.perf_counter()
    network, _parser = parse_onnx(trt, builder, logger, onnx_path, what)
    ranges = profile_ranges(network, max_batch, max_len)
    config = builder.create_builder_config()
    add_profile(builder, config, ranges)
    t1 = time.perf_counter()
    plan = serialize(builder, logger, network, config, onnx_path, what)
    return Built(plan, ranges, t1 - t0, time.perf_counter() - t1)


def check_onnx(onnx_path: Path, max_batch: int, max_len: int | None) -> dict[str, Any]:
    """TensorRT-RTX parses `onnx_path` and builds a serialized engine with the cluster's
    profile; the report of it. StepError (naming the node, or the builder's error)
    when it cannot."""
    trt = import_tensorrt(RTX)
    built = build_onnx(trt, onnx_path, max_batch, max_len, f"TensorRT-RTX {trt.__version__}")
    return {
        "onnx": onnx_path.name,
        "engine_bytes": len(built.plan),
        "profile": {name: {"min": r[0], "opt": r[1], "max": r[2]} for name, r in built.ranges.items()},
        "parse_seconds": round(built.parse_s, 3),
        "build_seconds": round(built.build_s, 3),
    }


STEP_INPUT, STEP_OUTPUT = "last", "next_ids"


def decoder_step(decoder: Any) -> Any:
    """The decoder graph as one greedy step, for an engine: `last` [B, 1] (each row's
    last position) in, `next_ids` [B, 1] (the argmax of the logits there) out, in place
    of the logits [B, T, vocab]. The loop outside the engine (the Triton model's
    model.py) then moves B ids per step instead of B x T x vocab floats (524 MB at the
    full translator's last step). The same nodes as compose_greedy's loop body."""
    from onnx import TensorProto, helper

    model = type(decoder)()
    model.CopyFrom(decoder)
    graph = model.graph
    (logits,) = [o for o in graph.output if o.name == "logits"]
    graph.output.remove(logits)
    graph.node.extend(
        [
            helper.make_node("GatherND", ["logits", STEP_INPUT], ["step/last_logits"], batch_dims=1),
            helper.make_node("ArgMax", ["step/last_logits"], [STEP_OUTPUT], axis=1, keepdims=1),
        ]
    )
    graph.input.append(helper.make_tensor_value_info(STEP_INPUT, TensorProto.INT64, ["batch", 1]))
    graph.output.append(helper.make_tensor_value_info(STEP_OUTPUT, TensorProto.INT64, ["batch", 1]))
    return model
