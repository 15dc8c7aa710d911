"""Install groups (pip extras): pyproject's groups against netdsl/cli/extras.py, the digits data shipped in the package, the
one-line message of a command whose group is missing, and the core commands with torch and numpy absent.

A missing package is simulated in a child process by a meta-path finder that refuses it (tests/light_installs.sh
checks real installs without the groups)."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

from netdsl.cli.extras import COMMAND_GROUPS, GROUP_MODULES, MODULES, missing_extra_line
from netdsl.cli.parser import build_parser

ROOT = Path(__file__).resolve().parent.parent
SPEC = str(ROOT / "specs" / "lenet5.yaml")
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS: dict[str, list[str]] = PROJECT["optional-dependencies"]

# the distribution that installs each top-level module
DISTRIBUTIONS = {"PIL": "pillow", "onnxconverter_common": "onnxconverter-common", "mlflow": "mlflow-skinny", "onnxruntime": "onnxruntime"}
PLATFORMS = {  # the environment markers pip evaluates, for the platforms the groups distinguish
    "linux x86_64": {"sys_platform": "linux", "platform_machine": "x86_64"},
    "linux aarch64": {"sys_platform": "linux", "platform_machine": "aarch64"},
    "macOS arm64": {"sys_platform": "darwin", "platform_machine": "arm64"},
    "windows AMD64": {"sys_platform": "win32", "platform_machine": "AMD64"},
}


def resolved(group: str, platform: dict[str, str] | None = None) -> set[str]:
    """The distributions a group installs, following netdsl[...] references; with a platform, only those whose marker holds there."""
    names: set[str] = set()
    for line in EXTRAS[group]:
        req = Requirement(line)
        if req.marker is not None and platform is not None and not req.marker.evaluate({**platform, "extra": ""}):
            continue
        if req.name == "netdsl":
            for inner in req.extras:
                names |= resolved(inner, platform)
        else:
            names.add(req.name.lower())
    return names


# ---------------------------------------------------------------- pyproject's groups


def test_core_has_no_torch_numpy_or_onnx_and_nothing_needs_scikit_learn():
    core = {Requirement(r).name.lower() for r in PROJECT["dependencies"]}
    assert core == {"pyyaml", "jsonschema", "lark", "grandalf", "shtab"}
    everything = set().union(*(resolved(g) for g in EXTRAS))
    assert not everything & {"scikit-learn", "scipy", "sklearn"}


def test_every_module_extras_names_is_installed_by_that_group():
    for group, modules in GROUP_MODULES.items():
        for module in modules:
            dist = DISTRIBUTIONS.get(module, module.lower())
            if group == "gpu" and module == "onnxruntime":
                assert resolved(group, PLATFORMS["linux x86_64"]) >= {"onnxruntime-gpu"}
                assert resolved(group, PLATFORMS["macOS arm64"]) >= {"onnxruntime"}
            else:
                assert dist in resolved(group), f"[{group}] should install {dist} (module {module})"
    for module, (_, group) in MODULES.items():
        assert module in GROUP_MODULES[group]


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("group", ["runtime", "gpu", "all", "dev"])
def test_a_group_installs_exactly_one_onnxruntime(group, platform):
    # onnxruntime and onnxruntime-gpu both install the module `onnxruntime`; together, one overwrites the other's files
    runtimes = resolved(group, PLATFORMS[platform]) & {"onnxruntime", "onnxruntime-gpu"}
    expected = {"onnxruntime-gpu"} if group != "runtime" and platform in ("linux x86_64", "windows AMD64") else {"onnxruntime"}
    assert runtimes == expected


def test_all_and_dev_hold_every_group_and_old_names_still_work():
    assert resolved("all") >= resolved("torch") | resolved("onnx") | resolved("shards") | {"onnxruntime-gpu", "cairosvg"}
    assert resolved("dev") >= resolved("all") | {"pytest", "pytest-xdist", "ruff", "mypy"}
    assert resolved("tracking") >= {"tensorboard", "mlflow-skinny", "sqlalchemy", "alembic"}
    assert "torch" in resolved("onnx") and "torch" not in resolved("runtime") | resolved("gpu")


def test_every_command_named_in_extras_is_a_command():
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert {key.split()[0] for key in COMMAND_GROUPS} <= commands
    assert all(group in EXTRAS for groups in COMMAND_GROUPS.values() for group in groups)


def test_package_data_ships_the_digits_and_its_licence():
    data = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["netdsl"])
    assert {"data/digits.csv.gz", "data/DIGITS-LICENSE.md"} <= data


# ---------------------------------------------------------------- the digits


def test_digits_file_is_scikit_learns_and_reads_as_1797_samples_of_10_classes():
    raw = (files("netdsl") / "data" / "digits.csv.gz").read_bytes()
    # sha256 of sklearn/datasets/data/digits.csv.gz as scikit-learn 1.9.1 ships it (computed with sha256sum, 2026-11-30)
    assert hashlib.sha256(raw).hexdigest() == "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"
    from netdsl.train.sources import read_digits

    x, y, classes = read_digits()
    assert tuple(x.shape) == (1797, 1, 8, 8) and classes == [str(c) for c in range(10)]
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0 and set((x * 16).round().unique().tolist()) <= set(range(17))
    # per class: the UCI optdigits test set's class distribution (optdigits.names, "Class distribution", test column)
    assert y.bincount().tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_digits_licence_names_the_source_both_licences_and_the_doi():
    text = (files("netdsl") / "data" / "DIGITS-LICENSE.md").read_text()
    for words in (
        "Alpaydin",
        "Kaynak",
        "1998",
        "10.24432/C50P49",
        "CC BY 4.0",
        "BSD 3-Clause",
        hashlib.sha256((files("netdsl") / "data" / "digits.csv.gz").read_bytes()).hexdigest(),
    ):
        assert words in text


# ---------------------------------------------------------------- a missing group, one line


BLOCKING = """
import sys
blocked = set(sys.argv[1].split(","))

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Refuse())
from netdsl.cli.main import main
code = main(sys.argv[2:])
print("loaded:", sorted(m for m in blocked | {"torch", "numpy", "onnx", "onnxruntime"} if m in sys.modules))
sys.exit(code)
"""


def run_blocked(blocked: str, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process in which the modules named (comma-separated) cannot be imported."""
    return subprocess.run([sys.executable, "-c", BLOCKING, blocked, *argv], capture_output=True, text=True, cwd=cwd, timeout=60)


RUNTIME = "pip install 'netdsl[runtime]' (or 'netdsl[gpu]' for CUDA)"
MISSING = [
    (["train", SPEC], "torch", "netdsl train: needs PyTorch, which is not installed: pip install 'netdsl[torch]'"),
    (["eval", SPEC, "--weights", "w.pt"], "torch", "netdsl eval: needs PyTorch, which is not installed: pip install 'netdsl[torch]'"),
    (["predict", SPEC, "a.png", "--weights", "w.pt"], "torch,numpy", "netdsl predict: needs {}, which is not installed: pip install 'netdsl[torch]'"),
    (["export", SPEC, "-o", "m.onnx"], "torch,numpy,onnx", "netdsl export: needs {}, which is not installed: pip install 'netdsl[onnx]'"),
    (["infer", "m.onnx", "a.png"], "onnxruntime", f"netdsl infer: needs onnxruntime, which is not installed: {RUNTIME}"),
    (["infer", "m.onnx", "a.png"], "numpy,onnxruntime", f"netdsl infer: needs {{}}, which is not installed: {RUNTIME}"),
    (["bench", "m.onnx"], "onnxruntime", f"netdsl bench: needs onnxruntime, which is not installed: {RUNTIME}"),
    (
        ["bench", SPEC],
        "torch,numpy,onnx,onnxruntime",
        "netdsl bench: needs {}, which is not installed: pip install 'netdsl[onnx,runtime]' (or 'netdsl[onnx,gpu]' for CUDA)",
    ),
    (["data", "pack", "imgs", "-o", "out"], "torch,webdataset", "netdsl data: needs {}, which is not installed: pip install 'netdsl[torch,shards]'"),
]


@pytest.mark.parametrize(("argv", "blocked", "line"), MISSING, ids=[f"{' '.join(a[:1])}-{b}" for a, b, _ in MISSING])
def test_a_command_whose_group_is_missing_says_which_to_install_in_one_line(tmp_path, argv, blocked, line):
    (tmp_path / "imgs").mkdir()
    for name in ("w.pt", "m.onnx", "a.png"):
        (tmp_path / name).write_bytes(b"\0")
    result = run_blocked(blocked, *argv, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    # the first of the blocked modules the command imports is named (NumPy, say, before PyTorch)
    names = "|".join(re.escape(MODULES[m][0]) for m in blocked.split(","))
    assert re.fullmatch(re.escape(line).replace(re.escape("{}"), f"({names})"), result.stderr.strip()), result.stderr


@pytest.mark.parametrize("argv", [["check", SPEC], ["summarize", SPEC], ["expand", SPEC], ["summarize", SPEC, "--json"]])
def test_core_commands_run_with_torch_and_numpy_absent(tmp_path, argv):
    result = run_blocked("torch,numpy,onnx,onnxruntime,PIL", *argv, cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "61,706" in result.stdout or "61706" in result.stdout  # LeNet-5: conv 156 + 2,416, linear 48,120 + 10,164 + 850
    assert result.stdout.strip().endswith("loaded: []")


def test_a_missing_module_of_no_group_or_inside_an_installed_package_stays_an_internal_error(monkeypatch):
    assert missing_extra_line(ModuleNotFoundError("No module named 'nosuch'", name="nosuch"), ["train", SPEC]) is None
    assert missing_extra_line(ImportError("cannot import name 'x' from 'torch'", name="torch"), ["train", SPEC]) is None
    monkeypatch.setitem(sys.modules, "torch", object())  # torch is there; a part of it is not: a broken install, not a missing group
    assert missing_extra_line(ModuleNotFoundError("No module named 'torch._C'", name="torch._C"), ["train", SPEC]) is None


def test_export_verification_without_onnxruntime_names_the_runtime_group():
    exc = ModuleNotFoundError("No module named 'onnxruntime'", name="onnxruntime")
    assert missing_extra_line(exc, ["export", SPEC]) == f"netdsl export: needs onnxruntime, which is not installed: {RUNTIME}"
    assert missing_extra_line(exc, ["--no-such-option"]) == f"netdsl: needs onnxruntime, which is not installed: {RUNTIME}"


def test_readme_install_lines_name_real_groups_and_commands():
    """The README's pip lines (not run: they would install from the registry) name groups pyproject has, and the
    commands each line promises belong to that group in netdsl/cli/extras.py."""
    readme = (ROOT / "README.md").read_text()
    lines = re.findall(r"^pip install (netdsl|'netdsl\[([\w,]+)\]')\s+# (.*)$", readme, re.M)
    assert len(lines) >= 7
    shown = {group for _, groups, _ in lines for group in groups.split(",") if group}
    assert shown <= set(EXTRAS) and {"torch", "onnx", "runtime", "gpu", "all"} <= shown
    core = next(comment for whole, _, comment in lines if whole == "netdsl")
    assert all(command in core and command not in COMMAND_GROUPS for command in ("check", "summarize", "draw"))
