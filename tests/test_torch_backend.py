"""The PyTorch backend: the compiled module is exactly what the IR says, for every zoo spec."""

from __future__ import annotations

import io

import pytest
import torch

import netdsl
from netdsl.backends.pytorch import WeightsError, build_module, cross_check, load_weights, node_outputs
from netdsl.graph.input_sizes import input_rule
from tests.conftest import ROOT, SPECS, reference_state_dict, torch_zoo

ZOO = torch_zoo()
torch.set_num_threads(2)


def small_graph(name: str) -> netdsl.Graph:
    """The spec at a small input size where its shape rules allow one (keeps CI fast)."""
    graph = netdsl.load(SPECS / f"{name}.yaml")
    rule = input_rule(graph)
    if rule is None or rule.exact or rule.maximum is not None:
        return graph
    size = max(rule.minimum, 32)
    return netdsl.load(SPECS / f"{name}.yaml", input_shape=f"{graph.input_shape[0]}x{size}x{size}")


@pytest.fixture(scope="module", params=ZOO)
def zoo_model(request):
    graph = small_graph(request.param)
    return graph, build_module(graph, seed=0)


def test_counts_buffers_and_every_node_shape_agree_with_the_ir(zoo_model):
    graph, model = zoo_model
    assert cross_check(model, graph) == []
    assert sum(p.numel() for p in model.parameters()) == sum(n.param_count() for n in graph)
    assert sum(b.numel() for b in model.buffers()) == sum(n.buffer_count() for n in graph)


# Every zoo spec goes through torch.export in tests/test_onnx_zoo.py (the dynamo ONNX exporter starts with it, on the
# spec cut to two instances of each repeat); here, at full depth, the specs that exercise each kind of forward: plain
# modules, several outputs, numbered outputs (split), tensors held at a layer's path, windowed attention.
TORCH_EXPORT = ["resnet50", "googlenet", "shufflenet_v2_x1_0", "vit_b_16", "swin_t", "convnext_tiny", "efficientnet_b0", "nasnet_mobile"]


@pytest.mark.parametrize("name", TORCH_EXPORT)
def test_exports_with_torch_export(name):
    graph = small_graph(name)
    model = build_module(graph, seed=0)
    x = torch.randn(2, *graph.input_shape)
    exported = torch.export.export(model.eval(), (x,))
    with torch.no_grad():
        assert torch.allclose(exported.module()(x), model(x), atol=1e-5)


def test_resnet50_count_from_the_issue():
    model = netdsl.compile(ROOT / "specs" / "resnet50.yaml")
    assert sum(p.numel() for p in model.parameters()) == 25_557_032  # torchvision resnet50


def reference_tensors(name: str) -> dict[str, torch.Tensor]:
    out = {}
    for key, shape in reference_state_dict(name).items():
        out[key] = torch.zeros((), dtype=torch.long) if key.endswith("num_batches_tracked") else torch.randn(shape)
    return out


@pytest.mark.parametrize("name", ["alexnet", "vgg16", "resnet18", "resnet50", "resnet152", "densenet121", "mobilenet_v2", "inception_v3"])
def test_torchvision_layout_state_dict_loads_strictly(name):
    # keys and shapes from torchvision 0.29.1 (shared/reference/torchvision/NAME.state_dict.json), values random
    with torch.device("meta"):
        model = build_module(netdsl.load(SPECS / f"{name}.yaml"))
    state = reference_tensors(name)
    model = model.to_empty(device="cpu")
    load_weights(model, state, strict=True)
    first = next(iter(state))
    assert torch.equal(model.state_dict()[first], state[first])


def test_weights_that_do_not_fit_list_missing_unexpected_and_misshaped():
    model = netdsl.compile(SPECS / "lenet5.yaml")
    state = dict(model.state_dict())
    del state["c1.bias"]
    state["extra.weight"] = torch.zeros(3)
    state["f5.weight"] = torch.zeros(120, 401)
    with pytest.raises(WeightsError) as info:
        load_weights(model, state)
    assert str(info.value) == (
        "weights do not fit the network: missing 1: c1.bias; unexpected 1: extra.weight; mis-shaped 1: f5.weight (expected [120, 400], got [120, 401])"
    )


def test_partial_loading_ignores_missing_and_unexpected():
    model = netdsl.compile(SPECS / "lenet5.yaml")
    load_weights(model, {"c1.weight": torch.ones(6, 1, 5, 5), "other": torch.zeros(1)}, strict=False)
    assert torch.equal(model.c1.weight, torch.ones(6, 1, 5, 5))


def test_frozen_layers_do_not_require_grad():
    graph = netdsl.load_text(
        "netdsl: 1\nname: t\ninput: 3x8x8\nlayers:\n  - group: {name: backbone, frozen: true, layers: [conv: 4, bn]}\n  - gap\n  - linear: 2\n"
    )
    model = build_module(graph)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == {
        "backbone.0.weight": False,
        "backbone.0.bias": False,
        "backbone.1.weight": False,
        "backbone.1.bias": False,
        "2.weight": True,
        "2.bias": True,
    }


def test_forward_code_is_readable_straight_line():
    model = netdsl.compile(SPECS / "resnet18.yaml")
    code = model.code
    assert 'layer1_0_conv1 = getattr(self.layer1, "0").conv1(maxpool)' in code
    assert code.count("self.fc(") == 1


def test_side_heads_keep_weights_but_skip_the_forward():
    graph = netdsl.load(SPECS / "inception_v3.yaml")
    model = build_module(graph)
    assert any(k.startswith("AuxLogits.") for k in model.state_dict())
    assert "AuxLogits" not in model.code
    outputs = node_outputs(model.eval(), graph, torch.randn(1, 3, 299, 299))
    assert tuple(outputs["AuxLogits.fc"].shape) == (1, 1000)  # the aux head still runs when asked for


def test_channels_last_and_state_dict_round_trip():
    model = netdsl.compile(SPECS / "resnet18.yaml", input_shape="3x64x64").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        fast = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    assert torch.allclose(expected, fast, atol=1e-4)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = netdsl.compile(SPECS / "resnet18.yaml", input_shape="3x64x64").eval()
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    with torch.no_grad():
        assert torch.equal(fresh(x), expected)


def test_torch_compile_matches_eager():
    model = netdsl.compile(SPECS / "cifar_resnet20.yaml", seed=0).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        eager = model(x)
        compiled = torch.compile(model)(x)
    assert torch.allclose(eager, compiled, atol=1e-4)


def test_summarize_torch_cross_check(cli):
    code, out, err = cli("summarize", str(SPECS / "resnet18.yaml"), "--torch", "--input", "3x64x64")
    assert code == 0, err
    # 4 stem nodes + 8 basic blocks x 7 + 3 downsample convs and norms + avgpool + fc = 68
    assert (
        out.splitlines()[-1]
        == "PyTorch cross-check (meta device): 11,689,512 params, 9,620 buffer elements and the output shapes of 68 nodes agree with the IR"
    )
