"""The docs are tested: every spec snippet, `llmc` command and repository path they
show is real, and the device table is the catalog's.

Spec snippets are the ```llm fences of README.md and docs/**/*.md. How each is checked:

* A snippet with a `model` block or an `extends` statement is a whole spec: it is
  checked as it stands, as a file in the base spec's folder (specs/), so relative
  paths and `extends` resolve as they would there.
* Any other snippet is a fragment, completed by overlaying it on a whole base spec:
  specs/translator.llm, or the file a first-line comment `# base: specs/classifier.llm`
  names. The overlay works on the text, at the spans of both files' parsed ASTs, one
  top-level statement of the fragment at a time:
  - a block replaces, whole, the base's block of the same name wherever it sits (the
    shallowest one; for a repeatable block such as `metric "bleu"`, the one with the
    same label): `transformer {}` replaces model's transformer, `serve {}` replaces serve;
  - a block the base lacks is added inside the block that holds it in the schema,
    creating missing parents (`prune {}` goes into compress); a block the schema does
    not know (`trian {}`) is added at the top level;
  - a `let` replaces the base's `let` of the same name, or is added at the top;
  - a `profile` replaces the base's profile of the same name, or is added at the end.
* A snippet that does not parse is checked as it stands: a syntax error does not
  depend on the rest of the spec.

Then, in docs/errors/CODE.md the erroneous example must produce CODE (a data file
code, E901-E909 and W901, with the data check of `llmc check --data`: its example
names a file of examples/data/broken/), and the fixed
example must not produce CODE and must have no errors at all (warnings are allowed
unless CODE is one; NOT_CLEAN below lists, with reasons, pages exempt from "no errors").
A fix shows what changes, so a fixed example that is a fragment is laid over the
completed erroneous example (when that parses), not over the base: a block the fix
leaves out stays as the erroneous example had it (FIXED_OVER_BASE lists exceptions).
Elsewhere, a snippet followed by a fence that shows diagnostics must produce exactly
the codes shown; any other snippet must have no errors. The base's profiles are not
applied (their overrides name fields a fragment may have replaced); a snippet that
defines a profile is checked with it as well as without.

README.md's tour shows `llmc check` transcripts; each is rerun and compared, a
transcript marked `# with NAME = VALUE` on the first attribute NAME of the spec
changed to VALUE.
"""

from __future__ import annotations

import argparse
import functools
import re
from pathlib import Path

import pytest
from helpers import ROOT, run_cli

from llmc.compiler import ast, catalog
from llmc.compiler.data_check import DATA_CODES
from llmc.compiler.diagnostics import Collector
from llmc.compiler.parse import parse
from llmc.compiler.source import SourceFile

DEFAULT_BASE = "specs/translator.llm"
DOC_FILES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
ERROR_PAGES = sorted((ROOT / "docs" / "errors").glob("*.md"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# --- reading markdown ------------------------------------------------------------------


_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)


def fences(text: str) -> list[tuple[str, str, int]]:
    """(info string, body, start offset) of each fenced block, in order."""
    return [(m.group(1).strip(), m.group(2), m.start()) for m in _FENCE.finditer(text)]


def prose(text: str) -> str:
    """The text outside fences."""
    return _FENCE.sub("", text)


def code_spans(text: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", prose(text))


def section(text: str, heading: str) -> str:
    """The text under `## heading` up to the next `## `."""
    m = re.search(rf"^## {re.escape(heading)}[ \t]*\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    return m.group(1) if m else ""


def llm_snippets(text: str) -> list[str]:
    return [body for info, body, _ in fences(text) if info == "llm"]


# --- completing a fragment -------------------------------------------------------------


def _parsed(text: str, path: str = "snippet.llm") -> ast.File | None:
    diags = Collector()
    tree = parse(SourceFile(path, text), diags)
    return None if tree is None or diags.has_errors else tree


def _offset(text: str, line: int, col: int) -> int:
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    return starts[line - 1] + col - 1


def _cut(text: str, span) -> tuple[int, int]:
    return _offset(text, span.line, span.col), _offset(text, span.end_line, span.end_col)


def _reindent(block_text: str, from_col: int, indent: str) -> str:
    """A statement's text moved from column `from_col` to `indent` (first line excluded)."""
    lines = block_text.split("\n")
    moved = [lines[0]]
    for line in lines[1:]:
        strip = min(from_col - 1, len(line) - len(line.lstrip(" ")))
        moved.append((indent + line[strip:]) if line.strip() else "")
    return "\n".join(moved)


@functools.cache
def _schema_paths() -> dict[str, list[tuple[tuple[str, ...], str]]]:
    """Block name -> [(path from the top, field kind)] for every block of the schema."""
    from llmc.compiler.fields import fields_of
    from llmc.compiler.schema import Spec

    found: dict[str, list[tuple[tuple[str, ...], str]]] = {}

    def walk(model, path):
        for name, ft in fields_of(model).items():
            if ft.kind in ("block", "blocks", "map", "space"):
                found.setdefault(name, []).append((path + (name,), ft.kind))
                if ft.model is not None and ft.kind in ("block", "blocks"):
                    walk(ft.model, path + (name,))

    walk(Spec, ())
    return found


def _blocks(statements, depth=0):
    """(depth, block) of every block, outermost first."""
    for st in statements:
        if isinstance(st, ast.Block):
            yield depth, st
            yield from _blocks(st.items, depth + 1)


def _child_block(statements, name):
    return next((st for st in statements if isinstance(st, ast.Block) and st.name == name), None)


def _overlay_one(base_text: str, fragment: str, st) -> str:
    """The base text with one top-level statement of the fragment put in."""
    base = _parsed(base_text)
    assert base is not None, "the base spec does not parse"
    start, end = _cut(fragment, st.span)
    piece = fragment[start:end]

    def replace(old) -> str:
        a, b = _cut(base_text, old.span)
        return base_text[:a] + _reindent(piece, st.span.col, " " * (old.span.col - 1)) + base_text[b:]

    if isinstance(st, ast.Let):
        let = next((s for s in base.statements if isinstance(s, ast.Let) and s.name == st.name), None)
        return replace(let) if let else piece + "\n" + base_text
    if isinstance(st, ast.Profile):
        profile = next((s for s in base.statements if isinstance(s, ast.Profile) and s.name == st.name), None)
        return replace(profile) if profile else base_text.rstrip("\n") + "\n\n" + piece + "\n"
    if not isinstance(st, ast.Block):
        raise ValueError(f"a fragment's top-level `{st.key}` has no place in a spec: put it in its block")
    places = _schema_paths().get(st.name)
    if not places:  # not a block of the language (`trian {}`): at the top, for the checker to report
        return base_text.rstrip("\n") + "\n\n" + piece + "\n"
    path, kind = min(places, key=lambda pk: len(pk[0]))
    if sum(len(p) == len(path) for p, _ in places) > 1:
        raise ValueError(f"block `{st.name}` could sit in several places: {places}")
    same = [
        (d, b) for d, b in _blocks(base.statements) if b.name == st.name and (kind != "blocks" or b.label == st.label)
    ]
    if same:
        return replace(min(same, key=lambda db: db[0])[1])
    # Not in the base: put it inside its parent, creating the parents it lacks.
    statements, parent = base.statements, None
    depth = 0
    for name in path[:-1]:
        child = _child_block(statements, name)
        if child is None:
            break
        parent, statements, depth = child, child.items, depth + 1
    missing = path[depth:-1]
    if parent is None and missing and missing[0] == "model":
        raise ValueError("the base has no model block")
    indent = "  " * depth
    text = _reindent(piece, st.span.col, indent + "  " * len(missing))
    for i, name in reversed(list(enumerate(missing))):
        outer = indent + "  " * i
        text = f"{name} {{\n{outer}  {text}\n{outer}}}"
    if parent is None:
        return base_text.rstrip("\n") + "\n\n" + text + "\n"
    at = _offset(base_text, parent.close_span.line, 1)
    return base_text[:at] + indent + text + "\n" + base_text[at:]


def base_of(snippet: str) -> str:
    m = re.match(r"#\s*base:\s*(\S+)", snippet)
    return m.group(1) if m else DEFAULT_BASE


def complete(snippet: str, over: tuple[str, str, list[str]] | None = None) -> tuple[str, str, list[str]]:
    """(path to check it as, the whole spec, the profiles to check it with) for a snippet;
    a fragment is laid over `over` (another snippet's completion) instead of its base."""
    base = ROOT / base_of(snippet)
    path = str(base.parent / "doc-snippet.llm")
    fragment = _parsed(snippet)
    if fragment is None:
        return path, snippet, []
    profiles = [st.name for st in fragment.statements if isinstance(st, ast.Profile)]
    if any(
        isinstance(st, ast.Extends) or (isinstance(st, ast.Block) and st.name == "model") for st in fragment.statements
    ):
        return path, snippet, profiles
    if over is not None:
        path, text = over[0], over[1]
        profiles = list(dict.fromkeys(over[2] + profiles))
    else:
        text = base.read_text(encoding="utf-8")
    for st in fragment.statements:
        text = _overlay_one(text, snippet, st)
    return path, text, profiles


def check_snippet(
    snippet: str, over: tuple[str, str, list[str]] | None = None, data: bool = False
) -> tuple[set[str], bool, str]:
    """(codes found, whether there were errors, the rendered diagnostics) of a snippet,
    without a profile and with each profile it defines; with `data`, its data files
    read too (`llmc check --data`)."""
    from llmc.compiler.data_check import check_data
    from llmc.compiler.diagnostic_output import render_human
    from llmc.compiler.driver import check_spec

    path, text, profiles = complete(snippet, over)
    codes, errors, shown = set(), False, []
    for profile in [None, *profiles]:
        result = check_spec(path, profile=profile, text=text)
        found = list(result.diagnostics)
        if data:
            report = check_data([(profile, result)])
            found += [d for _, d in report.findings]
        codes |= {d.code for d in found}
        errors = errors or any(d.severity == "error" for d in found)
        shown.append(render_human(found, {**result.sources, **(report.sources if data else {})}))
    return codes, errors, "\n".join(shown) + "\n--- checked as ---\n" + text


# --- the overlay itself ------------------------------------------------------------------


def _ir(snippet: str):
    from llmc.compiler.driver import check_spec

    path, text, _ = complete(snippet)
    result = check_spec(path, text=text)
    assert result.ir is not None, [d.message for d in result.diagnostics]
    return result.ir, text


def test_a_fragment_block_replaces_the_block_of_that_name_wherever_it_sits():
    ir, text = _ir("transformer {\n  layers  = 2\n  d_model = 128\n  heads   = 4\n  vocab   = 1000\n}\n")
    arch = ir.model.transformer
    assert (arch.layers, arch.d_model, arch.heads, arch.vocab) == (2, 128, 4, 1000)
    assert arch.max_len == 512 and arch.d_ff == 512  # replaced whole: defaults, not the base's 256 and 2048
    assert ir.serve.device == "T4" and ir.train.batch_size == 512  # the rest is the base's
    assert text.count("transformer {") == 1 and "\n  transformer {\n    layers  = 2\n" in text


def test_a_top_level_fragment_block_replaces_the_top_level_block():
    ir, _ = _ir('serve {\n  device = "L4"\n  sla {\n    p99_latency = 90ms\n    throughput  = 10rps\n  }\n}\n')
    assert ir.serve.device == "L4" and ir.serve.sla.throughput == 10
    assert ir.serve.replicas.max != 16  # the base's replicas block went with its serve block


def test_a_repeatable_block_replaces_only_the_one_with_its_label():
    ir, _ = _ir('metric "bleu" {\n  min = 10.0\n}\nmetric "ter" {\n  max = 60.0\n}\n')
    assert ir.evaluate.metric["bleu"].min == 10.0 and ir.evaluate.metric["bleu"].max_drop is None
    assert ir.evaluate.metric["chrf"].min == 55.0  # kept
    assert ir.evaluate.metric["ter"].max == 60.0  # added beside the others


def test_a_block_the_base_lacks_goes_into_its_parent_and_missing_parents_are_made(tmp_path):
    base = (ROOT / DEFAULT_BASE).read_text(encoding="utf-8")
    start = base.index("compress {")
    end = base.index("evaluate {")
    without = base[:start] + base[end:]
    without = re.sub(r"\n  compress\.[^\n]*", "", without)  # the local profile's overrides
    (tmp_path / "base.llm").write_text(without, encoding="utf-8")
    snippet = (
        f'# base: {tmp_path / "base.llm"}\nprune {{\n  method   = "magnitude"\n  sparsity = 20%\n}}\n'
        "resources {\n  cpu = 3\n}\n"
    )
    ir, text = _ir(snippet)
    assert ir.compress.prune.sparsity == 0.2 and ir.compress.distill is None
    assert ir.serve.resources.cpu == 3 and ir.serve.device == "T4"
    assert '\ncompress {\n  prune {\n    method   = "magnitude"\n' in text


def test_a_let_replaces_the_base_let_of_that_name():
    ir, _ = _ir("let width = 256\n")
    assert ir.model.transformer.d_model == 256 and ir.model.transformer.d_ff == 1024


def test_a_profile_replaces_the_base_profile_and_is_checked_with():
    codes, errors, shown = check_snippet("profile local {\n  train.cluster.gpus = 1\n}\n")
    assert "E213" in codes and errors, shown
    _, text, profiles = complete("profile local {\n  train.epochs = 1\n}\n")
    assert profiles == ["local"] and "train.cluster.hosts" not in text


def test_whole_specs_and_snippets_that_do_not_parse_are_checked_as_they_stand():
    whole = (ROOT / "specs" / "classifier.llm").read_text(encoding="utf-8")
    assert complete(whole)[1] == whole
    broken = "transformer {\n  layers: 6\n}\n"
    assert complete(broken)[1] == broken
    assert "E101" in check_snippet(broken)[0] or "E103" in check_snippet(broken)[0]


def test_the_base_comment_picks_the_base():
    ir, _ = _ir("# base: specs/classifier.llm\nmlp {\n  inputs  = 64\n  hidden  = [32]\n  classes = 10\n}\n")
    assert ir.model.name == "classifier" and ir.model.mlp.hidden == [32]


def test_a_block_the_schema_does_not_know_goes_to_the_top_level():
    _, text, _ = complete("trian {\n  epochs = 1\n}\n")
    assert text.endswith("\n\ntrian {\n  epochs = 1\n}\n") and "\ntrain {\n" in text
    assert "E201" in check_snippet("trian {\n  epochs = 1\n}\n")[0]


def test_a_fragment_laid_over_another_keeps_what_it_leaves_out():
    over = complete("let width = 256\n")
    path, text, _ = complete(
        'serve {\n  device = "L4"\n  sla {\n    p99_latency = 90ms\n    throughput  = 10rps\n  }\n}\n', over
    )
    assert path == over[0] and "let width = 256" in text and 'device = "L4"' in text


def test_a_fragment_attribute_outside_any_block_is_refused():
    with pytest.raises(ValueError, match="has no place"):
        complete("batch_size = 64\n")


# --- the pages of docs/errors ----------------------------------------------------------

# Pages whose fixed example cannot check clean, with the reason. (None today.)
NOT_CLEAN: dict[str, str] = {}
# Pages whose fixed example is laid over the base, not over the erroneous example, with the reason.
FIXED_OVER_BASE = {
    "E201": "the fix renames a block (`trian` to `train`): over the erroneous example the misspelled one would stay"
}


def _example(page: Path, heading: str) -> str:
    snippets = llm_snippets(section(page.read_text(encoding="utf-8"), heading))
    assert len(snippets) == 1, f"{_rel(page)}: expected one ```llm fence under '## {heading}', found {len(snippets)}"
    return snippets[0]


@pytest.mark.parametrize("page", ERROR_PAGES, ids=[p.stem for p in ERROR_PAGES])
def test_an_erroneous_example_produces_its_code(page: Path):
    codes, _, shown = check_snippet(_example(page, "Erroneous example"), data=page.stem in DATA_CODES)
    assert page.stem in codes, f"{_rel(page)}: the erroneous example does not produce {page.stem}:\n{shown}"


@pytest.mark.parametrize("page", ERROR_PAGES, ids=[p.stem for p in ERROR_PAGES])
def test_a_fixed_example_is_clean(page: Path):
    erroneous = _example(page, "Erroneous example")
    # A fix shows what changes: what it leaves out stays as the erroneous example had it.
    over = complete(erroneous) if _parsed(erroneous) is not None and page.stem not in FIXED_OVER_BASE else None
    codes, errors, shown = check_snippet(_example(page, "Fixed example"), over, data=page.stem in DATA_CODES)
    assert page.stem not in codes, f"{_rel(page)}: the fixed example still produces {page.stem}:\n{shown}"
    if page.stem not in NOT_CLEAN:
        assert not errors, f"{_rel(page)}: the fixed example has errors:\n{shown}"


# --- other spec snippets -----------------------------------------------------------------


_SHOWN_CODE = re.compile(r"^(?:error|warning)\[([EW]\d{3})\]", re.M)


def _other_snippets() -> list[tuple[str, str, set[str] | None]]:
    """(where, snippet, the codes the doc shows after it, or None when it shows none)."""
    found = []
    for doc in DOC_FILES:
        if doc.parent.name == "errors":
            continue
        blocks = fences(doc.read_text(encoding="utf-8"))
        for i, (info, body, _) in enumerate(blocks):
            if info != "llm":
                continue
            after = blocks[i + 1][1] if i + 1 < len(blocks) else ""
            shown = set(_SHOWN_CODE.findall(after))
            found.append((f"{_rel(doc)}#{i}", body, shown or None))
    return found


OTHER_SNIPPETS = _other_snippets()


@pytest.mark.parametrize("where, snippet, shown", OTHER_SNIPPETS, ids=[w for w, _, _ in OTHER_SNIPPETS])
def test_other_snippets_check_as_the_text_says(where: str, snippet: str, shown: set[str] | None):
    codes, errors, rendered = check_snippet(snippet)
    if shown is None:
        assert not errors, f"{where} is shown as valid but has errors:\n{rendered}"
    else:
        assert codes == shown, f"{where} is shown producing {sorted(shown)}:\n{rendered}"


def test_the_finders_find_snippets_of_both_kinds():
    # An empty list would pass every test above.
    assert len(ERROR_PAGES) >= 40
    kinds: dict[str, set[frozenset[str]]] = {where.split("#")[0]: set() for where, _, _ in OTHER_SNIPPETS}
    for where, _, shown in OTHER_SNIPPETS:
        kinds[where.split("#")[0]].add(frozenset(shown or ()))
    assert kinds["docs/devices.md"] == {frozenset(), frozenset({"E309"})}


# --- README's transcripts -----------------------------------------------------------------


def _transcripts() -> list[tuple[str, str | None, str]]:
    """(spec, `NAME = VALUE` change or None, expected output) of README's `llmc check` runs."""
    found = []
    for _, body, _ in fences((ROOT / "README.md").read_text(encoding="utf-8")):
        first, _, output = body.partition("\n")
        m = re.match(r"\$ (?:\.venv/bin/)?llmc check (\S+)\s*(?:#\s*with\s+(.+?))?\s*$", first)
        if m:
            found.append((m.group(1), m.group(2), output))
    return found


TRANSCRIPTS = _transcripts()


def test_readme_shows_a_clean_check_and_one_with_a_mistake():
    assert [change is None for _, change, _ in TRANSCRIPTS][:2] == [True, False]


@pytest.mark.parametrize("spec, change, expected", TRANSCRIPTS, ids=[c or "as is" for _, c, _ in TRANSCRIPTS])
def test_readme_check_transcripts_are_what_llmc_prints(spec: str, change: str | None, expected: str):
    from llmc.compiler.diagnostic_output import render_human, summary_line
    from llmc.compiler.driver import check_spec

    if change is None:
        code, out, err = run_cli("check", spec, cwd=ROOT)
        assert code == 0, err
        actual = out + err
    else:
        name, value = (s.strip() for s in change.split("=", 1))
        text = (ROOT / spec).read_text(encoding="utf-8")
        changed, n = re.subn(rf"(?m)^(\s*{re.escape(name)}\s*=\s*)\S.*$", lambda m: m.group(1) + value, text, count=1)
        assert n == 1, f"{spec} has no attribute {name}"
        result = check_spec(spec, text=changed)
        actual = render_human(result.diagnostics, result.sources) + f"{spec}: {summary_line(result.diagnostics)}\n"
        shown = set(_SHOWN_CODE.findall(expected))
        assert {d.code for d in result.diagnostics} == shown
    assert actual.rstrip() == expected.rstrip()


# --- commands and paths -------------------------------------------------------------------


def _code_texts(doc: Path) -> list[str]:
    text = doc.read_text(encoding="utf-8")
    return code_spans(text) + [body for _, body, _ in fences(text)]


def _commands() -> list[tuple[str, str]]:
    """(doc, the command line from `llmc` on) for each `llmc WORD` in code."""
    found = []
    for doc in DOC_FILES:
        for code in _code_texts(doc):
            for line in code.split("\n"):
                for m in re.finditer(r"(?:^|(?<=[\s/$(]))llmc((?:[ \t]+[^\s#;&`)]+)+)", line):
                    found.append((_rel(doc), "llmc" + m.group(1)))
    return found


COMMANDS = _commands()


def _subcommands() -> dict:
    from llmc.compiler.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_the_docs_name_commands():
    words = {c.split()[1] for _, c in COMMANDS}
    assert {"check", "build", "plan", "run", "runs", "fmt", "explain", "schema"} <= words, words


@pytest.mark.parametrize("doc, command", COMMANDS, ids=[f"{d}:{c}" for d, c in COMMANDS])
def test_every_command_the_docs_name_exists(doc: str, command: str):
    words = command.split()
    subcommands = _subcommands()
    if words[1].startswith("-") or words[1].isupper():
        return  # `llmc --version`, a flag of llmc itself; `llmc COMMAND`, a placeholder
    assert words[1] in subcommands, f"{doc}: `{command}`: llmc has no command {words[1]!r}"
    parser, first = subcommands[words[1]], 2
    nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if nested:  # `llmc search apply`: the action is a command of its own
        assert len(words) > 2 and words[2] in nested[0].choices, (
            f"{doc}: `{command}`: `llmc {words[1]}` needs an action"
        )
        parser, first = nested[0].choices[words[2]], 3
    options = {s: a for a in parser._actions for s in a.option_strings}
    for i, word in enumerate(words[first:], start=first):
        if word == "|":
            break  # a shell pipe: the rest is another command
        word = word.strip("[]")
        if not word.startswith("-") or word in ("-", "--"):
            continue
        flag, _, inline = word.partition("=")
        assert flag in options, f"{doc}: `{command}`: `{' '.join(words[:first])}` has no option {flag}"
        choices = options[flag].choices
        value = inline or (words[i + 1].strip("[]") if i + 1 < len(words) else "")
        if choices and value and not value.startswith("-") and not value.isupper():
            for alternative in value.split("|"):
                assert alternative in choices, f"{doc}: `{command}`: {flag} takes {list(choices)}, not {alternative!r}"


# Folders the docs describe as outputs of a build or a run, not files of the repository.
_OUTPUTS = ("build/", "runs/")


def _paths() -> list[tuple[str, str]]:
    """(doc, path) for every repository path named in code or a link."""
    tops = {p.name for p in ROOT.iterdir() if not p.name.startswith(".")} - {o.rstrip("/") for o in _OUTPUTS}
    found = []
    for doc in DOC_FILES:
        text = doc.read_text(encoding="utf-8")
        for code in _code_texts(doc):
            for token in code.split():
                token = re.sub(r"(:\d+)+$", "", token.strip("()[],;:\"'`"))
                if "/" in token and token.split("/")[0] in tops and not re.search(r"[<>*{}$]|SPEC", token):
                    found.append((_rel(doc), token))
        for target in re.findall(r"\]\(([^)\s]+)\)", prose(text)):
            if not re.match(r"[a-z]+:|#", target):
                resolved = (doc.parent / target.split("#")[0]).resolve()
                found.append(
                    (
                        _rel(doc),
                        resolved.relative_to(ROOT).as_posix() if resolved.is_relative_to(ROOT) else str(resolved),
                    )
                )
    return sorted(set(found))


PATHS = _paths()


def test_the_docs_name_paths():
    named = {p for _, p in PATHS}
    assert {"specs/translator.llm", "docs/estimates.md", "bench/bench_build.py"} <= named


@pytest.mark.parametrize("doc, path", PATHS, ids=[f"{d}:{p}" for d, p in PATHS])
def test_every_path_the_docs_name_exists(doc: str, path: str):
    # `tests/x.py::test_name` names a test: the file must define it.
    path, _, test = path.partition("::")
    assert (ROOT / path).exists(), f"{doc} names {path}, which does not exist"
    if test:
        source = (ROOT / path).read_text(encoding="utf-8")
        assert re.search(rf"^def {re.escape(test)}\(", source, re.M), f"{doc} names {path}::{test}, which is not there"


# --- devices --------------------------------------------------------------------------------


def test_the_device_table_in_the_docs_is_the_catalog():
    from llmc.compiler.docs import DEVICE_TABLE_BEGIN, DEVICE_TABLE_END, device_table

    text = (ROOT / "docs" / "devices.md").read_text(encoding="utf-8")
    shown = text.split(DEVICE_TABLE_BEGIN, 1)[1].split(DEVICE_TABLE_END, 1)[0]
    assert shown.strip() == device_table().strip(), "docs/devices.md: regenerate the table from compiler/docs.py"
    rows = [line.split("|")[1].strip().strip("`") for line in shown.strip().split("\n")[2:]]
    assert rows == catalog.names()


def test_the_device_table_states_each_figure_of_the_catalog():
    from llmc.compiler.docs import device_table

    rows = {
        line.split("|")[1].strip().strip("`"): [c.strip() for c in line.split("|")[2:-1]]
        for line in device_table().strip().split("\n")[2:]
    }
    a100 = rows["A100-80GB"]
    assert a100 == ["80", "19.5", "312", "312", "624", "2,039"]
    assert rows["T4"][3] == "-"  # no bf16
    assert rows["H200-141GB"][-1] == "4,800"


def test_docs_that_name_devices_point_at_the_table():
    assert "devices.md" in (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    e309 = (ROOT / "docs" / "errors" / "E309.md").read_text(encoding="utf-8")
    assert "devices.md" in e309
    listed = re.search(r"Known devices:(.*?)\.\n", e309, re.S).group(1)
    assert re.findall(r"`([^`]+)`", listed) == catalog.names()


def test_the_schema_lists_the_devices_wherever_a_device_is_accepted():
    from llmc.compiler.schema import json_schema

    schema = json_schema()
    defs = schema["$defs"]
    for model, field in (("Cluster", "device"), ("Serve", "device")):
        assert defs[model]["properties"][field]["enum"] == catalog.names()
    # Any other field named like a device must list them too.
    for model, body in defs.items():
        for field, prop in body.get("properties", {}).items():
            if "device" in field and prop.get("type") == "string":
                assert prop.get("enum") == catalog.names(), f"{model}.{field}"


def test_an_unknown_device_is_still_e309(tmp_path):
    spec = tmp_path / "t.llm"
    spec.write_text((ROOT / DEFAULT_BASE).read_text(encoding="utf-8").replace('"T4"', '"t4"'), encoding="utf-8")
    code, _, err = run_cli("check", "-q", str(spec))
    assert code == 1 and "error[E309]" in err and 'did you mean "T4"?' in err
