"""The katib target (search/katib-experiment.yaml) and a Katib trial's last step
(llmc.runtime.katib_trial), in process.

The Experiment is validated against Katib's CRD and, strictly, against the API types
Katib publishes (tests/crds/README.md); its trial's Job with kubernetes-validate; and
against the rules of Katib's admission webhook (kubeflow/katib v0.19.0,
pkg/webhook/v1beta1/experiment/validator/validator.go), restated below. Each space
expression kind is turned into a Hyperopt expression the way Katib's suggestion
service does (pkg/suggestion/v1beta1/hyperopt/base_service.py, restated below) and
compared with the one search/search.py builds (llmc.runtime.search): the same draws,
or for randint the same values. A trial's command is run through Katib's substitution
and its webhook's wrapping, then read as the shell would split it.
"""

from __future__ import annotations

import copy
import json
import math
import re
import shlex
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, BundleCache, run_cli
from helpers import spec_variant as variant
from support.k8s import LOADER, allowed, documents, of_kind, pod_templates, selects, strict_schema
from support.katib import primary_line, trial_job

from llmc.compiler.driver import check_spec
from llmc.compiler.search_space import cast_for
from llmc.compiler.targets import katib
from llmc.runtime import katib_trial
from llmc.runtime.config import parse_override

hyperopt = pytest.importorskip("hyperopt")
import numpy as np  # noqa: E402  (hyperopt depends on it)
from hyperopt import hp  # noqa: E402
from hyperopt.pyll.stochastic import sample  # noqa: E402
from support.search import ALL_KINDS_SPACE  # noqa: E402  (imports hyperopt)

from llmc.runtime import search as driver  # noqa: E402

CRDS = ROOT / "tests" / "crds"
EXPERIMENT = "search/katib-experiment.yaml"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return BundleCache(tmp_path_factory)


def load(path: Path):
    return yaml.load(path.read_text(encoding="utf-8"), Loader=LOADER)


def with_space(space: str):
    return lambda text: re.sub(r"  space \{.*?\n  \}", space, text, count=1, flags=re.S)


def build_variant(tmp_path: Path, name: str, edit) -> tuple[Path, Path]:
    """(spec, bundle) of specs/NAME.llm with `edit` applied."""
    spec = variant(tmp_path, name, edit)
    out = tmp_path / "bundle"
    code, stdout, stderr = run_cli("build", str(spec), "-o", str(out), "-q", cwd=ROOT)
    assert code == 0, stdout + stderr
    return spec, out


@pytest.fixture(scope="module")
def all_kinds(tmp_path_factory) -> tuple[Path, dict]:
    """The translator with every distribution kind in its space: (spec, Experiment)."""
    spec, out = build_variant(tmp_path_factory.mktemp("all-kinds"), "translator", with_space(ALL_KINDS_SPACE))
    return spec, load(out / EXPERIMENT)


@pytest.fixture(scope="module")
def metric_objective(tmp_path_factory) -> tuple[Path, dict]:
    """The classifier (objective accuracy, maximized) searching on Katib: (spec, Experiment)."""
    edit = lambda text: text.replace('backend   = "spark"', 'backend   = "katib"')  # noqa: E731
    spec, out = build_variant(tmp_path_factory.mktemp("metric"), "classifier", edit)
    return spec, load(out / EXPERIMENT)


# --- Katib's API -------------------------------------------------------------------


@pytest.fixture(scope="module")
def api_schema() -> dict:
    """Katib's ExperimentSpec, strict, from the OpenAPI definitions Katib publishes. The
    Kubernetes types they name are left open: the trial's Job is validated whole below."""
    definitions = json.loads((CRDS / "katib.v1beta1.swagger.json").read_text(encoding="utf-8"))["definitions"]
    for name in ("v1.Container", "v1.HTTPGetAction", "v1.ListMeta", "v1.ObjectMeta", "v1.Time"):
        definitions.setdefault(name, {})
    definitions.setdefault("v1.unstructured.Unstructured", {"type": "object"})
    return strict_schema({"$ref": "#/definitions/v1beta1.ExperimentSpec", "definitions": definitions})


def validate_api(spec: dict, schema: dict) -> None:
    import jsonschema

    errors = sorted(jsonschema.Draft4Validator(schema).iter_errors(spec), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


def test_the_experiment_validates_against_katibs_crd_and_api_types(built, api_schema):
    import jsonschema
    import kubernetes_validate

    doc = load(built("translator") / EXPERIMENT)
    crd = load(CRDS / "kubeflow.org_experiments.yaml")
    (version,) = crd["spec"]["versions"]
    assert (doc["apiVersion"], doc["kind"]) == (
        f"{crd['spec']['group']}/{version['name']}",
        crd["spec"]["names"]["kind"],
    )
    jsonschema.Draft4Validator(strict_schema(version["schema"]["openAPIV3Schema"])).validate(doc)
    validate_api(doc["spec"], api_schema)
    kubernetes_validate.validate(doc["spec"]["trialTemplate"]["trialSpec"], "1.30.0", strict=True)


def test_strict_validation_catches_a_misspelt_field(built, api_schema):
    spec = copy.deepcopy(load(built("translator") / EXPERIMENT)["spec"])
    spec["parameters"][0]["feasibleSpace"]["maximum"] = "1"
    with pytest.raises(AssertionError, match="maximum"):
        validate_api(spec, api_schema)


def webhook_errors(doc: dict) -> list[str]:
    """What Katib's admission webhook (validator.go at v0.19.0) refuses in an Experiment
    that names parameters (no NAS), restated rule by rule."""
    spec, errors = doc["spec"], []
    name = doc["metadata"]["name"]
    if not re.match(r"^[a-z]([-a-z0-9]*[a-z0-9])?", name) or len(name) > 40:
        errors.append(f"metadata.name {name!r}")
    trials, parallel, failed = spec["maxTrialCount"], spec["parallelTrialCount"], spec["maxFailedTrialCount"]
    if trials <= 0 or parallel <= 0 or failed < 0 or failed > trials or parallel > trials:
        errors.append(f"trial counts {trials}, {parallel}, {failed}")
    objective = spec["objective"]
    if objective["type"] not in ("minimize", "maximize") or not objective["objectiveMetricName"]:
        errors.append(f"objective {objective}")
    if objective["objectiveMetricName"] in objective.get("additionalMetricNames", []):
        errors.append("the objective among the additional metrics")
    if not spec["algorithm"].get("algorithmName"):
        errors.append("no algorithm")
    if not spec["parameters"]:
        errors.append("no parameters")
    for p in spec["parameters"]:
        space = p["feasibleSpace"]
        if p["parameterType"] not in ("int", "double", "categorical", "discrete"):
            errors.append(f"{p['name']}: parameterType {p['parameterType']}")
        if space.get("distribution", "uniform") not in ("uniform", "logUniform", "normal", "logNormal"):
            errors.append(f"{p['name']}: distribution {space['distribution']}")
        if p["parameterType"] in ("int", "double") and (
            space.get("list") or not space.get("min") or not space.get("max")
        ):
            errors.append(f"{p['name']}: a number needs min and max and no list")
        if p["parameterType"] in ("categorical", "discrete") and {"min", "max", "step"} & set(space):
            errors.append(f"{p['name']}: a list takes no min, max or step")
    template = spec["trialTemplate"]
    if not template.get("primaryContainerName") or not template.get("successCondition"):
        errors.append("no primary container or success condition")
    if not template.get("failureCondition"):
        errors.append("no failure condition")
    text = json.dumps(template["trialSpec"])
    names = {p["name"] for p in spec["parameters"]}
    seen: set[str] = set()
    for t in template["trialParameters"]:
        if not t["name"] or not t["reference"] or "{" in t["name"] or "}" in t["name"]:
            errors.append(f"trial parameter {t}")
        if t["name"] in seen or [u["reference"] for u in template["trialParameters"]].count(t["reference"]) > 1:
            errors.append(f"trial parameter {t['name']} twice")
        seen.add(t["name"])
        if not re.fullmatch(r"\$\{trialSpec\.(.+?)\}", t["reference"]) and t["reference"] not in names:
            errors.append(f"trial parameter {t['name']}: no parameter {t['reference']}")
        placeholder = f"${{trialParameters.{t['name']}}}"
        if placeholder not in text:
            errors.append(f"{placeholder} is not in the trial's template")
        text = text.replace(placeholder, "test-value")
    errors += [f"{left} has no trial parameter" for left in re.findall(r"\$\{trialParameters\..+?\}", text)]
    job = template["trialSpec"]
    if {"name", "namespace"} & set(job.get("metadata", {})) or not job.get("apiVersion") or not job.get("kind"):
        errors.append("the trial's template names itself, or has no apiVersion or kind")
    collector = spec["metricsCollectorSpec"]
    source = collector["source"]["fileSystemPath"]
    if collector["collector"]["kind"] != "File" or source["kind"] != "File" or not source["path"].startswith("/"):
        errors.append(f"metrics collector {collector}")
    if source["format"] not in ("TEXT", "JSON") or (source["format"] == "JSON" and "filter" in collector["source"]):
        errors.append(f"metrics file format {source}")
    return errors


def false_booleans(node, path: str = "") -> list[str]:
    """The `field: false` entries of `node` that Go's batch/v1 types drop (plain bools
    with omitempty), which Katib's webhook then refuses as fields lost in conversion.
    The pointer bools of security contexts and the pod spec survive and are not listed."""
    kept = {"automountServiceAccountToken", "enableServiceLinks", "privileged", "allowPrivilegeEscalation"}
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if value is False and key not in kept:
                found.append(f"{path}.{key}")
            found += false_booleans(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += false_booleans(value, f"{path}[{i}]")
    return found


def test_katibs_webhook_would_admit_the_experiments(built, all_kinds, metric_objective):
    for doc in (load(built("translator") / EXPERIMENT), all_kinds[1], metric_objective[1]):
        assert webhook_errors(doc) == []
        assert false_booleans(doc["spec"]["trialTemplate"]["trialSpec"]) == []
    # The restatement finds what it is meant to.
    broken = copy.deepcopy(all_kinds[1])
    broken["spec"]["trialTemplate"]["trialParameters"].pop()
    broken["spec"]["parallelTrialCount"] = broken["spec"]["maxTrialCount"] + 1
    assert len(webhook_errors(broken)) == 2
    (job,) = [doc for name, doc in documents(built("translator")) if name == "job-search.yaml"]
    assert false_booleans(job["spec"]["template"])  # k8s/ writes them: only the trial's template leaves them out


# --- the mapping -------------------------------------------------------------------


def katib_expression(parameter: dict):
    """The Hyperopt expression Katib's suggestion service (base_service.py at v0.19.0)
    builds for a parameter, and how it turns a draw into the assignment's text."""
    name, kind, space = parameter["name"], parameter["parameterType"], parameter["feasibleSpace"]
    if kind in ("categorical", "discrete"):
        return hp.choice(name, space["list"]), str
    low, high, step = float(space["min"]), float(space["max"]), space.get("step")
    distribution = space.get("distribution", "uniform")
    text = (lambda v: str(int(v))) if kind == "int" else str
    if distribution == "uniform":
        if step:
            return hp.quniform(name, low, high, float(step)), text
        return (hp.uniformint(name, low, high) if kind == "int" else hp.uniform(name, low, high)), text
    if distribution == "logUniform" and not step:
        return hp.loguniform(name, math.log(low), math.log(high)), text
    if distribution == "normal" and not step:
        return hp.normal(name, (low + high) / 2, (high - low) / 6), text
    raise AssertionError(f"llmc writes no {distribution} parameter with step {step}")


def test_every_distribution_kind_maps_to_what_hyperopt_draws(all_kinds):
    spec, doc = all_kinds
    space = check_spec(str(spec)).ir.search.space
    parameters = {p["name"]: p for p in doc["spec"]["parameters"]}
    assert sorted(parameters) == sorted(p.replace(".", "-") for p in space)
    for path, dist in space.items():
        parameter = parameters[path.replace(".", "-")]
        cast = katib_cast(path, dist)
        ours, _ = katib_expression(parameter)
        theirs = driver.hyperopt_expression(path, driver.Distribution(dist.kind, dist.args, cast))
        if dist.kind == "randint":  # Katib lists the values, which hp.randint draws alike
            assert parameter["parameterType"] == "discrete"
            assert [int(v) for v in parameter["feasibleSpace"]["list"]] == list(range(*dist.args))
            continue
        for seed in range(50):
            katib_draw = sample(ours, rng=np.random.default_rng(seed))
            spec_draw = sample(theirs, rng=np.random.default_rng(seed))
            katib_value = parse_override(f"{path}={katib_value_text(parameter, katib_draw)}")[1]
            if dist.kind == "normal":  # min and max carry mu and sigma: equal up to rounding
                assert katib_value == pytest.approx(spec_draw, rel=1e-12), path
            else:
                assert katib_value == driver.cast(cast, spec_draw), path
                assert type(katib_value) is type(driver.cast(cast, spec_draw)), path


def katib_cast(path: str, dist) -> str:
    return cast_for(path, dist.kind, list(dist.args))


def katib_value_text(parameter: dict, draw) -> str:
    """What a trial's `--set` gets for a draw: Katib's text of it, in JSON quotes for an enum."""
    _, text = katib_expression(parameter)
    value = text(draw)
    return json.dumps(value) if parameter["parameterType"] == "categorical" else value


def test_the_space_is_written_with_the_right_bounds(all_kinds):
    _, doc = all_kinds
    parameters = {p["name"]: (p["parameterType"], p["feasibleSpace"]) for p in doc["spec"]["parameters"]}
    assert parameters == {
        "train-optimizer-lr": ("double", {"min": "1e-05", "max": "0.001", "distribution": "logUniform"}),
        "model-transformer-dropout": ("double", {"min": "0.0", "max": "0.3", "distribution": "uniform"}),
        "train-batch_size": ("discrete", {"list": ["256", "512", "1024"]}),
        "train-schedule-warmup": ("int", {"min": "1000", "max": "8000", "step": "500", "distribution": "uniform"}),
        "train-checkpoint-keep": ("discrete", {"list": ["1", "2", "3", "4"]}),  # randint(1, 5): 5 is out
        "compress-prune-sparsity": (
            "double",
            {"min": repr(0.3 - 3 * 0.05), "max": repr(0.3 + 3 * 0.05), "distribution": "normal"},
        ),
        "train-gradient_compression": ("categorical", {"list": ["none", "fp16"]}),
        "train-checkpoint-every": ("discrete", {"list": ["600.0", "1200.0"]}),  # durations in seconds, as floats
    }


def trial_lines(doc: dict, assignment: dict[str, str], trial: str = "translator-search-x7k2m9qp") -> list[list[str]]:
    """The commands of a trial as its shell runs them: Katib's substitution and its
    webhook's wrapping (support/katib.py), then the line split into its commands
    (`&&`, `;`, `{`, `}` between them)."""
    line = primary_line(doc, trial_job(doc, assignment, trial))
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.wordchars += "$"
    commands: list[list[str]] = []
    current: list[str] = []
    for token in lexer:
        if token in ("&&", ";", "{", "}"):
            if current:
                commands.append(current)
            current = []
        else:
            current.append(token)
    commands.append(current)
    return commands


def draws(doc: dict, seed: int = 1) -> dict[str, str]:
    """One assignment as Katib's service makes it: the text of each parameter's draw."""
    out = {}
    for p in doc["spec"]["parameters"]:
        expression, text = katib_expression(p)
        out[p["name"]] = text(sample(expression, rng=np.random.default_rng(seed)))
    return out


def test_the_trial_trains_with_exactly_the_parameters_then_reports_the_loss(all_kinds):
    spec, doc = all_kinds
    space = check_spec(str(spec)).ir.search.space
    assignment = draws(doc)
    train, report, completed = trial_lines(doc, assignment)
    trial = "/artifacts/outputs/search/trials/translator-search-x7k2m9qp"
    assert train[:2] == ["bash", "train/launch.sh"]
    sets = [train[i + 1] for i, word in enumerate(train) if word == "--set"]
    assert len(sets) == len(space) and train[2 + 2 * len(sets) :] == [
        "--output",
        trial,
        "--metrics",
        f"{trial}/metrics.jsonl",
    ]
    overrides = dict(parse_override(s) for s in sets)
    assert sorted(overrides) == sorted(space)
    for path, value in overrides.items():
        parameter = next(p for p in doc["spec"]["parameters"] if p["name"] == path.replace(".", "-"))
        expected = assignment[parameter["name"]]
        assert value == (expected if parameter["parameterType"] == "categorical" else json.loads(expected)), path
        assert type(value) is {"int": int, "float": float, "str": str}[katib_cast(path, space[path])], path
    collector = doc["spec"]["metricsCollectorSpec"]["source"]["fileSystemPath"]["path"]
    assert report == [
        *("python3", "-m", "llmc.runtime.katib_trial", "--objective", "valid_loss", "--metrics"),
        f"{trial}/metrics.jsonl",
        "--out",
        collector,
    ]
    assert completed[:2] == ["echo", "completed"]  # Katib's own mark, after ours succeeded


def test_a_metric_objective_is_evaluated_on_the_valid_split_after_training(metric_objective):
    _, doc = metric_objective
    spec = doc["spec"]
    assert spec["objective"] == {
        "type": "maximize",
        "objectiveMetricName": "accuracy",
        "metricStrategies": [{"name": "accuracy", "value": "latest"}],
    }
    train, evaluate, report, _ = trial_lines(doc, draws(doc), "classifier-search-abc")
    trial = "/artifacts/outputs/search/trials/classifier-search-abc"
    assert train[:2] == ["bash", "train/launch.sh"] and train[-4:] == [
        "--output",
        trial,
        "--metrics",
        f"{trial}/metrics.jsonl",
    ]
    assert evaluate == [
        "python3",
        "evaluate/evaluate.py",
        "--model",
        f"{trial}/model",
        "--split",
        "valid",
        "--json",
        f"{trial}/evaluate.json",
    ]
    assert report[report.index("--evaluation") + 1] == f"{trial}/evaluate.json"
    assert report[report.index("--objective") + 1] == "accuracy"
    # evaluate.py's status is not used (a failed gate still measured the metric): `;` after it, `&&` after training.
    line = spec["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["command"][2]
    assert re.fullmatch(
        r"bash train/launch\.sh .* && \{ python3 evaluate/evaluate\.py .*; python3 -m llmc\.runtime\.katib_trial .*; \}",
        line,
    )


@pytest.mark.parametrize("algorithm", ["tpe", "random"])
def test_tpe_and_random_are_katibs_own(tmp_path, algorithm):
    def edit(text: str) -> str:
        text = text.replace('algorithm = "tpe"', f'algorithm = "{algorithm}"')
        return text.replace("max_evals = 48", "max_evals = 6").replace("parallel  = 8", "parallel  = 9")

    spec, out = build_variant(tmp_path, "translator", edit)
    doc = load(out / EXPERIMENT)
    ir = check_spec(str(spec)).ir
    assert doc["spec"]["algorithm"] == {
        "algorithmName": algorithm,
        "algorithmSettings": [{"name": "random_state", "value": str(ir.train.seed)}],
    }
    # At most max_evals at once (Katib refuses more); failing only when every trial failed.
    assert (doc["spec"]["maxTrialCount"], doc["spec"]["parallelTrialCount"], doc["spec"]["maxFailedTrialCount"]) == (
        6,
        6,
        6,
    )


def test_the_counts_objective_and_collector_are_the_specs(built):
    doc = load(built("translator") / EXPERIMENT)
    search = check_spec(str(ROOT / "specs" / "translator.llm")).ir.search
    spec = doc["spec"]
    assert (spec["maxTrialCount"], spec["parallelTrialCount"], spec["maxFailedTrialCount"]) == (
        search.max_evals,
        search.parallel,
        search.max_evals,
    )
    assert (
        spec["objective"]["type"] == search.direction and spec["objective"]["objectiveMetricName"] == search.objective
    )
    assert spec["metricsCollectorSpec"] == {
        "collector": {"kind": "File"},
        "source": {"fileSystemPath": {"path": katib.KATIB_METRICS_FILE, "kind": "File", "format": "JSON"}},
    }
    assert "earlyStopping" not in spec  # W602: Katib has no early stop for a search


def test_no_experiment_for_the_other_backends(built, tmp_path):
    assert not (built("classifier") / EXPERIMENT).exists()  # spark
    assert not (built("translator", "local") / EXPERIMENT).exists()  # local
    edit = lambda text: text.replace('backend   = "katib"', 'backend   = "mongo"')  # noqa: E731
    _, out = build_variant(tmp_path, "translator", edit)
    assert not (out / EXPERIMENT).exists()
    assert (built("translator") / EXPERIMENT).exists()


# --- the trial's pod and the cluster -----------------------------------------------


def test_each_trial_trains_in_the_search_jobs_pod(built):
    bundle = built("translator")
    trial = load(bundle / EXPERIMENT)["spec"]["trialTemplate"]["trialSpec"]
    (job,) = [doc for name, doc in documents(bundle) if name == "job-search.yaml"]
    ours, theirs = copy.deepcopy(trial["spec"]["template"]), copy.deepcopy(job["spec"]["template"])
    assert ours["metadata"]["labels"]["app.kubernetes.io/component"] == "search-trial"
    assert trial["spec"]["backoffLimit"] == 0 and "suspend" not in trial["spec"]  # Katib starts it; a trial trains once
    for pod in (ours, theirs):
        del pod["metadata"]["labels"]["app.kubernetes.io/component"]
        (container,) = pod["spec"]["containers"]
        del container["command"]
        for mount in container["volumeMounts"]:
            mount.setdefault("readOnly", False)
        for volume in pod["spec"]["volumes"]:
            if "persistentVolumeClaim" in volume:
                volume["persistentVolumeClaim"].setdefault("readOnly", False)
    assert ours == theirs  # the image, resources, uid, nodes, volumes and environment


def katib_pods(doc: dict) -> tuple[dict, dict]:
    """(a trial's pod, the suggestion service's pod) with the labels Katib gives them:
    the Experiment's labels over the trial template's (a trial's labels are the
    Experiment's, and the pod webhook copies them onto the pod: util/labels.go,
    inject_webhook.go), and the Experiment's on the suggestion (suggestion.go)."""
    experiment = doc["metadata"]["labels"]
    katib_labels = {"katib.kubeflow.org/experiment": doc["metadata"]["name"]}
    trial = copy.deepcopy(doc["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"])
    trial["metadata"]["labels"].update(experiment, **katib_labels, **{"katib.kubeflow.org/trial": "t-1"})
    suggestion = {"metadata": {"labels": {**experiment, **katib_labels, "katib.kubeflow.org/suggestion": "s"}}}
    return trial, suggestion


def test_the_trials_may_report_to_katib_and_nothing_else(built):
    bundle = built("translator")
    trial, suggestion = katib_pods(load(bundle / EXPERIMENT))
    policies = of_kind(bundle, "NetworkPolicy")
    (deny,) = [p for p in policies if p["metadata"]["name"] == "translator-default-deny"]
    (dns,) = [p for p in policies if p["metadata"]["name"] == "translator-dns"]
    assert selects(deny, trial) and selects(dns, trial)
    katib_db = {
        "to": [
            {
                "podSelector": {"matchLabels": {"katib.kubeflow.org/component": "db-manager"}},
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubeflow"}},
            }
        ],
        "ports": [{"port": 6789, "protocol": "TCP"}],
    }
    assert allowed(policies, trial, "egress") == dns["spec"]["egress"] + [katib_db]
    assert allowed(policies, trial, "ingress") == []
    # Katib's suggestion pod is Katib's: none of the bundle's policies cuts it off from Katib's controller.
    assert not [p["metadata"]["name"] for p in policies if selects(p, suggestion)]
    # The search Job's pod is not given the trials' way out.
    (job,) = [doc for name, doc in documents(bundle) if name == "job-search.yaml"]
    assert katib_db not in allowed(policies, pod_templates(job)[0], "egress")


def test_applying_k8s_never_creates_the_experiment_and_its_readme_says_what_katib_needs(built):
    bundle = built("translator")
    kustomization = load(bundle / "k8s" / "kustomization.yaml")
    assert all("katib" not in r for r in kustomization["resources"])
    readme = (bundle / "k8s" / "README.md").read_text(encoding="utf-8")
    assert "Experiment/translator-search" in readme and "metrics-collector-injection=enabled" in readme
    assert "Experiment" not in (built("classifier") / "k8s" / "README.md").read_text(encoding="utf-8")


def test_search_py_of_a_katib_search_runs_the_space_here(built):
    """The script `llmc run` starts on one machine: Hyperopt's Trials over the same space."""
    source = (built("translator") / "search" / "search.py").read_text(encoding="utf-8")
    assert "backend='local'," in source


# --- llmc.runtime.katib_trial --------------------------------------------------------


def katib_json_collector(text: str, metric: str) -> list[tuple[str, str]]:
    """(timestamp, value) of `metric` as Katib's File collector in JSON format reads a
    file (file-metricscollector.go at v0.19.0): every non-empty line must be a JSON
    object, and a metric counts only when its value is a string."""
    found = []
    for line in text.split("\n"):
        if not line:
            continue
        record = json.loads(line)
        assert isinstance(record, dict)
        if isinstance(record.get(metric), str):
            found.append((record.get("timestamp", ""), record[metric]))
    return found


def test_katib_trial_reports_the_final_loss_as_katib_reads_it(tmp_path, capsys):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"epoch": 1, "valid_loss": 2.5}\n{"final": true, "valid_loss": 1.9375}\n', encoding="utf-8")
    out = tmp_path / "katib" / "metrics.jsonl"
    assert katib_trial.main(["--objective", "valid_loss", "--metrics", str(metrics), "--out", str(out)]) == 0
    ((timestamp, value),) = katib_json_collector(out.read_text(encoding="utf-8"), "valid_loss")
    assert float(value) == 1.9375
    assert datetime.fromisoformat(timestamp).utcoffset() is not None  # RFC 3339, with its offset
    # The training's own file would give Katib nothing: its values are numbers.
    assert katib_json_collector(metrics.read_text(encoding="utf-8"), "valid_loss") == []


def test_katib_trial_reports_a_metric_from_the_evaluation(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"final": true, "valid_loss": 0.4}\n', encoding="utf-8")
    evaluation = tmp_path / "evaluate.json"
    evaluation.write_text(json.dumps({"passed": False, "metrics": {"accuracy": 0.8125}}), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    argv = ["--objective", "accuracy", "--metrics", str(metrics), "--evaluation", str(evaluation), "--out", str(out)]
    assert katib_trial.main(argv) == 0
    assert [float(v) for _, v in katib_json_collector(out.read_text(encoding="utf-8"), "accuracy")] == [0.8125]


@pytest.mark.parametrize(
    "lines, report, reason",
    [
        ('{"epoch": 1, "valid_loss": 2.5}\n', None, "training did not finish"),
        ('{"final": true, "valid_loss": NaN}\n', None, "not a finite number"),
        ('{"final": true, "valid_loss": 0.4}\n', {"metrics": {}}, "has no metrics.accuracy"),
        ('{"final": true, "valid_loss": 0.4}\n', "missing", "evaluation ended without writing"),
    ],
)
def test_katib_trial_fails_the_trial_without_an_objective(tmp_path, capsys, lines, report, reason):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(lines, encoding="utf-8")
    argv = ["--metrics", str(metrics), "--out", str(tmp_path / "out.jsonl")]
    if report is None:
        argv += ["--objective", "valid_loss"]
    else:
        evaluation = tmp_path / "evaluate.json"
        if report != "missing":
            evaluation.write_text(json.dumps(report), encoding="utf-8")
        argv += ["--objective", "accuracy", "--evaluation", str(evaluation)]
    assert katib_trial.main(argv) == 1
    assert reason in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()  # Katib records no value: the failed Job fails the trial
