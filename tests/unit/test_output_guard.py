"""A build never destroys what llmc did not write.

`llmc build`, `plan` and `run` replace a directory only when it is absent, empty or
an llmc bundle holding nothing its lock file does not list; never one holding a file
the spec reads, the working or home directory; and `llmc run` works only in run
folders it made. Each refusal is exit 2 with a message, and leaves every byte as it was.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from helpers import ROOT, run_cli

from llmc.compiler import bundle as bundle_mod
from llmc.runtime import local, records

SPEC = ROOT / "specs" / "classifier.llm"


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under root, links not followed: kind, bytes or link target, mode."""
    found: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            st = path.lstat()
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                found[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                found[rel] = ("dir", st.st_mode)
            else:
                found[rel] = ("file", path.read_bytes(), st.st_mode)
    return found


def _plant(folder: Path, outside: Path) -> None:
    """A user's things: files, a folder, a link pointing outside, a link to the spec."""
    (folder / "notes").mkdir(parents=True)
    (folder / "keep.txt").write_text("mine\n")
    (folder / "notes" / "plan.md").write_text("# my plan\n")
    (folder / "link-out").symlink_to(outside)
    (folder / "link-spec").symlink_to(SPEC)


@pytest.fixture
def outside(tmp_path) -> Path:
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("not llmc's\n")
    return secret


def _refused(code: int, err: str) -> None:
    assert code == 2, err
    assert err.startswith("error: "), err
    assert "Traceback" not in err and "internal compiler error" not in err and "busy" not in err


def test_a_folder_llmc_did_not_write_is_refused_and_kept_byte_for_byte(tmp_path, outside):
    out = tmp_path / "out"
    _plant(out, outside)
    before, secret = _snapshot(tmp_path), outside.read_bytes()
    for command in ("build", "plan"):
        code, _, err = run_cli(command, str(SPEC), "-o", str(out), cwd=tmp_path)
        _refused(code, err)
        assert err.startswith(f"error: refusing to replace {out}: it is not an llmc bundle"), err
        assert "would delete the 4 entries in it" in err, err
        for name in ("keep.txt", "notes/", "link-out", "link-spec"):
            assert name in err, err
        assert _snapshot(tmp_path) == before  # no staging folder either
        assert outside.read_bytes() == secret
    # The help proposes a directory that works.
    help_line = err.splitlines()[-1]
    assert help_line.startswith("  = help: build into a new directory, e.g. `-o "), err
    fresh = help_line.split("`-o ")[1].rstrip("`")
    assert run_cli("build", str(SPEC), "-o", fresh, "-q", cwd=tmp_path)[0] == 0
    assert (tmp_path / fresh / "llmc.lock.json").is_file()
    # Once the user's things are moved out, the folder is empty and builds.
    for entry in list(out.iterdir()):
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    assert run_cli("build", str(SPEC), "-o", str(out), "-q", cwd=tmp_path)[0] == 0


def test_many_foreign_entries_are_counted_not_all_listed(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for i in range(12):
        (out / f"f{i:02}.txt").write_text("x")
    code, _, err = run_cli("build", str(SPEC), "-o", str(out), cwd=tmp_path)
    _refused(code, err)
    assert "12 entries" in err and "f00.txt" in err and "and 7 more" in err and "f11.txt" not in err, err
    assert len(list(out.iterdir())) == 12


def test_the_spec_inside_the_output_directory_is_refused(tmp_path):
    """The issue's case: `llmc build sub/classifier.llm -o sub` deleted the spec."""
    sub = tmp_path / "sub"
    sub.mkdir()
    shutil.copy(SPEC, sub / "classifier.llm")
    (sub / "keep.txt").write_text("unrelated\n")
    before = _snapshot(tmp_path)
    for command in ("build", "plan"):
        code, _, err = run_cli(command, "sub/classifier.llm", "-o", "sub", cwd=tmp_path)
        _refused(code, err)
        assert err.startswith("error: refusing to replace sub: it holds the spec (sub/classifier.llm)"), err
        assert _snapshot(tmp_path) == before


def test_a_link_to_the_spec_as_the_spec_is_refused_too(tmp_path):
    """The spec named through a link outside, its file inside: the build would delete it."""
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(SPEC, out / "classifier.llm")
    (tmp_path / "classifier.llm").symlink_to(out / "classifier.llm")
    code, _, err = run_cli("build", "classifier.llm", "-o", "out", cwd=tmp_path)
    _refused(code, err)
    assert "the spec" in err
    assert (out / "classifier.llm").read_bytes() == SPEC.read_bytes()


def test_a_bundle_with_files_its_lock_does_not_list_is_refused(tmp_path, outside):
    out = tmp_path / "b"
    assert run_cli("build", str(SPEC), "-o", str(out), "-q", cwd=tmp_path)[0] == 0
    (out / "notes.md").write_text("my review notes\n")
    (out / "train" / "mine.py").write_text("print('mine')\n")
    (out / "extra").mkdir()
    (out / "link-out").symlink_to(outside)
    before = _snapshot(tmp_path)
    for command in ("build", "plan"):
        code, _, err = run_cli(command, str(SPEC), "-o", str(out), cwd=tmp_path)
        _refused(code, err)
        assert "it is an llmc bundle, but the build would delete 4 entries its llmc.lock.json does not list" in err, err
        for name in ("extra/", "link-out", "notes.md", "train/mine.py"):
            assert name in err, err
        assert _snapshot(tmp_path) == before
    for extra in ("notes.md", "train/mine.py", "link-out"):
        (out / extra).unlink()
    (out / "extra").rmdir()
    # A link where llmc wrote a file or a folder is only a name: replaced, never
    # written or deleted through.
    (out / "report.md").unlink()
    (out / "report.md").symlink_to(outside)
    shutil.rmtree(out / "train")
    (out / "train").symlink_to(outside.parent, target_is_directory=True)
    (outside.parent / "train.py").write_text("the user's own\n")
    before = _snapshot(outside.parent)
    code, _, err = run_cli("build", str(SPEC), "-o", str(out), "-q", cwd=tmp_path)
    assert code == 0, err
    assert not (out / "report.md").is_symlink() and not (out / "train").is_symlink()
    bundle_mod.release_spares()  # the swapped-out tree, with the links, is deleted now
    assert _snapshot(outside.parent) == before
    assert run_cli("plan", str(SPEC), "-o", str(out), "-q", cwd=tmp_path)[0] == 0


@pytest.mark.parametrize(
    "lock",
    [
        "not json\n",
        "{}\n",
        '{"artifacts": {"keep.txt": "0"}, "spec_sha256": "0"}\n',  # no `compiler`: not as llmc writes it
        '["llmc"]\n',
    ],
)
def test_a_lock_file_llmc_did_not_write_does_not_make_a_bundle(tmp_path, lock):
    out = tmp_path / "out"
    out.mkdir()
    (out / "llmc.lock.json").write_text(lock)
    (out / "keep.txt").write_text("mine\n")
    before = _snapshot(tmp_path)
    code, _, err = run_cli("build", str(SPEC), "-o", str(out), cwd=tmp_path)
    _refused(code, err)
    assert "not an llmc bundle" in err and "keep.txt" in err, err
    assert _snapshot(tmp_path) == before


def _with_local_data(tmp_path: Path, **paths: str) -> Path:
    """The classifier spec with local data paths, written to tmp_path."""
    text = SPEC.read_text()
    defaults = {
        "train": "data/train.csv",
        "valid": "data/valid.csv",
        "test": "data/test.csv",
        "calibration": "data/valid.csv",
    }
    for split, path in {**defaults, **paths}.items():
        text = text.replace(
            f'"gs://llmc-data/digits/{"valid" if split == "calibration" else split}.csv"',
            f'"{path}"',
            1 if split != "calibration" else 2,
        )
    spec = tmp_path / "classifier.llm"
    spec.write_text(text)
    return spec


@pytest.mark.parametrize("split", ["train", "test", "calibration"])
def test_a_data_file_inside_the_output_directory_is_refused_even_in_a_bundle(tmp_path, split):
    """A bundle's own file named as data (the lock lists it): the build would delete it."""
    out = tmp_path / "b"
    assert run_cli("build", str(SPEC), "-o", str(out), "-q", cwd=tmp_path)[0] == 0
    spec = _with_local_data(tmp_path, **{split: "b/model.json"})
    before = _snapshot(out)
    for command in ("build", "plan"):
        code, _, err = run_cli(command, str(spec), "-o", "b", cwd=tmp_path)
        _refused(code, err)
        assert f"it holds its {split} data ({tmp_path / 'b' / 'model.json'})" in err, err
        assert _snapshot(out) == before


def test_a_spec_it_extends_inside_the_output_directory_is_refused(tmp_path):
    out = tmp_path / "b"
    out.mkdir()
    (out / "base.llm").write_text(SPEC.read_text())
    child = tmp_path / "child.llm"
    child.write_text('extends "b/base.llm"\n\ntrain {\n  epochs = 31\n}\n')
    code, _, err = run_cli("build", str(child), "-o", "b", cwd=tmp_path)
    _refused(code, err)
    assert "a spec it extends" in err and "base.llm" in err, err
    assert (out / "base.llm").read_text() == SPEC.read_text()


def test_places_a_build_must_never_replace(tmp_path, monkeypatch):
    home = tmp_path / "home"
    work = home / "project"
    work.mkdir(parents=True)
    (work / "a-file").write_text("x\n")
    monkeypatch.setenv("HOME", str(home))
    cases = [
        (".", "refusing to replace .: it is the current directory"),
        ("", "refusing to replace : it is the current directory"),
        ("..", "refusing to replace ..: it is your home directory"),
        (str(home), "it is your home directory"),
        (str(tmp_path), f"it holds your home directory ({home})"),
        ("/", "refusing to replace /: it is the filesystem root"),
        ("a-file", "cannot write a-file: it exists and is not a directory"),
        ("a-file/sub/bundle", "cannot write a-file/sub/bundle: Not a directory"),
    ]
    before = _snapshot(tmp_path)
    for target, says in cases:
        for command in ("build", "plan"):
            code, _, err = run_cli(command, str(SPEC), "-o", target, cwd=work)
            _refused(code, err)
            assert says in err, (target, err)
            assert _snapshot(tmp_path) == before, target
    # The working directory's parent, outside home.
    monkeypatch.setenv("HOME", str(tmp_path / "elsewhere"))
    code, _, err = run_cli("build", str(SPEC), "-o", "..", cwd=work)
    _refused(code, err)
    assert f"it holds the current directory ({work})" in err, err


def test_json_output_reports_the_refusal(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine\n")
    code, stdout, err = run_cli("build", str(SPEC), "-o", str(out), "--format", "json", cwd=tmp_path)
    assert code == 2, err
    findings = json.loads(stdout)
    assert [f["code"] for f in findings if f["severity"] == "error"] == ["usage"]
    assert "keep.txt" in findings[-1]["message"]
    assert (out / "keep.txt").read_text() == "mine\n"


def test_build_into_a_new_nested_or_empty_folder_works_and_its_parent_must_be_creatable(tmp_path):
    assert run_cli("build", str(SPEC), "-o", str(tmp_path / "a" / "b" / "c"), "-q", cwd=tmp_path)[0] == 0
    (tmp_path / "empty").mkdir()
    assert run_cli("build", str(SPEC), "-o", str(tmp_path / "empty"), "-q", cwd=tmp_path)[0] == 0
    assert (tmp_path / "empty" / "llmc.lock.json").is_file()
    (tmp_path / "blocker").write_text("a file where a folder goes\n")
    code, _, err = run_cli("build", str(SPEC), "-o", str(tmp_path / "blocker" / "x"), cwd=tmp_path)
    _refused(code, err)
    assert "Not a directory" in err and "Traceback" not in err
    assert (tmp_path / "blocker").read_text() == "a file where a folder goes\n"


def test_write_bundle_refuses_for_every_caller(tmp_path):
    """The guard is in write_bundle itself, not only in the command line."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine\n")
    with pytest.raises(bundle_mod.OutputRefused, match=r"keep.txt"):
        bundle_mod.write_bundle(bundle_mod.Bundle({"a.txt": "a\n"}, frozenset()), str(out))
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (out / "keep.txt").read_text() == "mine\n"


# --- llmc run --------------------------------------------------------------------------------


@pytest.fixture
def no_stage_runs(monkeypatch):
    """Fails the test if a stage would start (and keeps a test from training)."""
    started = []

    def run_stages(*args, **kwargs):
        started.append(args)
        return []

    monkeypatch.setattr(local, "run_stages", run_stages)
    return started


def test_run_into_a_foreign_output_directory_is_refused_before_anything_starts(tmp_path, outside, monkeypatch):
    calls: list[tuple] = []

    def run(*args, **kwargs):
        calls.append(args)
        return 0

    monkeypatch.setattr(local, "run", run)
    out = tmp_path / "out"
    _plant(out, outside)
    before = _snapshot(tmp_path)
    code, _, err = run_cli(
        "run", str(SPEC), "--profile", "local", "-o", str(out), "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path
    )
    _refused(code, err)
    assert calls == [] and _snapshot(tmp_path) == before  # no runs folder either


def test_run_where_the_bundle_cannot_be_written_is_an_error_not_a_crash(tmp_path, monkeypatch):
    calls: list[tuple] = []

    def run(*args, **kwargs):
        calls.append(args)
        return 0

    monkeypatch.setattr(local, "run", run)

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bundle_mod, "_fill", full)
    code, _, err = run_cli(
        "run",
        str(SPEC),
        "--profile",
        "local",
        "-o",
        str(tmp_path / "b"),
        "--runs-dir",
        str(tmp_path / "runs"),
        cwd=tmp_path,
    )
    assert code == 2 and calls == [], err
    assert err.startswith(f"error: cannot write {tmp_path / 'b'}: No space left on device"), err
    assert "internal compiler error" not in err


def test_a_runs_folder_llmc_did_not_make_survives(tmp_path, outside, no_stage_runs):
    runs = tmp_path / "runs"
    mine = runs / "classifier-local"
    _plant(mine, outside)
    (mine / "work").mkdir()  # even a folder named like llmc's
    (runs / "other.txt").write_text("beside the runs\n")
    before, runs_before = _snapshot(tmp_path), _snapshot(runs)
    code, _, err = run_cli(
        "run", str(SPEC), "--profile", "local", "-o", str(tmp_path / "b"), "--runs-dir", str(runs), cwd=tmp_path
    )
    assert code == 2, err
    assert err.startswith(f"error: {mine} was not made by llmc"), err
    assert "keep.txt" in err and "4 entries" in err and "--runs-dir a new directory" in err, err
    assert no_stage_runs == [] and _snapshot(tmp_path) == before  # not even the bundle was written
    # The runtime checks on its own, for any caller (the bundle exists now).
    assert run_cli("build", str(SPEC), "--profile", "local", "-o", "b", "-q", cwd=tmp_path)[0] == 0
    code = local.run(
        str(tmp_path / "b"),
        name="classifier-local",
        data_root=ROOT / "specs",
        runs_root=runs,
        stage=None,
        target="local",
        np=None,
        force=False,
        profile="local",
    )
    assert code == 2 and no_stage_runs == []
    assert _snapshot(runs) == runs_before


def test_runs_folders_llmc_made_are_marked_and_used(tmp_path, no_stage_runs):
    runs = tmp_path / "runs"
    (runs / "legacy" / "work" / "train").mkdir(parents=True)  # from before the marker
    (runs / "legacy" / "20260101T000000Z-1").mkdir()
    for name in ("fresh", "legacy"):
        bundle = tmp_path / f"b-{name}"
        assert run_cli("build", str(SPEC), "--profile", "local", "-o", str(bundle), "-q", cwd=tmp_path)[0] == 0
        code = local.run(
            str(bundle),
            name=name,
            data_root=ROOT / "specs",
            runs_root=runs,
            stage=None,
            target="local",
            np=None,
            force=False,
            profile="local",
        )
        assert code == 0
        assert (runs / name / records.MARKER).is_file()
    assert len(no_stage_runs) == 2
    # A marked folder is llmc's whatever it holds.
    (runs / "fresh" / "scratch.txt").write_text("x\n")
    records.check_runs_folder(runs, "fresh")
    (runs / "file").write_text("x\n")
    with pytest.raises(records.RunsFolderRefused, match="not a directory"):
        records.check_runs_folder(runs, "file")
    assert (runs / "file").read_text() == "x\n"


def test_compress_steps_never_replace_a_folder_llmc_did_not_write(tmp_path):
    from llmc.runtime.steps.common import META, StepError
    from llmc.runtime.steps.common import replace_dir as _replace_dir

    def staged(name: str) -> Path:
        src = tmp_path / name
        (src / "1").mkdir(parents=True)
        (src / META).write_text("{}\n")
        return src

    mine = tmp_path / "model"
    mine.mkdir()
    (mine / "weights.bin").write_bytes(b"\x00\x01")
    with pytest.raises(StepError, match="llmc did not write it"):
        _replace_dir(staged(".model.partial"), mine)
    assert [p.name for p in mine.iterdir()] == ["weights.bin"]
    # llmc's own folders are replaced: a model folder, and a serving folder.
    _replace_dir(staged(".a.partial"), tmp_path / "a")
    _replace_dir(staged(".b.partial"), tmp_path / "a")
    serving = tmp_path / "serve" / "m"
    (serving / "1").mkdir(parents=True)
    (serving / "config.pbtxt").write_text("name: 'm'\n")
    _replace_dir(staged(".m.partial"), serving)
    assert (serving / META).is_file()


def test_an_output_folder_that_cannot_be_listed_is_refused_not_a_crash(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    real_scandir = os.scandir

    def denied(path):
        if os.path.abspath(path) == str(out):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(bundle_mod.os, "scandir", denied)
    for command in ("build", "plan"):
        code, _, err = run_cli(command, str(SPEC), "-o", str(out), cwd=tmp_path)
        _refused(code, err)
        assert f"refusing to replace {out}: cannot list {out}: Permission denied" in err, err


def test_a_parent_that_cannot_be_created_is_said_plainly(tmp_path, monkeypatch):
    parent = tmp_path / "read-only" / "deeper"
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if str(self) == str(parent):
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    code, _, err = run_cli("build", str(SPEC), "-o", str(parent / "bundle"), cwd=tmp_path)
    _refused(code, err)
    assert err.startswith(
        f"error: cannot create {parent / 'bundle'}: its parent folder {parent} cannot be created: Permission denied"
    ), err
    assert list(tmp_path.iterdir()) == []
