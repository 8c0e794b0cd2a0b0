"""The bundle: every artifact of a spec, verified, with its lock file, written atomically.

`build_files` renders and verifies every artifact in memory; `write_bundle`
replaces the output directory in one step (a temporary directory beside it, then
an atomic exchange), so a failed or interrupted build leaves the previous bundle
untouched; `plan` compares what a build would write with what is there (plan_summary.py
says it: the facts and fields that change, then the diff).
`check_output` refuses an output directory whose replacement would delete what llmc
did not write (`write_bundle` calls it; `llmc plan` shows the same refusal).
Same spec and profile in, byte-identical files out: no timestamps, absolute paths
or user names; every mapping written in a fixed order.
"""

import atexit
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from . import __version__, pipeline_yaml
from .render import TemplateError, render
from .schema import TOKENIZER_NAMES
from .targets import Artifact, BuildContext, collect
from .verify import ArtifactError, verify

if TYPE_CHECKING:  # pragma: no cover - types only
    from .plan_summary import PlanSummary

LOCK = "llmc.lock.json"


class InternalError(Exception):
    """A template or a verifier failed: a compiler bug, never a user's mistake."""


class OutputRefused(Exception):
    """The output directory cannot be replaced: it holds what llmc did not write, a
    file the spec reads, or the user's working or home directory (command misuse)."""


class Bundle(NamedTuple):
    files: dict[str, str]  # path -> text, including the lock file
    executable: frozenset[str]
    notes: tuple[str, ...] = ()  # what the build could not write, and how to write it later


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
    return BuildContext(result.ir, result.facts, result.path, result.profile, spec_digest(result), __version__)


def build_files(result) -> Bundle:
    ctx = context_for(result)
    files: dict[str, str] = {}
    executable = set()
    for artifact in collect(ctx):
        files[artifact.path] = _render_one(artifact)
        if artifact.executable:
            executable.add(artifact.path)
    notes = []
    if pipeline_yaml.SCRIPT in files:
        try:
            compiled = pipeline_yaml.compile_pipeline(files, {p: _sha256(t) for p, t in files.items()})
            if compiled.text is not None:
                verify(pipeline_yaml.COMPILED, compiled.text)
                files[pipeline_yaml.COMPILED] = compiled.text
        except (pipeline_yaml.PipelineError, ArtifactError) as exc:
            raise InternalError(str(exc)) from exc
        if compiled.note:
            notes.append(compiled.note)
    files[LOCK] = lock_text(ctx, files)
    return Bundle(files, frozenset(executable), tuple(notes))


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
        "artifacts": {p: _sha256(t) for p, t in sorted(files.items())},
        "inputs": data_inputs(ctx.ir),
    }
    return json.dumps(lock, indent=2, sort_keys=True) + "\n"


@lru_cache(maxsize=4096)
def _sha256(text: str) -> str:
    # Memoised: an artifact rendered from the memo is the same str object again, whose
    # hash Python has kept, so a repeated file costs a dict lookup.
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def data_inputs(ir) -> dict[str, str]:
    """The data files the bundle's stages read, as the spec gives them (relative to its
    folder), the tokenizer's model file among them: the runtime checks they exist
    before any stage starts, and a change to one reruns the stages."""
    data = ir.model.data
    inputs = {"train": data.train, "valid": data.valid, "test": data.test}
    if data.tokenizer not in TOKENIZER_NAMES:
        inputs["tokenizer"] = data.tokenizer
    quantize = ir.compress.quantize if ir.compress is not None else None
    if quantize is not None and quantize.calibration:
        inputs["calibration"] = quantize.calibration
    return inputs


def default_output(spec_path: str, profile: str | None) -> str:
    name = Path(spec_path).stem + (f"-{profile}" if profile else "")
    return os.path.join("build", name)


def write_bundle(bundle: Bundle, out: str, reads: Iterable[tuple[str, str]] = ()) -> None:
    """Replace `out` with the bundle in one step; on any failure `out` is untouched.
    Raises OutputRefused, before anything is written, when `out` holds anything llmc
    did not write or a file the build reads (`reads`: see `files_read`)."""
    check_output(out, reads)
    # Absolute: the spare trees are kept by parent folder, and the working directory
    # may change between two builds in one process.
    out_path = Path(os.path.abspath(out))
    parent = out_path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputRefused(
            f"cannot create {out}: its parent folder {parent} cannot be created: {exc.strerror or exc}"
        ) from exc
    _remove_abandoned_staging(parent, out_path.name)
    staging = _staging_folder(parent, out_path.name)
    try:
        _fill(staging, bundle)
        os.chmod(staging, 0o755)
        replaced = _swap_into_place(staging, out_path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if replaced is not None:
        _keep_spare(parent, replaced)


def files_read(result) -> list[tuple[str, str]]:
    """(what, path) for every local file a build of `result` reads or its stages will:
    the spec, the specs it extends, and the data files (relative to the spec's folder,
    as the runtime resolves them). None of them may be inside the output directory."""
    found = [("the spec" if i == 0 else "a spec it extends", p) for i, p in enumerate(result.files or [result.path])]
    if result.ir is not None:
        folder = os.path.dirname(result.path)
        for split, p in data_inputs(result.ir).items():
            if p and "://" not in p:
                found.append((f"its {split} data", os.path.join(folder, p)))
    return found


_REFUSAL_LISTS = 5  # entries named in a refusal; the rest are counted


def check_output(out: str, reads: Iterable[tuple[str, str]] = ()) -> None:
    """Raise OutputRefused unless replacing `out` loses nothing llmc did not write: it
    must be absent, empty, or an llmc bundle (its llmc.lock.json, as llmc writes it,
    lists every file in it); it must hold none of `reads`; and it must not be the
    filesystem root, the home or working directory, or a folder holding either.
    Cheap: one lock file read and one listing of the bundle's folders."""
    try:
        st = os.lstat(out)
    except FileNotFoundError:
        st = None
    except OSError as exc:  # a file where a parent folder should be, no permission
        raise OutputRefused(f"cannot write {out}: {exc.strerror or exc}") from exc
    if st is not None and stat.S_ISLNK(st.st_mode):
        raise OutputRefused(
            f"refusing to replace {out}: it is a symbolic link; give the directory it points to, or a new one"
        )
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise OutputRefused(f"cannot write {out}: it exists and is not a directory")
    real = os.path.realpath(out)
    _refuse_special_places(out, real)
    _refuse_inputs_inside(out, real, reads)
    if st is None:
        return
    try:
        foreign = _not_written_by_llmc(Path(out))
    except OSError as exc:  # a folder that cannot be listed: what it holds is unknown
        raise OutputRefused(
            f"refusing to replace {out}: cannot list {exc.filename or out}: {exc.strerror or exc}"
        ) from exc
    if foreign is None:
        return
    kind, entries = foreign
    shown = ", ".join(entries[:_REFUSAL_LISTS])
    more = f" and {len(entries) - _REFUSAL_LISTS} more" if len(entries) > _REFUSAL_LISTS else ""
    total = f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}"
    if kind == "bundle":
        raise OutputRefused(
            f"refusing to replace {out}: it is an llmc bundle, but the build would delete {total} "
            f"its {LOCK} does not list: {shown}{more}; move them out of the bundle first"
        )
    raise OutputRefused(
        f"refusing to replace {out}: it is not an llmc bundle (no {LOCK} written by llmc), and the "
        f"build would delete the {total} in it: {shown}{more}"
    )


def _refuse_special_places(out: str, real: str) -> None:
    if os.path.dirname(real) == real:
        raise OutputRefused(f"refusing to replace {out}: it is the filesystem root")
    for place, what in (
        (os.path.realpath(os.path.expanduser("~")), "your home directory"),
        (os.getcwd(), "the current directory"),
    ):
        if real == place:
            raise OutputRefused(f"refusing to replace {out}: it is {what}")
        if _inside(place, real):
            raise OutputRefused(f"refusing to replace {out}: it holds {what} ({place})")


def _refuse_inputs_inside(out: str, real: str, reads: Iterable[tuple[str, str]]) -> None:
    absolute = os.path.abspath(out)
    for what, path in reads:
        # Both spellings: the path as given may pass through a link inside `out`.
        if _inside(os.path.abspath(path), absolute) or _inside(os.path.realpath(path), real):
            raise OutputRefused(f"refusing to replace {out}: it holds {what} ({path}), which the build would delete")


def _inside(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip(os.sep) + os.sep)


def _not_written_by_llmc(root: Path) -> tuple[str, list[str]] | None:
    """None when replacing `root` deletes only what llmc wrote; else whether it is a
    bundle or not, and its entries llmc did not write (folders end in /), sorted."""
    listed = _lock_listing(root)
    if listed is None:
        with os.scandir(root) as entries:
            names = sorted(e.name + ("/" if e.is_dir(follow_symlinks=False) else "") for e in entries)
        return ("folder", names) if names else None
    files, folders = listed
    foreign = []
    for rel, entry in _walk(root, descend=folders.__contains__):
        if entry.is_dir(follow_symlinks=False):
            if rel not in folders:
                foreign.append(rel + "/")
        elif not (rel in files or (rel in folders and entry.is_symlink())):
            # A link where llmc wrote a file or folder is only a name: deleting
            # it loses nothing (links are never followed).
            foreign.append(rel)
    return ("bundle", sorted(foreign)) if foreign else None


def _lock_listing(root: Path) -> tuple[set[str], set[str]] | None:
    """(files, folders) the bundle's lock file says llmc wrote; None when `root` has no
    lock file as llmc writes one (a regular file; JSON with llmc's keys)."""
    try:
        fd = os.open(root / LOCK, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            lock = json.loads(f.read())
    except (OSError, ValueError):
        return None
    artifacts = lock.get("artifacts") if isinstance(lock, dict) else None
    if not (
        isinstance(artifacts, dict)
        and str(lock.get("compiler", "")).startswith("llmc ")
        and isinstance(lock.get("spec_sha256"), str)
    ):
        return None
    files = {LOCK, *artifacts}
    return files, {f for rel in artifacts for f in _folders_of(rel)}


# A tree this process swapped out (the bundle a build replaced), kept per parent folder
# to be the next build's staging there: its folders already exist, and most of its
# files already hold what the next bundle writes (folders and files are slow to
# create and delete on many file systems). Removed when the process exits; a killed
# process's spare is removed by the next build of that bundle (_remove_abandoned_staging).
_SPARES: dict[Path, Path] = {}


def _staging_folder(parent: Path, name: str) -> Path:
    prefix = f".{name}.llmc-{os.getpid()}-"
    spare = _SPARES.pop(parent, None)
    if spare is not None:
        if spare.name.startswith(prefix):
            return spare
        staging = parent / f"{prefix}{os.urandom(4).hex()}"
        try:
            os.rename(spare, staging)  # named for the bundle it now stages
            return staging
        except OSError:
            shutil.rmtree(spare, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))


def _keep_spare(parent: Path, tree: Path) -> None:
    old = _SPARES.get(parent)
    _SPARES[parent] = tree
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@atexit.register
def release_spares() -> None:
    """Remove the trees kept for later builds (at exit; tests call it to see the folder bare)."""
    while _SPARES:
        shutil.rmtree(_SPARES.popitem()[1], ignore_errors=True)


def _fill(staging: Path, bundle: Bundle) -> None:
    """Make `staging` hold exactly the bundle's files. It is empty or a spare tree: a
    spare's file that already holds the bytes and mode, and has no other link, is
    kept; any other is replaced, and what the bundle does not have is removed. Files
    are never changed in place, so no two bundles ever share a file."""
    needed = {f for rel in bundle.files for f in _folders_of(rel)}
    contents = _contents(staging)
    if contents is None or contents[0] & needed or contents[1] & bundle.files.keys():
        # A link, or a file where a folder goes (or the reverse): start empty instead.
        shutil.rmtree(staging)
        os.mkdir(staging, 0o700)
        contents = set(), set()
    have_files, have_folders = contents
    made = set(have_folders)
    for rel, text in sorted(bundle.files.items()):
        data = text.encode("utf-8")
        mode = 0o755 if rel in bundle.executable else 0o644
        target = staging / rel
        if rel in have_files:
            have_files.discard(rel)
            if _holds(target, data, mode):
                continue
            os.unlink(target)
        folder = os.path.dirname(rel)
        if folder and folder not in made:
            os.makedirs(staging / folder, exist_ok=True)
            while folder and folder not in made:
                made.add(folder)
                folder = os.path.dirname(folder)
        _write_new(target, data, mode)
    for rel in have_files:
        os.unlink(staging / rel)
    for folder in sorted(have_folders - needed, key=len, reverse=True):
        os.rmdir(staging / folder)


def _contents(root: Path) -> tuple[set[str], set[str]] | None:
    """(files, folders) under root, as relative paths with forward slashes; None when
    it holds anything else (a symbolic link: files must never be written through one)."""
    files, folders = set(), set()
    for rel, entry in _walk(root):
        if entry.is_dir(follow_symlinks=False):
            folders.add(rel)
        elif entry.is_file(follow_symlinks=False):
            files.add(rel)
        else:
            return None
    return files, folders


def _walk(root: Path, descend: Callable[[str], bool] = lambda rel: True) -> Iterator[tuple[str, os.DirEntry]]:
    """(relative path with forward slashes, entry) for everything under `root`, going
    into the folders `descend` accepts; links are never followed."""
    pending = [("", str(root))]
    while pending:
        prefix, path = pending.pop()
        with os.scandir(path) as entries:
            for entry in entries:
                rel = prefix + entry.name
                yield rel, entry
                if entry.is_dir(follow_symlinks=False) and descend(rel):
                    pending.append((rel + "/", entry.path))


def _folders_of(rel: str):
    folder = os.path.dirname(rel)
    while folder:
        yield folder
        folder = os.path.dirname(folder)


def _holds(path: Path, data: bytes, mode: int) -> bool:
    """Whether the regular file at `path` holds exactly `data` with `mode`, and is
    linked nowhere else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        return (
            stat.S_ISREG(st.st_mode)
            and stat.S_IMODE(st.st_mode) == mode
            and st.st_size == len(data)
            and st.st_nlink == 1
            and os.read(fd, len(data) + 1) == data
        )
    finally:
        os.close(fd)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    # Plain os calls: a bundle is some 30 files, and buffered text files cost half again.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fchmod(fd, mode)  # whatever the umask
    finally:
        os.close(fd)


def _remove_abandoned_staging(parent: Path, name: str) -> None:
    """A build killed midway leaves its staging folder (the bundle itself is intact):
    remove those whose build process is gone. A running build's folder is kept."""
    for path in parent.glob(f".{name}.llmc-*"):
        pid = path.name[len(name) + 7 :].split("-", 1)[0]
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


def _swap_into_place(staging: Path, out: Path) -> Path | None:
    """Put staging at `out`; returns where the bundle it replaced now is, if any."""
    if not out.exists():
        os.rename(staging, out)
        return None
    if _exchange(staging, out):  # out now holds the new bundle, staging the old one
        return staging
    # No atomic exchange on this system: two renames, with the old bundle kept aside
    # until the new one is in place.
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.llmc-{os.getpid()}-old-", dir=out.parent))
    os.rmdir(aside)
    os.rename(out, aside)
    try:
        os.rename(staging, out)
    except BaseException:
        os.rename(aside, out)
        raise
    return aside


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux renameat2 RENAME_EXCHANGE)."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange)
    return result == 0


@lru_cache(maxsize=1)
def _renameat2():
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None


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


def plan(bundle: Bundle, out: str) -> "PlanSummary":
    """What a build would change in `out`: a plan_summary.PlanSummary (the changed
    facts, objects and fields, and each file's unified diff)."""
    from .plan_summary import summarize

    return summarize(read_existing(out), bundle.files, out)


def plan_diff(bundle: Bundle, out: str) -> str:
    """A unified diff from the files in `out` to the bundle's (empty: nothing changes)."""
    from .plan_summary import full_diff

    return full_diff(plan(bundle, out))
