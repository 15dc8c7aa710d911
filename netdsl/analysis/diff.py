"""`netdsl diff A B`: layers added, removed or changed between two specs, and the parameter/MAC delta."""

from __future__ import annotations

from dataclasses import dataclass

from netdsl.analysis.counts import Report
from netdsl.analysis.summary import shape_text
from netdsl.ir import Graph, Node


@dataclass(frozen=True)
class Change:
    """One differing layer: '+' added, '-' removed, '~' changed (with what changed)."""

    sign: str
    name: str
    op: str
    detail: str
    params_delta: int


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


def render_diff(a: Report, b: Report, changes: list[Change], label_a: str, label_b: str) -> str:
    lines = [f"--- {label_a}", f"+++ {label_b}"]
    for c in changes:
        delta = f" [{c.params_delta:+,} params]" if c.params_delta else ""
        lines.append(f"{c.sign} {c.name}: {c.detail}{delta}")
    if not changes and a.input_shape == b.input_shape:
        lines.append("no differences")
    if a.input_shape != b.input_shape:
        lines.append(f"~ input: {shape_text(a.input_shape)} -> {shape_text(b.input_shape)}")
    lines.append(f"params: {a.params:,} -> {b.params:,} ({b.params - a.params:+,})")
    lines.append(f"MACs:   {a.macs:,} -> {b.macs:,} ({b.macs - a.macs:+,})")
    counts = {s: sum(c.sign == s for c in changes) for s in "+-~"}
    lines.append(f"layers: {counts['+']} added, {counts['-']} removed, {counts['~']} changed")
    return "\n".join(lines) + "\n"
