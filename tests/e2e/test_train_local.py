"""End to end: build the real specs' local profiles and train them with Horovod on CPU.

Each test runs `llmc build`, then the generated train/launch.sh (horovodrun --gloo)
in subprocesses, exactly as a user would, and reads the artifacts back: the
metrics JSON lines of docs/bundle.md, checkpoints, the exported model. Tensor
parallelism is checked twice: the zoo's Megatron layers against the whole model on
the same weights (outputs, gradients, one data-parallel optimizer step), and the
generated script trained at three layouts of one spec (data 2 x tensor 2, data 2,
and one process accumulating 2 micro-batches), which must log the same losses; and
the Llama-style decoder of examples/tinyllama-1.1b.llm learns, and logs the same
losses at tensor 2 as in one process.
Resume is exact: a 2-process run killed (SIGKILL, every process) after a checkpoint
and resumed ends bit-identical to an uninterrupted one, dropout on, torch and
TensorFlow.

Slow (Horovod starts TensorFlow to probe its build, and 2-4 processes share 2 cores):
`pytest -m slow tests/e2e`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import ROOT, run_cli

from llmc.runtime import checkpoints as ck

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
HOROVODRUN = BIN / "horovodrun"
# Training overrides for 20-step smoke runs: the local profiles keep the full specs'
# warm-up (4000 steps for the translator), under which 20 steps would not move the loss.
FAST = ["--set", "train.schedule.warmup=5", "--set", "train.optimizer.lr=0.001"]


def env() -> dict:
    # The specs' relative data paths are relative to specs/ (docs/bundle.md: --data-root).
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHON": sys.executable,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONWARNINGS": "ignore",
        "LLMC_DATA_ROOT": str(ROOT / "specs"),
        # 4 processes share 2 cores here: a rank can wait longer than Gloo's default
        # 30 s for a peer that has no core, and Gloo then aborts the job.
        "HOROVOD_GLOO_TIMEOUT_SECONDS": "300",
    }


@pytest.fixture(autouse=True)
def _needs_horovod():
    if not HOROVODRUN.exists():
        pytest.skip("horovodrun is not installed (run bin/setup)")


def build(tmp_path: Path, spec: Path, name: str) -> Path:
    out = Path("build") / name
    code, _, err = run_cli("build", str(spec), "--profile", "local", "-o", str(out), "-q", cwd=tmp_path)
    assert code == 0, err
    bundle = tmp_path / out
    assert os.access(bundle / "train" / "launch.sh", os.X_OK)
    return bundle


def launch(
    bundle: Path, *args: str, np: int | None = None, timeout: int = 240, data_root: Path | None = None
) -> subprocess.CompletedProcess:
    e = env()
    if np is not None:
        e["HOROVOD_NP"] = str(np)
    if data_root is not None:  # a spec outside specs/: its relative paths are relative to its own folder
        e["LLMC_DATA_ROOT"] = str(data_root)
    proc = subprocess.run(
        [str(bundle / "train" / "launch.sh"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=e,
        stdin=subprocess.DEVNULL,
        cwd=bundle,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc


def metrics(path: Path) -> tuple[list[dict], list[dict]]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [m for m in lines if "step" in m], [m for m in lines if m.get("final")]


def test_translator_trains_with_horovod_and_resumes(tmp_path):
    bundle = build(tmp_path, ROOT / "specs" / "translator.llm", "translator-local")
    model_json = json.loads((bundle / "model.json").read_text())
    assert model_json["framework"] == "torch" and model_json["parallel"] == {"data": 2, "tensor": 1, "pipeline": 1}
    out = tmp_path / "out"
    proc = launch(bundle, "--max-steps", "20", "--output", str(out), *FAST)
    assert "data 2 x tensor 1" in proc.stderr

    steps, finals = metrics(out / "metrics.jsonl")
    assert [m["step"] for m in steps] == [1, 10, 20]
    assert set(steps[0]) == {"step", "epoch", "loss", "lr", "throughput"}
    assert steps[-1]["loss"] < 0.75 * steps[0]["loss"], steps  # ~5.56 (= ln 260) falls to ~3
    assert len(finals) == 1 and finals[0]["steps"] == 20 and math.isfinite(finals[0]["valid_loss"])
    assert finals[0]["valid_loss"] < steps[0]["loss"]
    assert (out / "checkpoints" / "ckpt-00000020.pt").exists()

    # The exported model is whole and loads without Horovod; it decodes dates.
    import torch

    from llmc.runtime.data import load_split
    from llmc.runtime.zoo_torch import Transformer, load_model, to_tensors

    model, meta = load_model(out / "model")
    assert isinstance(model, Transformer)
    assert meta["steps"] == 20 and meta["model"]["transformer"]["kind"] == "encoder-decoder"
    valid = load_split(meta["model"], str(ROOT / "examples" / "data" / "dates" / "valid.tsv"))
    src = to_tensors({"source": valid.arrays["source"][:4, :40]})["source"]
    assert model.generate(src).shape[0] == 4
    del torch

    # A second run resumes from the newest checkpoint and continues the metrics from
    # its step: the first run's final line goes, each step stays once.
    proc = launch(
        bundle,
        "--max-steps",
        "24",
        "--log-every",
        "2",
        "--output",
        str(out),
        *FAST,
        "--set",
        "train.checkpoint.every=2",
        "--set",
        "train.checkpoint.keep=2",
    )
    assert "resuming from" in proc.stderr and "at step 20" in proc.stderr
    steps, finals = metrics(out / "metrics.jsonl")
    assert [m["step"] for m in steps] == [1, 10, 20, 22, 24] and len(finals) == 1 and finals[0]["steps"] == 24
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["ckpt-00000022.pt", "ckpt-00000024.pt"]


def test_classifier_trains_with_tensorflow_and_exports_a_savedmodel(tmp_path):
    bundle = build(tmp_path, ROOT / "specs" / "classifier.llm", "classifier-local")
    assert json.loads((bundle / "model.json").read_text())["framework"] == "tensorflow"
    assert "llmc.runtime.training.tf_loop" in (bundle / "train" / "train.py").read_text()
    out = tmp_path / "out"
    launch(bundle, "--max-steps", "20", "--output", str(out))

    steps, finals = metrics(out / "metrics.jsonl")
    assert [m["step"] for m in steps] == [1, 10, 20]
    assert steps[-1]["loss"] < 0.8 * steps[0]["loss"], steps
    final = finals[-1]
    assert final["steps"] == 20 and 0.0 <= final["valid_accuracy"] <= 1.0 and math.isfinite(final["valid_loss"])
    model_dir = out / "model"
    assert (model_dir / "saved_model.pb").exists() and (model_dir / "model.weights.h5").exists()
    meta = json.loads((model_dir / "llmc.json").read_text())
    assert meta["signature"] == {"input": "features", "outputs": ["logits", "probabilities"]}
    assert (out / "checkpoints" / "ckpt-00000020.npz").exists()


TP_SCRIPT = r"""
import torch
import horovod.torch as hvd
from llmc.runtime import zoo_torch as z
from llmc.runtime.tokenizer import BOS, EOS, PAD

tensor_ranks, data_ranks = [[0, 1], [2, 3]], [[0, 2], [1, 3]]
sets = [hvd.ProcessSet(r) for r in tensor_ranks + data_ranks]
hvd.init(process_sets=sets)
r = hvd.rank()
d, t = r // 2, r % 2
tp = z.TensorParallel(2, t, sets[d])
dp_set = sets[2 + t]


def batch(kind, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 256, (4, 9), generator=g)
    ids[1, 5:] = PAD
    if kind == "encoder-decoder":
        tgt = torch.randint(0, 256, (4, 7), generator=g)
        tgt[:, 0] = BOS
        tgt[2, 4] = EOS
        tgt[2, 5:] = PAD
        return {"source": ids, "target": tgt}
    if kind == "encoder":
        return {"text": ids, "label": torch.randint(0, 3, (4,), generator=g)}
    return {"tokens": ids, "loss_mask": (ids[:, 1:] != PAD).float()}


def mean_loss(model, b):
    s, n, _ = z.batch_loss(model, b)
    return s / n


def close(a, b, what):
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), (what, (a - b).abs().max().item())


for kind in ("encoder-decoder", "encoder", "decoder"):
    cfg = {"task": "x", "transformer": {"kind": kind, "layers": 1, "d_model": 32, "heads": 4, "d_ff": 48,
                                        "vocab": 260, "max_len": 16, "dropout": 0.0, "classes": 3}}
    whole = z.build_model(cfg, seed=7)
    part = z.build_model(cfg, tp=tp, seed=7)
    batches = [batch(kind, 100 + k) for k in range(2)]  # one per data-parallel replica
    mine = batches[d]

    # Same weights, same outputs.
    first = next(iter(mine.values()))
    if kind == "encoder-decoder":
        close(part(first, mine["target"][:, :-1]), whole(first, mine["target"][:, :-1]), f"{kind} logits")
    else:
        close(part(first), whole(first), f"{kind} outputs")

    # Same gradients, once the shards are put together.
    mean_loss(whole, mine).backward()
    mean_loss(part, mine).backward()
    dims = z.shard_dims(part)
    ref = dict(whole.named_parameters())
    split = [(n, p) for n, p in part.named_parameters() if n in dims]
    whole_grads = z.gather_shards([(p.grad, dims[n]) for n, p in split], tp, f"test.{kind}.grads")
    grads = {**{n: p.grad for n, p in part.named_parameters()}, **dict(zip([n for n, _ in split], whole_grads))}
    for name, grad in grads.items():
        close(grad, ref[name].grad, f"{kind} grad {name}")

    # One optimizer step, gradients averaged over the data-parallel group, equals one step
    # of the whole model on both replicas' batches. (SGD with momentum: Adam divides by
    # sqrt(v), which turns rounding noise in near-zero gradients into step-sized noise.)
    whole.zero_grad()
    part.zero_grad()
    opt = hvd.DistributedOptimizer(torch.optim.SGD(part.parameters(), lr=0.5, momentum=0.9),
                                   named_parameters=[(f"{kind}.{n}", p) for n, p in part.named_parameters()],
                                   process_set=dp_set)
    mean_loss(part, mine).backward()
    opt.step()
    ref_opt = torch.optim.SGD(whole.parameters(), lr=0.5, momentum=0.9)
    (sum(mean_loss(whole, b) for b in batches) / 2).backward()
    ref_opt.step()
    after = z.full_state_dict(part)
    for name, value in whole.state_dict().items():
        close(after[name], value, f"{kind} weight {name} after a step")
    gathered = z.full_optimizer_state(part, opt)["state"]
    for idx, entry in ref_opt.state_dict()["state"].items():
        close(gathered[idx]["momentum_buffer"], entry["momentum_buffer"], f"{kind} momentum {idx}")

hvd.barrier()
print(f"RANK{r}-OK", flush=True)
"""


def test_tensor_parallel_layers_match_tensor_1_on_the_same_weights(tmp_path):
    script = tmp_path / "tp.py"
    script.write_text(textwrap.dedent(TP_SCRIPT))
    proc = subprocess.run(
        [str(HOROVODRUN), "--gloo", "-np", "4", "-H", "localhost:4", sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env(),
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert all(f"RANK{r}-OK" in proc.stdout for r in range(4)), proc.stdout[-2000:]


TP_SPEC = """\
extends "{base}"

# The translator's local profile, laid out data 2 x tensor 2 on four processes.
profile local {{
  train.cluster.slots_per_host = 4
  train.parallel.data          = 2
  train.parallel.tensor        = 2
}}
"""


def test_generated_training_is_the_same_at_every_layout(tmp_path):
    """The same spec trained as data 2 x tensor 2 (4 processes), data 2 x tensor 1 (2) and
    data 1 with 2 accumulated micro-batches (1 process) logs the same losses: tensor
    parallelism, gradient averaging and accumulation change where the arithmetic
    happens, not what the model learns. (Every ISO date is 10 bytes + EOS, so each
    micro-batch has as many target tokens and the per-micro-batch means combine alike.)"""
    spec = tmp_path / "translator_tp.llm"
    spec.write_text(TP_SPEC.format(base=(ROOT / "specs" / "translator.llm").as_posix()))
    tp_bundle = build(tmp_path, spec, "translator_tp-local")
    assert "TENSOR_PARALLEL = 2" in (tp_bundle / "train" / "train.py").read_text()
    dp_bundle = build(tmp_path, ROOT / "specs" / "translator.llm", "translator-local")
    # No dropout (masks differ between layouts) and no fp16 compression (rounding of
    # sums taken in a different order), so the runs compute the same numbers.
    same = [
        *FAST,
        "--set",
        "model.transformer.dropout=0.0",
        "--set",
        'train.gradient_compression="none"',
        "--max-steps",
        "3",
        "--log-every",
        "1",
    ]
    proc = launch(tp_bundle, *same, "--output", str(tmp_path / "tp"), data_root=tmp_path)
    assert "data 2 x tensor 2" in proc.stderr
    launch(dp_bundle, *same, "--output", str(tmp_path / "dp"))
    proc = launch(dp_bundle, *same, "--output", str(tmp_path / "one"), np=1)
    assert "micro-batch 32 x accumulation 2" in proc.stderr
    runs = {name: metrics(tmp_path / name / "metrics.jsonl") for name in ("tp", "dp", "one")}
    for name, (steps, finals) in runs.items():
        assert [m["step"] for m in steps] == [1, 2, 3], name
        for a, b in zip(steps, runs["dp"][0]):
            assert math.isclose(a["loss"], b["loss"], rel_tol=1e-4), (name, steps, runs["dp"][0])
        assert math.isclose(finals[0]["valid_loss"], runs["dp"][1][0]["valid_loss"], rel_tol=1e-4), name
    assert runs["dp"][0][-1]["loss"] < runs["dp"][0][0]["loss"]
    # The tensor-parallel run exports (and checkpoints) the whole model.
    from llmc.runtime.zoo_torch import load_model

    model, _ = load_model(tmp_path / "tp" / "model")
    reference, _ = load_model(tmp_path / "dp" / "model")
    for (name, a), (_, b) in zip(model.state_dict().items(), reference.state_dict().items()):
        assert a.shape == b.shape and (a - b).abs().max() < 1e-4, name


LLAMA = ROOT / "examples" / "tinyllama-1.1b.llm"
LLAMA_TP_SPEC = """\
extends "{base}"

# The Llama-style decoder's local profile on two tensor-parallel ranks.
profile local {{
  train.parallel.data   = 1
  train.parallel.tensor = 2
}}
"""


@pytest.mark.parametrize("kv_heads", [2, 1], ids=["kv-heads-split", "kv-heads-replicated"])
def test_a_llama_style_decoder_learns_and_is_the_same_at_tensor_2(tmp_path, kv_heads):
    """examples/tinyllama-1.1b.llm's local profile: RoPE, RMSNorm, SwiGLU, fewer key/value
    heads than query heads, no biases, an untied output. Its generated script trains it on
    two Horovod ranks and the loss falls; laid out tensor 2 (the key/value heads split
    over the two ranks, or with one key/value head replicated on both) it logs the losses
    and exports the weights of one process accumulating the same two micro-batches."""
    examples = ROOT / "examples"
    spec = tmp_path / "tinyllama_tp.llm"
    spec.write_text(LLAMA_TP_SPEC.format(base=LLAMA.as_posix()))
    tp_bundle = build(tmp_path, spec, "tinyllama_tp-local")
    assert "TENSOR_PARALLEL = 2" in (tp_bundle / "train" / "train.py").read_text()
    bundle = build(tmp_path, LLAMA, "tinyllama-local")
    heads = [f"model.transformer.kv_heads={kv_heads}"]
    learn = ["--set", *heads, "--max-steps", "40", "--log-every", "10"]
    launch(bundle, *learn, "--output", str(tmp_path / "learn"), data_root=examples)
    steps, finals = metrics(tmp_path / "learn" / "metrics.jsonl")
    assert steps[-1]["loss"] < 0.5 * steps[0]["loss"], steps
    assert finals[0]["valid_loss"] < 0.5 * steps[0]["loss"], finals

    same = ["--set", *heads, "--max-steps", "3", "--log-every", "1"]
    # Each bundle's data paths are relative to its own spec's folder.
    proc = launch(tp_bundle, *same, "--output", str(tmp_path / "tp"), data_root=tmp_path)
    assert "data 1 x tensor 2" in proc.stderr
    proc = launch(bundle, *same, "--output", str(tmp_path / "one"), np=1, data_root=examples)
    assert "micro-batch 32 x accumulation 2" in proc.stderr
    (tp_steps, tp_finals), (one_steps, one_finals) = (metrics(tmp_path / n / "metrics.jsonl") for n in ("tp", "one"))
    assert [m["step"] for m in tp_steps] == [1, 2, 3]
    for a, b in zip(tp_steps, one_steps, strict=True):
        assert math.isclose(a["loss"], b["loss"], rel_tol=1e-4), (tp_steps, one_steps)
    assert math.isclose(tp_finals[0]["valid_loss"], one_finals[0]["valid_loss"], rel_tol=1e-4)
    from llmc.runtime.zoo_torch import load_model

    model, _ = load_model(tmp_path / "tp" / "model")
    reference, _ = load_model(tmp_path / "one" / "model")
    assert model.state_dict().keys() == reference.state_dict().keys()
    for (name, a), (_, b) in zip(model.state_dict().items(), reference.state_dict().items()):
        assert a.shape == b.shape and (a - b).abs().max() < 1e-4, name


def kill_after_checkpoint(bundle: Path, out: Path, args: list[str], suffix: str, past_step: int) -> None:
    """Start a run and SIGKILL the launcher and every process under it (Horovod starts
    the ranks in sessions of their own) once a checkpoint is written and the metrics
    show step `past_step`: those later steps drew random numbers that the resumed run
    must draw again."""
    import psutil

    log = (out.parent / f"{out.name}.killed.log").open("w")
    proc = subprocess.Popen(
        [str(bundle / "train" / "launch.sh"), *args, "--output", str(out)],
        env=env(),
        cwd=bundle,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "the run finished before it could be killed"
            written = list((out / "checkpoints").glob(f"ckpt-*.{suffix}")) if (out / "checkpoints").is_dir() else []
            lines = (out / "metrics.jsonl").read_text().splitlines() if (out / "metrics.jsonl").exists() else []
            steps = [json.loads(line).get("step", 0) for line in lines[:-1]]  # the last may be half written
            if written and steps and max(steps) >= past_step:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("no checkpoint before the deadline")
    finally:
        try:
            everyone = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            everyone = []
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        for process in everyone:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        proc.wait(timeout=30)
        psutil.wait_procs(everyone, timeout=30)
        log.close()


@pytest.mark.parametrize("spec, suffix, steps, past", [("translator", "pt", 12, 6), ("classifier", "npz", 95, 30)])
def test_a_killed_run_resumes_bit_identical(tmp_path, spec, suffix, steps, past):
    """Killed after a checkpoint and resumed, a 2-process run with dropout on ends with
    the same weights and optimizer state, bit for bit, as a run never interrupted:
    every rank's random state is in the checkpoint. The metrics then hold each step
    once, with the uninterrupted run's values."""
    bundle = build(tmp_path, ROOT / "specs" / f"{spec}.llm", f"{spec}-local")
    model = json.loads((bundle / "model.json").read_text())["model"]
    assert (model.get("transformer") or model.get("mlp"))["dropout"] > 0
    args = [
        *(FAST if spec == "translator" else []),
        "--max-steps",
        str(steps),
        "--log-every",
        "1",
        "--set",
        "train.checkpoint.every=4",
        "--set",
        "train.checkpoint.keep=2",
    ]
    launch(bundle, *args, "--output", str(tmp_path / "whole"))

    resumed = tmp_path / "resumed"
    kill_after_checkpoint(bundle, resumed, args, suffix, past)
    newest = ck.latest_checkpoint(resumed / "checkpoints", suffix)
    # What a kill in the middle of a checkpoint's write leaves behind.
    orphan = resumed / "checkpoints" / f".ckpt-{steps - 1:08d}.{suffix}.tmp-999999"
    orphan.write_bytes(b"half a checkpoint")
    proc = launch(bundle, *args, "--output", str(resumed))
    resumed_at = int(newest.name.split("-")[1].split(".")[0])
    assert f"at step {resumed_at}" in proc.stderr and 0 < resumed_at < steps
    assert not orphan.exists()

    last = f"ckpt-{steps:08d}.{suffix}"
    if suffix == "pt":
        import torch

        a = torch.load(tmp_path / "whole" / "checkpoints" / last, weights_only=True)
        b = torch.load(resumed / "checkpoints" / last, weights_only=True)
        assert a["model"].keys() == b["model"].keys()
        for name in a["model"]:
            assert torch.equal(a["model"][name], b["model"][name]), name
        for index, state in a["optimizer"]["state"].items():
            for key, value in state.items():
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["optimizer"]["state"][index][key]))
    else:
        import numpy as np

        with np.load(tmp_path / "whole" / "checkpoints" / last) as a, np.load(resumed / "checkpoints" / last) as b:
            assert sorted(a.files) == sorted(b.files) and any(f.startswith("random/") for f in a.files)
            for name in a.files:
                assert np.array_equal(a[name], b[name]), name

    whole_steps, whole_final = metrics(tmp_path / "whole" / "metrics.jsonl")
    resumed_steps, resumed_final = metrics(resumed / "metrics.jsonl")
    assert [m["step"] for m in resumed_steps] == list(range(1, steps + 1))  # each step once
    assert [(m["loss"], m["lr"]) for m in resumed_steps] == [(m["loss"], m["lr"]) for m in whole_steps]
    assert len(resumed_final) == 1 and resumed_final[0]["valid_loss"] == whole_final[0]["valid_loss"]
