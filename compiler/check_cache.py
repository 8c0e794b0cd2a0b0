"""The answers of `llmc check`, kept for a spec that has not changed since.

Editors and pre-commit hooks run `llmc check` on every save and every commit, mostly
on specs that did not change. Most of a check's time is starting the front end
(importing the parser and the typed IR), not checking; so an answer is kept, keyed by
everything it depends on, and given again without starting the front end, as
mypy's and ruff's caches do.

An entry is found by the command line (its arguments, the working folder, whether
colour is on) and the compiler (the size and mtime of each of its source files, the
Python version, the names and versions of the installed packages). It holds the files
the check read: each spec file by its sha256, each other file it consulted (training
data whose labels it counted, a tokenizer it looked for) by its size and mtime, or by
its absence. The answer is given again only when every one of them is as it was.
`--data` answers are not kept (they read whole data files). LLMC_NO_CACHE=1 turns the
cache off; LLMC_CACHE_DIR moves it (default: $XDG_CACHE_HOME/llmc/check).

This module imports nothing of the compiler: a kept answer costs the interpreter's
start-up, a few stats and one small read.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

VERSION = 1
MAX_ENTRIES = 2000  # past this, the least recently used half is removed
_HERE = os.path.dirname(os.path.abspath(__file__))

# The files a check consulted besides its spec files (source.py and checks record them).
consulted: set[str] = set()


def enabled() -> bool:
    return not os.environ.get("LLMC_NO_CACHE")


def folder() -> str:
    explicit = os.environ.get("LLMC_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "llmc", "check")


def _compiler() -> list:
    """What the answers depend on in the compiler itself."""
    state: list = [VERSION, sys.version, sys.executable]
    for root, dirs, files in os.walk(_HERE):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".py", ".lark")):
                st = os.stat(os.path.join(root, name))
                state.append((os.path.relpath(os.path.join(root, name), _HERE), st.st_size, st.st_mtime_ns))
    for entry in sys.path:  # the installed packages, by name and version (an upgrade changes them)
        if entry.endswith("site-packages") and os.path.isdir(entry):
            state.append(sorted(n for n in os.listdir(entry) if n.endswith(".dist-info")))
    return state


def key(argv: list[str], color: bool) -> str:
    blob = json.dumps([argv, os.getcwd(), color, _compiler()], default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:40]


def _state(path: str, spec: bool) -> list | None:
    try:
        if spec:
            with open(path, "rb") as f:
                return ["sha256", hashlib.sha256(f.read()).hexdigest()]
        st = os.stat(path)
        return ["stat", st.st_size, st.st_mtime_ns, os.path.isdir(path)]
    except OSError:
        return None


def lookup(argv: list[str], color: bool) -> tuple[str, str, int] | None:
    """(stdout, stderr, exit status) of a kept answer that still holds, else None."""
    path = os.path.join(folder(), key(argv, color) + ".json")
    try:
        with open(path, encoding="utf-8") as f:
            entry = json.load(f)
    except (OSError, ValueError):
        return None
    try:
        for dep, spec, state in entry["deps"]:
            if _state(dep, spec) != state:
                return None
        answer = entry["stdout"], entry["stderr"], int(entry["status"])
    except (KeyError, TypeError, ValueError):
        return None
    try:
        os.utime(path)  # recently used
    except OSError:
        pass
    return answer


def store(argv: list[str], color: bool, spec_files: list[str], stdout: str, stderr: str, status: int) -> None:
    """Keep an answer (a failure to write it is not the user's problem: nothing is said)."""
    deps = [[p, True, _state(p, True)] for p in sorted(set(spec_files))]
    deps += [[p, False, _state(p, False)] for p in sorted(consulted - set(spec_files))]
    entry = {"deps": deps, "stdout": stdout, "stderr": stderr, "status": status}
    where = folder()
    try:
        os.makedirs(where, exist_ok=True)
        target = os.path.join(where, key(argv, color) + ".json")
        tmp = f"{target}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(entry, f)
        os.replace(tmp, target)  # whole or not at all: a reader never sees half an entry
        _prune(where)
    except OSError:
        pass


def _prune(where: str) -> None:
    names = [n for n in os.listdir(where) if n.endswith(".json")]
    if len(names) <= MAX_ENTRIES:
        return
    paths = sorted((os.path.join(where, n) for n in names), key=lambda p: os.stat(p).st_mtime_ns)
    for p in paths[: len(paths) // 2]:
        try:
            os.unlink(p)
        except OSError:
            pass
