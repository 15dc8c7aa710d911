"""`netdsl convert`: a spec written in the other format (YAML <-> .net), the same raw tree, comments kept (but for the
`# yaml-language-server:` modeline, which only a YAML file can use).

Both directions go through the raw tree: parse, write, and parse the result again to check that it reads back to
exactly the same tree (an internal check: a difference is a netdsl bug, not the user's).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from netdsl.errors import input_error
from netdsl.lang.files import read_spec
from netdsl.lang.formats import Format, format_of, parse_tree
from netdsl.lang.layout import render, source_notes
from netdsl.lang.write_net import write_net
from netdsl.lang.write_yaml import write_yaml

MODELINE = "# yaml-language-server:"  # the first line of a YAML spec that points plain YAML editors at the schema


def rewrite(text: str, file: str, to: Format) -> str:
    """Spec text (its format told by `file`'s suffix) written in format `to`, with its comments; raises SpecError."""
    source = format_of(file)
    tree = parse_tree(text, file)
    notes = source_notes(text, source)
    if to == "net":  # a YAML editor's modeline means nothing in the text format (and its path is relative to the YAML file)
        notes = [n for n in notes if not (n.own_line and n.text.startswith(MODELINE))]
    lines = write_net(tree, file, notes, chains=source == "yaml") if to == "net" else write_yaml(tree)
    out = render(lines, notes)
    again = parse_tree(out, f"<{file} written as {to}>", to)
    if not same_tree(tree, again):
        raise RuntimeError(f"netdsl bug: {file} written as {to} does not read back to the same spec")
    return out


def same_tree(a: Any, b: Any) -> bool:
    """Equal raw trees, strictly: 1, 1.0 and true differ; mapping order does not matter."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_tree(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_tree(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def other_format(path: str | os.PathLike[str]) -> Format:
    return "yaml" if format_of(path) == "net" else "net"


def convert_file(source: str | os.PathLike[str], target: str | os.PathLike[str] | None = None) -> str:
    """Convert a spec file; write it to `target` (format by its suffix) if given; returns the converted text."""
    text, name = read_spec(source)
    out = rewrite(text, name, format_of(target) if target is not None else other_format(source))
    if target is not None:
        write_atomically(Path(target), out)
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and os.replace, so a reader never sees half a file."""
    try:
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise input_error(str(path), f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.chmod(temp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())  # mkstemp makes 0600
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
