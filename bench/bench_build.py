"""Speed of code generation, as ratios against baselines measured in the same run.

    .venv/bin/python bench/bench_build.py [--runs N] [--specs N]

1. `llmc build specs/translator.llm`, warm, in CPU time against a bare
   `python -c pass` of the same interpreter, run alternately: bound 20x.
2. N distinct specs built in one process, each checked, rendered, verified and
   written atomically (to 50 directories in turn, so most writes replace a bundle):
   bound 15 ms each. The specs are the translator spec with another `epochs` and file
   name; every timed pass builds specs the process has not seen before.

Each figure is the minimum over repeated runs. Exits 1 when a bound is missed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from bench_check import CHILD_ENV, best_of, paired_cpu, report, unseen_variants  # noqa: E402

SPEC = ROOT / "specs" / "translator.llm"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--specs", type=int, default=1000)
    args = ap.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "bundle")
        build = [sys.executable, "-m", "llmc.compiler.cli", "build", "-q", str(SPEC.relative_to(ROOT)), "-o", out]
        import subprocess

        subprocess.run(build, cwd=ROOT, env=CHILD_ENV, check=True, stdout=subprocess.DEVNULL)  # warm caches
        base, cost = paired_cpu([sys.executable, "-c", "pass"], build, args.runs)
        ok &= report(
            "llmc build translator.llm (CPU, warm) / python -c pass",
            cost / base,
            20.0,
            f"{cost * 1e3:.1f} ms vs {base * 1e3:.1f} ms",
        )

        from llmc.compiler.bundle import build_files, write_bundle
        from llmc.compiler.driver import check_spec

        text = SPEC.read_text()

        def build_all() -> None:
            for i, (path, variant) in enumerate(unseen_variants(text, args.specs)):
                result = check_spec(path, text=variant)
                assert result.ok, result.diagnostics
                write_bundle(build_files(result), os.path.join(tmp, "many", str(i % 50)))

        for _, variant in unseen_variants(text, 5):  # warm the templates and the lark tables
            write_bundle(build_files(check_spec("specs/warm.llm", text=variant)), os.path.join(tmp, "warm"))
        each_ms = best_of(build_all, 3) / args.specs * 1e3
        ok &= report(
            f"{args.specs} specs built and written in one process (ms each)",
            each_ms,
            15.0,
            f"{each_ms / (base * 1e3):.2f}x python start-up",
        )
    return 0 if ok else 1


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
