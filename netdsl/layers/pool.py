"""Pooling: max/avg pooling windows, adaptive and global average pooling, upsampling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from netdsl.errors import ShapeError
from netdsl.layers.base import BOOL, PADDING, Layer, Saved, Shape, arg, enum_kind, expect_rank, fmt_shape, int_kind, ref_kind, spatial, tuple_kind, window_out
from netdsl.layers.registry import register

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class _Pool(Layer):
    kernel: tuple[int, ...] = arg(tuple_kind(), doc="window size", alias=("k",))
    stride: Any = arg(tuple_kind(), None, doc="stride (default: the kernel size)", alias=("s",))
    padding: Any = arg(
        PADDING,
        0,
        doc="implicit padding per side (at most half the kernel), 'valid' (0), or 'same' as Keras/TensorFlow: ceil(N / S) outputs, the odd padding cell at the end",
        alias=("p",),
    )
    ceil_mode: bool = arg(BOOL, False, doc="round the output size up instead of down")

    primary: ClassVar[str | None] = "kernel"
    dims: ClassVar[int] = 2
    examples: ClassVar[tuple[dict[str, Any], ...]] = (
        {"kernel": 2},
        {"kernel": 3, "stride": 2, "padding": 1},
        {"kernel": 3, "stride": 2, "ceil_mode": True},
        {"kernel": 3, "stride": 2, "padding": "same"},
    )

    def same_padding(self, x: Shape) -> tuple[tuple[int, int], ...]:
        """Keras/TensorFlow 'same': per spatial dim (before, after) with total max((ceil(N/S) - 1) S + K - N, 0), the extra cell after."""
        k = spatial(self.kernel, self.dims, "kernel")
        s = spatial(self.stride, self.dims, "stride") if self.stride is not None else k
        totals = [max((-(-n // si) - 1) * si + ki - n, 0) for n, ki, si in zip(x[1:], k, s)]
        return tuple((t // 2, t - t // 2) for t in totals)

    def output_shape(self, x: Shape) -> Shape:
        expect_rank(x, (self.dims + 1,), self.type_name)
        n = self.dims
        k = spatial(self.kernel, n, "kernel")
        s = spatial(self.stride, n, "stride") if self.stride is not None else k
        if self.padding == "same":
            if self.ceil_mode:
                raise ShapeError("padding 'same' sets the output size (ceil(N / S)); leave ceil_mode out")
            if getattr(self, "indices", False) and any(a != b for a, b in self.same_padding(x)):
                raise ShapeError(f"padding 'same' pads {fmt_shape(x[1:])} unevenly, which max_unpool cannot undo; give the padding as numbers")
            return (x[0], *(-(-size // si) for size, si in zip(x[1:], s)))
        p = spatial((0,) if self.padding == "valid" else self.padding, n, "padding")
        if any(2 * pi > ki for pi, ki in zip(p, k)):
            raise ShapeError(f"padding {fmt_shape(p)} is more than half the kernel {fmt_shape(k)}")
        sizes = []
        for size, ki, si, pi in zip(x[1:], k, s, p):
            out = window_out(size, ki, si, pi, 1, self.ceil_mode)
            if out < 1:  # with ceil_mode a window may overhang the input, as long as one starts inside it
                raise ShapeError(f"kernel {ki} exceeds padded input {size + 2 * pi} (input {fmt_shape(x[1:])}, padding {pi})")
            sizes.append(out)
        return (x[0], *sizes)

    def kept_input(self, x: Shape) -> Saved:
        """The tensor the pool reads, which autograd keeps: the input, or its padded copy when 'same' pads unevenly."""
        if self.padding != "same" or all(a == b for a, b in self.same_padding(x)):
            return Saved(0)
        return Saved("own", (x[0], *(n + a + b for n, (a, b) in zip(x[1:], self.same_padding(x)))))

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        return [self.kept_input(inputs[0])]

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from torch import nn

        n = self.dims
        k = spatial(self.kernel, n, "kernel")
        stride = spatial(self.stride, n, "stride") if self.stride is not None else k
        if self.padding == "same":
            pads = self.same_padding(inputs[0])
            if any(a != b for a, b in pads):  # uneven: pad explicitly, as TensorFlow does
                from netdsl.layers.modules.basic import SamePool

                return SamePool(k, stride, pads, isinstance(self, AvgPool2d | AvgPool1d), getattr(self, "count_include_pad", True))
            padding = tuple(a for a, _ in pads)
        else:
            padding = spatial((0,) if self.padding == "valid" else self.padding, n, "padding")
        geometry: Any = (k, stride, padding)
        k, s, p = geometry  # torch's stubs want fixed-length tuples
        if isinstance(self, AvgPool2d | AvgPool1d):
            avg = nn.AvgPool2d if n == 2 else nn.AvgPool1d
            return avg(k, s, p, self.ceil_mode, getattr(self, "count_include_pad", True))
        return (nn.MaxPool2d if n == 2 else nn.MaxPool1d)(k, s, p, ceil_mode=self.ceil_mode, return_indices=getattr(self, "indices", False))


@dataclass(frozen=True)
class _MaxPool(_Pool):
    indices: bool = arg(BOOL, False, doc="also yield the argmax positions, for a max_unpool that names this layer (SegNet)")

    examples = (*_Pool.examples, {"kernel": 2, "stride": 2, "indices": True})

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        return [self.kept_input(inputs[0]), Saved("out1" if self.indices else "own", out, itemsize=8)]  # and the int64 argmax of every output

    def port_shapes(self, inputs: tuple[Shape, ...], out: Shape) -> tuple[Shape, ...]:
        return (out, out) if self.indices else (out,)


@register("maxpool", "maxpool2d")
@dataclass(frozen=True)
class MaxPool2d(_MaxPool):
    """2-D max pooling; with `indices: true` it also yields the argmax positions for a max_unpool."""


@register("avgpool", "avgpool2d")
@dataclass(frozen=True)
class AvgPool2d(_Pool):
    """2-D average pooling."""

    count_include_pad: bool = arg(BOOL, True, doc="count padded zeros in the average")


@register("maxpool1d")
@dataclass(frozen=True)
class MaxPool1d(_MaxPool):
    """1-D max pooling; with `indices: true` it also yields the argmax positions for a max_unpool1d."""

    dims: ClassVar[int] = 1
    example_input: ClassVar[Shape] = (4, 32)


@register("avgpool1d")
@dataclass(frozen=True)
class AvgPool1d(_Pool):
    """1-D average pooling."""

    dims: ClassVar[int] = 1
    example_input: ClassVar[Shape] = (4, 32)


@dataclass(frozen=True)
class _MaxUnpool(Layer):
    indices: str = arg(ref_kind(port=1, what="a maxpool with indices: true", source=True), doc="the maxpool (with indices: true) to undo")
    kernel: tuple[int, ...] = arg(tuple_kind(), doc="window size, as the pool's", alias=("k",))
    stride: Any = arg(tuple_kind(), None, doc="stride, as the pool's (default: the kernel size)", alias=("s",))
    padding: tuple[int, ...] = arg(tuple_kind(0), 0, doc="padding, as the pool's", alias=("p",))

    dims: ClassVar[int] = 2
    examples: ClassVar[tuple[dict[str, Any], ...]] = ({"indices": "pool", "kernel": 2}, {"indices": "pool", "kernel": 3, "stride": 2, "padding": 1})
    example_before: ClassVar[tuple[str, ...]] = ("maxpool: {name: pool, k: 2, indices: true}", "conv: {out: 4, k: 3, p: 1}")

    def geometry(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        n = self.dims
        k = spatial(self.kernel, n, "kernel")
        return k, spatial(self.stride, n, "stride") if self.stride is not None else k, spatial(self.padding, n, "padding")

    def infer(self, inputs: tuple[Shape, ...]) -> Shape:
        """Values, indices and the pool's input: the output has the pool input's size, so odd sizes come back exactly."""
        x, indices, like = inputs
        expect_rank(x, (self.dims + 1,), self.type_name)
        if x != indices:
            raise ShapeError(f"the input ({fmt_shape(x)}) must have the shape of the indices of {{indices}} ({fmt_shape(indices)})")
        k, s, p = self.geometry()
        for size, n, ki, si, pi in zip(like[1:], x[1:], k, s, p):
            default = (n - 1) * si + ki - 2 * pi  # PyTorch accepts an output size strictly within one stride of this
            if not default - si < size < default + si:
                raise ShapeError(
                    f"kernel {_same(k)}, stride {_same(s)}, padding {_same(p)} cannot restore {fmt_shape(x[1:])} to "
                    f"{fmt_shape(like[1:])}, the size of the input of {{indices}}; give the pool's kernel, stride and padding"
                )
        return (x[0], *like[1:])

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        return [Saved(1, itemsize=8)]  # the pool's int64 indices (its second output)

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from netdsl.layers.modules.basic import MaxUnpool

        return MaxUnpool(*self.geometry())


def _same(v: tuple[int, ...]) -> str:
    return str(v[0]) if len(set(v)) == 1 else fmt_shape(v)


@register("max_unpool", "max_unpool2d")
@dataclass(frozen=True)
class MaxUnpool2d(_MaxUnpool):
    """Max unpooling: put each value back where its maxpool found it, zeros elsewhere, at the pool's input size (SegNet)."""


@register("max_unpool1d")
@dataclass(frozen=True)
class MaxUnpool1d(_MaxUnpool):
    """1-D max unpooling: the inverse of a maxpool1d with indices: true, at the pool's input length."""

    dims: ClassVar[int] = 1
    examples = ({"indices": "pool", "kernel": 2},)
    example_input: ClassVar[Shape] = (4, 33)
    example_before = ("maxpool1d: {name: pool, k: 2, indices: true}",)


@dataclass(frozen=True)
class _Adaptive(Layer):
    size: tuple[int, ...] = arg(tuple_kind(), 1, doc="output size (H, W)")
    primary: ClassVar[str | None] = "size"
    examples = ({"size": 1}, {"size": (3, 2)})

    def output_shape(self, x: Shape) -> Shape:
        expect_rank(x, (3,), self.type_name)
        return (x[0], *spatial(self.size, 2, "size"))

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        if isinstance(self, AdaptiveMaxPool2d):
            return [Saved(0), Saved("own", out, itemsize=8)]  # the input and the int64 argmax
        return [] if all(d == 1 for d in out[1:]) else [Saved(0)]  # to 1x1 torch takes a mean, which keeps only sizes

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

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        return []  # a mean keeps only the sizes

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from netdsl.layers.modules.basic import GlobalAvgPool as Module

        return Module(self.keepdim)


@register("upsample")
@dataclass(frozen=True)
class Upsample(Layer):
    """Spatial resizing: by an integer factor, to a fixed size, or to the size of another layer (nearest or bilinear).

    Give one of `scale` (default 2), `size: [h, w]` or `to: NAME`; `to` names a layer (or `input`) as `from` does,
    and the output takes that tensor's H x W at run time, as torchvision's segmentation heads do with
    `F.interpolate(x, size=input.shape[-2:], mode="bilinear", align_corners=False)`.
    """

    scale: Any = arg(int_kind(), None, doc="integer scale factor (2 if neither size nor to is given)")
    size: Any = arg(tuple_kind(), None, doc="output size [h, w] (or one number for both)")
    to: Any = arg(ref_kind(), None, doc="a layer (or input) whose H x W the output takes")
    mode: str = arg(enum_kind("nearest", "bilinear"), "nearest", doc="interpolation")
    align_corners: bool = arg(BOOL, False, doc="bilinear only: align the corner pixels (PyTorch's align_corners)")
    primary: ClassVar[str | None] = "scale"
    examples = ({"scale": 2}, {"scale": 2, "mode": "bilinear"}, {"size": (7, 5), "mode": "bilinear", "align_corners": True}, {"to": "input"})

    def check_args(self) -> None:
        given = [f"'{name}'" for name in ("scale", "size", "to") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of 'scale', 'size' or 'to', not {' and '.join(given)}")
        if self.align_corners and self.mode != "bilinear":
            raise ValueError(f"'align_corners' needs mode 'bilinear' (got mode '{self.mode}')")

    def infer(self, inputs: tuple[Shape, ...]) -> Shape:
        x = inputs[0]
        expect_rank(x, (3,), self.type_name)
        if self.to is not None:
            target = inputs[1]
            if len(target) != 3:
                raise ShapeError(f"'to' names {{to}} of shape {fmt_shape(target)}; it needs a C x H x W layer")
            return (x[0], *target[1:])
        if self.size is not None:
            return (x[0], *spatial(self.size, 2, "size"))
        return (x[0], *(n * (self.scale or 2) for n in x[1:]))

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        return []  # its gradient needs only the sizes

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from torch import nn

        corners = self.align_corners if self.mode == "bilinear" else None
        if self.to is not None:
            from netdsl.layers.modules.basic import ResizeTo

            return ResizeTo(self.mode, corners)
        if self.size is not None:
            size: Any = spatial(self.size, 2, "size")
            return nn.Upsample(size=size, mode=self.mode, align_corners=corners)
        return nn.Upsample(scale_factor=self.scale or 2, mode=self.mode, align_corners=corners)
