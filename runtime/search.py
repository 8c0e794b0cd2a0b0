"""The Hyperopt search behind a bundle's search/search.py: one training run per trial.

The generated script holds only what the spec decides (a `SearchConfig`) and calls
`run_search`. Everything else lives here: the space as Hyperopt expressions, the
trials backend (`Trials` on this machine, `SparkTrials` or `MongoTrials` on a
cluster), each trial's training (and evaluation, for a metric objective), early
stopping, and results.json. The command lines and files it relies on are the
contracts of docs/bundle.md; the script's docstring describes its flags.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import hyperopt
import numpy as np
from hyperopt import STATUS_FAIL, STATUS_OK, Trials, fmin, hp
from hyperopt.exceptions import AllTrialsFailed

from . import search_report
from .config import read_lock

# search.algorithm (the spec's name) -> the function proposing the next point.
SUGGEST: dict[str, Callable[..., Any]] = {
    "tpe": hyperopt.tpe.suggest,
    "random": hyperopt.rand.suggest,
    "anneal": hyperopt.anneal.suggest,
}
BACKENDS = ("local", "spark", "mongo")
# The Spark master a `spark` search runs on; unset, a local Spark on 127.0.0.1.
SPARK_MASTER_ENV = "LLMC_SPARK_MASTER"
# Where the objective comes from when it is not evaluate.py's metric.
LOSS_OBJECTIVE = "valid_loss"

# An early-stop function as fmin calls it: (trials, *state) -> (stop?, new state).
StopFunction = Callable[..., tuple[bool, list[Any]]]


@dataclass(frozen=True)
class Distribution:
    """One searched field: the spec's distribution, its arguments as the spec wrote
    them (the bounds are values, even for loguniform; a choice's options), and the
    type train.py expects ("int", "float", "str" or "bool")."""

    kind: str
    args: Sequence[Any]
    cast: str


@dataclass(frozen=True)
class SearchConfig:
    """What the spec decides about a search; the generated script's one constant."""

    model: str
    algorithm: str  # a key of SUGGEST
    max_evals: int
    parallel: int  # trials at once on spark/mongo
    backend: str  # one of BACKENDS
    early_stop: int | None  # finished trials without a new best before stopping; None: run them all
    objective: str
    direction: str  # "minimize" | "maximize"
    seed: int
    mongo_url_env: str  # the environment variable holding the MongoDB jobs URL
    space: Mapping[str, Distribution]

    @property
    def maximize(self) -> bool:
        """Hyperopt minimizes: a maximized objective is negated into the loss."""
        return self.direction == "maximize"

    @property
    def objective_is_loss(self) -> bool:
        """valid_loss comes from the training's metrics file; any other objective from evaluate.py."""
        return self.objective == LOSS_OBJECTIVE

    @property
    def suggest(self) -> Callable[..., Any]:
        return SUGGEST[self.algorithm]


@dataclass(frozen=True)
class SearchOptions:
    """The command line's choices that every trial needs."""

    output: Path  # trials/<n>/ and results.json go here
    local: bool  # python train/train.py instead of train/launch.sh
    train_cmd: str | None
    eval_cmd: str | None
    trial_timeout: float | None
    data_root: str | None
    threads: int | None = None  # each trial's CPU threads when trials share this machine


@dataclass(frozen=True)
class SearchRun:
    """One search: the spec's settings, the bundle the script sits in, and the options."""

    config: SearchConfig
    bundle: Path
    options: SearchOptions


class TrialFailed(Exception):
    """The trial's training or evaluation did not produce an objective."""


# --- the space -------------------------------------------------------------------


def hyperopt_expression(label: str, dist: Distribution) -> Any:
    """The Hyperopt expression drawing `dist`, labelled with the field's path."""
    args = list(dist.args)
    if dist.kind == "choice":
        return hp.choice(label, args)
    if dist.kind == "loguniform":  # hp.loguniform takes the logarithms of the bounds
        return hp.loguniform(label, math.log(args[0]), math.log(args[1]))
    if dist.kind == "uniform":
        return hp.uniform(label, *args)
    if dist.kind == "quniform":
        return hp.quniform(label, *args)
    if dist.kind == "randint":  # integers in [low, high)
        return hp.randint(label, *args)
    if dist.kind == "normal":
        return hp.normal(label, *args)
    raise ValueError(f"unknown distribution {dist.kind!r} for {label}")


def hyperopt_space(space: Mapping[str, Distribution]) -> dict[str, Any]:
    """The spec's search space as Hyperopt expressions."""
    return {path: hyperopt_expression(path, dist) for path, dist in space.items()}


def cast(kind: str, value: Any) -> Any:
    """A sampled value as the plain Python type of its field (numpy scalars become ints/floats)."""
    if kind == "int":
        return round(float(value))
    if kind == "float":
        return float(value)
    if kind == "bool":
        return bool(value)
    return str(value)


# --- the bundle ------------------------------------------------------------------


def experiment_key(lock: Mapping[str, Any]) -> str:
    """One MongoDB experiment per spec, profile and spec content: a changed spec never
    resumes the trials of another."""
    profile = f"-{lock['profile']}" if lock.get("profile") else ""
    return f"{Path(lock['spec']).stem}{profile}-{lock['spec_sha256'][:12]}"


# --- one trial -------------------------------------------------------------------


def new_trial_dir(trials_root: Path) -> Path:
    """trials/<n> for the smallest free n; mkdir is atomic, so parallel trials never share one."""
    trials_root.mkdir(parents=True, exist_ok=True)
    n = len(list(trials_root.iterdir()))
    while True:
        path = trials_root / str(n)
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1


def run_logged(
    cmd: list[str], log_path: Path, timeout: float | None, cwd: Path | None = None, threads: int | None = None
) -> int:
    """Run cmd with its output in log_path; its whole process group is killed on a timeout.
    `threads`: the CPU threads it may use ($LLMC_THREADS), when trials share the machine."""
    env = {**os.environ, "LLMC_THREADS": str(threads)} if threads else None
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + shlex.join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            start_new_session=True,
            env=env,
            preexec_fn=die_with_parent,
        )
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise TrialFailed(f"timed out after {timeout:g} s (log: {log_path})") from None
        except BaseException:  # Ctrl-C, SIGTERM: the trial's processes stop with the search
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise


def die_with_parent() -> None:
    """In a trial's process, before it runs: on Linux, be killed when the process that
    started it dies (a search killed outright, a Spark worker stopped), so no trial trains
    on as an orphan. Elsewhere, nothing."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def data_root_args(options: SearchOptions) -> list[str]:
    return ["--data-root", options.data_root] if options.data_root else []


def train_command(run: SearchRun, params: Mapping[str, Any], trial_dir: Path) -> list[str]:
    """The training launcher with one `--set PATH=JSON` per sampled value (docs/bundle.md)."""
    options = run.options
    if options.train_cmd:
        base = shlex.split(options.train_cmd)
    elif options.local:
        base = [sys.executable, str(run.bundle / "train" / "train.py")]
    else:
        base = ["bash", str(run.bundle / "train" / "launch.sh")]
    sets: list[str] = []
    for path, value in sorted(params.items()):
        sets += ["--set", f"{path}={json.dumps(value)}"]
    outputs = ["--output", str(trial_dir), "--metrics", str(trial_dir / "metrics.jsonl")]
    return base + sets + outputs + data_root_args(options)


def final_metrics(metrics_path: Path) -> dict[str, Any]:
    """The metrics file's last line, which a finished training run writes as {"final": true, ...}."""
    try:
        lines = [line for line in metrics_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError:
        raise TrialFailed(f"no metrics file {metrics_path}") from None
    if not lines:
        raise TrialFailed(f"{metrics_path} is empty")
    try:
        last = json.loads(lines[-1])
    except ValueError:
        raise TrialFailed(f"the last line of {metrics_path} is not JSON") from None
    if not isinstance(last, dict) or last.get("final") is not True:
        raise TrialFailed(f"training did not finish: the last line of {metrics_path} is not the final one")
    return last


def finite_number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TrialFailed(f"{what} is {value!r}, not a finite number")
    return float(value)


def evaluate_metric(run: SearchRun, trial_dir: Path) -> float:
    """The objective metric of the trained model, from evaluate.py's JSON output.

    Its exit status is not used: a failed quality gate exits non-zero but has still
    measured the metric. The valid split chooses hyperparameters, never the spec's
    evaluation split."""
    objective, options = run.config.objective, run.options
    out = trial_dir / "evaluate.json"
    if options.eval_cmd:
        base = shlex.split(options.eval_cmd)
    else:
        script = run.bundle / "evaluate" / "evaluate.py"
        if not script.is_file():
            raise TrialFailed(f"objective {objective!r} needs {script}, which this bundle lacks")
        base = [sys.executable, str(script)]
    cmd = base + ["--model", str(trial_dir / "model"), "--split", "valid", "--json", str(out)] + data_root_args(options)
    status = run_logged(cmd, trial_dir / "evaluate.log", options.trial_timeout, run.bundle, options.threads)
    return reported_metric(out, objective, f"evaluation exited {status}")


def reported_metric(report: Path, objective: str, evaluation: str = "evaluation ended") -> float:
    """`metrics.<objective>` of the JSON report evaluate.py wrote (`--json`); TrialFailed
    when there is no report, no such metric or no finite value. `evaluation` says how
    the evaluation ended, for the message."""
    try:
        data = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise TrialFailed(f"{evaluation} without writing {report}") from None
    metrics = data.get("metrics") if isinstance(data, dict) else None
    if not isinstance(metrics, dict) or objective not in metrics:
        raise TrialFailed(f"{report} has no metrics.{objective}")
    return finite_number(metrics[objective], f"metrics.{objective}")


def run_trial(run: SearchRun, sampled: Mapping[str, Any]) -> dict[str, Any]:
    """One trial, as Hyperopt's objective: train with the sampled values, then read the
    objective back. A failure is a STATUS_FAIL result, never an exception."""
    config = run.config
    params = {path: cast(config.space[path].cast, value) for path, value in sampled.items()}
    trial_dir = new_trial_dir(run.options.output / "trials")
    record: dict[str, Any] = {"params": params, "trial_dir": str(trial_dir)}
    train_log = trial_dir / "train.log"
    started = time.monotonic()
    record["started_at"] = round(time.time(), 3)  # wall clock: parallel trials overlap in it
    try:
        command = train_command(run, params, trial_dir)
        status = run_logged(command, train_log, run.options.trial_timeout, run.bundle, run.options.threads)
        if status != 0:
            raise TrialFailed(f"training exited {status} (log: {train_log})")
        final = final_metrics(trial_dir / "metrics.jsonl")
        if config.objective_is_loss:
            value = finite_number(final.get(config.objective), f"the final {config.objective}")
        else:
            value = evaluate_metric(run, trial_dir)
    except (TrialFailed, OSError) as exc:
        record["seconds"] = round(time.monotonic() - started, 2)
        print(f"search: trial {trial_dir.name} failed: {exc}", file=sys.stderr, flush=True)
        # "loss": None keeps Hyperopt's bookkeeping (and stop functions) from a KeyError.
        return {"status": STATUS_FAIL, "loss": None, "failure": str(exc), **record}
    record["seconds"] = round(time.monotonic() - started, 2)
    print(
        f"search: trial {trial_dir.name}: {config.objective} = {value:.6g} with {json.dumps(params)} "
        f"in {record['seconds']:.1f} s",
        file=sys.stderr,
        flush=True,
    )
    return {"status": STATUS_OK, "loss": -value if config.maximize else value, "objective": value, **record}


# --- the search ------------------------------------------------------------------


def finished_results(trials: Any) -> list[dict[str, Any]]:
    """The results of the trials that have finished (succeeded or failed), in trial id order."""
    return [
        t["result"]
        for t in sorted(trials.trials, key=lambda t: t["tid"])
        if t["result"].get("status") in (STATUS_OK, STATUS_FAIL)
    ]


class ProgressReport:
    """fmin's early_stop_fn, which it calls after every trial (Trials) or every poll
    (SparkTrials, MongoTrials): when more trials have finished, one line with trials
    done / total, the best so far and an ETA; then the early-stop rule, if any, decides.

    The ETA is the time per finished trial measured so far in this search times the
    trials left; with trials running in parallel that rate already counts them."""

    def __init__(
        self,
        config: SearchConfig,
        total: int,
        stop: StopFunction | None,
        clock: Callable[[], float] = time.monotonic,
        say: Callable[[str], None] | None = None,
    ):
        self.config, self.total, self.stop, self.clock = config, total, stop, clock
        self.say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self.started = clock()
        self.seen = 0

    def __call__(self, trials: Any, *state: Any) -> tuple[bool, list[Any]]:
        finished = finished_results(trials)
        if len(finished) > self.seen:
            self.seen = len(finished)
            self.say(self.line(finished))
        if self.stop is None:
            return False, []
        return self.stop(trials, *state)

    def line(self, finished: Sequence[Mapping[str, Any]]) -> str:
        done, config = len(finished), self.config
        failed = sum(1 for r in finished if r["status"] != STATUS_OK)
        ok = [r for r in finished if r["status"] == STATUS_OK and r.get("loss") is not None]
        text = f"search: {done}/{self.total} trials done"
        if failed:
            text += f" ({failed} failed)"
        if ok:
            best = min(ok, key=lambda r: r["loss"])
            trial = Path(str(best.get("trial_dir", "?"))).name
            text += f"; best {config.objective} {best['objective']:.6g} (trial {trial})"
        left = self.total - done
        if left > 0:
            per_trial = (self.clock() - self.started) / done
            text += f"; ETA {format_seconds(per_trial * left)}"
        return text


def format_seconds(seconds: float) -> str:
    """42 s, 3 min 05 s, 1 h 02 min."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def no_progress(count: int) -> StopFunction:
    """Stop once `count` finished trials in a row brought no new best loss.

    hyperopt.early_stop.no_progress_loss(count) with two fixes: a failed trial counts
    as one without progress (no_progress_loss reads its "loss" and restarts on None),
    and trials still running (SparkTrials, MongoTrials) are not looked at.
    """

    def stop(trials: Any, *state: Any) -> tuple[bool, list[Any]]:
        best, since = math.inf, 0
        for result in finished_results(trials):
            loss = result.get("loss") if result["status"] == STATUS_OK else None
            if loss is not None and loss < best:
                best, since = loss, 0
            else:
                since += 1
        return since >= count, []

    return stop


def spark_session(parallel: int) -> Any:
    """The Spark that SparkTrials runs trials on: the cluster $LLMC_SPARK_MASTER names
    (spark://host:7077, k8s://https://...), else a local Spark with `parallel` task slots,
    bound to 127.0.0.1 with its web UI off. Exits with a one-line reason when Spark
    cannot start (no pyspark, no Java)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        sys.exit("search: backend spark needs pyspark (pip install pyspark) and Java 17 or later")
    # Executors run trials with this interpreter, which has llmc.runtime installed.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("llmc-search")
    master = os.environ.get(SPARK_MASTER_ENV)
    if master:
        builder = builder.master(master)
    else:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = (
            builder.master(f"local[{parallel}]")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.ui.enabled", "false")
        )
    print(f"search: starting Spark ({master or f'local[{parallel}] on 127.0.0.1'})", file=sys.stderr, flush=True)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # pyspark raises its own error types (no Java: JAVA_GATEWAY_EXITED)
        sys.exit(f"search: cannot start Spark ({master or 'local'}): {exc}")
    session.sparkContext.setLogLevel("WARN")
    return session


def stop_spark() -> None:
    """Stop the search's Spark session (a local Spark's JVM goes with it)."""
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is not None:
        session.stop()


def make_trials(backend: str, parallel: int, mongo_url_env: str, bundle: Path) -> Any:
    """The trials object of a backend; exits with a one-line reason when it cannot run."""
    if backend == "spark":
        from hyperopt import SparkTrials

        return SparkTrials(parallelism=parallel, spark_session=spark_session(parallel))
    if backend == "mongo":
        url = os.environ.get(mongo_url_env)
        if not url:
            sys.exit(
                f"search: backend mongo needs the MongoDB jobs URL in ${mongo_url_env}, "
                f"e.g. mongo://host:27017/hyperopt/jobs; start `hyperopt-mongo-worker --mongo=host:27017/hyperopt` "
                f"workers beside it"
            )
        try:
            # MongoTrials needs pymongo and only says so when constructed; pymongo is no
            # dependency of llmc (nor installed for type checking), so it is imported by name.
            importlib.import_module("pymongo")
        except ImportError:
            sys.exit("search: backend mongo needs pymongo installed beside hyperopt (pip install pymongo)")
        from hyperopt.mongoexp import MongoTrials

        return MongoTrials(url, exp_key=experiment_key(read_lock(bundle)))
    return Trials()


def trial_records(trials: Any) -> list[dict[str, Any]]:
    """Every trial as plain JSON data, in trial id order."""
    records = []
    for t in sorted(trials.trials, key=lambda t: t["tid"]):
        result = dict(t["result"])
        record = {"tid": t["tid"], "status": result.pop("status", None)}
        record.update(result)
        records.append(record)
    return records


def best_record(records: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    ok = [r for r in records if r["status"] == STATUS_OK and r.get("loss") is not None]
    return min(ok, key=lambda r: (r["loss"], r["tid"])) if ok else None


def search_arguments(config: SearchConfig) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=f"Hyperopt search for {config.model}: {config.direction} {config.objective}"
    )
    p.add_argument(
        "--max-evals", type=int, default=config.max_evals, help=f"trials in all (default {config.max_evals})"
    )
    p.add_argument(
        "--local",
        action="store_true",
        help="train with `python train/train.py` instead of train/launch.sh (one process, no horovodrun)",
    )
    p.add_argument(
        "--backend", choices=BACKENDS, default=config.backend, help=f"where trials run (default {config.backend})"
    )
    p.add_argument(
        "--parallel",
        type=int,
        default=config.parallel,
        help=f"trials at once on spark/mongo (default {config.parallel})",
    )
    default_output = os.path.join(os.environ["LLMC_OUTPUT"], "search") if os.environ.get("LLMC_OUTPUT") else "search"
    p.add_argument(
        "--output",
        default=default_output,
        help="where trials/<n>/ and results.json go (default: $LLMC_OUTPUT/search, or search)",
    )
    p.add_argument("--data-root", default=None, help="passed on to training and evaluation")
    p.add_argument(
        "--seed", type=int, default=config.seed, help=f"seed of the search algorithm (default {config.seed})"
    )
    p.add_argument(
        "--trial-timeout", type=float, default=None, help="seconds before a trial's run is killed and failed"
    )
    p.add_argument(
        "--train-cmd",
        default=None,
        help="command (shell words) replacing the training launcher; "
        "it gets the same --set/--output/--metrics arguments",
    )
    p.add_argument(
        "--eval-cmd",
        default=None,
        help="command (shell words) replacing `python evaluate/evaluate.py`; it gets --model/--split/--json",
    )
    return p


def parse_args(config: SearchConfig, argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = search_arguments(config)
    args = parser.parse_args(argv)
    if args.max_evals < 1 or args.parallel < 1:
        parser.error("--max-evals and --parallel must be at least 1")
    return args


def trial_threads(backend: str, parallel: int) -> int | None:
    """The CPU threads of each trial when `parallel` trials share this machine (a local
    Spark): its cores split between them, unless $LLMC_THREADS says otherwise. Threads
    spinning on oversubscribed cores make every trial many times slower."""
    if backend != "spark" or parallel < 2 or os.environ.get(SPARK_MASTER_ENV) or os.environ.get("LLMC_THREADS"):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // parallel)


def search_options(args: argparse.Namespace) -> SearchOptions:
    return SearchOptions(
        output=Path(args.output).resolve(),
        local=args.local,
        train_cmd=args.train_cmd,
        eval_cmd=args.eval_cmd,
        trial_timeout=args.trial_timeout,
        data_root=str(Path(args.data_root).resolve()) if args.data_root else None,
        threads=trial_threads(args.backend, args.parallel),
    )


def search_results(
    run: SearchRun, args: argparse.Namespace, records: list[dict[str, Any]], best: Mapping[str, Any] | None
) -> dict[str, Any]:
    """results.json: the search's settings, the best trial and every trial."""
    config, lock = run.config, read_lock(run.bundle)
    return {
        "model": config.model,
        "spec": lock["spec"],
        "profile": lock.get("profile"),  # `llmc search apply` writes into this profile
        "objective": config.objective,
        "direction": config.direction,
        "algorithm": config.algorithm,
        "backend": args.backend,
        "max_evals": args.max_evals,
        "parallel": args.parallel,
        "space": {path: {"kind": d.kind, "args": list(d.args)} for path, d in sorted(config.space.items())},
        "best": None if best is None else {k: best[k] for k in ("tid", "params", "objective", "trial_dir")},
        "trials": records,
    }


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """A reader never sees half a file: `write(tmp)` beside it, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")  # the suffix tells matplotlib the format
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomically(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_report(results: Mapping[str, Any], folder: Path) -> None:
    """results.json, report.md and objective.png (search_report.REPORT_FILES) in `folder`."""
    write_json_atomically(folder / "results.json", results)
    markdown = search_report.report_markdown(results)
    write_atomically(folder / "report.md", lambda tmp: tmp.write_text(markdown, encoding="utf-8"))
    write_atomically(folder / "objective.png", lambda tmp: search_report.plot_search(results, tmp))


def run_search(config: SearchConfig, bundle: Path, argv: Sequence[str] | None = None) -> int:
    """search/search.py's main: run the trials, write results.json, print the best point.

    Exit status 1 when no trial succeeded."""
    args = parse_args(config, argv)
    run = SearchRun(config, bundle, search_options(args))
    if args.backend == "local" and args.parallel > 1:
        print(
            f"search: the local backend runs one trial at a time; parallel = {args.parallel} applies to the "
            f"spark backend (a local Spark when no cluster is named) and mongo",
            file=sys.stderr,
        )
    trials = make_trials(args.backend, args.parallel, config.mongo_url_env, bundle)
    try:
        fmin(
            partial(run_trial, run),
            hyperopt_space(config.space),
            algo=config.suggest,
            max_evals=args.max_evals,
            trials=trials,
            rstate=np.random.default_rng(args.seed),
            early_stop_fn=ProgressReport(
                config, args.max_evals, no_progress(config.early_stop) if config.early_stop else None
            ),
            max_queue_len=args.parallel if args.backend == "mongo" else 1,
            show_progressbar=False,
            return_argmin=False,
        )
    except AllTrialsFailed:  # raised by fmin's own best point; results.json reports it below
        pass
    finally:
        if args.backend == "spark":
            stop_spark()
    if args.backend == "mongo":
        trials.refresh()
    records = trial_records(trials)
    best = best_record(records)
    out = run.options.output / "results.json"
    write_report(search_results(run, args, records, best), run.options.output)
    if best is None:
        print(f"search: all {len(records)} trials failed; see {out}", file=sys.stderr)
        return 1
    print(
        f"search: best {config.objective} = {best['objective']:.6g} (trial {Path(best['trial_dir']).name}); "
        f"results in {out}",
        file=sys.stderr,
    )
    print(
        json.dumps(
            {
                "best": best["params"],
                "objective": config.objective,
                "value": best["objective"],
                "trial_dir": best["trial_dir"],
            },
            sort_keys=True,
        )
    )
    return 0
