"""Every zoo spec exports with the dynamo exporter and verifies against PyTorch (onnx.checker, then onnxruntime).

The dynamo exporter costs about 30-70 ms per node on 2 cores (torch.export, decomposition and translation
each walk the whole graph), so the full zoo at full depth takes about 630 s, 257 s of it for the 3,338 nodes
of preact_resnet1001 alone. Each spec is therefore exported at a small input size (as the PyTorch backend's
tests do) and with each repeat cut to its first two instances (`shallow`): every layer type, option, block
and wiring pattern of the spec is still exported, the first instance (stride, projection) and a repeated one
(identity shortcut) of every repeat, at full width. Deep siblings whose cut graphs are identical (ResNet-50/101/152,
VGG-16/19, the CIFAR ResNets, ...) are exported once: the exporter sees the same network. And torch.onnx
rebuilds its ONNX function registry (~1 s) on every export; these tests build it once. The full-depth zoo, at
the same small input sizes, runs with NETDSL_ONNX_FULL_ZOO=1.
"""

from __future__ import annotations

import functools
import os
from dataclasses import replace

import pytest
import torch

import netdsl
from netdsl.deploy.onnx import export
from netdsl.errors import ShapeError
from netdsl.ir import INPUT, Graph
from tests.conftest import SPECS
from tests.onnx_registry import shared_onnx_registry  # noqa: F401 (an autouse fixture)
from tests.test_torch_backend import ZOO, small_graph

torch.set_num_threads(2)
FULL = os.environ.get("NETDSL_ONNX_FULL_ZOO") == "1"


def _within(name: str, path: str) -> bool:
    return name == path or name.startswith(path + ".")


def shallow(graph: Graph, keep: int = 2) -> Graph:
    """The graph with every repeat cut to its first `keep` instances, shapes re-inferred.

    A repeat's instances are the siblings (same parent path) made from the same source item (same location);
    that covers named repeats, spliced ones and `each`-named ones alike. Whatever consumed the output of the
    last instance now consumes the output of the last kept one.
    """
    units = [(g.path, g.loc) for g in graph.groups] + [(n.name, n.loc) for n in graph.nodes]
    siblings: dict[tuple[object, ...], list[str]] = {}
    for path, loc in units:
        siblings.setdefault((path.rpartition(".")[0], loc), []).append(path)
    stands_for: dict[str, str] = {}
    for paths in siblings.values():
        if len(paths) <= keep:  # most units are not repeated: skip them before scanning the graph (collection time)
            continue
        alive = [n.name for n in graph.nodes if n.name not in stands_for]
        members = [[name for name in alive if _within(name, p)] for p in paths]
        if not all(members[:keep]):
            continue
        for names in members[keep:]:
            stands_for.update(dict.fromkeys(names, members[keep - 1][-1]))

    def resolve(name: str) -> str:
        while name in stands_for:
            name = stands_for[name]
        return name

    shapes = {INPUT: graph.input_shape}
    nodes = []
    for node in graph.nodes:
        if node.name in stands_for:
            continue
        inputs = tuple(resolve(i) for i in node.inputs)
        input_shapes = tuple(shapes[i] for i in inputs)
        shapes[node.name] = node.layer.infer(input_shapes)
        nodes.append(replace(node, inputs=inputs, input_shapes=input_shapes, shape=shapes[node.name]))
    groups = tuple(g for g in graph.groups if any(_within(n.name, g.path) for n in nodes))
    return replace(graph, nodes=tuple(nodes), output=resolve(graph.output), groups=groups)


@functools.cache
def zoo_graph(name: str) -> Graph:
    if name == "inception_v3":  # its AuxLogits head fixes the input at 299; the head is not in the forward (nor the ONNX graph)
        graph = netdsl.load(SPECS / "inception_v3.yaml", variables={"aux_logits": False}, input_shape="3x75x75")
    else:
        graph = small_graph(name)
    if FULL:
        return graph
    try:
        return shallow(graph)
    except ShapeError:  # SegNet: cutting the encoder's repeats breaks the decoder's unpooling by their indices; exported whole
        return graph


def structure(graph: Graph) -> tuple[object, ...]:
    """What the exporter sees: every node's layer, wiring and shapes; module paths only name the weights."""
    position = {INPUT: -1} | {n.name: i for i, n in enumerate(graph.nodes)}
    nodes = tuple((n.layer, tuple(position[i] for i in n.inputs), n.input_shapes, n.shape) for n in graph.nodes)
    return graph.input_shape, position[graph.output], nodes


def same_network_groups() -> list[list[str]]:
    """The zoo specs grouped by what the exporter sees once cut: each group is exported once, by its first spec."""
    groups: dict[tuple[object, ...], list[str]] = {}
    for name in ZOO:
        groups.setdefault(structure(zoo_graph(name)), []).append(name)
    return list(groups.values())


GROUPS = same_network_groups()  # front end only (no torch): about 5 s for the whole zoo, at collection


@pytest.mark.parametrize("names", GROUPS, ids=["+".join(g) for g in GROUPS])
def test_zoo_spec_exports_and_verifies(names, tmp_path):
    graph = zoo_graph(names[0])
    result = export(graph, tmp_path / f"{names[0]}.onnx")
    assert [c.batch for c in result.comparisons] == [1, 3]
    assert all(c.ok for c in result.comparisons), result.comparisons
    assert result.info.exporter == "dynamo"  # no spec needs the fallback
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{names[0]}.onnx"]


def test_every_zoo_spec_is_in_one_export_group():
    assert sorted(n for g in GROUPS for n in g) == sorted(ZOO)
    assert set(ZOO) >= {"efficientnet_b0", "vit_b_16", "resnet18", "mobilenet_v1"}  # family representatives and the rest
    if not FULL:  # the cut makes deep siblings one network: ResNet-50/101/152 (torchvision's bottleneck ResNets) among them
        assert ["resnet101", "resnet152", "resnet50"] in GROUPS  # ZOO is sorted by name


def test_shallow_keeps_two_instances_of_each_repeat():
    graph = shallow(small_graph("resnet152"))  # layers [3, 8, 36, 3] -> [2, 2, 2, 2]
    blocks = sorted({n.name.split(".")[0] + "." + n.name.split(".")[1] for n in graph.nodes if n.name.startswith("layer")})
    assert blocks == [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    assert graph.node("fc").inputs == ("avgpool",)
    dense = shallow(small_graph("densenet121"))  # dense blocks of 6/12/24/16 layers -> 2 each; channels re-inferred
    assert sorted({n.name.rsplit(".", 2)[-2] for n in dense.nodes if ".denselayer" in n.name}) == ["denselayer1", "denselayer2"]
    assert dense.node("features.transition1.conv").input_shapes[0][0] == 64 + 2 * 32
