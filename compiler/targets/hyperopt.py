"""search/search.py: Hyperopt over the spec's search space, one training run per trial.

Generated only when the spec has both a `search` and a `train` block (a search
without training has nothing to run). What the spec decides is decided here: each
distribution with its arguments and the type each sampled value is cast to before
it reaches `train.py --set`, the algorithm, the trials backend, the objective and
its direction. The script is those constants and a call into llmc.runtime.search,
which holds the driver; every spec value enters the script through the `py` filter.

Contracts the script relies on (docs/bundle.md):

* training: `train/launch.sh` (or `python train/train.py` with `--local`) with
  `--set PATH=JSON` per sampled value, `--output OUT/trials/<n>`,
  `--metrics OUT/trials/<n>/metrics.jsonl` and, when search.py got one,
  `--data-root DIR`; the metrics file's last line is `{"final": true, "valid_loss": ...}`.
  OUT is search.py's `--output` (default `$LLMC_OUTPUT/search`, or `search` without
  LLMC_OUTPUT); results go to OUT/results.json.
* a metric objective (`objective = "bleu"`): after training,
  `python evaluate/evaluate.py --model OUT/trials/<n>/model --split valid --json FILE
  [--data-root DIR]`, and the objective is FILE's `metrics.<name>`. The exit status is not used (a failed
  quality gate exits non-zero but still measured the metric); a missing FILE or
  metric fails the trial. Hyperparameters are chosen on the valid split, never on
  the spec's evaluation split, which may be `test`.
"""

from typing import Any, NamedTuple

from ..schema import Distribution
from ..search_space import cast_for
from . import Artifact, BuildContext

# The environment variable the script's MongoDB backend reads the jobs URL from.
MONGO_URL_ENV = "LLMC_MONGO_URL"
# The backends the script drives (llmc.runtime.search.BACKENDS). A katib search runs on
# the cluster as search/katib-experiment.yaml (the katib target); this script, which
# `llmc run` starts on one machine, then runs the same space with Hyperopt's Trials.
SCRIPT_BACKENDS = ("local", "spark", "mongo")


class Param(NamedTuple):
    path: str  # the spec's field path; also the Hyperopt label
    kind: str  # the spec's distribution (runtime/search.py maps it to Hyperopt)
    args: list[Any]  # as the spec wrote them: the bounds are values, a choice's options
    cast: str  # "int" | "float" | "str" | "bool": the type train.py expects


class SearchContext(NamedTuple):
    model: str
    algorithm: str  # the spec's name for it
    max_evals: int
    parallel: int
    backend: str  # local | spark | mongo (SCRIPT_BACKENDS)
    early_stop: int | None
    objective: str
    direction: str
    seed: int
    mongo_url_env: str
    space: list[Param]  # sorted by path


def artifacts(ctx: BuildContext) -> list[Artifact]:
    ir = ctx.ir
    if ir.search is None or ir.train is None:
        return []
    return [Artifact("search/search.py", "hyperopt/search.py.j2", search_context(ctx), executable=True)]


def search_context(ctx: BuildContext) -> SearchContext:
    ir, s, train = ctx.ir, ctx.ir.search, ctx.ir.train
    assert s is not None and train is not None  # artifacts() builds it only with both blocks
    assert s.direction is not None  # schema.derive_defaults fills it from the objective
    return SearchContext(
        model=ir.model.name,
        algorithm=s.algorithm,
        max_evals=s.max_evals,
        parallel=s.parallel,
        backend=s.backend if s.backend in SCRIPT_BACKENDS else "local",
        early_stop=s.early_stop,
        objective=s.objective,
        direction=s.direction,
        seed=train.seed,
        mongo_url_env=MONGO_URL_ENV,
        space=[param(path, dist) for path, dist in sorted(s.space.items())],
    )


def param(path: str, dist: Distribution) -> Param:
    args = list(dist.args)
    return Param(path, dist.kind, args, cast_for(path, dist.kind, args))
