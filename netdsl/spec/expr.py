"""Safe arithmetic for spec values: `c * 4`, `2 if i == 0 else 1`, `make_divisible(32 * width)`.

Expressions are parsed with Python's own parser, then only a small whitelist of node types is evaluated:
no attribute access, no subscripts, no lambdas, no imports -- nothing but arithmetic over the names in scope.
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


class ExprError(Exception):
    """An expression is malformed or refers to something unknown."""


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


@lru_cache(maxsize=4096)
def _parse(text: str) -> ast.expr:
    try:
        return ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ExprError(f"cannot parse expression '{text}': {exc.msg}") from None


def evaluate(text: str, scope: Mapping[str, Any]) -> Any:
    """Evaluate an expression string over `scope` (names to numbers, booleans, strings)."""
    return _Eval(scope).visit(_parse(text))


_INTERP = re.compile(r"\{([^{}]+)\}")


def interpolate(text: str, scope: Mapping[str, Any]) -> str:
    """Replace each {expr} in a name template, e.g. 'denselayer{i + 1}'."""
    return _INTERP.sub(lambda m: str(evaluate(m.group(1), scope)), text)


def _no_booleans(node: ast.expr, *values: Any) -> None:
    """Refuse arithmetic on true/false: Python counts them as 1/0, a spec means a switch (`se * 4` is a slip)."""
    if any(isinstance(v, bool) for v in values):
        raise ExprError(f"'{ast.unparse(node)}' does arithmetic on a boolean; booleans are not numbers (use 'x if flag else y')")


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
        return node.value

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
            raise ExprError(f"operator in '{ast.unparse(node)}' is not allowed")
        if op is ast.Pow and (abs(right) > 64 or abs(left) > 1 << 20):
            raise ExprError(f"'{ast.unparse(node)}' is too large")
        try:
            return _BINOPS[op](left, right)
        except ZeroDivisionError:
            raise ExprError(f"division by zero in '{ast.unparse(node)}'") from None
        except TypeError:
            raise ExprError(f"cannot compute '{ast.unparse(node)}' with {left!r} and {right!r}") from None

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        value = self.visit(node.operand)
        if not isinstance(node.op, ast.Not):
            _no_booleans(node, value)
        if isinstance(node.op, ast.USub):
            return -value
        if isinstance(node.op, ast.UAdd):
            return +value
        if isinstance(node.op, ast.Not):
            return not value
        raise ExprError(f"operator in '{ast.unparse(node)}' is not allowed")

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
            if not _CMPOPS[type(op)](left, right):
                return False
            left = right
        return True

    def visit_IfExp(self, node: ast.IfExp) -> Any:
        return self.visit(node.body) if self.visit(node.test) else self.visit(node.orelse)

    def visit_Call(self, node: ast.Call) -> Any:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or node.keywords:
            name = ast.unparse(node.func)
            raise ExprError(f"'{name}' is not a function here{did_you_mean(name, FUNCTIONS)} (functions: {', '.join(FUNCTIONS)})")
        args = [self.visit(a) for a in node.args]
        if node.func.id != "len":
            _no_booleans(node, *args, *(x for a in args if isinstance(a, (list, tuple)) for x in a))
        try:
            return FUNCTIONS[node.func.id](*args)
        except (TypeError, ValueError) as exc:
            raise ExprError(f"'{ast.unparse(node)}': {exc}") from None

    def visit_Subscript(self, node: ast.Subscript) -> Any:
        seq, index = self.visit(node.value), self.visit(node.slice)
        if not isinstance(seq, (list, tuple)) or isinstance(index, bool) or not isinstance(index, int):
            raise ExprError(f"'{ast.unparse(node)}': only a list can be indexed, by an integer")
        if not -len(seq) <= index < len(seq):
            raise ExprError(f"'{ast.unparse(node)}': index {index} is out of range for {len(seq)} items")
        return seq[index]

    def visit_Tuple(self, node: ast.Tuple) -> tuple[Any, ...]:
        return tuple(self.visit(e) for e in node.elts)

    visit_List = visit_Tuple
