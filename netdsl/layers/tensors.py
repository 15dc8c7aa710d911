"""Layers that are one learnable tensor held directly at the layer's own path, as torchvision holds ViT's `class_token`,
`encoder.pos_embedding` and ConvNeXt's `layer_scale`: the parameter is an attribute of the enclosing module, not of a
submodule, so published state dicts load by path. to_torch returns the nn.Parameter itself; the compiled forward reads
it and calls `function` (in netdsl.layers.modules.basic) on the input and the tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from netdsl.layers.base import Layer, Saved, Shape, Tensor, arg, expect_rank, float_kind, int_kind
from netdsl.layers.registry import register

if TYPE_CHECKING:
    from torch import nn


class HeldTensor(Layer):
    """Base: one parameter at the layer's path (params() lists it with the empty relative path "")."""

    holds_tensor: ClassVar[bool] = True
    function: ClassVar[str] = ""  # torch_modules.<function>(x, tensor)

    def tensor_shape(self, x: Shape) -> Shape:
        raise NotImplementedError

    def params(self, inputs: tuple[Shape, ...]) -> list[Tensor]:
        return [("", self.tensor_shape(inputs[0]))]

    def initial(self, shape: Shape) -> nn.Parameter:
        raise NotImplementedError

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Parameter:  # type: ignore[override]
        return self.initial(self.tensor_shape(inputs[0]))


@register("class_token")
@dataclass(frozen=True)
class ClassToken(HeldTensor):
    """Prepend a learnable token to an L x E sequence (ViT): L+1 x E; the tensor is 1 x 1 x E, initialized to zeros."""

    function: ClassVar[str] = "prepend_token"
    examples = ({},)
    example_input: ClassVar[Shape] = (6, 8)

    def output_shape(self, x: Shape) -> Shape:
        expect_rank(x, (2,), "class_token")
        return (x[0] + 1, x[1])

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        return []  # a concatenation

    def tensor_shape(self, x: Shape) -> Shape:
        return (1, 1, x[-1])

    def initial(self, shape: Shape) -> nn.Parameter:
        import torch

        return torch.nn.Parameter(torch.zeros(shape))


@register("pos_embedding")
@dataclass(frozen=True)
class PosEmbedding(HeldTensor):
    """Add a learnable position embedding of 1 x (input shape), initialized from N(0, std^2) (ViT's encoder.pos_embedding).

    One value per position and feature, broadcast over the batch."""

    std: float = arg(float_kind(0, 10), 0.02, doc="standard deviation of the initial values")
    function: ClassVar[str] = "add"
    examples = ({}, {"std": 0.1})
    example_input: ClassVar[Shape] = (5, 8)

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        return []  # an addition

    def tensor_shape(self, x: Shape) -> Shape:
        return (1, *x)

    def initial(self, shape: Shape) -> nn.Parameter:
        import torch

        return torch.nn.Parameter(torch.empty(shape).normal_(std=self.std))


@register("layer_scale")
@dataclass(frozen=True)
class LayerScale(HeldTensor):
    """Scale by a learnable factor per entry of per-sample dim `dim`, initialized to `value` (ConvNeXt's layer_scale).

    The tensor has that dim's size and 1 in the dims after it: C x 1 x 1 for C x H x W at dim 0 (CaiT, ConvNeXt)."""

    value: float = arg(float_kind(0, 1e6), 1e-6, doc="the initial factor")
    dim: int = arg(int_kind(-3, 2), 0, doc="the per-sample dim with one factor per entry (0: channels; -1: the last dim)")
    function: ClassVar[str] = "mul"
    examples = ({}, {"value": 0.1, "dim": -1})

    def tensor_shape(self, x: Shape) -> Shape:
        if not -len(x) <= self.dim < len(x):
            from netdsl.errors import ShapeError

            raise ShapeError(f"dim {self.dim} is out of range for the input {'x'.join(map(str, x))}")
        at = self.dim % len(x)
        return (x[at], *(1 for _ in x[at + 1 :]))

    def output_shape(self, x: Shape) -> Shape:
        self.tensor_shape(x)
        return x

    def initial(self, shape: Shape) -> nn.Parameter:
        import torch

        return torch.nn.Parameter(torch.full(shape, self.value))
