"""The bundle as a whole: deterministic, atomic, locked, planned, and hostile strings stay data.

The tests of this part that run real processes (tools, frameworks, servers) are in
tests/integration/test_bundle_runs.py.
"""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, run_cli

from llmc.compiler import bundle as bundle_mod
from llmc.compiler.bundle import build_files, write_bundle
from llmc.compiler.driver import check_spec


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_lock_file_records_every_artifact(tmp_path):
    out = tmp_path / "b"
    code, _, err = run_cli("build", "specs/translator.llm", "-o", str(out), "-q", cwd=ROOT)
    assert code == 0, err
    lock = json.loads((out / "llmc.lock.json").read_text())
    assert lock["profile"] is None and lock["spec"] == "translator.llm"
    assert lock["spec_sha256"] == hashlib.sha256((ROOT / "specs/translator.llm").read_bytes()).hexdigest()
    files = _tree(out)
    assert set(lock["artifacts"]) == set(files) - {"llmc.lock.json"}
    for rel, digest in lock["artifacts"].items():
        assert hashlib.sha256(files[rel]).hexdigest() == digest


def test_plan_is_silent_on_an_unchanged_bundle_and_shows_a_change(tmp_path):
    out = tmp_path / "b"
    assert run_cli("build", "specs/translator.llm", "-o", str(out), "-q", cwd=ROOT)[0] == 0
    code, stdout, _ = run_cli("plan", "specs/translator.llm", "-o", str(out), "-q", cwd=ROOT)
    assert code == 0
    assert "---" not in stdout and "no changes" in stdout
    (out / "report.md").write_text("edited by hand\n")
    code, stdout, _ = run_cli("plan", "specs/translator.llm", "-o", str(out), "-q", cwd=ROOT)
    assert code == 3
    assert "--- a/report.md" in stdout and "-edited by hand" in stdout


def test_a_failed_build_leaves_the_previous_bundle(tmp_path, monkeypatch):
    out = tmp_path / "b"
    monkeypatch.chdir(ROOT)
    result = check_spec("specs/translator.llm")
    write_bundle(build_files(result), str(out))
    before = _tree(out)

    def broken(template, context):
        raise bundle_mod.TemplateError("boom")

    monkeypatch.setattr(bundle_mod, "render", broken)
    with pytest.raises(bundle_mod.InternalError, match="template"):
        write_bundle(build_files(result), str(out))
    assert _tree(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no staging directory left behind


def test_internal_errors_are_reported_without_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setattr(bundle_mod, "render", lambda t, c: (_ for _ in ()).throw(bundle_mod.TemplateError("boom")))
    code, _, err = run_cli("build", "specs/translator.llm", "-o", str(tmp_path / "b"), cwd=ROOT)
    assert code == 2
    assert "internal compiler error" in err and "Traceback" not in err


HOSTILE = "x\"'\\n\n{{ y }} # z: &a *b !t %p {% if %}\t\u202e"


def test_hostile_strings_stay_data(tmp_path):
    text = (ROOT / "specs/translator.llm").read_text()
    escaped = HOSTILE.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    text = text.replace('"s3://llmc-data/en-de/train.tsv"', f'"{escaped}train.tsv"')
    text = text.replace('"s3://llmc-data/en-de/test.tsv"', f'"{escaped}"')
    spec = tmp_path / "hostile.llm"
    spec.write_text(text)
    result = check_spec(str(spec))
    assert result.ok, result.diagnostics
    files = build_files(result).files
    found = 0
    for rel, content in files.items():
        strings = _strings_in(rel, content)
        found += sum(1 for s in strings if HOSTILE in s)
    assert found >= 1, "the hostile string did not reach any artifact intact"


def _strings_in(rel: str, content: str) -> list[str]:
    if rel.endswith(".py"):
        return [
            n.value for n in ast.walk(ast.parse(content)) if isinstance(n, ast.Constant) and isinstance(n.value, str)
        ]
    if rel.endswith((".yaml", ".yml")):
        out: list[str] = []
        for doc in yaml.safe_load_all(content):
            _walk(doc, out)
        return out
    if rel.endswith(".json"):
        out = []
        _walk(json.loads(content), out)
        return out
    return []


def _walk(node, out: list[str]) -> None:
    if isinstance(node, str):
        out.append(node)
    elif isinstance(node, dict):
        for k, v in node.items():
            _walk(k, out)
            _walk(v, out)
    elif isinstance(node, list):
        for v in node:
            _walk(v, out)


def test_yaml_literals_escape_what_yaml_would_fold_or_reject():
    from llmc.compiler.render import yaml_literal

    for value in [
        "line\u2028separator",
        "next\x85line",
        "para\u2029graph",
        "del\x7f",
        "bom\ufeff",
        "c1\x9fend",
        "plain: # {x} *a &b !c %d 'q' \"qq\" \\",
    ]:
        text = yaml_literal(value)
        assert yaml.safe_load(text) == value, text
        assert not any(ch in text for ch in "\u2028\u2029\x85\x7f\x9f\ufeff"), text


def test_json_and_yaml_literals_fast_paths_write_what_json_dumps_would():
    from llmc.compiler.render import _YAML_UNSAFE, _yaml_escape, json_literal, yaml_literal

    for value in [
        "plain",
        "",
        "with space: # x",
        'q"uote',
        "back\\slash",
        "tab\tnl\n",
        "é ✓ 😀",
        "\x7f",
        "\x1f",
        "\u2028",
        0,
        -3,
        10**20,
        True,
        False,
        None,
        2.5,
        [1, "a"],
        {"k": "v", "a": 1},
    ]:
        dumped = json.dumps(value, ensure_ascii=False)
        assert yaml_literal(value) == _YAML_UNSAFE.sub(_yaml_escape, dumped), value
        assert json_literal(value) == json.dumps(value, ensure_ascii=False, sort_keys=True), value


def test_renders_are_memoised_by_value_and_type():
    """1, 1.0 and True are equal in Python but write different literals: the render
    memo must tell them apart."""
    from llmc.compiler.render import render
    from llmc.compiler.targets.horovod import TrainScript

    loop = "llmc.runtime.training.torch_loop"
    # Equal values of other types, on purpose: the memo must not confuse them.
    gpus: list = [True, 1, 1.0, True]
    texts = [render("horovod/train.py.j2", TrainScript("torch", loop, "m", "mlp", 1, gpu)) for gpu in gpus]
    assert [t.count(f"GPU_CLUSTER = {v}\n") for t, v in zip(texts, ("True", "1", "1.0", "True"))] == [1, 1, 1, 1]
    assert texts[0] is texts[3]  # the repeated context is not rendered again


def test_scripts_do_not_name_their_spec(tmp_path):
    """Renaming a spec changes its lock file, report and README only: every script
    reads the spec's name from the lock at run time."""
    text = (ROOT / "specs" / "translator.llm").read_text()
    bundles = []
    for name in ("translator.llm", "renamed.llm"):
        (tmp_path / name).write_text(text)
        bundles.append(build_files(check_spec(str(tmp_path / name), profile="local")).files)
    differ = sorted(p for p in bundles[0] if bundles[0][p] != bundles[1][p])
    assert differ == ["README.md", "llmc.lock.json", "report.md"]


def test_rebuilds_reuse_swapped_out_trees_and_write_exactly_the_bundle(tmp_path):
    """Builds into several folders in turn (so each stages in a tree another swapped
    out) leave each folder holding exactly its bundle: same files, bytes and modes,
    nothing left over from a bundle of another shape."""
    from llmc.compiler.bundle import Bundle, release_spares

    shapes = [
        Bundle({"a.txt": "a\n", "x/y/run.sh": "#!/bin/sh\n", "x/z.txt": "z\n"}, frozenset({"x/y/run.sh"})),
        Bundle({"a.txt": "A\n", "x/z.txt": "z\n", "q/r.txt": "r\n"}, frozenset()),
        Bundle({"x/y/run.sh": "#!/bin/sh\necho\n", "a.txt": "a\n"}, frozenset({"a.txt", "x/y/run.sh"})),
        Bundle({"solo.txt": "s\n"}, frozenset()),
        Bundle({"x/y": "a file where a folder was\n", "q/r.txt/s.txt": "a folder where a file was\n"}, frozenset()),
    ]
    # Each with a lock file as llmc writes one: a build replaces only an llmc bundle.
    shapes = [
        Bundle(
            {
                **b.files,
                "llmc.lock.json": json.dumps(
                    {"artifacts": dict.fromkeys(b.files, ""), "compiler": "llmc test", "spec_sha256": ""}
                ),
            },
            b.executable,
        )
        for b in shapes
    ]
    outside = tmp_path / "outside"
    outside.mkdir()
    for i in range(15):
        bundle = shapes[(i * 3) % len(shapes)]
        out = tmp_path / f"out{i % 3}"
        if i in (5, 7):  # a link someone put where the bundle has a folder: never written through
            shutil.rmtree(out / "x", ignore_errors=True)
            (out / "x").symlink_to(outside, target_is_directory=True)
        write_bundle(bundle, str(out))
        assert _tree(out) == {p: t.encode() for p, t in bundle.files.items()}
        for rel in bundle.files:
            assert (out / rel).stat().st_mode & 0o777 == (0o755 if rel in bundle.executable else 0o644), rel
        folders = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_dir()}
        assert folders == {a.as_posix() for rel in bundle.files for a in Path(rel).parents if a != Path(".")}
    release_spares()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out0", "out1", "out2", "outside"]
    assert list(outside.iterdir()) == []
