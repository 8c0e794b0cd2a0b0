"""The units of the language: each unit's kind and scale, and the spellings people reach for.

Its own module so that the lexer (which joins a unit word to the number before it)
and the parser (which scales the number) both read it without importing each other.
"""

from decimal import Decimal

# The unit fixes the type; values are scaled to their kind's normal form (docs/language.md).
UNITS: dict[str, tuple[str, Decimal]] = {
    "us": ("duration", Decimal("0.000001")),
    "ms": ("duration", Decimal("0.001")),
    "s": ("duration", Decimal(1)),
    "m": ("duration", Decimal(60)),
    "h": ("duration", Decimal(3600)),
    "d": ("duration", Decimal(86400)),
    "B": ("size", Decimal(1)),
    "KB": ("size", Decimal(10) ** 3),
    "MB": ("size", Decimal(10) ** 6),
    "GB": ("size", Decimal(10) ** 9),
    "TB": ("size", Decimal(10) ** 12),
    "KiB": ("size", Decimal(2) ** 10),
    "MiB": ("size", Decimal(2) ** 20),
    "GiB": ("size", Decimal(2) ** 30),
    "TiB": ("size", Decimal(2) ** 40),
    "%": ("fraction", Decimal("0.01")),
    "rps": ("rate", Decimal(1)),
}


# Spellings people reach for, and the unit they mean (only for the "did you mean").
UNIT_ALIASES = {
    "sec": "s",
    "secs": "s",
    "second": "s",
    "seconds": "s",
    "min": "m",
    "mins": "m",
    "minute": "m",
    "minutes": "m",
    "hr": "h",
    "hrs": "h",
    "hour": "h",
    "hours": "h",
    "day": "d",
    "days": "d",
    "msec": "ms",
    "msecs": "ms",
    "millis": "ms",
    "usec": "us",
    "µs": "us",
    "b": "B",
    "kb": "KB",
    "mb": "MB",
    "gb": "GB",
    "tb": "TB",
    "kib": "KiB",
    "mib": "MiB",
    "gib": "GiB",
    "tib": "TiB",
    "qps": "rps",
    "rs": "rps",
    "req": "rps",
    "percent": "%",
    "pct": "%",
    # Kubernetes quantities: `Gi` is a gibibyte, `G` a gigabyte.
    "Ki": "KiB",
    "Mi": "MiB",
    "Gi": "GiB",
    "Ti": "TiB",
    "K": "KB",
    "k": "KB",
    "M": "MB",
    "G": "GB",
    "T": "TB",
}


def unit_guess(unit: str) -> str | None:
    from .suggest import closest

    return UNIT_ALIASES.get(unit) or UNIT_ALIASES.get(unit.lower()) or closest(unit, UNITS)


def unit_help(unit: str, literal: str | None) -> str:
    known = ", ".join(UNITS)
    lead = f"did you mean `{literal}`? " if literal else ""
    return f"{lead}units are {known}"


# Words the lexer joins to a number before them (`300 ms`): units, and the
# spellings of them people reach for (reported with the unit they mean).
UNIT_WORDS = frozenset(UNITS) | frozenset(UNIT_ALIASES)
