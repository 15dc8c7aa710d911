"""regression: float targets of any shape (one value, a vector, a map); the output has the target's shape."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from netdsl.tasks.base import LossFn, Meter, Task, register, regression_loss
from netdsl.tasks.targets import Targets

if TYPE_CHECKING:
    import numpy as np
    import torch


@register
class Regression(Task):
    name = "regression"
    doc = "float targets of the output's shape (N x ...): values, vectors or maps"
    losses = ("mse", "l1", "smooth_l1")
    metrics = ("mae", "mse", "rmse")
    default_metrics = ("mae", "rmse")

    def targets(self) -> Targets:
        return Targets("values", self.output_shape, output_at=self.last_layer())

    def target(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return y.float().reshape(len(y), *self.output_shape)

    def loss_fn(self, cfg: dict[str, Any], device: torch.device) -> LossFn:
        return regression_loss(cfg["name"])

    def meter(self, metrics: list[str]) -> Meter:
        return ErrorMeter(metrics)

    def present(self, output: np.ndarray, classes: list[str], top: int = 3) -> list[dict[str, Any]]:
        import numpy as np

        return [{"values": np.asarray(o, dtype=np.float64).round(6).tolist()} for o in output]

    def line(self, result: dict[str, Any]) -> str:
        import numpy as np

        values = np.asarray(result["values"]).ravel()
        shown = ", ".join(f"{v:.4g}" for v in values[:8])
        return shown + (f", ... ({len(values)} values)" if len(values) > 8 else "")


class ErrorMeter(Meter):
    """Mean absolute and squared error per sample (averaged over the sample's values); rmse from the mean squared error."""

    def __init__(self, metrics: list[str]) -> None:
        super().__init__(metrics, ["mae", "mse"])

    def measure(self, out: torch.Tensor, target: torch.Tensor, x: torch.Tensor | None) -> dict[str, float]:
        dims = tuple(range(1, out.dim()))
        err = out.float() - target.float()
        return {"mae": float(err.abs().mean(dims).sum()), "mse": float((err**2).mean(dims).sum())}

    def result(self) -> dict[str, float]:
        count = max(self.sums["count"], 1.0)
        values = {"mae": self.sums["mae"] / count, "mse": self.sums["mse"] / count}
        values["rmse"] = math.sqrt(values["mse"])
        return {"loss": self.sums["loss"] / count} | {m: values[m] for m in self.metrics}
