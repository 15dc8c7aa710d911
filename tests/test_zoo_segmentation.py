"""Dense-prediction and multi-output networks of the zoo: torchvision's segmentation models and GoogLeNet compute
torchvision's own function; SegNet and U-Net build, count and run as their papers describe."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import netdsl
from tests.conftest import DATA, SPECS, params_of, reference_models

TORCHVISION = DATA / "torchvision"  # copies of shared/reference/torchvision (torchvision 0.29.1, torch 2.14.1)

pytestmark = pytest.mark.usefixtures("one_thread")


def _fill_module():
    """shared/reference/torchvision/fill.py: the deterministic weights and input behind outputs/*.json."""
    spec = importlib.util.spec_from_file_location("torchvision_fill", TORCHVISION / "fill.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FILL = _fill_module()


def reference_output(name: str) -> dict:
    """What torchvision computes for the filled weights and reference input (outputs/NAME.json)."""
    return json.loads((TORCHVISION / "outputs" / f"{name}.json").read_text())


def same_both_ways(value: int | tuple[int, ...]) -> int:
    """A layer's per-dimension setting (stride, dilation) when it is the same in H and W."""
    values = set(value) if isinstance(value, tuple) else {value}
    assert len(values) == 1, value
    return values.pop()


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| over max |want|: the error of the whole vector, not of its smallest entries."""
    return float(np.abs(got - want).max() / np.abs(want).max())


def run_filled(model: torch.nn.Module, input_shape: list[int]) -> np.ndarray:
    """Fill the module as torchvision's was, in float64 and eval mode, and run it on the reference input."""
    model.load_state_dict(FILL.fill_state_dict(model.state_dict()), strict=True)
    model = model.double().eval()
    with torch.no_grad():
        return model(FILL.reference_input(tuple(input_shape))).numpy()


# torchvision.models.segmentation.NAME(weights=None, weights_backbone=None) and torchvision.models.googlenet(weights=None,
# init_weights=False): the constructors of outputs/NAME.json, whose `params` is sum(p.numel() for p in model.parameters())
TORCHVISION_MODELS = ["fcn_resnet50", "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large", "googlenet"]


@pytest.mark.parametrize("name", TORCHVISION_MODELS)
def test_torchvision_state_dict_layout(name: str) -> None:
    expected = json.loads((TORCHVISION / f"{name}.state_dict.json").read_text())
    got = {k: list(v) for k, v in netdsl.load(SPECS / f"{name}.yaml").state_dict_shapes().items()}
    assert got == expected
    assert list(got) == list(expected)  # same order as torchvision's state_dict too


@pytest.mark.parametrize("name", TORCHVISION_MODELS)
def test_torchvision_parameter_count(name: str) -> None:
    graph = netdsl.load(SPECS / f"{name}.yaml")
    reference = reference_output(name)
    assert params_of(graph) == reference["params"]
    assert tuple(graph.input_shape) == tuple(reference["input_shape"][1:])
    assert tuple(graph.output_shape) == tuple(reference["output_shape"][1:])
    if name in reference_models():  # tests/data/torchvision/models.json: googlenet, 13,004,888 with its aux heads
        assert params_of(graph) == reference_models()[name]["params"]


@pytest.mark.parametrize("name", TORCHVISION_MODELS)
def test_same_function_as_torchvision(name: str) -> None:
    """Filled by the same rule, the compiled spec computes torchvision's output to float64 rounding."""
    reference = reference_output(name)
    got = run_filled(netdsl.compile(SPECS / f"{name}.yaml"), reference["input_shape"])
    assert list(got.shape) == reference["output_shape"]
    flat = got.reshape(-1)
    at = reference["indices"] if reference["indices"] is not None else slice(None)
    assert relative_error(flat[at], np.array(reference["values"])) <= 1e-7
    for key, value in (("sum", flat.sum()), ("l2", np.sqrt((flat**2).sum())), ("std", flat.std())):
        assert abs(value - reference[key]) <= 1e-7 * abs(reference[key]), key


def test_mobilenet_v3_large_blocks_compute_torchvision_classifier() -> None:
    """The block library's MobileNetV3-Large features, under torchvision's classifier head, are torchvision's mobilenet_v3_large."""
    text = """
netdsl: 1
name: mobilenet_v3_large
input: 3x224x224
import: [mobilenet]
layers:
  - mobilenet_v3_large_features: {name: features}
  - global_avgpool: {name: avgpool}
  - group: {name: classifier, layers: [linear: 1280, hardswish, dropout: 0.2, linear: 1000]}
"""
    graph = netdsl.load_text(text, "mobilenet_v3_large.yaml")
    expected = json.loads((TORCHVISION / "mobilenet_v3_large.state_dict.json").read_text())
    assert {k: list(v) for k, v in graph.state_dict_shapes().items()} == expected
    reference = reference_output("mobilenet_v3_large")
    assert params_of(graph) == reference["params"] == 5_483_032  # torchvision.models.mobilenet_v3_large(weights=None)
    got = run_filled(netdsl.compile(graph), reference["input_shape"])
    assert relative_error(got.reshape(-1), np.array(reference["values"])) <= 1e-7


def test_dilated_backbones_keep_the_feature_size() -> None:
    """replace_stride_with_dilation=[False, True, True] and MobileNetV3's dilated=True, as torchvision builds them."""
    fcn = netdsl.load(SPECS / "fcn_resnet50.yaml")
    # torchvision's _make_layer: a stage's first block keeps the previous dilation, the rest take the new one
    assert [same_both_ways(fcn.node(f"backbone.layer3.{i}.conv2").layer.dilation) for i in range(6)] == [1, 2, 2, 2, 2, 2]
    assert [same_both_ways(fcn.node(f"backbone.layer4.{i}.conv2").layer.dilation) for i in range(3)] == [2, 4, 4]
    assert [same_both_ways(fcn.node(f"backbone.layer{s}.0.downsample.0").layer.stride) for s in (2, 3, 4)] == [2, 1, 1]
    assert fcn.node("classifier.4").shape == (21, 28, 28)  # output stride 8
    deeplab = netdsl.load(SPECS / "deeplabv3_mobilenet_v3_large.yaml")
    assert deeplab.node("backbone.16.2").shape == (960, 14, 14)  # output stride 16, not 32
    assert same_both_ways(deeplab.node("backbone.13.block.1.0").layer.stride) == 1  # the C4 block's stride becomes dilation
    assert [same_both_ways(deeplab.node(f"backbone.{i}.block.1.0").layer.dilation) for i in (12, 13, 14, 15)] == [1, 2, 2, 2]


def test_googlenet_without_aux_heads() -> None:
    graph = netdsl.load(SPECS / "googlenet.yaml", variables={"aux_logits": False})
    figures = reference_models()["googlenet"]
    assert params_of(graph) == figures["num_params_meta"] == 6_624_904  # torchvision's weight metadata, which leaves the aux heads out
    # torchvision's "GFLOPS" are multiply-accumulates at 224x224 (shared/reference/README.md)
    assert sum(n.macs() for n in graph) == pytest.approx(figures["gflops_224"] * 1e9, rel=0.01)
    assert not any(k.startswith("aux") for k in graph.state_dict_shapes())


def test_googlenet_aux_heads_are_training_outputs() -> None:
    graph = netdsl.load(SPECS / "googlenet.yaml")
    assert graph.output_names == ("fc", "aux2", "aux1")  # torchvision's GoogLeNetOutputs(logits, aux_logits2, aux_logits1)
    assert graph.output_shapes == ((1000,), (1000,), (1000,))
    # torchvision's GoogLeNet._forward: aux1 on inception4a's output, aux2 on inception4d's
    for head, module in (("aux1", "inception4a"), ("aux2", "inception4d")):
        last = [n.name for n in graph if n.name.startswith(f"{module}.")][-1]
        assert graph.node(f"{head}.0").inputs == (last,)
        assert [n.layer.p for n in graph if n.name.startswith(f"{head}.") and n.op == "dropout"] == [0.7]
    small = netdsl.load(SPECS / "googlenet.yaml", input_shape="3x64x64")  # the aux heads pool to 4x4 at any size
    model = netdsl.compile(small, all_outputs=True, seed=0).train()
    outputs = model(torch.randn(2, 3, 64, 64))
    assert isinstance(outputs, tuple)
    assert [tuple(y.shape) for y in outputs] == [(2, 1000)] * 3
    sum(y.sum() for y in outputs).backward()  # every head trains
    assert all(p.grad is not None for p in model.parameters())
    main_only = netdsl.compile(small, seed=0).eval()
    assert tuple(main_only(torch.randn(1, 3, 64, 64)).shape) == (1, 1000)


@pytest.mark.parametrize("name", ["fcn_resnet50", "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"])
def test_segmentation_output_has_the_input_size(name: str) -> None:
    """The final resize (and LR-ASPP's resize to the low features) follow the input at run time, whatever its size."""
    graph = netdsl.load(SPECS / f"{name}.yaml", input_shape="3x75x101")
    assert graph.output_shape == (21, 75, 101)
    with torch.no_grad():
        assert tuple(netdsl.compile(graph, seed=0).eval()(torch.randn(1, 3, 75, 101)).shape) == (1, 21, 75, 101)


def test_unet_counts_and_runs(cli) -> None:
    path = SPECS / "unet.yaml"
    code, out, _ = cli("summarize", str(path))
    assert code == 0 and "31,031,810" in out and "2x64x64" in out
    graph = netdsl.load(path)
    # 3x3 conv pairs 64-128-256-512-1024 down and 512-256-128-64 up, 2x2 up-convolutions, 1x1 head: counted layer by
    # layer (Ronneberger et al. 2015 give no figure); with 1 input channel, as the paper's network, 1,152 fewer
    assert params_of(graph) == 31_031_810
    assert params_of(netdsl.load(path, input_shape="1x64x64")) == 31_030_658
    # with bn: the 18 3x3 convs' 5,888 output channels each gain a BN scale and shift and lose their conv bias
    assert params_of(netdsl.load(path, variables={"bn": True})) == 31_031_810 + 5_888 == 31_037_698
    # each expanding stage concatenates the contracting stage of its size with the up-convolution
    assert [graph.node(f"dec{i}.skip").input_shapes for i in range(4)] == [
        ((512, 8, 8), (512, 8, 8)),
        ((256, 16, 16), (256, 16, 16)),
        ((128, 32, 32), (128, 32, 32)),
        ((64, 64, 64), (64, 64, 64)),
    ]
    classes = netdsl.load(path, variables={"num_classes": 5, "depth": 3}, input_shape="3x40x56")
    assert classes.output_shape == (5, 40, 56)
    with torch.no_grad():
        assert tuple(netdsl.compile(graph, seed=0).eval()(torch.randn(2, 3, 64, 64)).shape) == (2, 2, 64, 64)


def segnet_by_hand(state: dict[str, torch.Tensor], x: torch.Tensor, depths: list[int]) -> torch.Tensor:
    """SegNet written out with torch.nn.functional (eval mode), reading the compiled module's weights by path."""

    def conv_bn_relu(h: torch.Tensor, path: str) -> torch.Tensor:
        h = F.conv2d(h, state[f"{path}.conv.weight"], state[f"{path}.conv.bias"], padding=1)
        bn = [state[f"{path}.bn.{k}"] for k in ("running_mean", "running_var", "weight", "bias")]
        return F.relu(F.batch_norm(h, *bn, training=False, eps=1e-5))

    pooled = []
    for stage, depth in enumerate(depths, 1):
        for j in range(depth):
            x = conv_bn_relu(x, f"enc{stage}.{j}")
        size = x.shape[-2:]
        x, indices = F.max_pool2d(x, 2, 2, ceil_mode=True, return_indices=True)
        pooled.append((indices, size))
    for stage in range(len(depths), 0, -1):
        indices, size = pooled[stage - 1]
        x = F.max_unpool2d(x, indices, 2, 2, output_size=size)
        for j in range(1, depths[stage - 1] + (stage > 1)):  # the first stage's last conv is the classifier
            x = conv_bn_relu(x, f"dec{stage}.{j}")
    return F.conv2d(x, state["classifier.weight"], state["classifier.bias"], padding=1)


def test_segnet_counts_and_computes_unpooling_by_indices(cli) -> None:
    path = SPECS / "segnet.yaml"
    code, out, _ = cli("summarize", str(path))
    assert code == 0 and "29,449,355" in out and "11x360x480" in out
    graph = netdsl.load(path)
    assert params_of(graph) == 29_449_355  # counted; the parts below add up to it
    convs = {n.name: n.param_count() for n in graph if n.op == "conv2d"}
    encoder = sum(v for k, v in convs.items() if k.startswith("enc"))
    decoder = sum(v for k, v in convs.items() if k.startswith("dec"))
    norms = sum(n.param_count() for n in graph if n.op == "batchnorm")
    # the encoder's 14,714,688 are VGG-16's 13 convs: the paper's "from 134M to 14.7M" once the fully connected layers go
    assert (len(convs), encoder, decoder, norms, convs["classifier"]) == (26, 14_714_688, 14_712_448, 15_872, 6_347)
    # Caffe's max pools round up, so rows 45 -> 23 -> 12 and the unpools restore 23 and 45
    assert [graph.node(f"dec{s}.unpool").shape[1:] for s in (5, 4)] == [(23, 30), (45, 60)]
    small = netdsl.load(path, input_shape="3x45x61")  # odd sizes at every stage
    model = netdsl.compile(small, seed=0).eval()
    x = torch.randn(2, 3, 45, 61)
    with torch.no_grad():
        got = model(x)
        want = segnet_by_hand(model.state_dict(), x, [2, 2, 3, 3, 3])
    assert got.shape == (2, 11, 45, 61)
    torch.testing.assert_close(got, want)
