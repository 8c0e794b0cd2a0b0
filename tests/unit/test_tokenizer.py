"""Tokenizers and the vocabulary they need: the SentencePiece tokenizer of the runtime
(trained here on the dates data in well under a second), the paths it is read from,
the bundle input it becomes, and the compiler's W201 for a byte tokenizer whose
`vocab` is larger than its 260 ids."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from helpers import ROOT, build_spec

from llmc.compiler import estimate
from llmc.compiler.driver import check_spec
from llmc.runtime.config import load_config
from llmc.runtime.data import DataError, batches, load_split, read_rows
from llmc.runtime.runner import Bundle, RunError, data_digest, preflight
from llmc.runtime.tokenizer import BOS, EOS, PAD, SEP, SPECIALS, SentencePieceTokenizer, TokenizerError, get_tokenizer

sentencepiece = pytest.importorskip("sentencepiece")

DATES = ROOT / "examples" / "data" / "dates"


def _train_spm(path, pieces: int, lines: int = 400) -> None:
    _, rows = read_rows(str(DATES / "train.tsv"))
    text = [r[c] for r in rows[:lines] for c in ("source", "target")]
    # hard_vocab_limit off: a few hundred short lines may support slightly fewer pieces than asked.
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(text),
        model_prefix=str(path.with_suffix("")),
        vocab_size=pieces,
        model_type="unigram",
        hard_vocab_limit=False,
        minloglevel=2,
    )


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("spm") / "dates.model"
    _train_spm(path, 300)
    return path


# --- the runtime's SentencePiece tokenizer -------------------------------------------------------


def test_sentencepiece_round_trips_text_and_frames_with_the_shared_specials(spm_model):
    tok = get_tokenizer(str(spm_model))
    assert isinstance(tok, SentencePieceTokenizer) and tok.name == str(spm_model)
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.sep_id) == (PAD, BOS, EOS, SEP)
    _, rows = read_rows(str(DATES / "valid.tsv"))
    for r in rows[:50]:
        for text in (r["source"], r["target"]):
            ids = tok.encode(text)
            assert ids and not set(ids) & set(SPECIALS), text  # encode never produces a special
            assert all(0 <= i < tok.vocab_size for i in ids)
            assert tok.decode(ids) == text
            # framed as data.py frames a target, then padded: the same text back, nothing after EOS
            assert tok.decode([BOS, *ids, EOS, *ids, PAD]) == text
            assert tok.decode([PAD, SEP, *ids, PAD]) == text
    assert tok.decode_batch([tok.encode("2010-06-25"), [EOS]]) == ["2010-06-25", ""]


def test_sentencepiece_pieces_and_specials_are_distinct_ids(spm_model):
    tok = get_tokenizer(str(spm_model))
    assert tok.pieces == 300 and tok.vocab_size == 304
    # Each piece, encoded on its own, gets its own id; none of them is a special.
    processor = sentencepiece.SentencePieceProcessor(model_file=str(spm_model))
    mapped = [
        tok.encode(processor.id_to_piece(p).replace("\u2581", " ")) for p in range(3, tok.pieces)
    ]  # 0-2: <unk>, <s>, </s>, never produced by encode
    assert all(i not in SPECIALS for ids in mapped for i in ids)
    # The layout: pieces below 256 keep their ids, the rest move past the specials; every id below vocab is used.
    layout = {p: (p if p < PAD else p + len(SPECIALS)) for p in range(tok.pieces)}
    assert sorted(set(layout.values()) | set(SPECIALS)) == list(range(tok.vocab_size))
    for piece in range(PAD, tok.pieces):
        assert tok.decode([layout[piece]]) == processor.decode([piece])


def test_a_small_sentencepiece_model_still_needs_the_specials_ids(tmp_path):
    path = tmp_path / "small.model"
    _train_spm(path, 100)
    tok = get_tokenizer(str(path), 260)
    assert tok.pieces <= 100 and tok.vocab_size == 260
    assert tok.decode(tok.encode("june 3, 1999")) == "june 3, 1999"


@pytest.mark.parametrize("vocab", [300, 303, 305, 32000])
def test_a_vocab_other_than_the_model_s_ids_is_refused_with_the_number_that_works(spm_model, vocab):
    with pytest.raises(TokenizerError) as err:
        get_tokenizer(str(spm_model), vocab)
    message = str(err.value)
    assert f"it produces 304 ids (300 pieces + PAD, BOS, EOS, SEP), but the model has vocab = {vocab}" in message
    proposed = int(re.search(r"set vocab = (\d+)", message).group(1))
    assert get_tokenizer(str(spm_model), proposed).vocab_size == proposed


def test_unusable_tokenizer_files_are_errors_not_tracebacks(tmp_path):
    (tmp_path / "notes.model").write_text("not a model", encoding="utf-8")
    with pytest.raises(TokenizerError, match="not a SentencePiece model file"):
        get_tokenizer(str(tmp_path / "notes.model"))
    with pytest.raises(TokenizerError, match="is a folder"):
        get_tokenizer(str(tmp_path))
    with pytest.raises(TokenizerError, match="no such file"):
        get_tokenizer(str(tmp_path / "missing.model"))


def test_a_retrained_model_file_is_read_again(tmp_path):
    path = tmp_path / "t.model"
    _train_spm(path, 300)
    assert get_tokenizer(str(path)).vocab_size == 304
    _train_spm(path, 150)
    os.utime(path, ns=(1, 1))  # a different mtime even on a coarse clock
    assert get_tokenizer(str(path)).vocab_size == 260


# --- paths: as the data's, and every stage the same ---------------------------------------------


def _model_json(tmp_path, tokenizer: str) -> str:
    path = tmp_path / "model.json"
    path.write_text(
        json.dumps(
            {
                "model": {
                    "data": {
                        "train": "d/train.tsv",
                        "valid": "d/valid.tsv",
                        "test": "d/test.tsv",
                        "tokenizer": tokenizer,
                    }
                }
            }
        ),
        encoding="utf-8",
    )
    return str(path)


def test_a_relative_tokenizer_path_resolves_against_the_data_root(tmp_path, spm_model):
    root = tmp_path / "root"
    (root / "tok").mkdir(parents=True)
    (root / "tok" / "dates.model").write_bytes(spm_model.read_bytes())
    cfg = load_config(_model_json(tmp_path, "tok/dates.model"), data_root=root)
    assert cfg["model"]["data"]["tokenizer"] == str(root / "tok" / "dates.model")
    assert cfg["model"]["data"]["train"] == str(root / "d" / "train.tsv")
    assert get_tokenizer(cfg["model"]["data"]["tokenizer"], 304).vocab_size == 304
    # "bytes" is a name, not a file in the data root; a URI is left to fsspec
    assert load_config(_model_json(tmp_path, "bytes"), data_root=root)["model"]["data"]["tokenizer"] == "bytes"
    uri = "s3://b/spm.model"
    assert load_config(_model_json(tmp_path, uri), data_root=root)["model"]["data"]["tokenizer"] == uri
    # --set paths are the command line's: relative to the working directory
    cfg = load_config(
        _model_json(tmp_path, "bytes"), ["model.data.tokenizer=x/spm.model"], cwd=str(tmp_path), data_root=root
    )
    assert cfg["model"]["data"]["tokenizer"] == str(tmp_path / "x" / "spm.model")


def test_the_translator_s_local_data_through_a_sentencepiece_tokenizer(tmp_path, spm_model):
    """The local profile's bundle, its model.json read as every stage reads it, with the
    tokenizer swapped for the SentencePiece model: every batch id is below vocab."""
    bundle = build_spec(ROOT / "specs" / "translator.llm", tmp_path / "bundle", profile="local")
    overrides = [f"model.data.tokenizer={spm_model}", "model.transformer.vocab=304"]
    cfg = load_config(bundle / "model.json", overrides, data_root=ROOT / "specs")
    model = cfg["model"]
    split = load_split(model, model["data"]["train"])
    tok = get_tokenizer(model["data"]["tokenizer"], 304)
    seen = set()
    for batch in batches(split, np.arange(len(split)), 64):
        for ids in batch.values():
            assert ids.min() >= 0 and ids.max() < 304
            seen.update(np.unique(ids).tolist())
    assert max(seen) >= 260  # pieces past the specials do occur
    _, rows = read_rows(model["data"]["train"])
    assert tok.decode(split.arrays["target"][0]) == rows[0]["target"]
    assert tok.decode(split.arrays["source"][0]) == rows[0]["source"]
    # the wrong vocab stops the data loading with one line, as the scripts report a DataError
    model["transformer"]["vocab"] = 260
    with pytest.raises(DataError, match="set vocab = 304"):
        load_split(model, model["data"]["train"])


# --- the compiler: W201, the bundle's inputs -------------------------------------------------------


SPEC = """model m {{
  task = "translation"
  transformer {{
    layers  = 2
    d_model = {d_model}
    heads   = 4
    vocab   = {vocab}
  }}
  data {{
    train     = "s3://b/train.tsv"
    valid     = "s3://b/valid.tsv"
    test      = "s3://b/test.tsv"
    tokenizer = "{tokenizer}"
  }}
}}
"""


def _check(tmp_path, vocab: int, tokenizer: str = "bytes", d_model: int = 128):
    path = tmp_path / "spec.llm"
    path.write_text(SPEC.format(vocab=vocab, tokenizer=tokenizer, d_model=d_model), encoding="utf-8")
    return check_spec(str(path))


@pytest.mark.parametrize("vocab, d_model", [(261, 128), (300, 64), (32000, 512), (50257, 768)])
def test_a_byte_vocab_above_its_ids_is_w201_counting_the_unused_parameters(tmp_path, vocab, d_model):
    result = _check(tmp_path, vocab, d_model=d_model)
    assert result.ok  # a warning, not an error
    found = [d for d in result.diagnostics if d.code == "W201"]
    assert len(found) == 1 and found[0].severity == "warning"
    diag = found[0]
    assert (diag.span.line, diag.span.col) == (7, 5)  # the vocab attribute
    rows = vocab - 260
    assert f"{rows:,} embedding rows x d_model {d_model}" in diag.label

    # The parameters named are what the estimate counts for those rows (the tied embedding, once).
    def count(v):
        return estimate.transformer_params("encoder-decoder", 2, d_model, 4, 4 * d_model, v, 512).total

    assert f"= {estimate.format_count(count(vocab) - count(260))} parameters are never used" in diag.label
    assert diag.help.startswith(
        "set vocab = 260, or name a tokenizer file whose vocabulary has "
        f"{vocab} ids (a SentencePiece model of {vocab - 4:,} pieces)"
    )
    # the structured fix (`--format json`) writes the value the help proposes, over the value
    (fix,) = diag.fix
    lines = (tmp_path / "spec.llm").read_text(encoding="utf-8").split("\n")
    assert fix.replacement == "260" and fix.span.line == fix.span.end_line == 7
    assert lines[6][fix.span.col - 1 : fix.span.end_col - 1] == str(vocab)
    fixed = _check(tmp_path, int(re.match(r"set vocab = (\d+)", diag.help).group(1)), d_model=d_model)
    assert fixed.ok and not fixed.diagnostics


@pytest.mark.parametrize("tokenizer", ["s3://b/spm.model", "spm.model"])
def test_a_large_vocab_with_a_tokenizer_file_is_not_w201(tmp_path, tokenizer):
    (tmp_path / "spm.model").write_bytes(b"\x00")  # the compiler does not open it: its vocab is checked at run time
    for vocab in (32000, 100):
        result = _check(tmp_path, vocab, tokenizer)
        assert result.ok and not result.diagnostics, [(d.code, d.message) for d in result.diagnostics]


def test_the_flagship_spec_names_its_subword_vocabulary(tmp_path):
    for profile in (None, "local"):
        result = check_spec(str(ROOT / "specs" / "translator.llm"), profile=profile)
        assert result.ok and not result.diagnostics, [(d.code, d.message) for d in result.diagnostics]
    ir = check_spec(str(ROOT / "specs" / "translator.llm")).ir
    assert ir.model.data.tokenizer.endswith(".model") and ir.model.transformer.vocab == 32000


def test_a_local_tokenizer_file_is_a_bundle_input_checked_and_hashed(tmp_path, spm_model):
    (tmp_path / "specs" / "tok").mkdir(parents=True)
    (tmp_path / "specs" / "tok" / "dates.model").write_bytes(spm_model.read_bytes())
    base = (ROOT / "specs" / "translator.llm").read_text(encoding="utf-8")
    local = base.replace(
        'model.data.tokenizer             = "bytes"', 'model.data.tokenizer             = "tok/dates.model"'
    )
    local = local.replace("model.transformer.vocab          = 260", "model.transformer.vocab          = 304")
    local = local.replace("../examples/", f"{ROOT.as_posix()}/examples/")
    assert local.count("tok/dates.model") == 1 and local.count("= 304") == 1
    spec = tmp_path / "specs" / "translator.llm"
    spec.write_text(local, encoding="utf-8")
    bundle_dir = build_spec(spec, tmp_path / "bundle", profile="local")
    lock = json.loads((bundle_dir / "llmc.lock.json").read_text(encoding="utf-8"))
    assert lock["inputs"]["tokenizer"] == "tok/dates.model"
    model = json.loads((bundle_dir / "model.json").read_text(encoding="utf-8"))
    assert model["model"]["data"]["tokenizer"] == "tok/dates.model"
    bundle, data_root = Bundle(str(bundle_dir)), tmp_path / "specs"
    preflight(bundle, data_root)
    before = data_digest(bundle, data_root)
    _train_spm(tmp_path / "specs" / "tok" / "dates.model", 200)
    assert data_digest(bundle, data_root) != before  # a new tokenizer reruns the stages
    os.remove(tmp_path / "specs" / "tok" / "dates.model")
    with pytest.raises(RunError, match=r"tok/dates.model"):
        preflight(bundle, data_root)


def test_a_tokenizer_path_in_an_extended_spec_is_relative_to_that_spec(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "spm.model").write_bytes(b"\x00")
    (tmp_path / "base" / "base.llm").write_text(
        SPEC.format(vocab=304, tokenizer="spm.model", d_model=128), encoding="utf-8"
    )
    (tmp_path / "child.llm").write_text('extends "base/base.llm"\n', encoding="utf-8")
    result = check_spec(str(tmp_path / "child.llm"))
    assert result.ok
    # model.json and the lock record it as the data paths are: relative to the main spec's folder
    assert result.ir.model.data.tokenizer == "base/spm.model"
    from llmc.compiler.bundle import data_inputs

    assert data_inputs(result.ir)["tokenizer"] == "base/spm.model"


def test_a_tokenizer_folder_is_e214_naming_the_file_to_give(tmp_path):
    (tmp_path / "spm").mkdir()
    result = _check(tmp_path, 260, "spm")
    found = [d for d in result.diagnostics if d.code == "E214"]
    assert len(found) == 1 and not result.ok
    assert found[0].message == 'tokenizer "spm" is a folder' and found[0].help == "name the .model file in it"
    (tmp_path / "spm" / "en.model").write_bytes(b"\x00")
    assert _check(tmp_path, 260, "spm/en.model").ok
