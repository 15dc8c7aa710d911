"""Optional dependency groups (pip extras): which group each command needs, and the one line that says so when a
module of a missing group is imported while a command runs.

The groups are pyproject.toml's `[project.optional-dependencies]`; tests/test_install_groups.py checks that every
module listed here is installed by the group named for it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

# top-level module -> (what people call it, the group that installs it when the command's own group does not)
MODULES: dict[str, tuple[str, str]] = {
    "torch": ("PyTorch", "torch"),
    "numpy": ("NumPy", "torch"),
    "kornia": ("kornia", "torch"),
    "PIL": ("Pillow", "torch"),
    "matplotlib": ("matplotlib", "torch"),
    "safetensors": ("safetensors", "torch"),
    "rich": ("rich", "torch"),
    "tensorboard": ("TensorBoard", "torch"),
    "mlflow": ("MLflow", "torch"),
    "sqlalchemy": ("SQLAlchemy", "torch"),
    "alembic": ("Alembic", "torch"),
    "onnx": ("ONNX", "onnx"),
    "onnxscript": ("onnxscript", "onnx"),
    "onnxconverter_common": ("onnxconverter-common", "onnx"),
    "onnxruntime": ("onnxruntime", "runtime"),
    "webdataset": ("WebDataset", "shards"),
    "cairosvg": ("CairoSVG", "draw"),
    "pygls": ("pygls", "lsp"),
    "lsprotocol": ("lsprotocol", "lsp"),
}

TORCH_MODULES = frozenset({"torch", "numpy", "kornia", "PIL", "matplotlib", "safetensors", "rich", "tensorboard", "mlflow", "sqlalchemy", "alembic"})
# group -> the top-level modules it installs (with the groups it includes)
GROUP_MODULES: dict[str, frozenset[str]] = {
    "torch": TORCH_MODULES,
    "onnx": frozenset({"onnx", "onnxscript", "onnxconverter_common"}) | TORCH_MODULES,  # export builds the model in PyTorch first
    "runtime": frozenset({"onnxruntime", "numpy", "PIL"}),
    "gpu": frozenset({"onnxruntime", "numpy", "PIL"}),
    "shards": frozenset({"webdataset"}),
    "draw": frozenset({"cairosvg"}),
    "lsp": frozenset({"pygls", "lsprotocol"}),
}

# command -> the groups it needs, in the order they are suggested
COMMAND_GROUPS: dict[str, tuple[str, ...]] = {
    "train": ("torch",),
    "eval": ("torch",),
    "predict": ("torch",),
    "export": ("onnx",),
    "infer": ("runtime",),
    "bench": ("onnx", "runtime"),  # a spec: exported, then timed on onnxruntime and PyTorch
    "bench MODEL.onnx": ("runtime",),
    "data": ("torch", "shards"),
    "lsp": ("lsp",),  # data pack reads images with the training side's readers
}


def command_key(argv: Sequence[str] | None) -> str:
    """The command a command line runs ('bench MODEL.onnx' for bench on an ONNX file), or '' when it cannot be told."""
    from netdsl.cli.parser import build_parser

    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    except (SystemExit, Exception):
        return ""
    command = str(getattr(args, "command", "") or "")
    if command == "bench" and str(getattr(args, "target", "")).endswith(".onnx"):
        return "bench MODEL.onnx"
    return command


def groups_for(module: str, command: str) -> str:
    """The groups to install for a missing top-level module, as pip's brackets hold them: the command's own groups when
    one of them has the module (bench on a spec: 'onnx,runtime'), else the module's group (export's verification: 'runtime')."""
    own = COMMAND_GROUPS.get(command, ())
    return ",".join(own) if any(module in GROUP_MODULES[g] for g in own) else MODULES[module][1]


def missing_extra_line(exc: BaseException, argv: Sequence[str] | None = None) -> str | None:
    """`netdsl train: needs PyTorch, which is not installed: pip install 'netdsl[torch]'` for a ModuleNotFoundError of
    an optional group's module; None for anything else (a missing submodule of an installed package is a bug)."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    module = exc.name.split(".")[0]
    if module not in MODULES or (module != exc.name and module in sys.modules):
        return None
    command = command_key(argv)
    groups = groups_for(module, command)
    who = f"netdsl {command.split()[0]}" if command else "netdsl"
    gpu = f" (or 'netdsl[{groups.replace('runtime', 'gpu')}]' for CUDA)" if "runtime" in groups.split(",") else ""
    return f"{who}: needs {MODULES[module][0]}, which is not installed: pip install 'netdsl[{groups}]'{gpu}"
