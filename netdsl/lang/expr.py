"""Safe arithmetic for spec values: `c * 4`, `2 if i == 0 else 1`, `make_divisible(32 * width)`.

Expressions are parsed with Python's own parser, then only a small whitelist of node types is evaluated:
no attribute access, no subscripts, no lambdas, no imports -- nothing but arithmetic over the names in scope.
Everything an expression can make the compiler do is bounded before it is done: the text's length and nesting,
the size of every string or list it builds (predicted before building it), and the bit length of its integers;
floats must stay finite.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from netdsl.errors import did_you_mean

MAX_EXPR_CHARS = 2_000
"""The longest expression text; longer ones are refused before parsing."""
MAX_EXPR_DEPTH = 100
"""The deepest expression tree (a sum of 100 terms, 100 nested calls); deeper ones are refused before evaluating."""
MAX_VALUE_ITEMS = 10_000
"""The most characters of a string, or items of a list (nested items counted), that an expression may build."""
MAX_INT_BITS = 256
"""The largest integer an expression may compute, in bits (about 77 decimal digits)."""
MAX_ROUND_DIGITS = 100
"""The most digits round(x, n) may be asked for, either side of the point."""


class ExprError(Exception):
    """An expression is malformed, refers to something unknown, or exceeds a budget."""


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channels to a multiple of divisor, never more than 10% below value (torchvision's _make_divisible)."""
    floor = divisor if min_value is None else min_value
    out = max(floor, int(value + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * value else out


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "int": int,
    "float": float,
    "round": round,
    "floor": math.floor,
    "ceil": math.ceil,
    "sqrt": math.sqrt,
    "make_divisible": make_divisible,
    "len": len,
    "sum": sum,
}

_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_CMPOPS: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
# what evaluation may raise on values of the wrong kind or size; each becomes an ExprError naming the expression
_FAULTS = (TypeError, ValueError, ArithmeticError, RecursionError, MemoryError)


def _short(text: str, width: int = 60) -> str:
    """An expression as quoted in a message: on one line, control characters escaped, cut short when long."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in " ".join(text.split()))
    return text if len(text) <= width else f"{text[: width - 3]}..."


def _depth(tree: ast.AST) -> int:
    """The depth of an expression tree, walked without recursion (a deep tree is what this guards against)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


@lru_cache(maxsize=4096)
def _parse(text: str) -> ast.expr:
    source = text.strip()
    if len(source) > MAX_EXPR_CHARS:
        raise ExprError(f"expression '{_short(source, 20)}' is {len(source):,} characters long; expressions are limited to {MAX_EXPR_CHARS:,}")
    try:
        tree = ast.parse(source, mode="eval").body
    except SyntaxError as exc:
        raise ExprError(f"cannot parse expression '{_short(text)}': {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise ExprError(f"expression '{_short(source, 20)}' nests too deeply to parse; expressions are limited to {MAX_EXPR_DEPTH} levels") from None
    depth = _depth(tree)
    if depth > MAX_EXPR_DEPTH:
        raise ExprError(f"expression '{_short(source, 20)}' nests {depth} levels deep; expressions are limited to {MAX_EXPR_DEPTH}")
    return tree


def evaluate(text: str, scope: Mapping[str, Any]) -> Any:
    """Evaluate an expression string over `scope` (names to numbers, booleans, strings)."""
    tree = _parse(text)
    try:
        return _Eval(scope).visit(tree)
    except _FAULTS as exc:  # a safety net: each operation catches its own faults with a sharper message
        raise ExprError(f"cannot evaluate '{_short(text)}': {exc or type(exc).__name__}") from None


_INTERP = re.compile(r"\{([^{}]+)\}")


def interpolate(text: str, scope: Mapping[str, Any]) -> str:
    """Replace each {expr} in a name template, e.g. 'denselayer{i + 1}'; the result is bounded as a built string is."""
    made = 0

    def value(match: re.Match[str]) -> str:
        nonlocal made
        out = str(evaluate(match.group(1), scope))
        made += len(out)
        if made > MAX_VALUE_ITEMS:
            raise ExprError(
                f"'{_short(text, 40)}' would build a string of more than {MAX_VALUE_ITEMS:,} characters; expressions may build at most {MAX_VALUE_ITEMS:,}"
            )
        return out

    return _INTERP.sub(value, text)


def _no_booleans(node: ast.expr, *values: Any) -> None:
    """Refuse arithmetic on true/false: Python counts them as 1/0, a spec means a switch (`se * 4` is a slip)."""
    if any(isinstance(v, bool) for v in values):
        raise ExprError(f"'{ast.unparse(node)}' does arithmetic on a boolean; booleans are not numbers (use 'x if flag else y')")


def _size(value: Any) -> int:
    """The characters of a string, or the items of a list counted at every level (what building it costs)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (list, tuple)):
        return len(value) + sum(_size(v) for v in value if isinstance(v, (str, list, tuple)))
    return 0


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _refuse_size(node: ast.expr, kind: Any, size: int) -> None:
    """Refuse a string or list above MAX_VALUE_ITEMS, before it is built."""
    if size > MAX_VALUE_ITEMS:
        what = f"a string of {size:,} characters" if isinstance(kind, str) else f"a list of {size:,} items"
        raise ExprError(f"'{_short(ast.unparse(node))}' would build {what}; expressions may build at most {MAX_VALUE_ITEMS:,}")


def _predict(node: ast.expr, op: type[ast.operator], left: Any, right: Any) -> None:
    """Refuse an operation whose result would exceed a budget, before computing it."""
    seqs = (str, list, tuple)
    if op is ast.Mult and isinstance(left, seqs) and _is_int(right):
        _refuse_size(node, left, max(right, 0) * _size(left))
    elif op is ast.Mult and isinstance(right, seqs) and _is_int(left):
        _refuse_size(node, right, max(left, 0) * _size(right))
    elif op is ast.Add and isinstance(left, seqs) and isinstance(right, seqs):
        _refuse_size(node, left, _size(left) + _size(right))
    elif op is ast.Mod and isinstance(left, str):
        raise ExprError(f"'{_short(ast.unparse(node))}': string formatting with % is not allowed")
    elif op is ast.Pow and _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1:
        at_least = (abs(left).bit_length() - 1) * right + 1  # 2**k has k + 1 bits; a larger base has more
        if at_least > MAX_INT_BITS:
            raise ExprError(f"'{_short(ast.unparse(node))}' is too large: at least {at_least:,} bits; integers in expressions are limited to {MAX_INT_BITS}")


def _check_result(node: ast.expr, value: Any) -> Any:
    """Refuse a value no spec needs: a non-finite or complex number, an integer above MAX_INT_BITS."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ExprError(f"'{_short(ast.unparse(node))}' gives {value}; a spec value must be finite")
    if _is_int(value) and value.bit_length() > MAX_INT_BITS:
        raise ExprError(f"'{_short(ast.unparse(node))}' is too large: {value.bit_length():,} bits; integers in expressions are limited to {MAX_INT_BITS}")
    if isinstance(value, complex):
        raise ExprError(f"'{_short(ast.unparse(node))}' gives a complex number")
    return value


class _Eval:
    def __init__(self, scope: Mapping[str, Any]):
        self.scope = scope

    def visit(self, node: ast.expr) -> Any:
        method = getattr(self, f"visit_{type(node).__name__}", None)
        if method is None:
            raise ExprError(f"'{ast.unparse(node)}' is not allowed in an expression (only arithmetic, comparisons, if/else and {', '.join(FUNCTIONS)})")
        return method(node)

    def visit_Constant(self, node: ast.Constant) -> Any:
        if not isinstance(node.value, (int, float, str, bool)) and node.value is not None:
            raise ExprError(f"constant {node.value!r} is not allowed")
        if isinstance(node.value, float) and not math.isfinite(node.value):
            raise ExprError("a number in the expression is too large for a float (it reads as inf); a spec value must be finite")
        return _check_result(node, node.value)

    def visit_Name(self, node: ast.Name) -> Any:
        if node.id in self.scope:
            return self.scope[node.id]
        if node.id in ("true", "false"):
            return node.id == "true"
        known = sorted(self.scope)
        raise ExprError(f"unknown name '{node.id}'{did_you_mean(node.id, known)} (known: {', '.join(known) or 'none'})")

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        left, right = self.visit(node.left), self.visit(node.right)
        _no_booleans(node, left, right)
        op = type(node.op)
        if op not in _BINOPS:
            raise ExprError(f"operator in '{_short(ast.unparse(node))}' is not allowed")
        _predict(node, op, left, right)
        try:
            return _check_result(node, _BINOPS[op](left, right))
        except ZeroDivisionError:
            raise ExprError(f"division by zero in '{_short(ast.unparse(node))}'") from None
        except OverflowError:
            raise ExprError(f"'{_short(ast.unparse(node))}' is too large to compute") from None
        except TypeError:
            raise ExprError(f"cannot compute '{_short(ast.unparse(node))}' with {_short(repr(left), 30)} and {_short(repr(right), 30)}") from None

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        value = self.visit(node.operand)
        if isinstance(node.op, ast.Not):
            return not value
        _no_booleans(node, value)
        if not isinstance(value, (int, float)):
            raise ExprError(f"cannot compute '{_short(ast.unparse(node))}' with {_short(repr(value), 30)}: a sign needs a number")
        if isinstance(node.op, ast.USub):
            return -value
        if isinstance(node.op, ast.UAdd):
            return +value
        raise ExprError(f"operator in '{_short(ast.unparse(node))}' is not allowed")

    def visit_BoolOp(self, node: ast.BoolOp) -> Any:
        if isinstance(node.op, ast.And):
            result: Any = True
            for value in node.values:
                result = self.visit(value)
                if not result:
                    return result
            return result
        result = False
        for value in node.values:
            result = self.visit(value)
            if result:
                return result
        return result

    def visit_Compare(self, node: ast.Compare) -> bool:
        left = self.visit(node.left)
        for op, comp in zip(node.ops, node.comparators):
            right = self.visit(comp)
            if isinstance(left, bool) != isinstance(right, bool) and isinstance(left, (int, float)) and isinstance(right, (int, float)):
                raise ExprError(f"'{ast.unparse(node)}' compares a boolean with a number; booleans are not numbers")
            if type(op) not in _CMPOPS:
                raise ExprError(f"comparison in '{ast.unparse(node)}' is not allowed")
            try:
                if not _CMPOPS[type(op)](left, right):
                    return False
            except TypeError:
                raise ExprError(f"cannot compare {_short(repr(left), 30)} with {_short(repr(right), 30)} in '{_short(ast.unparse(node))}'") from None
            left = right
        return True

    def visit_IfExp(self, node: ast.IfExp) -> Any:
        return self.visit(node.body) if self.visit(node.test) else self.visit(node.orelse)

    def visit_Call(self, node: ast.Call) -> Any:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or node.keywords:
            name = ast.unparse(node.func)
            raise ExprError(f"'{name}' is not a function here{did_you_mean(name, FUNCTIONS)} (functions: {', '.join(FUNCTIONS)})")
        args = [self.visit(a) for a in node.args]
        name = node.func.id
        if name != "len":
            _no_booleans(node, *args, *(x for a in args if isinstance(a, (list, tuple)) for x in a))
        if name == "sum" and not all(isinstance(x, (int, float)) for a in args for x in (a if isinstance(a, (list, tuple)) else [a])):
            raise ExprError(f"'{_short(ast.unparse(node))}': sum adds numbers")
        if name == "round" and len(args) > 1 and _is_int(args[1]) and abs(args[1]) > MAX_ROUND_DIGITS:
            raise ExprError(f"'{_short(ast.unparse(node))}': round to at most {MAX_ROUND_DIGITS} digits")
        try:
            return _check_result(node, FUNCTIONS[name](*args))
        except ZeroDivisionError:
            raise ExprError(f"division by zero in '{_short(ast.unparse(node))}'") from None
        except OverflowError as exc:
            raise ExprError(f"'{_short(ast.unparse(node))}' is too large: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ExprError(f"'{_short(ast.unparse(node))}': {exc}") from None

    def visit_Subscript(self, node: ast.Subscript) -> Any:
        seq, index = self.visit(node.value), self.visit(node.slice)
        if not isinstance(seq, (list, tuple)) or isinstance(index, bool) or not isinstance(index, int):
            raise ExprError(f"'{ast.unparse(node)}': only a list can be indexed, by an integer")
        if not -len(seq) <= index < len(seq):
            raise ExprError(f"'{ast.unparse(node)}': index {index} is out of range for {len(seq)} items")
        return seq[index]

    def visit_Tuple(self, node: ast.Tuple | ast.List) -> tuple[Any, ...]:
        items = tuple(self.visit(e) for e in node.elts)
        _refuse_size(node, items, _size(items))
        return items

    visit_List = visit_Tuple
