"""Placing a scene for the SVG: grandalf's Sugiyama layout (layers, crossing reduction, Brandes-Köpf coordinates), run
once per cluster, innermost first.

Each expanded cluster is laid out on its own, with its sub-clusters as single boxes of their laid-out size, so no run
sees more than one cluster's children (a ResNet-152 stage, not the whole network): that keeps grandalf fast and gives
every block the same drawing wherever it sits. Edges that enter or leave a cluster go through an `in` / `out` port on
its border, routed inside the cluster like any other edge, so a skip connection bends around the layers it skips.
Layout runs top-to-bottom; left-to-right is the same layout with the axes swapped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netdsl.analysis.draw.scene import Box, Scene

CHAR_W = 6.6  # advance of an 11px monospace character
LINE_H = 14.0
PAD = 8.0  # inside a box
GAP_X = 18.0  # between boxes of one rank
GAP_Y = 26.0  # between ranks
CLUSTER_PAD = 10.0
CLUSTER_TOP = 20.0  # room for the cluster's label
IN, OUT = "^in", "^out"

Point = tuple[float, float]


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float


@dataclass
class Placement:
    """Absolute rectangles of boxes and clusters and the polyline of every scene edge, in picture coordinates."""

    width: float
    height: float
    boxes: dict[str, Rect] = field(default_factory=dict)
    clusters: dict[str, Rect] = field(default_factory=dict)
    routes: dict[tuple[str, str], list[Point]] = field(default_factory=dict)


def box_size(box: Box) -> tuple[float, float]:
    lines = box.lines()
    return max(len(s) for s in lines) * CHAR_W + 2 * PAD, len(lines) * LINE_H + PAD


@dataclass
class _Local:
    """One cluster's own layout, in layout space (ranks along y), relative to the cluster's top-left corner."""

    w: float = 0.0
    h: float = 0.0
    centers: dict[str, Point] = field(default_factory=dict)
    sizes: dict[str, tuple[float, float]] = field(default_factory=dict)
    routes: dict[tuple[str, str], list[Point]] = field(default_factory=dict)


class _View:
    def __init__(self, w: float, h: float) -> None:
        self.w, self.h = w, h
        self.xy: Point = (0.0, 0.0)
        self.path: list[Point] = []

    def setpath(self, points: list[Point]) -> None:
        self.path = points


def lay_out(scene: Scene, direction: str = "TB") -> Placement:
    """Place every box and cluster and route every edge; `direction` "TB" (top to bottom) or "LR"."""
    lr = direction == "LR"
    parent = {c.path: c.parent for c in scene.clusters}
    owner = {b.id: b.cluster for b in scene.boxes}
    children: dict[str, list[str]] = {"": []}
    for c in scene.clusters:
        children.setdefault(c.path, [])
        children[c.parent].append(c.path)
    for b in scene.boxes:
        children[b.cluster].append(b.id)
    order = {b.id: i for i, b in enumerate(scene.boxes)}
    for kids in children.values():
        kids.sort(key=lambda k: _first(k, children, order))

    def chain(item: str) -> list[str]:
        """The clusters around an item, innermost first, ending with the top ("")."""
        path = owner[item] if item in owner else parent[item]
        out = [path]
        while path:
            path = parent[path]
            out.append(path)
        return out

    def child_of(cluster: str, item: str) -> str:
        while True:
            up = owner[item] if item in owner else parent[item]
            if up == cluster:
                return item
            item = up

    local_edges: dict[str, dict[tuple[str, str], None]] = {path: {} for path in children}
    for s, t in scene.edges:
        cs, ct = chain(s), chain(t)
        common = next(c for c in cs if c in ct)
        for path in cs[: cs.index(common)]:
            local_edges[path][(child_of(path, s), OUT)] = None
        for path in ct[: ct.index(common)]:
            local_edges[path][(IN, child_of(path, t))] = None
        local_edges[common][(child_of(common, s), child_of(common, t))] = None

    sizes = {b.id: _oriented(box_size(b), lr) for b in scene.boxes}
    labels = {c.path: (len(c.label) + 2) * CHAR_W for c in scene.clusters}
    locals_: dict[str, _Local] = {}
    for path in sorted(children, key=lambda p: -len(chain(p)) if p else 1):  # innermost first, the top last
        local = _lay_out_cluster(children[path], local_edges[path], sizes, lr, framed=bool(path))
        if path:
            if lr:
                local.h = max(local.h, labels[path])
            else:
                local.w = max(local.w, labels[path])
            sizes[path] = (local.w, local.h)
        locals_[path] = local

    placed = Placement(0.0, 0.0)
    origin: dict[str, Point] = {"": (0.0, 0.0)}
    centers: dict[str, Point] = {}  # layout space, absolute
    for path in sorted(children, key=lambda p: len(chain(p)) if p else 0):  # outermost first
        ox, oy = origin[path]
        local = locals_[path]
        for item, (cx, cy) in local.centers.items():
            w, h = local.sizes[item]
            centers[item if item not in (IN, OUT) else f"{path}{item}"] = (ox + cx, oy + cy)
            if item in children:
                origin[item] = (ox + cx - w / 2, oy + cy - h / 2)
    for b in scene.boxes:
        placed.boxes[b.id] = _rect(centers[b.id], sizes[b.id], lr)
    for c in scene.clusters:
        placed.clusters[c.path] = _rect(centers[c.path], sizes[c.path], lr)
    top = locals_[""]
    placed.width, placed.height = (top.h, top.w) if lr else (top.w, top.h)

    def ends(path: str, a: str, b: str) -> tuple[Point, Point]:
        """Where a local edge leaves a and enters b: a box's bottom/top middle, a cluster's out/in port, a port itself."""
        if a == IN:
            start = centers[f"{path}{IN}"]
        elif a in children:
            start = centers[f"{a}{OUT}"]
        else:
            start = (centers[a][0], centers[a][1] + sizes[a][1] / 2)
        if b == OUT:
            end = centers[f"{path}{OUT}"]
        elif b in children:
            end = centers[f"{b}{IN}"]
        else:
            end = (centers[b][0], centers[b][1] - sizes[b][1] / 2)
        return start, end

    def route(path: str, a: str, b: str) -> list[Point]:
        ox, oy = origin[path]
        start, end = ends(path, a, b)
        middle = [(ox + x, oy + y) for x, y in locals_[path].routes.get((a, b), [])[1:-1]]
        return [start, *middle, end]

    for s, t in scene.edges:
        cs, ct = chain(s), chain(t)
        common = next(c for c in cs if c in ct)
        points: list[Point] = []
        item = s
        for path in cs[: cs.index(common)]:
            points += route(path, item, OUT)
            item = path
        points += route(common, item, child_of(common, t))
        for path in reversed(ct[: ct.index(common)]):
            points += route(path, IN, child_of(path, t))
        dedup = [p for i, p in enumerate(points) if i == 0 or p != points[i - 1]]
        placed.routes[(s, t)] = [(y, x) for x, y in dedup] if lr else dedup
    return placed


def _first(item: str, children: dict[str, list[str]], order: dict[str, int]) -> int:
    if item in order:
        return order[item]
    return min((_first(k, children, order) for k in children[item]), default=len(order))


def _oriented(size: tuple[float, float], lr: bool) -> tuple[float, float]:
    return (size[1], size[0]) if lr else size


def _rect(center: Point, size: tuple[float, float], lr: bool) -> Rect:
    (cx, cy), (w, h) = center, size
    if lr:
        cx, cy, w, h = cy, cx, h, w
    return Rect(cx - w / 2, cy - h / 2, w, h)


def _lay_out_cluster(items: list[str], edges: dict[tuple[str, str], None], sizes: dict[str, tuple[float, float]], lr: bool, framed: bool) -> _Local:
    """Lay out one cluster's children (and its ports) with grandalf, each connected component side by side."""
    from grandalf.graphs import Edge, Graph, Vertex
    from grandalf.layouts import SugiyamaLayout

    ports = [p for p in (IN, OUT) if any(p in e for e in edges)]
    vertices = {k: Vertex(k) for k in [*([IN] if IN in ports else []), *items, *([OUT] if OUT in ports else [])]}
    for k, v in vertices.items():
        v.view = _View(*sizes.get(k, (1.0, 1.0)))
    gedges = {}
    for a, b in edges:
        e = Edge(vertices[a], vertices[b])
        e.view = _View(0.0, 0.0)
        gedges[(a, b)] = e
    graph = Graph(list(vertices.values()), list(gedges.values()))
    local = _Local()
    pad_cross, pad_start = (CLUSTER_TOP, CLUSTER_PAD) if lr else (CLUSTER_PAD, CLUSTER_TOP)
    if not framed:
        pad_cross, pad_start = 0.0, 0.0
    x = pad_cross
    bottom = 0.0
    for component in graph.C:
        sug = SugiyamaLayout(component)
        sug.xspace, sug.yspace = GAP_X, GAP_Y
        sug.init_all()
        sug.draw()
        vs = list(component.sV)
        left = min(v.view.xy[0] - v.view.w / 2 for v in vs)
        right = max(v.view.xy[0] + v.view.w / 2 for v in vs)
        up = min(v.view.xy[1] - v.view.h / 2 for v in vs)
        dx, dy = x - left, pad_start - up
        for v in vs:
            local.centers[v.data] = (v.view.xy[0] + dx, v.view.xy[1] + dy)
            local.sizes[v.data] = (v.view.w, v.view.h)
            bottom = max(bottom, v.view.xy[1] + dy + v.view.h / 2)
        for e in component.sE:
            local.routes[(e.v[0].data, e.v[1].data)] = [(px + dx, py + dy) for px, py in e.view.path]
        x += right - left + GAP_X
    local.w = x - GAP_X + (CLUSTER_PAD if framed else 0.0)
    local.h = bottom + (CLUSTER_PAD if framed else 0.0)
    for port, y in ((IN, 0.0), (OUT, local.h)):
        if port in local.centers:
            local.centers[port] = (local.centers[port][0], y)
    return local
