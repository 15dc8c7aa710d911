"""`netdsl diff A B`: layers added, removed or changed between two specs, the parameter/MAC delta, and the spec
parameters and train settings that differ; for specs composed from several files (`extends:`), where B sets each."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from netdsl.analysis.counts import Report
from netdsl.analysis.expand import item_locs, scalar_text
from netdsl.analysis.summary import file_text, loc_text, shape_text
from netdsl.errors import Loc
from netdsl.ir import Graph, Node
from netdsl.lang.extends import PATH_SETTINGS
from netdsl.lang.train_section import resolve
from netdsl.lang.yaml_tree import YMap, plain


@dataclass(frozen=True)
class Change:
    """One differing layer: '+' added, '-' removed, '~' changed (with what changed)."""

    sign: str
    name: str
    op: str
    detail: str
    params_delta: int
    where: str = ""  # `file:line` where B sets it (located_changes), for composed specs


def _describe(node: Node) -> str:
    return f"{node.op}({node.layer.describe()}) -> {shape_text(node.shape)}, {node.param_count():,} params"


def _changes(a: Node, b: Node) -> list[str]:
    out = []
    if a.op != b.op:
        out.append(f"type {a.op} -> {b.op}")
    else:
        for spec in a.layer.args():
            va, vb = getattr(a.layer, spec.name), getattr(b.layer, spec.name)
            if va != vb:
                out.append(f"{spec.name} {_fmt(va)} -> {_fmt(vb)}")
    if a.inputs != b.inputs:
        out.append(f"from {', '.join(a.inputs)} -> {', '.join(b.inputs)}")
    if a.shape != b.shape:
        out.append(f"output {shape_text(a.shape)} -> {shape_text(b.shape)}")
    if a.frozen != b.frozen:
        out.append("frozen" if b.frozen else "unfrozen")
    if a.param_count() != b.param_count():
        out.append(f"params {a.param_count():,} -> {b.param_count():,}")
    return out


def _fmt(value: object) -> str:
    if isinstance(value, tuple):
        return str(value[0]) if len(set(value)) == 1 else "x".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)


def diff_graphs(a: Graph, b: Graph) -> list[Change]:
    """Changes from a to b, nodes matched by module path, in b's order (removed ones where they were)."""
    old = {n.name: n for n in a.nodes}
    new = {n.name: n for n in b.nodes}
    out: list[Change] = []
    for node in a.nodes:
        if node.name not in new:
            out.append(Change("-", node.name, node.op, _describe(node), -node.param_count()))
    for node in b.nodes:
        if node.name not in old:
            out.append(Change("+", node.name, node.op, _describe(node), node.param_count()))
        else:
            what = _changes(old[node.name], node)
            if what:
                out.append(Change("~", node.name, node.op, "; ".join(what), node.param_count() - old[node.name].param_count()))
    order = {n.name: i for i, n in enumerate(b.nodes)}
    order.update({n.name: order.get(n.name, i) for i, n in enumerate(a.nodes) if n.name not in order})
    return sorted(out, key=lambda c: (order.get(c.name, 0), c.sign != "-"))


def located_changes(changes: list[Change], b: Graph, tree_b: Any) -> list[Change]:
    """Each layer change with where B writes the top-level item it belongs to (a removed one: B's `layers`)."""
    items = item_locs(b)
    layers = tree_b.value_locs.get("layers") if isinstance(tree_b, YMap) else None
    out = []
    for c in changes:
        loc = layers if c.sign == "-" else items.get(c.name.split(".", 1)[0])
        out.append(replace(c, where=loc_text(loc)) if loc is not None else c)
    return out


def diff_settings(a: Graph, b: Graph, tree_a: Any, tree_b: Any, located: bool = False) -> list[Change]:
    """The spec parameters (`params.NAME`, as each graph was built with them) and the train settings (`train.KEY...`,
    each tree's `train` with every default filled in) that differ; `located`: with where B sets each."""
    out = _differences("params", a.variables, b.variables)
    train_a, train_b = (_train(tree) for tree in (tree_a, tree_b))
    out += _differences("train", train_a, train_b)
    if not located:
        return out
    return [replace(c, where=_where(tree_b, c.name.split("."))) for c in out]


def _where(tree: Any, path: Sequence[str]) -> str:
    """Where `tree` writes the value at `path` (a parameter declared {default: ...}: its default), or `default`."""
    node: Any = tree
    loc: Loc | None = None
    for step in path:
        if not (isinstance(node, YMap) and step in node):
            return "default"
        node, loc = node[step], node.value_locs[step]
    if path[0] == "params" and isinstance(node, YMap) and "default" in node:
        loc = node.value_locs["default"]
    return loc_text(loc) if loc is not None else "default"


def _train(tree: Any) -> dict[str, Any]:
    """A composed tree's train settings, resolved, each data path or weights file made absolute from the file that
    wrote it (so that a base's `data/` and a child's `../data/` compare equal)."""
    train = tree.get("train") if isinstance(tree, YMap) else None
    resolved = resolve(plain(train) if isinstance(train, YMap) else {})
    for section, key in PATH_SETTINGS:
        node = train.get(section) if isinstance(train, YMap) else None
        value = resolved.get(section, {}).get(key) if isinstance(resolved.get(section), dict) else None
        if not isinstance(node, YMap) or not isinstance(value, str) or key not in node or "://" in value:
            continue
        loc = node.value_locs[key]
        folder = os.path.dirname(loc.file) if loc.line > 0 else ""
        resolved[section][key] = file_text(os.path.abspath(os.path.join(folder, value)))
    return resolved


def _differences(prefix: str, a: dict[str, Any], b: dict[str, Any]) -> list[Change]:
    """Changes between two nested settings mappings, one per leaf (a list compares whole), in B's order."""
    out: list[Change] = []
    for key in [*b, *(k for k in a if k not in b)]:
        name = f"{prefix}.{key}"
        if key not in a:
            out.append(Change("+", name, "", scalar_text(b[key]), 0))
        elif key not in b:
            out.append(Change("-", name, "", scalar_text(a[key]), 0))
        elif isinstance(a[key], dict) and isinstance(b[key], dict):
            out += _differences(name, a[key], b[key])
        elif a[key] != b[key] or type(a[key]) is not type(b[key]):
            out.append(Change("~", name, "", f"{scalar_text(a[key])} -> {scalar_text(b[key])}", 0))
    return out


def render_diff(a: Report, b: Report, changes: list[Change], label_a: str, label_b: str, settings: Sequence[Change] = (), input_where: str = "") -> str:
    """The changes as lines (`+` added, `-` removed, `~` changed; layers, the input, then settings), then the totals'
    deltas; `input_where`: where B sets its input."""
    lines = [f"--- {label_a}", f"+++ {label_b}"]
    for c in changes:
        delta = f" [{c.params_delta:+,} params]" if c.params_delta else ""
        lines.append(f"{c.sign} {c.name}: {c.detail}{delta}{_at(c)}")
    if not changes and not settings and a.input_shape == b.input_shape:
        lines.append("no differences")
    if a.input_shape != b.input_shape:
        lines.append(f"~ input: {shape_text(a.input_shape)} -> {shape_text(b.input_shape)}{'  # ' + input_where if input_where else ''}")
    lines += [f"{c.sign} {c.name}: {c.detail}{_at(c)}" for c in settings]
    lines.append(f"params: {a.params:,} -> {b.params:,} ({b.params - a.params:+,})")
    lines.append(f"MACs:   {a.macs:,} -> {b.macs:,} ({b.macs - a.macs:+,})")
    counts = {s: sum(c.sign == s for c in changes) for s in "+-~"}
    lines.append(f"layers: {counts['+']} added, {counts['-']} removed, {counts['~']} changed")
    return "\n".join(lines) + "\n"


def _at(change: Change) -> str:
    return f"  # {change.where}" if change.where else ""
