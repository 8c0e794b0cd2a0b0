"""Derived facts: computed once from the IR, shown by `llmc check`, used by checks and targets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Facts:
    params: int | None = None
    student_params: int | None = None
    memory: Any = None
    latency: Any = None
    sizing: Any = None


def derive_facts(ir) -> Facts:
    return Facts()
