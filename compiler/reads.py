"""Which later findings a type error taints: the fields each check reads.

A field the type checker rejected is left out of the checked data, so its default
(or nothing) stands in its place. The checks still run on that data, so that a
mistake in one block does not hide the mistakes of the others; but a finding that
read a rejected field would be a cascade, said about a value the user never wrote.

So, when the type checker found errors, the checks read the IR through `Tracked`
proxies that note every field path they read, and the facts through a proxy that
notes the fields each fact was derived from. A finding is kept only when nothing
read before it, in its check, is a rejected field (or lies under or over one).
A check that fails on a missing value is skipped when it read a rejected field; a
check that fails otherwise is a compiler bug and raises.

Nothing here runs on a spec the type checker accepted: the checks then read the
IR itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel

from .diagnostics import Collector

# A read of ROOT stands for reading everything (a variant check rebuilds the whole spec).
ROOT = ""


def covers(read: str, rejected: str) -> bool:
    """Whether reading `read` reads the rejected field (or part of it, or a block holding it)."""
    return read in (ROOT, rejected) or rejected.startswith(read + ".") or read.startswith(rejected + ".")


class Reads:
    """The field paths read since the last `fresh()`, against the fields the type checker rejected."""

    def __init__(self, rejected: Iterable[str]):
        self.rejected = frozenset(rejected)
        self.current: set[str] = set()

    def note(self, path: str) -> None:
        self.current.add(path)

    def notes(self, paths: Iterable[str]) -> None:
        self.current.update(paths)

    def tainted(self) -> bool:
        return any(covers(read, bad) for read in self.current for bad in self.rejected)

    @contextmanager
    def fresh(self) -> Iterator[None]:
        """A part of a check that reads on its own: what it reads does not taint what follows."""
        outer = self.current
        self.current = set()
        try:
            yield
        finally:
            self.current = outer


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class Tracked:
    """A read-only view of an IR block that notes the path of every field read.

    Blocks read through it come back tracked; a leaf, a list or a dict read is noted
    whole. A method called on the block (`model_copy`) is noted as reading the whole
    block. `isinstance` sees the wrapped block's class.
    """

    __slots__ = ("_llmc_obj", "_llmc_path", "_llmc_reads")

    def __init__(self, obj: BaseModel, path: str, reads: Reads):
        object.__setattr__(self, "_llmc_obj", obj)
        object.__setattr__(self, "_llmc_path", path)
        object.__setattr__(self, "_llmc_reads", reads)

    @property  # type: ignore[misc]  # isinstance() of a proxy asks for the wrapped class
    def __class__(self) -> type:
        return type(self._llmc_obj)

    def __getattr__(self, name: str) -> Any:
        obj, path, reads = self._llmc_obj, self._llmc_path, self._llmc_reads
        if name in type(obj).model_fields:
            sub = _join(path, name)
            reads.note(sub)  # before the read: a field left unset raises AttributeError
            value = getattr(obj, name)
            if isinstance(value, BaseModel):
                reads.current.discard(sub)  # a block read is not a read of all its fields
                return Tracked(value, sub, reads)
            return value
        reads.note(path)  # a method or a class attribute: it may read anything in the block
        return getattr(obj, name)

    def __setattr__(self, name: str, value: Any) -> None:  # pragma: no cover - the checks never write
        raise AttributeError("the IR is read-only")

    def __eq__(self, other: object) -> bool:
        self._llmc_reads.note(self._llmc_path)
        return self._llmc_obj == (other._llmc_obj if isinstance(other, Tracked) else other)

    def __hash__(self) -> int:
        self._llmc_reads.note(self._llmc_path)
        return hash(self._llmc_obj)

    def __repr__(self) -> str:
        return f"Tracked({self._llmc_path or 'spec'})"


# What code written for checked values raises on a missing or defaulted one.
ON_A_MISSING_VALUE = (AssertionError, AttributeError, KeyError, TypeError, ValueError, ZeroDivisionError)


class _Broken:
    """A fact whose derivation failed on a missing value."""

    def __init__(self, error: Exception):
        self.error = error


class TrackedFacts:
    """The facts, each read noting the fields it was derived from."""

    def __init__(self, values: dict[str, Any], sources: dict[str, frozenset[str]], reads: Reads):
        self._values, self._sources, self._reads = values, sources, reads

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        self._reads.notes(self._sources.get(name, ()))
        value = self._values.get(name)
        if isinstance(value, _Broken):
            raise value.error
        return value

    def _replace(self, **changes: Any) -> TrackedFacts:
        return TrackedFacts({**self._values, **changes}, self._sources, self._reads)


def derive_tracked(steps: Iterable[tuple[str, Callable[[Any, Any], Any]]], ir: Tracked, reads: Reads) -> TrackedFacts:
    """Run the fact derivation's steps, noting the fields each step read (directly, or
    through the facts it used). A step that fails after reading a rejected field leaves
    a broken fact, which fails each check that reads it in turn."""
    facts = TrackedFacts({}, {}, reads)
    for name, step in steps:
        with reads.fresh():
            try:
                value: Any = step(ir, facts)
            except ON_A_MISSING_VALUE as exc:
                if not reads.tainted():
                    raise
                value = _Broken(exc)
            facts._values[name] = value
            facts._sources[name] = frozenset(reads.current)
    return facts


class GuardedCollector(Collector):
    """Reports to `into` only the findings whose check read no rejected field."""

    def __init__(self, into: Collector, reads: Reads):
        super().__init__()
        self.into, self.reads = into, reads

    def report(self, code: str, span, message: str, **kwargs: Any) -> None:
        if not self.reads.tainted():
            self.into.report(code, span, message, **kwargs)

    error = report
    warning = report


def run_guarded(check: Callable[[], None], reads: Reads) -> None:
    """Run one check; a failure on a value the type checker rejected ends it quietly."""
    with reads.fresh():
        try:
            check()
        except ON_A_MISSING_VALUE:
            if not reads.tainted():
                raise
