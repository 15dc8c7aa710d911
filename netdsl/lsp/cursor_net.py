"""The cursor in a .net document: statements, chains, calls, bodies and settings, read token by token up to the cursor."""

from __future__ import annotations

import re
from collections.abc import Iterator

from netdsl.lsp.cursor_scan import ITEM, POSITIONAL, Context, Frame, Scan, commit, unquote

NET_TOKEN = re.compile(
    r"""(?P<nl>\r\n|\r|\n)|(?P<ws>[ \t\f]+)|(?P<comment>\#[^\r\n]*)|(?P<arrow>->)
    |(?P<str>"(?:[^"\\\r\n]|\\.)*"?|'(?:[^'\\\r\n]|\\.)*'?)
    |(?P<word>/?[A-Za-z_][A-Za-z0-9_]*(?:[./][A-Za-z0-9_\-]+)*)|(?P<num>[0-9][A-Za-z0-9_.]*)|(?P<op>\*\*|//|[=!<>]=|.)""",
    re.X,
)
CLOSERS = {"(": ")", "[": "]", "{": "}"}


def _net_tokens(text: str) -> Iterator[tuple[str, str]]:
    for match in NET_TOKEN.finditer(text):
        kind = match.lastgroup or "op"
        if kind != "ws":
            yield kind, match.group()


class NetScan(Scan):
    """Statements, chains, calls and bodies of the text format, read token by token."""

    def __init__(self) -> None:
        super().__init__()
        self.stack = [Frame("body", ("layers",), state="start")]
        self.block = ""  # the block whose definition is being read

    def run(self, before: list[str], prefix: str, after: list[str]) -> Context | None:
        tokens = list(_net_tokens("\n".join([*before, prefix])))
        following = ""
        nexts = []
        for kind, tok in reversed(tokens):
            nexts.append(following)
            following = following if kind == "comment" else tok
        for (kind, tok), after_it in zip(tokens, reversed(nexts)):
            self.token(kind, tok, after_it)
        last = tokens[-1] if tokens else ("", "")
        if last[0] == "comment" or (last[0] == "str" and not _closed(last[1])):
            return None
        return self.slot()

    def token(self, kind: str, tok: str, following: str) -> None:
        top = self.stack[-1]
        if kind == "comment" or (top.state == "skip" and tok == ":"):
            top.state = "value" if top.state == "skip" else top.state
            return
        if top.kind == "skip":
            if tok in CLOSERS:
                self.stack.append(Frame("skip", top.path, word=CLOSERS[tok]))
            elif tok == top.word:
                self.stack.pop()
            return
        if top.kind == "body":
            self.body(top, kind, tok, following)
        elif top.kind == "call":
            self.call(top, kind, tok, following)
        else:
            self.value(top, kind, tok, following)

    def body(self, top: Frame, kind: str, tok: str, following: str) -> None:
        state, root = top.state, len(self.stack) == 1
        if kind == "nl":
            if state != "start" or top.pending:
                commit(top)
                top.state, top.chained = "start", False
        elif kind == "arrow":
            commit(top)
            top.state, top.chained = "start", True
        elif tok == "}" and not root:
            self.pop()
            self.stack[-1].state = "word"
        elif state == "start" and kind == "word":
            if root and following == ":":
                self.stack[0].keys.add(tok)
                self.stack.append(Frame("setting", (tok,), state="skip"))
            elif root and tok == "block":
                top.state = "block"
            else:
                top.word, top.state = tok, "word"
        elif state == "block" and kind == "word":
            self.block, top.state = tok, "blockdef"
            self.blocks.append(tok)
        elif state == "blockdef":
            if tok in CLOSERS and tok != "{":
                self.stack.append(Frame("skip", top.path, word=CLOSERS[tok]))
            elif tok == "{":
                top.state = "done"
                self.stack.append(Frame("body", ("blocks", self.block, "layers"), state="start"))
        elif state in ("word", "ref", "as", "from"):
            self.after_word(top, kind, tok)

    def after_word(self, top: Frame, kind: str, tok: str) -> None:
        item = (*top.path, ITEM, top.word)
        if top.state == "as":
            if kind in ("word", "str", "num"):
                self.name(item, unquote(tok))
            top.state = "word"
        elif top.state == "from":
            if tok == "[":
                self.stack.append(Frame("seq", (*item, "from"), state="item"))
                top.state = "word"
            elif kind in ("word", "str", "num"):
                top.state = "ref"
        elif tok == "(" and top.state == "word":
            self.stack.append(Frame("call", item, state="key", word=top.word))
        elif tok == "as":
            top.state = "as"
        elif tok == "from" or (tok == "," and top.state == "ref"):
            top.state = "from"
        elif tok == "{":
            top.state = "word"
            self.stack.append(Frame("body", (*item, "layers"), state="start"))

    def call(self, top: Frame, kind: str, tok: str, following: str) -> None:
        if tok == ")":
            self.stack.pop()
        elif tok == ",":
            top.state, top.key = "key", None
        elif top.state == "key" and kind in ("word", "str") and following == "=":
            top.key, top.state = unquote(tok), "skip="
            top.keys.add(top.key)
        elif top.state == "skip=" and tok == "=":
            top.state = "value"
        elif tok in ("[", "{") and top.state == "value" and top.key:
            self.stack.append(Frame("seq" if tok == "[" else "map", (*top.path, top.key), state="item" if tok == "[" else "key"))
            top.state = "done"
        elif tok in CLOSERS:
            self.stack.append(Frame("skip", top.path, word=CLOSERS[tok]))
            top.state = "done"
        elif kind != "nl":
            if top.state == "key":
                top.keys.add(POSITIONAL)
            top.state = "done"

    def value(self, top: Frame, kind: str, tok: str, following: str) -> None:
        """Settings, mappings and lists of values."""
        if top.kind == "setting" and kind == "nl":
            self.stack.pop()
            self.stack[-1].state = "start"
        elif kind == "nl":
            return
        elif tok in (")", "]", "}"):
            if top.kind != "setting":
                self.stack.pop()
        elif tok == ",":
            top.state, top.key = ("key" if top.kind == "map" else "item" if top.kind == "seq" else "value"), None
        elif top.kind == "map" and top.state == "key" and kind in ("word", "str") and following == ":":
            top.key, top.state = unquote(tok), "skip"
            top.keys.add(top.key)
        elif top.kind == "setting" and kind == "word" and following == "=" and top.state == "value":
            top.key, top.state = tok, "skip="
        elif tok == "=" and top.state == "skip=":
            top.state = "value"
        elif tok in ("[", "{"):
            path = (*top.path, ITEM) if top.kind == "seq" else (*top.path, top.key) if top.key else top.path
            self.stack.append(Frame("seq" if tok == "[" else "map", path, state="item" if tok == "[" else "key"))
            top.state = "done"
        elif tok == "(":
            self.stack.append(Frame("skip", top.path, word=")"))
        else:
            if top.path == ("import",) and top.kind == "setting":
                self.imports.append(unquote(tok))
            elif top.kind == "seq":
                top.items.append(unquote(tok))
            top.state = "done"

    def slot(self) -> Context | None:
        top = self.stack[-1]
        if top.kind == "body":
            item = (*top.path, ITEM)
            if top.state == "start":
                root = len(self.stack) == 1
                return self.make("value", item, top.keys if root else (), statement=root and not top.chained)
            if top.state == "from":
                return self.make("value", (*item, top.word, "from"))
            return None
        if top.kind == "call":
            if top.state == "key":
                return self.make("key", top.path, top.keys)
            return self.make("value", (*top.path, top.key)) if top.state == "value" and top.key else None
        if top.kind == "setting":
            if top.state == "value":
                return self.make("value", (*top.path, top.key) if top.key else top.path, self.imports if top.path == ("import",) else ())
            return None
        if top.kind == "map":
            if top.state == "key":
                return self.make("key", top.path, top.keys)
            return self.make("value", (*top.path, top.key)) if top.state == "value" and top.key else None
        if top.kind == "seq" and top.state == "item":
            return self.make("value", (*top.path, ITEM), top.items)
        return None


def _closed(string: str) -> bool:
    return len(string) >= 2 and string[-1] == string[0]


__all__ = ["NetScan"]
