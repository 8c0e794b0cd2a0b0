"""The compress stage's library: distill, prune, export, quantize, build an engine, and
open any model the stages write for evaluation.

The generated scripts (compress/*.py, evaluate/evaluate.py) fill in the spec's
settings and call the functions here. torch, TensorFlow, onnx and onnxruntime are
imported inside the functions that need them, so a TensorFlow bundle never imports
torch and the other way round.

Steps and folders
-----------------
Every step runs as `python compress/<step>.py --model DIR --output OUT [--data-root R]`
with the same two folders. A step reads the model that the step before it in the
bundle's pipeline wrote (`OUT/<previous step>/`), or `--model` when it is the first,
and writes:

    OUT/<step>/            the step's model and its report.json
    OUT/model/             a copy of the newest step's folder: what evaluate reads
    OUT/report.json        {"steps": [...], "<step>": report, ...}: every step so far
    SERVE/<name>/1/        build_engine only: the served model where the server reads
                           it (`place_for_serving`); SERVE is serve/ beside OUT

Without --model and --output (the k8s Jobs run the scripts bare) they default to
$LLMC_OUTPUT/model (train's output) and $LLMC_OUTPUT/compress; $LLMC_OUTPUT
defaults to outputs/, as for train.py.

Each folder is replaced in one rename, so an interrupted step never leaves half a
model, and re-running the stage starts again from `--model` (a step never reads its
own earlier output). Model folders:

    torch          model.pt + llmc.json                     (zoo_torch.save_model)
    tensorflow     SavedModel + model.weights.h5 + llmc.json (zoo_tf.save_model)
    onnx           model.onnx + llmc.json; for generation also encoder.onnx and
                   decoder.onnx (see "ONNX export")
    tflite         model.tflite + llmc.json                 (TensorFlow quantization)
    tensorrt       model.plan + llmc.json                   (TensorRT engine)

`llmc.json` always carries the model block (`"model"`), the label names and
`"format"`; ONNX folders add `"onnx"` (the graphs' names and I/O). A TensorFlow
quantize folder holds model.tflite beside the SavedModel; the SavedModel stays the
served model (`model_format` prefers it), model.tflite is measured by pointing
evaluate at the file.

$LLMC_THREADS caps the CPU threads of torch, onnxruntime and TensorFlow (unset:
their defaults). Set it where cores are shared: spinning thread pools on busy
cores made a 40-step training run here ten times slower than one thread.

ONNX export (torch)
-------------------
The legacy TorchScript exporter (`dynamo=False`, opset 17) exports the forward pass
with a dynamic batch (and sequence) axis. The served graph follows Triton's I/O
contract (compiler/targets/triton.py):

    mlp                    features float32 [B, inputs]   -> logits float32 [B, classes]
    encoder (classifier)   input_ids int64 [B, T]         -> logits float32 [B, classes]
    encoder-decoder,       input_ids int64 [B, T]         -> output_ids int64 [B, max_len]
    decoder

For generation the greedy loop runs inside the graph: export writes the encoder
(`encoder.onnx`: input_ids -> memory, memory_mask) and the decoder
(`decoder.onnx`: decoder_input_ids[, memory, memory_mask] -> logits [B, T, vocab])
as plain graphs, then `compose_greedy` joins them into `model.onnx`: the encoder
once, then an ONNX Loop whose body runs the decoder on the prefix generated so far
and appends each row's argmax, exactly as zoo_torch's `generate` does (BOS first,
stop when every row has produced EOS, PAD after it, at most max_len tokens). We
compose the graphs by hand rather than script the loop with TorchScript because
onnxruntime's static quantizer neither calibrates nor quantizes inside a Loop's
body: the two plain graphs are quantized (and calibrated) on their own, and the loop
is composed again around the quantized graphs. The plain graphs also give the
teacher-forced logits, which evaluate uses for perplexity and the tests for the
torch/ONNX comparison.

TensorFlow models are served as the SavedModel that zoo_tf writes (TF Serving, or
Triton's tensorflow_savedmodel): tf2onnx is not one of the runtime's dependencies
(nor installed where this was written), so there is no ONNX for them. Their
quantization is TensorFlow Lite's (`model.tflite`, for measuring on CPU); INT8/FP16
serving comes from TF-TRT at build_engine with engine "tensorrt".
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gzip
import hashlib
import json
import os
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .data import DataError, URI_SCHEMES, batches, load_split, read_rows
from .tokenizer import BOS, EOS, PAD

OPSET = 17
META = "llmc.json"


class StepError(Exception):
    """A step cannot run (a missing model, an impossible setting): the user's to fix.
    Reported as `<script>: error: ...` with exit status 2, never a traceback."""


class NeedsTensorRT(StepError):
    """TensorRT (or TF-TRT) is not installed on this machine."""


# --- paths and data ----------------------------------------------------------------------------


def default_data_root() -> str:
    return os.environ.get("LLMC_DATA_ROOT") or os.getcwd()


def resolve_data(path: str | None, data_root: str | os.PathLike | None) -> str | None:
    """A spec path (relative to the spec's folder, docs/bundle.md) made usable here:
    URIs and absolute paths as they are, the rest joined to --data-root."""
    if not path or path.startswith(URI_SCHEMES) or os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(os.fspath(data_root or default_data_root()), path))


def cpu_threads() -> int | None:
    """$LLMC_THREADS: the CPU threads torch, onnxruntime and TensorFlow may each use
    (unset: their defaults, one per core). Set it where the cores are shared (a pod
    under a CPU limit, a busy CI machine): spinning thread pools on oversubscribed
    cores make every call many times slower."""
    value = os.environ.get("LLMC_THREADS", "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise StepError(f"LLMC_THREADS={value!r}: expected a whole number of threads, at least 1")
    return int(value)


def configure_threads(fmt: str) -> None:
    """Apply $LLMC_THREADS to the framework of a model format, before it runs anything."""
    n = cpu_threads()
    if n is None:
        return
    if fmt == "torch":
        import torch

        torch.set_num_threads(n)
        with contextlib.suppress(RuntimeError):  # only allowed before the first parallel work
            torch.set_num_interop_threads(n)
    elif fmt in ("tensorflow", "tflite"):
        import tensorflow as tf

        with contextlib.suppress(RuntimeError):  # only allowed before TensorFlow's runtime starts
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(n)


_PARTIAL: list[Path] = []  # the folders of steps still being written, removed when a step fails


def run_script(main, argv=None) -> int:
    """Run a generated script's main(): user errors are one line and exit 2, and a
    failed step leaves no half-written folder behind."""
    from .config import ConfigError
    from .metrics import MetricError

    prog = os.path.basename(sys.argv[0]) or "llmc"
    try:
        return int(main(argv) or 0)
    except (StepError, DataError, ConfigError, MetricError, FileNotFoundError, NotImplementedError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        print(f"{prog}: error: a runtime dependency is missing: {exc} (install llmc[runtime])", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    finally:
        for folder in _PARTIAL:
            shutil.rmtree(folder, ignore_errors=True)


def read_meta(directory: str | os.PathLike) -> dict:
    path = Path(directory) / META
    if not path.is_file():
        raise StepError(f"{directory}: no {META} (not a model folder written by llmc)")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_meta(directory: str | os.PathLike, meta: dict) -> None:
    with open(Path(directory) / META, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")


def model_format(path: str | os.PathLike) -> str:
    """"torch" | "tensorflow" | "onnx" | "tflite" | "tensorrt" for a model folder (or
    file); StepError when there is no model there. The served format wins when a
    folder holds several (an engine over ONNX over the framework's own)."""
    p = Path(path)
    if p.is_file():
        by_suffix = {".pt": "torch", ".onnx": "onnx", ".tflite": "tflite", ".plan": "tensorrt"}
        if p.suffix in by_suffix:
            return by_suffix[p.suffix]
        raise StepError(f"{path}: not a model file (expected .pt, .onnx, .tflite or .plan)")
    if not p.is_dir():
        raise StepError(f"no model at {path}")
    # A TensorFlow folder may hold model.tflite beside the SavedModel (quantize): the
    # SavedModel is what TF Serving serves; point at model.tflite itself to measure it.
    for name, fmt in (("model.plan", "tensorrt"), ("model.onnx", "onnx"), ("saved_model.pb", "tensorflow"),
                      ("model.tflite", "tflite"), ("model.pt", "torch")):
        if (p / name).is_file():
            return fmt
    raise StepError(f"no model in {path} (expected model.pt, a SavedModel, model.onnx, model.tflite or model.plan)")


def model_files(path: str | os.PathLike) -> list[Path]:
    """The files that make up the served model (what model_size counts)."""
    p = Path(path)
    if p.is_file():
        return [p]
    fmt = model_format(p)
    if fmt == "tensorflow":
        return [p / "saved_model.pb", p / "variables"] + ([p / "assets"] if (p / "assets").exists() else [])
    return [p / {"torch": "model.pt", "onnx": "model.onnx", "tflite": "model.tflite", "tensorrt": "model.plan"}[fmt]]


def size_of(paths) -> int:
    from .metrics import files_size

    return files_size(list(paths))


def gzip_size(path: str | os.PathLike) -> int:
    """Bytes after gzip -6: zeroed weights only shrink a file once it is compressed."""
    total = 0
    for f in ([Path(path)] if Path(path).is_file() else sorted(Path(path).rglob("*"))):
        if f.is_file():
            with open(f, "rb") as fh:
                total += len(gzip.compress(fh.read(), 6))
    return total


# --- steps --------------------------------------------------------------------------------------


def outputs_root() -> Path:
    """Where the stages write when not told: $LLMC_OUTPUT (the k8s Jobs set it), else
    outputs/ (train.py's default). Under it: model/ (train), compress/, serve/, evaluate/."""
    return Path(os.environ.get("LLMC_OUTPUT") or "outputs")


def step_arguments(description: str, extra: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None,
                   help="the trained model folder (default $LLMC_OUTPUT/model: train's output; $LLMC_OUTPUT "
                        "defaults to outputs/)")
    p.add_argument("--output", default=None,
                   help="the compress stage's folder, shared by every step (default $LLMC_OUTPUT/compress)")
    p.add_argument("--serve", default=None,
                   help="where the serving layout goes (default: serve/ beside --output, i.e. $LLMC_OUTPUT/serve)")
    p.add_argument("--data-root", default=None,
                   help="relative data paths are relative to this folder (default $LLMC_DATA_ROOT, else the working directory)")
    if extra:
        p.add_argument("--max-steps", type=int, default=None, help="stop training after this many optimizer steps (smoke tests)")
        p.add_argument("--limit", type=int, default=None, help="use only the first N examples of each split (smoke tests)")
    return p


class Step:
    """One step's folders: where its input model is, and where it writes."""

    def __init__(self, name: str, previous: str | None, args):
        self.name = name
        self.previous = previous
        self.output = Path(args.output) if args.output else outputs_root() / "compress"
        self.serve_root = Path(args.serve) if getattr(args, "serve", None) else self.output.parent / "serve"
        self.data_root = args.data_root or default_data_root()
        self.max_steps = getattr(args, "max_steps", None)
        self.limit = getattr(args, "limit", None)
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
        _PARTIAL.append(self.work)

    def data(self, path: str | None) -> str | None:
        return resolve_data(path, self.data_root)

    def say(self, text: str) -> None:
        print(f"{self.name}: {text}", file=sys.stderr, flush=True)

    def publish(self, report: dict) -> dict:
        """Move the finished folder into place, copy it to OUT/model, record the report."""
        report = {"step": self.name, "input": str(self.input), **report,
                  "seconds": round(time.perf_counter() - self.started, 2)}
        with open(self.work / "report.json", "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2, sort_keys=True, default=_json_default)
            f.write("\n")
        final = self.output / self.name
        _replace_dir(self.work, final)
        staged = self.output / ".model.partial"
        if staged.exists():
            shutil.rmtree(staged)
        shutil.copytree(final, staged)
        _replace_dir(staged, self.output / "model")
        summary_path = self.output / "report.json"
        summary = {}
        if summary_path.is_file() and self.previous is not None:  # the first step starts a new summary
            with contextlib.suppress(ValueError), open(summary_path, encoding="utf-8") as f:
                summary = json.load(f)
        order = [s for s in summary.get("steps", []) if s != self.name] + [self.name]
        summary.update({"steps": order, self.name: report})
        tmp = summary_path.with_suffix(".json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2, sort_keys=True, default=_json_default)
            f.write("\n")
        os.replace(tmp, summary_path)
        self.say(f"done in {report['seconds']} s: {final}")
        return report


def _json_default(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON: {type(x).__name__}")


def _replace_dir(src: Path, dst: Path) -> None:
    """Put `src` at `dst`, replacing what is there with one rename (the old folder is
    moved aside first, then deleted). A `dst` that llmc did not write is never replaced:
    StepError, and `src` (a partial folder) is removed by run_script."""
    aside = None
    if os.path.lexists(dst) and not _written_by_llmc(dst):
        raise StepError(f"refusing to replace {dst}: llmc did not write it (a model folder has {META}; a "
                        f"serving folder holds only 1/ and config.pbtxt); move it away or pass another --output")
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


# --- splits ---------------------------------------------------------------------------------------


def check_data_file(path: str | None) -> None:
    if not path:
        raise StepError("the spec names no file for this split")
    if not path.startswith(URI_SCHEMES) and not os.path.isfile(path):
        raise DataError(f"{path}: no such file (the spec's relative data paths are resolved against --data-root, "
                        f"default $LLMC_DATA_ROOT or the working directory)")


def load_rows(model_cfg: dict, path: str | None, label_names=None, limit: int | None = None):
    """A data.py Split of `path` for this model, cut to the first `limit` examples."""
    check_data_file(path)
    split = load_split(model_cfg, path, label_names=label_names)
    if limit is not None and limit < len(split):
        # Split defines __len__, which NamedTuple._replace trips over: build it anew.
        split = type(split)({k: v[:limit] for k, v in split.arrays.items()}, split.framing, split.label_names,
                            split.path)
    return split


def references(model_cfg: dict, path: str, limit: int | None = None) -> list[str]:
    """The target column's strings as written (not truncated to max_len)."""
    data = model_cfg["data"]
    _, rows = read_rows(path, data.get("format"))
    col = data.get("target") or "target"
    rows = rows[:limit] if limit is not None else rows
    return [str(r.get(col, "")) for r in rows]


def prompts_np(tokens: np.ndarray, loss_mask: np.ndarray) -> np.ndarray:
    """zoo_torch.prompts in numpy: each row's BOS + source + SEP, PAD on the right."""
    starts = (loss_mask > 0).argmax(1)
    width = int(starts.max()) + 1
    out = np.full((tokens.shape[0], width), PAD, dtype=np.int64)
    for i, s in enumerate(starts.tolist()):
        out[i, :s + 1] = tokens[i, :s + 1]
    return out


def architecture(model_cfg: dict) -> str:
    """"mlp" | "encoder" | "encoder-decoder" | "decoder"."""
    return "mlp" if model_cfg.get("mlp") is not None else model_cfg["transformer"]["kind"]


def generates(model_cfg: dict) -> bool:
    return architecture(model_cfg) in ("encoder-decoder", "decoder")


# --- torch: training with distillation and masks ----------------------------------------------------


def torch_logits(model, batch: dict):
    """(logits [N, C], labels [N]) over the predicted positions of a batch of tensors:
    one row per example for classifiers, one per real target token otherwise."""
    if "label" in batch:
        x = batch["features"] if "features" in batch else batch["text"]
        return model(x), batch["label"]
    if "source" in batch:
        tgt = batch["target"]
        logits, labels = model(batch["source"], tgt[:, :-1]), tgt[:, 1:]
        keep = labels != PAD
    else:
        tokens = batch["tokens"]
        logits, labels = model(tokens[:, :-1]), tokens[:, 1:]
        keep = batch["loss_mask"] > 0
    return logits[keep], labels[keep]


def kd_loss_torch(student_logits, teacher_logits, labels, temperature: float, alpha: float):
    """alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * CE(student, labels),
    averaged over the predicted positions (Hinton et al. 2015: the T^2 keeps the soft
    term's gradients on the scale of the hard one's as T changes)."""
    import torch.nn.functional as F

    t = float(temperature)
    s_log = F.log_softmax(student_logits.float() / t, -1)
    t_log = F.log_softmax(teacher_logits.float() / t, -1)
    kl = F.kl_div(s_log, t_log, log_target=True, reduction="none").sum(-1)
    ce = F.cross_entropy(student_logits.float(), labels, reduction="none")
    return (alpha * t * t * kl + (1.0 - alpha) * ce).mean()


class TrainSettings(NamedTuple):
    """How the compress steps train (distillation, fine-tuning after pruning): the
    spec's optimizer at a constant rate, the spec's global batch on one process."""

    optimizer: dict  # a model.json optimizer block
    batch_size: int
    seed: int = 0


def train_torch(model, split, settings: TrainSettings, epochs: int, loss_fn, max_steps=None, after_step=None,
                say=print) -> int:
    """Epochs over `split` with `loss_fn(model, batch) -> loss`; returns the steps taken."""
    import torch

    from .data import epoch_order
    from .zoo_torch import make_optimizer, to_tensors

    torch.manual_seed(settings.seed)
    optimizer = make_optimizer(model, settings.optimizer)
    batch_size = max(1, min(settings.batch_size, len(split)))
    step = 0
    model.train()
    for epoch in range(epochs):
        total, n = 0.0, 0
        for batch in batches(split, epoch_order(len(split), settings.seed, epoch), batch_size):
            loss = loss_fn(model, to_tensors(batch))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if after_step is not None:
                after_step()
            total, n, step = total + float(loss.detach()), n + 1, step + 1
            if max_steps is not None and step >= max_steps:
                break
        say(f"epoch {epoch + 1}/{epochs}: mean loss {total / max(n, 1):.4f} over {n} steps")
        if max_steps is not None and step >= max_steps:
            break
    model.eval()
    return step


def validate_torch(model, split, batch_size: int = 64) -> dict:
    """Mean loss (and accuracy for classifiers) over a split: a cheap quality proxy."""
    import torch

    from .zoo_torch import batch_loss, to_tensors

    model.eval()
    with torch.no_grad():
        return _validate(split, batch_size, lambda batch: batch_loss(model, to_tensors(batch)))


def _validate(split, batch_size: int, loss_of) -> dict:
    """Sum `loss_of(batch) -> (loss sum, count, correct or None)` over a split, for
    either framework."""
    loss = count = correct = 0.0
    classify = False
    for batch in batches(split, np.arange(len(split)), batch_size, drop_last=False):
        s, c, k = loss_of(batch)
        loss, count = loss + float(s), count + float(c)
        if k is not None:
            classify, correct = True, correct + float(k)
    out = {"valid_loss": round(loss / max(count, 1.0), 6)}
    if classify:
        out["valid_accuracy"] = round(correct / max(count, 1.0), 6)
    return out


def student_config(model_cfg: dict, student: dict) -> dict:
    """The teacher's model block with the spec's student fields applied (d_ff defaults to
    4 x the student's d_model when d_model changes and d_ff is not given)."""
    cfg = copy.deepcopy(model_cfg)
    if cfg.get("mlp") is not None:
        if student.get("hidden"):
            cfg["mlp"]["hidden"] = list(student["hidden"])
        return cfg
    arch = cfg["transformer"]
    changes = {k: student[k] for k in ("layers", "d_model", "heads", "d_ff") if student.get(k) is not None}
    if "d_model" in changes and "d_ff" not in changes:
        changes["d_ff"] = 4 * changes["d_model"]
    arch.update(changes)
    if arch["d_model"] % arch["heads"]:
        raise StepError(f"student d_model = {arch['d_model']} is not a multiple of heads = {arch['heads']}")
    return cfg


def distill(step: Step, student: dict, temperature: float, alpha: float, epochs: int, settings: TrainSettings,
            train_path: str, valid_path: str) -> dict:
    if step.format == "torch":
        return _distill_torch(step, student, temperature, alpha, epochs, settings, train_path, valid_path)
    if step.format == "tensorflow":
        return _distill_tf(step, student, temperature, alpha, epochs, settings, train_path, valid_path)
    raise StepError(f"distill needs the trained torch or TensorFlow model, found {step.format} at {step.input}")


def _distill_torch(step, student, temperature, alpha, epochs, settings, train_path, valid_path) -> dict:
    import torch

    from .zoo_torch import build_model, count_params, load_model, save_model

    teacher, meta = load_model(step.input)
    cfg = student_config(meta["model"], student)
    names = meta.get("label_names")
    train = load_rows(cfg, step.data(train_path), names, step.limit)
    valid = load_rows(cfg, step.data(valid_path), names, step.limit)
    model = build_model(cfg, seed=settings.seed)
    step.say(f"teacher {count_params(teacher):,} parameters -> student {count_params(model):,}; "
             f"T = {temperature}, alpha = {alpha}, {epochs} epochs on {len(train)} examples")
    for p in teacher.parameters():
        p.requires_grad_(False)

    def loss_fn(m, batch):
        logits, labels = torch_logits(m, batch)
        with torch.no_grad():
            t_logits, _ = torch_logits(teacher, batch)
        return kd_loss_torch(logits, t_logits, labels, temperature, alpha)

    steps = train_torch(model, train, settings, epochs, loss_fn, step.max_steps, say=step.say)
    extra = {k: v for k, v in meta.items() if k not in ("format", "model", "label_names")}
    save_model(step.work, model, cfg, names, **{**extra, "distilled_from": str(step.input)})
    return {"teacher": {"params": count_params(teacher), "bytes": size_of(model_files(step.input)),
                        **validate_torch(teacher, valid)},
            "student": {"params": count_params(model), "bytes": size_of(model_files(step.work)),
                        **validate_torch(model, valid)},
            "temperature": temperature, "alpha": alpha, "epochs": epochs, "steps": steps}


# --- torch: pruning ------------------------------------------------------------------------------------


def prunable_torch(model) -> list[tuple[str, Any]]:
    """(name, nn.Linear) of every linear layer but the output layer (the classifier
    head / the MLP's last layer: pruning it removes classes, not redundancy). The tied
    embedding and the LayerNorms are not pruned."""
    from torch import nn

    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    output = {"head"}
    if hasattr(model, "net"):  # the MLP: its last Linear
        output.add(linears[-1][0])
    return [(n, m) for n, m in linears if n not in output]


def weight_sparsity_torch(modules) -> float:
    zeros = total = 0
    for _, m in modules:
        w = m.weight.detach()
        zeros += int((w == 0).sum())
        total += w.numel()
    return zeros / max(total, 1)


def overall_sparsity_torch(model) -> float:
    zeros = total = 0
    for p in model.parameters():
        zeros += int((p.detach() == 0).sum())
        total += p.numel()
    return zeros / max(total, 1)


def prune(step: Step, method: str, sparsity: float, finetune_epochs: int, settings: TrainSettings,
          train_path: str, valid_path: str) -> dict:
    if not 0.0 < sparsity < 1.0:
        raise StepError(f"sparsity {sparsity} is not between 0 and 1")
    if step.format == "torch":
        return _prune_torch(step, method, sparsity, finetune_epochs, settings, train_path, valid_path)
    if step.format == "tensorflow":
        return _prune_tf(step, method, sparsity, finetune_epochs, settings, train_path, valid_path)
    raise StepError(f"prune needs a torch or TensorFlow model, found {step.format} at {step.input}")


def _prune_torch(step, method, sparsity, finetune_epochs, settings, train_path, valid_path) -> dict:
    """torch.nn.utils.prune per layer: l1_unstructured (magnitude: the smallest |w|) or
    ln_structured (structured: whole output rows by L2 norm, n = 2, dim = 0), then
    fine-tuning with the masks in place, then prune.remove (the zeros become the weights)."""
    from torch.nn.utils import prune as tprune

    from .zoo_torch import batch_loss, load_model, save_model

    model, meta = load_model(step.input)
    cfg, names = meta["model"], meta.get("label_names")
    valid = load_rows(cfg, step.data(valid_path), names, step.limit)
    before = validate_torch(model, valid)
    layers = prunable_torch(model)
    for _, m in layers:
        if method == "structured":
            tprune.ln_structured(m, "weight", amount=sparsity, n=2, dim=0)
        else:
            tprune.l1_unstructured(m, "weight", amount=sparsity)
    pruned = validate_torch(model, valid)
    steps = 0
    if finetune_epochs:
        train = load_rows(cfg, step.data(train_path), names, step.limit)

        def loss_fn(m, batch):
            total, count, _ = batch_loss(m, batch)
            return total / count.clamp_min(1)

        steps = train_torch(model, train, settings, finetune_epochs, loss_fn, step.max_steps, say=step.say)
    for _, m in layers:
        tprune.remove(m, "weight")
    after = validate_torch(model, valid)
    extra = {k: v for k, v in meta.items() if k not in ("format", "model", "label_names")}
    save_model(step.work, model, cfg, names, **{**extra, "pruned": {"method": method, "sparsity": sparsity}})
    achieved = weight_sparsity_torch(layers)
    step.say(f"{method}: {achieved:.1%} of the weights of {len(layers)} layers are zero")
    return _prune_report(method, sparsity, achieved, overall_sparsity_torch(model), len(layers), finetune_epochs,
                         steps, step, before, pruned, after)


def _prune_report(method, requested, achieved, overall, layers, finetune_epochs, steps, step, before, pruned, after):
    src = model_files(step.input)
    dst = model_files(step.work)
    return {"method": method, "requested_sparsity": requested, "sparsity": round(achieved, 6),
            "overall_sparsity": round(overall, 6), "layers": layers, "finetune_epochs": finetune_epochs,
            "finetune_steps": steps,
            "bytes": {"before": size_of(src), "after": size_of(dst)},
            "gzip_bytes": {"before": sum(gzip_size(p) for p in src), "after": sum(gzip_size(p) for p in dst)},
            "quality": {"before": before, "pruned": pruned, "after": after}}


# --- TensorFlow: distillation and pruning --------------------------------------------------------------


def tf_logits(model, batch: dict, training: bool = False):
    """zoo_tf's inputs and the (logits [N, C], labels [N]) over predicted positions."""
    import tensorflow as tf

    if "label" in batch:
        x = {"features": batch["features"]} if "features" in batch else {"text": batch["text"]}
        return tf.cast(model(x, training=training), tf.float32), batch["label"]
    if "source" in batch:
        tgt = batch["target"]
        logits = model({"source": batch["source"], "target": tgt[:, :-1]}, training=training)
        labels = tgt[:, 1:]
        keep = tf.not_equal(labels, PAD)
    else:
        tokens = batch["tokens"]
        logits = model({"tokens": tokens[:, :-1]}, training=training)
        labels = tokens[:, 1:]
        keep = batch["loss_mask"] > 0
    return tf.boolean_mask(tf.cast(logits, tf.float32), keep), tf.boolean_mask(labels, keep)


def kd_loss_tf(student_logits, teacher_logits, labels, temperature: float, alpha: float):
    import tensorflow as tf

    t = float(temperature)
    s_log = tf.nn.log_softmax(student_logits / t, -1)
    t_log = tf.nn.log_softmax(teacher_logits / t, -1)
    kl = tf.reduce_sum(tf.exp(t_log) * (t_log - s_log), -1)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=student_logits)
    return tf.reduce_mean(alpha * t * t * kl + (1.0 - alpha) * ce)


def train_tf(model, split, settings: TrainSettings, epochs: int, loss_fn, max_steps=None, after_step=None,
             say=print) -> int:
    import tensorflow as tf

    from .data import epoch_order
    from .zoo_tf import make_optimizer, to_inputs

    optimizer = make_optimizer(settings.optimizer)
    batch_size = max(1, min(settings.batch_size, len(split)))
    variables = model.trainable_variables

    @tf.function(reduce_retracing=True)
    def train_step(batch):
        with tf.GradientTape() as tape:
            loss = loss_fn(model, batch)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    step = 0
    for epoch in range(epochs):
        total, n = 0.0, 0
        # Untrimmed batches: one shape, one trace.
        for batch in batches(split, epoch_order(len(split), settings.seed, epoch), batch_size, trim=False):
            loss = train_step(to_inputs(batch))
            if after_step is not None:
                after_step()
            total, n, step = total + float(loss), n + 1, step + 1
            if max_steps is not None and step >= max_steps:
                break
        say(f"epoch {epoch + 1}/{epochs}: mean loss {total / max(n, 1):.4f} over {n} steps")
        if max_steps is not None and step >= max_steps:
            break
    return step


def validate_tf(model, split, batch_size: int = 64) -> dict:
    from .zoo_tf import batch_loss, to_inputs

    return _validate(split, batch_size, lambda batch: batch_loss(model, to_inputs(batch)))


def _distill_tf(step, student, temperature, alpha, epochs, settings, train_path, valid_path) -> dict:
    from .zoo_tf import build_model, count_params, load_model, save_model

    teacher, meta = load_model(str(step.input))
    cfg = student_config(meta["model"], student)
    names = meta.get("label_names")
    train = load_rows(cfg, step.data(train_path), names, step.limit)
    valid = load_rows(cfg, step.data(valid_path), names, step.limit)
    model = build_model(cfg, seed=settings.seed)
    step.say(f"teacher {count_params(teacher):,} parameters -> student {count_params(model):,}; "
             f"T = {temperature}, alpha = {alpha}, {epochs} epochs on {len(train)} examples")

    def loss_fn(m, batch):
        logits, labels = tf_logits(m, batch, training=True)
        t_logits, _ = tf_logits(teacher, batch, training=False)
        import tensorflow as tf

        return kd_loss_tf(logits, tf.stop_gradient(t_logits), labels, temperature, alpha)

    steps = train_tf(model, train, settings, epochs, loss_fn, step.max_steps, say=step.say)
    extra = {k: v for k, v in meta.items() if k not in ("format", "model", "label_names", "signature")}
    save_model(str(step.work), model, cfg, names, **{**extra, "distilled_from": str(step.input)})
    return {"teacher": {"params": count_params(teacher), "bytes": size_of(model_files(step.input)),
                        **validate_tf(teacher, valid)},
            "student": {"params": count_params(model), "bytes": size_of(model_files(step.work)),
                        **validate_tf(model, valid)},
            "temperature": temperature, "alpha": alpha, "epochs": epochs, "steps": steps}


def prunable_tf(model) -> list:
    """The 2-D Dense kernels but the output layer's (`logits` / `head`), as prunable_torch."""
    out = []
    for v in model.trainable_variables:
        parts = v.path.split("/")
        if parts[-1] == "kernel" and len(v.shape) == 2 and parts[-2] not in ("logits", "head"):
            out.append(v)
    return out


def tf_masks(kernels, method: str, sparsity: float) -> list[np.ndarray]:
    """Pruning by hand (tensorflow-model-optimization is not installed; its
    prune_low_magnitude does the same with a schedule): per layer, magnitude zeroes
    the `sparsity` fraction of kernel entries with the smallest |w| (ties broken by
    position, so exactly round(sparsity x size) entries); structured zeroes whole output
    units, the kernel columns (Keras kernels are [in, out]) with the smallest L2 norm."""
    masks = []
    for v in kernels:
        w = v.numpy()
        if method == "structured":
            norms = np.linalg.norm(w, axis=0)
            k = int(round(sparsity * w.shape[1]))
            mask = np.ones_like(w)
            mask[:, np.argsort(norms, kind="stable")[:k]] = 0.0
        else:
            k = int(round(sparsity * w.size))
            flat = np.ones(w.size, dtype=w.dtype)
            flat[np.argsort(np.abs(w).ravel(), kind="stable")[:k]] = 0.0
            mask = flat.reshape(w.shape)
        masks.append(mask)
    return masks


def _prune_tf(step, method, sparsity, finetune_epochs, settings, train_path, valid_path) -> dict:
    from .zoo_tf import batch_loss, load_model, save_model

    model, meta = load_model(str(step.input))
    cfg, names = meta["model"], meta.get("label_names")
    valid = load_rows(cfg, step.data(valid_path), names, step.limit)
    before = validate_tf(model, valid)
    kernels = prunable_tf(model)
    masks = tf_masks(kernels, method, sparsity)

    def apply_masks():
        for v, m in zip(kernels, masks):
            v.assign(v * m)

    apply_masks()
    pruned = validate_tf(model, valid)
    steps = 0
    if finetune_epochs:
        train = load_rows(cfg, step.data(train_path), names, step.limit)

        def loss_fn(m, batch):
            total, count, _ = batch_loss(m, batch, training=True)
            return total / count

        # The masks are applied again after every optimizer step, so pruned weights stay zero.
        steps = train_tf(model, train, settings, finetune_epochs, loss_fn, step.max_steps, after_step=apply_masks,
                         say=step.say)
    after = validate_tf(model, valid)
    extra = {k: v for k, v in meta.items() if k not in ("format", "model", "label_names", "signature")}
    save_model(str(step.work), model, cfg, names, **{**extra, "pruned": {"method": method, "sparsity": sparsity}})
    zeros = sum(int((v.numpy() == 0).sum()) for v in kernels)
    total = sum(int(np.prod(v.shape)) for v in kernels)
    all_zeros = sum(int((v.numpy() == 0).sum()) for v in model.weights)
    all_total = sum(int(np.prod(v.shape)) for v in model.weights)
    achieved = zeros / max(total, 1)
    step.say(f"{method}: {achieved:.1%} of the weights of {len(kernels)} layers are zero")
    return _prune_report(method, sparsity, achieved, all_zeros / max(all_total, 1), len(kernels), finetune_epochs,
                         steps, step, before, pruned, after)


# --- ONNX export --------------------------------------------------------------------------------------


def _torch_wrappers():
    import torch
    from torch import nn

    class Classifier(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x)

    class Encoder(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids):
            memory, mask = self.model.encode(input_ids)
            return memory, mask

    class CrossDecoder(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, decoder_input_ids, memory, memory_mask):
            return self.model.decode(decoder_input_ids, memory, memory_mask)

    class Decoder(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, decoder_input_ids):
            return self.model.decode(decoder_input_ids)

    return torch, Classifier, Encoder, CrossDecoder, Decoder


def _export(module, args, path, input_names, output_names, dynamic_axes) -> None:
    import torch

    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=OPSET, do_constant_folding=True,
                          input_names=input_names, output_names=output_names, dynamic_axes=dynamic_axes)


def export_torch_onnx(model, model_cfg: dict, directory: Path) -> dict:
    """Write the ONNX graphs of a torch zoo model to `directory` (see the module
    docstring); returns the `"onnx"` entry of llmc.json."""
    import onnx

    torch, Classifier, Encoder, CrossDecoder, Decoder = _torch_wrappers()
    model.eval()
    arch = architecture(model_cfg)
    directory.mkdir(parents=True, exist_ok=True)
    batch_axes = {0: "batch"}
    seq_axes = {0: "batch", 1: "length"}
    with torch.no_grad():
        if arch == "mlp":
            x = torch.zeros(2, model_cfg["mlp"]["inputs"])
            _export(Classifier(model), (x,), directory / "model.onnx", ["features"], ["logits"],
                    {"features": batch_axes, "logits": batch_axes})
            return {"served": "model.onnx", "inputs": ["features"], "outputs": ["logits"]}
        ids = _example_ids(model_cfg)
        if arch == "encoder":
            _export(Classifier(model), (ids,), directory / "model.onnx", ["input_ids"], ["logits"],
                    {"input_ids": seq_axes, "logits": batch_axes})
            return {"served": "model.onnx", "inputs": ["input_ids"], "outputs": ["logits"]}
        encoder = None
        prefix = ids[:, :3].clone()
        prefix[:, 0] = BOS
        if arch == "encoder-decoder":
            _export(Encoder(model), (ids,), directory / "encoder.onnx", ["input_ids"], ["memory", "memory_mask"],
                    {"input_ids": seq_axes, "memory": seq_axes, "memory_mask": seq_axes})
            memory, mask = model.encode(ids)
            _export(CrossDecoder(model), (prefix, memory, mask), directory / "decoder.onnx",
                    ["decoder_input_ids", "memory", "memory_mask"], ["logits"],
                    {"decoder_input_ids": {0: "batch", 1: "target_length"}, "memory": seq_axes,
                     "memory_mask": seq_axes, "logits": {0: "batch", 1: "target_length"}})
            encoder = onnx.load(str(directory / "encoder.onnx"))
        else:
            _export(Decoder(model), (prefix,), directory / "decoder.onnx", ["decoder_input_ids"], ["logits"],
                    {"decoder_input_ids": {0: "batch", 1: "target_length"},
                     "logits": {0: "batch", 1: "target_length"}})
    decoder = onnx.load(str(directory / "decoder.onnx"))
    composed = compose_greedy(decoder, encoder, int(model_cfg["transformer"]["max_len"]))
    onnx.save(composed, str(directory / "model.onnx"))
    parts = ["encoder.onnx", "decoder.onnx"] if encoder is not None else ["decoder.onnx"]
    return {"served": "model.onnx", "inputs": ["input_ids"], "outputs": ["output_ids"], "parts": parts}


def _example_ids(model_cfg: dict):
    import torch

    max_len = int(model_cfg["transformer"]["max_len"])
    g = torch.Generator().manual_seed(0)
    return torch.randint(32, 127, (2, max(2, min(8, max_len))), generator=g)


def compose_greedy(decoder, encoder, max_len: int, pad: int = PAD, bos: int = BOS, eos: int = EOS):
    """One ONNX model `input_ids [B, T] -> output_ids [B, max_len]`: greedy decoding
    around a decoder graph (`decoder_input_ids[, memory, memory_mask] -> logits`),
    after an encoder graph (`input_ids -> memory, memory_mask`) when there is one.

    The loop state is a [B, max_len + 1] buffer of ids, each row's length and whether
    it is done. Each iteration runs the decoder on the buffer's first max(length)
    columns, takes each row's logits at its last position (the causal decoder's output
    there does not depend on the PADs after it), writes the argmax at the row's
    length (PAD for finished rows) and stops once every row has produced EOS. An
    encoder-decoder starts every row from BOS; a decoder-only model from its prompt
    (an empty one from BOS). The output is each row's continuation, EOS included,
    PAD after it, max_len wide: what zoo_torch's `generate` returns, padded.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnx.compose import add_prefix_graph

    L1 = max_len + 1
    dec = add_prefix_graph(decoder.graph, "dec/")
    enc = add_prefix_graph(encoder.graph, "enc/") if encoder is not None else None
    for g in (dec, enc):
        if g is not None and any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                                 for n in g.node for a in n.attribute):
            raise StepError("cannot compose a graph that already holds subgraphs")

    def const(name, value, dtype=np.int64):
        return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)

    inits = [const("g/pad", pad), const("g/bos", bos), const("g/eos", eos), const("g/one", 1),
             const("g/zero1", [0]), const("g/one1", [1]), const("g/L1", [L1]), const("g/max_len", max_len),
             const("g/L1_scalar", L1), const("g/positions", np.arange(L1)[None]),
             const("g/steps", np.arange(max_len)[None]), const("g/true", True, np.bool_)]
    N = helper.make_node
    nodes = [N("Shape", ["input_ids"], ["g/shape"]), N("Slice", ["g/shape", "g/zero1", "g/one1"], ["g/batch"])]
    if enc is not None:
        nodes.append(N("Identity", ["input_ids"], ["enc/input_ids"]))
        nodes.extend(enc.node)
        inits.extend(enc.initializer)
        nodes += [N("Concat", ["g/batch", "g/L1"], ["g/buf_shape"], axis=0),
                  N("ConstantOfShape", ["g/buf_shape"], ["g/buf_pad"], value=numpy_helper.from_array(np.array([pad], np.int64))),
                  N("Equal", ["g/positions", "g/zero1"], ["g/is_first"]),
                  N("Where", ["g/is_first", "g/bos", "g/buf_pad"], ["g/buf0"]),
                  N("ConstantOfShape", ["g/batch"], ["g/start"], value=numpy_helper.from_array(np.array([1], np.int64)))]
    else:
        inits += [const("g/max_len1", [max_len]), const("g/pads_head", [0, 0, 0])]
        nodes += [N("Slice", ["input_ids", "g/zero1", "g/max_len1", "g/one1"], ["g/ids"]),
                  N("Shape", ["g/ids"], ["g/ids_shape"]),
                  N("Slice", ["g/ids_shape", "g/one1", "g/L1", "g/zero1"], ["g/ids_len"]),
                  N("Sub", ["g/L1", "g/ids_len"], ["g/pad_len"]),
                  N("Concat", ["g/pads_head", "g/pad_len"], ["g/pads"], axis=0),
                  N("Pad", ["g/ids", "g/pads", "g/pad"], ["g/buf_raw"], mode="constant"),
                  N("Equal", ["g/positions", "g/zero1"], ["g/is_first"]),
                  N("Equal", ["g/buf_raw", "g/pad"], ["g/is_pad"]),
                  N("And", ["g/is_first", "g/is_pad"], ["g/empty"]),
                  N("Where", ["g/empty", "g/bos", "g/buf_raw"], ["g/buf0"]),
                  N("Equal", ["g/buf0", "g/pad"], ["g/is_pad0"]),
                  N("Not", ["g/is_pad0"], ["g/real0"]),
                  N("Cast", ["g/real0"], ["g/real0_i"], to=TensorProto.INT64),
                  N("ReduceSum", ["g/real0_i", "g/one1"], ["g/start"], keepdims=0)]
    nodes += [N("ConstantOfShape", ["g/batch"], ["g/done0"], value=numpy_helper.from_array(np.array([False]))),
              N("ReduceMax", ["g/start"], ["g/start_max"], keepdims=0),
              N("Sub", ["g/L1_scalar", "g/start_max"], ["g/trips"])]

    # The loop body: the decoder on the prefix, then one greedy token per row.
    body = [N("ReduceMax", ["b/len"], ["b/width"], keepdims=1),
            N("Slice", ["b/buf", "g/zero1", "b/width", "g/one1"], ["b/prefix"]),
            N("Identity", ["b/prefix"], ["dec/decoder_input_ids"])]
    if enc is not None:
        body += [N("Identity", ["enc/memory"], ["dec/memory"]), N("Identity", ["enc/memory_mask"], ["dec/memory_mask"])]
    body += list(dec.node)
    body += [N("Sub", ["b/len", "g/one"], ["b/last"]),
             N("Unsqueeze", ["b/last", "g/one1"], ["b/last_2d"]),
             N("GatherND", ["dec/logits", "b/last_2d"], ["b/last_logits"], batch_dims=1),
             N("ArgMax", ["b/last_logits"], ["b/argmax"], axis=1, keepdims=0),
             N("Where", ["b/done", "g/pad", "b/argmax"], ["b/next"]),
             N("Unsqueeze", ["b/len", "g/one1"], ["b/len_2d"]),
             N("Equal", ["g/positions", "b/len_2d"], ["b/at"]),
             N("Unsqueeze", ["b/next", "g/one1"], ["b/next_2d"]),
             N("Where", ["b/at", "b/next_2d", "b/buf"], ["b/buf_out"]),
             N("Not", ["b/done"], ["b/running"]),
             N("Cast", ["b/running"], ["b/running_i"], to=TensorProto.INT64),
             N("Add", ["b/len", "b/running_i"], ["b/len_out"]),
             N("Equal", ["b/next", "g/eos"], ["b/is_eos"]),
             N("Or", ["b/done", "b/is_eos"], ["b/done_out"]),
             N("Cast", ["b/done_out"], ["b/done_i"], to=TensorProto.INT64),
             N("ReduceMin", ["b/done_i"], ["b/all_done"], keepdims=0),
             N("Equal", ["b/all_done", "g/one"], ["b/finished"]),
             N("Not", ["b/finished"], ["b/cond_out"])]
    V = helper.make_tensor_value_info
    body_graph = helper.make_graph(
        body, "greedy_step",
        [V("b/iter", TensorProto.INT64, []), V("b/cond", TensorProto.BOOL, []),
         V("b/buf", TensorProto.INT64, ["batch", L1]), V("b/len", TensorProto.INT64, ["batch"]),
         V("b/done", TensorProto.BOOL, ["batch"])],
        [V("b/cond_out", TensorProto.BOOL, []), V("b/buf_out", TensorProto.INT64, ["batch", L1]),
         V("b/len_out", TensorProto.INT64, ["batch"]), V("b/done_out", TensorProto.BOOL, ["batch"])])
    nodes += [N("Loop", ["g/trips", "g/true", "g/buf0", "g/start", "g/done0"], ["g/buf", "g/len", "g/done"],
                body=body_graph),
              N("Unsqueeze", ["g/start", "g/one1"], ["g/start_2d"]),
              N("Add", ["g/start_2d", "g/steps"], ["g/take"]),
              N("Min", ["g/take", "g/max_len"], ["g/take_in"]),
              N("GatherElements", ["g/buf", "g/take_in"], ["g/continuation"], axis=1),
              N("Greater", ["g/take", "g/max_len"], ["g/beyond"]),
              N("Where", ["g/beyond", "g/pad", "g/continuation"], ["output_ids"])]
    inits.extend(dec.initializer)  # the body reads the decoder's weights from the outer scope
    nodes, inits = _dedupe_initializers(nodes, inits)
    graph = helper.make_graph(nodes, "greedy", [V("input_ids", TensorProto.INT64, ["batch", "length"])],
                              [V("output_ids", TensorProto.INT64, ["batch", max_len])], initializer=inits)
    opsets: dict[str, int] = {}
    for m in (decoder, encoder):
        if m is not None:
            for o in m.opset_import:
                opsets[o.domain] = max(opsets.get(o.domain, 0), o.version)
    opsets[""] = max(opsets.get("", OPSET), OPSET)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets.items())],
                              producer_name="llmc")
    model.ir_version = decoder.ir_version
    onnx.checker.check_model(model)
    return model


def _dedupe_initializers(nodes, inits):
    """Keep one copy of identical initializers (the tied embedding the encoder and the
    decoder graphs each carry, equal biases), renaming their uses, subgraphs included."""
    from onnx import numpy_helper

    seen: dict[tuple, str] = {}
    rename: dict[str, str] = {}
    kept = []
    for t in inits:
        a = numpy_helper.to_array(t)
        key = (t.data_type, tuple(t.dims), hashlib.sha256(a.tobytes()).hexdigest())
        if key in seen:
            rename[t.name] = seen[key]
        else:
            seen[key] = t.name
            kept.append(t)

    def fix(node_list):
        for n in node_list:
            for i, name in enumerate(n.input):
                if name in rename:
                    n.input[i] = rename[name]
            for a in n.attribute:
                if a.g is not None and len(a.g.node):
                    fix(a.g.node)
    fix(nodes)
    return nodes, kept


def export(step: Step, valid_path: str | None) -> dict:
    if step.format == "torch":
        return _export_torch_step(step, valid_path)
    if step.format == "tensorflow":
        return _export_tf_step(step, valid_path)
    raise StepError(f"export needs a torch or TensorFlow model, found {step.format} at {step.input}")


def _export_torch_step(step: Step, valid_path) -> dict:
    from .zoo_torch import load_model

    model, meta = load_model(step.input)
    cfg = meta["model"]
    t0 = time.perf_counter()
    info = export_torch_onnx(model, cfg, step.work)
    seconds = time.perf_counter() - t0
    write_meta(step.work, {**{k: v for k, v in meta.items() if k != "format"}, "format": "llmc-onnx-1",
                           "onnx": {**info, "opset": OPSET}})
    report = {"format": "onnx", "opset": OPSET, "export_seconds": round(seconds, 2),
              "files": {p.name: p.stat().st_size for p in sorted(step.work.glob("*.onnx"))},
              "bytes": {"before": size_of(model_files(step.input)), "after": size_of(model_files(step.work))}}
    if valid_path:
        split = load_rows(cfg, step.data(valid_path), meta.get("label_names"), limit=min(step.limit or 32, 32))
        report["check"] = compare_backends(open_model(step.input), open_model(step.work), split)
        step.say(f"ONNX vs torch on {len(split)} valid examples: {agreement_text(report['check'])}")
    return report


def _export_tf_step(step: Step, valid_path) -> dict:
    """TensorFlow: the served model is the SavedModel (serving_default); it is copied and
    checked against the Keras model. No ONNX: tf2onnx is not a runtime dependency."""
    for item in step.input.iterdir():
        if item.name in ("report.json",):
            continue
        (shutil.copytree if item.is_dir() else shutil.copy2)(item, step.work / item.name)
    meta = read_meta(step.work)
    report = {"format": "savedmodel", "onnx": "not written (no tf2onnx); the SavedModel is the served model",
              "bytes": {"before": size_of(model_files(step.input)), "after": size_of(model_files(step.work))}}
    if valid_path:
        split = load_rows(meta["model"], step.data(valid_path), meta.get("label_names"), limit=min(step.limit or 32, 32))
        report["check"] = compare_backends(open_model(step.input, prefer="keras"), open_model(step.work), split)
        step.say(f"SavedModel vs Keras on {len(split)} valid examples: {agreement_text(report['check'])}")
    return report


def compare_backends(reference: "Backend", candidate: "Backend", split) -> dict:
    """How closely `candidate` reproduces `reference` on a few examples: max |logit
    difference| (teacher-forced for generation), top-1 agreement, and for generation
    the fraction of identical greedy outputs; plus each one's time for the batch."""
    out: dict[str, Any] = {"examples": len(split), "reference": reference.name, "candidate": candidate.name}
    batch = split.arrays
    ref_logits, cand_logits = reference.logits(batch), candidate.logits(batch)
    if ref_logits is not None and cand_logits is not None:
        out["max_abs_logit_diff"] = float(np.max(np.abs(ref_logits - cand_logits)))
        out["top1_agreement"] = float(np.mean(ref_logits.argmax(-1) == cand_logits.argmax(-1)))
    if reference.generates:
        a, ta = _timed(lambda: reference.generate(batch))
        b, tb = _timed(lambda: candidate.generate(batch))
        width = max(a.shape[1], b.shape[1])
        a, b = _pad_to(a, width), _pad_to(b, width)
        out["greedy_agreement"] = float(np.mean(np.all(a == b, axis=1)))
    else:
        _, ta = _timed(lambda: reference.classify(batch))
        _, tb = _timed(lambda: candidate.classify(batch))
    out["seconds"] = {"reference": round(ta, 4), "candidate": round(tb, 4)}
    return out


def _timed(fn):
    fn()  # warm-up (first-call allocations, lazy initialisation)
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def _pad_to(a: np.ndarray, width: int) -> np.ndarray:
    if a.shape[1] >= width:
        return a
    return np.concatenate([a, np.full((a.shape[0], width - a.shape[1]), PAD, a.dtype)], 1)


# --- quantization ----------------------------------------------------------------------------------


class _Feeds:
    """onnxruntime's CalibrationDataReader over a list of input dicts."""

    def __init__(self, feeds: list[dict]):
        self.feeds = feeds
        self.i = 0

    def get_next(self):
        if self.i >= len(self.feeds):
            return None
        self.i += 1
        return self.feeds[self.i - 1]

    def rewind(self):
        self.i = 0


def calibration_feeds(directory: Path, meta: dict, split, batch_size: int = 16) -> dict[str, list[dict]]:
    """Inputs for each graph of an ONNX model folder, from the calibration rows:
    the served graph's inputs for single-graph models; for generation the encoder's
    source ids and the decoder's teacher-forced prefixes with the fp32 encoder's memory
    (the activations the decoder meets while generating a reference-like output)."""
    import onnxruntime as ort

    arch = architecture(meta["model"])
    feeds: dict[str, list[dict]] = {}
    order = np.arange(len(split))
    if arch == "mlp":
        feeds["model.onnx"] = [{"features": b["features"].astype(np.float32)}
                               for b in batches(split, order, batch_size, drop_last=False)]
        return feeds
    if arch == "encoder":
        feeds["model.onnx"] = [{"input_ids": b["text"].astype(np.int64)}
                               for b in batches(split, order, batch_size, drop_last=False)]
        return feeds
    if arch == "encoder-decoder":
        enc = ort.InferenceSession(str(directory / "encoder.onnx"), _session_options(), providers=["CPUExecutionProvider"])
        feeds["encoder.onnx"], feeds["decoder.onnx"] = [], []
        for b in batches(split, order, batch_size, drop_last=False):
            src = b["source"].astype(np.int64)
            memory, mask = enc.run(None, {"input_ids": src})
            feeds["encoder.onnx"].append({"input_ids": src})
            feeds["decoder.onnx"].append({"decoder_input_ids": b["target"][:, :-1].astype(np.int64),
                                          "memory": memory, "memory_mask": mask})
        return feeds
    feeds["decoder.onnx"] = [{"decoder_input_ids": b["tokens"][:, :-1].astype(np.int64)}
                             for b in batches(split, order, batch_size, drop_last=False)]
    return feeds


def served_feeds(model_cfg: dict, split, batch_size: int, width: int | None) -> list[dict]:
    """Inputs of the served graph (input_ids or features) in full batches, sequences
    padded to `width`: what a fixed-shape calibrator (TensorRT) is fed."""
    arch = architecture(model_cfg)
    out = []
    for b in batches(split, np.arange(len(split)), batch_size, drop_last=True, trim=False):
        if arch == "mlp":
            out.append({"features": b["features"].astype(np.float32)})
            continue
        ids = b["text"] if arch == "encoder" else _inputs_for_generation(b)
        ids = _pad_to(ids.astype(np.int64), width or ids.shape[1])[:, :width or ids.shape[1]]
        out.append({"input_ids": np.ascontiguousarray(ids)})
    return out


def _session_options(level: str | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3  # errors only: the initializer de-duplication notices are noise
    threads = cpu_threads()
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    if level is not None:
        so.graph_optimization_level = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                                       "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                       "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                       "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
    return so


def quantize_graph(src: Path, dst: Path, precision: str, method: str, feeds: list[dict] | None) -> dict:
    """One ONNX graph: int8 dynamic (weights int8, activations quantized per batch at run
    time: MatMulInteger), int8 static (QDQ, per-channel int8 weights, uint8 activations
    with MinMax ranges from the calibration feeds; only MatMul/Gemm are quantized, the
    ops whose int8 kernels pay, so LayerNorm, Softmax and the residual adds stay
    float), or fp16 (onnxruntime's float16 converter, float32 inputs and outputs kept)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    with warnings.catch_warnings(), _quiet_logging():
        warnings.simplefilter("ignore")
        if precision == "fp16":
            from onnxruntime.transformers.float16 import convert_float_to_float16

            model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
            onnx.save(model, str(dst))
            return {"precision": "fp16"}
        if method == "dynamic":
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=False)
            return {"precision": "int8", "method": "dynamic"}
        if not feeds:
            raise StepError("static quantization needs calibration data (compress.quantize.calibration)")
        quantize_static(str(src), str(dst), _Feeds(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["MatMul", "Gemm"], calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        return {"precision": "int8", "method": "static", "format": "QDQ", "per_channel": True,
                "calibration_batches": len(feeds)}


@contextlib.contextmanager
def _quiet_logging():
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime.quantization logs "please run pre-processing" on the root logger
    try:
        yield
    finally:
        root.setLevel(level)


def quantize(step: Step, precision: str, method: str, calibration: str | None, samples: int,
             valid_path: str | None = None) -> dict:
    if step.format == "onnx":
        return _quantize_onnx(step, precision, method, calibration, samples, valid_path)
    if step.format == "tensorflow":
        return _quantize_tflite(step, precision, method, calibration, samples, valid_path)
    raise StepError(f"quantize needs the exported model (ONNX or SavedModel), found {step.format} at {step.input}")


def _calibration_split(step: Step, meta: dict, calibration: str | None, samples: int):
    path = step.data(calibration)
    if not path:
        raise StepError("static quantization needs compress.quantize.calibration")
    return load_rows(meta["model"], path, meta.get("label_names"), limit=min(samples, step.limit or samples))


def _quantize_onnx(step: Step, precision, method, calibration, samples, valid_path) -> dict:
    import onnx

    meta = read_meta(step.input)
    info = meta["onnx"]
    static = precision == "int8" and method == "static"
    split = _calibration_split(step, meta, calibration, samples) if static else None
    feeds = calibration_feeds(step.input, meta, split) if static else {}
    graphs = info.get("parts") or [info["served"]]
    details = {}
    for name in graphs:
        details[name] = quantize_graph(step.input / name, step.work / name, precision, method, feeds.get(name))
    if info.get("parts"):
        encoder = onnx.load(str(step.work / "encoder.onnx")) if "encoder.onnx" in graphs else None
        composed = compose_greedy(onnx.load(str(step.work / "decoder.onnx")), encoder,
                                  int(meta["model"]["transformer"]["max_len"]))
        onnx.save(composed, str(step.work / "model.onnx"))
    write_meta(step.work, {**meta, "quantized": {"precision": precision, "method": method if precision == "int8" else None}})
    before, after = size_of(model_files(step.input)), size_of(model_files(step.work))
    report = {"precision": precision, "method": method if precision == "int8" else None, "graphs": details,
              "bytes": {"before": before, "after": after}, "ratio": round(after / max(before, 1), 4)}
    if static:
        report["calibration"] = {"path": step.data(calibration), "samples": len(split)}
    step.say(f"{precision} {report['method'] or ''}: {before:,} -> {after:,} bytes")
    report["check"] = _check_against_input(step, meta, valid_path)
    return report


def agreement_text(check: dict) -> str:
    """compare_backends' report in a line: how far apart the two models are, and their times."""
    parts = [f"max |logit difference| {check['max_abs_logit_diff']:.2g}"]
    for key, name in (("top1_agreement", "top-1"), ("greedy_agreement", "greedy decoding")):
        if key in check:
            parts.append(f"{name} agreement {check[key]:.0%}")
    seconds = check.get("seconds") or {}
    if seconds:
        parts.append(" vs ".join(f"{check[role]} {seconds[role] * 1e3:.1f} ms" for role in ("reference", "candidate")
                                 if role in seconds))
    return ", ".join(parts)


def _check_against_input(step: Step, meta: dict, valid_path: str | None) -> dict | None:
    """This step's model against its input on the first valid examples."""
    path = step.data(valid_path)
    if not path or not os.path.isfile(path):
        return None
    split = load_rows(meta["model"], path, meta.get("label_names"), limit=min(step.limit or 32, 32))
    return compare_backends(open_model(step.input), open_model(step.work), split)


def _quantize_tflite(step: Step, precision, method, calibration, samples, valid_path) -> dict:
    """TensorFlow Lite from the SavedModel: dynamic-range int8 (weights), full int8 with a
    representative dataset of the calibration rows (float I/O kept), or fp16 weights.
    The SavedModel stays in the folder: it is what TF Serving serves; model.tflite
    measures the quantized model on CPU."""
    import tensorflow as tf

    meta = read_meta(step.input)
    for item in step.input.iterdir():
        if item.name != "report.json":
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, step.work / item.name)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(step.input))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    report: dict[str, Any] = {"precision": precision, "method": method if precision == "int8" else None,
                              "format": "tflite"}
    if precision == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif method == "static":
        split = _calibration_split(step, meta, calibration, samples)
        name = meta["signature"]["input"]
        arrays = split.arrays["features" if "features" in split.arrays else "text"]

        def representative():
            for i in range(len(arrays)):
                x = arrays[i:i + 1]
                yield {name: x.astype(np.float32 if x.dtype.kind == "f" else np.int32)}

        converter.representative_dataset = representative
        report["calibration"] = {"path": step.data(calibration), "samples": len(arrays)}
    # Calibration runs tf.lite.Interpreter, whose deprecation warning (six lines) says
    # nothing about this model.
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        blob = converter.convert()
    (step.work / "model.tflite").write_bytes(blob)
    saved = size_of(model_files(step.input))
    report["bytes"] = {"before": saved, "after": len(blob)}
    report["ratio"] = round(len(blob) / max(saved, 1), 4)
    report["served"] = "the SavedModel (TF Serving cannot serve TensorFlow Lite); model.tflite is the quantized model"
    path = step.data(valid_path)
    if path and os.path.isfile(path) and not generates(meta["model"]):
        split = load_rows(meta["model"], path, meta.get("label_names"), limit=min(step.limit or 64, 64))
        report["check"] = compare_backends(open_model(step.input), TfliteBackend(step.work / "model.tflite"), split)
    return report


# --- engines ----------------------------------------------------------------------------------------


class Serving(NamedTuple):
    """Where the serve/ artifacts expect the model (compiler/targets/triton.py, tfserving.py)."""

    platform: str | None  # "triton" | "tf-serving" | None
    name: str  # the served model's name (serving_names.serving_name)
    triton_platform: str | None  # "onnxruntime_onnx" | "tensorrt_plan" | "tensorflow_savedmodel" | ...
    config: str | None  # the bundle's config.pbtxt, relative to the bundle
    max_batch_size: int
    gpu: bool


def place_for_serving(step: Step, serving: Serving, bundle: Path) -> dict | None:
    """Copy the final model into the layout its server reads: SERVE/<name>/1/, where
    SERVE is --serve (default serve/ beside --output: $LLMC_OUTPUT/serve, from which
    the k8s serving pods' init container copies <name>/ into /models/):

    Triton:      SERVE/<name>/1/model.onnx | model.plan | model.savedmodel/, and the
                 bundle's config.pbtxt at SERVE/<name>/config.pbtxt, so
                 `tritonserver --model-repository SERVE` serves it as it is
    TF Serving:  SERVE/<name>/1/ (the SavedModel): --model_base_path=SERVE/<name>, or
                 SERVE mounted at /models (models.config's base_path is /models/<name>)
    """
    if serving.platform is None:
        return None
    target_dir = step.serve_root / serving.name
    staged = step.serve_root / f".{serving.name}.partial"
    if staged.exists():
        shutil.rmtree(staged)
    version = staged / "1"
    if serving.platform == "triton":
        target = {"onnxruntime_onnx": "model.onnx", "tensorrt_plan": "model.plan",
                  "tensorflow_savedmodel": "model.savedmodel"}.get(serving.triton_platform)
        if target is None:
            raise StepError(f"no compressed model for Triton platform {serving.triton_platform!r}")
        version.mkdir(parents=True)
        if target == "model.savedmodel":
            _copy_savedmodel(step.work, version / target)
        else:
            shutil.copy2(step.work / target, version / target)
        if serving.config and (bundle / serving.config).is_file():
            shutil.copy2(bundle / serving.config, staged / "config.pbtxt")
    else:
        _copy_savedmodel(step.work, version)
    _PARTIAL.append(staged)
    _replace_dir(staged, target_dir)
    return {"platform": serving.platform, "path": str(target_dir), "name": serving.name}


def _copy_savedmodel(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("saved_model.pb", "fingerprint.pb"):
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
    for name in ("variables", "assets"):
        if (src / name).is_dir():
            shutil.copytree(src / name, dst / name)


def build_onnxruntime(step: Step, serving: Serving, bundle: Path, valid_path: str | None = None) -> dict:
    """onnxruntime: the graph optimised offline once (constant folding, node fusions,
    the quantized ops' fused kernels) and saved, so a server loads it ready. Extended
    optimizations are for the CPU the model is served on; a model served on GPU keeps
    the portable basic level (onnxruntime's advice for saved optimized models)."""
    import onnxruntime as ort

    if step.format == "tensorflow":
        return _serve_savedmodel(step, serving, bundle, "no ONNX for a TensorFlow model (no tf2onnx): "
                                                         "the SavedModel is served as it is")
    if step.format != "onnx":
        raise StepError(f"build_engine (onnxruntime) needs an ONNX model, found {step.format} at {step.input}")
    meta = read_meta(step.input)
    level = "basic" if serving.gpu else "extended"
    for name in [*meta["onnx"].get("parts", []), meta["onnx"]["served"]]:
        so = _session_options(level)
        so.optimized_model_filepath = str(step.work / name)
        ort.InferenceSession(str(step.input / name), so, providers=["CPUExecutionProvider"])
    write_meta(step.work, {**meta, "engine": {"name": "onnxruntime", "optimization": level}})
    report = {"engine": "onnxruntime", "optimization": level,
              "bytes": {"before": size_of(model_files(step.input)), "after": size_of(model_files(step.work))},
              "files": {p.name: p.stat().st_size for p in sorted(step.work.glob("*.onnx"))}}
    report["check"] = _check_against_input(step, meta, valid_path)
    report["serving"] = place_for_serving(step, serving, bundle)
    return report


def _serve_savedmodel(step: Step, serving: Serving, bundle: Path, note: str) -> dict:
    for item in step.input.iterdir():
        if item.name not in ("report.json", "model.tflite"):
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, step.work / item.name)
    report = {"engine": "savedmodel", "note": note, "bytes": {"after": size_of(model_files(step.work))}}
    report["serving"] = place_for_serving(step, serving, bundle)
    return report


# --- TensorRT ---------------------------------------------------------------------------------------


def _entropy_calibrator(trt, feeds: list[dict], cache: Path):
    """An IInt8EntropyCalibrator2 over calibration batches (numpy dicts), with a cache
    file so a rebuild skips calibration. Device buffers through torch (CUDA)."""
    import torch

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self.feeds = feeds
            self.i = 0
            self.held = []

        def get_batch_size(self):
            return int(next(iter(self.feeds[0].values())).shape[0]) if self.feeds else 1

        def get_batch(self, names):
            if self.i >= len(self.feeds):
                return None
            feed = self.feeds[self.i]
            self.i += 1
            self.held = [torch.from_numpy(np.ascontiguousarray(feed[n])).cuda() for n in names]
            return [int(t.data_ptr()) for t in self.held]

        def read_calibration_cache(self):
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data):
            cache.write_bytes(bytes(data))

    return Calibrator()


def build_tensorrt(step: Step, serving: Serving, bundle: Path, precision: str | None, calibration: str | None,
                   samples: int, max_len: int | None, export_dir: Path) -> dict:
    """TensorRT from the fp32 ONNX that export wrote (a dynamic-quantized graph has ops
    TensorRT does not parse; TensorRT quantizes with its own calibrator instead):
    ONNX parser -> network, FP16 / INT8 builder flags (INT8 calibrated with
    IInt8EntropyCalibrator2 over the calibration rows, FP16 kept as the fallback for
    layers without INT8 kernels), one optimization profile spanning batch 1 to
    serve.batching.max_batch_size (and length 1 to max_len), serialized to model.plan.
    TensorFlow models go through TF-TRT instead."""
    if step.format == "tensorflow" or (export_dir / "saved_model.pb").is_file():
        return build_tftrt(step, serving, bundle, precision, calibration, samples)
    try:
        import tensorrt as trt
    except ImportError:
        raise NeedsTensorRT("TensorRT is not installed here (`import tensorrt` failed): build the engine on a "
                            "machine with TensorRT and a GPU, e.g. the compress Job of k8s/, or set "
                            "compress.engine = \"onnxruntime\"") from None
    meta = read_meta(export_dir)
    onnx_path = export_dir / meta["onnx"]["served"]
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise StepError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 4 << 30)
    profile = builder.create_optimization_profile()
    top = max(1, serving.max_batch_size)
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = list(tensor.shape)
        lo, opt, hi = list(dims), list(dims), list(dims)
        lo[0], opt[0], hi[0] = 1, top, top
        for d in range(1, len(dims)):
            if dims[d] < 0:  # the sequence axis
                lo[d], opt[d], hi[d] = 1, max_len or 1, max_len or 1
        profile.set_shape(tensor.name, lo, opt, hi)
    config.add_optimization_profile(profile)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        split = _calibration_split(step, meta, calibration, samples)
        # With dynamic shapes TensorRT calibrates at the profile's opt shape: full
        # batches of `top` rows, padded to max_len.
        feeds = served_feeds(meta["model"], split, top, max_len)
        if not feeds:
            raise StepError(f"INT8 calibration needs at least {top} calibration rows (serve.batching.max_batch_size)")
        config.int8_calibrator = _entropy_calibrator(trt, feeds, step.work / "calibration.cache")
        config.set_calibration_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise StepError("TensorRT failed to build the engine (see its log above)")
    (step.work / "model.plan").write_bytes(bytes(plan))
    write_meta(step.work, {**meta, "format": "llmc-tensorrt-1",
                           "engine": {"name": "tensorrt", "precision": precision or "fp32", "version": trt.__version__}})
    report = {"engine": "tensorrt", "version": trt.__version__, "precision": precision or "fp32",
              "bytes": {"onnx": onnx_path.stat().st_size, "plan": (step.work / "model.plan").stat().st_size},
              "profile": {"batch": [1, top, top], "length": [1, max_len, max_len] if max_len else None}}
    report["serving"] = place_for_serving(step, serving, bundle)
    return report


def build_tftrt(step: Step, serving: Serving, bundle: Path, precision: str | None, calibration: str | None,
                samples: int) -> dict:
    """TF-TRT (tf.experimental.tensorrt.Converter) on the SavedModel: FP32/FP16/INT8,
    INT8 calibrated on the calibration rows, engines built ahead for the batch sizes
    TF Serving's allowed_batch_sizes pad to; writes a SavedModel with TensorRT ops."""
    import tensorflow as tf

    try:
        from tensorflow.python.compiler.tensorrt import trt_convert

        enabled = trt_convert._pywrap_py_utils.is_tensorrt_enabled()
    except (ImportError, AttributeError):
        enabled = False
    if not enabled:
        raise NeedsTensorRT("this TensorFlow is not built with TensorRT (TF-TRT unavailable): build the engine on a "
                            "GPU machine with tensorflow[and-cuda] and TensorRT, or set compress.engine = \"onnxruntime\"")
    meta = read_meta(step.input)
    mode = {"int8": "INT8", "fp16": "FP16"}.get(precision or "", "FP32")
    converter = tf.experimental.tensorrt.Converter(
        input_saved_model_dir=str(step.input), precision_mode=mode, use_calibration=mode == "INT8",
        maximum_cached_engines=16)
    name = meta["signature"]["input"]
    width = meta["model"]["mlp"]["inputs"] if meta["model"].get("mlp") else meta["model"]["transformer"]["max_len"]
    dtype = np.float32 if meta["model"].get("mlp") else np.int32
    if mode == "INT8":
        split = _calibration_split(step, meta, calibration, samples)
        arrays = split.arrays["features" if "features" in split.arrays else ("text" if "text" in split.arrays else "source")]

        def calibration_input():  # the signature's keyword argument, batches of 16
            for i in range(0, len(arrays), 16):
                yield {name: tf.constant(arrays[i:i + 16].astype(dtype))}

        converter.convert(calibration_input_fn=calibration_input)
    else:
        converter.convert()
    sizes = []
    size = 1
    while size < serving.max_batch_size:
        sizes.append(size)
        size *= 2
    sizes.append(max(1, serving.max_batch_size))

    def build_input():
        for b in sizes:
            yield {name: tf.zeros((b, width), dtype)}

    converter.build(input_fn=build_input)
    converter.save(str(step.work))
    shutil.copy2(step.input / META, step.work / META)
    write_meta(step.work, {**meta, "engine": {"name": "tf-trt", "precision": mode}})
    report = {"engine": "tf-trt", "precision": mode, "batch_sizes": sizes,
              "bytes": {"before": size_of(model_files(step.input)), "after": size_of(model_files(step.work))}}
    report["serving"] = place_for_serving(step, serving, bundle)
    return report


# --- opening a model for inference (evaluate, checks) -----------------------------------------------------


class Backend:
    """A model ready to run on data.py batches (numpy arrays)."""

    name = "model"
    meta: dict
    path: Path

    @property
    def model_cfg(self) -> dict:
        return self.meta["model"]

    @property
    def generates(self) -> bool:
        return generates(self.model_cfg)

    @property
    def label_names(self):
        return self.meta.get("label_names")

    def files(self) -> list[Path]:
        return model_files(self.path)

    def classify(self, batch: dict) -> np.ndarray:  # logits [B, classes]
        raise NotImplementedError(f"{self.name}: cannot classify")

    def generate(self, batch: dict) -> np.ndarray:  # ids [B, n]
        raise NotImplementedError(f"{self.name}: cannot generate")

    def logits(self, batch: dict) -> np.ndarray | None:
        """Logits at the predicted positions (as torch_logits selects them), or None."""
        return self.classify(batch) if not self.generates else None

    def nll(self, batch: dict) -> tuple[float, float] | None:
        """(summed negative log-likelihood, predicted tokens), or None when the format cannot say."""
        return None


def _inputs_for_generation(batch: dict) -> np.ndarray:
    if "source" in batch:
        return batch["source"]
    return prompts_np(batch["tokens"], batch["loss_mask"])


def _positions(batch: dict):
    """(labels, mask) of the predicted positions of a generation batch."""
    if "source" in batch:
        labels = batch["target"][:, 1:]
        return labels, labels != PAD
    return batch["tokens"][:, 1:], batch["loss_mask"] > 0


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, path: Path):
        import torch

        from .zoo_torch import load_model

        self.torch = torch
        self.path = path
        self.model, self.meta = load_model(path)

    def _t(self, a):
        return self.torch.as_tensor(a)

    def classify(self, batch):
        x = batch["features"] if "features" in batch else batch["text"]
        with self.torch.no_grad():
            return self.model(self._t(x)).float().numpy()

    def generate(self, batch):
        with self.torch.no_grad():
            return self.model.generate(self._t(_inputs_for_generation(batch))).numpy()

    def logits(self, batch):
        if not self.generates:
            return self.classify(batch)
        with self.torch.no_grad():
            logits, _ = torch_logits(self.model, {k: self._t(v) for k, v in batch.items()})
        return logits.float().numpy()

    def nll(self, batch):
        from .zoo_torch import batch_loss

        with self.torch.no_grad():
            s, c, _ = batch_loss(self.model, {k: self._t(v) for k, v in batch.items()})
        return float(s), float(c)


class SavedModelBackend(Backend):
    """The SavedModel's serving_default signature (what TF Serving runs); the Keras
    weights beside it for logits and perplexity."""

    name = "savedmodel"

    def __init__(self, path: Path):
        import tensorflow as tf

        self.tf = tf
        self.path = path
        self.meta = read_meta(path)
        self.signature = tf.saved_model.load(str(path)).signatures["serving_default"]
        self.input = (self.meta.get("signature") or {}).get("input") or list(
            self.signature.structured_input_signature[1])[0]
        self._keras = None

    def keras(self):
        if self._keras is None:
            if not (self.path / "model.weights.h5").is_file():
                return None
            from .zoo_tf import load_model

            self._keras, _ = load_model(str(self.path))
        return self._keras

    def classify(self, batch):
        x = batch["features"] if "features" in batch else batch["text"]
        dtype = self.tf.float32 if x.dtype.kind == "f" else self.tf.int32
        return self.signature(**{self.input: self.tf.constant(x, dtype)})["logits"].numpy()

    def generate(self, batch):
        x = _inputs_for_generation(batch)
        return self.signature(**{self.input: self.tf.constant(x, self.tf.int32)})["tokens"].numpy().astype(np.int64)

    def logits(self, batch):
        if not self.generates:
            return self.classify(batch)
        model = self.keras()
        if model is None:
            return None
        from .zoo_tf import to_inputs

        logits, _ = tf_logits(model, to_inputs(batch))
        return logits.numpy()

    def nll(self, batch):
        model = self.keras()
        if model is None:
            return None
        from .zoo_tf import batch_loss, to_inputs

        s, c, _ = batch_loss(model, to_inputs(batch))
        return float(s), float(c)


class KerasBackend(SavedModelBackend):
    """The Keras model itself (export's reference for the SavedModel)."""

    name = "keras"

    def __init__(self, path: Path):
        import tensorflow as tf

        from .zoo_tf import load_model

        self.tf = tf
        self.path = path
        self.meta = read_meta(path)
        self._keras, _ = load_model(str(path))

    def classify(self, batch):
        x = batch["features"] if "features" in batch else batch["text"]
        from .zoo_tf import to_inputs

        key = "features" if "features" in batch else "text"
        return self.tf.cast(self._keras(to_inputs({key: x}), training=False), self.tf.float32).numpy()

    def generate(self, batch):
        x = _inputs_for_generation(batch)
        return self._keras.generate(self.tf.constant(x, self.tf.int32)).numpy().astype(np.int64)


class OnnxBackend(Backend):
    name = "onnxruntime"

    def __init__(self, path: Path):
        import onnxruntime as ort

        self.path = path
        self.meta = read_meta(path)
        info = self.meta.get("onnx") or {"served": "model.onnx"}
        so = _session_options()
        providers = ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path / info["served"]), so, providers=providers)
        self.parts = {}
        for part in info.get("parts", []):
            self.parts[part] = ort.InferenceSession(str(path / part), so, providers=providers)

    def classify(self, batch):
        if "features" in batch:
            return self.session.run(["logits"], {"features": batch["features"].astype(np.float32)})[0]
        return self.session.run(["logits"], {"input_ids": batch["text"].astype(np.int64)})[0]

    def generate(self, batch):
        ids = _inputs_for_generation(batch).astype(np.int64)
        out = self.session.run(["output_ids"], {"input_ids": ids})[0]
        return _trim_pad(out)

    def _full_logits(self, batch):
        if "decoder.onnx" not in self.parts:
            return None
        if "source" in batch:
            memory, mask = self.parts["encoder.onnx"].run(None, {"input_ids": batch["source"].astype(np.int64)})
            feed = {"decoder_input_ids": batch["target"][:, :-1].astype(np.int64), "memory": memory, "memory_mask": mask}
        else:
            feed = {"decoder_input_ids": batch["tokens"][:, :-1].astype(np.int64)}
        return self.parts["decoder.onnx"].run(["logits"], feed)[0]

    def logits(self, batch):
        if not self.generates:
            return self.classify(batch)
        full = self._full_logits(batch)
        if full is None:
            return None
        _, mask = _positions(batch)
        return full[mask]

    def nll(self, batch):
        full = self._full_logits(batch)
        if full is None:
            return None
        labels, mask = _positions(batch)
        logp = full - _logsumexp(full)
        picked = np.take_along_axis(logp, labels[..., None].astype(np.int64), -1)[..., 0]
        return float(-(picked * mask).sum()), float(mask.sum())


def _logsumexp(x: np.ndarray) -> np.ndarray:
    m = x.max(-1, keepdims=True)
    return m + np.log(np.exp(x - m).sum(-1, keepdims=True))


def _trim_pad(ids: np.ndarray) -> np.ndarray:
    """Drop trailing all-PAD columns (zoo_torch returns the longest row's width)."""
    cols = np.nonzero((ids != PAD).any(0))[0]
    return ids[:, :int(cols[-1]) + 1] if len(cols) else ids[:, :0]


class TfliteBackend(Backend):
    name = "tflite"

    def __init__(self, path: Path):
        import tensorflow as tf

        self.path = path
        self.meta = read_meta(path if path.is_dir() else path.parent)
        model = path / "model.tflite" if path.is_dir() else path
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.interpreter = tf.lite.Interpreter(model_path=str(model), num_threads=cpu_threads())
        self.runner = self.interpreter.get_signature_runner("serving_default")
        self.input = (self.meta.get("signature") or {}).get("input") or "features"

    def files(self):
        return [self.path / "model.tflite" if self.path.is_dir() else self.path]

    def classify(self, batch):
        x = batch["features"] if "features" in batch else batch["text"]
        x = x.astype(np.float32 if x.dtype.kind == "f" else np.int32)
        # The converted signature has batch 1 fixed in places: run one row at a time.
        return np.concatenate([self.runner(**{self.input: x[i:i + 1]})["logits"] for i in range(len(x))])

    def generate(self, batch):
        raise NotImplementedError("generation with a TensorFlow Lite model is not supported; evaluate the SavedModel")


def open_model(path: str | os.PathLike, prefer: str | None = None) -> Backend:
    """The model at `path` (a folder or a model file), ready to run."""
    p = Path(path)
    fmt = model_format(p)
    configure_threads(fmt)
    if fmt == "tensorrt":
        raise NeedsTensorRT(f"{path} is a TensorRT engine: evaluate it on a machine with TensorRT and a GPU, "
                            f"or evaluate the ONNX model export wrote")
    if p.is_file():
        if fmt == "tflite":
            return TfliteBackend(p)
        p = p.parent
    if fmt == "torch":
        return TorchBackend(p)
    if fmt == "onnx":
        return OnnxBackend(p)
    if fmt == "tflite":
        return TfliteBackend(p)
    return KerasBackend(p) if prefer == "keras" else SavedModelBackend(p)
