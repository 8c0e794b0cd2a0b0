"""The bundle's Kubeflow pipeline with kfp itself: pipeline.yaml loads with kfp's loader
and compiles back to the same bytes; kfp.local runs the translator's local pipeline
(the compiled YAML, as a cluster would get it) to its evaluate gate and through
deploy, and a gate the model cannot meet fails the run before deploy; `llmc run
--target kfp` submits that YAML to a Kubeflow Pipelines API (a stand-in on 127.0.0.1
that records what it was sent); a machine without kfp builds without pipeline.yaml
and says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import yaml
from helpers import ROOT, BundleCache, run_cli
from helpers import build_spec as build
from helpers import spec_variant as variant

kfp = pytest.importorskip("kfp")

SPECS = [("translator", None), ("translator", "local"), ("classifier", None), ("classifier", "local")]
GATE = "evaluate.metric.bleu.min         = 40.0"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return BundleCache(tmp_path_factory)


def env(**extra: str) -> dict:
    # One thread per framework: the cores here are shared.
    return {**os.environ, "LLMC_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore", **extra}


@pytest.mark.parametrize("name,profile", SPECS)
def test_pipeline_yaml_loads_with_kfp_and_compiles_back_to_the_same_bytes(built, name, profile, tmp_path):
    from kfp import compiler, components

    compiled = built(name, profile) / "pipeline" / "pipeline.yaml"
    loaded = components.load_component_from_file(str(compiled))
    assert loaded.name == name
    again = tmp_path / "again.yaml"
    compiler.Compiler().compile(loaded, str(again))
    assert again.read_text() == compiled.read_text()


def local_run(bundle: Path, work: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, str(bundle / "pipeline" / "pipeline.py"), "--local", "--data-root", str(ROOT / "specs")]
    return subprocess.run(
        [*command, "--work", str(work)], capture_output=True, text=True, timeout=1500, env=env(), cwd=ROOT
    )


def task_folders(work: Path) -> dict[str, Path]:
    """kfp.local's folder of each task of the (only) run under `work`."""
    (run,) = [p for p in work.iterdir() if p.is_dir()]
    return {p.name: p for p in run.iterdir() if p.is_dir()}


def short(tmp_path: Path, gate: str) -> Path:
    """The translator's local pipeline with one epoch of training and of distillation
    (the e2e test runs the whole profile), its bleu gate at `gate` and its other bounds
    open (one epoch does not reach them)."""
    tmp_path.mkdir()
    spec = variant(
        tmp_path,
        "translator",
        lambda t: (
            t.replace(
                GATE,
                GATE.replace("40.0", gate)
                + "\n  evaluate.metric.bleu.max_drop    = 100.0\n  evaluate.metric.chrf.min         = 0.0",
            )
            .replace("train.epochs                     = 3", "train.epochs                     = 1")
            .replace("compress.distill.epochs          = 10", "compress.distill.epochs          = 1")
        ),
    )
    return build(spec, tmp_path / "bundle", "local")


@pytest.mark.slow
def test_the_translators_pipeline_runs_with_kfp_local_and_a_failed_gate_fails_it(tmp_path):
    bundle = short(tmp_path / "passing", "0.0")
    work = tmp_path / "kfp"
    done = local_run(bundle, work)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    folders = task_folders(work)
    assert set(folders) == {"train", "compress", "evaluate", "deploy"}  # search only when asked
    # Artifacts passed from step to step: the trained model, the compressed one and its
    # serving layout, evaluate's verdict on it with the gates as Kubeflow metrics.
    assert (folders["train"] / "model" / "model" / "model.pt").is_file()
    assert json.loads((folders["train"] / "model" / "metrics.jsonl").read_text().splitlines()[-1])["final"]
    assert (folders["compress"] / "compressed" / "model").is_dir()
    assert (folders["compress"] / "serving" / "translator" / "config.pbtxt").is_file()
    verdict = json.loads((folders["evaluate"] / "verdict").read_text())
    assert verdict["passed"] is True and verdict["metrics"]["bleu"] >= 0.0
    outputs = json.loads((folders["evaluate"] / "executor_output.json").read_text())
    logged = outputs["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert logged["bleu"] == pytest.approx(verdict["metrics"]["bleu"]) and logged["gates_passed"] == 1.0
    # deploy ran after evaluate passed, and with apply false listed what it would apply.
    applied = (folders["deploy"] / "applied").read_text().splitlines()
    assert "Deployment/translator" in applied and "HorizontalPodAutoscaler/translator" in applied

    # The same pipeline with a gate no model meets: evaluate fails the run, and deploy never starts.
    failing = short(tmp_path / "failing", "99.9")
    work = tmp_path / "kfp-strict"
    failed = local_run(failing, work)
    assert failed.returncode == 1, failed.stdout[-4000:] + failed.stderr[-4000:]
    assert "pipeline failed" in failed.stderr and "evaluate" in failed.stderr
    assert "the model fails its gates: bleu" in failed.stdout + failed.stderr
    assert "deploy" not in task_folders(work)


class StandIn(BaseHTTPRequestHandler):
    """The two calls kfp.Client makes to start a run: find or create the experiment, create the run."""

    received: ClassVar[list[tuple[str, str, dict]]] = []

    def _reply(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.received.append(("GET", self.path, {}))
        self._reply({"experiments": []} if "/experiments" in self.path else {})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        self.received.append(("POST", self.path, body))
        if self.path.endswith("/experiments"):
            self._reply({"experiment_id": "e-1", "display_name": body.get("display_name")})
        else:
            self._reply({"run_id": "r-42", "display_name": body.get("display_name"), "experiment_id": "e-1"})

    def log_message(self, *args):
        pass


def test_run_target_kfp_submits_the_compiled_pipeline_and_prints_its_url(tmp_path, monkeypatch):
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    spec = str(ROOT / "specs" / "classifier.llm")
    code, out, err = run_cli("run", spec, "--target", "kfp", "-o", str(tmp_path / "b0"))
    assert code == 2 and "--target kfp needs a Kubeflow Pipelines endpoint" in err
    code, out, err = run_cli("run", spec, "--endpoint", "http://127.0.0.1:1", "-o", str(tmp_path / "b0"))
    assert code == 2 and "--endpoint is for --target kfp" in err

    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    StandIn.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        out_dir = tmp_path / "bundle"
        code, out, err = run_cli(
            "run",
            spec,
            "--target",
            "kfp",
            "--endpoint",
            endpoint,
            "-o",
            str(out_dir),
            "--runs-dir",
            str(tmp_path / "runs"),
            cwd=tmp_path,
        )
    finally:
        server.shutdown()
    assert code == 0, out + err
    assert f"{endpoint}/#/runs/details/r-42" in out
    (run,) = [body for method, path, body in StandIn.received if method == "POST" and path.endswith("/runs")]
    spec_doc, platform = yaml.safe_load_all((out_dir / "pipeline" / "pipeline.yaml").read_text())
    assert run["pipeline_spec"]["pipeline_spec"] == spec_doc and run["pipeline_spec"]["platform_spec"] == platform
    assert run["runtime_config"]["parameters"] == {"with_search": False}
    assert run["experiment_id"] == "e-1" and run["display_name"] == "classifier"

    # An endpoint that is not there: exit 2 and its words, no traceback.
    code, out, err = run_cli(
        "run",
        spec,
        "--target",
        "kfp",
        "--endpoint",
        "http://127.0.0.1:1",
        "-o",
        str(out_dir),
        "--runs-dir",
        str(tmp_path / "runs"),
        cwd=tmp_path,
    )
    assert code == 2 and "did not take the run" in err and "Traceback" not in err


def test_a_machine_without_kfp_builds_without_the_yaml_and_says_so(tmp_path):
    site = tmp_path / "no-kfp"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\n\n"
        "class Refuse:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'kfp' or name.startswith('kfp.'):\n"
        "            raise ImportError('no kfp here')\n\n"
        "sys.meta_path.insert(0, Refuse())\n"
    )
    out = tmp_path / "bundle"
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "llmc"),
            "build",
            str(ROOT / "specs" / "translator.llm"),
            "-o",
            str(out),
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env(PYTHONPATH=str(site)),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "note: pipeline/pipeline.yaml not written: kfp is not installed" in done.stderr
    assert "python pipeline/pipeline.py --compile" in done.stderr and "Traceback" not in done.stderr
    assert (out / "pipeline" / "pipeline.py").is_file() and not (out / "pipeline" / "pipeline.yaml").exists()
    assert "pipeline/pipeline.yaml" not in json.loads((out / "llmc.lock.json").read_text())["artifacts"]
