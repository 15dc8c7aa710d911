"""Budgets in the spec: `limits: {params: 5M, macs: 600M, nodes: 200k}`: the keys, their amounts, and the node budget
that expansion enforces (DEFAULT_NODES without an entry; netdsl/graph/build.py). The other budgets are checked on the
built graph (netdsl/graph/budgets.py)."""

from __future__ import annotations

import re
from typing import Any

from netdsl.errors import Diagnostic
from netdsl.lang.yaml_tree import YList, YMap

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
