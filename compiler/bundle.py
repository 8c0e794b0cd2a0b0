"""The bundle: every artifact of a spec, verified, with its lock file, written atomically.

`build_files` renders and verifies every artifact in memory; `write_bundle`
replaces the output directory in one step (a temporary directory beside it, then
an atomic exchange), so a failed or interrupted build leaves the previous bundle
untouched; `plan_diff` compares what a build would write with what is there.
Same spec and profile in, byte-identical files out: no timestamps, absolute paths
or user names; every mapping written in a fixed order.
"""

import difflib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple

from . import __version__
from .render import TemplateError, render
from .targets import Artifact, BuildContext, collect
from .verify import ArtifactError, verify

LOCK = "llmc.lock.json"


class InternalError(Exception):
    """A template or a verifier failed: a compiler bug, never a user's mistake."""


class Bundle(NamedTuple):
    files: dict[str, str]  # path -> text, including the lock file
    executable: frozenset[str]


def spec_digest(result) -> str:
    """sha256 of the spec file's bytes, then of each file it extends (a spec checked
    from text in memory hashes that text)."""
    h = hashlib.sha256()
    for p in result.files:
        source = result.sources.get(p)
        if source is not None and p == result.path and not Path(p).is_file():
            h.update(source.text.encode("utf-8"))
        else:
            h.update(Path(p).read_bytes())
    return h.hexdigest()


def context_for(result) -> BuildContext:
    name = Path(result.path).stem
    return BuildContext(result.ir, result.facts, result.path, name, result.profile, spec_digest(result), __version__)


def build_files(result) -> Bundle:
    ctx = context_for(result)
    files: dict[str, str] = {}
    executable = set()
    for artifact in collect(ctx):
        files[artifact.path] = _render_one(artifact)
        if artifact.executable:
            executable.add(artifact.path)
    files[LOCK] = lock_text(ctx, files)
    return Bundle(files, frozenset(executable))


def _render_one(artifact: Artifact) -> str:
    try:
        text = render(artifact.template, artifact.context)
        verify(artifact.path, text)
    except (TemplateError, ArtifactError) as exc:
        raise InternalError(f"{artifact.path} (template {artifact.template}): {exc}") from exc
    return text


def lock_text(ctx: BuildContext, files: dict[str, str]) -> str:
    lock = {
        "spec": Path(ctx.spec_path).name,
        "spec_sha256": ctx.spec_sha256,
        "profile": ctx.profile,
        "compiler": f"llmc {ctx.compiler_version}",
        "artifacts": {p: hashlib.sha256(t.encode()).hexdigest() for p, t in sorted(files.items())},
        "inputs": data_inputs(ctx.ir),
    }
    return json.dumps(lock, indent=2, sort_keys=True) + "\n"


def data_inputs(ir) -> dict[str, str]:
    """The data files the bundle's stages read, as the spec gives them (relative to its
    folder): the runtime checks they exist before any stage starts."""
    data = ir.model.data
    inputs = {"train": data.train, "valid": data.valid, "test": data.test}
    quantize = ir.compress.quantize if ir.compress is not None else None
    if quantize is not None and quantize.calibration:
        inputs["calibration"] = quantize.calibration
    return inputs


def default_output(spec_path: str, profile: str | None) -> str:
    name = Path(spec_path).stem + (f"-{profile}" if profile else "")
    return os.path.join("build", name)


def write_bundle(bundle: Bundle, out: str) -> None:
    """Replace `out` with the bundle in one step; on any failure `out` is untouched."""
    out_path = Path(out)
    parent = out_path.parent
    parent.mkdir(parents=True, exist_ok=True)
    if out_path.exists() and not out_path.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory")
    _remove_abandoned_staging(parent, out_path.name)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.llmc-{os.getpid()}-", dir=parent))
    try:
        for rel, text in sorted(bundle.files.items()):
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
            os.chmod(target, 0o755 if rel in bundle.executable else 0o644)
        os.chmod(staging, 0o755)
        _swap_into_place(staging, out_path)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _remove_abandoned_staging(parent: Path, name: str) -> None:
    """A build killed midway leaves its staging folder (the bundle itself is intact):
    remove those whose build process is gone. A running build's folder is kept."""
    for path in parent.glob(f".{name}.llmc-*"):
        pid = path.name[len(name) + 7:].split("-", 1)[0]
        if path.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _swap_into_place(staging: Path, out: Path) -> None:
    if not out.exists():
        os.rename(staging, out)
        return
    if _exchange(staging, out):  # out now holds the new bundle, staging the old one
        return
    # No atomic exchange on this system: two renames, with the old bundle kept aside
    # until the new one is in place.
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.rmdir(aside)
    os.rename(out, aside)
    try:
        os.rename(staging, out)
    except BaseException:
        os.rename(aside, out)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux renameat2 RENAME_EXCHANGE)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange)
    return result == 0


def read_existing(out: str) -> dict[str, str]:
    root = Path(out)
    if not root.is_dir():
        return {}
    files = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            try:
                files[p.relative_to(root).as_posix()] = p.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                files[p.relative_to(root).as_posix()] = "<binary file>\n"
    return files


def plan_diff(bundle: Bundle, out: str) -> str:
    """A unified diff from the files in `out` to the bundle's (empty: nothing changes)."""
    old = read_existing(out)
    new = bundle.files
    chunks = []
    for path in sorted(set(old) | set(new)):
        before, after = old.get(path), new.get(path)
        if before == after:
            continue
        chunks.extend(difflib.unified_diff(
            (before or "").splitlines(True), (after or "").splitlines(True),
            f"a/{path}" if before is not None else "/dev/null",
            f"b/{path}" if after is not None else "/dev/null"))
    return "".join(chunks)
