"""Shared helpers: run the CLI in-process and capture what a user would see."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netdsl.cli import main

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
DATA = Path(__file__).resolve().parent / "data"


def reference_models() -> dict[str, dict]:
    """torchvision's published figures (shared/reference/torchvision/models.json, torchvision 0.29.1)."""
    return json.loads((DATA / "torchvision" / "models.json").read_text())


def reference_state_dict(name: str) -> dict[str, list[int]]:
    """Every state_dict key of the torchvision model with its shape (shared/reference/torchvision)."""
    return json.loads((DATA / "torchvision" / f"{name}.state_dict.json").read_text())


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
