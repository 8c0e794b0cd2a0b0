"""Open-loop load on a served model: Poisson arrivals at a rate, requests built from
the model's own data, sent with Triton's asyncio HTTP client, timed from the moment
each request was *scheduled*.

* Arrivals are a Poisson process (exponential gaps, seeded) fixed before the run:
  the sender sends each request at its time whatever the server is doing (an open
  loop), so a slow server meets the same arrivals as a fast one.
* Latency is measured from the scheduled time, not the moment the request left
  (the coordinated-omission correction wrk2 makes): when the sender falls behind,
  because the machine is busy or the in-flight cap is reached, the wait counts.
* Bounded: at most `max_in_flight` requests in flight (one arriving at the cap is
  counted as dropped by the client, not queued), at most `max_requests` in all, each
  abandoned after `request_timeout` seconds (a client timeout), and the run ends by
  `duration + request_timeout + DRAIN_MARGIN_S` whatever happens.

The outcome of each request is one of OUTCOMES; `classify` reads Triton's 503 texts.
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

OK = "ok"
QUEUE_FULL = "refused: queue full"
QUEUE_TIMEOUT = "refused: timed out in queue"
CLIENT_TIMEOUT = "client timeout"
DROPPED = "dropped by the client"
OTHER = "other"
OUTCOMES = (OK, QUEUE_FULL, QUEUE_TIMEOUT, CLIENT_TIMEOUT, DROPPED, OTHER)
REFUSED = (QUEUE_FULL, QUEUE_TIMEOUT)

MAX_REQUESTS = 20_000  # per run, whatever the rate and duration
DRAIN_MARGIN_S = 2.0
START_DELAY_S = 0.05  # the schedule starts this long after the sender is ready


class LoadError(Exception):
    """The load cannot be built (no usable example in the data); the message says why."""


class Shot(NamedTuple):
    """One scheduled request; times in seconds from the run's start."""

    scheduled: float
    sent: float | None  # None: never sent (dropped by the client)
    done: float | None  # when the answer (or the error) came; None: none came
    outcome: str
    message: str = ""

    @property
    def latency(self) -> float | None:
        """From the scheduled time (coordinated-omission corrected)."""
        return None if self.done is None else self.done - self.scheduled


class Limits(NamedTuple):
    max_in_flight: int
    max_requests: int
    request_timeout: float


def limits_for(rate: float, duration: float, p99_s: float, max_in_flight: int = 1000) -> Limits:
    """The bounds of one run: rate × duration × 1.5 requests (at most MAX_REQUESTS), a
    client timeout of ten times the SLA's p99 (at least 2 s), `max_in_flight` in flight."""
    cap = min(MAX_REQUESTS, max(1, math.ceil(rate * duration * 1.5)))
    return Limits(max_in_flight, cap, max(2.0, 10 * p99_s))


def poisson_schedule(rate: float, duration: float, seed: int, cap: int) -> list[float]:
    """Arrival times in [0, duration) of a Poisson process of `rate` per second, at most `cap`."""
    rng = random.Random(seed)
    times: list[float] = []
    t = rng.expovariate(rate)
    while t < duration and len(times) < cap:
        times.append(t)
        t += rng.expovariate(rate)
    return times


def classify(status: str | None, message: str) -> str:
    """The outcome of an error answer: Triton's queue policy answers 503 with these texts."""
    if str(status) == "503" and "Exceeds maximum queue size" in message:
        return QUEUE_FULL
    if str(status) == "503" and "Request timeout expired" in message:
        return QUEUE_TIMEOUT
    return OTHER


# --- the requests ------------------------------------------------------------------------------------


def request_examples(handler: Any, model_cfg: dict[str, Any], paths: Sequence[str], limit: int = 512) -> list[dict]:
    """Up to `limit` single-example requests ({input name: array with batch dimension 1})
    from the data files `paths`, each one the handler accepts; LoadError when none is."""
    from ..data import DataError, read_rows
    from ..folders import load_rows
    from .handlers import RequestError

    name = handler.inputs[0].name
    examples: list[dict] = []
    for path in paths:
        try:
            if name == "features":
                features = load_rows(model_cfg, path).arrays["features"]
                candidates = [{name: row[None, :].astype(np.float32)} for row in features]
            else:
                data = model_cfg["data"]
                task = model_cfg.get("task")
                reads_text = task in ("classification", "language-modeling")
                column = (data.get("text") or "text") if reads_text else (data.get("source") or "source")
                _, rows = read_rows(path, data.get("format"))
                texts = [str(r.get(column) or "") for r in rows]
                if task == "language-modeling":  # the first half is the prompt: the model writes the rest
                    texts = [t[: max(1, len(t) // 2)] for t in texts]
                candidates = [{name: np.array([[t.encode("utf-8")]], dtype=np.object_)} for t in texts]
        except (OSError, DataError, KeyError, ValueError):
            continue
        for tensors in candidates:
            try:
                handler.rows(tensors)
            except RequestError:
                continue
            examples.append(tensors)
            if len(examples) >= limit:
                return examples
    if not examples:
        raise LoadError(f"no example in {', '.join(paths) or 'the spec (no valid or test data)'} makes a valid request")
    return examples


def _infer_inputs(examples: Sequence[dict]) -> list[list[Any]]:
    from tritonclient.http import InferInput

    out = []
    for tensors in examples:
        inputs = []
        for name, array in tensors.items():
            datatype = "BYTES" if array.dtype == np.object_ else "FP32"
            item = InferInput(name, list(array.shape), datatype)
            item.set_data_from_numpy(array, binary_data=False)
            inputs.append(item)
        out.append(inputs)
    return out


def _client(url: str, connections: int, timeout: float):
    from tritonclient.http.aio import InferenceServerClient

    return InferenceServerClient(url.removeprefix("http://"), conn_limit=connections, conn_timeout=timeout)


async def _one(client, model: str, inputs: list[Any], timeout: float) -> tuple[str, str]:
    from tritonclient.utils import InferenceServerException

    try:
        await asyncio.wait_for(client.infer(model, inputs), timeout)
    except TimeoutError:
        return CLIENT_TIMEOUT, f"no answer within {timeout:g} s"
    except InferenceServerException as exc:
        message = str(exc.message() or exc)
        return classify(exc.status(), message), f"{exc.status()}: {message}"
    except Exception as exc:  # a refused connection, a broken answer: counted, not raised
        return OTHER, f"{type(exc).__name__}: {exc}"
    return OK, ""


# --- the runs ----------------------------------------------------------------------------------------


class Load(NamedTuple):
    rate: float  # the rate asked for (requests per second)
    duration: float
    shots: list[Shot]
    limits: Limits
    stats: dict[str, float]  # Triton's own numbers over the run (stats_delta)


async def _drive(url: str, model: str, inputs: list[list[Any]], schedule: list[float], limits: Limits) -> list[Shot]:
    loop = asyncio.get_running_loop()
    shots: list[Shot | None] = [None] * len(schedule)
    sent: list[float | None] = [None] * len(schedule)
    in_flight = 0
    tasks: set[asyncio.Task] = set()
    horizon = (schedule[-1] if schedule else 0.0) + limits.request_timeout + DRAIN_MARGIN_S
    async with _client(url, limits.max_in_flight, limits.request_timeout + DRAIN_MARGIN_S) as client:
        start = loop.time() + START_DELAY_S

        async def send(i: int) -> None:
            nonlocal in_flight
            sent[i] = loop.time() - start
            outcome, message = await _one(client, model, inputs[i % len(inputs)], limits.request_timeout)
            shots[i] = Shot(schedule[i], sent[i], loop.time() - start, outcome, message)
            in_flight -= 1

        for i, at in enumerate(schedule):
            delay = start + at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if in_flight >= limits.max_in_flight:
                shots[i] = Shot(at, None, None, DROPPED, f"{limits.max_in_flight} requests already in flight")
                continue
            in_flight += 1
            task = asyncio.create_task(send(i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(set(tasks), timeout=max(0.0, start + horizon - loop.time()))
        for task in list(tasks):
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
    return [
        shot
        if shot is not None
        else Shot(schedule[i], sent[i], None, CLIENT_TIMEOUT if sent[i] is not None else DROPPED, "the run's deadline")
        for i, shot in enumerate(shots)
    ]


def run_load(
    url: str,
    model: str,
    examples: Sequence[dict],
    rate: float,
    duration: float,
    limits: Limits,
    seed: int = 0,
) -> Load:
    """Poisson arrivals at `rate` for `duration` seconds against `url` (http://host:port)."""
    schedule = poisson_schedule(rate, duration, seed, limits.max_requests)
    inputs = _infer_inputs(examples)
    before = triton_stats(url, model)
    shots = asyncio.run(_drive(url, model, inputs, schedule, limits))
    return Load(rate, duration, shots, limits, stats_delta(before, triton_stats(url, model)))


def unloaded(url: str, model: str, examples: Sequence[dict], count: int, warmup: int = 3) -> tuple[list[float], dict]:
    """`count` single requests one after the other (after `warmup` untimed ones): the
    latencies in seconds of those answered, and Triton's own numbers over them (with
    `failed`: how many were not answered; at most `count` more are tried in their place)."""
    inputs = _infer_inputs(examples)

    async def go() -> tuple[list[float], dict]:
        times: list[float] = []
        failed, last = 0, ""
        async with _client(url, 1, 30.0) as client:
            for i in range(warmup):
                await _one(client, model, inputs[i % len(inputs)], 30.0)
            before = await _stats(client, model)
            for i in range(2 * count):
                t0 = time.perf_counter()
                outcome, message = await _one(client, model, inputs[i % len(inputs)], 30.0)
                if outcome == OK:
                    times.append(time.perf_counter() - t0)
                else:
                    failed, last = failed + 1, message
                if len(times) == count or failed == count:
                    break
            after = await _stats(client, model)
        if not times:
            raise LoadError(f"no single request was answered ({failed} tried; the last: {last})")
        return times, {**stats_delta(before, after), "failed": failed}

    return asyncio.run(go())


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


# --- Triton's statistics -----------------------------------------------------------------------------


async def _stats(client, model: str) -> dict[str, Any]:
    try:
        answer = await client.get_inference_statistics(model)
    except Exception:  # statistics are a bonus: a failure leaves them out
        return {}
    found = answer.get("model_stats") or [{}]
    return dict(found[0])


def triton_stats(url: str, model: str) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        async with _client(url, 1, 10.0) as client:
            return await _stats(client, model)

    return asyncio.run(go())


def stats_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """Triton's numbers between two snapshots: requests answered, model executions, their
    mean batch size, and the mean queue and compute time per request (seconds)."""
    if not before or not after:
        return {}

    def count(stats: dict, key: str) -> int:
        return int(stats.get("inference_stats", {}).get(key, {}).get("count", 0))

    def ns(stats: dict, key: str) -> int:
        return int(stats.get("inference_stats", {}).get(key, {}).get("ns", 0))

    answered = count(after, "success") - count(before, "success")
    executions = int(after.get("execution_count", 0)) - int(before.get("execution_count", 0))
    inferences = int(after.get("inference_count", 0)) - int(before.get("inference_count", 0))
    out: dict[str, float] = {"answered": answered, "executions": executions}
    if executions > 0:
        out["mean_batch"] = inferences / executions
    if answered > 0:
        out["queue_s"] = (ns(after, "queue") - ns(before, "queue")) / answered / 1e9
        out["compute_s"] = (
            sum(ns(after, k) - ns(before, k) for k in ("compute_input", "compute_infer", "compute_output"))
            / answered
            / 1e9
        )
    return out


def data_paths(model_json: Path, data_root: Path) -> list[str]:
    """The valid and test files of the bundle's model.json, resolved as evaluate resolves them."""
    import json

    from ..folders import resolve_data

    data = json.loads(model_json.read_text(encoding="utf-8"))["model"]["data"] or {}
    paths = [resolve_data(data.get(split), data_root) for split in ("valid", "test")]
    return [p for p in paths if p]
