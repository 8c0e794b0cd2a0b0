"""E306 end to end: the two cases the issue names, through the whole front end."""

from __future__ import annotations

from llmc.compiler.driver import check_spec

DECODER = """model lm {{
  task = "language-modeling"
  transformer {{
    layers  = {layers}
    d_model = {d_model}
    heads   = {heads}
    vocab   = 32000
    max_len = 2048
  }}
  data {{
    train = "s3://corpus/train.jsonl"
    valid = "s3://corpus/valid.jsonl"
    test  = "s3://corpus/test.jsonl"
  }}
}}

train {{
  cluster {{
    hosts          = {hosts}
    slots_per_host = 8
    device         = "{device}"
  }}
  parallel {{
    tensor = {tensor}
  }}
  precision                = "bf16"
  batch_size               = {batch}
  micro_batch              = 1
  activation_checkpointing = {checkpointing}
  steps                    = 1000
  optimizer "adamw" {{
    lr = 3e-4
  }}
}}
"""


def test_13b_data_parallel_on_80gb_fails_with_breakdown():
    text = DECODER.format(
        layers=40, d_model=5120, heads=40, hosts=4, device="A100-80GB", tensor=1, batch=32, checkpointing="false"
    )
    result = check_spec("lm13b.llm", text=text)
    e306 = [d for d in result.diagnostics if d.code == "E306"]
    assert len(e306) == 1, result.diagnostics
    note = e306[0].notes[0]
    for part in ("weights", "gradients", "optimizer", "activations", "of 80.0 GB"):
        assert part in note
    params = result.facts.params
    assert params is not None and 12e9 < params < 14e9
    assert e306[0].span.line == text.splitlines().index('    device         = "A100-80GB"') + 1


def test_7b_tensor_8_on_h100_with_checkpointing_fits():
    text = DECODER.format(
        layers=32, d_model=4096, heads=32, hosts=1, device="H100-80GB", tensor=8, batch=8, checkpointing="true"
    )
    result = check_spec("lm7b.llm", text=text)
    assert result.ok, result.diagnostics
    assert not [d for d in result.diagnostics if d.code in ("E306", "W301")]
    params = result.facts.params
    assert params is not None and 6e9 < params < 7.5e9
    assert result.facts.memory.fits and result.facts.memory.total < 80e9
