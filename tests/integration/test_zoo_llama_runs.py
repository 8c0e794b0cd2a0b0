"""The torch zoo's architecture options (runtime/zoo_torch.py): gated FFNs (SwiGLU,
GeGLU), rotary or no positions, RMSNorm, post-norm, grouped-query attention, projections
without biases and an untied output matrix. In this process, a few seconds:

* a Llama-style decoder (RoPE, RMSNorm, SwiGLU, kv_heads < heads, no biases, untied)
  and a grouped-query encoder-decoder train (forward and backward) and have the
  parameter count of the formula below (the compiler's, for these options);
* RoPE is a rotation (norms kept) and relative (scores depend on position differences);
* grouped-query attention is multi-head attention with the K/V heads shared in groups;
* tensor = 2 computes what tensor = 1 does, outputs and gradients, with the K/V heads
  split (kv_heads a multiple of 2) and replicated (kv_heads odd): the two ranks run in
  two threads, Megatron's all-reduces replaced by a sum between the threads;
* the ONNX export runs in onnxruntime and gives torch's logits and greedy output.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.architectures import batch_arrays, cfg_of, gqa_translator_cfg, llama_cfg

from llmc.compiler.estimate import transformer_params
from llmc.runtime.tokenizer import BOS, PAD

torch = pytest.importorskip("torch")

from llmc.runtime import tensor_parallel, zoo_torch  # noqa: E402


def expected_params(a: dict) -> int:
    """The parameter count of a model block: per layer, attention Q d.d (+d), K and V
    d.kv.hd (+kv.hd) each, O d.d (+d); FFN 2.d.f (+f+d), gated 3.d.f (+2f+d); 2d per
    LayerNorm, d per RMSNorm, 2 a layer (3 with cross-attention) + a final one per stack;
    the token embedding vocab.d, max_len.d per stack for learned positions, vocab.d for an
    untied output (kinds that decode), d.classes + classes for a classifier's head."""
    kind, d, heads, f = a["kind"], a["d_model"], a["heads"], a["d_ff"] or 4 * a["d_model"]
    hd, kv = d // heads, a.get("kv_heads") or heads
    qkv_bias, out_bias, ffn_bias = (a.get(k, True) for k in ("qkv_bias", "out_bias", "ffn_bias"))
    attn = d * d + qkv_bias * d + 2 * (d * kv * hd + qkv_bias * kv * hd) + d * d + out_bias * d
    gated = a.get("ffn", "gelu") != "gelu"
    ffn = 3 * d * f + ffn_bias * (2 * f + d) if gated else 2 * d * f + ffn_bias * (f + d)
    norm = d if a.get("norm", "layernorm") == "rmsnorm" else 2 * d
    plain, cross = attn + ffn + 2 * norm, 2 * attn + ffn + 3 * norm
    stacks = 2 if kind == "encoder-decoder" else 1
    layers = a["layers"] * (plain + cross if kind == "encoder-decoder" else plain)
    total = a["vocab"] * d + layers + stacks * norm
    if a.get("positions", "learned") == "learned":
        total += stacks * a["max_len"] * d
    if not a.get("tie_embeddings", True) and kind != "encoder":
        total += a["vocab"] * d
    if kind == "encoder":
        total += d * (a["classes"] or 2) + (a["classes"] or 2)
    return total


def batch_for(cfg: dict, seed=0) -> dict:
    return {k: torch.as_tensor(v) for k, v in batch_arrays(cfg, seed).items()}


def mean_loss(model, batch):
    s, n, _ = zoo_torch.batch_loss(model, batch)
    return s / n


def outputs(model, batch):
    if "source" in batch:
        return model(batch["source"], batch["target"][:, :-1])
    return model(batch["text"] if "text" in batch else batch["tokens"])


# --- parameter counts, forward and backward ------------------------------------------------------

COUNTED = {
    "llama": llama_cfg(),
    "llama-mha-biases": llama_cfg(kv_heads=None, qkv_bias=True, ffn_bias=True, tie_embeddings=True),
    "llama-post-no-positions": llama_cfg(positions="none", norm_position="post", out_bias=True),
    "gqa-translator": gqa_translator_cfg(),
    "gqa-translator-untied-rms": gqa_translator_cfg(norm="rmsnorm", tie_embeddings=False, ffn="swiglu", kv_heads=2),
    "classifier-rope-rms": cfg_of("encoder", 2, 24, 6, 40, classes=5, positions="rope", norm="rmsnorm", kv_heads=3),
    "classifier-untied-ignored": cfg_of("encoder", 1, 16, 2, None, tie_embeddings=False, ffn_bias=False),
    "default-decoder": cfg_of("decoder", 2, 40, 5, 100),
    "explicit-defaults": cfg_of("encoder-decoder", **zoo_torch.DEFAULT_OPTIONS),
}


@pytest.mark.parametrize("name", list(COUNTED))
def test_parameter_count_is_the_formula(name):
    cfg = COUNTED[name]
    model = zoo_torch.build_model(cfg)
    assert zoo_torch.count_params(model) == expected_params(cfg["transformer"])


@pytest.mark.parametrize("name", ["default-decoder", "explicit-defaults"])
def test_default_options_are_the_compilers_model(name):
    a = COUNTED[name]["transformer"]
    want = transformer_params(a["kind"], a["layers"], a["d_model"], a["heads"], a["d_ff"], a["vocab"], a["max_len"])
    assert expected_params(a) == want.total


def test_explicit_defaults_build_the_same_model_as_none():
    plain = zoo_torch.build_model(cfg_of("encoder-decoder"), seed=3).eval()
    explicit = zoo_torch.build_model(COUNTED["explicit-defaults"], seed=3).eval()
    a, b = plain.state_dict(), explicit.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    batch = batch_for(cfg_of("encoder-decoder"))
    assert torch.equal(outputs(plain, batch), outputs(explicit, batch))


@pytest.mark.parametrize("cfg", [llama_cfg(), gqa_translator_cfg()], ids=["llama", "gqa-translator"])
def test_trains_forward_and_backward(cfg):
    model: Any = zoo_torch.build_model(cfg, seed=1)
    model.train()
    batch = batch_for(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    first = mean_loss(model, batch)
    first.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    opt.step()
    opt.zero_grad()
    assert mean_loss(model, batch).item() < first.item()
    assert model.generate(batch["source"] if "source" in batch else batch["tokens"][:, :3]).shape[0] == 3


def test_llama_structure():
    model: Any = zoo_torch.build_model(llama_cfg())
    layer = model.decoder.layers[0]
    assert model.decoder.pos is None and isinstance(model.decoder.norm, zoo_torch.RMSNorm)
    assert layer.self_attn.k.weight.shape == (16, 32) and layer.self_attn.q.bias is None
    assert layer.ffn.gate.weight.shape == (48, 32) and layer.ffn.down.weight.shape == (32, 48)
    assert model.output.weight.shape == (260, 32) and model.output.bias is None
    vectors = [n for n, p in model.named_parameters() if p.dim() == 1]  # no biases: the RMSNorms' weights only
    assert len(vectors) == 2 * 2 + 1 and all(n.endswith((".ln1.weight", ".ln2.weight", "norm.weight")) for n in vectors)


# --- RoPE -------------------------------------------------------------------------------------------------


def test_rope_is_a_rotation_and_relative():
    g = torch.Generator().manual_seed(0)
    hd, t = 8, 12
    x = torch.randn(2, 3, t, hd, generator=g)
    cos, sin = zoo_torch.rope_angles(torch.arange(t), hd, 10000.0)
    assert torch.allclose(zoo_torch.apply_rope(x, cos, sin).norm(dim=-1), x.norm(dim=-1), atol=1e-5)
    assert torch.equal(zoo_torch.apply_rope(x, *zoo_torch.rope_angles(torch.zeros(t), hd, 10000.0)), x)

    # One query and one key vector placed at every position: the score at (m, n) depends on m - n only.
    q, k = torch.randn(hd, generator=g), torch.randn(hd, generator=g)

    def scores(offset):
        c, s = zoo_torch.rope_angles(torch.arange(t) + offset, hd, 10000.0)
        return zoo_torch.apply_rope(q.expand(t, hd), c, s) @ zoo_torch.apply_rope(k.expand(t, hd), c, s).t()

    base = scores(0)
    for shift in (1, 5, 37):
        assert torch.allclose(scores(shift), base, atol=1e-4), shift
    assert torch.allclose(base[1:, 1:], base[:-1, :-1], atol=1e-5)
    assert not torch.allclose(base[0, 1], base[0, 2])  # ... and on m - n it does depend


def test_rope_changes_what_the_model_computes():
    """positions rope vs none: the same weights (no positional table either way), other logits."""
    rope = zoo_torch.build_model(llama_cfg(), seed=2).eval()
    none = zoo_torch.build_model(llama_cfg(positions="none"), seed=2).eval()
    none.load_state_dict(rope.state_dict())
    ids = batch_for(llama_cfg())["tokens"]
    assert not torch.allclose(rope(ids), none(ids), atol=1e-4)
    # The first position is not rotated: its logits agree.
    assert torch.allclose(rope(ids)[:, 0], none(ids)[:, 0], atol=1e-5)


# --- grouped-query attention ------------------------------------------------------------------------


@pytest.mark.parametrize("make", [llama_cfg, gqa_translator_cfg], ids=["llama", "gqa-translator"])
def test_kv_heads_equal_heads_is_multi_head_attention(make):
    mha = zoo_torch.build_model(make(kv_heads=None), seed=4).eval()
    same = zoo_torch.build_model(make(kv_heads=4), seed=5).eval()
    same.load_state_dict(mha.state_dict())
    batch = batch_for(make())
    assert torch.equal(outputs(same, batch), outputs(mha, batch))


@pytest.mark.parametrize("make", [llama_cfg, gqa_translator_cfg], ids=["llama", "gqa-translator"])
def test_grouped_query_attention_shares_each_kv_head_within_its_group(make):
    """GQA = MHA whose K/V heads are copies: query head i reads K/V head i // (heads / kv_heads)."""
    cfg = make()
    gqa = zoo_torch.build_model(cfg, seed=6).eval()
    mha = zoo_torch.build_model(make(kv_heads=None), seed=None).eval()
    group = 4 // cfg["transformer"]["kv_heads"]
    state = {}
    for key, value in gqa.state_dict().items():
        if key.rsplit(".", 2)[-2] in ("k", "v"):
            value = value.reshape(-1, 8, *value.shape[1:]).repeat_interleave(group, 0).reshape(-1, *value.shape[1:])
        state[key] = value
    mha.load_state_dict(state)
    batch = batch_for(cfg)
    assert torch.allclose(outputs(gqa, batch), outputs(mha, batch), atol=1e-5)
    # Training hands the attention kernel the K/V heads unexpanded (enable_gqa), evaluation
    # and export expand them: the same numbers (dropout is 0 here).
    gqa.train()
    assert any(getattr(m, "kv_range", None) is not None for m in gqa.modules())
    assert torch.allclose(outputs(gqa, batch), outputs(mha, batch), atol=1e-5)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="not a multiple of kv_heads"):
        zoo_torch.build_model(llama_cfg(kv_heads=3))
    with pytest.raises(ValueError, match="unknown ffn"):
        zoo_torch.build_model(llama_cfg(ffn="relu"))
    with pytest.raises(ValueError, match="even head_dim"):
        zoo_torch.build_model(cfg_of("decoder", d_model=12, heads=4, positions="rope"))


@pytest.mark.parametrize("kv_heads, kept_heads, kept_kv_heads", [(4, 2, 2), (2, 2, 1)])
def test_structured_pruning_of_a_gated_biasless_model_keeps_what_stays(kv_heads, kept_heads, kept_kv_heads):
    """Heads and SwiGLU channels are removed, the rest computes as before. Under
    grouped-query attention (kv_heads = 2 of 4 heads) the unit is a key/value head with
    the two query heads that read it."""
    cfg = llama_cfg(kv_heads=kv_heads)
    model = zoo_torch.build_model(cfg, seed=8).eval()
    keep = zoo_torch.units_to_keep(zoo_torch.unit_scores(model), 0.5)
    small, small_cfg = zoo_torch.shrink(model, cfg, keep)
    assert small_cfg["transformer"]["heads"] == kept_heads
    assert small_cfg["transformer"]["kv_heads"] == kept_kv_heads
    assert small_cfg["transformer"]["d_ff"] == 24
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())
    # Zeroing the removed units' outputs in the whole model computes what the small one does.
    per_group = 4 // kv_heads
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, zoo_torch.Attention):
                drop = sorted(set(range(kv_heads)) - set(keep[name].tolist()))
                o: Any = m.o
                for g in drop:
                    o.weight[:, g * per_group * 8 : (g + 1) * per_group * 8] = 0
            elif isinstance(m, zoo_torch.FeedForward):
                drop = sorted(set(range(48)) - set(keep[name].tolist()))
                down: Any = m.down
                down.weight[:, drop] = 0
    ids = batch_for(cfg)["tokens"]
    assert torch.allclose(small(ids), model(ids), atol=1e-5)


# --- tensor = 2 against tensor = 1, the two ranks in two threads ----------------------------------


class ThreadGroup:
    """Megatron's all-reduce between ranks that are threads of this process."""

    def __init__(self, size: int):
        self.size = size
        self.barrier = threading.Barrier(size, timeout=60)
        self.slots: dict[tuple[str, int], Any] = {}

    def allreduce(self, x, tp, name):
        self.slots[(name, tp.rank)] = x.detach().clone()
        self.barrier.wait()
        total = sum(self.slots[(name, r)] for r in range(self.size))
        self.barrier.wait()  # every rank has read before the name is used again
        return total


def run_ranks(group: ThreadGroup, fn):
    def guarded(rank):
        try:
            return fn(rank)
        except BaseException:
            group.barrier.abort()
            raise

    with ThreadPoolExecutor(group.size) as pool:
        futures = [pool.submit(guarded, r) for r in range(group.size)]
        return [f.result() for f in futures]


TP_CASES = {
    "llama-kv-split": llama_cfg(),  # kv_heads 2 over tensor 2
    "llama-kv-replicated": llama_cfg(kv_heads=1, ffn="geglu", qkv_bias=True),
    "gqa-translator-kv-replicated": gqa_translator_cfg(),  # kv_heads 1, cross-attention too
    "translator-kv-split-untied": gqa_translator_cfg(kv_heads=2, norm="rmsnorm", tie_embeddings=False, ffn_bias=False),
    "classifier-kv-replicated": cfg_of("encoder", 1, 24, 6, 40, classes=3, kv_heads=3, ffn="swiglu", out_bias=False),
}


@pytest.mark.parametrize("name", list(TP_CASES))
def test_tensor_2_computes_what_tensor_1_does(name, monkeypatch):
    cfg = TP_CASES[name]
    group = ThreadGroup(2)
    monkeypatch.setattr(tensor_parallel, "_allreduce_sum", group.allreduce)
    batch = batch_for(cfg)
    whole = zoo_torch.build_model(cfg, seed=7)
    want = outputs(whole, batch)
    mean_loss(whole, batch).backward()

    def rank(r):
        part: Any = zoo_torch.build_model(cfg, tp=zoo_torch.TensorParallel(2, r, None), seed=7)
        got = outputs(part, batch)
        mean_loss(part, batch).backward()
        return part, got

    parts = run_ranks(group, rank)
    dims = zoo_torch.shard_dims(parts[0][0])
    kv_heads = cfg["transformer"]["kv_heads"]
    assert any(k.endswith(".k.weight") for k in dims) == (kv_heads % 2 == 0)
    ref = dict(whole.named_parameters())
    grads = [{n: p.grad for n, p in part.named_parameters()} for part, _ in parts]
    for r in range(2):
        assert torch.allclose(parts[r][1], want, rtol=1e-4, atol=1e-5), r
    for n, g in ref.items():
        if n in dims:
            got = torch.cat([grads[0][n], grads[1][n]], dims[n])
            assert torch.allclose(got, g.grad, rtol=1e-4, atol=1e-6), n
        else:  # replicated: the whole gradient on every rank
            for r in range(2):
                assert torch.allclose(grads[r][n], g.grad, rtol=1e-4, atol=1e-6), (n, r)


# --- ONNX -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [llama_cfg, gqa_translator_cfg], ids=["llama", "gqa-translator"])
def test_onnx_export_gives_torchs_logits_and_greedy_output(make, tmp_path: Path):
    ort = pytest.importorskip("onnxruntime")
    from llmc.runtime.frameworks.torch_onnx import export_onnx

    cfg = make()
    model: Any = zoo_torch.build_model(cfg, seed=9).eval()
    info = export_onnx(model, cfg, tmp_path)
    assert info["served"] == "model.onnx"

    def session(name):
        return ort.InferenceSession(str(tmp_path / name), providers=["CPUExecutionProvider"])

    batch = batch_for(cfg)
    with torch.no_grad():
        if "source" in batch:
            src, tgt = batch["source"], batch["target"][:, :-1]
            memory, mask = model.encode(src)
            feeds = {"decoder_input_ids": tgt.numpy(), "memory": memory.numpy(), "memory_mask": mask.numpy()}
            logits = session("decoder.onnx").run(["logits"], feeds)[0]
            enc = session("encoder.onnx").run(["memory"], {"input_ids": src.numpy()})[0]
            np.testing.assert_allclose(enc, memory.numpy(), rtol=1e-4, atol=1e-4)
            want = model.decode(tgt, memory, mask)
            prompt = src
        else:
            tokens = batch["tokens"][:, :6]
            logits = session("decoder.onnx").run(["logits"], {"decoder_input_ids": tokens.numpy()})[0]
            want = model.decode(tokens)
            prompt = tokens.clone()
            prompt[:, 0] = BOS
            prompt[1, 3:] = PAD
        np.testing.assert_allclose(logits, want.numpy(), rtol=1e-4, atol=1e-4)
        greedy = model.generate(prompt).numpy()
    served = session("model.onnx").run(["output_ids"], {"input_ids": prompt.numpy()})[0]
    assert np.array_equal(served[:, : greedy.shape[1]], greedy) and (served[:, greedy.shape[1] :] == PAD).all()
