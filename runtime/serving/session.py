"""A model served on a local Triton for as long as a `with` block runs: `llmc serve`
waits in it until Ctrl-C, `llmc loadtest` and the serve stage of `llmc run` drive it.

    with served(name, runs_root, rerun, http_port, metrics_port, ready_timeout, "serve") as live:
        ...  # the last successful run's gated model; live.server answers on live.server.url
    with serving(source, http_port, metrics_port, ready_timeout, "loadtest") as live:
        ...  # a given model of a given bundle (the serve stage: the model evaluate just passed)

live.plan is the bundle's serving.json. What goes wrong before the server is ready
(no gated run, a port in use, a server that exits or is not ready in time) raises
ServeFailed with the one line to print. On the way out, whatever ends the block (its
end, an exception, Ctrl-C, or SIGTERM, which is turned into KeyboardInterrupt while
the block runs), the server is stopped with signals held off, so a second Ctrl-C
cannot cut the clean-up short.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from ..folders import StepError, model_format, read_meta
from ..tokenizer import TokenizerError
from .handlers import Handler, Unservable, handler_for
from .local_repository import write_repository
from .runs import NoServedModel, find_gated_run
from .server import ServerError, TritonServer, check_port, find_triton
from .settings import Batching, SettingsError, read_batching, read_plan


class ServeFailed(Exception):
    """The model cannot be served; the message is the line to print after `error: `."""


class Source(NamedTuple):
    """What to serve, and where the server's files (repository, backends, log) go."""

    bundle: Path  # the bundle whose serving.json sets the batching and the queue
    model: Path  # the model folder evaluate scored and passed
    metrics: dict[str, Any]  # evaluate's metrics.json for it (its gates, for the progress line)
    folder: Path  # the Triton repository, backends and log are written here
    run: str  # the run it comes from, as the report names it
    origin: str  # how the progress line names it: "run <timestamp> of <spec>", "this run"


def gated_source(name: str, runs_root: Path, rerun: str) -> Source:
    """The model of runs/<name>'s last successful run (runs.find_gated_run), served from
    runs/<name>/serve/; ServeFailed when there is none."""
    try:
        run = find_gated_run(runs_root, name, rerun)
    except NoServedModel as exc:
        raise ServeFailed(str(exc)) from None
    origin = f"run {run.record.name} of {name}"
    return Source(run.bundle, run.model, run.metrics, runs_root / name / "serve", run.record.name, origin)


class Served(NamedTuple):
    run: Source
    meta: dict[str, Any]  # the served model's llmc.json
    handler: Handler  # its request contract (tensors), without a backend
    model_name: str
    batching: Batching
    plan: dict[str, Any]  # the bundle's serving.json
    server: TritonServer

    @property
    def infer_url(self) -> str:
        return f"{self.server.url}/v2/models/{self.model_name}/infer"


def say(text: str) -> None:
    print(text, flush=True)


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prepare(source: Source, http_port: int, metrics_port: int, label: str) -> tuple:
    try:
        meta = read_meta(source.model)
        handler = handler_for(meta)
        batching = read_batching(source.bundle)
        plan = read_plan(source.bundle)
        model_name = str(meta["model"].get("name") or plan.get("model") or "model")
        fmt = model_format(source.model)
        install = find_triton()
        check_port(http_port, "--http-port")
        check_port(metrics_port, "--metrics-port")
        repo = write_repository(
            source.folder, model_name, handler, batching, source.model, install.python_backend, install.stub
        )
    except (SettingsError, ServerError, StepError, Unservable, TokenizerError) as exc:
        raise ServeFailed(str(exc)) from None
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise ServeFailed(f"{where}{exc.strerror or exc}") from None
    values = {g["metric"]: g["value"] for g in source.metrics.get("gates") or [] if g.get("value") is not None}
    gates = ", ".join(f"{metric} {value:.4g}" for metric, value in values.items())
    say(f"{label}: {source.origin}: {source.model} ({fmt}; passed its gates{': ' + gates if gates else ''})")
    say(
        f"{label}: dynamic batching up to {batching.max_batch_size} "
        f"(preferred {batching.preferred_batch_sizes or 'any'}, queue delay {batching.max_queue_delay_microseconds} µs); "
        f"queue: at most {batching.max_queue_size} requests, each rejected after "
        f"{batching.timeout_microseconds / 1000:g} ms (the SLA's p99); from {batching.source}"
    )
    server = TritonServer(install, repo.root, repo.backends, repo.log, http_port, metrics_port)
    say(f"{label}: starting tritonserver with {repo.config} (log: {repo.log})")
    return meta, handler, model_name, batching, plan, server


@contextmanager
def served(
    name: str,
    runs_root: Path,
    rerun: str,
    http_port: int,
    metrics_port: int,
    ready_timeout: float,
    label: str = "serve",
    on_stop: Callable[[], None] | None = None,
) -> Iterator[Served]:
    """runs/<name>'s gated model on a ready Triton at 127.0.0.1:`http_port`, stopped on
    the way out (module docstring). `label` starts the progress lines; `on_stop` is
    called before the server is stopped when Ctrl-C or SIGTERM ended the block."""
    source = gated_source(name, runs_root.resolve(), rerun)
    with serving(source, http_port, metrics_port, ready_timeout, label, on_stop) as live:
        yield live


@contextmanager
def serving(
    source: Source,
    http_port: int,
    metrics_port: int,
    ready_timeout: float,
    label: str = "serve",
    on_stop: Callable[[], None] | None = None,
) -> Iterator[Served]:
    """`source`'s model on a ready Triton at 127.0.0.1:`http_port`, stopped on the way out
    (as `served`)."""
    meta, handler, model_name, batching, plan, server = _prepare(source, http_port, metrics_port, label)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops the server as Ctrl-C does
    started = time.monotonic()
    try:
        server.start()
        server.wait_ready(ready_timeout)
        say(f"{label}: {model_name} ready in {time.monotonic() - started:.1f} s")
        yield Served(source, meta, handler, model_name, batching, plan, server)
    except ServerError as exc:
        raise ServeFailed(str(exc)) from None
    except KeyboardInterrupt:
        if on_stop is not None:
            on_stop()
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut the clean-up short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            server.stop()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, previous)
        if not server.running():
            say(f"{label}: stopped")


def _interrupt(signum, frame):
    raise KeyboardInterrupt
