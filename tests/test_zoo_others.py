"""The DenseNet / MobileNet / Inception / Xception / SqueezeNet zoo: published parameter counts, MACs, torchvision layouts."""

from __future__ import annotations

import math

import pytest

import netdsl
from tests.conftest import SPECS, reference_models, reference_state_dict

NO_AUX = {"aux_logits": False}

COUNTS = [
    # torchvision 0.29.1 models.json "params" (= sum(p.numel()) of torchvision.models.NAME())
    ("densenet121", None, 7_978_856),
    ("densenet169", None, 14_149_480),
    ("densenet201", None, 20_013_928),
    ("mobilenet_v2", None, 3_504_872),
    ("inception_v3", None, 27_161_264),  # aux_logits=True, torchvision's default
    ("squeezenet1_1", None, 1_235_496),
    # torchvision.models.squeezenet1_0 docs ("num_params": 1248424 in its weights' meta)
    ("squeezenet1_0", None, 1_248_424),
    # torchvision.models.inception_v3(aux_logits=False, init_weights=False): 27,161,264 less AuxLogits' 3,326,696
    ("inception_v3", NO_AUX, 23_834_568),
    # Huang et al. 2017, Table 2: DenseNet-BC (L=100, k=12) "0.8M", exactly 769,162 for that CIFAR-10 architecture
    ("densenet_bc100_k12", None, 769_162),
    # Huang et al. 2017, Table 2: DenseNet-BC (L=190, k=40) "25.6M", exactly 25,624,430
    ("densenet_bc190_k40", None, 25_624_430),
    # Keras applications MobileNet(alpha=1.0): "Trainable params: 4,231,976" (Howard et al. 2017, Table 8: 4.2 million)
    ("mobilenet_v1", None, 4_231_976),
    # Chollet 2017, Table 3: Xception 22,855,952 parameters (Keras applications Xception(): "Trainable params")
    ("xception", None, 22_855_952),
]


def load(name: str, variables: dict | None = None) -> netdsl.Graph:
    return netdsl.load(SPECS / f"{name}.yaml", variables=variables)


def params(graph: netdsl.Graph) -> int:
    return sum(n.param_count() for n in graph)


@pytest.mark.parametrize(("name", "variables", "expected"), COUNTS, ids=[f"{n}{'-no_aux' if v else ''}" for n, v, _ in COUNTS])
def test_published_parameter_count(name, variables, expected):
    assert params(load(name, variables)) == expected


@pytest.mark.parametrize("name", ["densenet121", "densenet169", "densenet201", "mobilenet_v2", "inception_v3", "squeezenet1_1"])
def test_counts_agree_with_torchvision_metadata(name):
    expected = next(count for n, v, count in COUNTS if n == name and v is None)
    assert expected == reference_models()[name]["params"]


MACS = [
    ("densenet121", None),
    ("densenet169", None),
    ("densenet201", None),
    ("mobilenet_v2", None),
    ("squeezenet1_1", None),
    # torchvision measures Inception-v3 at its native 299x299 in eval mode, where the auxiliary head does not run
    ("inception_v3", NO_AUX),
]


@pytest.mark.parametrize(("name", "variables"), MACS, ids=[n for n, _ in MACS])
def test_macs_within_one_percent_of_torchvision(name, variables):
    # torchvision's "GFLOPS" (models.json gflops_224) are multiply-accumulates at the model's native input
    published = reference_models()[name]["gflops_224"] * 1e9
    macs = sum(n.macs() for n in load(name, variables))
    assert abs(macs - published) / published < 0.01


@pytest.mark.parametrize("name", ["densenet121", "mobilenet_v2", "inception_v3"])
def test_state_dict_layout_equals_torchvision(name):
    ours = {k: list(v) for k, v in load(name).state_dict_shapes().items()}
    assert ours == reference_state_dict(name)


def test_inception_v3_without_aux_drops_exactly_the_aux_head():
    ours = {k: list(v) for k, v in load("inception_v3", NO_AUX).state_dict_shapes().items()}
    assert ours == {k: v for k, v in reference_state_dict("inception_v3").items() if not k.startswith("AuxLogits.")}


def test_mobilenet_v1_mult_adds_match_the_paper():
    # Howard et al. 2017, Table 8: 1.0 MobileNet-224, 569 million mult-adds
    macs = sum(n.macs() for n in load("mobilenet_v1"))
    assert abs(macs - 569e6) / 569e6 < 0.01


@pytest.mark.parametrize(
    ("name", "keras_total"),
    [
        ("xception", 22_910_480),  # Keras applications Xception(): "Total params: 22,910,480"
        ("mobilenet_v1", 4_253_864),  # Keras applications MobileNet(): "Total params: 4,253,864"
    ],
)
def test_keras_total_adds_batchnorm_moving_statistics(name, keras_total):
    graph = load(name)
    moving = sum(math.prod(s) for n in graph for p, s in n.buffers() if p.endswith(("running_mean", "running_var")))
    assert params(graph) + moving == keras_total


def test_mobilenet_v2_width_multiplier_follows_torchvision():
    # torchvision's MobileNetV2(width_mult=0.5): _make_divisible(c * 0.5, 8) per stage; the last conv keeps
    # _make_divisible(1280 * max(1.0, width_mult)) = 1280 channels
    shapes = load("mobilenet_v2", {"width_mult": 0.5}).state_dict_shapes()
    assert shapes["features.0.0.weight"] == (16, 3, 3, 3)
    assert shapes["features.1.conv.1.weight"] == (8, 16, 1, 1)
    assert shapes["features.2.conv.2.weight"] == (16, 48, 1, 1)  # 24 * 0.5 = 12 rounds up to 16
    assert shapes["features.17.conv.2.weight"] == (160, 480, 1, 1)
    assert shapes["features.18.0.weight"] == (1280, 160, 1, 1)
    assert shapes["classifier.1.weight"] == (1000, 1280)


def test_mobilenet_v2_residuals_only_where_shapes_match():
    # torchvision's InvertedResidual: use_res_connect = stride == 1 and inp == oup
    adds = sorted(int(n.name.split(".")[1]) for n in load("mobilenet_v2") if n.op == "add")
    assert adds == [3, 5, 6, 8, 9, 10, 12, 13, 15, 16]


SE_SPEC = """
netdsl: 1
name: se
input: 64x8x8
import: [common]
layers:
  - squeeze_excitation: {name: se, squeeze: 16}
"""


def test_squeeze_excitation_block_count():
    graph = netdsl.load_text(SE_SPEC)
    # fc1: 64 * 16 weights + 16 biases; fc2: 16 * 64 weights + 64 biases -> 2 * C * S + S + C = 2,048 + 16 + 64 = 2,128
    assert params(graph) == 2 * 64 * 16 + 16 + 64 == 2_128
    assert graph.output_shape == (64, 8, 8)
    assert set(graph.state_dict_shapes()) == {"se.fc1.weight", "se.fc1.bias", "se.fc2.weight", "se.fc2.bias"}
