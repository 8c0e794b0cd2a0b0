"""Today's LLM architectures (docs/language.md, "Architecture options"), exact against
the published models, and the options' effect on the estimates."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import ROOT

from llmc.compiler import estimate as E
from llmc.compiler.driver import check_spec

# The sizes the model cards and the released checkpoints give, to the parameter.
PUBLISHED = {
    "llama-2-7b": 6_738_415_616,
    "mistral-7b": 7_241_732_096,
    "llama-3-8b": 8_030_261_248,
    "tinyllama-1.1b": 1_100_048_384,
}


@pytest.mark.parametrize("name, params", PUBLISHED.items())
def test_the_example_specs_count_the_published_parameters_exactly(name, params):
    result = check_spec(str(ROOT / "examples" / f"{name}.llm"))
    assert result.ok, [d.message for d in result.diagnostics]
    assert result.facts.params == params
    from llmc.compiler.facts_text import fact_lines

    shown = dict(fact_lines(result))["parameters"]
    assert f"= {params:,} (" in shown  # every digit, beside the rounded count


def test_the_options_count_what_the_papers_count():
    d, f, heads, vocab = 4096, 11008, 32, 32000
    llama = E.Options(
        ffn="swiglu", positions="rope", norm="rmsnorm", qkv_bias=False, out_bias=False, ffn_bias=False,
        tie_embeddings=False,
    )  # fmt: skip
    layer = E.encoder_layer_params(d, f, heads, llama)
    assert layer == 4 * d * d + 3 * d * f + 2 * d  # Q, K, V, O; gate, up, down; two RMSNorm weights
    gqa = llama._replace(kv_heads=8)
    assert E.attention_params(d, heads, gqa) == 2 * d * d + 2 * d * (8 * d // heads)
    count = E.transformer_params("decoder", 32, d, heads, f, vocab, 4096, options=llama)
    assert count.positional == 0 and count.output == vocab * d and count.final_norms == d
    # The 2018 defaults are the GPT-2 block: biases, GELU with two matrices, LayerNorm, tied.
    gpt2 = E.transformer_params("decoder", 12, 768, 12, None, 50257, 1024)
    assert gpt2.total == 124_439_808 and gpt2.output == 0


def test_the_memory_estimate_follows_the_options():
    base: dict[str, Any] = {"seq_len": 2048, "micro_batch": 1, "d_model": 4096, "heads": 32, "tensor": 1}
    plain = E.activation_bytes_per_layer(**base)
    gated = E.activation_bytes_per_layer(**base, gated_ffn=True)
    flash = E.activation_bytes_per_layer(**base, fused_attention=True)
    flash_gqa = E.activation_bytes_per_layer(**base, fused_attention=True, kv_fraction=0.25)
    # Unfused attention expands grouped K and V to every head and keeps the copies.
    assert E.activation_bytes_per_layer(**base, kv_fraction=0.25) == plain
    assert gated > plain > flash > flash_gqa and flash < plain / 2  # the s x s scores dominate at s = 2048
    sbh = 2048 * 4096
    assert gated - plain == pytest.approx(2 * 2.0 * sbh * 4)  # two more d_ff-wide tensors, 16-bit
    assert flash - flash_gqa == pytest.approx(2 * 2.0 * sbh * 0.75)  # K and V of a quarter of the heads


def test_key_value_heads_replicated_over_the_tensor_group_cost_memory(tmp_path):
    text = (ROOT / "examples" / "mistral-7b.llm").read_text(encoding="utf-8")
    split = check_spec(str(tmp_path / "a.llm"), text=text)
    replicated = check_spec(str(tmp_path / "b.llm"), text=text.replace("kv_heads       = 8", "kv_heads       = 4"))
    assert "W303" in {d.code for d in replicated.diagnostics}
    mem_split, mem_repl = split.facts.memory, replicated.facts.memory
    assert mem_split.replicated_params == 0 and mem_repl.replicated_params == 32 * 2 * 4096 * 512
    # Each rank holds 7/8 of the replicated K/V projections on top of its shard (weights,
    # gradients and AdamW state), despite the smaller projections of kv_heads = 4.
    assert mem_repl.weights > mem_split.weights


def test_the_serving_key_value_cache_is_sized_by_kv_heads():
    """Llama-3-8B caches 128 KiB per token in 16 bits (2 x 32 layers x 8 heads x 128),
    the figure its model card's deployments plan with; full multi-head attention would
    cache four times as much."""
    llama = E.Options(ffn="swiglu", positions="rope", norm="rmsnorm", kv_heads=8, tie_embeddings=False)

    def held(options: E.Options, batch: int = 1):
        return E.serving_memory("decoder", 32, 4096, 32, 8_030_261_248, "fp16", 1000, 24, batch, 24e9, options=options)

    one = held(llama)
    assert one.context == 1024 and one.kv_cache == 1024 * 128 * 1024
    assert one.weights == 2 * 8_030_261_248 and one.fits
    assert held(llama._replace(kv_heads=None)).kv_cache == 4 * one.kv_cache
    assert not held(llama, batch=64).fits  # 8 GiB of cache on top of 16 GB of weights
    assert E.serving_memory("encoder", 12, 768, 12, 1e8, "fp16", 512, 0, 8, 16e9).kv_cache == 0


def test_every_option_checks_clean_on_tensorflow(tmp_path):
    """The TensorFlow zoo builds every option (tests/integration/test_zoo_tf_options_runs.py):
    a Llama-style spec on TensorFlow is no error, and counts as on torch."""
    text = (ROOT / "examples" / "tinyllama-1.1b.llm").read_text(encoding="utf-8")
    tf_text = text.replace('task = "language-modeling"', 'task = "language-modeling"\n  framework = "tensorflow"')
    result = check_spec(str(tmp_path / "tf.llm"), text=tf_text)
    assert result.ok, [f"{d.code} {d.message}" for d in result.diagnostics]
    assert result.ir.model.framework == "tensorflow" and result.facts.params == 1_100_048_384
