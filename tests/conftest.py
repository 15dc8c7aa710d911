"""Shared helpers: run the CLI in-process and capture what a user would see."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import netdsl
from netdsl.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
DATA = Path(__file__).resolve().parent / "data"


FULL_ZOO = os.environ.get("NETDSL_FULL_ZOO") == "1"
# A family's members share their family spec's blocks and differ in width, depth and input size: the tests that build
# and export every zoo spec in PyTorch (tests/test_torch_backend.py, tests/test_onnx_zoo.py) take one representative each,
# or all of them with NETDSL_FULL_ZOO=1 (`make zoo-full`). Counts, layouts and outputs are checked for every member.
REPRESENTATIVES = {
    "convnext_": "convnext_tiny",
    "efficientnet_b": "efficientnet_b0",
    "efficientnet_v2_": "efficientnet_v2_s",
    "mnasnet": "mnasnet1_0",
    "regnet_x_": "regnet_x_400mf",
    "regnet_y_": "regnet_y_400mf",
    "shufflenet_v2_": "shufflenet_v2_x1_0",
    "swin_": "swin_t",
    "vit_": "vit_b_16",
}


def torch_zoo() -> list[str]:
    """The zoo specs the PyTorch-side zoo tests build: every spec, less family members beside their representative."""
    names = sorted(p.stem for p in SPECS.glob("*.yaml"))
    if FULL_ZOO:
        return names
    return [n for n in names if not any(n.startswith(prefix) and n != rep for prefix, rep in REPRESENTATIVES.items())]


def reference_models() -> dict[str, dict]:
    """torchvision's published figures (shared/reference/torchvision/models.json, torchvision 0.29.1)."""
    return json.loads((DATA / "torchvision" / "models.json").read_text())


def reference_state_dict(name: str) -> dict[str, list[int]]:
    """Every state_dict key of the torchvision model with its shape (shared/reference/torchvision)."""
    return json.loads((DATA / "torchvision" / f"{name}.state_dict.json").read_text())


def params_of(graph: netdsl.Graph) -> int:
    """The parameter count from the IR (no weights allocated)."""
    return sum(n.param_count() for n in graph)


def macs_of(graph: netdsl.Graph) -> int:
    """Multiply-accumulates per sample from the IR."""
    return sum(n.macs() for n in graph)


# The test files with the longest summed test time (fresh clone, 2 workers, --durations), slowest first. `make test`
# hands out whole files (--dist loadfile) in collection order (--no-loadscope-reorder): these go first, so that the
# longest one starts at once instead of ending the run, and the many short files fill in behind them.
SLOWEST_FILES = (
    "test_onnx_zoo.py",
    "test_readme.py",
    "test_train.py",
    "test_torch_backend.py",
    "test_hardening_train.py",
    "test_zoo_torchvision.py",
    "test_train_distributed.py",
    "test_commands.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slowest files first (SLOWEST_FILES), the rest in their usual order."""
    rank = {name: i for i, name in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its own order


@pytest.fixture(scope="session", autouse=True)
def worker_threads() -> Iterator[None]:
    """Under pytest-xdist, each worker's share of the cores as its torch threads (1 for 2 workers on 2 cores): two
    workers at 2 threads each oversubscribe the cores. Set after collection, so it wins over a module's own setting."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers <= 1:
        yield
        return
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // workers))
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread for a module of big float64 forwards: the 2 CI cores are shared, and depthwise convs run far
    slower on two busy threads (use with pytestmark = pytest.mark.usefixtures("one_thread"))."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def cli(capsys):
    """Run `netdsl ARGS...` in-process; returns (exit status, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse usage errors and --version
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture
def spec_file(tmp_path):
    """Write spec text to a file named NAME and return its path."""

    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


# Runs `netdsl ARGS` and, at exit, writes its peak RSS to the file named by NETDSL_TEST_PEAK_RSS. The peak is VmHWM,
# the high-water mark of this process's own memory since exec: getrusage's ru_maxrss would also count the pages of
# the (large) pytest worker the child was forked from, which Linux carries over into it at exec.
PEAK_RSS_CHILD = """
import atexit, os, sys

def _peak() -> None:
    with open("/proc/self/status") as status, open(os.environ["NETDSL_TEST_PEAK_RSS"], "w") as out:
        out.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))

atexit.register(_peak)
from netdsl.cli.main import main
raise SystemExit(main(sys.argv[1:]))
"""


def peak_rss_mb(report: Path) -> float:
    """The peak RSS (MB) a PEAK_RSS_CHILD wrote to `report`."""
    return int(report.read_text()) / 1024
