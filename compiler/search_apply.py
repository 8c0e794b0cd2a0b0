"""`llmc search apply`: write a finished search's best values back into the spec.

The edit is the smallest one that makes the spec say the best point, so the diff a
reviewer reads is the searched values and nothing else (spec_edits.py says where each
value goes and how it is written). A file that `llmc fmt` leaves unchanged is
formatted again after the edit (so aligned `=` stay aligned); the edited text must
check clean with the profile applied and carry every value where it takes effect, or
nothing is written.
"""

from __future__ import annotations

import difflib
import json
import math
import sys
from pathlib import Path
from typing import Any

from .fmt import write_text_atomically
from .source import SourceError, read_source
from .spec_edits import DIGITS, EditError, edited_spec

# The run record's copy of the search's results (records.py copies search/results.json).
RECORD_RESULTS = "search-results.json"


class ApplyError(Exception):
    """The search's results cannot be applied; the message says why. `status` is the exit code."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


# --- where the results are ----------------------------------------------------------


def find_results(spec: str, profile: str | None, runs_dir: str, source: str | None) -> Path:
    """The results.json to apply: --from (a run record, a search folder or the file), or
    the newest run record of this spec and profile that holds one, or the work folder's."""
    if source is not None:
        path = Path(source)
        for candidate in (path, path / RECORD_RESULTS, path / "results.json", path / "search" / "results.json"):
            if candidate.is_file():
                return candidate
        raise ApplyError(f"--from {source}: no search results there (a run record holds {RECORD_RESULTS})", status=2)
    name = Path(spec).stem + (f"-{profile}" if profile else "")
    folder = Path(runs_dir) / name
    records = sorted((p for p in folder.glob(f"*/{RECORD_RESULTS}") if p.is_file()), reverse=True)
    if records:
        return records[0]
    work = folder / "work" / "search" / "results.json"
    if work.is_file():
        return work
    run = f"llmc run {spec}" + (f" --profile {profile}" if profile else "") + " --stage search"
    raise ApplyError(f"no search results for {name} under {folder}: run `{run}` first, or pass --from")


def best_values(results_path: Path, spec: str, profile: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the best point's values by path, the space's distributions) of a results.json,
    after checking that it is a search of this spec under this profile."""
    try:
        results = json.loads(results_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ApplyError(f"{results_path}: not a search's results ({exc})") from None
    if not isinstance(results, dict) or "trials" not in results:
        raise ApplyError(f"{results_path}: not a search's results (no trials)")
    stem = Path(str(results.get("spec", ""))).stem
    if stem and stem != Path(spec).stem:
        raise ApplyError(f"{results_path} is a search of {results['spec']}, not of {spec}", status=2)
    if "profile" in results and results["profile"] != profile:
        searched = f"--profile {results['profile']}" if results["profile"] else "no profile"
        raise ApplyError(f"{results_path} is a search with {searched}: pass the same to `llmc search apply`", status=2)
    best = results.get("best")
    if not best:
        raise ApplyError(f"{results_path}: no trial succeeded, so there is no best point to apply")
    params = best.get("params")
    if not isinstance(params, dict) or not params:
        raise ApplyError(f"{results_path}: the best trial has no values")
    return params, dict(results.get("space") or {})


# --- the command -----------------------------------------------------------------------


def ir_value(ir: Any, path: str) -> Any:
    node: Any = ir.model_dump()
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def same_value(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=10.0 ** (1 - DIGITS), abs_tol=1e-12)
    return bool(a == b)


def run_apply(args: Any) -> int:
    """`llmc search apply SPEC [--profile P] [--from RUN] [--runs-dir DIR] [--dry-run]`."""
    from .compose import UnknownProfile
    from .diagnostic_output import render_human
    from .driver import check_spec

    spec = args.spec
    try:
        before = check_spec(spec, args.profile)
    except SourceError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except UnknownProfile as exc:
        sys.stderr.write(f"error: {spec} has no profile `{exc.name}` (profiles: {', '.join(exc.known) or 'none'})\n")
        return 2
    if not before.ok:
        sys.stderr.write(render_human([d for d in before.diagnostics if d.severity == "error"], before.sources))
        sys.stderr.write(f"error: {spec} has errors; fix them before applying a search\n")
        return 1
    try:
        source = read_source(spec)
        results = find_results(spec, args.profile, args.runs_dir, args.source)
        values, space = best_values(results, spec, args.profile)
        new_text, written = edited_spec(source, args.profile, values, space)
    except SourceError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except ApplyError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.status
    except EditError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    result = check_spec(spec, args.profile, text=new_text)
    errors = [d for d in result.diagnostics if d.severity == "error"]
    if errors or result.ir is None:
        sys.stderr.write(render_human(errors, result.sources))
        sys.stderr.write(f"error: with the best values written, {spec} would not check clean; nothing written\n")
        return 1
    for path in sorted(values):
        if not same_value(ir_value(result.ir, path), values[path]):
            sys.stderr.write(
                f"error: after the edit, `{path}` is {ir_value(result.ir, path)!r}, not {values[path]!r}: "
                f"something else in {spec} sets it; nothing written\n"
            )
            return 1
    sys.stderr.write(f"search results: {results}\n")
    if new_text == source.text:
        sys.stderr.write(f"{spec} already has the best values\n")
        return 0
    sys.stdout.writelines(
        difflib.unified_diff(source.text.splitlines(True), new_text.splitlines(True), f"a/{spec}", f"b/{spec}")
    )
    if args.dry_run:
        sys.stderr.write("dry run: nothing written\n")
        return 0
    write_text_atomically(spec, new_text)
    where = f"profile {args.profile}" if args.profile else "its blocks"
    shown = ", ".join(f"{p} = {t}" for p, t in written.items())
    sys.stderr.write(f"wrote {len(written)} value{'s' * (len(written) != 1)} into {where} of {spec}: {shown}\n")
    return 0
