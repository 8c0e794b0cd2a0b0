"""The model zoo (llmc.runtime.zoo_torch, zoo_tf) against the compiler's estimator.

The compiler sizes memory and serving from `estimate.transformer_params` /
`mlp_params`; these tests prove the models that actually train have exactly those
parameter counts, in torch and in TensorFlow, that greedy decoding is batched
correctly (a batch decodes as its rows would alone) and stops at EOS, and that
Megatron's f/g operators have the gradients tensor parallelism needs (two real
Horovod processes over Gloo).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from support.architectures import cfg_of

from llmc.compiler.estimate import mlp_params, transformer_params

torch = pytest.importorskip("torch")

from llmc.runtime import zoo_torch  # noqa: E402
from llmc.runtime.tokenizer import BOS, EOS, PAD  # noqa: E402

HOROVODRUN = Path(sys.executable).parent / "horovodrun"

# (kind, layers, d_model, heads, d_ff, vocab, max_len, classes): d_ff None is the
# language's default 4 x d_model; classes None on an encoder is its default, 2.
TRANSFORMERS = [
    ("encoder-decoder", 2, 128, 4, 256, 260, 64, None),  # the translator's local profile
    ("encoder-decoder", 1, 64, 2, 128, 260, 64, None),  # its distilled student
    ("encoder-decoder", 3, 48, 3, None, 300, 33, None),
    ("encoder", 2, 32, 4, 80, 260, 16, 7),
    ("encoder", 1, 24, 2, None, 259, 10, None),
    ("decoder", 2, 32, 4, 64, 260, 16, None),
    ("decoder", 4, 40, 5, 100, 512, 20, None),
]
MLPS = [(64, [256, 128], 10), (64, [], 10), (5, [7], 2), (3, [4, 5, 6], 3)]


def transformer_cfg(kind, layers, d_model, heads, d_ff, vocab, max_len, classes, dropout=0.1):
    return cfg_of(kind, layers, d_model, heads, d_ff, vocab, max_len, classes, dropout=dropout)


def expected_transformer(kind, layers, d_model, heads, d_ff, vocab, max_len, classes):
    if kind == "encoder" and classes is None:
        classes = 2  # plan.py's default for a classifier
    return transformer_params(kind, layers, d_model, heads, d_ff, vocab, max_len, classes).total


# --- parameter counts -----------------------------------------------------------------


@pytest.mark.parametrize("arch", TRANSFORMERS, ids=lambda a: f"{a[0]}-L{a[1]}-d{a[2]}")
def test_torch_transformer_params_equal_the_estimate(arch):
    model = build_transformer(transformer_cfg(*arch))
    assert zoo_torch.count_params(model) == expected_transformer(*arch)


@pytest.mark.parametrize("mlp", MLPS, ids=str)
def test_torch_mlp_params_equal_the_estimate(mlp):
    inputs, hidden, classes = mlp
    model = zoo_torch.build_model({"mlp": {"inputs": inputs, "hidden": hidden, "classes": classes}})
    assert zoo_torch.count_params(model) == mlp_params(inputs, hidden, classes).total


def test_torch_tensor_parallel_shards_sum_to_the_whole():
    """Each of 2 ranks holds half of every split matrix; replicated parts count once each."""
    arch = ("encoder-decoder", 2, 32, 4, 64, 260, 16, None)
    tp = zoo_torch.TensorParallel(size=2, rank=0, process_set=None)
    whole = build_transformer(transformer_cfg(*arch))
    shard = zoo_torch.Transformer(
        kind="encoder-decoder", layers=2, d_model=32, heads=4, vocab=260, d_ff=64, max_len=16, tp=tp
    )
    dims = zoo_torch.shard_dims(shard)
    split = sum(p.numel() for n, p in whole.named_parameters() if n in dims)
    assert sum(p.numel() for n, p in shard.named_parameters() if n in dims) * 2 == split
    assert set(dict(whole.named_parameters())) == set(dict(shard.named_parameters()))
    # Loading the whole state into the shard keeps this rank's slices.
    zoo_torch.load_full_state_dict(shard, whole.state_dict())
    w = dict(whole.named_parameters())
    s = dict(shard.named_parameters())
    assert torch.equal(s["encoder.layers.0.self_attn.q.weight"], w["encoder.layers.0.self_attn.q.weight"][:16])
    assert torch.equal(s["encoder.layers.0.self_attn.o.weight"], w["encoder.layers.0.self_attn.o.weight"][:, :16])
    assert torch.equal(s["encoder.layers.0.self_attn.o.bias"], w["encoder.layers.0.self_attn.o.bias"])


@pytest.fixture(scope="module")
def zoo_tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    pytest.importorskip("tensorflow")
    from llmc.runtime import zoo_tf

    return zoo_tf


@pytest.mark.parametrize("arch", TRANSFORMERS, ids=lambda a: f"{a[0]}-L{a[1]}-d{a[2]}")
def test_tensorflow_transformer_params_equal_the_estimate(zoo_tf, arch):
    model = zoo_tf.build_model(transformer_cfg(*arch))
    assert model.count_params() == expected_transformer(*arch)


@pytest.mark.parametrize("mlp", MLPS, ids=str)
def test_tensorflow_mlp_params_equal_the_estimate(zoo_tf, mlp):
    inputs, hidden, classes = mlp
    model = zoo_tf.build_model({"mlp": {"inputs": inputs, "hidden": hidden, "classes": classes}})
    assert model.count_params() == mlp_params(inputs, hidden, classes).total


def test_a_loaded_tensorflow_model_trains_the_same_way_each_time(zoo_tf, tmp_path):
    # Prune and distill fine-tune a loaded model: its dropout draws must not differ run to run
    # (they did, and the classifier's max_drop gate passed or failed by chance).
    import numpy as np
    import tensorflow as tf

    cfg = {"mlp": {"inputs": 8, "hidden": [16], "classes": 3, "dropout": 0.5}}
    zoo_tf.save_model(str(tmp_path / "m"), zoo_tf.build_model(cfg, seed=1), cfg)
    features = tf.constant(np.linspace(-1, 1, 4 * 8, dtype=np.float32).reshape(4, 8))

    def dropped_outputs():
        model, _ = zoo_tf.load_model(str(tmp_path / "m"))
        return [model({"features": features}, training=True).numpy() for _ in range(3)]

    first, second = dropped_outputs(), dropped_outputs()
    assert not np.array_equal(first[0], first[1])  # dropout is on: the draws differ call to call ...
    assert all(np.array_equal(a, b) for a, b in zip(first, second))  # ... and load to load they repeat


# --- forward shapes and greedy decoding --------------------------------------------------


def build_transformer(cfg: dict) -> zoo_torch.Transformer:
    model = zoo_torch.build_model(cfg)
    assert isinstance(model, zoo_torch.Transformer)
    return model


def random_ids(rows, cols, lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.full((rows, cols), PAD, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(0, 256, (n,), generator=g)
    return ids


def test_torch_forward_shapes():
    ed = build_transformer(transformer_cfg("encoder-decoder", 2, 32, 4, 64, 260, 16, None))
    src = random_ids(3, 9, [9, 4, 1])
    assert ed(src, random_ids(3, 5, [5, 5, 5])).shape == (3, 5, 260)
    enc = build_transformer(transformer_cfg("encoder", 2, 32, 4, 64, 260, 16, 7))
    assert enc(src).shape == (3, 7)
    dec = build_transformer(transformer_cfg("decoder", 2, 32, 4, 64, 260, 16, None))
    assert dec(src).shape == (3, 9, 260)


def test_encoder_ignores_padding():
    """A padded row classifies exactly as the same row without padding."""
    enc = build_transformer(transformer_cfg("encoder", 2, 32, 4, 64, 260, 16, 3)).eval()
    ids = random_ids(1, 12, [5])
    assert torch.allclose(enc(ids), enc(ids[:, :5]), atol=1e-5)


def _assert_pad_after_eos(out):
    for row in out.tolist():
        if EOS in row:
            assert all(t == PAD for t in row[row.index(EOS) + 1 :]), row
        else:
            assert PAD not in row, row


def test_torch_greedy_encoder_decoder_is_batched_correctly():
    model = build_transformer(transformer_cfg("encoder-decoder", 2, 32, 4, 64, 260, 16, None, dropout=0.0))
    src = random_ids(4, 10, [10, 3, 7, 1], seed=1)
    out = model.generate(src)
    assert out.dtype == torch.long and out.shape[0] == 4 and 1 <= out.shape[1] <= 16
    _assert_pad_after_eos(out)
    for i in range(4):  # a batch decodes as its rows would alone
        alone = model.generate(src[i : i + 1, : int((src[i] != PAD).sum())])
        assert alone[0].tolist() == out[i, : alone.shape[1]].tolist()
        assert all(t == PAD for t in out[i, alone.shape[1] :].tolist())
    assert model.generate(src, max_new_tokens=3).shape == (4, 3)


def test_torch_greedy_decoder_continues_each_prompt():
    model = build_transformer(transformer_cfg("decoder", 2, 32, 4, 64, 260, 16, None, dropout=0.0))
    prompts = random_ids(3, 6, [6, 2, 4], seed=2)
    prompts[:, 0] = BOS
    prompts[1, 2:] = PAD
    prompts[2, 4:] = PAD
    out = model.generate(prompts)
    assert out.shape[0] == 3 and out.shape[1] <= 16 - 6 + 1
    _assert_pad_after_eos(out)
    for i, n in enumerate([6, 2, 4]):
        alone = model.generate(prompts[i : i + 1, :n], max_new_tokens=out.shape[1])
        k = min(alone.shape[1], out.shape[1])
        assert alone[0, :k].tolist() == out[i, :k].tolist()


def test_torch_greedy_stops_at_eos():
    """A model that always predicts EOS generates exactly one token per row."""
    model = build_transformer(transformer_cfg("encoder-decoder", 1, 16, 2, 32, 260, 16, None, dropout=0.0))
    with torch.no_grad():
        direction = torch.randn(16)
        model.decoder.norm.weight.zero_()
        model.decoder.norm.bias.copy_(direction)
        model.tok.weight[EOS] = direction * 10
    out = model.generate(random_ids(3, 5, [5, 2, 3]))
    assert out.tolist() == [[EOS], [EOS], [EOS]]


def test_prompts_for_a_decoder_only_model():
    """BOS + source + SEP of each prompted row, the target cut off, PAD on the right."""
    from llmc.runtime.tokenizer import SEP

    tokens = torch.tensor([[BOS, 97, 98, SEP, 120, EOS, PAD], [BOS, 99, SEP, 121, 122, EOS, PAD]])
    mask = torch.tensor([[0, 0, 0, 1, 1, 0], [0, 0, 1, 1, 1, 0]], dtype=torch.float32)
    assert zoo_torch.prompts({"tokens": tokens, "loss_mask": mask}).tolist() == [
        [BOS, 97, 98, SEP],
        [BOS, 99, SEP, PAD],
    ]


def test_encoder_does_not_generate():
    enc = build_transformer(transformer_cfg("encoder", 1, 16, 2, 32, 260, 16, 2))
    with pytest.raises(ValueError, match="does not generate"):
        enc.generate(random_ids(1, 3, [3]))


def test_tensorflow_greedy_shapes_and_batching(zoo_tf):
    import tensorflow as tf

    model = zoo_tf.build_model(transformer_cfg("encoder-decoder", 2, 32, 4, 64, 260, 16, None, dropout=0.0))
    src = random_ids(3, 8, [8, 3, 5], seed=3).numpy()
    out = model.generate(tf.constant(src)).numpy()
    assert out.shape == (3, 16)
    _assert_pad_after_eos(torch.as_tensor(out))
    for i, n in enumerate([8, 3, 5]):
        alone = model.generate(tf.constant(src[i : i + 1, :n])).numpy()
        assert alone[0].tolist() == out[i].tolist()
    dec = zoo_tf.build_model(transformer_cfg("decoder", 2, 32, 4, 64, 260, 16, None, dropout=0.0))
    prompts = np.array([[BOS, 5, 6, PAD], [BOS, PAD, PAD, PAD]])
    out = dec.generate(tf.constant(prompts)).numpy()
    assert out.shape == (2, 16)
    assert out[0].tolist() == dec.generate(tf.constant(prompts[:1, :3])).numpy()[0].tolist()


def test_batch_loss_counts_real_tokens_only():
    """The sum/count loss ignores PAD targets; its mean is the usual token cross-entropy."""
    model = build_transformer(transformer_cfg("encoder-decoder", 1, 16, 2, 32, 260, 16, None, dropout=0.0))
    src = random_ids(2, 6, [6, 3])
    tgt = torch.tensor([[BOS, 1, 2, 3, EOS], [BOS, 4, EOS, PAD, PAD]])
    loss_sum, count, _ = zoo_torch.batch_loss(model, {"source": src, "target": tgt})
    assert count.item() == 6  # 4 + 2 predicted tokens
    logits = model(src, tgt[:, :-1])
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, 260), tgt[:, 1:].reshape(-1), ignore_index=PAD)
    assert torch.allclose(loss_sum / count, ref, atol=1e-6)


def test_saved_model_round_trips(tmp_path):
    cfg = transformer_cfg("encoder", 1, 16, 2, 32, 260, 16, 3)
    model = zoo_torch.build_model(cfg, seed=5).eval()
    zoo_torch.save_model(tmp_path / "model", model, cfg, ["a", "b", "c"], steps=7)
    loaded, meta = zoo_torch.load_model(tmp_path / "model")
    ids = random_ids(2, 5, [5, 2])
    assert torch.equal(loaded(ids), model(ids))
    assert meta["label_names"] == ["a", "b", "c"] and meta["steps"] == 7
    assert (tmp_path / "model" / "llmc.json").exists()


# --- Megatron's f and g over two real Horovod processes -----------------------------------

FG_SCRIPT = r"""
import torch
import horovod.torch as hvd
from llmc.runtime.tensor_parallel import TensorParallel, copy_to_tensor_parallel, reduce_from_tensor_parallel

hvd.init(process_sets=[])
r = hvd.rank()
tp = TensorParallel(2, r, hvd.global_process_set)
torch.manual_seed(0)
x = torch.randn(3, 4, requires_grad=True)          # replicated input, identical on both ranks
w = torch.randn(4, 5) + r                           # this rank's (different) column shard

# f: identity forward; backward sums the ranks' partial gradients of the replicated input.
y = copy_to_tensor_parallel(x, tp, "t.f") @ w
assert torch.equal(y, x @ w)
y.sum().backward()
base = w - r                                        # the shards are base (rank 0) and base + 1 (rank 1)
expected = torch.ones(3, 5) @ (base + (base + 1)).t()
assert torch.allclose(x.grad, expected, atol=1e-5), (x.grad, expected)

# g: all-reduce forward; backward passes the gradient through once (not doubled).
a = torch.randn(3, 4) * (r + 1)
part = a.clone().requires_grad_(True)
z = reduce_from_tensor_parallel(part, tp, "t.g")
total = hvd.allreduce(a, op=hvd.Sum, name="ref")
assert torch.allclose(z, total, atol=1e-6)
(z * 3).sum().backward()
assert torch.allclose(part.grad, torch.full((3, 4), 3.0)), part.grad

# Why custom Functions: hvd.allreduce's own backward all-reduces again and doubles a Sum.
part2 = a.clone().requires_grad_(True)
(hvd.allreduce(part2, op=hvd.Sum, name="plain") * 3).sum().backward()
assert torch.allclose(part2.grad, torch.full((3, 4), 6.0)), part2.grad

# Non-contiguous gradients (the expanded gradient of .sum()) must not reach Horovod as such.
x2 = torch.randn(4, 3).t().requires_grad_(True)
copy_to_tensor_parallel(x2, tp, "t.nc").sum().backward()
assert torch.allclose(x2.grad, torch.full((3, 4), 2.0))
print(f"RANK{r}-OK", flush=True)
"""


def test_tensor_parallel_f_and_g_gradients(tmp_path):
    if not HOROVODRUN.exists():
        pytest.skip("horovodrun is not installed (run bin/setup)")
    script = tmp_path / "fg.py"
    script.write_text(textwrap.dedent(FG_SCRIPT))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [str(HOROVODRUN), "--gloo", "-np", "2", "-H", "localhost:2", sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "RANK0-OK" in proc.stdout and "RANK1-OK" in proc.stdout
