"""The TensorFlow zoo's architecture options (runtime/zoo_tf.py): gated FFNs (SwiGLU,
GeGLU), rotary or no positions, RMSNorm, post-norm, grouped-query attention, projections
without biases and an untied output matrix, as the torch zoo builds them. In this
process, well under a minute:

* the Keras models have the compiler's parameter count (and the torch zoo's) for a
  Llama-style decoder, a grouped-query encoder-decoder, a rotary classifier and the
  defaults; a default model keeps its weight names;
* a Llama-style decoder trains (loss falls) with the TensorFlow loop's batch_loss,
  optimizer and tf.function step;
* with the torch model's weights copied in, the Keras models compute torch's logits
  and the same greedy tokens;
* RoPE is a rotation (norms kept) and relative; grouped-query attention is multi-head
  attention with the K/V heads repeated;
* structured pruning removes SwiGLU channels and whole key/value groups;
* generation, and the SavedModel export round trip, of a Llama-style decoder;
* bad option values are refused.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import architectures
from support.architectures import cfg_of, gqa_translator_cfg, llama_cfg

from llmc.compiler.estimate import Options, transformer_params
from llmc.runtime.tokenizer import BOS, PAD

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")

from llmc.runtime import zoo_tf  # noqa: E402

HAS_TORCH = importlib.util.find_spec("torch") is not None


def rope_classifier_cfg(**overrides):
    options = {"positions": "rope", "norm": "rmsnorm", "kv_heads": 3, **overrides}
    return cfg_of("encoder", 2, 24, 6, 40, classes=5, **options)


def random_ids(rows, cols, lengths, seed=0) -> np.ndarray:
    return architectures.random_ids(rows, cols, lengths, seed, np.int32)


def batch_for(cfg: dict, seed=0) -> dict:
    return architectures.batch_arrays(cfg, seed, np.int32)


def model_inputs(batch: dict) -> dict:
    """The Keras model's inputs for a batch (the decoder inputs without their last token)."""
    if "source" in batch:
        return {"source": batch["source"], "target": batch["target"][:, :-1]}
    if "text" in batch:
        return {"text": batch["text"]}
    return {"tokens": batch["tokens"]}


def outputs(model, batch: dict) -> np.ndarray:
    return model(model_inputs(batch), training=False).numpy()


def compiler_count(a: dict) -> int:
    """The compiler's parameter count for a model block (compiler/plan.py's arch_options)."""
    defaults = Options()
    options = Options(**{name: a.get(name, getattr(defaults, name)) for name in Options._fields})
    count = transformer_params(
        a["kind"], a["layers"], a["d_model"], a["heads"], a["d_ff"], a["vocab"], a["max_len"], a["classes"], options
    )
    return count.total


@pytest.fixture(scope="module")
def zoo_torch():
    pytest.importorskip("torch")
    from llmc.runtime import zoo_torch

    return zoo_torch


# --- parameter counts and structure ----------------------------------------------------------------------

COUNTED = {
    "llama": llama_cfg(),
    "llama-post-no-positions": llama_cfg(positions="none", norm_position="post", out_bias=True),
    "gqa-translator": gqa_translator_cfg(),
    "gqa-translator-untied-rms-swiglu": gqa_translator_cfg(norm="rmsnorm", tie_embeddings=False, ffn="swiglu"),
    "classifier-rope-rms": rope_classifier_cfg(),
    "classifier-untied-ignored": cfg_of("encoder", 1, 16, 2, None, classes=3, tie_embeddings=False, ffn_bias=False),
    "default-decoder": cfg_of("decoder", 2, 40, 5, 100),
    "explicit-defaults": cfg_of("encoder-decoder", **zoo_tf.DEFAULT_OPTIONS),
}


@pytest.mark.parametrize("name", list(COUNTED))
def test_parameter_count_is_the_compilers_and_torchs(name):
    cfg = COUNTED[name]
    count = zoo_tf.count_params(zoo_tf.build_model(cfg))
    assert count == compiler_count(cfg["transformer"])
    if HAS_TORCH:
        from llmc.runtime import zoo_torch

        assert count == zoo_torch.count_params(zoo_torch.build_model(cfg))


def paths(model) -> list[str]:
    return [v.path.split("/", 1)[1] for v in model.weights]


def test_explicit_defaults_build_the_default_model():
    plain = zoo_tf.build_model(cfg_of("encoder-decoder"), seed=3)
    explicit = zoo_tf.build_model(COUNTED["explicit-defaults"], seed=3)
    assert paths(plain) == paths(explicit)
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(plain.weights, explicit.weights))
    batch = batch_for(cfg_of("encoder-decoder"))
    np.testing.assert_array_equal(outputs(plain, batch), outputs(explicit, batch))
    names = set(paths(plain))
    assert {"encoder/pos", "decoder/layer_0/fc1/kernel", "decoder/layer_0/ln1/gamma", "tok/embeddings"} <= names


def test_llama_structure():
    model: Any = zoo_tf.build_model(llama_cfg())
    shapes = {p: tuple(v.shape) for p, v in zip(paths(model), model.weights)}
    assert "decoder/pos" not in shapes and shapes["decoder/norm/scale"] == (32,)
    assert shapes["decoder/layer_0/self_attn/k/kernel"] == (32, 16)
    assert shapes["decoder/layer_0/self_attn/q/kernel"] == (32, 32)
    assert shapes["decoder/layer_0/gate/kernel"] == (32, 48) and shapes["decoder/layer_0/down/kernel"] == (48, 32)
    assert shapes["output/kernel"] == (32, 260)
    vectors = [p for p, s in shapes.items() if len(s) == 1]  # no biases: the RMSNorms' weights only
    assert len(vectors) == 2 * 2 + 1 and all(p.endswith("/scale") for p in vectors)


# --- training ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, compiled", [(llama_cfg, True), (gqa_translator_cfg, False)], ids=["llama", "gqa-translator"]
)
def test_trains_with_the_tensorflow_loops_step(make, compiled):
    """runtime/training/tf_loop.py's step: batch_loss / count under a GradientTape (in a
    tf.function for the Llama-style decoder, as the loop runs it; eagerly for the
    translator, whose trace takes seconds), make_optimizer's optimizer applying the
    gradients."""
    cfg = make()
    model = zoo_tf.build_model(cfg, seed=1)
    optimizer = zoo_tf.make_optimizer({"name": "adamw", "lr": 3e-3, "weight_decay": 0.01})
    variables = model.trainable_variables
    optimizer.build(variables)
    batch = zoo_tf.to_inputs(batch_for(cfg))

    def mean_loss(training):
        loss_sum, count, _ = zoo_tf.batch_loss(model, batch, training=training)
        return loss_sum / tf.maximum(count, 1.0)

    def train_step():
        with tf.GradientTape() as tape:
            loss = mean_loss(True)
        grads = tape.gradient(loss, variables)
        optimizer.apply(grads, variables)
        return [tf.reduce_all(tf.math.is_finite(g)) for g in grads]

    step = tf.function(train_step, reduce_retracing=True) if compiled else train_step
    first = float(mean_loss(False))
    for _ in range(5 if compiled else 2):
        assert all(bool(finite) for finite in step())
    assert float(mean_loss(False)) < first - (0.1 if compiled else 0.01)


# --- the torch model's weights in the Keras model ---------------------------------------------------------


def torch_to_keras(model, torch_model) -> None:
    """Copy a zoo_torch model's state into the zoo_tf model of the same block: Keras
    kernels are [in, out] (torch weights transposed), LayerNorms gamma/beta, RMSNorms
    scale, the layer's FFN Dense layers directly under it."""
    keras_weights = dict(zip(paths(model), model.weights))
    norms = {"ln1", "ln2", "ln_cross", "norm"}
    copied = set()
    for key, value in torch_model.state_dict().items():
        parts = key.split(".")
        if len(parts) > 2 and parts[1] == "layers":
            parts[1:3] = [f"layer_{parts[2]}"]
        parts = [p for p in parts if p != "ffn"]
        *owner, kind = parts
        array = value.detach().numpy()
        if owner == ["tok"]:
            path = "tok/embeddings"
        elif owner[-1] == "pos":
            path = "/".join(owner)
        elif owner[-1] in norms:
            names = {"weight": "scale"} if model.options["norm"] == "rmsnorm" else {"weight": "gamma", "bias": "beta"}
            path = "/".join(owner) + "/" + names[kind]
        else:  # a linear layer
            path = "/".join(owner) + ("/kernel" if kind == "weight" else "/bias")
            array = array.T if kind == "weight" else array
        keras_weights[path].assign(array)
        copied.add(path)
    assert copied == set(keras_weights)


def torch_outputs(torch_model, batch: dict) -> np.ndarray:
    import torch

    with torch.no_grad():
        if "source" in batch:
            target = torch.as_tensor(batch["target"][:, :-1]).long()
            out = torch_model(torch.as_tensor(batch["source"]).long(), target)
        else:
            out = torch_model(torch.as_tensor(batch["text"] if "text" in batch else batch["tokens"]).long())
    return out.numpy()


EQUIVALENT = {
    "llama": llama_cfg(),
    "gqa-translator": gqa_translator_cfg(),
    "classifier-rope-rms": rope_classifier_cfg(ffn="geglu", qkv_bias=False),
    "translator-untied-rms-biases": gqa_translator_cfg(norm="rmsnorm", tie_embeddings=False, kv_heads=2, ffn="swiglu"),
    "default-translator": cfg_of("encoder-decoder"),
}


@pytest.mark.parametrize("name", list(EQUIVALENT))
def test_torch_weights_give_torchs_logits(name, zoo_torch):
    cfg = EQUIVALENT[name]
    torch_model = zoo_torch.build_model(cfg, seed=9).eval()
    model = zoo_tf.build_model(cfg, seed=0)
    torch_to_keras(model, torch_model)
    batch = batch_for(cfg)
    # Logits of about 0.5 agree to 1e-7 here; the margin is for other CPUs and kernels.
    np.testing.assert_allclose(outputs(model, batch), torch_outputs(torch_model, batch), rtol=1e-4, atol=1e-5)


def test_torch_weights_give_torchs_greedy_tokens(zoo_torch):
    import torch

    cfg = llama_cfg()
    torch_model = zoo_torch.build_model(cfg, seed=9).eval()
    model: Any = zoo_tf.build_model(cfg, seed=0)
    torch_to_keras(model, torch_model)
    prompt = batch_for(cfg)["tokens"][:, :5]
    want = torch_model.generate(torch.as_tensor(prompt).long()).numpy()
    got = model.generate(tf.constant(prompt)).numpy()
    assert want.shape == (3, 16 - 5 + 1)  # no EOS with random weights: max_len's worth
    assert np.array_equal(got[:, : want.shape[1]], want) and (got[:, want.shape[1] :] == PAD).all()


# --- RoPE ---------------------------------------------------------------------------------------------------


def test_rope_is_a_rotation_and_relative():
    rng = np.random.default_rng(0)
    hd, t = 8, 12
    x = tf.constant(rng.normal(size=(2, 3, t, hd)).astype(np.float32))
    cos, sin = zoo_tf.rope_angles(tf.range(t), hd, 10000.0)
    rotated = zoo_tf.apply_rope(x, cos, sin)
    np.testing.assert_allclose(tf.norm(rotated, axis=-1).numpy(), tf.norm(x, axis=-1).numpy(), atol=1e-5)
    unmoved = zoo_tf.apply_rope(x, *zoo_tf.rope_angles(tf.zeros(t), hd, 10000.0))
    np.testing.assert_array_equal(unmoved.numpy(), x.numpy())

    # One query and one key vector placed at every position: the score at (m, n) depends on m - n only.
    q = tf.constant(np.tile(rng.normal(size=(1, hd)).astype(np.float32), (t, 1)))
    k = tf.constant(np.tile(rng.normal(size=(1, hd)).astype(np.float32), (t, 1)))

    def scores(offset):
        c, s = zoo_tf.rope_angles(tf.range(t) + offset, hd, 10000.0)
        return tf.matmul(zoo_tf.apply_rope(q, c, s), zoo_tf.apply_rope(k, c, s), transpose_b=True).numpy()

    base = scores(0)
    for shift in (1, 5, 37):
        np.testing.assert_allclose(scores(shift), base, atol=1e-4, err_msg=str(shift))
    np.testing.assert_allclose(base[1:, 1:], base[:-1, :-1], atol=1e-5)
    assert not np.isclose(base[0, 1], base[0, 2])  # ... and on m - n it does depend


def test_rope_changes_what_the_model_computes():
    """positions rope vs none: the same weights (no positional table either way), other logits."""
    rope = zoo_tf.build_model(llama_cfg(), seed=2)
    none = zoo_tf.build_model(llama_cfg(positions="none"), seed=2)
    none.set_weights(rope.get_weights())
    batch = batch_for(llama_cfg())
    with_rope, without = outputs(rope, batch), outputs(none, batch)
    assert not np.allclose(with_rope, without, atol=1e-4)
    # The first position is not rotated: its logits agree.
    np.testing.assert_allclose(with_rope[:, 0], without[:, 0], atol=1e-5)


# --- grouped-query attention ------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [llama_cfg, gqa_translator_cfg], ids=["llama", "gqa-translator"])
def test_kv_heads_equal_heads_is_multi_head_attention(make):
    mha = zoo_tf.build_model(make(kv_heads=None), seed=4)
    same = zoo_tf.build_model(make(kv_heads=4), seed=5)
    same.set_weights(mha.get_weights())
    batch = batch_for(make())
    np.testing.assert_array_equal(outputs(same, batch), outputs(mha, batch))


@pytest.mark.parametrize("make", [llama_cfg, gqa_translator_cfg], ids=["llama", "gqa-translator"])
def test_grouped_query_attention_shares_each_kv_head_within_its_group(make):
    """GQA = MHA whose K/V heads are copies: query head i reads K/V head i // (heads / kv_heads)."""
    cfg = make()
    gqa = zoo_tf.build_model(cfg, seed=6)
    mha = zoo_tf.build_model(make(kv_heads=None), seed=7)
    group, head_dim = 4 // cfg["transformer"]["kv_heads"], 8
    mha_weights = dict(zip(paths(mha), mha.weights))
    for path, value in zip(paths(gqa), gqa.get_weights()):
        if path.rsplit("/", 2)[-2] in ("k", "v"):  # columns (kernel) or entries (bias) per K/V head
            lead = value.shape[:-1]
            value = np.repeat(value.reshape(*lead, -1, head_dim), group, axis=-2).reshape(*lead, -1)
        mha_weights[path].assign(value)
    batch = batch_for(cfg)
    np.testing.assert_allclose(outputs(gqa, batch), outputs(mha, batch), atol=1e-5)


# --- structured pruning -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kv_heads, kept_heads, kept_kv_heads", [(4, 2, 2), (2, 2, 1)])
def test_structured_pruning_of_a_gated_biasless_model_keeps_what_stays(kv_heads, kept_heads, kept_kv_heads):
    """Heads and SwiGLU channels are removed, the rest computes as before. Under
    grouped-query attention (kv_heads = 2 of 4 heads) the unit is a key/value head with
    the two query heads that read it."""
    cfg = llama_cfg(kv_heads=kv_heads)
    model: Any = zoo_tf.build_model(cfg, seed=8)
    keep = zoo_tf.units_to_keep(zoo_tf.unit_scores(model), 0.5)
    assert set(keep) == {"decoder/layer_0", "decoder/layer_0/self_attn", "decoder/layer_1", "decoder/layer_1/self_attn"}
    small, small_cfg = zoo_tf.shrink(model, cfg, keep)
    a = small_cfg["transformer"]
    assert (a["heads"], a["kv_heads"], a["d_ff"], a["head_dim"]) == (kept_heads, kept_kv_heads, 24, 8)
    assert zoo_tf.count_params(small) < zoo_tf.count_params(model)
    # Zeroing the removed units' outputs in the whole model computes what the small one does.
    per_group = 4 // kv_heads
    for block in model.decoder.blocks:
        path = f"decoder/{block.name}"
        o = block.self_attn.o.kernel
        rows = o.numpy()
        for g in sorted(set(range(kv_heads)) - set(keep[f"{path}/self_attn"].tolist())):
            rows[g * per_group * 8 : (g + 1) * per_group * 8] = 0
        o.assign(rows)
        down = block.down.kernel.numpy()
        down[sorted(set(range(48)) - set(keep[path].tolist()))] = 0
        block.down.kernel.assign(down)
    batch = batch_for(cfg)
    np.testing.assert_allclose(outputs(small, batch), outputs(model, batch), atol=1e-5)


def test_structured_pruning_of_a_grouped_translator_keeps_the_single_kv_group():
    cfg = gqa_translator_cfg()
    model = zoo_tf.build_model(cfg, seed=8)
    keep = zoo_tf.units_to_keep(zoo_tf.unit_scores(model), 0.5)
    small, small_cfg = zoo_tf.shrink(model, cfg, keep)  # kv_heads 1: one group, which stays
    assert (small_cfg["transformer"]["heads"], small_cfg["transformer"]["kv_heads"]) == (4, 1)
    assert small_cfg["transformer"]["d_ff"] == 24
    assert zoo_tf.count_params(small) == compiler_count({**small_cfg["transformer"], "d_ff": 24})


# --- generation and export --------------------------------------------------------------------------------


def test_llama_generates_each_row_as_alone():
    model: Any = zoo_tf.build_model(llama_cfg(), seed=10)
    prompts = random_ids(3, 5, [5, 3, 1], seed=3)
    prompts[:, 0] = BOS
    out = model.generate(tf.constant(prompts)).numpy()
    assert out.shape == (3, 16) and out.dtype == np.int32
    # The batch decodes max_len - 5 + 1 steps (its longest prompt stays in max_len); a
    # row decoded alone the same tokens, and more when its prompt is shorter.
    steps = 16 - 5 + 1
    assert (out[:, steps:] == PAD).all()
    for i, n in enumerate([5, 3, 1]):
        alone = model.generate(tf.constant(prompts[i : i + 1, :n])).numpy()
        assert out[i, :steps].tolist() == alone[0, :steps].tolist(), i
    assert model.generate(tf.constant(prompts), max_new_tokens=2).numpy()[:, 2:].tolist() == [[PAD] * 14] * 3


def test_savedmodel_export_round_trips_a_llama_model(tmp_path: Path):
    cfg = llama_cfg(kv_heads=1, ffn="geglu")
    model: Any = zoo_tf.build_model(cfg, seed=11)
    zoo_tf.save_model(str(tmp_path / "m"), model, cfg)
    loaded, meta = zoo_tf.load_model(str(tmp_path / "m"))
    assert meta["model"]["transformer"]["ffn"] == "geglu" and meta["model"]["transformer"]["kv_heads"] == 1
    batch = batch_for(cfg)
    np.testing.assert_array_equal(outputs(loaded, batch), outputs(model, batch))
    prompts = batch["tokens"][:, :4]
    prompts[:, 0] = BOS
    served = tf.saved_model.load(str(tmp_path / "m")).signatures["serving_default"]
    tokens = served(tokens=tf.constant(prompts))["tokens"].numpy()
    assert np.array_equal(tokens, model.generate(tf.constant(prompts)).numpy())


# --- refused values ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg, message",
    [
        (llama_cfg(kv_heads=3), "not a multiple of kv_heads"),
        (llama_cfg(kv_heads=0), "not a multiple of kv_heads"),
        (llama_cfg(ffn="relu"), "unknown ffn 'relu'"),
        (llama_cfg(positions="alibi"), "unknown positions 'alibi'"),
        (llama_cfg(norm="batchnorm"), "unknown norm 'batchnorm'"),
        (llama_cfg(norm_position="sandwich"), "unknown norm_position 'sandwich'"),
        (cfg_of("decoder", d_model=12, heads=4, positions="rope"), "even head_dim"),
    ],
    ids=["kv_heads-3-of-4", "kv_heads-0", "ffn", "positions", "norm", "norm_position", "odd-rope-head"],
)
def test_bad_options_are_refused(cfg, message):
    with pytest.raises(ValueError, match=message):
        zoo_tf.build_model(cfg)
