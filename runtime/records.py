"""Run records: runs/<spec>/<timestamp>/ holds what a run did and what it measured.

Each record has the bundle's lock file, `run.json` (profile, target, stages with
status, seconds and exit code) and copies of the metrics each stage wrote.
`llmc runs` lists them.
"""

import json
import os
import shutil
import time
from pathlib import Path


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
    for rel in ("train/metrics.jsonl", "evaluate/metrics.json", "search/results.json"):
        src = work / rel
        if src.is_file():
            dest = record / rel.replace("/", "-")
            shutil.copy2(src, dest)
    info = dict(info)
    info["stages"] = [r._asdict() for r in results]
    info["status"] = "ok" if results and all(r.status in ("ok", "skipped") for r in results) else (
        results[-1].status if results else "nothing to run")
    tmp = record / "run.json.tmp"
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, record / "run.json")


def list_records(runs_root: Path, spec_name: str | None = None) -> list[tuple[str, dict]]:
    out = []
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
        lines.append(f"{name:<40} {str(info.get('profile') or '-'):<10} {info.get('status', '?'):<12} {stages}")
    return "\n".join(lines) + "\n"
