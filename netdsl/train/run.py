"""A run directory: spec.yaml, resolved.yaml, env.json, metrics.csv/.jsonl, last.pt, best.pt, best.safetensors,
curves.png, results.json, status.json -- every file written atomically."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from netdsl.errors import Diagnostic, Loc, SpecError
from netdsl.train.checkpoint import write_json, write_text


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

    from netdsl import __version__

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


def write_status(run: Path, state: str, reason: str = "", **extra: Any) -> None:
    write_json(run / "status.json", {"state": state, "reason": reason, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "pid": os.getpid(), **extra})


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
