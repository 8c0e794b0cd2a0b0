"""The data check (`llmc check --data`, compiler/data_check.py) against the runtime's
reading (runtime/data.py): the same files, good and broken in many ways, fed to both.

Each case writes a small spec and its three data files, one of them changed; the
checker must report exactly the expected code on that file (nothing on a good one),
and the runtime, reading train, valid and test as training and evaluation do, must
stop on that file with a DataError whose line is one the checker points at (and read
every good file). Rows longer than max_len are a warning: the checker's count must be
the number of rows the runtime's arrays cut short. In process: runtime/data.py needs
numpy only.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import run_cli

from llmc.compiler.data_check import MAX_PROBLEMS, check_data
from llmc.compiler.driver import check_spec
from llmc.runtime.data import DataError, load_split
from llmc.runtime.tokenizer import EOS, SEP, ByteTokenizer

SPECS = {
    "pairs": (
        'task = "translation"\n\n  transformer {\n    layers  = 1\n    d_model = 16\n    heads   = 2\n'
        "    vocab   = 260\n    max_len = {max_len}\n  }"
    ),
    "prompt": (
        'task = "translation"\n\n  transformer {\n    layers  = 1\n    d_model = 16\n    heads   = 2\n'
        '    vocab   = 260\n    max_len = {max_len}\n    kind    = "decoder"\n  }'
    ),
    "tokens": (
        'task = "language-modeling"\n\n  transformer {\n    layers  = 1\n    d_model = 16\n    heads   = 2\n'
        "    vocab   = 260\n    max_len = {max_len}\n  }"
    ),
    "classify": (
        'task = "classification"\n\n  transformer {\n    layers  = 1\n    d_model = 16\n    heads   = 2\n'
        "    vocab   = 260\n    max_len = {max_len}\n    classes = 3\n  }"
    ),
    "features": 'task = "classification"\n\n  mlp {\n    inputs  = 2\n    hidden  = [4]\n    classes = 3\n  }',
}
GOOD = {
    ("pairs", "tsv"): b"source\ttarget\njun 25, 2010\t2010-06-25\nMarch 7 1987\t1987-03-07\n",
    ("prompt", "tsv"): b"source\ttarget\njun 25, 2010\t2010-06-25\nMarch 7 1987\t1987-03-07\n",
    ("tokens", "jsonl"): b'{"text": "once upon a time"}\n{"text": "the end"}\n',
    ("classify", "tsv"): b"text\tlabel\nhello there\tgreeting\nsee you\tfarewell\nwhat time is it\tquestion\n",
    ("classify", "jsonl"): (
        b'{"text": "hello", "label": "greeting"}\n{"text": "bye", "label": "farewell"}\n'
        b'{"text": "why", "label": "question"}\n'
    ),
    ("features", "csv"): b"x,y,label\n0.1,0.2,0\n0.9,0.1,1\n0.5,0.8,2\n",
    ("features", "jsonl"): b'{"x": 0.1, "y": 0.2, "label": 0}\n{"x": 0.9, "y": 0.1, "label": 1}\n',
}

# (id, kind, format, which split changes, its bytes, the code the checker reports on it or None)
CASES = [
    # -- accepted by both
    ("good", "pairs", "tsv", "train", GOOD["pairs", "tsv"], None),
    ("crlf", "pairs", "tsv", "train", GOOD["pairs", "tsv"].replace(b"\n", b"\r\n"), None),
    ("lone-cr", "pairs", "tsv", "train", GOOD["pairs", "tsv"].replace(b"\n", b"\r"), None),
    ("bom", "pairs", "tsv", "train", b"\xef\xbb\xbf" + GOOD["pairs", "tsv"], None),
    ("no-final-newline", "pairs", "tsv", "train", GOOD["pairs", "tsv"].rstrip(b"\n"), None),
    ("blank-lines", "pairs", "tsv", "train", b"\n\nsource\ttarget\n\nab\tcd\n\n", None),
    ("quote-in-tsv", "pairs", "tsv", "train", b'source\ttarget\nsay "hi\tok\n', None),
    ("utf8-text", "pairs", "tsv", "train", "source\ttarget\n3 février 1999\t1999-02-03\n".encode(), None),
    ("csv-quoted", "features", "csv", "train", b'x,y,label\n"0.1","0.2",0\n0.9,0.1,"1"\n0.5,0.8,2\n', None),
    ("float-ids", "features", "csv", "train", b"x,y,label\n0.1,0.2,0.0\n0.9,0.1,2.0\n", None),
    ("nan-feature", "features", "csv", "train", b"x,y,label\n0.1,nan,0\n0.9,inf,1\n", None),
    ("json-lines-good", "classify", "jsonl", "train", GOOD["classify", "jsonl"], None),
    # -- refused by both
    ("bad-byte", "pairs", "tsv", "train", b"source\ttarget\nab\xffcd\tx\n", "E902"),
    ("bad-byte-header", "pairs", "tsv", "train", b"sour\xe9e\ttarget\nab\tx\n", "E902"),
    ("bad-byte-after-cr", "pairs", "tsv", "train", b"source\ttarget\rab\tcd\rx\xfey\tz\r", "E902"),
    ("bad-byte-json", "classify", "jsonl", "train", b'{"text": "h\xe9", "label": "greeting"}\n', "E902"),
    ("missing-field", "pairs", "tsv", "train", b"source\ttarget\nab\tcd\nef\n", "E903"),
    ("extra-field", "pairs", "tsv", "valid", b"source\ttarget\nab\tcd\tef\n", "E903"),
    ("spaces-for-tab", "pairs", "tsv", "test", b"source\ttarget\nab   cd\n", "E903"),
    ("csv-extra-comma", "features", "csv", "train", b"x,y,label\n0.1,0.2,0\n0,9,0.1,1\n", "E903"),
    ("label-out-of-range", "features", "csv", "valid", b"x,y,label\n0.1,0.2,0\n0.9,0.1,3\n", "E904"),
    ("negative-label", "features", "csv", "train", b"x,y,label\n0.1,0.2,-1\n0.9,0.1,1\n", "E904"),
    ("label-not-in-train", "classify", "tsv", "test", b"text\tlabel\nhi\tgreeting\nthanks\tthanks\n", "E904"),
    ("json-label-not-in-train", "classify", "jsonl", "valid", b'{"text": "x", "label": "nope"}\n', "E904"),
    ("not-a-number", "features", "csv", "train", b"x,y,label\n0.1,0.2,0\n0.9,n/a,1\n", "E905"),
    ("empty-feature", "features", "csv", "valid", b"x,y,label\n0.1,,0\n", "E905"),
    ("json-null-feature", "features", "jsonl", "train", b'{"x": 0.1, "y": null, "label": 0}\n', "E905"),
    ("zero-bytes", "pairs", "tsv", "train", b"", "E906"),
    ("blank-only", "pairs", "tsv", "valid", b"\n\n\n", "E906"),
    ("header-only", "pairs", "tsv", "test", b"source\ttarget\n", "E906"),
    ("json-empty", "classify", "jsonl", "train", b"\n", "E906"),
    ("cut-mid-row", "pairs", "tsv", "train", b"source\ttarget\nab\tcd\nef", "E907"),
    ("cut-in-quotes", "features", "csv", "train", b'x,y,label\n0.1,0.2,0\n0.9,"0.', "E907"),
    ("cut-json", "classify", "jsonl", "train", b'{"text": "hello", "label": "greeting"}\n{"text": "by', "E907"),
    ("missing-column", "pairs", "tsv", "train", b"source\ttranslation\nab\tcd\n", "E908"),
    ("header-lost", "features", "csv", "train", b"0.1,0.2,0\n0.9,0.1,1\n", "E908"),
    ("too-many-features", "features", "csv", "train", b"x,y,z,label\n0.1,0.2,0.3,0\n", "E908"),
    ("json-missing-key", "classify", "jsonl", "train", b'{"text": "a", "label": "x"}\n{"text": "b"}\n', "E908"),
    (
        "json-late-feature",
        "features",
        "jsonl",
        "train",
        b'{"x": 0.1, "label": 0}\n{"x": 1, "y": 2, "label": 1}\n',
        "E908",
    ),
    ("csv-quote", "features", "csv", "train", b'x,y,label\n0.1,"0.2"5,0\n', "E909"),
    ("json-array", "classify", "jsonl", "train", b'{"text": "a", "label": "x"}\n["b", "y"]\n', "E909"),
    ("json-invalid", "classify", "jsonl", "valid", b'{"text": "a", "label": "greeting"\n', "E909"),
]


def _write(tmp_path: Path, kind: str, fmt: str, changed: str, content: bytes, max_len: int = 64) -> Path:
    ext = fmt
    for split in ("train", "valid", "test"):
        (tmp_path / f"{split}.{ext}").write_bytes(content if split == changed else GOOD[kind, fmt])
    model = SPECS[kind].replace("{max_len}", str(max_len))
    spec = tmp_path / "spec.llm"
    spec.write_text(
        f"model m {{\n  {model}\n\n  data {{\n"
        f'    train = "train.{ext}"\n    valid = "valid.{ext}"\n    test  = "test.{ext}"\n  }}\n}}\n',
        encoding="utf-8",
    )
    return spec


def _checker(spec: Path) -> tuple[dict[str, list[tuple[str, int]]], list]:
    """{file name: [(code, line)]} of the errors, and every finding."""
    result = check_spec(str(spec))
    assert result.ir is not None, [d.message for d in result.diagnostics]
    found = [(None, d) for d in result.diagnostics] + check_data([(None, result)]).findings
    errors: dict[str, list[tuple[str, int]]] = {}
    for _, d in found:
        if d.severity != "error":
            continue
        # E205 (more labels than classes) is said at `classes`, of the train file.
        name = Path(d.span.file).name if d.code != "E205" else next(p.name for p in spec.parent.glob("train.*"))
        errors.setdefault(name, []).append((d.code, d.span.line))
    return errors, [d for _, d in found]


def _runtime(spec: Path) -> tuple[str, int | None, str] | None:
    """(file name, line, message) of the DataError the runtime stops on, or None when it
    reads train, valid and test as training and evaluation do."""
    result = check_spec(str(spec))
    assert result.ir is not None
    cfg = result.ir.model.model_dump(mode="json")
    paths = {s: str(spec.parent / cfg["data"][s]) for s in ("train", "valid", "test")}
    current = paths["train"]
    try:
        train = load_split(cfg, current)
        for split in ("valid", "test"):
            current = paths[split]
            load_split(cfg, current, label_names=train.label_names)
    except DataError as exc:
        message = str(exc)
        m = re.match(rf"{re.escape(current)}:(\d+): ", message)
        return Path(current).name, int(m.group(1)) if m else None, message
    return None


@pytest.mark.parametrize("case, kind, fmt, changed, content, code", CASES, ids=[c[0] for c in CASES])
def test_the_checker_and_the_runtime_agree(tmp_path, case, kind, fmt, changed, content, code):
    spec = _write(tmp_path, kind, fmt, changed, content)
    errors, _ = _checker(spec)
    stopped = _runtime(spec)
    name = f"{changed}.{fmt}"
    if code is None:
        assert errors == {}, errors
        assert stopped is None, stopped
        return
    assert set(errors) == {name}, errors
    assert code in {c for c, _ in errors[name]}, errors
    assert stopped is not None, f"the runtime read {name} ({case}); the checker says {errors}"
    assert stopped[0] == name, stopped
    lines = {line for _, line in errors[name]}
    if stopped[1] is not None:
        assert stopped[1] in lines, (stopped, errors)
    else:  # said of the whole file: the checker points at its start
        assert lines & {1}, (stopped, errors)


def test_more_classes_of_labels_than_classes_is_e205_and_the_runtime_stops_too(tmp_path):
    spec = _write(tmp_path, "features", "csv", "train", b"x,y,label\n0.1,0.2,0\n0.9,0.1,4\n")
    _, found = _checker(spec)
    assert [d.code for d in found if d.severity == "error"] == ["E205"]  # said once, at `classes`
    stopped = _runtime(spec)
    assert stopped is not None and stopped[:2] == ("train.csv", 3)


@pytest.mark.parametrize("kind, fmt", [("pairs", "tsv"), ("prompt", "tsv"), ("tokens", "jsonl"), ("classify", "tsv")])
def test_rows_longer_than_max_len_are_the_rows_the_runtime_cuts(tmp_path, kind, fmt):
    rows = ["a" * n for n in (3, 7, 8, 9, 15, 16, 17, 30)] + ["é" * 4, "é" * 5]  # 2-byte characters
    if fmt == "jsonl":
        content = "".join(f'{{"text": "{r}"}}\n' for r in rows)
    elif kind == "classify":
        content = "text\tlabel\n" + "".join(f"{r}\tgreeting\n" for r in rows)
    else:  # source and target of different lengths
        content = "source\ttarget\n" + "".join(f"{r}\t{r[: len(r) // 2 + 1]}\n" for r in rows)
    spec = _write(tmp_path, kind, fmt, "train", content.encode(), max_len=8)
    _, found = _checker(spec)
    warned = [d for d in found if d.code == "W901" and d.span.file.endswith(f"train.{fmt}")]
    result = check_spec(str(spec))
    assert result.ir is not None
    cfg = result.ir.model.model_dump(mode="json")
    split = load_split(cfg, str(tmp_path / f"train.{fmt}"))
    cut = _cut_rows(split, rows, kind)
    if not cut:
        assert warned == []
        return
    assert len(warned) == 1, warned
    assert warned[0].message.startswith(f"{cut} of {len(rows)} rows are longer than max_len = 8")
    needed = int(re.search(r"set max_len = (\d+)", warned[0].help).group(1))
    spec = _write(tmp_path, kind, fmt, "train", content.encode(), max_len=needed)
    assert (
        _cut_rows(
            load_split(check_spec(str(spec)).ir.model.model_dump(mode="json"), str(tmp_path / f"train.{fmt}")),
            rows,
            kind,
        )
        == 0
    )
    _, found = _checker(spec)
    assert not [d for d in found if d.code == "W901" and d.span.file.endswith(f"train.{fmt}")]


def _cut_rows(split, rows: list[str], kind: str) -> int:
    """The rows whose text the runtime's arrays do not hold whole."""
    tok = ByteTokenizer()
    a = split.arrays
    cut = 0
    for i, r in enumerate(rows):
        if kind == "pairs":
            whole = tok.decode(a["source"][i]) == r and tok.decode(a["target"][i]) == r[: len(r) // 2 + 1]
        elif kind == "prompt":
            tokens = a["tokens"][i].tolist()
            sep = tokens.index(SEP) if SEP in tokens else len(tokens)
            whole = tok.decode(tokens[:sep]) == r and tok.decode(tokens[sep + 1 :]) == r[: len(r) // 2 + 1]
            whole = whole and EOS in tokens
        elif kind == "tokens":
            whole = tok.decode(a["tokens"][i]) == r and EOS in a["tokens"][i].tolist()
        else:
            whole = tok.decode(a["text"][i]) == r
        cut += not whole
    return cut


def test_a_file_stops_being_read_after_max_problems(tmp_path):
    content = b"source\ttarget\n" + b"".join(b"row %d\n" % i for i in range(MAX_PROBLEMS + 5))
    spec = _write(tmp_path, "pairs", "tsv", "train", content)
    errors, found = _checker(spec)
    assert errors["train.tsv"] == [("E903", line) for line in range(2, 2 + MAX_PROBLEMS)]
    last = [d for d in found if d.code == "E903"][-1]
    assert any(f"after {MAX_PROBLEMS} problems" in n for n in last.notes)


def test_remote_files_are_not_read_and_a_missing_one_is_e901(tmp_path):
    spec = _write(tmp_path, "pairs", "tsv", "train", GOOD["pairs", "tsv"])
    text = spec.read_text().replace('"valid.tsv"', '"s3://bucket/valid.tsv"').replace('"test.tsv"', '"tset.tsv"')
    spec.write_text(text)
    errors, found = _checker(spec)
    assert errors == {"spec.llm": [("E901", 15)]}, found
    e901 = next(d for d in found if d.code == "E901")
    assert e901.span.file == str(spec) and "did you mean test.tsv?" in e901.help


def test_check_data_and_its_json(tmp_path):
    spec = _write(tmp_path, "pairs", "tsv", "valid", b"source\ttarget\nab\n")
    code, out, err = run_cli("check", "--data", "-q", str(spec))
    assert code == 1 and "error[E903]: 1 fields, the header has 2" in err and "valid.tsv:2:1" in err
    assert "= note: `model.data.valid` names this file" in err and err.rstrip().endswith("1 error in its data files")
    code, out, _ = run_cli("check", "--data", "--format", "json", str(spec))
    import json

    (finding,) = json.loads(out)
    assert code == 1 and finding["code"] == "E903" and finding["file"].endswith("valid.tsv") and finding["line"] == 2
    code, _, err = run_cli("check", "-q", str(spec))  # without --data the files are not read
    assert code == 0 and err == ""


def test_an_edited_file_is_read_again(tmp_path):
    import os

    spec = _write(tmp_path, "pairs", "tsv", "train", GOOD["pairs", "tsv"])
    assert _checker(spec)[0] == {}
    train = tmp_path / "train.tsv"
    stat = train.stat()
    train.write_bytes(GOOD["pairs", "tsv"].replace(b"\tcd", b" cd").replace(b"\t2010", b" 2010"))
    os.utime(train, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert _checker(spec)[0] == {"train.tsv": [("E903", 2)]}
