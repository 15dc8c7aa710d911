"""Pooling: max/avg pooling windows, adaptive and global average pooling, upsampling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from netdsl.errors import ShapeError
from netdsl.layers.base import BOOL, Layer, Shape, arg, enum_kind, expect_rank, fmt_shape, int_kind, spatial, tuple_kind, window_out
from netdsl.layers.registry import register

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class _Pool(Layer):
    kernel: tuple[int, ...] = arg(tuple_kind(), doc="window size", alias=("k",))
    stride: Any = arg(tuple_kind(), None, doc="stride (default: the kernel size)", alias=("s",))
    padding: tuple[int, ...] = arg(tuple_kind(0), 0, doc="implicit padding per side, at most half the kernel", alias=("p",))
    ceil_mode: bool = arg(BOOL, False, doc="round the output size up instead of down")

    primary: ClassVar[str | None] = "kernel"
    dims: ClassVar[int] = 2
    examples = ({"kernel": 2}, {"kernel": 3, "stride": 2, "padding": 1}, {"kernel": 3, "stride": 2, "ceil_mode": True})

    def output_shape(self, x: Shape) -> Shape:
        expect_rank(x, (self.dims + 1,), self.type_name)
        n = self.dims
        k = spatial(self.kernel, n, "kernel")
        s = spatial(self.stride, n, "stride") if self.stride is not None else k
        p = spatial(self.padding, n, "padding")
        if any(2 * pi > ki for pi, ki in zip(p, k)):
            raise ShapeError(f"padding {fmt_shape(p)} is more than half the kernel {fmt_shape(k)}")
        sizes = []
        for size, ki, si, pi in zip(x[1:], k, s, p):
            out = window_out(size, ki, si, pi, 1, self.ceil_mode)
            if out < 1:  # with ceil_mode a window may overhang the input, as long as one starts inside it
                raise ShapeError(f"kernel {ki} exceeds padded input {size + 2 * pi} (input {fmt_shape(x[1:])}, padding {pi})")
            sizes.append(out)
        return (x[0], *sizes)

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from torch import nn

        n = self.dims
        k = spatial(self.kernel, n, "kernel")
        geometry: Any = (k, spatial(self.stride, n, "stride") if self.stride is not None else k, spatial(self.padding, n, "padding"))
        k, s, p = geometry  # torch's stubs want fixed-length tuples
        if isinstance(self, AvgPool2d | AvgPool1d):
            avg = nn.AvgPool2d if n == 2 else nn.AvgPool1d
            return avg(k, s, p, self.ceil_mode, getattr(self, "count_include_pad", True))
        return (nn.MaxPool2d if n == 2 else nn.MaxPool1d)(k, s, p, ceil_mode=self.ceil_mode)


@register("maxpool", "maxpool2d")
@dataclass(frozen=True)
class MaxPool2d(_Pool):
    """2-D max pooling."""


@register("avgpool", "avgpool2d")
@dataclass(frozen=True)
class AvgPool2d(_Pool):
    """2-D average pooling."""

    count_include_pad: bool = arg(BOOL, True, doc="count padded zeros in the average")


@register("maxpool1d")
@dataclass(frozen=True)
class MaxPool1d(_Pool):
    """1-D max pooling."""

    dims: ClassVar[int] = 1
    example_input: ClassVar[Shape] = (4, 32)


@register("avgpool1d")
@dataclass(frozen=True)
class AvgPool1d(_Pool):
    """1-D average pooling."""

    dims: ClassVar[int] = 1
    example_input: ClassVar[Shape] = (4, 32)


@dataclass(frozen=True)
class _Adaptive(Layer):
    size: tuple[int, ...] = arg(tuple_kind(), 1, doc="output size (H, W)")
    primary: ClassVar[str | None] = "size"
    examples = ({"size": 1}, {"size": (3, 2)})

    def output_shape(self, x: Shape) -> Shape:
        expect_rank(x, (3,), self.type_name)
        return (x[0], *spatial(self.size, 2, "size"))

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from torch import nn

        cls = nn.AdaptiveMaxPool2d if isinstance(self, AdaptiveMaxPool2d) else nn.AdaptiveAvgPool2d
        return cls(spatial(self.size, 2, "size"))


@register("adaptive_avgpool", "adaptive_avgpool2d")
@dataclass(frozen=True)
class AdaptiveAvgPool2d(_Adaptive):
    """Average pooling to a fixed output size, whatever the input size."""


@register("adaptive_maxpool", "adaptive_maxpool2d")
@dataclass(frozen=True)
class AdaptiveMaxPool2d(_Adaptive):
    """Max pooling to a fixed output size, whatever the input size."""


@register("global_avgpool", "gap")
@dataclass(frozen=True)
class GlobalAvgPool(Layer):
    """Average over all spatial positions: C x H x W -> C (or C x 1 x 1 with keepdim)."""

    keepdim: bool = arg(BOOL, False, doc="keep the spatial dims as size 1")
    examples = ({}, {"keepdim": True})

    def output_shape(self, x: Shape) -> Shape:
        expect_rank(x, (2, 3), self.type_name)
        return (x[0], *(1 for _ in x[1:])) if self.keepdim else (x[0],)

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from netdsl.backends.torch_modules import GlobalAvgPool as Module

        return Module(self.keepdim)


@register("upsample")
@dataclass(frozen=True)
class Upsample(Layer):
    """Spatial upsampling by an integer factor (nearest or bilinear)."""

    scale: int = arg(int_kind(), 2, doc="integer scale factor")
    mode: str = arg(enum_kind("nearest", "bilinear"), "nearest", doc="interpolation")
    primary: ClassVar[str | None] = "scale"
    examples = ({"scale": 2}, {"scale": 2, "mode": "bilinear"})

    def output_shape(self, x: Shape) -> Shape:
        expect_rank(x, (3,), self.type_name)
        return (x[0], *(n * self.scale for n in x[1:]))

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from torch import nn

        return nn.Upsample(scale_factor=self.scale, mode=self.mode, align_corners=False if self.mode == "bilinear" else None)
