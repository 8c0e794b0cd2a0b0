"""What compression buys on this CPU, measured side by side in one run: fp32 ONNX vs
int8 (dynamic and static) vs structured-pruned int8, on a student large enough for
quantization to matter.

    .venv/bin/python bench/bench_compress.py [--steps N] [--finetune-steps N] [--sparsity F] [--runs N]

Builds specs/translator.llm's local profile (its data, its quantize step's calibration
file and samples, its serving max batch and its BLEU gate's max_drop come from the
bundle), then, with the runtime's own code:
  - builds a student with the zoo (zoo_torch: 2 + 2 layers, d_model 256, 4 heads,
    d_ff 1024: 3.79M parameters) and trains it briefly on the dates data
    (frameworks/torch.py's training loop, the compress steps' own);
  - exports it to ONNX (steps/export.py) and quantizes that, int8 dynamic and int8
    static (steps/quantize.py);
  - prunes it structurally (steps/prune.py: half the heads and FFN channels removed,
    then fine-tuned), exports and quantizes that the same two ways;
  - measures each served model.onnx with onnxruntime (the serving session options):
    file size, p50 latency at batch 1 and at the max batch on the same test inputs
    (the models take turns on each input, so a slow moment of this shared machine
    falls on all of them), and BLEU on the test split.
It prints one table, with the int8 model's size and batch-16 speed against the aims
(3x smaller, 1.5x faster) and each model's BLEU fall against max_drop. The aims are
reported, not asserted (exit 0 unless a step failed). Training is most of the time: 12
minutes for the defaults on 2 cores that other jobs shared; less on a free machine.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from types import ModuleType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SPEC = ROOT / "specs" / "translator.llm"
STUDENT = {"layers": 2, "d_model": 256, "heads": 4, "d_ff": 1024}
AIM_SMALLER, AIM_FASTER = 3.0, 1.5


def build_bundle(out: Path) -> Path:
    from llmc.compiler.cli import main as llmc

    with contextlib.redirect_stdout(io.StringIO()):
        code = llmc(["build", str(SPEC), "--profile", "local", "-o", str(out), "-q"])
    if code != 0:
        sys.exit(f"bench_compress: llmc build {SPEC} --profile local failed (exit {code})")
    return out


def script_constants(path: Path) -> ModuleType:
    """A generated script's module, for the constants the spec put in it (main is not run)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def step_args(model: Path, out: Path, data_root: Path, max_steps: int | None = None) -> argparse.Namespace:
    return argparse.Namespace(
        model=str(model), output=str(out), serve=None, data_root=str(data_root), max_steps=max_steps, limit=None
    )


def train_student(cfg: dict[str, Any], train_path: str, optimizer: dict[str, Any], steps: int, out: Path) -> int:
    """The student built by the zoo and trained `steps` steps with the compress steps' loop."""
    from llmc.runtime import zoo_torch
    from llmc.runtime.data import load_split
    from llmc.runtime.frameworks import TrainSettings
    from llmc.runtime.frameworks import torch as fw

    model = zoo_torch.build_model(cfg, seed=0)
    split = load_split(cfg, train_path)
    settings = TrainSettings(optimizer=optimizer, batch_size=32, seed=0)
    epochs = -(-steps * settings.batch_size // len(split))
    fw.train(model, split, settings, epochs, fw.task_loss, steps, say=lambda s: print(f"  train: {s}", file=sys.stderr))
    zoo_torch.save_model(out, model, cfg, None)
    return zoo_torch.count_params(model)


def compress(trained: Path, work: Path, data_root: Path, quant: ModuleType, valid: str) -> dict[str, Path]:
    """export, then int8 dynamic and static, through steps/; the served folders by name."""
    from llmc.runtime.steps.common import Step
    from llmc.runtime.steps.export import export
    from llmc.runtime.steps.quantize import quantize

    step = Step("export", None, step_args(trained, work, data_root))
    step.publish(export(step, valid))
    out = {"fp32": work / "export"}
    for method in ("dynamic", "static"):
        step = Step(f"int8-{method}", "export", step_args(trained, work, data_root))
        step.publish(quantize(step, "int8", method, quant.CALIBRATION, quant.SAMPLES, valid))
        out[f"int8 {method}"] = work / f"int8-{method}"
    return out


def latencies(sessions: dict[str, Any], inputs: list[np.ndarray], runs: int) -> dict[str, float]:
    """p50 ms per model over `runs` calls cycling through `inputs`; the models take turns
    on each input after two warm-up calls each."""
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for s in sessions.values():
        for x in inputs[:2]:
            s.run(None, {"input_ids": x})
    for i in range(runs):
        x = inputs[i % len(inputs)]
        for name, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, {"input_ids": x})
            times[name].append((time.perf_counter() - t0) * 1000.0)
    return {name: median(t) for name, t in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=150, help="training steps of the student (batch 32)")
    parser.add_argument("--finetune-steps", type=int, default=60, help="fine-tuning steps after pruning")
    parser.add_argument("--sparsity", type=float, default=0.5, help="share of heads and FFN channels removed")
    parser.add_argument("--runs", type=int, default=30, help="timed calls per model and batch size")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import onnxruntime as ort

    from llmc.runtime import metrics
    from llmc.runtime.backends import open_model, session_options
    from llmc.runtime.data import batches, load_split
    from llmc.runtime.folders import model_files, references, size_of
    from llmc.runtime.frameworks import TrainSettings
    from llmc.runtime.serving.settings import read_batching
    from llmc.runtime.steps.common import Step
    from llmc.runtime.steps.prune import prune

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_compress.") as tmp:
        work = Path(tmp)
        bundle = build_bundle(work / "bundle")
        model_json = json.loads((bundle / "model.json").read_text())
        data_root = SPEC.parent
        quant = script_constants(bundle / "compress" / "quantize.py")
        gates = {g.metric: g for g in script_constants(bundle / "evaluate" / "evaluate.py").CONFIG.gates}
        max_drop = gates["bleu"].max_drop
        max_batch = read_batching(bundle).max_batch_size
        data = model_json["model"]["data"]
        cfg = {**model_json["model"], "transformer": {**model_json["model"]["transformer"], **STUDENT}}
        path = {k: str(data_root / data[k]) for k in ("train", "valid", "test")}
        optimizer = {**model_json["train"]["optimizer"], "lr": 1e-3}

        t0 = time.perf_counter()
        params = train_student(cfg, path["train"], optimizer, args.steps, work / "student")
        print(
            f"bench_compress: student of {params:,} parameters trained {args.steps} steps in "
            f"{time.perf_counter() - t0:.0f} s",
            file=sys.stderr,
        )
        served = compress(work / "student", work / "full", data_root, quant, data["valid"])

        step = Step("prune", None, step_args(work / "student", work / "pruned", data_root, args.finetune_steps))
        settings = TrainSettings(optimizer=optimizer, batch_size=32, seed=0)
        report = step.publish(prune(step, "structured", args.sparsity, 1, settings, data["train"], data["valid"]))
        shape = report["shape"]
        pruned = compress(work / "pruned" / "prune", work / "pruned_c", data_root, quant, data["valid"])
        pruned_name = f"pruned {args.sparsity:.0%} fp32"
        served[pruned_name] = pruned["fp32"]
        for k in ("int8 dynamic", "int8 static"):
            served[f"pruned {args.sparsity:.0%} {k}"] = pruned[k]

        test = load_split(cfg, path["test"])
        refs = references(cfg, path["test"])
        so = session_options()
        sessions = {
            name: ort.InferenceSession(str(folder / "model.onnx"), so, providers=["CPUExecutionProvider"])
            for name, folder in served.items()
        }
        singles = [b["source"].astype(np.int64) for b in batches(test, np.arange(64), 1)]
        full = [b["source"].astype(np.int64) for b in batches(test, np.arange(len(test)), max_batch)]
        p50_1 = latencies(sessions, singles, args.runs)
        p50_b = latencies(sessions, full, args.runs)
        sizes = {name: size_of(model_files(folder)) for name, folder in served.items()}
        bleu = {
            name: metrics.measure(open_model(folder), test, refs, ["bleu"], batch_size=max_batch)[0]["bleu"]
            for name, folder in served.items()
        }

    base = "fp32"
    rows = [("model", "size", "smaller", "p50 b1", "faster b1", f"p50 b{max_batch}", f"faster b{max_batch}", "BLEU")]
    for name in served:
        rows.append(
            (
                name,
                f"{sizes[name] / 1e6:.2f} MB",
                f"x{sizes[base] / sizes[name]:.2f}",
                f"{p50_1[name]:.2f} ms",
                f"x{p50_1[base] / p50_1[name]:.2f}",
                f"{p50_b[name]:.2f} ms",
                f"x{p50_b[base] / p50_b[name]:.2f}",
                f"{bleu[name]:.2f} ({bleu[name] - bleu[base]:+.2f})",
            )
        )
    print(metrics.aligned(rows))
    print(
        f"\nstudent: encoder-decoder, {STUDENT['layers']} + {STUDENT['layers']} layers, d_model {STUDENT['d_model']}, "
        f"{STUDENT['heads']} heads, d_ff {STUDENT['d_ff']}: {params:,} parameters, {args.steps} training steps; "
        f"pruned: {shape['heads']} heads of {STUDENT['heads']}, d_ff {shape['d_ff']}, "
        f"{report['params']['after']:,} parameters, {report['finetune_steps']} fine-tuning steps"
    )
    print(
        f"latency: served model.onnx (greedy loop in the graph), onnxruntime CPU, p50 of {args.runs} calls "
        f"on {len(singles)} single test sources and {len(full)} batches of {max_batch}; "
        f"BLEU on {len(test)} test examples (max_drop {max_drop:g})"
    )
    for name in ("int8 dynamic", "int8 static", f"pruned {args.sparsity:.0%} int8 static"):
        smaller, faster = sizes[base] / sizes[name], p50_b[base] / p50_b[name]
        fall = bleu[base] - bleu[name]
        verdict = "ok   " if smaller >= AIM_SMALLER and faster >= AIM_FASTER and fall <= max_drop else "below"
        print(
            f"{verdict} {name}: x{smaller:.2f} smaller (aim {AIM_SMALLER:g}), x{faster:.2f} faster at batch "
            f"{max_batch} (aim {AIM_FASTER:g}), BLEU fall {fall:.2f} (max_drop {max_drop:g})"
        )
    print(f"bench_compress: {time.perf_counter() - started:.0f} s in all", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
