"""search/katib-experiment.yaml: the search as a Katib Experiment (kubeflow.org/v1beta1),
when the spec says `search.backend = "katib"` and has a train block (a search without
training has nothing to run).

It is not in k8s/kustomization.yaml: creating an Experiment starts its trials at once,
and applying k8s/ must never start work by itself. `kubectl create -f
search/katib-experiment.yaml`, once k8s/ is applied (the trials write to its artifacts
volume, and its NetworkPolicies let them report to Katib), runs the search.

What the spec decides, and how it is written (docs/language.md, "search"):

* the space: search_space.katib_parameter, the one reading of it that the search
  check (E607) also uses. Katib names a parameter after the spec's path with `-` for
  `.` (`train-optimizer-lr`); each trial's command names the path again in its
  `--set`, so the mapping back is in the Experiment itself.
* `algorithm`: tpe and random are Katib's own (Hyperopt's, behind Katib's suggestion
  service); anneal is E606. The spec's train.seed seeds it (`random_state`, taken
  modulo 2^32: the service hands it to numpy's RandomState), as it seeds
  search/search.py. One difference stays: Katib's TPE draws its first
  parallelTrialCount points at random where Hyperopt's fmin draws 20 (Katib sets
  tpe's n_startup_jobs itself; no setting changes it).
* `max_evals` is maxTrialCount; `parallel` is parallelTrialCount, at most max_evals
  (Katib refuses more, and a search never has more trials at once than trials).
* maxFailedTrialCount = max_evals: Katib fails the Experiment once that many trials
  failed (or reported no objective), so it fails only when no trial succeeded, as
  search/search.py exits 1 only then. A failed trial (a learning rate that diverges)
  is an answer of the search, not a fault of it; each failed trial still counts
  towards max_evals, as in Hyperopt.
* the objective: `direction` is objective.type, `objective` the metric's name, its
  strategy `latest` (the final value, as search/search.py reads it; a trial reports
  one). Katib's File collector reads the JSON lines of KATIB_METRICS_FILE, which
  llmc.runtime.katib_trial writes after training (and evaluation, for a metric):
  Katib reads a metric only as a JSON string, and the training writes numbers.
* `early_stop` has no counterpart: Katib's early stopping (medianstop) stops single
  trials by their intermediate values, not the search after trials without a better
  objective. It is left out, and a spec that sets it gets W602.

Each trial is a batch/v1 Job of one pod, the search Job's pod (k8s_workloads.search_pod:
the bundle's image, one training host's slots and resources, uid 10000, the node
selection of the training device), labelled component `search-trial` (whose
NetworkPolicy lets Katib's collector report). It runs one `sh -c` command line:
train/launch.sh with `--set PATH=VALUE` per parameter (as search/search.py passes
them: values as JSON, an enum's quoted), `--output` and `--metrics` in
`$LLMC_OUTPUT/search/trials/<trial name>`; then evaluate/evaluate.py on the valid
split for a metric objective; then llmc.runtime.katib_trial. One line, because
Katib's webhook appends `&& echo completed > ...` to the primary container's
`sh -c` command.
backoffLimit 0: a trial trains once, as search/search.py's do. The trial succeeds or
fails with its Job's Complete or Failed condition; `retain` keeps the finished Jobs
and their pods' logs until the Experiment is deleted.

The Experiment carries the bundle's labels without `app.kubernetes.io/instance` and
without a component (`experiment_labels` says why). Katib's webhook reads the trial's
Job back through Go's batch/v1 types and refuses a field that does not survive that (`omit_false` in templates/k8s/_macros.j2 leaves out the
false booleans Go would drop). The cluster needs Katib v0.18 or later (the
`distribution` of a parameter) and the trials' namespace labelled
`katib.kubeflow.org/metrics-collector-injection=enabled`.
"""

import shlex
from typing import NamedTuple

from ..limits import INT32_MAX, require
from ..search_space import KATIB_ALGORITHMS, KatibParameter, katib_parameter
from . import Artifact, BuildContext
from .k8s_common import KV, Names, k8s_name, names
from .k8s_workloads import OUTPUT_DIR, TRIAL_COMPONENT, Meta, Pod, _labels, search_pod

PATH = "search/katib-experiment.yaml"
# Katib's validator: an Experiment's name has at most 40 characters.
EXPERIMENT_NAME_MAX = 40
# In the directory Katib mounts beside the training (and its collector) for the file.
KATIB_METRICS_FILE = "/var/log/katib/metrics.jsonl"
# The trial parameter holding the trial's name (`${trialSpec.Name}`): camelCase, which
# no searched field's name (a field path with `-` for `.`) can be.
TRIAL_NAME = "trialName"
LOSS_OBJECTIVE = "valid_loss"  # from the training's metrics; any other objective from evaluate.py
# GJSON over the trial's Job, as Katib's own batch/v1 examples write them.
JOB_SUCCEEDED = 'status.conditions.#(type=="Complete")#|#(status=="True")#'
JOB_FAILED = 'status.conditions.#(type=="Failed")#|#(status=="True")#'
SEED_MODULUS = 2**32  # numpy's RandomState takes seeds in [0, 2^32)
INSTANCE_LABEL = "app.kubernetes.io/instance"  # what the bundle's NetworkPolicies select every pod by
COMPONENT_LABEL = "app.kubernetes.io/component"  # deploy.labels may name one too


class TrialParameter(NamedTuple):
    name: str  # what `${trialParameters.NAME}` in the trial's command is replaced by
    reference: str  # a parameter's name, or trial metadata (`${trialSpec.Name}`)
    description: str


class ExperimentContext(NamedTuple):
    meta: Meta
    max_trials: int
    parallel_trials: int
    max_failed_trials: int
    objective_type: str  # minimize | maximize
    objective: str
    algorithm: str  # Katib's algorithmName
    random_state: str
    metrics_file: str
    parameters: list[KatibParameter]  # sorted by path
    primary_container: str
    success_condition: str
    failure_condition: str
    trial_parameters: list[TrialParameter]
    job_labels: list[KV]
    backoff_limit: int
    pod: Pod


def artifacts(ctx: BuildContext) -> list[Artifact]:
    search = ctx.ir.search
    if search is None or search.backend != "katib" or ctx.ir.train is None:
        return []
    return [Artifact(PATH, "katib/experiment.yaml.j2", experiment(ctx))]


def experiment(ctx: BuildContext) -> ExperimentContext:
    ir, s, train = ctx.ir, ctx.ir.search, ctx.ir.train
    assert s is not None and train is not None  # artifacts() writes an Experiment only with both blocks
    assert s.direction is not None  # schema.derive_defaults fills it from the objective
    n = names(ctx)
    parameters = [katib_parameter(path, dist) for path, dist in sorted(s.space.items())]
    command = ["sh", "-c", trial_command(s.objective, parameters)]
    pod = search_pod(ctx, n, command)._replace(labels=_labels(n, TRIAL_COMPONENT))
    trial_parameters = [TrialParameter(TRIAL_NAME, "${trialSpec.Name}", "the trial's name: its output folder")]
    trial_parameters += [TrialParameter(p.name, p.name, f"search.space.{p.path}") for p in parameters]
    trials = require(s.max_evals, 1, INT32_MAX, "maxTrialCount")  # E802 reports more
    return ExperimentContext(
        meta=Meta(experiment_name(ir.model.name), n.namespace, experiment_labels(n), []),
        max_trials=trials,
        parallel_trials=min(s.parallel, trials),
        max_failed_trials=trials,
        objective_type=s.direction,
        objective=s.objective,
        algorithm=KATIB_ALGORITHMS[s.algorithm],
        random_state=str(train.seed % SEED_MODULUS),
        metrics_file=KATIB_METRICS_FILE,
        parameters=parameters,
        primary_container=pod.containers[0].name,
        success_condition=JOB_SUCCEEDED,
        failure_condition=JOB_FAILED,
        trial_parameters=trial_parameters,
        job_labels=_labels(n, TRIAL_COMPONENT),
        backoff_limit=0,
        pod=pod,
    )


def experiment_labels(n: Names) -> list[KV]:
    """The bundle's labels but `app.kubernetes.io/instance`, without a component. Katib
    copies an Experiment's labels onto the pods of its suggestion service and over the
    labels of every trial's pod: with the instance, the suggestion's pod would fall
    under the bundle's default-deny NetworkPolicy (cut off from Katib's controller);
    with a component, the trials' pods would lose their own (`search-trial`), which
    their NetworkPolicy selects."""
    return [kv for kv in n.common_labels if kv.key not in (INSTANCE_LABEL, COMPONENT_LABEL)]


def experiment_name(model: str) -> str:
    """`<model>-search`, within Katib's 40 characters."""
    suffix = "-search"
    return k8s_name(model, EXPERIMENT_NAME_MAX - len(suffix)) + suffix


def trial_command(objective: str, parameters: list[KatibParameter]) -> str:
    """The trial's one `sh -c` line (module docstring). Katib replaces each
    `${trialParameters.NAME}` before the shell runs, inside single quotes: its values
    are numbers and enum names."""
    trial = f"{OUTPUT_DIR}/search/trials/${{trialParameters.{TRIAL_NAME}}}"
    metrics = f"{trial}/metrics.jsonl"
    sets: list[str] = []
    for p in parameters:
        value = f"${{trialParameters.{p.name}}}"
        sets += ["--set", f'{p.path}="{value}"' if p.quoted else f"{p.path}={value}"]
    train = ["bash", "train/launch.sh", *sets, "--output", trial, "--metrics", metrics]
    report = ["python3", "-m", "llmc.runtime.katib_trial", "--objective", objective, "--metrics", metrics]
    report += ["--out", KATIB_METRICS_FILE]
    if objective == LOSS_OBJECTIVE:
        return f"{shlex.join(train)} && {shlex.join(report)}"
    evaluation = f"{trial}/evaluate.json"
    evaluate = [
        "python3",
        "evaluate/evaluate.py",
        "--model",
        f"{trial}/model",
        "--split",
        "valid",
        "--json",
        evaluation,
    ]
    report += ["--evaluation", evaluation]
    # `;` after evaluate.py: a failed gate exits non-zero but has still measured the metric.
    return f"{shlex.join(train)} && {{ {shlex.join(evaluate)}; {shlex.join(report)}; }}"
