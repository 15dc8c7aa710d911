"""Write a raw spec tree as YAML in the zoo's layout: the inverse of the YAML loader, for `fmt` and `convert`.

Top-level keys one per line, `layers` as a block list of flow items (`- conv: {name: c1, out: 64, k: 3}`),
`blocks` as block mappings. An item whose `layers` spans several source lines is written in block style
(`- group:` with its options below), one whose list sat on one line stays a flow item. Strings are plain
where YAML reads them back unchanged, double-quoted otherwise; any tree can be written.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import yaml

from netdsl.errors import Loc
from netdsl.lang.layout import Line, blank, is_inline
from netdsl.lang.yaml_tree import YList, YMap

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def write_yaml(tree: Any) -> list[Line]:
    """The lines of a tree as YAML (see the module doc)."""
    if tree is None:
        return []
    if not isinstance(tree, YMap):
        return [Line(0, flow(tree), getattr(tree, "loc", None))]
    lines: list[Line] = []
    for key, value in tree.items():
        loc = tree.key_locs[key]
        if key == "layers" and isinstance(value, YList) and value:
            lines += [Line(0, "layers:", _own_line(loc, value.item_locs[0]), keep_blank_before=False), *_items(value, 2)]
        elif key == "blocks" and isinstance(value, YMap) and value and all(isinstance(b, YMap) for b in value.values()):
            lines.append(Line(0, "blocks:", _own_line(loc, next(iter(value.key_locs.values()))), keep_blank_before=False))
            for i, (name, definition) in enumerate(value.items()):
                lines += [blank()] if i else []
                lines.append(Line(2, f"{scalar(name, key=True)}:", value.key_locs[name]))
                lines += _mapping_lines(definition, 4)
        elif isinstance(value, YMap) and value and not _inline_map(value, loc):
            lines.append(Line(0, f"{scalar(key, key=True)}:", loc, keep_blank_before=False))
            lines += _mapping_lines(value, 2)
        else:
            lines.append(Line(0, f"{scalar(key, key=True)}: {flow(value)}".rstrip(), loc, keep_blank_before=False))
    return lines


def _own_line(key: Loc, first: Loc) -> Loc | None:
    """A key line above a block list or mapping is anchored only where the source had it on a line of its own
    (a .net file's `layers` key sits on its first item's line, which must hold that item's comments)."""
    return key if key.line != first.line else None


def _inline_map(value: YMap, key_loc: Loc) -> bool:
    return all(at.line == key_loc.line for at in value.key_locs.values())


def _mapping_lines(value: YMap, indent: int, secondary: bool = False) -> list[Line]:
    """A block mapping: `key: flow value`, or `layers:` with a block list below."""
    lines: list[Line] = []
    for key, item in value.items():
        loc = value.key_locs[key]
        if key == "layers" and isinstance(item, YList) and item:
            lines += [Line(indent, "layers:", _own_line(loc, item.item_locs[0]), secondary=secondary), *_items(item, indent + 2)]
        else:
            lines.append(Line(indent, f"{scalar(key, key=True)}: {flow(item)}".rstrip(), loc, secondary=secondary))
    return lines


def _items(items: YList, indent: int) -> list[Line]:
    lines: list[Line] = []
    for item, loc in zip(items, items.item_locs):
        if isinstance(item, YMap) and len(item) == 1:
            word, opts = next(iter(item.items()))
            layers = opts.get("layers") if isinstance(opts, YMap) else None
            if isinstance(layers, YList) and layers and not is_inline(opts):
                lines.append(Line(indent, f"- {scalar(word, key=True)}:", loc))
                lines += _mapping_lines(opts, indent + 4, secondary=True)
                continue
        lines.append(Line(indent, f"- {_flow_item(item)}", loc))
    return lines


def _flow_item(item: Any) -> str:
    """A list item in flow style; a one-key mapping as `key: value` (`[conv: {out: 64}, relu]`)."""
    if isinstance(item, dict) and len(item) == 1:
        key, value = next(iter(item.items()))
        return f"{scalar(key, key=True)}: {flow(value)}".rstrip()
    return flow(item)


def flow(value: Any) -> str:
    """A value in YAML flow style, on one line."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{scalar(k, key=True)}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow_item(v) for v in value) + "]"
    return scalar(value)


def scalar(value: Any, key: bool = False) -> str:
    if value is None:
        return "" if key else "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(yaml.representer.SafeRepresenter().represent_float(value).value)
    text = str(value)
    return text if _plain_ok(text, key) else json.dumps(text, ensure_ascii=False)


@lru_cache(maxsize=8192)
def _plain_ok(text: str, key: bool) -> bool:
    """Whether YAML reads `text` unquoted, in a flow collection, back as the same string."""
    if not text or text != text.strip() or "\n" in text:
        return False
    probe = f"{{{text}: 0}}" if key else f"[{text}]"
    try:
        loaded = yaml.load(probe, Loader=_LOADER)
    except yaml.YAMLError:
        return False
    return loaded == ({text: 0} if key else [text])
