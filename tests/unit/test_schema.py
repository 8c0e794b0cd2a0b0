"""The type checker and the pydantic models agree: the IR that `check` constructs
from checked data validates unchanged, and the models' defaults are docs/language.md's."""

from __future__ import annotations

import pytest
from helpers import ROOT

from llmc.compiler import fields, schema
from llmc.compiler.driver import check_spec

CASES = [
    ("specs/translator.llm", None),
    ("specs/translator.llm", "local"),
    ("specs/classifier.llm", None),
    ("specs/classifier.llm", "local"),
]


@pytest.mark.parametrize("spec,profile", CASES)
def test_constructed_ir_validates_unchanged(spec, profile, monkeypatch):
    monkeypatch.chdir(ROOT)
    result = check_spec(spec, profile=profile)
    assert result.ok, result.diagnostics
    dumped = result.ir.model_dump()
    assert schema.Spec.model_validate(dumped) == result.ir
    assert schema.Spec.model_validate(dumped).model_dump() == dumped


def test_defaults_follow_the_reference(monkeypatch):
    monkeypatch.chdir(ROOT)
    text = (
        'model m {\n  task = "translation"\n  transformer {\n    layers = 2\n    d_model = 64\n    heads = 4\n    vocab = 300\n  }\n'
        '  data {\n    train = "d/train.tsv"\n    valid = "d/valid.tsv"\n    test = "d/test.tsv"\n  }\n}\n'
        'train {\n  cluster {\n    hosts = 2\n    slots_per_host = 2\n    device = "cpu"\n  }\n  batch_size = 64\n  steps = 10\n'
        '  optimizer "adam" {\n    lr = 1e-3\n  }\n}\n'
        'serve {\n  device = "cpu"\n  sla {\n    p99_latency = 500ms\n    throughput = 1rps\n  }\n}\n'
    )
    result = check_spec("specs/defaults.llm", text=text)
    ir = result.ir
    assert ir is not None, result.diagnostics
    t = ir.model.transformer
    assert (t.d_ff, t.max_len, t.dropout, t.kind) == (256, 512, 0.1, "encoder-decoder")
    assert ir.model.framework == "torch"
    assert (ir.model.data.format, ir.model.data.source, ir.model.data.target) == ("tsv", "source", "target")
    tr = ir.train
    assert (tr.parallel.data, tr.parallel.tensor, tr.parallel.pipeline) == (4, 1, 1)
    assert tr.micro_batch == 16 and tr.precision == "fp32" and tr.seed == 0
    assert tr.schedule.name == "constant" and tr.gradient_compression == "none"
    assert (tr.checkpoint.every, tr.checkpoint.keep, tr.checkpoint.dir) == (1800.0, 3, "checkpoints")
    s = ir.serve
    assert s.platform == "triton" and s.batching.max_batch_size == 8 and s.batching.timeout == pytest.approx(0.002)
    assert s.sla.availability == pytest.approx(0.999) and s.sla.error_rate == pytest.approx(0.001)
    # Relative data paths are relative to the spec's folder.
    assert ir.model.data.train == "d/train.tsv"


def test_relative_paths_follow_the_file_that_wrote_them(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "base.llm").write_text(
        'model m {\n  task = "classification"\n  mlp {\n    inputs = 4\n    hidden = [8]\n    classes = 2\n  }\n'
        '  data {\n    train = "data/train.csv"\n    valid = "s3://bucket/valid.csv"\n    test = "/abs/test.csv"\n  }\n}\n'
    )
    (tmp_path / "child.llm").write_text('extends "base/base.llm"\n')
    result = check_spec(str(tmp_path / "child.llm"))
    data = result.ir.model.data
    assert data.train == "base/data/train.csv"
    assert data.valid == "s3://bucket/valid.csv"
    assert data.test == "/abs/test.csv"


# One key in every block, and the model fields other blocks derive their defaults from.
VARIANT_KEYS = [
    ("model.name", "renamed"),
    ("model.framework", "tensorflow"),
    ("model.task", "classification"),
    ("model.transformer.d_model", 256),
    ("train.batch_size", 256),
    ("train.cluster.hosts", 1),
    ("compress.prune.sparsity", 0.5),
    ("evaluate.split", "valid"),
    ("search.max_evals", 3),
    ("serve.device", "cpu"),
    ("deploy.namespace", "elsewhere"),
]


@pytest.mark.parametrize("spec,profile,derived", [(s, p, d) for s, p in CASES for d in (False, True)])
def test_a_variant_rebuilds_every_block_the_change_reaches(spec, profile, derived, monkeypatch):
    """The search check's variants rebuild only the changed block and the blocks that
    derive defaults from it (schema.DERIVED_FROM_OTHER_BLOCKS); the result must be the
    IR a whole construction gives. `derived`: the spec without its serving platform and
    deploy image, so that both come from the model block."""
    import os
    import re

    from llmc.compiler import driver
    from llmc.compiler.diagnostics import Collector
    from llmc.compiler.typecheck import TypeChecker

    monkeypatch.chdir(ROOT)
    text = (ROOT / spec).read_text(encoding="utf-8")
    if derived:
        text = re.sub(r"\n *(platform|image) *= *\"[^\"]*\"", "", text)
    result = check_spec(spec, profile=profile, text=text)
    assert result.ok and result.composed is not None and result.ir is not None, result.diagnostics
    data = TypeChecker(result.composed, Collector(), os.path.dirname(spec)).run()
    if derived:
        assert "platform" not in data["serve"] and "image" not in data["deploy"]
    for key, value in VARIANT_KEYS:
        if key.split(".")[0] not in data:
            continue
        changed = driver._copy(data)
        node = changed
        for part in key.split(".")[:-1]:
            node = node.setdefault(part, {})
        node[key.split(".")[-1]] = value
        whole = fields.construct(schema.Spec, schema.derive_defaults(changed))
        assert repr(driver._variant_ir(data, key, value, result.ir)) == repr(whole), key
