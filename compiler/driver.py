"""The pipeline, phase by phase: compose, typecheck, IR, facts, checks, then the
checks' proposals verified.

Syntax and composition errors stop the run after composition (a later phase would
only repeat them). Type errors do not: a value the type checker rejects is left out
of the checked data, the checks run on the rest, and a finding is kept only when its
check read no rejected field (`_check_the_rest`, reads.py), so every independent
mistake is reported at once and none is a cascade of another.

Then each change a check proposed is tried on the main file's text and the whole spec
checked again (`check_spec`, proposals.py): the first that clears its finding and adds
none becomes the help and the machine-applicable fix. The driver returns everything
the CLI and the targets need.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .compose import Composed, Loader, compose
from .diagnostics import Collector, Diagnostic
from .source import SourceFile

if TYPE_CHECKING:  # pragma: no cover - types only (the phases are imported when reached)
    from .plan import Facts
    from .schema import Spec
    from .typecheck import SpanIndex, TypeChecker


@dataclass
class CheckResult:
    path: str
    profile: str | None
    diagnostics: list[Diagnostic]
    sources: dict[str, SourceFile]
    ir: Spec | None = None  # when the spec type-checks
    facts: Facts | None = None  # with the IR
    spans: SpanIndex | None = None  # once the type checker ran
    composed: Composed | None = None
    files: list[str] = field(default_factory=list)  # every spec file read

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)


def check_spec(path: str, profile: str | None = None, text: str | None = None, verify: bool = True) -> CheckResult:
    """Run the front end on one spec. Raises SourceError when the main file cannot
    be read and compose.UnknownProfile for an unknown --profile (both misuse).

    With `verify`, the changes the checks propose are each tried on the spec and the
    first that works becomes the help and the fix (proposals.py); the tries themselves
    are checked without it."""
    result = _check(path, profile, text)
    main = result.sources.get(path)
    if verify and main is not None and main.bad_byte_offset is None:
        from .proposals import resolve

        def recheck(edited: str) -> list[Diagnostic]:
            return check_spec(path, profile, text=edited, verify=False).diagnostics

        result.diagnostics = resolve(result.diagnostics, main, profile, recheck)
    else:
        result.diagnostics = [d._replace(proposals=()) if d.proposals else d for d in result.diagnostics]
    return result


def _check(path: str, profile: str | None, text: str | None) -> CheckResult:
    diags = Collector()
    loader = Loader(diags)
    result = CheckResult(path, profile, [], loader.sources)
    composed = compose(path, diags, loader, profile=profile, text=text)
    result.composed = composed
    if composed is None or diags.has_errors:
        return _finish(result, diags, composed)
    result.files = composed.files
    from .typecheck import TypeChecker

    checker = TypeChecker(composed, diags, os.path.dirname(path))
    data = checker.run()
    result.spans = checker.spans
    if diags.has_errors:
        _check_the_rest(data, checker, diags)
        return _finish(result, diags, composed)
    ir = _validate(data, diags, checker.spans)
    if ir is None:
        return _finish(result, diags, composed)
    result.ir = ir
    from .checks import CheckContext, run_all
    from .plan import derive_facts

    result.facts = derive_facts(ir)

    def variant(key: str, value: object) -> list[Diagnostic]:
        """The errors that setting `key = value` would add to the spec's own (found before search runs)."""
        if _same(_lookup(data, key), value):
            return []  # the spec itself: nothing to add
        own = {(d.code, d.message) for d in diags.diagnostics if d.severity == "error"}
        return [d for d in _variant_errors(data, key, value, checker.spans, ir) if (d.code, d.message) not in own]

    run_all(CheckContext(ir, checker.spans, result.facts, diags, checker.distributions, variant))
    return _finish(result, diags, composed)


def _check_the_rest(data: dict, checker: TypeChecker, diags: Collector) -> None:
    """After type errors: run the checks on the fields that were accepted, keeping only
    the findings that read none of the rejected fields (reads.py), so that one mistake
    does not hide the others and no finding is a cascade of one."""
    from .checks import CheckContext, run_all
    from .fields import construct
    from .plan import FACT_STEPS
    from .reads import ROOT, GuardedCollector, Reads, Tracked, derive_tracked
    from .schema import Spec, derive_defaults, rejected_defaults

    rejected = checker.rejected | rejected_defaults(data, checker.rejected)
    checked = derive_defaults(_copy(data))
    reads = Reads(rejected)
    ir: Any = Tracked(construct(Spec, checked), "", reads)
    facts: Any = derive_tracked(FACT_STEPS, ir, reads)

    def variant(key: str, value: object) -> list[Diagnostic]:
        reads.note(ROOT)  # a variant checks the whole spec again, rejected fields and all
        return []

    ctx = CheckContext(ir, checker.spans, facts, GuardedCollector(diags, reads), checker.distributions, variant)
    run_all(ctx, reads)


@dataclass
class SpecCheck:
    """`llmc check` of one spec: the base spec and every profile it defines."""

    base: CheckResult
    profiles: list[CheckResult]  # one per profile checked, in the order the spec defines them
    findings: list[tuple[str | None, Diagnostic]]  # (profile or None for the base, diagnostic)

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for _, d in self.findings)


def check_every_profile(path: str, text: str | None = None, only: str | None = None) -> SpecCheck:
    """The base spec, then each profile of the spec and its extends chain (or just
    `only`, as `--profile` narrows it). A profile's finding that the base check already
    made (same code, span and message) is not said again; the rest carry the profile's
    name (two profiles that both break the same thing each say so). Raises what
    check_spec raises (SourceError; UnknownProfile for `only`).

    Each profile is another front-end run, on the text the base check read: the parse
    of each chunk is reused, the rest (composition onwards) is the profile's own."""
    if only is not None:
        result = check_spec(path, profile=only, text=text)
        return SpecCheck(result, [], [(only, d) for d in result.diagnostics])
    base = check_spec(path, text=text)
    findings: list[tuple[str | None, Diagnostic]] = [(None, d) for d in base.diagnostics]
    checked: list[CheckResult] = []
    if base.composed is None:
        return SpecCheck(base, checked, findings)
    main = base.sources.get(path)
    if text is None and main is not None and main.bad_byte_offset is None:
        text = main.text  # the text the base saw, not read again; the parse of each chunk is reused
    said = {(d.code, d.span, d.message) for d in base.diagnostics}
    for name, overrides in base.composed.profiles.items():
        if not overrides:
            continue  # an empty profile is the base spec
        result = check_spec(path, profile=name, text=text)
        checked.append(result)
        for d in result.diagnostics:
            if (d.code, d.span, d.message) not in said:
                findings.append((name, d))
    return SpecCheck(base, checked, findings)


def _finish(result: CheckResult, diags: Collector, composed: Composed | None) -> CheckResult:
    result.diagnostics = diags.sorted()
    if composed is not None:
        result.files = composed.files
    return result


def _validate(data: dict, diags: Collector, spans: SpanIndex) -> Spec:
    """Checked data -> typed IR.

    The type checker has validated every value against these same models, with
    diagnostics at the right spans, so the IR is constructed without validating
    again (building pydantic's validators would triple the cost of `llmc check`).
    tests/unit/test_schema.py proves the two agree: `Spec.model_validate` of every
    constructed IR returns it unchanged. Deriving defaults fills the data in, so it
    works on a copy.
    """
    from .fields import construct
    from .schema import Spec, derive_defaults

    return construct(Spec, derive_defaults(_copy(data)))


def _copy(data: Any) -> Any:
    """A deep copy of checked data (dicts, lists and immutable leaves), much cheaper than copy.deepcopy."""
    if isinstance(data, dict):
        return {k: _copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_copy(v) for v in data]
    return data


def _lookup(data: dict, key: str) -> object:
    node: object = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


def _same(a: object, b: object) -> bool:
    return type(a) is type(b) and a == b


def _variant_errors(data: dict, key: str, value: object, spans: SpanIndex, ir: Spec) -> list[Diagnostic]:
    """The errors the spec (checked data -> `ir`) has with one field set to `value`
    (all checks but search)."""
    from .checks import CheckContext, run_all
    from .plan import derive_facts

    diags = Collector()
    ir = _variant_ir(data, key, value, ir).model_copy(update={"search": None})  # no recursion into the space
    run_all(CheckContext(ir, spans, derive_facts(ir), diags, {}, None))
    return [d for d in diags.sorted() if d.severity == "error"]


def _variant_ir(data: dict, key: str, value: object, ir: Spec) -> Spec:
    """`ir` with `key = value`: the block holding the key, and the blocks whose derived
    defaults read it, built again from the data; every other block shared with `ir`
    (building the whole IR again is most of a variant's cost)."""
    from .fields import construct, fields_of
    from .schema import DERIVED_FROM_OTHER_BLOCKS, Spec, derive_defaults

    changed = _copy(data)
    node = changed
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    derive_defaults(changed)
    blocks = fields_of(Spec)
    rebuilt = (parts[0],) + DERIVED_FROM_OTHER_BLOCKS.get(parts[0], ())
    if any(name not in blocks or blocks[name].kind != "block" for name in rebuilt):
        return construct(Spec, changed)
    return ir.model_copy(
        update={
            name: construct(blocks[name].block_model, changed[name]) if name in changed else None for name in rebuilt
        }
    )
