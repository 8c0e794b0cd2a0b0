"""The bundle as a whole: deterministic, atomic, locked, planned, and hostile strings stay data.

This file holds the tests of this part that run real processes (tools, frameworks,
servers); the fast checks of the same part are in tests/unit/test_bundle.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT

from llmc.compiler.bundle import write_bundle


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _build_cmd(spec: str, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "llmc.compiler.cli", "build", spec, "-o", str(out), "-q", *extra]


@pytest.mark.parametrize("spec,profile", [("specs/translator.llm", None), ("specs/classifier.llm", "local")])
def test_builds_are_byte_identical_whatever_the_hash_seed(tmp_path, spec, profile):
    trees = []
    for seed, sub in (("1", "a"), ("12345", "b")):
        out = tmp_path / sub / "bundle"
        env = {**os.environ, "PYTHONHASHSEED": seed, "TZ": "UTC" if seed == "1" else "Asia/Tokyo"}
        args = _build_cmd(spec, out) + (["--profile", profile] if profile else [])
        proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        trees.append(_tree(out))
    assert trees[0] == trees[1]
    text = b"".join(trees[0].values()).decode()
    for leak in (str(tmp_path), str(ROOT), os.path.expanduser("~")):
        assert leak not in text, f"an absolute path leaked into the bundle: {leak}"


def test_killing_a_build_midway_never_leaves_a_partial_bundle(tmp_path):
    out = tmp_path / "b"
    subprocess.run(_build_cmd("specs/translator.llm", out), cwd=ROOT, check=True)
    old = _tree(out)
    spec = tmp_path / "translator.llm"
    spec.write_text((ROOT / "specs/translator.llm").read_text().replace("epochs      = 20", "epochs      = 21"))
    subprocess.run(_build_cmd(str(spec), tmp_path / "expected"), cwd=ROOT, check=True)
    new = _tree(tmp_path / "expected")
    assert new != old
    for delay in (0.05, 0.15, 0.3, 0.45, 0.6, 0.8):
        proc = subprocess.Popen(_build_cmd(str(spec), out), cwd=ROOT)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        now = _tree(out)
        assert now in (old, new), f"a partial bundle after a kill at {delay}s"
        assert _complete(now)
        if now == new:  # start over from the old bundle, to catch the swap itself
            subprocess.run(_build_cmd("specs/translator.llm", out), cwd=ROOT, check=True)


def _complete(tree: dict[str, bytes]) -> bool:
    lock = json.loads(tree["llmc.lock.json"])
    return set(lock["artifacts"]) == set(tree) - {"llmc.lock.json"} and all(
        hashlib.sha256(tree[p]).hexdigest() == d for p, d in lock["artifacts"].items()
    )


def test_a_build_removes_staging_folders_that_killed_builds_left(tmp_path):
    from llmc.compiler.bundle import Bundle

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # its pid now names no process
    abandoned = tmp_path / f".b.llmc-{gone.pid}-x1y2"
    running = tmp_path / f".b.llmc-{os.getpid()}-z3w4"  # a build still under way
    other = tmp_path / f".c.llmc-{gone.pid}-q5r6"  # another bundle's
    for folder in (abandoned, running, other):
        (folder / "train").mkdir(parents=True)
    write_bundle(Bundle({"a.txt": "a\n"}, frozenset()), str(tmp_path / "b"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["b", running.name, other.name])
