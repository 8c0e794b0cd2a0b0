"""Rendering artifacts from templates, with an escaping filter per target language.

Templates only loop and fill in. Every value from a spec reaches an artifact
through one of these filters, never by pasting text:

    {{ value | py }}     a Python literal (repr of str/int/float/bool/None/list/dict)
    {{ value | yaml }}   a YAML scalar or flow collection (JSON is valid YAML)
    {{ value | json }}   JSON
    {{ value | json_block }}  JSON, each object member on its own line
    {{ value | sh }}     one shell word (single-quoted when needed)
    {{ value | proto }}  a protobuf text-format string literal, "..." with C escapes
    {{ value | md }}     Markdown inline text with its specials escaped
    {{ value | md_code }}  a Markdown code span (`text`): a fence longer than any run
                         of backticks in it, nothing escaped (a code span shows backslashes)

A string holding quotes, newlines, `{{ }}`, `#` or YAML specials stays data in every
artifact. Jinja runs with StrictUndefined, so a missing context field is an error in
the compiler, never an empty string in an artifact.
"""

import json
import math
import pickle
import re
import shlex
from functools import lru_cache
from pathlib import Path


def templates_dir() -> Path:
    """templates/, shipped as the package data `llmc.templates`."""
    from importlib import resources

    return Path(str(resources.files("llmc.templates")))


class TemplateError(Exception):
    """A template failed to render: a compiler bug, reported with the template's name."""


def py_literal(value) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, (list, dict, str, int, float, bool)) or value is None:
        _check_plain(value)
        return repr(value)
    raise TemplateError(f"cannot write {type(value).__name__} as a Python literal")


def _check_plain(value) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _check_plain(k)
            _check_plain(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _check_plain(v)
    elif not (isinstance(value, (str, int, float, bool)) or value is None):
        raise TemplateError(f"cannot write {type(value).__name__} as a literal")


def json_literal(value) -> str:
    kind = type(value)
    if kind is str and _JSON_PLAIN.fullmatch(value):
        return f'"{value}"'  # what json.dumps writes, without its overhead
    if kind is int:
        return str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=isinstance(value, dict))


# Strings json.dumps writes as they are, in quotes.
_JSON_PLAIN = re.compile('[^"\\\\\x00-\x1f]*')


def json_block(value, depth: int = 0) -> str:
    """JSON laid out for review: each object member on a line of its own (two-space
    indent), every other value on one line as `json` writes it (`[0.9, 0.999]`)."""
    if isinstance(value, dict) and value:
        inner = "  " * (depth + 1)
        members = [f"{inner}{json_literal(str(k))}: {json_block(v, depth + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(members) + "\n" + "  " * depth + "}"
    return json_literal(value)


def yaml_literal(value) -> str:
    # JSON is a subset of YAML 1.2 (and of what PyYAML and Kubernetes read): a
    # double-quoted JSON string escapes quotes, backslashes, newlines and control
    # characters, and no YAML special (`#`, `: `, `{`, `*`, `&`, `!`, `%`) is active
    # inside quotes.
    kind = type(value)
    if kind is str and _YAML_PLAIN.fullmatch(value):
        return f'"{value}"'  # what the general path writes, without json.dumps' overhead
    if kind is int:
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise TemplateError("YAML artifacts take finite numbers only")
    text = json.dumps(value, ensure_ascii=False)
    # Characters YAML does not allow raw, or reads as line breaks (NEL, LS, PS) that a
    # double-quoted scalar would fold, are written as YAML escapes instead.
    return _YAML_UNSAFE.sub(_yaml_escape, text)


_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")
# Strings that JSON writes as they are and YAML reads back unchanged inside quotes.
_YAML_PLAIN = re.compile('[^"\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]*')


def _yaml_escape(match: re.Match) -> str:
    return f"\\u{ord(match.group()):04X}"


def sh_word(value) -> str:
    return shlex.quote(str(value))


def proto_string(value) -> str:
    """A text-format string literal: printable ASCII as is, the rest as octal escapes."""
    out = ['"']
    for byte in str(value).encode("utf-8"):
        ch = chr(byte)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= byte < 127:
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")
    out.append('"')
    return "".join(out)


def md_text(value) -> str:
    text = str(value).replace("\r", " ").replace("\n", " ")
    for ch in "\\`*_[]<>|":
        text = text.replace(ch, "\\" + ch)
    return text


def md_code(value) -> str:
    text = str(value).replace("\r", " ").replace("\n", " ")
    runs = [len(r) for r in re.findall(r"`+", text)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


@lru_cache(maxsize=1)
def environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
        bytecode_cache=_bytecode_cache(jinja2),
    )
    env.filters.update(
        py=py_literal,
        yaml=yaml_literal,
        json=json_literal,
        json_block=json_block,
        sh=sh_word,
        proto=proto_string,
        md=md_text,
        md_code=md_code,
    )
    return env


def _bytecode_cache(jinja2):
    """Compiled templates cached on disk (Jinja checks each template's source hash)."""
    import os
    import tempfile

    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    directory = os.path.join(root, "llmc", "jinja")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError:
        directory = tempfile.gettempdir()
    return jinja2.FileSystemBytecodeCache(directory)


def render(template: str, context) -> str:
    """The template filled in with `context` (memoised: see _memo_key)."""
    key = _memo_key(template, context)
    text = _RENDERED.get(key) if key is not None else None
    if text is None:
        text = _render(template, context)
        if key is not None:
            if len(_RENDERED) >= _RENDERED_MAX:
                _RENDERED.clear()
            _RENDERED[key] = text
    return text


# Building many specs in one process (a sweep, `llmc build a.llm b.llm ...`, the tests)
# renders most artifacts from the same context again: a spec that changes one number
# changes model.json, not the Kubernetes manifests. Contexts are plain data (tuples,
# lists, dicts, str, numbers), so their pickle is a key that tells 1, 1.0 and True
# apart, which `==` would not.
_RENDERED: dict[tuple[str, bytes], str] = {}
_RENDERED_MAX = 2048


def _memo_key(template: str, context) -> tuple[str, bytes] | None:
    try:
        return template, pickle.dumps(context, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError):
        return None  # not plain data: render every time


def _render(template: str, context) -> str:
    import jinja2

    try:
        text = environment().get_template(template).render(ctx=context)
    except jinja2.TemplateError as exc:
        raise TemplateError(f"template {template}: {exc}") from exc
    except TemplateError as exc:
        raise TemplateError(f"template {template}: {exc}") from exc
    return text if text.endswith("\n") else text + "\n"
