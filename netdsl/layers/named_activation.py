"""`activation: {fn: NAME}`: an elementwise activation chosen by a value, so a block can take its activation as a parameter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from netdsl.layers import activation
from netdsl.layers.base import Layer, Shape, arg, enum_kind
from netdsl.layers.registry import LAYERS, loaded, register

if TYPE_CHECKING:
    from torch import nn

ELEMENTWISE = tuple(
    name
    for name, cls in loaded().items()
    if issubclass(cls, activation._Elementwise) and not issubclass(cls, activation._Softmax) and cls is not activation._Elementwise
)
"""The registered elementwise activations (relu, relu6, hardswish, ...), in registration order."""


@register("activation", "act")
@dataclass(frozen=True)
class Activation(Layer):
    """The elementwise activation `fn` names, with its default options; it becomes that layer (summaries show `fn`)."""

    fn: str = arg(enum_kind(*ELEMENTWISE), doc="which activation: " + ", ".join(ELEMENTWISE))
    primary: ClassVar[str | None] = "fn"
    examples = ({"fn": "relu6"}, {"fn": "hardswish"})

    def resolved(self) -> Layer:
        return LAYERS[self.fn]()

    def output_shape(self, x: Shape) -> Shape:
        return x

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        return self.resolved().to_torch(inputs)
