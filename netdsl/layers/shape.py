"""Tensor layout: permute, reshape, transpose, split, channel_shuffle, select.

Dims are per-sample dims counted from 0, the batch dim left out (as Keras counts them); negative dims count
from the end. The torch modules add 1 to a non-negative dim for the batch dim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from netdsl.errors import ShapeError
from netdsl.layers.base import DIM, MAX_RANK, MAX_SIZE, Layer, Saved, Shape, arg, axis, expect_rank, fmt_shape, int_kind, int_list_kind
from netdsl.layers.registry import register

if TYPE_CHECKING:
    from torch import nn


def _list(v: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, v)) + "]"


@register("permute")
@dataclass(frozen=True)
class Permute(Layer):
    """Reorder the per-sample dims (from 0, batch excluded): output dim i is input dim dims[i]; [1, 2, 0] turns C x H x W into H x W x C."""

    dims: tuple[int, ...] = arg(int_list_kind(-MAX_RANK, MAX_RANK - 1, 1), doc="a permutation of the per-sample dims 0..rank-1 (negative: from the end)")

    primary: ClassVar[str | None] = "dims"
    examples = ({"dims": (1, 2, 0)}, {"dims": (2, 0, 1)}, {"dims": (0, -1, 1)})

    def order(self, x: Shape) -> tuple[int, ...]:
        """The dims as non-negative indices into x, or ShapeError unless they are a permutation of its dims."""
        dims = tuple(d % len(x) if -len(x) <= d < len(x) else d for d in self.dims)
        if sorted(dims) != list(range(len(x))):
            raise ShapeError(f"permute {_list(self.dims)} is not a permutation of 0..{len(x) - 1} (the input is {fmt_shape(x)})")
        return dims

    def output_shape(self, x: Shape) -> Shape:
        return tuple(x[d] for d in self.order(x))

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        return []  # a view or a copy: its gradient needs only the sizes

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from netdsl.layers.modules.basic import Permute as Module

        return Module(tuple(d + 1 for d in self.order(inputs[0])))

    def describe(self) -> str:
        return _list(self.dims)


@register("reshape")
@dataclass(frozen=True)
class Reshape(Layer):
    """Give each sample a new shape with the same number of elements (batch excluded; one size may be -1: inferred)."""

    shape: tuple[int, ...] = arg(int_list_kind(1, MAX_SIZE, 1, minus_one=True), doc="the per-sample output shape; one size may be -1")
    is_view: ClassVar[bool] = True

    primary: ClassVar[str | None] = "shape"
    examples = ({"shape": (4, 256)}, {"shape": (-1, 8, 8)}, {"shape": (1024,)}, {"shape": (2, 2, 16, 16)})

    def check_args(self) -> None:
        if self.shape.count(-1) > 1:
            raise ValueError(f"only one size may be -1; got {_list(self.shape)}")

    def output_shape(self, x: Shape) -> Shape:
        total, known = math.prod(x), math.prod(d for d in self.shape if d != -1)
        if -1 in self.shape:
            if total % known:
                raise ShapeError(f"reshape to {fmt_shape(self.shape)} does not fit the input {fmt_shape(x)} ({total} elements are not a multiple of {known})")
            return tuple(total // known if d == -1 else d for d in self.shape)
        if known != total:
            raise ShapeError(f"reshape to {fmt_shape(self.shape)} ({known} elements) does not fit the input {fmt_shape(x)} ({total} elements)")
        return self.shape

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        return []  # a view or a copy: its gradient needs only the sizes

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from netdsl.layers.modules.basic import Reshape as Module

        return Module(self.output_shape(inputs[0]))  # no -1 left: the batch dim stays dynamic

    def describe(self) -> str:
        return fmt_shape(self.shape)


@register("transpose")
@dataclass(frozen=True)
class Transpose(Layer):
    """Swap two per-sample dims a and b (from 0, batch excluded; negative: from the end)."""

    a: int = arg(DIM, doc="one per-sample dim")
    b: int = arg(DIM, doc="the other per-sample dim")

    examples = ({"a": 0, "b": 2}, {"a": -1, "b": -2})

    def dims(self, x: Shape) -> tuple[int, int]:
        a, b = axis(self.a, x, "transpose dim a"), axis(self.b, x, "transpose dim b")
        if a == b:
            raise ShapeError(f"transpose dims a = {self.a} and b = {self.b} are the same dim of the input {fmt_shape(x)}; give two different dims")
        return a, b

    def output_shape(self, x: Shape) -> Shape:
        a, b = self.dims(x)
        out = list(x)
        out[a], out[b] = x[b], x[a]
        return tuple(out)

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        return []  # a view or a copy: its gradient needs only the sizes

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from netdsl.layers.modules.basic import Transpose as Module

        a, b = self.dims(inputs[0])
        return Module(a + 1, b + 1)


@register("split", "chunk")
@dataclass(frozen=True)
class Split(Layer):
    """Split along a per-sample dim (from 0, batch excluded) into `sizes` (torch.split) or `parts` equal parts (torch.chunk).

    It has one output per part: ordinary consumers read the first, `from: NAME.K` reads part K.
    """

    sizes: Any = arg(int_list_kind(1, MAX_SIZE, 2), None, doc="the parts' sizes along dim, summing to its size")
    parts: Any = arg(int_kind(2), None, doc="this many equal parts (torch.chunk); they must divide the dim")
    dim: int = arg(DIM, 0, doc="per-sample dim to split (0 = channels/features; negative: from the end)")

    examples = ({"parts": 2}, {"sizes": (1, 3)}, {"sizes": (4, 8, 4), "dim": -1}, {"parts": 4, "dim": 1})

    def check_args(self) -> None:
        if (self.sizes is None) == (self.parts is None):
            raise ValueError("give one of 'sizes' or 'parts'" + (", not both" if self.sizes is not None else ""))

    def split(self, x: Shape) -> tuple[int, tuple[int, ...]]:
        """The dim (non-negative) and the part sizes along it, or ShapeError."""
        d = axis(self.dim, x, "split dim")
        n = x[d]
        if self.parts is not None:
            if n % self.parts:
                raise ShapeError(f"split into {self.parts} equal parts, but dim {self.dim} has {n}, not a multiple of {self.parts}")
            return d, (n // self.parts,) * self.parts
        if sum(self.sizes) != n:
            raise ShapeError(f"split sizes {_list(self.sizes)} sum to {sum(self.sizes)}, but dim {self.dim} has {n}")
        return d, self.sizes

    def port_shapes(self, inputs: tuple[Shape, ...], out: Shape) -> tuple[Shape, ...]:
        x = inputs[0]
        d, sizes = self.split(x)
        return tuple((*x[:d], size, *x[d + 1 :]) for size in sizes)

    def output_shape(self, x: Shape) -> Shape:
        return self.port_shapes((x,), x)[0]

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        return []  # a view or a copy: its gradient needs only the sizes

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from netdsl.layers.modules.basic import Split as Module

        d, sizes = self.split(inputs[0])
        return Module(sizes, d + 1)

    def describe(self) -> str:
        text = f"parts={self.parts}" if self.parts is not None else f"sizes={_list(self.sizes)}"
        return text + (f", dim={self.dim}" if self.dim else "")


@register("channel_shuffle")
@dataclass(frozen=True)
class ChannelShuffle(Layer):
    """Interleave the channels of `groups` groups (ShuffleNet): reshape C to groups x C/groups, transpose, flatten back."""

    groups: int = arg(int_kind(), doc="number of channel groups", alias=("g",))

    primary: ClassVar[str | None] = "groups"
    examples = ({"groups": 2}, {"groups": 4})

    def output_shape(self, x: Shape) -> Shape:
        expect_rank(x, (2, 3), self.type_name)
        if x[0] % self.groups:
            raise ShapeError(f"groups {self.groups} must divide the {x[0]} channels")
        return x

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        return []  # a view or a copy: its gradient needs only the sizes

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from torch import nn

        return nn.ChannelShuffle(self.groups)


@register("select", "index")
@dataclass(frozen=True)
class Select(Layer):
    """Take one index of a per-sample dim (from 0, batch excluded) and drop that dim: x[:, ..., index, ...]; index -1 is the last."""

    index: int = arg(int_kind(-MAX_SIZE, MAX_SIZE - 1), doc="position along dim (negative: from the end, -1 = the last)")
    dim: int = arg(DIM, 0, doc="per-sample dim to index (negative: from the end)")

    examples = ({"index": 1}, {"dim": -1, "index": -1}, {"dim": 1, "index": 3})

    def position(self, x: Shape) -> tuple[int, int]:
        """The dim and the index, both non-negative, or ShapeError."""
        if len(x) < 2:
            raise ShapeError(f"select removes a dim, so it needs an input of rank 2 or more, got {fmt_shape(x)}")
        d = axis(self.dim, x, "select dim")
        if not -x[d] <= self.index < x[d]:
            raise ShapeError(f"index {self.index} is out of range for dim {self.dim} of size {x[d]} (the input is {fmt_shape(x)})")
        return d, self.index % x[d]

    def output_shape(self, x: Shape) -> Shape:
        d, _ = self.position(x)
        return (*x[:d], *x[d + 1 :])

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        return []  # a view or a copy: its gradient needs only the sizes

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        from netdsl.layers.modules.basic import Select as Module

        d, i = self.position(inputs[0])
        return Module(d + 1, i)
