"""The cache of `llmc check` answers (compiler/check_cache.py): an answer is given
again only while every file it read is as it was, and the compiler too."""

from __future__ import annotations

import shutil

import pytest
from helpers import ROOT, run_cli

from llmc.compiler import check_cache, driver

TRANSLATOR = ROOT / "specs" / "translator.llm"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.delenv("LLMC_NO_CACHE", raising=False)
    monkeypatch.setenv("LLMC_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _spec(tmp_path, text: str, name: str = "spec.llm"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _no_front_end(monkeypatch):
    """Make any real check fail loudly: an answer now must come from the cache."""

    def refuse(*args, **kwargs):
        raise AssertionError("the front end ran")

    monkeypatch.setattr(driver, "check_every_profile", refuse)


def test_an_unchanged_spec_is_answered_from_the_cache_with_the_same_output(tmp_path, cache, monkeypatch):
    spec = _spec(tmp_path, TRANSLATOR.read_text(encoding="utf-8").replace("../examples", str(ROOT / "examples")))
    first = run_cli("check", str(spec))
    assert first[0] == 0 and "profile    local: ok" in first[1]
    assert len(list(cache.glob("*.json"))) == 1
    _no_front_end(monkeypatch)
    assert run_cli("check", str(spec)) == first


def test_errors_are_kept_and_an_edit_is_seen(tmp_path, cache, monkeypatch):
    text = TRANSLATOR.read_text(encoding="utf-8").replace("../examples", str(ROOT / "examples"))
    spec = _spec(tmp_path, text.replace("    data   = 4\n", "    data   = 3\n"))
    broken = run_cli("check", str(spec))
    assert broken[0] == 1 and "E301" in broken[2]
    assert run_cli("check", str(spec)) == broken
    spec.write_text(text, encoding="utf-8")  # the same size, another byte: a new answer
    fixed = run_cli("check", str(spec))
    assert fixed[0] == 0 and "E301" not in fixed[2]


def test_an_edit_of_an_extended_base_is_seen(tmp_path, cache):
    base = _spec(
        tmp_path, TRANSLATOR.read_text(encoding="utf-8").replace("../examples", str(ROOT / "examples")), "base.llm"
    )
    child = _spec(tmp_path, 'extends "base.llm"\n', "child.llm")
    assert run_cli("check", "-q", str(child))[0] == 0
    base.write_text(base.read_text(encoding="utf-8").replace("    data   = 4\n", "    data   = 3\n"), encoding="utf-8")
    code, _, err = run_cli("check", "-q", str(child))
    assert code == 1 and "E301" in err


def test_the_training_data_a_check_counted_is_a_dependency(tmp_path, cache):
    # The classifier's E205 counts the labels of its local training data: a new label
    # in that file changes the answer.
    data = tmp_path / "data"
    shutil.copytree(ROOT / "examples" / "data" / "digits", data / "digits")
    text = (ROOT / "specs" / "classifier.llm").read_text(encoding="utf-8").replace("../examples/data", "data")
    spec = _spec(tmp_path, text)
    assert run_cli("check", "-q", "--profile", "local", str(spec))[0] == 0
    train = data / "digits" / "train.csv"
    lines = train.read_text(encoding="utf-8").splitlines()
    header, row = lines[0], lines[1].split(",")
    row[header.split(",").index("label")] = "42"
    train.write_text("\n".join([*lines, ",".join(row)]) + "\n", encoding="utf-8")
    code, _, err = run_cli("check", "-q", "--profile", "local", str(spec))
    assert code == 1 and "E205" in err, err


def test_a_compiler_change_is_a_new_key(tmp_path, cache, monkeypatch):
    spec = _spec(tmp_path, TRANSLATOR.read_text(encoding="utf-8").replace("../examples", str(ROOT / "examples")))
    run_cli("check", "-q", str(spec))
    monkeypatch.setattr(check_cache, "_compiler", lambda: ["another compiler"])
    calls: list[int] = []
    real = driver.check_every_profile

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(driver, "check_every_profile", counted)
    assert run_cli("check", "-q", str(spec))[0] == 0 and calls


def test_misuse_is_not_kept_and_a_damaged_entry_is_a_miss(tmp_path, cache):
    missing = tmp_path / "later.llm"
    assert run_cli("check", str(missing))[0] == 2
    assert not list(cache.glob("*.json")) if cache.exists() else True
    missing.write_text(
        TRANSLATOR.read_text(encoding="utf-8").replace("../examples", str(ROOT / "examples")), encoding="utf-8"
    )
    assert run_cli("check", "-q", str(missing))[0] == 0
    (entry,) = cache.glob("*.json")
    entry.write_text("{ not json", encoding="utf-8")
    assert run_cli("check", "-q", str(missing))[0] == 0  # checked again, and kept again
    assert entry.read_text(encoding="utf-8").startswith('{"deps"')


def test_data_checks_and_colour_are_kept_apart(tmp_path, cache):
    spec = _spec(tmp_path, TRANSLATOR.read_text(encoding="utf-8").replace("../examples", str(ROOT / "examples")))
    run_cli("check", "-q", "--data", str(spec))
    assert not cache.exists() or not list(cache.glob("*.json"))  # --data reads whole files: not kept
    run_cli("check", "-q", str(spec))
    run_cli("check", "-q", "--color", "always", str(spec))
    assert len(list(cache.glob("*.json"))) == 2
