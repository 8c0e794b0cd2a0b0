"""The command line: exit statuses, output channels, JSON diagnostics, explain, schema.

This file holds the tests of this part that run real processes (tools, frameworks,
servers); the fast checks of the same part are in tests/unit/test_cli.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import ROOT, run_cli


def test_installed_launcher_runs():
    launcher = ROOT / "bin" / "llmc"
    proc = subprocess.run([sys.executable, str(launcher), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert "check" in proc.stdout and "explain" in proc.stdout


# --- every profile is checked -------------------------------------------------------


def _spec(tmp_path, text: str, name: str = "spec.llm") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# --- --format json: one JSON array on stdout, whatever the outcome -------------------


def _json_run(*args: str, cwd=None):
    code, out, err = run_cli(*args, cwd=cwd)
    return code, json.loads(out), err


def _usage(found: list) -> dict:
    assert len(found) == 1, found
    usage = found[0]
    assert usage["code"] == "usage" and usage["severity"] == "error" and usage["line"] is None
    return usage


def test_json_usage_errors_of_check(tmp_path):
    code, found, err = _json_run("check", "--format", "json", str(tmp_path / "nope.llm"))
    assert code == 2 and "no such file" in _usage(found)["message"] and "no such file" in err
    code, found, _ = _json_run("check", "--format", "json", str(tmp_path))
    assert code == 2 and "is a directory" in _usage(found)["message"]
    code, found, _ = _json_run("check", "--format", "json", "--profile", "nope", "specs/translator.llm", cwd=ROOT)
    assert code == 2 and "no profile `nope`" in _usage(found)["message"]


def test_json_keeps_findings_before_a_usage_error(tmp_path):
    bad = _spec(tmp_path, 'model m {\n  task = "translaton"\n}\n')
    code, found, _ = _json_run("check", "--format", "json", bad, str(tmp_path / "nope.llm"))
    assert code == 2
    assert "E206" in {d["code"] for d in found} and found[-1]["code"] == "usage"


def test_json_argparse_errors(tmp_path):
    for argv in (
        ("check", "--format", "json", "--frobnicate", "x.llm"),
        ("check", "--format=json", "--frobnicate", "x.llm"),
        ("fmt", "--format", "json"),
        ("build", "--format", "json", "a.llm", "b.llm"),
    ):
        code, found, _ = _json_run(*argv)
        assert code == 2
        _usage(found)
    code, out, _ = run_cli("check", "--frobnicate", "x.llm")
    assert code == 2 and out == ""  # without --format json, nothing on stdout


def test_json_of_build_and_plan(tmp_path):
    out_dir = tmp_path / "bundle"
    for command in ("build", "plan"):
        code, found, _ = _json_run(command, "--format", "json", str(tmp_path / "nope.llm"))
        assert code == 2 and "no such file" in _usage(found)["message"]
        code, found, _ = _json_run(command, "--format", "json", "--profile", "nope", "specs/classifier.llm", cwd=ROOT)
        assert code == 2 and "no profile" in _usage(found)["message"]
    code, found, err = _json_run("build", "--format", "json", "specs/classifier.llm", "-o", str(out_dir), cwd=ROOT)
    assert code == 0 and found == [], err
    code, found, err = _json_run("plan", "--format", "json", "specs/classifier.llm", "-o", str(out_dir), cwd=ROOT)
    assert code == 0, err  # no finding; the plan is the array's last record, and nothing changes
    assert [list(r) for r in found] == [["plan"]] and not found[0]["plan"]["changes"] and found[0]["plan"]["diff"] == ""
    code, found, _ = _json_run("run", "--format", "json", str(tmp_path / "nope.llm"))
    assert code == 2 and _usage(found)
    code, found, _ = _json_run("run", "--format", "json", "--np", "0", "specs/classifier.llm", cwd=ROOT)
    assert code == 2 and "--np" in _usage(found)["message"]


def test_json_on_an_internal_error(monkeypatch):
    from llmc.compiler import driver

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(driver, "check_every_profile", broken)
    code, found, err = _json_run("check", "--format", "json", "specs/translator.llm", cwd=ROOT)
    assert code == 2 and "internal compiler error" in err
    assert [d["code"] for d in found] == ["internal"] and "boom" in found[0]["message"]


def test_json_of_fmt(tmp_path):
    neat = _spec(tmp_path, "let x = 1\n", "neat.llm")
    messy = _spec(tmp_path, "let   x=1\n", "messy.llm")
    broken = _spec(tmp_path, "model m {\n", "broken.llm")
    code, found, err = _json_run("fmt", "--check", "--format", "json", neat, messy, broken)
    assert code == 1
    assert [(r["file"], r["status"]) for r in found] == [
        (neat, "formatted"),
        (messy, "unformatted"),
        (broken, "failed"),
    ]
    assert [d["code"] for d in found[2]["diagnostics"]] == ["E103"] and found[2]["diagnostics"][0]["line"] == 1
    assert "error[E103]" not in err  # said once, in the JSON
    code, found, _ = _json_run("fmt", "--format", "json", neat, messy)
    assert code == 0 and [r["status"] for r in found] == ["formatted", "reformatted"]
    assert (tmp_path / "messy.llm").read_text() == "let x = 1\n"
    code, found, _ = _json_run("fmt", "--format", "json", str(tmp_path / "nope.llm"))
    assert code == 2
    assert found[0]["status"] == "failed" and found[0]["diagnostics"][0]["code"] == "usage"
    empty = tmp_path / "empty"
    empty.mkdir()
    code, found, _ = _json_run("fmt", "--format", "json", str(empty))
    assert code == 2 and "no .llm files" in _usage(found)["message"]
