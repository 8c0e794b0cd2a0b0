"""The search space as the targets write it, shared by the hyperopt and katib targets
and the search check.

* `cast_for`: the type a sampled value is given before it reaches `train.py --set`
  (search/search.py casts Hyperopt's draws to it; a Katib trial's value is written in it).
* Katib's reading of the space (`search.backend = "katib"`): each distribution as a
  parameter of a Katib Experiment, or the reason Katib cannot draw it as Hyperopt
  does. checks/search.py reports the reasons (E607) and targets/katib.py writes the
  parameters, so the check and the Experiment cannot disagree.

Katib's `tpe` and `random` are Hyperopt's own `tpe.suggest` and `rand.suggest` behind
Katib's suggestion service (kubeflow/katib pkg/suggestion/v1beta1/hyperopt), which
turns each parameter into a Hyperopt expression; a spec distribution maps only where
that expression is the one search/search.py builds:

| spec | Katib parameter | Katib's Hyperopt expression |
| --- | --- | --- |
| `uniform(a, b)` | double, min a, max b | `hp.uniform(a, b)` |
| `loguniform(a, b)` | double, min a, max b, distribution logUniform | `hp.loguniform(log a, log b)` |
| `quniform(a, b, q)` | double (int for an int field), min a, max b, step q | `hp.quniform(a, b, q)` |
| `normal(mu, s)` | double, min mu - 3s, max mu + 3s, distribution normal | `hp.normal(mu, s)` (min and max only carry mu and s) |
| `randint(a, b)` | discrete, every integer of [a, b) | `hp.choice`, as `hp.randint` draws (a categorical to TPE too) |
| `choice(v, ...)` | categorical (strings) or discrete (numbers), the values in order | `hp.choice` |

`randint` is not Katib's int type: that is `hp.uniformint(min, max)`, a rounded
uniform that draws both ends half as often as the integers between them. Its list has
at most KATIB_LIST_MAX values (E607 beyond). The distribution field needs Katib v0.18
or later; an older Katib drops it and draws loguniform and normal as uniform.
"""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

from .fields import walk_schema
from .schema import Distribution

# The spec's algorithm -> Katib's algorithmName (both Hyperopt's in Katib). Katib has
# no anneal (its Hyperopt service leaves hyperopt.anneal out): E606.
KATIB_ALGORITHMS = {"tpe": "tpe", "random": "random"}
# A feasibleSpace.list is stored whole in the Experiment, which `kubectl apply` also
# copies into an annotation (256 KiB in all): a thousand numbers stay far below that.
KATIB_LIST_MAX = 1000
# What Katib substitutes into a trial's command: `${trialParameters.NAME}` (its
# validator refuses `{` and `}` in NAME; llmc keeps to letters, digits, `-` and `_`).
_KATIB_NAME = re.compile(r"[A-Za-z0-9_-]+")


def cast_for(path: str, kind: str, args: list[Any]) -> str:
    """The Python type a sampled value is given before it is passed to train.py.

    Hyperopt returns floats for quniform (64.0) and numpy integers for randint; an
    int field must receive an int. A union (`checkpoint.every`: a duration or a
    number of steps) is an int when the spec's arguments are all ints (durations are
    floats in the IR).
    """
    ft, _, _ = walk_schema(tuple(path.split(".")))
    if ft is not None:  # a path the schema does not know is treated as a float
        if ft.kind == "enum":
            return "str"
        if ft.kind == "bool":
            return "bool"
        if ft.kind == "int" or (ft.kind == "quantity" and ft.quantity == "size"):
            return "int"
        if ft.kind == "union":
            whole = all(isinstance(a, int) and not isinstance(a, bool) for a in args)
            has_int = any(o.kind == "int" for o in ft.options)
            return "int" if whole and has_int and kind in ("choice", "randint", "quniform") else "float"
    if kind == "choice" and args and all(isinstance(a, str) for a in args):
        return "str"
    return "float"


# --- Katib ---------------------------------------------------------------------------


class KatibParameter(NamedTuple):
    """One searched field as a parameter of a Katib Experiment (module docstring)."""

    name: str  # Katib's parameter name: the spec's path with `-` for `.`
    path: str  # the spec's field path, which the trial's `--set` names
    type: str  # Katib's parameterType: double | int | discrete | categorical
    min: str | None
    max: str | None
    step: str | None
    distribution: str | None  # uniform | logUniform | normal (numeric types only)
    values: list[str]  # discrete and categorical: the feasibleSpace.list
    quoted: bool  # the value reaches `--set` as a JSON string (an enum field)
    note: str | None  # what a reader of the Experiment needs to know, or None


def katib_name(path: str) -> str:
    """Katib's name of a searched field: `train.optimizer.lr` -> `train-optimizer-lr`.
    One to one: a field path is identifiers joined by dots, and identifiers have no `-`."""
    name = path.replace(".", "-")
    if not _KATIB_NAME.fullmatch(name):
        raise AssertionError(f"search path {path!r} is not a field path: E601 should have reported it")
    return name


class Unmappable(NamedTuple):
    """Why Katib cannot draw a distribution as Hyperopt does (E607's label), and what to write instead."""

    reason: str
    instead: str


def katib_unmappable(dist: Distribution) -> Unmappable | None:
    """Why Katib cannot draw `dist` as Hyperopt does, or None when it can (E607)."""
    if dist.kind == "randint":
        low, high = dist.args
        if isinstance(low, int) and isinstance(high, int) and high - low > KATIB_LIST_MAX:
            return Unmappable(
                f"randint({low}, {high}) has {high - low} values; llmc lists at most {KATIB_LIST_MAX} for Katib",
                f"narrow the range to at most {KATIB_LIST_MAX} integers, or write quniform({low}, {high - 1}, 1), "
                "which Katib draws as Hyperopt does (its two ends half as often as the integers between)",
            )
    return None


def katib_parameter(path: str, dist: Distribution) -> KatibParameter:
    """`dist` as a Katib parameter; the space has passed the search checks (E601-E603, E607)."""
    problem = katib_unmappable(dist)
    if problem is not None:
        raise AssertionError(f"search.space.{path}: {problem.reason}: E607 should have reported it")
    args = list(dist.args)
    cast = cast_for(path, dist.kind, args)
    name = katib_name(path)
    if dist.kind == "choice":
        kind = "categorical" if cast == "str" else "discrete"
        return KatibParameter(
            name, path, kind, None, None, None, None, [_text(v, cast) for v in args], cast == "str", None
        )
    if dist.kind == "randint":
        first, end = (int(a) for a in args)  # whole numbers: E602
        values = [str(v) for v in range(first, end)]  # [low, high), as Hyperopt draws
        return KatibParameter(name, path, "discrete", None, None, None, None, values, False, None)
    if dist.kind == "quniform":
        low, high, q = args
        kind = "int" if cast == "int" else "double"
        bounds = (_text(low, cast), _text(high, cast), _text(q, cast))
        return KatibParameter(name, path, kind, *bounds, "uniform", [], False, None)
    if dist.kind == "normal":
        mu, sigma = (float(a) for a in args)
        note = f"normal(mu = {mu!r}, sigma = {sigma!r}): Katib reads mu as the middle of min and max and sigma "
        note += "as a sixth of their distance; the draws are not bounded by them"
        low, high = _text(mu - 3 * sigma, "float"), _text(mu + 3 * sigma, "float")
        return KatibParameter(name, path, "double", low, high, None, "normal", [], False, note)
    low, high = (_text(a, "float") for a in args)
    distribution = "logUniform" if dist.kind == "loguniform" else "uniform"
    return KatibParameter(name, path, "double", low, high, None, distribution, [], False, None)


def _text(value: Any, cast: str) -> str:
    """A value as Katib holds it (a string), in the type train.py expects: `--set`
    reads it as JSON, so a float keeps its point (`256.0`) and an int has none."""
    if cast == "int":
        return str(int(value))
    if cast == "float":
        number = float(value)
        if not math.isfinite(number):
            raise AssertionError(f"{value!r} is not finite: E603 should have reported it")
        return repr(number)
    if cast == "bool":
        return "true" if value else "false"
    return str(value)
