"""Laying out a written spec: output lines that remember their source position, and the source's comments put back.

The writers (write_net.py, write_yaml.py) turn a raw tree into `Line`s, each anchored at the source position of the
first thing on it. Comments and blank lines are not in the tree; `render` puts each back by position: a comment on
its own line goes before the line written for the next thing in the source, a trailing comment after the line that
holds the thing it followed. So comments survive `fmt` and `convert` in both directions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from netdsl.errors import Loc
from netdsl.lang.formats import Format
from netdsl.lang.yaml_tree import YList, YMap

INDENT = 2  # of a comment moved inside a closing brace


@dataclass(frozen=True)
class Note:
    """A source comment (text starting with '#') or a blank line (text ''), with its 1-based position."""

    line: int
    col: int
    text: str
    own_line: bool


@dataclass(frozen=True)
class Line:
    """One output line: indentation, text, and the source position of its first element.

    anchor None: a closing brace (`closer`) or a blank line the writer puts between sections (`text` '').
    keep_blank_before False: blank source lines before it are dropped (YAML's top-level keys sit together).
    secondary: an option line of an item written over several lines; a trailing comment prefers the item's line.
    covers: more source lines written on this line (a block's params); their trailing comments come here.
    """

    indent: int
    text: str
    anchor: Loc | None = None
    closer: bool = False
    keep_blank_before: bool = True
    secondary: bool = False
    covers: tuple[int, ...] = ()


def blank() -> Line:
    return Line(0, "")


# ---- finding comments and blank lines in the source ------------------------------------------------------------

_NET_STRINGS_AND_COMMENTS = re.compile(r""""(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|#[^\n]*""")


def source_notes(text: str, fmt: Format) -> list[Note]:
    """The comments and blank lines of spec text, in order."""
    spans = _yaml_scalar_spans(text) if fmt == "yaml" else []
    notes: list[Note] = []
    offset = 0
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            if not any(start <= offset < end for start, end in spans):  # a blank line inside a block scalar is text
                notes.append(Note(number, 1, "", True))
        else:
            col = _comment_column(line, offset, spans) if fmt == "yaml" else _net_comment_column(line)
            if col is not None:
                notes.append(Note(number, col + 1, line[col:].rstrip(), not line[:col].strip()))
        offset += len(line) + 1
    return notes


def _net_comment_column(line: str) -> int | None:
    for m in _NET_STRINGS_AND_COMMENTS.finditer(line):
        if m.group().startswith("#"):
            return m.start()
    return None


def _comment_column(line: str, offset: int, spans: list[tuple[int, int]]) -> int | None:
    for m in re.finditer(r"(?:^|(?<=[ \t]))#", line):
        at = offset + m.start()
        if not any(start <= at < end for start, end in spans):
            return m.start()
    return None


def _yaml_scalar_spans(text: str) -> list[tuple[int, int]]:
    """Character ranges of YAML scalars (a '#' inside one is text, not a comment)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return [(t.start_mark.index, t.end_mark.index) for t in yaml.scan(text, Loader=loader) if isinstance(t, yaml.ScalarToken)]
    except yaml.YAMLError:  # pragma: no cover - the text was parsed before it is laid out
        return []


# ---- putting them back -----------------------------------------------------------------------------------------


def render(lines: list[Line], notes: list[Note]) -> str:
    """The lines as text, with every comment and (collapsed) blank line of the source put back in its place."""
    before: dict[int, list[Note]] = {}
    after: dict[int, list[Note]] = {}
    anchored = [(i, line.anchor) for i, line in enumerate(lines) if line.anchor is not None]
    for note in notes:
        if note.own_line:
            before.setdefault(_next_line(lines, anchored, note), []).append(note)
        else:
            target = _holding_line(lines, anchored, note)
            if target is None:
                before.setdefault(0, []).append(Note(note.line, note.col, note.text, True))
            else:
                after.setdefault(target, []).append(note)
    columns = _comment_columns(lines, after)
    out: list[str] = []
    for i in range(len(lines) + 1):
        line = lines[i] if i < len(lines) else None
        for note in before.get(i, []):
            if not note.text:
                if line is None or line.keep_blank_before:
                    out.append("")
                continue
            indent = 0 if line is None else line.indent + (INDENT if line.closer else 0)
            out.append(" " * indent + note.text)
        if line is None:
            break
        text = _text(line)
        if i in after:
            text = text.ljust(columns[i]) + " ".join(n.text for n in after[i])
        out.append(text)
    return _tidy_blanks(out)


def _text(line: Line) -> str:
    return " " * line.indent + line.text if line.text else ""


def _comment_columns(lines: list[Line], after: dict[int, list[Note]]) -> dict[int, int]:
    """Where each line's trailing comment starts: two spaces after the code, or, for comments the source aligned
    (a run of trailing comments in one column), two spaces after the longest of their lines."""
    runs: list[list[int]] = []
    last_col = None
    for i in sorted(after, key=lambda i: after[i][0].line):
        col = after[i][0].col
        if runs and col == last_col:
            runs[-1].append(i)
        else:
            runs.append([i])
        last_col = col
    columns: dict[int, int] = {}
    for run in runs:
        width = max(len(_text(lines[i])) for i in run) + 2
        columns.update(dict.fromkeys(run, width))
    return columns


def _next_line(lines: list[Line], anchored: list[tuple[int, Loc]], note: Note) -> int:
    """Index of the line a comment on its own goes before: the one written for the next thing in the source, or
    before the closing braces it was indented deeper than."""
    later = [(a.line, i) for i, a in anchored if a.line > note.line]
    index = min(later)[1] if later else len(lines)
    anchor = lines[index].anchor if index < len(lines) else None
    deeper_than = anchor.col if anchor is not None else 1
    while index > 0 and lines[index - 1].closer and note.text and note.col > max(deeper_than, lines[index - 1].indent + 1):
        index -= 1
    return index


def _holding_line(lines: list[Line], anchored: list[tuple[int, Loc]], note: Note) -> int | None:
    """Index of the line that holds what a trailing comment followed: of the lines started on the latest source line
    at or before it, the last that is not an option of an item written over several lines (`name:` under `- group:`)."""
    covering = [i for i, line in enumerate(lines) if note.line in line.covers]
    if covering:
        return covering[0]
    started = [a.line for _, a in anchored if a.line <= note.line]
    if not started:
        return None
    candidates = [i for i, a in anchored if a.line == max(started)]
    return next((i for i in reversed(candidates) if not lines[i].secondary), candidates[-1])


def _tidy_blanks(out: list[str]) -> str:
    """No blank line at the start or end, after an opening line or before a closing one; never two in a row."""
    kept: list[str] = []
    for i, text in enumerate(out):
        if not text:
            if not kept or not kept[-1] or kept[-1].endswith(("{", ":")):
                continue
            following = next((t for t in out[i + 1 :] if t), None)
            if following is None or following.strip() == "}":
                continue
        kept.append(text)
    return "\n".join(kept) + "\n" if kept else ""


# ---- shared by the writers -------------------------------------------------------------------------------------


def is_inline(opts: Any) -> bool:
    """Whether an item's `layers` list sits on its key's source line (`layers: [a, b]`, `{ a -> b }`), nothing multi-line inside."""
    items = opts.get("layers") if isinstance(opts, YMap) else None
    if not isinstance(items, YList) or not items:
        return False
    line = opts.key_locs["layers"].line
    return items.loc.line == line and all(at.line == line for at in items.item_locs) and all(_inline_inside(item) for item in items)


def _inline_inside(item: Any) -> bool:
    if isinstance(item, YMap) and len(item) == 1:
        opts = next(iter(item.values()))
        if isinstance(opts, YMap) and isinstance(opts.get("layers"), YList):
            return is_inline(opts)
    return True
