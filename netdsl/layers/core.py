"""Dense and structural layers: linear, dropout, stochastic depth, flatten."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from netdsl.errors import ShapeError
from netdsl.layers.base import BOOL, DIM, Layer, Saved, Shape, Tensor, arg, axis, enum_kind, expect_rank, float_kind, fmt_shape, int_kind
from netdsl.layers.registry import register

if TYPE_CHECKING:
    from torch import nn


@register("linear", "fc", "dense")
@dataclass(frozen=True)
class Linear(Layer):
    """Fully connected layer on the last dim: y = x W^T + b (as torch, every other dim kept; a C x H x W map usually wants a flatten or global_avgpool first)."""

    out: int = arg(int_kind(), doc="output features", alias=("out_features",))
    bias: bool = arg(BOOL, True, doc="learn an additive bias")

    primary: ClassVar[str | None] = "out"
    has_weights: ClassVar[bool] = True
    examples = ({"out": 10}, {"out": 3, "bias": False})
    example_input: ClassVar[Shape] = (12,)

    def output_shape(self, x: Shape) -> Shape:
        return (*x[:-1], self.out)

    def params(self, inputs: tuple[Shape, ...]) -> list[Tensor]:
        out: list[Tensor] = [("weight", (self.out, inputs[0][-1]))]
        return [*out, ("bias", (self.out,))] if self.bias else out

    def macs(self, inputs: tuple[Shape, ...], out: Shape) -> int:
        return math.prod(inputs[0]) * self.out  # prod(x[:-1]) positions, each in x out

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from torch import nn

        return nn.Linear(inputs[0][-1], self.out, self.bias)


@register("dropout")
@dataclass(frozen=True)
class Dropout(Layer):
    """Zero each element with probability p while training (scaled by 1/(1-p))."""

    p: float = arg(float_kind(0, 1), 0.5, doc="drop probability, below 1")
    primary: ClassVar[str | None] = "p"
    examples = ({}, {"p": 0.2})

    def output_shape(self, x: Shape) -> Shape:
        if self.p >= 1:
            raise ShapeError("p = 1 drops everything; use a probability below 1")
        return x

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        if self.p == 0:  # torch passes the input through
            return []
        x = inputs[0]  # the float mask torch multiplies by on the CPU (CUDA keeps a 1-byte one): per element, or per channel for dropout2d
        return [Saved("own", (x[0], *(1 for _ in x[1:])) if isinstance(self, Dropout2d) else x)]

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from torch import nn

        return (nn.Dropout2d if isinstance(self, Dropout2d) else nn.Dropout)(self.p)


@register("dropout2d")
@dataclass(frozen=True)
class Dropout2d(Dropout):
    """Zero whole channels with probability p while training."""

    def output_shape(self, x: Shape) -> Shape:
        expect_rank(x, (3,), self.type_name)
        return super().output_shape(x)


@register("stochastic_depth")
@dataclass(frozen=True)
class StochasticDepth(Layer):
    """While training, drop a residual branch with probability p, per sample (row) or for the whole batch (torchvision.ops.StochasticDepth)."""

    p: float = arg(float_kind(0, 1), doc="drop probability; survivors are scaled by 1/(1-p)")
    mode: str = arg(enum_kind("row", "batch"), "row", doc="row: each sample's branch on its own; batch: the whole batch's at once")

    primary: ClassVar[str | None] = "p"
    examples = ({"p": 0.2}, {"p": 0.1, "mode": "batch"})

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        if self.p == 0:  # torchvision passes the input through
            return []
        return [Saved("own", (1,), batched=self.mode == "row")]  # one keep-or-drop factor per sample, or per batch

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from netdsl.layers.modules.basic import StochasticDepth as Module

        return Module(self.p, self.mode)


@register("flatten")
@dataclass(frozen=True)
class Flatten(Layer):
    """Flatten per-sample dims start..end (from 0, batch excluded; default all) into one: torch's nn.Flatten(start + 1, end + 1)."""

    is_view: ClassVar[bool] = True
    start: int = arg(DIM, 0, doc="first per-sample dim to flatten (negative: from the end)")
    end: int = arg(DIM, -1, doc="last per-sample dim to flatten, included (negative: from the end)")

    examples = ({}, {"start": 1}, {"start": 0, "end": 1}, {"start": -2, "end": -1})

    def span(self, x: Shape) -> tuple[int, int]:
        """start and end as non-negative dims of x, or ShapeError."""
        start, end = axis(self.start, x, "flatten start"), axis(self.end, x, "flatten end")
        if start > end:
            raise ShapeError(f"flatten start {self.start} comes after end {self.end} (the input is {fmt_shape(x)})")
        return start, end

    def output_shape(self, x: Shape) -> Shape:
        start, end = self.span(x)
        return (*x[:start], math.prod(x[start : end + 1]), *x[end + 1 :])

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        return []  # a view

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from torch import nn

        start, end = self.span(inputs[0])
        return nn.Flatten(start + 1, end + 1)
