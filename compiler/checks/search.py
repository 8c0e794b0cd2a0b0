"""The search: E601-E607, W601 and W602.

Every value a distribution can produce must pass the field's own checks: its type
and range here, and, for the finitely many values of `choice` and `randint`, every
other check of the spec with that value substituted (a batch size the layout
cannot split is caught before a trial is spent on it).

A search on Katib (`backend = "katib"`) must also be one Katib can run as the spec
says (search_space.py holds what Katib can express): its algorithm (E606), each
distribution and a non-empty space (E607); early_stop, which Katib has no
counterpart for, is W602.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..expressions import Value
from ..fields import FieldType, iter_scalar_paths, walk_schema
from ..metric_names import METRICS_BY_TASK, direction_of
from ..search_space import KATIB_ALGORITHMS, katib_unmappable
from ..suggest import closest
from .context import CheckContext

if TYPE_CHECKING:  # pragma: no cover - types only
    from ..schema import Search

ARITY = {"uniform": 2, "loguniform": 2, "quniform": 3, "randint": 2, "normal": 2}
# Past this many values, cross-field rechecking of a choice/randint is skipped (field checks still apply).
MAX_RECHECK = 64


def check(ctx: CheckContext) -> None:
    search = ctx.ir.search
    if search is None:
        return
    _objective(ctx, search)
    _parallel(ctx, search)
    for key, dist in ctx.distributions.items():
        _one(ctx, key, dist)
    if search.backend == "katib":
        _katib(ctx, search)


def _parallel(ctx: CheckContext, search: Search) -> None:
    """W601: the local backend (hyperopt.Trials) runs one trial at a time, whatever
    `parallel` says; spark runs `parallel` at once, on a local Spark when no cluster is named."""
    if search.backend != "local" or search.parallel <= 1:
        return
    ctx.diags.warning(
        "W601",
        ctx.spans.attribute("search.parallel"),
        f"the local backend runs one trial at a time, not {search.parallel}",
        label='ignored by backend = "local"',
        help=f'set backend = "spark" to run {search.parallel} trials at once (a local Spark when no cluster is '
        f"named), or parallel = 1",
    )


def _katib(ctx: CheckContext, search: Search) -> None:
    """E606, E607 and W602: what a Katib Experiment cannot run as the spec says."""
    if search.algorithm not in KATIB_ALGORITHMS:
        others = " and ".join(f'"{a}"' for a in KATIB_ALGORITHMS)
        ctx.diags.error(
            "E606",
            ctx.spans.attribute("search.algorithm"),
            f'Katib has no "{search.algorithm}" algorithm',
            label='not run by backend = "katib"',
            help=f'set algorithm = "tpe" (or "random"): Katib runs Hyperopt\'s {others}; keep '
            f'"{search.algorithm}" with backend = "spark", "mongo" or "local"',
            proposals=[(("search.algorithm", "tpe"),)],
        )
    if not search.space:
        ctx.diags.error(
            "E607",
            ctx.spans.key("search.space"),
            "a Katib search needs at least one searched field",
            label="the space is empty",
            help="add a field to `space`, e.g. `train.optimizer.lr = loguniform(1e-5, 1e-3)`",
        )
    for key, written in ctx.distributions.items():
        dist = search.space.get(key)
        problem = katib_unmappable(dist) if dist is not None else None
        if problem is not None:
            ctx.diags.error(
                "E607",
                written.span,
                f"Katib cannot draw `{key}` as the spec says",
                label=problem.reason,
                help=problem.instead,
            )
    if search.early_stop is not None:
        ctx.diags.warning(
            "W602",
            ctx.spans.attribute("search.early_stop"),
            f"Katib runs all {search.max_evals} trials: it has no early stop for a search",
            label='ignored by backend = "katib"',
            help="remove early_stop (Katib's medianstop stops single trials by their curves, not the search after "
            'trials without a better objective), or run the search with backend = "spark"',
        )


def _objective(ctx: CheckContext, search: Search) -> None:
    task = ctx.ir.model.task
    allowed = ("valid_loss",) + METRICS_BY_TASK[task]
    if search.objective not in allowed:
        guess = closest(search.objective, allowed)
        ctx.diags.error(
            "E604",
            ctx.spans.value("search.objective"),
            f'unknown search objective "{search.objective}"',
            label=f'did you mean "{guess}"?' if guess else f"not a metric of a {task} model",
            help='the objective is "valid_loss" or one of: ' + ", ".join(METRICS_BY_TASK[task]),
        )
        return
    # An unset direction follows the objective (schema.derive_defaults); a stated one must agree.
    right = direction_of(search.objective)
    if ctx.spans.has("search.direction") and search.direction != right:
        better = "larger" if right == "maximize" else "smaller"
        ctx.diags.error(
            "E605",
            ctx.spans.attribute("search.direction"),
            f'search direction "{search.direction}" contradicts the objective "{search.objective}"',
            label=f"a {better} {search.objective} is better: this search would look for the worst trial",
            help=f'set direction = "{right}", or leave it out: it follows the objective',
            proposals=[(("search.direction", right),)],
        )


def _one(ctx: CheckContext, key: str, dist: Value) -> None:
    key_span = ctx.spans.key(f"search.space.{key}")
    path = tuple(key.split("."))
    ft, _, problem = walk_schema(path)
    numeric = ft is not None and ft.kind in ("int", "float", "quantity", "union", "enum")
    if problem or ft is None or not numeric:
        names = [".".join(p) for p, f in iter_scalar_paths() if f.kind in ("int", "float", "quantity", "union")]
        guess = closest(key, names)
        if guess:
            help = f"did you mean `{guess}`?"
        elif ft is not None:
            help = "only numeric fields (and enum fields, with `choice`) can be searched"
        else:
            help = "search paths are absolute field paths such as `train.optimizer.lr`"
        ctx.diags.error(
            "E601",
            key_span,
            f"search path `{key}` does not name a numeric field",
            label=problem or (f"`{key}` is {ft.describe()}" if ft is not None else "unknown"),
            help=help,
        )
        return
    missing = _missing_block(ctx, key.rpartition(".")[0])
    if missing:
        ctx.diags.error(
            "E601",
            key_span,
            f"search path `{key}` names a field of a block this spec leaves out",
            label=f"there is no `{missing}` block",
            help=f"add the `{missing}` block or drop this line",
        )
        return
    name, args = dist.value
    expected = ARITY.get(name)
    if (expected is not None and len(args) != expected) or (name == "choice" and not args):
        want = f"{expected} arguments" if expected else "at least one value"
        ctx.diags.error(
            "E602",
            dist.span,
            f"`{name}` takes {want}, found {len(args)}",
            label=_signature(name),
            help=f"write {_signature(name).split(',  ')[0]}",
        )
        return
    if ft.kind == "enum":
        if name != "choice":
            ctx.diags.error(
                "E602", dist.span, f"`{key}` is {ft.describe()}: only `choice` fits", label=f"`{name}` draws numbers"
            )
            return
        for a in args:
            if a.kind != "str" or a.value not in ft.enum:
                ctx.diags.error("E603", a.span, f"`{key}` cannot be {a.show()}", label=f"expected {ft.describe()}")
            elif len(args) <= MAX_RECHECK:
                _recheck(ctx, key, a.value, a.span, a.show())
        return
    field = _numeric_option(ft, args)
    if field is None:
        kinds = ", ".join(sorted({a.describe() for a in args}))
        ctx.diags.error(
            "E602",
            dist.span,
            f"`{name}` over {kinds} does not fit `{key}`",
            label=f"`{key}` expects {ft.describe()}",
            help=_fit_help(ft),
        )
        return
    if name == "choice":
        _choice(ctx, key, field, args)
    elif name == "randint":
        _randint(ctx, key, field, dist, args)
    else:
        _continuous(ctx, key, field, dist, name, args)


def _missing_block(ctx: CheckContext, block: str) -> str:
    """The outermost block on the path that the spec leaves out, or ""."""
    obj: object = ctx.ir
    parts = block.split(".")
    for i, part in enumerate(parts):
        obj = getattr(obj, part, None) if not isinstance(obj, dict) else obj.get(part)
        if obj is None:
            return ".".join(parts[: i + 1])
    return ""


def _numeric_option(ft: FieldType, args: tuple[Value, ...]) -> FieldType | None:
    """The variant of the field (a union's duration or int) that the arguments' kind selects."""
    options = ft.options if ft.kind == "union" else (ft,)
    for opt in options:
        if all(_arg_fits(a, opt) for a in args):
            return opt if ft.kind != "union" else opt.bounded_by(ft)
    return None


def _arg_fits(a: Value, ft: FieldType) -> bool:
    if ft.kind == "quantity":
        if ft.quantity == "fraction":
            return a.kind in ("number", "fraction")
        return a.kind == ft.quantity
    if ft.kind == "int":
        return a.kind == "number"
    return a.kind in ("number", "fraction")


def _choice(ctx: CheckContext, key: str, ft: FieldType, args: tuple[Value, ...]) -> None:
    for a in args:
        if ft.kind == "int" and not isinstance(a.value, int):
            ctx.diags.error(
                "E602", a.span, f"`{key}` is an integer field, but choice offers {a.show()}", label="not a whole number"
            )
            continue
        if not ft.admits(a.value):
            ctx.diags.error(
                "E603",
                a.span,
                f"`{key}` must be {ft.range_text()}, but choice can produce {a.show()}",
                label="out of the field's range",
            )
            continue
        if len(args) <= MAX_RECHECK:
            _recheck(ctx, key, a.value, a.span, a.show())


def _randint(ctx: CheckContext, key: str, ft: FieldType, dist: Value, args: tuple[Value, ...]) -> None:
    lo, hi = args
    if not all(isinstance(x.value, int) for x in args):
        ctx.diags.error("E602", dist.span, "`randint` bounds must be integers", label=_signature("randint"))
        return
    if ft.kind != "int":
        ctx.diags.error(
            "E602",
            dist.span,
            f"`randint` draws integers, but `{key}` is {ft.describe()}",
            help="use `uniform` or `quniform` for a real-valued field",
        )
        return
    if lo.value >= hi.value:
        ctx.diags.error("E602", dist.span, "`randint(low, high)` needs low < high", label="draws from [low, high)")
        return
    for bound, x in (("lowest", lo.value), ("highest", hi.value - 1)):
        if not ft.admits(x):
            ctx.diags.error(
                "E603",
                dist.span,
                f"`{key}` must be {ft.range_text()}, but randint can produce {x}",
                label=f"its {bound} value, {x}, is out of range",
                help="randint(low, high) draws from [low, high)",
            )
            return
    if hi.value - lo.value <= MAX_RECHECK:
        for x in range(lo.value, hi.value):
            if _recheck(ctx, key, x, dist.span, str(x)):
                return


def _continuous(ctx: CheckContext, key: str, ft: FieldType, dist: Value, name: str, args: tuple[Value, ...]) -> None:
    vals = [float(a.value) for a in args]
    if name == "normal":
        _mu, sigma = vals
        if sigma <= 0:
            ctx.diags.error("E602", args[1].span, "`normal` needs sigma > 0", label=_signature("normal"))
            return
        if ft.range_text():
            ctx.diags.error(
                "E603",
                dist.span,
                f"`normal` can produce any value, but `{key}` must be {ft.range_text()}",
                label="unbounded distribution",
                help="use `uniform` or `loguniform` between the field's bounds",
            )
        elif ft.kind == "int":
            ctx.diags.error(
                "E602",
                dist.span,
                f"`normal` draws real numbers, but `{key}` is an integer",
                help="use `quniform(low, high, 1)` or `randint`",
            )
        return
    lo, hi = vals[0], vals[1]
    if not lo < hi:
        ctx.diags.error("E602", dist.span, f"`{name}(low, high)` needs low < high", label=_signature(name))
        return
    if name == "loguniform" and lo <= 0:
        ctx.diags.error(
            "E602",
            args[0].span,
            "`loguniform` bounds must be positive",
            label="the logarithm of a value <= 0 is undefined",
            help="the bounds are values, not logarithms: write `loguniform(1e-5, 1e-3)`",
        )
        return
    if name == "quniform":
        q = vals[2]
        if q <= 0:
            ctx.diags.error("E602", args[2].span, "`quniform` needs a step q > 0", label=_signature("quniform"))
            return
        # hyperopt: round(uniform(low, high) / q) * q
        lo, hi = round(lo / q) * q, round(hi / q) * q
        if ft.kind == "int" and not (
            float(q).is_integer() and float(vals[0]).is_integer() and float(vals[1]).is_integer()
        ):
            ctx.diags.error(
                "E602",
                dist.span,
                f"`{key}` is an integer field: quniform needs whole low, high and q",
                label="can produce fractions",
            )
            return
    elif ft.kind == "int":
        ctx.diags.error(
            "E602",
            dist.span,
            f"`{name}` draws real numbers, but `{key}` is an integer",
            help="use `randint(low, high)`, `quniform(low, high, 1)` or `choice(...)`",
        )
        return
    for bound, x in (("low", lo), ("high", hi)):
        if not math.isfinite(x) or not ft.admits(x):
            ctx.diags.error(
                "E603",
                dist.span,
                f"`{key}` must be {ft.range_text()}, but {name} can produce {_fmt(x)}",
                label=f"its {bound} end is out of range",
                help=f"keep the distribution's values {ft.range_text()}",
            )
            return


def _recheck(ctx: CheckContext, key: str, value, span, shown: str) -> bool:
    """Run every check with `key = value`; report the first error it causes as E603."""
    problems = ctx.variant(key, value) if ctx.variant is not None else []
    for d in problems:
        ctx.diags.error(
            "E603",
            span,
            f"with `{key} = {shown}` the spec fails {d.code}: {d.message}",
            label=d.label or "this value fails another check",
            help=f"remove {shown} from the search space, or adjust the spec so it passes",
        )
        return True
    return False


def _signature(name: str) -> str:
    return {
        "uniform": "uniform(low, high)",
        "loguniform": "loguniform(low, high), bounds as values > 0",
        "quniform": "quniform(low, high, q)",
        "randint": "randint(low, high), integers in [low, high)",
        "normal": "normal(mu, sigma)",
        "choice": "choice(v1, v2, ...)",
    }[name]


def _fit_help(ft: FieldType) -> str:
    if ft.kind == "quantity" and ft.quantity in ("duration", "size", "rate"):
        return f"give the bounds units, e.g. {ft.describe()}"
    return f"the values must be {ft.describe()}"


def _fmt(x: float) -> str:
    return f"{x:g}"
