"""`netdsl fmt`: rewrite specs, YAML or .net, in their canonical layout, keeping comments."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from netdsl.errors import Diagnostic, SpecError
from netdsl.lang.convert import rewrite, write_atomically
from netdsl.lang.files import read_spec
from netdsl.lang.formats import format_of


def format_text(text: str, file: str) -> str:
    """Spec text in the canonical layout of its own format (told by `file`'s suffix); raises SpecError."""
    return rewrite(text, file, format_of(file))


@dataclass
class FmtResult:
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: list[Diagnostic] = field(default_factory=list)


SPEC_SUFFIXES = (".yaml", ".yml", ".net")


def spec_files(paths: list[str | os.PathLike[str]]) -> list[Path]:
    """The files named, with each folder replaced by the specs in it (.yaml, .yml, .net; recursively, sorted)."""
    out: list[Path] = []
    for path in map(Path, paths):
        out += sorted(p for p in path.rglob("*") if p.suffix in SPEC_SUFFIXES and p.is_file()) if path.is_dir() else [path]
    return out


def fmt_files(paths: list[str | os.PathLike[str]], check: bool = False) -> FmtResult:
    """Format each file (folders: the specs in them) in place, atomically; with check=True only report which would change."""
    result = FmtResult()
    for path in spec_files(paths):
        try:
            text, name = read_spec(path)
            formatted = format_text(text, name)
        except SpecError as exc:
            result.failed.append(str(path))
            result.errors += exc.diagnostics
            continue
        if formatted == text:
            result.unchanged.append(name)
            continue
        if not check:
            write_atomically(Path(path), formatted)
        result.changed.append(name)
    return result
