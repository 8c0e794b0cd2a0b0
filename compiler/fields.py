"""What the schema's pydantic models say about each field, in a form the phases use.

`compose` walks paths with it (profiles, references), `typecheck` checks values
against it, `checks/search.py` asks what a search path's field accepts. It reads
the models' annotations once and caches the answer.
"""

import types
import typing
from functools import cache
from typing import Any, Literal, NamedTuple, Union

from pydantic_core import PydanticUndefined

from . import schema
from .suggest import closest


class FieldType(NamedTuple):
    # "block" | "blocks" (repeatable, keyed by label) | "map" (free-form name = string)
    # | "space" (path = distribution) | "int" | "float" | "bool" | "str" | "enum" | "list"
    # | "quantity" | "union"
    kind: str
    required: bool = False
    default: Any = None  # a static default, or None when derived or absent
    model: type[schema.Block] | None = None  # for block / blocks
    enum: tuple[str, ...] = ()
    quantity: str = ""  # for quantity: duration | size | fraction | rate | metric-bound
    item: "FieldType | None" = None  # for list
    options: tuple["FieldType", ...] = ()  # for union
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    min_items: int | None = None
    max_items: int | None = None
    path_like: bool = False
    description: str = ""

    @property
    def is_block(self) -> bool:
        return self.kind in ("block", "blocks", "map", "space")

    @property
    def block_model(self) -> type[schema.Block]:
        """The model of a block or repeatable block's field."""
        assert self.model is not None, self
        return self.model

    def describe(self) -> str:
        """How a message names what this field expects."""
        if self.kind == "enum":
            return "one of " + ", ".join(f'"{v}"' for v in self.enum)
        if self.kind == "quantity":
            return _QUANTITY_WORDS.get(self.quantity, self.quantity)
        if self.kind == "list":
            return f"a list of {self.item.describe_plural() if self.item else 'values'}"
        if self.kind == "union":
            return " or ".join(o.describe() for o in self.options)
        return _KIND_WORDS.get(self.kind, self.kind)

    def describe_plural(self) -> str:
        return {"int": "integers", "float": "numbers", "str": "strings", "bool": "booleans"}.get(
            self.kind, self.describe()
        )

    def range_text(self) -> str:
        """`in [0, 1)`, `>= 1` or `> 0`: what the field's bounds admit."""
        lo_v = self.ge if self.ge is not None else self.gt
        hi_v = self.le if self.le is not None else self.lt
        if lo_v is not None and hi_v is not None:
            left = "[" if self.ge is not None else "("
            right = "]" if self.le is not None else ")"
            return f"in {left}{_num(lo_v)}, {_num(hi_v)}{right}"
        if lo_v is not None:
            return f"{'>=' if self.ge is not None else '>'} {_num(lo_v)}"
        if hi_v is not None:
            return f"{'<=' if self.le is not None else '<'} {_num(hi_v)}"
        return ""

    def bounded_by(self, outer: "FieldType") -> "FieldType":
        """This option of a union field, with the union's own bounds (`every` >= 1)."""
        if any(getattr(outer, b) is not None for b in ("ge", "gt", "le", "lt")):
            return self._replace(ge=outer.ge, gt=outer.gt, le=outer.le, lt=outer.lt)
        return self

    def admits(self, x: float) -> bool:
        if self.ge is not None and x < self.ge:
            return False
        if self.gt is not None and x <= self.gt:
            return False
        if self.le is not None and x > self.le:
            return False
        return not (self.lt is not None and x >= self.lt)


_KIND_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string", "block": "a block"}
_QUANTITY_WORDS = {
    "duration": "a duration such as `50ms`",
    "size": "a size such as `16GB`",
    "fraction": "a fraction such as `0.5` or `50%`",
    "rate": "a rate such as `400rps`",
    "metric-bound": "a number, fraction, duration or size",
}


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


@cache
def fields_of(model: type[schema.Block]) -> dict[str, FieldType]:
    out = {}
    for name, info in model.model_fields.items():
        if name == model.label_field:
            continue  # filled from the block's label, not written as a field
        out[name] = _field_type(info.annotation, info.metadata, info)
    return out


@cache
def label_type(model: type[schema.Block]) -> FieldType:
    """What a block's label may be (`optimizer "adamw"`: one of the optimizer names)."""
    assert model.label_field is not None, model  # asked only of a block that takes a label
    info = model.model_fields[model.label_field]
    return _field_type(info.annotation, info.metadata, info)


def _field_type(annotation, metadata, info=None) -> FieldType:
    required = bool(info is not None and info.is_required())
    default = None
    if info is not None and not required and info.default is not PydanticUndefined and info.default_factory is None:
        default = info.default
    description = (info.description or "") if info is not None else ""
    base: dict[str, Any] = {"required": required, "default": default, "description": description}
    ann, meta = _unwrap(annotation, list(metadata))
    origin = typing.get_origin(ann)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        if len(args) == 1:
            inner = _field_type(args[0], meta)
            return _with(inner, **base)
        options = tuple(_field_type(a, []) for a in args)
        return FieldType("union", options=options, **base, **_bounds(meta))
    if origin is Literal:
        return FieldType("enum", enum=tuple(typing.get_args(ann)), **base)
    if origin is list:
        (item,) = typing.get_args(ann)
        b = _bounds(meta)
        return FieldType(
            "list",
            item=_field_type(item, []),
            min_items=b.pop("min_items", None),
            max_items=b.pop("max_items", None),
            **base,
        )
    if origin is dict:
        _, value = typing.get_args(ann)
        if value is str:
            return FieldType("map", **base)
        if value is schema.Distribution:
            return FieldType("space", **base)
        return FieldType("blocks", model=value, **base)
    if isinstance(ann, type) and issubclass(ann, schema.Block):
        return FieldType("block", model=ann, **base)
    kind_marker = next((m for m in meta if isinstance(m, schema.Kind)), None)
    path_like = any(isinstance(m, schema.PathLike) for m in meta)
    if kind_marker is not None:
        return FieldType("quantity", quantity=kind_marker.name, **base, **_bounds(meta))
    simple = {int: "int", float: "float", bool: "bool", str: "str"}[ann]
    return FieldType(simple, path_like=path_like, **base, **_bounds(meta))


def _unwrap(annotation, meta: list) -> tuple[Any, list]:
    """Strip Annotated layers, collecting their metadata."""
    while typing.get_origin(annotation) is typing.Annotated:
        args = typing.get_args(annotation)
        annotation = args[0]
        for m in args[1:]:
            meta.extend(getattr(m, "metadata", None) or [m])
    return annotation, meta


def _bounds(meta: list) -> dict:
    out: dict = {}
    for m in meta:
        for attr, key in (
            ("ge", "ge"),
            ("gt", "gt"),
            ("le", "le"),
            ("lt", "lt"),
            ("min_length", "min_items"),
            ("max_length", "max_items"),
        ):
            v = getattr(m, attr, None)
            if v is not None and not isinstance(m, (schema.Kind, schema.PathLike)):
                out[key] = v
    return out


def _with(ft: FieldType, **changes) -> FieldType:
    return ft._replace(**changes)


def walk_schema(path: tuple[str, ...]) -> tuple[FieldType | None, list[str], str]:
    """Follow a field path through the schema from the top.

    Returns (the field's type, the segments consumed, an error message or "").
    A label segment of a repeatable block is consumed as is; in a free-form map or
    the search space, the rest of the path is the key.
    """
    model: type[schema.Block] = schema.Spec
    consumed: list[str] = []
    i = 0
    while i < len(path):
        seg = path[i]
        known = fields_of(model)
        ft = known.get(seg)
        if ft is None:
            return None, consumed, _unknown(seg, consumed, known)
        consumed.append(seg)
        i += 1
        if ft.kind == "block":
            if i == len(path):
                return ft, consumed, ""
            model = ft.block_model
            continue
        if ft.kind == "blocks":
            if i == len(path):
                return ft, consumed, ""
            consumed.append(path[i])  # the label
            i += 1
            if i == len(path):
                return FieldType("block", model=ft.model), consumed, ""
            model = ft.block_model
            continue
        if ft.kind in ("map", "space"):
            if i == len(path):
                return ft, consumed, ""
            key = ".".join(path[i:])
            consumed.append(key)
            item = FieldType("str") if ft.kind == "map" else FieldType("distribution")
            return item, consumed, ""
        if i < len(path):
            return (None, consumed, f"`{'.'.join(consumed)}` is {ft.describe()}, it has no field `{path[i]}`")
        return ft, consumed, ""
    return FieldType("block", model=model), consumed, ""


def _unknown(seg: str, consumed: list[str], known: dict[str, FieldType]) -> str:
    where = "`" + ".".join(consumed) + "`" if consumed else "the top level"
    guess = closest(seg, known)
    hint = f"; did you mean `{guess}`?" if guess else ""
    return f"{where} has no field `{seg}`{hint}"


def iter_scalar_paths(
    model: type[schema.Block] = schema.Spec, prefix: tuple[str, ...] = ()
) -> typing.Iterator[tuple[tuple[str, ...], FieldType]]:
    """Every numeric or scalar field path of the schema (repeatable blocks as `<name>`)."""
    for name, ft in fields_of(model).items():
        if ft.kind == "block":
            yield from iter_scalar_paths(ft.block_model, prefix + (name,))
        elif ft.kind == "blocks":
            yield from iter_scalar_paths(ft.block_model, prefix + (name, "<name>"))
        elif ft.kind not in ("map", "space"):
            yield prefix + (name,), ft


class BareWord(NamedTuple):
    """What a bare word written as a field's whole value most likely means."""

    replacement: str  # the literal to write instead (`"bf16"`, `true`)
    help: str
    certain: bool  # the word is exactly one of the field's values (before a `let` of a similar name)


def bare_word(field_path: str, word: str) -> BareWord | None:
    """`precision = bf16` is a reference to a name that does not exist; for a field that
    takes a string, or true or false, this is the literal it was meant to be."""
    ft, _, problem = walk_schema(tuple(field_path.split(".")))
    if problem or ft is None:
        return None
    for option in ft.options or (ft,):
        if option.kind == "bool" and word.lower() in ("true", "false"):
            return BareWord(word.lower(), f"booleans are written `{word.lower()}`", True)
        if option.kind == "enum":
            guess = word if word in option.enum else closest(word, option.enum)
            if guess is not None:
                return BareWord(
                    f'"{guess}"',
                    f'did you mean the string "{guess}"? strings are written in double quotes',
                    guess == word,
                )
        if option.kind == "str":
            return BareWord(
                f'"{word}"', f'did you mean the string "{word}"? strings are written in double quotes', False
            )
    return None


ModelT = typing.TypeVar("ModelT", bound=schema.Block)


def construct(model: type[ModelT], data: dict) -> ModelT:
    """Build a model instance from checked data without validating it again."""
    values = {}
    for name, value in data.items():
        ft = fields_of(model).get(name)
        if ft is not None and ft.kind == "block" and isinstance(value, dict):
            value = construct(ft.block_model, value)
        elif ft is not None and ft.kind == "blocks":
            value = {label: construct(ft.block_model, block) for label, block in value.items()}
        elif ft is not None and ft.kind == "space":
            value = {path: schema.Distribution.model_construct(**dist) for path, dist in value.items()}
        values[name] = value
    return model.model_construct(**values)
