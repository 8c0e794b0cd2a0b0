"""Helpers for running the CLI in-process and comparing against expected files."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

from llmc.compiler.cli import main

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    """Run `llmc ARGS` in this process; returns (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse exits on misuse
                code = exc.code if isinstance(exc.code, int) else 2
    finally:
        os.chdir(old)
    return code, out.getvalue(), err.getvalue()


def compare_or_update(path: Path, actual: str, update: bool) -> None:
    if update:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != actual:
            path.write_text(actual, encoding="utf-8")
        return
    assert path.exists(), f"missing expected file {path.relative_to(ROOT)}: run pytest --update-golden and review it"
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, f"{path.relative_to(ROOT)} differs (pytest --update-golden rewrites it)"
