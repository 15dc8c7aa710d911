"""A placed scene as one standalone SVG document: clusters as frames, boxes with their text, edges as smoothed polylines.

Every box is a `<g class="box layer|block|input" data-name=...>` with a `<title>` (the tooltip: spec line and counts),
every edge a `<path class="edge" data-source=... data-target=...>`, every cluster a `<g class="cluster" data-path=...>`,
so tests and scripts can read the picture back.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from netdsl.analysis.draw.layout import LINE_H, PAD, Placement, Point, Rect, lay_out
from netdsl.analysis.draw.scene import Box, Scene

MARGIN = 12.0
FONT = "DejaVu Sans Mono, Menlo, Consolas, monospace"

# fill colours by layer family, as papers tint convolutions, normalizations, activations, pooling and merges apart
FAMILIES = (
    (("conv", "deconv", "conv_transpose"), "#dbe9f7"),
    (("bn", "batchnorm", "layernorm", "groupnorm", "instancenorm", "norm"), "#eeeeee"),
    (("relu", "gelu", "silu", "sigmoid", "tanh", "hardswish", "hardsigmoid", "softmax", "leaky_relu", "elu", "mish"), "#fdf3d0"),
    (("pool", "avgpool", "maxpool", "global_avgpool", "adaptive"), "#dcefdc"),
    (("linear", "dense", "fc", "attention", "mlp"), "#fde2cc"),
    (("add", "concat", "mul", "cat", "sum"), "#eadcf5"),
)
STYLE = (
    ".box rect{stroke:#555;stroke-width:1}.block rect{fill:#cfd8e6;stroke:#2f4f7f;stroke-width:1.5}.input rect{fill:#fff}"
    ".cluster rect{fill:#f7f9fc;fill-opacity:0.6;stroke:#8a9bb5;stroke-dasharray:4 3}.cluster text{fill:#2f4f7f}"
    ".edge{fill:none;stroke:#666;stroke-width:1.1}text{font-size:11px}.name{font-weight:bold}"
)


def fill(box: Box) -> str:
    if box.kind != "layer":
        return ""
    for names, colour in FAMILIES:
        if box.type in names or any(box.type.startswith(n) or box.type.endswith(n) for n in names):
            return colour
    return "#ffffff"


def render_svg(scene: Scene, direction: str = "TB") -> str:
    """The scene laid out (grandalf) and written as SVG text."""
    return svg_document(scene, lay_out(scene, direction))


def svg_document(scene: Scene, placed: Placement) -> str:
    width, height = placed.width + 2 * MARGIN, placed.height + 2 * MARGIN
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.1f} {height:.1f}" font-family="{FONT}">',
        f"<title>{escape(scene.name)}</title>",
        f"<style>{STYLE}</style>",
        '<defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" markerHeight="7" orient="auto">'
        '<path d="M0,0 L8,4 L0,8 z" fill="#666"/></marker></defs>',
        f'<g transform="translate({MARGIN:.0f},{MARGIN:.0f})">',
    ]
    for c in scene.clusters:
        r = placed.clusters[c.path]
        title = escape(f"{c.path} ({c.kind})") + "\n" + escape(c.loc)
        out.append(
            f'<g class="cluster" data-path={quoteattr(c.path)} data-kind={quoteattr(c.kind)}><title>{title}</title>'
            f'{_rect(r, rx=6)}<text x="{r.x + 6:.1f}" y="{r.y + 14:.1f}">{escape(c.label)}</text></g>'
        )
    for (s, t), points in placed.routes.items():
        out.append(f'<path class="edge" data-source={quoteattr(s)} data-target={quoteattr(t)} d="{path_data(points)}" marker-end="url(#arrow)"/>')
    for b in scene.boxes:
        out.append(box_element(b, placed.boxes[b.id]))
    out += ["</g>", "</svg>", ""]
    return "\n".join(out)


def box_element(box: Box, r: Rect) -> str:
    colour = fill(box)
    style = f' style="fill:{colour}"' if colour else ""
    texts = []
    for i, line in enumerate(box.lines()):
        cls = ' class="name"' if i == 0 else ""
        texts.append(f'<text x="{r.x + r.w / 2:.1f}" y="{r.y + PAD / 2 + LINE_H * (i + 0.78):.1f}" text-anchor="middle"{cls}>{escape(line)}</text>')
    return (
        f'<g class="box {box.kind}" data-name={quoteattr(box.id)} data-type={quoteattr(box.type)}><title>{escape(box.title())}</title>'
        f'<rect x="{r.x:.1f}" y="{r.y:.1f}" width="{r.w:.1f}" height="{r.h:.1f}" rx="3"{style}/>{"".join(texts)}</g>'
    )


def _rect(r: Rect, rx: float) -> str:
    return f'<rect x="{r.x:.1f}" y="{r.y:.1f}" width="{r.w:.1f}" height="{r.h:.1f}" rx="{rx:g}"/>'


def path_data(points: list[Point]) -> str:
    """A polyline with its corners rounded: straight to each segment's middle, a quadratic curve through each bend."""
    if len(points) == 2:
        (x0, y0), (x1, y1) = points
        return f"M{x0:.1f},{y0:.1f} L{x1:.1f},{y1:.1f}"
    parts = [f"M{points[0][0]:.1f},{points[0][1]:.1f}"]
    for i in range(1, len(points) - 1):
        (xa, ya), (xb, yb), (xc, yc) = points[i - 1], points[i], points[i + 1]
        m1 = ((xa + xb) / 2, (ya + yb) / 2) if i > 1 else (xa, ya)
        m2 = ((xb + xc) / 2, (yb + yc) / 2)
        parts.append(f"L{m1[0]:.1f},{m1[1]:.1f} Q{xb:.1f},{yb:.1f} {m2[0]:.1f},{m2[1]:.1f}")
    parts.append(f"L{points[-1][0]:.1f},{points[-1][1]:.1f}")
    return " ".join(parts)
