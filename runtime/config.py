"""A run's settings: the bundle's model.json, with `--set PATH=VALUE` overrides.

model.json (written by the compiler's horovod target) holds the spec's `model` and
`train` blocks plus `framework` and `parallel`. Every script of the bundle reads it
through `load_config`, so one override (`--set train.optimizer.lr=0.001`, as the
Hyperopt search passes them) means the same thing to training, compression and
evaluation.

Paths: relative data and tokenizer paths in model.json are relative to the spec's folder and are
resolved against the data root (`--data-root`); paths given with --set are relative
to the current directory, like any command-line path. Both are made absolute here. An override must name a field that exists (a typo is an
error with a suggestion, never a silently ignored setting).
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from .data import URI_SCHEMES
from .tokenizer import NAMES as TOKENIZER_NAMES

PATH_FIELDS = ("model.data.train", "model.data.valid", "model.data.test", "model.data.tokenizer")


class ConfigError(ValueError):
    """A bad override or an impossible layout: the user's to fix, reported without a traceback."""


def threads_setting() -> int | None:
    """$LLMC_THREADS: the CPU threads torch, onnxruntime and TensorFlow may each use
    (unset: their defaults, one per core). Set it where the cores are shared (a pod
    under a CPU limit, a busy CI machine, search trials running side by side): spinning
    thread pools on oversubscribed cores make every call many times slower."""
    value = os.environ.get("LLMC_THREADS", "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"LLMC_THREADS={value!r}: expected a whole number of threads, at least 1")
    return int(value)


def load_config(
    model_json: str | os.PathLike,
    overrides: Sequence[str] = (),
    cwd: str | None = None,
    data_root: str | os.PathLike | None = None,
) -> dict:
    """model.json with overrides applied and data paths made usable here.

    The spec's relative data paths are relative to the spec's folder; they are
    resolved against `data_root` (`--data-root`, else $LLMC_DATA_ROOT, else the
    working directory), so a bundle does not depend on where it was written.
    """
    path = Path(model_json)
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    root = Path(data_root or os.environ.get("LLMC_DATA_ROOT") or cwd or os.getcwd())
    for key in PATH_FIELDS:
        _resolve(cfg, key, root)
    for item in overrides:
        key, value = parse_override(item)
        set_field(cfg, key, value)
        if key in PATH_FIELDS:
            _resolve(cfg, key, Path(cwd or os.getcwd()))
    return cfg


def read_lock(bundle: str | os.PathLike) -> dict:
    """The bundle's llmc.lock.json: the spec it was built from (scripts name no spec
    themselves, so renaming one changes its lock file only). Raises OSError or
    ValueError when it is missing or unreadable."""
    lock: dict = json.loads((Path(bundle) / "llmc.lock.json").read_text(encoding="utf-8"))
    return lock


def bundle_identity(bundle: str | os.PathLike) -> dict:
    """`spec` (the file name) and `profile` of the spec a bundle was built from (its
    lock file). A bundle without a lock gives Nones."""
    try:
        lock = read_lock(bundle)
    except (OSError, ValueError):
        lock = {}
    return {"spec": lock.get("spec"), "profile": lock.get("profile")}


def parse_override(item: str) -> tuple[str, object]:
    """`train.optimizer.lr=0.001` -> ("train.optimizer.lr", 0.001). Values are JSON; a
    value that is not JSON is taken as a string (`model.data.train=dates.tsv`)."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected PATH=VALUE, e.g. train.optimizer.lr=0.001")
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    return key, value


def set_field(cfg: dict, key: str, value) -> None:
    node = cfg
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            where = ".".join(parts[:depth]) or "the top level"
            known = sorted(node) if isinstance(node, dict) else []
            guess = difflib.get_close_matches(part, known, n=1)
            hint = f"; did you mean `{'.'.join(parts[:depth] + guess)}`?" if guess else ""
            raise ConfigError(f"--set {key}: {where} has no field `{part}`{hint}")
        if depth == len(parts) - 1:
            old = node[part]
            if isinstance(old, dict):
                raise ConfigError(f"--set {key}: names a block; set one of its fields ({', '.join(sorted(old))})")
            node[part] = _coerce(key, old, value)
        else:
            node = node[part]


def _coerce(key: str, old, value):
    """Keep a field's type: an int field takes 3 and 3.0, a float field takes 3."""
    if old is None or value is None:
        return value
    if isinstance(old, bool) or isinstance(value, bool):
        if isinstance(old, bool) and isinstance(value, bool):
            return value
    elif isinstance(old, float) and isinstance(value, (int, float)):
        # `checkpoint.every` is a duration (float seconds) or whole steps (int): keep what was given.
        return value if key.endswith("checkpoint.every") else float(value)
    elif isinstance(old, int) and isinstance(value, (int, float)):
        if key.endswith("checkpoint.every") and isinstance(value, float):
            return value
        if float(value).is_integer():
            return int(value)
    elif (isinstance(old, str) and isinstance(value, str)) or (isinstance(old, list) and isinstance(value, list)):
        return value
    raise ConfigError(f"--set {key}={json.dumps(value)}: expected a value like {json.dumps(old)}")


def _resolve(cfg: dict, key: str, base: Path) -> None:
    node = cfg
    *parents, last = key.split(".")
    for p in parents:
        node = node.get(p) or {}
    value = node.get(last)
    if key == "model.data.tokenizer" and value in TOKENIZER_NAMES:
        return  # "bytes" names a tokenizer, not a file
    if isinstance(value, str) and value and not value.startswith(URI_SCHEMES) and not os.path.isabs(value):
        node[last] = os.path.normpath(str(base / value))


# --- the batch layout ------------------------------------------------------------------


class BatchLayout(NamedTuple):
    """How a global batch is split: batch_size = data x micro_batch x accumulation."""

    data: int
    tensor: int
    micro_batch: int
    accumulation: int
    batch_size: int


def batch_layout(train: dict, world_size: int, tensor: int) -> BatchLayout:
    """The layout of this run; `world_size` is the number of processes actually started.

    The data parallelism is world_size / tensor (HOROVOD_NP may differ from the spec's
    cluster: the global batch stays what the spec says). micro_batch is the spec's
    (or the value it derived, batch_size / data) when it still divides the global batch
    per replica; otherwise it falls back to batch_size / data with no accumulation,
    which is what the language derives when micro_batch is not written. Either way the
    optimizer sees the same global batch.
    """
    if world_size % tensor:
        raise ConfigError(f"{world_size} processes cannot be split into tensor-parallel groups of {tensor}")
    data = world_size // tensor
    batch = int(train["batch_size"])
    if batch % data:
        raise ConfigError(f"batch_size = {batch} cannot be split over data = {data} replicas")
    per_replica = batch // data
    micro = int(train.get("micro_batch") or per_replica)
    if per_replica % micro:
        micro = per_replica
    return BatchLayout(data, tensor, micro, per_replica // micro, batch)
