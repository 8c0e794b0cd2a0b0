"""The command line: exit statuses, output channels, JSON diagnostics, explain, schema."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import ROOT, run_cli

SPECS = ["specs/translator.llm", "specs/classifier.llm"]


def test_check_clean_specs_exit_zero_and_print_facts():
    code, out, err = run_cli("check", *SPECS, cwd=ROOT)
    assert code == 0, err
    assert "error[" not in err
    for spec in SPECS:
        assert spec in out


def test_check_local_profiles_are_clean():
    for spec in SPECS:
        code, _, err = run_cli("check", "--profile", "local", spec, cwd=ROOT)
        assert code == 0, err


def test_missing_file_is_misuse(tmp_path):
    code, _, err = run_cli("check", str(tmp_path / "nope.llm"))
    assert code == 2
    assert "no such file" in err


def test_unknown_profile_is_misuse():
    code, _, err = run_cli("check", "--profile", "nope", "specs/translator.llm", cwd=ROOT)
    assert code == 2
    assert "no profile `nope`" in err and "local" in err


def test_bad_flag_is_misuse():
    code, _, _ = run_cli("check", "--frobnicate", "specs/translator.llm", cwd=ROOT)
    assert code == 2


def test_no_command_prints_help_and_is_misuse():
    code, out, _ = run_cli()
    assert code == 2
    for command in ("check", "fmt", "explain", "schema"):
        assert command in out


def test_errors_exit_one_and_json_has_every_field(tmp_path):
    spec = tmp_path / "bad.llm"
    spec.write_text('model m {\n  task = "translaton"\n}\n')
    code, out, err = run_cli("check", "--format", "json", str(spec))
    assert code == 1
    assert err == ""
    found = json.loads(out)
    assert {d["code"] for d in found} >= {"E206"}
    first = found[0]
    assert set(first) >= {"code", "severity", "message", "file", "line", "column", "end_line", "end_column", "help"}
    e206 = next(d for d in found if d["code"] == "E206")
    assert (e206["line"], e206["column"], e206["end_line"], e206["end_column"]) == (2, 10, 2, 22)


def test_findings_are_all_reported_and_sorted(tmp_path):
    spec = tmp_path / "two.llm"
    spec.write_text(
        'model m {\n  task = "classification"\n  mlp {\n    inputs = 4\n    hidden = [8]\n    classes = 2\n  }\n'
        '  data {\n    train = "a.csv"\n    valid = "b.csv"\n    test = "c.csv"\n  }\n}\n'
        'train {\n  cluster {\n    hosts = 2\n    device = "cpu"\n  }\n  parallel {\n    data = 3\n  }\n'
        '  batch_size = 10\n  epochs = 1\n  optimizer "sgd" {\n    lr = 0.1\n  }\n}\n'
        'evaluate {\n  metric "accuracy" {\n    min = 0.9\n    max = 0.8\n  }\n}\n'
    )
    code, out, _ = run_cli("check", "--format", "json", str(spec))
    assert code == 1
    found = json.loads(out)
    codes = [d["code"] for d in found]
    assert "E301" in codes and "E305" in codes and "E502" in codes
    positions = [(d["line"], d["column"]) for d in found]
    assert positions == sorted(positions)


def test_explain_prints_the_page():
    code, out, _ = run_cli("explain", "E306")
    assert code == 0
    assert out.startswith("# E306")
    code, out, _ = run_cli("explain", "e301")
    assert code == 0 and "E301" in out


def test_explain_unknown_code_is_misuse():
    code, _, err = run_cli("explain", "E999")
    assert code == 2 and "unknown code" in err


def test_schema_is_json_schema_of_every_block():
    code, out, _ = run_cli("schema")
    assert code == 0
    schema = json.loads(out)
    assert schema["$schema"].startswith("https://json-schema.org/")
    props = schema["properties"]
    assert set(props) == {"model", "train", "compress", "evaluate", "search", "serve", "deploy"}
    assert "Transformer" in schema["$defs"]


def test_installed_launcher_runs():
    launcher = ROOT / "bin" / "llmc"
    proc = subprocess.run([sys.executable, str(launcher), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert "check" in proc.stdout and "explain" in proc.stdout
