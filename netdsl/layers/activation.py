"""Elementwise activations and softmax: shape-preserving, parameter-free."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from netdsl.errors import ShapeError
from netdsl.layers.base import Layer, Shape, arg, enum_kind, float_kind, int_kind
from netdsl.layers.registry import register


def _simple(name: str, doc: str, *aliases: str) -> type[Layer]:
    cls: type[Layer] = dataclass(frozen=True)(type(name, (Layer,), {"__doc__": doc, "__module__": __name__}))
    return register(name, *aliases)(cls)


for _name, _doc, *_aliases in (
    ("relu", "max(0, x)"),
    ("relu6", "min(max(0, x), 6) (MobileNet)"),
    ("sigmoid", "1 / (1 + exp(-x))"),
    ("tanh", "hyperbolic tangent (the classic LeNet-5)"),
    ("silu", "x * sigmoid(x) (swish)", "swish"),
    ("hardswish", "x * relu6(x + 3) / 6 (MobileNetV3)"),
    ("hardsigmoid", "relu6(x + 3) / 6"),
    ("identity", "passes its input through unchanged"),
):
    _simple(_name, _doc, *_aliases)


@register("leaky_relu")
@dataclass(frozen=True)
class LeakyReLU(Layer):
    """max(0, x) + slope * min(0, x)."""

    slope: float = arg(float_kind(0, 1), 0.01, doc="negative slope", alias=("negative_slope",))
    primary: ClassVar[str | None] = "slope"
    examples = ({}, {"slope": 0.1})


@register("elu")
@dataclass(frozen=True)
class ELU(Layer):
    """x if x > 0 else alpha * (exp(x) - 1)."""

    alpha: float = arg(float_kind(0, 100), 1.0, doc="saturation value for negative inputs")
    primary: ClassVar[str | None] = "alpha"
    examples = ({}, {"alpha": 0.5})


@register("gelu")
@dataclass(frozen=True)
class GELU(Layer):
    """Gaussian error linear unit."""

    approximate: str = arg(enum_kind("none", "tanh"), "none", doc="'tanh' for the fast approximation")
    examples = ({}, {"approximate": "tanh"})


@dataclass(frozen=True)
class _Softmax(Layer):
    dim: int = arg(int_kind(-3, 2), 0, doc="per-sample dim to normalize over (0 = channels/features)")
    primary: ClassVar[str | None] = "dim"
    examples = ({}, {"dim": -1})

    def output_shape(self, x: Shape) -> Shape:
        if not -len(x) <= self.dim < len(x):
            raise ShapeError(f"dim {self.dim} is out of range for a rank-{len(x)} sample")
        return x


@register("softmax")
@dataclass(frozen=True)
class Softmax(_Softmax):
    """exp(x) / sum(exp(x)) along a dim."""


@register("log_softmax")
@dataclass(frozen=True)
class LogSoftmax(_Softmax):
    """log(softmax(x)), numerically stable."""
