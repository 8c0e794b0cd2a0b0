"""Shared test set-up: `--update-golden` rewrites expected outputs (golden files and
diagnostics .stderr files) instead of comparing; review the diff before committing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_addoption(parser):
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite golden files and expected diagnostics instead of comparing",
    )


@pytest.fixture
def update_golden(request) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture(autouse=True)
def _stable_environment(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("LLMC_DEBUG", raising=False)
    # Every test checks for real: a kept answer of `llmc check` (check_cache.py) would
    # hide what a test changed in the compiler. tests/unit/test_check_cache.py turns it on.
    monkeypatch.setenv("LLMC_NO_CACHE", "1")


# Under CI, a skipped test fails the run: a missing tool or package must not turn a
# proof into silence. Only what cannot exist on a CPU machine may skip, and each entry
# says why. Matched against the start of the skip's reason.
ALLOWED_SKIPS_IN_CI: dict[str, str] = {
    "needs a GPU": "the CI machines have no accelerator; bin/gpu-check runs these where one is lent",
    "needs TensorRT": "TensorRT installs only with a CUDA GPU",
}


_UNEXPLAINED_SKIPS: list[str] = []


def _skip_allowed(reason: str) -> bool:
    return any(reason.startswith(allowed) for allowed in ALLOWED_SKIPS_IN_CI)


def pytest_runtest_logreport(report):
    _note_skip(report)


def pytest_collectreport(report):
    # A module-level pytest.importorskip skips the whole file while it is collected.
    _note_skip(report)


def _note_skip(report) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        if not _skip_allowed(reason):
            _UNEXPLAINED_SKIPS.append(f"{report.nodeid}: {reason}")


def _ci() -> bool:
    import os

    return os.environ.get("CI") == "true"


def pytest_sessionfinish(session, exitstatus):
    if _ci() and _UNEXPLAINED_SKIPS and session.exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _ci() and _UNEXPLAINED_SKIPS:
        terminalreporter.section("skipped under CI=true without a reason on tests/conftest.py's allow-list")
        for line in _UNEXPLAINED_SKIPS:
            terminalreporter.line(line)
