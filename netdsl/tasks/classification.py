"""classification: one class per sample; the network outputs one score (logit) per class."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from netdsl.tasks.base import LossFn, Meter, Shape, Task, register

if TYPE_CHECKING:
    import numpy as np
    import torch


def softmax(scores: np.ndarray) -> np.ndarray:
    import numpy as np

    z = scores - scores.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def class_name(classes: list[str], i: int) -> str:
    return classes[i] if 0 <= i < len(classes) else str(i)


@register
class Classification(Task):
    name = "classification"
    doc = "one class per sample (N class indices); the output is one logit per class"
    losses = ("cross_entropy", "mse", "bce_with_logits")
    metrics = ("accuracy", "mse", "mae")  # and topK
    default_metrics = ("accuracy",)
    higher_is_better = frozenset({"accuracy"})

    @classmethod
    def suits(cls, output: Shape, input_shape: Shape) -> bool:
        return len(output) == 1

    @classmethod
    def knows(cls, metric: str) -> bool:
        return metric in cls.metrics or (metric.startswith("top") and metric[3:].isdigit() and int(metric[3:]) >= 1)

    def check(self, classes: list[str]) -> None:
        if self.loss == "mse":
            return  # regression on one-hot codes: any width that holds the labels
        out = self.output_shape
        n = len(classes)
        if len(out) != 1 or out[0] != n:
            raise self.output_error(
                f"the network outputs {'x'.join(map(str, out))} but the data has {n} classes; "
                f"make the last layer output {n} (its out option, or the spec parameter behind it: --set NAME={n}), "
                "or start from other weights with train.transfer (replace_head)"
            )

    def target(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return y

    def loss_fn(self, cfg: dict[str, Any], device: torch.device) -> LossFn:
        import torch
        from torch import nn

        name = cfg["name"]
        if name == "cross_entropy":
            weight = torch.tensor(cfg["class_weights"], dtype=torch.float32, device=device) if cfg.get("class_weights") else None
            return nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg["label_smoothing"])
        inner: Any = nn.MSELoss() if name == "mse" else nn.BCEWithLogitsLoss()

        def one_hot(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return inner(out, torch.nn.functional.one_hot(y, out.shape[1]).to(out.dtype))

        return one_hot

    def meter(self, metrics: list[str]) -> Meter:
        return ClassMeter(metrics)

    def present(self, output: np.ndarray, classes: list[str], top: int = 3) -> list[dict[str, Any]]:
        import numpy as np

        scores = np.asarray(output, dtype=np.float64).reshape(len(output), -1)
        given = scores.size and bool((scores >= 0).all()) and bool(np.allclose(scores.sum(1), 1.0, atol=1e-4))
        probs = scores if given else softmax(scores)  # a network that ends in softmax gives probabilities already
        k = min(top, probs.shape[1])
        out = []
        for p in probs:
            best = np.argsort(-p, kind="stable")[:k]
            out.append({"top": [{"class": class_name(classes, int(i)), "index": int(i), "p": round(float(p[i]), 6)} for i in best]})
        return out

    def line(self, result: dict[str, Any]) -> str:
        return ", ".join(f"{t['class']} ({t['p']:.1%})" for t in result["top"])


class ClassMeter(Meter):
    topk: ClassVar[str] = "top"

    def __init__(self, metrics: list[str]) -> None:
        super().__init__(metrics, list(metrics))

    def measure(self, out: torch.Tensor, target: torch.Tensor, x: torch.Tensor | None) -> dict[str, float]:
        import torch

        values: dict[str, float] = {}
        for name in self.metrics:
            if name == "accuracy" or name.startswith("top"):
                k = 1 if name == "accuracy" else int(name[3:])
                if k == 1:
                    values[name] = float((out.argmax(1) == target).sum())
                else:
                    top = out.topk(min(k, out.shape[1]), dim=1).indices
                    values[name] = float((top == target[:, None]).any(1).sum())
            else:
                code = torch.nn.functional.one_hot(target, out.shape[1]).to(out.dtype)
                err = out.float() - code.float()
                values[name] = float((err**2 if name == "mse" else err.abs()).mean(1).sum())
        return values
