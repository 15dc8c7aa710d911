"""Learning curves (train vs val loss and accuracy: the over/underfitting diagnosis) and confusion matrices, as PNG."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from netdsl.atomic import write_atomic


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
    metrics = list(dict.fromkeys(k[6:] for row in history for k in row if k.startswith("train_")))
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


def _shown(x: Any, kind: str) -> Any:
    """An array as matplotlib draws it: masks in the VOC palette, images H x W (x 3) in [0, 1], C x L signals as rows."""
    import numpy as np

    from netdsl.runtime.pictures import palette

    a = np.asarray(x)
    if kind == "mask":
        return palette()[np.clip(a, 0, 255).astype(np.uint8)]
    a = np.clip(a.astype(np.float32), 0, 1)
    if a.ndim == 2:
        return a
    return a.transpose(1, 2, 0) if a.shape[0] == 3 else a[0]


def plot_examples(examples: list[tuple[Any, Any, Any]], task: str, path: Path, title: str, classes: list[str]) -> None:
    """One row per test sample: segmentation image | target mask | predicted mask; reconstruction input | output | target."""
    import numpy as np

    from netdsl.runtime.pictures import palette

    heads = ("image", "target", "prediction") if task == "segmentation" else ("input", "output", "target")
    fig = _figure(figsize=(7.5, 2.4 * len(examples) + 0.6))
    axes = fig.subplots(len(examples), 3, squeeze=False)
    for row, (seen, target, predicted) in zip(axes, examples):
        panels: list[tuple[Any, str | None]]
        if task == "segmentation":
            panels = [(_shown(seen, "image"), None), (_shown(target, "mask"), None), (_shown(predicted, "mask"), None)]
        else:
            panels = [(_shown(seen, "image"), "gray"), (_shown(predicted, "image"), "gray"), (_shown(target, "image"), "gray")]
        for ax, (image, cmap) in zip(row, panels):
            ax.imshow(image, cmap=cmap if np.ndim(image) == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
    for ax, head in zip(axes[0], heads):
        ax.set_title(head)
    if task == "segmentation" and classes:
        colours = palette(len(classes)) / 255.0
        handles = [_patch(colours[i], name) for i, name in enumerate(classes)]
        fig.legend(handles=handles, loc="lower center", ncol=min(6, len(classes)), frameon=False)
    fig.suptitle(title)
    write_atomic(path, _figure_bytes(fig))


def _patch(colour: Any, label: str) -> Any:
    from matplotlib.patches import Patch

    return Patch(color=colour, label=label)
