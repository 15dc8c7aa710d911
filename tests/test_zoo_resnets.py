"""The ResNet family of the model zoo: every spec's parameter count equals its published or reference figure exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import netdsl
from tests.conftest import macs_of, params_of

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
TORCHVISION = ROOT / "tests" / "data" / "torchvision"
MODELS = json.loads((TORCHVISION / "models.json").read_text())


COUNTS = [
    # torchvision.models, 224x224, 1000 classes (torchvision's weight metadata `num_params`; tests/data/torchvision/models.json)
    ("resnet18", 11_689_512),
    ("resnet34", 21_797_672),
    ("resnet50", 25_557_032),
    ("resnet101", 44_549_160),
    ("resnet152", 60_192_808),
    ("resnext50_32x4d", 25_028_904),
    ("wide_resnet50_2", 68_883_240),
    # He et al. 2016 CIFAR ResNets, option A shortcuts (akamaster/pytorch_resnet_cifar10: 0.27M / 0.85M / 1.7M)
    ("cifar_resnet20", 269_722),
    ("cifar_resnet56", 853_018),
    ("cifar_resnet110", 1_727_962),
    # the same with option B (1x1 projection + BN) shortcuts: option A plus 2,752 (two conv+BN projections)
    ("cifar_resnet20_b", 272_474),
    # He et al. 2016b, pre-activation bottleneck ResNets on CIFAR-10 (paper: 1.7M and 10.2M; bearpaw/pytorch-classification)
    ("preact_resnet164", 1_703_258),
    ("preact_resnet1001", 10_327_706),
    # Zagoruyko & Komodakis 2016, WRN-28-10 (paper: 36.5M) and WRN-40-4 (paper: 8.9M) (xternalz/WideResNet-pytorch)
    ("wrn_28_10", 36_479_194),
    ("wrn_40_4", 8_949_210),
    # Han et al. 2017, PyramidNet-110 alpha=48 (paper: 1.7M; dyhan0920/PyramidNet-PyTorch)
    ("pyramidnet110_a48", 1_772_706),
]

TORCHVISION_MODELS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "wide_resnet50_2"]


@pytest.mark.parametrize(("name", "expected"), COUNTS, ids=[c[0] for c in COUNTS])
def test_param_count(name: str, expected: int) -> None:
    assert params_of(netdsl.load(SPECS / f"{name}.yaml")) == expected


@pytest.mark.parametrize("name", TORCHVISION_MODELS)
def test_torchvision_figures(name: str) -> None:
    graph = netdsl.load(SPECS / f"{name}.yaml")
    assert graph.input_shape == (3, 224, 224)
    assert graph.output_shape == (1000,)
    assert params_of(graph) == MODELS[name]["params"]
    assert macs_of(graph) == pytest.approx(MODELS[name]["gflops_224"] * 1e9, rel=0.01)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet152"])
def test_torchvision_state_dict_layout(name: str) -> None:
    expected = json.loads((TORCHVISION / f"{name}.state_dict.json").read_text())
    got = {k: list(v) for k, v in netdsl.load(SPECS / f"{name}.yaml").state_dict_shapes().items()}
    assert got == expected
    assert list(got) == list(expected)  # same order as torchvision's state_dict too


CIFAR = [
    # (spec, n blocks per stage, option A, option B): He et al. 2016 sec. 4.2, depth 6n + 2
    ("cifar_resnet20", 3, 269_722, 272_474),
    ("cifar_resnet56", 9, 853_018, 855_770),
    ("cifar_resnet110", 18, 1_727_962, 1_730_714),
]


@pytest.mark.parametrize(("name", "n", "option_a", "option_b"), CIFAR, ids=[c[0] for c in CIFAR])
def test_cifar_shortcut_options(name: str, n: int, option_a: int, option_b: int) -> None:
    a = netdsl.load(SPECS / f"{name}.yaml", variables={"shortcut": "A"})
    b = netdsl.load(SPECS / f"{name}.yaml", variables={"shortcut": "B"})
    assert (params_of(a), params_of(b)) == (option_a, option_b)
    assert a.output_shape == b.output_shape == (10,)
    convs = [node for node in a if node.op == "conv2d"]
    assert len(convs) == 6 * n + 1  # depth 6n + 2 counts the fc layer too
    # option A: parameter-free shortcut; option B: torch-style Sequential(conv, bn) at shortcut.0/.1
    assert not any(".shortcut." in k for k in a.state_dict_shapes())
    shapes = b.state_dict_shapes()
    assert shapes["layer2.0.shortcut.0.weight"] == (32, 16, 1, 1)
    assert shapes["layer3.0.shortcut.1.running_var"] == (64,)
    assert not any(k.startswith("layer1.") and ".shortcut." in k for k in shapes)


def test_cifar_option_b_spec_equals_set_shortcut() -> None:
    b = netdsl.load(SPECS / "cifar_resnet20_b.yaml")
    a_set_b = netdsl.load(SPECS / "cifar_resnet20.yaml", variables={"shortcut": "B"})
    assert b.state_dict_shapes() == a_set_b.state_dict_shapes()
    assert macs_of(b) == macs_of(a_set_b)


def test_preact_projection_reads_the_preactivated_input() -> None:
    graph = netdsl.load(SPECS / "preact_resnet164.yaml")
    assert graph.node("layer2.0.downsample.0").inputs == ("layer2.0.relu1",)
    # an identity shortcut adds the block's raw input (the previous block's sum), not its pre-activation
    adds = {n.name.split(".")[1]: n for n in graph if n.name.startswith("layer2.") and n.op == "add"}
    assert adds["1"].inputs == ("layer2.1.conv3", adds["0"].name)
    assert graph.node("fc").input_shapes == ((256,),)


@pytest.mark.parametrize(("name", "blocks", "width"), [("wrn_28_10", 4, 640), ("wrn_40_4", 6, 256)])
def test_wide_resnet_shape_and_dropout(name: str, blocks: int, width: int) -> None:
    plain = netdsl.load(SPECS / f"{name}.yaml")
    dropped = netdsl.load(SPECS / f"{name}.yaml", variables={"dropout": 0.3})
    assert params_of(dropped) == params_of(plain)
    assert not any(n.op == "dropout" for n in plain)
    assert sum(n.op == "dropout" for n in dropped) == 3 * blocks
    assert plain.node("fc").input_shapes == ((width,),)
    assert len({n.name.split(".")[1] for n in plain if n.name.startswith("layer")}) == blocks  # n = (depth - 4) / 6 blocks per stage
    # a 1x1 shortcut conv only where the shape changes: the first block of each stage
    assert sorted(k for k in plain.state_dict_shapes() if ".downsample." in k) == [f"layer{s}.0.downsample.0.weight" for s in (1, 2, 3)]


def test_pyramidnet_widths_round_to_nearest() -> None:
    graph = netdsl.load(SPECS / "pyramidnet110_a48.yaml")
    widths = [n.shape[0] for n in graph if n.name.endswith(".conv2")]
    alpha, blocks = 48, 54
    assert widths == [round(16 + j * alpha / blocks) for j in range(1, blocks + 1)]
    assert widths[-1] == 64
    # Rounding down instead is the classic mistake. Flooring the exact widths 16 + 8j/9 gives 1,739,730; the figure
    # 1,732,856 sometimes given for it also floors the reference code's float *running sum* (16 + 8/9 + 8/9 + ...), which lands
    # just below 40, 48, 56 and 64 and so loses one more channel there -- a drift that closed-form expressions do not have.
    text = (SPECS / "pyramidnet110_a48.yaml").read_text()
    floored = text.replace("c: int(round(", "c: int((")
    assert floored.count("c: int((") == 3
    assert params_of(netdsl.load_text(floored, str(SPECS / "floored.yaml"))) == 1_739_730


def test_depth_formulas() -> None:
    """The depth in each name counts the weighted layers on the main path: stem conv, block convs and fc."""

    def depth(name: str) -> int:
        graph = netdsl.load(SPECS / f"{name}.yaml")
        main = [n for n in graph if n.op in ("conv2d", "linear") and ".downsample." not in n.name and ".shortcut." not in n.name]
        return len(main)

    assert [depth(n) for n in ("cifar_resnet20", "cifar_resnet56", "cifar_resnet110")] == [20, 56, 110]
    assert [depth(n) for n in ("preact_resnet164", "preact_resnet1001")] == [164, 1001]
    assert depth("pyramidnet110_a48") == 110


def test_block_library_docs() -> None:
    from netdsl.lang.imports import builtin_libraries
    from netdsl.lang.yaml_tree import load_yaml

    lib = load_yaml(builtin_libraries()["resnet"].read_text(), "resnet.yaml")
    blocks = lib["blocks"]
    for name in ("basic", "bottleneck", "cifar_basic", "preact_basic", "preact_bottleneck", "pyramid_basic"):
        assert blocks[name]["doc"], name
