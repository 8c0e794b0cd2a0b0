"""Structured pruning (runtime/zoo_torch.py, zoo_tf.py `unit_scores`, `units_to_keep`,
`shrink`; frameworks/*.py; steps/prune.py), in this process: whole attention heads,
FFN channels and hidden units removed, so the tensors, the files and the ONNX graphs
get smaller, and the units that stay compute what they computed before."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import ROOT

from llmc.runtime import folders
from llmc.runtime.frameworks import TrainSettings
from llmc.runtime.tokenizer import BOS, PAD

torch = pytest.importorskip("torch")

from llmc.runtime import zoo_torch  # noqa: E402

DATES = ROOT / "examples" / "data" / "dates"


def translator_cfg(layers=1, d_model=32, heads=4, d_ff=64, max_len=16):
    return {
        "task": "translation",
        "transformer": {
            "kind": "encoder-decoder",
            "layers": layers,
            "d_model": d_model,
            "heads": heads,
            "d_ff": d_ff,
            "vocab": 260,
            "max_len": max_len,
            "dropout": 0.0,
        },
        "data": {"tokenizer": "bytes"},
    }


def ids(rows, width, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = torch.randint(32, 127, (rows, width), generator=g)
    out[1, width - 2 :] = PAD  # a padded row: the masks must survive the shrinking
    return out


def kill_units(model, heads=(0, 2), channels=tuple(range(0, 64, 2))):
    """Silence some heads (their V rows and bias) and FFN channels (fc1 rows and bias:
    GELU(0) = 0) in every layer: the units a correct scoring removes, and whose removal
    changes no output. (A state_dict's tensors are the model's own.)"""
    w = model.state_dict()
    for name, m in model.named_modules():
        if isinstance(m, zoo_torch.Attention):
            for h in heads:
                w[f"{name}.v.weight"][h * m.head_dim : (h + 1) * m.head_dim] = 0
                w[f"{name}.v.bias"][h * m.head_dim : (h + 1) * m.head_dim] = 0
        elif isinstance(m, zoo_torch.FeedForward):
            w[f"{name}.fc1.weight"][list(channels)] = 0
            w[f"{name}.fc1.bias"][list(channels)] = 0


@pytest.fixture(scope="module")
def pruned_translator():
    """A 1-layer encoder-decoder with heads 0 and 2 and the even FFN channels dead, pruned by half."""
    cfg = translator_cfg()
    model = zoo_torch.build_model(cfg, seed=3).eval()
    kill_units(model)
    keep = zoo_torch.units_to_keep(zoo_torch.unit_scores(model), 0.5)
    small, small_cfg = zoo_torch.shrink(model, cfg, keep)
    return model, cfg, small, small_cfg, keep


def test_torch_structured_pruning_removes_the_dead_heads_and_channels(pruned_translator):
    model, cfg, small, small_cfg, keep = pruned_translator
    assert set(keep) == {
        "encoder.layers.0.self_attn",
        "encoder.layers.0.ffn",
        "decoder.layers.0.self_attn",
        "decoder.layers.0.cross_attn",
        "decoder.layers.0.ffn",
    }
    for name, idx in keep.items():
        if name.endswith("attn"):
            assert idx.tolist() == [1, 3]  # the silenced heads 0 and 2 go
        else:
            assert idx.tolist() == list(range(1, 64, 2))  # the silenced even channels go
    assert small_cfg["transformer"] == {**cfg["transformer"], "heads": 2, "d_ff": 32, "head_dim": 8}
    assert cfg["transformer"]["heads"] == 4  # the input block is not changed
    w = small.state_dict()
    for attn in ("encoder.layers.0.self_attn", "decoder.layers.0.cross_attn"):
        for proj in "qkv":
            assert w[f"{attn}.{proj}.weight"].shape == (16, 32) and w[f"{attn}.{proj}.bias"].shape == (16,)
        assert w[f"{attn}.o.weight"].shape == (32, 16) and w[f"{attn}.o.bias"].shape == (32,)
    assert w["decoder.layers.0.ffn.fc1.weight"].shape == (32, 32)
    assert w["decoder.layers.0.ffn.fc2.weight"].shape == (32, 32)
    assert w["tok.weight"].shape == (260, 32)  # the residual width stays
    # Per attention block 16 of Q, K and V's rows (with their biases) and 16 of O's columns;
    # per FFN 32 of fc1's rows (and biases) and 32 of fc2's columns.
    removed = 3 * (3 * (16 * 32 + 16) + 32 * 16) + 2 * (32 * 32 + 32 + 32 * 32)
    assert zoo_torch.count_params(small) == zoo_torch.count_params(model) - removed


def test_torch_removing_dead_units_changes_no_output(pruned_translator):
    model, _, small, _, _ = pruned_translator
    src, tgt = ids(2, 7), ids(2, 5, seed=1)
    tgt[:, 0] = BOS
    with torch.no_grad():
        assert torch.allclose(small(src, tgt), model(src, tgt), atol=1e-5)
        assert torch.equal(small.generate(src, 6), model.generate(src, 6))


def test_torch_shrink_keeping_every_unit_is_the_same_model():
    cfg = translator_cfg()
    model = zoo_torch.build_model(cfg, seed=1).eval()
    same, same_cfg = zoo_torch.shrink(model, cfg, {})
    assert same_cfg["transformer"]["head_dim"] == 8 and same_cfg["transformer"]["heads"] == 4
    assert {k: v.shape for k, v in same.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    src, tgt = ids(2, 6), ids(2, 4, seed=2)
    with torch.no_grad():
        assert torch.equal(same(src, tgt), model(src, tgt))


def test_torch_scores_rank_live_units_and_keep_one_at_least():
    model: Any = zoo_torch.build_model({"mlp": {"inputs": 6, "hidden": [5, 4], "classes": 3}}, seed=0).eval()
    with torch.no_grad():
        model.net[0].weight[2] *= 10  # unit 2 writes much more
        model.net[3].weight[:, 1] = 0  # nothing reads unit 1 of the first hidden layer
    scores = zoo_torch.unit_scores(model)
    assert set(scores) == {"net.0", "net.3"}
    assert int(scores["net.0"].argmax()) == 2 and int(scores["net.0"].argmin()) == 1
    keep = zoo_torch.units_to_keep(scores, 0.99)
    assert [len(v) for v in keep.values()] == [1, 1] and keep["net.0"].tolist() == [2]
    small, cfg = zoo_torch.shrink(model, {"mlp": {"inputs": 6, "hidden": [5, 4], "classes": 3}}, keep)
    assert cfg["mlp"]["hidden"] == [1, 1]
    assert [tuple(p.shape) for p in small.parameters()] == [(1, 6), (1,), (1, 1), (1,), (3, 1), (3,)]


def test_pruned_model_saves_loads_and_exports_to_onnx_that_matches_torch(pruned_translator, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from llmc.runtime.frameworks.torch_onnx import export_onnx

    model, cfg, small, small_cfg, _ = pruned_translator
    zoo_torch.save_model(tmp_path / "model", small, small_cfg, None)
    loaded: Any
    loaded, meta = zoo_torch.load_model(tmp_path / "model")
    assert meta["model"]["transformer"]["head_dim"] == 8
    src = ids(2, 7)
    with torch.no_grad():
        assert torch.equal(loaded.generate(src, 15), small.generate(src, 15))
    export_onnx(loaded, small_cfg, tmp_path / "small")
    export_onnx(model, cfg, tmp_path / "whole")
    session = ort.InferenceSession(str(tmp_path / "small" / "model.onnx"), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input_ids": src.numpy()})
    want = small.generate(src).numpy()
    assert np.array_equal(out[:, : want.shape[1]], want) and (out[:, want.shape[1] :] == PAD).all()
    # Smaller tensors, not zeroed ones: the graph itself shrinks, and its weights are dense.
    small_bytes = (tmp_path / "small" / "decoder.onnx").stat().st_size
    whole_bytes = (tmp_path / "whole" / "decoder.onnx").stat().st_size
    removed = 2 * (3 * (16 * 32 + 16) + 32 * 16) + (32 * 32 + 32 + 32 * 32)  # 2 attention blocks and the FFN
    assert whole_bytes - small_bytes >= 0.95 * 4 * removed  # float32: 4 bytes each
    assert zoo_torch.count_params(loaded) < zoo_torch.count_params(model)
    assert all(float((p == 0).float().mean()) < 0.5 for p in loaded.parameters() if p.dim() == 2)


def test_tensor_parallel_shards_a_pruned_model_by_its_kept_heads(pruned_translator):
    _, _, small, small_cfg, _ = pruned_translator
    tp = zoo_torch.TensorParallel(size=2, rank=1, process_set=None)
    shard: Any = zoo_torch.build_model(small_cfg, tp=tp, seed=None)
    zoo_torch.load_full_state_dict(shard, small.state_dict())
    attn = shard.decoder.layers[0].cross_attn
    assert attn.local_heads == 1 and attn.head_dim == 8
    whole = small.state_dict()
    s = shard.state_dict()
    assert torch.equal(s["decoder.layers.0.cross_attn.q.weight"], whole["decoder.layers.0.cross_attn.q.weight"][8:])
    assert torch.equal(s["decoder.layers.0.ffn.fc2.weight"], whole["decoder.layers.0.ffn.fc2.weight"][:, 16:])
    with pytest.raises(ValueError, match="needs the whole model"):
        zoo_torch.unit_scores(shard)
    # An unpruned block builds as before: no head_dim, d_model split over the heads.
    plain: Any = zoo_torch.build_model(translator_cfg(), tp=tp, seed=0)
    assert plain.encoder.layers[0].self_attn.q.weight.shape == (16, 32)


# --- TensorFlow: the classifier's MLP ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def zoo_tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    pytest.importorskip("tensorflow")
    from llmc.runtime import zoo_tf

    return zoo_tf


def test_keras_mlp_structured_pruning_removes_hidden_units(zoo_tf, tmp_path):
    cfg: dict[str, Any] = {
        "task": "classification",
        "mlp": {"inputs": 8, "hidden": [6, 4], "classes": 3, "activation": "relu"},
    }
    model = zoo_tf.build_model(cfg, seed=0)
    w = model.hidden[0].kernel.numpy()
    w[:, [1, 4]] = 0  # two dead units of the first hidden layer (relu(0) = 0)
    model.hidden[0].kernel.assign(w)
    model.hidden[0].bias.assign(np.zeros(6, np.float32))
    keep = zoo_tf.units_to_keep(zoo_tf.unit_scores(model), 1 / 3)  # 2 of 6 units go, 1 of 4
    assert keep["dense_0"].tolist() == [0, 2, 3, 5] and len(keep["dense_1"]) == 3
    small, small_cfg = zoo_tf.shrink(model, cfg, keep)
    assert small_cfg["mlp"]["hidden"] == [4, 3] and cfg["mlp"]["hidden"] == [6, 4]
    assert [tuple(v.shape) for v in small.weights] == [(8, 4), (4,), (4, 3), (3,), (3, 3), (3,)]
    x = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    # Only the dead units of layer 1 gone: the outputs are the same.
    same, _ = zoo_tf.shrink(model, cfg, {"dense_0": keep["dense_0"]})
    np.testing.assert_allclose(same({"features": x}).numpy(), model({"features": x}).numpy(), atol=1e-5)
    zoo_tf.save_model(str(tmp_path / "m"), small, small_cfg, None)
    loaded, meta = zoo_tf.load_model(str(tmp_path / "m"))
    assert meta["model"]["mlp"]["hidden"] == [4, 3]
    np.testing.assert_allclose(loaded({"features": x}).numpy(), small({"features": x}).numpy(), atol=1e-6)


def test_keras_transformer_structured_pruning_matches_torchs_slicing(zoo_tf):
    cfg = translator_cfg(d_model=16, heads=4, d_ff=32, max_len=8)
    model = zoo_tf.build_model(cfg, seed=0)
    keep = zoo_tf.units_to_keep(zoo_tf.unit_scores(model), 0.5)
    assert len(keep["encoder/layer_0/self_attn"]) == 2 and len(keep["decoder/layer_0"]) == 16
    small, small_cfg = zoo_tf.shrink(model, cfg, keep)
    assert {k: small_cfg["transformer"][k] for k in ("heads", "head_dim", "d_ff")} == {
        "heads": 2,
        "head_dim": 4,
        "d_ff": 16,
    }
    shapes = {v.path.split("/", 1)[1]: tuple(v.shape) for v in small.weights}
    assert shapes["decoder/layer_0/cross_attn/q/kernel"] == (16, 8)
    assert shapes["decoder/layer_0/cross_attn/o/kernel"] == (8, 16)
    assert shapes["decoder/layer_0/fc2/kernel"] == (16, 16)
    same, _ = zoo_tf.shrink(model, cfg, {})
    batch = {"source": ids(2, 6).numpy().astype(np.int32), "target": ids(2, 4, seed=1).numpy().astype(np.int32)}
    np.testing.assert_allclose(same(batch).numpy(), model(batch).numpy(), atol=1e-5)


# --- the step: structured prune, then export and quantize ----------------------------------------------------


def step_for(name: str, model: Path, out: Path, previous: str | None = None):
    from llmc.runtime.steps.common import Step

    args = argparse.Namespace(
        model=str(model), output=str(out), serve=None, data_root=str(DATES), max_steps=2, limit=32
    )
    return Step(name, previous, args)


def test_structured_prune_step_then_export_and_quantize(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from llmc.runtime.steps import measure
    from llmc.runtime.steps.common import Step

    monkeypatch.setattr(Step, "measuring", measure.Settings(16, "valid.tsv"))  # what run_step sets from the spec
    from llmc.runtime.steps.export import export
    from llmc.runtime.steps.prune import prune
    from llmc.runtime.steps.quantize import quantize

    cfg = translator_cfg(layers=1, d_model=32, heads=4, d_ff=64, max_len=64)
    zoo_torch.save_model(tmp_path / "trained", zoo_torch.build_model(cfg, seed=0), cfg, None)
    settings = TrainSettings(optimizer={"name": "adam", "lr": 1e-3}, batch_size=16, seed=0)
    step = step_for("prune", tmp_path / "trained", tmp_path / "out")
    report = prune(step, "structured", 0.5, 1, settings, "train.tsv", "valid.tsv")
    assert report["shape"] == {"heads": 2, "head_dim": 8, "d_ff": 32}
    assert report["sparsity"] == pytest.approx(0.5)  # half of every pruned matrix is gone
    assert report["overall_sparsity"] < 0.05  # gone, not zeroed
    assert report["params"]["after"] < 0.8 * report["params"]["before"]
    assert report["bytes"]["after"] < 0.8 * report["bytes"]["before"]
    assert report["finetune_steps"] == 2
    published = step.publish(report)
    # The step's row times the pruned model beside its input at batch 1 and the max batch.
    row = published["row"]
    assert set(row["input"]["latency"]) == set(row["output"]["latency"]) == {"batch_1", "max_batch"}
    exported = export(step := step_for("export", tmp_path / "trained", tmp_path / "out", "prune"), "valid.tsv")
    assert exported["check"]["top1_agreement"] == 1.0
    step.publish(exported)
    step = step_for("quantize", tmp_path / "trained", tmp_path / "out", "export")
    quantized = quantize(step, "int8", "dynamic", None, 8, "valid.tsv")
    assert quantized["bytes"]["after"] < quantized["bytes"]["before"]
    assert folders.read_meta(step.work)["model"]["transformer"]["head_dim"] == 8


def test_prune_step_refuses_an_unknown_method(tmp_path):
    from llmc.runtime.folders import StepError
    from llmc.runtime.steps.prune import prune

    cfg = translator_cfg()
    zoo_torch.save_model(tmp_path / "trained", zoo_torch.build_model(cfg, seed=0), cfg, None)
    step = step_for("prune", tmp_path / "trained", tmp_path / "out")
    with pytest.raises(StepError, match=r"unknown pruning method .channels.: \"magnitude\" or \"structured\""):
        prune(step, "channels", 0.5, 0, TrainSettings({"name": "adam", "lr": 1e-3}, 8), "train.tsv", "valid.tsv")
