"""Where things are written in a document's text: a value's token, an item's name and type word, an item's own end."""

from __future__ import annotations

import re

from netdsl.lsp.document import Analysis, Item, Pos, pos

Span = tuple[Pos, Pos]


def token(lines: list[str], at: Pos, value: str) -> Span:
    """The span of a string value written at a position: the word itself, or the quoted string with its quotes."""
    line, col = at
    text = lines[line - 1] if 1 <= line <= len(lines) else ""
    i = col - 1
    end = i + len(value)
    if not text.startswith(value, i) and text[i : i + 1] in ("'", '"'):
        close = text.find(text[i], i + 1)
        end = close + 1 if close > i else len(text)
    return (line, col), (line, end + 1)


def name_span(lines: list[str], item: Item) -> Span | None:
    name = item.name
    loc = getattr(item.opts, "value_locs", {}).get("name")
    return token(lines, pos(loc), name) if name is not None and loc is not None else None


def word_span(a: Analysis, item: Item) -> Span:
    """Where an item's type word is written: at its start in YAML, after `->` or `{` in a .net chain."""
    lines = a.lines
    pattern = re.compile(r"(?<![\w.])" + re.escape(item.word) + r"(?![\w])")
    line, col = item.start
    while 1 <= line <= len(lines) and (line, col) < item.end:
        found = pattern.search(lines[line - 1], col - 1)
        if found:
            return (line, found.start() + 1), (line, found.end() + 1)
        line, col = line + 1, 1
    return item.start, item.start


def trim(lines: list[str], start: Pos, end: Pos) -> Pos:
    """The end of an item's text: `end` moved back over blank and comment lines, a trailing `->` or `,`, and the `}` or
    `]` that close an enclosing list rather than the item's own."""
    line, col = end
    if line > len(lines):
        line, col = len(lines), len(lines[-1]) + 1
    if (line, col) <= start:
        return start
    first = lines[start[0] - 1][start[1] - 1 :] if line > start[0] else lines[start[0] - 1][start[1] - 1 : col - 1]
    parts = [first, *lines[start[0] : line - 1], *([lines[line - 1][: col - 1]] if line > start[0] else [])]
    while True:
        before = len(parts), parts[-1]
        parts[-1] = parts[-1].rstrip()
        if len(parts) > 1 and (parts[-1].strip() in ("", "-") or parts[-1].lstrip().startswith("#")):  # `-`: the next YAML item's
            parts.pop()
            continue
        for tail in ("->", ","):
            if parts[-1].endswith(tail):
                parts[-1] = parts[-1][: -len(tail)]
        text = "".join(parts)
        if parts[-1][-1:] in ("}", "]") and text.count(parts[-1][-1]) > text.count("{" if parts[-1][-1] == "}" else "["):
            parts[-1] = parts[-1][:-1]
        if (len(parts), parts[-1]) == before:
            break
    if len(parts) == 1:
        return start[0], start[1] + len(parts[0])
    return start[0] + len(parts) - 1, len(parts[-1]) + 1
