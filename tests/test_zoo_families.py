"""ShuffleNetV2, ConvNeXt and RegNet families of the zoo: every member counts as torchvision's does, and what makes each
family itself is pinned (ShuffleNet's split / concat / shuffle order, ConvNeXt's stochastic depth and layer scale,
RegNet's per-stage widths as torchvision derives them). The members with a reference output (shufflenet_v2_x1_0,
convnext_tiny, regnet_x_400mf, regnet_y_400mf) are checked against torchvision's function in test_zoo_torchvision.py."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import netdsl
from netdsl.ir import Node
from netdsl.lang.expr import make_divisible
from netdsl.layers.conv import Conv2d
from netdsl.layers.core import StochasticDepth
from netdsl.layers.tensors import LayerScale
from tests.conftest import SPECS, macs_of, params_of, reference_models

pytestmark = pytest.mark.usefixtures("one_thread")


# sum(p.numel() for p in model.parameters()): tests/data/torchvision/models.json (torchvision 0.29.1) where it has the
# model, else the "num_params" of the model's IMAGENET1K_V1 weights in torchvision's docs (docs.pytorch.org/vision/stable/models)
PUBLISHED_PARAMS = {
    "shufflenet_v2_x0_5": 1_366_792,  # models.json
    "shufflenet_v2_x1_0": 2_278_604,  # models.json
    "shufflenet_v2_x1_5": 3_503_624,  # models.json
    "shufflenet_v2_x2_0": 7_393_996,  # models.json
    "convnext_tiny": 28_589_128,  # models.json
    "convnext_small": 50_223_688,  # models.json
    "convnext_base": 88_591_464,  # torchvision's docs
    "convnext_large": 197_767_336,  # torchvision's docs
    "regnet_y_400mf": 4_344_144,  # models.json
    "regnet_y_800mf": 6_432_512,  # models.json
    "regnet_y_1_6gf": 11_202_430,  # models.json
    "regnet_y_3_2gf": 19_436_338,  # torchvision's docs
    "regnet_y_8gf": 39_381_472,  # torchvision's docs
    "regnet_y_16gf": 83_590_140,  # torchvision's docs
    "regnet_y_32gf": 145_046_770,  # torchvision's docs
    "regnet_y_128gf": 644_812_894,  # torchvision's docs
    "regnet_x_400mf": 5_495_976,  # models.json
    "regnet_x_800mf": 7_259_656,  # models.json
    "regnet_x_1_6gf": 9_190_136,  # torchvision's docs
    "regnet_x_3_2gf": 15_296_552,  # torchvision's docs
    "regnet_x_8gf": 39_572_648,  # torchvision's docs
    "regnet_x_16gf": 54_278_536,  # torchvision's docs
    "regnet_x_32gf": 107_811_560,  # torchvision's docs
}

# torchvision's docs, "GFLOPS" of the IMAGENET1K_V1 weights at 224x224: multiply-accumulates of convs and linears,
# printed to two decimals (so shufflenet_v2_x1_0's 0.1449 G prints as 0.14: the tolerance is 1% or half a last digit)
PUBLISHED_GMACS = {
    "shufflenet_v2_x1_0": 0.14,
    "convnext_tiny": 4.46,
    "convnext_small": 8.68,
    "convnext_base": 15.36,
    "convnext_large": 34.36,
    "regnet_x_400mf": 0.41,
    "regnet_y_400mf": 0.40,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_member_counts_equal_torchvision(name: str) -> None:
    graph = netdsl.load(SPECS / f"{name}.yaml")
    assert params_of(graph) == PUBLISHED_PARAMS[name]
    if name in reference_models():
        assert reference_models()[name]["params"] == PUBLISHED_PARAMS[name]
    assert graph.input_shape == (3, 224, 224) and graph.output_shape == (1000,)


@pytest.mark.parametrize("name", sorted(PUBLISHED_GMACS))
def test_member_macs_equal_torchvision(name: str) -> None:
    macs = macs_of(netdsl.load(SPECS / f"{name}.yaml"))
    assert macs == pytest.approx(PUBLISHED_GMACS[name] * 1e9, rel=0.01, abs=0.005e9)


# -- ShuffleNetV2 -------------------------------------------------------------------------------------------------------
def shufflenet_reference(x: torch.Tensor, weights: dict[str, torch.Tensor], stride: int) -> torch.Tensor:
    """torchvision.models.shufflenetv2.InvertedResidual.forward (torchvision 0.29.1), written out with its weights."""

    def bn(y: torch.Tensor, key: str) -> torch.Tensor:
        return F.batch_norm(y, weights[f"{key}.running_mean"], weights[f"{key}.running_var"], weights[f"{key}.weight"], weights[f"{key}.bias"])

    def branch2(y: torch.Tensor) -> torch.Tensor:
        y = bn(F.conv2d(y, weights["u.branch2.0.weight"]), "u.branch2.1").relu()
        y = bn(F.conv2d(y, weights["u.branch2.3.weight"], stride=stride, padding=1, groups=y.shape[1]), "u.branch2.4")
        return bn(F.conv2d(y, weights["u.branch2.5.weight"]), "u.branch2.6").relu()

    if stride == 1:
        x1, x2 = x.chunk(2, dim=1)
        out = torch.cat((x1, branch2(x2)), dim=1)
    else:
        left = bn(F.conv2d(x, weights["u.branch1.0.weight"], stride=2, padding=1, groups=x.shape[1]), "u.branch1.1")
        left = bn(F.conv2d(left, weights["u.branch1.2.weight"]), "u.branch1.3").relu()
        out = torch.cat((left, branch2(x)), dim=1)
    n, c, h, w = out.shape  # channel_shuffle(out, 2)
    return out.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)


@pytest.mark.parametrize(("unit", "stride"), [("shufflenet_unit: {name: u}", 1), ("shufflenet_down: {name: u, out: 16}", 2)])
def test_shufflenet_units_split_concat_and_shuffle_as_torchvision(unit: str, stride: int) -> None:
    """The kept half goes first (branch1 first at stride 2), then the channels of the two halves interleave."""
    graph = netdsl.load_text(f"netdsl: 1\nname: unit\ninput: 8x6x6\nimport: [shufflenet]\nlayers:\n  - {unit}\n", "unit.yaml")
    order = [n.op for n in graph if n.name in ("u.halves", "u.concat", "u.shuffle")]
    assert order == (["split", "concat", "channel_shuffle"] if stride == 1 else ["concat", "channel_shuffle"])
    model = netdsl.compile(graph, seed=0).double().eval()
    generator = torch.Generator().manual_seed(1)
    state = {k: torch.rand(v.shape, generator=generator, dtype=torch.float64) + 0.5 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    x = torch.randn(2, 8, 6, 6, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), shufflenet_reference(x, state, stride))


def test_shufflenet_stages_as_torchvision() -> None:
    """stages_repeats [4, 8, 4]: one stride-2 unit (branch1 and branch2) then stride-1 units (branch2 only) per stage."""
    graph = netdsl.load(SPECS / "shufflenet_v2_x1_0.yaml")
    for stage, units in (("stage2", 4), ("stage3", 8), ("stage4", 4)):
        names = {n.name.split(".")[1] for n in graph if n.name.startswith(f"{stage}.")}
        assert names == {str(j) for j in range(units)}
        assert any(n.name.startswith(f"{stage}.0.branch1.") for n in graph)
        assert not any(n.name.startswith(f"{stage}.1.branch1.") for n in graph)
    assert graph.node("stage4.0.shuffle").shape == (464, 7, 7) and graph.node("conv5.2").shape == (1024, 7, 7)


# -- ConvNeXt -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "prob", "depths"), [("convnext_tiny", 0.1, [3, 3, 9, 3]), ("convnext_small", 0.4, [3, 3, 27, 3])])
def test_convnext_stochastic_depth_follows_torchvision(name: str, prob: float, depths: list[int]) -> None:
    """torchvision's rule: the network's block k (from 0) of K drops its branch with p = stochastic_depth_prob * k / (K - 1),
    per sample ("row"), in every block: the first block keeps it always, the last drops it with stochastic_depth_prob."""
    graph = netdsl.load(SPECS / f"{name}.yaml")
    drops = {n.name: n.layer for n in graph if isinstance(n.layer, StochasticDepth)}
    expected = [f"features.{2 * s + 1}.{j}.stochastic_depth" for s, n in enumerate(depths) for j in range(n)]
    assert sorted(drops) == sorted(expected)
    total = sum(depths)
    for k, path in enumerate(expected):
        assert drops[path].p == pytest.approx(prob * k / (total - 1))
        assert drops[path].mode == "row"
    assert drops[expected[0]].p == 0 and drops[expected[-1]].p == pytest.approx(prob)


def test_convnext_layer_scale_and_downsampling_as_torchvision() -> None:
    graph = netdsl.load(SPECS / "convnext_tiny.yaml")
    scales = [n.layer for n in graph if isinstance(n.layer, LayerScale)]
    assert len(scales) == 18 and all(layer.value == 1e-6 and layer.dim == 0 for layer in scales)  # layer_scale=1e-6
    layout = graph.state_dict_shapes()
    assert layout["features.1.0.layer_scale"] == (96, 1, 1) and layout["features.7.2.layer_scale"] == (768, 1, 1)
    # the stem and downsampling layers: 4x4 stride 4, then 2x2 stride 2 between stages (56, 28, 14, 7 at 224x224)
    assert [graph.node(f"features.{i}.1").shape for i in (0, 2, 4, 6)] == [(96, 56, 56), (192, 28, 28), (384, 14, 14), (768, 7, 7)]
    assert graph.node("classifier.2").input_shapes == ((768,),)


# -- RegNet -------------------------------------------------------------------------------------------------------------
# torchvision's RegNet constructors: BlockParams.from_init_params(depth, w_0, w_a, w_m, group_width[, se_ratio=0.25])
# (torchvision/models/regnet.py, regnet_y_400mf ... regnet_x_32gf; bottleneck_multiplier 1.0 in all of them)
INIT_PARAMS = {
    "regnet_y_400mf": (16, 48, 27.89, 2.09, 8),
    "regnet_y_800mf": (14, 56, 38.84, 2.4, 16),
    "regnet_y_1_6gf": (27, 48, 20.71, 2.65, 24),
    "regnet_y_3_2gf": (21, 80, 42.63, 2.66, 24),
    "regnet_y_8gf": (17, 192, 76.82, 2.19, 56),
    "regnet_y_16gf": (18, 200, 106.23, 2.48, 112),
    "regnet_y_32gf": (20, 232, 115.89, 2.53, 232),
    "regnet_y_128gf": (27, 456, 160.83, 2.52, 264),
    "regnet_x_400mf": (22, 24, 24.48, 2.54, 16),
    "regnet_x_800mf": (16, 56, 35.73, 2.28, 16),
    "regnet_x_1_6gf": (18, 80, 34.01, 2.25, 24),
    "regnet_x_3_2gf": (25, 88, 26.31, 2.25, 48),
    "regnet_x_8gf": (23, 80, 49.56, 2.88, 120),
    "regnet_x_16gf": (22, 216, 55.59, 2.1, 128),
    "regnet_x_32gf": (23, 320, 69.86, 2.0, 168),
}


def block_params(depth: int, w_0: int, w_a: float, w_m: float, group_width: int) -> tuple[list[int], list[int], list[int]]:
    """torchvision's BlockParams.from_init_params, written out: per-block widths w_0 * w_m^round(log_wm(1 + j * w_a / w_0))
    quantized to 8, runs of equal widths become stages, then widths made divisible by min(group_width, width)."""
    widths = [round(w_0 * w_m ** round(math.log((j * w_a + w_0) / w_0) / math.log(w_m)) / 8) * 8 for j in range(depth)]
    stages: list[list[int]] = []
    for w in widths:
        if stages and stages[-1][1] == w:
            stages[-1][0] += 1
        else:
            stages.append([1, w])
    groups = [min(group_width, w) for _, w in stages]
    return [d for d, _ in stages], [make_divisible(w, g) for (_, w), g in zip(stages, groups)], groups


def conv_groups(node: Node) -> int:
    assert isinstance(node.layer, Conv2d), node
    return node.layer.groups


@pytest.mark.parametrize("name", sorted(INIT_PARAMS))
def test_regnet_stages_are_torchvisions_block_params(name: str) -> None:
    """Each member spec writes out its stages; they are what torchvision derives from the member's init parameters."""
    graph = netdsl.load(SPECS / f"{name}.yaml")
    depths, widths, groups = [], [], []
    for s in range(1, 5):
        convs = [n for n in graph if n.name.startswith(f"trunk_output.block{s}.") and n.name.endswith(".f.b.0")]
        assert [n.name for n in convs] == [f"trunk_output.block{s}.block{s}-{j}.f.b.0" for j in range(len(convs))]
        depths.append(len(convs))
        widths.append(convs[0].shape[0])
        groups.append(convs[0].shape[0] // conv_groups(convs[0]))
    assert (depths, widths, groups) == block_params(*INIT_PARAMS[name])
    assert any(".f.se." in n.name for n in graph) == name.startswith("regnet_y")


def test_regnet_block_details_as_torchvision() -> None:
    """RegNetY's squeeze width comes from the block's input (round(0.25 * w_in)); projections only where the shape changes;
    regnet_x_8gf's first stage (80 wide) has groups of min(120, 80) channels."""
    layout = netdsl.load(SPECS / "regnet_y_400mf.yaml").state_dict_shapes()
    assert layout["trunk_output.block2.block2-0.f.se.fc1.weight"] == (12, 104, 1, 1)  # round(0.25 * 48)
    assert layout["trunk_output.block2.block2-1.f.se.fc1.weight"] == (26, 104, 1, 1)  # round(0.25 * 104)
    assert "trunk_output.block2.block2-0.proj.0.weight" in layout and "trunk_output.block2.block2-1.proj.0.weight" not in layout
    x8 = netdsl.load(SPECS / "regnet_x_8gf.yaml")
    assert conv_groups(x8.node("trunk_output.block1.block1-0.f.b.0")) == 1
    assert conv_groups(x8.node("trunk_output.block2.block2-0.f.b.0")) == 2  # 240 / 120
