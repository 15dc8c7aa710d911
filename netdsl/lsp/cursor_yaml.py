"""The cursor in a YAML document: block structure by indentation, flow collections by brackets, in the subset of YAML
specs are written in, read line by line up to the cursor."""

from __future__ import annotations

import re

from netdsl.lsp.cursor_scan import ITEM, Context, Frame, Scan, commit, item_word, unquote

YAML_KEY = re.compile(r"""(?P<key>"[^"]*"|'[^']*'|[^\s#'"{}\[\],:-][^#{}\[\],:]*?|-[^\s#{}\[\],:][^#{}\[\],:]*?)[ \t]*:(?=\s|$)""")


class YamlScan(Scan):
    """Block structure by indentation, flow collections by brackets; the subset of YAML specs are written in."""

    def __init__(self) -> None:
        super().__init__()
        self.scalar_indent: int | None = None  # inside a block scalar (`doc: >-`) of a key at this column

    def run(self, before: list[str], prefix: str, after: list[str]) -> Context | None:
        for text in before:
            self.line(text, cursor=False)
        self.dead = False
        slot = self.line(prefix, cursor=True)
        if slot is None or self.dead:
            return None
        kind, frame = slot
        if kind == "key":
            later = _later_flow_keys(after) if frame.indent < 0 else _later_block_keys(after[1:], frame.indent)
            return self.make("key", frame.path, frame.keys | later)
        if frame.kind == "map" and frame.key is not None:
            return self.make("value", (*frame.path, frame.key))
        return self.make("value", (*frame.path, ITEM), frame.items)

    def line(self, text: str, cursor: bool) -> tuple[str, Frame] | None:
        """Read one line; on the cursor's line, say what is typed at its end: ("key" | "value", the frame)."""
        if self.stack[-1].indent < 0:  # a flow collection begun on an earlier line
            self.flow(text, cursor)
            return self.flow_slot()
        body = text.lstrip(" ")
        indent = len(text) - len(body)
        if self.scalar_indent is not None:
            if indent > self.scalar_indent or (not body.strip() and not cursor):
                if cursor:
                    self.dead = True
                return None
            self.scalar_indent = None
        if body.startswith("#") or (not body.strip() and not cursor) or body.startswith(("---", "...")):
            self.dead = self.dead or cursor
            return None
        dash = body == "-" or body.startswith(("- ", "-\t"))
        while len(self.stack) > 1:
            top = self.stack[-1]
            if top.indent > indent or (top.kind == "seq" and top.indent == indent and not dash):
                self.pop()
            else:
                break
        col, rest, fresh = indent, body, False
        while rest == "-" or rest.startswith(("- ", "-\t")):
            self.dash(col)
            step = 1 + len(rest[1:]) - len(rest[1:].lstrip())
            col, rest, fresh = col + step, rest[step:], True
        match = YAML_KEY.match(rest)
        if match:
            return self.block_key(col, unquote(match.group("key")), fresh, rest[match.end() :], cursor)
        top = self.stack[-1]
        if rest.strip():
            if fresh and rest[0] in "{[":
                self.flow(rest, cursor)
                return self.flow_slot()
            if fresh:
                top.state = "done"
                self.scalar((*top.path, ITEM), rest)
            return None
        if not cursor:
            return None
        if fresh:
            return "value", top
        if top.kind == "map" and top.indent == col:
            return "key", top
        if top.kind == "map" and top.indent < col and top.state == "value" and top.key is not None:
            self.stack.append(Frame("map", (*top.path, top.key), col, "key"))
            return "key", self.stack[-1]
        return None

    def dash(self, col: int) -> None:
        top = self.stack[-1]
        if top.kind == "seq" and top.indent == col:
            commit(top)
        else:
            if top.kind == "map" and top.state == "value" and top.key is not None:
                path = (*top.path, top.key)
            else:
                path = (*top.path, ITEM if top.kind == "seq" else "?")
            top.state = "done"
            self.stack.append(Frame("seq", path, col))
        self.stack[-1].state = "item"

    def block_key(self, col: int, key: str, fresh: bool, rest: str, cursor: bool) -> tuple[str, Frame] | None:
        top = self.stack[-1]
        if fresh or not (top.kind == "map" and top.indent == col):
            if fresh:
                path = (*top.path, ITEM)
            elif top.kind == "map" and top.indent < col and top.state == "value" and top.key is not None:
                path = (*top.path, top.key)
            else:
                path = (*top.path, "?")
            top.state = "done"
            self.stack.append(Frame("map", path, col))
        frame = self.stack[-1]
        self.set_key(frame, key)
        value = rest.strip()
        if not value or value.startswith("#"):
            return ("value", frame) if cursor and not value else None
        frame.state = "done"
        if value[0] in "{[":
            frame.state = "value"
            self.flow(rest, cursor)
            return self.flow_slot()
        if value[0] in "|>":
            self.scalar_indent = col
        else:
            self.scalar((*frame.path, key), value)
        return None

    def set_key(self, frame: Frame, key: str) -> None:
        frame.key, frame.state = key, "value"
        frame.keys.add(key)
        if frame.path == ("blocks",) and key not in self.blocks:
            self.blocks.append(key)

    def scalar(self, path: tuple[str, ...], value: str) -> None:
        """A scalar value written at `path`: a layer's name, an import, a list item."""
        value = unquote(re.split(r"\s#", value, maxsplit=1)[0])
        if path[-1] == "name" and item_word(path[:-1]):
            self.name(path[:-1], value)
        elif path == ("import",) or path == ("import", ITEM):
            self.imports.append(value)
        if path[-1] == ITEM and self.stack[-1].kind == "seq":
            self.stack[-1].items.append(value)

    def value_path(self) -> tuple[str, ...]:
        top = self.stack[-1]
        return (*top.path, top.key or "?") if top.kind == "map" else (*top.path, ITEM)

    def flow(self, text: str, cursor: bool) -> None:
        """Read flow collections (`{k: v, ...}`, `[a, b]`) to the end of a line."""
        i, n = 0, len(text)
        while i < n:
            c = text[i]
            top = self.stack[-1]
            if c in " \t":
                i += 1
            elif c == "#" and (i == 0 or text[i - 1] in " \t"):
                self.dead = cursor
                return
            elif c in "{[":
                path = self.value_path()
                top.state = "done"
                self.stack.append(Frame("map" if c == "{" else "seq", path, -1, "key" if c == "{" else "item"))
                i += 1
            elif c in "}]":
                if top.implicit:
                    self.pop()
                if len(self.stack) > 1 and self.stack[-1].indent < 0:
                    self.pop()
                i += 1
            elif c == ",":
                if top.implicit:
                    self.pop()
                    top = self.stack[-1]
                if top.kind == "map":
                    top.state, top.key = "key", None
                else:
                    commit(top)
                    top.state = "item"
                i += 1
            else:
                i = self.flow_token(text, i, cursor)

    def flow_token(self, text: str, i: int, cursor: bool) -> int:
        """A key or a scalar in a flow collection; returns where it ends."""
        n = len(text)
        if text[i] in "\"'":
            j = text.find(text[i], i + 1)
            if j < 0:
                self.dead = cursor
                return n
            j += 1
        else:
            j = i
            while j < n:
                c = text[j]
                if c in ",[]{}" or (c == ":" and (j + 1 == n or text[j + 1] in " \t,[]{}")) or (c == "#" and text[j - 1] in " \t"):
                    break
                j += 1
        token = unquote(text[i:j])
        k = j
        while k < n and text[k] in " \t":
            k += 1
        top = self.stack[-1]
        if k < n and text[k] == ":" and (k + 1 == n or text[k + 1] in " \t,[]{}"):
            if top.kind == "seq":
                top.state = "done"
                self.stack.append(Frame("map", (*top.path, ITEM), -1, implicit=True))
            self.set_key(self.stack[-1], token)
            return k + 1
        self.scalar(self.value_path(), token)
        top.state = "done"
        return j

    def flow_slot(self) -> tuple[str, Frame] | None:
        top = self.stack[-1]
        if top.indent >= 0 and not (top.kind == "map" and top.state == "value"):
            return None
        if top.kind == "map":
            return ("key", top) if top.state == "key" else ("value", top) if top.state == "value" else None
        return ("value", top) if top.state == "item" else None


def _later_flow_keys(after: list[str]) -> set[str]:
    """Keys written after the cursor in the same flow mapping (`{name: x, | k: 3}`)."""
    keys: set[str] = set()
    depth = 0
    for text in after[:50]:
        for match in re.finditer(r"""[{\[(]|[}\])]|,|(?P<key>[A-Za-z_][\w.\-]*|"[^"]*"|'[^']*')\s*:(?=[\s,{}\[\]]|$)""", text):
            token = match.group()
            if token in "{[(":
                depth += 1
            elif token in "}])":
                depth -= 1
                if depth < 0:
                    return keys
            elif match.group("key") and depth == 0:
                keys.add(unquote(match.group("key")))
    return keys


def _later_block_keys(after: list[str], indent: int) -> set[str]:
    """Keys written after the cursor in the same block mapping: the lines at its column, until one further left."""
    keys = set()
    for text in after:
        body = text.lstrip(" ")
        if not body.strip() or body.startswith("#"):
            continue
        col = len(text) - len(body)
        if col < indent or (col == indent and body.startswith("- ")):
            break
        match = YAML_KEY.match(body)
        if col == indent and match:
            keys.add(unquote(match.group("key")))
    return keys


__all__ = ["YamlScan"]
