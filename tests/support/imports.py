"""The packages the compiler must not import, for test_no_heavy_imports.py (statically)
and test_no_heavy_imports_runs.py (at run time)."""

from __future__ import annotations

FORBIDDEN = (
    "torch",
    "tensorflow",
    "tensorrt",
    "horovod",
    "hyperopt",
    "kubernetes",
    "onnx",
    "onnxruntime",
    "jax",
    "sentencepiece",
)
