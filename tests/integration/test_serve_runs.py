"""`llmc serve` on a real Triton server (the nvidia-pytriton wheel's tritonserver,
Python backend): the request bodies docs/serving.md shows are answered with the
documented tensors; every bad request gets a 4xx (unparseable JSON: Triton's 500,
as documented) and the server keeps answering; SIGTERM and SIGINT stop it with no
tritonserver or stub process and no /dev/shm region left; a taken port and a spec
with no successful run are refused with their message and exit status 1.

The runs served are made the quick way, with what an `llmc run` leaves
(tests/support/serving_runs.py).
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from helpers import ROOT
from support.serving_runs import BIN, classifier_run, env, free_port, leftovers, translator_run

pytest.importorskip("pytriton")
pytest.importorskip("sacrebleu")

DOC = ROOT / "docs" / "serving.md"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A folder with both specs' variants and a gated run of each under runs/."""
    root = tmp_path_factory.mktemp("serve")
    specs = {"translator": translator_run(root), "classifier": classifier_run(root)}
    return root, specs


# --- the server ----------------------------------------------------------------------------------


class Serving:
    """`llmc serve` in its own process, its output in a file."""

    def __init__(self, root: Path, spec: Path, *extra: str):
        self.http, self.metrics = free_port(), free_port()
        self.log_path = root / f"serve-{spec.stem}-{self.http}.log"
        log = open(self.log_path, "w")  # noqa: SIM115 (the process writes it until it ends)
        self.proc = subprocess.Popen(
            [str(BIN / "llmc"), "serve", str(spec), "--profile", "local", "--runs-dir", str(root / "runs")]
            + ["--http-port", str(self.http), "--metrics-port", str(self.metrics), *extra],
            cwd=root,
            env=env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # A shell without job control starts background commands with SIGINT ignored: give
            # llmc the default Ctrl-C, as a terminal would.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        log.close()
        self.base = f"http://127.0.0.1:{self.http}"
        self.shm_prefix = f"llmc_{self.proc.pid}_{self.http}_"

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout: float = 150) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            assert self.proc.poll() is None, self.output()
            if "serving " in self.output():
                return time.monotonic() - started
            time.sleep(0.2)
        raise AssertionError(f"not ready after {timeout} s:\n{self.output()}")

    def post(self, path: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
        request = urllib.request.Request(f"{self.base}{path}", body, {"Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=60) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def get(self, url: str) -> bytes:
        with urllib.request.urlopen(url, timeout=10) as r:
            data: bytes = r.read()
            return data

    def stop(self, sig: int) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# --- the documented requests ------------------------------------------------------------------------


def documented_request(model: str) -> tuple[str, bytes]:
    """(path, body) of the curl example in docs/serving.md that posts to `model`."""
    text = DOC.read_text(encoding="utf-8")
    for m in re.finditer(
        r"curl [^\n]*?(http://127\.0\.0\.1:8000(/v2/models/(\w+)/infer))[^\n]*\n?((?:.*\n)*?)```", text
    ):
        if m.group(3) == model:
            body = re.search(r"-d '([^']*)'", m.group(0))
            assert body, m.group(0)
            return m.group(2), body.group(1).encode()
    raise AssertionError(f"docs/serving.md has no curl example for {model}")


def test_the_documented_curl_examples_send_json():
    for model in ("translator", "classifier"):
        _, body = documented_request(model)
        json.loads(body)
        block = DOC.read_text(encoding="utf-8")
        assert "-H 'Content-Type: application/json'" in block


def bad_requests(good: dict) -> dict[str, tuple[bytes, int]]:
    """name -> (body, expected status) for the bad requests of the model whose good
    request body is `good`."""
    first = good["inputs"][0]
    name, width = first["name"], first["shape"][1]
    text = first["datatype"] == "BYTES"

    def body(data, shape=None, datatype=None, input_name=None) -> bytes:
        return json.dumps(
            {
                "inputs": [
                    {
                        "name": input_name or name,
                        "shape": shape or [1, width],
                        "datatype": datatype or first["datatype"],
                        "data": data,
                    }
                ]
            }
        ).encode()

    one = first["data"][:width]
    cases = {
        "wrong datatype": (body([1] * width, datatype="INT32"), 400),
        "wrong shape": (body(one * 2, shape=[1, width * 2]), 400),
        "no batch dimension": (body(one, shape=[width]), 400),
        "no data": (body([], shape=[0, width]), 400),
        "unknown input": (body(one, input_name="nope"), 400),
        "batch above max_batch_size": (body(one * 1000, shape=[1000, width]), 400),
        "unparseable JSON": (b'{"inputs": [', 500),
    }
    if text:
        cases.update(
            {
                "empty text": (body([""]), 400),
                "text longer than the model reads": (body(["12 March 2020 " * 20]), 400),
                "invalid UTF-8": (
                    b'{"inputs":[{"name":"text","shape":[1,1],"datatype":"BYTES","data":["ab\xff\xfe"]}]}',
                    400,
                ),
                "10 MB of text": (body(["x" * 10_000_000]), 400),
            }
        )
    else:
        cases.update(
            {
                "features of the wrong count": (body([0.5] * (width - 1), shape=[1, width - 1]), 400),
                "10 MB of features": (body([0.5] * 1_400_000, shape=[1, 1_400_000]), 400),
            }
        )
    return cases


def check_bad_requests(server: Serving, path: str, good: bytes) -> None:
    for case, (body, expected) in bad_requests(json.loads(good)).items():
        status, answer = server.post(path, body)
        assert status == expected, f"{case}: {status} {answer}"
        assert answer.get("error"), f"{case}: no message: {answer}"
        assert server.proc.poll() is None, f"{case} stopped the server:\n{server.output()}"
    status, _ = server.post(path, good)
    assert status == 200


def check_overload_is_refused(server: Serving, path: str, good: bytes) -> None:
    """Many more requests at once than the server clears within the SLA's p99: the excess is
    refused with 503 (a full queue, or a request still queued at the p99), and the server
    answers again afterwards."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(200) as pool:
        answers = list(pool.map(lambda _: server.post(path, good), range(400)))
    statuses = {status for status, _ in answers}
    refused = [a.get("error", "") for status, a in answers if status == 503]
    assert statuses <= {200, 503}, statuses
    reasons = ("Exceeds maximum queue size", "Request timeout expired")
    assert refused and all(any(r in message for r in reasons) for message in refused), refused[:3]
    assert server.post(path, good)[0] == 200


def test_the_translator_answers_text_refuses_bad_requests_and_stops_on_sigterm(served):
    root, specs = served
    server = Serving(root, specs["translator"])
    try:
        seconds = server.wait_ready()
        out = server.output()
        assert f"serving translator on http://127.0.0.1:{server.http}" in out, out
        print(f"llmc serve translator: ready in {seconds:.1f} s")
        path, body = documented_request("translator")
        started = time.perf_counter()
        status, answer = server.post(path, body)
        print(f"documented translator request: {(time.perf_counter() - started) * 1e3:.1f} ms")
        assert status == 200, answer
        (output,) = answer["outputs"]
        sent = json.loads(body)["inputs"][0]
        assert output["name"] == "output" and output["datatype"] == "BYTES"
        assert output["shape"] == sent["shape"] and all(isinstance(t, str) for t in output["data"])

        config = json.loads(server.get(f"{server.base}/v2/models/translator/config"))
        batching = config["dynamic_batching"]
        assert config["max_batch_size"] == 16 and batching["preferred_batch_size"] == [2, 4, 8, 16]
        assert int(batching["max_queue_delay_microseconds"]) == 5000  # the bundle's 5ms
        policy = batching["default_queue_policy"]
        assert policy["timeout_action"] == "REJECT" and int(policy["default_timeout_microseconds"]) == 200_000
        plan = json.loads((root / "build" / "translator" / "serving.json").read_text())
        assert int(policy["max_queue_size"]) == plan["queue"]["max_queue_size"]  # the bundle's plan, as written

        check_bad_requests(server, path, body)
        check_overload_is_refused(server, path, body)
        metrics = server.get(f"http://127.0.0.1:{server.metrics}/metrics").decode()
        assert re.search(r'nv_inference_request_success\{model="translator",version="1"\} [1-9]', metrics), metrics
        assert 'nv_inference_request_summary_us_count{model="translator"' in metrics

        assert server.stop(signal.SIGTERM) == 0, server.output()
        assert "serve: stopped" in server.output()
        assert leftovers([server.shm_prefix, str(root / "runs" / "translator-local" / "serve")]) == []
    finally:
        server.kill()


def test_the_classifier_answers_a_label_and_probabilities_and_stops_on_ctrl_c(served):
    root, specs = served
    server = Serving(root, specs["classifier"])
    try:
        server.wait_ready()
        path, body = documented_request("classifier")
        status, answer = server.post(path, body)
        assert status == 200, answer
        outputs = {o["name"]: o for o in answer["outputs"]}
        assert outputs["label"]["shape"] == [1, 1] and outputs["label"]["datatype"] == "BYTES"
        probabilities = outputs["probabilities"]
        assert probabilities["shape"] == [1, 10] and probabilities["datatype"] == "FP32"
        assert sum(probabilities["data"]) == pytest.approx(1.0, abs=1e-4)
        best = max(range(10), key=lambda i: probabilities["data"][i])
        assert outputs["label"]["data"] == [str(best)]  # the digits' labels are their ids

        check_bad_requests(server, path, body)
        assert server.stop(signal.SIGINT) == 0, server.output()
        assert leftovers([server.shm_prefix, str(root / "runs" / "classifier-local" / "serve")]) == []
    finally:
        server.kill()


def test_a_taken_port_is_refused_before_anything_starts(served):
    root, specs = served
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [str(BIN / "llmc"), "serve", str(specs["translator"]), "--profile", "local"]
            + ["--runs-dir", str(root / "runs"), "--http-port", str(port), "--metrics-port", str(free_port())],
            cwd=root,
            env=env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"error: port {port} on 127.0.0.1 is in use: stop what holds it, or pass --http-port" in proc.stderr
    assert "Traceback" not in proc.stderr and "starting tritonserver" not in proc.stdout


def test_a_spec_without_a_successful_run_names_the_command_that_makes_one(tmp_path):
    proc = subprocess.run(
        [str(BIN / "llmc"), "serve", str(ROOT / "specs" / "translator.llm"), "--profile", "local"]
        + ["--runs-dir", str(tmp_path / "runs")],
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: no run of translator-local under ")
    assert (
        f"`llmc run {ROOT / 'specs' / 'translator.llm'} --profile local --runs-dir {tmp_path / 'runs'}`" in proc.stderr
    )
    assert "Traceback" not in proc.stderr
