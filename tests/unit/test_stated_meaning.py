"""No silent change of meaning: a classifier states its classes (E203, E205), a search's
direction follows its objective (E605), a tokenizer is a known name or an existing file
(E214), the byte tokenizer's ids fit the vocabulary (E215), and a tensor-parallel group
stays on one host (W302). Each help that proposes a value is applied and re-checked."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
from helpers import ROOT

from llmc.compiler import labels, schema
from llmc.compiler.checks import data as data_check
from llmc.compiler.driver import check_spec
from llmc.compiler.metric_names import HIGHER_IS_BETTER, direction_of


def _spec(*, task="translation", arch="", data="", extra="") -> str:
    return f"""model m {{
  task = "{task}"
  transformer {{
    layers  = 2
    d_model = 128
    heads   = 4
    vocab   = 260
{arch}  }}
  data {{
    train = "{data or "train.tsv"}"
    valid = "valid.tsv"
    test  = "test.tsv"
{extra}  }}
}}
"""


def _check(tmp_path, text: str, name: str = "spec.llm"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return check_spec(str(path))


def _only(result, code: str):
    found = [d for d in result.diagnostics if d.code == code]
    assert len(found) == 1, [(d.code, d.message) for d in result.diagnostics]
    return found[0]


def _codes(result) -> set[str]:
    return {d.code for d in result.diagnostics}


def _errors(result) -> list[tuple[str, str]]:
    return [(d.code, d.message) for d in result.diagnostics if d.severity == "error"]


def _proposed(help_text: str, name: str) -> int:
    m = re.search(rf"{name} = (\d+)", help_text)
    assert m, help_text
    return int(m.group(1))


# --- classes -------------------------------------------------------------------------


def _write_labels(path, labels) -> None:
    path.write_text(
        "text\tlabel\n" + "".join(f"example {i}\t{label}\n" for i, label in enumerate(labels)), encoding="utf-8"
    )


@pytest.mark.parametrize(
    "labels, needed, described",
    [
        (["greeting", "farewell", "question", "greeting"], 3, "3 labels"),
        ([0, 1, 2, 1, 0], 3, "3 labels"),
        ([0, 2, 5], 6, "3 labels with ids up to 5"),  # integer labels are ids: the runtime needs 6 logits
        (["1.0", "0"], 2, "2 labels"),  # whole numbers are ids, as runtime/data.py reads them
    ],
)
def test_a_classifier_without_classes_is_e203_with_the_count_of_its_local_labels(tmp_path, labels, needed, described):
    _write_labels(tmp_path / "train.tsv", labels)
    result = _check(tmp_path, _spec(task="classification"))
    diag = _only(result, "E203")
    assert diag.message == "a classifier needs `classes`"
    assert diag.help == f"the training data has {described}: add `classes = {needed}`"
    assert result.ir is None  # nothing downstream sees a made-up class count
    fixed = _check(tmp_path, _spec(task="classification", arch=f"    classes = {_proposed(diag.help, 'classes')}\n"))
    assert fixed.ok, _errors(fixed)
    assert fixed.ir.model.transformer.classes == needed
    assert fixed.facts.param_count.head == 128 * needed + needed


def test_an_encoder_of_any_task_needs_classes(tmp_path):
    # kind "encoder" is a classifier's architecture; the plan would otherwise count a made-up head
    result = _check(tmp_path, _spec(arch='    kind    = "encoder"\n', data="s3://bucket/train.tsv"))
    assert _only(result, "E203").help == "add `classes = N`, the number of labels (class ids 0..N-1)"


def test_a_classifier_whose_data_cannot_be_read_gets_a_plain_help(tmp_path, monkeypatch):
    plain = "add `classes = N`, the number of labels (class ids 0..N-1)"
    for data in ("s3://bucket/train.tsv", "missing.tsv", "folder.tsv"):
        (tmp_path / "folder.tsv").mkdir(exist_ok=True)
        assert _only(_check(tmp_path, _spec(task="classification", data=data)), "E203").help == plain
    hostile = {
        "bytes.tsv": b"text\tlabel\n\xff\xfe\x00\tA\n\x80\tB\n",  # not UTF-8, a NUL: still counted
        "ragged.csv": b"text,label\na,1\nb\n",  # a row the runtime rejects: not judged here
        "nolabel.csv": b"text,other\na,1\n",
        "empty.csv": b"",
        "bad.jsonl": b'{"text": "a", "label": 1}\n{not json\n',
        "list.jsonl": b"[1, 2]\n",
        "negative.csv": b"text,label\na,-1\nb,0\n",
        "huge.csv": b"text,label\na,1e300\n",
        "quote.csv": b'text,label\n"unterminated,1\n',
    }
    for name, content in hostile.items():
        (tmp_path / name).write_bytes(content)
        result = _check(tmp_path, _spec(task="classification", data=name))
        help_text = _only(result, "E203").help
        assert help_text == plain or help_text.startswith("the training data has"), (name, help_text)
    assert _only(_check(tmp_path, _spec(task="classification", data="bytes.tsv")), "E203").help.startswith(
        "the training data has 2 labels"
    )
    # Past the size bound the file is not read at all.
    _write_labels(tmp_path / "big.tsv", ["a", "b", "c"])
    monkeypatch.setattr(labels, "MAX_LABEL_FILE_BYTES", 10)
    assert _only(_check(tmp_path, _spec(task="classification", data="big.tsv")), "E203").help == plain


def test_the_label_count_is_read_again_when_the_file_changes(tmp_path):
    _write_labels(tmp_path / "train.tsv", ["a", "b"])
    assert "2 labels" in _only(_check(tmp_path, _spec(task="classification")), "E203").help
    _write_labels(tmp_path / "train.tsv", ["a", "b", "c", "d", "e"])  # a different size
    assert "5 labels" in _only(_check(tmp_path, _spec(task="classification")), "E203").help


def test_fewer_classes_than_the_local_labels_is_e205_and_its_help_checks_clean(tmp_path):
    text = (ROOT / "specs" / "classifier.llm").read_text(encoding="utf-8").replace("classes    = 10", "classes    = 3")
    result = check_spec(str(ROOT / "specs" / "classifier.llm"), profile="local", text=text)
    diag = _only(result, "E205")
    assert diag.message == "`classes = 3` is fewer than the training data's labels"
    assert (
        diag.label == "the training data has 10 labels"
        and re.match(r"set `(\w+\.)?classes = 10`", diag.help) is not None
    )
    fixed = text.replace("classes    = 3", f"classes    = {_proposed(diag.help, 'classes')}")
    assert check_spec(str(ROOT / "specs" / "classifier.llm"), profile="local", text=fixed).ok
    # More classes than labels is allowed (a class the sample lacks), and remote data is not judged.
    more = text.replace("classes    = 3", "classes    = 12")
    assert check_spec(str(ROOT / "specs" / "classifier.llm"), profile="local", text=more).ok
    assert "E205" not in _codes(check_spec(str(ROOT / "specs" / "classifier.llm"), text=text))


def test_no_target_makes_up_a_class_count():
    import inspect

    from llmc.compiler import plan
    from llmc.compiler.targets import horovod, triton

    for module in (plan, horovod, triton):
        source = inspect.getsource(module)
        assert not re.search(r"classes\"?\]?\s*(or|=)\s*2\b", source), module.__name__


def test_a_search_variant_that_makes_an_encoder_reports_the_missing_classes():
    text = (
        (ROOT / "specs" / "translator.llm")
        .read_text(encoding="utf-8")
        .replace(
            "    train.batch_size          = choice(256, 512, 1024)",
            '    train.batch_size          = choice(256, 512, 1024)\n    model.transformer.kind    = choice("encoder-decoder", "encoder")',
        )
    )
    result = check_spec(str(ROOT / "specs" / "translator.llm"), text=text)
    diag = _only(result, "E603")  # not an internal error, and not a silent binary head
    assert "E203" in diag.label + diag.message + diag.help + " ".join(diag.notes), diag


# --- direction -------------------------------------------------------------------------


METRIC_NAMES = typing.get_args(schema.MetricName)


def test_the_compiler_and_the_runtime_agree_on_which_metrics_grow():
    from llmc.runtime import metrics as runtime_metrics

    assert set(runtime_metrics.HIGHER_IS_BETTER) == set(HIGHER_IS_BETTER)
    assert set(runtime_metrics.UNITS) == set(METRIC_NAMES)  # the runtime knows every metric the language has
    scores = {"bleu", "chrf", "rouge1", "rouge2", "rougeL", "accuracy", "f1"}
    assert {m for m in METRIC_NAMES if direction_of(m) == "maximize"} == scores
    assert direction_of("valid_loss") == "minimize"


CLASSIFIER = str(ROOT / "specs" / "classifier.llm")


def _search(text: str, objective: str, direction: str | None) -> str:
    line = f'  direction = "{direction}"\n' if direction else ""
    return re.sub(r'  objective = "accuracy"\n  direction = "maximize"\n', f'  objective = "{objective}"\n{line}', text)


@pytest.mark.parametrize("objective", ["accuracy", "f1", "valid_loss", "latency_p99", "model_size"])
def test_an_unstated_direction_follows_the_objective(objective):
    text = _search(Path(CLASSIFIER).read_text(encoding="utf-8"), objective, None)
    result = check_spec(CLASSIFIER, text=text)
    assert result.ok, _errors(result)
    assert result.ir.search.direction == ("maximize" if objective in ("accuracy", "f1") else "minimize")


@pytest.mark.parametrize(
    "objective, wrong, right",
    [
        ("accuracy", "minimize", "maximize"),
        ("f1", "minimize", "maximize"),
        ("valid_loss", "maximize", "minimize"),
        ("latency_p50", "maximize", "minimize"),
    ],
)
def test_a_direction_against_the_objective_is_e605_and_its_help_checks_clean(objective, wrong, right):
    text = _search(Path(CLASSIFIER).read_text(encoding="utf-8"), objective, wrong)
    diag = _only(check_spec(CLASSIFIER, text=text), "E605")
    assert diag.message == f'search direction "{wrong}" contradicts the objective "{objective}"'
    assert diag.help.startswith(f'set `direction = "{right}"`')
    fixed = check_spec(CLASSIFIER, text=_search(text.replace(f'direction = "{wrong}"', ""), objective, right))
    assert fixed.ok and fixed.ir.search.direction == right
    assert check_spec(CLASSIFIER, text=text.replace(f'direction = "{wrong}"', f'direction = "{right}"')).ok


def test_an_unknown_objective_is_e604_alone():
    text = _search(Path(CLASSIFIER).read_text(encoding="utf-8"), "acuracy", "minimize")
    assert {"E604"} == {code for code, _ in _errors(check_spec(CLASSIFIER, text=text))}


def test_the_json_schema_does_not_claim_a_fixed_direction():
    direction = schema.json_schema()["$defs"]["Search"]["properties"]["direction"]
    assert direction.get("default") is None and "objective" in direction["description"]


# --- tokenizer and vocabulary ----------------------------------------------------------------


def test_the_byte_vocabulary_is_the_runtime_tokenizer_s():
    from llmc.runtime import tokenizer

    assert data_check.BYTE_VOCAB == tokenizer.VOCAB_SIZE == tokenizer.ByteTokenizer().vocab_size
    assert max(tokenizer.SPECIALS) == data_check.BYTE_VOCAB - 1
    tokenizer.get_tokenizer("bytes", data_check.BYTE_VOCAB)  # the smallest vocab E215 accepts, the runtime takes
    with pytest.raises(ValueError):
        tokenizer.get_tokenizer("bytes", data_check.BYTE_VOCAB - 1)
    assert set(data_check.TOKENIZERS) == {tokenizer.ByteTokenizer.name}


@pytest.mark.parametrize(
    "vocab, error", [(1, True), (100, True), (256, True), (259, True), (260, False), (50257, False)]
)
def test_a_byte_vocab_below_its_ids_is_e215(tmp_path, vocab, error):
    text = _spec(data="s3://b/train.tsv").replace("vocab   = 260", f"vocab   = {vocab}")
    result = _check(tmp_path, text)
    if not error:
        assert result.ok, _errors(result)
        return
    diag = _only(result, "E215")
    assert f"vocab = {vocab}, but the byte tokenizer produces 260 ids" in diag.label
    fixed = text.replace(f"vocab   = {vocab}", f"vocab   = {_proposed(diag.help, 'vocab')}")
    assert _check(tmp_path, fixed).ok


@pytest.mark.parametrize(
    "tokenizer, message, help_text",
    [
        (
            "sentencepiece",
            'tokenizer "sentencepiece" names a kind of tokenizer, not its file',
            'write the path of the sentencepiece model file, or `tokenizer = "bytes"`',
        ),
        ("byts", 'unknown tokenizer "byts"', 'did you mean "bytes"?'),
        ("Bytes", 'unknown tokenizer "Bytes"', 'did you mean "bytes"?'),
        ("tok/en-de.model", 'tokenizer file "tok/en-de.model" does not exist', None),
        ("", "empty tokenizer name", 'write `tokenizer = "bytes"` or the path of a tokenizer file'),
        (" ", "empty tokenizer name", 'write `tokenizer = "bytes"` or the path of a tokenizer file'),
    ],
)
def test_a_tokenizer_is_a_known_name_or_an_existing_file(tmp_path, tokenizer, message, help_text):
    result = _check(tmp_path, _spec(data="s3://b/train.tsv", extra=f'    tokenizer = "{tokenizer}"\n'))
    diag = _only(result, "E214")
    assert diag.message == message
    if help_text is not None:
        assert diag.help == help_text
    else:
        assert diag.help.startswith(f"the file {tmp_path.as_posix()}/{tokenizer} does not exist: ")


def test_a_tokenizer_file_is_found_relative_to_the_file_that_names_it(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "spm.model").write_bytes(b"\x00model")
    (tmp_path / "base" / "base.llm").write_text(
        _spec(data="s3://b/train.tsv", extra='    tokenizer = "spm.model"\n'), encoding="utf-8"
    )
    child = tmp_path / "child.llm"
    child.write_text('extends "base/base.llm"\n', encoding="utf-8")
    assert check_spec(str(child)).ok  # base/spm.model, not ./spm.model
    assert "E214" in _codes(_check(tmp_path, _spec(data="s3://b/train.tsv", extra='    tokenizer = "spm.model"\n')))
    # a URI cannot be looked at and passes; a file tokenizer's vocab is its own business
    uri = _spec(data="s3://b/train.tsv", extra='    tokenizer = "s3://b/spm.model"\n').replace("= 260", "= 100")
    assert _check(tmp_path, uri).ok


# --- tensor groups and hosts ----------------------------------------------------------------


def _layout(hosts: int, per_host: int, tensor: int, data: int | None, heads: int = 16, micro: int | None = None) -> str:
    parallel = f"    tensor = {tensor}\n" + (f"    data   = {data}\n" if data is not None else "")
    micro_line = f"  micro_batch = {micro}\n" if micro is not None else ""
    return (
        _spec(task="language-modeling", data="s3://b/train.jsonl")
        .replace("heads   = 4", f"heads   = {heads}")
        .replace("d_model = 128", "d_model = 768")
        + f"""
train {{
  cluster {{
    hosts          = {hosts}
    slots_per_host = {per_host}
    device         = "A100-80GB"
  }}
  parallel {{
{parallel}  }}
  batch_size = 384
{micro_line}  epochs     = 1
  optimizer "adamw" {{
    lr = 3e-4
  }}
}}
"""
    )


@pytest.mark.parametrize(
    "hosts, per_host, tensor, data, heads, micro, expected",
    [
        (4, 8, 16, 2, 16, None, "tensor = 8 and data = 4"),  # every group spans two hosts
        (4, 8, 16, None, 16, None, "tensor = 8"),  # data derived: it follows
        (2, 6, 4, 3, 12, None, "tensor = 3 and data = 4"),  # 4 does not divide 6: groups straddle
        (4, 8, 16, 2, 16, 192, "tensor = 8, data = 4 and micro_batch = 96"),  # the written micro-batch no longer fits
    ],
)
def test_a_tensor_group_across_hosts_is_w302_and_its_help_keeps_it_on_one(
    tmp_path, hosts, per_host, tensor, data, heads, micro, expected
):
    result = _check(tmp_path, _layout(hosts, per_host, tensor, data, heads, micro))
    assert not _errors(result), _errors(result)
    diag = _only(result, "W302")
    # the proposal, checked against the whole spec before the help shows it (proposals.py)
    shown = re.sub(r"(\w+ = \d+)", r"`\1`", expected)
    assert diag.help == f"set {shown} (checked: that clears this and adds no other finding)"
    new_tensor = _proposed(diag.help, "tensor")
    new_data = _proposed(diag.help, "data") if "data =" in diag.help else None
    new_micro = _proposed(diag.help, "micro_batch") if "micro_batch" in diag.help else micro
    fixed = _check(tmp_path, _layout(hosts, per_host, new_tensor, new_data, heads, new_micro))
    assert "W302" not in _codes(fixed) and not _errors(fixed), fixed.diagnostics


@pytest.mark.parametrize("hosts, per_host, tensor, data", [(4, 8, 8, 4), (4, 8, 4, 8), (4, 8, 2, 16), (1, 8, 8, 1)])
def test_a_tensor_group_inside_a_host_is_not_warned(tmp_path, hosts, per_host, tensor, data):
    result = _check(tmp_path, _layout(hosts, per_host, tensor, data))
    assert "W302" not in _codes(result) and not _errors(result), result.diagnostics


# --- the checked-in specs ------------------------------------------------------------------


@pytest.mark.parametrize("spec", sorted((ROOT / "specs").glob("*.llm")), ids=lambda p: p.stem)
def test_the_checked_in_specs_keep_their_meaning(spec):
    for profile in (None, "local"):
        result = check_spec(str(spec), profile=profile)
        assert result.ok and not [d for d in result.diagnostics if d.code in ("W302", "E605", "E214", "E215")]
        assert result.ir.search.direction == direction_of(result.ir.search.objective)
