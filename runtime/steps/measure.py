"""Whether a compress step pays: its model measured beside its input, the same way
for every format (backends.open_model: torch, onnxruntime, the SavedModel, TensorFlow
Lite), when the step publishes (common.Step.publish).

A row per step, in OUT/report.json's `rows` and the step's own report.json:

    step, served      the step's name; whether the served model is made from this
                      step's model (false: TensorFlow Lite, which is measured only)
    input, output     each {model, format, bytes, params, latency}: bytes on disk of
                      the served files, parameters (stored weights: the torch module's,
                      the SavedModel's trainable variables, the ONNX and TensorFlow Lite
                      constants), latency {batch_1, max_batch} each {p50_s, p99_s, runs}
    max_batch         the spec's serve.batching.max_batch_size (null: no serve block,
                      batch 1 only)
    verdict           "slower": the output's p50 is more than MARGIN above the input's
                      at batch 1 or at max_batch (`slower_at` lists which: a server
                      runs batch 1 under light traffic, full batches under load);
                      "faster": more than MARGIN below at `compared_at` (max_batch, else
                      batch_1) and slower at neither; "same"; "not timed"
    change            output / input for bytes, params and the p50 at `compared_at`
    warning           the text printed when the step is slower, else null

The two models are loaded together and timed in turns (one call of each, repeated,
every other turn in reverse order), so a machine that slows down mid-way slows both
alike; when the output looks slower beyond MARGIN the two are timed again and only a
difference every round shows counts (on a busy machine one round of a model against
itself is 10% apart once in three or four tries). Each batch size gets up to RUNS calls per model within
BUDGET_S seconds (at least MIN_RUNS) after one warm-up call; p99 of so few calls is
close to the slowest call: an indicator, not the serve stage's SLA measurement. The
inputs are the first rows of the spec's valid split (batch 1: the first row; rows are
repeated when the split is shorter than max_batch).

The last step (build_engine) also checks the served model against every model it was
made from (the trained model and each earlier step's output on its chain, from their
rows): when one of them was faster by more than MARGIN at either batch size, the two
are timed again in turns, and a confirmed difference is a warning (`served` in the
summary; `notes` when a measured-only model was faster). llmc only warns: which model
is served stays the spec's choice (drop the step that does not pay).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..backends import Backend, open_model
from ..data import DataError, Split, batches
from ..folders import StepError, files_size, load_rows, model_files, resolve_data
from ..metrics import percentile

MARGIN = 0.10  # slower than the input by more than this is beyond the noise of timing in turns here
RUNS = 15  # timed calls per model and batch size, at most
MIN_RUNS = 3  # ... and at least, however slow the model
BUDGET_S = 1.0  # seconds per batch size for both models together, past which no new turn starts
FINAL_STEP = "build_engine"  # the last step of every pipeline: it places the served model
TRAINED = "trained"  # the label of the compress stage's input (--model) in the served check

Batch = dict[str, np.ndarray]


class Settings(NamedTuple):
    """What the compiler decided for the measurement (the compress scripts' constants)."""

    max_batch: int | None = None  # serve.batching.max_batch_size; None: batch 1 only
    valid: str | None = None  # the spec's valid split, relative to --data-root


# --- the numbers of one model --------------------------------------------------------------------


def batch_sizes(max_batch: int | None) -> dict[str, int]:
    """{"batch_1": 1, "max_batch": N}: the latency keys of a row and their batch sizes."""
    sizes = {"batch_1": 1}
    if max_batch is not None and max_batch > 1:
        sizes["max_batch"] = int(max_batch)
    return sizes


def count_params(backend: Backend) -> int | None:
    """The weights a model stores, counted in its own format (None: the format cannot say)."""
    name = backend.name
    if name == "torch":
        model: Any = backend.model  # type: ignore[attr-defined]
        return int(sum(p.numel() for p in model.parameters()))
    if name in ("savedmodel", "keras"):
        import tensorflow as tf

        loaded = tf.saved_model.load(str(backend.path))
        variables = getattr(loaded, "trainable_variables", None) or getattr(loaded, "variables", [])
        return int(sum(int(v.shape.num_elements() or 0) for v in variables))
    if name == "onnxruntime":
        return onnx_params(backend.files()[0])
    if name == "tflite":
        return tflite_params(backend.files()[0])
    return None


def onnx_params(path: Path) -> int:
    """Elements of every initializer of the graph and its subgraphs (the greedy loop's
    body holds the decoder's), each name counted once; quantization's scales and zero
    points (onnxruntime names them *_scale, *_zero_point) are not weights."""
    import onnx

    seen: dict[str, int] = {}

    def walk(graph: Any) -> None:
        for init in graph.initializer:
            if not init.name.endswith(("_scale", "_zero_point")):
                seen.setdefault(init.name, math.prod(init.dims))
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    for g in attr.graphs:
                        walk(g)

    walk(onnx.load(str(path), load_external_data=False).graph)
    return int(sum(seen.values()))


def tflite_params(path: Path) -> int:
    """Elements of the constant tensors (those whose buffer holds data) of every subgraph."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(Path(path).read_bytes(), 0)
    total = 0
    for graph in model.subgraphs or []:
        for tensor in graph.tensors or []:
            buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers or []) else None
            if buffer is not None and buffer.data is not None and len(buffer.data):
                total += int(math.prod(int(d) for d in (tensor.shape if tensor.shape is not None else [])))
    return total


def describe(backend: Backend, path: Path) -> dict[str, Any]:
    """A model's format, bytes on disk (what is served) and parameters."""
    desc: dict[str, Any] = {"model": str(path), "format": backend.name, "bytes": files_size(backend.files())}
    try:
        desc["params"] = count_params(backend)
    except ImportError as exc:  # a reader this install lacks (onnx, TF Lite's schema): the row says so
        desc["params"], desc["params_note"] = None, f"not counted: {exc}"
    return desc


def sample_batches(split: Split, sizes: dict[str, int]) -> dict[str, Batch]:
    """The first rows of `split` as one batch per size (rows repeated when too few)."""
    out = {}
    for key, n in sizes.items():
        order = np.arange(n) % max(len(split), 1)
        out[key] = next(batches(split, order, n, drop_last=False))
    return out


def _call(backend: Backend) -> Callable[[Batch], Any]:
    return backend.generate if backend.generates else backend.classify


def time_in_turns(
    calls: Sequence[Callable[[], Any]], runs: int = RUNS, budget_s: float = BUDGET_S, min_runs: int = MIN_RUNS
) -> list[list[float]]:
    """Seconds of each call, timed one after the other, turn after turn: one untimed
    warm-up each, then up to `runs` turns, no new one after `budget_s` (at least `min_runs`).
    Every other turn runs them in reverse order, so that neither always follows the other
    (a framework's threads still spinning after a call slow the next one)."""
    for call in calls:
        call()
    times: list[list[float]] = [[] for _ in calls]
    order = list(enumerate(calls))
    start = time.perf_counter()
    for turn in range(runs):
        if turn >= min_runs and time.perf_counter() - start > budget_s:
            break
        for i, call in order if turn % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            call()
            times[i].append(time.perf_counter() - t0)
    return times


def latency_entry(seconds: Sequence[float]) -> dict[str, Any]:
    return {"p50_s": percentile(seconds, 50), "p99_s": percentile(seconds, 99), "runs": len(seconds)}


def time_models(backends: Sequence[Backend], split: Split | None, max_batch: int | None) -> list[dict[str, Any]]:
    """{batch_1, max_batch} latencies of each backend, timed in turns on the same batches.
    With two, when the second looks slower than the first beyond MARGIN, they are timed
    again (a second round, a second or so) and the entries pool both rounds, keeping each
    round's p50 (`rounds`): slower_at believes only a difference every round shows."""
    out: list[dict[str, Any]] = [{} for _ in backends]
    if split is None:
        return out
    for key, batch in sample_batches(split, batch_sizes(max_batch)).items():
        calls = [functools.partial(_call(b), batch) for b in backends]
        rounds = [time_in_turns(calls)]
        if len(calls) == 2 and slower(percentile(rounds[0][1], 50), percentile(rounds[0][0], 50)):
            rounds.append(time_in_turns(calls))
        for i in range(len(calls)):
            out[i][key] = latency_entry([t for r in rounds for t in r[i]])
            if len(rounds) > 1:
                out[i][key]["rounds"] = [percentile(r[i], 50) for r in rounds]
    return out


def timing_split(settings: Settings, data_root: str | None, backend: Backend) -> tuple[Split | None, str | None]:
    """The valid rows the models are timed on, or (None, why not)."""
    path = resolve_data(settings.valid, data_root)
    if not path:
        return None, "not timed: the spec names no valid split"
    n = max(batch_sizes(settings.max_batch).values())
    try:
        return load_rows(backend.model_cfg, path, backend.label_names, limit=n), None
    except (DataError, StepError, OSError, ImportError) as exc:  # timing never fails the step (s3fs missing, say)
        return None, f"not timed: {exc}"


def _served_bytes(path: Path) -> int:
    try:
        return files_size(model_files(path))
    except StepError:
        return files_size([path])


class Opened(NamedTuple):
    backend: Backend | None
    note: str | None  # why it could not be opened (a TensorRT plan here, say)


def open_for_timing(path: Path) -> Opened:
    try:
        return Opened(open_model(path), None)
    except StepError as exc:  # NeedsTensorRT among them: the row says so, the step goes on
        return Opened(None, str(exc))


def measure_models(paths: Sequence[Path], settings: Settings, data_root: str | None) -> list[dict[str, Any]]:
    """describe() and latency of each model at `paths`, timed in turns with each other."""
    opened = [open_for_timing(p) for p in paths]
    descs: list[dict[str, Any]] = []
    for path, o in zip(paths, opened):
        if o.backend is None:
            descs.append({"model": str(path), "format": None, "bytes": _served_bytes(path), "params": None})
        else:
            descs.append(describe(o.backend, path))
    live = [(i, o.backend) for i, o in enumerate(opened) if o.backend is not None]
    note = next((o.note for o in opened if o.note), None)
    split = None
    if live:
        split, why = timing_split(settings, data_root, live[0][1])
        note = note or why
    try:
        timed = time_models([b for _, b in live], split, settings.max_batch)
    except NotImplementedError as exc:  # TensorFlow Lite cannot generate
        timed, note = [{} for _ in live], f"not timed: {exc}"
    for (i, _), latency in zip(live, timed):
        descs[i]["latency"] = latency
    for d in descs:
        d.setdefault("latency", {})
        if not d["latency"] and note:
            d["note"] = note
    return descs


# --- the verdicts (pure: numbers in, words out) ----------------------------------------------------------


def common_keys(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Every batch size both models were timed at, batch_1 first."""
    return [k for k in ("batch_1", "max_batch") if k in (a.get("latency") or {}) and k in (b.get("latency") or {})]


def compared_key(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """The latency both models have that the row's p50 change is given at: max_batch
    when timed, else batch_1."""
    keys = common_keys(a, b)
    return keys[-1] if keys else None


def p50(desc: dict[str, Any], key: str) -> float:
    return float(desc["latency"][key]["p50_s"])


def ratio(after: float | None, before: float | None) -> float | None:
    if after is None or before is None or before <= 0:
        return None
    return round(after / before, 4)


def slower(after_s: float, before_s: float, margin: float = MARGIN) -> bool:
    return after_s > before_s * (1 + margin)


def slower_at(before: dict[str, Any], after: dict[str, Any], margin: float = MARGIN, rounds: bool = True) -> list[str]:
    """The batch sizes at which `after` is slower than `before` beyond `margin`: either
    counts, since a server runs batch 1 when traffic is light and full batches under load.
    When both were timed together in several rounds (`rounds` in their entries), every
    round must show it too, or it was the noise of a busy machine."""
    keys = []
    for k in common_keys(before, after):
        if not slower(p50(after, k), p50(before, k), margin):
            continue
        a, b = after["latency"][k].get("rounds"), before["latency"][k].get("rounds")
        if rounds and a and b and len(a) == len(b) and not all(slower(x, y, margin) for x, y in zip(a, b)):
            continue
        keys.append(k)
    return keys


def verdict(before: dict[str, Any], after: dict[str, Any], margin: float = MARGIN) -> str:
    """ "slower" at either batch size beyond the margin; else "faster" when faster at the
    compared one (the max batch), "same" within the margin; "not timed"."""
    key = compared_key(before, after)
    if key is None:
        return "not timed"
    if slower_at(before, after, margin):
        return "slower"
    return "faster" if slower(p50(before, key), p50(after, key), margin) else "same"


def batch_words(key: str, max_batch: int | None) -> str:
    return f"batch {max_batch}" if key == "max_batch" else "batch 1"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def size_words(after: dict[str, Any], before: dict[str, Any]) -> str:
    r = ratio(after.get("bytes"), before.get("bytes"))
    if r is None:
        return ""
    if r < 1:
        return f"; it is {1 / r:.1f}x smaller on disk ({before['bytes']:,} -> {after['bytes']:,} bytes)"
    return f"; it is {r:.1f}x the size on disk ({before['bytes']:,} -> {after['bytes']:,} bytes)"


def latency_words(before: dict[str, Any], after: dict[str, Any], keys: Sequence[str], max_batch: int | None) -> str:
    """`at batch 1: p50 3.40 ms vs 2.69 ms (+26%)` for each key, joined."""
    parts = []
    for key in keys:
        a, b = p50(after, key), p50(before, key)
        parts.append(f"at {batch_words(key, max_batch)}: p50 {ms(a)} vs {ms(b)} (+{a / b - 1:.0%})")
    return " and ".join(parts)


def step_warning(row: dict[str, Any]) -> str | None:
    """The warning of a step slower than its input, or None."""
    before, after = row["input"], row["output"]
    keys = slower_at(before, after)
    if not keys:
        return None
    follows = (
        "the models after it, and the served one, inherit the cost"
        if row.get("served", True)
        else "it is measured only, not served"
    )
    return (
        f"step {row['step']} does not pay: its model ({after['format']}) is slower than its input "
        f"({before['format']}) {latency_words(before, after, keys, row.get('max_batch'))}, beyond the "
        f"{MARGIN:.0%} margin{size_words(after, before)}. On this machine the step costs latency: "
        f"{follows}; drop it from the spec's compress block unless size matters more than speed"
    )


def make_row(
    step: str, before: dict[str, Any], after: dict[str, Any], max_batch: int | None, served: bool = True
) -> dict[str, Any]:
    """A step's row: both models, the comparison, and the warning when it does not pay."""
    key = compared_key(before, after)
    row: dict[str, Any] = {
        "step": step,
        "served": served,
        "max_batch": max_batch if max_batch is not None and max_batch > 1 else None,
        "input": before,
        "output": after,
        "verdict": verdict(before, after),
        "compared_at": key,
        "slower_at": slower_at(before, after),
        "change": {
            "bytes": ratio(after.get("bytes"), before.get("bytes")),
            "params": ratio(after.get("params"), before.get("params")),
            "p50": ratio(p50(after, key), p50(before, key)) if key else None,
        },
    }
    row["warning"] = step_warning(row)
    return row


def served_chain(rows: Sequence[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(label, model) of every model the served one was made from: the trained model
    (the first row's input) and each earlier step's output on the served chain."""
    if not rows:
        return []
    chain = [(TRAINED, rows[0]["input"])]
    chain += [(r["step"], r["output"]) for r in rows[:-1] if r.get("served", True)]
    return [(label, fastest_seen(rows, model)) for label, model in chain]


def fastest_seen(rows: Sequence[dict[str, Any]], model: dict[str, Any]) -> dict[str, Any]:
    """`model` with, at each batch size, its lowest p50 in the rows: a model is timed twice,
    as one step's output and the next one's input, and the time beside a model of another
    framework can be the slower one (their thread pools contend)."""
    best = dict(model.get("latency") or {})
    for row in rows:
        for side in ("input", "output"):
            other = row[side]
            if other.get("model") != model.get("model"):
                continue
            for key, entry in (other.get("latency") or {}).items():
                if key not in best or entry["p50_s"] < best[key]["p50_s"]:
                    best[key] = entry
    return {**model, "latency": best}


def fastest_ancestor(
    served: dict[str, Any], chain: Sequence[tuple[str, dict[str, Any]]], margin: float = MARGIN
) -> tuple[str, dict[str, Any]] | None:
    """(label, model) of the model in `chain` the served model is slowest beside (its
    largest p50 ratio at a batch size where it is slower beyond `margin`), else None."""
    best, worst = None, 1.0
    for label, model in chain:
        for key in slower_at(model, served, margin, rounds=False):  # rows timed apart: their rounds do not pair
            r = p50(served, key) / p50(model, key)
            if r > worst:
                best, worst = (label, model), r
    return best


def served_warning(
    label: str, served: dict[str, Any], ancestor: dict[str, Any], keys: Sequence[str], max_batch: int | None
) -> str:
    which = "the trained model" if label == TRAINED else f"the {label} step's model"
    return (
        f"the served model ({served['format']}, {served['model']}) is slower than {which} it was made from "
        f"({ancestor['format']}, {ancestor['model']}) {latency_words(ancestor, served, keys, max_batch)}, "
        f"timed again in turns{size_words(served, ancestor)}. The steps after it cost latency on this "
        f"machine; llmc serves what the pipeline made: drop those steps from the spec's compress block to "
        f"serve the faster model"
    )


def unserved_faster(rows: Sequence[dict[str, Any]], margin: float = MARGIN) -> list[str]:
    """A note for each measured-only model (TensorFlow Lite) faster than the served one,
    from the rows as they are: it cannot be served, but the user should know."""
    served = rows[-1]["output"]
    notes = []
    for row in rows[:-1]:
        if row.get("served", True):
            continue
        keys = slower_at(row["output"], served, margin, rounds=False)  # timed apart: p50 only
        if keys:
            notes.append(
                f"the served model is slower than step {row['step']}'s model ({row['output']['format']}, measured, "
                f"not served) {latency_words(row['output'], served, keys, row.get('max_batch'))}; the server cannot "
                f"load that one (TF Serving serves SavedModels: a quantized served model comes from TF-TRT, "
                f'compress.engine = "tensorrt")'
            )
    return notes


def check_served(rows: Sequence[dict[str, Any]], settings: Settings, data_root: str | None) -> dict[str, Any] | None:
    """The served model (the last row's output) against the models it was made from: a
    difference the rows show is timed again in turns before it is reported."""
    if not rows or not rows[-1]["output"].get("latency"):
        return None
    served = rows[-1]["output"]
    suspect = fastest_ancestor(served, served_chain(rows))
    result: dict[str, Any] = {"model": served["model"], "slower_than": None, "warning": None}
    notes = unserved_faster(rows)
    if notes:
        result["notes"] = notes
    if suspect is None:
        return result
    label, ancestor = suspect
    again_ancestor, again_served = measure_models([Path(ancestor["model"]), Path(served["model"])], settings, data_root)
    result["timed_again"] = {label: again_ancestor.get("latency"), "served": again_served.get("latency")}
    keys = slower_at(again_ancestor, again_served)
    if keys:
        result["slower_than"] = label
        result["warning"] = served_warning(
            label,
            {**served, "latency": again_served["latency"]},
            {**ancestor, "latency": again_ancestor["latency"]},
            keys,
            settings.max_batch,
        )
    return result


def row_line(row: dict[str, Any]) -> str:
    """A row in a line, as the step prints it."""
    before, after = row["input"], row["output"]
    parts = [f"{before.get('bytes') or 0:,} -> {after.get('bytes') or 0:,} bytes"]
    if before.get("params") is not None and after.get("params") is not None:
        parts.append(f"{before['params']:,} -> {after['params']:,} parameters")
    key = row.get("compared_at")
    if key:
        parts.append(
            f"p50 at {batch_words(key, row.get('max_batch'))} {ms(p50(before, key))} -> {ms(p50(after, key))} "
            f"({row['verdict']})"
        )
    else:
        parts.append(after.get("note") or before.get("note") or "not timed")
    return "; ".join(parts)
