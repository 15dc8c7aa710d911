"""The spec and weights a run folder stands for on the command line (`netdsl eval runs/x`, `netdsl export runs/x`)."""

from __future__ import annotations

import os
from pathlib import Path

from netdsl.errors import input_error


def run_file(run: Path, name: str) -> Path:
    """A file of a training run folder; a folder without it is one line saying it is not a run."""
    path = run / name
    if not path.is_file():
        raise input_error(str(run), f"not a training run folder: it has no {name}")
    return path


def run_sources(spec: str | os.PathLike[str], weights: str | os.PathLike[str] | None) -> tuple[Path, Path | None, Path | None]:
    """(spec file, weights file, run folder) that `SPEC [--weights W]` means on the command line (export, eval, predict).

    A training run folder (resolved.yaml + best.pt) may stand for the spec, the weights, or both; a weights file
    inside a run folder names that run too. Weights stay None when neither names any (export may go without).
    """
    spec_path = Path(spec)
    run = spec_path if spec_path.is_dir() else None
    if run is not None:
        spec_path = run_file(run, "resolved.yaml")
    weights_path = Path(weights) if weights is not None else None
    if weights_path is not None and weights_path.is_dir():
        run = weights_path
        weights_path = run_file(run, "best.pt")
    elif weights_path is None and run is not None:
        weights_path = run_file(run, "best.pt")
    elif weights_path is not None and (weights_path.parent / "resolved.yaml").is_file():
        run = weights_path.parent  # best.pt / last.pt inside a run folder
    return spec_path, weights_path, run


def trained_sources(spec: str | os.PathLike[str], weights: str | os.PathLike[str] | None) -> tuple[Path, Path]:
    """run_sources for commands that need weights (eval, predict): a spec without --weights is one line saying what to give."""
    spec_path, weights_path, _ = run_sources(spec, weights)
    if weights_path is None:
        raise input_error(
            "--weights",
            f"{spec} is a spec without weights: give --weights (best.pt, last.pt, .safetensors or a run folder), or a run folder instead of the spec",
        )
    return spec_path, weights_path
