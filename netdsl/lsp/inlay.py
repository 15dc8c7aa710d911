"""Inlay hints: each layer item's output shape (optionally its parameter count) where the line or the item ends."""

from __future__ import annotations

from dataclasses import dataclass

from netdsl.analysis.summary import shape_text
from netdsl.lsp.document import Analysis, Item, Pos

MAX_SHAPES = 3  # distinct shapes shown for an item written once and built many times (a block's layer, a repeat's body)


@dataclass(frozen=True)
class Hint:
    at: Pos
    label: str
    tooltip: str = ""


def inlay_hints(a: Analysis, first_line: int = 1, last_line: int = 1 << 62, params: bool = False) -> list[Hint]:
    """Hints for the items that start on lines first_line..last_line (1-based, inclusive), in text order."""
    lines = a.lines
    by_line: dict[int, list[int]] = {}
    for i, item in enumerate(a.items):
        if first_line <= item.start[0] <= last_line:
            by_line.setdefault(item.start[0], []).append(i)
    out: list[Hint] = []
    for line, indexes in by_line.items():
        text = lines[line - 1] if line <= len(lines) else ""
        outer = [i for i in indexes if not _parent_on_line(a, a.items[i], line)]
        for k, i in enumerate(outer):
            label = shape_label(a, a.items[i], params)
            if not label:
                continue
            if k + 1 < len(outer):
                at = _before_separator(text, a.items[i].start[1], a.items[outer[k + 1]].start[1])
            else:
                at = len(text.rstrip()) + 1
            out.append(Hint((line, at), label))
    return sorted(out, key=lambda h: h.at)


def _parent_on_line(a: Analysis, item: Item, line: int) -> bool:
    return item.parent is not None and a.items[item.parent].start[0] == line


def _before_separator(text: str, start: int, next_start: int) -> int:
    """The column just after an item that a sibling follows on the same line: before the `->` or `,` between them."""
    between = text[start - 1 : next_start - 1].rstrip()
    for separator in ("->", ","):
        if between.endswith(separator):
            between = between[: -len(separator)].rstrip()
            break
    return start + len(between)


def shape_label(a: Analysis, item: Item, params: bool) -> str:
    """'→ 64x56x56' (with params=True: '→ 64x56x56 · 36.9k'), from the item's nodes or groups; '' when it built none."""
    shapes: list[str] = []
    count = 0
    groups = a.groups_of(item)
    if item.word == "repeat":
        groups = [g for g in groups if g.kind == "repeat"]
    elif item.word == "group":
        groups = [g for g in groups if g.kind == "group"]
    for group in groups:
        totals = a.totals.get(group.path)
        if totals is not None:
            shapes.append(shape_text(totals.last.shape))
            count += totals.params
    if not groups:
        for node in a.nodes_of(item):
            shapes.append(shape_text(node.shape))
            count += node.param_count()
    if not shapes:
        return ""
    distinct = list(dict.fromkeys(shapes))
    text = " | ".join(distinct[:MAX_SHAPES]) + (" | …" if len(distinct) > MAX_SHAPES else "")
    if len(shapes) > 1:
        text += f" ×{len(shapes)}"
    return f"→ {text}" + (f" · {compact(count)}" if params and count else "")


def compact(n: int) -> str:
    """9408 -> '9.4k', 11689512 -> '11.7M': a parameter count short enough for the end of a line."""
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= factor:
            return f"{n / factor:.1f}{suffix}"
    return str(n)
