"""A small real bundle for the runner's tests (test_runner.py and test_runner_runs.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from llmc.runtime.runner import Bundle

# An evaluate script that counts the files of the folder it is given and says so.
SCRIPT = (
    "import sys, pathlib\np = pathlib.Path(sys.argv[1]); p.mkdir(parents=True, exist_ok=True)\n"
    "(p / 'count').write_text(str(len(list(p.iterdir()))))\nprint('evaluated')\n"
)


def write_bundle(root: Path, evaluate_code: str, data: str = "data/train.tsv") -> Bundle:
    """A bundle at root: model.json naming `data` for every split, evaluate/evaluate.py
    holding evaluate_code, and a lock file with their hashes."""
    files = {
        "model.json": json.dumps({"model": {"data": {"train": data, "valid": data, "test": data}}}),
        "evaluate/evaluate.py": evaluate_code,
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    lock = {
        "artifacts": {rel: hashlib.sha256(text.encode()).hexdigest() for rel, text in files.items()},
        "inputs": {"train": data, "valid": data, "test": data},
    }
    (root / "llmc.lock.json").write_text(json.dumps(lock))
    return Bundle(str(root))
