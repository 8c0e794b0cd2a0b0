"""`llmc run` on broken data: the real local profiles (specs/translator.llm and
specs/classifier.llm --profile local) copied with their data, one data file broken at
a time, in the ways data files break.

Before anything is written or started, `llmc run` reads the data as the runtime will
(compiler/data_check.py): each case must exit 1 with a coded diagnostic naming the file
and line, print no traceback, and leave no bundle and no run record behind (so no
horovodrun either). One more case breaks the data after the check, under the
runtime's launcher with 2 ranks: the training stage must fail with one clean line
naming the file and line, no traceback from any rank nor from horovodrun (which stays
in the run's log file).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, build_spec

BIN = Path(sys.executable).parent
DATES = ROOT / "examples" / "data" / "dates"
DIGITS = ROOT / "examples" / "data" / "digits"


def _copy(tmp_path: Path) -> Path:
    """The two specs and their local data, laid out as in the repository."""
    (tmp_path / "specs").mkdir()
    for spec in ("translator.llm", "classifier.llm"):
        shutil.copy(ROOT / "specs" / spec, tmp_path / "specs" / spec)
    for folder in (DATES, DIGITS):
        shutil.copytree(folder, tmp_path / "examples" / "data" / folder.name)
    return tmp_path


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")


def _set_line(path: Path, number: int, text: bytes) -> None:
    lines = _lines(path)
    lines[number - 1] = text
    path.write_bytes(b"\n".join(lines))


def _edit_field(path: Path, number: int, index: int, value: bytes, sep: bytes) -> None:
    fields = _lines(path)[number - 1].split(sep)
    fields[index] = value
    _set_line(path, number, sep.join(fields))


def _drop_first_field(path: Path, number: int, sep: bytes) -> None:
    _set_line(path, number, sep.join(_lines(path)[number - 1].split(sep)[1:]))


def _cut_mid_row(path: Path, number: int) -> None:
    """The file ends inside line `number`, before its first separator: no line break."""
    data = path.read_bytes()
    start = sum(len(line) + 1 for line in _lines(path)[: number - 1])
    path.write_bytes(data[: start + 3])


# (id, spec, file under examples/data, how it breaks, code, line the diagnostic names)
CASES = [
    ("bad-byte", "translator", "dates/train.tsv", lambda p: _edit_field(p, 5, 0, b"caf\xe9", b"\t"), "E902", 5),
    ("missing-field", "translator", "dates/valid.tsv", lambda p: _set_line(p, 3, b"only one field"), "E903", 3),
    (
        "extra-field",
        "translator",
        "dates/test.tsv",
        lambda p: _set_line(p, 4, _lines(p)[3] + b"\tand a third"),
        "E903",
        4,
    ),
    ("empty", "translator", "dates/valid.tsv", lambda p: p.write_bytes(b""), "E906", 1),
    ("header-only", "translator", "dates/test.tsv", lambda p: p.write_bytes(b"source\ttarget\n"), "E906", 1),
    ("cut-mid-row", "translator", "dates/train.tsv", lambda p: _cut_mid_row(p, 100), "E907", 100),
    ("missing-file", "translator", "dates/train.tsv", lambda p: p.unlink(), "E901", None),
    ("not-a-number", "classifier", "digits/train.csv", lambda p: _edit_field(p, 7, 10, b"abc", b","), "E905", 7),
    ("label-out-of-range", "classifier", "digits/valid.csv", lambda p: _edit_field(p, 9, 64, b"10", b","), "E904", 9),
    ("missing-column", "classifier", "digits/test.csv", lambda p: _drop_first_field(p, 2, b","), "E903", 2),
    ("extra-column", "classifier", "digits/train.csv", lambda p: _set_line(p, 11, _lines(p)[10] + b",0"), "E903", 11),
    ("bad-byte-csv", "classifier", "digits/valid.csv", lambda p: _edit_field(p, 4, 0, b"\xff", b","), "E902", 4),
    ("cut-csv", "classifier", "digits/train.csv", lambda p: _cut_mid_row(p, 50), "E907", 50),
    ("empty-csv", "classifier", "digits/test.csv", lambda p: p.write_bytes(b""), "E906", 1),
    ("header-only-csv", "classifier", "digits/valid.csv", lambda p: p.write_bytes(_lines(p)[0] + b"\n"), "E906", 1),
    ("missing-csv", "classifier", "digits/valid.csv", lambda p: p.unlink(), "E901", None),
]


def _run(tmp_path: Path, spec: str, *more: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            str(BIN / "llmc"),
            "run",
            f"specs/{spec}.llm",
            "--profile",
            "local",
            "-o",
            "build/bundle",
            "--runs-dir",
            "runs",
            *more,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("case, spec, file, breaks, code, line", CASES, ids=[c[0] for c in CASES])
def test_llmc_run_refuses_broken_data_before_anything_starts(tmp_path, case, spec, file, breaks, code, line):
    root = _copy(tmp_path)
    breaks(root / "examples" / "data" / file)
    proc = _run(root, spec)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert f"error[{code}]" in proc.stderr, out
    if code == "E901":  # the line of the local profile that names the file (the last that does)
        text = (root / "specs" / f"{spec}.llm").read_text(encoding="utf-8").splitlines()
        line = max(n for n, t in enumerate(text, 1) if f'/{file}"' in t and "model.data." in t)
    where = f"specs/{spec}.llm:{line}:" if code == "E901" else f"examples/data/{file}:{line}:"
    assert f"--> {where}" in proc.stderr, out
    assert file.split("/")[-1] in proc.stderr
    assert "Traceback" not in out
    # Nothing written, nothing started: no bundle, no run record (so no horovodrun).
    assert not (root / "build").exists() and not (root / "runs").exists(), out


def test_a_clean_copy_passes_the_check(tmp_path):
    """The copies as they are: `llmc check --data` is clean for both specs and every profile."""
    root = _copy(tmp_path)
    for spec in ("translator", "classifier"):
        proc = subprocess.run(
            [str(BIN / "llmc"), "check", "--data", "-q", f"specs/{spec}.llm"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr


@pytest.mark.skipif(not (BIN / "horovodrun").exists(), reason="horovodrun is not installed (run bin/setup)")
@pytest.mark.parametrize(
    "spec, file, breaks, said",
    [
        # torch: both ranks stop on the file and say so
        (
            "translator",
            "dates/train.tsv",
            lambda p: _edit_field(p, 7, 0, b"caf\xe9", b"\t"),
            lambda p: (
                f"{p}:7: not UTF-8: byte 0xe9 at byte offset {_offset(p, 7, 3)} (column 4); save the file as UTF-8"
            ),
        ),
        # TensorFlow: the second rank, still starting, is stopped by horovodrun ("Terminated")
        (
            "classifier",
            "digits/train.csv",
            lambda p: _edit_field(p, 6, 3, b"oops", b","),
            lambda p: f"{p}:6: feature 'pixel_0_3' is 'oops', not a number",
        ),
    ],
    ids=["translator", "classifier"],
)
def test_data_broken_after_the_check_fails_training_with_one_line_from_every_rank(tmp_path, spec, file, breaks, said):
    from llmc.runtime.runner import Bundle, plan_stages, run_stages

    root = _copy(tmp_path)
    bundle = Bundle(str(build_spec(root / "specs" / f"{spec}.llm", root / "build" / "bundle", "local")))
    data = root / "examples" / "data" / file
    breaks(data)  # after the check: as data changed on a shared disk
    work, logs = root / "runs" / "work", root / "runs" / "record"
    logs.mkdir(parents=True)
    stages = [s for s in plan_stages(bundle, work, root / "specs", 2, with_search=False) if s.name == "train"]
    shown: list[str] = []
    results = run_stages(bundle, stages, work, root / "specs", force=False, only="train", log=shown.append, logs=logs)
    assert [(r.name, r.status, r.exit_code) for r in results] == [("train", "failed", 2)], shown
    errors = [line for line in shown if "error" in line.lower()]
    assert errors == [f"train.py: error: {said(data)}"], shown
    assert shown[-1].startswith("==> train failed (exit 2)") and str(logs / "train.log") in shown[-1]
    assert not any("Traceback" in line or "RuntimeError" in line or "Terminated" in line for line in shown), shown
    assert [line for line in shown if not line.startswith("[rank ")] == ["==> train", errors[0], shown[-1]], shown
    log = (logs / "train.log").read_text()  # horovodrun's own report is kept, not shown
    assert "Traceback" in log and "Horovod detected that one or more processes exited" in log
    assert "train.py: error:" in log


def _offset(path: Path, line: int, column: int) -> int:
    lines = _lines(path)
    return sum(len(x) + 1 for x in lines[: line - 1]) + column
