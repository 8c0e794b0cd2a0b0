"""`llmc serve SPEC [--profile P]`: the model the last successful run gated, on a
local Triton server, until Ctrl-C or SIGTERM.

Exit status: 0 stopped by Ctrl-C or SIGTERM (the server stopped cleanly); 1 nothing
to serve (no successful run: the message names the `llmc run` that makes one), a
port in use, or a server that failed to start or died (with the end of its log).
Misuse of the command line (exit 2) is caught by the CLI before this runs.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from ..folders import StepError, model_format, read_meta
from ..tokenizer import TokenizerError
from .handlers import Unservable, handler_for
from .local_repository import write_repository
from .runs import NoServedModel, find_gated_run
from .server import ServerError, TritonServer, check_port, find_triton
from .settings import SettingsError, read_batching

EXIT_OK, EXIT_FAILED = 0, 1


def say(text: str) -> None:
    print(text, flush=True)


def serve(
    *,
    name: str,
    runs_root: Path,
    rerun: str,
    http_port: int,
    metrics_port: int,
    ready_timeout: float,
) -> int:
    """Serve runs/<name>'s gated model; returns the exit status (module docstring)."""
    runs_root = runs_root.resolve()
    try:
        run = find_gated_run(runs_root, name, rerun)
        meta = read_meta(run.model)
        handler = handler_for(meta)
        model_name = str(meta["model"].get("name") or name)
        batching = read_batching(run.bundle)
        fmt = model_format(run.model)
        install = find_triton()
        check_port(http_port, "--http-port")
        check_port(metrics_port, "--metrics-port")
        repo = write_repository(
            runs_root / name / "serve", model_name, handler, batching, run.model, install.python_backend, install.stub
        )
    except (NoServedModel, SettingsError, ServerError, StepError, Unservable, TokenizerError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_FAILED
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        sys.stderr.write(f"error: {where}{exc.strerror or exc}\n")
        return EXIT_FAILED
    values = {g["metric"]: g["value"] for g in run.metrics.get("gates") or [] if g.get("value") is not None}
    gates = ", ".join(f"{metric} {value:.4g}" for metric, value in values.items())
    say(f"serve: run {run.record.name} of {name}: {run.model} ({fmt}; passed its gates{': ' + gates if gates else ''})")
    say(
        f"serve: dynamic batching up to {batching.max_batch_size} "
        f"(preferred {batching.preferred_batch_sizes or 'any'}, queue delay {batching.max_queue_delay_microseconds} µs); "
        f"queue: at most {batching.max_queue_size} requests, each rejected after "
        f"{batching.timeout_microseconds / 1000:g} ms (the SLA's p99); from {batching.source}"
    )
    server = TritonServer(install, repo.root, repo.backends, repo.log, http_port, metrics_port)
    say(f"serve: starting tritonserver with {repo.config} (log: {repo.log})")
    # SIGTERM (a service manager, `kill`) stops the server as Ctrl-C does.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    try:
        server.start()
        server.wait_ready(ready_timeout)
        say(f"serve: {model_name} ready in {time.monotonic() - started:.1f} s")
        say(
            f"serving {model_name} on {server.url}/v2/models/{model_name}/infer "
            f"(metrics on http://127.0.0.1:{metrics_port}/metrics); Ctrl-C stops it"
        )
        while server.running():
            time.sleep(0.5)
        sys.stderr.write(
            f"error: tritonserver stopped on its own (status {server.proc and server.proc.returncode}){server.log_tail()}\n"
        )
        return EXIT_FAILED
    except ServerError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        say("serve: stopping tritonserver")
        return EXIT_OK
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut the clean-up short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        server.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, previous)
        if not server.running():
            say("serve: stopped")


def _interrupt(signum, frame):
    raise KeyboardInterrupt
