"""What a picture shows, before any layout: boxes (layers, or blocks collapsed below --depth), the clusters they sit in, and
the edges between them. Both renderers (the SVG laid out by grandalf, the page laid out by dagre) draw from this."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from netdsl.analysis.counts import analyze
from netdsl.analysis.summary import human
from netdsl.errors import Loc, did_you_mean, input_error
from netdsl.ir import INPUT, Graph
from netdsl.layers.base import Shape


@dataclass(frozen=True)
class Box:
    """One box: an IR node (kind "layer"), a group collapsed below the depth ("block") or the network's input ("input")."""

    id: str
    kind: str
    type: str
    shape: Shape
    params: int
    macs: int
    loc: str  # file:line of the spec line that made it
    cluster: str  # the expanded cluster it sits in ("" at the top)
    layers: int = 1  # IR nodes inside

    @property
    def label(self) -> str:
        return relative(self.id, self.cluster)

    def lines(self) -> list[str]:
        """The text in the box: name, type and output shape, parameters."""
        if self.kind == "input":
            return [self.id, shape_text(self.shape)]
        lines = [self.label, f"{self.type}  {shape_text(self.shape)}"]
        counts = [f"{human(self.params).replace(' ', '')} params"] if self.params else []
        if self.kind == "block":
            counts.append(f"{self.layers} layer{'s' * (self.layers != 1)}")
        if counts:
            lines.append(", ".join(counts))
        return lines

    def title(self) -> str:
        """What hovering the box shows: where in the spec, and the counts."""
        if self.kind == "input":
            return f"{self.id}: input {shape_text(self.shape)} (per sample)"
        what = f"{self.type}, {self.layers} layer{'s' * (self.layers != 1)}" if self.kind == "block" else self.type
        return f"{self.id} ({what})\n{self.loc}\noutput {shape_text(self.shape)}\n{self.params:,} params, {self.macs:,} MACs"


@dataclass(frozen=True)
class Cluster:
    """A group, repeat or block instance shown expanded: a frame around its boxes and sub-clusters."""

    path: str
    kind: str
    parent: str
    loc: str

    @property
    def label(self) -> str:
        return f"{relative(self.path, self.parent)} · {self.kind}"


@dataclass(frozen=True)
class Scene:
    """A network at one depth: boxes in topological order (the input first), clusters parents first, edges (source, target)."""

    name: str
    boxes: tuple[Box, ...]
    clusters: tuple[Cluster, ...]
    edges: tuple[tuple[str, str], ...]


PACKAGE = Path(__file__).resolve().parents[2]


def spec_line(loc: Loc) -> str:
    """`file:line`; a block from netdsl's own library as `netdsl/blocks/...`, so a picture does not depend on where netdsl is installed."""
    file = loc.file
    if os.path.isabs(file):
        with contextlib.suppress(ValueError):
            file = Path(file).resolve().relative_to(PACKAGE.parent).as_posix()
    return f"{file}:{loc.line}"


def relative(path: str, parent: str) -> str:
    return path[len(parent) + 1 :] if parent and path.startswith(parent + ".") else path


def shape_text(shape: Shape) -> str:
    return "×".join(str(d) for d in shape)


def build_scene(graph: Graph, depth: int | None, only: str | None = None) -> Scene:
    """The boxes, clusters and edges of a graph with groups deeper than `depth` (None: none) collapsed, as summarize rolls rows up.

    `only`: draw just this group (or layer) and what is inside it; what it reads from outside becomes input boxes.
    """
    nodes = graph.nodes
    groups = {g.path: g for g in graph.groups}
    if only is not None:
        nodes = tuple(n for n in graph.nodes if n.name == only or n.name.startswith(only + "."))
        if not nodes:
            names = [*groups, *(n.name for n in graph.nodes)]
            raise input_error("--only", f"no group or layer '{only}' in {graph.name}{did_you_mean(only, names)}")
        groups = {p: g for p, g in groups.items() if p == only or p.startswith(only + ".")}
    rows = {r.name: r for r in analyze(graph).rows if not r.is_header}

    def box_id(name: str) -> str:
        if name == INPUT:
            return INPUT
        parts = name.split(".")
        return name if depth is None or len(parts) <= depth else ".".join(parts[:depth])

    def parent(path: str) -> str:
        parts = path.split(".")
        for k in range(len(parts) - 1, 0, -1):
            prefix = ".".join(parts[:k])
            if prefix in groups:
                return prefix
        return ""

    members: dict[str, list[str]] = {}
    for node in nodes:
        members.setdefault(box_id(node.name), []).append(node.name)
    inside = {n.name for n in nodes}
    sources = dict.fromkeys(i for n in nodes for i in n.inputs if i not in inside)  # what the drawn part reads: the input, or layers outside `only`
    boxes = [Box(s, "input", "input", graph.shape_of(s), 0, 0, "", "") for s in sources]
    for bid, names in members.items():
        loc = groups[bid].loc if bid in groups and bid not in rows else graph.node(names[0]).loc
        where = spec_line(loc)
        if names == [bid]:
            row = rows[bid]
            boxes.append(Box(bid, "layer", row.type, row.output_shape, row.params, row.macs, where, parent(bid)))
        else:
            kind = groups[bid].kind if bid in groups else "group"
            shape = rows[names[-1]].output_shape
            params = sum(rows[n].params for n in names)
            macs = sum(rows[n].macs for n in names)
            boxes.append(Box(bid, "block", kind, shape, params, macs, where, parent(bid), len(names)))
    shown: set[str] = set()
    for box in boxes:
        path = box.cluster
        while path and path not in shown:
            shown.add(path)
            path = parent(path)
    clusters = tuple(
        Cluster(path, groups[path].kind, parent(path), spec_line(groups[path].loc))
        for path in sorted(shown, key=lambda p: (p.count("."), _first_index(p, boxes)))
    )
    edges: dict[tuple[str, str], None] = {}
    for node in nodes:
        target = box_id(node.name)
        for source in (i if i in sources else box_id(i) for i in node.inputs):
            if source != target:
                edges[(source, target)] = None
    return Scene(graph.name, tuple(boxes), clusters, tuple(edges))


def _first_index(path: str, boxes: list[Box]) -> int:
    return next((i for i, b in enumerate(boxes) if b.id.startswith(path + ".")), len(boxes))
