"""`netdsl expand`: the resolved flat spec -- every block and repeat unrolled, every default filled in.

The output is itself a valid spec that loads to the same graph, with each layer's output shape and
parameter count as a comment: what a spec *means*, readable and diffable.
"""

from __future__ import annotations

import json
from typing import Any

from netdsl.analysis.counts import Report
from netdsl.analysis.summary import shape_text
from netdsl.ir import INPUT, Graph, Node


def _scalar(value: Any) -> str:
    if isinstance(value, tuple):
        value = value[0] if len(value) == 1 else list(value)  # (113, 113) stays a pair: it reloads as the same layer
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value.isidentifier() and value not in ("true", "false", "null", "yes", "no", "on", "off") else json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_scalar(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _unquoted(text: str) -> str:
    return str(json.loads(text)) if text.startswith('"') else text


def layer_line(node: Node, previous: str) -> str:
    """One node as a flow-style layer item with every option, e.g. `conv2d: {name: conv1, out: 64, ...}`."""
    local = node.name.rsplit(".", 1)[-1]
    parent = node.name.rpartition(".")[0]

    def ref(r: str) -> str:
        return _scalar(r.rpartition(".")[2] if r.rpartition(".")[0] == parent and r != INPUT else "/" + r)

    named = node.ref_inputs()  # reference arguments name the resolved node, as `from` does
    opts = [f"name: {_scalar(local)}"]
    for spec in node.layer.args():
        value = getattr(node.layer, spec.name)
        if value is not None:
            opts.append(f"{spec.name}: {ref(named[spec.name]) if spec.name in named else _scalar(value)}")
    data = node.data_inputs
    ports = [node.port(k) for k in range(len(data))]
    if data != (previous,) or any(ports):
        refs = [ref(r) if p == 0 else _scalar(f"{_unquoted(ref(r))}.{p}") for r, p in zip(data, ports)]  # `from: s.1`: output 1 of s
        opts.append(f"from: {refs[0]}" if len(refs) == 1 else f"from: [{', '.join(refs)}]")
    if node.frozen:
        opts.append("frozen: true")
    if node.init is not None:
        opts.append(f"init: {_scalar(node.init)}")
    return f"{node.op}: {{{', '.join(opts)}}}"


def expand_text(graph: Graph, report: Report, source: str) -> str:
    """The expanded spec as YAML text."""
    kinds = {g.path: g.kind for g in graph.groups}
    lines = [
        f"# {source} expanded by netdsl: every block and repeat unrolled, every default filled in",
        f"# {report.params:,} params ({report.trainable:,} trainable), {report.buffers:,} buffer elements, {report.macs:,} MACs per sample",
        "netdsl: 1",
        f"name: {_scalar(graph.name)}",
        f"input: {shape_text(graph.input_shape)}",
        "layers:",
    ]
    open_groups: list[str] = []
    previous = INPUT
    for node in graph.nodes:
        parents = node.name.split(".")[:-1]
        paths = [".".join(parents[: k + 1]) for k in range(len(parents))]
        while open_groups and (len(open_groups) > len(paths) or open_groups[-1] != paths[len(open_groups) - 1]):
            open_groups.pop()
        for path in paths[len(open_groups) :]:
            indent = "  " + "    " * len(open_groups)
            kind = kinds.get(path, "group")
            note = "" if kind == "group" else f"  # {kind}" if kind == "repeat" else f"  # block {kind}"
            lines += [f"{indent}- group:{note}", f"{indent}    name: {_scalar(path.rsplit('.', 1)[-1])}", f"{indent}    layers:"]
            open_groups.append(path)
        indent = "  " + "    " * len(open_groups)
        count = f", {node.param_count():,} params" if node.param_count() else ""
        lines.append(f"{indent}- {layer_line(node, previous)}  # {shape_text(node.shape)}{count}")
        previous = node.name
    if graph.outputs != (previous,):
        known = {INPUT, *kinds, *(n.name for n in graph.nodes)}
        written = [name if name.lstrip("/") in known else "/" + ref for name, ref in zip(graph.output_names, graph.outputs)]
        lines.append(f"outputs: [{', '.join(_scalar(n) for n in written)}]")  # as written where the flat spec has that path
    return "\n".join(lines) + "\n"
