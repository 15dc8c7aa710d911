"""A run directory: spec.yaml, resolved.yaml, env.json, metrics.csv/.jsonl, last.pt, best.pt, best.safetensors,
curves.png, results.json, status.json -- every file written atomically."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from netdsl.atomic import WriteFailed, write_in_place, write_json, write_text
from netdsl.errors import Diagnostic, Loc, SpecError


def spec_hash(resolved: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()[:16]


def new_run_dir(out: Path, name: str) -> Path:
    """runs/<name>-<timestamp>, created now; an unwritable place is a one-line error before any training."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        out.mkdir(parents=True, exist_ok=True)
        for i in range(1000):
            path = out / (f"{name}-{stamp}" + (f"-{i}" if i else ""))
            try:
                path.mkdir()
                return path
            except FileExistsError:
                continue
    except OSError as exc:
        raise SpecError([Diagnostic(Loc(str(out), 1, 1), f"cannot create the run directory: {exc.strerror}")]) from None
    raise SpecError([Diagnostic(Loc(str(out), 1, 1), "cannot find a free run directory name")])


def check_writable(path: Path) -> None:
    probe = path / ".write-test"
    try:
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise SpecError([Diagnostic(Loc(str(path), 1, 1), f"run directory is not writable: {exc.strerror}")]) from None


def environment(device: str) -> dict[str, Any]:
    import torch

    from netdsl.version import __version__

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "netdsl": __version__,
        "device": device,
        "cuda": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
        "threads": torch.get_num_threads(),
        "git_commit": commit,
        "argv": sys.argv,
    }


def write_status(run: Path, state: str, reason: str = "", **extra: Any) -> bool:
    """status.json, atomically; on a full disk overwritten in place (it fits the old file's block). False if neither worked."""
    value = {"state": state, "reason": reason, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "pid": os.getpid(), **extra}
    try:
        write_json(run / "status.json", value)
        return True
    except WriteFailed:
        if state == "running":
            raise
    try:
        write_in_place(run / "status.json", (json.dumps(value) + "\n").encode())
        return True
    except OSError:
        return False


@contextlib.contextmanager
def signals_deferred(redeliver: bool = True) -> Iterator[list[str]]:
    """SIGINT and SIGTERM noted (their names, in the yielded list) rather than acted on, so that files are written whole.

    redeliver: afterwards each noted signal goes to the handler that was in place (an enclosing deferral, the trainer's
    stop request, Python's KeyboardInterrupt, the default action); else the caller honours them. Outside the main
    thread signals cannot be caught: nothing changes."""
    caught: list[str] = []
    previous: dict[int, Any] = {}

    def note(signum: int, frame: Any) -> None:
        caught.append(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):
            previous[sig] = signal.signal(sig, note)
    try:
        yield caught
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for name in dict.fromkeys(caught) if redeliver else ():
            number = signal.Signals[name]
            handler = previous.get(number)
            if callable(handler):
                handler(number, None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(number)


RUN_FILES: tuple[str, ...] = ("last.pt", "best.pt", "best.safetensors", "status.json", "metrics.csv", "metrics.jsonl", "results.json", "env.json")
RUN_FILES += ("resolved.yaml", "spec.yaml", "curves.png", "skipped_files.txt")
# write_atomic's temp files of the run's own files (a killed writer's included; not those of an `eval` writing beside them),
# the fixed names older versions used, and check_writable's probe
TEMP_PATTERNS = (*(f".{name}.*.tmp" for name in RUN_FILES), ".best.safetensors.tmp", ".curves.png.tmp", ".write-test")


def remove_temp_files(run: Path) -> list[str]:
    """Delete the temp files a killed or failed writer left in a run directory (call with its lock held); their names."""
    removed = []
    for pattern in TEMP_PATTERNS:
        for path in run.glob(pattern):
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path.name)
    return sorted(removed)


class RunLock:
    """An exclusive lock on a run directory for a whole run: one writer at a time.

    A POSIX record lock on RUN/.lock (fcntl.lockf): the kernel drops it when its holder exits, kill -9 included,
    and forked data-loader workers do not inherit it. The holder writes its PID into the file for the refusal message.
    """

    def __init__(self, run: Path) -> None:
        self.path = run / ".lock"
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        where = Loc(str(self.path.parent), 1, 1)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise SpecError([Diagnostic(where, f"run directory is not writable: {exc.strerror}")]) from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            who = f"PID {holder}" if holder.isdigit() else "another process"
            raise SpecError(
                [Diagnostic(where, f"another netdsl process ({who}) is writing this run directory; wait for it to end, or stop it first")]
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, 0)
            os.close(self.fd)  # closing drops the lock
            self.fd = None


def write_metrics(run: Path, history: list[dict[str, Any]]) -> None:
    """metrics.csv and metrics.jsonl rewritten from the full history (so a resumed run's files stay exact)."""
    write_text(run / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in history))
    columns = list(dict.fromkeys(k for row in history for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    write_text(run / "metrics.csv", buffer.getvalue())


def write_yaml(path: Path, value: Any) -> None:
    write_text(path, yaml.safe_dump(value, sort_keys=False, default_flow_style=None, width=120))
