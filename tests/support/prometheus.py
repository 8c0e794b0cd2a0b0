"""A real Prometheus server (Debian's `prometheus` package, which bin/setup installs for
promtool) for integration tests: started on 127.0.0.1 on a free port with a config and
a TSDB in a temporary folder, scraping the given targets and evaluating the given rule
files, queried over its HTTP API, and always stopped on the way out (SIGTERM, then
SIGKILL to its process group): no process is left behind.

    with prometheus(folder, ["127.0.0.1:8002"], {"namespace": "ml"}, [rules]) as prom:
        prom.value("up")  # the instant query's single value, or None
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import yaml

from support.serving_runs import free_port

T = TypeVar("T")


def binary() -> str | None:
    """The Prometheus server on PATH (the Debian package ships it beside promtool)."""
    return shutil.which("prometheus")


class Prometheus:
    def __init__(self, url: str, process: subprocess.Popen, log: Path, folder: Path):
        self.url = url
        self.process = process
        self.log = log
        self.folder = folder  # on the server's command line (--storage.tsdb.path): its leftover mark

    def api(self, path: str, **params: Any) -> Any:
        """The `data` of /api/v1/<path>; AssertionError with Prometheus's own error otherwise."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as answer:
                body = json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        assert body.get("status") == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """The instant vector `expr` at `at` (Unix time; now by default): [{metric, value}]."""
        data = self.api("query", query=expr, **({} if at is None else {"time": f"{at:.3f}"}))
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def value(self, expr: str, at: float | None = None) -> float | None:
        """The value of an instant query that returns at most one series (None: none)."""
        result = self.query(expr, at)
        assert len(result) <= 1, f"{expr}: {len(result)} series: {result}"
        return float(result[0]["value"][1]) if result else None

    def sample_time(self, expr: str) -> float | None:
        """The timestamp of the newest sample of `expr` (one series), or None."""
        return self.value(f"timestamp({expr})")

    def wait(self, what: str, check: Callable[[], T | None], timeout: float) -> T:
        """Poll `check` every 0.2 s until it returns something other than None."""
        deadline = time.monotonic() + timeout
        while True:
            found = check()
            if found is not None:
                return found
            assert self.process.poll() is None, f"prometheus exited ({self.process.returncode}):\n{self.tail()}"
            assert time.monotonic() < deadline, f"prometheus: {what}: not within {timeout:g} s\n{self.tail()}"
            time.sleep(0.2)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False


def config(
    targets: Sequence[str], labels: dict[str, str], rules: Sequence[Path], interval: str, job: str = "llmc-test"
) -> dict[str, Any]:
    """One scrape job `job` over `targets` (a ServiceMonitor's job is its Service's name),
    each sample given `labels` (as the ServiceMonitor's target labels give `namespace` in a
    cluster), and the rule files `rules`."""
    return {
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "rule_files": [str(p) for p in rules],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets), "labels": dict(labels)}]}],
    }


@contextmanager
def prometheus(
    folder: Path,
    targets: Sequence[str],
    labels: dict[str, str],
    rules: Sequence[Path] = (),
    interval: str = "1s",
    ready_timeout: float = 60.0,
    job: str = "llmc-test",
) -> Iterator[Prometheus]:
    """Prometheus on 127.0.0.1:<free port>, its config, TSDB and log under `folder`, ready
    (its /-/ready answers and every target has been scraped once), stopped on the way out."""
    exe = binary()
    assert exe, "prometheus is not on PATH (apt-get install prometheus; bin/setup installs it)"
    folder.mkdir(parents=True, exist_ok=True)
    cfg = folder / "prometheus.yml"
    cfg.write_text(yaml.safe_dump(config(targets, labels, rules, interval, job), sort_keys=False))
    log = folder / "prometheus.log"
    url = f"http://127.0.0.1:{free_port()}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [exe, f"--config.file={cfg}", f"--web.listen-address={url.removeprefix('http://')}"]
            + [f"--storage.tsdb.path={folder / 'tsdb'}", "--log.level=warn"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stopped as one
        )
    prom = Prometheus(url, process, log, folder)
    try:
        prom.wait("/-/ready", lambda: True if prom.ready() else None, ready_timeout)
        prom.wait(
            f"a first scrape of {', '.join(targets)}",
            lambda: True if prom.value(f"count(up == 1) == {len(targets)}") is not None else None,
            ready_timeout,
        )
        yield prom
    finally:
        stop(process)


def stop(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL to its process group if it is still running after `grace`
    seconds; reaped either way."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    process.wait()
