"""The plain-stack zoo (issue 3): published parameter counts, MACs and torchvision state_dict layouts."""

from __future__ import annotations

import pytest

import netdsl
from netdsl.analysis.counts import analyze
from tests.conftest import SPECS, reference_models, reference_state_dict

COUNTS = {
    # LeNet-5, LeCun et al. 1998, 32x32 input, 6/16 maps, FC 120/84/10: 156 + 2,416 + 48,120 + 10,164 + 850
    "lenet5": 61_706,
    # torchvision 0.29.1 models.json "params" (= sum(p.numel()) of torchvision.models.NAME())
    "alexnet": 61_100_840,
    "vgg11": 132_863_336,
    "vgg16": 138_357_544,
    "vgg16_bn": 138_365_992,
    "vgg19": 143_667_240,
}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_published_parameter_count(name):
    report = analyze(netdsl.load(SPECS / f"{name}.yaml"))
    assert report.params == COUNTS[name]
    assert report.trainable == COUNTS[name] and report.frozen == 0


@pytest.mark.parametrize("name", ["alexnet", "vgg11", "vgg16", "vgg16_bn", "vgg19"])
def test_counts_agree_with_torchvision_metadata(name):
    assert COUNTS[name] == reference_models()[name]["params"]


@pytest.mark.parametrize("name", ["alexnet", "vgg11", "vgg16", "vgg16_bn", "vgg19"])
def test_macs_within_one_percent_of_torchvision(name):
    # torchvision's "GFLOPS" are multiply-accumulates at 224x224 (shared/reference/README.md)
    published = reference_models()[name]["gflops_224"] * 1e9
    macs = analyze(netdsl.load(SPECS / f"{name}.yaml")).macs
    assert abs(macs - published) / published < 0.01


@pytest.mark.parametrize("name", ["alexnet", "vgg16"])
def test_state_dict_layout_equals_torchvision(name):
    ours = {k: list(v) for k, v in netdsl.load(SPECS / f"{name}.yaml").state_dict_shapes().items()}
    assert ours == reference_state_dict(name)


def test_vgg16_bn_buffers_are_not_parameters():
    report = analyze(netdsl.load(SPECS / "vgg16_bn.yaml"))
    bn_channels = 2 * 64 + 2 * 128 + 3 * 256 + 6 * 512  # 13 BatchNorms after the 13 convs
    assert report.buffers == 2 * bn_channels + 13  # running mean and var, plus num_batches_tracked each
    assert report.params - analyze(netdsl.load(SPECS / "vgg16.yaml")).params == 2 * bn_channels  # gamma and beta


def test_summarize_json_reports_vgg16_total(cli):
    import json

    code, out, _ = cli("summarize", str(SPECS / "vgg16.yaml"), "--json")
    assert code == 0
    assert json.loads(out)["params"]["total"] == 138_357_544


def test_input_override_changes_shapes_not_conv_params(cli):
    import json

    code, out, _ = cli("summarize", str(SPECS / "vgg16.yaml"), "--json", "--input", "3x64x64", "--depth", "0")
    data = json.loads(out)
    assert code == 0 and data["input_shape"] == [3, 64, 64]
    assert data["params"]["total"] == 138_357_544  # adaptive 7x7 pooling keeps the classifier's input size
    features_out = next(layer for layer in data["layers"] if layer["name"] == "features.30")
    assert features_out["output_shape"] == [512, 2, 2]


def test_every_zoo_spec_checks(cli):
    specs = sorted(str(p) for p in SPECS.glob("*.yaml"))
    code, out, err = cli("check", *specs)
    assert code == 0, err
    assert out.count(": ok (") == len(specs)
