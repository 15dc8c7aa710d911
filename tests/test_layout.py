"""The package's imports flow one way, from the commands down to the IR and errors (README: How it is built).

Every `import` in netdsl/, at module level or inside a function, is read with ast: a module may import its own stage
and the stages below it, never one above or beside it. The front end never imports torch, numpy or onnx at all."""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "netdsl"

# Top to bottom. A stage imports the stages in the rows below its own; the stages in one row are independent.
STAGES: list[tuple[str, ...]] = [
    ("__main__",),  # python -m netdsl
    ("netdsl", "cli"),  # the public API (netdsl/__init__.py); the commands
    ("lsp", "deploy"),  # the language server; ONNX export, int8, bench
    ("train",),  # the trainer: data, loop, checkpoints, runs, eval/predict
    ("backends", "runtime"),  # IR -> torch.nn; onnxruntime sessions, inputs and outputs (no torch)
    ("graph",),  # tree -> IR: expansion, shape inference, budgets, load()
    ("analysis",),  # IR -> figures: counts, memory, summary, diff, expand, draw
    ("lang",),  # text <-> tree: YAML and .net, schema, validation, expressions, libraries, writers
    ("tasks",),  # what a network is trained for: targets, losses, metrics, output decoding
    ("ir",),  # the IR
    ("layers",),  # layer types: fields, shape rules, counts, builders
    ("atomic", "version"),  # files written whole or not at all; the version
    ("errors",),  # located errors, did-you-mean
]
RANK = {stage: i for i, row in enumerate(STAGES) for stage in row}
# The same rule inside the CLI: main runs a command; the groups add their subcommands; common is what they share.
CLI: list[tuple[str, ...]] = [("main",), ("completion", "extras"), ("parser",), ("spec", "train", "deploy"), ("common", "examples")]
CLI_RANK = {name: i for i, row in enumerate(CLI) for name in row}
FRONT_END = ("lang", "graph", "analysis", "ir", "layers", "tasks", "errors", "atomic", "version")
HEAVY = ("torch", "numpy", "onnx", "onnxruntime")


def stage_of(module: str) -> str:
    """netdsl.lang.text -> 'lang'; netdsl.ir -> 'ir'; netdsl -> 'netdsl'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "netdsl"


@functools.cache
def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(module: str, path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    run_at_import = [node for node in tree.body if not (isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test))]
    top = {id(n) for node in run_at_import if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) for n in ast.walk(node)}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            known = modules()  # `from netdsl.cli import spec` imports the module netdsl.cli.spec
            out += [(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base, node.lineno, id(node) in top) for a in node.names]
    return out


def test_every_module_belongs_to_a_stage():
    unknown = sorted({stage_of(m) for m in modules()} - set(RANK))
    assert not unknown, f"add these to STAGES (and to README's map): {unknown}"


def test_imports_flow_down_the_stages():
    wrong = []
    for module, path in modules().items():
        stage = stage_of(module)
        for target, line, _ in imports(module, path):
            if target != "netdsl" and not target.startswith("netdsl."):
                continue
            other = stage_of(target)
            if other != stage and RANK[other] <= RANK[stage]:
                wrong.append(
                    f"{path.relative_to(PACKAGE.parent)}:{line}: {stage} imports {target} ({other} is {'beside' if RANK[other] == RANK[stage] else 'above'} it)"
                )
    assert not wrong, "\n".join(wrong)


def test_no_modules_import_each_other_in_a_circle():
    """Inside a stage too, imports form no loop (a package's __init__.py, which only hands names on, aside)."""
    known = modules()
    faces = {m for m, p in known.items() if p.name == "__init__.py"}
    edges = {m: {t for t, _, _ in imports(m, p) if t in known and t not in faces and t != m} for m, p in known.items() if m not in faces}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str]:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return []
        for target in sorted(edges.get(module, ())):
            if loop := visit(target, [*path, module]):
                return loop
        done.add(module)
        return []

    loops = [loop for m in sorted(edges) if (loop := visit(m, []))]
    assert not loops, " -> ".join(loops[0])


def test_the_command_groups_never_import_the_entry_point():
    """netdsl/cli: a command group imports common.py, never main.py, the parser or another group."""
    cli = {m: p for m, p in modules().items() if m.startswith("netdsl.cli.")}
    assert set(CLI_RANK) == {m.split(".")[2] for m in cli}, "add new netdsl/cli modules to CLI"
    wrong = []
    for module, path in cli.items():
        name = module.split(".")[2]
        for target, line, _ in imports(module, path):
            other = target.split(".")[2] if target.startswith("netdsl.cli.") else None
            if other is not None and other != name and CLI_RANK[other] <= CLI_RANK[name]:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: cli.{name} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_the_front_end_imports_no_heavy_package_at_module_level():
    """Loading, checking, counting and summarize stay torch-free: the backends import torch inside functions."""
    wrong = []
    for module, path in modules().items():
        if stage_of(module) not in FRONT_END or module.startswith("netdsl.layers.modules"):
            continue
        for target, line, at_top in imports(module, path):
            if at_top and target.split(".")[0] in HEAVY:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: imports {target} at module level")
    assert not wrong, "\n".join(wrong)


def test_the_runtime_never_imports_torch():
    """netdsl[runtime] installs onnxruntime without torch: nothing in netdsl/runtime/ may import it, even lazily."""
    wrong = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {target}"
        for module, path in modules().items()
        if stage_of(module) == "runtime"
        for target, line, _ in imports(module, path)
        if target.split(".")[0] == "torch"
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("command", ["check", "summarize", "draw"])
def test_front_end_commands_load_no_heavy_package(command, tmp_path):
    """What the stage rule promises, in a real process: the front-end commands import neither torch nor numpy."""
    out = ["-o", str(tmp_path / "x.svg")] if command == "draw" else []
    code = (
        "import sys; from netdsl.cli.main import main; "
        f"rc = main([{command!r}, 'specs/resnet18.yaml', *{out!r}]); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'onnx', 'onnxruntime')), rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "[] 0", result.stdout + result.stderr


def test_the_readme_map_lists_every_folder_and_module():
    """README's "How it is built" map names each entry of netdsl/ (package folders and top-level modules), and no other."""
    readme = (PACKAGE.parent / "README.md").read_text()
    block = readme.split("<!-- map: netdsl -->\n```\n", 1)[1].split("```", 1)[0]
    listed = [line.split()[0] for line in block.splitlines() if line.startswith("  ") and not line.startswith("   ")]
    present = {p.name + "/" for p in PACKAGE.iterdir() if (p / "__init__.py").exists()} | {p.name for p in PACKAGE.glob("*.py")}
    assert sorted(listed) == sorted(present)
    stages = {entry.removesuffix("/").removesuffix(".py").replace("__init__", "netdsl") for entry in listed}
    assert stages == set(RANK), "every entry of the map is a stage of STAGES"


def test_the_slowest_first_list_names_real_test_files():
    """conftest.SLOWEST_FILES hands these files to the workers first; a renamed one would silently lose its early start."""
    from tests.conftest import SLOWEST_FILES

    tests = PACKAGE.parent / "tests"
    assert [name for name in SLOWEST_FILES if not (tests / name).is_file()] == []
