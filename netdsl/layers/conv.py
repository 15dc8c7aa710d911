"""Convolutions: conv1d, conv2d (incl. grouped and depthwise), conv_transpose1d and conv_transpose2d."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from netdsl.errors import ShapeError
from netdsl.layers.base import BOOL, PADDING, Layer, Shape, Tensor, arg, expect_rank, fmt_shape, int_kind, spatial, tuple_kind, window_out
from netdsl.layers.registry import register

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class _Conv(Layer):
    out: int = arg(int_kind(), doc="output channels", alias=("out_channels",))
    kernel: tuple[int, ...] = arg(tuple_kind(), 3, doc="kernel size (int or per-dim list)", alias=("k",))
    stride: tuple[int, ...] = arg(tuple_kind(), 1, doc="stride", alias=("s",))
    padding: Any = arg(PADDING, 0, doc="zero padding per side, or 'same' (stride 1) / 'valid'", alias=("p",))
    dilation: tuple[int, ...] = arg(tuple_kind(), 1, doc="dilation", alias=("d",))
    groups: int = arg(int_kind(), 1, doc="groups (= input channels for depthwise)", alias=("g",))
    bias: bool = arg(BOOL, True, doc="learn an additive bias")

    primary: ClassVar[str | None] = "out"
    has_weights: ClassVar[bool] = True
    dims: ClassVar[int] = 2

    def _geometry(self, x: Shape) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        n = self.dims
        k, s, d = spatial(self.kernel, n, "kernel"), spatial(self.stride, n, "stride"), spatial(self.dilation, n, "dilation")
        if self.padding == "valid":
            p = (0,) * n
        elif self.padding == "same":
            if any(v != 1 for v in s):
                raise ShapeError("padding 'same' needs stride 1 (as in PyTorch); give the padding as a number, e.g. kernel // 2")
            p = tuple((di * (ki - 1)) // 2 for ki, di in zip(k, d))
        else:
            p = spatial(self.padding, n, "padding")
        return k, s, p, d

    def output_shape(self, x: Shape) -> Shape:
        expect_rank(x, (self.dims + 1,), self.type_name)
        c = x[0]
        if c % self.groups or self.out % self.groups:
            raise ShapeError(f"groups {self.groups} must divide input channels {c} and output channels {self.out}")
        k, s, p, d = self._geometry(x)
        if self.padding == "same":
            return (self.out, *x[1:])
        sizes = []
        for n, ki, si, pi, di in zip(x[1:], k, s, p, d):
            eff = di * (ki - 1) + 1
            if eff > n + 2 * pi:
                padded = "x".join(str(v + 2 * q) for v, q in zip(x[1:], p))
                kdesc = f"kernel {ki}" + (f" (dilated to {eff})" if di > 1 else "")
                raise ShapeError(f"{kdesc} exceeds padded input {padded} (input {fmt_shape(x[1:])}, padding {pi})")
            sizes.append(window_out(n, ki, si, pi, di))
        return (self.out, *sizes)

    def params(self, inputs: tuple[Shape, ...]) -> list[Tensor]:
        k = spatial(self.kernel, self.dims, "kernel")
        out: list[Tensor] = [("weight", (self.out, inputs[0][0] // self.groups, *k))]
        return [*out, ("bias", (self.out,))] if self.bias else out

    def macs(self, inputs: tuple[Shape, ...], out: Shape) -> int:
        k = spatial(self.kernel, self.dims, "kernel")
        return math.prod(out) * (inputs[0][0] // self.groups) * math.prod(k)

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from torch import nn

        geometry: Any = self._geometry(inputs[0])  # torch's stubs want fixed-length tuples
        k, s, p, d = geometry
        cls = nn.Conv2d if self.dims == 2 else nn.Conv1d
        return cls(inputs[0][0], self.out, k, s, "same" if self.padding == "same" else p, d, self.groups, self.bias)


@register("conv2d", "conv")
@dataclass(frozen=True)
class Conv2d(_Conv):
    """2-D convolution over C x H x W."""

    examples = (
        {"out": 8, "kernel": 3, "padding": 1},
        {"out": 4, "kernel": (1, 3), "stride": 2, "groups": 2, "bias": False},
        {"out": 4, "kernel": 3, "padding": "same", "dilation": 2},
    )


@register("conv1d")
@dataclass(frozen=True)
class Conv1d(_Conv):
    """1-D convolution over C x L."""

    dims: ClassVar[int] = 1
    examples = ({"out": 8, "kernel": 5, "padding": 2}, {"out": 4, "kernel": 3, "stride": 2})
    example_input: ClassVar[Shape] = (4, 32)


@dataclass(frozen=True)
class _ConvTranspose(Layer):
    out: int = arg(int_kind(), doc="output channels", alias=("out_channels",))
    kernel: tuple[int, ...] = arg(tuple_kind(), 2, doc="kernel size", alias=("k",))
    stride: tuple[int, ...] = arg(tuple_kind(), 2, doc="stride (upsampling factor)", alias=("s",))
    padding: tuple[int, ...] = arg(tuple_kind(0), 0, doc="padding removed per side", alias=("p",))
    output_padding: tuple[int, ...] = arg(tuple_kind(0), 0, doc="extra size added on one side")
    groups: int = arg(int_kind(), 1, doc="groups", alias=("g",))
    bias: bool = arg(BOOL, True, doc="learn an additive bias")
    dilation: tuple[int, ...] = arg(tuple_kind(), 1, doc="dilation", alias=("d",))

    primary: ClassVar[str | None] = "out"
    has_weights: ClassVar[bool] = True
    dims: ClassVar[int] = 2

    def geometry(self) -> tuple[tuple[int, ...], ...]:
        """kernel, stride, padding, output_padding, dilation, one value per spatial dim."""
        n = self.dims
        names = ("kernel", "stride", "padding", "output_padding", "dilation")
        return tuple(spatial(getattr(self, name), n, name) for name in names)

    def output_shape(self, x: Shape) -> Shape:
        """(N - 1) S - 2P + D (K - 1) + output_padding + 1 per dim, as PyTorch's ConvTranspose."""
        expect_rank(x, (self.dims + 1,), self.type_name)
        if x[0] % self.groups or self.out % self.groups:
            raise ShapeError(f"groups {self.groups} must divide input channels {x[0]} and output channels {self.out}")
        k, s, p, op, d = self.geometry()
        if any(o >= si and o >= di for o, si, di in zip(op, s, d)):
            raise ShapeError(f"output_padding {fmt_shape(op)} must be smaller than stride {fmt_shape(s)} or dilation {fmt_shape(d)}")
        sizes = tuple((n - 1) * si - 2 * pi + di * (ki - 1) + oi + 1 for n, ki, si, pi, oi, di in zip(x[1:], k, s, p, op, d))
        if min(sizes) < 1:
            raise ShapeError(f"padding {fmt_shape(p)} removes the whole output (would be {fmt_shape(sizes)})")
        return (self.out, *sizes)

    def params(self, inputs: tuple[Shape, ...]) -> list[Tensor]:
        out: list[Tensor] = [("weight", (inputs[0][0], self.out // self.groups, *spatial(self.kernel, self.dims, "kernel")))]
        return [*out, ("bias", (self.out,))] if self.bias else out

    def macs(self, inputs: tuple[Shape, ...], out: Shape) -> int:
        """Every input element times every weight it meets: as torch.utils.flop_counter counts a transposed conv (its FLOPs / 2)."""
        return math.prod(inputs[0]) * (self.out // self.groups) * math.prod(spatial(self.kernel, self.dims, "kernel"))

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from torch import nn

        geometry: Any = self.geometry()  # torch's stubs want fixed-length tuples
        k, s, p, op, d = geometry
        cls = nn.ConvTranspose2d if self.dims == 2 else nn.ConvTranspose1d
        return cls(inputs[0][0], self.out, k, s, p, op, self.groups, self.bias, d)


@register("conv_transpose2d", "deconv")
@dataclass(frozen=True)
class ConvTranspose2d(_ConvTranspose):
    """Transposed 2-D convolution (learned upsampling in decoders)."""

    examples = (
        {"out": 4, "kernel": 2, "stride": 2},
        {"out": 2, "kernel": 3, "stride": 2, "padding": 1, "output_padding": 1},
        {"out": 6, "kernel": (3, 2), "stride": (2, 1), "groups": 2, "dilation": 2, "bias": False},
    )


@register("conv_transpose1d", "deconv1d")
@dataclass(frozen=True)
class ConvTranspose1d(_ConvTranspose):
    """Transposed 1-D convolution over C x L (learned upsampling of sequences and signals)."""

    dims: ClassVar[int] = 1
    examples = ({"out": 8, "kernel": 4, "stride": 2, "padding": 1}, {"out": 4, "kernel": 3, "stride": 3, "output_padding": 2, "groups": 2, "dilation": 2})
    example_input: ClassVar[Shape] = (4, 32)
