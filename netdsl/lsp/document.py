"""One open document as the editor features see it: the front end's verdict on its text, where each layer item is
written, and which IR nodes and groups each item became. Pure Python: no pygls, no torch (tests use it directly).

Positions are `Pos` = (line, column), both 1-based and counted in code points, as `Loc` holds them; netdsl.lsp.server
converts them to the client's units.
"""

from __future__ import annotations

import math
import os
import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from netdsl.errors import Diagnostic, Loc, SpecError
from netdsl.graph.build import BlockDef, block_defs
from netdsl.graph.load import check_tree
from netdsl.ir import Graph, Group, Node
from netdsl.lang.files import SIZE_VARIABLE, max_spec_bytes, megabytes
from netdsl.lang.formats import Format, format_of, parse_tree
from netdsl.lang.imports import Library, load_libraries
from netdsl.lang.schema import STRUCTURAL
from netdsl.lang.validate import validate_tree
from netdsl.lang.yaml_tree import YList, YMap

Pos = tuple[int, int]
END: Pos = (1 << 62, 0)
Kind = Literal["spec", "library"]
LINE_BREAKS = re.compile(r"\r\n|\r|\n")  # the line breaks LSP counts


def pos(loc: Loc) -> Pos:
    return (loc.line, loc.col)


@dataclass(frozen=True)
class Item:
    """A layer item as written: a layer, a block use, a group or a repeat, with the text it spans."""

    path: tuple[Any, ...]  # the tree path to it, e.g. ('layers', 3) or ('blocks', 'basic', 'layers', 0)
    start: Pos
    end: Pos  # where the next item or key starts (exclusive)
    word: str  # its type: a layer type, a block's name, group or repeat
    opts: YMap  # its arguments as written (empty for a bare word)
    parent: int | None  # the index (in Analysis.items) of the group or repeat it is written in
    block: str | None  # the block definition it is written in, if any

    @property
    def name(self) -> str | None:
        """The name written for it (`name:`, `as`), when it is a plain word."""
        name = self.opts.get("name")
        return name if isinstance(name, str) else None

    @property
    def layers(self) -> tuple[Any, ...] | None:
        """The path of its nested layer list (a group or repeat), if it has one."""
        return (*self.path, self.word, "layers") if self.word in STRUCTURAL and isinstance(self.opts.get("layers"), YList) else None


@dataclass(frozen=True)
class Totals:
    """A group's or block instance's numbers: its parameters, MACs, node count and output (its last node)."""

    params: int
    macs: int
    nodes: int
    last: Node


@dataclass
class Analysis:
    """The front end's view of one document version."""

    file: str
    text: str
    fmt: Format
    kind: Kind = "spec"
    tree: Any = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    graph: Graph | None = None  # the checked network; with errors, the part built before them (see `complete`)
    complete: bool = False
    libraries: list[Library] = field(default_factory=list)
    blocks: dict[str, BlockDef] = field(default_factory=dict)
    items: list[Item] = field(default_factory=list)
    nodes_at: dict[Pos, list[Node]] = field(default_factory=dict)
    groups_at: dict[Pos, list[Group]] = field(default_factory=dict)
    totals: dict[str, Totals] = field(default_factory=dict)

    @cached_property
    def lines(self) -> list[str]:
        """The text's lines as LSP counts them (computed once: every position sent to the client is converted with them)."""
        return LINE_BREAKS.split(self.text)

    def item_at(self, at: Pos) -> Item | None:
        """The innermost item whose text holds the position."""
        found = None
        for item in self.items:
            if item.start <= at < item.end and (found is None or item.start >= found.start):
                found = item
        return found

    def nodes_of(self, item: Item) -> list[Node]:
        return self.nodes_at.get(item.start, [])

    def groups_of(self, item: Item) -> list[Group]:
        """The groups an item made: a block use's instances, a group, a repeat and its iterations (the repeat first)."""
        return self.groups_at.get(item.start, [])

    def block_doc(self, name: str) -> str:
        """The `doc:` of a block definition, from the document or the library that defines it."""
        for _, blocks in [*self.libraries, ("", self.tree.get("blocks") if isinstance(self.tree, YMap) else None)]:
            if isinstance(blocks, YMap) and isinstance(blocks.get(name), YMap):
                doc = blocks[name].get("doc")
                if isinstance(doc, str):
                    return " ".join(doc.split())
        return ""


def analyze(text: str, file: str, library_path: Sequence[str | os.PathLike[str]] = ()) -> Analysis:
    """Run the front end on a document's text; every problem becomes a diagnostic, nothing raises."""
    out = Analysis(file, text, format_of(file))
    try:
        _check(out, library_path)
    except SpecError as exc:
        out.diagnostics = list(exc.diagnostics)
    except RecursionError:
        out.diagnostics = [Diagnostic(Loc(file, 1, 1), "the document nests too deeply to check")]
    if isinstance(out.tree, YMap):
        out.items = list(_items(out.tree))
    if out.graph is not None:
        _index(out, out.graph)
    return out


def _check(out: Analysis, library_path: Sequence[str | os.PathLike[str]]) -> None:
    text, file = out.text, out.file
    limit = max_spec_bytes()
    if len(text.encode("utf-8", "surrogatepass")) > limit:
        raise SpecError(
            [Diagnostic(Loc(file, 1, 1), f"the document has more than {megabytes(limit, exact=True)} (netdsl reads at most that; {SIZE_VARIABLE} raises it)")]
        )
    out.tree = tree = parse_tree(text, file, out.fmt)
    if is_library(tree):
        out.kind = "library"
        out.libraries, problems = load_libraries(tree, file, library_path)
        if not problems:
            out.blocks, problems = block_defs(tree, out.libraries)
            known = list(out.blocks)
            problems = validate_tree(tree, file, library=True, blocks=known) or problems
        out.diagnostics = problems
        return
    loaded = check_tree(tree, file, library_path=library_path, partial=True)
    out.libraries, out.blocks, out.graph, out.diagnostics = loaded.libraries, loaded.blocks, loaded.graph, loaded.problems
    out.complete = loaded.graph is not None and not loaded.problems


def is_library(tree: Any) -> bool:
    """A block library: a mapping with `blocks` and none of a spec's `input` or `layers`."""
    return isinstance(tree, YMap) and "blocks" in tree and "layers" not in tree and "input" not in tree


def _items(tree: YMap) -> Iterator[Item]:
    """Every layer item of the document in text order, with spans: the spec's layers and each block definition's."""
    found: list[Item] = []
    lists: list[tuple[tuple[Any, ...], Any, Pos, int | None, str | None]] = [(("layers",), tree.get("layers"), END, None, None)]
    blocks = tree.get("blocks")
    if isinstance(blocks, YMap):
        for name, body in blocks.items():
            if isinstance(body, YMap):
                lists.append((("blocks", name, "layers"), body.get("layers"), END, None, name))
    while lists:
        path, items, end, parent, block = lists.pop()
        if not isinstance(items, YList):
            continue
        starts = [pos(loc) for loc in items.item_locs]
        for i, value in enumerate(items):
            word, opts = _split(value)
            if word is None:
                continue
            item_end = min(starts[i + 1], end) if i + 1 < len(starts) else _after(tree, starts[i], end)
            item = Item((*path, i), starts[i], item_end, word, opts, parent, block)
            found.append(item)
            if item.layers is not None:
                lists.append((item.layers, opts["layers"], item_end, len(found) - 1, block))
    order = sorted(range(len(found)), key=lambda i: found[i].start)
    index = {old: new for new, old in enumerate(order)}
    for i in order:
        item = found[i]
        parent = None if item.parent is None else index[item.parent]
        yield Item(item.path, item.start, item.end, item.word, item.opts, parent, item.block)


def _after(tree: YMap, start: Pos, end: Pos) -> Pos:
    """Where the last item of a list ends: the next top-level key or block definition after it, else `end`."""
    nexts = [pos(loc) for loc in tree.key_locs.values() if pos(loc) > start]
    blocks = tree.get("blocks")
    if isinstance(blocks, YMap):
        nexts += [pos(loc) for loc in blocks.key_locs.values() if pos(loc) > start]
    return min([end, *nexts])


def _split(value: Any) -> tuple[str | None, YMap]:
    """(type word, arguments) of a layer item: `relu`, `{conv: {...}}`, `{linear: 10}` (a bare value is kept as `_`)."""
    if isinstance(value, str):
        return value, YMap()
    if isinstance(value, YMap) and len(value) == 1:
        word, args = next(iter(value.items()))
        if isinstance(args, YMap):
            return str(word), args
        opts = YMap()
        opts.loc, opts.key_locs, opts.value_locs = value.loc, {}, {}
        if args is not None:
            opts["_"], opts.key_locs["_"], opts.value_locs["_"] = args, value.key_locs[word], value.value_locs[word]
        return str(word), opts
    return None, YMap()


def _index(out: Analysis, graph: Graph) -> None:
    """Which nodes and groups each written item became (by position), and each group's totals."""
    nodes_at: dict[Pos, list[Node]] = defaultdict(list)
    groups_at: dict[Pos, list[Group]] = defaultdict(list)
    for node in graph.nodes:
        if node.loc.file == out.file:
            nodes_at[pos(node.loc)].append(node)
    for group in graph.groups:
        if group.loc.file == out.file:
            groups_at[pos(group.loc)].append(group)
    paths = {g.path for g in graph.groups}
    params: dict[str, int] = defaultdict(int)
    macs: dict[str, int] = defaultdict(int)
    count: dict[str, int] = defaultdict(int)
    last: dict[str, Node] = {}
    for node in graph.nodes:
        n_params, n_macs = sum(math.prod(s) for _, s in node.params()), node.macs()
        parts = node.name.split(".")
        for k in range(1, len(parts)):
            prefix = ".".join(parts[:k])
            if prefix in paths:
                params[prefix] += n_params
                macs[prefix] += n_macs
                count[prefix] += 1
                last[prefix] = node
    out.nodes_at, out.groups_at = dict(nodes_at), dict(groups_at)
    out.totals = {p: Totals(params[p], macs[p], count[p], last[p]) for p in last}


def key_at(opts: YMap, at: Pos, end: Pos) -> tuple[str, bool] | None:
    """The argument of an item under the position: (key, True when on its value); None when on none of them."""
    entries = sorted((pos(loc), key) for key, loc in opts.key_locs.items())
    for i, (start, key) in enumerate(entries):
        stop = entries[i + 1][0] if i + 1 < len(entries) else end
        if start <= at < stop:
            value = opts.value_locs.get(key)
            return key, value is not None and at >= pos(value)
    return None


def word_range(lines: Sequence[str], at: Pos) -> tuple[Pos, Pos]:
    """The token at a position, for a diagnostic's range: a name or number, a quoted string, else one character."""
    line, col = at
    if not 1 <= line <= len(lines):
        return at, at
    text = lines[line - 1]
    i = max(0, min(col - 1, len(text)))
    if i >= len(text):
        return (line, i + 1), (line, i + 1)
    match = re.compile(r"""[\w.+\-]+|"(?:[^"\\]|\\.)*"?|'(?:[^']|'')*'?""").match(text, i)
    stop = match.end() if match and match.end() > i else i + 1
    return (line, i + 1), (line, stop + 1)


__all__ = ["END", "Analysis", "Item", "Pos", "Totals", "analyze", "is_library", "key_at", "pos", "word_range"]
