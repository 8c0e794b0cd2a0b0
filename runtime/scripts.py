"""How a generated script runs: `run_script(main)` turns the user's errors into one
line and exit status 2, and removes the half-written folders of a failed step.

Every generated Python script (train, the compress steps, evaluate) ends with
`sys.exit(run_script(main))`.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .config import ConfigError
from .data import DataError
from .folders import StepError
from .metrics import MetricError

# The folders of steps still being written, removed when the script fails.
_PARTIAL: list[Path] = []


def remove_on_failure(folder: Path) -> None:
    """Have run_script delete `folder` when the script ends; a step that finishes has
    already renamed it into place, so only a failed step's folder is left to delete."""
    _PARTIAL.append(folder)


def run_script(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run a generated script's main(): user errors are one line and exit 2, and a
    failed step leaves no half-written folder behind."""
    prog = os.path.basename(sys.argv[0]) or "llmc"
    try:
        return int(main(argv) or 0)
    except (StepError, DataError, ConfigError, MetricError, FileNotFoundError, NotImplementedError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        print(f"{prog}: error: a runtime dependency is missing: {exc} (install llmc[runtime])", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    finally:
        for folder in _PARTIAL:
            shutil.rmtree(folder, ignore_errors=True)
