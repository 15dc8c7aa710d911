"""Block libraries: `import: [resnet, ./my_blocks.yaml]` brings in blocks defined in other files.

A path is read relative to the file that imports it, then relative to each folder of the search path. Whatever it
names (after following links) must lie in the top-level spec's folder or below, among the built-in libraries, or in
a folder of the search path: `NETDSL_PATH` (folders separated by os.pathsep, like PYTHONPATH) and `library_path`.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from netdsl.errors import Diagnostic, Loc, SpecError, did_you_mean
from netdsl.lang.files import FileProblem, printable, read_text
from netdsl.lang.formats import parse_tree
from netdsl.lang.validate import validate_tree
from netdsl.lang.yaml_tree import YList, YMap

Library = tuple[str, YMap]  # (file, its `blocks` mapping)
PATH_VARIABLE = "NETDSL_PATH"
MAX_IMPORT_DEPTH = 32
LIBRARY_SUFFIXES = (".yaml", ".yml", ".net")


def builtin_libraries() -> dict[str, Path]:
    """Built-in block libraries shipped in netdsl/blocks, by name."""
    return {p.stem: p for p in sorted(_builtin_folder().glob("*.yaml"))}


def _builtin_folder() -> Path:
    return Path(str(resources.files("netdsl").joinpath("blocks")))


def search_path(library_path: Sequence[str | os.PathLike[str]] = ()) -> list[Path]:
    """The folders imports may read besides the spec's own and the built-in libraries: `library_path`, then NETDSL_PATH."""
    folders = [*map(str, library_path), *os.environ.get(PATH_VARIABLE, "").split(os.pathsep)]
    return [Path(os.path.realpath(f)) for f in folders if f]


def load_libraries(tree: YMap, file: str, library_path: Sequence[str | os.PathLike[str]] = ()) -> tuple[list[Library], list[Diagnostic]]:
    """Every library the spec imports, transitively, each once, dependencies first."""
    out: list[Library] = []
    diags: list[Diagnostic] = []
    seen: set[Path] = set()
    builtin = builtin_libraries()
    spec_folder = Path(os.path.realpath(file)).parent
    search = search_path(library_path)
    allowed = [spec_folder, Path(os.path.abspath(file)).parent, Path(os.path.realpath(_builtin_folder())), *search]
    imports = tree.get("import")
    written_in = _writers(imports, file) if isinstance(imports, YList) else {}
    allowed += [folder for folder in written_in.values() if folder not in allowed]  # a base spec's folder (extends:) for its imports

    def locate(name: str, base: Path, loc: Loc) -> Path | None:
        """The file an import names, if it may be read; else None and a diagnostic."""
        if "\x00" in name:
            diags.append(Diagnostic(loc, f"cannot read block library '{printable(name)}': no such file (the name holds a NUL character)"))
            return None
        candidates = [base / name, *(folder / name for folder in search)]
        given = next((c for c in candidates if os.path.lexists(c)), candidates[0])
        path = Path(os.path.realpath(given))  # follows links (a loop is left for the read to report)
        if not any(path.is_relative_to(folder) for folder in allowed):
            diags.append(
                Diagnostic(
                    loc,
                    f"block library '{printable(name)}' is outside the spec's folder {printable(str(spec_folder))} (it resolves to {printable(str(path))});"
                    " imports read only that folder and below,"
                    f" the built-in libraries and the folders in {PATH_VARIABLE}",
                )
            )
            return None
        return path

    def visit(imports: YList, base: Path, depth: int) -> None:
        for name, loc in zip(imports, imports.item_locs):
            if not isinstance(name, str):
                continue  # the schema check says what an import must be
            if name in builtin:
                path: Path | None = builtin[name]
            elif name.endswith(LIBRARY_SUFFIXES):
                path = locate(name, written_in.get(loc.file, base) if depth == 0 else base, loc)
            else:
                hint = did_you_mean(name, builtin)
                diags.append(Diagnostic(loc, f"unknown block library '{printable(name)}'{hint} (built-in: {', '.join(builtin)}; or a .yaml or .net path)"))
                continue
            if path is None or path in seen:
                continue
            if depth >= MAX_IMPORT_DEPTH:
                diags.append(Diagnostic(loc, f"block library '{printable(name)}': imports nest more than {MAX_IMPORT_DEPTH} deep"))
                continue
            seen.add(path)
            lib = read_library(path, name, loc, diags)
            if lib is None:
                continue
            if isinstance(lib.get("import"), YList):
                visit(lib["import"], path.parent, depth + 1)
            own = list(lib["blocks"]) if isinstance(lib.get("blocks"), YMap) else []
            known = [*own, *(b for _, blocks in out for b in blocks)]
            # built-in libraries are validated by the test suite (tests/test_build.py), not on every load
            problems = [] if name in builtin else validate_tree(lib, str(path), library=True, blocks=known)
            if problems:
                diags.extend(problems)
                continue
            out.append((str(path), lib["blocks"]))

    if isinstance(imports, YList):
        visit(imports, spec_folder, 0)
    return out, diags


def _writers(imports: YList, file: str) -> dict[str, Path]:
    """The folder of each file other than the spec that wrote a top-level import (a base spec merged in by extends:)."""
    return {loc.file: Path(os.path.realpath(loc.file)).parent for loc in imports.item_locs if loc.line > 0 and loc.file != file}


_KINDS = {YList: "a list", str: "a string", bool: "a boolean", int: "an integer", float: "a number"}


_PARSED: OrderedDict[tuple[str, int, int, int], YMap] = OrderedDict()  # (path, inode, size, mtime) -> its tree
PARSED_KEPT = 64  # libraries whose trees stay parsed: a language server re-checks a spec on every edit


def read_library(path: Path, name: str, loc: Loc, diags: list[Diagnostic]) -> YMap | None:
    """A library's raw tree, or None with a diagnostic: at the import for an unreadable file, in the file for its text.

    Nothing of the file's content is quoted unless it parses as a spec tree (an imported /etc/passwd stays private).
    A file unchanged since it was last parsed (same inode, size and modification time) is not parsed again.
    """
    try:
        st = os.stat(path)
        key: tuple[str, int, int, int] | None = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        key = None
    if key is not None and key in _PARSED:
        _PARSED.move_to_end(key)
        return _PARSED[key]
    try:
        text = read_text(path)
    except FileProblem as exc:
        if exc.in_text:
            diags.append(Diagnostic(Loc(str(path), exc.line, exc.col), exc.message))
        else:
            diags.append(Diagnostic(loc, f"cannot read block library '{printable(name)}': {exc.message.removeprefix('cannot read: ')}"))
        return None
    try:
        lib = parse_tree(text, str(path))
    except SpecError as exc:
        diags.extend(exc.diagnostics)
        return None
    if not isinstance(lib, YMap):
        got = "an empty document" if lib is None else _KINDS.get(type(lib), "a scalar")
        diags.append(Diagnostic(getattr(lib, "loc", Loc(str(path), 1, 1)), f"a block library must be a mapping with keys netdsl, blocks; got {got}"))
        return None
    if key is not None:
        _PARSED[key] = lib
        while len(_PARSED) > PARSED_KEPT:
            _PARSED.popitem(last=False)
    return lib
