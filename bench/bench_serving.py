"""The serving path's efficiency, as a ratio measured in one run: the capacity of the
local Triton server (`llmc loadtest`'s sweep: the highest rate at which the SLA's p99
held) against a bare loop over the same model, on the same machine: the served model
opened as the server opens it (onnxruntime for the translator) and called back to back
on full batches of the plan's max_batch_size, built from the same requests, with no
server, no HTTP and no queue.

    .venv/bin/python bench/bench_serving.py [--spec specs/translator.llm] [--profile local] [--seconds 5]

Needs a gated run of the spec (bin/demo, or `llmc run SPEC --profile P`). The ratio is
reported, with the aim of 0.7; it is not a bound (exit 0 unless a step failed): on a
CPU the server's cost per request, not the model, sets the capacity (docs/estimates.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
AIM = 0.7


def bare_loop(model: Path, bundle: Path, data_root: Path, seconds: float) -> tuple[float, int]:
    """Requests per second of the served model called back to back on full batches, and the batch size."""
    from llmc.runtime.backends import open_model
    from llmc.runtime.folders import read_meta
    from llmc.runtime.serving import loadgen
    from llmc.runtime.serving.handlers import handler_for
    from llmc.runtime.serving.settings import read_batching

    meta = read_meta(model)
    handler = handler_for(meta, open_model(model))
    batch = read_batching(bundle).max_batch_size
    examples = loadgen.request_examples(handler, meta["model"], loadgen.data_paths(bundle / "model.json", data_root))
    batches = [
        [row for example in examples[i : i + batch] for row in handler.rows(example)]
        for i in range(0, len(examples) - batch + 1, batch)
    ]
    handler.answer(batches[0])  # warm-up: lazy initialisation is not the loop's cost
    served, started, i = 0, time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        rows = batches[i % len(batches)]
        handler.answer(rows)
        served += len(rows)
        i += 1
    return served / (time.perf_counter() - started), batch


def server_capacity(spec: Path, profile: str | None, runs: Path) -> float:
    """`llmc loadtest`'s measured capacity (its sweep), from the report it writes."""
    argv = [str(Path(sys.executable).parent / "llmc"), "loadtest", str(spec), "--duration", "5"]
    argv += ["--profile", profile] if profile else []
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode not in (0, 3):  # 3: the SLA was missed, and the capacity is still measured
        sys.exit(f"bench_serving: llmc loadtest failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    latest = max((runs / "loadtests").iterdir(), key=lambda p: p.name)
    results = json.loads((latest / "results.json").read_text())
    capacity = (results.get("sweep") or {}).get("capacity_rps")
    if not capacity:
        sys.exit(f"bench_serving: the load test measured no capacity (see {latest / 'report.md'})")
    return float(capacity)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default="specs/translator.llm")
    parser.add_argument("--profile", default="local")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the bare loop (default 5)")
    args = parser.parse_args()
    from llmc.runtime.serving.runs import NoServedModel, find_gated_run

    spec = (ROOT / args.spec).resolve()
    name = spec.stem + (f"-{args.profile}" if args.profile else "")
    runs = ROOT / "runs"
    try:
        run = find_gated_run(runs, name, f"llmc run {args.spec} --profile {args.profile}")
    except NoServedModel as exc:
        sys.exit(f"bench_serving: {exc}")
    bare, batch = bare_loop(run.model, run.bundle, spec.parent, args.seconds)
    capacity = server_capacity(spec, args.profile, runs / name)
    ratio = capacity / bare
    print(
        f"{'ok   ' if ratio >= AIM else 'below'} local Triton capacity / bare loop over the same model (batch {batch}): "
        f"{ratio:.2f} (aim {AIM}) — {capacity:.0f} vs {bare:.0f} req/s, {name} on this machine"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
