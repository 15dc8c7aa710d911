"""Normalization: batch, group, layer (trailing dims or channels) and local response norm."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from netdsl.errors import ShapeError
from netdsl.layers.base import BOOL, Layer, Saved, Shape, Tensor, arg, expect_rank, float_kind, fmt_shape, int_kind
from netdsl.layers.registry import register

if TYPE_CHECKING:
    from torch import nn


@register("batchnorm", "bn")
@dataclass(frozen=True)
class BatchNorm(Layer):
    """Batch normalization over the channel (or feature) dim; BatchNorm1d/2d chosen by input rank."""

    eps: float = arg(float_kind(0, 1, lo_open=True), 1e-5, doc="added to the variance")
    momentum: float = arg(float_kind(0, 1), 0.1, doc="running-statistics update rate (PyTorch convention)")
    affine: bool = arg(BOOL, True, doc="learn a scale (weight) and shift (bias)")
    track_running_stats: bool = arg(BOOL, True, doc="keep running mean/var buffers")

    has_weights: ClassVar[bool] = True
    examples = ({}, {"affine": False}, {"eps": 1e-3, "momentum": 0.01, "track_running_stats": False})

    def output_shape(self, x: Shape) -> Shape:
        expect_rank(x, (1, 2, 3), self.type_name)
        return x

    def params(self, inputs: tuple[Shape, ...]) -> list[Tensor]:
        c = inputs[0][0]
        return [("weight", (c,)), ("bias", (c,))] if self.affine else []

    def buffers(self, inputs: tuple[Shape, ...]) -> list[Tensor]:
        c = inputs[0][0]
        return [("running_mean", (c,)), ("running_var", (c,)), ("num_batches_tracked", ())] if self.track_running_stats else []

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        return [Saved(0), Saved("own", (2 * inputs[0][0],), batched=False)]  # the input, the batch mean and inverse std

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from torch import nn

        cls = nn.BatchNorm2d if len(inputs[0]) == 3 else nn.BatchNorm1d
        return cls(inputs[0][0], self.eps, self.momentum, self.affine, self.track_running_stats)


@register("groupnorm", "gn")
@dataclass(frozen=True)
class GroupNorm(Layer):
    """Group normalization: channels split into groups, normalized per sample."""

    groups: int = arg(int_kind(), doc="number of channel groups", alias=("g",))
    eps: float = arg(float_kind(0, 1, lo_open=True), 1e-5, doc="added to the variance")
    affine: bool = arg(BOOL, True, doc="learn a per-channel scale and shift")

    primary: ClassVar[str | None] = "groups"
    has_weights: ClassVar[bool] = True
    examples = ({"groups": 2}, {"groups": 4, "affine": False})

    def output_shape(self, x: Shape) -> Shape:
        expect_rank(x, (2, 3), self.type_name)
        if x[0] % self.groups:
            raise ShapeError(f"groups {self.groups} must divide the {x[0]} channels")
        return x

    def params(self, inputs: tuple[Shape, ...]) -> list[Tensor]:
        c = inputs[0][0]
        return [("weight", (c,)), ("bias", (c,))] if self.affine else []

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        return [Saved(0), Saved("own", (2 * self.groups,))]  # the input, each sample's group means and inverse stds

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from torch import nn

        return nn.GroupNorm(self.groups, inputs[0][0], self.eps, self.affine)


@register("layernorm", "ln")
@dataclass(frozen=True)
class LayerNorm(Layer):
    """Layer normalization over the last `dims` dims of each sample."""

    dims: int = arg(int_kind(1), 1, doc="how many trailing dims to normalize over")
    eps: float = arg(float_kind(0, 1, lo_open=True), 1e-5, doc="added to the variance")
    affine: bool = arg(BOOL, True, doc="learn an elementwise scale and shift")

    has_weights: ClassVar[bool] = True
    examples = ({}, {"dims": 3}, {"affine": False})

    def output_shape(self, x: Shape) -> Shape:
        if self.dims > len(x):
            raise ShapeError(f"dims {self.dims} exceeds the input's {len(x)} dims ({fmt_shape(x)})")
        return x

    def params(self, inputs: tuple[Shape, ...]) -> list[Tensor]:
        shape = inputs[0][-self.dims :]
        return [("weight", shape), ("bias", shape)] if self.affine else []

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        return [Saved(0), Saved("own", (2 * math.prod(inputs[0][: -self.dims]),))]  # the input, a mean and inverse std per position

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from torch import nn

        return nn.LayerNorm(inputs[0][-self.dims :], self.eps, self.affine)


@register("layernorm2d")
@dataclass(frozen=True)
class LayerNorm2d(Layer):
    """Layer normalization over the channels of C x H x W at each position (torchvision's ConvNeXt LayerNorm2d)."""

    eps: float = arg(float_kind(0, 1, lo_open=True), 1e-5, doc="added to the variance (ConvNeXt: 1e-6)")
    affine: bool = arg(BOOL, True, doc="learn a per-channel scale and shift")

    has_weights: ClassVar[bool] = True
    examples = ({}, {"eps": 1e-6}, {"affine": False})

    def output_shape(self, x: Shape) -> Shape:
        expect_rank(x, (3,), self.type_name)
        return x

    def params(self, inputs: tuple[Shape, ...]) -> list[Tensor]:
        c = inputs[0][0]
        return [("weight", (c,)), ("bias", (c,))] if self.affine else []

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        return [Saved(0), Saved("own", (2 * math.prod(inputs[0][1:]),))]  # the input, a mean and inverse std per position

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from netdsl.layers.modules.basic import LayerNorm2d as Module

        return Module(inputs[0][0], self.eps, self.affine)


@register("lrn", "local_response_norm")
@dataclass(frozen=True)
class LocalResponseNorm(Layer):
    """Local response normalization across neighbouring channels (the original AlexNet, Krizhevsky et al. 2012)."""

    size: int = arg(int_kind(), 5, doc="number of neighbouring channels (n)")
    alpha: float = arg(float_kind(0, 1e3), 1e-4, doc="scale")
    beta: float = arg(float_kind(0, 1e3), 0.75, doc="exponent")
    k: float = arg(float_kind(0, 1e3), 2.0, doc="additive constant (2 in the AlexNet paper)")

    primary: ClassVar[str | None] = "size"
    examples = ({}, {"size": 3, "k": 1.0})

    def output_shape(self, x: Shape) -> Shape:
        expect_rank(x, (2, 3), self.type_name)
        return x

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        x = inputs[0]  # torch composes it: the squares padded by size - 1 channels, the average and the divisor, each kept
        return [Saved(0), Saved("own", (x[0] + self.size - 1, *x[1:])), Saved("own", x), Saved("own", x)]

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from torch import nn

        return nn.LocalResponseNorm(self.size, self.alpha, self.beta, self.k)
