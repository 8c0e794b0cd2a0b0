"""The command line: exit statuses, output channels, JSON diagnostics, explain, schema.

The tests of this part that run real processes (tools, frameworks, servers) are in
tests/integration/test_cli_runs.py.
"""

from __future__ import annotations

import json

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


# --- every profile is checked -------------------------------------------------------

CLASSIFIER_BASE = (ROOT / "specs" / "classifier.llm").read_text().split("\nprofile local {")[0] + "\n"
BROKEN_PROFILE = "profile broken {\n  train.stepz = 200\n}\n"
GOOD_PROFILE = "profile small {\n  train.epochs = 2\n}\n"


def _spec(tmp_path, text: str, name: str = "spec.llm") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_check_without_profile_checks_every_profile(tmp_path):
    spec = _spec(tmp_path, CLASSIFIER_BASE + GOOD_PROFILE + BROKEN_PROFILE)
    assert run_cli("check", "--profile", "small", spec)[0] == 0  # the base and `small` are clean
    code, out, err = run_cli("check", spec)
    assert code == 1
    assert "error[E213]: profile path `train.stepz`" in err
    assert "= note: with profile `broken` applied" in err
    assert "`small`" not in err
    assert out == ""  # no facts printed for a spec with errors
    code, out, _ = run_cli("check", "--format", "json", spec)
    assert code == 1
    found = json.loads(out)
    assert [(d["code"], d["profile"], d["line"]) for d in found] == [
        ("E213", "broken", CLASSIFIER_BASE.count("\n") + 5)
    ]
    assert found[0]["notes"] == []  # the profile is its own key in JSON, not a note


def test_a_base_finding_is_not_repeated_per_profile(tmp_path):
    base_error = CLASSIFIER_BASE.replace("epochs     = 30", "epochs     = 30\n  stepz      = 1")
    spec = _spec(tmp_path, base_error + GOOD_PROFILE + "profile other {\n  train.batch_size = 128\n}\n")
    code, out, err = run_cli("check", "--format", "json", spec)
    assert code == 1
    found = json.loads(out)
    assert [(d["code"], d["profile"]) for d in found] == [("E202", None)]
    code, _, err = run_cli("check", spec)
    assert err.count("error[E202]") == 1 and "with profile" not in err
    assert err.rstrip().endswith(": 1 error")


def test_a_finding_only_a_profile_makes_names_it_even_where_the_base_text_is(tmp_path):
    # One host of 2 slots cannot hold a layout of data 4: the error is at the base's
    # `data = 4`, but only the profile makes it.
    text = CLASSIFIER_BASE.replace('  precision  = "fp16"', '  parallel {\n    data = 4\n  }\n  precision  = "fp16"')
    spec = _spec(tmp_path, text + "profile one_host {\n  train.cluster.hosts = 1\n}\n")
    assert run_cli("check", "--profile", "one_host", spec)[0] == 1
    code, out, _ = run_cli("check", "--format", "json", spec)
    assert code == 1
    found = json.loads(out)
    assert found and {d["profile"] for d in found} == {"one_host"}
    assert "E301" in {d["code"] for d in found}


def test_profile_narrows_the_check(tmp_path):
    spec = _spec(tmp_path, CLASSIFIER_BASE + GOOD_PROFILE + BROKEN_PROFILE)
    code, out, err = run_cli("check", "--profile", "small", spec)
    assert code == 0, err
    assert "(profile small): ok" in out and "broken" not in out + err
    code, out, err = run_cli("check", "--profile", "broken", spec)
    assert code == 1 and "E213" in err
    assert "with profile" not in err  # the profile asked for needs no note
    assert {d["profile"] for d in json.loads(run_cli("check", "--format", "json", "--profile", "broken", spec)[1])} == {
        "broken"
    }


def test_profiles_of_the_extends_chain_are_checked(tmp_path):
    _spec(tmp_path, CLASSIFIER_BASE + BROKEN_PROFILE, "base.llm")
    spec = _spec(tmp_path, 'extends "base.llm"\n\n' + GOOD_PROFILE)
    code, out, _ = run_cli("check", "--format", "json", spec)
    assert code == 1
    assert [(d["code"], d["profile"]) for d in json.loads(out)] == [("E213", "broken")]


def test_a_clean_check_names_each_profile(tmp_path):
    code, out, err = run_cli("check", "specs/translator.llm", cwd=ROOT)
    assert code == 0, err
    assert out.startswith("specs/translator.llm: ok\n")
    assert out.endswith("  profile    local: ok\n")
    spec = _spec(tmp_path, CLASSIFIER_BASE + GOOD_PROFILE + "profile empty {}\n")
    code, out, _ = run_cli("check", spec)
    assert code == 0 and "profile    small: ok\n" in out
    assert "profile    empty" not in out  # a profile without overrides is the base spec, not checked twice


# --- --format json: one JSON array on stdout, whatever the outcome -------------------


def test_json_of_a_clean_check_is_an_empty_array(tmp_path):
    code, out, err = run_cli("check", "--format", "json", "specs/translator.llm", cwd=ROOT)
    assert code == 0 and json.loads(out) == [], err
