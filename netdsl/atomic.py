"""Files written whole or not at all (temp file, fsync, rename; modes as open() gives them, under the umask), and the
one-line error when a write fails. Every file netdsl writes (run folders, ONNX metadata, schemas, fmt, pictures) goes here."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from netdsl.errors import Diagnostic, Loc, SpecError


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
