"""Run-directory files written whole or not at all (temp file, fsync, rename; modes as open() gives them, under the
umask), the one-line error when a write fails, and the spec and weights a run folder stands for on the command line.

Torch-free: the CLI's front end imports it through netdsl.train.api.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from netdsl.errors import Diagnostic, Loc, SpecError, input_error


class WriteFailed(SpecError):
    """A file could not be written (disk full, file-size limit, read-only folder): one line naming it and the reason."""

    def __init__(self, path: Path, reason: str, hint: str = "") -> None:
        self.path, self.reason = path, reason
        super().__init__([Diagnostic(Loc(str(path.parent), 1, 1), f"cannot write {path.name}: {reason}" + (f" ({hint})" if hint else ""))])


def temp_name(path: Path) -> Path:
    """The hidden temp file beside `path` that a write goes through; unique per process (two writers never share one)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_atomic(path: Path, data: bytes) -> None:
    """Write bytes so that readers see the old file or the new one, never half of either; a failure removes the temp file."""
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise WriteFailed(path, exc.strerror or str(exc)) from None
    except BaseException:  # an interrupt mid-write: no junk left behind
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_in_place(path: Path, data: bytes) -> None:
    """Overwrite a small existing file without allocating (a full disk still takes a status that fits the old one's block)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.ftruncate(fd, len(data))
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text(path: Path, text: str) -> None:
    write_atomic(path, text.encode())


def write_json(path: Path, value: Any) -> None:
    write_text(path, json.dumps(value, indent=2) + "\n")


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
