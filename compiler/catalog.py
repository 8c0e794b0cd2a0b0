"""The device catalog (docs/devices.md): memory, precisions, dense throughput, bandwidth.

Every figure comes from the vendor's datasheet for the variant named in `source`.
The rules used to read those datasheets:

* Throughput is DENSE. NVIDIA prints most Ampere, Ada and Hopper Tensor Core figures
  "with sparsity" (2:4 structured sparsity, marked with an asterisk); we halve those.
  A model that was not pruned to the 2:4 pattern and built for sparse kernels never
  sees the sparse figure, and `compress.prune` here is unstructured or channel
  pruning, not 2:4.
* `fp16_flops` / `bf16_flops` are the Tensor Core figures (FP16/BF16 inputs,
  FP32 accumulate where the datasheet distinguishes), `int8_ops` the INT8 Tensor
  Core figure, `fp32_flops` the plain CUDA-core FP32 figure (not TF32: PyTorch
  leaves TF32 matmuls off by default, and fp32 serving must not silently assume it).
* A device without bf16 (V100, T4) has `bf16=False` and `bf16_flops=0.0`; training in
  bf16 on it is E307.
* Where a variant matters (SXM vs PCIe), the catalog holds the SXM part, because
  that is what the "-80GB"/"-141GB" names most often mean in clusters, and says so
  in `source`.

Memory: `memory_bytes` is the vendor's marketed capacity in decimal units, i.e.
"80GB" is 80 * 10**9 bytes. The physical memory is binary (80 GiB on an A100-80GB),
nvidia-smi reports slightly less than that (ECC and reserved regions), and a process
then loses a few hundred MiB to the CUDA context and more to allocator
fragmentation. Decimal GB lands at or below what a process can really allocate on
the HBM parts (about 5-7% below, an implicit safety margin) and within about 2% of
it on the GDDR parts (T4, A10, L4, L40S), it is the number the device's name
promises, and it is exact to reproduce. Everything llmc prints in "GB" means 10**9
bytes for the same reason.

Names: matched exactly and case-sensitively against the canonical names
(`V100-16GB V100-32GB T4 A10 L4 L40S A100-40GB A100-80GB H100-80GB H200-141GB cpu`).
There are deliberately no aliases: specs are reviewed and diffed, and one spelling
per device keeps generated files and their hashes stable. `canonical()` does a
case-insensitive lookup, for the "did you mean" help of E309, never to accept the
spelling silently.

The `cpu` entry is a generic 16-core x86-64 server slice, documented on the entry.
"""

from typing import NamedTuple


class Device(NamedTuple):
    """One accelerator (or the generic CPU). Rates are per second, dense, peak."""

    name: str
    memory_bytes: int
    bf16: bool
    fp16_flops: float
    bf16_flops: float
    int8_ops: float
    fp32_flops: float
    bandwidth_bytes_per_s: float
    source: str
    # How a server on this device spends time besides the roofline (docs/estimates.md,
    # "Serving latency"). The GPU figures are the estimator's published defaults; the
    # `cpu` entry's are measured (its `calibration`).
    request_overhead_s: float = 1e-3  # per batch: the front end, scheduling, the backend's call
    row_overhead_s: float = 0.0  # per request in a batch: its (de)serialisation and handling
    text_row_overhead_s: float = 0.0  # per text request in a batch, besides: tokenizing it, decoding its answer
    layer_launch_s: float = 20e-6  # per layer per forward pass: the floor set by launching its kernels
    row_launch_s: float = 0.0  # per layer per forward pass, per row: framework work that grows with the batch
    step_sync_s: float = 30e-6  # per generated token: reading it back, starting the next step
    calibration: str = ""  # where the overheads of this entry were measured, when they were
    # Model instances one replica runs at once: batches served side by side. One per GPU; the
    # local server (`llmc serve`) runs two on a CPU (docs/serving.md, "Why two instances").
    serving_instances: int = 1

    def peak_ops(self, precision: str) -> float:
        """Peak dense ops/s for `precision` ("fp32" "fp16" "bf16" "int8"); 0.0 if unsupported or unknown."""
        if precision == "fp32":
            return self.fp32_flops
        if precision == "fp16":
            return self.fp16_flops
        if precision == "bf16":
            return self.bf16_flops if self.bf16 else 0.0
        if precision == "int8":
            return self.int8_ops
        return 0.0

    def supports(self, precision: str) -> bool:
        """Whether the device can compute in `precision` at all (bf16 needs hardware support)."""
        return self.peak_ops(precision) > 0.0


_T = 1e12
_GB = 10**9

_DEVICES: tuple[Device, ...] = (
    Device(
        name="V100-16GB",
        memory_bytes=16 * _GB,
        bf16=False,
        fp16_flops=125 * _T,
        bf16_flops=0.0,
        int8_ops=62.8 * _T,
        fp32_flops=15.7 * _T,
        bandwidth_bytes_per_s=900e9,
        source=(
            "NVIDIA Tesla V100 datasheet, SXM2 variant: FP32 15.7 TFLOPS, Tensor (FP16) 125 TFLOPS, "
            "16 GB HBM2 at 900 GB/s; no bf16. INT8 is not on the datasheet (Volta has no INT8 "
            "Tensor Cores): 62.8 TOPS is DP4A at 4x the FP32 rate."
        ),
    ),
    Device(
        name="V100-32GB",
        memory_bytes=32 * _GB,
        bf16=False,
        fp16_flops=125 * _T,
        bf16_flops=0.0,
        int8_ops=62.8 * _T,
        fp32_flops=15.7 * _T,
        bandwidth_bytes_per_s=900e9,
        source=(
            "NVIDIA Tesla V100 datasheet, SXM2 32GB variant: FP32 15.7 TFLOPS, Tensor (FP16) 125 TFLOPS, "
            "32 GB HBM2 at 900 GB/s; no bf16. INT8 62.8 TOPS is DP4A at 4x FP32 (not on the datasheet)."
        ),
    ),
    Device(
        name="T4",
        memory_bytes=16 * _GB,
        bf16=False,
        fp16_flops=65 * _T,
        bf16_flops=0.0,
        int8_ops=130 * _T,
        fp32_flops=8.1 * _T,
        bandwidth_bytes_per_s=320e9,
        source=(
            "NVIDIA T4 datasheet (PCIe, 70 W): FP32 8.1 TFLOPS, mixed FP16/FP32 65 TFLOPS, "
            "INT8 130 TOPS, 16 GB GDDR6 at 320 GB/s; Turing has no sparsity figures and no bf16."
        ),
    ),
    Device(
        name="A10",
        memory_bytes=24 * _GB,
        bf16=True,
        fp16_flops=125 * _T,
        bf16_flops=125 * _T,
        int8_ops=250 * _T,
        fp32_flops=31.2 * _T,
        bandwidth_bytes_per_s=600e9,
        source=(
            "NVIDIA A10 datasheet (PCIe): FP32 31.2 TFLOPS, BF16/FP16 Tensor 125 TFLOPS "
            "(250 with sparsity), INT8 250 TOPS (500 with sparsity), 24 GB GDDR6 at 600 GB/s."
        ),
    ),
    Device(
        name="L4",
        memory_bytes=24 * _GB,
        bf16=True,
        fp16_flops=121 * _T,
        bf16_flops=121 * _T,
        int8_ops=242.5 * _T,
        fp32_flops=30.3 * _T,
        bandwidth_bytes_per_s=300e9,
        source=(
            "NVIDIA L4 datasheet (PCIe, 72 W): FP32 30.3 TFLOPS; BF16/FP16 Tensor 242 TFLOPS and "
            "INT8 485 TOPS are printed with sparsity only, halved here to 121 and 242.5; "
            "24 GB GDDR6 at 300 GB/s."
        ),
    ),
    Device(
        name="L40S",
        memory_bytes=48 * _GB,
        bf16=True,
        fp16_flops=362.05 * _T,
        bf16_flops=362.05 * _T,
        int8_ops=733 * _T,
        fp32_flops=91.6 * _T,
        bandwidth_bytes_per_s=864e9,
        source=(
            "NVIDIA L40S datasheet (PCIe): FP32 91.6 TFLOPS, BF16/FP16 Tensor 362.05 TFLOPS "
            "(733 with sparsity), INT8 733 TOPS (1,466 with sparsity), 48 GB GDDR6 at 864 GB/s."
        ),
    ),
    Device(
        name="A100-40GB",
        memory_bytes=40 * _GB,
        bf16=True,
        fp16_flops=312 * _T,
        bf16_flops=312 * _T,
        int8_ops=624 * _T,
        fp32_flops=19.5 * _T,
        bandwidth_bytes_per_s=1555e9,
        source=(
            "NVIDIA A100 datasheet, SXM4 40GB variant: FP32 19.5 TFLOPS, BF16/FP16 Tensor 312 TFLOPS "
            "(624 with sparsity), INT8 624 TOPS (1,248 with sparsity), 40 GB HBM2 at 1,555 GB/s."
        ),
    ),
    Device(
        name="A100-80GB",
        memory_bytes=80 * _GB,
        bf16=True,
        fp16_flops=312 * _T,
        bf16_flops=312 * _T,
        int8_ops=624 * _T,
        fp32_flops=19.5 * _T,
        bandwidth_bytes_per_s=2039e9,
        source=(
            "NVIDIA A100 datasheet, SXM4 80GB variant: FP32 19.5 TFLOPS, BF16/FP16 Tensor 312 TFLOPS "
            "(624 with sparsity), INT8 624 TOPS (1,248 with sparsity), 80 GB HBM2e at 2,039 GB/s "
            "(the PCIe 80GB card has 1,935 GB/s)."
        ),
    ),
    Device(
        name="H100-80GB",
        memory_bytes=80 * _GB,
        bf16=True,
        fp16_flops=989.5 * _T,
        bf16_flops=989.5 * _T,
        int8_ops=1979 * _T,
        fp32_flops=67 * _T,
        bandwidth_bytes_per_s=3.35e12,
        source=(
            "NVIDIA H100 datasheet, SXM5 variant: FP32 67 TFLOPS; BF16/FP16 Tensor 1,979 TFLOPS and "
            "INT8 3,958 TOPS are printed with sparsity, halved here to 989.5 and 1,979; "
            "80 GB HBM3 at 3.35 TB/s. (H100 PCIe is slower: 756/1,513 dense, 2 TB/s.)"
        ),
    ),
    Device(
        name="H200-141GB",
        memory_bytes=141 * _GB,
        bf16=True,
        fp16_flops=989.5 * _T,
        bf16_flops=989.5 * _T,
        int8_ops=1979 * _T,
        fp32_flops=67 * _T,
        bandwidth_bytes_per_s=4.8e12,
        source=(
            "NVIDIA H200 datasheet, SXM variant: the H100 SXM5 compute (FP32 67 TFLOPS; BF16/FP16 "
            "1,979 and INT8 3,958 with sparsity, halved to 989.5 and 1,979) with 141 GB HBM3e "
            "at 4.8 TB/s."
        ),
    ),
    Device(
        name="cpu",
        memory_bytes=64 * _GB,
        bf16=True,
        fp16_flops=1.0 * _T,
        bf16_flops=1.0 * _T,
        int8_ops=4.0 * _T,
        fp32_flops=1.0 * _T,
        bandwidth_bytes_per_s=76.8e9,
        source=(
            "Generic x86-64 server slice, not a datasheet: 16 cores at a sustained 2.0 GHz "
            "all-core vector clock, 32 FP32 FLOP/cycle/core (two 256-bit AVX2 FMA units or one "
            "512-bit AVX-512 FMA unit) = 1.02 TFLOPS FP32; fp16/bf16 counted at the FP32 rate "
            "(no AMX/AVX512-FP16 assumed: they are converted to FP32); INT8 4 TOPS with VNNI "
            "(4 int8 MACs per FP32 FMA lane); memory bandwidth 76.8 GB/s = 4 channels of DDR4-2400 "
            "at 19.2 GB/s each, about a 16-core share of a server socket; 64 GB RAM (4 GB per core)."
        ),
        request_overhead_s=0.0,
        row_overhead_s=1.2e-3,
        text_row_overhead_s=1.2e-3,
        layer_launch_s=60e-6,
        row_launch_s=35e-6,
        step_sync_s=55e-6,
        calibration=(
            "Measured 2026-12-02 on a 2-core x86-64 machine: the translator's local profile (an int8 ONNX "
            "1+1-layer encoder-decoder, d 64, in onnxruntime) served by Triton 2.51's Python backend with "
            "two model instances. The model alone took 1.99, 2.46, 3.42, 5.36 and 9.39 ms for batches of "
            "1, 2, 4, 8 and 16 date phrases (about 12 generated tokens): 14 layer passes, so 35 us per row "
            "per layer pass, and 1.5 ms at batch 0, split as 60 us per layer pass and 55 us per step. A "
            "lone request through Triton took 9.4 ms, 5 ms of it the batching window and 2 ms the model: "
            "2.4 ms of HTTP, JSON, tokenizing and the backend's IPC per request, batched or not. llmc "
            "loadtest's sweep held 640 req/s (not 960): two instances of 16 requests at 2.4 ms each plus "
            "9.4 ms give 669. The classifier's local MLP (feature vectors: no tokenizing) held 1,600 "
            "req/s (not 2,400), 1.2 ms a request in batches of 64 on two instances: the per-request "
            "cost without text, the other 1.2 ms the translator's tokenizing and decoding."
        ),
        serving_instances=2,
    ),
)

_BY_NAME: dict[str, Device] = {d.name: d for d in _DEVICES}
_BY_LOWER: dict[str, str] = {d.name.lower(): d.name for d in _DEVICES}


def get(name: str) -> Device | None:
    """The device with this canonical name (case-sensitive), or None."""
    if not isinstance(name, str):
        return None
    return _BY_NAME.get(name)


def names() -> list[str]:
    """Canonical names, in catalog order (roughly oldest to newest GPU, then `cpu`)."""
    return [d.name for d in _DEVICES]


def canonical(name: str) -> str | None:
    """The canonical name matching `name` ignoring case (for "did you mean"), or None."""
    if not isinstance(name, str):
        return None
    return _BY_LOWER.get(name.strip().lower())


# The values NVIDIA's GPU feature discovery gives a node's `nvidia.com/gpu.product` label
# (NVML's product name with spaces as "-"), for each variant of a catalog GPU: the pods
# that need the spec's device require one of them (docs/devices.md).
GPU_PRODUCTS: dict[str, tuple[str, ...]] = {
    "V100-16GB": ("Tesla-V100-SXM2-16GB", "Tesla-V100-PCIE-16GB"),
    "V100-32GB": ("Tesla-V100-SXM2-32GB", "Tesla-V100-PCIE-32GB"),
    "T4": ("Tesla-T4",),
    "A10": ("NVIDIA-A10",),
    "L4": ("NVIDIA-L4",),
    "L40S": ("NVIDIA-L40S",),
    "A100-40GB": ("NVIDIA-A100-SXM4-40GB", "NVIDIA-A100-PCIE-40GB"),
    "A100-80GB": ("NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-80GB-PCIe"),
    "H100-80GB": ("NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe"),
    "H200-141GB": ("NVIDIA-H200", "NVIDIA-H200-NVL"),
}


def gpu_products(name: str) -> tuple[str, ...]:
    """The `nvidia.com/gpu.product` values of a device (none for `cpu`)."""
    return GPU_PRODUCTS.get(canonical(name) or "", ())


def devices() -> tuple[Device, ...]:
    """All entries, in catalog order."""
    return _DEVICES


def is_gpu(name: str) -> bool:
    """Whether a device name is an accelerator: everything in the catalog but `cpu`
    (the one spelling every phase uses)."""
    return name != "cpu"
