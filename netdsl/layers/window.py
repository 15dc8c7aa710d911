"""Window layers: Swin's shifted-window attention and patch merging over H x W x C maps (channels last), and MaxViT's
relative attention over maps already partitioned into G x P x C (groups x tokens x channels).

They follow torchvision's swin_transformer.py (Liu et al. 2021, "Swin Transformer: Hierarchical Vision Transformer using
Shifted Windows") and maxvit.py (Tu et al. 2022, "MaxViT: Multi-Axis Vision Transformer"), parameters at their names, so
published weights load by path; the modules are in netdsl/layers/modules/window.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from netdsl.errors import ShapeError
from netdsl.layers.base import Layer, Saved, Shape, Tensor, arg, float_kind, fmt_shape, int_kind, tuple_kind
from netdsl.layers.registry import register

if TYPE_CHECKING:
    from torch import nn


def _expect_map(x: Shape, what: str) -> None:
    if len(x) != 3:
        raise ShapeError(f"{what} needs an H x W x C input (channels last), got {fmt_shape(x)}; add a permute [1, 2, 0] before it")


def _pair(value: tuple[int, ...], what: str) -> tuple[int, int]:
    if len(value) == 1:
        return value[0], value[0]
    if len(value) != 2:
        raise ValueError(f"{what} takes one or two values (height, width), got {len(value)}")
    return value[0], value[1]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@register("shifted_window_attention")
@dataclass(frozen=True)
class ShiftedWindowAttention(Layer):
    """Self-attention within window x window patches of an H x W x C map, the windows shifted by `shift` (torchvision's
    ShiftedWindowAttention): pad H and W to window multiples, roll by -shift, attend in each window with a learned
    relative position bias (and a mask keeping regions the roll brought together apart), roll back, crop. The shift is
    dropped along a dim whose padded size the window covers. MACs per window of N positions: N*C*3C + N*C*C + 2*N*N*C."""

    heads: int = arg(int_kind(), doc="attention heads; must divide the channels C", alias=("num_heads",))
    window: tuple[int, ...] = arg(tuple_kind(1), (7, 7), doc="window height and width", alias=("window_size",))
    shift: tuple[int, ...] = arg(tuple_kind(0), (0, 0), doc="cyclic shift before partitioning (Swin: 0 and window // 2 alternately)", alias=("shift_size",))
    dropout: float = arg(float_kind(0, 1), 0.0, doc="dropout after the output projection (training only)")
    attention_dropout: float = arg(float_kind(0, 1), 0.0, doc="dropout on the attention weights (training only)")

    primary: ClassVar[str | None] = "heads"
    has_weights: ClassVar[bool] = True
    examples = (
        {"heads": 2, "window": (4, 4), "shift": (2, 2)},
        {"heads": 1, "window": 3},
        {"heads": 4, "window": (2, 3), "shift": (1, 1), "dropout": 0.1, "attention_dropout": 0.1},
        {"heads": 2, "window": 16, "shift": 8},  # the window covers the map: no shift, as torchvision
    )
    example_input: ClassVar[Shape] = (9, 10, 8)

    def __post_init__(self) -> None:
        # `window: 7` and `window: [7, 7]` are one layer (the spec writers spell an equal pair as one number)
        for name in ("window", "shift"):
            value = getattr(self, name)
            if isinstance(value, tuple) and len(value) == 1:
                object.__setattr__(self, name, value * 2)

    def check_args(self) -> None:
        window, shift = _pair(self.window, "window"), _pair(self.shift, "shift")
        if any(s >= w for s, w in zip(shift, window)):
            raise ValueError(f"shift {list(shift)} must be smaller than the window {list(window)} in each dim")

    def windows(self, x: Shape) -> tuple[int, int]:
        """How many windows the padded map has along H and along W."""
        wh, ww = _pair(self.window, "window")
        return _ceil_div(x[0], wh), _ceil_div(x[1], ww)

    def output_shape(self, x: Shape) -> Shape:
        _expect_map(x, self.type_name)
        if x[2] % self.heads:
            raise ShapeError(f"{self.heads} heads do not divide the {x[2]} channels (the input is {fmt_shape(x)})")
        return x

    def params(self, inputs: tuple[Shape, ...]) -> list[Tensor]:
        c = inputs[0][2]
        wh, ww = _pair(self.window, "window")
        table = ("relative_position_bias_table", ((2 * wh - 1) * (2 * ww - 1), self.heads))
        return [table, ("qkv.weight", (3 * c, c)), ("qkv.bias", (3 * c,)), ("proj.weight", (c, c)), ("proj.bias", (c,))]

    def buffers(self, inputs: tuple[Shape, ...]) -> list[Tensor]:
        wh, ww = _pair(self.window, "window")
        return [("relative_position_index", ((wh * ww) ** 2,))]  # flattened N*N, as torchvision stores it

    def macs(self, inputs: tuple[Shape, ...], out: Shape) -> int:
        nh, nw = self.windows(inputs[0])
        wh, ww = _pair(self.window, "window")
        n, c = wh * ww, inputs[0][2]
        return nh * nw * (n * c * 3 * c + n * c * c + 2 * n * n * c)

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        nh, nw = self.windows(inputs[0])
        wh, ww = _pair(self.window, "window")
        n, c = wh * ww, inputs[0][2]
        positions, scores = nh * nw * n, nh * nw * self.heads * n * n
        # the padded map (qkv's input), q, k^T, v, the merged heads (proj's input): 5 maps; the softmax; with attention
        # dropout its mask and the dropped weights; with dropout its mask on the projection
        own = 5 * positions * c + scores * (3 if self.attention_dropout else 1) + (positions * c if self.dropout else 0)
        return [Saved("own", (own,))]

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from netdsl.layers.modules.window import ShiftedWindowAttention as Module

        window, shift = _pair(self.window, "window"), _pair(self.shift, "shift")
        return Module(inputs[0][2], window, shift, self.heads, attention_dropout=self.attention_dropout, dropout=self.dropout)


@register("patch_merging")
@dataclass(frozen=True)
class PatchMerging(Layer):
    """Halve an H x W x C map to ceil(H/2) x ceil(W/2) x 2C (torchvision's PatchMerging): odd sizes padded with zeros,
    each 2x2 patch's features stacked to 4C (x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]), LayerNorm(4C)
    `norm`, then Linear(4C, 2C, bias=False) `reduction`. MACs: 4C * 2C per output position."""

    eps: float = arg(float_kind(0, 1, lo_open=True), 1e-5, doc="the LayerNorm's epsilon")

    has_weights: ClassVar[bool] = True
    examples = ({}, {"eps": 1e-6})
    example_input: ClassVar[Shape] = (5, 6, 4)

    def output_shape(self, x: Shape) -> Shape:
        _expect_map(x, self.type_name)
        return (_ceil_div(x[0], 2), _ceil_div(x[1], 2), 2 * x[2])

    def params(self, inputs: tuple[Shape, ...]) -> list[Tensor]:
        c = inputs[0][2]
        return [("reduction.weight", (2 * c, 4 * c)), ("norm.weight", (4 * c,)), ("norm.bias", (4 * c,))]

    def macs(self, inputs: tuple[Shape, ...], out: Shape) -> int:
        return out[0] * out[1] * 4 * inputs[0][2] * out[2]

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        positions = out[0] * out[1]  # the stacked 4C patches (the norm's input), its output (the reduction's), a mean and inverse std each
        return [Saved("own", (2 * positions * 2 * out[2] + 2 * positions,))]

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from netdsl.layers.modules.window import PatchMerging as Module

        return Module(inputs[0][2], self.eps)


@register("relative_attention")
@dataclass(frozen=True)
class RelativeAttention(Layer):
    """Multi-head self-attention within each group of a G x P x C input (groups x tokens x channels), P = s * s tokens of
    an s x s partition, with a learned relative position bias (torchvision's RelativePositionalMultiHeadAttention, as
    MaxViT's window and grid attention use it): C // head_dim heads; to_qkv, softmax(q k^T / sqrt(C) + bias) v, merge.
    The scale is C^-0.5, not head_dim^-0.5: torchvision's quirk, kept. No mask, no shift, no dropout inside.
    MACs per group: P*C*3C + P*C*C + 2*P*P*C (the linears and both attention matmuls)."""

    head_dim: int = arg(int_kind(), doc="channels per head; must divide the channels C (heads = C // head_dim)")

    primary: ClassVar[str | None] = "head_dim"
    has_weights: ClassVar[bool] = True
    examples = ({"head_dim": 4}, {"head_dim": 8}, {"head_dim": 2})
    example_input: ClassVar[Shape] = (3, 9, 8)

    def side(self, x: Shape) -> int:
        """s, the side of the square partition whose s * s tokens each group holds."""
        s = math.isqrt(x[1])
        if s * s != x[1]:
            raise ShapeError(f"relative_attention needs s * s tokens per group (an s x s partition), got {x[1]} (the input is {fmt_shape(x)})")
        return s

    def output_shape(self, x: Shape) -> Shape:
        if len(x) != 3:
            raise ShapeError(
                f"relative_attention needs a G x P x C input (groups x tokens x channels), got {fmt_shape(x)}; partition the map first (maxvit_attention)"
            )
        self.side(x)
        if x[2] % self.head_dim:
            raise ShapeError(f"head_dim {self.head_dim} does not divide the {x[2]} channels (the input is {fmt_shape(x)})")
        return x

    def params(self, inputs: tuple[Shape, ...]) -> list[Tensor]:
        s, c = self.side(inputs[0]), inputs[0][2]
        table = ("relative_position_bias_table", ((2 * s - 1) ** 2, c // self.head_dim))
        return [table, ("to_qkv.weight", (3 * c, c)), ("to_qkv.bias", (3 * c,)), ("merge.weight", (c, c)), ("merge.bias", (c,))]

    def buffers(self, inputs: tuple[Shape, ...]) -> list[Tensor]:
        p = inputs[0][1]
        return [("relative_position_index", (p, p))]  # P x P, not flattened as Swin's is: torchvision's layout

    def macs(self, inputs: tuple[Shape, ...], out: Shape) -> int:
        g, p, c = inputs[0]
        return g * (p * c * 3 * c + p * c * c + 2 * p * p * c)

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        g, p, c = inputs[0]  # the input (to_qkv's), then q, k^T, v, the merged heads (merge's input) and the softmax
        return [Saved(0), Saved("own", (4 * g * p * c + g * (c // self.head_dim) * p * p,))]

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from netdsl.layers.modules.window import RelativeAttention as Module

        return Module(inputs[0][2], self.head_dim, self.side(inputs[0]))
