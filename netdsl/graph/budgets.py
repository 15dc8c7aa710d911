"""The spec's budgets checked on the built graph: exceeding `limits: {params: 5M, macs: 600M}` is an error naming the
biggest contributors. Without an entry, parameters and activations have a ceiling no machine reaches (DEFAULT_BUDGETS):
past it the spec is surely a slip, such as an input of 3x100000x100000."""

from __future__ import annotations

import math
from collections.abc import Callable

from netdsl.analysis.counts import FLOAT_BYTES, Row, analyze
from netdsl.errors import Diagnostic, Loc
from netdsl.ir import Graph
from netdsl.lang.limits import DEFAULT_BUDGETS, LIMITS, parse_amount
from netdsl.lang.yaml_tree import YMap
from netdsl.layers.base import parse_shape


def _biggest(graph: Graph, size: Callable[[Row], int], total: int) -> list[Row]:
    """The three biggest rows, at the first depth where no single group holds most of the total."""
    top: list[Row] = []
    for depth in range(1, 8):
        rows = [r for r in analyze(graph, depth).rows if not r.is_header]
        top = sorted(rows, key=size, reverse=True)[:3]
        if not top or size(top[0]) * 2 <= total or top[0].name in {n.name for n in graph.nodes}:
            break
    return top


SHARE: dict[str, Callable[[Row], int]] = {"params": lambda r: r.params, "trainable": lambda r: r.trainable, "macs": lambda r: r.macs}


def _contributors(graph: Graph, key: str, total: int) -> str:
    """'; biggest: a 10 (50%), ...' for a budget shared out over rows (activations are not)."""
    share = SHARE.get(key)
    if share is None:
        return ""
    top = _biggest(graph, share, total)
    biggest = ", ".join(f"{r.name} {share(r):,} ({100 * share(r) / total:.0f}%)" for r in top if share(r))
    return f"; biggest: {biggest}" if biggest else ""


def check_limits(tree: YMap, graph: Graph) -> list[Diagnostic]:
    """One diagnostic per exceeded budget, located at the limit (or, for a default ceiling, at the input), naming the
    three biggest top-level contributors."""
    limits = tree.get("limits")
    given = dict(limits) if isinstance(limits, YMap) else {}
    out = _default_ceilings(tree, graph, given)
    given.pop("nodes", None)  # the node budget is enforced during expansion
    if not given or not isinstance(limits, YMap):
        return out
    report = analyze(graph, 1)
    actual = {"params": report.params, "trainable": report.trainable, "macs": report.macs, "activations": report.memory.activation_bytes}
    for key, raw in given.items():
        budget = parse_amount(raw)
        if actual[key] <= budget:
            continue
        tail = _contributors(graph, key, actual[key])
        out.append(
            Diagnostic(limits.value_locs[key], f"{LIMITS[key]} {actual[key]:,} exceed the budget limits.{key} = {budget:,} by {actual[key] - budget:,}{tail}")
        )
    return out


def _default_ceilings(tree: YMap, graph: Graph, given: dict[str, object]) -> list[Diagnostic]:
    """Parameters or activations beyond what any machine holds, where the spec sets no budget of its own: located at the input."""
    actual = {"params": sum(n.param_count() for n in graph.nodes), "activations": FLOAT_BYTES * sum(math.prod(n.shape) for n in graph.nodes)}
    written = parse_shape(tree.get("input")) == graph.input_shape
    loc = tree.value_locs.get("input", Loc(graph.file, 1, 1)) if written else Loc.argument("--input")
    shape = "x".join(map(str, graph.input_shape))
    for key, budget in DEFAULT_BUDGETS.items():
        if key in given or actual[key] <= budget:
            continue
        raise_to = f"{math.ceil(actual[key] / 10**12)}T"
        tail = _contributors(graph, key, actual[key])
        message = (
            f"input {shape} gives {actual[key]:,} {LIMITS[key]}, beyond the default budget of {budget:,} (raise it with limits: {{{key}: {raise_to}}}){tail}"
        )
        return [Diagnostic(loc, message)]  # one slip, one line: the activations usually follow from the same input
    return []
