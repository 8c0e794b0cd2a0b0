"""Schema checking: the composed tree against the pydantic models (E201-E209).

Walks the tree and the schema together, evaluating each attribute, and reports
unknown blocks and fields (with "did you mean"), missing required fields, wrong
types and units, values out of range, unknown enum values and one-of conflicts,
all at the span where they were written. What passes becomes a plain dict that the
pydantic models then validate into the typed IR, and a `SpanIndex` that lets later
phases point back at the source. How a written value is read as a field's type (union
options, quoted numbers, millicores) is coerce.py's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from . import schema
from .coerce import cores_help, field_name, fits_kind, looks_numeric, millicores_as_cores, plain_data, unquoted
from .compose import Composed, Entry, Node
from .diagnostics import Collector, Fix
from .expressions import QUANTITY_KINDS, Evaluator, Value, format_quantity
from .fields import FieldType, fields_of, label_type
from .source import Span
from .suggest import closest

_URI_SCHEMES = ("s3://", "gs://", "hdfs://", "http://", "https://", "file://", "abfs://", "az://")


@dataclass
class SpanIndex:
    """Where each part of the IR was written, by canonical path (`train.parallel.data`)."""

    values: dict[str, Span] = field(default_factory=dict)  # the value expression
    keys: dict[str, Span] = field(default_factory=dict)  # the attribute name, or a block's name
    kinds: dict[str, str] = field(default_factory=dict)  # the value's kind (for metric bounds)
    default: Span | None = None
    main_dir: str = ""  # the main spec's folder: the IR's relative paths are relative to it

    def value(self, path: str) -> Span:
        """The span of a field's value, or of the nearest enclosing thing written."""
        p = path
        while p:
            if p in self.values:
                return self.values[p]
            if p in self.keys:
                return self.keys[p]
            p = p.rpartition(".")[0]
        assert self.default is not None
        return self.default

    def key(self, path: str) -> Span:
        return self.keys.get(path) or self.value(path)

    def attribute(self, path: str) -> Span:
        """From the attribute name to the end of its value (`data = 4`)."""
        if path in self.keys and path in self.values:
            k, v = self.keys[path], self.values[path]
            if k.file == v.file:
                return k.to(v)
        return self.value(path)

    def has(self, path: str) -> bool:
        return path in self.values


class TypeChecker:
    def __init__(self, composed: Composed, diags: Collector, main_dir: str):
        self.composed = composed
        self.diags = diags
        self.eval = Evaluator(composed, diags)
        self.spans = SpanIndex(default=composed.root.span, main_dir=main_dir)
        self.main_dir = main_dir
        # search.space entries as evaluated, with the spans of their arguments (checks/search.py)
        self.distributions: dict[str, Value] = {}
        # The innermost block being checked that replaced a base's block of another label.
        self.replacing: Node | None = None
        # The field paths whose values were rejected (left out of the data): the checks
        # that read them are not run on their defaults (reads.py).
        self.rejected: set[str] = set()

    def errors(self) -> int:
        return len(self.diags.diagnostics)

    def run(self) -> dict[str, Any]:
        root = self.composed.root
        # Top-level `let` bindings are evaluated even when unused, so their errors show.
        for name, let in self.composed.lets.items():
            self.eval.entry(let.value, name)
        data = self.block(root, schema.Spec, "")
        self.classes_required(data)
        return data

    def classes_required(self, data: dict[str, Any]) -> None:
        """A classifier's `classes` has no default (a silent 2 made a 3-class task binary):
        E203, with the number the local training data needs when it can be read."""
        model = data.get("model", {})
        arch = model.get("transformer")
        if arch is None or "model.transformer.classes" in self.spans.keys:  # written, even if wrongly
            return
        if model.get("task") != "classification" and arch.get("kind") != "encoder":
            return
        from .labels import classes_needed

        self.rejected.add("model.transformer.classes")
        found = classes_needed(self.main_dir, model)
        if found is not None:
            help = f"the training data has {found.describe()}: add `classes = {found.needed}`"
        else:
            help = "add `classes = N`, the number of labels (class ids 0..N-1)"
        self.diags.error(
            "E203",
            self.spans.key("model.transformer"),
            "a classifier needs `classes`",
            label="`classes` is required here: the output layer has one logit per class",
            help=help,
        )

    # --- blocks ---

    def block(self, node: Node, model: type[schema.Block], path: str) -> dict[str, Any]:
        known = fields_of(model)
        data: dict[str, Any] = {}
        outer_replacing = self.replacing
        if node.replaces is not None:
            self.replacing = node
        if path:
            self.spans.keys[path] = node.name_span
        self.label(node, model, path, data)
        for key, entry in node.entries.items():
            before = self.errors()
            self.field(path, key, entry, known, data)
            if self.errors() > before:
                self.rejected.add(_join(path, key))
        for child in node.child_nodes():
            ft = known.get(child.name)
            if ft is None or not ft.is_block:
                self.rejected.add(_join(path, child.name))
                if ft is not None:
                    self.diags.error(
                        "E204",
                        child.name_span,
                        f"`{child.name}` is a field, not a block",
                        help=f"write `{child.name} = value`",
                    )
                else:
                    self.unknown(child.name_span, child.name, path, known, block=True)
                continue
            self.child(child, ft, path, data)
        self.one_of_and_required(node, model, path, data, known)
        self.replacing = outer_replacing
        return data

    def field(self, path: str, key: str, entry: Entry, known: dict[str, FieldType], data: dict) -> None:
        """One `key = value` of a block, into `data` when it checks."""
        sub, ft = _join(path, key), known.get(key)
        if "." in key:
            self.diags.error(
                "E202",
                entry.key_span,
                f"dotted name `{key}` in a block",
                label="dotted paths are only for `search.space` and profiles",
                help=f"write the field inside its block: `{key.split('.')[0]} {{ ... }}`",
            )
            return
        if ft is None:
            self.unknown(entry.key_span, key, path, known, block=False)
            return
        if ft.is_block:
            self.diags.error(
                "E204", entry.key_span, f"`{key}` is a block, not a field", help=f"write `{key} {{ ... }}`"
            )
            return
        self.spans.keys[sub] = entry.key_span
        value = self.eval.entry(entry.expr, sub)
        if value is None:
            self.rejected.add(sub)  # its error was said where the expression failed (perhaps a `let`)
            return
        self.spans.values[sub] = value.span
        self.spans.kinds[sub] = value.kind
        checked = self.value(value, ft, sub, entry)
        if checked is _BAD:
            self.rejected.add(sub)
        else:
            data[key] = checked

    def label(self, node: Node, model: type[schema.Block], path: str, data: dict) -> None:
        label_field = model.label_field
        if label_field is None:
            if node.label is not None and node.label_span is not None:
                self.diags.error(
                    "E202",
                    node.label_span,
                    f"block `{node.name}` takes no label",
                    label="unexpected label",
                    help=f"write `{node.name} {{ ... }}`",
                )
            return
        if node.label is None:
            if model.label_required:
                self.rejected.add(_join(path, label_field))
                example = _label_example(model.model_fields[label_field].annotation)
                self.diags.error(
                    "E203",
                    node.name_span,
                    f"block `{node.name}` needs a label",
                    label=f"write `{node.name} {example} {{`",
                    help=f"the label names the {node.name}",
                )
            return
        ft = label_type(model)
        span = node.label_span or node.name_span
        if ft.kind == "enum" and node.label not in ft.enum:
            self.rejected.add(_join(path, label_field))
            self.bad_enum(span, node.name, node.label, ft, message=f'unknown {node.name} "{node.label}"')
            return
        data[label_field] = node.label
        self.spans.values[_join(path, label_field)] = span

    def child(self, child: Node, ft: FieldType, path: str, data: dict) -> None:
        name = child.name
        sub = _join(path, name)
        if ft.kind == "block":
            data[name] = self.block(child, ft.block_model, sub)
        elif ft.kind == "blocks":
            group = data.setdefault(name, {})
            label = child.label
            if label is None:
                self.rejected.add(sub)
                self.diags.error(
                    "E203",
                    child.name_span,
                    f"block `{name}` needs a label",
                    label=f'write `{name} "NAME" {{`',
                    help=f"`{name}` may repeat; the label tells them apart",
                )
                return
            group[label] = self.block(child, ft.block_model, _join(sub, label))
        elif ft.kind == "map":
            self.spans.keys[sub] = child.name_span
            data[name] = self.map_block(child, sub)
        else:  # space
            self.spans.keys[sub] = child.name_span
            data[name] = self.space_block(child, sub)

    def map_block(self, node: Node, path: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for child in node.child_nodes():
            self.rejected.add(_join(path, child.name))
            self.diags.error(
                "E201",
                child.name_span,
                f'`{node.name}` holds only `name = "value"` pairs',
                label="a block is not allowed here",
            )
        for key, entry in node.entries.items():
            value = self.eval.entry(entry.expr, _join(path, key))
            if value is None:
                self.rejected.add(_join(path, key))
                continue
            if value.kind != "str":
                self.rejected.add(_join(path, key))
                self.wrong_type(value, "a string", _join(path, key))
                continue
            out[key] = value.value
            self.spans.values[_join(path, key)] = value.span
            self.spans.keys[_join(path, key)] = entry.key_span
        return out

    def space_block(self, node: Node, path: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for child in node.child_nodes():
            self.rejected.add(_join(path, child.name))
            self.diags.error(
                "E201",
                child.name_span,
                "`space` holds only `path = distribution` lines",
                label="a block is not allowed here",
            )
        for key, entry in node.entries.items():
            sub = _join(path, key)
            value = self.eval.entry(entry.expr, sub)
            if value is None:
                self.rejected.add(sub)
                continue
            self.spans.keys[sub] = entry.key_span
            self.spans.values[sub] = value.span
            if value.kind != "dist":
                self.rejected.add(sub)
                self.diags.error(
                    "E602",
                    value.span,
                    f"`{key}` in `space` needs a distribution",
                    label=f"this is {value.describe()}",
                    help="write e.g. `uniform(0.0, 0.3)`, `loguniform(1e-5, 1e-3)` or `choice(256, 512)`",
                )
                continue
            name, args = value.value
            out[key] = {"kind": name, "args": [plain_data(a) for a in args]}
            self.distributions[key] = value
        return out

    # --- values ---

    def value(self, v: Value, ft: FieldType, path: str, entry: Entry) -> Any:
        kind = ft.kind
        if kind == "union":
            for option in ft.options:
                if fits_kind(v, option):
                    return self.value(v, option.bounded_by(ft), path, entry)
            self.wrong_type(v, ft.describe(), path, ft)
            return _BAD
        if kind == "quantity":
            return self.quantity(v, ft, path)
        if kind == "enum":
            if v.kind != "str":
                self.wrong_type(v, ft.describe(), path, ft)
                return _BAD
            if v.value not in ft.enum:
                self.bad_enum(v.span, path, v.value, ft)
                return _BAD
            return v.value
        if kind == "str":
            if v.kind != "str":
                self.wrong_type(v, "a string", path, ft)
                return _BAD
            if ft.path_like and not (path == "model.data.tokenizer" and v.value in schema.TOKENIZER_NAMES):
                return self.resolve_path(v)
            return v.value
        if kind == "bool":
            if v.kind != "bool":
                self.wrong_type(v, "true or false", path, ft)
                return _BAD
            return v.value
        if kind == "list":
            if v.kind != "list":
                self.wrong_type(v, ft.describe(), path, ft)
                return _BAD
            n = len(v.value)
            if (ft.min_items is not None and n < ft.min_items) or (ft.max_items is not None and n > ft.max_items):
                want = f"exactly {ft.min_items}" if ft.min_items == ft.max_items else f"at least {ft.min_items}"
                self.diags.error("E205", v.span, f"`{path}` needs {want} items, found {n}", label=f"{n} items")
                return _BAD
            item_ft = ft.item
            assert item_ft is not None  # a list field's type says what its items are
            items = [self.value(item, item_ft, f"{path}[{i}]", entry) for i, item in enumerate(v.value)]
            return _BAD if any(i is _BAD for i in items) else items
        if kind in ("int", "float"):
            return self.number(v, ft, path, entry.expr)
        raise AssertionError(f"unhandled field kind {kind}")  # pragma: no cover

    def number(self, v: Value, ft: FieldType, path: str, written: object = None) -> Any:
        fix: tuple[Fix, ...]
        if (v.kind in QUANTITY_KINDS and v.kind != "fraction") or (v.kind == "fraction" and ft.kind == "int"):
            help, fix = f"write {ft.describe()} without a unit", ()
            cores = millicores_as_cores(path, getattr(written, "unit", None), v)
            if cores is not None:  # `cpu = 500m`: Kubernetes millicores, read here as 500 minutes
                help, fix = cores_help(cores), (Fix(v.span, cores),)
            self.diags.error(
                "E207",
                v.span,
                f"`{field_name(path)}` takes a plain number, not {v.describe()}",
                label=f"{v.show()} is {v.describe()}",
                help=help,
                fix=fix,
            )
            return _BAD
        if v.kind not in ("number", "fraction"):
            self.wrong_type(v, ft.describe(), path, ft)
            return _BAD
        x = v.value
        if ft.kind == "int" and not isinstance(x, int):
            if isinstance(x, float) and x.is_integer() and ft.admits(int(x)):
                help, fix = f"write `{int(x)}`", (Fix(v.span, str(int(x))),)
            else:
                help, fix = "use `//` for integer division", ()
            self.diags.error(
                "E204",
                v.span,
                f"`{field_name(path)}` must be an integer, found {v.show()}",
                label="not a whole number",
                help=help,
                fix=fix,
            )
            return _BAD
        return self.in_range(v, ft, path, x if ft.kind == "int" else float(x))

    def quantity(self, v: Value, ft: FieldType, path: str) -> Any:
        want = ft.quantity
        if want == "metric-bound":
            if v.kind not in ("number", "fraction", "duration", "size"):
                self.wrong_type(v, ft.describe(), path, ft)
                return _BAD
            return float(v.value)
        if want == "fraction":
            if v.kind not in ("number", "fraction"):
                if v.kind in QUANTITY_KINDS:
                    self.diags.error(
                        "E207",
                        v.span,
                        f"`{field_name(path)}` expects {ft.describe()}, found {v.describe()}",
                        label=f"{v.show()} is {v.describe()}",
                    )
                else:
                    self.wrong_type(v, ft.describe(), path, ft)
                return _BAD
            return self.in_range(v, ft, path, float(v.value))
        if v.kind != want:
            fix: tuple[Fix, ...]
            if v.kind == "number":
                unit = {"duration": "ms", "size": "GB", "rate": "rps"}[want]
                literal = f"{v.show()}{unit}"
                if unquoted(literal, ft, path) == literal:  # the literal parses and is in range
                    help, fix = f"add a unit: `{literal}`", (Fix(v.span, literal),)
                else:
                    help, fix = f"add a unit: {ft.describe()}", ()
                self.diags.error(
                    "E207",
                    v.span,
                    f"expected {want}, found a bare number",
                    label=f"expected {ft.describe()}",
                    help=help,
                    fix=fix,
                )
            elif v.kind in QUANTITY_KINDS:
                self.diags.error(
                    "E207",
                    v.span,
                    f"expected {want}, found {v.describe()}",
                    label=f"{v.show()} is {v.describe()}",
                    help=f"write {ft.describe()}",
                )
            else:
                self.wrong_type(v, ft.describe(), path, ft)
            return _BAD
        x = v.value if want == "size" else float(v.value)
        return self.in_range(v, ft, path, x)

    def in_range(self, v: Value, ft: FieldType, path: str, x: Any) -> Any:
        if not ft.admits(x):
            shown = v.show()
            fix: tuple[Fix, ...]
            help, fix = f"choose a value {ft.range_text()}", ()
            if ft.quantity == "fraction" and v.kind == "number" and 1 < x <= 100 and ft.admits(x / 100):
                # `availability = 99.9`: a percentage without its `%`
                percent = format_quantity("fraction", x / 100)
                help, fix = (f"a percentage is written with `%`: write `{percent}`", (Fix(v.span, percent),))
            self.diags.error(
                "E205",
                v.span,
                f"`{field_name(path)}` must be {ft.range_text()}, found {shown}",
                label="out of range",
                help=help,
                fix=fix,
            )
            return _BAD
        return x

    def resolve_path(self, v: Value) -> str:
        """Relative paths are relative to the spec file that wrote them (docs/language.md, `data`)."""
        p = v.value
        if not p or p.startswith(_URI_SCHEMES) or os.path.isabs(p):
            return p
        written_in = os.path.dirname(v.span.file)
        rel = os.path.relpath(written_in or ".", self.main_dir or ".")
        return os.path.normpath(os.path.join(rel, p)).replace(os.sep, "/")

    # --- reports ---

    def wrong_type(self, v: Value, expected: str, path: str, ft: FieldType | None = None) -> None:
        help, literal = "", None
        if v.kind == "str":
            literal = unquoted(v.value, ft, path) if ft is not None else None
            if literal is None:
                if looks_numeric(v.value):
                    help = f"write {expected} without quotes"
            elif literal == v.value.strip():
                help = f"write `{literal}` without quotes"
            elif field_name(path) == "cpu":
                help = cores_help(literal)
            else:
                help = f"write `{literal}`, without quotes"
        elif v.kind == "number" and "string" in expected:
            literal = f'"{v.show()}"'
            help = f"write it in double quotes: {literal}"
        self.diags.error(
            "E204",
            v.span,
            f"`{field_name(path)}` expects {expected}, found {v.describe()}",
            label=f"this is {v.describe()}",
            help=help,
            fix=(Fix(v.span, literal),) if literal is not None else (),
        )

    def bad_enum(self, span: Span, path: str, value: str, ft: FieldType, message: str = "") -> None:
        guess = closest(value, ft.enum)
        options = ", ".join(f'"{o}"' for o in ft.enum)
        self.diags.error(
            "E206",
            span,
            message or f'unknown value "{value}" for `{field_name(path)}`',
            label=f"expected one of {options}",
            help=f'did you mean "{guess}"?' if guess else f"choose one of {options}",
            fix=(Fix(span, f'"{guess}"'),) if guess else (),
        )

    def unknown(self, span: Span, name: str, path: str, known: dict[str, FieldType], block: bool) -> None:
        pool = [k for k, f in known.items() if f.is_block == block] or list(known)
        guess = closest(name, pool) or closest(name, list(known))
        if guess:  # the field it was meant to be is left unset: its default is not what the user wrote
            self.rejected.add(_join(path, guess))
        where = f"`{path}`" if path else "the top level"
        if block:
            msg, code = f"unknown block `{name}` in {where}", "E201"
        else:
            msg, code = f"unknown field `{name}` in {where}", "E202"
        choices = ", ".join(f"`{k}`" for k in pool)
        self.diags.error(
            code,
            span,
            msg,
            label=f"did you mean `{guess}`?" if guess else "not known here",
            help=f"{where} accepts {choices}" if pool else "",
            fix=(Fix(span, guess),) if guess else (),
        )

    def one_of_and_required(
        self, node: Node, model: type[schema.Block], path: str, data: dict, known: dict[str, FieldType]
    ) -> None:
        grouped: set[str] = set()
        for group in model.one_of:
            grouped.update(group)
            given = [name for name in group if name in node.entries or name in node.children]
            if len(given) > 1:
                self.rejected.update(_join(path, name) for name in given)
                second = given[-1]
                span = node.entries[second].key_span if second in node.entries else node.children[second].name_span
                self.diags.error(
                    "E209",
                    span,
                    f"`{given[0]}` and `{second}` are both given in `{path or node.name}`",
                    label="exactly one of these may be set",
                    help=f"remove `{second}` or `{given[0]}`",
                )
            elif not given:
                self.rejected.update(_join(path, name) for name in group)
                names = " or ".join(f"`{n}`" for n in group)
                help, notes, fix = self.replaced_block_hint(_example_for(group))
                self.diags.error(
                    "E203",
                    node.name_span,
                    f"`{path}` needs {names}",
                    label="exactly one of these is required",
                    help=help,
                    notes=notes,
                    fix=fix,
                )
        missing = [
            name
            for name, ft in known.items()
            if ft.required
            and name not in grouped
            and name not in node.entries
            and name not in node.children
            and name not in data
        ]
        if not missing:
            return
        self.rejected.update(_join(path, name) for name in missing)
        if not path:
            self.diags.error(
                "E203",
                node.name_span,
                "the spec has no `model` block",
                label="a spec declares exactly one model",
                help='add `model NAME { task = "..." ... }`',
            )
            return
        names = _and([f"`{n}`" for n in missing])
        plural = "s" if len(missing) > 1 else ""
        adds = "; ".join(
            f"`{n} {{ ... }}`" if known[n].is_block else f"`{n} = ...` ({known[n].describe()})" for n in missing
        )
        help, notes, fix = self.replaced_block_hint(f"add {adds}")
        self.diags.error(
            "E203",
            node.name_span,
            f"`{path}` is missing required field{plural} {names}",
            label=f"{names} {'are' if plural else 'is'} required here",
            help=help,
            notes=notes,
            fix=fix,
        )

    def replaced_block_hint(self, help: str) -> tuple[str, tuple[str, ...], tuple[Fix, ...]]:
        """A required field is missing inside a block that replaced an extended spec's
        block of another label: say so, and how to override the base's block instead."""
        node = self.replacing
        if node is None or node.replaces is None or node.label_span is None:
            return help, (), ()
        old = node.replaces
        base = f'`{old.name} "{old.label}"`' if old.label is not None else f"`{old.name}`"
        where = f"{old.name_span.file}:{old.name_span.line}"
        note = (
            f'`{node.name} "{node.label}"` replaces the whole {base} block of {where}: '
            "a block with another label is a new block, not an override of the base's"
        )
        if old.label is None:
            return help, (note,), ()
        keep = f'`{old.name} "{old.label}" {{ ... }}`'
        return (
            (
                f"to change only some fields of the base's block, keep its label: write {keep} "
                f"(or set single fields in a `profile`); otherwise {help}"
            ),
            (note,),
            (Fix(node.label_span, f'"{old.label}"'),),
        )


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


_BAD = object()


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _label_example(annotation) -> str:
    import typing

    args = typing.get_args(annotation)
    return f'"{args[0]}"' if args and isinstance(args[0], str) else "NAME"


def _example_for(group: tuple[str, ...]) -> str:
    if "transformer" in group:
        return "add `transformer { layers = ... }` or `mlp { inputs = ... }`"
    if "epochs" in group:
        return "add `epochs = N` or `steps = N`"
    return ""
