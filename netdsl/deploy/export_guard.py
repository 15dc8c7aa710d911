"""Faults during an export: signals become interrupts (never a reason to fall back), failed writes one located line,
and the temporary folder beside the target is removed, by this export or, after a kill -9, by the next one; and the
largest batch of inputs that export or bench will allocate."""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from netdsl.errors import input_error

PARTIAL = "partial"  # the temporary folder: .TARGET.PID.XXXXXXXX.partial (tempfile.mkdtemp's 8 random characters)


class _Signals:
    """SIGINT and SIGTERM during an export, remembered: torch.onnx's capture strategies catch what fails in them, and
    Python drops an exception raised in a __del__ or weakref callback (a later step may then fail on what it left
    half done), so a Ctrl-C can come back as an ordinary exception (a TorchExportError), or not at all."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.deferred = False

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum
        if not self.deferred:
            raise self.exception()

    def exception(self) -> BaseException:
        """KeyboardInterrupt for Ctrl-C (the CLI: exit 130), SystemExit(143) for SIGTERM."""
        return KeyboardInterrupt() if self.received == signal.SIGINT else SystemExit(128 + (self.received or signal.SIGTERM))


_SIGNALS = _Signals()


@contextlib.contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """While exporting: Ctrl-C and SIGTERM raise (and are remembered), so `finally` removes the temporary folder; a
    file-size limit makes a write fail with EFBIG instead of killing the process. Main thread only; handlers that
    someone else installed (or an ignored SIGINT) are left as they are."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) == _SIGNALS.handle:
        yield  # not ours to change, or an export inside an export
        return
    ours: dict[int, Any] = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    if hasattr(signal, "SIGXFSZ"):  # POSIX
        ours[signal.SIGXFSZ] = signal.SIG_DFL
    previous = {signum: signal.getsignal(signum) for signum in ours}
    for signum, default in ours.items():
        if previous[signum] is default:
            signal.signal(signum, _SIGNALS.handle if signum in (signal.SIGINT, signal.SIGTERM) else signal.SIG_IGN)
    _SIGNALS.received, _SIGNALS.deferred = None, False
    report_unraisable = sys.unraisablehook

    def unraisable(info: Any) -> None:  # a Ctrl-C inside a __del__ or weakref callback: remembered, not printed
        if not issubclass(info.exc_type, (KeyboardInterrupt, SystemExit)):
            report_unraisable(info)

    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        sys.unraisablehook = report_unraisable
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _SIGNALS.received = None


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold a signal until the block is done (the data file and the .onnx that names it are moved as one); one that
    came earlier and was swallowed on the way (no exception reached us) stops the export before the block."""
    if _SIGNALS.received is not None:
        raise _SIGNALS.exception()
    _SIGNALS.deferred = True
    try:
        yield
    finally:
        _SIGNALS.deferred = False
    if _SIGNALS.received is not None:
        raise _SIGNALS.exception()


def raise_if_interrupted(exc: BaseException) -> None:
    """Raise the interrupt behind `exc`: a signal seen while exporting, or a KeyboardInterrupt in its chain."""
    if _SIGNALS.received is not None:
        raise _SIGNALS.exception() from None
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            raise KeyboardInterrupt() from None
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__


def workdir(target: Path) -> Path:
    """A temporary folder beside the output (same file system, so the final rename is atomic)."""
    parent = target.parent
    if target.is_dir():
        raise input_error(str(target), "is a folder; give a file name such as model.onnx")
    if not parent.exists():
        raise input_error(str(target), f"cannot write: folder '{parent}' does not exist")
    if not parent.is_dir():
        raise input_error(str(target), f"cannot write: '{parent}' is not a folder")
    remove_stale_partials(target)
    try:
        return Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=f".{PARTIAL}", dir=parent))
    except OSError as exc:
        raise input_error(str(target), f"cannot write in '{parent}': {exc.strerror}") from None


def remove_stale_partials(target: Path) -> list[Path]:
    """Remove the temporary folders that exports of `target` killed with SIGKILL left behind, and return them.

    Only folders named as `workdir` names them, for this target, whose process is gone: a live export's is kept.
    """
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(\d+)\.[A-Za-z0-9_]{{8}}\.{PARTIAL}")
    removed: list[Path] = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed  # _workdir reports an unusable folder
    for entry in entries:
        found = pattern.fullmatch(entry.name)
        if found and entry.is_dir(follow_symlinks=False) and not _alive(int(found[1])):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another export in this process (a thread) still works in it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process: not ours to judge
    return True


@contextlib.contextmanager
def writing(target: Path) -> Iterator[None]:
    """A failed write (disk full, a file-size limit, a quota) as one located line; the target is not touched."""
    try:
        yield
    except OSError as exc:
        raise input_error(str(target), f"cannot write {target}: {exc.strerror or exc}; nothing written") from None


MAX_BATCH_BYTES = 4 << 30  # one float32 batch of inputs that export or bench allocates


def check_batch_bytes(batch: int, shape: tuple[int, ...] | list[int]) -> None:
    """Refuse a batch whose float32 inputs alone pass MAX_BATCH_BYTES, before anything is allocated."""
    size = batch * math.prod(shape) * 4
    if size > MAX_BATCH_BYTES:
        raise input_error(
            "--batch", f"--batch {batch}: one batch of {'x'.join(map(str, shape))} float32 inputs takes {_size(size)}; at most {_size(MAX_BATCH_BYTES)}"
        )


def _size(n: int) -> str:
    from netdsl.analysis.summary import human_bytes

    return human_bytes(n)
