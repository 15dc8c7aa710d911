"""The interactive picture: one self-contained HTML page (inline CSS, JS and data; no network) whose clusters expand and
collapse on click, each box's tooltip giving its spec line and counts.

Why the layout runs in the page, with a vendored dagre: expanding one cluster changes the size of every cluster around it
and so the whole layout; a Python-side precomputation would need a layout per combination of open clusters. dagre
(MIT, the layered layout behind dagre-d3, mermaid and many graph viewers) lays out compound graphs, i.e. clusters, in
well under a second for a few hundred boxes, and ships as one file with its dependencies (graphlib, lodash) bundled:
dagre.min.js 0.8.5 from the npm package, kept next to this module with its licences (dagre-LICENSE.txt). The SVG
command keeps grandalf (layout.py), so `draw -o x.svg` needs no JavaScript engine.
"""

from __future__ import annotations

import json
from html import escape
from importlib.resources import files
from typing import Any

from netdsl.analysis.draw.layout import CHAR_W, LINE_H, PAD
from netdsl.analysis.draw.scene import Box, Scene
from netdsl.analysis.draw.svg import FONT, STYLE, fill


def cluster_boxes(scene: Scene) -> dict[str, Box]:
    """Each cluster of a fully expanded scene as the box it becomes when collapsed: summed params and MACs, last output shape."""
    inside: dict[str, list[Box]] = {c.path: [] for c in scene.clusters}
    parent = {c.path: c.parent for c in scene.clusters}
    for b in scene.boxes:
        path = b.cluster
        while path:
            inside[path].append(b)
            path = parent[path]
    out = {}
    for c in scene.clusters:
        members = inside[c.path]
        out[c.path] = Box(
            c.path, "block", c.kind, members[-1].shape, sum(b.params for b in members), sum(b.macs for b in members), c.loc, c.parent, len(members)
        )
    return out


def page_data(scene: Scene, depth: int | None, direction: str) -> dict[str, Any]:
    """What the page's script draws from: every layer, every cluster (with its collapsed box), every edge between layers."""

    def box(b: Box) -> dict[str, Any]:
        return {"id": b.id, "kind": b.kind, "type": b.type, "cluster": b.cluster, "lines": b.lines(), "title": b.title(), "fill": fill(b)}

    collapsed = cluster_boxes(scene)
    return {
        "name": scene.name,
        "depth": depth or 0,
        "direction": direction,
        "geometry": {"char": CHAR_W, "line": LINE_H, "pad": PAD},
        "boxes": [box(b) for b in scene.boxes],
        "clusters": [
            {"path": c.path, "parent": c.parent, "label": c.label, "title": f"{c.path} ({c.kind})\n{c.loc}", "box": box(collapsed[c.path])}
            for c in scene.clusters
        ],
        "edges": [list(e) for e in scene.edges],
    }


SCRIPT = r"""
(function () {
  const D = JSON.parse(document.getElementById("netdsl-data").textContent);
  const G = D.geometry, NS = "http://www.w3.org/2000/svg", LABEL = 14;
  const parentOf = {}, clusterOf = {}, byId = {};
  D.boxes.forEach(b => { byId[b.id] = b; });
  D.clusters.forEach(c => { parentOf[c.path] = c.parent; clusterOf[c.path] = c; });
  const level = p => p.split(".").length;
  const open = new Set(D.clusters.filter(c => D.depth === 0 || level(c.path) < D.depth).map(c => c.path));
  const shownAt = id => {  // the box a layer is drawn as: its outermost closed cluster, or itself
    let at = id, p = byId[id].cluster;
    while (p) { if (!open.has(p)) at = p; p = parentOf[p]; }
    return at;
  };
  const size = lines => ({width: Math.max(...lines.map(s => s.length)) * G.char + 2 * G.pad, height: lines.length * G.line + G.pad});
  const esc = s => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  function pathData(pts) {
    let d = "M" + pts[0].x.toFixed(1) + "," + pts[0].y.toFixed(1);
    for (let i = 1; i < pts.length - 1; i++) {
      const a = i > 1 ? {x: (pts[i - 1].x + pts[i].x) / 2, y: (pts[i - 1].y + pts[i].y) / 2} : pts[0];
      const m = {x: (pts[i].x + pts[i + 1].x) / 2, y: (pts[i].y + pts[i + 1].y) / 2};
      d += " L" + a.x.toFixed(1) + "," + a.y.toFixed(1) + " Q" + pts[i].x.toFixed(1) + "," + pts[i].y.toFixed(1) + " " + m.x.toFixed(1) + "," + m.y.toFixed(1);
    }
    const z = pts[pts.length - 1];
    return d + " L" + z.x.toFixed(1) + "," + z.y.toFixed(1);
  }
  function render() {
    const g = new dagre.graphlib.Graph({compound: true});
    g.setGraph({rankdir: D.direction, nodesep: 18, ranksep: 36, marginx: 12, marginy: 12});
    g.setDefaultEdgeLabel(() => ({}));
    const shown = new Map();
    D.boxes.forEach(b => {
      const at = b.kind === "input" ? b.id : shownAt(b.id);
      if (!shown.has(at)) shown.set(at, at === b.id ? b : clusterOf[at].box);
    });
    const frames = D.clusters.filter(c => { for (let p = c.path; p; p = parentOf[p]) if (!open.has(p)) return false; return true; });
    frames.forEach(c => g.setNode("cluster:" + c.path, {cluster: c}));
    frames.forEach(c => { if (c.parent) g.setParent("cluster:" + c.path, "cluster:" + c.parent); });
    shown.forEach((b, id) => { g.setNode(id, Object.assign({box: b}, size(b.lines))); if (b.cluster) g.setParent(id, "cluster:" + b.cluster); });
    D.edges.forEach(([s, t]) => {
      const a = byId[s].kind === "input" ? s : shownAt(s), z = shownAt(t);
      if (a !== z) g.setEdge(a, z);
    });
    dagre.layout(g);
    const graph = g.graph(), out = [];
    out.push('<svg xmlns="' + NS + '" width="' + Math.ceil(graph.width) + '" height="' + Math.ceil(graph.height) + '" font-family="' + D.font + '">');
    out.push('<defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#666"/></marker></defs>');
    frames.forEach(c => {
      const n = g.node("cluster:" + c.path), x = n.x - n.width / 2, y = n.y - n.height / 2 - LABEL;  // the frame grows upwards for its label
      out.push('<g class="cluster" data-path="' + esc(c.path) + '"><title>' + esc(c.title + "\n(click the label to collapse)") + '</title>' +
        '<rect x="' + x + '" y="' + y + '" width="' + n.width + '" height="' + (n.height + LABEL) + '" rx="6"/>' +
        '<text class="toggle" x="' + (x + 6) + '" y="' + (y + 13) + '">▾ ' + esc(c.label) + '</text></g>');
    });
    g.edges().forEach(e => out.push('<path class="edge" data-source="' + esc(e.v) + '" data-target="' + esc(e.w) + '" d="' + pathData(g.edge(e).points) + '" marker-end="url(#arrow)"/>'));
    shown.forEach((b, id) => {
      const n = g.node(id), x = n.x - n.width / 2, y = n.y - n.height / 2;
      const hint = b.kind === "block" ? "\n(click to expand)" : "";
      let s = '<g class="box ' + b.kind + '" data-name="' + esc(id) + '"><title>' + esc(b.title + hint) + '</title>' +
        '<rect x="' + x + '" y="' + y + '" width="' + n.width + '" height="' + n.height + '" rx="3"' + (b.fill ? ' style="fill:' + b.fill + '"' : "") + '/>';
      b.lines.forEach((line, i) => {
        s += '<text x="' + n.x + '" y="' + (y + G.pad / 2 + G.line * (i + 0.78)) + '" text-anchor="middle"' + (i === 0 ? ' class="name"' : "") + '>' + esc(line) + '</text>';
      });
      out.push(s + "</g>");
    });
    out.push("</svg>");
    const holder = document.getElementById("picture");
    holder.innerHTML = out.join("");
    holder.querySelectorAll(".box.block").forEach(el => el.addEventListener("click", () => { open.add(el.dataset.name); render(); }));
    holder.querySelectorAll(".cluster .toggle").forEach(el => el.addEventListener("click", () => { open.delete(el.parentNode.dataset.path); render(); }));
    const n = [...shown.values()].filter(b => b.kind !== "input").length;
    document.getElementById("count").textContent = n + (n === 1 ? " box" : " boxes");
  }
  D.font = document.body.dataset.font;
  document.getElementById("expand").addEventListener("click", () => { D.clusters.forEach(c => open.add(c.path)); render(); });
  document.getElementById("collapse").addEventListener("click", () => { open.clear(); render(); });
  render();
})();
"""

PAGE_STYLE = (
    "body{margin:0;font-family:system-ui,sans-serif;background:#fff}header{padding:8px 12px;border-bottom:1px solid #ddd;font-size:14px}"
    "header button{margin-left:8px}#count{color:#666;margin-left:8px}.block,.toggle{cursor:pointer}.block:hover rect{stroke-width:2.5}"
)


def render_html(scene: Scene, depth: int | None, direction: str = "TB") -> str:
    """The page for a fully expanded scene; the script opens clusters above `depth` (None or 0: all) and lays them out."""
    data = json.dumps(page_data(scene, depth, direction), separators=(",", ":")).replace("</", "<\\/")
    dagre = (files("netdsl.analysis.draw") / "dagre.min.js").read_text(encoding="utf-8")
    name = escape(scene.name)
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{name} — netdsl draw</title>",
            f"<style>{PAGE_STYLE}{STYLE}</style>",
            f'</head><body data-font="{escape(FONT)}">',
            f"<header><b>{name}</b> — click a dark box to expand it, a frame's label to collapse it; hover for the spec line and counts."
            '<button id="expand">expand all</button><button id="collapse">collapse all</button><span id="count"></span></header>',
            '<div id="picture"></div>',
            f'<script type="application/json" id="netdsl-data">{data}</script>',
            f"<script>{dagre}</script>",
            f"<script>{SCRIPT}</script>",
            "</body></html>",
            "",
        ]
    )
