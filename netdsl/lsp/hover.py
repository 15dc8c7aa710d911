"""Hover: what a layer, a block use, a repeat or an argument's expression is at this place, in Markdown."""

from __future__ import annotations

import math
from typing import Any

from netdsl.analysis.summary import shape_text
from netdsl.ir import Group, Node
from netdsl.lang.params import REQUIRED
from netdsl.lang.schema import COMMON
from netdsl.lang.yaml_tree import YMap
from netdsl.layers import LAYERS, Layer, canonical
from netdsl.layers.base import ArgSpec
from netdsl.lsp.document import END, Analysis, Item, Pos, key_at, pos, word_range
from netdsl.lsp.inlay import compact

MAX_ROWS = 12  # instances or iterations listed in one hover; the rest are counted


def hover(a: Analysis, at: Pos) -> tuple[str, tuple[Pos, Pos]] | None:
    """(Markdown, the range it is about) for the position, or None where there is nothing to say."""
    item = a.item_at(at)
    if item is None:
        return _top_level(a, at)
    found = key_at(item.opts, at, item.end)
    if found is not None and found[0] != "_":
        key, on_value = found
        where = item.opts.value_locs[key] if on_value else item.opts.key_locs[key]
        text = _argument(a, item, key)
        return (text, word_range(a.lines, pos(where))) if text else None
    text = _item(a, item)
    return (text, word_range(a.lines, item.start)) if text else None


def _item(a: Analysis, item: Item) -> str:
    if item.word == "repeat":
        return _repeat(a, item)
    if item.word == "group":
        return _group(a, item)
    if item.word in a.blocks:
        return _block_use(a, item)
    return _layer(a, item)


def layer_class(word: str) -> type[Layer] | None:
    name = canonical(word)
    return LAYERS[name] if name else None


def _head(title: str, doc: str, where: str = "") -> list[str]:
    line = f"**{title}**" + (f" ({where})" if where else "") + (f" — {doc}" if doc else "")
    return [line, ""]


def _layer(a: Analysis, item: Item) -> str:
    cls = layer_class(item.word)
    if cls is None:
        return ""
    where = ", ".join(([cls.type_name] if cls.type_name != item.word else []) + ([f"in block `{item.block}`"] if item.block else []))
    out = _head(item.word, cls.doc, where)
    nodes = a.nodes_of(item)
    if len(nodes) == 1:
        node = nodes[0]
        out += [f"`{node.name}`: {_flow(node)}", "", f"`{node.layer.type_name}({node.layer.describe()})`"]
        params = node.params()
        if params:
            out += ["", *(f"- `{p}` {shape_text(s)}" for p, s in params)]
    elif nodes:
        total = sum(n.param_count() for n in nodes)
        out += [f"{len(nodes)} instances · {total:,} parameters · {compact(sum(n.macs() for n in nodes))} MACs in all", ""]
        out += [f"- `{n.name}`: {_shapes(n)} · {n.param_count():,} parameters" for n in nodes[:MAX_ROWS]]
        out += _more(len(nodes))
    else:
        out += _arguments(cls)
    return "\n".join(out).rstrip()


def _flow(node: Node) -> str:
    return f"{_shapes(node)} · {node.param_count():,} parameters · {compact(node.macs())} MACs"


def _shapes(node: Node) -> str:
    ins = ", ".join(shape_text(s) for s in node.input_shapes) or "—"
    return f"{ins} → {shape_text(node.shape)}"


def _more(n: int) -> list[str]:
    return [f"- … {n - MAX_ROWS} more"] if n > MAX_ROWS else []


def _arguments(cls: type[Layer]) -> list[str]:
    rows = []
    for spec in cls.args():
        names = ", ".join(f"`{n}`" for n in [spec.name, *spec.alias])
        default = "required" if spec.required else f"default `{_value(spec.default)}`"
        rows.append(f"- {names} ({default}): {spec.doc}")
    return rows


def _instance_totals(a: Analysis, group: Group) -> str:
    totals = a.totals.get(group.path)
    if totals is None:
        return "no layers"
    return f"→ {shape_text(totals.last.shape)} · {totals.params:,} parameters · {compact(totals.macs)} MACs"


def _block_use(a: Analysis, item: Item) -> str:
    block = a.blocks[item.word]
    where = f"defined at {_short(block.loc.file)}:{block.loc.line}"
    out = _head(item.word, a.block_doc(item.word), where)
    groups = a.groups_of(item)
    if len(groups) == 1:
        group = groups[0]
        out += [f"`{group.path}` {_instance_totals(a, group)}", ""]
        out += [f"- `{k}` = `{_value(v)}`" for k, v in group.args]
    elif groups:
        out += [f"{len(groups)} instances", ""]
        for group in groups[:MAX_ROWS]:
            totals = a.totals.get(group.path)
            shape, params = (shape_text(totals.last.shape), f"{totals.params:,}") if totals else ("—", "0")
            out.append(f"- `{group.path}`: {_values(group.args)} → {shape} · {params} parameters")
        out += _more(len(groups))
    else:
        out += [f"- `{k}`: {'required' if p.default is REQUIRED else f'default `{_value(p.default)}`'}" for k, p in block.params.items()]
    return "\n".join(out).rstrip()


def _short(file: str) -> str:
    return file.rsplit("/", 1)[-1]


def _group(a: Analysis, item: Item) -> str:
    groups = [g for g in a.groups_of(item) if g.kind == "group"]
    out = _head("group", "a named list of layers: one submodule", "")
    out += [f"`{g.path}` {_instance_totals(a, g)}" for g in groups[:MAX_ROWS]]
    return "\n".join(out).rstrip()


def _repeat(a: Analysis, item: Item) -> str:
    out = _head("repeat", "the same layers n times; `i`, `first` and `last` tell the iteration")
    repeats = [g for g in a.groups_of(item) if g.kind == "repeat"]
    if not repeats:
        n = len(a.nodes_of(a.items[a.items.index(item) + 1])) if a.items.index(item) + 1 < len(a.items) else 0
        return "\n".join([*out, "unnamed: its layers join the list around it" + (f" ({n} copies of the first)" if n else "")])
    for group in repeats[:MAX_ROWS]:
        out += [f"`{group.path}` {_instance_totals(a, group)}", ""]
        children = _children(a, group.path)
        for i, child in enumerate(children[:MAX_ROWS]):
            instance = next((g for g in a.graph.groups if g.path == child), None) if a.graph else None
            values = f"i={i}" + (f", {_values(instance.args)}" if instance and instance.args else "")
            totals = a.totals.get(child)
            node = _node(a, child)
            if totals:
                shape, params = shape_text(totals.last.shape), totals.params
            elif node:
                shape, params = shape_text(node.shape), node.param_count()
            else:
                shape, params = "—", 0
            out.append(f"- `{child}`: {values} → {shape} · {params:,} parameters")
        out += _more(len(children))
    return "\n".join(out).rstrip()


def _children(a: Analysis, path: str) -> list[str]:
    """The direct members of a group, in order."""
    if a.graph is None:
        return []
    out: dict[str, None] = {}
    prefix = path + "."
    for node in a.graph.nodes:
        if node.name.startswith(prefix):
            out[prefix + node.name[len(prefix) :].split(".", 1)[0]] = None
    return list(out)


def _node(a: Analysis, name: str) -> Node | None:
    if a.graph is None:
        return None
    return next((n for n in a.graph.nodes if n.name == name), None)


def _argument(a: Analysis, item: Item, key: str) -> str:
    """An argument: its doc and the value it takes in each instance."""
    if key in COMMON:
        doc = str(COMMON[key].get("description", ""))
        out = [f"**{key}** — {doc}" if doc else f"**{key}**"]
        if key == "from":
            nodes = a.nodes_of(item)
            for node in nodes[:MAX_ROWS]:
                out.append(
                    f"- `{node.name}` reads " + ", ".join(f"`{i}`" for i in node.data_inputs) + f": {', '.join(shape_text(s) for s in node.input_shapes)}"
                )
        return "\n".join(out)
    if item.word in a.blocks:
        values = [(g.path, dict(g.args).get(key)) for g in a.groups_of(item)]
        head = f"**{key}** — parameter of block `{item.word}`"
        return "\n".join([head, "", *(f"- `{p}`: `{_value(v)}`" for p, v in values[:MAX_ROWS])])
    if item.word == "repeat" and key == "n":
        repeats = [g for g in a.groups_of(item) if g.kind == "repeat"]
        counts = [len(_children(a, g.path)) for g in repeats]
        return "**n** — number of repetitions" + (f": {', '.join(map(str, counts))}" if counts else "")
    cls = layer_class(item.word)
    spec = _spec(cls, key) if cls else None
    if spec is None:
        return ""
    out = [f"**{spec.name}**" + (f" ({', '.join(spec.alias)})" if spec.alias else "") + f" — {spec.doc}", ""]
    nodes = a.nodes_of(item)
    values = [(n.name, getattr(n.layer, spec.name, None)) for n in nodes]
    if len({repr(v) for _, v in values}) == 1:
        out.append(f"= `{_value(values[0][1])}`" + (f" in all {len(values)} instances" if len(values) > 1 else ""))
    else:
        out += [f"- `{p}`: `{_value(v)}`" for p, v in values[:MAX_ROWS]]
        if len(values) > MAX_ROWS:
            out.append(f"- … {len(values) - MAX_ROWS} more")
    return "\n".join(out).rstrip()


def _spec(cls: type[Layer], key: str) -> ArgSpec | None:
    if key == "_" and cls.primary:
        key = cls.primary
    return next((s for s in cls.args() if key == s.name or key in s.alias), None)


def _values(args: tuple[tuple[str, Any], ...]) -> str:
    return ", ".join(f"{k}={_value(v)}" for k, v in args)


def _value(value: Any) -> str:
    if isinstance(value, tuple) and value and all(isinstance(v, int) for v in value):
        return "x".join(map(str, value)) if len(set(value)) > 1 else str(value[0])
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:g}"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, YMap):
        return "{…}"
    return str(value)


def _top_level(a: Analysis, at: Pos) -> tuple[str, tuple[Pos, Pos]] | None:
    """On the spec's `name` or `input`: the whole network's numbers."""
    tree = a.tree
    if not isinstance(tree, YMap):
        return None
    found = key_at(tree, at, END)
    if found is None or found[0] not in ("name", "input") or at[0] != (tree.value_locs if found[1] else tree.key_locs)[found[0]].line:
        return None
    key, on_value = found
    text = network_summary(a)
    return (text, word_range(a.lines, pos((tree.value_locs if on_value else tree.key_locs)[key]))) if text else None


def network_summary(a: Analysis) -> str:
    graph = a.graph
    if graph is None or not a.complete:
        return ""
    params = sum(n.param_count() for n in graph.nodes)
    macs = sum(n.macs() for n in graph.nodes)
    return f"**{graph.name}**: {shape_text(graph.input_shape)} → {shape_text(graph.output_shape)} · {params:,} parameters · {compact(macs)} MACs · {len(graph.nodes)} layers"
