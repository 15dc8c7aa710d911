"""segmentation: a class per pixel; the network outputs one logit map per class at the input's size."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from netdsl.tasks.base import LossFn, Meter, Shape, Task, register
from netdsl.tasks.classification import class_name
from netdsl.tasks.targets import Targets

if TYPE_CHECKING:
    import numpy as np
    import torch


@register
class Segmentation(Task):
    name = "segmentation"
    doc = "a class per pixel (N x H x W masks); the output is C x H x W logits, C = classes, at the input's H x W"
    options: ClassVar[dict[str, Any]] = {
        "ignore_index": {
            "anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}],
            "default": 255,
            "description": "mask value of pixels that count for nothing (unlabelled, borders); null: every value is a class",
        }
    }
    losses = ("cross_entropy", "dice", "ce_dice")
    metrics = ("miou", "pixel_accuracy", "dice")
    default_metrics = ("miou", "pixel_accuracy")
    higher_is_better = frozenset(metrics)

    @classmethod
    def suits(cls, output: Shape, input_shape: Shape) -> bool:
        return len(output) == len(input_shape) >= 2 and output[1:] == input_shape[1:] and output[0] != input_shape[0]

    @property
    def ignore_index(self) -> int | None:
        value = self.settings.get("ignore_index", 255)
        return None if value is None else int(value)

    @property
    def num_classes(self) -> int:
        return self.output_shape[0]

    def targets(self) -> Targets:
        return Targets("mask", self.output_shape[1:], self.num_classes, self.ignore_index, self.last_layer())

    def check(self, classes: list[str]) -> None:
        out, size = self.output_shape, self.graph.input_shape[1:]
        if len(out) < 2:
            raise self.output_error(
                f"segmentation needs a class map per pixel (C x H x W), but the network outputs {'x'.join(map(str, out))}; "
                "end with a 1x1 conv to the classes and upsample to the input (upsample: {to: input}), or choose another train.task"
            )
        if out[1:] != size:
            want = "x".join(map(str, size))
            raise self.output_error(
                f"the network outputs {'x'.join(map(str, out))} but the masks are {want} (the input's size); "
                f"upsample to the input's size before the end (e.g. upsample: {{to: input, mode: bilinear}})"
            )
        if named(classes) and len(classes) != out[0]:
            raise self.output_error(
                f"the network outputs {out[0]} class maps but the data has {len(classes)} classes ({', '.join(classes[:6])}"
                f"{', ...' if len(classes) > 6 else ''}); make the last conv output {len(classes)}"
            )

    def check_batch(self, y: torch.Tensor, where: str) -> None:
        from netdsl.tasks.targets import fail

        bad = (y >= self.num_classes) | (y < 0)
        if self.ignore_index is not None:
            bad &= y != self.ignore_index
        if bool(bad.any()):
            value = int(y[bad][0])
            ignore = f" other than ignore_index {self.ignore_index}" if self.ignore_index is not None else ""
            raise fail(where, f"a mask holds the value {value}, but the network has {self.num_classes} classes (0 .. {self.num_classes - 1}){ignore}")

    def loss_fn(self, cfg: dict[str, Any], device: torch.device) -> LossFn:
        import torch
        from torch import nn

        weight = torch.tensor(cfg["class_weights"], dtype=torch.float32, device=device) if cfg.get("class_weights") else None
        ignore = -100 if self.ignore_index is None else self.ignore_index
        ce = nn.CrossEntropyLoss(weight=weight, ignore_index=ignore, label_smoothing=cfg["label_smoothing"])
        if cfg["name"] == "cross_entropy":
            return ce

        def dice(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return soft_dice_loss(out, y, self.ignore_index)

        if cfg["name"] == "dice":
            return dice
        return lambda out, y: ce(out, y) + dice(out, y)

    def meter(self, metrics: list[str]) -> Meter:
        return ConfusionMeter(metrics, self.num_classes, self.ignore_index)

    def present(self, output: np.ndarray, classes: list[str], top: int = 3) -> list[dict[str, Any]]:
        import numpy as np

        results = []
        for o in np.asarray(output):
            mask = o.argmax(0)
            counts = np.bincount(mask.ravel(), minlength=o.shape[0])
            fractions = {class_name(classes, i): round(float(c) / mask.size, 6) for i, c in enumerate(counts) if c}
            results.append({"pixels": dict(sorted(fractions.items(), key=lambda kv: -kv[1]))})
        return results

    def line(self, result: dict[str, Any]) -> str:
        return ", ".join(f"{k} {v:.1%}" for k, v in result["pixels"].items())

    def picture(self, output: np.ndarray) -> np.ndarray:
        """One sample's output as a mask of class indices (uint8 H x W)."""
        import numpy as np

        return np.asarray(output).argmax(0).astype(np.uint8)


def soft_dice_loss(out: torch.Tensor, y: torch.Tensor, ignore_index: int | None, eps: float = 1.0) -> torch.Tensor:
    """1 - mean over classes of the soft Dice coefficient (softmax probabilities against one-hot masks), ignored pixels left out."""
    import torch

    probs = out.float().softmax(1)
    valid = torch.ones_like(y, dtype=torch.bool) if ignore_index is None else y != ignore_index
    labels = torch.where(valid, y, torch.zeros_like(y))
    one_hot = torch.nn.functional.one_hot(labels, out.shape[1]).movedim(-1, 1).to(probs.dtype)
    keep = valid.unsqueeze(1).to(probs.dtype)
    dims = (0, *range(2, out.dim()))
    inter = (probs * one_hot * keep).sum(dims)
    total = (probs * keep).sum(dims) + (one_hot * keep).sum(dims)
    return 1.0 - ((2 * inter + eps) / (total + eps)).mean()


class ConfusionMeter(Meter):
    """A confusion matrix summed over batches (and processes): mIoU, pixel accuracy and Dice are read from it."""

    def __init__(self, metrics: list[str], classes: int, ignore_index: int | None) -> None:
        self.classes, self.ignore_index = classes, ignore_index
        super().__init__(metrics, [f"cm.{t}.{p}" for t in range(classes) for p in range(classes)])

    def measure(self, out: torch.Tensor, target: torch.Tensor, x: torch.Tensor | None) -> dict[str, float]:
        import torch

        pred = out.max(1).indices.reshape(-1)  # argmax(1) is ~10x slower on CPU for a class axis with a spatial stride
        truth = target.reshape(-1)
        keep = (truth >= 0) & (truth < self.classes)
        c = self.classes
        counts = torch.bincount(truth[keep] * c + pred[keep], minlength=c * c).tolist()
        return {f"cm.{i // c}.{i % c}": float(v) for i, v in enumerate(counts) if v}

    def matrix(self) -> np.ndarray:
        import numpy as np

        c = self.classes
        return np.array([[self.sums[f"cm.{t}.{p}"] for p in range(c)] for t in range(c)], dtype=np.float64)

    def per_class(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """IoU and Dice per class (NaN where a class is neither in the targets nor predicted), and its target pixels."""
        import numpy as np

        m = self.matrix()
        tp = np.diag(m)
        fp, fn = m.sum(0) - tp, m.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = tp / (tp + fp + fn)
            dice = 2 * tp / (2 * tp + fp + fn)
        return iou, dice, m.sum(1)

    def result(self) -> dict[str, float]:
        import numpy as np

        count = max(self.sums["count"], 1.0)
        m = self.matrix()
        iou, dice, _ = self.per_class()
        values = {
            "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0,
            "pixel_accuracy": float(np.trace(m) / max(m.sum(), 1.0)),
            "dice": float(np.nanmean(dice)) if np.isfinite(dice).any() else 0.0,
        }
        return {"loss": self.sums["loss"] / count} | {k: values[k] for k in self.metrics}

    def details(self, classes: list[str]) -> dict[str, Any]:
        import numpy as np

        iou, dice, pixels = self.per_class()
        return {
            "per_class": [
                {
                    "class": class_name(classes, i),
                    "iou": None if np.isnan(iou[i]) else round(float(iou[i]), 6),
                    "dice": None if np.isnan(dice[i]) else round(float(dice[i]), 6),
                    "pixels": int(pixels[i]),
                }
                for i in range(self.classes)
            ]
        }


def named(classes: list[str]) -> bool:
    """Whether a source named its classes (shapes, folders, train.data.classes) rather than counting mask values 0..N-1."""
    return bool(classes) and any(not c.isdigit() for c in classes)
