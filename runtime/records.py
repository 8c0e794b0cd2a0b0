"""Run records: runs/<spec>/<timestamp>/ holds what a run did and what it measured.

Each record has the bundle's lock file, `run.json` (profile, target, stages with
status, seconds and exit code) and copies of the metrics each stage wrote (the serve
stage's load-test report as serve-report.md, serve-results.json and its two plots;
the search stage's results, table and plot as search-results.json, search-report.md
and search-objective.png). The compress stage's report is copied as
compress-report.json, and run.json's `compress` carries its row per step with the
gated metrics evaluate gave each step's model (`compress_rows`). `llmc runs` lists them.

llmc owns only the folders `runs/<spec>/` it made, marked by a `.llmc-runs` file: the
stages replace folders under their `work/`, so a folder of that name holding anything
else is refused before a run starts (`claim_runs_folder`).
"""

import json
import os
import re
import shutil
import time
from pathlib import Path

MARKER = ".llmc-runs"
_RECORD = re.compile(r"\d{8}T\d{6}Z(-\d+)?")  # a record's folder name (new_record)
_SHOWN = 5  # entries named in a refusal; the rest are counted
# The serve stage's report in work/serve/, copied as serve-<name>; serving/loadreport.py writes these.
SERVE_REPORT = ("report.md", "results.json", "latency.png", "rates.png")
# The search stage's report in work/search/, copied as search-<name> (search_report.REPORT_FILES).
SEARCH_REPORT = ("results.json", "report.md", "objective.png")


class RunsFolderRefused(Exception):
    """`runs/<spec>/` exists and is not llmc's: a run would replace folders in it."""


def check_runs_folder(runs_root: Path, name: str) -> None:
    """Raise RunsFolderRefused unless `runs_root/name` is absent, empty, marked as
    llmc's, or holds only what llmc writes there (`work/` and records: runs from before
    the marker). Changes nothing."""
    if runs_root.exists() and not runs_root.is_dir():
        raise RunsFolderRefused(f"--runs-dir {runs_root} exists and is not a directory")
    folder = runs_root / name
    if not os.path.lexists(folder):
        return
    if not folder.is_dir():
        raise RunsFolderRefused(f"{folder} exists and is not a directory; pass --runs-dir a new directory")
    if (folder / MARKER).is_file():
        return
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise RunsFolderRefused(f"cannot read {folder}: {exc.strerror or exc}") from exc
    foreign = [
        e.name + ("/" if e.is_dir(follow_symlinks=False) else "")
        for e in entries
        if not (e.is_dir(follow_symlinks=False) and (e.name == "work" or _RECORD.fullmatch(e.name)))
    ]
    if foreign:
        more = f" and {len(foreign) - _SHOWN} more" if len(foreign) > _SHOWN else ""
        raise RunsFolderRefused(
            f"{folder} was not made by llmc (no {MARKER} in it), and a run replaces folders in it; it holds "
            f"{len(foreign)} entr{'y' if len(foreign) == 1 else 'ies'} llmc did not write: "
            f"{', '.join(foreign[:_SHOWN])}{more}; pass --runs-dir a new directory"
        )


def claim_runs_folder(runs_root: Path, name: str) -> Path:
    """`runs_root/name`, created if need be and marked as llmc's; RunsFolderRefused when
    it is someone else's (check_runs_folder) or cannot be created."""
    check_runs_folder(runs_root, name)
    folder = runs_root / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        marker = folder / MARKER
        if not marker.is_file():
            marker.write_text("llmc's runs of this spec: records, and work/, whose folders llmc replaces.\n")
    except OSError as exc:
        raise RunsFolderRefused(f"cannot create {folder}: {exc.strerror or exc}") from exc
    return folder


def new_record(runs_root: Path, spec_name: str) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    base = runs_root / spec_name
    base.mkdir(parents=True, exist_ok=True)
    for n in range(1000):
        path = base / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"cannot create a run record under {base}")


def finish_record(record: Path, bundle_root: Path, work: Path, info: dict, results) -> None:
    shutil.copy2(bundle_root / "llmc.lock.json", record / "llmc.lock.json")
    for rel in (
        "train/metrics.jsonl",
        "compress/report.json",
        "evaluate/metrics.json",
        *(f"search/{name}" for name in SEARCH_REPORT),
        *(f"serve/{name}" for name in SERVE_REPORT),
    ):
        src = work / rel
        if src.is_file():
            dest = record / rel.replace("/", "-")
            shutil.copy2(src, dest)
    info = dict(info)
    info["stages"] = [r._asdict() for r in results]
    compress = compress_rows(work)
    if compress is not None:
        info["compress"] = compress
    info["status"] = (
        "ok"
        if results and all(r.status in ("ok", "skipped") for r in results)
        else (results[-1].status if results else "nothing to run")
    )
    tmp = record / "run.json.tmp"
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, record / "run.json")


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def compress_rows(work: Path) -> dict | None:
    """run.json's `compress`: the compress stage's row per step (compress/report.json:
    size, parameters, latency beside its input, verdict, warning), each with the gated
    metrics and gate verdict evaluate gave that step's model (evaluate/metrics.json's
    `steps`, matched by step and model path), and the stage's warnings."""
    summary = _read_json(work / "compress" / "report.json")
    if summary is None or not isinstance(summary.get("rows"), list):
        return None
    scored = {}
    evaluated = _read_json(work / "evaluate" / "metrics.json") or {}
    for step in evaluated.get("steps") or []:
        scored[(step.get("step"), step.get("model"))] = step
    rows = []
    for row in summary["rows"]:
        step = scored.get((row.get("step"), (row.get("output") or {}).get("model")))
        rows.append(
            {
                **row,
                "metrics": step["metrics"] if step else None,
                "gates_passed": step["passed"] if step else None,
            }
        )
    return {"rows": rows, "warnings": summary.get("warnings") or [], "served": summary.get("served")}


def list_records(runs_root: Path, spec_name: str | None = None) -> list[tuple[str, dict]]:
    out: list[tuple[str, dict]] = []
    if not runs_root.is_dir():
        return out
    for spec_dir in sorted(runs_root.iterdir()):
        if not spec_dir.is_dir():
            continue
        for record in sorted(spec_dir.iterdir()):
            info_path = record / "run.json"
            if info_path.is_file():
                try:
                    info = json.loads(info_path.read_text())
                except ValueError:
                    continue
                # `llmc runs translator` lists translator's runs under every profile.
                if spec_name is None or spec_dir.name in (spec_name, f"{spec_name}-{info.get('profile')}"):
                    out.append((f"{spec_dir.name}/{record.name}", info))
    return out


def format_records(records: list[tuple[str, dict]]) -> str:
    if not records:
        return "no runs yet (llmc run SPEC records one under runs/)\n"
    lines = [f"{'run':<40} {'profile':<10} {'status':<12} stages"]
    for name, info in records:
        stages = ", ".join(f"{s['name']} {s['status']} {s['seconds']:.0f}s" for s in info.get("stages", []))
        lines.append(f"{name:<40} {info.get('profile') or '-'!s:<10} {info.get('status', '?'):<12} {stages}")
    return "\n".join(lines) + "\n"
