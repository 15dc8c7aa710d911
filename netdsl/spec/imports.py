"""Block libraries: `import: [resnet, ./my_blocks.yaml]` brings in blocks defined in other files."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from netdsl.errors import Diagnostic, SpecError, did_you_mean
from netdsl.spec.formats import parse_tree
from netdsl.spec.validate import validate_tree
from netdsl.spec.yaml_tree import YList, YMap

Library = tuple[str, YMap]  # (file, its `blocks` mapping)


def builtin_libraries() -> dict[str, Path]:
    """Built-in block libraries shipped in netdsl/blocks, by name."""
    folder = Path(str(resources.files("netdsl").joinpath("blocks")))
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def load_libraries(tree: YMap, file: str) -> tuple[list[Library], list[Diagnostic]]:
    """Every library the spec imports, transitively, each once, dependencies first."""
    out: list[Library] = []
    diags: list[Diagnostic] = []
    seen: set[Path] = set()
    builtin = builtin_libraries()

    def visit(imports: YList, base: Path) -> None:
        for name, loc in zip(imports, imports.item_locs):
            if name in builtin:
                path = builtin[name]
            elif name.endswith((".yaml", ".yml", ".net")):
                path = (base / name).resolve()
            else:
                hint = did_you_mean(name, builtin)
                diags.append(Diagnostic(loc, f"unknown block library '{name}'{hint} (built-in: {', '.join(builtin)}; or a .yaml or .net path)"))
                continue
            if path in seen:
                continue
            seen.add(path)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                diags.append(Diagnostic(loc, f"cannot read block library '{name}': {exc.strerror}"))
                continue
            try:
                lib = parse_tree(text, str(path))
            except SpecError as exc:
                diags.extend(exc.diagnostics)
                continue
            if isinstance(lib, YMap) and isinstance(lib.get("import"), YList):
                visit(lib["import"], path.parent)
            own = list(lib["blocks"]) if isinstance(lib, YMap) and isinstance(lib.get("blocks"), YMap) else []
            known = [*own, *(b for _, blocks in out for b in blocks)]
            # built-in libraries are validated by the test suite (tests/test_build.py), not on every load
            problems = [] if name in builtin else validate_tree(lib, str(path), library=True, blocks=known)
            if problems:
                diags.extend(problems)
                continue
            out.append((str(path), lib["blocks"]))

    imports = tree.get("import")
    if isinstance(imports, YList):
        visit(imports, Path(file).resolve().parent)
    return out, diags
