"""Learning curves (train vs val loss and accuracy: the over/underfitting diagnosis) and confusion matrices, as PNG."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from netdsl.train.checkpoint import write_atomic


def _figure(**options: Any) -> Any:
    """A Matplotlib figure drawn by the Agg canvas, without pyplot (no GUI backend search, no global figure state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**options)
    FigureCanvasAgg(fig)
    return fig


def _figure_bytes(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def plot_curves(history: list[dict[str, Any]], path: Path, title: str, best_epoch: int | None = None) -> None:
    """Train and val curves per metric, side by side; best_epoch (best.pt's) is a dashed line in every panel."""
    metrics = [m for m in ("loss", "accuracy", "mae", "mse") if any(f"train_{m}" in row for row in history)]
    fig = _figure(figsize=(5 * len(metrics), 3.6))
    axes = fig.subplots(1, len(metrics), squeeze=False)
    epochs = [row["epoch"] for row in history]
    for ax, metric in zip(axes[0], metrics):
        for split, style in (("train", "-o"), ("val", "-s")):
            values = [row.get(f"{split}_{metric}") for row in history]
            if any(v is not None for v in values):
                ax.plot(epochs, values, style, markersize=3, label=split)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="0.4", linestyle="--", linewidth=1, label=f"best: epoch {best_epoch}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    write_atomic(path, _figure_bytes(fig))


def plot_confusion(matrix: list[list[int]], classes: list[str], path: Path, title: str) -> None:
    n = len(classes)
    fig = _figure(figsize=(1.0 + 0.45 * n, 0.8 + 0.45 * n))
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=90)
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    peak = max(max(row) for row in matrix) or 1
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(matrix[i][j]), ha="center", va="center", fontsize=7, color="white" if matrix[i][j] > peak / 2 else "black")
    ax.set_title(title)
    write_atomic(path, _figure_bytes(fig))
