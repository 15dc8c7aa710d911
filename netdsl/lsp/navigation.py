"""Navigation: go to definition (a block use to its definition, a `from:` name to its layer, an import to its file) and
find references of a layer or block name (the outline is netdsl.lsp.outline).

Names are resolved from the written text as netdsl.graph.build.Builder resolves them: in the item's own list (earlier items
only), then in the enclosing lists (groups, repeats), a block definition's lists seeing only themselves and its declared
`inputs`. An unnamed repeat without `each` splices its items into the enclosing list, so its items' names belong there.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from netdsl.errors import Loc
from netdsl.ir import INPUT
from netdsl.lang.imports import builtin_libraries, search_path
from netdsl.lang.schema import STRUCTURAL
from netdsl.lang.yaml_tree import YList, YMap
from netdsl.layers import LAYERS, canonical
from netdsl.lsp.document import END, Analysis, Item, Pos, pos
from netdsl.lsp.spans import Span, name_span, token, word_span

Decl = tuple[Any, ...]  # what a name stands for: ("item", index in Analysis.items) or ("input", block, index in its inputs)


@dataclass(frozen=True)
class Target:
    """A place in a file: this document's (file == Analysis.file) or another, e.g. a built-in library."""

    file: str
    span: tuple[Pos, Pos]


@dataclass(frozen=True)
class Ref:
    """A layer name as written where a layer is read: `from:`, a reference argument (`to:`) or top-level `outputs:`."""

    text: str
    span: Span
    item: int | None  # the item it is written in; None for `outputs:`
    block: str | None  # the block definition it is written in


def definition(a: Analysis, at: Pos) -> list[Target]:
    """Where the thing under the position is defined: a layer name's item, a block use's definition, an import's file."""
    try:
        return _definition(a, at)
    except Exception:  # an editor request must never fail; a wrong guess is only an empty answer
        return []


def references(a: Analysis, at: Pos, include_declaration: bool) -> list[Target]:
    """Every place in this document that reads the layer (or uses the block) under the position."""
    try:
        return _references(a, at, include_declaration)
    except Exception:
        return []


# -- definition and references ------------------------------------------------------------------------------
def _definition(a: Analysis, at: Pos) -> list[Target]:
    if not isinstance(a.tree, YMap):
        return []
    names = _Names(a)
    ref = names.ref_at(at)
    if ref is not None:
        return [Target(a.file, names.decl_span(d)) for d in names.resolve(ref)]
    item = _item_word_at(a, at)
    if item is not None and item.word not in STRUCTURAL:
        target = _block_target(a, item.word)
        return [target] if target else []
    library = _import_at(a, at)
    return [Target(library, ((1, 1), (1, 1)))] if library else []


def _references(a: Analysis, at: Pos, include_declaration: bool) -> list[Target]:
    if not isinstance(a.tree, YMap):
        return []
    block = _block_at(a, at)
    if block is not None:
        uses = [Target(a.file, word_span(a, item)) for item in a.items if item.word == block]
        definition = _block_target(a, block)
        return ([definition] if include_declaration and definition else []) + uses
    names = _Names(a)
    decls = names.decls_at(at)
    if not decls:
        return []
    out = sorted((Target(a.file, names.decl_span(d)) for d in decls), key=lambda t: t.span) if include_declaration else []
    out += [Target(a.file, ref.span) for ref in names.refs if decls & set(names.resolve(ref))]
    return list(dict.fromkeys(out))


class _Names:
    """The layer names of a document: who declares each, where each is read, and what each read resolves to."""

    def __init__(self, a: Analysis):
        self.a = a
        self.lines = a.lines
        self.frames: dict[tuple[str | None, int | None], list[int]] = defaultdict(list)
        for i in range(len(a.items)):
            self.frames[self.frame_of(i)].append(i)
        self.inputs = _block_inputs(a.tree, self.lines)
        self.refs = self._refs()

    def frame_of(self, i: int) -> tuple[str | None, int | None]:
        """(block, owner): the list whose names item i joins; owner is the group or repeat holding it (None: the top)."""
        item = self.a.items[i]
        owner = item.parent
        while owner is not None and _splices(self.a.items[owner]):
            owner = self.a.items[owner].parent
        return item.block, owner

    def name(self, i: int) -> str | None:
        name = self.a.items[i].name
        return name if name and "{" not in name else None

    def _refs(self) -> list[Ref]:
        out: list[Ref] = []
        for i, item in enumerate(self.a.items):
            locs = getattr(item.opts, "value_locs", {})
            keys = ["from"]
            cls = LAYERS[canonical(item.word) or ""] if canonical(item.word) and item.word not in self.a.blocks else None
            if cls is not None:
                for spec in cls.ref_args():
                    keys += [spec.name, *spec.alias] + (["_"] if cls.primary == spec.name else [])
            for key in keys:
                if key in item.opts:
                    out += self._strings(item.opts[key], locs.get(key), i, item.block)
        tree = self.a.tree
        if self.a.kind == "spec" and "outputs" in tree:
            out += self._strings(tree["outputs"], tree.value_locs.get("outputs"), None, None)
        return out

    def _strings(self, value: Any, loc: Loc | None, item: int | None, block: str | None) -> list[Ref]:
        if isinstance(value, YList):
            return [Ref(v, token(self.lines, pos(at), v), item, block) for v, at in zip(value, value.item_locs) if isinstance(v, str)]
        if isinstance(value, str) and loc is not None:
            return [Ref(value, token(self.lines, pos(loc), value), item, block)]
        return []

    def ref_at(self, at: Pos) -> Ref | None:
        return next((r for r in self.refs if r.span[0] <= at <= r.span[1]), None)

    def resolve(self, ref: Ref) -> list[Decl]:
        """What a written name stands for, as the builder would find it; [] for `input`, a parameter or an unknown name."""
        text = ref.text
        if text.startswith("/"):  # an absolute module path: from the spec's top-level list, wherever it is read
            if ref.block is not None:
                return []
            head, _, rest = text[1:].partition(".")
            return self.members([i for i in self.frames[(None, None)] if self.name(i) == head], rest)
        head, _, rest = text.partition(".")
        if "{" in head or (head == INPUT and not rest):
            return []
        frame: tuple[str | None, int | None] = (ref.block, None) if ref.item is None else self.frame_of(ref.item)
        anchor = END if ref.item is None else self.a.items[ref.item].start
        while True:
            same = [i for i in self.frames[frame] if self.name(i) == head]
            earlier = [i for i in same if self.a.items[i].start < anchor]
            inputs: list[Decl] = []
            if frame[0] is not None and frame[1] is None:
                inputs = [("input", frame[0], k) for k, (name, _) in enumerate(self.inputs.get(frame[0], [])) if name == head]
            if earlier or inputs:
                return self.members(earlier, rest) + inputs
            owner = frame[1]
            if same or owner is None:  # defined later in this list (the builder refuses it), or nowhere
                return []
            anchor, frame = self.a.items[owner].start, self.frame_of(owner)

    def members(self, found: list[int], rest: str) -> list[Decl]:
        """`head.member...`: the named members inside the items found, as deep as they go (a port number stops it)."""
        for part in rest.split(".") if rest else []:
            inner = [i for owner in found for i in self.frames[(self.a.items[owner].block, owner)] if self.name(i) == part]
            if not inner:
                break
            found = inner
        return [("item", i) for i in found]

    def decl_span(self, decl: Decl) -> Span:
        if decl[0] == "input":
            return self.inputs[decl[1]][decl[2]][1]
        item = self.a.items[decl[1]]
        return name_span(self.lines, item) or word_span(self.a, item)

    def decls_at(self, at: Pos) -> set[Decl]:
        """The declarations the position names: a read of a name, a layer's name or type word, a block input."""
        ref = self.ref_at(at)
        if ref is not None:
            return set(self.resolve(ref))
        for block, inputs in self.inputs.items():
            for k, (_, span) in enumerate(inputs):
                if span[0] <= at <= span[1]:
                    return {("input", block, k)}
        for i, item in enumerate(self.a.items):
            if self.name(i) is None:
                continue
            named = name_span(self.lines, item)
            word = word_span(self.a, item)
            if (named and named[0] <= at <= named[1]) or word[0] <= at <= word[1]:  # with its `when` alternatives
                return {("item", j) for j in self.frames[self.frame_of(i)] if self.name(j) == self.name(i)}
        return set()


def _splices(item: Item) -> bool:
    """An unnamed repeat without `each` builds its items into the enclosing list (netdsl.graph.build.Builder.build_repeat)."""
    return item.word == "repeat" and "name" not in item.opts and "each" not in item.opts


def _block_inputs(tree: YMap, lines: list[str]) -> dict[str, list[tuple[str, Span]]]:
    """The declared inputs of each block this document defines (`inputs: [x, h]`, `from x, h` in .net), with spans."""
    out: dict[str, list[tuple[str, Span]]] = {}
    blocks = tree.get("blocks")
    if not isinstance(blocks, YMap):
        return out
    for name, body in blocks.items():
        inputs = body.get("inputs") if isinstance(body, YMap) else None
        if isinstance(inputs, YList):
            out[name] = [(v, token(lines, pos(at), v)) for v, at in zip(inputs, inputs.item_locs) if isinstance(v, str) and v != INPUT]
    return out


def _block_at(a: Analysis, at: Pos) -> str | None:
    """The block named under the position: a use's type word or a definition's key in this document."""
    item = _item_word_at(a, at)
    if item is not None and item.word in a.blocks:
        return item.word
    blocks = a.tree.get("blocks")
    if isinstance(blocks, YMap):
        for name, loc in blocks.key_locs.items():
            start = pos(loc)
            if start <= at <= (start[0], start[1] + len(name)):
                return name
    return None


def _block_target(a: Analysis, name: str) -> Target | None:
    """A block's definition: its key in this document's `blocks:` or in the library that defines it."""
    found = a.blocks.get(name)
    loc = found.loc if found is not None else None
    if loc is None:
        for _, blocks in [("", a.tree.get("blocks")), *a.libraries]:
            if isinstance(blocks, YMap) and name in blocks.key_locs:
                loc = blocks.key_locs[name]
                break
    if loc is None:
        return None
    return Target(loc.file, (pos(loc), (loc.line, loc.col + len(name))))


def _import_at(a: Analysis, at: Pos) -> str | None:
    """The file of the `import:` entry under the position, if it can be found."""
    imports = a.tree.get("import")
    if not isinstance(imports, YList):
        return None
    lines = a.lines
    for name, loc in zip(imports, imports.item_locs):
        if not isinstance(name, str):
            continue
        span = token(lines, pos(loc), name)
        if not span[0] <= at <= span[1]:
            continue
        builtin = builtin_libraries()
        if name in builtin:
            return str(builtin[name])
        folders = [os.path.dirname(os.path.abspath(a.file)), *map(str, search_path())]
        return next((os.path.realpath(p) for p in (os.path.join(f, name) for f in folders) if os.path.isfile(p)), None)
    return None


def _item_word_at(a: Analysis, at: Pos) -> Item | None:
    """The item whose type word is under the position."""
    for item in a.items:
        if item.start <= at < item.end:
            span = word_span(a, item)
            if span[0] <= at <= span[1]:
                return item
    return None


__all__ = ["Ref", "Target", "definition", "references"]
