"""Which model `llmc serve` serves: the one the last successful `llmc run` of the spec
(and profile) gated.

A run's record (runs/<spec>/<timestamp>/run.json, records.py) says whether every
stage passed; evaluate's metrics (work/evaluate/metrics.json) name the model it
scored and whether it passed the gates. The model served is that one, and only
while it is still the model evaluate scored: a later run that rewrote it (a compress
stage that failed or was stopped) or failed the gates makes `llmc serve` refuse,
naming the command that makes a served model again. Pure: reads files, starts nothing.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, NamedTuple

_RECORD = re.compile(r"\d{8}T\d{6}Z(-\d+)?")  # records.new_record's folder names


class NoServedModel(Exception):
    """No run has produced a gated model to serve; the message says why and what to run."""


class GatedRun(NamedTuple):
    record: Path  # runs/<spec>/<timestamp>/
    bundle: Path  # the bundle the run ran
    model: Path  # the model folder evaluate scored and passed
    metrics: dict[str, Any]  # work/evaluate/metrics.json


def find_gated_run(runs_root: Path, name: str, rerun: str) -> GatedRun:
    """The last successful run of `name` (runs/<name>/) and the model its evaluate stage
    passed; NoServedModel otherwise. `rerun` is the command that makes one, for the
    messages (`llmc run SPEC --profile P`)."""
    folder = runs_root / name
    records = _records(folder)
    if not records:
        raise NoServedModel(f"no run of {name} under {runs_root} yet: `{rerun}` trains, compresses and evaluates one")
    good = [(path, info) for path, info in records if _passed(info)]
    if not good:
        last_path, last = records[-1]
        raise NoServedModel(
            f"no successful run of {name} yet (the last, {last_path.name}, ended {_ended(last)}): "
            f"`{rerun}` makes one whose model passes the evaluate stage"
        )
    record, info = good[-1]
    metrics_path = folder / "work" / "evaluate" / "metrics.json"
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise NoServedModel(f"{metrics_path} is missing or unreadable: `{rerun}` evaluates the model again") from None
    if metrics.get("passed") is not True:
        raise NoServedModel(
            f"the last evaluation ({metrics_path}) failed the spec's gates: the model is not served; "
            f"fix it and `{rerun}`"
        )
    model = Path(str(metrics.get("model") or ""))
    if not model.is_absolute():
        model = (Path(str(info.get("bundle") or ".")) / model).resolve()
    if not model.exists():
        raise NoServedModel(f"the model evaluate passed, {model}, is gone: `{rerun}` makes it again")
    changed = newest_change(model)
    if changed > metrics_path.stat().st_mtime:
        raise NoServedModel(
            f"{model} changed after evaluate passed it (a later run stopped or failed midway?): "
            f"`{rerun}` evaluates it again"
        )
    bundle = Path(str(info.get("bundle") or ""))
    if not (bundle / "llmc.lock.json").is_file():
        raise NoServedModel(f"the bundle of run {record.name}, {bundle}, is gone: `{rerun}` builds it again")
    return GatedRun(record, bundle, model, metrics)


def _records(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The records of one spec, oldest first (their names are UTC timestamps)."""
    if not folder.is_dir():
        return []
    out = []
    for entry in sorted(folder.iterdir(), key=lambda p: _order(p.name)):
        if not (entry.is_dir() and _RECORD.fullmatch(entry.name)):
            continue
        try:
            info = json.loads((entry / "run.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(info, dict):
            out.append((entry, info))
    return out


def _order(name: str) -> tuple[str, int]:
    stamp, _, n = name.partition("-")
    return stamp, int(n) if n.isdigit() else 0


def _passed(info: dict[str, Any]) -> bool:
    """Every stage ok or up to date, evaluate among them (a `--stage train` run gates
    nothing), but for the serve stage: a model that missed the SLA under load still
    passed its gates, and `llmc serve` and `llmc loadtest` take it."""
    stages = [s for s in info.get("stages") or [] if s.get("name") != "serve"]
    evaluated = any(s.get("name") == "evaluate" and s.get("status") in ("ok", "skipped") for s in stages)
    gated = bool(stages) and all(s.get("status") in ("ok", "skipped") for s in stages)
    return gated and evaluated and info.get("target", "local") == "local"


def _ended(info: dict[str, Any]) -> str:
    for stage in info.get("stages") or []:
        if stage.get("status") not in ("ok", "skipped") and stage.get("name") != "serve":
            return f"{stage.get('status')} at {stage.get('name')}"
    stages = [s.get("name") for s in info.get("stages") or []]
    return f"without an evaluate stage (stages: {', '.join(map(str, stages)) or 'none'})"


def newest_change(path: Path) -> float:
    """The newest modification time of `path` and, for a folder, everything in it."""
    newest = path.stat().st_mtime
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            for item in dirs + files:
                try:
                    newest = max(newest, os.stat(os.path.join(root, item)).st_mtime)
                except OSError:
                    continue
    return newest
