"""`llmc serve SPEC [--profile P]`: the model the last successful run gated, on a
local Triton server, until Ctrl-C or SIGTERM.

Exit status: 0 stopped by Ctrl-C or SIGTERM (the server stopped cleanly); 1 nothing
to serve (no successful run: the message names the `llmc run` that makes one), a
port in use, or a server that failed to start or died (with the end of its log).
Misuse of the command line (exit 2) is caught by the CLI before this runs.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from .session import ServeFailed, say, served

EXIT_OK, EXIT_FAILED = 0, 1


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
    try:
        with served(
            name,
            runs_root,
            rerun,
            http_port,
            metrics_port,
            ready_timeout,
            "serve",
            on_stop=lambda: say("serve: stopping tritonserver"),
        ) as live:
            say(
                f"serving {live.model_name} on {live.infer_url} "
                f"(metrics on http://127.0.0.1:{metrics_port}/metrics); Ctrl-C stops it"
            )
            server = live.server
            while server.running():
                time.sleep(0.5)
            code = server.proc and server.proc.returncode
            sys.stderr.write(f"error: tritonserver stopped on its own (status {code}){server.log_tail()}\n")
            return EXIT_FAILED
    except ServeFailed as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_OK
