"""Sequence layers over L x E samples (batch first, as torchvision's ViT): self-attention, LSTM, GRU, embedding."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from netdsl.errors import ShapeError
from netdsl.layers.base import BOOL, Layer, Saved, Shape, Tensor, arg, enum_kind, float_kind, fmt_shape, int_kind
from netdsl.layers.registry import register

if TYPE_CHECKING:
    from torch import nn


def _expect_sequence(x: Shape, what: str) -> None:
    if len(x) != 2:
        raise ShapeError(f"{what} needs an L x features input (batch first), got {fmt_shape(x)}; add a permute or reshape before it")


@functools.cache
def _torch_modules() -> dict[str, Any]:
    """The torch subclasses behind these layers, defined once on first use (the front end stays torch-free)."""
    import torch
    from torch import nn

    class SelfAttention(nn.MultiheadAttention):
        """nn.MultiheadAttention called as self-attention: forward(x) = attention(x, x, x)[0], weights not returned."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
            return super().forward(x, x, x, need_weights=False)[0]

    class LastStep(nn.Module):
        """Mixin body shared by the recurrent subclasses: the output sequence only, or its last time step."""

        last: bool

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = super().forward(x)[0]
            return out[:, -1] if self.last else out

        def extra_repr(self) -> str:
            return super().extra_repr() + (", output=last" if self.last else "")

    class LSTM(LastStep, nn.LSTM):  # type: ignore[misc]
        """nn.LSTM (batch first) returning a tensor, not (output, (h, c))."""

    class GRU(LastStep, nn.GRU):  # type: ignore[misc]
        """nn.GRU (batch first) returning a tensor, not (output, h)."""

    class TokenEmbedding(nn.Embedding):
        """nn.Embedding over ids given as floats: cast to long and clamped into [0, num - 1]."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # Clamped so that any input (the random ones the checks and the ONNX verification feed) is a valid id.
            return super().forward(x.long().clamp(0, self.num_embeddings - 1))

    return {"attention": SelfAttention, "lstm": LSTM, "gru": GRU, "embedding": TokenEmbedding}


@register("multihead_attention", "attention")
@dataclass(frozen=True)
class MultiheadAttention(Layer):
    """Self-attention over L x E, as nn.MultiheadAttention(batch_first) on (x, x, x); MACs L*E*3E + 2*L*L*E + L*E*E (in-projection, QK^T and AV, out-projection)."""

    heads: int = arg(int_kind(), doc="attention heads; must divide the embedding E", alias=("num_heads",))
    dropout: float = arg(float_kind(0, 1), 0.0, doc="dropout on the attention weights (training only)")
    bias: bool = arg(BOOL, True, doc="learn biases in the in- and out-projections")

    primary: ClassVar[str | None] = "heads"
    has_weights: ClassVar[bool] = True
    examples = ({"heads": 4}, {"heads": 2, "dropout": 0.1, "bias": False}, {"heads": 1})
    example_input: ClassVar[Shape] = (6, 16)

    def output_shape(self, x: Shape) -> Shape:
        _expect_sequence(x, self.type_name)
        if x[1] % self.heads:
            raise ShapeError(f"{self.heads} heads do not divide the embedding {x[1]}")
        return x

    def params(self, inputs: tuple[Shape, ...]) -> list[Tensor]:
        e = inputs[0][1]
        if not self.bias:
            return [("in_proj_weight", (3 * e, e)), ("out_proj.weight", (e, e))]
        return [("in_proj_weight", (3 * e, e)), ("in_proj_bias", (3 * e,)), ("out_proj.weight", (e, e)), ("out_proj.bias", (e,))]

    def macs(self, inputs: tuple[Shape, ...], out: Shape) -> int:
        length, e = inputs[0]
        return length * e * 3 * e + 2 * length * length * e + length * e * e

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        length, e = inputs[0]  # the input (in-projection's), q, k, v, the merged heads (out-projection's); without dropout torch's
        # fused attention keeps a log-sum-exp per head and position, with it the softmax, its mask and the dropped weights
        scores = 3 * self.heads * length * length if self.dropout else self.heads * length
        return [Saved(0), Saved("own", (4 * length * e + scores,))]

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        return _torch_modules()["attention"](inputs[0][1], self.heads, dropout=self.dropout, bias=self.bias, batch_first=True)


@dataclass(frozen=True)
class _Recurrent(Layer):
    hidden: int = arg(int_kind(), doc="hidden state size per direction", alias=("hidden_size",))
    layers: int = arg(int_kind(1, 64), 1, doc="stacked recurrent layers", alias=("num_layers",))
    bidirectional: bool = arg(BOOL, False, doc="also run backwards; the output concatenates both directions")
    dropout: float = arg(float_kind(0, 1), 0.0, doc="dropout between stacked layers (training only; needs layers >= 2)")
    bias: bool = arg(BOOL, True, doc="learn the input and hidden biases")
    output: str = arg(enum_kind("sequence", "last"), "sequence", doc="'sequence': L x (hidden * dirs); 'last': the last time step only")

    gates: ClassVar[int] = 1  # weight blocks stacked in each matrix (LSTM 4: i, f, g, o; GRU 3: r, z, n)
    primary: ClassVar[str | None] = "hidden"
    has_weights: ClassVar[bool] = True
    example_input: ClassVar[Shape] = (7, 5)
    examples = ({"hidden": 8}, {"hidden": 6, "layers": 2, "bidirectional": True, "dropout": 0.1, "output": "last"}, {"hidden": 4, "bias": False})

    def check_args(self) -> None:
        if self.dropout and self.layers == 1:
            raise ValueError(f"dropout {self.dropout} acts between stacked layers only; with layers: 1 it does nothing (add a dropout layer after it)")

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    def output_shape(self, x: Shape) -> Shape:
        _expect_sequence(x, self.type_name)
        width = self.hidden * self.directions
        return (width,) if self.output == "last" else (x[0], width)

    def layer_inputs(self, features: int) -> list[int]:
        """The input width of each stacked layer: the features, then the previous layer's output."""
        return [features] + [self.hidden * self.directions] * (self.layers - 1)

    def params(self, inputs: tuple[Shape, ...]) -> list[Tensor]:
        rows = self.gates * self.hidden
        out: list[Tensor] = []
        for k, width in enumerate(self.layer_inputs(inputs[0][1])):
            for suffix in ("", "_reverse")[: self.directions]:
                out += [(f"weight_ih_l{k}{suffix}", (rows, width)), (f"weight_hh_l{k}{suffix}", (rows, self.hidden))]
                if self.bias:
                    out += [(f"bias_ih_l{k}{suffix}", (rows,)), (f"bias_hh_l{k}{suffix}", (rows,))]
        return out

    def macs(self, inputs: tuple[Shape, ...], out: Shape) -> int:
        length, features = inputs[0]
        per_step = sum(self.directions * self.gates * self.hidden * (width + self.hidden) for width in self.layer_inputs(features))
        return length * per_step

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        module = _torch_modules()[self.type_name](
            inputs[0][1], self.hidden, self.layers, bias=self.bias, batch_first=True, dropout=self.dropout, bidirectional=self.bidirectional
        )
        module.last = self.output == "last"
        return module


@register("lstm")
@dataclass(frozen=True)
class LSTM(_Recurrent):
    """LSTM over L x features (nn.LSTM, batch first); `output: last` is torch's output[:, -1] (for a bidirectional net the backward half has then seen one step); MACs per step 4 * hidden * (in + hidden) per direction and layer (matrix products only)."""

    gates: ClassVar[int] = 4


@register("gru")
@dataclass(frozen=True)
class GRU(_Recurrent):
    """GRU over L x features (nn.GRU, batch first); `output: last` is torch's output[:, -1] (for a bidirectional net the backward half has then seen one step); MACs per step 3 * hidden * (in + hidden) per direction and layer (matrix products only)."""

    gates: ClassVar[int] = 3


@register("embedding")
@dataclass(frozen=True)
class Embedding(Layer):
    """Lookup table: L token ids (floats or ints, cast to long and clamped into [0, num - 1]) -> L x dim."""

    num: int = arg(int_kind(), doc="vocabulary size: ids run from 0 to num - 1", alias=("num_embeddings",))
    dim: int = arg(int_kind(), doc="vector size per token", alias=("embedding_dim",))

    has_weights: ClassVar[bool] = True
    examples = ({"num": 10, "dim": 4}, {"num": 1, "dim": 3})
    example_input: ClassVar[Shape] = (9,)

    def output_shape(self, x: Shape) -> Shape:
        if len(x) != 1:
            raise ShapeError(f"embedding needs an L input of token ids, got {fmt_shape(x)}")
        return (x[0], self.dim)

    def params(self, inputs: tuple[Shape, ...]) -> list[Tensor]:
        return [("weight", (self.num, self.dim))]

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        return [Saved(0, itemsize=8)]  # the int64 indices

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        return _torch_modules()["embedding"](self.num, self.dim)
