"""Counting without weights: parameters, buffers, MACs and memory, per node and in total."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from netdsl.ir import Graph, Node
from netdsl.layers.base import Shape

FLOAT_BYTES = 4  # float32 parameters and activations
COUNTER_BYTES = 8  # BatchNorm's num_batches_tracked is an int64 scalar


@dataclass(frozen=True)
class Row:
    """One line of a summary: a node, or a group rolled up at the chosen depth."""

    name: str
    type: str
    output_shape: Shape
    params: int
    trainable: int
    buffers: int
    macs: int
    depth: int
    is_header: bool = False  # a group shown expanded: its children follow and carry the numbers
    output: str = ""  # the output name when this node is one of several outputs (`outputs:` in the spec)
    input_shapes: tuple[Shape, ...] = ()  # the shape of each input; a rolled-up group: of each input from outside it
    connected: tuple[str, ...] = ()  # the rows it reads ("input", a node, a rolled-up group; "pool[1]": output 1 of pool)


@dataclass(frozen=True)
class Memory:
    """Bytes for one sample in float32, as torchinfo's footer estimates them."""

    input_bytes: int
    activation_bytes: int
    param_bytes: int
    buffer_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.input_bytes + self.activation_bytes + self.param_bytes + self.buffer_bytes


@dataclass(frozen=True)
class Training:
    """Bytes one training step holds for a batch (float32): what autograd saves, the parameters, their gradients and
    the optimizer's state tensors."""

    optimizer: str
    state_per_param: int  # optimizer state tensors per trainable parameter (adam: exp_avg and exp_avg_sq)
    saved_bytes: int  # activations kept for backward, the input batch included when the first layer keeps it
    param_bytes: int
    gradient_bytes: int
    optimizer_bytes: int
    buffer_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.saved_bytes + self.param_bytes + self.gradient_bytes + self.optimizer_bytes + self.buffer_bytes


@dataclass(frozen=True)
class BatchMemory:
    """Memory for a batch of `batch` samples: inference as the per-sample footer scaled, and training when asked."""

    batch: int
    inference_bytes: int  # input and every layer's output for the batch, plus params and buffers (no autograd)
    training: Training | None = None


@dataclass(frozen=True)
class Output:
    """One of the network's outputs: its name as `outputs:` gives it, the node it is, its shape."""

    name: str
    layer: str
    shape: Shape


@dataclass(frozen=True)
class Report:
    """Everything `summarize` prints: totals and per-node rows."""

    name: str
    input_shape: Shape
    output_shape: Shape
    params: int
    trainable: int
    buffers: int
    macs: int
    memory: Memory
    rows: tuple[Row, ...]
    outputs: tuple[Output, ...] = ()  # every output, the main one first
    batch_memory: BatchMemory | None = None  # memory for a batch (summarize --batch/--train): netdsl.analysis.memory

    @property
    def frozen(self) -> int:
        return self.params - self.trainable


def node_row(node: Node, depth: int, freeze: tuple[str, ...] = ()) -> Row:
    params = node.param_count()
    if node.frozen:
        trainable = 0
    elif freeze:
        from netdsl.lang.train_section import freeze_matches

        trainable = sum(math.prod(s) for p, s in node.params() if not any(freeze_matches(p, pattern) for pattern in freeze))
    else:
        trainable = params
    connected = tuple(name if node.port(i) == 0 else f"{name}[{node.port(i)}]" for i, name in enumerate(node.inputs))
    return Row(node.name, node.op, node.shape, params, trainable, node.buffer_count(), node.macs(), depth, input_shapes=node.input_shapes, connected=connected)


def analyze(graph: Graph, depth: int | None = None, freeze: tuple[str, ...] = ()) -> Report:
    """Count a graph; rows roll nodes deeper than `depth` (None: no limit) up into their group.

    `freeze`: train.transfer.freeze patterns; the parameters they match count as frozen, as in training.
    """
    outputs = tuple(Output(name, ref, graph.shape_of(ref)) for name, ref in zip(graph.output_names, graph.outputs))
    marked = {o.layer: o.name for o in outputs} if len(outputs) > 1 or (graph.nodes and graph.output != graph.nodes[-1].name) else {}
    leaves = [replace(node_row(n, n.name.count(".") + 1, freeze), output=marked.get(n.name, "")) for n in graph.nodes]
    buffer_bytes = 0
    for node in graph.nodes:
        for path, shape in node.buffers():
            buffer_bytes += COUNTER_BYTES if path.endswith("num_batches_tracked") else FLOAT_BYTES * math.prod(shape)
    params = sum(r.params for r in leaves)
    memory = Memory(
        input_bytes=FLOAT_BYTES * math.prod(graph.input_shape),
        activation_bytes=FLOAT_BYTES * sum(math.prod(n.shape) for n in graph.nodes),
        param_bytes=FLOAT_BYTES * params,
        buffer_bytes=buffer_bytes,
    )
    return Report(
        name=graph.name,
        input_shape=graph.input_shape,
        output_shape=graph.output_shape,
        params=params,
        trainable=sum(r.trainable for r in leaves),
        buffers=sum(r.buffers for r in leaves),
        macs=sum(r.macs for r in leaves),
        memory=memory,
        rows=tuple(rollup(graph, leaves, depth)),
        outputs=outputs,
    )


def rollup(graph: Graph, leaves: list[Row], depth: int | None) -> list[Row]:
    """Rows at a depth: nodes within it, groups at its edge summed, expanded groups as header rows.

    A row's `connected` names rows as shown: an input inside a rolled-up group is that group; a group reads what its
    members read from outside it."""
    kinds = {g.path: g.kind for g in graph.groups}
    out: list[Row] = []
    shown: set[str] = set()
    for row, node in zip(leaves, graph.nodes):
        parts = row.name.split(".")
        for k in range(1, len(parts)):
            prefix = ".".join(parts[:k])
            if prefix in shown or prefix not in kinds:
                continue
            if depth is not None and k >= depth:
                break
            shown.add(prefix)
            out.append(Row(prefix, kinds[prefix], node.shape, 0, 0, 0, 0, k, is_header=True))
        inputs = [(_visible(name, depth), shape) for name, shape in zip(row.connected, row.input_shapes)]
        if depth is None or len(parts) <= depth:
            out.append(replace(row, connected=tuple(name for name, _ in inputs)))
            continue
        prefix = ".".join(parts[:depth])
        if out and out[-1].name == prefix and not out[-1].is_header:
            last = out[-1]
            outside = [(n, sh) for n, sh in inputs if n != prefix and n not in last.connected]
            out[-1] = Row(
                prefix,
                last.type,
                row.output_shape,
                last.params + row.params,
                last.trainable + row.trainable,
                last.buffers + row.buffers,
                last.macs + row.macs,
                depth,
                input_shapes=last.input_shapes + tuple(sh for _, sh in outside),
                connected=last.connected + tuple(n for n, _ in outside),
            )
        else:
            outside = list(dict(n_sh for n_sh in inputs if n_sh[0] != prefix).items())
            out.append(
                Row(
                    prefix,
                    kinds.get(prefix, "group"),
                    row.output_shape,
                    row.params,
                    row.trainable,
                    row.buffers,
                    row.macs,
                    depth,
                    input_shapes=tuple(sh for _, sh in outside),
                    connected=tuple(n for n, _ in outside),
                )
            )
    return out


def _visible(name: str, depth: int | None) -> str:
    """The row a node shows up in at a depth: itself, or the group it is rolled up into ("pool[1]" keeps its port)."""
    if depth is None:
        return name
    parts = name.partition("[")[0].split(".")
    return name if len(parts) <= depth else ".".join(parts[:depth])
