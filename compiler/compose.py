"""Composition: `extends`, block merging and profiles (docs/language.md, "Composition").

The result is one tree of blocks whose attributes still hold unevaluated
expressions, plus the `let` bindings in scope. Paths follow docs/language.md: the
label of a block that appears once is skipped (`train.optimizer.lr`); a repeatable
block keeps its label (`evaluate.metric.bleu.min`).
"""

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from . import ast
from .diagnostics import Collector
from .fields import fields_of, walk_schema
from .parse import parse
from .schema import Block, Spec
from .source import SourceError, SourceFile, Span, read_source


class Entry(NamedTuple):
    """An attribute after composition: its expression and where it was written."""

    key: str
    expr: ast.Expr
    span: Span  # the whole `key = value`
    key_span: Span


@dataclass
class Node:
    """A block after composition."""

    name: str
    label: str | None
    span: Span
    name_span: Span
    label_span: Span | None = None
    entries: dict[str, Entry] = field(default_factory=dict)
    children: dict[str, "Node"] = field(default_factory=dict)  # blocks that appear once
    groups: dict[str, dict[str, "Node"]] = field(default_factory=dict)  # repeatable blocks by label
    # The base's block this one replaced whole for having another label (`extends`).
    replaces: "Node | None" = None

    def child_nodes(self) -> list["Node"]:
        out = list(self.children.values())
        for group in self.groups.values():
            out.extend(group.values())
        return out


class Composed(NamedTuple):
    root: Node
    lets: dict[str, ast.Let]
    profiles: dict[str, list[ast.Attribute]]
    main_file: str
    files: list[str]  # every file read, the main one first


class Loader:
    """Reads spec files once each; keeps their sources for rendering diagnostics."""

    def __init__(self, diags: Collector, sources: dict[str, SourceFile] | None = None):
        self.diags = diags
        self.sources: dict[str, SourceFile] = sources if sources is not None else {}

    def load(self, path: str, text: str | None = None) -> ast.File | None:
        if text is None:
            source = read_source(path)  # SourceError for a missing main file is the CLI's to report
        else:
            source = SourceFile(path, text)
        self.sources[source.path] = source
        return parse(source, self.diags)


def compose(
    main_path: str, diags: Collector, loader: Loader, profile: str | None = None, text: str | None = None
) -> Composed | None:
    tree = loader.load(main_path, text)
    if tree is None:
        return None
    composed = _compose_file(tree, diags, loader, stack=[_identity(main_path)])
    if profile is not None:
        overrides = composed.profiles.get(profile)
        if overrides is None:
            raise UnknownProfile(profile, sorted(composed.profiles))
        for attr in overrides:
            apply_override(composed.root, attr, diags)
    return composed


class UnknownProfile(Exception):
    def __init__(self, name: str, known: list[str]):
        super().__init__(name)
        self.name = name
        self.known = known


def _identity(path: str) -> str:
    return os.path.realpath(path)


def _compose_file(tree: ast.File, diags: Collector, loader: Loader, stack: list[str]) -> Composed:
    root = Node("", None, Span(tree.path, 1, 1, 1, 1), Span(tree.path, 1, 1, 1, 1))
    lets: dict[str, ast.Let] = {}
    profiles: dict[str, list[ast.Attribute]] = {}
    files = [tree.path]
    statements = tree.statements
    if statements and isinstance(statements[0], ast.Extends):
        base = _load_base(statements[0], diags, loader, stack)
        if base is not None:
            root, lets, profiles = (base.root, dict(base.lets), {k: list(v) for k, v in base.profiles.items()})
            files.extend(base.files)
    own = Node("", None, root.span, root.name_span)
    own_lets: dict[str, ast.Let] = {}
    own_profiles: dict[str, ast.Profile] = {}
    for st in statements:
        if isinstance(st, ast.Let):
            if st.name in own_lets:
                _duplicate_attribute(diags, st.name_span, st.name, own_lets[st.name].name_span, "let")
            own_lets[st.name] = st
        elif isinstance(st, ast.Profile):
            if st.name in own_profiles:
                diags.error(
                    "E208",
                    st.name_span,
                    f"profile `{st.name}` is defined twice",
                    label="second definition",
                    help=f"merge it with the first one at line {own_profiles[st.name].name_span.line}",
                )
                continue
            own_profiles[st.name] = st
        elif isinstance(st, ast.Block):
            _add_block(own, st, diags, Spec)
        elif isinstance(st, ast.Attribute):
            _add_attribute(own, st, diags)
    _merge(root, own)
    lets.update(own_lets)
    for name, prof in own_profiles.items():
        _check_duplicate_overrides(prof, diags)
        profiles[name] = profiles.get(name, []) + prof.overrides  # the child's overrides apply after the base's
    return Composed(root, lets, profiles, tree.path, files)


def _load_base(ext: ast.Extends, diags: Collector, loader: Loader, stack: list[str]) -> Composed | None:
    here = Path(ext.span.file).parent
    target = here / ext.path.value
    ident = _identity(str(target))
    shown = os.path.normpath(str(target))
    if ident in stack:
        chain = " -> ".join(os.path.relpath(p) for p in stack[stack.index(ident) :] + [ident])
        diags.error(
            "E212",
            ext.path.span,
            f"`extends` cycle: {chain}",
            label="this file extends itself through this chain",
            help="remove one of the `extends` so the chain ends",
        )
        return None
    try:
        tree = loader.load(shown)
    except SourceError as exc:
        relative = not os.path.isabs(ext.path.value)
        diags.error(
            "E212",
            ext.path.span,
            f"cannot extend {ext.path.value}: {exc}",
            label="the path is relative to this file" if relative else "no such file",
            help=f"looked for {shown}",
        )
        return None
    if tree is None:
        diags.error("E212", ext.path.span, f"the base spec {ext.path.value} has errors", label="extended here")
        return None
    return _compose_file(tree, diags, loader, stack + [ident])


def _duplicate_attribute(diags: Collector, span: Span, key: str, first: Span, what: str = "attribute") -> None:
    diags.error(
        "E106",
        span,
        f"{what} `{key}` is set twice",
        label="set again here",
        help=f"remove one of them; the first is at line {first.line}",
    )


def _block_type(parent_model: type[Block] | None, name: str):
    if parent_model is None:
        return None
    return fields_of(parent_model).get(name)


def _add_block(parent: Node, block: ast.Block, diags: Collector, parent_model: type[Block] | None) -> None:
    ft = _block_type(parent_model, block.name)
    repeatable = ft is not None and ft.kind == "blocks"
    node = Node(block.name, block.label, block.span, block.name_span, block.label_span)
    child_model = ft.model if ft is not None and ft.kind in ("block", "blocks") else None
    for item in block.items:
        if isinstance(item, ast.Block):
            _add_block(node, item, diags, child_model)
        else:
            _add_attribute(node, item, diags)
    if repeatable:
        group = parent.groups.setdefault(block.name, {})
        key = block.label or ""
        if key in group:
            first = group[key]
            diags.error(
                "E208",
                block.name_span,
                f'block `{block.name} "{key}"` is defined twice',
                label="second definition",
                help=f"merge it with the first one at line {first.name_span.line}",
            )
            return
        group[key] = node
        return
    if block.name in parent.children:
        first = parent.children[block.name]
        diags.error(
            "E208",
            block.name_span,
            f"block `{block.name}` appears twice",
            label="second definition",
            help=f"merge it with the first one at line {first.name_span.line}; only `metric` may repeat",
        )
        return
    parent.children[block.name] = node


def _add_attribute(node: Node, attr: ast.Attribute, diags: Collector) -> None:
    key = attr.key
    if key in node.entries:
        _duplicate_attribute(diags, attr.key_span, key, node.entries[key].key_span)
        return
    node.entries[key] = Entry(key, attr.value, attr.span, attr.key_span)


def _check_duplicate_overrides(prof: ast.Profile, diags: Collector) -> None:
    seen: dict[str, ast.Attribute] = {}
    for attr in prof.overrides:
        if attr.key in seen:
            _duplicate_attribute(diags, attr.key_span, attr.key, seen[attr.key].key_span, "override")
        seen[attr.key] = attr


def _merge(base: Node, own: Node, model: type[Block] | None = Spec) -> None:
    """Deep-merge `own` over `base`, in place: attributes replace, blocks merge.

    Setting one field of a one-of pair (`steps` over a base's `epochs`, `mlp` over a
    base's `transformer`) replaces the other.
    """
    for name in list(own.entries) + list(own.children):
        _drop_alternatives(base, name, model)
    base.entries.update(own.entries)
    known = fields_of(model) if model is not None else {}
    for name, child in own.children.items():
        old = base.children.get(name)
        if old is not None and old.label == child.label:
            _merge(old, child, _model_of(known, name))
            old.span, old.name_span, old.label_span = child.span, child.name_span, child.label_span
        else:
            # A different label (`optimizer "sgd"` over `optimizer "adam"`) is a different block.
            if old is not None:
                child.replaces = old  # typecheck explains it when the new block lacks fields
            base.children[name] = child
    for name, group in own.groups.items():
        target = base.groups.setdefault(name, {})
        for label, child in group.items():
            if label in target:
                _merge(target[label], child, _model_of(known, name))
            else:
                target[label] = child


def _model_of(known: dict, name: str) -> type | None:
    ft = known.get(name)
    return ft.model if ft is not None else None


def _drop_alternatives(node: Node, name: str, model: type[Block] | None) -> None:
    """Remove the other members of `name`'s one-of group from `node`."""
    for group in getattr(model, "one_of", ()):
        if name in group:
            for other in group:
                if other != name:
                    node.entries.pop(other, None)
                    node.children.pop(other, None)


def apply_override(root: Node, attr: ast.Attribute, diags: Collector) -> None:
    """Set one profile override (`train.cluster.hosts = 1`) in the tree."""
    path = attr.path
    ft, consumed, problem = walk_schema(path)
    if problem or ft is None:
        diags.error(
            "E213",
            attr.key_span,
            f"profile path `{attr.key}` names no field of the spec",
            label=problem,
            help=_profile_help(consumed),
        )
        return
    if ft.kind in ("block", "blocks", "map", "space"):
        diags.error(
            "E213",
            attr.key_span,
            f"profile path `{attr.key}` names a block, not a field",
            label="a profile sets one field at a time",
            help=f"write `{attr.key}.FIELD = value`",
        )
        return
    node, model = _locate(root, consumed, create_at=attr)
    assert node is not None  # create_at makes the blocks missing on the way
    key = consumed[-1]
    _drop_alternatives(node, key, model)
    node.entries[key] = Entry(key, attr.value, attr.span, attr.key_span)


def _profile_help(consumed: list[str]) -> str:
    """What the block reached before the unknown segment accepts."""
    ft, _, _ = walk_schema(tuple(consumed)) if consumed else (None, None, "")
    model = ft.model if ft is not None and ft.kind in ("block", "blocks") else (Spec if not consumed else None)
    skip = "paths skip the label of a block that appears once (`train.optimizer.lr`) and keep it for `metric` (`evaluate.metric.bleu.min`)"
    if model is None:
        return skip
    where = "`" + ".".join(consumed) + "`" if consumed else "the top level"
    return f"{where} has " + ", ".join(f"`{n}`" for n in fields_of(model)) + "; " + skip


def lookup_entry(root: Node, path: tuple[str, ...]) -> Entry | None:
    """The entry a field path names in the composed tree, if the spec sets it."""
    ft, consumed, problem = walk_schema(path)
    if problem or ft is None:
        return None
    node, _ = _locate(root, consumed)
    return node.entries.get(consumed[-1]) if node is not None else None


def _locate(
    root: Node, consumed: list[str], create_at: ast.Attribute | None = None
) -> tuple[Node | None, type[Block] | None]:
    """The node holding the last segment of a schema-checked path, and its model.

    With `create_at`, missing blocks on the way are created (a profile may set a
    field of a block the spec leaves out, and a one-of alternative is replaced);
    without it, a missing block is (None, None).
    """
    node = root
    model: type[Block] | None = Spec
    i = 0
    while i < len(consumed) - 1:
        seg = consumed[i]
        ft = fields_of(model).get(seg) if model is not None else None
        kind = ft.kind if ft is not None else "block"
        if kind in ("map", "space"):
            # The rest of the path is one key of this block (`search.space.train.lr`).
            nxt = node.children.get(seg)
            if nxt is None and create_at is not None:
                nxt = node.children[seg] = Node(seg, None, create_at.span, create_at.key_span)
            return (nxt, None) if nxt is not None else (None, None)
        if kind == "blocks":
            label = consumed[i + 1]
            group = node.groups.setdefault(seg, {}) if create_at else node.groups.get(seg, {})
            nxt = group.get(label)
            if nxt is None and create_at is not None:
                nxt = group[label] = Node(seg, label, create_at.span, create_at.key_span)
            i += 2
        else:
            nxt = node.children.get(seg)
            if nxt is None and create_at is not None:
                _drop_alternatives(node, seg, model)
                nxt = node.children[seg] = Node(seg, None, create_at.span, create_at.key_span)
            i += 1
        if nxt is None:
            return None, None
        node = nxt
        model = ft.model if ft is not None else None
    return node, model
