"""What every compress step shares: its command line, its folders (`Step`), the
one-rename publication of its output, and the data it reads."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import compare_backends, open_model
from ..data import Split
from ..folders import (
    META,
    StepError,
    configure_threads,
    default_data_root,
    load_rows,
    model_format,
    outputs_root,
    resolve_data,
)
from ..scripts import remove_on_failure, run_script
from . import measure


def step_arguments(description: str | None, extra: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model",
        default=None,
        help="the trained model folder (default $LLMC_OUTPUT/model: train's output; $LLMC_OUTPUT defaults to outputs/)",
    )
    p.add_argument(
        "--output",
        default=None,
        help="the compress stage's folder, shared by every step (default $LLMC_OUTPUT/compress)",
    )
    p.add_argument(
        "--serve",
        default=None,
        help="where the serving layout goes (default: serve/ beside --output, i.e. $LLMC_OUTPUT/serve)",
    )
    p.add_argument(
        "--data-root",
        default=None,
        help="relative data paths are relative to this folder (default $LLMC_DATA_ROOT, else the working directory)",
    )
    if extra:
        p.add_argument(
            "--max-steps", type=int, default=None, help="stop training after this many optimizer steps (smoke tests)"
        )
        p.add_argument(
            "--limit", type=int, default=None, help="use only the first N examples of each split (smoke tests)"
        )
    return p


def run_step(main: Callable[[Sequence[str] | None], int | None], max_batch: int | None, valid: str | None) -> int:
    """A compress script's entry point: run_script(main), each model timed at batch 1 and
    `max_batch` (the spec's serve.batching.max_batch_size) on the `valid` split's rows."""
    Step.measuring = measure.Settings(max_batch, valid)
    return run_script(main)


class Step:
    """One step's folders: where its input model is, and where it writes."""

    # How publish times the models (run_step sets the script's constants); by default
    # only sizes and parameters are measured.
    measuring = measure.Settings()

    def __init__(self, name: str, previous: str | None, args: argparse.Namespace):
        self.name = name
        self.previous = previous
        self.output = Path(args.output) if args.output else outputs_root() / "compress"
        self.serve_root = Path(args.serve) if getattr(args, "serve", None) else self.output.parent / "serve"
        self.data_root: str = args.data_root or default_data_root()
        self.max_steps: int | None = getattr(args, "max_steps", None)
        self.limit: int | None = getattr(args, "limit", None)
        model = Path(args.model) if args.model else outputs_root() / "model"
        self.input = self.output / previous if previous else model
        if previous and not self.input.exists():
            raise StepError(f"no model from the {previous} step at {self.input}: run compress/{previous}.py first")
        self.format = model_format(self.input)
        configure_threads(self.format)
        self.started = time.perf_counter()
        self.output.mkdir(parents=True, exist_ok=True)
        self.work = self.output / f".{name}.partial"
        if self.work.exists():
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
        remove_on_failure(self.work)

    def data(self, path: str | None) -> str | None:
        return resolve_data(path, self.data_root)

    def say(self, text: str) -> None:
        print(f"{self.name}: {text}", file=sys.stderr, flush=True)

    def needs(self, formats: tuple[str, ...], what: str) -> None:
        """StepError unless the input model is in one of `formats`; `what` completes
        "<step> needs ...": the message names the format found instead."""
        if self.format not in formats:
            raise StepError(f"{self.name} needs {what}, found {self.format} at {self.input}")

    def publish(self, report: dict[str, Any], product: str | None = None, served: bool = True) -> dict[str, Any]:
        """Move the finished folder into place, copy it to OUT/model, record the report
        with the step's row (measure.py: its model beside its input; `product` names the
        file in the folder that is this step's model when it is not the folder's served
        model, `served` False when the served model is not made from it)."""
        report = {
            "step": self.name,
            "input": str(self.input),
            **report,
            "seconds": round(time.perf_counter() - self.started, 2),
        }
        final = self.output / self.name
        row = self._row(product, final, served)
        report["row"] = row
        with open(self.work / "report.json", "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2, sort_keys=True, default=_json_default)
            f.write("\n")
        replace_dir(self.work, final)
        staged = self.output / ".model.partial"
        if staged.exists():
            shutil.rmtree(staged)
        shutil.copytree(final, staged)
        replace_dir(staged, self.output / "model")
        summary_path = self.output / "report.json"
        summary: dict[str, Any] = {}
        if summary_path.is_file() and self.previous is not None:  # the first step starts a new summary
            with contextlib.suppress(ValueError), open(summary_path, encoding="utf-8") as f:
                summary = json.load(f)
        order = [s for s in summary.get("steps", []) if s != self.name] + [self.name]
        summary.update({"steps": order, self.name: report})
        rows = [summary[s]["row"] for s in order if isinstance(summary.get(s), dict) and "row" in summary[s]]
        summary["rows"] = rows
        summary.pop("served", None)
        self.say(measure.row_line(row))
        if row["warning"]:
            self.say(f"warning: {row['warning']}")
        if self.name == measure.FINAL_STEP:
            checked = measure.check_served(rows, self.measuring, self.data_root)
            if checked is not None:
                summary["served"] = checked
                for note in checked.get("notes", []):
                    self.say(f"note: {note}")
                if checked["warning"]:
                    self.say(f"warning: {checked['warning']}")
        summary["warnings"] = [r["warning"] for r in rows if r.get("warning")] + (
            [summary["served"]["warning"]] if summary.get("served", {}).get("warning") else []
        )
        tmp = summary_path.with_suffix(".json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2, sort_keys=True, default=_json_default)
            f.write("\n")
        os.replace(tmp, summary_path)
        self.say(f"done in {report['seconds']} s: {final}")
        return report

    def _row(self, product: str | None, final: Path, served: bool) -> dict[str, Any]:
        """This step's model (in the partial folder, named as it will be published) timed
        in turns with its input."""
        t0 = time.perf_counter()
        before, after = measure.measure_models(
            [self.input, self.work / product if product else self.work], self.measuring, self.data_root
        )
        after["model"] = str(final / product if product else final)
        row = measure.make_row(self.name, before, after, self.measuring.max_batch, served)
        row["measure_seconds"] = round(time.perf_counter() - t0, 2)
        return row


def _json_default(x: object) -> int | float | str:
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON: {type(x).__name__}")


def replace_dir(src: Path, dst: Path) -> None:
    """Put `src` at `dst`, replacing what is there with one rename (the old folder is
    moved aside first, then deleted). A `dst` that llmc did not write is never replaced:
    StepError, and `src` (a partial folder) is removed by run_script."""
    aside = None
    if os.path.lexists(dst) and not _written_by_llmc(dst):
        raise StepError(
            f"refusing to replace {dst}: llmc did not write it (a model folder has {META}; a "
            f"serving folder holds only 1/ and config.pbtxt); move it away or pass another --output"
        )
    if dst.exists():
        aside = dst.with_name(f".{dst.name}.old")
        if aside.exists():
            shutil.rmtree(aside)
        os.rename(dst, aside)
    os.rename(src, dst)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def _written_by_llmc(folder: Path) -> bool:
    """A folder a step publishes: a model folder (it has llmc.json), or a serving folder
    holding only what place_for_serving writes."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    if (folder / META).is_file():
        return True
    names = set(os.listdir(folder))
    return "1" in names and names <= {"1", "config.pbtxt"} and (folder / "1").is_dir()


def copy_model(src: Path, dst: Path, leave_out: tuple[str, ...] = ("report.json",)) -> None:
    """Copy a model folder's contents (but `leave_out`) into `dst`."""
    for item in src.iterdir():
        if item.name not in leave_out:
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, dst / item.name)


def calibration_split(step: Step, meta: dict[str, Any], calibration: str | None, samples: int) -> Split:
    path = step.data(calibration)
    if not path:
        raise StepError("static quantization needs compress.quantize.calibration")
    return load_rows(meta["model"], path, meta.get("label_names"), limit=min(samples, step.limit or samples))


def check_against_input(step: Step, meta: dict[str, Any], valid_path: str | None) -> dict[str, Any] | None:
    """This step's model against its input on the first valid examples."""
    path = step.data(valid_path)
    if not path or not os.path.isfile(path):
        return None
    split = load_rows(meta["model"], path, meta.get("label_names"), limit=min(step.limit or 32, 32))
    return compare_backends(open_model(step.input), open_model(step.work), split)
