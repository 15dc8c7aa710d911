"""Completion: layer types, the keys of the layer under the cursor, block names, layer names for `from:`, block
parameters, `train:` keys and their values.

The text being typed seldom parses, so netdsl.lsp.cursor reads where the cursor stands from the text itself; the
proposals come from the layer registry (types, arguments, defaults), the shipped JSON Schema (every other key and its
allowed values: top-level keys, `train:`, repeat, block definitions) and the blocks the analysis or the text's
imports know.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from netdsl.graph.build import INPUT
from netdsl.lang.imports import builtin_libraries
from netdsl.lang.params import REQUIRED, Param, declare_all
from netdsl.lang.schema import COMMON, STRUCTURAL, library_schema_of, shipped_schema
from netdsl.lang.yaml_tree import YMap, load_yaml
from netdsl.layers import LAYERS, canonical
from netdsl.layers.base import ArgSpec, Layer
from netdsl.lsp.cursor import ITEM, POSITIONAL, Context, context, is_layer_list, item_word
from netdsl.lsp.document import Analysis, Pos, is_library

TRIGGERS = [":", " ", "-", "(", ",", "="]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Completion:
    """One proposal. `kind` names an lsprotocol CompletionItemKind member (Class, Field, Value, Reference, Module, ...)."""

    label: str
    kind: str = "Text"
    detail: str = ""  # one line shown beside the label
    doc: str = ""  # Markdown shown for the selected proposal
    insert: str = ""  # text to insert when it differs from the label
    sort: str = ""  # sort key when the label's order is not wanted


@dataclass(frozen=True)
class BlockInfo:
    """What completion shows of a block: its doc, its parameters and its inputs."""

    doc: str
    params: dict[str, Param]
    inputs: tuple[str, ...] = (INPUT,)


def complete(a: Analysis, text: str, at: Pos) -> list[Completion]:
    """Proposals at `at` (1-based line and column in code points) in `text`, the document as typed now; `a` is the
    newest analysis, which may be of a slightly older text (the one being typed may not parse)."""
    try:
        ctx = context(text, at, net=a.fmt == "net")
        if ctx is None:
            return []
        return [replace(c, insert=ctx.pad + (c.insert or c.label)) if ctx.pad else c for c in _proposals(a, ctx)]
    except Exception:  # a heuristic's slip must not take the editor's completion down with it; the log keeps it
        log.exception("completion failed at %s in %s", at, a.file)
        return []


def warm() -> None:
    """Fill the caches the first completion would (every layer family imported, the schema read): ~0.2 s, once."""
    _layer_types()
    _root(False)


def _proposals(a: Analysis, ctx: Context) -> list[Completion]:
    path, net = ctx.path, a.fmt == "net"
    library = is_library(a.tree) if a.tree is not None else not ctx.all_names and bool(ctx.blocks) and "layers" not in ctx.written
    if ctx.slot == "value":
        if path[-1] == ITEM and is_layer_list(path[:-1]):
            return _types(_blocks(a, ctx)) + (_settings(ctx, library) if ctx.statement else [])
        if path in (("import",), ("import", ITEM)):
            return [Completion(n, "Module", "built-in block library") for n in builtin_libraries() if n not in ctx.imports]
        if path in (("outputs",), ("outputs", ITEM)):
            return _names([*dict.fromkeys([*ctx.all_names, *(i.name for i in a.items if i.name and i.block is None)])], ctx.written)
        refs = _ref_names(a, ctx)
        if refs is not None:
            return refs
        block = _blocks(a, ctx).get(item_word(path[:-1]) or "")
        if block is not None:
            choices = block.params.get(path[-1], Param(None)).choices or ()
            return [Completion(c, "EnumMember", f"a choice of '{path[-1]}'") for c in choices]
        return _values(_at(path, library))
    word = item_word(path)
    if path and path[-1] == ITEM and is_layer_list(path[:-1]):  # `- {con|` or `[basic: ...]`: the key is the type
        return _types(_blocks(a, ctx))
    if word is not None and word not in STRUCTURAL:
        return _arguments(word, _blocks(a, ctx), ctx.written, net)
    keys = _keys(_at(path, library))
    if net and word in STRUCTURAL:
        keys = {k: d for k, d in keys.items() if k not in ("name", "from", "layers") and not (k == "n" and POSITIONAL in ctx.written)}
    insert = "=" if net and word else ": "
    return [Completion(k, "Field", d, insert=k + insert, sort=f"{i:03d}") for i, (k, d) in enumerate(keys.items()) if k not in ctx.written]


# ---- layer types and blocks -----------------------------------------------------------------------------------------


@cache
def _layer_types() -> tuple[Completion, ...]:
    from netdsl.layers.registry import load_all

    load_all()
    out = []
    for name in sorted(LAYERS):
        cls = LAYERS[name]
        line = _first_sentence(cls.doc)
        out.append(Completion(name, "Class", line, _layer_doc(cls)))
        out += [Completion(alias, "Class", f"{line} ({name})", _layer_doc(cls)) for alias in cls.aliases]
    lists = _keys(_at(("layers", ITEM), False))
    out += [Completion(word, "Keyword", lists.get(word, "")) for word in STRUCTURAL]
    return tuple(out)


def _types(blocks: dict[str, BlockInfo]) -> list[Completion]:
    """Every layer type and alias, group and repeat, and the blocks in scope."""
    own = [Completion(name, "Module", _first_line(info.doc), _block_doc(name, info)) for name, info in blocks.items()]
    return [*_layer_types(), *own]


def _layer_doc(cls: type[Layer]) -> str:
    lines = [f"**{cls.type_name}**: {cls.doc}", ""]
    lines += [f"- `{s.name}`{_aliases(s)}: {s.doc}{_default(s)}" for s in cls.args()]
    return "\n".join(lines)


def _block_doc(name: str, info: BlockInfo) -> str:
    lines = [f"**{name}** (block): {info.doc}".rstrip(": "), ""]
    lines += [f"- `{p}`{_param_default(param)}{': ' + param.doc if param.doc else ''}" for p, param in info.params.items()]
    return "\n".join(lines)


def _blocks(a: Analysis, ctx: Context) -> dict[str, BlockInfo]:
    """The blocks in scope: the analysis's and its libraries', then those of built-in libraries and definitions the text
    has gained since (the analysis may be of an older text, or have stopped before the blocks)."""
    out = {name: BlockInfo(a.block_doc(name), dict(block.params), block.inputs) for name, block in a.blocks.items()}
    for _, blocks in a.libraries:
        for name, info in _infos(blocks).items():
            out.setdefault(name, info)
    read = {os.path.realpath(file) for file, _ in a.libraries}
    for library in ctx.imports:
        path = builtin_libraries().get(library)
        if path is not None and os.path.realpath(path) not in read:
            for name, info in _library(library).items():
                out.setdefault(name, info)
    for name in ctx.blocks:
        out.setdefault(name, BlockInfo("", {}))
    return out


@cache
def _library(name: str) -> dict[str, BlockInfo]:
    """A built-in library's blocks, read once (for imports the analysis has not seen yet)."""
    path = builtin_libraries()[name]
    tree = load_yaml(path.read_text(encoding="utf-8"), str(path))
    return _infos(tree.get("blocks") if isinstance(tree, YMap) else None)


def _infos(blocks: Any) -> dict[str, BlockInfo]:
    """The blocks of a `blocks:` mapping as written."""
    out = {}
    for block, body in blocks.items() if isinstance(blocks, YMap) else ():
        if isinstance(body, YMap):
            inputs = tuple(map(str, body["inputs"])) if isinstance(body.get("inputs"), list) else (INPUT,)
            out[block] = BlockInfo(" ".join(str(body.get("doc", "")).split()), declare_all(body.get("params"), block)[0], inputs)
    return out


# ---- a layer's arguments and the layer names it may read ------------------------------------------------------------


def _arguments(word: str, blocks: dict[str, BlockInfo], written: frozenset[str], net: bool) -> list[Completion]:
    """A layer type's arguments (aliases too) and the common keys, or a block's parameters; none already written."""
    insert = "=" if net else ": "
    out: list[Completion] = []
    name = canonical(word)
    common = {k: v["description"] for k, v in COMMON.items() if not (net and k in ("name", "from"))}
    if name is not None:
        cls = LAYERS[name]
        specs = cls.args()
        taken = {s.name for s in specs if written & {s.name, *s.alias} or (POSITIONAL in written and s.name == cls.primary)}
        for s in specs:
            if s.name in taken:
                continue
            for label in (s.name, *s.alias):
                detail = (f"alias of '{s.name}': " if label != s.name else "") + s.doc + _default(s)
                out.append(Completion(label, "Field", detail, f"`{s.name}`{_aliases(s)}: {s.doc}{_default(s)}", label + insert, f"0{len(out):03d}"))
        if cls.has_weights:
            common["init"] = "initialization of the weights (overrides the spec's `init:` for this layer)"
    elif word in blocks:
        for p, param in blocks[word].params.items():
            detail = "; ".join(filter(None, [param.doc, _param_default(param).strip(" ()")]))
            out.append(Completion(p, "Field", detail, f"`{p}`{_param_default(param)}", p + insert, f"0{len(out):03d}"))
    else:
        return []
    out += [Completion(k, "Property", d, insert=k + insert, sort=f"1{i:03d}") for i, (k, d) in enumerate(common.items())]
    return [c for c in out if c.label not in written]


def _ref_names(a: Analysis, ctx: Context) -> list[Completion] | None:
    """The layer names a `from:` (or a reference argument) may read here, or None when the value is not a reference."""
    path = ctx.path[:-1] if ctx.path[-1] == ITEM else ctx.path
    word = item_word(path[:-1])
    if word is None:
        return None
    if path[-1] != "from":
        name = canonical(word)
        if name is None:
            return None
        spec = next((s for s in LAYERS[name].args() if path[-1] in (s.name, *s.alias)), None)
        if spec is None or spec.kind.port is None:
            return None
    inputs: tuple[str, ...] = (INPUT,)
    if path[0] == "blocks" and len(path) > 1:
        inputs = _blocks(a, ctx).get(path[1], BlockInfo("", {})).inputs
    return _names([*inputs, *ctx.names], ctx.written)


def _names(names: list[str], written: frozenset[str]) -> list[Completion]:
    return [Completion(n, "Reference", "a layer input" if n == INPUT else "layer", sort=f"{i:04d}") for i, n in enumerate(names) if n not in written]


# ---- keys and values from the schema ---------------------------------------------------------------------------------


def _settings(ctx: Context, library: bool) -> list[Completion]:
    """The top-level keys of a .net file, proposed where a statement starts."""
    keys = _keys(_at((), library))
    out = [Completion(k, "Field", d, insert=f"{k}: ", sort=f"~{k}") for k, d in keys.items() if k not in ctx.written and k not in ("layers", "blocks")]
    return [*out, Completion("block", "Keyword", "define a block: block name(param=default, ...) { layers }", sort="~block")]


@cache
def _root(library: bool) -> dict[str, Any]:
    schema = shipped_schema()
    return library_schema_of(schema) if library else schema


def _resolve(node: Any) -> list[dict[str, Any]]:
    """A schema node with its $refs followed and its anyOf/oneOf/allOf branches flattened."""
    if not isinstance(node, dict):
        return []
    if "$ref" in node:
        ref = str(node["$ref"])
        target = _root(False)["$defs"].get(ref.rsplit("/", 1)[-1]) if ref.startswith("#/$defs/") else None
        return _resolve({**target, **{k: v for k, v in node.items() if k != "$ref"}}) if isinstance(target, dict) else []
    out = [node]
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in node.get(key, []):
            out += _resolve(branch)
    return out


def _at(path: tuple[str, ...], library: bool) -> list[dict[str, Any]]:
    """The schema nodes that describe the value at `path`."""
    nodes = _resolve(_root(library))
    for step in path:
        found: list[dict[str, Any]] = []
        for node in nodes:
            if step == ITEM:
                found += _resolve(node.get("items"))
            elif step in node.get("properties", {}):
                found += _resolve(node["properties"][step])
            elif isinstance(node.get("additionalProperties"), dict):
                found += _resolve(node["additionalProperties"])
        nodes = found
    return nodes


def _keys(nodes: list[dict[str, Any]]) -> dict[str, str]:
    """The keys the nodes allow, with their descriptions."""
    out: dict[str, str] = {}
    for node in nodes:
        for key, sub in node.get("properties", {}).items():
            if not out.get(key):
                out[key] = next((str(n["description"]) for n in [sub, *_resolve(sub)] if "description" in n), "")
    return out


def _values(nodes: list[dict[str, Any]]) -> list[Completion]:
    """The values the nodes allow by name: enum members, constants, true and false."""
    values: dict[str, str] = {}
    for node in nodes:
        for value in [*node.get("enum", []), *([node["const"]] if "const" in node else [])]:
            values.setdefault(_literal(value), str(node.get("description", "")))
        types = node.get("type")
        if types == "boolean" or (isinstance(types, list) and "boolean" in types):
            values.setdefault("true", "")
            values.setdefault("false", "")
    return [Completion(v, "EnumMember" if v not in ("true", "false") else "Value", _first_line(d)) for v, d in values.items()]


# ---- text -----------------------------------------------------------------------------------------------------------


def _literal(value: Any) -> str:
    return "true" if value is True else "false" if value is False else "null" if value is None else str(value)


def _first_sentence(doc: str) -> str:
    line = _first_line(doc)
    end = line.find(". ")
    return line[: end + 1] if end >= 0 else line


def _first_line(doc: str) -> str:
    return " ".join(doc.split())[:200]


def _aliases(spec: ArgSpec) -> str:
    return f" ({', '.join(spec.alias)})" if spec.alias else ""


def _default(spec: ArgSpec) -> str:
    return "; required" if spec.required else f"; default {_literal(spec.default)}"


def _param_default(param: Param) -> str:
    default = "required" if param.default is REQUIRED else f"default {_literal(param.default)}"
    choices = f", one of {', '.join(param.choices)}" if param.choices else ""
    return f" ({default}{choices})"


__all__ = ["TRIGGERS", "BlockInfo", "Completion", "complete", "warm"]
