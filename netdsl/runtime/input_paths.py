"""Input arguments of `predict` (and `infer`) as the files they name: files as given, folders and quoted globs expanded.

Torch- and numpy-free. A folder gives every image and .npy array directly inside it (hidden files left out); a glob
(an argument with * ? or [ that names no file) is expanded by netdsl, `**` across folders, so it works when quoted.
Both are sorted by name; an argument that names nothing is left for the reader to report (`no such file`).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from netdsl.errors import input_error

CHUNK_FILES = 256  # input files that predict and infer hold in memory at a time (a stacked .npy counts as one)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")  # what netdsl.runtime.inputs reads with Pillow
INPUT_SUFFIXES = (*IMAGE_SUFFIXES, ".npy")


@dataclass(frozen=True)
class Expanded:
    """The files an argument named, and how: 'file', 'folder' or 'glob'."""

    argument: str
    kind: str
    files: tuple[str, ...]


def is_glob(argument: str) -> bool:
    return glob.has_magic(argument) and not os.path.lexists(argument)


def expand_argument(argument: str) -> Expanded:
    """One input argument as its files; a folder without inputs or a glob matching nothing is a one-line error."""
    if os.path.isdir(argument):
        files = sorted(str(p) for p in Path(argument).iterdir() if p.suffix.lower() in INPUT_SUFFIXES and not p.name.startswith(".") and p.is_file())
        if not files:
            raise input_error(argument, f"no images or .npy arrays in folder '{argument}'")
        return Expanded(argument, "folder", tuple(files))
    if is_glob(argument):
        files = sorted(p for p in glob.glob(argument, recursive=True) if os.path.isfile(p))
        if not files:
            raise input_error(argument, f"glob '{argument}' matches nothing")
        return Expanded(argument, "glob", tuple(files))
    return Expanded(argument, "file", (argument,))


def expand_inputs(arguments: list[str]) -> list[Expanded]:
    """Every argument expanded, in the order given."""
    return [expand_argument(a) for a in arguments]


def input_files(expanded: list[Expanded]) -> list[str]:
    return [f for e in expanded for f in e.files]


def expansion_notes(expanded: list[Expanded]) -> list[str]:
    """`imgs/: 12 files` for each folder or glob: what netdsl read besides the files named one by one."""
    return [f"{e.argument}: {len(e.files)} file{'s' * (len(e.files) != 1)} ({e.kind})" for e in expanded if e.kind != "file"]
