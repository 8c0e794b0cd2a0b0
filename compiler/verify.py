"""Every rendered file is verified before anything is written.

A failure here is a compiler bug (a template produced something its language
rejects), reported as an internal error that names the artifact and its template.
"""

import json
import subprocess
from functools import lru_cache


class ArtifactError(Exception):
    pass


def verify(path: str, text: str) -> None:
    """Raise ArtifactError unless `text` is well-formed for the kind of file `path` is."""
    name = path.rsplit("/", 1)[-1]
    suffix = name.rsplit(".", 1)[-1]
    error = _verify_content(suffix, text)
    if error:
        raise ArtifactError(f"{path}: {error}")


@lru_cache(maxsize=1024)
def _verify_content(suffix: str, text: str) -> str:
    """The problem with a file's content, or "" (memoised: identical files verify once)."""
    try:
        _verify(f"x.{suffix}", text)
    except ArtifactError as exc:
        return str(exc).split(": ", 1)[1]
    return ""


def _verify(path: str, text: str) -> None:
    name = path
    if name.endswith(".py"):
        try:
            compile(text, path, "exec")
        except SyntaxError as exc:
            raise ArtifactError(f"{path}: Python does not compile: {exc.msg} (line {exc.lineno})") from None
    elif name.endswith((".yaml", ".yml")):
        import yaml

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        try:
            list(yaml.load_all(text, Loader=loader))
        except yaml.YAMLError as exc:
            raise ArtifactError(f"{path}: YAML does not load: {exc}") from None
    elif name.endswith(".json"):
        try:
            json.loads(text)
        except ValueError as exc:
            raise ArtifactError(f"{path}: JSON does not load: {exc}") from None
    elif name.endswith(".sh"):
        proc = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ArtifactError(f"{path}: bash -n rejects it: {proc.stderr.strip()}")
    elif name.endswith((".pbtxt", ".config")):
        check_text_proto(path, text)


def check_text_proto(path: str, text: str) -> None:
    """Protobuf text format, structurally: fields, values, balanced braces, closed strings.

    The field names are checked against the real messages in the tests (TF Serving's
    ModelServerConfig, Triton's ModelConfig); this keeps the compiler free of protobuf.
    """
    depth = 0
    i, n = 0, len(text)
    expect_value = False
    while i < n:
        ch = text[i]
        if ch in " \t\r\n,;":
            i += 1
        elif ch == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif ch == '"' or ch == "'":
            j = i + 1
            while j < n and text[j] != ch:
                if text[j] == "\n":
                    raise ArtifactError(f"{path}: text proto string not closed on its line")
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                raise ArtifactError(f"{path}: text proto string not closed")
            i = j + 1
            expect_value = False
        elif ch in "{<":
            depth += 1
            i += 1
            expect_value = False
        elif ch in "}>":
            depth -= 1
            if depth < 0:
                raise ArtifactError(f"{path}: unbalanced `}}` in text proto")
            i += 1
        elif ch == ":":
            expect_value = True
            i += 1
        elif ch in "[]":
            i += 1
        elif ch.isalnum() or ch in "_-.+":
            while i < n and (text[i].isalnum() or text[i] in "_-.+"):
                i += 1
            expect_value = False
        else:
            raise ArtifactError(f"{path}: unexpected {ch!r} in text proto")
    if depth != 0:
        raise ArtifactError(f"{path}: unbalanced braces in text proto")
    if expect_value:
        raise ArtifactError(f"{path}: a field has no value")
