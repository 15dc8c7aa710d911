"""reconstruction: the target is the input itself (autoencoders); with `noise` the network sees a corrupted copy (denoising)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from netdsl.tasks.base import LossFn, Meter, Shape, Task, psnr, register, regression_loss
from netdsl.tasks.targets import Targets

if TYPE_CHECKING:
    import numpy as np
    import torch

NOISE = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "maxProperties": 1,
    "properties": {
        "gaussian": {"type": "number", "exclusiveMinimum": 0, "maximum": 10, "description": "add N(0, sigma^2) noise, then clip to [0, 1]"},
        "mask": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "description": "set this fraction of the input's values to 0"},
    },
    "description": "corrupt the network's input (denoising autoencoder); the target stays the clean input",
}


@register
class Reconstruction(Task):
    name = "reconstruction"
    doc = "the target is the input (autoencoders; denoising with noise); the output has the input's shape, in its [0, 1] range"
    options: ClassVar[dict[str, Any]] = {"noise": NOISE}
    losses = ("mse", "l1", "smooth_l1")
    metrics = ("psnr", "mae", "mse", "input_psnr")
    default_metrics = ("psnr", "mae")
    higher_is_better = frozenset({"psnr", "input_psnr"})

    @classmethod
    def suits(cls, output: Shape, input_shape: Shape) -> bool:
        return len(output) >= 2 and output == input_shape

    def targets(self) -> Targets:
        return Targets("input", output_at=self.last_layer())

    def check(self, classes: list[str]) -> None:
        out, want = self.output_shape, self.graph.input_shape
        if out != want:
            raise self.output_error(
                f"the network outputs {'x'.join(map(str, out))} but reconstruction compares the output with the input ({'x'.join(map(str, want))}); "
                "make the decoder end at the input's shape"
            )

    def target(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        noise = self.settings.get("noise") or {}
        if "gaussian" in noise:
            return (x + noise["gaussian"] * torch.randn_like(x)).clamp(0, 1)
        if "mask" in noise:
            return x * (torch.rand_like(x) >= noise["mask"]).to(x.dtype)
        return x

    def loss_fn(self, cfg: dict[str, Any], device: torch.device) -> LossFn:
        return regression_loss(cfg["name"])

    def meter(self, metrics: list[str]) -> Meter:
        return ImageMeter(metrics)

    def present(self, output: np.ndarray, classes: list[str], top: int = 3) -> list[dict[str, Any]]:
        return [{"shape": list(o.shape), "mean": round(float(o.mean()), 6), "min": round(float(o.min()), 6), "max": round(float(o.max()), 6)} for o in output]

    def line(self, result: dict[str, Any]) -> str:
        return f"{'x'.join(map(str, result['shape']))} output, mean {result['mean']:.4f}"

    def picture(self, output: np.ndarray) -> np.ndarray:
        """One sample's output as an image in [0, 1] (C x H x W)."""
        import numpy as np

        return np.clip(np.asarray(output, dtype=np.float32), 0.0, 1.0)


class ImageMeter(Meter):
    """Per-sample PSNR (data range 1), mean absolute and squared error; input_psnr: the network's input against the target."""

    def __init__(self, metrics: list[str]) -> None:
        super().__init__(metrics, list(metrics))

    def measure(self, out: torch.Tensor, target: torch.Tensor, x: torch.Tensor | None) -> dict[str, float]:
        dims = tuple(range(1, out.dim()))
        err = out.float() - target.float()
        mse = (err**2).mean(dims)
        values = {}
        for name in self.metrics:
            if name == "psnr":
                values[name] = sum(psnr(float(v)) for v in mse)
            elif name == "input_psnr" and x is not None:
                values[name] = sum(psnr(float(v)) for v in ((x.float() - target.float()) ** 2).mean(dims))
            elif name == "mse":
                values[name] = float(mse.sum())
            elif name == "mae":
                values[name] = float(err.abs().mean(dims).sum())
        return values
