"""Weight initialization declared in the spec: per layer (`init:` on the layer) or per layer type (top-level `init:`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from netdsl.ir import Graph, Node
from netdsl.lang.init_schema import METHOD_ARGS, canonical_method

FUNCTIONS: dict[str, Callable[..., Any]] = {
    "kaiming_normal": nn.init.kaiming_normal_,
    "kaiming_uniform": nn.init.kaiming_uniform_,
    "xavier_normal": nn.init.xavier_normal_,
    "xavier_uniform": nn.init.xavier_uniform_,
    "normal": nn.init.normal_,
    "uniform": nn.init.uniform_,
    "trunc_normal": nn.init.trunc_normal_,
    "zeros": nn.init.zeros_,
    "ones": nn.init.ones_,
    "constant": nn.init.constant_,
    "orthogonal": nn.init.orthogonal_,
}


def _as_mapping(spec: Any) -> dict[str, Any]:
    return {"method": spec} if isinstance(spec, str) else dict(spec)


def _apply(tensor: torch.Tensor, method: str, options: dict[str, Any]) -> None:
    method = canonical_method(method)
    if method == "default":
        return
    kwargs = {k: v for k, v in options.items() if k in METHOD_ARGS[method]}
    FUNCTIONS[method](tensor, **kwargs)


def init_node(module: nn.Module, spec: Any) -> None:
    """Initialize one layer's weights (and biases) from its init spec: `weight` and `bias` where the module has them,
    else every matrix and every vector of it (attention's in_proj_weight, an LSTM's weight_ih_l0 and bias_hh_l0, ...)."""
    options = _as_mapping(spec)
    method = options.get("method", "default")
    weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
    weights: list[torch.Tensor]
    biases: list[torch.Tensor]
    if isinstance(weight, torch.Tensor):
        weights = [weight]
        biases = [bias] if isinstance(bias, torch.Tensor) else []
    else:
        weights = [p for p in module.parameters() if p.dim() >= 2]
        biases = [p for p in module.parameters() if p.dim() == 1]
    bias_spec = options.get("bias", "default" if canonical_method(method) == "default" else "zeros")
    with torch.no_grad():
        for weight in weights:
            _apply(weight, method, options)
        for bias in biases:
            if isinstance(bias_spec, (int, float)) and not isinstance(bias_spec, bool):
                nn.init.constant_(bias, float(bias_spec))
            else:
                _apply(bias, str(bias_spec), {})


def residual_norms(graph: Graph) -> list[Node]:
    """The BatchNorm that ends the residual branch of each `add` (zeroing its scale starts the block as identity).

    Of an add's inputs, the residual branch is the one with the most layers of its own (not shared with the
    other inputs); its last BatchNorm (through parameter-free layers) is the one torchvision's
    zero_init_residual zeroes -- not the projection shortcut's.
    """
    by_name = {n.name: n for n in graph.nodes}
    found = []
    for node in graph.nodes:
        if node.op != "add":
            continue
        ancestors = {name: _ancestors(name, by_name) for name in node.inputs}
        shared = set.intersection(*ancestors.values())
        longest = max(node.inputs, key=lambda name: len(ancestors[name] - shared))
        norm = _last_norm(longest, by_name)
        if norm is not None:
            found.append(norm)
    return found


def _ancestors(name: str, by_name: dict[str, Node]) -> set[str]:
    seen, stack = {name}, [name]
    while stack:
        node = by_name.get(stack.pop())
        for parent in node.inputs if node else ():
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def _last_norm(name: str, by_name: dict[str, Node]) -> Node | None:
    node = by_name.get(name)
    while node is not None and node.op != "batchnorm" and not node.params() and len(node.inputs) == 1:
        node = by_name.get(node.inputs[0])
    return node if node is not None and node.op == "batchnorm" else None


def initialize(model: nn.Module, graph: Graph) -> None:
    """Apply the spec's init settings on top of PyTorch's defaults."""
    defaults = graph.init
    for node in graph.nodes:
        spec = node.init if node.init is not None else defaults.get(node.op)
        if spec is not None:
            init_node(model.get_submodule(node.name), spec)
    if defaults.get("zero_init_residual"):
        with torch.no_grad():
            for norm in residual_norms(graph):
                weight = model.get_submodule(norm.name).weight
                if isinstance(weight, torch.Tensor):
                    weight.zero_()
