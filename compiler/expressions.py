"""Expression evaluation: lets, references and arithmetic with honest units.

Every value keeps the span of the expression that produced it, so a type error
found later points at the use. A failed evaluation reports once and yields None;
whatever depends on it stays quiet instead of cascading.
"""

from typing import Any, NamedTuple

from . import ast
from .compose import Composed, lookup_entry
from .diagnostics import Collector, Fix
from .fields import bare_word, walk_schema
from .parse import MAX_FLOAT, MAX_INT
from .source import Span
from .suggest import closest

QUANTITY_KINDS = ("duration", "size", "fraction", "rate")
_KIND_NAMES = {
    "number": "a number",
    "bool": "a boolean",
    "str": "a string",
    "list": "a list",
    "dist": "a distribution",
    "duration": "a duration",
    "size": "a size",
    "fraction": "a fraction",
    "rate": "a rate",
}
DISTRIBUTIONS = ("uniform", "loguniform", "quniform", "randint", "normal", "choice")


class Value(NamedTuple):
    kind: str  # number | bool | str | list | dist | duration | size | fraction | rate
    value: Any  # int/float; bool; str; tuple[Value, ...] for list; (name, tuple[Value, ...]) for dist
    span: Span

    def describe(self) -> str:
        return _KIND_NAMES[self.kind]

    def show(self, limit: int = 60) -> str:
        """The value as a message quotes it (long ones shortened with `…`)."""
        text = self._show()
        return text if len(text) <= limit else text[: limit - 1] + "…"

    def _show(self) -> str:
        if self.kind == "str":
            return f'"{self.value}"'
        if self.kind == "bool":
            return "true" if self.value else "false"
        if self.kind == "list":
            return "[" + ", ".join(v.show() for v in self.value) + "]"
        if self.kind == "dist":
            name, args = self.value
            return f"{name}(" + ", ".join(a.show() for a in args) + ")"
        return format_quantity(self.kind, self.value)


def format_quantity(kind: str, x: float | int) -> str:
    """A number in a readable unit: 0.08 s -> `80ms`, 0.999 -> `99.9%`."""
    if kind == "number":
        return _short(x)
    if kind == "fraction":
        return _short(round(x * 100, 10)) + "%"
    if kind == "rate":
        return _short(x) + "rps"
    if x == 0:
        return {"duration": "0s", "size": "0B"}.get(kind, "0")
    if kind == "duration":
        for unit, f in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1), ("ms", 1e-3), ("us", 1e-6)):
            if abs(x) >= f or unit == "us":
                return _short(float(f"{x / f:.4g}")) + unit
    if kind == "size":
        for unit, f in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3), ("B", 1)):
            if abs(x) >= f or unit == "B":
                return _short(float(f"{x / f:.4g}")) + unit
    return _short(x)


def _short(x: float | int) -> str:
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:g}" if isinstance(x, float) else str(x)


class Evaluator:
    def __init__(self, composed: Composed, diags: Collector):
        self.composed = composed
        self.diags = diags
        self._memo: dict[int, Value | None] = {}
        self._active: list[tuple[int, str]] = []  # (id of expression being evaluated, its name)

    # --- entry points ---

    def entry(self, expr: ast.Expr, name: str) -> Value | None:
        """Evaluate the expression of an attribute (memoised, cycle-checked)."""
        key = id(expr)
        if key in self._memo:
            return self._memo[key]
        if any(k == key for k, _ in self._active):
            self._cycle(expr, name)
            return None
        self._active.append((key, name))
        try:
            result = self.expr(expr)
        finally:
            self._active.pop()
        self._memo[key] = result
        return result

    def _cycle(self, expr: ast.Expr, name: str) -> None:
        names = [n for _, n in self._active]
        start = names.index(name) if name in names else 0
        chain = " -> ".join(names[start:] + [name])
        self.diags.error(
            "E211",
            expr.span,
            f"reference cycle: {chain}",
            label="this value depends on itself",
            help="break the cycle by writing one of these values as a literal",
        )

    # --- expressions ---

    def expr(self, e: ast.Expr) -> Value | None:
        if isinstance(e, ast.Number):
            return Value("number", e.value, e.span)
        if isinstance(e, ast.Quantity):
            return Value(e.kind, e.value, e.span)
        if isinstance(e, ast.String):
            return Value("str", e.value, e.span)
        if isinstance(e, ast.Bool):
            return Value("bool", e.value, e.span)
        if isinstance(e, ast.ListExpr):
            items = [self.expr(i) for i in e.items]
            if any(i is None for i in items):
                return None
            return Value("list", tuple(items), e.span)
        if isinstance(e, ast.Call):
            return self.call(e)
        if isinstance(e, ast.Ref):
            return self.ref(e)
        if isinstance(e, ast.Unary):
            return self.negate(e)
        return self.binary(e)

    def call(self, e: ast.Call) -> Value | None:
        if e.name not in DISTRIBUTIONS:
            guess = closest(e.name, DISTRIBUTIONS)
            self.diags.error(
                "E204",
                e.name_span,
                f"unknown function `{e.name}`",
                label="not a search distribution",
                help=(f"did you mean `{guess}`? " if guess else "") + "the only calls are " + ", ".join(DISTRIBUTIONS),
            )
            return None
        args = [self.expr(a) for a in e.args]
        if any(a is None for a in args):
            return None
        return Value("dist", (e.name, tuple(args)), e.span)

    def ref(self, e: ast.Ref) -> Value | None:
        path = e.path
        lets = self.composed.lets
        if len(path) == 1 and path[0] in lets:
            let = lets[path[0]]
            v = self.entry(let.value, path[0])
            return _moved(v, e.span)
        ft, _consumed, problem = walk_schema(path)
        if problem or ft is None:
            guess = closest(path[0], list(lets)) if len(path) == 1 else None
            # A bare word as a field's whole value (`precision = bf16`) is likely a string.
            bare = (
                bare_word(self._active[-1][1], path[0])
                if (len(path) == 1 and self._active and self._active[-1][0] == id(e))
                else None
            )
            if bare is not None and (bare.certain or not guess):
                self.diags.error(
                    "E210",
                    e.span,
                    f"unknown reference `{e.dotted}`",
                    label=f"no `let` or field named `{e.dotted}`",
                    help=bare.help,
                    fix=[Fix(e.span, bare.replacement)],
                )
                return None
            self.diags.error(
                "E210",
                e.span,
                f"unknown reference `{e.dotted}`",
                label=problem if not guess else f"no `let` or field named `{e.dotted}`",
                help=(
                    f"did you mean `{guess}`?"
                    if guess
                    else "a reference names a `let` or a field by its absolute path, e.g. `model.transformer.d_model`"
                ),
                fix=[Fix(e.span, guess)] if guess else (),
            )
            return None
        if ft.is_block:
            self.diags.error(
                "E210",
                e.span,
                f"`{e.dotted}` is a block, not a value",
                help="refer to one of its fields, e.g. `" + e.dotted + ".FIELD`",
            )
            return None
        entry = lookup_entry(self.composed.root, path)
        if entry is not None:
            return _moved(self.entry(entry.expr, e.dotted), e.span)
        if ft.default is not None and not isinstance(ft.default, (list, dict)):
            return _default_value(ft, e.span)
        self.diags.error(
            "E210",
            e.span,
            f"`{e.dotted}` is not set in this spec",
            label="nothing to refer to",
            help="set it explicitly; derived defaults cannot be referred to",
        )
        return None

    def negate(self, e: ast.Unary) -> Value | None:
        v = self.expr(e.operand)
        if v is None:
            return None
        if v.kind == "number" or v.kind in QUANTITY_KINDS:
            return Value(v.kind, -v.value, e.span)
        self.diags.error("E204", e.span, f"cannot negate {v.describe()}", label=f"this is {v.describe()}")
        return None

    def binary(self, e: ast.Binary) -> Value | None:
        word = _comment_word(e, self.composed.lets) if e.op == "//" else None
        if word is not None:
            # `batch_size = 256 // per-rank`: a comment written with `//`, its one word read as a name
            self.diags.error(
                "E210",
                word.span,
                f"unknown reference `{word.dotted}`",
                label="`//` is integer division",
                help="comments start with `#`: write `#` instead of `//`",
                fix=[Fix(e.op_span, "#")],
            )
            return None
        a, b = self.expr(e.left), self.expr(e.right)
        if a is None or b is None:
            return None
        kind = _result_kind(e.op, a.kind, b.kind)
        if kind is None:
            self.diags.error(
                "E204",
                e.span,
                f"cannot apply `{e.op}` to {a.describe()} and {b.describe()}",
                label=f"{a.show()} {e.op} {b.show()}",
                help=_mix_help(e.op, a.kind, b.kind),
            )
            return None
        x, y = a.value, b.value
        try:
            if e.op == "+":
                r = x + y
            elif e.op == "-":
                r = x - y
            elif e.op == "*":
                r = x * y
            elif e.op == "/":
                r = x / y
            elif e.op == "//":
                r = x // y
            else:
                r = x % y
        except ZeroDivisionError:
            self.diags.error("E205", e.span, "division by zero", label=f"{b.show()} is zero")
            return None
        except OverflowError:
            r = float("inf")
        if isinstance(r, (int, float)) and not isinstance(r, bool):
            if (isinstance(r, float) and (r != r or abs(r) > MAX_FLOAT)) or (isinstance(r, int) and abs(r) > MAX_INT):
                self.diags.error("E205", e.span, "result out of range", label="too large for a spec value")
                return None
            if kind == "size" and isinstance(r, float):
                r = int(r)  # sizes are whole bytes: a fractional result rounds down
            if kind in ("number", "fraction") and a.kind == "number" and b.kind == "number" and e.op == "/":
                r = float(r)
        return Value(kind, r, e.span)


def _comment_word(e: ast.Binary, lets: dict[str, ast.Let]) -> ast.Ref | None:
    """A literal `//` a single unknown name with no `let` near it: a comment's one word (else None)."""
    right = e.right
    if (
        isinstance(e.left, (ast.Number, ast.Quantity, ast.String))
        and isinstance(right, ast.Ref)
        and len(right.path) == 1
        and right.span.line == e.op_span.line
        and walk_schema(right.path)[0] is None
        and closest(right.path[0], list(lets)) is None
        and right.path[0] not in lets
    ):
        return right
    return None


def _moved(v: Value | None, span: Span) -> Value | None:
    # A value reached through a reference is reported at the reference.
    return None if v is None else Value(v.kind, v.value, span)


def _default_value(ft, span: Span) -> Value:
    d = ft.default
    if isinstance(d, bool):
        return Value("bool", d, span)
    if isinstance(d, str):
        return Value("str", d, span)
    if ft.kind == "quantity" and ft.quantity in QUANTITY_KINDS:
        return Value(ft.quantity, d, span)
    return Value("number", d, span)


_NUMERIC = ("number", "fraction")


def _result_kind(op: str, a: str, b: str) -> str | None:
    """The kind of `a op b`, or None when the units do not allow it."""
    if op == "+" and a == b and a in ("str", "list"):
        return a
    a_num, b_num = a in _NUMERIC, b in _NUMERIC
    a_q, b_q = a in QUANTITY_KINDS and a != "fraction", b in QUANTITY_KINDS and b != "fraction"
    if a_num and b_num:
        # A fraction is a number that remembers its `%`: it survives + - * // %, and
        # dividing by a plain number; fraction / fraction is a plain ratio.
        if op == "/":
            return "fraction" if a == "fraction" and b == "number" else "number"
        return "fraction" if "fraction" in (a, b) else "number"
    if op in ("+", "-", "%"):
        return a if a_q and a == b else None
    if op == "*":
        if a_q and b_num:
            return a
        if b_q and a_num:
            return b
        return None
    if op in ("/", "//"):
        if a_q and b_num:
            return a
        if a_q and a == b:
            return "number"
        return None
    return None


def _mix_help(op: str, a: str, b: str) -> str:
    if a in QUANTITY_KINDS and b in QUANTITY_KINDS:
        return "units must match: a duration adds to a duration, a size to a size"
    if op in ("+", "-") and ({a, b} & set(QUANTITY_KINDS)) and ({a, b} & {"number"}):
        return "give the number a unit, e.g. `5ms` rather than `5`"
    if op == "*" and a in QUANTITY_KINDS and b in QUANTITY_KINDS:
        return "multiply a quantity by a plain number, e.g. `2 * 25ms`"
    return "arithmetic works on numbers and quantities; `+` also joins strings and lists"
