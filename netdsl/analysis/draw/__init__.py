"""`netdsl draw`: a picture of a network as papers draw it — one box per layer, merges with their inputs, groups, blocks
and repeats as nested clusters collapsed below a depth. SVG (laid out by grandalf), a self-contained HTML page (laid
out in the browser by a vendored dagre, clusters open on click), PNG/PDF through cairosvg where it is installed."""

from __future__ import annotations

import sys
from pathlib import Path

from netdsl.errors import input_error
from netdsl.ir import Graph

FORMATS = ("svg", "html", "png", "pdf")
DIRECTIONS = ("TB", "LR")
DEFAULT_DEPTH = 2


def picture_format(output: str, given: str | None) -> str:
    """The format to write: --format if given, else the output's suffix; a located error for anything else."""
    if given is not None:
        return given
    suffix = Path(output).suffix
    if suffix.lower().lstrip(".") not in FORMATS:
        got = f"got '{suffix}'" if suffix else f"got '{output}', which has no suffix"
        raise input_error("-o", f"draw writes .svg, .html, .png or .pdf; {got}")
    return suffix.lower().lstrip(".")


def draw(graph: Graph, fmt: str = "svg", depth: int | None = DEFAULT_DEPTH, direction: str = "TB", only: str | None = None) -> bytes:
    """The picture of `graph` in one of FORMATS; `depth` as summarize's (None: every cluster open); `only`: one group's inside."""
    from netdsl.analysis.draw.scene import build_scene

    if fmt == "html":
        from netdsl.analysis.draw.html import render_html

        return render_html(build_scene(graph, None, only), depth, direction).encode()
    _import_grandalf()
    from netdsl.analysis.draw.svg import render_svg

    svg = render_svg(build_scene(graph, depth, only), direction)
    if fmt == "svg":
        return svg.encode()
    return _convert(svg, fmt)


def _import_grandalf() -> None:
    """Import grandalf without numpy: its geometry module imports numpy when it can, for force-directed layouts we do not
    use; that import alone costs half a second and would break the rule that the front end never loads numpy."""
    if "grandalf.layouts" in sys.modules or "numpy" in sys.modules:
        import grandalf.layouts

        return
    sys.modules["numpy"] = None  # type: ignore[assignment]  # makes `import numpy` raise ImportError, for this import only
    try:
        import grandalf.layouts  # noqa: F401
    finally:
        del sys.modules["numpy"]


def _convert(svg: str, fmt: str) -> bytes:
    try:
        import cairosvg  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except (ImportError, OSError):  # OSError: the package is there but the cairo library is not
        raise input_error(
            "-o", f"writing .{fmt} needs CairoSVG and the cairo library: pip install 'netdsl[draw]' (Debian: apt install libcairo2), or write .svg or .html"
        ) from None
    if fmt == "png":
        return bytes(cairosvg.svg2png(bytestring=svg.encode(), scale=2.0))
    return bytes(cairosvg.svg2pdf(bytestring=svg.encode()))


__all__ = ["DEFAULT_DEPTH", "DIRECTIONS", "FORMATS", "draw", "picture_format"]
