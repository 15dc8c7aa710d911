"""Callbacks around the training loop: each does one job (progress, a log, a checkpoint, early stopping).

The loop calls them in order; only rank 0 gets the ones that print or write (the run directory is rank 0's).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class RunInfo:
    """What a callback may want to know about the run, fixed at its start."""

    run: Path  # the run directory
    name: str  # the spec's name
    resolved: dict[str, Any]  # the resolved spec (resolved.yaml), train settings under "train"
    epochs: int
    steps_per_epoch: int  # this rank's batches per epoch
    start_epoch: int  # 0, or the epoch a resumed run continues in (0-based)
    start_step: int  # the step a resumed run continues at within start_epoch
    out: Path  # the folder run directories go in (--out)


class Callback:
    """Hooks the loop calls; every method is optional."""

    def on_start(self, info: RunInfo) -> None:
        """Before the first step (after a resume's restore)."""

    def on_step(self, epoch: int, step: int, samples: int, metrics: dict[str, float], lr: float) -> None:
        """After each batch: 0-based epoch, 1-based step within it, samples this rank has trained on in this epoch
        since the epoch (or the resume) started, the epoch's running train metrics, the learning rate."""

    def on_epoch(self, row: dict[str, Any], history: list[dict[str, Any]]) -> None:
        """After an epoch's validation: its row (epoch, lr, train_*, val_*, time, samples_per_s, rss_mb), the history so far."""

    def on_end(self, state: str, results: dict[str, Any], history: list[dict[str, Any]]) -> None:
        """When the run ends: state finished / interrupted / failed; test results (empty unless finished)."""
