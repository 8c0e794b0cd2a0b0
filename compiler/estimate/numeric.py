"""The numeric guards every estimate is built on, and how estimates are written.

Estimates are total on positive inputs: an int too large for a float becomes inf, a
NaN (inf - inf, 0 x inf) becomes +inf, and a division by zero is inf (0 / 0 is 0),
so huge values give huge or infinite results, never ZeroDivisionError or
OverflowError. The formats use decimal units, as the device catalog does.
"""

import math

_INF = math.inf


def _num(x) -> float:
    """float(x), with ints too large for a float becoming +inf (or -inf)."""
    try:
        v = float(x)
    except OverflowError:
        return _INF if x > 0 else -_INF
    return v


def _clean(x: float) -> float:
    """NaN (from inf - inf or 0 * inf) becomes +inf: an estimate that cannot be computed is not small."""
    return _INF if x != x else x


def _div(a: float, b: float) -> float:
    a, b = _num(a), _num(b)
    if b == 0:
        return 0.0 if a == 0 else _INF
    if math.isinf(a) and math.isinf(b):
        return _INF
    return _clean(a / b)


def _prod(*xs) -> float:
    """Product that is 0 when any factor is 0 (even if another is inf)."""
    vals = [_num(x) for x in xs]
    if any(v == 0 for v in vals):
        return 0.0
    r = 1.0
    for v in vals:
        r *= v
    return _clean(r)


def _ceil_clamp(x: float, lo: int, hi: float) -> float:
    """ceil(x) clamped to [lo, hi]; inf and NaN go to hi."""
    x = _num(x)
    if x != x or x >= hi:
        return hi
    if x <= lo:
        return lo
    return max(lo, min(hi, math.ceil(x)))


def format_bytes(n: float) -> str:
    """Decimal units, as the catalog: 3.2 GB, 41.9 MB, 12.0 kB, 512 B."""
    n = _num(n)
    if n != n or math.isinf(n):
        return "inf GB"
    if n >= 1e17:
        return f"{n / 1e9:.3g} GB"
    if n >= 1e8:
        return f"{n / 1e9:.1f} GB"
    if n >= 1e5:
        return f"{n / 1e6:.1f} MB"
    if n >= 1e3:
        return f"{n / 1e3:.1f} kB"
    return f"{n:.0f} B"


def format_seconds(s: float) -> str:
    s = _num(s)
    if s != s or math.isinf(s):
        return "inf s"
    if s >= 1e6:
        return f"{s:.3g} s"
    if s >= 1.0:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} µs"


def format_count(n: float) -> str:
    n = _num(n)
    if math.isinf(n) or n != n:
        return "inf"
    if n >= 1e15:
        return f"{n:.3g}"
    if n >= 1e9:
        return f"{n / 1e9:.2f}B"
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    if n >= 1e3:
        return f"{n / 1e3:.1f}k"
    return f"{n:g}"
