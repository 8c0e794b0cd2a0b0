"""Speed of the front end, as ratios against baselines measured in the same run.

    .venv/bin/python bench/bench_check.py [--runs N]

1. `llmc check specs/translator.llm`, warm, in CPU time (user + sys of the child),
   against a bare `python -c pass` of the same interpreter: bound 12x.
2. Parsing a 150-line spec (lark LALR + lowering), in-process: bound 5 ms, also shown
   as a ratio of the interpreter's start-up.
3. 1000 distinct specs checked in one process (whole front end and checks): bound
   10 ms each.

Medians over repeated runs; the machine is shared, so run it on a quiet machine for
numbers worth quoting. Exits 1 when a bound is missed.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SPEC = ROOT / "specs" / "translator.llm"


def child_cpu(argv: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, cwd=ROOT)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        samples.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return statistics.median(samples)


def spec_of_lines(n: int) -> str:
    """The translator spec, padded with more metrics and lets to about n lines."""
    text = SPEC.read_text()
    lines = text.count("\n")
    extra = []
    i = 0
    while lines + len(extra) < n:
        extra.append(f"let pad_{i} = {i} * 2 + 1  # padding")
        i += 1
    return "\n".join(extra) + "\n" + text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--specs", type=int, default=1000)
    args = ap.parse_args()
    python = sys.executable
    llmc = [python, "-m", "llmc.compiler.cli", "check", str(SPEC.relative_to(ROOT))]
    ok = True

    subprocess.run(llmc, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)  # warm caches
    base = child_cpu([python, "-c", "pass"], args.runs)
    check = child_cpu(llmc, args.runs)
    ratio = check / base
    ok &= report("llmc check translator.llm (CPU, warm) / python -c pass", ratio, 12.0, f"{check * 1e3:.1f} ms vs {base * 1e3:.1f} ms")

    from llmc.compiler.diagnostics import Collector
    from llmc.compiler.driver import check_spec
    from llmc.compiler.parse import parse
    from llmc.compiler.source import SourceFile

    text = spec_of_lines(150)
    source = SourceFile("bench.llm", text)
    parse(source, Collector())  # build the parser once (the grammar is cached on disk)
    times = []
    for _ in range(max(args.runs, 30)):
        t = time.perf_counter()
        parse(source, Collector())
        times.append(time.perf_counter() - t)
    parse_ms = statistics.median(times) * 1e3
    ok &= report(f"parse a {text.count(chr(10))}-line spec (ms)", parse_ms, 5.0, f"{parse_ms / (base * 1e3):.2f}x python start-up")

    variants = [SPEC.read_text().replace("epochs      = 20", f"epochs      = {i + 1}") for i in range(args.specs)]
    check_spec(str(SPEC.relative_to(ROOT)), text=variants[0])
    t = time.perf_counter()
    for i, v in enumerate(variants):
        result = check_spec(f"specs/variant{i}.llm", text=v)
        assert result.ok, result.diagnostics
    each_ms = (time.perf_counter() - t) / len(variants) * 1e3
    ok &= report(f"{len(variants)} specs checked in one process (ms each)", each_ms, 10.0, f"{each_ms / (base * 1e3):.2f}x python start-up")
    return 0 if ok else 1


def report(name: str, value: float, bound: float, detail: str) -> bool:
    verdict = "ok" if value <= bound else "OVER"
    print(f"{verdict:4} {name}: {value:.2f} (bound {bound:g}) — {detail}")
    return value <= bound


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
