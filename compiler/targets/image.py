"""image target: k8s/Dockerfile, the recipe of the one image every stage workload of
k8s/ runs (deploy.image): the training MPIJob's launcher and workers and the compress,
evaluate and search Jobs. Serving keeps the official Triton and TF Serving images. A
spec without a stage workload gets no Dockerfile.

Built from the bundle's root, with the llmc source checkout as a BuildKit named build
context (llmc is not on PyPI):

    docker buildx build --build-context llmc=PATH/TO/llmc -f k8s/Dockerfile -t IMAGE --push .

Two stages. `wheels` builds from source what the image installs: llmc's wheel (COPY
--from=llmc of what pyproject.toml builds from) and, with a train block, Horovod's.
The final stage installs them through a bind mount (no layer keeps a wheel or the
source), then copies the bundle.

Choices, all made here (the template only loops and fills in):

* Bases, pinned by version tag (the header says how to pin a digest as well). With
  every stage on cpu: python:3.11.7-slim-bookworm, the interpreter of bin/setup's
  .venv. When a stage runs on a GPU (facts.stage_pods: train and search on the training
  device, compress on the serving GPU for TensorRT, evaluate on the serving device):
  NVIDIA's CUDA images on Ubuntu 24.04 (Python 3.12), of the CUDA the framework's GPU
  wheels carry (CUDA_VERSIONS). The final stage is `-base`: the driver hooks and no
  CUDA libraries, since the wheels carry theirs and Horovod links the CUDA runtime and
  NCCL statically (its defaults). The build stage is `-devel` (nvcc, NCCL) when Horovod
  builds NCCL ops, else the final stage's base: the wheels it builds run on the same OS.
* Python packages go into a virtualenv at /opt/venv (Ubuntu's Python is externally
  managed), on PATH. The framework comes first, in a layer of its own (GBs that a
  changed llmc leaves cached): only the spec's, at the versions bin/setup and
  pyproject.toml pin; torch's CPU wheel from PyTorch's index or its CUDA build from PyPI,
  tensorflow-cpu or tensorflow[and-cuda]. Then one resolution of everything: the wheels,
  the framework again, the runtime extra's other requirements (RUNTIME_REQUIREMENTS:
  the extra itself pins both frameworks, so llmc is installed without it), and what
  this spec's stages import beyond them; `pip check` ends it.
* Those stage needs: pyspark (bin/setup's pin) and a JRE for SparkTrials, pymongo for
  MongoTrials, fsspec and the driver of each data URI's scheme, and, for a TensorRT
  engine built from a torch model, the TensorRT of the Triton image that loads it (an
  engine loads only in the TensorRT that built it).
* Horovod, only with a train block (the search stage trains through train/launch.sh
  too): the sdist of bin/setup's version with bin/setup's source fixes (C++17 for torch
  2.13's headers; TensorFlow's XLA ops only in GPU builds), each checked to match one
  line as bin/setup does; built for the spec's framework only, with Gloo and Debian's
  OpenMPI, and NCCL when training runs on a GPU. A GPU build takes two more fixes that
  bin/setup's CPU build never needs: CUDA 13's headers want C++17 in the kernels too,
  and the XLA ops the first fixes keep in GPU builds include headers TensorFlow 2.16
  moved, so they are left out (they only run with HOROVOD_ENABLE_XLA_OPS=1).
* mpi-operator's conventions (its mpioperator/openmpi image), with a train block:
  openssh and OpenMPI; sshd, run as the user by the MPIJob's workers with `-f
  /home/mpiuser/.sshd_config`, listens on 2222 with the job's mounted private key as
  host key (the user's own key, so readable by it) and its pid file in the writable
  /tmp; the launcher's ssh goes to port 2222 and keeps no known_hosts (the root
  filesystem is read-only). No setcap on sshd: port 2222 needs no capability.
* The user `mpiuser`, uid and gid k8s_workloads.UID (what every pod runs as), home
  /home/mpiuser (where mpi-operator mounts the key pair), created with or without a
  train block; USER uid:gid ends the image.
* The bundle at k8s_workloads.BUNDLE_DIR, the working directory, owned by root and
  readable by all (llmc writes its files 0644 and its scripts 0755).
* hadolint-clean (tests/integration/test_target_image_runs.py), three rules ignored
  where they apply, each with its reason beside it: apt packages are not pinned
  (DL3008: a security update removes the pinned version from the archive and the build
  breaks; the base tag pins the release), the runtime extra keeps pyproject.toml's
  ranges (DL3013), and `--from=llmc` names a build context, not a stage (DL3022).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from ..catalog import is_gpu
from . import Artifact, BuildContext
from .k8s_common import TRITON_IMAGE, image_build, names
from .k8s_workloads import BUNDLE_DIR, SSH_DIR, UID

# --- pins (tests/unit/test_target_image.py holds them equal to bin/setup and pyproject.toml) ---

HOROVOD_VERSION = "0.28.1"  # bin/setup's HOROVOD_VERSION
TORCH_VERSION = "2.13.0"  # bin/setup's TORCH_PIN (torch==2.13.0+cpu), pyproject's runtime extra
TENSORFLOW_VERSION = "2.21.0"  # pyproject's runtime extra (tensorflow-cpu==2.21.0)
PYSPARK_PIN = "pyspark==4.3.0"  # bin/setup's PYSPARK_PIN
# pyproject.toml's runtime extra without its two frameworks, in its order.
RUNTIME_REQUIREMENTS = (
    "onnx",
    "onnxruntime",
    "hyperopt>=0.3",
    "setuptools>=81",
    "sacrebleu",
    "rouge-score",
    "scikit-learn",
    "kubernetes",
    "sentencepiece",
    "matplotlib>=3.8",
    "kfp==2.17.3",
    "kfp-kubernetes==2.17.3",
)
FRAMEWORK_REQUIREMENTS = {"torch": f"torch=={TORCH_VERSION}", "tensorflow": f"tensorflow-cpu=={TENSORFLOW_VERSION}"}
# What `pip install <llmc source>` needs of the checkout: pyproject.toml's package-dir
# folders, its readme, and the project file itself.
LLMC_SOURCE = ("pyproject.toml", "README.md", "compiler", "runtime", "templates", "docs")


class SourceFix(NamedTuple):
    """The one line of `path` matching `pattern` (a Python regex, multi-line) becomes `replacement`."""

    path: str
    pattern: str
    replacement: str


# bin/setup's patch_horovod, edit for edit.
HOROVOD_FIXES = (
    SourceFix("CMakeLists.txt", r"^set\(CMAKE_CXX_STANDARD 14\)$", "set(CMAKE_CXX_STANDARD 17)"),
    SourceFix("horovod/torch/CMakeLists.txt", r"^(\s*)set\(CMAKE_CXX_STANDARD 14\)$", r"\1set(CMAKE_CXX_STANDARD 17)"),
    SourceFix(
        "horovod/tensorflow/xla_mpi_ops.cc",
        r"^#if TENSORFLOW_VERSION >= 2006000000$",
        "#if TENSORFLOW_VERSION >= 2006000000 && HAVE_GPU",
    ),
)
# A GPU build's two more (applied after the ones above; see the module docstring).
HOROVOD_GPU_FIXES = (
    SourceFix(
        "horovod/common/ops/cuda/CMakeLists.txt", r"^set\(CMAKE_CUDA_STANDARD 11\)$", "set(CMAKE_CUDA_STANDARD 17)"
    ),
    SourceFix(
        "horovod/tensorflow/xla_mpi_ops.cc",
        r"^#if TENSORFLOW_VERSION >= 2006000000 && HAVE_GPU$",
        "#if 0 /* llmc: XLA ops left out, their TensorFlow headers moved */",
    ),
)

# --- bases ---------------------------------------------------------------------------

PYTHON_BASE = "python:3.11.7-slim-bookworm"
# The CUDA of each framework's GPU wheels: torch 2.13.0 on PyPI requires cuda-toolkit
# 13.0.x, tensorflow[and-cuda] 2.21.0 the nvidia-*-cu12 packages.
CUDA_VERSIONS = {"torch": "13.0.2", "tensorflow": "12.9.1"}
CUDA_OS = "ubuntu24.04"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# An engine loads only in the TensorRT that built it: the Triton image's (24.10: TensorRT 10.5).
TENSORRT_FOR_TRITON = {"nvcr.io/nvidia/tritonserver:24.10-py3": "tensorrt-cu12==10.5.0"}
# The fsspec driver of each URI scheme the runtime reads data through (runtime/data.py).
FSSPEC_DRIVERS = {
    "s3": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "az": "adlfs",
    "abfs": "adlfs",
    "abfss": "adlfs",
    "http": "aiohttp",
    "https": "aiohttp",
}

VENV = "/opt/venv"
WHEELS = "/wheels"
SSH_PORT = 2222  # mpi-operator's: its launcher reaches each worker's sshd here
HOME = SSH_DIR.rsplit("/", 1)[0]  # /home/mpiuser: mpi-operator mounts the job's key pair in HOME/.ssh
SSHD_CONFIG = HOME + "/.sshd_config"  # the MPIJob worker runs `sshd -f` this
SSH_CLIENT_CONFIG = "/etc/ssh/ssh_config.d/mpi-operator.conf"  # included first by ssh_config
USER_NAME = "mpiuser"


# --- context types -------------------------------------------------------------------


class EnvVar(NamedTuple):
    name: str
    value: str


class Pip(NamedTuple):
    """Requirements, and the index besides PyPI that has some of them (PyTorch's CPU wheels)."""

    requirements: tuple[str, ...]
    extra_index_url: str | None = None


class Extra(NamedTuple):
    requirement: str
    why: str  # a comment line (fixed text)


class ShellFix(NamedTuple):
    """A SourceFix as the shell runs it: GNU grep -cE counts the lines `pattern` (POSIX
    ERE) matches, which must be one, then GNU sed -E applies `expression`."""

    path: str
    pattern: str
    expression: str


class HorovodBuild(NamedTuple):
    version: str
    framework: Pip  # what Horovod is built against: the final stage's framework
    build_requirements: tuple[str, ...]  # into the build venv, for --no-build-isolation
    fixes: tuple[ShellFix, ...]  # HOROVOD_FIXES, then HOROVOD_GPU_FIXES when gpu
    gpu: bool  # NCCL ops, with the GPU fixes
    env: tuple[EnvVar, ...]  # HOROVOD_* build switches


class Copy(NamedTuple):
    sources: tuple[str, ...]
    dest: str


class Ssh(NamedTuple):
    port: int
    sshd_config_path: str
    sshd_config: tuple[str, ...]  # lines
    client_config_path: str
    client_config: tuple[str, ...]


class Dockerfile(NamedTuple):
    header: tuple[str, ...]  # comment lines: fixed text and checked image names
    build_base: str
    build_apt: tuple[str, ...]  # Debian/Ubuntu packages of the build stage
    llmc_source: tuple[Copy, ...]  # what of the llmc checkout the wheel is built from
    horovod: HorovodBuild | None
    base: str
    apt: tuple[str, ...]  # Debian/Ubuntu packages of the final image
    user: str
    uid: int
    home: str
    ssh: Ssh | None
    venv: str
    wheels: str
    framework: Pip
    requirements: tuple[str, ...]  # RUNTIME_REQUIREMENTS, installed with the wheels
    extras: tuple[Extra, ...]  # what this spec's stages need beyond the runtime
    bundle_dir: str


# --- the target ----------------------------------------------------------------------


def artifacts(ctx: BuildContext) -> list[Artifact]:
    if not ctx.facts.stage_pods:
        return []  # no stage workload: k8s/ runs only the serving images
    return [Artifact("k8s/Dockerfile", "image/Dockerfile.j2", dockerfile(ctx))]


def stage_devices(ctx: BuildContext) -> dict[str, str]:
    """The device each stage pod runs on (plan.py's stage_pods)."""
    return {stage: pod.device for stage, pod in ctx.facts.stage_pods.items()}


def dockerfile(ctx: BuildContext) -> Dockerfile:
    ir = ctx.ir
    framework = ir.model.framework
    devices = stage_devices(ctx)
    gpu = any(is_gpu(d) for d in devices.values())
    train = ir.train is not None
    nccl = train and is_gpu(devices.get("train", "cpu"))
    if gpu:
        cuda = CUDA_VERSIONS[framework]
        base = f"nvidia/cuda:{cuda}-base-{CUDA_OS}"
        build_base = f"nvidia/cuda:{cuda}-devel-{CUDA_OS}" if nccl else base
        python_apt: tuple[str, ...] = ("python3", "python3-venv")
    else:
        base = build_base = PYTHON_BASE
        python_apt = ()
    build_apt, apt = python_apt, python_apt
    if train:
        # Horovod's C++ and CUDA build, against Debian's OpenMPI (Python.h: slim has it).
        build_apt += (("python3-dev",) if gpu else ()) + ("cmake", "g++", "make", "libopenmpi-dev", "openmpi-bin")
        apt += ("openssh-server", "openssh-client", "openmpi-bin")
    if ir.search is not None and ir.search.backend == "spark":
        apt += ("default-jre-headless",)  # pyspark's local Spark
    fw = framework_pip(framework, gpu)
    return Dockerfile(
        header=header(ctx, gpu),
        build_base=build_base,
        build_apt=build_apt,
        llmc_source=llmc_copies(),
        horovod=horovod_build(framework, fw, nccl) if train else None,
        base=base,
        apt=apt,
        user=USER_NAME,
        uid=UID,
        home=HOME,
        ssh=ssh() if train else None,
        venv=VENV,
        wheels=WHEELS,
        framework=fw,
        requirements=RUNTIME_REQUIREMENTS,
        extras=stage_extras(ctx),
        bundle_dir=BUNDLE_DIR,
    )


def llmc_copies() -> tuple[Copy, ...]:
    """COPY instructions for LLMC_SOURCE: the files at once, each folder into a folder of
    its own name (COPY puts a folder's contents into the destination)."""
    files = tuple(p for p in LLMC_SOURCE if "." in p)
    return (Copy(files, "./"),) + tuple(Copy((p,), p + "/") for p in LLMC_SOURCE if "." not in p)


def framework_pip(framework: str, gpu: bool) -> Pip:
    if framework == "torch":
        # PyPI's torch is the CUDA build; PyTorch's own index has the CPU one.
        return (
            Pip((FRAMEWORK_REQUIREMENTS["torch"],)) if gpu else Pip((f"torch=={TORCH_VERSION}+cpu",), TORCH_CPU_INDEX)
        )
    if framework == "tensorflow":
        return Pip((f"tensorflow[and-cuda]=={TENSORFLOW_VERSION}",) if gpu else (FRAMEWORK_REQUIREMENTS["tensorflow"],))
    raise AssertionError(f"no image recipe for framework {framework!r}")


def stage_extras(ctx: BuildContext) -> tuple[Extra, ...]:
    """What this spec's stages import beyond llmc's runtime and the framework."""
    ir = ctx.ir
    out: list[Extra] = []
    search = ir.search
    if search is not None and search.backend == "spark":
        out.append(Extra(PYSPARK_PIN, "search: SparkTrials (with a local Spark when LLMC_SPARK_MASTER is empty)"))
    if search is not None and search.backend == "mongo":
        out.append(Extra("pymongo", "search: MongoTrials"))
    compress = ir.compress
    if (
        compress is not None
        and compress.engine == "tensorrt"
        and ir.model.framework == "torch"
        and is_gpu(stage_devices(ctx).get("compress", "cpu"))
    ):
        trt = TENSORRT_FOR_TRITON.get(TRITON_IMAGE)
        if trt is None:
            raise AssertionError(f"image.py: which TensorRT does {TRITON_IMAGE} load? add it to TENSORRT_FOR_TRITON")
        out.append(Extra(trt, f"compress: the TensorRT engine, for {TRITON_IMAGE}'s TensorRT"))
    drivers: dict[str, list[str]] = {}
    for path in data_paths(ctx):
        scheme = path.split("://", 1)[0].lower() if "://" in path else ""
        driver = FSSPEC_DRIVERS.get(scheme)
        if driver is not None:
            drivers.setdefault(driver, []).append(scheme)
    if drivers:
        out.append(Extra("fsspec", "data: URIs are read through fsspec"))
        for driver, schemes in drivers.items():
            out.append(Extra(driver, "data: " + ", ".join(sorted({f"{s}://" for s in schemes})) + " URIs"))
    return tuple(out)


def data_paths(ctx: BuildContext) -> list[str]:
    ir = ctx.ir
    data = ir.model.data
    paths = [data.train, data.valid, data.test, data.tokenizer]
    if ir.compress is not None and ir.compress.quantize is not None and ir.compress.quantize.calibration:
        paths.append(ir.compress.quantize.calibration)
    return paths


def horovod_build(framework: str, fw: Pip, nccl: bool) -> HorovodBuild:
    with_torch, with_tf = framework == "torch", framework == "tensorflow"
    env = [
        EnvVar("HOROVOD_WITH_PYTORCH" if with_torch else "HOROVOD_WITHOUT_PYTORCH", "1"),
        EnvVar("HOROVOD_WITH_TENSORFLOW" if with_tf else "HOROVOD_WITHOUT_TENSORFLOW", "1"),
        EnvVar("HOROVOD_WITHOUT_MXNET", "1"),
        EnvVar("HOROVOD_WITH_GLOO", "1"),
        EnvVar("HOROVOD_WITH_MPI", "1"),
        # PyPI's cmake 4 rejects gloo's cmake_minimum_required (as bin/setup says).
        EnvVar("HOROVOD_CMAKE", "/usr/bin/cmake"),
    ]
    if nccl:
        env += [EnvVar("HOROVOD_GPU_OPERATIONS", "NCCL"), EnvVar("HOROVOD_CUDA_HOME", "/usr/local/cuda")]
    fixes = HOROVOD_FIXES + (HOROVOD_GPU_FIXES if nccl else ())
    return HorovodBuild(
        HOROVOD_VERSION,
        fw,
        # Python 3.12's venv has no setuptools; the runtime extra's range.
        tuple(r for r in RUNTIME_REQUIREMENTS if r.startswith("setuptools")),
        tuple(shell_fix(f) for f in fixes),
        nccl,
        tuple(env),
    )


# The regex syntax the fixes use, which reads the same in Python and GNU grep -E and
# sed -E: no `|` (sed's delimiter here) and escapes only of parentheses and \s; in the
# replacement the only escape is \1, and `&` (sed's whole match) is escaped for sed.
_PATTERN = re.compile(r"(?:[^\\|]|\\[()s])*")
_REPLACEMENT = re.compile(r"(?:[^\\|]|\\1)*")


def shell_fix(fix: SourceFix) -> ShellFix:
    if not (_PATTERN.fullmatch(fix.pattern) and _REPLACEMENT.fullmatch(fix.replacement)):
        raise AssertionError(f"source fix of {fix.path}: {fix!r} may not read the same in Python and GNU sed")
    return ShellFix(fix.path, fix.pattern, f"s|{fix.pattern}|{fix.replacement.replace('&', chr(92) + '&')}|")


def ssh() -> Ssh:
    key = SSH_DIR + "/id_rsa"  # mpi-operator's key pair: its private key is also the host key
    return Ssh(
        SSH_PORT,
        SSHD_CONFIG,
        (f"Port {SSH_PORT}", f"HostKey {key}", "PidFile /tmp/sshd.pid", "StrictModes no", "PasswordAuthentication no"),
        SSH_CLIENT_CONFIG,
        ("Host *", f"    Port {SSH_PORT}", "    StrictHostKeyChecking no", "    UserKnownHostsFile /dev/null"),
    )


def header(ctx: BuildContext, gpu: bool) -> tuple[str, ...]:
    build = image_build(names(ctx).image)
    kind = "CUDA: a stage runs on a GPU" if gpu else "CPU: every stage runs on cpu"
    return (
        f"The image every stage workload of k8s/ runs ({kind}); serving runs the",
        "official server images. Build and push it from the bundle's root, with the llmc",
        "source checkout as the build context `llmc`:",
        f"  {build.build}",
        f"then pin deploy.image to the digest pushed ({build.inspect}).",
        "The base images are pinned by version tag; to pin one by digest as well, write",
        "FROM image:tag@sha256:DIGEST (docker buildx imagetools inspect image:tag prints it).",
    )
