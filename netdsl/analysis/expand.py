"""`netdsl expand`: the resolved flat spec -- every block and repeat unrolled, every default filled in.

The output is itself a valid spec that loads to the same graph, with each layer's output shape and
parameter count as a comment: what a spec *means*, readable and diffable. A spec composed from several files
(`extends:`, netdsl.lang.extends) also says where each top-level key and layer came from (Origins).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from netdsl.analysis.counts import Report
from netdsl.analysis.summary import file_text, loc_text, shape_text
from netdsl.errors import Loc, SpecError
from netdsl.ir import INPUT, Graph, Node
from netdsl.lang.extends import MAX_DEPTH, compose
from netdsl.lang.files import FileProblem, read_text
from netdsl.lang.formats import parse_tree
from netdsl.lang.layer_edits import layer_name
from netdsl.lang.yaml_tree import YList, YMap, new_map
from netdsl.layers.base import parse_shape

PRINTED = ("netdsl", "name", "input", "layers")  # the top-level keys the expanded spec writes itself
NESTED = ("params", "train")  # keys whose origins are told one level down (each parameter, each train section)


@dataclass(frozen=True)
class Origins:
    """Where the values of a composed spec came from: each spec of its `extends` chain composed on its own, the given
    one first (levels), and the other files merged into it (recipes, data files)."""

    levels: tuple[tuple[str, YMap], ...]
    others: tuple[str, ...] = ()

    @property
    def file(self) -> str:
        return self.levels[0][0]

    def origin(self, loc: Loc, path: Sequence[str]) -> str:
        """'' for a value the given file writes anew; `from FILE:LINE` for one from another file; and, when it replaced
        a value of a spec it extends, `..., over BASE:LINE` (the first base down the chain that has another value)."""
        over = next((there for _, tree in self.levels[1:] if (there := value_loc(tree, path)) != loc), None)
        said = ", over " + loc_text(over) if over is not None else ""
        if loc.file == self.file:
            return loc_text(loc) + said if said else ""
        return f"from {loc_text(loc)}{said}"


def spec_origins(raw: Any, composed: Any, file: str, sources: Sequence[tuple[str, str]]) -> Origins | None:
    """The Origins of a spec read from `file` (raw: its tree as written; composed: with every `extends` merged, whose
    sources are `sources`); None for a spec from one file. Each base is composed again on its own, so that a value can
    name the one it replaced."""
    if not sources or not isinstance(composed, YMap):
        return None
    levels = [(file, composed)]
    node, shown = raw, file
    while isinstance(node, YMap) and "extends" in node and len(levels) <= MAX_DEPTH:
        stub = new_map(node.loc)
        stub["extends"], stub.key_locs["extends"], stub.value_locs["extends"] = node["extends"], node.key_locs["extends"], node.value_locs["extends"]
        base = compose(stub, shown)
        if base.problems or not base.sources or not isinstance(base.tree, YMap):
            break
        shown = base.sources[0][0]  # the base it names is the first file composing it reads
        levels.append((shown, base.tree))
        try:
            node = parse_tree(read_text(shown), shown)
        except (FileProblem, SpecError):
            break
    chain = [f for f, _ in levels]
    return Origins(tuple(levels), tuple(s for s, _ in sources if s not in chain))


def value_loc(tree: Any, path: Sequence[str]) -> Loc | None:
    """Where the value at `path` is written; a step into a list is a layer's name. None when there is none."""
    node, loc = tree, None
    for step in path:
        if isinstance(node, YMap) and step in node:
            node, loc = node[step], node.value_locs[step]
        elif isinstance(node, YList):
            at = next((i for i, item in enumerate(node) if layer_name(item) == step), None)
            if at is None:
                return None
            node, loc = node[at], node.item_locs[at]
        else:
            return None
    return loc


def item_locs(graph: Graph) -> dict[str, Loc]:
    """Where each top-level layer item is written, by its name (the first part of the module paths it makes)."""
    groups = {g.path: g.loc for g in graph.groups}
    out: dict[str, Loc] = {}
    for node in graph.nodes:
        top = node.name.split(".", 1)[0]
        if top not in out:
            out[top] = node.loc if top == node.name else groups.get(top, node.loc)
    return out


def scalar_text(value: Any) -> str:
    """A value as YAML flow text: `relu`, `"a b"`, `[3, 3]`, `{p: 0.5}`."""
    if isinstance(value, tuple):
        value = value[0] if len(value) == 1 else list(value)  # (113, 113) stays a pair: it reloads as the same layer
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value.isidentifier() and value not in ("true", "false", "null", "yes", "no", "on", "off") else json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(scalar_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {scalar_text(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _unquoted(text: str) -> str:
    return str(json.loads(text)) if text.startswith('"') else text


def layer_line(node: Node, previous: str) -> str:
    """One node as a flow-style layer item with every option, e.g. `conv2d: {name: conv1, out: 64, ...}`."""
    local = node.name.rsplit(".", 1)[-1]
    parent = node.name.rpartition(".")[0]

    def ref(r: str) -> str:
        return scalar_text(r.rpartition(".")[2] if r.rpartition(".")[0] == parent and r != INPUT else "/" + r)

    named = node.ref_inputs()  # reference arguments name the resolved node, as `from` does
    opts = [f"name: {scalar_text(local)}"]
    for spec in node.layer.args():
        value = getattr(node.layer, spec.name)
        if value is not None:
            opts.append(f"{spec.name}: {ref(named[spec.name]) if spec.name in named else scalar_text(value)}")
    data = node.data_inputs
    ports = [node.port(k) for k in range(len(data))]
    if data != (previous,) or any(ports):
        refs = [ref(r) if p == 0 else scalar_text(f"{_unquoted(ref(r))}.{p}") for r, p in zip(data, ports)]  # `from: s.1`: output 1 of s
        opts.append(f"from: {refs[0]}" if len(refs) == 1 else f"from: [{', '.join(refs)}]")
    if node.frozen:
        opts.append("frozen: true")
    if node.init is not None:
        opts.append(f"init: {scalar_text(node.init)}")
    return f"{node.op}: {{{', '.join(opts)}}}"


def expand_text(graph: Graph, report: Report, source: str, origins: Origins | None = None) -> str:
    """The expanded spec as YAML text; with `origins`, comments naming the file and line of each top-level key and
    layer that came from another file or replaced a base's value."""
    kinds = {g.path: g.kind for g in graph.groups}
    told = _Told(origins, graph)
    lines = [
        f"# {source} expanded by netdsl: every block and repeat unrolled, every default filled in",
        f"# {report.params:,} params ({report.trainable:,} trainable), {report.buffers:,} buffer elements, {report.macs:,} MACs per sample",
        *told.header(),
        "netdsl: 1",
        f"name: {scalar_text(graph.name)}{told.key('name')}",
        f"input: {shape_text(graph.input_shape)}{told.key('input')}",
        f"layers:{told.key('layers')}",
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
            note = "" if kind == "group" else kind if kind == "repeat" else f"block {kind}"
            note = "; ".join(n for n in (note, told.item(path)) if n)
            note = f"  # {note}" if note else ""
            lines += [f"{indent}- group:{note}", f"{indent}    name: {scalar_text(path.rsplit('.', 1)[-1])}", f"{indent}    layers:"]
            open_groups.append(path)
        indent = "  " + "    " * len(open_groups)
        count = f", {node.param_count():,} params" if node.param_count() else ""
        origin = told.item(node.name)
        lines.append(f"{indent}- {layer_line(node, previous)}  # {shape_text(node.shape)}{count}{'; ' + origin if origin else ''}")
        previous = node.name
    if graph.outputs != (previous,):
        known = {INPUT, *kinds, *(n.name for n in graph.nodes)}
        written = [name if name.lstrip("/") in known else "/" + ref for name, ref in zip(graph.output_names, graph.outputs)]
        lines.append(f"outputs: [{', '.join(scalar_text(n) for n in written)}]")  # as written where the flat spec has that path
    return "\n".join(lines) + "\n"


class _Told:
    """The origin comments of an expanded spec (none without Origins)."""

    def __init__(self, origins: Origins | None, graph: Graph) -> None:
        self.origins = origins
        self.tree = origins.levels[0][1] if origins else new_map(Loc(graph.file, 1, 1))
        self.items = item_locs(graph) if origins else {}
        self.given = {"input"} if "input" in self.tree and parse_shape(self.tree["input"]) != graph.input_shape else set()  # by --input

    def header(self) -> list[str]:
        """The chain of files, then where each key that the expanded spec does not write came from."""
        if self.origins is None:
            return []
        chain = " -> ".join(file_text(f) for f, _ in self.origins.levels)
        if len(self.origins.levels) > 1:
            chain += " (each extends the next)"
        if self.origins.others:
            chain += f", with {', '.join(file_text(f) for f in self.origins.others)}"
        lines = [f"# composed from {chain}"]
        for key, value in self.tree.items():
            if key in PRINTED:
                continue
            if key in NESTED and isinstance(value, YMap):
                lines += [f"# {key}.{sub}: {said}" for sub in value if (said := self.origins.origin(value.value_locs[sub], (key, sub)))]
            elif said := self.origins.origin(self.tree.value_locs[key], (key,)):
                lines.append(f"# {key}: {said}")
        return lines

    def key(self, key: str) -> str:
        if self.origins is None or key not in self.tree or key in self.given:
            return ""
        said = self.origins.origin(self.tree.value_locs[key], (key,))
        return f"  # {said}" if said else ""

    def item(self, path: str) -> str:
        """The origin of a top-level layer item (nothing for what is inside one: it came with it)."""
        if self.origins is None or "." in path or path not in self.items:
            return ""
        return self.origins.origin(self.items[path], ("layers", path))
