"""What the cursor scanners share (netdsl.lsp.cursor reads a document's text with them): the context they report and
the stack of mappings, lists and bodies they keep while reading."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

ITEM = "[]"  # a path step into a list item
POSITIONAL = "()"  # .net: a call has a positional value (it sets the primary option)
Slot = Literal["key", "value"]


@dataclass(frozen=True)
class Context:
    """What is typed at the cursor: a key of the mapping at `path` (slot "key") or the value at `path` (slot "value")."""

    slot: Slot
    path: tuple[str, ...]
    written: frozenset[str] = frozenset()  # the keys already in that mapping, or the items already in that list
    names: tuple[str, ...] = ()  # layer names defined before the cursor in the enclosing layer lists, outermost first
    all_names: tuple[str, ...] = ()  # every layer name written in the spec's own layers (not in block definitions)
    imports: tuple[str, ...] = ()  # the libraries imported so far
    blocks: tuple[str, ...] = ()  # the blocks the document defines
    statement: bool = False  # .net: at the start of a top-level statement (a setting may be written there too)
    pad: str = ""  # to insert before a proposal: YAML wants a space after `key:` and `-`


def is_layer_list(path: tuple[str, ...]) -> bool:
    """A path to a layer list: the spec's, a block definition's, a group's or a repeat's."""
    return bool(path) and path[-1] == "layers" and path[0] != "train"


def item_word(path: tuple[str, ...]) -> str | None:
    """The type word when `path` is a layer item's argument mapping (..., 'layers', ITEM, word)."""
    if len(path) >= 3 and path[-2] == ITEM and is_layer_list(path[:-2]):
        return path[-1]
    return None


@dataclass
class Frame:
    """A mapping, a list, or (.net) a body, a call, a setting, a bracket skipped over."""

    kind: str
    path: tuple[str, ...]
    indent: int = -1  # YAML block column of its keys or dashes; -1 in flow
    state: str = ""  # what comes next: key, value, item, done (and .net body states)
    key: str | None = None  # the key whose value is written next
    keys: set[str] = field(default_factory=set)
    items: list[str] = field(default_factory=list)  # scalar items written
    names: list[str] = field(default_factory=list)  # layer names of the finished items (a layer list)
    pending: str | None = None  # the name of the item being written (a layer list)
    implicit: bool = False  # YAML: a one-pair mapping in a flow list, `[basic: {c: 64}]`
    word: str = ""  # .net: the type word of a call, the closer of a skipped bracket
    chained: bool = False  # .net: the statement goes on after `->`


class Scan:
    """What both scanners share: the frame stack and what the cursor's context is read from."""

    def __init__(self) -> None:
        self.stack = [Frame("map", (), 0, "key")]
        self.all_names: list[str] = []
        self.imports: list[str] = []
        self.blocks: list[str] = []
        self.dead = False  # the cursor is in a comment or a string

    def run(self, before: list[str], prefix: str, after: list[str]) -> Context | None:
        raise NotImplementedError

    def name(self, path: tuple[str, ...], name: str) -> None:
        """A layer's name was written at `path` (its argument mapping): the current item of that layer list has it."""
        for frame in reversed(self.stack):
            if frame.kind in ("seq", "body") and frame.path == path[:-2] and is_layer_list(frame.path):
                frame.pending = name
                break
        if path[0] == "layers" and name not in self.all_names:
            self.all_names.append(name)

    def pop(self) -> Frame:
        frame = self.stack.pop()
        commit(frame)
        return frame

    def make(self, slot: Slot, path: tuple[str, ...], written: Iterable[str] = (), statement: bool = False) -> Context:
        scope = [n for f in self.stack if f.kind in ("seq", "body") and is_layer_list(f.path) for n in f.names]
        return Context(
            slot,
            path,
            frozenset(written),
            tuple(dict.fromkeys(scope)),
            tuple(self.all_names),
            tuple(self.imports),
            tuple(self.blocks),
            statement,
        )


def commit(frame: Frame) -> None:
    """The current item of a list is finished: its name joins the names later items may read."""
    if frame.pending is not None:
        frame.names.append(frame.pending)
        frame.pending = None


def unquote(word: str) -> str:
    word = word.strip()
    return word[1:-1] if len(word) >= 2 and word[0] == word[-1] and word[0] in "\"'" else word


__all__ = ["ITEM", "POSITIONAL", "Context", "Frame", "Scan", "Slot", "commit", "is_layer_list", "item_word", "unquote"]
