"""Run a built bundle's stages: train, compress, evaluate, serve (and search on request).

The runtime reads only the bundle directory and its lock file; it never imports the
compiler. Each stage is a command from the bundle (docs/bundle.md), run locally
(Horovod over Gloo for training) with its output streamed; a stage whose inputs
(its artifacts' hashes, the data files, the stages before it) match its last
success is skipped. Every run leaves a record under runs/ (see records.py), with each
stage's whole output as <stage>.log.

What a stage shows is its output with three changes (`StageOutput`): each rank's
lines carry `[rank N]`; a rank's one-line error (`train.py: error: ...`), which every
rank of a job that read the same bad file prints, is shown once; and horovodrun's own
report of a failed rank (its "Process N exit with status code" lines and the
RuntimeError traceback after them, which repeat what the rank said) stays in the log,
whose path the failure line gives. A rank that crashed without a one-line error is
still named, with its exit status.
"""

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, NamedTuple

# The stages a cluster runs (cluster.py); here, serve follows evaluate (plan_stages).
ORDER = ("train", "compress", "evaluate", "search")
_URI = ("s3://", "gs://", "hdfs://", "http://", "https://", "abfs://", "az://")


class RunError(Exception):
    """A run cannot start or a stage failed; the message says which and why."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


class Stage(NamedTuple):
    name: str
    commands: list[list[str]]  # run in order; each must exit 0
    folder: str  # the bundle folder whose artifacts key the stage (plus model.json)
    outputs: str  # what the stage writes under work/: it is rerun when this is gone
    extra: tuple[str, ...] = ()  # more bundle files that key the stage (serve: serving.json)


class StageResult(NamedTuple):
    name: str
    status: str  # "ok" | "skipped" | "failed" | "interrupted"
    seconds: float
    exit_code: int


class Bundle:
    def __init__(self, root: str):
        # Absolute: stages run with the bundle as their working directory.
        self.root = Path(root).resolve()
        lock_path = self.root / "llmc.lock.json"
        if not lock_path.is_file():
            raise RunError(f"{root} is not an llmc bundle (no llmc.lock.json); run `llmc build` first", status=2)
        self.lock = json.loads(lock_path.read_text())
        model_path = self.root / "model.json"
        self.model = json.loads(model_path.read_text()) if model_path.is_file() else {}

    def has(self, rel: str) -> bool:
        return (self.root / rel).is_file()

    def artifact_hashes(self, folder: str, extra: tuple[str, ...] = ()) -> dict[str, str]:
        return folder_hashes(self.lock["artifacts"], folder, extra)

    def world_size(self) -> int:
        par = self.model.get("parallel") or {}
        size = 1
        for key in ("data", "tensor", "pipeline"):
            size *= int(par.get(key) or 1)
        return max(1, size)


def data_files(bundle: Bundle, data_root: Path) -> list[Path]:
    """The local files the stages read, from the lock file's `inputs` (URIs are the
    cluster's business)."""
    out = []
    for p in (bundle.lock.get("inputs") or {}).values():
        if not p or p.startswith(_URI):
            continue
        # normpath: the same file named through another spec folder is the same input.
        out.append(Path(os.path.normpath(p if os.path.isabs(p) else data_root / p)))
    return list(dict.fromkeys(out))


def preflight(bundle: Bundle, data_root: Path) -> None:
    """Fail before any work starts when a data file is missing."""
    missing = [str(p) for p in data_files(bundle, data_root) if not p.is_file()]
    if missing:
        raise RunError(
            "data file not found: " + ", ".join(missing) + " (relative paths are relative to the spec's folder)"
        )


COMPRESS_STEPS = ("distill", "prune", "export", "quantize", "build_engine")


def train_command(bundle: Bundle, output: Path, data_root: Path, np: int | None = None) -> list[str]:
    """train/train.py over Horovod on this machine (Gloo, np processes: the spec's world size)."""
    n = np or bundle.world_size()
    horovodrun = shutil.which("horovodrun") or str(Path(sys.executable).parent / "horovodrun")
    launch = [horovodrun, "--gloo", "-np", str(n), "-H", f"localhost:{n}"]
    return [*launch, sys.executable, str(bundle.root / "train/train.py"), "--output", str(output), *_data(data_root)]


def compress_commands(
    bundle: Bundle, model: Path, output: Path, data_root: Path, serve: Path | None = None
) -> list[list[str]]:
    """Each compress/<step>.py of the bundle, in the pipeline's order ([] without any).
    The serving layout goes to `serve` (default: serve/ beside `output`)."""
    steps = [s for s in COMPRESS_STEPS if bundle.has(f"compress/{s}.py")]
    where = ["--model", str(model), "--output", str(output)] + (["--serve", str(serve)] if serve else [])
    return [[sys.executable, str(bundle.root / f"compress/{s}.py"), *where, *_data(data_root)] for s in steps]


def evaluate_command(bundle: Bundle, model: Path, baseline: Path, verdict: Path, data_root: Path) -> list[str]:
    # --latency: the table shows p50/p99 even when no gate asks for them.
    script = str(bundle.root / "evaluate/evaluate.py")
    where = ["--model", str(model), "--baseline", str(baseline), "--json", str(verdict), "--latency"]
    return [sys.executable, script, *where, *_data(data_root)]


def search_command(bundle: Bundle, output: Path, data_root: Path) -> list[str]:
    return [
        sys.executable,
        str(bundle.root / "search/search.py"),
        "--local",
        "--output",
        str(output),
        *_data(data_root),
    ]


def _data(data_root: Path) -> list[str]:
    return ["--data-root", str(data_root)]


def plan_stages(bundle: Bundle, work: Path, data_root: Path, np: int | None, with_search: bool) -> list[Stage]:
    stages = []
    if bundle.has("train/train.py"):
        stages.append(
            Stage("train", [train_command(bundle, work / "train", data_root, np)], "train", str(work / "train"))
        )
    compress = compress_commands(bundle, work / "train" / "model", work / "compress", data_root)
    if compress:
        stages.append(Stage("compress", compress, "compress", str(work / "compress")))
    # The model evaluate gates and the serve stage serves, and evaluate's verdict on it.
    gated = work / ("compress" if compress else "train") / "model"
    verdict = work / "evaluate" / "metrics.json"
    if bundle.has("evaluate/evaluate.py"):
        cmd = evaluate_command(bundle, gated, work / "train" / "model", verdict, data_root)
        stages.append(Stage("evaluate", [cmd], "evaluate", str(work / "evaluate")))
    if stages and stages[-1].name == "evaluate" and bundle.has("loadtest/loadtest.py") and bundle.has("serving.json"):
        # The model evaluate just passed, on a local Triton under the SLA's load (ports: free ones).
        cmd = [
            sys.executable,
            str(bundle.root / "loadtest/loadtest.py"),
            "--model",
            str(gated),
            "--output",
            str(work / "serve"),
            "--metrics",
            str(verdict),
            *_data(data_root),
        ]
        # work/serve/ also holds compress's serving layout: the stage's own output is its report.
        stages.append(Stage("serve", [cmd], "loadtest", str(work / "serve" / "results.json"), ("serving.json",)))
    if with_search and bundle.has("search/search.py"):
        stages.append(
            Stage("search", [search_command(bundle, work / "search", data_root)], "search", str(work / "search"))
        )
    return stages


def data_digest(bundle: Bundle, data_root: Path) -> str:
    """One digest of the local data files the stages read (names and contents), read once
    per run: every stage's key includes it."""
    h = hashlib.sha256()
    for path in data_files(bundle, data_root):
        h.update(str(path).encode())
        if path.is_file():
            with open(path, "rb") as f:
                h.update(hashlib.file_digest(f, "sha256").digest())
    return h.hexdigest()


def folder_hashes(artifacts: dict[str, str], folder: str, extra: tuple[str, ...] = ()) -> dict[str, str]:
    """The lock's hashes of a bundle folder's artifacts, model.json's and `extra`'s."""
    keyed = ("model.json", *extra)
    return {p: h for p, h in artifacts.items() if p.startswith(folder + "/") or p in keyed}


def stage_key(bundle: Bundle, folder: str, upstream: str, data: str = "", extra: tuple[str, ...] = ()) -> str:
    """A stage's key: the hashes of its bundle folder's artifacts (and model.json, and
    `extra`), the data's digest, and the key of the stage before it, so a change
    upstream reruns it."""
    return key_of(bundle.artifact_hashes(folder, extra), upstream, data)


def key_of(hashes: dict[str, str], upstream: str = "", data: str = "") -> str:
    h = hashlib.sha256(upstream.encode())
    h.update(json.dumps(hashes, sort_keys=True).encode())
    h.update(data.encode())
    return h.hexdigest()


def run_stages(
    bundle: Bundle,
    stages: list[Stage],
    work: Path,
    data_root: Path,
    force: bool,
    only: str | None,
    log=print,
    logs: Path | None = None,
) -> list[StageResult]:
    """Run (or skip) each stage in order; stop at the first failure. With `logs` (the
    run's record), each stage that runs writes its whole output to `logs/<stage>.log`."""
    work.mkdir(parents=True, exist_ok=True)
    state_path = work / "state.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    results: list[StageResult] = []
    data = data_digest(bundle, data_root)
    upstream = ""
    for stage in stages:
        key = upstream = stage_key(bundle, stage.folder, upstream, data, stage.extra)
        if only is not None and stage.name != only:
            continue
        last = state.get(stage.name, {})
        if not force and last.get("key") == key and last.get("status") == "ok" and Path(stage.outputs).exists():
            log(f"==> {stage.name}: up to date (inputs unchanged since its last success); --force reruns it")
            results.append(StageResult(stage.name, "skipped", 0.0, 0))
            continue
        log(f"==> {stage.name}")
        started = time.monotonic()
        code = 0
        log_path = logs / f"{stage.name}.log" if logs is not None else None
        with open(log_path, "w", encoding="utf-8") if log_path is not None else _no_file() as log_file:
            for command in stage.commands:
                code = run_command(command, cwd=bundle.root, log=log, log_file=log_file, log_path=log_path)
                if code != 0:
                    break
        seconds = time.monotonic() - started
        status = "ok" if code == 0 else ("interrupted" if code == 130 else "failed")
        results.append(StageResult(stage.name, status, seconds, code))
        state[stage.name] = {"key": key, "status": status}
        _write_json(state_path, state)
        if code != 0:
            where = f"; its whole output is in {log_path}" if log_path is not None else ""
            log(f"==> {stage.name} {status} (exit {code}) after {seconds:.1f}s{where}")
            break
        log(f"==> {stage.name} ok in {seconds:.1f}s")
    return results


def run_command(
    command: list[str], cwd: Path, log=print, log_file: IO[str] | None = None, log_path: Path | None = None
) -> int:
    """Run one command in its own process group, streaming its output (as StageOutput
    shows it; all of it to `log_file`, the file at `log_path`, when given); Ctrl-C or a
    failure stops every process it started. Returns its exit status: a launcher's that
    failed because a rank did is the rank's."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # TensorFlow's start-up banner (oneDNN, CPU features) buries the stage's own output;
    # a user who wants it sets TF_CPP_MIN_LOG_LEVEL themselves.
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Horovod's Gloo gives up on a peer after 30 s; on one CPU machine with more
    # processes (--np) than cores, a starved rank takes longer than that.
    env.setdefault("HOROVOD_GLOO_TIMEOUT_SECONDS", "300")
    output = StageOutput(log, log_file, log_path, quiet=env["TF_CPP_MIN_LOG_LEVEL"] not in ("", "0"))
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.line(line.rstrip("\n"))
        return output.finish(proc.wait())
    except KeyboardInterrupt:
        stop_group(proc)
        return 130
    finally:
        if proc.poll() is None:
            stop_group(proc)


def stop_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


# horovodrun's report of a rank that failed (horovod/runner/gloo_run.py): these lines, then
# its RuntimeError traceback ("Horovod detected that one or more processes exited with
# non-zero status ...").
_PROCESS_EXIT = re.compile(r"Process (\d+) exit with status code (-?\d+)\.$")
_TERMINATING = re.compile(r"Terminating remaining workers after failure of Process \d+\.$")
_STOPPED = re.compile(r"\[rank \d+\] (?:Terminated|Killed)$")
# A rank's one-line error, as run_script (scripts.py) and train.py's SystemExit print it.
_RANK_ERROR = re.compile(r"\[rank \d+\] ([\w.-]+: error: .*)$")


class StageOutput:
    """What a stage shows of its command's output (the module docstring has the rules);
    every line goes to `log_file` as it came."""

    def __init__(
        self, log: Callable[[str], None], log_file: IO[str] | None, log_path: Path | None, quiet: bool = True
    ) -> None:
        self.log = log
        self.log_file = log_file
        self.log_path = log_path
        self.quiet = quiet
        self.errors: set[str] = set()  # the one-line errors shown
        self.failed: tuple[int, int] | None = None  # (process, exit status) horovodrun reported first
        self.launcher_report = False  # horovodrun is reporting a failed rank: its lines go to the log

    def line(self, raw: str) -> None:
        if self.log_file is not None:
            self.log_file.write(raw + "\n")
        line = rank_prefixed(raw)
        if self.quiet and is_start_up_noise(line):
            return
        error = _RANK_ERROR.match(line)
        if error:
            if error.group(1) not in self.errors:  # every rank read the same file: said once
                self.errors.add(error.group(1))
                self.log(error.group(1))
            return
        if self.log_file is not None and not line.startswith("[rank "):
            exited = _PROCESS_EXIT.match(line)
            if exited or _TERMINATING.match(line):
                if exited and self.failed is None:
                    self.failed = (int(exited.group(1)), int(exited.group(2)))
                self.launcher_report = True
                return
            if self.launcher_report:
                return  # horovodrun's traceback: in the log
        if self.launcher_report and self.log_file is not None and _STOPPED.match(line):
            return  # a rank horovodrun stopped after another failed: the shell's word for it, in the log
        self.log(line)

    def finish(self, code: int) -> int:
        """The command's exit status, once it exited with `code`: a failed rank's own
        status when the launcher failed because of it."""
        if not self.launcher_report or code == 0:
            return code
        process, status = self.failed or (-1, code)
        if not self.errors:  # a rank crashed without saying why in one line: name it
            self.log(f"horovodrun: process {process} exited with status {status}; its report is in {self.log_path}")
        return status if status > 0 else code


def _no_file() -> contextlib.nullcontext[None]:
    return contextlib.nullcontext()


def rank_prefixed(line: str) -> str:
    """horovodrun tags lines `[1,0]<stdout>:text` (or `[0]<stdout>:`); show `[rank 0] text`."""
    if line.startswith("[") and "]<std" in line[:24]:
        tag, _, rest = line.partition(">:")
        rank = tag[1 : tag.index("]")].split(",")[-1]
        return f"[rank {rank}] {rest}"
    return line


# C++ INFO lines logged before absl::InitializeLog(), which ignore TF_CPP_MIN_LOG_LEVEL
# (abseil-cpp#1718): the warning about it, glog-style "I0000 00:00:... file.cc:N]"
# lines, and the CPU-features line's second half.
_NOISE = re.compile(
    r"(?:\[rank \d+\] )?(?:WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|I\d{4} \d\d:\d\d:[\d.]+ +\d+ [\w.]+\.cc:\d+\] "
    r"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags)"
)


def is_start_up_noise(line: str) -> bool:
    return _NOISE.match(line) is not None


def _write_json(path: Path, data) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
