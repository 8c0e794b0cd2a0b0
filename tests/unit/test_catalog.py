"""The device catalog: names, dense (not sparse) datasheet figures, decimal memory."""

import ast
import pathlib
import sys

import pytest

from llmc.compiler import catalog

REQUIRED = [
    "V100-16GB",
    "V100-32GB",
    "T4",
    "A10",
    "L4",
    "L40S",
    "A100-40GB",
    "A100-80GB",
    "H100-80GB",
    "H200-141GB",
    "cpu",
]
T = 1e12


def test_every_required_device_is_known():
    assert set(REQUIRED) <= set(catalog.names())
    for name in REQUIRED:
        dev = catalog.get(name)
        assert dev is not None and dev.name == name


def test_names_are_unique_and_a_list():
    names = catalog.names()
    assert isinstance(names, list)
    assert len(names) == len(set(names))


def test_lookup_is_exact_and_case_sensitive():
    assert catalog.get("A100") is None
    assert catalog.get("t4") is None  # no silent aliases...
    assert catalog.canonical("t4") == "T4"  # ...but the help can suggest the canonical name
    assert catalog.canonical("h100-80gb") == "H100-80GB"
    assert catalog.canonical("CPU") == "cpu"
    assert catalog.canonical("B200") is None
    assert catalog.get(None) is None  # type: ignore[arg-type]  # not a string: unknown, no exception


def test_no_bf16_on_volta_and_turing():
    for name in ("V100-16GB", "V100-32GB", "T4"):
        dev = catalog.get(name)
        assert dev.bf16 is False
        assert dev.bf16_flops == 0.0
        assert dev.peak_ops("bf16") == 0.0
        assert not dev.supports("bf16")
        assert dev.supports("fp16")
    for name in ("A10", "L4", "L40S", "A100-40GB", "A100-80GB", "H100-80GB", "H200-141GB"):
        assert catalog.get(name).bf16 is True


def test_sparsity_figures_are_halved():
    # H100 SXM5 datasheet: BF16/FP16 1,979 TFLOPS and INT8 3,958 TOPS "with sparsity".
    h100 = catalog.get("H100-80GB")
    assert h100.bf16_flops == pytest.approx(1979 / 2 * T)
    assert h100.fp16_flops == pytest.approx(1979 / 2 * T)
    assert h100.int8_ops == pytest.approx(3958 / 2 * T)
    assert "SXM5" in h100.source
    # H200 has the H100 SXM compute with more, faster memory.
    h200 = catalog.get("H200-141GB")
    assert h200.bf16_flops == h100.bf16_flops and h200.bandwidth_bytes_per_s == pytest.approx(4.8e12)
    # L4 datasheet prints only sparse figures: 242 TFLOPS FP16, 485 TOPS INT8.
    l4 = catalog.get("L4")
    assert l4.fp16_flops == pytest.approx(242 / 2 * T)
    assert l4.int8_ops == pytest.approx(485 / 2 * T)
    # A100: 312 dense / 624 sparse FP16; 624 dense / 1,248 sparse INT8.
    for name in ("A100-40GB", "A100-80GB"):
        a100 = catalog.get(name)
        assert a100.bf16_flops == pytest.approx(312 * T)
        assert a100.int8_ops == pytest.approx(624 * T)
        assert "SXM4" in a100.source
    # Turing has no sparsity: T4's 65 TFLOPS FP16 and 130 TOPS INT8 are dense as printed.
    t4 = catalog.get("T4")
    assert (t4.fp16_flops, t4.int8_ops, t4.fp32_flops) == (65 * T, 130 * T, 8.1 * T)


def test_bandwidths_from_datasheets():
    expect = {
        "V100-16GB": 900e9,
        "T4": 320e9,
        "A10": 600e9,
        "L4": 300e9,
        "L40S": 864e9,
        "A100-40GB": 1555e9,
        "A100-80GB": 2039e9,
        "H100-80GB": 3.35e12,
        "H200-141GB": 4.8e12,
    }
    for name, bw in expect.items():
        assert catalog.get(name).bandwidth_bytes_per_s == pytest.approx(bw)


def test_memory_is_decimal_gb():
    # "80GB" = 80 * 10**9 bytes (see the module docstring for why).
    assert catalog.get("A100-80GB").memory_bytes == 80 * 10**9
    assert catalog.get("H200-141GB").memory_bytes == 141 * 10**9
    assert catalog.get("T4").memory_bytes == 16 * 10**9
    assert catalog.get("V100-32GB").memory_bytes == 32 * 10**9


def test_figures_are_sane_for_every_device():
    for dev in catalog.devices():
        assert dev.memory_bytes > 0 and dev.bandwidth_bytes_per_s > 0
        assert dev.fp32_flops > 0 and dev.fp16_flops >= dev.fp32_flops
        assert dev.int8_ops > 0
        assert dev.source
        assert dev.peak_ops("fp32") == dev.fp32_flops
        assert dev.peak_ops("int8") == dev.int8_ops
        assert dev.peak_ops("fp64") == 0.0  # unknown precision: no throughput, no exception


def test_cpu_entry_is_a_modest_server():
    cpu = catalog.get("cpu")
    assert 0.5 * T <= cpu.fp32_flops <= 3 * T
    assert 30e9 <= cpu.bandwidth_bytes_per_s <= 200e9
    assert cpu.memory_bytes == 64 * 10**9


def test_devices_are_frozen():
    with pytest.raises(AttributeError):
        catalog.get("T4").memory_bytes = 1  # type: ignore[misc]  # the point: it is read-only


@pytest.mark.parametrize(
    "module",
    ["catalog.py"]
    + [f"estimate/{p.name}" for p in sorted(pathlib.Path(catalog.__file__).parent.glob("estimate/*.py"))],
)
def test_modules_import_only_the_standard_library(module):
    # They run on every `llmc check`: no pydantic IR, no ML framework, nothing slow to import.
    # The estimate package's modules may import one another (a relative import within it).
    path = pathlib.Path(catalog.__file__).parent / module
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not (module.startswith("estimate/") and node.level == 1):
            imported.add((node.module or "").split(".")[0])
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)
