"""The image target: k8s/Dockerfile, the image of every stage workload (compiler/targets/image.py).

The Dockerfile is parsed into its instructions (continuation lines joined, comments
kept apart as hadolint pragmas), its stages and the commands of its RUNs, and the
tests read those: the framework each spec's image installs and not the other,
Horovod and mpi-operator's sshd exactly when the spec trains, the user and paths the
manifests use, the pins bin/setup and pyproject.toml hold. A structural check stands
in for hadolint's main rules where hadolint is not installed; hadolint itself runs
in tests/integration/test_target_image_runs.py.
"""

from __future__ import annotations

import ast
import re
import shlex
import tomllib
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml
from helpers import ROOT, BundleCache, checked

from llmc.compiler.render import render
from llmc.compiler.targets import BuildContext, image, k8s_workloads
from llmc.compiler.targets.image import HOROVOD_FIXES, shell_fix

SPECS = [("translator", None), ("translator", "local"), ("classifier", None), ("classifier", "local")]
FRAMEWORK_PACKAGES = {"torch": "torch", "tensorflow": "tensorflow"}  # requirement name prefixes


# --- parsing -------------------------------------------------------------------------


class Instruction(NamedTuple):
    keyword: str  # upper case
    args: str  # continuation lines joined
    line: int
    ignored: tuple[str, ...]  # the codes of a `# hadolint ignore=` right above it


def instructions(text: str) -> list[Instruction]:
    lines = text.splitlines()
    out: list[Instruction] = []
    ignored: tuple[str, ...] = ()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if not line or line.startswith("#"):
            pragma = re.fullmatch(r"#\s*hadolint ignore=([A-Z0-9,]+)", line)
            if pragma:
                ignored = tuple(pragma.group(1).split(","))
            i += 1
            continue
        start, body = i, line
        while body.endswith("\\"):
            i += 1
            body = body[:-1].rstrip() + " " + lines[i].strip()
        keyword, _, args = body.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start + 1, ignored))
        ignored = ()
        i += 1
    return out


def stages(text: str) -> list[list[Instruction]]:
    """The instructions of each stage, its FROM first."""
    out: list[list[Instruction]] = []
    for ins in instructions(text):
        if ins.keyword == "FROM":
            out.append([])
        assert out, f"line {ins.line}: {ins.keyword} before the first FROM"
        out[-1].append(ins)
    return out


def run_flags_and_script(ins: Instruction) -> tuple[list[str], str]:
    """RUN's own flags (--mount=...) and its shell script."""
    flags, rest = [], ins.args
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        flags.append(flag)
        rest = rest.lstrip()
    return flags, rest


def commands(ins: Instruction) -> list[list[str]]:
    """The simple commands of a RUN's script: its words as sh reads them, split at the
    operators between commands (&&, ||, ;, |)."""
    _, script = run_flags_and_script(ins)
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    out: list[list[str]] = [[]]
    for token in lexer:
        if token in ("&&", "||", ";", "|"):
            out.append([])
        else:
            out[-1].append(token)
    return [argv for argv in out if argv]


def pip_installs(stage: list[Instruction]) -> list[tuple[list[str], list[str]]]:
    """(options, requirements and wheel paths) of each `pip install` in a stage."""
    out = []
    for ins in stage:
        if ins.keyword != "RUN":
            continue
        for argv in commands(ins):
            if argv[:2] != ["pip", "install"]:
                continue
            options, args, words = [], [], iter(argv[2:])
            for word in words:
                if word in ("--extra-index-url", "--index-url"):
                    options.append(f"{word}={next(words)}")
                elif word.startswith("-"):
                    options.append(word)
                else:
                    args.append(word)
            out.append((options, args))
    return out


def apt_packages(stage: list[Instruction]) -> list[str]:
    return [
        word
        for ins in stage
        if ins.keyword == "RUN"
        for argv in commands(ins)
        if argv[:2] == ["apt-get", "install"]
        for word in argv[2:]
        if not word.startswith("-")
    ]


def env(stage: list[Instruction]) -> dict[str, str]:
    out = {}
    for ins in stage:
        if ins.keyword == "ENV":
            out.update(dict(shlex.split(pair)[0].split("=", 1) for pair in ins.args.split()))
    return out


def requirement_names(requirements: list[str]) -> list[str]:
    return [re.split(r"[\[=<>!~ ]", r, maxsplit=1)[0].lower() for r in requirements if not r.startswith("/")]


# --- building ------------------------------------------------------------------------


def context(spec: str | Path, profile: str | None) -> BuildContext:
    path = spec if isinstance(spec, Path) else ROOT / "specs" / f"{spec}.llm"
    result = checked(path, profile)
    return BuildContext(result.ir, result.facts, path.name, profile, "0" * 64, "0")


def dockerfile_of(ctx: BuildContext) -> str:
    (artifact,) = image.artifacts(ctx)
    assert artifact.path == "k8s/Dockerfile" and not artifact.executable
    return render(artifact.template, artifact.context)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return BundleCache(tmp_path_factory)


def drop_block(text: str, name: str) -> str:
    start = re.search(rf"^{name} \{{\n", text, flags=re.M)
    assert start is not None, name
    depth = 0
    for i in range(start.start(), len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if text[i] == "}" and depth == 0:
            return text[: start.start()] + text[i + 2 :]
    raise AssertionError(f"unbalanced {name} block")


@pytest.fixture(scope="module")
def untrained(tmp_path_factory) -> Path:
    """specs/translator.llm without its train and search blocks (and their profile lines)."""
    text = (ROOT / "specs" / "translator.llm").read_text(encoding="utf-8")
    text = drop_block(drop_block(text, "train"), "search")
    text = "".join(line for line in text.splitlines(keepends=True) if not re.match(r"\s*(train|search)\.", line))
    path = tmp_path_factory.mktemp("untrained") / "translator.llm"
    path.write_text(text, encoding="utf-8")
    return path


# --- what each spec's image holds ---------------------------------------------------------


@pytest.mark.parametrize("name,profile", SPECS)
def test_the_spec_framework_and_not_the_other(name, profile):
    ctx = context(name, profile)
    framework = ctx.ir.model.framework
    other = "tensorflow" if framework == "torch" else "torch"
    gpu = profile is None  # the real specs train and serve on GPUs; their local profiles on cpu
    for stage in stages(dockerfile_of(ctx)):
        names = [n for _, reqs in pip_installs(stage) for n in requirement_names(reqs)]
        assert not [n for n in names if n.startswith(FRAMEWORK_PACKAGES[other])], (stage[0].args, names)
    final = stages(dockerfile_of(ctx))[-1]
    installs = pip_installs(final)
    wanted = {
        ("torch", False): f"torch=={image.TORCH_VERSION}+cpu",
        ("torch", True): f"torch=={image.TORCH_VERSION}",
        ("tensorflow", False): f"tensorflow-cpu=={image.TENSORFLOW_VERSION}",
        ("tensorflow", True): f"tensorflow[and-cuda]=={image.TENSORFLOW_VERSION}",
    }[framework, gpu]
    # Its own layer first, then again in the one resolution of everything else.
    assert installs[0][1] == [wanted] and wanted in installs[1][1]
    cpu_index = f"--extra-index-url={image.TORCH_CPU_INDEX}"
    assert all((cpu_index in options) == (framework == "torch" and not gpu) for options, _ in installs)
    base = final[0].args
    assert base == (f"nvidia/cuda:{image.CUDA_VERSIONS[framework]}-base-ubuntu24.04" if gpu else image.PYTHON_BASE)


@pytest.mark.parametrize("name,profile", SPECS)
def test_horovod_and_mpi_operators_sshd_when_the_spec_trains(name, profile):
    ctx = context(name, profile)
    assert ctx.ir.train is not None
    wheels, final = stages(dockerfile_of(ctx))
    assert wheels[0].args.endswith(" AS wheels")
    framework = ctx.ir.model.framework
    build_env = env(wheels)
    assert build_env["HOROVOD_WITH_PYTORCH" if framework == "torch" else "HOROVOD_WITH_TENSORFLOW"] == "1"
    assert build_env["HOROVOD_WITHOUT_TENSORFLOW" if framework == "torch" else "HOROVOD_WITHOUT_PYTORCH"] == "1"
    assert build_env["HOROVOD_WITH_GLOO"] == build_env["HOROVOD_WITH_MPI"] == "1"
    # NCCL exactly when training runs on a GPU, which then builds on CUDA's devel image.
    gpu = ctx.ir.train.cluster.device != "cpu"
    assert ("HOROVOD_GPU_OPERATIONS" in build_env) == gpu
    assert wheels[0].args.startswith("nvidia/cuda:") == gpu and ("-devel-" in wheels[0].args) == gpu
    downloads = [
        argv for ins in wheels if ins.keyword == "RUN" for argv in commands(ins) if argv[:2] == ["pip", "download"]
    ]
    assert [argv[-1] for argv in downloads] == [f"horovod=={image.HOROVOD_VERSION}"]
    assert {"openssh-server", "openssh-client", "openmpi-bin"} <= set(apt_packages(final))
    assert {"libopenmpi-dev", "cmake", "g++"} <= set(apt_packages(wheels))
    # The final stage installs the wheels the first built, through a bind mount.
    (mounted,) = [ins for ins in final if ins.keyword == "RUN" and run_flags_and_script(ins)[0]]
    assert run_flags_and_script(mounted)[0] == ["--mount=type=bind,from=wheels,source=/wheels,target=/tmp/wheels"]
    assert "/tmp/wheels/*.whl" in pip_installs(final)[1][1]


def test_no_horovod_no_mpi_and_no_sshd_without_a_train_block(untrained):
    for profile in (None, "local"):
        ctx = context(untrained, profile)
        assert ctx.ir.train is None and ctx.ir.search is None
        text = dockerfile_of(ctx)
        wheels, final = stages(text)
        assert "horovod" not in text.lower() and "HOROVOD" not in str(env(wheels))
        packages = set(apt_packages(wheels)) | set(apt_packages(final))
        assert not {p for p in packages if "mpi" in p or "ssh" in p or p in ("cmake", "g++", "make")}
        assert "sshd" not in text and ".ssh" not in text
        # Still the manifests' user, and the framework for compress and evaluate.
        assert final[-1] == Instruction("USER", f"{k8s_workloads.UID}:{k8s_workloads.UID}", final[-1].line, ())
        names = requirement_names(pip_installs(final)[1][1])
        assert "torch" in names and not [n for n in names if n.startswith("tensorflow")]
        # compress and evaluate run on the serving T4 by default: a CUDA image, built on its base.
        assert final[0].args.startswith("nvidia/cuda:") == (profile is None)
        assert wheels[0].args == final[0].args + " AS wheels"


def test_nccl_only_when_training_runs_on_a_gpu():
    """Training on cpu while compress and evaluate run on the serving T4: a CUDA image
    for their framework, Horovod without NCCL, built on the final stage's base."""
    ctx = context("translator", None)
    pods = {k: p._replace(device="cpu") if k in ("train", "search") else p for k, p in ctx.facts.stage_pods.items()}
    wheels, final = stages(dockerfile_of(ctx._replace(facts=ctx.facts._replace(stage_pods=pods))))
    assert "HOROVOD_GPU_OPERATIONS" not in env(wheels) and env(wheels)["HOROVOD_WITH_MPI"] == "1"
    assert final[0].args == f"nvidia/cuda:{image.CUDA_VERSIONS['torch']}-base-ubuntu24.04"
    assert wheels[0].args == final[0].args + " AS wheels"
    assert pip_installs(final)[0][1] == [f"torch=={image.TORCH_VERSION}"]  # the CUDA build
    script = [ins.args for ins in wheels if ins.keyword == "RUN" and ins.args.startswith("fix()")]
    assert len(script) == 1 and "CMAKE_CUDA_STANDARD" not in script[0]  # the GPU fixes only with NCCL


def test_no_dockerfile_without_a_stage_workload():
    ctx = context("translator", "local")
    bare = ctx._replace(facts=ctx.facts._replace(stage_pods={}))
    assert image.artifacts(bare) == []


@pytest.mark.parametrize("name,profile", SPECS)
def test_what_the_spec_stages_need_beyond_the_runtime(name, profile):
    ctx = context(name, profile)
    names = requirement_names(pip_installs(stages(dockerfile_of(ctx))[-1])[1][1])
    final = stages(dockerfile_of(ctx))[-1]
    spark = ctx.ir.search is not None and ctx.ir.search.backend == "spark"
    assert ("pyspark" in names) == spark == ("default-jre-headless" in apt_packages(final))
    # The torch model's TensorRT engine, built on the serving GPU for Triton 24.10's TensorRT.
    tensorrt = ctx.ir.model.framework == "torch" and ctx.ir.compress.engine == "tensorrt"
    assert ("tensorrt-cu12" in names) == tensorrt
    schemes = {p.split("://")[0] for p in image.data_paths(ctx) if "://" in p}
    assert schemes == ({"s3"} if name == "translator" and profile is None else {"gs"} if profile is None else set())
    assert ("s3fs" in names) == ("s3" in schemes) and ("gcsfs" in names) == ("gs" in schemes)
    assert ("fsspec" in names) == bool(schemes)


def test_every_extra_pins_what_must_match_another_program():
    def extras(spec: str) -> dict[str, str]:
        return {e.requirement.split("==")[0]: e.requirement for e in image.dockerfile(context(spec, None)).extras}

    assert extras("classifier")["pyspark"] == image.PYSPARK_PIN  # the classifier searches on Spark
    # The engine loads only in the TensorRT that built it: Triton's.
    from llmc.compiler.targets.k8s_common import TRITON_IMAGE

    assert extras("translator")["tensorrt-cu12"] == image.TENSORRT_FOR_TRITON[TRITON_IMAGE]


# --- what the manifests expect of it -------------------------------------------------------


@pytest.mark.parametrize("name,profile", SPECS)
def test_the_user_paths_and_sshd_are_the_manifests(built, name, profile):
    """USER is the uid:gid every stage pod runs as; the bundle is where the containers
    work; sshd's config is the file the MPIJob's workers run it from, with their port
    and the key pair mpi-operator mounts."""
    ctx = context(name, profile)
    final = stages(dockerfile_of(ctx))[-1]
    bundle = built(name, profile)
    docs = [doc for path in (bundle / "k8s").glob("*.yaml") for doc in yaml.safe_load_all(path.read_text("utf-8"))]
    (mpijob,) = [doc for doc in docs if doc["kind"] == "MPIJob"]
    jobs = [doc for doc in docs if doc["kind"] == "Job"]
    pods = [r["template"]["spec"] for r in mpijob["spec"]["mpiReplicaSpecs"].values()]
    pods += [job["spec"]["template"]["spec"] for job in jobs]
    assert jobs and len(pods) == 2 + len(jobs)
    uids = {(p["securityContext"]["runAsUser"], p["securityContext"]["runAsGroup"]) for p in pods}
    assert uids == {(k8s_workloads.UID, k8s_workloads.UID)}
    assert final[-1].keyword == "USER" and final[-1].args == f"{k8s_workloads.UID}:{k8s_workloads.UID}"
    assert [ins.args for ins in final if ins.keyword in ("COPY", "WORKDIR")][-2:] == [
        f". {k8s_workloads.BUNDLE_DIR}",
        k8s_workloads.BUNDLE_DIR,
    ]
    dirs = {c.get("workingDir") for p in pods for c in p["containers"]} - {None}
    assert dirs == {k8s_workloads.BUNDLE_DIR}

    (worker,) = mpijob["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["containers"]
    sshd = worker["command"]
    config = sshd[sshd.index("-f") + 1]
    user = [argv for ins in final if ins.keyword == "RUN" for argv in commands(ins) if argv[0] == "useradd"]
    assert user == [
        [
            "useradd",
            "--uid",
            str(k8s_workloads.UID),
            "--gid",
            str(k8s_workloads.UID),
            "--create-home",
            "--home-dir",
            "/home/mpiuser",
            "--shell",
            "/bin/bash",
            "mpiuser",
        ]
    ]
    written = {
        argv[-1]: argv[2:-2] for ins in final if ins.keyword == "RUN" for argv in commands(ins) if argv[0] == "printf"
    }
    settings = dict(line.split(" ", 1) for line in written[config])
    assert settings["Port"] == "2222"  # mpi-operator's launcher reaches the workers' sshd there
    assert settings["HostKey"] == mpijob["spec"]["sshAuthMountPath"] + "/id_rsa"  # the job's mounted key
    assert settings["PidFile"].startswith("/tmp/")  # the root filesystem is read-only
    client = dict(line.split() for line in written[image.SSH_CLIENT_CONFIG][1:])
    assert client == {"Port": "2222", "StrictHostKeyChecking": "no", "UserKnownHostsFile": "/dev/null"}


# --- the pins: bin/setup and pyproject.toml ---------------------------------------------------


def setup_variable(name: str) -> str:
    text = (ROOT / "bin" / "setup").read_text(encoding="utf-8")
    match = re.search(rf"^{name}=(.*)$", text, flags=re.M)
    assert match, f"bin/setup sets no {name}"
    return shlex.split(match.group(1), comments=True)[0]


def setup_patch_edits() -> list[tuple[str, str, str]]:
    """The `edits` list of bin/setup's patch_horovod, as Python reads it."""
    text = (ROOT / "bin" / "setup").read_text(encoding="utf-8")
    match = re.search(r"^edits = (\[.*?^\])$", text, flags=re.M | re.S)
    assert match, "bin/setup's patch_horovod has no `edits = [...]`"
    return ast.literal_eval(match.group(1))


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_versions_are_bin_setups():
    assert setup_variable("HOROVOD_VERSION") == image.HOROVOD_VERSION
    assert f"torch=={image.TORCH_VERSION}+cpu" == setup_variable("TORCH_PIN")
    assert setup_variable("PYSPARK_PIN") == image.PYSPARK_PIN
    assert [tuple(f) for f in HOROVOD_FIXES] == setup_patch_edits()


def test_the_runtime_requirements_are_pyprojects():
    runtime = pyproject()["project"]["optional-dependencies"]["runtime"]
    frameworks = [r for r in runtime if requirement_names([r])[0] in ("torch", "tensorflow-cpu", "tensorflow")]
    assert sorted(frameworks) == sorted(image.FRAMEWORK_REQUIREMENTS.values())
    assert [r for r in runtime if r not in frameworks] == list(image.RUNTIME_REQUIREMENTS)


def test_the_llmc_source_copied_is_what_pyproject_builds_from():
    project = pyproject()
    dirs = set(project["tool"]["setuptools"]["package-dir"].values())
    assert set(image.LLMC_SOURCE) == dirs | {"pyproject.toml", project["project"]["readme"]}
    copies = image.llmc_copies()
    assert sorted(s for c in copies for s in c.sources) == sorted(image.LLMC_SOURCE)
    # COPY puts a folder's contents into its destination: each folder gets its own.
    assert all(c.dest == "./" if len(c.sources) > 1 else c.dest == c.sources[0] + "/" for c in copies)


# --- the source fixes as the shell runs them ------------------------------------------------------


def test_the_shell_fixes_are_the_python_ones():
    for fix in HOROVOD_FIXES + image.HOROVOD_GPU_FIXES:
        shell = shell_fix(fix)
        assert shell.pattern == fix.pattern and shell.path == fix.path
        assert shell.expression == f"s|{fix.pattern}|{fix.replacement.replace('&', chr(92) + '&')}|"
    # bin/setup's XLA guard has `&&`: sed would read each & as the whole match.
    assert shell_fix(HOROVOD_FIXES[2]).expression.endswith(r"2006000000 \&\& HAVE_GPU|")


@pytest.mark.parametrize(
    "pattern,replacement",
    [(r"^a|b$", "x"), (r"^\d+$", "x"), (r"^(a)$", r"\g<1>"), ("^a$", "b|c"), (r"^a\b", "x")],
)
def test_a_fix_the_shell_may_read_otherwise_is_refused(pattern, replacement):
    with pytest.raises(AssertionError, match="may not read the same"):
        shell_fix(image.SourceFix("f", pattern, replacement))


# --- structure: hadolint's main rules, checked without hadolint ----------------------------------------


@pytest.mark.parametrize("name,profile", SPECS)
def test_the_dockerfile_structure(name, profile):
    text = dockerfile_of(context(name, profile))
    assert text.splitlines()[0] == "# syntax=docker/dockerfile:1.7"  # a parser directive: the first line
    all_stages = stages(text)
    aliases = {ins.args.split(" AS ")[1] for stage in all_stages for ins in stage[:1] if " AS " in ins.args}
    for stage in all_stages:
        base = stage[0].args.split(" AS ")[0]
        # DL3006/DL3007: every base has a version tag, never latest.
        assert re.fullmatch(r"[a-z0-9./-]+:[A-Za-z0-9._-]+", base) and not base.endswith(":latest"), base
        for ins in stage:
            if ins.keyword == "RUN":
                argvs = commands(ins)
                for argv in argvs:
                    if argv[:2] == ["apt-get", "install"]:
                        # DL3015, DL3009; DL3008 deliberately ignored (the comment says why).
                        assert "--no-install-recommends" in argv and "-y" in argv
                        assert argvs[-1] == ["rm", "-rf", "/var/lib/apt/lists/*"] and ins.ignored == ("DL3008",)
                    if argv[:2] in (["pip", "install"], ["pip", "download"], ["pip", "wheel"]):
                        assert "--no-cache-dir" in argv  # DL3042
                    assert argv[0] not in ("cd", "sudo", "apt", "curl", "wget"), argv  # DL3003, DL3004, DL3027
            if ins.keyword == "COPY" and ins.args.startswith("--from="):
                source = ins.args.split()[0].removeprefix("--from=")
                # DL3022: a stage, or the llmc build context (ignored, with its reason).
                assert source in aliases or (source == "llmc" and ins.ignored == ("DL3022",))
            if ins.keyword in ("WORKDIR", "COPY"):
                assert ins.args.split()[-1].startswith(("/", "./", "compiler/", "runtime/", "templates/", "docs/"))
    final = all_stages[-1]
    # DL3002: the image ends as a non-root user, and never switches users before.
    assert [ins.args for ins in final if ins.keyword == "USER"] == [f"{k8s_workloads.UID}:{k8s_workloads.UID}"]
    assert final[-1].keyword == "USER" and k8s_workloads.UID >= 10000


def test_the_header_names_the_image_by_tag_and_keeps_a_bad_name_out():
    ctx = context("translator", None)
    header = image.header(ctx, True)
    build = [line for line in header if "docker buildx build" in line]
    assert build == [
        "  docker buildx build --build-context llmc=PATH/TO/llmc -f k8s/Dockerfile "
        "-t registry.example.com/llmc/translator:1.0.0 --push ."
    ]
    deploy = ctx.ir.deploy.model_copy(update={"image": "x:1\nRUN rm -rf /"})
    bad = image.header(ctx._replace(ir=ctx.ir.model_copy(update={"deploy": deploy})), True)
    assert not [line for line in bad if "\n" in line or "rm -rf" in line]
