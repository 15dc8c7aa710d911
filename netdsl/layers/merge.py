"""Skip connections: add, concat, mul merges, and the parameter-free shortcut helpers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from netdsl.errors import ShapeError
from netdsl.layers.base import Layer, Saved, Shape, arg, enum_kind, fmt_shape, int_kind
from netdsl.layers.registry import register

if TYPE_CHECKING:
    from torch import nn

# Merge messages say {in0}, {in1}, ... where the builder puts the inputs' names.


def _fix_hint(a: Shape, b: Shape) -> str:
    """Suggest the projection that makes b match a (as a ResNet downsample does)."""
    if len(a) != 3 or len(b) != 3 or b[1] < a[1] or b[1] % a[1] or b[2] % a[2]:
        return ""
    stride = b[1] // a[1]
    return f"; to match, give {{in1}} a 1x1 conv with stride {stride} to {a[0]} channels" if stride > 1 or a[0] != b[0] else ""


@register("add")
@dataclass(frozen=True)
class Add(Layer):
    """Elementwise sum of two or more inputs of the same shape (residual connections)."""

    arity: ClassVar[int] = 0

    def infer(self, inputs: tuple[Shape, ...]) -> Shape:
        first = inputs[0]
        for i, x in enumerate(inputs[1:], 1):
            if x != first:
                hint = _fix_hint(first, x) or _fix_hint(x, first).replace("{in1}", "{in0}")
                raise ShapeError(f"cannot add {{in0}} ({fmt_shape(first)}) and {{in{i}}} ({fmt_shape(x)}): shapes differ{hint}")
        return first

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        return []  # a sum's gradient passes through unchanged

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from netdsl.layers.modules.basic import Add as Module

        return Module()


@register("mul")
@dataclass(frozen=True)
class Mul(Layer):
    """Elementwise product with broadcasting, e.g. C x H x W times C x 1 x 1 (squeeze-and-excitation)."""

    arity: ClassVar[int] = 0

    def infer(self, inputs: tuple[Shape, ...]) -> Shape:
        out = inputs[0]
        for i, x in enumerate(inputs[1:], 1):
            if len(x) != len(out) or any(p != q and 1 not in (p, q) for p, q in zip(out, x)):
                raise ShapeError(f"cannot multiply {{in0}} ({fmt_shape(out)}) by {{in{i}}} ({fmt_shape(x)}): shapes neither match nor broadcast")
            out = tuple(max(p, q) for p, q in zip(out, x))
        return out

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from netdsl.layers.modules.basic import Mul as Module

        return Module()


@register("concat", "cat")
@dataclass(frozen=True)
class Concat(Layer):
    """Concatenate inputs along the channel (feature) dim; other dims must agree."""

    arity: ClassVar[int] = 0

    def infer(self, inputs: tuple[Shape, ...]) -> Shape:
        first = inputs[0]
        for i, x in enumerate(inputs[1:], 1):
            if len(x) != len(first) or x[1:] != first[1:]:
                raise ShapeError(
                    f"cannot concat {{in0}} ({fmt_shape(first)}) and {{in{i}}} ({fmt_shape(x)}): sizes after the channel dim differ "
                    f"({fmt_shape(first[1:])} vs {fmt_shape(x[1:])})"
                )
        return (sum(x[0] for x in inputs), *first[1:])

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        return []  # the gradient is split by the sizes

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from netdsl.layers.modules.basic import Concat as Module

        return Module()


@register("subsample")
@dataclass(frozen=True)
class Subsample(Layer):
    """Keep every stride-th position (x[:, :, ::s, ::s]): the CIFAR ResNet option-A shortcut's downsampling."""

    stride: int = arg(int_kind(), 2, doc="keep every stride-th row and column", alias=("s",))
    primary: ClassVar[str | None] = "stride"
    examples = ({"stride": 2},)

    def output_shape(self, x: Shape) -> Shape:
        if len(x) != 3:
            raise ShapeError(f"subsample needs a C x H x W input, got {fmt_shape(x)}")
        return (x[0], *(-(-n // self.stride) for n in x[1:]))

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        return []  # strided slicing

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from netdsl.layers.modules.basic import Subsample as Module

        return Module(self.stride)


@register("pad_channels")
@dataclass(frozen=True)
class PadChannels(Layer):
    """Zero-pad the channel dim up to `out` channels (parameter-free shortcuts: CIFAR ResNet option A, PyramidNet)."""

    out: int = arg(int_kind(), doc="channels after padding", alias=("out_channels",))
    where: str = arg(enum_kind("both", "end"), "end", doc="'both' splits the zeros before and after (option A), 'end' appends them")
    primary: ClassVar[str | None] = "out"
    examples = ({"out": 8}, {"out": 8, "where": "both"})

    def output_shape(self, x: Shape) -> Shape:
        if self.out < x[0]:
            raise ShapeError(f"cannot pad {x[0]} channels down to {self.out}")
        if self.where == "both" and (self.out - x[0]) % 2:
            raise ShapeError(f"padding {x[0]} to {self.out} channels on both sides needs an even difference")
        return (self.out, *x[1:])

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        return []  # constant padding

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from netdsl.layers.modules.basic import PadChannels as Module

        extra = self.out - inputs[0][0]
        before = extra // 2 if self.where == "both" else 0
        return Module(before, extra - before)
