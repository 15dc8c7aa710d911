"""Cropping and padding: to the size of another layer (the skip connections of U-Net at odd sizes), or by given amounts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from netdsl.errors import ShapeError
from netdsl.layers.base import MAX_SIZE, Layer, Saved, Shape, arg, expect_rank, fmt_shape, int_list_kind, ref_kind, spatial, tuple_kind
from netdsl.layers.registry import register

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class _ToSize(Layer):
    to: Any = arg(ref_kind(), doc="the layer (or input) whose spatial size the output takes")

    primary: ClassVar[str | None] = "to"
    grow: ClassVar[bool] = False  # pad grows the input, crop shrinks it

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        return []  # slicing or constant padding: the gradient needs only the sizes

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
        from netdsl.layers.modules.basic import CropTo

        return CropTo()


@register("pad")
@dataclass(frozen=True)
class Pad(_ToSize):
    """Zero padding of H x W (or L) to the size of another layer: diff // 2 before, the rest after (the U-Net reference's F.pad)."""

    grow: ClassVar[bool] = True
    examples = ({"to": "input"}, {"to": "0"})
    example_before = ("conv: {out: 2, k: 4}", "conv: {out: 3, k: 4, s: 2}")  # pad 5x5 to 16x16 and to 13x13

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from netdsl.layers.modules.basic import PadTo

        return PadTo()


@register("zero_pad")
@dataclass(frozen=True)
class ZeroPad(Layer):
    """Zero padding of H x W (or L) by given amounts (Keras' ZeroPadding2D), or as TensorFlow's 'same' for a following window.

    `sizes` gives (before, after) per spatial dim, H first: [top, bottom, left, right] (or one number for every side); a
    negative amount crops, so [-1, 1, -1, 1] shifts the map one cell up and left (Keras' ZeroPadding2D then Cropping2D);
    `same: k` (with `stride`) pads as TensorFlow's 'same' before a k x k 'valid' window: total max((ceil(N/S) - 1) S + k - N, 0),
    the odd cell after -- Keras' correct_pad for stride 2.
    """

    sizes: Any = arg(
        int_list_kind(-MAX_SIZE, MAX_SIZE, 1),
        None,
        doc="cells per side: [top, bottom, left, right] (H, then W), [left, right] for C x L, or [n] for all; a negative number crops",
    )
    same: Any = arg(tuple_kind(1), None, doc="instead of sizes: the window a following 'valid' conv or pool has, padded for as TensorFlow's 'same'")
    stride: Any = arg(tuple_kind(1), 1, doc="that window's stride (with same)", alias=("s",))

    primary: ClassVar[str | None] = "sizes"
    examples = ({"sizes": [1]}, {"sizes": [0, 1, 2, 3]}, {"sizes": [-1, 1, -1, 1]}, {"same": 3, "stride": 2})

    def check_args(self) -> None:
        if (self.sizes is None) == (self.same is None):
            raise ValueError("give either sizes or same")

    def pads(self, x: Shape) -> tuple[tuple[int, int], ...]:
        """(before, after) per spatial dim."""
        n = len(x) - 1
        if self.same is not None:
            k, s = spatial(self.same, n, "same"), spatial(self.stride, n, "stride")
            totals = [max((-(-size // si) - 1) * si + ki - size, 0) for size, ki, si in zip(x[1:], k, s)]
            return tuple((t // 2, t - t // 2) for t in totals)
        if len(self.sizes) == 1:
            return ((self.sizes[0], self.sizes[0]),) * n
        if len(self.sizes) != 2 * n:
            raise ShapeError(f"sizes has {len(self.sizes)} values; the input {fmt_shape(x)} needs {2 * n} (before and after each spatial dim) or 1")
        return tuple((self.sizes[2 * i], self.sizes[2 * i + 1]) for i in range(n))

    def output_shape(self, x: Shape) -> Shape:
        expect_rank(x, (2, 3), self.type_name)
        out = (x[0], *(size + a + b for size, (a, b) in zip(x[1:], self.pads(x))))
        if min(out) < 1:
            raise ShapeError(f"cropping {fmt_shape(x)} by {list(self.sizes)} leaves nothing ({fmt_shape(out)})")
        return out

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        return []  # constant padding: the gradient needs only the sizes

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from torch import nn

        pads: Any = tuple(p for pair in reversed(self.pads(inputs[0])) for p in pair)  # torch wants the last dim first
        return nn.ZeroPad2d(pads) if len(inputs[0]) == 3 else nn.ConstantPad1d(pads, 0.0)
