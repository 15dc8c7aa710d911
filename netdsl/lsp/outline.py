"""The outline (document symbols): the spec with its sections; blocks and layer lists nested as written, each layer
with its type and output shape."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from netdsl.lang.schema import STRUCTURAL
from netdsl.lang.yaml_tree import YList, YMap
from netdsl.lsp.document import END, Analysis, Pos, pos
from netdsl.lsp.inlay import shape_label
from netdsl.lsp.spans import Span, name_span, token, trim, word_span

SECTIONS = ("params", "blocks", "layers", "train")


@dataclass
class Symbol:
    """One entry of the outline. `kind` names an lsprotocol SymbolKind member (Module, Class, Function, Field, ...)."""

    name: str
    kind: str
    span: tuple[Pos, Pos]  # the whole item
    selection: tuple[Pos, Pos]  # its name or type word
    detail: str = ""
    children: list[Symbol] = field(default_factory=list)


def symbols(a: Analysis) -> list[Symbol]:
    """The outline: the spec (name, input) with its sections; blocks and layer lists nested as written."""
    try:
        return _symbols(a)
    except Exception:
        return []


def _symbols(a: Analysis) -> list[Symbol]:
    tree = a.tree
    if not isinstance(tree, YMap):
        return []
    lines = a.lines
    starts = sorted(pos(loc) for loc in tree.key_locs.values())
    sections: list[Symbol] = []
    for key in SECTIONS:
        if key not in tree or key not in tree.key_locs:
            continue
        start = pos(tree.key_locs[key])
        end = trim(lines, start, min([s for s in starts if s > start], default=END))
        section = Symbol(key, "Module", (start, end), _key_span(lines, start, key))
        value = tree[key]
        if key == "layers":
            section.children = [_layer_symbol(a, i) for i, item in enumerate(a.items) if item.block is None and item.parent is None]
        elif key == "blocks" and isinstance(value, YMap):
            section.children = _block_symbols(a, value, end)
        elif isinstance(value, YMap):
            section.children = _key_symbols(lines, value, end, "Variable" if key == "params" else "Field")
        sections.append(_cover(section))
    name = tree.get("name")
    name_loc = tree.value_locs.get("name") if "name" in tree else None
    if a.kind == "library" or not isinstance(name, str):
        title, detail = os.path.splitext(os.path.basename(a.file))[0], "block library" if a.kind == "library" else ""
    else:
        shape = tree.get("input")
        title, detail = name, "" if shape is None else f"input {_text(shape)}"
    selection = token(lines, pos(name_loc), name) if isinstance(name, str) and name_loc is not None else ((1, 1), (1, 1))
    root = Symbol(title, "Module", ((1, 1), trim(lines, (1, 1), END)), selection, detail, sections)
    return [_cover(root)]


def _layer_symbol(a: Analysis, i: int) -> Symbol:
    item = a.items[i]
    word = word_span(a, item)
    named = name_span(a.lines, item)
    structural = item.word in STRUCTURAL or item.word in a.blocks or item.word in _local_blocks(a)
    label = shape_label(a, item, False)
    symbol = Symbol(
        item.name or f"{item.word} {item.path[-1]}",
        "Class" if structural else "Function",
        (item.start, trim(a.lines, item.start, item.end)),
        named or word,
        f"{item.word} {label}".strip(),
        [_layer_symbol(a, j) for j, child in enumerate(a.items) if child.parent == i],
    )
    return _cover(symbol)


def _local_blocks(a: Analysis) -> YMap:
    blocks = a.tree.get("blocks")
    return blocks if isinstance(blocks, YMap) else YMap()


def _block_symbols(a: Analysis, blocks: YMap, section_end: Pos) -> list[Symbol]:
    out: list[Symbol] = []
    starts = sorted(pos(loc) for loc in blocks.key_locs.values())
    for name, loc in blocks.key_locs.items():
        start = pos(loc)
        end = trim(a.lines, start, min([s for s in starts if s > start], default=section_end))
        body = blocks.get(name)
        params = body.get("params") if isinstance(body, YMap) else None
        detail = ", ".join(params) if isinstance(params, YMap) else ""
        layers = [_layer_symbol(a, i) for i, item in enumerate(a.items) if item.block == name and item.parent is None]
        out.append(_cover(Symbol(name, "Class", (start, min(end, section_end)), _key_span(a.lines, start, name), detail, layers)))
    return out


def _key_symbols(lines: list[str], value: YMap, section_end: Pos, kind: str) -> list[Symbol]:
    """One symbol per key of a mapping (`params:`, `train:`), its value as the detail when it is short."""
    out: list[Symbol] = []
    starts = sorted(pos(loc) for loc in value.key_locs.values())
    for key, loc in value.key_locs.items():
        start = pos(loc)
        end = trim(lines, start, min([s for s in starts if s > start], default=section_end))
        v = value.get(key)
        if isinstance(v, YMap):  # a data source or optimizer: its kind
            detail = next((_text(v[k]) for k in ("source", "name") if isinstance(v.get(k), str)), "")
        else:
            detail = "" if isinstance(v, YList) else _text(v)
        out.append(Symbol(str(key), kind, (start, min(end, section_end)), _key_span(lines, start, str(key)), detail))
    return out


def _key_span(lines: list[str], start: Pos, key: str) -> Span:
    """A key as written; empty where the text does not spell it (.net has no `layers:` or `blocks:` key)."""
    text = lines[start[0] - 1] if 1 <= start[0] <= len(lines) else ""
    return (start, (start[0], start[1] + len(key))) if text.startswith(key, start[1] - 1) else (start, start)


def _text(value: Any) -> str:
    if value is None:
        return "required"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    return str(value)


def _cover(symbol: Symbol) -> Symbol:
    """Widen a symbol's span to hold its selection and children (LSP requires both inside it)."""
    starts = [symbol.span[0], symbol.selection[0], *(c.span[0] for c in symbol.children)]
    ends = [symbol.span[1], symbol.selection[1], *(c.span[1] for c in symbol.children)]
    symbol.span = (min(starts), max(ends))
    return symbol
