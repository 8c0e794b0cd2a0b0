"""tritonserver, as the nvidia-pytriton wheel ships it (Triton 2.51, the Python
backend only): found, started on 127.0.0.1, waited for, and stopped with nothing
left behind.

* The binary needs this interpreter's libpython and the wheel's own libraries on
  LD_LIBRARY_PATH, and this interpreter's folder first on PATH (the backend's stub
  embeds Python and finds its site-packages from the `python3` on PATH).
* It runs in a session of its own, so a Ctrl-C at the terminal reaches `llmc serve`,
  which stops the server in order (SIGTERM, then SIGKILL to its process group after
  the grace period: the stubs are in that group). Should `llmc serve` itself be
  killed, the kernel sends the server SIGTERM (PR_SET_PDEATHSIG).
* The Python backend keeps its tensors in /dev/shm regions named by a prefix; each
  server gets its own prefix (`llmc_<pid>_<port>_`), and whatever the server leaves
  under it is removed when it stops.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

SHM = Path("/dev/shm")
LOG_TAIL = 40  # lines of Triton's log shown when it fails


class ServerError(Exception):
    """The server cannot start or stopped on its own; the message says why."""


class TritonInstall(NamedTuple):
    binary: Path  # tritonserver
    python_backend: Path  # backends/python of the wheel
    stub: Path  # triton_python_backend_stub for this Python version
    libs: Path  # nvidia_pytriton.libs


def find_triton() -> TritonInstall:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError("llmc serve needs Triton: pip install nvidia-pytriton (it ships tritonserver)")
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    found = TritonInstall(
        root / "bin" / "tritonserver",
        root / "backends" / "python",
        root / "python_backend_stubs" / version / "triton_python_backend_stub",
        root.parent.parent / "nvidia_pytriton.libs",
    )
    for path in found[:3]:
        if not path.exists():
            raise ServerError(f"the nvidia-pytriton wheel has no {path} (Python {version}); reinstall it")
    return found


def check_port(port: int, flag: str) -> None:
    """ServerError when 127.0.0.1:`port` cannot be listened on (taken, or not allowed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Triton binds: TIME_WAIT is no obstacle
        try:
            s.bind(("127.0.0.1", port))
            s.listen(1)
        except OSError as exc:
            why = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror or exc})"
            raise ServerError(
                f"port {port} on 127.0.0.1 {why}: stop what holds it, or pass {flag} with a free port"
            ) from None


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM it when `llmc serve` dies, even by SIGKILL (Linux)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class TritonServer:
    def __init__(
        self, install: TritonInstall, repository: Path, backends: Path, log: Path, http_port: int, metrics_port: int
    ):
        self.install = install
        self.repository = repository
        self.backends = backends
        self.log_path = log
        self.http_port = http_port
        self.metrics_port = metrics_port
        self.shm_prefix = f"llmc_{os.getpid()}_{http_port}_"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def command(self) -> list[str]:
        return [
            str(self.install.binary),
            f"--model-repository={self.repository}",
            f"--backend-directory={self.backends}",
            "--http-address=127.0.0.1",
            f"--http-port={self.http_port}",
            "--allow-grpc=false",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={self.metrics_port}",
            "--metrics-config=summary_latencies=true",
            "--strict-readiness=true",
            "--exit-on-error=true",
            "--exit-timeout-secs=5",
            "--disable-auto-complete-config",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
        ]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join(filter(None, [str(Path(sys.executable).parent), env.get("PATH")]))
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            filter(None, [sysconfig.get_config_var("LIBDIR"), str(self.install.libs), env.get("LD_LIBRARY_PATH")])
        )
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        return env

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.environment(),
                cwd=self.log_path.parent,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float) -> None:
        """Return once /v2/health/ready answers 200; ServerError (with the log's tail)
        when the server exits first or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.running():
                code = self.proc.returncode if self.proc else None
                raise ServerError(f"tritonserver exited (status {code}) before it was ready{self.log_tail()}")
            if self.ready():
                return
            if time.monotonic() > deadline:
                raise ServerError(f"tritonserver was not ready after {timeout:.0f} s{self.log_tail()}")
            time.sleep(0.2)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/v2/health/ready", timeout=2) as r:
                return bool(r.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def model_config(self, name: str) -> dict:
        with urllib.request.urlopen(f"{self.url}/v2/models/{name}/config", timeout=5) as r:
            config: dict = json.load(r)
        return config

    def log_tail(self, lines: int = LOG_TAIL) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        tail = text.splitlines()[-lines:]
        return f"; the end of its log ({self.log_path}):\n" + "\n".join("    " + line for line in tail) if tail else ""

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM and wait; SIGKILL the process group after `grace` seconds; then remove
        the server's shared memory regions. Safe to call twice."""
        proc = self.proc
        if proc is not None:
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    pass
            try:  # the stubs share the server's process group: none outlives it
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
        self.remove_shared_memory()

    def remove_shared_memory(self) -> list[Path]:
        removed = []
        for region in SHM.glob(self.shm_prefix + "*"):
            try:
                region.unlink()
                removed.append(region)
            except FileNotFoundError:
                continue
        return removed
