"""Budgets in the spec: `limits: {params: 5M, macs: 600M}`; exceeding one is an error naming the biggest contributors."""

from __future__ import annotations

import re
from collections.abc import Callable

from netdsl.analysis import Row, analyze
from netdsl.errors import Diagnostic
from netdsl.ir import Graph
from netdsl.spec.yaml_tree import YMap

SUFFIX = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
LIMIT_PATTERN = r"^\d+(\.\d+)?\s*[kKMGT]?$"
LIMITS = {"params": "parameters", "trainable": "trainable parameters", "macs": "MACs per sample", "activations": "activation bytes per sample"}


def parse_amount(value: int | float | str) -> int:
    """5M -> 5_000_000; 1.5G -> 1_500_000_000; plain numbers pass through."""
    if isinstance(value, (int, float)):
        return int(value)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kKMGT]?)", value.strip())
    if not m:
        raise ValueError(value)
    return int(float(m.group(1)) * SUFFIX[m.group(2)])


def _biggest(graph: Graph, size: Callable[[Row], int], total: int) -> list[Row]:
    """The three biggest rows, at the first depth where no single group holds most of the total."""
    top: list[Row] = []
    for depth in range(1, 8):
        rows = [r for r in analyze(graph, depth).rows if not r.is_header]
        top = sorted(rows, key=size, reverse=True)[:3]
        if not top or size(top[0]) * 2 <= total or top[0].name in {n.name for n in graph.nodes}:
            break
    return top


def check_limits(tree: YMap, graph: Graph) -> list[Diagnostic]:
    """One diagnostic per exceeded budget, located at the limit, naming the three biggest top-level contributors."""
    limits = tree.get("limits")
    if not isinstance(limits, YMap):
        return []
    report = analyze(graph, 1)
    actual = {"params": report.params, "trainable": report.trainable, "macs": report.macs, "activations": report.memory.activation_bytes}
    share = {"params": lambda r: r.params, "trainable": lambda r: r.trainable, "macs": lambda r: r.macs, "activations": lambda r: 0}
    out = []
    for key, raw in limits.items():
        budget = parse_amount(raw)
        if actual[key] <= budget:
            continue
        top = _biggest(graph, share[key], actual[key])
        biggest = ", ".join(f"{r.name} {share[key](r):,} ({100 * share[key](r) / actual[key]:.0f}%)" for r in top if share[key](r))
        tail = f"; biggest: {biggest}" if biggest else ""
        out.append(
            Diagnostic(limits.value_locs[key], f"{LIMITS[key]} {actual[key]:,} exceed the budget limits.{key} = {budget:,} by {actual[key] - budget:,}{tail}")
        )
    return out
