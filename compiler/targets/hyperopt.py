"""search/search.py: Hyperopt over the spec's search space, one training run per trial.

Generated only when the spec has both a `search` and a `train` block (a search
without training has nothing to run). Everything the script needs is decided here:
the Hyperopt expression of each distribution, the type each sampled value is cast
to before it reaches `train.py --set`, the algorithm, the trials backend, the sign
of the objective. The template only loops and fills in; every spec value enters the
script through the `py` filter.

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

from typing import NamedTuple

from ..fields import walk_schema
from . import Artifact, BuildContext

# The spec's distribution -> the Hyperopt function drawing it. The bounds are values
# in the spec; hp.loguniform takes the logarithms of the bounds.
HP_FUNCTION = {
    "uniform": "hp.uniform",
    "loguniform": "hp.loguniform",
    "quniform": "hp.quniform",
    "randint": "hp.randint",  # hp.randint(label, low, high): integers in [low, high)
    "normal": "hp.normal",
    "choice": "hp.choice",
}
# search.algorithm -> the hyperopt module whose `suggest` proposes the next point.
ALGORITHM_MODULE = {"tpe": "tpe", "random": "rand", "anneal": "anneal"}
MONGO_URL_ENV = "LLMC_MONGO_URL"


class Arg(NamedTuple):
    value: object  # a plain literal (number, or the list of a choice)
    log: bool  # written as math.log(value): loguniform's bounds


class Param(NamedTuple):
    path: str  # the spec's field path; also the Hyperopt label
    call: str  # from HP_FUNCTION, never from the spec
    args: list[Arg]  # after the label
    cast: str  # "int" | "float" | "str" | "bool": the type train.py expects


class SearchContext(NamedTuple):
    model: str
    algorithm: str  # the spec's name for it
    algo_module: str  # from ALGORITHM_MODULE
    max_evals: int
    parallel: int
    backend: str  # local | spark | mongo
    early_stop: int | None
    objective: str
    objective_is_loss: bool  # valid_loss comes from the metrics file, anything else from evaluate.py
    direction: str
    maximize: bool
    seed: int
    mongo_url_env: str
    space: list[Param]
    casts: dict  # path -> cast, for the script's own use


def artifacts(ctx: BuildContext) -> list[Artifact]:
    ir = ctx.ir
    if ir.search is None or ir.train is None:
        return []
    return [Artifact("search/search.py", "hyperopt/search.py.j2", search_context(ctx), executable=True)]


def search_context(ctx: BuildContext) -> SearchContext:
    ir, s = ctx.ir, ctx.ir.search
    space = [param(path, dist) for path, dist in sorted(s.space.items())]
    return SearchContext(
        model=ir.model.name,
        algorithm=s.algorithm,
        algo_module=ALGORITHM_MODULE[s.algorithm],
        max_evals=s.max_evals,
        parallel=s.parallel,
        backend=s.backend,
        early_stop=s.early_stop,
        objective=s.objective,
        objective_is_loss=s.objective == "valid_loss",
        direction=s.direction,
        maximize=s.direction == "maximize",
        seed=ir.train.seed,
        mongo_url_env=MONGO_URL_ENV,
        space=space,
        casts={p.path: p.cast for p in space},
    )


def param(path: str, dist) -> Param:
    kind, args = dist.kind, list(dist.args)
    call = HP_FUNCTION[kind]
    if kind == "choice":
        hp_args = [Arg(args, False)]
    else:
        hp_args = [Arg(a, kind == "loguniform") for a in args]
    return Param(path, call, hp_args, cast_for(path, kind, args))


def cast_for(path: str, kind: str, args: list) -> str:
    """The Python type a sampled value is given before it is passed to train.py.

    Hyperopt returns floats for quniform (64.0) and numpy integers for randint; an
    int field must receive an int. A union (`checkpoint.every`: a duration or a
    number of steps) is an int when the spec's arguments are all ints (durations are
    floats in the IR).
    """
    ft, _, _ = walk_schema(tuple(path.split(".")))
    field_kind = ft.kind if ft is not None else "float"
    if field_kind == "enum":
        return "str"
    if field_kind == "bool":
        return "bool"
    if field_kind == "int" or field_kind == "quantity" and ft.quantity == "size":
        return "int"
    if field_kind == "union":
        whole = all(isinstance(a, int) and not isinstance(a, bool) for a in args)
        has_int = any(o.kind == "int" for o in ft.options)
        return "int" if whole and has_int and kind in ("choice", "randint", "quniform") else "float"
    if kind == "choice" and args and all(isinstance(a, str) for a in args):
        return "str"
    return "float"
