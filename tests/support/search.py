"""The search driver's inputs built by hand, and the real bundles, for
test_target_search.py and test_target_search_runs.py. Imports hyperopt (through
llmc.runtime.search): import it after the test module's importorskip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import BundleCache

from llmc.runtime import search as driver

# A space with every kind of distribution, on fields of every cast (int, float, str, a union's float).
ALL_KINDS_SPACE = """  space {
    train.optimizer.lr           = loguniform(1e-5, 1e-3)
    model.transformer.dropout    = uniform(0.0, 0.3)
    train.batch_size             = choice(256, 512, 1024)
    train.schedule.warmup        = quniform(1000, 8000, 500)
    train.checkpoint.keep        = randint(1, 5)
    compress.prune.sparsity      = normal(0.3, 0.05)
    train.gradient_compression   = choice("none", "fp16")
    train.checkpoint.every       = choice(10m, 20m)
  }"""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The bundle of a checked-in spec, built once per module (tests only read it)."""
    return BundleCache(tmp_path_factory)


def config_of(**changes) -> driver.SearchConfig:
    base = {
        "model": "m",
        "algorithm": "tpe",
        "max_evals": 3,
        "parallel": 2,
        "backend": "local",
        "early_stop": None,
        "objective": "valid_loss",
        "direction": "minimize",
        "seed": 0,
        "mongo_url_env": "TEST_MONGO_URL",
        "space": {
            "train.optimizer.lr": driver.Distribution("loguniform", [1e-4, 1e-2], "float"),
            "train.batch_size": driver.Distribution("choice", [16, 32], "int"),
        },
    }
    return driver.SearchConfig(**{**base, **changes})


def fake_bundle(path: Path, profile: str | None = "local") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    lock = {"spec": "specs/my model.llm", "profile": profile, "spec_sha256": "ab" * 32}
    (path / "llmc.lock.json").write_text(json.dumps(lock), encoding="utf-8")
    return path
