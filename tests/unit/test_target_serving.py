"""The tfserving and triton targets: every generated text proto is parsed with the
serving platform's own message (google.protobuf.text_format rejects an unknown or
misspelt field), and its values are the spec's.

* models.config: tensorflow_serving.config.model_server_config_pb2.ModelServerConfig
  (the tensorflow-serving-api wheel).
* batching.config: tensorflow_serving's BatchingParameters. The wheel does not ship
  tensorflow_serving/servables/ (no session_bundle_config_pb2), so when that module
  is absent the message is rebuilt here from the upstream .proto (below, field for
  field) and parsed by the same protobuf text parser.
* config.pbtxt: Triton's ModelConfig, tritonclient.grpc.model_config_pb2 (the
  tritonclient wheel, generated from Triton's model_config.proto).

The tests of this part that run real processes (tools, frameworks, servers) are in
tests/integration/test_target_serving_runs.py.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from helpers import build_spec

text_format = pytest.importorskip("google.protobuf.text_format")
model_server_config_pb2 = pytest.importorskip("tensorflow_serving.config.model_server_config_pb2")
model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")

from support.serving import built as built  # noqa: E402  (a fixture: pytest finds it imported here)
from support.serving import parse, relative_files, spec_path  # noqa: E402

from llmc.compiler.driver import check_spec  # noqa: E402
from llmc.compiler.targets import BuildContext  # noqa: E402
from llmc.compiler.targets import triton as triton_target  # noqa: E402
from llmc.compiler.targets.serving_names import serving_name, triton_platform  # noqa: E402


def _batching_parameters_class():
    try:
        from tensorflow_serving.servables.tensorflow import session_bundle_config_pb2

        return session_bundle_config_pb2.BatchingParameters
    except ImportError:
        pass
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    # message BatchingParameters of tensorflow/serving
    # tensorflow_serving/servables/tensorflow/session_bundle_config.proto (2026-07 main).
    fields = [
        ("max_batch_size", 1, "Int64Value"),
        ("batch_timeout_micros", 2, "Int64Value"),
        ("max_enqueued_batches", 3, "Int64Value"),
        ("num_batch_threads", 4, "Int64Value"),
        ("thread_pool_name", 5, "StringValue"),
        ("allowed_batch_sizes", 6, "repeated int64"),
        ("pad_variable_length_inputs", 7, "bool"),
        ("enable_large_batch_splitting", 8, "BoolValue"),
        ("max_execution_batch_size", 9, "Int64Value"),
    ]
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/servables/tensorflow/session_bundle_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    message = file.message_type.add(name="BatchingParameters")
    for name, number, kind in fields:
        if kind == "repeated int64":
            message.field.add(name=name, number=number, label=F.LABEL_REPEATED, type=F.TYPE_INT64)
        elif kind == "bool":
            message.field.add(name=name, number=number, label=F.LABEL_OPTIONAL, type=F.TYPE_BOOL)
        else:
            message.field.add(
                name=name,
                number=number,
                label=F.LABEL_OPTIONAL,
                type=F.TYPE_MESSAGE,
                type_name=f".google.protobuf.{kind}",
            )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(wrappers_pb2.DESCRIPTOR.serialized_pb))
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


BatchingParameters = _batching_parameters_class()


def misspelt(text: str, field: str) -> str:
    """text with the first use of `field` (outside comments) misspelt."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if not line.lstrip().startswith("#") and re.search(rf"\b{field}\b", line):
            lines[i] = re.sub(rf"\b{field}\b", field + "s", line, count=1)
            return "".join(lines)
    raise AssertionError(f"no field {field}")


# --- TF Serving -------------------------------------------------------------------


@pytest.mark.parametrize("profile", [None, "local"])
def test_tfserving_configs_parse_with_tf_serving_protos(built, profile):
    out = built("classifier", profile)
    result = check_spec(str(spec_path("classifier")), profile)
    ir, sizing = result.ir, result.facts.sizing
    assert not any(p.startswith("serve/model_repository/") for p in relative_files(out))

    models = parse((out / "serve" / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    (config,) = models.model_config_list.config
    assert config.name == "classifier"
    assert config.base_path == "/models/classifier"
    assert config.model_platform == "tensorflow"
    assert config.model_version_policy.WhichOneof("policy_choice") == "latest"
    assert config.model_version_policy.latest.num_versions == 1

    text = (out / "serve" / "batching.config").read_text()
    batching = parse(text, BatchingParameters())
    serve = ir.serve
    assert batching.max_batch_size.value == serve.batching.max_batch_size == 64
    assert batching.batch_timeout_micros.value == round(serve.batching.timeout * 1e6) == 2000
    threads = batching.num_batch_threads.value
    # Little's law: batches in service at the planned load, plus one.
    rate = serve.sla.throughput / sizing.replicas
    assert threads == math.ceil(rate * sizing.batch_service_s / sizing.batch_size) + 1
    # throughput x p99 requests per replica, in batches of the planned size.
    assert batching.max_enqueued_batches.value == max(
        threads, math.ceil(rate * serve.sla.p99_latency / sizing.batch_size)
    )
    if ir.compress.engine == "tensorrt":  # TF-TRT: a bounded set of batch shapes
        assert list(batching.allowed_batch_sizes) == [1, 2, 4, 8, 16, 32, 64]
    else:
        assert list(batching.allowed_batch_sizes) == []


def test_tfserving_numbers_for_the_classifier():
    """The formulas' results for the checked-in spec, worked by hand (docs in tfserving.py)."""
    result = check_spec(str(spec_path("classifier")))
    sizing = result.facts.sizing
    # 2000 req/s on one replica; batches of 7 in 1.06 ms: 2000 x 0.00106 / 7 = 0.30 -> 1 + 1 threads;
    # 2000 x 0.020 / 7 = 5.7 -> 6 batches queued at most.
    assert (sizing.replicas, sizing.batch_size) == (1, 7)
    from llmc.compiler.targets.tfserving import batching_context

    assert result.ir is not None and result.facts is not None
    ctx = batching_context(BuildContext(result.ir, result.facts, "classifier.llm", None, "0" * 64, "0"))
    assert (ctx.num_batch_threads, ctx.max_enqueued_batches) == (2, 6)


def test_tfserving_threads_follow_resources_cpu(tmp_path):
    text = (
        spec_path("classifier")
        .read_text()
        .replace("  replicas {\n    min = 2", "  resources {\n    cpu = 6.5\n  }\n  replicas {\n    min = 2", 1)
    )
    spec = tmp_path / "c.llm"
    spec.write_text(text)
    out = build_spec(spec, tmp_path / "b")
    batching = parse((out / "serve" / "batching.config").read_text(), BatchingParameters())
    assert batching.num_batch_threads.value == 6
    assert batching.max_enqueued_batches.value == 6


def test_tfserving_misspelt_fields_are_rejected(built):
    out = built("classifier", None)
    models = (out / "serve" / "models.config").read_text()
    batching = (out / "serve" / "batching.config").read_text()
    for field in ("base_path", "model_platform", "num_versions"):
        with pytest.raises(text_format.ParseError):
            parse(misspelt(models, field), model_server_config_pb2.ModelServerConfig())
    for field in ("max_enqueued_batches", "batch_timeout_micros", "allowed_batch_sizes"):
        with pytest.raises(text_format.ParseError):
            parse(misspelt(batching, field), BatchingParameters())


# --- Triton -----------------------------------------------------------------------


def test_triton_serves_a_tensorflow_mlp(tmp_path):
    text = spec_path("classifier").read_text().replace('platform = "tf-serving"', 'platform = "triton"')
    spec = tmp_path / "classifier.llm"
    spec.write_text(text)
    out = build_spec(spec, tmp_path / "b")
    assert "serve/models.config" not in relative_files(out)
    config = parse((out / "serve/model_repository/classifier/config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    # TF-TRT writes a SavedModel: Triton's TensorFlow backend serves it.
    assert config.platform == "tensorflow_savedmodel"
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        ("features", model_config_pb2.TYPE_FP32, [64])
    ]
    assert [(o.name, o.data_type, list(o.dims)) for o in config.output] == [
        ("logits", model_config_pb2.TYPE_FP32, [10])
    ]
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4, 8, 16, 32, 64]
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000


@pytest.mark.parametrize(
    "framework,engine,compressed,expected",
    [
        ("torch", "tensorrt", True, "tensorrt_plan"),
        ("torch", "onnxruntime", True, "onnxruntime_onnx"),
        # No ONNX is made of a TensorFlow model (no tf2onnx): its SavedModel is served.
        ("tensorflow", "onnxruntime", True, "tensorflow_savedmodel"),
        ("tensorflow", "tensorrt", True, "tensorflow_savedmodel"),
        ("tensorflow", None, False, "tensorflow_savedmodel"),
        # No compress block: the compress stage exports the trained model and readies it (onnxruntime).
        ("torch", None, False, "onnxruntime_onnx"),
    ],
)
def test_triton_platform_by_engine(framework, engine, compressed, expected):
    ir = check_spec(str(spec_path("translator"))).ir
    model = ir.model.model_copy(update={"framework": framework})
    compress = ir.compress.model_copy(update={"engine": engine}) if compressed else None
    assert triton_platform(ir.model_copy(update={"model": model, "compress": compress})) == expected


def test_triton_io_for_a_transformer_classifier():
    ir = check_spec(str(spec_path("translator"))).ir
    classifier = ir.model_copy(update={"model": ir.model.model_copy(update={"task": "classification"})})
    arch = ir.model.transformer.model_copy(update={"kind": "encoder", "classes": 3})
    inputs, outputs = triton_target.io_tensors(classifier, arch)
    assert inputs == [triton_target.Tensor("input_ids", "TYPE_INT64", [256])]
    assert outputs == [triton_target.Tensor("logits", "TYPE_FP32", [3])]  # the spec's classes, never a default


def test_triton_misspelt_fields_are_rejected(built):
    out = built("translator", None)
    text = (out / "serve/model_repository/translator/config.pbtxt").read_text()
    for field in ("max_batch_size", "preferred_batch_size", "max_queue_delay_microseconds", "data_type", "dims"):
        with pytest.raises(text_format.ParseError):
            parse(misspelt(text, field), model_config_pb2.ModelConfig())
    with pytest.raises(text_format.ParseError):  # the loop's Python model runs on the CPU
        parse(text.replace("KIND_CPU", "KIND_CPUS"), model_config_pb2.ModelConfig())
    engine = (out / "serve/model_repository/translator_decoder/config.pbtxt").read_text()
    parse(engine, model_config_pb2.ModelConfig())
    with pytest.raises(text_format.ParseError):
        parse(engine.replace("KIND_GPU", "KIND_GPUS"), model_config_pb2.ModelConfig())


# --- hostile strings --------------------------------------------------------------

HOSTILE = 'evil" } base_path: "/etc" \\ \n config { name: "x'


def _hostile_spec(tmp_path: Path, name: str, platform: str | None = None) -> Path:
    escaped = HOSTILE.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    text = spec_path(name).read_text().replace(f"model {name} {{", f'model "{escaped}" {{', 1)
    if platform:
        text = text.replace('platform = "tf-serving"', f'platform = "{platform}"')
    spec = tmp_path / f"{name}.llm"
    spec.write_text(text)
    return spec


def test_serving_name():
    assert serving_name("translator") == "translator"
    assert serving_name("en-de_v2.1") == "en-de_v2.1"
    for bad in (HOSTILE, "..", ".hidden", "a/b", "", "ü", "x" * 101):
        name = serving_name(bad)
        assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name) and name != bad, bad
    assert serving_name("a/b") != serving_name("a:b")  # distinct names, distinct directories


def test_hostile_names_stay_data_in_tf_serving_protos(tmp_path):
    out = build_spec(_hostile_spec(tmp_path, "classifier"), tmp_path / "b")
    models = parse((out / "serve" / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    (config,) = models.model_config_list.config  # nothing injected a second config
    name = serving_name(HOSTILE)
    assert config.name == name and config.base_path == f"/models/{name}"
    assert config.model_platform == "tensorflow"
    parse((out / "serve" / "batching.config").read_text(), BatchingParameters())


def test_hostile_names_stay_data_in_triton_protos(tmp_path):
    out = build_spec(_hostile_spec(tmp_path, "translator"), tmp_path / "b")
    name = serving_name(HOSTILE)
    paths = sorted(p for p in relative_files(out) if p.startswith("serve/"))
    # Generation on TensorRT: the greedy loop's Python model and one engine per graph.
    assert paths == [
        f"serve/model_repository/{name}/1/model.py",
        f"serve/model_repository/{name}/config.pbtxt",
        f"serve/model_repository/{name}_decoder/config.pbtxt",
        f"serve/model_repository/{name}_encoder/config.pbtxt",
    ]
    config = parse((out / paths[1]).read_text(), model_config_pb2.ModelConfig())
    assert config.name == name and config.backend == "python" and not config.platform
    assert [i.name for i in config.input] == ["input_ids"] and len(config.instance_group) == 1
    for part in ("encoder", "decoder"):
        engine = parse(
            (out / f"serve/model_repository/{name}_{part}/config.pbtxt").read_text(), model_config_pb2.ModelConfig()
        )
        assert engine.name == f"{name}_{part}" and engine.platform == "tensorrt_plan"
    loop = (out / paths[0]).read_text()
    compile(loop, paths[0], "exec")
    assert f"ENCODER = {name + '_encoder'!r}" in loop and f"DECODER = {name + '_decoder'!r}" in loop


# --- a real Triton server ---------------------------------------------------------
