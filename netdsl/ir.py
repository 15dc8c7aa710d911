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
    ports: tuple[int, ...] = ()  # which output of each input it reads (empty: output 0 of every input)

    @property
    def data_inputs(self) -> tuple[str, ...]:
        """The inputs it reads as data (`from:` or the previous layer), without those its reference arguments add."""
        return self.inputs[: len(self.inputs) - sum(r.width for r in self.layer.refs())]

    def ref_inputs(self) -> dict[str, str]:
        """Each reference argument given (e.g. `to`) -> the resolved node it names (or `input`)."""
        out: dict[str, str] = {}
        at = len(self.data_inputs)
        for ref in self.layer.refs():
            out[ref.arg] = self.inputs[at]
            at += ref.width
        return out

    def port(self, i: int) -> int:
        """Which output of input i this node reads."""
        return self.ports[i] if self.ports else 0

    def port_count(self) -> int:
        """How many tensors its module returns (more than one: a tuple, port 0 first)."""
        return len(self.layer.port_shapes(self.input_shapes, self.shape))

    def params(self) -> list[Tensor]:
        """(path, shape) of each parameter, as the compiled module's named_parameters() lists them."""
        return [(f"{self.name}.{p}" if p else self.name, s) for p, s in self.layer.params(self.input_shapes)]  # "": the layer is the tensor

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
    args: tuple[tuple[str, Any], ...] = field(default=(), compare=False)  # a block instance's parameter values


@dataclass(frozen=True)
class Graph:
    """A whole network: input shape, nodes in topological order, and its output node(s), the main one first."""

    name: str
    input_shape: Shape
    nodes: tuple[Node, ...]
    output: str
    groups: tuple[Group, ...] = ()
    file: str = "<spec>"
    variables: dict[str, Any] = field(default_factory=dict)
    init: dict[str, Any] = field(default_factory=dict)  # spec-wide initialization settings (top-level `init:`)
    side_outputs: tuple[str, ...] = ()  # the further outputs a top-level `outputs:` lists after the main one
    output_names: tuple[str, ...] = ()  # each output's name as `outputs:` writes it (default: the output's path)

    def __post_init__(self) -> None:
        if len(self.output_names) != 1 + len(self.side_outputs):
            object.__setattr__(self, "output_names", (self.output, *self.side_outputs))

    @property
    def outputs(self) -> tuple[str, ...]:
        """Every output node (or `input`), the main one first: `outputs:` in the spec, else the last layer."""
        return (self.output, *self.side_outputs)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    @property
    def output_shape(self) -> Shape:
        """The main output's shape."""
        return self.shape_of(self.output)

    @property
    def output_shapes(self) -> tuple[Shape, ...]:
        return tuple(self.shape_of(o) for o in self.outputs)

    def shape_of(self, ref: str) -> Shape:
        """The shape of a node's output, or of the input."""
        return self.input_shape if ref == INPUT else self.node(ref).shape

    def state_dict_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter and buffer path with its shape, in the order of the compiled model's state_dict(): as torch
        does, a module's own parameters, then its own buffers, then each submodule's in the order they were added (a
        held tensor, e.g. ViT's class_token, is a parameter of the module above it)."""
        params: dict[str, dict[str, tuple[int, ...]]] = {"": {}}
        buffers: dict[str, dict[str, tuple[int, ...]]] = {"": {}}
        children: dict[str, list[str]] = {"": []}

        def module(path: str) -> str:
            if path not in params:
                parent = module(path.rpartition(".")[0]) if "." in path else ""
                params[path], buffers[path], children[path] = {}, {}, []
                children[parent].append(path)
            return path

        for n in self.nodes:
            if not n.layer.holds_tensor:
                module(n.name)
            for key, shape in n.params():
                params[module(key.rpartition(".")[0])][key] = shape
            for key, shape in n.buffers():
                buffers[module(key.rpartition(".")[0])][key] = shape
        out: dict[str, tuple[int, ...]] = {}
        stack = [""]
        while stack:
            path = stack.pop()
            out.update(params[path])
            out.update(buffers[path])
            stack.extend(reversed(children[path]))
        return out
