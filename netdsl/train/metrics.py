"""Losses and metrics for classification and regression, summed over batches and reduced at epoch end."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def build_loss(cfg: dict[str, Any], device: torch.device) -> nn.Module:
    name = cfg["name"]
    if name == "cross_entropy":
        weight = torch.tensor(cfg["class_weights"], dtype=torch.float32, device=device) if cfg.get("class_weights") else None
        return nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg["label_smoothing"])
    return nn.MSELoss() if name == "mse" else nn.BCEWithLogitsLoss()


def is_classification(cfg: dict[str, Any]) -> bool:
    return bool(cfg["name"] == "cross_entropy")


def targets_for(loss_cfg: dict[str, Any], y: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Class indices for cross-entropy; one-hot floats for bce/mse against class-index data."""
    if is_classification(loss_cfg):
        return y
    if y.dim() == 1 and out.dim() == 2 and y.dtype == torch.int64:
        return torch.nn.functional.one_hot(y, out.shape[1]).to(out.dtype)
    return y.to(out.dtype).reshape(out.shape)


class Tally:
    """Running sums for one pass over a split; `result()` gives {loss, accuracy, topK, mse, mae}."""

    def __init__(self, metrics: list[str]) -> None:
        self.metrics = metrics
        # every key from the start: a process that saw no batch still sends the same values to the all-reduce
        self.sums: dict[str, float] = {"loss": 0.0, "count": 0.0} | dict.fromkeys(metrics, 0.0)

    def add(self, loss: torch.Tensor, out: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> None:
        n = float(len(y))
        self.sums["loss"] += float(loss) * n
        self.sums["count"] += n
        for name in self.metrics:
            if name == "accuracy" or name.startswith("top"):
                k = 1 if name == "accuracy" else int(name[3:])
                if k == 1:
                    value = float((out.argmax(1) == y).sum())
                else:
                    top = out.topk(min(k, out.shape[1]), dim=1).indices
                    value = float((top == y[:, None]).any(1).sum())
            elif name == "mse":
                value = float(((out.float() - target.float()) ** 2).mean(tuple(range(1, out.dim()))).sum())
            else:
                value = float((out.float() - target.float()).abs().mean(tuple(range(1, out.dim()))).sum())
            self.sums[name] = self.sums.get(name, 0.0) + value

    def merge(self, other: dict[str, float]) -> None:
        for k, v in other.items():
            self.sums[k] = self.sums.get(k, 0.0) + v

    def result(self) -> dict[str, float]:
        count = max(self.sums["count"], 1.0)
        return {k: v / count for k, v in self.sums.items() if k != "count"}
