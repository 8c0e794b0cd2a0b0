"""pipeline/pipeline.yaml: the bundle's Kubeflow pipeline, compiled by kfp's compiler.

kfp imports the kubernetes client, which the compiler never imports, so the YAML is
compiled by a process of the runtime (`python -m llmc.runtime.pipeline
--serve-compiles`), given pipeline/pipeline.py's text and the artifacts' hashes (the
stages' cache keys). The CLI starts the process as a build starts, so that kfp's
import (about 0.7 s) overlaps the check and the rendering, and keeps it for the rest
of this process, so that many builds (a test suite) import kfp once. It is not a
cache: every build compiles afresh (about 0.3 s).

Where kfp is not installed, the bundle has no pipeline.yaml and `Compiled.note` says
why (`llmc build` prints it); pipeline/pipeline.py --compile writes it later. A
compile that fails otherwise is a compiler bug (PipelineError).
"""

from __future__ import annotations

import atexit
import json
import subprocess
import sys
import threading
from typing import IO, NamedTuple

SCRIPT = "pipeline/pipeline.py"
COMPILED = "pipeline/pipeline.yaml"


class Compiled(NamedTuple):
    text: str | None  # the YAML; None when it could not be compiled
    note: str  # why not ("" when compiled)


class _Worker:
    """One `--serve-compiles` process: a JSON request per line in, a JSON answer per line out."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    def start(self) -> subprocess.Popen[str]:
        """The process, started if it is not running (it imports kfp as it starts)."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            proc = self._proc = subprocess.Popen(
                [sys.executable, "-m", "llmc.runtime.pipeline", "--serve-compiles"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                encoding="utf-8",
            )
        return proc

    def ask(self, request: dict) -> dict:
        with self._lock:
            proc = self.start()
            stdin, stdout = proc.stdin, proc.stdout
            assert stdin is not None and stdout is not None  # both are pipes
            try:
                stdin.write(json.dumps(request) + "\n")
                stdin.flush()
                line = stdout.readline()
            except (BrokenPipeError, OSError) as exc:
                line = json.dumps({"error": f"the compiling process ended: {exc}"})
            if not line:
                self._proc = None
                return {"error": f"the compiling process ended with status {proc.wait()}"}
            return json.loads(line)

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            _close_quietly(proc.stdin)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()


def _close_quietly(stream: IO[str] | None) -> None:
    if stream is not None:
        try:
            stream.close()
        except OSError:
            pass


_WORKER = _Worker()
atexit.register(_WORKER.close)


class PipelineError(Exception):
    """kfp's compiler refused the generated pipeline: a compiler bug."""


def start() -> None:
    """Start the compiling process now, so that kfp is imported while the build renders."""
    with _WORKER._lock:
        _WORKER.start()


def compile_pipeline(files: dict[str, str], hashes: dict[str, str]) -> Compiled:
    """pipeline.yaml for the bundle `files` (path -> text), whose artifacts hash to `hashes`."""
    answer = _WORKER.ask({"source": files[SCRIPT], "artifacts": hashes})
    if "yaml" in answer:
        return Compiled(answer["yaml"], "")
    if "missing" in answer:
        return Compiled(None, f"{COMPILED} not written: {answer['missing']}; then `python {SCRIPT} --compile`")
    raise PipelineError(f"{COMPILED}: kfp's compiler failed on {SCRIPT}: {answer.get('error')}")
