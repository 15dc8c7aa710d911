"""Memory for a batch, without weights or torch: inference, and training (the tensors autograd keeps for backward,
gradients, optimizer state), from each layer type's `saved` rule (netdsl/layers/*.py)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from netdsl.analysis.counts import FLOAT_BYTES, BatchMemory, Memory, Training, node_row
from netdsl.ir import INPUT, Graph

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")


def optimizer_state(settings: Mapping[str, Any]) -> tuple[str, int]:
    """The optimizer `train.optimizer` names and how many state tensors it keeps per trainable parameter, as torch.optim
    does: sgd a momentum buffer when momentum > 0; adam/adamw exp_avg and exp_avg_sq; rmsprop square_avg (+ momentum)."""
    name = str(settings.get("name", "adam"))
    momentum = float(settings.get("momentum", 0.9)) > 0
    return name, {"sgd": int(momentum), "adam": 2, "adamw": 2, "rmsprop": 1 + int(momentum)}.get(name, 0)


def saved_bytes(graph: Graph, batch: int, freeze: tuple[str, ...] = (), input_grad: bool = False) -> int:
    """Bytes of the tensors autograd keeps for backward after a forward pass on `batch` samples, each tensor once
    (a relu's output that the next conv keeps too is one tensor). Parameters and buffers are not counted here.

    Training runs every output (`outputs:`): a layer none of them reads keeps nothing. Nor does one no gradient flows
    through: its inputs need none and it trains no parameter (layers frozen at the start of a network).
    `input_grad`: the network input itself needs a gradient.
    """
    live = set(graph.outputs)  # a layer no output reads (Inception's aux head without `outputs:`) is not run
    for node in reversed(graph.nodes):
        if node.name in live:
            live.update(node.inputs)
    grad = {INPUT: input_grad}
    same: dict[tuple[Any, ...], tuple[Any, ...]] = {}  # a view's output -> the tensor whose elements it shows
    kept: dict[tuple[Any, ...], int] = {}
    for node in graph.nodes:
        if node.name not in live:
            continue
        if node.layer.is_view:
            source = (node.inputs[0], node.port(0))
            same[(node.name, 0)] = same.get(source, source)
        needs = any(grad.get(i, False) for i in node.inputs) or node_row(node, 0, freeze).trainable > 0
        grad[node.name] = needs
        if not needs:
            continue
        for k, tensor in enumerate(node.layer.saved(node.input_shapes, node.shape)):
            if isinstance(tensor.of, str) and tensor.of.startswith("out"):  # "out": the output; "out1": its second (max-pool indices)
                port = int(tensor.of[3:] or 0)
                key: tuple[Any, ...] = (node.name, port)
                size = tensor.itemsize * math.prod(node.layer.port_shapes(node.input_shapes, node.shape)[port]) * batch
            elif isinstance(tensor.of, int):
                key = (node.inputs[tensor.of], node.port(tensor.of))
                size = tensor.itemsize * math.prod(node.input_shapes[tensor.of]) * batch
            else:
                key = (node.name, "own", k)
                size = tensor.itemsize * math.prod(tensor.shape) * (batch if tensor.batched else 1)
            kept[same.get(key, key)] = size
    return sum(kept.values())


def batch_memory(
    graph: Graph, memory: Memory, batch: int, trainable: int, optimizer: Mapping[str, Any] | None = None, freeze: tuple[str, ...] = ()
) -> BatchMemory:
    """Inference memory for a batch, and training memory too when `optimizer` (the resolved train.optimizer) is given."""
    inference = batch * (memory.input_bytes + memory.activation_bytes) + memory.param_bytes + memory.buffer_bytes
    if optimizer is None:
        return BatchMemory(batch, inference)
    name, states = optimizer_state(optimizer)
    gradients = FLOAT_BYTES * trainable
    training = Training(
        optimizer=name,
        state_per_param=states,
        saved_bytes=saved_bytes(graph, batch, freeze),
        param_bytes=memory.param_bytes,
        gradient_bytes=gradients,
        optimizer_bytes=states * gradients,
        buffer_bytes=memory.buffer_bytes,
    )
    return BatchMemory(batch, inference, training)
