"""Every registered layer type, every example: the shape rule and the parameter list equal what the PyTorch module really does."""

from __future__ import annotations

import pytest
import torch

import netdsl
from netdsl.backends.pytorch import build_module, cross_check
from netdsl.layers import LAYERS

CASES = [(name, i) for name, cls in sorted(LAYERS.items()) for i in range(len(cls.examples)) if cls.arity == 1]


def example_graph(name: str, example: dict) -> netdsl.Graph:
    """The example as the last layer of a spec, after the layers it names (`example_before`)."""
    cls = LAYERS[name]
    args = ", ".join(f"{k}: {list(v) if isinstance(v, tuple) else v}" for k, v in example.items())
    shape = "x".join(map(str, cls.example_input))
    before = "".join(f"  - {item}\n" for item in cls.example_before)
    item = f"{name}: {{{args}}}" if args else name
    return netdsl.load_text(f"netdsl: 1\nname: t\ninput: {shape}\nlayers:\n{before}  - {item}\n")


def build(name: str, example: dict) -> netdsl.Node:
    return example_graph(name, example).nodes[-1]


@pytest.mark.parametrize(("name", "index"), CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_shape_rule_and_parameters_match_the_module(name, index):
    if LAYERS[name].example_before or LAYERS[name].holds_tensor:  # it reads earlier layers' outputs (max_unpool: a pool's
        # indices), or it is a tensor held at its own path (class_token): check the whole compiled graph
        graph = example_graph(name, LAYERS[name].examples[index])
        assert cross_check(build_module(graph, seed=0), graph, batch=3) == []
        return
    node = build(name, LAYERS[name].examples[index])
    module = node.layer.to_torch(node.input_shapes).eval()
    with torch.no_grad():
        out = module(*(torch.randn(3, *s) for s in node.input_shapes))  # a reference argument (e.g. `to: input`) adds an input
    if node.port_count() > 1:  # e.g. a maxpool with indices: (values, indices)
        assert [tuple(t.shape) for t in out] == [(3, *s) for s in node.layer.port_shapes(node.input_shapes, node.shape)]
        out = out[0]
    assert tuple(out.shape) == (3, *node.shape)
    assert [(f"0.{k}", tuple(v.shape)) for k, v in module.named_parameters()] == node.params()
    assert [(f"0.{k}", tuple(v.shape)) for k, v in module.named_buffers()] == node.buffers()


@pytest.mark.parametrize(("name", "shapes"), [("add", [(4, 5, 5), (4, 5, 5)]), ("mul", [(4, 5, 5), (4, 1, 1)]), ("concat", [(4, 5, 5), (2, 5, 5), (1, 5, 5)])])
def test_merges_match_the_module(name, shapes):
    layer = LAYERS[name]()
    out = layer.to_torch(tuple(shapes))(*(torch.randn(2, *s) for s in shapes))
    assert tuple(out.shape) == (2, *layer.infer(tuple(shapes)))


def test_every_layer_type_has_a_torch_builder_and_an_example():
    for name, cls in LAYERS.items():
        assert cls.to_torch is not netdsl.layers.Layer.to_torch, name
        assert cls.examples or cls.arity == 0, name


def test_pad_channels_option_a_pads_evenly():
    node = build("pad_channels", {"out": 8, "where": "both"})
    x = torch.ones(1, *node.input_shapes[0])
    y = node.layer.to_torch(node.input_shapes)(x)
    assert y[0, :2].abs().sum() == 0 and y[0, -2:].abs().sum() == 0 and torch.all(y[0, 2:6] == 1)
