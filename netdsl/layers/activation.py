"""Elementwise activations and softmax: shape-preserving, parameter-free."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from netdsl.errors import ShapeError
from netdsl.layers.base import Layer, Saved, Shape, arg, enum_kind, float_kind, int_kind
from netdsl.layers.registry import register

if TYPE_CHECKING:
    from torch import nn


class _Elementwise(Layer):
    torch_class: ClassVar[str] = ""  # the torch.nn class that computes it
    saves: ClassVar[str] = "input"  # what its derivative needs: "input", "output" (relu, sigmoid, tanh, softmax) or "none"
    examples: ClassVar[tuple[dict[str, Any], ...]] = ({},)

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        return {"input": [Saved(0)], "output": [Saved("out")], "none": []}[self.saves]

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from torch import nn

        module: nn.Module = getattr(nn, self.torch_class)(**self.torch_args())
        return module

    def torch_args(self) -> dict[str, Any]:
        return {}


def _simple(name: str, torch_class: str, doc: str, *aliases: str) -> type[Layer]:
    saves = {"relu": "output", "sigmoid": "output", "tanh": "output", "identity": "none"}.get(name, "input")
    namespace = {"__doc__": doc, "__module__": __name__, "torch_class": torch_class, "saves": saves}
    cls: type[Layer] = dataclass(frozen=True)(type(name, (_Elementwise,), namespace))
    return register(name, *aliases)(cls)


for _name, _torch, _doc, *_aliases in (
    ("relu", "ReLU", "max(0, x)"),
    ("relu6", "ReLU6", "min(max(0, x), 6) (MobileNet)"),
    ("sigmoid", "Sigmoid", "1 / (1 + exp(-x))"),
    ("tanh", "Tanh", "hyperbolic tangent (the classic LeNet-5)"),
    ("silu", "SiLU", "x * sigmoid(x) (swish)", "swish"),
    ("hardswish", "Hardswish", "x * relu6(x + 3) / 6 (MobileNetV3)"),
    ("hardsigmoid", "Hardsigmoid", "relu6(x + 3) / 6"),
    ("mish", "Mish", "x * tanh(softplus(x)) (Misra 2019; YOLOv4)"),
    ("identity", "Identity", "passes its input through unchanged"),
):
    _simple(_name, _torch, _doc, *_aliases)


@register("leaky_relu")
@dataclass(frozen=True)
class LeakyReLU(_Elementwise):
    """max(0, x) + slope * min(0, x)."""

    slope: float = arg(float_kind(0, 1), 0.01, doc="negative slope", alias=("negative_slope",))
    primary: ClassVar[str | None] = "slope"
    torch_class: ClassVar[str] = "LeakyReLU"
    examples = ({}, {"slope": 0.1})

    def torch_args(self) -> dict[str, Any]:
        return {"negative_slope": self.slope}


@register("elu")
@dataclass(frozen=True)
class ELU(_Elementwise):
    """x if x > 0 else alpha * (exp(x) - 1)."""

    alpha: float = arg(float_kind(0, 100), 1.0, doc="saturation value for negative inputs")
    primary: ClassVar[str | None] = "alpha"
    torch_class: ClassVar[str] = "ELU"
    examples = ({}, {"alpha": 0.5})

    def torch_args(self) -> dict[str, Any]:
        return {"alpha": self.alpha}


@register("gelu")
@dataclass(frozen=True)
class GELU(_Elementwise):
    """Gaussian error linear unit."""

    approximate: str = arg(enum_kind("none", "tanh"), "none", doc="'tanh' for the fast approximation")
    torch_class: ClassVar[str] = "GELU"
    examples = ({}, {"approximate": "tanh"})

    def torch_args(self) -> dict[str, Any]:
        return {"approximate": self.approximate}


@dataclass(frozen=True)
class _Softmax(_Elementwise):
    saves: ClassVar[str] = "output"
    dim: int = arg(int_kind(-3, 2), 0, doc="per-sample dim to normalize over (0 = channels/features)")
    primary: ClassVar[str | None] = "dim"
    examples = ({}, {"dim": -1})

    def output_shape(self, x: Shape) -> Shape:
        if not -len(x) <= self.dim < len(x):
            raise ShapeError(f"dim {self.dim} is out of range for a rank-{len(x)} sample")
        return x

    def torch_args(self) -> dict[str, Any]:
        return {"dim": self.dim + 1 if self.dim >= 0 else self.dim}  # per-sample dims skip the batch dim


@register("softmax")
@dataclass(frozen=True)
class Softmax(_Softmax):
    """exp(x) / sum(exp(x)) along a dim."""

    torch_class: ClassVar[str] = "Softmax"


@register("log_softmax")
@dataclass(frozen=True)
class LogSoftmax(_Softmax):
    """log(softmax(x)), numerically stable."""

    torch_class: ClassVar[str] = "LogSoftmax"
