"""multilabel: any number of classes per sample (N x classes, 0 or 1); the output is one logit per class."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from netdsl.tasks.base import LossFn, Meter, Task, register
from netdsl.tasks.classification import class_name
from netdsl.tasks.targets import Targets

if TYPE_CHECKING:
    import numpy as np
    import torch


@register
class Multilabel(Task):
    name = "multilabel"
    doc = "any number of classes per sample (N x classes of 0/1); the output is one logit per class, a class is on at p >= threshold"
    options: ClassVar[dict[str, Any]] = {
        "threshold": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "default": 0.5, "description": "probability that turns a class on"}
    }
    losses = ("bce_with_logits",)
    metrics = ("f1", "precision", "recall", "exact_match")
    default_metrics = ("f1",)
    higher_is_better = frozenset(metrics)

    @property
    def threshold(self) -> float:
        return float(self.settings.get("threshold", 0.5))

    def targets(self) -> Targets:
        return Targets("multihot", self.output_shape, self.output_shape[0] if self.output_shape else None, output_at=self.last_layer())

    def check(self, classes: list[str]) -> None:
        out = self.output_shape
        if len(out) != 1:
            raise self.output_error(f"multilabel needs one logit per class (a flat output), but the network outputs {'x'.join(map(str, out))}")
        if classes and len(classes) != out[0]:
            raise self.output_error(f"the network outputs {out[0]} logits but the data has {len(classes)} classes; make the last layer output {len(classes)}")

    def target(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return y.float()

    def loss_fn(self, cfg: dict[str, Any], device: torch.device) -> LossFn:
        import torch
        from torch import nn

        weight = torch.tensor(cfg["class_weights"], dtype=torch.float32, device=device) if cfg.get("class_weights") else None
        return nn.BCEWithLogitsLoss(pos_weight=weight)

    def meter(self, metrics: list[str]) -> Meter:
        return LabelMeter(metrics, self.threshold)

    def present(self, output: np.ndarray, classes: list[str], top: int = 3) -> list[dict[str, Any]]:
        import numpy as np

        probs = 1.0 / (1.0 + np.exp(-np.asarray(output, dtype=np.float64)))
        return [
            {
                "on": [class_name(classes, int(i)) for i in np.flatnonzero(p >= self.threshold)],
                "p": {class_name(classes, i): round(float(v), 4) for i, v in enumerate(p)},
            }
            for p in probs
        ]

    def line(self, result: dict[str, Any]) -> str:
        return ", ".join(f"{c} ({result['p'][c]:.1%})" for c in result["on"]) or "(no class)"


class LabelMeter(Meter):
    """Micro-averaged precision, recall and F1 from true/false positive counts; exact_match: every class right."""

    def __init__(self, metrics: list[str], threshold: float) -> None:
        self.threshold = threshold
        super().__init__(metrics, ["tp", "fp", "fn", "exact"])

    def measure(self, out: torch.Tensor, target: torch.Tensor, x: torch.Tensor | None) -> dict[str, float]:
        pred = out.float().sigmoid() >= self.threshold
        truth = target >= 0.5
        return {
            "tp": float((pred & truth).sum()),
            "fp": float((pred & ~truth).sum()),
            "fn": float((~pred & truth).sum()),
            "exact": float((pred == truth).all(1).sum()),
        }

    def result(self) -> dict[str, float]:
        count = max(self.sums["count"], 1.0)
        tp, fp, fn = self.sums["tp"], self.sums["fp"], self.sums["fn"]
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        values = {
            "precision": precision,
            "recall": recall,
            "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            "exact_match": self.sums["exact"] / count,
        }
        return {"loss": self.sums["loss"] / count} | {m: values[m] for m in self.metrics}
