"""The framework-free parts of llmc.runtime: tokenizer, data, config, schedule, checkpoints.

Plus the layering rule: the runtime reads built bundles and never imports the compiler.
"""

from __future__ import annotations

import ast
import json
import math
from typing import Any

import numpy as np
import pytest
from helpers import ROOT

from llmc.runtime import checkpoints as ck
from llmc.runtime.config import ConfigError, batch_layout, load_config, parse_override
from llmc.runtime.data import DataError, batches, epoch_order, load_split, micro_batches_per_rank, read_rows, shard
from llmc.runtime.schedule import lr_at
from llmc.runtime.tokenizer import BOS, EOS, PAD, SEP, VOCAB_SIZE, ByteTokenizer, get_tokenizer

DATES = ROOT / "examples" / "data" / "dates"
DIGITS = ROOT / "examples" / "data" / "digits"


def test_runtime_never_imports_the_compiler():
    offenders = []
    for path in sorted((ROOT / "runtime").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                bad = [a.name for a in node.names if a.name == "llmc.compiler" or a.name.startswith("llmc.compiler.")]
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                absolute = node.level == 0 and (module == "llmc.compiler" or module.startswith("llmc.compiler."))
                # `from ..compiler import x` / `from .. import compiler` inside llmc.runtime
                relative = node.level >= 2 and (
                    module.split(".")[0] == "compiler" or (not module and any(a.name == "compiler" for a in node.names))
                )
                absolute = absolute or (
                    node.level == 0 and module == "llmc" and any(a.name == "compiler" for a in node.names)
                )
                bad = [("." * node.level) + module] if absolute or relative else []
            else:
                continue
            offenders += [f"{path.name}: {name}" for name in bad]
    assert not offenders, offenders


# --- tokenizer -------------------------------------------------------------------------


def test_byte_tokenizer_round_trips_unicode_and_stops_at_eos():
    tok = ByteTokenizer()
    text = "der 3. März — 2021 ✓"
    ids = tok.encode(text)
    assert all(0 <= i < 256 for i in ids)
    assert tok.decode(ids) == text
    assert tok.decode([BOS, *ids, EOS, 65, 66]) == text
    assert tok.decode([PAD, SEP, 0xE2]) == "\ufffd"  # a cut multi-byte character is replaced, not an error
    assert (PAD, BOS, EOS, SEP, VOCAB_SIZE) == (256, 257, 258, 259, 260)


def test_tokenizer_checks_the_vocab():
    assert get_tokenizer("bytes", 260).vocab_size == 260
    with pytest.raises(ValueError, match="vocab >= 260"):
        get_tokenizer("bytes", 258)
    with pytest.raises(ValueError, match=r"spm.model: no such file"):
        get_tokenizer("spm.model")


# --- data ---------------------------------------------------------------------------------


def translator_cfg(max_len=64):
    return {
        "task": "translation",
        "transformer": {"kind": "encoder-decoder", "vocab": 260, "max_len": max_len},
        "data": {"format": "tsv", "source": "source", "target": "target", "tokenizer": "bytes"},
    }


def test_dates_corpus_is_framed_for_an_encoder_decoder():
    split = load_split(translator_cfg(), str(DATES / "train.tsv"))
    assert len(split) == 4000 and split.framing == "pairs"
    src, tgt = split.arrays["source"], split.arrays["target"]
    assert src.shape == (4000, 64) and tgt.shape == (4000, 65)
    tok = ByteTokenizer()
    cols, rows = read_rows(str(DATES / "train.tsv"))
    assert cols == ["source", "target"]
    assert tok.decode(src[0]) == rows[0]["source"]
    assert tgt[0, 0] == BOS and tok.decode(tgt[0, 1:]) == rows[0]["target"]
    assert list(tgt[0, 11:13]) == [EOS, PAD]  # 10 ISO bytes, then EOS, then padding


def test_truncation_keeps_eos_within_max_len():
    split = load_split(translator_cfg(max_len=8), str(DATES / "valid.tsv"))
    assert split.arrays["source"].shape[1] == 8 and split.arrays["target"].shape[1] == 9
    assert all(EOS in row for row in split.arrays["target"].tolist())


def test_digits_csv_reads_every_column_but_the_label_as_features():
    cfg: dict[str, Any] = {
        "task": "classification",
        "mlp": {"inputs": 64, "hidden": [8], "classes": 10},
        "data": {"format": "csv", "label": "label"},
    }
    split = load_split(cfg, str(DIGITS / "train.csv"))
    assert split.arrays["features"].shape == (len(split), 64) and split.arrays["features"].dtype == np.float32
    assert split.arrays["label"].min() == 0 and split.arrays["label"].max() == 9 and split.label_names is None
    bad = {**cfg, "mlp": {**cfg["mlp"], "inputs": 63}}
    with pytest.raises(DataError, match="64 feature columns"):
        load_split(bad, str(DIGITS / "train.csv"))


def test_jsonl_text_classification_numbers_string_labels(tmp_path):
    rows = [{"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}, {"text": "fine", "label": "pos"}]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "valid.jsonl").write_text(json.dumps({"text": "meh", "label": "maybe"}) + "\n")
    cfg = {
        "task": "classification",
        "transformer": {"kind": "encoder", "vocab": 260, "max_len": 8, "classes": 2},
        "data": {"text": "text", "label": "label"},
    }
    split = load_split(cfg, str(tmp_path / "train.jsonl"))
    assert split.label_names == ["neg", "pos"] and split.arrays["label"].tolist() == [1, 0, 1]
    with pytest.raises(DataError, match="does not occur in the train split"):
        load_split(cfg, str(tmp_path / "valid.jsonl"), label_names=split.label_names)


def test_prompted_decoder_masks_the_prompt(tmp_path):
    (tmp_path / "t.tsv").write_text("source\ttarget\nab\txyz\n")
    cfg = {
        "task": "translation",
        "transformer": {"kind": "decoder", "vocab": 260, "max_len": 16},
        "data": {"source": "source", "target": "target"},
    }
    split = load_split(cfg, str(tmp_path / "t.tsv"))
    tokens, mask = split.arrays["tokens"][0], split.arrays["loss_mask"][0]
    assert tokens[:8].tolist() == [BOS, 97, 98, SEP, 120, 121, 122, EOS]
    # positions 3..6 predict x, y, z and EOS; the prompt is not trained on.
    assert mask[:8].tolist() == [0, 0, 0, 1, 1, 1, 1, 0]


def test_missing_column_is_reported_with_the_file(tmp_path):
    (tmp_path / "t.tsv").write_text("src\ttgt\nab\txyz\n")
    with pytest.raises(DataError, match="no column 'source'"):
        load_split(translator_cfg(), str(tmp_path / "t.tsv"))


def test_order_is_shared_and_shards_are_equal_and_disjoint():
    a, b = epoch_order(10, seed=3, epoch=1), epoch_order(10, seed=3, epoch=1)
    assert a.tolist() == b.tolist() and sorted(a.tolist()) == list(range(10))
    assert epoch_order(10, 3, 2).tolist() != a.tolist()
    shards = [shard(a, r, 3) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]  # 10 padded to 12 by wrapping around
    assert set(np.concatenate(shards).tolist()) == set(range(10))
    exact = [shard(a, r, 3, pad=False) for r in range(3)]
    assert sorted(np.concatenate(exact).tolist()) == list(range(10))
    assert micro_batches_per_rank(10, 3, 2) == 2


def test_batches_trim_padding_columns():
    split = load_split(translator_cfg(), str(DATES / "valid.tsv"))
    batch = next(batches(split, np.arange(8), 8))
    assert batch["source"].shape[1] < 64 and (batch["source"][:, -1] != PAD).any()
    assert batch["target"].shape[1] == 12  # BOS + 10 bytes + EOS: every ISO date is 10 bytes
    fixed = next(batches(split, np.arange(8), 8, trim=False))
    assert fixed["source"].shape == (8, 64)


# --- config -------------------------------------------------------------------------------


def model_json(tmp_path):
    doc = {
        "framework": "torch",
        "parallel": {"data": 2, "tensor": 1, "pipeline": 1},
        "model": {"data": {"train": "../data/train.tsv", "valid": "s3://bucket/v.tsv", "test": "/abs/t.tsv"}},
        "train": {
            "batch_size": 64,
            "micro_batch": 32,
            "optimizer": {"name": "adamw", "lr": 0.0003},
            "checkpoint": {"every": 1800.0, "keep": 3},
            "epochs": 3,
            "steps": None,
        },
    }
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.json").write_text(json.dumps(doc))
    return bundle / "model.json"


def test_config_resolves_paths_against_the_data_root_and_overrides_against_cwd(tmp_path):
    path = model_json(tmp_path)
    cfg = load_config(
        path,
        ["train.optimizer.lr=1e-3", "model.data.test=local.tsv", "train.checkpoint.every=100"],
        cwd=str(tmp_path / "here"),
        data_root=tmp_path / "spec",
    )
    data = cfg["model"]["data"]
    assert data["train"] == str(tmp_path / "data" / "train.tsv")  # ../data relative to the spec's folder
    assert data["valid"] == "s3://bucket/v.tsv"
    assert data["test"] == str(tmp_path / "here" / "local.tsv")
    assert cfg["train"]["optimizer"]["lr"] == 1e-3
    assert cfg["train"]["checkpoint"]["every"] == 100 and isinstance(cfg["train"]["checkpoint"]["every"], int)
    assert load_config(path, ["train.steps=50"])["train"]["steps"] == 50


def test_config_rejects_unknown_fields_and_wrong_types(tmp_path):
    path = model_json(tmp_path)
    with pytest.raises(ConfigError, match=r"did you mean `train.optimizer.lr`"):
        load_config(path, ["train.optimizer.lrr=1"])
    with pytest.raises(ConfigError, match="expected a value like 64"):
        load_config(path, ['train.batch_size="big"'])
    with pytest.raises(ConfigError, match="names a block"):
        load_config(path, ["train.optimizer=1"])
    with pytest.raises(ConfigError, match="PATH=VALUE"):
        parse_override("train.optimizer.lr")


def test_batch_layout():
    train = {"batch_size": 512, "micro_batch": 32}
    assert batch_layout(train, 8, 2)[:4] == (4, 2, 32, 4)  # 512 = 4 x 32 x 4, as the translator spec
    # HOROVOD_NP changes the replicas, not the global batch.
    assert batch_layout({"batch_size": 64, "micro_batch": 32}, 1, 1)[:4] == (1, 1, 32, 2)
    # A searched batch size the micro-batch no longer divides falls back to batch / data.
    assert batch_layout({"batch_size": 128, "micro_batch": 64}, 4, 1)[:4] == (4, 1, 32, 1)
    with pytest.raises(ConfigError):
        batch_layout({"batch_size": 10, "micro_batch": 5}, 4, 1)
    with pytest.raises(ConfigError):
        batch_layout(train, 6, 4)


# --- schedule and checkpoints --------------------------------------------------------------------


def test_schedules():
    assert lr_at(0, 1.0, "constant", warmup=4) == 0.25
    assert lr_at(3, 1.0, "constant", warmup=4) == 1.0 == lr_at(99, 1.0, "constant", warmup=4)
    assert lr_at(4, 1.0, "linear", 4, total_steps=14) == 1.0
    assert math.isclose(lr_at(9, 1.0, "linear", 4, total_steps=14), 0.5)
    assert math.isclose(lr_at(14, 1.0, "linear", 4, total_steps=14, min_lr=0.1), 0.1)
    assert math.isclose(lr_at(9, 1.0, "cosine", 4, total_steps=14), 0.5)
    assert math.isclose(lr_at(16, 1.0, "inverse-sqrt", warmup=4), 0.5)  # sqrt(4 / 16)
    assert lr_at(3, 1.0, "inverse-sqrt", 0) == 0.5
    with pytest.raises(ValueError):
        lr_at(0, 1.0, "cyclic")


def test_checkpoint_retention_and_policy(tmp_path):
    for step in (5, 10, 15, 20):
        ck.atomic_write(ck.checkpoint_path(tmp_path, step, "pt"), lambda p: p.write_bytes(b"x"))
    (tmp_path / ".ckpt-00000025.pt.tmp-1").write_bytes(b"half")  # an interrupted write is ignored
    assert ck.latest_checkpoint(tmp_path, "pt").name == "ckpt-00000020.pt"
    assert [p.name for p in ck.prune_checkpoints(tmp_path, "pt", keep=2)] == ["ckpt-00000005.pt", "ckpt-00000010.pt"]
    assert [s for s, _ in ck.list_checkpoints(tmp_path, "pt")] == [15, 20]
    steps = ck.Policy(5)
    assert [s for s in range(1, 12) if steps.due(s)] == [5, 10]
    now = [0.0]
    timed = ck.Policy(60.0, clock=lambda: now[0])
    assert not timed.due(1)
    now[0] = 61.0
    assert timed.due(2) and not timed.due(3, agree=lambda flag: False)
    timed.saved()
    assert not timed.due(4)
