"""The IR: a checked graph of layer nodes in topological order. Every backend reads this and nothing else."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from netdsl.errors import Loc
from netdsl.layers.base import Layer, Shape, Tensor

INPUT = "input"
"""The name by which nodes refer to the network's input."""


@dataclass(frozen=True)
class Node:
    """One layer application. `name` is its dotted module path; shapes are per sample (batch symbolic)."""

    name: str
    op: str
    layer: Layer
    inputs: tuple[str, ...]
    input_shapes: tuple[Shape, ...]
    shape: Shape
    loc: Loc
    frozen: bool = False
    init: Any = None

    def params(self) -> list[Tensor]:
        """(path, shape) of each parameter, as the compiled module's named_parameters() lists them."""
        return [(f"{self.name}.{p}", s) for p, s in self.layer.params(self.input_shapes)]

    def buffers(self) -> list[Tensor]:
        return [(f"{self.name}.{p}", s) for p, s in self.layer.buffers(self.input_shapes)]

    def macs(self) -> int:
        return self.layer.macs(self.input_shapes, self.shape)

    def param_count(self) -> int:
        return sum(math.prod(s) for _, s in self.params())

    def buffer_count(self) -> int:
        return sum(math.prod(s) for _, s in self.buffers())


@dataclass(frozen=True)
class Group:
    """A named sub-list of nodes (a submodule): a group, a repeat or a block instance."""

    path: str
    kind: str
    loc: Loc


@dataclass(frozen=True)
class Graph:
    """A whole network: input shape, nodes in topological order, and the node that is the output."""

    name: str
    input_shape: Shape
    nodes: tuple[Node, ...]
    output: str
    groups: tuple[Group, ...] = ()
    file: str = "<spec>"
    variables: dict[str, Any] = field(default_factory=dict)
    init: dict[str, Any] = field(default_factory=dict)  # spec-wide initialization settings (top-level `init:`)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    @property
    def output_shape(self) -> Shape:
        return self.input_shape if self.output == INPUT else self.node(self.output).shape

    def state_dict_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter and buffer path with its shape: what the compiled model's state_dict() holds."""
        out: dict[str, tuple[int, ...]] = {}
        for n in self.nodes:
            out.update(n.params())
            out.update(n.buffers())
        return out
