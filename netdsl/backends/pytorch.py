"""IR -> torch.fx.GraphModule: module paths equal the spec's names, forward is straight-line code.

The module tree holds one submodule per IR node at the node's dotted path (so parameter names equal
the IR's and torchvision-style state dicts load with strict=True); the forward is an fx graph with
one call per node, readable with `print(model.code)`, and the same object serves training,
torch.compile and ONNX export.
"""

from __future__ import annotations

import math
import operator
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn

from netdsl.backends.init import initialize
from netdsl.ir import INPUT, Graph, Node
from netdsl.layers.modules import functions as tensor_functions


class WeightsError(Exception):
    """A state dict does not fit the network: lists the missing, unexpected and mis-shaped paths."""


def _place(root: nn.Module, path: str, module: nn.Module | nn.Parameter) -> None:
    """Put a node's module (or the tensor a held-tensor layer is) at its dotted path, creating the modules above it."""
    *parents, leaf = path.split(".")
    parent = root
    for name in parents:
        if name not in parent._modules:
            parent.add_module(name, nn.Module())
        parent = getattr(parent, name)
    if isinstance(module, nn.Parameter):
        parent.register_parameter(leaf, module)
    else:
        parent.add_module(leaf, module)


def _held_function(node: Node) -> Any:
    """The function a held-tensor layer (ViT's class_token) computes from its input and its tensor."""
    return getattr(tensor_functions, node.layer.function)  # type: ignore[attr-defined]


def _class_name(name: str) -> str:
    words = "".join(c if c.isalnum() else " " for c in name).split()
    text = "".join(w[:1].upper() + w[1:] for w in words) or "Net"
    return text if text[0].isalpha() else f"Net{text}"


def build_module(graph: Graph, *, seed: int | None = None, device: str | torch.device | None = None, all_outputs: bool = False) -> fx.GraphModule:
    """The PyTorch module for a checked graph; `seed` makes the initialization reproducible.

    Its forward returns the main output; with `all_outputs` and a spec that lists several `outputs`, a tuple of
    them in that order. Layers only a side output reads keep their weights either way (state dicts stay whole).
    """
    seed = graph.init.get("seed", seed) if seed is None else seed
    devices = [torch.device(device)] if device is not None and torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices, enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        with torch.device(device) if device is not None else _no_device():
            root = nn.Module()
            for node in graph.nodes:
                _place(root, node.name, node.layer.to_torch(node.input_shapes))
        fx_graph = fx.Graph()
        values: dict[str | tuple[str, int], fx.Node] = {INPUT: fx_graph.placeholder(INPUT)}
        for node in graph.nodes:
            args = tuple(values[i] if node.port(k) == 0 else values[(i, node.port(k))] for k, i in enumerate(node.inputs))
            if node.layer.holds_tensor:
                call = fx_graph.call_function(_held_function(node), (*args, fx_graph.get_attr(node.name)))
            else:
                call = fx_graph.call_module(node.name, args)
            if node.port_count() > 1:  # a module that returns a tuple: ordinary consumers read its first item
                for port in range(1, node.port_count()):
                    values[(node.name, port)] = fx_graph.call_function(operator.getitem, (call, port))
                call = fx_graph.call_function(operator.getitem, (call, 0))
            values[node.name] = call
        if all_outputs and len(graph.outputs) > 1:
            fx_graph.output(tuple(values[o] for o in graph.outputs))
        else:
            fx_graph.output(values[graph.output])
        model = fx.GraphModule(root, fx_graph, class_name=_class_name(graph.name))
        model.graph.eliminate_dead_code()  # side heads (e.g. Inception's aux) keep their weights, skip the forward
        model.recompile()
        if not _is_meta(model):
            initialize(model, graph)
    for node in graph.nodes:
        if node.frozen:
            held = [model.get_parameter(node.name)] if node.layer.holds_tensor else []
            for p in held or model.get_submodule(node.name).parameters():
                p.requires_grad_(False)
    return model


class _no_device:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _is_meta(model: nn.Module) -> bool:
    return any(p.is_meta for p in model.parameters())


def compile(
    spec: Graph | str | os.PathLike[str],
    *,
    seed: int | None = None,
    device: str | torch.device | None = None,
    all_outputs: bool = False,
    **load_options: Any,
) -> fx.GraphModule:
    """A spec file (or a loaded Graph) as a PyTorch module: `netdsl.compile("specs/resnet50.yaml")` (see build_module)."""
    from netdsl.graph.load import load

    graph = spec if isinstance(spec, Graph) else load(spec, **load_options)
    return build_module(graph, seed=seed, device=device, all_outputs=all_outputs)


def node_outputs(model: nn.Module, graph: Graph, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run every IR node (side heads too) on x; each node's output by name, for shape checks."""
    values: dict[str | tuple[str, int], torch.Tensor] = {INPUT: x}
    for node in graph.nodes:
        args = tuple(values[i if node.port(k) == 0 else (i, node.port(k))] for k, i in enumerate(node.inputs))
        if node.layer.holds_tensor:
            out = _held_function(node)(*args, model.get_parameter(node.name))
        else:
            out = model.get_submodule(node.name)(*args)
        if node.port_count() > 1:
            for port in range(1, node.port_count()):
                values[(node.name, port)] = out[port]
            out = out[0]
        values[node.name] = out
    return {k: v for k, v in values.items() if isinstance(k, str)}


def cross_check(model: nn.Module, graph: Graph, batch: int = 2) -> list[str]:
    """Problems where the built module disagrees with the IR: counts, buffers, per-node shapes (empty if none)."""
    problems = []
    ir_params = {path: shape for node in graph.nodes for path, shape in node.params()}
    ir_buffers = {path: shape for node in graph.nodes for path, shape in node.buffers()}
    torch_params = {k: tuple(v.shape) for k, v in model.named_parameters()}
    torch_buffers = {k: tuple(v.shape) for k, v in model.named_buffers()}
    if torch_params != ir_params:
        problems.append(f"parameters differ: {_describe_mismatch(ir_params, torch_params)}")
    if torch_buffers != ir_buffers:
        problems.append(f"buffers differ: {_describe_mismatch(ir_buffers, torch_buffers)}")
    device = next(iter(model.parameters()), torch.empty(0)).device
    was_training = model.training
    model.eval()
    with torch.no_grad():
        outputs = node_outputs(model, graph, torch.randn(batch, *graph.input_shape, device=device))
    model.train(was_training)
    for node in graph.nodes:
        got = tuple(outputs[node.name].shape)
        if got != (batch, *node.shape):
            problems.append(f"{node.name}: PyTorch gives {got}, the IR says {(batch, *node.shape)}")
    return problems


def meta_cross_check(graph: Graph) -> list[str]:
    """cross_check on the meta device: the module is built and run without allocating any weights."""
    with torch.device("meta"):
        model = build_module(graph)
    return cross_check(model, graph)


def _describe_mismatch(expected: Mapping[str, tuple[int, ...]], got: Mapping[str, tuple[int, ...]]) -> str:
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    shaped = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
    parts = []
    if missing:
        parts.append(f"missing {_few(missing)}")
    if unexpected:
        parts.append(f"unexpected {_few(unexpected)}")
    if shaped:
        parts.append("mis-shaped " + _few([f"{k} (expected {list(expected[k])}, got {list(got[k])})" for k in shaped]))
    return "; ".join(parts)


def _few(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return f"{len(items)}: {shown}" + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def check_state_dict(model: nn.Module, state: Mapping[str, Any], strict: bool = True) -> str:
    """'' if `state` fits the model's state_dict (keys and shapes), else one line listing what does not."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(getattr(v, "shape", ())) for k, v in state.items()}
    if not strict:
        expected = {k: v for k, v in expected.items() if k in got}
        got = {k: v for k, v in got.items() if k in expected}
    return _describe_mismatch(expected, got)


def load_weights(model: nn.Module, state: Mapping[str, Any], strict: bool = True) -> None:
    """load_state_dict with an error that lists missing, unexpected and mis-shaped paths (no tensor dumps)."""
    problem = check_state_dict(model, state, strict)
    if problem:
        raise WeightsError(f"weights do not fit the network: {problem}")
    model.load_state_dict(dict(state), strict=strict)


def param_count(model: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in model.parameters())


def save_state_dict(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """torch.save of the state dict, written atomically (temp file + rename)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, target)
