"""Dense and structural layers: linear, dropout, flatten."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from netdsl.errors import ShapeError
from netdsl.layers.base import BOOL, Layer, Shape, Tensor, arg, expect_rank, float_kind, fmt_shape, int_kind
from netdsl.layers.registry import register

if TYPE_CHECKING:
    from torch import nn


@register("linear", "fc", "dense")
@dataclass(frozen=True)
class Linear(Layer):
    """Fully connected layer on the last dim: y = x W^T + b."""

    out: int = arg(int_kind(), doc="output features", alias=("out_features",))
    bias: bool = arg(BOOL, True, doc="learn an additive bias")

    primary: ClassVar[str | None] = "out"
    has_weights: ClassVar[bool] = True
    examples = ({"out": 10}, {"out": 3, "bias": False})
    example_input: ClassVar[Shape] = (12,)

    def output_shape(self, x: Shape) -> Shape:
        if len(x) > 2:  # torch would apply it to the last dim only; in a CNN that is a forgotten flatten
            raise ShapeError(f"linear needs features (or L x features), got {fmt_shape(x)}; add a flatten or global_avgpool before it")
        return (*x[:-1], self.out)

    def params(self, inputs: tuple[Shape, ...]) -> list[Tensor]:
        out: list[Tensor] = [("weight", (self.out, inputs[0][-1]))]
        return [*out, ("bias", (self.out,))] if self.bias else out

    def macs(self, inputs: tuple[Shape, ...], out: Shape) -> int:
        return math.prod(inputs[0]) * self.out

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


@register("flatten")
@dataclass(frozen=True)
class Flatten(Layer):
    """Flatten each sample to one feature vector."""

    examples = ({},)

    def output_shape(self, x: Shape) -> Shape:
        return (math.prod(x),)

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from torch import nn

        return nn.Flatten(1)
