"""Budgets in the spec: `limits: {params: 5M, macs: 600M, nodes: 200k}`; exceeding one is an error naming the biggest contributors.

Without an entry, the node budget is DEFAULT_NODES (expansion enforces it, see build.py) and parameters and activations
have a ceiling no machine reaches (DEFAULT_BUDGETS): past it the spec is surely a slip, such as an input of 3x100000x100000.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from netdsl.analysis import FLOAT_BYTES, Row, analyze
from netdsl.errors import Diagnostic, Loc
from netdsl.ir import Graph
from netdsl.spec.yaml_tree import YList, YMap

SUFFIX = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
LIMIT_PATTERN = r"^\d+(\.\d+)?\s*[kKMGT]?$"
DEFAULT_NODES = 20_000  # 6x the biggest zoo spec (preact_resnet1001: 3,338 nodes); expansion costs ~80 us a node, so a spec at the budget loads in ~2 s
LIMITS = {
    "params": "parameters",
    "trainable": "trainable parameters",
    "macs": "MACs per sample",
    "activations": "activation bytes per sample",
    "nodes": f"nodes after expansion, layers a `when` switches off included (default {DEFAULT_NODES:,})",
}
DEFAULT_BUDGETS = {"params": 10**12, "activations": 4 * 10**12}  # 4 TB of float32 weights; 4 TB of activations for one sample


def parse_amount(value: int | float | str) -> int:
    """5M -> 5_000_000; 1.5G -> 1_500_000_000; plain numbers pass through."""
    if isinstance(value, (int, float)):
        return int(value)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kKMGT]?)", value.strip())
    if not m:
        raise ValueError(value)
    return int(float(m.group(1)) * SUFFIX[m.group(2)])


def node_budget(tree: YMap) -> int:
    """The spec's `limits.nodes`, or the default."""
    limits = tree.get("limits")
    raw = limits.get("nodes") if isinstance(limits, YMap) else None
    try:
        return DEFAULT_NODES if raw is None else parse_amount(raw)
    except (ValueError, TypeError, AttributeError):
        return DEFAULT_NODES  # the schema reports it


def written_layers_over_budget(tree: Any) -> list[Diagnostic]:
    """More layers written out in `layers` than the node budget allows, found before the schema check (which takes
    ~100 us a layer, seconds for a megabyte of them): the node-budget error, at the first layer past the budget."""
    if not isinstance(tree, YMap):
        return []
    budget, count = node_budget(tree), 0
    layers = tree.get("layers")
    stack: list[tuple[YList, int]] = [(layers, 0)] if isinstance(layers, YList) else []
    while stack:  # depth-first, in the order written; iterative, however deep the groups nest
        items, k = stack.pop()
        while k < len(items):
            inner, k = _grouped_layers(items[k]), k + 1
            if isinstance(inner, YList):
                stack.append((items, k))
                items, k = inner, 0
            elif inner is None:
                count += 1
                if count > budget:
                    message = f"the network reaches at least {count:,} nodes with this layer, beyond the budget of {budget:,} nodes (raise it with limits: {{nodes: N}})"
                    return [Diagnostic(items.item_locs[k - 1], message)]
    return []


def _grouped_layers(item: Any) -> Any:
    """The `layers` of a group or repeat item, else None (a layer or a block use: at least one node)."""
    if isinstance(item, YMap) and len(item) == 1:
        ((key, value),) = item.items()
        if key in ("group", "repeat") and isinstance(value, YMap):
            return value.get("layers")
    return None


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
    from netdsl.spec.load import parse_shape  # load imports this module

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
