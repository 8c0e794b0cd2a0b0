"""The real bundles' serving configs and the protobuf text parser, for
test_target_serving.py and test_target_serving_runs.py. Imports protobuf: import it
after the test module's importorskip."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from helpers import ROOT, BundleCache


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The bundle of a checked-in spec, built once per module (tests only read it)."""
    return BundleCache(tmp_path_factory)


def spec_path(name: str) -> Path:
    return ROOT / "specs" / f"{name}.llm"


def parse(text: str, message):
    return text_format.Parse(text, message)


def relative_files(out: Path) -> set[str]:
    return {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
