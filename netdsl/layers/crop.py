"""Cropping and padding to the size of another layer: the skip connections of U-Net at odd sizes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from netdsl.errors import ShapeError
from netdsl.layers.base import Layer, Shape, arg, expect_rank, fmt_shape, ref_kind
from netdsl.layers.registry import register

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class _ToSize(Layer):
    to: Any = arg(ref_kind(), doc="the layer (or input) whose spatial size the output takes")

    primary: ClassVar[str | None] = "to"
    grow: ClassVar[bool] = False  # pad grows the input, crop shrinks it

    def infer(self, inputs: tuple[Shape, ...]) -> Shape:
        x, target = inputs
        expect_rank(x, (2, 3), self.type_name)
        if len(target) != len(x):
            raise ShapeError(f"'to' names {{to}} of shape {fmt_shape(target)}; it needs {len(x) - 1} spatial dims as the input ({fmt_shape(x)})")
        if any((t < n) if self.grow else (t > n) for n, t in zip(x[1:], target[1:])):
            verb, than = ("pad", "smaller") if self.grow else ("crop", "larger")
            raise ShapeError(f"cannot {verb} {fmt_shape(x[1:])} to {fmt_shape(target[1:])}, the size of {{to}}: it is {than} (input {fmt_shape(x)})")
        return (x[0], *target[1:])


@register("crop")
@dataclass(frozen=True)
class Crop(_ToSize):
    """Center crop of H x W (or L) to the size of another layer, rounding as torchvision's CenterCrop does.

    The offset per dim is round((N - target) / 2) with Python's rounding, as torchvision.transforms.functional.center_crop.
    """

    examples = ({"to": "input"}, {"to": "small"})
    example_before = ("conv: {name: small, out: 2, k: 4}", "conv: {out: 3, k: 1, from: input}")  # crop 16x16 to 13x13

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from netdsl.backends.torch_modules import CropTo

        return CropTo()


@register("pad")
@dataclass(frozen=True)
class Pad(_ToSize):
    """Zero padding of H x W (or L) to the size of another layer: diff // 2 before, the rest after (the U-Net reference's F.pad)."""

    grow: ClassVar[bool] = True
    examples = ({"to": "input"}, {"to": "0"})
    example_before = ("conv: {out: 2, k: 4}", "conv: {out: 3, k: 4, s: 2}")  # pad 5x5 to 16x16 and to 13x13

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from netdsl.backends.torch_modules import PadTo

        return PadTo()
