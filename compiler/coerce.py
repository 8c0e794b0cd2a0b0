"""How a written value is read as a field's type, for the type checker (typecheck.py).

Which option of a union field a value fits; the plain data a checked value becomes;
and the readings behind E204's and E207's fixes: the literal a quoted number was meant
to be (`"300ms"` -> `300ms`), and `cpu = 500m` (500 minutes to the language) as the
cores Kubernetes means by it.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - types only
    from .expressions import Value
    from .fields import FieldType


def fits_kind(v: Value, option: FieldType) -> bool:
    """Whether `v` is of the kind of this option of a union field (`every = 500` or `every = 10min`)."""
    if option.kind == "quantity":
        return v.kind == option.quantity
    if option.kind == "int":
        return v.kind == "number" and isinstance(v.value, int)
    if option.kind == "float":
        return v.kind == "number"
    return False


def plain_data(v: Value) -> Any:
    """The checked data of a value: its number, string or bool, a list of them for a list."""
    if v.kind == "list":
        return [plain_data(i) for i in v.value]
    return v.value


def unquoted(text: str, ft: FieldType, path: str) -> str | None:
    """The literal a quoted number was meant to be (`"300ms"` -> `300ms`, `"500m"` as a
    `cpu` -> `0.5`), when that literal fits the field's type and range; else None."""
    from .parse import _NUMBER_RE
    from .units import UNITS
    from .units import unit_guess as _unit_guess

    m = _NUMBER_RE.match(text.strip())
    if m is None:
        return None
    num, unit = m.group("num"), m.group("unit")
    try:
        x = Decimal(num)
    except InvalidOperation:
        return None
    if unit is not None and unit not in UNITS:
        unit = _unit_guess(unit)  # `"4Gi"` -> `4GiB`
        if unit is None:
            return None
    for option in ft.options or (ft,):
        if ft.options:
            option = option.bounded_by(ft)
        literal, value = None, None
        if option.kind in ("int", "float"):
            if unit is None:
                literal, value = num, x
            elif unit == "m" and field_name(path) == "cpu":  # Kubernetes millicores
                value = x / 1000
                literal = _plain_decimal(value)
            elif unit == "%" and option.kind == "float":
                literal, value = num + unit, x / 100
            if option.kind == "int" and value is not None and value != value.to_integral_value():
                continue
        elif option.kind == "quantity":
            want = option.quantity
            if want == "metric-bound":
                literal, value = num + (unit or ""), None
            elif want == "fraction" and unit in (None, "%"):
                literal, value = num + (unit or ""), x / 100 if unit else x
            elif unit is not None and UNITS[unit][0] == want:
                literal, value = num + unit, x * UNITS[unit][1]
        if literal is None:
            continue
        if value is None or option.admits(int(value) if option.quantity == "size" else float(value)):
            return literal
    return None


def _plain_decimal(x: Decimal) -> str:
    """A Decimal written as a plain number (`0.5`, `2`), never in exponent form."""
    return format(x.normalize(), "f")


def millicores_as_cores(path: str, unit: str | None, v: Value) -> str | None:
    """`cpu = 500m` (a duration of 500 minutes to the language) as the cores Kubernetes
    means by it, or None when this is not a `cpu` field written with `m`."""
    if field_name(path) != "cpu" or unit != "m" or v.kind != "duration" or v.value <= 0:
        return None
    return _plain_decimal(Decimal(str(v.value)) / 60 / 1000)


def cores_help(cores: str) -> str:
    return f"`cpu` is a number of cores, not Kubernetes millicores: write `{cores}`"


def looks_numeric(text: str) -> bool:
    from .parse import _NUMBER_RE

    return bool(_NUMBER_RE.match(text.strip().replace("_", ""))) if text.strip() else False


def field_name(path: str) -> str:
    """The field a path ends in (`train.parallel.data` -> `data`)."""
    return path.rpartition(".")[2]
